//! Shadow memory: the Eraser state of every byte a program touched.
//!
//! Memory is looked up by 8-byte granule (one hash lookup per granule an
//! access covers), and a granule is split into parts by byte mask only when
//! accesses of different widths or offsets share it: an aligned `int`
//! array costs two parts per granule, a `double` array one. Each part is a
//! [`Cell`], so the state is exact to the byte (two threads writing adjacent
//! `char`s never race) while the common case stays one cell per word.
//!
//! A cell runs Eraser's state machine, refined by happens-before:
//!
//! - **virgin** → **exclusive(t)** on the first access;
//! - any state → **exclusive(u)** when every recorded earlier access
//!   happens before this one (ownership transfer: init before create,
//!   join then read, condvar/semaphore hand-off, barrier phases);
//! - **exclusive(t)** → **shared** on an unordered read by another thread,
//!   → **shared-modified** on an unordered write, or on a read of a write
//!   that nothing orders before it, not even a lock hand-over (Eraser's
//!   shared state is for data initialised and then published; a mutex
//!   publishes for this purpose, although for the verdict only the lockset
//!   judges mutexes). The candidate set C(v)
//!   starts as the locks of this access intersected with those of every
//!   earlier unordered conflicting access (plain Eraser starts from this
//!   access alone; the intersection also catches inconsistent locking when
//!   this run happened to serialize the threads);
//! - **shared** → **shared-modified** on a write (or such a read); in both, C(v) is refined
//!   with the write-mode locks for a write, any-mode locks for a read.
//!
//! A race is reported in shared-modified with C(v) = ∅, for each recorded
//! access of another thread that conflicts with this one (one of them a
//! write), does not happen before it, and holds no lock in common with it
//! (once C(v) is empty, a check under the lock and an update under the
//! same lock are still no race with each other). On entering
//! shared-modified, the reads that made the location shared are checked
//! against the write before them too: Eraser let them pass as readers of
//! initialised data, which a second write disproves. A cell records the last write and,
//! since it, the last read of each thread (a write clears them, as in
//! FastTrack: earlier reads either raced with it or happen before it).

use crate::lockset::{Locksets, SetId, EMPTY};
use crate::vclock::{IntMap, ThreadIx, VClock};
use std::collections::HashMap;

/// One recorded access, small enough to keep per cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acc {
    pub thread: ThreadIx,
    /// The code location (detector's site table).
    pub site: u32,
    /// The lockset protecting it (write-mode locks for a write).
    pub locks: SetId,
    /// The thread's context: its most recent sync op (detector's table).
    pub ctx: u32,
    pub seq: u64,
}

/// Eraser's states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Virgin,
    Exclusive,
    Shared,
    SharedModified,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Virgin => "virgin",
            State::Exclusive => "exclusive",
            State::Shared => "shared",
            State::SharedModified => "shared-modified",
        }
    }
}

#[derive(Clone, Debug)]
struct Cell {
    state: State,
    owner: ThreadIx,
    cand: SetId,
    write: Option<Acc>,
    reads: Vec<Acc>,
}

const VIRGIN: Cell = Cell {
    state: State::Virgin,
    owner: 0,
    cand: EMPTY,
    write: None,
    reads: Vec::new(),
};

/// Two accesses that race.
#[derive(Clone, Debug)]
pub struct Conflict {
    /// The bytes (of one granule) where they overlap.
    pub addr: u64,
    pub len: u32,
    pub prev: Acc,
    pub prev_write: bool,
    pub cur: Acc,
    pub cur_write: bool,
    /// The cell's state before the current access, and its owner then.
    pub from: State,
    pub from_owner: ThreadIx,
}

/// The current access, as the detector hands it to the shadow.
pub struct Access<'a> {
    pub acc: Acc,
    pub write: bool,
    /// The current clock of the accessing thread.
    pub clock: &'a VClock,
    /// The current clocks of all threads (by number).
    pub clocks: &'a [VClock],
    /// The accessing thread's clock counting lock hand-overs too.
    pub lock_clock: &'a VClock,
}

/// Parts of a granule: (byte mask, cell), masks disjoint.
type Granule = Vec<(u8, Cell)>;

/// Shadow memory of every process.
#[derive(Default)]
pub struct Shadow {
    procs: HashMap<i32, IntMap<u64, Granule>>,
}

fn mask(lo: u64, hi: u64) -> u8 {
    (((1u16 << hi) - (1u16 << lo)) & 0xff) as u8
}

impl Shadow {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes being tracked (parts), for statistics.
    pub fn granules(&self) -> usize {
        self.procs.values().map(|m| m.len()).sum()
    }

    /// Applies an access of `size` bytes at `addr` of process `pid`.
    pub fn access(
        &mut self,
        pid: i32,
        addr: u64,
        size: u64,
        a: &Access<'_>,
        sets: &mut Locksets,
        out: &mut dyn FnMut(Conflict),
    ) {
        let map = self.procs.entry(pid).or_default();
        let end = addr.saturating_add(size.max(1));
        let mut at = addr;
        while at < end {
            let g = at >> 3;
            let base = g << 3;
            let hi = (end - base).min(8);
            let m = mask(at - base, hi);
            let granule = map.entry(g).or_default();
            Step { a, sets, out }.granule(granule, base, m);
            at = base + 8;
        }
    }

