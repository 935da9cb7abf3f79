//! The calling thread's accesses between two of its sync operations: the
//! raw buffer the probes append to, its deduplication into a segment, and
//! the segment's way into the thread's memory file.
//!
//! Raw entries are 16 bytes: `addr u64, site u32, aux u32` for an
//! instrumented instruction (size and kind come from the site table); a
//! libc range (memcpy...) takes two entries: `addr, RANGE|via<<8|flags,
//! size` then `ip, 0, 0`. The probes' site cache (one word per site) lies
//! right after the raw buffer; absorbing an entry clears its site's word
//! (see [`super::probe`]).
//!
//! A segment is closed (deduplicated by address, instruction, size and
//! kind, stamped with a sequence number from the global counter, appended
//! to the file) before every sync event the thread records, when the raw
//! buffer is full, and when the thread ends. Everything here runs inside
//! the agent (`Local::enter` held): never reentered, no locks, no malloc;
//! the three per-thread areas are mmap'd at the thread's first access.

use core::cell::Cell;
use lockstep_agent_abi::{MemEntry, MemRecord};

use super::dedup::{self, Dedup};
use super::memfile::MemFile;
use super::probe;
use super::sites;

/// Raw entries per buffer (16 bytes each).
pub const BUF_ENTRIES: usize = 16384;
const BUF_BYTES: usize = BUF_ENTRIES * 16;
const OUT_BYTES: usize = dedup::MAX_DISTINCT * core::mem::size_of::<MemEntry>();
/// Marks a raw entry as the first half of a libc range.
pub const RANGE: u32 = 1 << 31;

/// Bytes of the site cache for `sites` sites, whole pages.
fn cache_bytes(sites: usize) -> usize {
    (sites * 8 + 4095) & !4095
}

/// Per-thread memory-capture state (no destructor: see `local`).
pub struct MemThread {
    /// Raw buffer, site cache, dedup table and output area: one mapping,
    /// 0 if none yet.
    area: Cell<usize>,
    /// Sites in the cache (the site table's length when mapped).
    sites: Cell<usize>,
    /// The raw buffer's cursor while the probes' fast path is closed (the
    /// TLS index is 0 then).
    closed: Cell<Option<usize>>,
    file: Cell<Option<MemFile>>,
    /// The file could not be created: drop this thread's accesses.
    file_failed: Cell<bool>,
    /// The open segment's distinct accesses.
    dedup: Dedup,
    /// An atomic instruction ran and its `Acquired` event is still to be
    /// written (the probe limit is 0 meanwhile, to catch the next access).
    pub pending: Cell<Option<(u64, u32, u64, u64)>>,
}

thread_local! {
    pub static MEM: MemThread = const {
        MemThread {
            area: Cell::new(0),
            sites: Cell::new(0),
            closed: Cell::new(None),
            file: Cell::new(None),
            file_failed: Cell::new(false),
            dedup: Dedup::new(),
            pending: Cell::new(None),
        }
    };
}

impl MemThread {
    /// The raw buffer, mapping the thread's areas first if needed; 0 when
    /// memory is exhausted.
    pub fn buffer(&self) -> usize {
        if self.area.get() == 0 {
            let sites = sites::get().map_or(0, |m| m.sites.len());
            // An anonymous private mapping, ours alone.
            let Some(p) = crate::sys::map(
                self.area_len(sites),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
            ) else {
                return 0;
            };
            self.area.set(p as usize);
            self.sites.set(sites);
            self.closed.set(None);
            // SAFETY: the calling thread's own TLS pair.
            unsafe {
                *probe::tls() = [-2 * BUF_ENTRIES as isize, (p as usize + BUF_BYTES) as isize]
            };
        }
        self.area.get()
    }

    fn area_len(&self, sites: usize) -> usize {
        BUF_BYTES + cache_bytes(sites) + dedup::BYTES + OUT_BYTES
    }

    /// The dedup area and the output area (the buffer is mapped).
    fn dedup_out(&self) -> (usize, *mut MemEntry) {
        let d = self.area.get() + BUF_BYTES + cache_bytes(self.sites.get());
        (d, (d + dedup::BYTES) as *mut MemEntry)
    }

    /// The raw buffer's cursor (the buffer is mapped).
    fn cur(&self) -> usize {
        if let Some(c) = self.closed.get() {
            return c;
        }
        // SAFETY: the calling thread's own TLS pair.
        let idx = unsafe { (*probe::tls())[0] };
        (self.area.get() + BUF_BYTES).wrapping_add_signed(idx * 8)
    }

    /// Moves the cursor to `c`, inside the buffer.
    fn set_cur(&self, c: usize) {
        if self.closed.get().is_some() {
            self.closed.set(Some(c));
        } else {
            let idx = (c as isize - (self.area.get() + BUF_BYTES) as isize) / 8;
            // SAFETY: the calling thread's own TLS pair.
            unsafe { (*probe::tls())[0] = idx };
        }
    }

