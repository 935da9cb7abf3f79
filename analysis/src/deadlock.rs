//! Real deadlocks and hangs, from the state the program was in when the
//! recorder found it hung: a wait-for graph whose edges are thread →
//! (mutex, rwlock, spinlock) → owner, thread → joined thread, and thread →
//! condvar → the threads that could signal it. A cycle through a lock is a
//! `deadlock`; the nested-monitor case (waiting on a condvar while holding a
//! mutex the would-be signaller needs) is named as such; a hang without a
//! cycle is a `hang` with what each thread was blocked in.
//!
//! Also here, because they come from the same replay of lock state:
//! `self_deadlock` (a thread relocks a non-recursive lock it holds),
//! `unlock_not_held`, and `cond_wait_holding_lock` (a warning even when the
//! run did not hang).

use crate::finding::{location, object_label, Finding, Location, Locator, Severity};
use crate::locks::{Event, Held, LockId, Tracker, Waiting};
use crate::ops::{effect, Effect, LockKind};
use lockstep_trace::{Hang, SyncOp};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};

fn lock_label(loc: &mut dyn Locator, kind: LockKind, l: LockId) -> String {
    object_label(loc, kind.name(), l.pid, l.obj)
}

/// The kind of lock an unlock function names (`pthread_rwlock_unlock` →
/// `rwlock`), for a lock nobody held.
fn unlocked_kind(op: &str) -> &'static str {
    if op.contains("rwlock") {
        "rwlock"
    } else if op.contains("spin") {
        "spinlock"
    } else {
        "mutex"
    }
}

/// Why one thread waits for another.
#[derive(Clone, Debug)]
enum Why {
    Lock { lock: LockId, kind: LockKind },
    Cond { cond: u64, mutex: LockId },
    Join,
}

/// Findings that need no hang: self-deadlock, unlock of a lock not held,
/// and condvar waits while holding another lock.
pub fn lock_misuse(ops: &[SyncOp], loc: &mut dyn Locator) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut warned_cond: BTreeSet<(i32, u64)> = BTreeSet::new();
    let mut tracker = Tracker::new();
    for op in ops {
        let mut found: Vec<Finding> = Vec::new();
        tracker.apply(op, &mut |ev| match ev {
            Event::SelfDeadlock { op, lock, held } => {
                let name = lock_label(loc, held.kind, lock);
                found.push(Finding {
                    kind: "self_deadlock".into(),
                    severity: Severity::Error,
                    summary: format!(
                        "thread {} locks {name} again while holding it (not a recursive lock): it waits for itself",
                        op.tid.0
                    ),
                    pids: vec![op.pid.0],
                    tids: vec![op.tid.0],
                    locations: vec![
                        location(loc, "locks it again", op.pid.0, op.tid.0, op.at.seq.0, &op.stack),
                        location(loc, "first locked it", op.pid.0, op.tid.0, held.seq, &held.stack),
                    ],
                    details: json!({"lock": format!("{:#x}", lock.obj), "lock_name": name, "op": op.op}),
                });
            }
            Event::UnlockNotHeld { op, lock, owner, refused } => {
                let name = match owner {
                    Some((_, h)) => lock_label(loc, h.kind, lock),
                    None => object_label(loc, unlocked_kind(&op.op), lock.pid, lock.obj),
                };
                let (summary, mut locs) = match owner {
                    Some((o, h)) => (
                        format!("thread {} unlocks {name}, which thread {o} holds", op.tid.0),
                        vec![location(loc, &format!("thread {o} locked it"), op.pid.0, o, h.seq, &h.stack)],
                    ),
                    None => (format!("thread {} unlocks {name}, which is not locked", op.tid.0), vec![]),
                };
                locs.insert(0, location(loc, "unlocks", op.pid.0, op.tid.0, op.at.seq.0, &op.stack));
                let mut tids = vec![op.tid.0];
                tids.extend(owner.map(|(o, _)| o));
                found.push(Finding {
                    kind: "unlock_not_held".into(),
                    // An errorcheck mutex refused it (EPERM): no harm was done.
                    severity: if refused { Severity::Warning } else { Severity::Error },
                    summary: if refused { format!("{summary} (refused with error {})", op.ret) } else { summary },
                    pids: vec![op.pid.0],
                    tids,
                    locations: locs,
                    details: json!({"lock": format!("{:#x}", lock.obj), "lock_name": name, "refused": refused, "ret": op.ret}),
                });
            }
            Event::CondWaitHolding { op, mutex, others } => {
                if warned_cond.insert((op.tid.0, op.stack.first().copied().unwrap_or(0))) {
                    let mut locs = vec![location(loc, "waits on the condvar", op.pid.0, op.tid.0, op.at.seq.0, &op.stack)];
                    for h in others {
                        let role = format!("holds {}", lock_label(loc, h.kind, h.lock));
                        locs.push(location(loc, &role, op.pid.0, op.tid.0, h.seq, &h.stack));
                    }
                    found.push(Finding {
                        kind: "cond_wait_holding_lock".into(),
                        severity: Severity::Warning,
                        summary: format!(
                            "thread {} waits on {} ({}) while holding {}: a signaller that needs it would deadlock (nested monitor)",
                            op.tid.0,
                            object_label(loc, "condvar", op.pid.0, op.obj),
                            lock_label(loc, LockKind::Mutex, mutex),
                            others.iter().map(|h| lock_label(loc, h.kind, h.lock)).collect::<Vec<_>>().join(", ")
                        ),
                        pids: vec![op.pid.0],
                        tids: vec![op.tid.0],
                        locations: locs,
                        details: json!({"cond": format!("{:#x}", op.obj), "mutex": format!("{:#x}", mutex.obj),
                            "held": others.iter().map(|h| format!("{:#x}", h.lock.obj)).collect::<Vec<_>>()}),
                    });
                }
            }
            Event::Acquired { .. } => {}
        });
        out.extend(found);
    }
    out
}

