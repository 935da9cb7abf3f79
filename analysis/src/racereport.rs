//! `data_race` findings from the detector's racing pairs of sites.
//!
//! Pairs whose two sides resolve to the same pair of source lines (a
//! `counter++` is a load and a store: two instruction pairs, one line pair)
//! make one finding; without source lines, one finding per instruction
//! pair. A finding names the variable (a global's symbol, a heap block with
//! its allocation site, a thread's stack), the racing byte ranges, both
//! accesses (thread, read/write, size, how, source position, locks held),
//! and the Eraser state. An access has only its instruction address: the
//! call stack of the thread's most recent sync op is given beside it,
//! labelled as such, and used as the access's callers when that op was made
//! from the same function.

use crate::finding::{
    location, object_label, resolve_stack, Finding, Location, Locator, Severity, SourcePos,
};
use crate::race::{Race, RaceDetector};
use crate::regions::Place;
use crate::shadow::Acc;
use lockstep_trace::Via;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Ranges listed per finding (the total is given too).
const MAX_LISTED: usize = 16;

/// One resolved side of a race.
struct Side {
    tid: i32,
    write: bool,
    loc: Location,
    /// `race.c:14`, a function, or an address.
    pos: String,
    json: Value,
    /// What a source-line pair is compared by.
    key: String,
}

fn kind(write: bool) -> &'static str {
    if write {
        "write"
    } else {
        "read"
    }
}

fn side(
    det: &RaceDetector,
    loc: &mut dyn Locator,
    pid: i32,
    a: &Acc,
    write: bool,
    var: &str,
) -> Side {
    let site = &det.sites[a.site as usize];
    let tid = det.tid(a.thread);
    // Locators take return addresses (they look one byte back); an
    // instruction's own address is one byte before the "return address".
    let ra = match site.via {
        Via::Instruction if site.ip != 0 => site.ip + 1,
        _ => site.ip,
    };
    // A syscall's stack: the program's frame in it (not libc's wrapper),
    // with its callers.
    let called = (!site.stack.is_empty()).then(|| {
        let mut l = location(loc, "", pid, tid, a.seq, &[]);
        resolve_stack(loc, &mut l, a.seq, &site.stack);
        l
    });
    let p = match &called {
        Some(l) => SourcePos {
            function: l.function.clone(),
            file: l.file.clone(),
            line: l.line,
            internal: false,
        },
        None if ra != 0 => loc.locate(pid, a.seq, ra),
        None => SourcePos::default(),
    };
    let ip = called.as_ref().map_or(site.ip, |l| l.address);
    let how = match (&site.label, site.via) {
        (Some(l), _) => format!("{l}(2)"),
        (None, v) => v.name().to_string(),
    };
    let pos = match (&p.file, p.line, &p.function) {
        (Some(f), Some(l), _) => format!("{f}:{l}"),
        (_, _, Some(func)) => func.clone(),
        _ if ip == 0 => how.clone(),
        _ => format!("{ip:#x}"),
    };
    let ctx = &det.contexts[a.ctx as usize];
    let ctx_loc = location(loc, "", pid, tid, a.seq, &ctx.stack);
    // The sync op's callers are the access's callers if it was made in the same function.
    let same_fn = p.function.is_some() && ctx_loc.function == p.function;
    let locks: Vec<String> = det
        .sets
        .members(a.locks)
        .into_iter()
        .map(|(l, k)| object_label(loc, k.name(), l.pid, l.obj))
        .collect();
    let verb = match (site.via, write) {
        (Via::Free, _) => "frees".to_string(),
        (Via::Instruction, w) => if w { "writes" } else { "reads" }.to_string(),
        (_, w) => format!("{} ({how})", if w { "writes" } else { "reads" }),
    };
    let l = Location {
        role: format!("thread {tid} {verb} {var}"),
        pid,
        tid,
        function: p.function.clone(),
        file: p.file.clone(),
        line: p.line,
        address: ip,
        stack: match &called {
            Some(c) => c.stack.clone(),
            None if same_fn => ctx_loc.stack.clone(),
            None => Vec::new(),
        },
        seq: Some(a.seq),
    };
    let context = (!ctx.stack.is_empty()).then(|| {
        let mut frames = vec![format!(
            "{} {}",
            ctx_loc.function.as_deref().unwrap_or("??"),
            match (&ctx_loc.file, ctx_loc.line) {
                (Some(f), Some(n)) => format!("{f}:{n}"),
                _ => format!("{:#x}", ctx_loc.address),
            }
        )];
        frames.extend(ctx_loc.stack.iter().cloned());
        json!({
            "note": format!("call stack of the thread's most recent sync op ({}), not of the access", ctx.op),
            "op": ctx.op,
            "stack": frames,
        })
    });
    let json = json!({
        "tid": tid,
        "pid": pid,
        "access": kind(write),
        "size": site.size,
        "via": how,
        "function": p.function,
        "file": p.file,
        "line": p.line,
        "address": format!("{ip:#x}"),
        "seq": a.seq,
        "stack": l.stack,
        "callers_from_sync_op": same_fn && called.is_none(),
        "context": context,
        "locks_held": locks,
    });
    let key = match (&p.file, p.line) {
        (Some(f), Some(n)) => format!("{f}:{n} {how}"),
        _ => format!("{ip:#x} {how}"),
    };
    Side {
        tid,
        write,
        loc: l,
        pos,
        json,
        key,
    }
}