    /// Forgets `[addr, addr + size)` of `pid`: the memory is a new location
    /// (a block returned by malloc).
    pub fn reset(&mut self, pid: i32, addr: u64, size: u64) {
        let Some(map) = self.procs.get_mut(&pid) else {
            return;
        };
        let end = addr.saturating_add(size);
        let clear = |g: u64, granule: &mut Granule| {
            let base = g << 3;
            let m = mask(addr.max(base) - base, (end - base).min(8));
            granule.retain_mut(|(k, _)| {
                *k &= !m;
                *k != 0
            });
        };
        if size / 8 > map.len() as u64 {
            map.retain(|&g, granule| {
                if (g << 3) + 8 > addr && (g << 3) < end {
                    clear(g, granule);
                }
                !granule.is_empty()
            });
            return;
        }
        for g in (addr >> 3)..end.div_ceil(8) {
            if let Some(granule) = map.get_mut(&g) {
                clear(g, granule);
                if granule.is_empty() {
                    map.remove(&g);
                }
            }
        }
    }
}

/// One access being applied: what each touched cell needs.
struct Step<'s, 'a> {
    a: &'s Access<'a>,
    sets: &'s mut Locksets,
    out: &'s mut dyn FnMut(Conflict),
}

impl Step<'_, '_> {
    /// Applies the access to the bytes `m` of the granule at `base`.
    fn granule(&mut self, granule: &mut Granule, base: u64, m: u8) {
        let mut rest = m;
        let mut split: Vec<(u8, Cell)> = Vec::new();
        for (k, cell) in granule.iter_mut() {
            let hit = *k & m;
            if hit == 0 {
                continue;
            }
            if hit != *k {
                // Only some bytes of this part are touched: they go their own way.
                split.push((*k & !m, cell.clone()));
                *k = hit;
            }
            self.cell(cell, base, hit);
            rest &= !hit;
        }
        granule.extend(split);
        if rest != 0 {
            let mut cell = VIRGIN;
            self.cell(&mut cell, base, rest);
            granule.push((rest, cell));
        }
    }

    /// Eraser's transition of one cell (module docs).
    fn cell(&mut self, cell: &mut Cell, base: u64, bytes: u8) {
        let (a, sets, out) = (self.a, &mut *self.sets, &mut *self.out);
        let u = a.acc.thread;
        let before = |r: &Acc| r.thread == u || a.clock.covers(r.thread, r.seq);
        let (from, from_owner) = (cell.state, cell.owner);
        let all_before = cell.write.as_ref().is_none_or(before) && cell.reads.iter().all(before);
        // A read of a write that not even a lock hand-over orders before it
        // is no reader of initialised data (Eraser's shared state) but a
        // concurrent modification.
        let published = cell
            .write
            .as_ref()
            .is_none_or(|w| w.thread == u || a.lock_clock.covers(w.thread, w.seq));
        if cell.state == State::Virgin || all_before {
            cell.state = State::Exclusive;
            cell.owner = u;
        } else {
            match cell.state {
                State::Exclusive => {
                    let mut c = a.acc.locks;
                    let conflicting =
                        cell.write
                            .iter()
                            .chain(if a.write { &cell.reads[..] } else { &[] });
                    for r in conflicting.filter(|r| !before(r)) {
                        c = sets.meet(c, r.locks);
                    }
                    cell.cand = c;
                    cell.state = if a.write || !published {
                        State::SharedModified
                    } else {
                        State::Shared
                    };
                }
                State::Shared | State::SharedModified => {
                    cell.cand = sets.meet(cell.cand, a.acc.locks);
                    if a.write || !published {
                        cell.state = State::SharedModified;
                    }
                }
                State::Virgin => unreachable!("handled above"),
            }
            if cell.state == State::SharedModified && cell.cand == EMPTY {
                let lo = bytes.trailing_zeros();
                let len = 8 - bytes.leading_zeros() - lo;
                let mut report = |prev: &Acc, prev_write: bool, cur: &Acc, cur_write: bool| {
                    // C(v) = ∅ says the location has no consistent lock; a
                    // pair that does share one is not itself a race.
                    if sets.meet(prev.locks, cur.locks) != EMPTY {
                        return;
                    }
                    out(Conflict {
                        addr: base + lo as u64,
                        len,
                        prev: *prev,
                        prev_write,
                        cur: *cur,
                        cur_write,
                        from,
                        from_owner,
                    })
                };
                if let Some(w) = cell.write.as_ref().filter(|w| !before(w)) {
                    report(w, true, &a.acc, a.write);
                }
                if a.write {
                    for r in cell.reads.iter().filter(|r| !before(r)) {
                        report(r, false, &a.acc, true);
                    }
                }
                if from != State::SharedModified {
                    // The reads that made the location shared after a write
                    // were not reported then (Eraser's shared state
                    // tolerates initialisation); now that it is written
                    // again they are races too. A reader's current clock
                    // knows at least what it knew then: if even that does
                    // not cover the write, the two are unordered.
                    if let Some(w) = &cell.write {
                        for r in cell.reads.iter().filter(|r| r.thread != w.thread) {
                            if !a.clocks[r.thread as usize].covers(w.thread, w.seq) {
                                report(w, true, r, false);
                            }
                        }
                    }
                }
            }
        }
        if a.write {
            cell.write = Some(a.acc);
            cell.reads.clear();
        } else if let Some(r) = cell.reads.iter_mut().find(|r| r.thread == u) {
            *r = a.acc;
        } else {
            cell.reads.push(a.acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask(0, 8), 0xff);
        assert_eq!(mask(0, 4), 0x0f);
        assert_eq!(mask(4, 8), 0xf0);
        assert_eq!(mask(3, 4), 0x08);
    }
}
