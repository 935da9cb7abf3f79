//! A segment's distinct accesses, collected from the raw buffer.
//!
//! An instrumented instruction's access is keyed by its site and the
//! 64-byte line it starts in; the table slot of `(site, line)` keeps a
//! 64-bit mask of the byte offsets where accesses started. A loop sweeping
//! an array through one instruction updates one slot eight times (for
//! `double`s) before it moves to the next, so a raw entry costs a hash of
//! a slot that is almost always in L1, and the table holds an eighth of the
//! entries a per-address table would. The table starts small and doubles
//! (its slots are rehashed) when half full, so a thread that touches little
//! memory touches few pages. Writing the segment expands every slot's mask
//! back into one [`MemEntry`] per distinct access, exactly what a table of
//! `(address, instruction, size, kind)` would have kept.
//!
//! libc ranges (memcpy, strlen... at a call site) are rare and wide: they
//! go to a second, per-entry table.
//!
//! Everything lives in one per-thread mapping of the caller's, [`BYTES`]
//! long; no allocation, no locks, never reentered.

use core::cell::Cell;
use lockstep_agent_abi::MemEntry;

use super::sites::Map;

/// Distinct accesses a segment collects before it is written in parts.
pub const MAX_DISTINCT: usize = 8 * super::segment::BUF_ENTRIES;
/// Line-table slots at most (a power of two, twice MAX_DISTINCT).
const MAX_SLOTS: usize = 2 * MAX_DISTINCT;
/// Line-table slots at first.
const MIN_SLOTS: usize = 1024;
/// Distinct ranges a segment collects before it is written in parts.
pub const MAX_RANGES: usize = super::segment::BUF_ENTRIES;
const RANGE_SLOTS: usize = 2 * MAX_RANGES;

/// One `(site, line)` of the line table; `site1` 0 marks an empty slot.
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Slot {
    line: u64,
    mask: u64,
    site1: u32,
    _pad: u32,
}

/// Bytes of the tables and lists [`Dedup`] uses, after the caller's own.
pub const BYTES: usize = MAX_SLOTS * 24 + MAX_DISTINCT * 4 + RANGE_SLOTS * 24 + MAX_RANGES * 24;

/// Where the parts are, from the start of the dedup area.
const USED_AT: usize = MAX_SLOTS * 24;
const RTABLE_AT: usize = USED_AT + MAX_DISTINCT * 4;
const RLIST_AT: usize = RTABLE_AT + RANGE_SLOTS * 24;

/// The open segment's tables (the counters; the memory is the caller's).
pub struct Dedup {
    /// Line-table slots in use now (a power of two), 0 before the first use.
    cap: Cell<usize>,
    /// Slots used (their indices are listed in order of first use).
    used: Cell<usize>,
    /// Distinct accesses so far: set mask bits plus ranges.
    distinct: Cell<usize>,
    /// Distinct ranges so far.
    ranges: Cell<usize>,
}

impl Default for Dedup {
    fn default() -> Self {
        Self::new()
    }
}

impl Dedup {
    pub const fn new() -> Self {
        Dedup {
            cap: Cell::new(0),
            used: Cell::new(0),
            distinct: Cell::new(0),
            ranges: Cell::new(0),
        }
    }

    /// Distinct accesses collected.
    pub fn distinct(&self) -> usize {
        self.distinct.get()
    }

    /// Whether `raw` more raw entries could overflow the tables.
    pub fn full_for(&self, raw: usize) -> bool {
        self.distinct.get() + raw > MAX_DISTINCT || self.ranges.get() + raw / 2 > MAX_RANGES
    }

    /// Adds an access of instruction `site` at `addr`.
    ///
    /// # Safety
    /// `area` is the dedup area (BYTES), `full_for` was false for the raw
    /// entries being added, and `out` (MAX_DISTINCT entries) is not in use.
    pub unsafe fn add_site(&self, area: usize, out: *mut MemEntry, site: u32, addr: u64) {
        if self.cap.get() == 0 {
            self.cap.set(MIN_SLOTS);
        }
        if (self.used.get() + 1) * 2 > self.cap.get() {
            // SAFETY: the caller's guarantee.
            unsafe { self.grow(area, out) };
        }
        let (line, bit) = (addr >> 6, 1u64 << (addr & 63));
        // SAFETY: the caller's guarantee; the table is at most half full.
        let slot = unsafe { &mut *self.find(area, site, line) };
        if slot.site1 == 0 {
            *slot = Slot {
                line,
                mask: 0,
                site1: site + 1,
                _pad: 0,
            };
            let i = (slot as *mut Slot as usize - area) / 24;
            // SAFETY: used < MAX_DISTINCT (a slot has a bit at least).
            unsafe { *((area + USED_AT) as *mut u32).add(self.used.get()) = i as u32 };
            self.used.set(self.used.get() + 1);
        }
        if slot.mask & bit == 0 {
            slot.mask |= bit;
            self.distinct.set(self.distinct.get() + 1);
        }
    }

