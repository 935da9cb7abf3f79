//! Vector clocks for the race detector, indexed by dense thread numbers.
//!
//! An entry is a sequence number, not a per-thread counter: entry `t` of
//! thread `u`'s clock is the seq of the latest event of `t` that `u` has
//! synchronized with (a release `u` acquired, directly or through other
//! threads). Because a memory segment's seq is drawn after its accesses and
//! before its thread's next sync op, an access of `t` at seq `s` happens
//! before the current point of `u` exactly when `clock_u[t] >= s`, so the
//! detector never has to count events per thread.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A dense thread number (index into the detector's per-thread tables).
pub type ThreadIx = u32;

/// A vector clock: entry `i` is the seq of the latest event of thread `i`
/// known to happen before the clock's point. Missing entries are 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VClock(Vec<u64>);

impl VClock {
    pub fn new() -> Self {
        VClock(Vec::new())
    }

    pub fn get(&self, t: ThreadIx) -> u64 {
        self.0.get(t as usize).copied().unwrap_or(0)
    }

    /// Raises entry `t` to `seq` (entries never go down).
    pub fn advance(&mut self, t: ThreadIx, seq: u64) {
        let i = t as usize;
        if self.0.len() <= i {
            self.0.resize(i + 1, 0);
        }
        self.0[i] = self.0[i].max(seq);
    }

    /// Pointwise maximum with `other`: everything `other` knows, this knows.
    pub fn join(&mut self, other: &VClock) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (a, &b) in self.0.iter_mut().zip(&other.0) {
            *a = (*a).max(b);
        }
    }

    /// Whether the event of thread `t` at `seq` happens before this clock's point.
    pub fn covers(&self, t: ThreadIx, seq: u64) -> bool {
        self.get(t) >= seq
    }
}

/// Dense numbers for thread ids, in order of first appearance.
#[derive(Default)]
pub struct Threads {
    index: HashMap<i32, ThreadIx>,
    tids: Vec<i32>,
}

impl Threads {
    /// The number of `tid`, assigned on first use.
    pub fn ix(&mut self, tid: i32) -> ThreadIx {
        if let Some(&i) = self.index.get(&tid) {
            return i;
        }
        let i = self.tids.len() as ThreadIx;
        self.tids.push(tid);
        self.index.insert(tid, i);
        i
    }

    /// The thread id of number `i`.
    pub fn tid(&self, i: ThreadIx) -> i32 {
        self.tids[i as usize]
    }

    pub fn len(&self) -> usize {
        self.tids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tids.is_empty()
    }
}

/// A fast hasher for integer keys (addresses, ids): the shadow memory does
/// one lookup per access, and SipHash would be a third of the detector's time.
#[derive(Default, Clone, Copy)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        // Fold the high bits down: hashbrown takes the top 7 bits for its
        // control bytes and the low bits for the bucket.
        self.0 ^ (self.0 >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }
    fn write_i32(&mut self, n: i32) {
        self.write_u64(n as u32 as u64);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A `HashMap` with [`IntHasher`].
pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_and_cover() {
        let mut a = VClock::new();
        a.advance(2, 10);
        let mut b = VClock::new();
        b.advance(0, 5);
        b.advance(2, 7);
        b.join(&a);
        assert!(b.covers(2, 10) && b.covers(0, 5) && !b.covers(0, 6) && !b.covers(1, 1));
        assert!(b.covers(3, 0));
    }
}
