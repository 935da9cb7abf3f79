//! Lock-order inversions (potential deadlocks), lockdep/Helgrind style: an
//! edge A→B whenever a thread takes B while holding A; every cycle of the
//! graph is a lock order some run could deadlock on. Known false alarms are
//! filtered as users of Helgrind and TSan expect: a cycle whose edges all
//! hold a common gate lock is not reported; a trylock never closes a cycle;
//! read-read cycles on rwlocks cannot block; a cycle whose edges come from
//! one thread, or are ordered by happens-before (create/join), cannot
//! deadlock in this run and is a warning, not an error.

use crate::finding::{location, object_label, Finding, Locator, Severity};
use crate::hb::HappensBefore;
use crate::locks::{Event, Held, LockId, Tracker};
use crate::ops::{LockKind, Mode};
use lockstep_trace::{Spawn, SyncOp};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Longest cycle searched for.
const MAX_CYCLE: usize = 6;
/// Instances kept per edge (distinct thread / gate-set combinations).
const MAX_INSTANCES: usize = 8;

/// One observation of an edge: `tid` took `to` while holding `from`.
#[derive(Clone, Debug)]
pub struct EdgeInstance {
    pub pid: i32,
    pub tid: i32,
    pub held: Held,
    pub to: LockId,
    pub kind: LockKind,
    pub mode: Mode,
    pub try_: bool,
    pub seq: u64,
    pub stack: Vec<u64>,
    /// The other locks held at that moment (a common one is a gate).
    pub gates: BTreeSet<LockId>,
}

/// The lock-order graph of a run.
#[derive(Default)]
pub struct LockGraph {
    pub edges: BTreeMap<(LockId, LockId), Vec<EdgeInstance>>,
    pub kinds: BTreeMap<LockId, LockKind>,
}

impl LockGraph {
    /// Builds the graph from sync ops in sequence order.
    pub fn build(ops: &[SyncOp]) -> LockGraph {
        let mut g = LockGraph::default();
        let mut tracker = Tracker::new();
        for op in ops {
            tracker.apply(op, &mut |ev| {
                if let Event::Acquired {
                    op,
                    lock,
                    kind,
                    mode,
                    try_,
                    held_before,
                } = ev
                {
                    g.kinds.insert(lock, kind);
                    for h in held_before {
                        g.kinds.insert(h.lock, h.kind);
                        let gates: BTreeSet<LockId> = held_before
                            .iter()
                            .filter(|o| o.lock != h.lock)
                            .map(|o| o.lock)
                            .collect();
                        let list = g.edges.entry((h.lock, lock)).or_default();
                        let seen = list
                            .iter()
                            .any(|e| e.tid == op.tid.0 && e.gates == gates && e.try_ == try_);
                        if !seen && list.len() < MAX_INSTANCES {
                            list.push(EdgeInstance {
                                pid: op.pid.0,
                                tid: op.tid.0,
                                held: h.clone(),
                                to: lock,
                                kind,
                                mode,
                                try_,
                                seq: op.at.seq.0,
                                stack: op.stack.clone(),
                                gates,
                            });
                        }
                    }
                }
            });
        }
        g
    }

    /// Elementary cycles up to [`MAX_CYCLE`] locks, each once, starting at its smallest lock.
    pub fn cycles(&self) -> Vec<Vec<LockId>> {
        let mut succ: BTreeMap<LockId, Vec<LockId>> = BTreeMap::new();
        for &(a, b) in self.edges.keys() {
            if a != b {
                succ.entry(a).or_default().push(b);
            }
        }
        crate::cycles::elementary_cycles(&succ, MAX_CYCLE)
    }
}

/// How a chosen set of edge instances can (or cannot) deadlock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    /// Two or more threads, not ordered: a real potential deadlock.
    Deadlock,
    /// The threads' edges are ordered by happens-before in this run.
    Ordered,
    /// Every edge comes from one thread.
    OneThread,
}

fn conflicts(a: Mode, b: Mode) -> bool {
    !(a == Mode::Shared && b == Mode::Shared)
}

/// Judges one combination of instances (one per edge of the cycle).
fn judge(combo: &[&EdgeInstance], hb: &HappensBefore) -> Option<Verdict> {
    // A trylock cannot block, so it cannot close the cycle.
    if combo.iter().any(|e| e.try_) {
        return None;
    }
    // A gate lock held on every edge serialises them.
    let mut common = combo[0].gates.clone();
    for e in &combo[1..] {
        common = common.intersection(&e.gates).copied().collect();
    }
    if !common.is_empty() {
        return None;
    }
    // Each wait must conflict with the next edge's hold of the same lock.
    for i in 0..combo.len() {
        let next = combo[(i + 1) % combo.len()];
        if !conflicts(combo[i].mode, next.held.mode) {
            return None;
        }
    }
    let threads: HashSet<i32> = combo.iter().map(|e| e.tid).collect();
    if threads.len() < 2 {
        return Some(Verdict::OneThread);
    }
    // Two edges can be in progress at once unless one's acquisition happens
    // before the other's hold began.
    for (i, a) in combo.iter().enumerate() {
        for b in &combo[i + 1..] {
            if a.tid != b.tid
                && (hb.ordered((a.tid, a.seq), (b.tid, b.held.seq))
                    || hb.ordered((b.tid, b.seq), (a.tid, a.held.seq)))
            {
                return Some(Verdict::Ordered);
            }
        }
    }
    Some(Verdict::Deadlock)
}