    /// The slot of `(site, line)`, or the empty slot where it goes.
    ///
    /// # Safety
    /// As for [`Dedup::add_site`].
    unsafe fn find(&self, area: usize, site: u32, line: u64) -> *mut Slot {
        let cap = self.cap.get();
        let h = (line ^ (site as u64).rotate_left(40)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut i = (h >> 32) as usize & (cap - 1);
        loop {
            // SAFETY: i < cap <= MAX_SLOTS.
            let s = unsafe { (area as *mut Slot).add(i) };
            // SAFETY: as above.
            let v = unsafe { &*s };
            if v.site1 == 0 || (v.site1 == site + 1 && v.line == line) {
                return s;
            }
            i = (i + 1) & (cap - 1);
        }
    }

    /// Doubles the line table, rehashing the used slots through `out`.
    ///
    /// # Safety
    /// As for [`Dedup::add_site`].
    unsafe fn grow(&self, area: usize, out: *mut MemEntry) {
        let n = self.used.get();
        let tmp = out as *mut Slot;
        let used = (area + USED_AT) as *mut u32;
        // SAFETY: n <= MAX_DISTINCT slots fit in `out` (24 bytes each); the
        // indices listed are slots of the current table.
        unsafe {
            for k in 0..n {
                let i = *used.add(k) as usize;
                *tmp.add(k) = *(area as *const Slot).add(i);
            }
            core::ptr::write_bytes(area as *mut Slot, 0, self.cap.get());
        }
        self.cap.set((self.cap.get() * 2).min(MAX_SLOTS));
        for k in 0..n {
            // SAFETY: as above; the new table is empty and larger.
            unsafe {
                let v = *tmp.add(k);
                let s = self.find(area, v.site1 - 1, v.line);
                *s = v;
                *used.add(k) = ((s as usize - area) / 24) as u32;
            }
        }
    }

    /// Adds a libc range.
    ///
    /// # Safety
    /// As for [`Dedup::add_site`].
    pub unsafe fn add_range(&self, area: usize, e: &MemEntry) {
        let table = (area + RTABLE_AT) as *mut MemEntry;
        let mut i = range_hash(e);
        loop {
            // SAFETY: i < RANGE_SLOTS; fewer than half are used.
            let slot = unsafe { &mut *table.add(i) };
            if slot.size == 0 {
                *slot = *e;
                // SAFETY: ranges < MAX_RANGES (full_for).
                unsafe { *((area + RLIST_AT) as *mut MemEntry).add(self.ranges.get()) = *e };
                self.ranges.set(self.ranges.get() + 1);
                self.distinct.set(self.distinct.get() + 1);
                return;
            }
            if slot == e {
                return;
            }
            i = (i + 1) & (RANGE_SLOTS - 1);
        }
    }

    /// Writes the distinct accesses to `out` and empties the tables;
    /// returns how many there are.
    ///
    /// # Safety
    /// `area` as for [`Dedup::add_site`]; `out` has MAX_DISTINCT entries.
    pub unsafe fn drain(&self, area: usize, out: *mut MemEntry, map: Option<&Map>) -> usize {
        let mut n = 0;
        let used = (area + USED_AT) as *const u32;
        for k in 0..self.used.get() {
            // SAFETY: listed slots of the table.
            let s = unsafe { &mut *(area as *mut Slot).add(*used.add(k) as usize) };
            let (line, mut mask) = (s.line, s.mask);
            let site = map.and_then(|m| m.site(s.site1 - 1));
            *s = Slot::default();
            let Some(site) = site else { continue };
            while mask != 0 {
                let bit = mask.trailing_zeros() as u64;
                mask &= mask - 1;
                let e = MemEntry {
                    addr: line << 6 | bit,
                    ip: site.ip,
                    size: site.size,
                    flags: site.flags,
                    via: 0,
                    _pad: 0,
                };
                // SAFETY: n < distinct <= MAX_DISTINCT.
                unsafe { *out.add(n) = e };
                n += 1;
            }
        }
        let table = (area + RTABLE_AT) as *mut MemEntry;
        for k in 0..self.ranges.get() {
            // SAFETY: the listed ranges; their table slots are cleared.
            unsafe {
                let e = *((area + RLIST_AT) as *const MemEntry).add(k);
                clear_range(table, &e);
                *out.add(n) = e;
            }
            n += 1;
        }
        self.used.set(0);
        self.distinct.set(0);
        self.ranges.set(0);
        n
    }
}

fn range_hash(e: &MemEntry) -> usize {
    let h = e.addr
        ^ e.ip.rotate_left(29)
        ^ ((e.size as u64) << 56)
        ^ ((e.flags as u64) << 48)
        ^ ((e.via as u64) << 40);
    (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize & (RANGE_SLOTS - 1)
}

/// Empties the slot holding `e` (every used slot is cleared after each
/// segment, so linear probing needs no tombstones).
///
/// # Safety
/// `table` points to RANGE_SLOTS entries.
unsafe fn clear_range(table: *mut MemEntry, e: &MemEntry) {
    let mut i = range_hash(e);
    for _ in 0..RANGE_SLOTS {
        // SAFETY: i < RANGE_SLOTS.
        let slot = unsafe { &mut *table.add(i) };
        if slot == e {
            *slot = MemEntry::default();
            return;
        }
        i = (i + 1) & (RANGE_SLOTS - 1);
    }
}
