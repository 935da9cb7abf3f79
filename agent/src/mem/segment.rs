//! The calling thread's accesses between two of its sync operations: the
//! raw buffer the probes append to, its deduplication into a segment, and
//! the segment's way into the thread's memory file.
//!
//! Raw entries are 16 bytes: `addr u64, site u32, aux u32` for an
//! instrumented instruction (size and kind come from the site table); a
//! libc range (memcpy...) takes two entries: `addr, RANGE|via<<8|flags,
//! size` then `ip, 0, 0`.
//!
//! A segment is closed (deduplicated by address, instruction, size and
//! kind, stamped with a sequence number from the global counter, appended
//! to the file) before every sync event the thread records, when the raw
//! buffer is full, and when the thread ends. Everything here runs inside
//! the agent (`Local::enter` held): never reentered, no locks, no malloc;
//! the three per-thread areas are mmap'd at the thread's first access.

use core::cell::Cell;
use lockstep_agent_abi::{MemEntry, MemRecord};

use super::memfile::MemFile;
use super::probe;
use super::sites;

/// Raw entries per buffer (16 bytes each).
pub const BUF_ENTRIES: usize = 16384;
const BUF_BYTES: usize = BUF_ENTRIES * 16;
/// Distinct accesses a segment collects before it is written in parts
/// (the raw buffer is absorbed into the table each time it fills, so a
/// loop over a few thousand addresses between two sync ops makes one
/// segment, not one per buffer).
const MAX_DISTINCT: usize = 8 * BUF_ENTRIES;
/// Deduplication table slots (a power of two, twice MAX_DISTINCT).
const TABLE_SLOTS: usize = 2 * MAX_DISTINCT;
const TABLE_BYTES: usize = TABLE_SLOTS * core::mem::size_of::<MemEntry>();
const OUT_BYTES: usize = MAX_DISTINCT * core::mem::size_of::<MemEntry>();
/// Marks a raw entry as the first half of a libc range.
pub const RANGE: u32 = 1 << 31;

/// Per-thread memory-capture state (no destructor: see `local`).
pub struct MemThread {
    /// Raw buffer, dedup table and output area: one mapping, 0 if none yet.
    area: Cell<usize>,
    file: Cell<Option<MemFile>>,
    /// The file could not be created: drop this thread's accesses.
    file_failed: Cell<bool>,
    /// Distinct accesses of the open segment, in the output area.
    distinct: Cell<usize>,
    /// An atomic instruction ran and its `Acquired` event is still to be
    /// written (the probe limit is 0 meanwhile, to catch the next access).
    pub pending: Cell<Option<(u64, u32, u64, u64)>>,
}

thread_local! {
    pub static MEM: MemThread = const {
        MemThread {
            area: Cell::new(0),
            file: Cell::new(None),
            file_failed: Cell::new(false),
            distinct: Cell::new(0),
            pending: Cell::new(None),
        }
    };
}