/// The deadlock / hang findings of a run that the recorder found hung.
pub fn hang_findings(ops: &[SyncOp], hang: &Hang, loc: &mut dyn Locator) -> Vec<Finding> {
    let mut tracker = Tracker::new();
    // Pending joins: thread → pthread value; pthread values → tids.
    let mut joining: HashMap<i32, (u64, SyncOp)> = HashMap::new();
    let mut pthreads: HashMap<(i32, u64), i32> = HashMap::new();
    let mut cond_users: HashMap<u64, BTreeSet<i32>> = HashMap::new();
    for op in ops {
        tracker.apply(op, &mut |_| {});
        match (effect(op), op.op.as_str(), op.phase.as_str()) {
            (Effect::ThreadStart { pthread }, _, _) => {
                pthreads.insert((op.pid.0, pthread), op.tid.0);
            }
            (_, "pthread_join", "request") => {
                joining.insert(op.tid.0, (op.obj, op.clone()));
            }
            (_, "pthread_join", _) => {
                joining.remove(&op.tid.0);
            }
            (_, "pthread_cond_signal" | "pthread_cond_broadcast", _) => {
                cond_users.entry(op.obj).or_default().insert(op.tid.0);
            }
            _ => {}
        }
    }
    let hung: BTreeSet<i32> = hang.threads.iter().map(|t| t.tid.0).collect();
    let pid_of: HashMap<i32, i32> = hang.threads.iter().map(|t| (t.tid.0, t.pid.0)).collect();

    // The wait-for graph among hung threads.
    let mut edges: BTreeMap<i32, Vec<(i32, Why)>> = BTreeMap::new();
    for (&tid, w) in tracker.waiting() {
        if !hung.contains(&tid) {
            continue;
        }
        match w.cond {
            None => {
                for (owner, _) in tracker.holders(w.lock) {
                    if owner != tid {
                        edges.entry(tid).or_default().push((
                            owner,
                            Why::Lock {
                                lock: w.lock,
                                kind: w.kind,
                            },
                        ));
                    }
                }
            }
            Some(cond) => {
                // Any other hung thread of the process could be the signaller;
                // prefer those that signalled this condvar before.
                let known = cond_users.get(&cond).cloned().unwrap_or_default();
                let pid = w.op.pid.0;
                let candidates: Vec<i32> = hung
                    .iter()
                    .copied()
                    .filter(|&t| t != tid && pid_of.get(&t) == Some(&pid))
                    .filter(|t| known.is_empty() || known.contains(t))
                    .collect();
                for t in candidates {
                    edges.entry(tid).or_default().push((
                        t,
                        Why::Cond {
                            cond,
                            mutex: w.lock,
                        },
                    ));
                }
            }
        }
    }
    for (&tid, (pthread, op)) in &joining {
        if let Some(&target) = pthreads.get(&(op.pid.0, *pthread)) {
            if hung.contains(&tid) {
                edges.entry(tid).or_default().push((target, Why::Join));
            }
        }
    }

    let mut out = Vec::new();
    let mut in_cycle: BTreeSet<i32> = BTreeSet::new();
    for cycle in thread_cycles(&edges) {
        // Condvar edges are guesses (any thread might signal) and a join
        // waits for an end, not a resource: a deadlock needs a lock in the cycle.
        let steps: Vec<(i32, &(i32, Why))> = cycle
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let next = cycle[(i + 1) % cycle.len()];
                (
                    t,
                    edges[&t]
                        .iter()
                        .find(|(n, _)| *n == next)
                        .expect("edge of the cycle"),
                )
            })
            .collect();
        if !steps
            .iter()
            .any(|(_, (_, w))| matches!(w, Why::Lock { .. }))
        {
            continue;
        }
        in_cycle.extend(cycle.iter().copied());
        out.push(deadlock_finding(&steps, &tracker, loc));
    }
    let rest: Vec<i32> = hung
        .iter()
        .copied()
        .filter(|t| !in_cycle.contains(t))
        .collect();
    if out.is_empty() && !rest.is_empty() {
        out.push(hang_finding(hang, &tracker, &joining, loc));
    }
    out
}

