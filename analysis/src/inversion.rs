//! `priority_inversion`: a thread H waits for a thread L of lower priority
//! (a mutex L holds, or a condvar hand-off only L makes), and meanwhile a
//! thread M of a priority between them, not involved with that lock, runs
//! — the unbounded inversion of the Mars Pathfinder. The wait alone (H and
//! L) is bounded by L's critical section and is not reported.
//!
//! Evidence, strongest first (named in the details): the kernel's
//! `sched_switch` tracepoints (M running while L was runnable and not
//! running: M held the CPU L needed), `schedstat` samples (M's CPU time grew
//! during H's wait), or the sync ops only (M made progress during the wait:
//! a warning at most). PTHREAD_PRIO_INHERIT / PRIO_PROTECT mutexes
//! mitigate: an inversion through one is a note. Real-time threads give an
//! error; nice values of SCHED_OTHER threads (which CFS only weighs) a
//! warning.

use crate::finding::{location, object_label, resolve_stack, Finding, Location, Locator, Severity};
use crate::ops::{effect, Effect, MUTEX_PRIO_INHERIT, MUTEX_PRIO_PROTECT};
use crate::schedule::{Prio, Priorities, Timeline};
use lockstep_trace::{Schedule, SyncOp};
use serde_json::json;
use std::collections::HashMap;

/// Less than this of M running during the wait is not reported.
pub const MIN_NS: u64 = 1_000_000;

/// One wait of a thread for another: a contended lock or a condvar hand-off.
#[derive(Clone, Debug)]
pub struct Wait<'a> {
    pub condvar: bool,
    pub obj: u64,
    /// When the waiter asked, and when the holder let it go (the lock's
    /// acquisition, or the signal).
    pub start: u64,
    pub end: u64,
    pub waiter: &'a SyncOp,
    /// The holder's acquisition of the lock, or its signal of the condvar.
    pub holder: &'a SyncOp,
    /// Mutex type/protocol flags.
    pub flags: u32,
}

/// Every wait of one thread for another, from the sync ops (in seq order).
pub fn waits(ops: &[SyncOp]) -> Vec<Wait<'_>> {
    let mut holders: HashMap<(i32, u64), &SyncOp> = HashMap::new();
    let mut flags: HashMap<(i32, u64), u32> = HashMap::new();
    let mut requests: HashMap<i32, (&SyncOp, Option<&SyncOp>)> = HashMap::new();
    let mut cond_waits: HashMap<i32, &SyncOp> = HashMap::new();
    let mut signals: HashMap<(i32, u64), Vec<&SyncOp>> = HashMap::new();
    let mut out = Vec::new();
    for op in ops {
        let (pid, tid) = (op.pid.0, op.tid.0);
        match effect(op) {
            Effect::Init { obj, flags: f } => {
                flags.insert((pid, obj), f);
            }
            Effect::Request { obj, .. } => {
                requests.insert(tid, (op, holders.get(&(pid, obj)).copied()));
            }
            Effect::RequestFailed { .. } => {
                requests.remove(&tid);
            }
            Effect::Acquire { obj, flags: f, .. } => {
                if let Some((req, Some(h))) = requests.remove(&tid) {
                    if req.obj == obj && h.tid.0 != tid {
                        out.push(Wait {
                            condvar: false,
                            obj,
                            start: req.at.ts_ns,
                            end: op.at.ts_ns,
                            waiter: req,
                            holder: h,
                            flags: f | flags.get(&(pid, obj)).copied().unwrap_or(0),
                        });
                    }
                }
                holders.insert((pid, obj), op);
            }
            Effect::Release { obj } => {
                holders.remove(&(pid, obj));
            }
            Effect::CondWaitStart { mutex, .. } => {
                holders.remove(&(pid, mutex));
                cond_waits.insert(tid, op);
            }
            Effect::CondWaitEnd { cond, mutex } => {
                if let Some(w) = cond_waits.remove(&tid) {
                    let by_other = signals.get(&(pid, cond)).and_then(|v| {
                        v.iter()
                            .rev()
                            .find(|s| s.tid.0 != tid && s.at.ts_ns >= w.at.ts_ns)
                    });
                    if let Some(s) = by_other {
                        out.push(Wait {
                            condvar: true,
                            obj: cond,
                            start: w.at.ts_ns,
                            end: s.at.ts_ns,
                            waiter: w,
                            holder: s,
                            flags: 0,
                        });
                    }
                }
                holders.insert((pid, mutex), op);
            }
            Effect::CondSignal { cond } => {
                let v = signals.entry((pid, cond)).or_default();
                v.push(op);
                if v.len() > 64 {
                    v.remove(0);
                }
            }
            _ => {}
        }
    }
    out
}