impl MemThread {
    /// The raw buffer, mapping the thread's areas first if needed; 0 when
    /// memory is exhausted.
    pub fn buffer(&self) -> usize {
        if self.area.get() == 0 {
            // SAFETY: an anonymous private mapping, ours alone.
            let p = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    BUF_BYTES + TABLE_BYTES + OUT_BYTES,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return 0;
            }
            self.area.set(p as usize);
            let slot = probe::cursor();
            // SAFETY: the calling thread's own TLS pair.
            unsafe { *slot = [p as usize, p as usize + BUF_BYTES] };
        }
        self.area.get()
    }

    /// Re-opens the probe fast path (after a pending event was written).
    pub fn open_fast_path(&self) {
        let buf = self.area.get();
        if buf != 0 {
            // SAFETY: the calling thread's own TLS pair.
            unsafe { (*probe::cursor())[1] = buf + BUF_BYTES };
        }
    }

    /// Closes the fast path: the next probe takes the slow path.
    pub fn close_fast_path(&self) {
        // SAFETY: the calling thread's own TLS pair.
        unsafe { (*probe::cursor())[1] = 0 };
    }

    /// Appends one raw entry (the slow path's, or half a range).
    fn push_raw(&self, a: u64, b: u32, c: u32) {
        let buf = self.buffer();
        if buf == 0 {
            return;
        }
        let slot = probe::cursor();
        // SAFETY: the thread's own TLS pair; the cursor stays inside the
        // buffer, which the caller flushed if it was full.
        unsafe {
            let cur = (*slot)[0];
            debug_assert!(cur + 16 <= buf + BUF_BYTES);
            core::ptr::write(cur as *mut u64, a);
            core::ptr::write((cur + 8) as *mut u32, b);
            core::ptr::write((cur + 12) as *mut u32, c);
            (*slot)[0] = cur + 16;
        }
    }

    /// Room left in the raw buffer, in entries.
    fn room(&self) -> usize {
        let buf = self.buffer();
        if buf == 0 {
            return 0;
        }
        // SAFETY: the thread's own TLS pair.
        let cur = unsafe { (*probe::cursor())[0] };
        (buf + BUF_BYTES).saturating_sub(cur) / 16
    }

    /// Appends an access of an instrumented instruction, closing the
    /// segment first if the buffer is full.
    pub fn push_access(&self, pid: i32, tid: i32, addr: u64, site: u32) {
        if self.room() < 1 {
            self.absorb(pid, tid);
        }
        self.push_raw(addr, site, 0);
    }

    /// Appends a libc range access (`range.ip` is the call site).
    pub fn push_range(&self, pid: i32, tid: i32, range: MemEntry) {
        if self.room() < 2 {
            self.absorb(pid, tid);
        }
        let code = RANGE | (range.via as u32) << 8 | range.flags as u32;
        self.push_raw(range.addr, code, range.size);
        self.push_raw(range.ip, 0, 0);
    }

    /// Closes the current segment: absorbs the raw entries, stamps the
    /// segment and appends it to the thread's file.
    pub fn flush(&self, pid: i32, tid: i32) {
        self.absorb(pid, tid);
        self.write(pid, tid);
    }

    /// Moves the raw buffer's entries into the open segment's table of
    /// distinct accesses, writing the segment so far first if the table
    /// could overflow.
    fn absorb(&self, pid: i32, tid: i32) {
        let buf = self.area.get();
        if buf == 0 {
            return;
        }
        if self.distinct.get() + BUF_ENTRIES > MAX_DISTINCT {
            self.write(pid, tid);
        }
        let slot = probe::cursor();
        // SAFETY: the thread's own TLS pair.
        let end = unsafe { (*slot)[0] };
        if end <= buf {
            return;
        }
        let table = (buf + BUF_BYTES) as *mut MemEntry;
        let out = (buf + BUF_BYTES + TABLE_BYTES) as *mut MemEntry;
        let map = sites::get();
        let mut n = self.distinct.get();
        let mut p = buf;
        while p < end {
            // SAFETY: [buf, end) holds whole raw entries written by this thread.
            let (a, b, c) = unsafe {
                (
                    core::ptr::read(p as *const u64),
                    core::ptr::read((p + 8) as *const u32),
                    core::ptr::read((p + 12) as *const u32),
                )
            };
            p += 16;
            let e = if b & RANGE != 0 {
                if p >= end {
                    break;
                }
                // SAFETY: the second half of the range entry.
                let ip = unsafe { core::ptr::read(p as *const u64) };
                p += 16;
                MemEntry {
                    addr: a,
                    ip,
                    size: c,
                    flags: (b & 0xff) as u8,
                    via: ((b >> 8) & 0xff) as u8,
                    _pad: 0,
                }
            } else {
                let Some(site) = map.and_then(|m| m.site(b)) else {
                    continue;
                };
                MemEntry {
                    addr: a,
                    ip: site.ip,
                    size: site.size,
                    flags: site.flags,
                    via: 0,
                    _pad: 0,
                }
            };
            // SAFETY: table and out are this thread's areas; n stays below
            // MAX_DISTINCT (checked above: at most BUF_ENTRIES are added).
            unsafe {
                if insert(table, &e) {
                    core::ptr::write(out.add(n), e);
                    n += 1;
                }
            }
        }
        // SAFETY: the thread's own TLS pair: the buffer is empty again.
        unsafe { (*slot)[0] = buf };
        self.distinct.set(n);
    }

    /// Writes the open segment (its distinct accesses) and empties it.
    fn write(&self, pid: i32, tid: i32) {
        let buf = self.area.get();
        let n = self.distinct.replace(0);
        if buf == 0 || n == 0 {
            return;
        }
        let table = (buf + BUF_BYTES) as *mut MemEntry;
        let out = (buf + BUF_BYTES + TABLE_BYTES) as *mut MemEntry;
        // Clear the used table slots for the next segment.
        for i in 0..n {
            // SAFETY: entries [0, n) of out were written above.
            let e = unsafe { core::ptr::read(out.add(i)) };
            // SAFETY: table slots; `remove` finds the one holding e.
            unsafe { clear(table, &e) };
        }
        if self.file_failed.get() {
            return;
        }
        let mut file = match self.file.get() {
            Some(f) => f,
            None => match MemFile::create(pid, tid) {
                Some(f) => f,
                None => {
                    self.file_failed.set(true);
                    return;
                }
            },
        };
        let rec = MemRecord {
            seq: crate::shm::get().map_or(0, |s| s.next_seq()),
            ts_ns: crate::record::now_ns(),
            count: n as u32,
            _pad: 0,
        };
        // SAFETY: out[0..n] was written above.
        let entries = unsafe { core::slice::from_raw_parts(out, n) };
        if !file.append(rec, entries) {
            self.file_failed.set(true);
        }
        self.file.set(Some(file));
    }

    /// The thread ends: last segment, close the file, free the areas.
    pub fn finish(&self, pid: i32, tid: i32) {
        self.flush(pid, tid);
        if let Some(f) = self.file.take() {
            f.close();
        }
        let area = self.area.replace(0);
        if area != 0 {
            // SAFETY: the thread's own TLS pair, then its own mapping.
            unsafe {
                *probe::cursor() = [0, 0];
                libc::munmap(area as *mut _, BUF_BYTES + TABLE_BYTES + OUT_BYTES);
            }
        }
    }

    /// In a fork child: the parent's file and pending accesses are the
    /// parent's; start afresh (the areas are private copies, kept).
    pub fn forget_parent(&self) {
        self.file.set(None);
        self.file_failed.set(false);
        self.pending.set(None);
        // The parent's open segment is the parent's: forget it (the table
        // slots it used are cleared lazily: clear them now).
        let n = self.distinct.replace(0);
        let buf = self.area.get();
        if buf != 0 {
            let table = (buf + BUF_BYTES) as *mut MemEntry;
            let out = (buf + BUF_BYTES + TABLE_BYTES) as *mut MemEntry;
            for i in 0..n {
                // SAFETY: entries [0, n) of out are the open segment's.
                unsafe { clear(table, &core::ptr::read(out.add(i))) };
            }
        }
        let buf = self.area.get();
        if buf != 0 {
            // SAFETY: the thread's own TLS pair.
            unsafe { *probe::cursor() = [buf, buf + BUF_BYTES] };
        }
    }
}