fn deadlock_finding(
    steps: &[(i32, &(i32, Why))],
    tracker: &Tracker,
    loc: &mut dyn Locator,
) -> Finding {
    let mut locations: Vec<Location> = Vec::new();
    let mut threads = Vec::new();
    let mut nested = false;
    let mut parts = Vec::new();
    for (tid, (next, why)) in steps {
        let w: Option<&Waiting> = tracker.waiting().get(tid);
        let holds: Vec<&Held> = tracker.held(*tid).iter().collect();
        let (what, role) = match why {
            Why::Lock { lock, kind } => (
                format!(
                    "waits for {} held by thread {next}",
                    lock_label(loc, *kind, *lock)
                ),
                format!("thread {tid} waits for {}", lock_label(loc, *kind, *lock)),
            ),
            Why::Cond { cond, mutex } => {
                nested |= !holds.is_empty();
                let c = object_label(loc, "condvar", mutex.pid, *cond);
                let m = lock_label(loc, LockKind::Mutex, *mutex);
                (
                    format!("waits on {c} ({m}) for a signal from thread {next}"),
                    format!("thread {tid} waits on {c}"),
                )
            }
            Why::Join => (
                format!("joins thread {next}"),
                format!("thread {tid} joins thread {next}"),
            ),
        };
        parts.push(format!("thread {tid} {what}"));
        if let Some(w) = w {
            locations.push(location(
                loc,
                &role,
                w.op.pid.0,
                *tid,
                w.op.at.seq.0,
                &w.op.stack,
            ));
        }
        for h in &holds {
            let pid = w.map(|w| w.op.pid.0).unwrap_or(h.lock.pid);
            let role = format!("thread {tid} holds {}", lock_label(loc, h.kind, h.lock));
            locations.push(location(loc, &role, pid, *tid, h.seq, &h.stack));
        }
        threads.push(json!({
            "tid": tid, "waits_for": what,
            "holds": holds.iter().map(|h| lock_label(loc, h.kind, h.lock)).collect::<Vec<_>>(),
        }));
    }
    let mut tids: Vec<i32> = steps.iter().map(|(t, _)| *t).collect();
    tids.sort();
    let pids: BTreeSet<i32> = steps
        .iter()
        .filter_map(|(t, _)| tracker.waiting().get(t).map(|w| w.op.pid.0))
        .collect();
    let summary = if nested {
        format!("deadlock (nested monitor): {}", parts.join("; "))
    } else {
        format!("deadlock: {}", parts.join("; "))
    };
    Finding {
        kind: "deadlock".into(),
        severity: Severity::Error,
        summary,
        pids: pids.into_iter().collect(),
        tids,
        locations,
        details: json!({"threads": threads, "nested_monitor": nested}),
    }
}

