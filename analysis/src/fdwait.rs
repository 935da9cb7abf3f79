//! Pipes in the wait-for graph of a hung (or cut-short) recording.
//!
//! Nodes are processes; edges say whom a blocked process waits for:
//! a reader blocked in read on a pipe waits for every holder of the write
//! end (data or EOF can only come from them), a writer blocked on a full
//! pipe waits for every holder of the read end, and wait4/waitid waits for
//! the child(ren) it names. From it:
//!
//! - `fd_leak` (error) for each blocked pipe reader: every process still
//!   holding the write end, which of them will never write (blocked in
//!   wait4, in a read elsewhere, or the reader itself), and the close()
//!   that is missing and where it belongs;
//! - `deadlock` (error) for each cycle through at least one pipe edge
//!   (the shell waiting for a reader that waits for the shell's write end;
//!   the 64 KiB pipeline whose only reader waits for the writer to exit).

use crate::fdleak::{at, created_text};
use crate::fds::{End, FdEntry, FdModel, Origin, Place};
use crate::fdsys::{blocked_fd, Dir};
use crate::finding::{Finding, Location, Locator, Severity, SourcePos};
use lockstep_trace::Hang;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A thread blocked in a syscall.
struct Waiter {
    pid: i32,
    tid: i32,
    name: String,
    entry_seq: u64,
    decoded: Value,
    /// Where it is blocked (from the hang snapshot): IP, then return addresses.
    stack: Vec<u64>,
}

/// Why one process waits for another: blocked reading (writing) `fd`, an end
/// of `object` whose other end the other process holds as `hfd`; or wait4.
#[derive(Clone)]
enum Why {
    Pipe {
        dir: Dir,
        fd: i32,
        object: String,
        hfd: i32,
    },
    Wait,
}

fn waiters(m: &FdModel, hang: Option<&Hang>) -> (Vec<Waiter>, u64) {
    match hang {
        Some(h) => {
            let list = h
                .threads
                .iter()
                .filter_map(|t| {
                    let name = t.syscall.clone()?;
                    let decoded = serde_json::from_str(&t.args).unwrap_or_else(|_| {
                        // strace-like text: the first number is the fd or pid.
                        let n: String = t
                            .args
                            .chars()
                            .take_while(|c| c.is_ascii_digit() || *c == '-')
                            .collect();
                        n.parse::<i64>()
                            .map_or(Value::Null, |n| json!({"fd": n, "pid": n}))
                    });
                    let entry_seq = t.entry_seq.map_or(0, |s| s.0);
                    Some(Waiter {
                        pid: t.pid.0,
                        tid: t.tid.0,
                        name,
                        entry_seq,
                        decoded,
                        stack: t.stack.clone(),
                    })
                })
                .collect();
            (list, h.at.seq.0)
        }
        None => {
            let list = m.blocked.iter().map(|b| Waiter {
                pid: b.pid,
                tid: b.tid,
                name: b.name.clone(),
                entry_seq: b.entry_seq,
                decoded: b.decoded.clone(),
                stack: Vec::new(),
            });
            (list.collect(), m.end_seq)
        }
    }
}

/// Where `w` is blocked: the innermost frame of the program's own code that
/// has a source line (the libc wrapper has none), or the place in the trace.
fn blocked_at(loc: &mut dyn Locator, role: String, w: &Waiter, seq: u64) -> Location {
    let place = Place {
        pid: w.pid,
        tid: w.tid,
        seq: w.entry_seq,
        what: w.name.clone(),
    };
    let frames: Vec<(u64, SourcePos)> = w
        .stack
        .iter()
        .map(|&a| (a, loc.locate(w.pid, seq, a)))
        .collect();
    let Some(i) = frames
        .iter()
        .position(|(_, p)| p.line.is_some() && !p.internal)
    else {
        return at(role, &place);
    };
    let (address, top) = frames[i].clone();
    let stack = frames[i + 1..]
        .iter()
        .filter(|(_, p)| !p.internal)
        .map(|(a, p)| p.render(*a))
        .collect();
    Location {
        role,
        pid: w.pid,
        tid: w.tid,
        function: top.function,
        file: top.file,
        line: top.line,
        address,
        stack,
        seq: Some(seq),
    }
}

/// The children `w` waits for, if it is in wait4/waitid.
fn wait_targets(m: &FdModel, w: &Waiter, seq: u64) -> Option<Vec<i32>> {
    let target = match w.name.as_str() {
        "wait4" => w.decoded.get("pid").and_then(Value::as_i64).unwrap_or(-1),
        "waitid" if w.decoded.get("idtype").and_then(Value::as_str) == Some("P_PID") => {
            w.decoded.get("id").and_then(Value::as_i64).unwrap_or(-1)
        }
        "waitid" => -1,
        _ => return None,
    };
    let alive = |p: i32| m.procs.get(&p).is_some_and(|x| x.alive_at(seq));
    if target > 0 {
        return Some(if alive(target as i32) {
            vec![target as i32]
        } else {
            Vec::new()
        });
    }
    Some(
        m.forks
            .iter()
            .filter(|f| f.0 == w.pid && alive(f.1))
            .map(|f| f.1)
            .collect(),
    )
}