/// How much M ran during a wait, and on what evidence.
struct Ran {
    ran_ns: Option<u64>,
    /// Time M ran while L was runnable (tracepoints only).
    preempted_ns: Option<u64>,
    evidence: &'static str,
}

fn medium_ran(
    sched: &Schedule,
    tl: &Timeline,
    ops: &[SyncOp],
    w: &Wait<'_>,
    m: i32,
) -> Option<Ran> {
    let (a, b, l) = (w.start, w.end, w.holder.tid.0);
    if !tl.is_empty() {
        let preempted = tl.runnable_while_running(l, m, a, b);
        return (preempted >= MIN_NS).then(|| Ran {
            ran_ns: Some(tl.running_ns(m, a, b)),
            preempted_ns: Some(preempted),
            evidence: "sched_switch tracepoints",
        });
    }
    let samples: Vec<_> = sched
        .stats
        .iter()
        .filter(|s| s.tid.0 == m && s.at.ts_ns >= a && s.at.ts_ns <= b)
        .collect();
    if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
        let ran = last.cpu_ns.saturating_sub(first.cpu_ns);
        return (ran >= MIN_NS).then_some(Ran {
            ran_ns: Some(ran),
            preempted_ns: None,
            evidence: "schedstat",
        });
    }
    if !sched.stats.is_empty() {
        return None;
    }
    let obj = w.obj;
    let progressed = ops
        .iter()
        .any(|o| o.tid.0 == m && o.at.ts_ns > a && o.at.ts_ns < b && o.obj != obj);
    progressed.then_some(Ran {
        ran_ns: None,
        preempted_ns: None,
        evidence: "sync ops only",
    })
}

/// The `priority_inversion` findings of a trace.
pub fn findings(ops: &[SyncOp], sched: &Schedule, loc: &mut dyn Locator) -> Vec<Finding> {
    let prios = Priorities::new(&sched.attrs);
    let tl = Timeline::build(sched);
    let mut best: HashMap<(i32, u64, i32, i32), Finding> = HashMap::new();
    for w in waits(ops) {
        let (h, l) = (w.waiter.tid.0, w.holder.tid.0);
        let (Some(hp), Some(lp)) = (prios.at(h, w.start), prios.at(l, w.start)) else {
            continue;
        };
        if hp.rank() <= lp.rank() {
            continue;
        }
        // Every thread of priority strictly between, not touching the lock.
        let mut mediums: Vec<(i32, Prio, Ran)> = prios
            .tids()
            .filter(|&m| m != h && m != l)
            .filter_map(|m| {
                let mp = prios.at(m, w.start)?;
                if mp.rank() <= lp.rank() || mp.rank() >= hp.rank() {
                    return None;
                }
                let involved = ops.iter().any(|o| {
                    o.tid.0 == m && o.obj == w.obj && o.at.ts_ns >= w.start && o.at.ts_ns <= w.end
                });
                if involved {
                    return None;
                }
                Some((m, mp.clone(), medium_ran(sched, &tl, ops, &w, m)?))
            })
            .collect();
        mediums.sort_by_key(|(m, _, r)| (std::cmp::Reverse(r.ran_ns.unwrap_or(0)), *m));
        let Some((m, mp, ran)) = mediums.first() else {
            continue;
        };
        let f = finding(&w, (&hp, &lp, mp), *m, ran, &mediums, ops, loc);
        let key = (w.waiter.pid.0, w.obj, h, l);
        let worse = best
            .get(&key)
            .is_none_or(|old| f.details["wait_ns"].as_u64() > old.details["wait_ns"].as_u64());
        if worse {
            best.insert(key, f);
        }
    }
    let mut out: Vec<Finding> = best.into_values().collect();
    out.sort_by_key(|f| f.details["wait_start_ns"].as_u64());
    out
}

/// Sync ops of M looked at (latest first) for one with a program frame.
const MEDIUM_OPS: usize = 64;

/// M's latest sync op up to the end of wait `w` whose call stack has a
/// frame of the program with a source line (the ops a thread makes as it
/// ends, in libc only, are passed over), with that frame as a location.
fn medium_seen<'a>(
    ops: &'a [SyncOp],
    w: &Wait<'_>,
    m: i32,
    loc: &mut dyn Locator,
) -> Option<(&'a SyncOp, Location)> {
    ops.iter()
        .rev()
        .filter(|o| o.tid.0 == m && o.at.ts_ns <= w.end && !o.stack.is_empty())
        .take(MEDIUM_OPS)
        .find_map(|o| {
            let seq = o.at.seq.0;
            let ours = o.stack.iter().any(|&a| {
                let p = loc.locate(o.pid.0, seq, a);
                p.file.is_some() && !p.internal
            });
            ours.then(|| {
                let mut l = location(loc, "", o.pid.0, m, seq, &[]);
                resolve_stack(loc, &mut l, seq, &o.stack);
                (o, l)
            })
        })
}