/// The variable at `addr`: a one-line description and a JSON object.
fn variable(loc: &mut dyn Locator, race: &Race, addr: u64) -> (String, Value) {
    let pid = race.pid;
    match &race.place {
        Place::Heap(b) => {
            let at = location(loc, "", pid, b.tid, b.seq, &b.stack);
            let site = match (&at.file, at.line) {
                (Some(f), Some(n)) => format!("{f}:{n}"),
                _ => format!("{:#x}", at.address),
            };
            let offset = addr.saturating_sub(b.addr);
            let prefix = if offset > 0 {
                format!("offset {offset} of ")
            } else {
                String::new()
            };
            let freed = if b.freed { "freed " } else { "" };
            (
                format!(
                    "{prefix}{freed}heap block of {} bytes at {:#x} allocated at {site} by thread {}",
                    b.size, b.addr, b.tid
                ),
                json!({"kind": "heap", "block": format!("{:#x}", b.addr), "size": b.size,
                       "offset": offset, "allocated_by": b.by, "allocated_at": site,
                       "allocating_thread": b.tid, "freed": b.freed}),
            )
        }
        Place::Stack(t) => (
            format!("stack of thread {t} at {addr:#x}"),
            json!({"kind": "stack", "thread": t}),
        ),
        Place::Other => match loc.object_name(pid, addr) {
            Some(n) => (n.clone(), json!({"kind": "global", "name": n})),
            None => (format!("{addr:#x}"), json!({"kind": "unknown"})),
        },
    }
}

/// A race with its resolved sides, variable description and place.
type Resolved = (Race, Side, Side, String, Value);

/// One finding per source-line pair (or instruction pair).
pub fn findings(det: &RaceDetector, races: Vec<Race>, loc: &mut dyn Locator) -> Vec<Finding> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<Resolved>> = HashMap::new();
    for race in races {
        let addr = race.ranges[0].0;
        let (var, place) = variable(loc, &race, addr);
        let c = &race.first;
        // Roles name the variable briefly: a heap block by its address.
        let short = match &race.place {
            Place::Heap(b) => format!("heap block {:#x}", b.addr),
            _ => var.clone(),
        };
        let prev = side(det, loc, race.pid, &c.prev, c.prev_write, &short);
        let cur = side(det, loc, race.pid, &c.cur, c.cur_write, &short);
        let (a, b) = (
            prev.key.clone().min(cur.key.clone()),
            prev.key.clone().max(cur.key.clone()),
        );
        let key = format!("{} {a} | {b}", race.pid);
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups
            .entry(key)
            .or_default()
            .push((race, prev, cur, var, place));
    }
    order
        .into_iter()
        .filter_map(|k| groups.remove(&k))
        .map(|g| finding(det, g))
        .collect()
}

/// The order in which a group's pairs are considered for the one shown: a
/// write/write pair first (both sides modify the variable), then a pair with
/// one write; among those the earliest (the seq of the later access, then of
/// the earlier one), then the sites (one pair of sites is one race). A total
/// order, so a report never depends on the order races were gathered in.
fn rank(r: &Race) -> (bool, u64, u64, u32, u32) {
    let c = &r.first;
    (
        !(c.prev_write && c.cur_write),
        c.cur.seq,
        c.prev.seq,
        c.prev.site,
        c.cur.site,
    )
}

fn finding(det: &RaceDetector, mut group: Vec<Resolved>) -> Finding {
    group.sort_by_key(|g| rank(&g.0));
    let (race, prev, cur, var, place) = &group[0];
    let mut ranges: Vec<(u64, u64)> = group
        .iter()
        .flat_map(|g| g.0.ranges.iter().copied())
        .collect();
    ranges.sort_unstable();
    ranges.dedup();
    let bytes: u64 = ranges.iter().map(|(s, e)| e - s).sum();
    let listed: Vec<Value> = ranges
        .iter()
        .take(MAX_LISTED)
        .map(|(s, e)| json!({"start": format!("{s:#x}"), "end": format!("{e:#x}"), "bytes": e - s}))
        .collect();
    // Each once, in the group's order (the shown pair's variable first).
    let mut variables: Vec<&String> = Vec::new();
    for g in &group {
        if !variables.contains(&&g.3) {
            variables.push(&g.3);
        }
    }
    let pairs: Vec<Value> = group
        .iter()
        .map(|(r, p, c, _, _)| {
            json!({
                "first": {"tid": p.tid, "access": kind(p.write), "address": p.json["address"]},
                "second": {"tid": c.tid, "access": kind(c.write), "address": c.json["address"]},
                "occurrences": r.occurrences,
            })
        })
        .collect();
    let c = &race.first;
    let owner = det.tid(c.from_owner);
    let mut tids = vec![prev.tid, cur.tid];
    tids.sort_unstable();
    tids.dedup();
    Finding {
        kind: "data_race".into(),
        severity: Severity::Error,
        summary: format!(
            "data race on {var}: {} by thread {} at {} vs. {} by thread {} at {}",
            kind(prev.write),
            prev.tid,
            prev.pos,
            kind(cur.write),
            cur.tid,
            cur.pos
        ),
        pids: vec![race.pid],
        tids,
        locations: vec![prev.loc.clone(), cur.loc.clone()],
        details: json!({
            "variable": var,
            "variables": variables,
            "place": place,
            "ranges": listed,
            "ranges_total": ranges.len(),
            "ranges_truncated": group.iter().any(|g| g.0.truncated),
            "bytes": bytes,
            "accesses": [prev.json, cur.json],
            "eraser": {
                "state": "shared-modified",
                "previous_state": c.from.describe(owner),
                "candidate_lockset": Vec::<String>::new(),
            },
            "happens_before": "unordered: neither access happens before the other",
            "pairs": pairs,
            "occurrences": group.iter().map(|g| g.0.occurrences).sum::<u64>(),
        }),
    }
}