/// What a blocked holder is doing, in words.
fn state(m: &FdModel, w: Option<&Waiter>, seq: u64) -> String {
    let Some(w) = w else {
        return "not blocked (may still write)".into();
    };
    if let Some(t) = wait_targets(m, w, seq) {
        let names: Vec<String> = t.iter().map(|&p| m.name_of(p, seq)).collect();
        return format!(
            "blocked in {} for {}",
            w.name,
            if names.is_empty() {
                "a child".into()
            } else {
                names.join(", ")
            }
        );
    }
    match blocked_fd(&w.name, &w.decoded)
        .and_then(|(fd, _)| m.entry_at(w.pid, fd, seq).map(|e| (fd, e)))
    {
        Some((fd, e)) => format!("blocked in {}({fd}) on {}", w.name, e.noun()),
        None => format!("blocked in {}", w.name),
    }
}

/// The blocked-pipe findings at the hang (or at the end of the recording).
pub fn pipe_wait_findings(m: &FdModel, hang: Option<&Hang>, loc: &mut dyn Locator) -> Vec<Finding> {
    let (ws, seq) = waiters(m, hang);
    let by_pid: BTreeMap<i32, &Waiter> = ws.iter().rev().map(|w| (w.pid, w)).collect();
    let mut edges: BTreeMap<i32, Vec<(i32, Why, usize)>> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, w) in ws.iter().enumerate() {
        if let Some(t) = wait_targets(m, w, seq) {
            edges
                .entry(w.pid)
                .or_default()
                .extend(t.into_iter().map(|c| (c, Why::Wait, i)));
            continue;
        }
        let Some((fd, dir)) = blocked_fd(&w.name, &w.decoded) else {
            continue;
        };
        let Some(e) = m.entry_at(w.pid, fd, seq).filter(|e| e.end.is_some()) else {
            continue;
        };
        let object = e.object.clone().unwrap_or_default();
        let other = if dir == Dir::Read {
            End::Write
        } else {
            End::Read
        };
        let holders = m.holders_of(&object, Some(other), seq);
        for (p, hfd, _) in &holders {
            edges.entry(w.pid).or_default().push((
                *p,
                Why::Pipe {
                    dir,
                    fd,
                    object: object.clone(),
                    hfd: *hfd,
                },
                i,
            ));
        }
        if dir == Dir::Read {
            out.extend(reader_leak(
                m,
                w,
                e,
                &holders,
                &by_pid,
                seq,
                hang.is_some(),
                loc,
            ));
        }
    }
    for cycle in cycles(&edges) {
        out.push(deadlock(m, &ws, &edges, &cycle, seq, loc));
    }
    out
}

/// Where the missing close() of holder `pid`'s copy belongs.
fn fix(m: &FdModel, pid: i32, e: &FdEntry, reader: i32) -> String {
    let exec = m
        .execs
        .iter()
        .find(|x| x.pid == pid && x.kept.contains(&e.id))
        .map(|x| x.seq);
    match (&e.origin, exec) {
        (_, _) if pid == reader => format!(
            "the reader holds the write end itself: close fd {} in pid {pid} before it reads{}",
            e.fd,
            exec.map(|s| format!(" (before the exec at seq {s})"))
                .unwrap_or_default()
        ),
        (Origin::Inherited { fork_seq, .. }, Some(x)) => {
            format!("close fd {} in pid {pid} after the fork (seq {fork_seq}), before the exec at seq {x}", e.fd)
        }
        (Origin::Inherited { fork_seq, .. }, None) => {
            format!(
                "close fd {} in pid {pid} after the fork (seq {fork_seq}), before it blocks",
                e.fd
            )
        }
        _ => {
            let last_fork = m
                .forks
                .iter()
                .filter(|f| f.0 == pid && f.2 > e.at.seq)
                .map(|f| f.2)
                .max();
            match last_fork {
                Some(f) => format!(
                    "close fd {} in pid {pid} after the fork(s) that hand it to the children (last at seq {f})",
                    e.fd
                ),
                None => format!("close fd {} in pid {pid} once it is done writing", e.fd),
            }
        }
    }
}