/// Picks the worst verdict over the combinations of instances of `cycle`.
fn best_combo<'g>(
    g: &'g LockGraph,
    cycle: &[LockId],
    hb: &HappensBefore,
) -> Option<(Verdict, Vec<&'g EdgeInstance>)> {
    let lists: Vec<&Vec<EdgeInstance>> = (0..cycle.len())
        .map(|i| &g.edges[&(cycle[i], cycle[(i + 1) % cycle.len()])])
        .collect();
    let mut best: Option<(Verdict, Vec<&EdgeInstance>)> = None;
    let mut idx = vec![0usize; lists.len()];
    let mut tried = 0;
    loop {
        let combo: Vec<&EdgeInstance> = idx.iter().zip(&lists).map(|(&i, l)| &l[i]).collect();
        if let Some(v) = judge(&combo, hb) {
            if best.as_ref().is_none_or(|(b, _)| v < *b) {
                best = Some((v, combo));
            }
        }
        tried += 1;
        if tried > 4096 || best.as_ref().is_some_and(|(v, _)| *v == Verdict::Deadlock) {
            break;
        }
        // Next combination (odometer).
        let mut k = 0;
        loop {
            if k == idx.len() {
                return best;
            }
            idx[k] += 1;
            if idx[k] < lists[k].len() {
                break;
            }
            idx[k] = 0;
            k += 1;
        }
    }
    best
}

/// A short name for a lock: its kind and variable name (or address).
pub fn lock_name(loc: &mut dyn Locator, kinds: &BTreeMap<LockId, LockKind>, l: LockId) -> String {
    let kind = kinds.get(&l).map(|k| k.name()).unwrap_or("lock");
    object_label(loc, kind, l.pid, l.obj)
}

/// Every lock-order inversion of the run, as findings.
pub fn findings(ops: &[SyncOp], spawns: &[Spawn], loc: &mut dyn Locator) -> Vec<Finding> {
    let g = LockGraph::build(ops);
    let hb = HappensBefore::build(spawns, ops);
    let mut out = Vec::new();
    for cycle in g.cycles() {
        let Some((verdict, combo)) = best_combo(&g, &cycle, &hb) else {
            continue;
        };
        let names: Vec<String> = cycle.iter().map(|&l| lock_name(loc, &g.kinds, l)).collect();
        let (severity, reason) = match verdict {
            Verdict::Deadlock => (Severity::Error, None),
            Verdict::Ordered => (
                Severity::Warning,
                Some("cannot deadlock in this run: the threads' lock sequences are ordered by thread creation/join"),
            ),
            Verdict::OneThread => (Severity::Warning, Some("cannot deadlock in this run: every edge comes from one thread")),
        };
        let mut locations = Vec::new();
        let mut edges = Vec::new();
        for (i, e) in combo.iter().enumerate() {
            let from = &names[i];
            let to = &names[(i + 1) % names.len()];
            let held = location(
                loc,
                &format!("thread {} holds {from}", e.tid),
                e.pid,
                e.tid,
                e.held.seq,
                &e.held.stack,
            );
            let acq = location(
                loc,
                &format!("thread {} acquires {to}", e.tid),
                e.pid,
                e.tid,
                e.seq,
                &e.stack,
            );
            edges.push(json!({
                "tid": e.tid, "holds": from, "acquires": to,
                "held_at": held.file.as_ref().map(|f| format!("{f}:{}", held.line.unwrap_or(0))),
                "acquired_at": acq.file.as_ref().map(|f| format!("{f}:{}", acq.line.unwrap_or(0))),
                "held_seq": e.held.seq, "acquire_seq": e.seq,
            }));
            locations.push(held);
            locations.push(acq);
        }
        let mut tids: Vec<i32> = combo.iter().map(|e| e.tid).collect();
        tids.sort();
        tids.dedup();
        let mut pids: Vec<i32> = combo.iter().map(|e| e.pid).collect();
        pids.sort();
        pids.dedup();
        let order = names
            .iter()
            .chain(names.first())
            .cloned()
            .collect::<Vec<_>>()
            .join(" -> ");
        out.push(Finding {
            kind: "lock_order_inversion".into(),
            severity,
            summary: format!(
                "lock order inversion: {order} ({} locks, threads {})",
                cycle.len(),
                join_ids(&tids)
            ),
            pids,
            tids,
            locations,
            details: json!({"cycle": names, "edges": edges, "reason": reason}),
        });
    }
    out
}

fn join_ids(ids: &[i32]) -> String {
    ids.iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
