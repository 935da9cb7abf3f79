//! Locksets for the race detector: interned sets of lock instances, with
//! memoized intersections, and each thread's current sets.
//!
//! A thread has two sets at any time (Eraser's rule for readers-writer
//! locks): the locks it holds in write mode (mutexes, spinlocks, rwlocks
//! write-locked), which protect its writes, and the locks it holds in any
//! mode (rwlocks read-locked too), which protect its reads. The candidate
//! set C(v) of a location is refined with the first for a write and the
//! second for a read. Sets are numbered once, so a cell of shadow memory
//! holds a `u32`, and refining is a memo lookup.

use crate::locks::{Held, LockId, Tracker};
use crate::ops::{effect, Effect, LockKind, Mode};
use crate::vclock::IntMap;
use lockstep_trace::SyncOp;
use std::collections::HashMap;

/// An interned lockset; [`EMPTY`] is the empty set.
pub type SetId = u32;
pub const EMPTY: SetId = 0;

/// The sets a thread holds now: (write-protecting, read-protecting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Holding {
    pub write: SetId,
    pub read: SetId,
}

impl Holding {
    /// The set that protects an access of this kind.
    pub fn for_access(self, write: bool) -> SetId {
        if write {
            self.write
        } else {
            self.read
        }
    }
}

/// Interned locks and locksets, plus the lock tracker that says who holds what.
pub struct Locksets {
    tracker: Tracker,
    locks: Vec<(LockId, LockKind)>,
    lock_ix: HashMap<LockId, u32>,
    sets: Vec<Vec<u32>>,
    set_ix: HashMap<Vec<u32>, SetId>,
    meets: IntMap<(SetId, SetId), SetId>,
    holding: IntMap<i32, Holding>,
}

impl Default for Locksets {
    fn default() -> Self {
        let mut set_ix = HashMap::new();
        set_ix.insert(Vec::new(), EMPTY);
        Locksets {
            tracker: Tracker::new(),
            locks: Vec::new(),
            lock_ix: HashMap::new(),
            sets: vec![Vec::new()],
            set_ix,
            meets: IntMap::default(),
            holding: IntMap::default(),
        }
    }
}

impl Locksets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one sync op to the lock state; recomputes the thread's sets
    /// when the op can have changed what it holds.
    pub fn apply(&mut self, op: &SyncOp) {
        let changes = !matches!(
            effect(op),
            Effect::Other
                | Effect::ThreadStart { .. }
                | Effect::Join { .. }
                | Effect::Request { .. }
        );
        self.tracker.apply(op, &mut |_| {});
        if changes {
            let held = self.tracker.held(op.tid.0).to_vec();
            let h = self.holding_of(&held);
            self.holding.insert(op.tid.0, h);
        }
    }

    /// What thread `tid` holds now.
    pub fn holding(&self, tid: i32) -> Holding {
        self.holding.get(&tid).copied().unwrap_or_default()
    }

    fn holding_of(&mut self, held: &[Held]) -> Holding {
        let mut write = Vec::new();
        let mut read = Vec::new();
        for h in held {
            let l = self.lock(h.lock, h.kind);
            read.push(l);
            if h.mode == Mode::Exclusive {
                write.push(l);
            }
        }
        Holding {
            write: self.intern(write),
            read: self.intern(read),
        }
    }

    fn lock(&mut self, id: LockId, kind: LockKind) -> u32 {
        if let Some(&i) = self.lock_ix.get(&id) {
            return i;
        }
        let i = self.locks.len() as u32;
        self.locks.push((id, kind));
        self.lock_ix.insert(id, i);
        i
    }

    fn intern(&mut self, mut v: Vec<u32>) -> SetId {
        v.sort_unstable();
        v.dedup();
        if let Some(&i) = self.set_ix.get(&v) {
            return i;
        }
        let i = self.sets.len() as SetId;
        self.sets.push(v.clone());
        self.set_ix.insert(v, i);
        i
    }

    /// `h` plus the spinlock at `addr` of `pid`: a critical section of a
    /// lock the program built itself on atomic instructions (see
    /// [`crate::race`]). Told apart from a pthread lock at that address.
    pub fn with_spin(&mut self, h: Holding, pid: i32, addr: u64) -> Holding {
        let id = LockId {
            pid,
            obj: addr,
            generation: u32::MAX,
        };
        let l = self.lock(id, LockKind::Spin);
        let mut add = |s: SetId| {
            let mut v = self.sets[s as usize].clone();
            v.push(l);
            self.intern(v)
        };
        Holding {
            write: add(h.write),
            read: add(h.read),
        }
    }

    /// The intersection of two sets.
    pub fn meet(&mut self, a: SetId, b: SetId) -> SetId {
        if a == b || b == EMPTY {
            return b;
        }
        if a == EMPTY {
            return a;
        }
        let key = (a.min(b), a.max(b));
        if let Some(&m) = self.meets.get(&key) {
            return m;
        }
        let v: Vec<u32> = self.sets[a as usize]
            .iter()
            .filter(|l| self.sets[b as usize].binary_search(l).is_ok())
            .copied()
            .collect();
        let m = self.intern(v);
        self.meets.insert(key, m);
        m
    }

    /// The locks of a set, as (instance, kind).
    pub fn members(&self, s: SetId) -> Vec<(LockId, LockKind)> {
        self.sets[s as usize]
            .iter()
            .map(|&l| self.locks[l as usize])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::OpsBuilder;

    #[test]
    fn read_locks_protect_reads_only() {
        let mut b = OpsBuilder::new();
        b.lock(1, 0x10).rdlock(1, 0x20);
        let (ops, _) = b.build();
        let mut ls = Locksets::new();
        for op in &ops {
            ls.apply(op);
        }
        let h = ls.holding(1);
        assert_eq!(ls.members(h.write).len(), 1);
        assert_eq!(ls.members(h.read).len(), 2);
        assert_eq!(ls.meet(h.read, h.write), h.write);
        assert_eq!(ls.meet(h.write, EMPTY), EMPTY);
    }
}