fn hash(e: &MemEntry) -> usize {
    let h = e.addr
        ^ e.ip.rotate_left(29)
        ^ ((e.size as u64) << 56)
        ^ ((e.flags as u64) << 48)
        ^ ((e.via as u64) << 40);
    (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize & (TABLE_SLOTS - 1)
}

fn empty(e: &MemEntry) -> bool {
    e.size == 0 && e.addr == 0 && e.ip == 0
}

/// Inserts `e` unless present; true if inserted.
///
/// # Safety
/// `table` points to TABLE_SLOTS entries, fewer than half of them used.
unsafe fn insert(table: *mut MemEntry, e: &MemEntry) -> bool {
    let mut i = hash(e);
    loop {
        // SAFETY: i < TABLE_SLOTS.
        let slot = unsafe { &mut *table.add(i) };
        if empty(slot) {
            *slot = *e;
            return true;
        }
        if slot == e {
            return false;
        }
        i = (i + 1) & (TABLE_SLOTS - 1);
    }
}

/// Empties the slot holding `e` (linear probing without deletion: every
/// used slot is cleared after each segment, so tombstones are not needed).
///
/// # Safety
/// As for [`insert`].
unsafe fn clear(table: *mut MemEntry, e: &MemEntry) {
    let mut i = hash(e);
    for _ in 0..TABLE_SLOTS {
        // SAFETY: i < TABLE_SLOTS.
        let slot = unsafe { &mut *table.add(i) };
        if slot == e {
            *slot = MemEntry::default();
            return;
        }
        i = (i + 1) & (TABLE_SLOTS - 1);
    }
}