/// `fd_leak` (error): a reader blocked on a pipe whose write end is held by
/// processes that will never write.
#[allow(clippy::too_many_arguments)]
fn reader_leak(
    m: &FdModel,
    w: &Waiter,
    e: &FdEntry,
    holders: &[(i32, i32, FdEntry)],
    by_pid: &BTreeMap<i32, &Waiter>,
    seq: u64,
    hung: bool,
    loc: &mut dyn Locator,
) -> Option<Finding> {
    let object = e.object.clone().unwrap_or_default();
    let reader = m.name_of(w.pid, seq);
    let mut list = Vec::new();
    let role = format!(
        "{reader} blocks in {}({}) on {}, waiting for data or EOF",
        w.name,
        e.fd,
        e.noun()
    );
    let mut locations = vec![blocked_at(loc, role, w, seq)];
    let (mut pids, mut tids) = (vec![w.pid], vec![w.tid]);
    for (pid, fd, h) in holders {
        let hw = by_pid.get(pid).copied();
        let st = if *pid == w.pid {
            "the reader itself, blocked reading".to_string()
        } else {
            state(m, hw, seq)
        };
        let writes_here = hw.is_some_and(|x| {
            blocked_fd(&x.name, &x.decoded).is_some_and(|(f, d)| {
                d == Dir::Write
                    && m.entry_at(x.pid, f, seq)
                        .is_some_and(|y| y.object == e.object)
            })
        });
        let never = *pid == w.pid || (hw.is_some() && !writes_here) || (hung && !writes_here);
        let fix = fix(m, *pid, h, w.pid);
        let who = m.name_of(*pid, seq);
        if never {
            locations.push(at(
                format!(
                    "{who} holds fd {fd} ({}) {}; {st}: {fix}",
                    h.noun(),
                    h.how()
                ),
                &h.at,
            ));
            if let Some(x) = hw.filter(|x| x.pid != w.pid) {
                locations.push(blocked_at(
                    loc,
                    format!("{who} is {st} while holding fd {fd}"),
                    x,
                    seq,
                ));
            }
            pids.push(*pid);
            if let Some(x) = hw {
                tids.push(x.tid);
            }
        }
        list.push(json!({
            "pid": pid, "name": who, "fd": fd, "state": st, "never_writes": never, "how": h.how(),
            "installed_at": h.at, "created_at": h.created, "fix": fix,
        }));
    }
    let never: Vec<&serde_json::Value> =
        list.iter().filter(|h| h["never_writes"] == true).collect();
    if never.is_empty() {
        return None;
    }
    locations.push(at(
        format!("{object} created by {}", e.created.what),
        &e.created,
    ));
    for c in m
        .entries_of(&object)
        .filter(|c| c.end == Some(End::Write) && c.closed.as_ref().is_some_and(|c| c.at.seq <= seq))
    {
        let cl = c.closed.as_ref().expect("closed");
        if locations.len() < 12 {
            locations.push(at(
                format!(
                    "{} closed its copy of the write end (fd {}) by {}",
                    m.name_of(cl.at.pid, cl.at.seq),
                    c.fd,
                    cl.at.what
                ),
                &cl.at,
            ));
        }
    }
    let parts: Vec<String> = never
        .iter()
        .map(|h| {
            format!(
                "{} (fd {}, {})",
                h["name"].as_str().unwrap_or(""),
                h["fd"],
                h["state"].as_str().unwrap_or("")
            )
        })
        .collect();
    let fixes: Vec<&str> = never.iter().filter_map(|h| h["fix"].as_str()).collect();
    let mut seen = BTreeSet::new();
    pids.retain(|p| seen.insert(*p));
    let mut seen = BTreeSet::new();
    tids.retain(|t| seen.insert(*t));
    Some(Finding {
        kind: "fd_leak".into(),
        severity: Severity::Error,
        summary: format!(
            "fd_leak: {reader} is blocked reading {object} (fd {}) and never gets EOF: the write end (created by {}) is still open in {}; {}",
            e.fd,
            created_text(m, e),
            parts.join("; "),
            fixes.join("; ")
        ),
        pids,
        tids,
        locations,
        details: json!({
            "object": object, "reader": {"pid": w.pid, "tid": w.tid, "fd": e.fd, "syscall": w.name, "entry_seq": w.entry_seq},
            "created_at": e.created, "holders": list, "at_seq": seq,
        }),
    })
}

/// Elementary cycles (each once, from its smallest pid) through a pipe edge.
fn cycles(edges: &BTreeMap<i32, Vec<(i32, Why, usize)>>) -> Vec<Vec<i32>> {
    let succ: BTreeMap<i32, Vec<i32>> = edges
        .iter()
        .map(|(&p, v)| (p, v.iter().map(|e| e.0).collect()))
        .collect();
    let mut out = crate::cycles::elementary_cycles(&succ, 8);
    out.retain(|c| {
        (0..c.len()).any(|i| {
            edges[&c[i]]
                .iter()
                .any(|e| e.0 == c[(i + 1) % c.len()] && !matches!(e.1, Why::Wait))
        })
    });
    out
}

