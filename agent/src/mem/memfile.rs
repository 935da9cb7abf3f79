//! The calling thread's memory file, `<LOCKSTEP_SHM>.mem.<tid>`: created
//! at its first segment, mapped shared, grown by doubling (ftruncate and
//! mremap: a few system calls per megabytes of segments, no ptrace stop
//! per segment). The recorder imports it when the thread exits.
//!
//! A record is written completely before `committed` is release-stored,
//! so whatever the recorder finds up to `committed` is whole, even if the
//! process dies mid-write.

use crate::sys;
use core::sync::atomic::Ordering;
use lockstep_agent_abi::{MemEntry, MemFileHeader, MemRecord, ENV_SHM, MEM_MAGIC};

const HEADER: usize = core::mem::size_of::<MemFileHeader>();
const FIRST_SIZE: usize = 1 << 20;

/// An open, mapped memory file.
#[derive(Clone, Copy)]
pub struct MemFile {
    fd: i32,
    base: *mut u8,
    cap: usize,
}

impl MemFile {
    /// Creates the file of thread `tid` of process `pid`; `None` if the
    /// shared-memory path is unknown or a system call fails (the thread's
    /// accesses are then not recorded).
    pub fn create(pid: i32, tid: i32) -> Option<MemFile> {
        let mut path = [0u8; 512];
        let len = path_of(tid, &mut path)?;
        let _ = len;
        // SAFETY: `path` is NUL-terminated.
        let fd = unsafe {
            sys::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o600,
            )
        }?;
        let base = if sys::ftruncate(fd, FIRST_SIZE) {
            // The whole (just sized) file, shared.
            sys::map(
                FIRST_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
            )
        } else {
            None
        };
        let Some(base) = base else {
            sys::close(fd);
            return None;
        };
        // SAFETY: the mapping is at least HEADER bytes, zero-filled.
        unsafe {
            let h = &mut *base.cast::<MemFileHeader>();
            h.magic = MEM_MAGIC;
            h.pid = pid;
            h.tid = tid;
        }
        Some(MemFile {
            fd,
            base,
            cap: FIRST_SIZE,
        })
    }

    fn header(&self) -> &MemFileHeader {
        // SAFETY: the first HEADER bytes of the mapping are the header.
        unsafe { &*self.base.cast::<MemFileHeader>() }
    }

    /// Appends one segment; false if the file could not grow.
    pub fn append(&mut self, rec: MemRecord, entries: &[MemEntry]) -> bool {
        let used = self.header().committed.load(Ordering::Relaxed) as usize;
        let bytes = core::mem::size_of::<MemRecord>() + core::mem::size_of_val(entries);
        let need = HEADER + used + bytes;
        if need > self.cap && !self.grow(need) {
            return false;
        }
        // SAFETY: [HEADER + used, need) lies inside the mapping (grown
        // above); the record and entries are plain data.
        unsafe {
            let at = self.base.add(HEADER + used);
            core::ptr::write_unaligned(at.cast::<MemRecord>(), rec);
            core::ptr::copy_nonoverlapping(
                entries.as_ptr().cast::<u8>(),
                at.add(core::mem::size_of::<MemRecord>()),
                core::mem::size_of_val(entries),
            );
        }
        self.header()
            .committed
            .store((used + bytes) as u64, Ordering::Release);
        true
    }

    fn grow(&mut self, need: usize) -> bool {
        let mut cap = self.cap;
        while cap < need {
            cap *= 2;
        }
        // The new length only adds zero-filled space.
        if !sys::ftruncate(self.fd, cap) {
            return false;
        }
        // SAFETY: our own mapping of the same file, only reached through `self`.
        let Some(base) = (unsafe { sys::grow(self.base, self.cap, cap) }) else {
            return false;
        };
        self.base = base;
        self.cap = cap;
        true
    }

    /// Unmaps and closes (the file stays for the recorder).
    pub fn close(self) {
        // SAFETY: our own mapping, not used afterwards.
        unsafe { sys::munmap(self.base, self.cap) };
        sys::close(self.fd);
    }
}

/// Writes `$LOCKSTEP_SHM.mem.<tid>\0` into `out`; its length.
fn path_of(tid: i32, out: &mut [u8; 512]) -> Option<usize> {
    let mut name = [0u8; ENV_SHM.len() + 1];
    name[..ENV_SHM.len()].copy_from_slice(ENV_SHM.as_bytes());
    // SAFETY: `name` is NUL-terminated; getenv does not allocate.
    let p = unsafe { libc::getenv(name.as_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: getenv returned a NUL-terminated string.
    let base = unsafe { core::ffi::CStr::from_ptr(p) }.to_bytes();
    let mut n = 0;
    let mut put = |bytes: &[u8]| -> Option<()> {
        if n + bytes.len() >= out.len() {
            return None;
        }
        out[n..n + bytes.len()].copy_from_slice(bytes);
        n += bytes.len();
        Some(())
    };
    put(base)?;
    put(b".mem.")?;
    let mut digits = [0u8; 12];
    let mut i = digits.len();
    let mut v = tid.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    put(&digits[i..])?;
    out[n] = 0;
    Some(n)
}