fn finding(
    w: &Wait<'_>,
    (hp, lp, mp): (&Prio, &Prio, &Prio),
    m: i32,
    ran: &Ran,
    mediums: &[(i32, Prio, Ran)],
    ops: &[SyncOp],
    loc: &mut dyn Locator,
) -> Finding {
    let (pid, h, l) = (w.waiter.pid.0, w.waiter.tid.0, w.holder.tid.0);
    let kind = if w.condvar { "condvar" } else { "mutex" };
    let label = object_label(loc, kind, pid, w.obj);
    let protocol = match w.flags {
        f if f & MUTEX_PRIO_INHERIT != 0 => "inherit",
        f if f & MUTEX_PRIO_PROTECT != 0 => "protect",
        _ => "none",
    };
    let rt = hp.realtime() && lp.realtime() && mp.realtime();
    let severity = match (protocol, ran.evidence) {
        ("inherit" | "protect", _) => Severity::Note,
        (_, "sync ops only") => Severity::Warning,
        _ if rt => Severity::Error,
        _ => Severity::Warning,
    };
    let wait_ns = w.end.saturating_sub(w.start);
    let ms = |ns: u64| format!("{:.1} ms", ns as f64 / 1e6);
    let ran_text = match ran.ran_ns {
        Some(r) => format!("ran {} of it", ms(r)),
        None => "made progress meanwhile".into(),
    };
    let how = if w.condvar {
        format!("for thread {l} ({}) to signal {label}", lp.label())
    } else {
        format!("for {label} held by thread {l} ({})", lp.label())
    };
    let summary = format!(
        "thread {h} ({}) waited {} {how} while thread {m} ({}) {ran_text}{}",
        hp.label(),
        ms(wait_ns),
        mp.label(),
        if protocol == "none" {
            String::new()
        } else {
            format!(
                " (bounded: the mutex uses PTHREAD_PRIO_{})",
                protocol.to_uppercase()
            )
        }
    );
    let (wrole, hrole) = if w.condvar {
        (format!("waits on {label}"), format!("signals {label}"))
    } else {
        (format!("waits for {label}"), format!("holds {label}"))
    };
    let mut locations = vec![
        location(loc, &wrole, pid, h, w.waiter.at.seq.0, &w.waiter.stack),
        location(loc, &hrole, pid, l, w.holder.at.seq.0, &w.holder.stack),
    ];
    // M: where it was last seen by the end of the wait (its latest sync op
    // whose stack has a frame of the program, not only libc's), else where
    // it started (its start routine), if the agent saw it.
    let mid_role = "runs meanwhile (priority between)";
    let (mid, medium_at) = match medium_seen(ops, w, m, loc) {
        Some((o, l)) => (
            l,
            json!({"from": "latest sync op", "op": o.op, "phase": o.phase, "seq": o.at.seq.0}),
        ),
        None => {
            let start = ops
                .iter()
                .find(|o| o.tid.0 == m && o.op == "thread_start" && o.arg2 != 0);
            match start {
                Some(o) => (
                    location(loc, mid_role, o.pid.0, m, o.at.seq.0, &[o.arg2 + 1]),
                    json!({"from": "start routine"}),
                ),
                None => (
                    location(loc, mid_role, pid, m, w.waiter.at.seq.0, &[]),
                    json!({"from": "unknown"}),
                ),
            }
        }
    };
    locations.push(Location {
        role: mid_role.to_string(),
        ..mid
    });
    let others: Vec<i32> = mediums.iter().skip(1).map(|(t, _, _)| *t).collect();
    Finding {
        kind: "priority_inversion".into(),
        severity,
        summary,
        pids: vec![pid],
        tids: vec![h, l, m],
        locations,
        details: json!({
            "via": kind,
            "lock": label,
            "lock_address": format!("{:#x}", w.obj),
            "protocol": protocol,
            "high": {"tid": h, "priority": hp.json()},
            "low": {"tid": l, "priority": lp.json()},
            "medium": {"tid": m, "priority": mp.json(), "location": medium_at},
            "other_medium_tids": others,
            "wait_start_ns": w.start,
            "wait_ns": wait_ns,
            "medium_ran_ns": ran.ran_ns,
            "low_preempted_ns": ran.preempted_ns,
            "evidence": ran.evidence,
        }),
    }
}