fn deadlock(
    m: &FdModel,
    ws: &[Waiter],
    edges: &BTreeMap<i32, Vec<(i32, Why, usize)>>,
    cycle: &[i32],
    seq: u64,
    loc: &mut dyn Locator,
) -> Finding {
    let mut steps = Vec::new();
    let mut locations = Vec::new();
    let mut tids = Vec::new();
    let mut objects = BTreeSet::new();
    let mut writer_blocked = false;
    for (i, &p) in cycle.iter().enumerate() {
        let next = cycle[(i + 1) % cycle.len()];
        let cands: Vec<&(i32, Why, usize)> = edges[&p].iter().filter(|e| e.0 == next).collect();
        let (_, why, wi) = cands
            .iter()
            .find(|e| !matches!(e.1, Why::Wait))
            .copied()
            .unwrap_or(cands[0]);
        let w = &ws[*wi];
        let (a, b) = (m.name_of(p, seq), m.name_of(next, seq));
        let text = match why {
            Why::Pipe { dir: Dir::Read, fd, object, hfd } if p == next => {
                format!("{a} waits in {}({fd}) for EOF on {object} but holds its write end itself (fd {hfd})", w.name)
            }
            Why::Pipe { dir: Dir::Read, fd, object, hfd } => format!(
                "{a} waits in {}({fd}) for data or EOF on {object}, whose write end {b} holds (fd {hfd})",
                w.name
            ),
            Why::Pipe { fd, object, hfd, .. } => {
                writer_blocked = true;
                format!("{a} is blocked in {}({fd}) on the full {object}, whose read end {b} holds (fd {hfd}) without reading it", w.name)
            }
            Why::Wait => format!("{a} waits in {} for {b} to exit", w.name),
        };
        if let Why::Pipe { object, .. } = why {
            objects.insert(object.clone());
        }
        locations.push(blocked_at(loc, text.clone(), w, seq));
        tids.push(w.tid);
        steps.push(json!({"pid": p, "tid": w.tid, "syscall": w.name, "entry_seq": w.entry_seq, "waits_for": next, "step": text,
            "edge": match why { Why::Pipe { dir: Dir::Read, .. } => "pipe_read", Why::Pipe { .. } => "pipe_write", Why::Wait => "wait" }}));
    }
    // Processes that wait (through wait4) for a process of the cycle hang with it.
    let mut stuck: BTreeSet<i32> = cycle.iter().copied().collect();
    let mut behind = Vec::new();
    while let Some((p, c, wi)) =
        edges
            .iter()
            .filter(|(p, _)| !stuck.contains(p))
            .find_map(|(p, es)| {
                es.iter()
                    .find(|e| matches!(e.1, Why::Wait) && stuck.contains(&e.0))
                    .map(|e| (*p, e.0, e.2))
            })
    {
        stuck.insert(p);
        let w = &ws[wi];
        let text = format!(
            "{} waits in {} for {}, which is in this deadlock",
            m.name_of(p, seq),
            w.name,
            m.name_of(c, seq)
        );
        locations.push(blocked_at(loc, text.clone(), w, seq));
        tids.push(w.tid);
        behind
            .push(json!({"pid": p, "tid": w.tid, "syscall": w.name, "waits_for": c, "step": text}));
    }
    let hint = if writer_blocked {
        ": the reader of this pipe only reads after the writer exits"
    } else {
        ""
    };
    let objs: Vec<String> = objects.into_iter().collect();
    let mut pids = cycle.to_vec();
    pids.extend(
        behind
            .iter()
            .filter_map(|b| b["pid"].as_i64().map(|p| p as i32)),
    );
    Finding {
        kind: "deadlock".into(),
        severity: Severity::Error,
        summary: format!(
            "deadlock through {}: {}{hint}",
            objs.join(", "),
            steps
                .iter()
                .map(|s| s["step"].as_str().unwrap_or("").to_string())
                .collect::<Vec<_>>()
                .join("; ")
        ),
        pids,
        tids,
        locations,
        details: json!({"cycle": steps, "objects": objs, "at_seq": seq, "also_blocked": behind}),
    }
}

/// True when the fd findings name every thread of the hang (so the generic
/// `hang` finding adds nothing).
pub fn explains_hang(findings: &[Finding], hang: &Hang) -> bool {
    let named: BTreeSet<i32> = findings
        .iter()
        .filter(|f| f.severity == Severity::Error && (f.kind == "deadlock" || f.kind == "fd_leak"))
        .flat_map(|f| f.tids.iter().copied())
        .collect();
    !hang.threads.is_empty() && hang.threads.iter().all(|t| named.contains(&t.tid.0))
}
