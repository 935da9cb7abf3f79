//! The agent's own system calls, issued from here with the marks
//! [`AGENT_CALL_R14`]/[`AGENT_CALL_R15`] in `r14`/`r15` so that the
//! recorder and the replayer can tell them from the program's: their
//! moment depends on the interleaving (a buffer fills, a ring is full), so
//! they are left out of the recording and out of the replayed order.
//!
//! The mappings the agent makes while the program runs go to the agent's
//! own address region ([`AGENT_REGION_BASE`]), taken by a bump pointer, so
//! that they never take an address the program's own mappings got.

use core::sync::atomic::{AtomicU64, Ordering};
use lockstep_agent_abi::{
    AGENT_CALL_R14, AGENT_CALL_R15, AGENT_REGION_BASE, AGENT_REGION_LEN, YIELD_POINT_R13,
};

/// A raw system call carrying the agent's marks; the kernel's return value
/// (`-errno` on failure).
///
/// # Safety
/// The call must be valid for its arguments (pointers the kernel may use).
#[inline(always)]
unsafe fn call6(nr: i64, a: [u64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: the caller's guarantee for the call itself. `syscall`
    // clobbers rax (the result), rcx and r11 and nothing else; r14/r15 are
    // only read, and the kernel preserves them.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            in("r14") AGENT_CALL_R14,
            in("r15") AGENT_CALL_R15,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// A yield point (`record --serialize`): a marked `getpid` with
/// [`YIELD_POINT_R13`] in `r13` and the thread's count of sync calls in
/// `r12`, at whose entry stop the recorder preempts the thread (or a
/// replay finds the recorded preemption again).
#[inline(never)]
pub fn yield_point(sync_calls: u64) {
    // SAFETY: getpid takes no arguments and touches no memory; `syscall`
    // clobbers rax, rcx and r11; r12-r15 are only read.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") libc::SYS_getpid => _,
            in("r12") sync_calls,
            in("r13") YIELD_POINT_R13,
            in("r14") AGENT_CALL_R14,
            in("r15") AGENT_CALL_R15,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
}

/// `open(path, flags, mode)`: the fd, or None.
///
/// # Safety
/// `path` is NUL-terminated.
pub unsafe fn open(path: *const u8, flags: i32, mode: u32) -> Option<i32> {
    // SAFETY: the caller's guarantee.
    let r = unsafe {
        call6(
            libc::SYS_open,
            [path as u64, flags as u64, mode as u64, 0, 0, 0],
        )
    };
    (r >= 0).then_some(r as i32)
}

/// `ftruncate(fd, len)`: whether it worked.
pub fn ftruncate(fd: i32, len: usize) -> bool {
    // SAFETY: no memory is passed.
    unsafe { call6(libc::SYS_ftruncate, [fd as u64, len as u64, 0, 0, 0, 0]) == 0 }
}

/// The size of the regular file open as `fd` (`fstat`), None for
/// anything else or on an error.
pub fn regular_file_size(fd: i32) -> Option<u64> {
    // SAFETY: all-zero is a valid `stat`.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer for fstat.
    let r = unsafe {
        call6(
            libc::SYS_fstat,
            [fd as u64, &mut st as *mut _ as u64, 0, 0, 0, 0],
        )
    };
    (r == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG).then_some(st.st_size as u64)
}

/// `close(fd)`.
pub fn close(fd: i32) {
    // SAFETY: no memory is passed; the caller owns the fd.
    unsafe { call6(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0]) };
}

/// `munmap(addr, len)`.
///
/// # Safety
/// Nothing uses `[addr, addr + len)` afterwards.
pub unsafe fn munmap(addr: *mut u8, len: usize) {
    // SAFETY: the caller's guarantee.
    unsafe { call6(libc::SYS_munmap, [addr as u64, len as u64, 0, 0, 0, 0]) };
}

/// `getpid()`.
pub fn getpid() -> i32 {
    // SAFETY: no arguments.
    unsafe { call6(libc::SYS_getpid, [0; 6]) as i32 }
}

/// `gettid()`.
pub fn gettid() -> i32 {
    // SAFETY: no arguments.
    unsafe { call6(libc::SYS_gettid, [0; 6]) as i32 }
}

/// `sched_yield()`.
pub fn sched_yield() {
    // SAFETY: no arguments.
    unsafe { call6(libc::SYS_sched_yield, [0; 6]) };
}

/// The next free addresses of the agent's region (per process: a fork
/// child continues from its parent's copy, which its address space matches).
static NEXT: AtomicU64 = AtomicU64::new(AGENT_REGION_BASE);

/// Takes `len` bytes (page-rounded, with a guard page after) of the
/// agent's region; None once it is used up.
fn take(len: usize) -> Option<u64> {
    let len = ((len as u64 + 4095) & !4095) + 4096;
    let at = NEXT.fetch_add(len, Ordering::Relaxed);
    (at + len <= AGENT_REGION_BASE + AGENT_REGION_LEN).then_some(at)
}

/// A mapping of `len` bytes (`prot`, `flags`, `fd`) in the agent's region,
/// never replacing anything (MAP_FIXED_NOREPLACE: a taken address is
/// skipped); None when no address could be had.
pub fn map(len: usize, prot: i32, flags: i32, fd: i32) -> Option<*mut u8> {
    for _ in 0..16 {
        let at = take(len)?;
        let a = [
            at,
            len as u64,
            prot as u64,
            (flags | libc::MAP_FIXED_NOREPLACE) as u64,
            fd as i64 as u64,
            0,
        ];
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
        let r = unsafe { call6(libc::SYS_mmap, a) };
        if r == at as i64 {
            return Some(at as *mut u8);
        }
        if r >= 0 {
            // An old kernel ignoring MAP_FIXED_NOREPLACE put it elsewhere:
            // keep it rather than fail.
            return Some(r as *mut u8);
        }
        if r != -(libc::EEXIST as i64) {
            return None;
        }
    }
    None
}

/// A private, writable page at `at` (MAP_FIXED_NOREPLACE: nothing is
/// replaced); whether it was made.
pub fn map_page_at(at: u64) -> bool {
    let a = [
        at,
        4096,
        (libc::PROT_READ | libc::PROT_WRITE) as u64,
        (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64,
        u64::MAX,
        0,
    ];
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
    unsafe { call6(libc::SYS_mmap, a) == at as i64 }
}

/// Moves the mapping `[old, old + old_len)` to a fresh place of the agent's
/// region with `new_len` bytes; the new address, or None (the old mapping
/// is then untouched).
///
/// # Safety
/// `old` is a mapping of `old_len` bytes nothing else refers to.
pub unsafe fn grow(old: *mut u8, old_len: usize, new_len: usize) -> Option<*mut u8> {
    for _ in 0..16 {
        let at = take(new_len)?;
        // MREMAP_FIXED would replace what is at `at`: check it is free.
        if !free(at, new_len) {
            continue;
        }
        let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
        let a = [old as u64, old_len as u64, new_len as u64, flags, at, 0];
        // SAFETY: the caller's guarantee for `old`; `at` is free.
        let r = unsafe { call6(libc::SYS_mremap, a) };
        return (r >= 0).then_some(r as *mut u8);
    }
    None
}

/// Whether nothing is mapped at `[at, at + len)`: a MAP_FIXED_NOREPLACE
/// probe that is given back at once.
fn free(at: u64, len: usize) -> bool {
    let a = [
        at,
        len as u64,
        libc::PROT_NONE as u64,
        (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE | libc::MAP_NORESERVE)
            as u64,
        u64::MAX,
        0,
    ];
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
    let r = unsafe { call6(libc::SYS_mmap, a) };
    if r == at as i64 {
        // SAFETY: the probe mapping just made, unused.
        unsafe { munmap(at as *mut u8, len) };
        return true;
    }
    false
}

/// `read(fd, buf)`: the bytes read, 0 at the end or on an error.
fn read(fd: i32, buf: &mut [u8]) -> usize {
    // SAFETY: `buf` is writable for its length.
    let r = unsafe {
        call6(
            libc::SYS_read,
            [
                fd as u64,
                buf.as_mut_ptr() as u64,
                buf.len() as u64,
                0,
                0,
                0,
            ],
        )
    };
    r.max(0) as usize
}

/// The mapping of `/proc/self/maps` that contains `addr`, as `[lo, hi)`;
/// read with the agent's own calls and without allocating (a new thread's
/// first allocation would pick its malloc arena at a moment that depends on
/// the interleaving, which a replay does not reproduce).
pub fn mapping_of(addr: usize) -> Option<(usize, usize)> {
    // SAFETY: a NUL-terminated path.
    let fd = unsafe {
        open(
            c"/proc/self/maps".as_ptr().cast(),
            libc::O_RDONLY | libc::O_CLOEXEC,
            0,
        )
    }?;
    let mut buf = [0u8; 4096];
    let (mut have, mut found) = (0usize, None);
    loop {
        let n = read(fd, &mut buf[have..]);
        if n == 0 {
            break;
        }
        have += n;
        // Whole lines only; a partial last line moves to the front.
        let mut start = 0;
        while let Some(nl) = buf[start..have].iter().position(|&b| b == b'\n') {
            if let Some((lo, hi)) = range_of(&buf[start..start + nl]) {
                if lo <= addr && addr < hi {
                    found = Some((lo, hi));
                }
            }
            start += nl + 1;
        }
        if found.is_some() {
            break;
        }
        buf.copy_within(start..have, 0);
        have -= start;
        if have == buf.len() {
            break; // a line longer than the buffer: give up
        }
    }
    close(fd);
    found
}

/// `lo-hi ...` of a maps line.
fn range_of(line: &[u8]) -> Option<(usize, usize)> {
    let hex = |s: &[u8]| -> Option<usize> {
        if s.is_empty() {
            return None;
        }
        s.iter().try_fold(0usize, |v, &c| {
            let d = (c as char).to_digit(16)? as usize;
            Some(v.checked_mul(16)? + d)
        })
    };
    let sp = line.iter().position(|&b| b == b' ')?;
    let dash = line[..sp].iter().position(|&b| b == b'-')?;
    Some((hex(&line[..dash])?, hex(&line[dash + 1..sp])?))
}
