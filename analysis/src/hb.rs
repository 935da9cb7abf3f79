//! Happens-before between threads from thread creation and join: vector
//! clocks whose entries are sequence numbers. A thread's events up to its
//! creation of a child happen before everything the child does; everything
//! a joined thread did happens before the join returns.

use crate::ops::{effect, Effect};
use lockstep_trace::{Spawn, SpawnKind, SyncOp};
use std::collections::HashMap;

type Clock = HashMap<i32, u64>;

/// Vector clocks of every thread, as snapshots at the points they change.
#[derive(Default)]
pub struct HappensBefore {
    snapshots: HashMap<i32, Vec<(u64, Clock)>>,
}

enum Step {
    Spawn { child: i32, creator: i32 },
    Join { joiner: i32, pid: i32, pthread: u64 },
}

impl HappensBefore {
    /// Builds the clocks from thread spawns (of the trace) and join ops.
    pub fn build(spawns: &[Spawn], ops: &[SyncOp]) -> Self {
        let mut steps: Vec<(u64, Step)> = Vec::new();
        for s in spawns {
            if let (
                SpawnKind::Thread | SpawnKind::Fork | SpawnKind::Vfork | SpawnKind::Clone,
                Some(c),
            ) = (s.kind, s.creator_tid)
            {
                steps.push((
                    s.at.seq.0,
                    Step::Spawn {
                        child: s.tid.0,
                        creator: c.0,
                    },
                ));
            }
        }
        // pthread_t values name threads; they are reused after a join, so
        // the latest start before a join is the one joined.
        let mut starts: HashMap<(i32, u64), Vec<(u64, i32)>> = HashMap::new();
        for op in ops {
            match effect(op) {
                Effect::ThreadStart { pthread } => {
                    starts
                        .entry((op.pid.0, pthread))
                        .or_default()
                        .push((op.at.seq.0, op.tid.0));
                }
                Effect::Join { pthread } => {
                    steps.push((
                        op.at.seq.0,
                        Step::Join {
                            joiner: op.tid.0,
                            pid: op.pid.0,
                            pthread,
                        },
                    ));
                }
                _ => {}
            }
        }
        steps.sort_by_key(|(s, _)| *s);
        let mut hb = HappensBefore::default();
        let mut current: HashMap<i32, Clock> = HashMap::new();
        for (seq, step) in steps {
            match step {
                Step::Spawn { child, creator } => {
                    let mut c = current.get(&creator).cloned().unwrap_or_default();
                    c.insert(creator, seq);
                    current.insert(child, c.clone());
                    hb.snapshots.entry(child).or_default().push((seq, c));
                }
                Step::Join {
                    joiner,
                    pid,
                    pthread,
                } => {
                    let Some(child) = starts.get(&(pid, pthread)).and_then(|v| {
                        v.iter()
                            .filter(|(s, _)| *s < seq)
                            .map(|&(_, t)| t)
                            .next_back()
                    }) else {
                        continue;
                    };
                    let mut c = current.get(&joiner).cloned().unwrap_or_default();
                    for (&t, &s) in current.get(&child).into_iter().flatten() {
                        let e = c.entry(t).or_insert(0);
                        *e = (*e).max(s);
                    }
                    // Everything the child did happened before the join returned.
                    c.insert(child, seq);
                    current.insert(joiner, c.clone());
                    hb.snapshots.entry(joiner).or_default().push((seq, c));
                }
            }
        }
        hb
    }

    /// Whether the event of thread `a.0` at seq `a.1` happens before the
    /// event of thread `b.0` at seq `b.1`.
    pub fn ordered(&self, a: (i32, u64), b: (i32, u64)) -> bool {
        if a.0 == b.0 {
            return a.1 < b.1;
        }
        let Some(snaps) = self.snapshots.get(&b.0) else {
            return false;
        };
        snaps
            .iter()
            .rfind(|(s, _)| *s <= b.1)
            .and_then(|(_, c)| c.get(&a.0))
            .is_some_and(|&s| s >= a.1)
    }
}