fn hang_finding(
    hang: &Hang,
    tracker: &Tracker,
    joining: &HashMap<i32, (u64, SyncOp)>,
    loc: &mut dyn Locator,
) -> Finding {
    let mut locations = Vec::new();
    let mut threads = Vec::new();
    let mut parts = Vec::new();
    for t in &hang.threads {
        let tid = t.tid.0;
        let blocked = match (tracker.waiting().get(&tid), joining.get(&tid)) {
            (Some(w), _) if w.cond.is_some() => {
                locations.push(location(
                    loc,
                    &format!("thread {tid} waits on a condvar"),
                    t.pid.0,
                    tid,
                    w.op.at.seq.0,
                    &w.op.stack,
                ));
                format!(
                    "waits on condvar {:#x} that no running thread signals",
                    w.cond.unwrap_or(0)
                )
            }
            (Some(w), _) => {
                locations.push(location(
                    loc,
                    &format!("thread {tid} waits for a lock"),
                    t.pid.0,
                    tid,
                    w.op.at.seq.0,
                    &w.op.stack,
                ));
                let holders = tracker.holders(w.lock);
                if holders.iter().any(|(h, _)| *h == tid) {
                    format!(
                        "waits for {} that it holds itself (self-deadlock)",
                        lock_label(loc, w.kind, w.lock)
                    )
                } else if holders.is_empty() {
                    format!(
                        "waits for {}, which nobody holds (a lost unlock?)",
                        lock_label(loc, w.kind, w.lock)
                    )
                } else {
                    let who: Vec<String> = holders.iter().map(|(h, _)| h.to_string()).collect();
                    format!(
                        "waits for {} held by thread {} (which is not blocked on it in turn)",
                        lock_label(loc, w.kind, w.lock),
                        who.join(", ")
                    )
                }
            }
            (None, Some((_, op))) => {
                locations.push(location(
                    loc,
                    &format!("thread {tid} joins"),
                    t.pid.0,
                    tid,
                    op.at.seq.0,
                    &op.stack,
                ));
                "waits in pthread_join".to_string()
            }
            (None, None) => {
                let what = t.syscall.as_deref().unwrap_or("user code");
                if !t.stack.is_empty() {
                    let role = format!("thread {tid} blocked in {what}");
                    locations.push(location(loc, &role, t.pid.0, tid, hang.at.seq.0, &t.stack));
                }
                format!("blocked in {what}")
            }
        };
        parts.push(format!("thread {tid} {blocked}"));
        threads.push(json!({"tid": tid, "pid": t.pid.0, "blocked": blocked, "syscall": t.syscall, "wchan": t.wchan, "args": t.args}));
    }
    let mut tids: Vec<i32> = hang.threads.iter().map(|t| t.tid.0).collect();
    tids.sort();
    let pids: BTreeSet<i32> = hang.threads.iter().map(|t| t.pid.0).collect();
    Finding {
        kind: "hang".into(),
        severity: Severity::Error,
        summary: format!(
            "hang: no progress for {} ms: {}",
            hang.timeout_ms,
            parts.join("; ")
        ),
        pids: pids.into_iter().collect(),
        tids,
        locations,
        details: json!({"timeout_ms": hang.timeout_ms, "threads": threads}),
    }
}

/// Elementary cycles of the thread wait-for graph, each once.
fn thread_cycles(edges: &BTreeMap<i32, Vec<(i32, Why)>>) -> Vec<Vec<i32>> {
    let succ: BTreeMap<i32, Vec<i32>> = edges
        .iter()
        .map(|(&t, v)| (t, v.iter().map(|(n, _)| *n).collect()))
        .collect();
    crate::cycles::elementary_cycles(&succ, 16)
}