    /// Re-opens the probe fast path (after a pending event was written).
    pub fn open_fast_path(&self) {
        if let Some(c) = self.closed.take() {
            self.set_cur(c);
        }
    }

    /// Closes the fast path: the next probe takes the slow path.
    pub fn close_fast_path(&self) {
        if self.area.get() != 0 && self.closed.get().is_none() {
            self.closed.set(Some(self.cur()));
            // SAFETY: the calling thread's own TLS pair.
            unsafe { (*probe::tls())[0] = 0 };
        }
    }

    /// Appends one raw entry (the slow path's, or half a range).
    fn push_raw(&self, a: u64, b: u32, c: u32) {
        let buf = self.buffer();
        if buf == 0 {
            return;
        }
        let cur = self.cur();
        debug_assert!(cur + 16 <= buf + BUF_BYTES);
        // SAFETY: the cursor stays inside the buffer, which the caller
        // flushed if it was full.
        unsafe {
            core::ptr::write(cur as *mut u64, a);
            core::ptr::write((cur + 8) as *mut u32, b);
            core::ptr::write((cur + 12) as *mut u32, c);
        }
        self.set_cur(cur + 16);
    }

    /// Room left in the raw buffer, in entries.
    fn room(&self) -> usize {
        let buf = self.buffer();
        if buf == 0 {
            return 0;
        }
        (buf + BUF_BYTES).saturating_sub(self.cur()) / 16
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

    /// Moves the raw buffer's entries into the open segment's tables of
    /// distinct accesses, writing the segment so far first if the tables
    /// could overflow.
    fn absorb(&self, pid: i32, tid: i32) {
        let buf = self.area.get();
        if buf == 0 {
            return;
        }
        if self.dedup.full_for(BUF_ENTRIES) {
            self.write(pid, tid);
        }
        let end = self.cur();
        if end <= buf {
            return;
        }
        let (area, out) = self.dedup_out();
        let cache = (buf + BUF_BYTES) as *mut u64;
        let nsites = self.sites.get();
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
            if b & RANGE != 0 {
                if p >= end {
                    break;
                }
                // SAFETY: the second half of the range entry.
                let ip = unsafe { core::ptr::read(p as *const u64) };
                p += 16;
                let e = MemEntry {
                    addr: a,
                    ip,
                    size: c,
                    flags: (b & 0xff) as u8,
                    via: ((b >> 8) & 0xff) as u8,
                    _pad: 0,
                };
                // SAFETY: this thread's areas; full_for was false for a
                // whole buffer of entries.
                unsafe { self.dedup.add_range(area, &e) };
            } else if (b as usize) < nsites {
                // SAFETY: the cache has `nsites` words; the dedup area and
                // out as above.
                unsafe {
                    *cache.add(b as usize) = 0;
                    self.dedup.add_site(area, out, b, a);
                }
            }
        }
        self.set_cur(buf);
    }

    /// Writes the open segment (its distinct accesses) and empties it.
    fn write(&self, pid: i32, tid: i32) {
        let buf = self.area.get();
        if buf == 0 || self.dedup.distinct() == 0 {
            return;
        }
        let (area, out) = self.dedup_out();
        // SAFETY: this thread's areas.
        let n = unsafe { self.dedup.drain(area, out, sites::get()) };
        if self.file_failed.get() || n == 0 {
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
        // SAFETY: out[0..n] was written by drain.
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
        self.closed.set(None);
        if area != 0 {
            // SAFETY: the thread's own TLS pair, then its own mapping.
            unsafe {
                *probe::tls() = [0, 0];
                crate::sys::munmap(area as *mut u8, self.area_len(self.sites.get()));
            }
        }
    }

    /// In a fork child: the parent's file and pending accesses are the
    /// parent's; start afresh (the areas are private copies, kept).
    pub fn forget_parent(&self) {
        self.file.set(None);
        self.file_failed.set(false);
        self.pending.set(None);
        // The parent's open segment and raw entries are the parent's:
        // forget them (emptying the tables and the cache words they used).
        let buf = self.area.get();
        if buf != 0 {
            self.closed.set(None);
            let (area, out) = self.dedup_out();
            // SAFETY: this thread's areas; what drain writes is dropped.
            unsafe { self.dedup.drain(area, out, None) };
            let cache = (buf + BUF_BYTES) as *mut u64;
            // SAFETY: the cache has `sites` words; nothing reads it now.
            unsafe { core::ptr::write_bytes(cache, 0, self.sites.get()) };
            // SAFETY: the thread's own TLS pair.
            unsafe { *probe::tls() = [-2 * BUF_ENTRIES as isize, (buf + BUF_BYTES) as isize] };
        }
    }
}
