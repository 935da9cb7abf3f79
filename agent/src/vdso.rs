//! The vDSO's `clock_gettime`, called directly. The recorder hides the
//! vDSO from glibc (it rewrites `AT_SYSINFO_EHDR` in the new program's
//! auxiliary vector) so that the program's own clock reads become syscalls
//! a replay can emulate; the agent's timestamps, which replays never use,
//! must stay free of system calls. The kernel's copy of the auxiliary
//! vector (`/proc/self/auxv`) still names the vDSO, and its dynamic symbol
//! table gives `__vdso_clock_gettime`.
//!
//! Resolved once per process on first use; until then, or when it cannot
//! be found, libc's `clock_gettime` is used.
//!
//! When the recorder traps the TSC (`LOCKSTEP_TSC=trap`: every rdtsc is a
//! ptrace stop), the clock is CLOCK_MONOTONIC_COARSE, which the vDSO
//! serves from the kernel's tick without reading the TSC; CLOCK_MONOTONIC
//! would cost a stop per event. Timestamps are then only as fine as the
//! tick (1-4 ms) and equal for events close together; the events' order
//! is their sequence numbers', never their times'.

use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use libc::{c_int, timespec};

type ClockGettime = unsafe extern "C" fn(c_int, *mut timespec) -> c_int;

/// 0: not resolved yet; 1: not available; otherwise the function's address.
static FUNC: AtomicUsize = AtomicUsize::new(0);

/// The clock the agent reads, chosen with `FUNC` (stored before it).
static CLOCK: AtomicI32 = AtomicI32::new(libc::CLOCK_MONOTONIC);

/// The clock to read: the coarse one when the TSC is trapped. Reads the
/// environment with getenv, which does not allocate.
fn chosen_clock() -> c_int {
    let name = lockstep_agent_abi::ENV_TSC.as_bytes();
    let mut buf = [0u8; 32];
    buf[..name.len()].copy_from_slice(name);
    // SAFETY: `buf` is NUL-terminated (the name is shorter than it).
    let v = unsafe { libc::getenv(buf.as_ptr().cast()) };
    if v.is_null() {
        return libc::CLOCK_MONOTONIC;
    }
    // SAFETY: getenv returns a NUL-terminated string of the environment.
    match unsafe { core::ffi::CStr::from_ptr(v) }.to_bytes() {
        b"trap" => libc::CLOCK_MONOTONIC_COARSE,
        _ => libc::CLOCK_MONOTONIC,
    }
}

const AT_SYSINFO_EHDR: u64 = 33;
const SHT_DYNSYM: u32 = 11;
const PT_LOAD: u32 = 1;

/// The vDSO's base address from the kernel's copy of the auxiliary vector.
fn vdso_base() -> Option<usize> {
    let mut buf = [0u64; 128];
    // SAFETY: open/read/close on a NUL-terminated path and a buffer we own.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/self/auxv".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), core::mem::size_of_val(&buf));
        libc::close(fd);
        n
    };
    if n <= 0 {
        return None;
    }
    let words = &buf[..n as usize / 8];
    words
        .chunks_exact(2)
        .find(|p| p[0] == AT_SYSINFO_EHDR)
        .map(|p| p[1] as usize)
        .filter(|&b| b != 0)
}

/// Reads a `T` at `base + off` of the vDSO image.
///
/// # Safety
/// `base + off .. + size_of::<T>()` must lie inside the mapped vDSO.
unsafe fn at<T: Copy>(base: usize, off: usize) -> T {
    // SAFETY: the caller keeps the read inside the vDSO mapping.
    unsafe { core::ptr::read_unaligned((base + off) as *const T) }
}

/// Finds `__vdso_clock_gettime` in the vDSO image at `base`.
///
/// # Safety
/// `base` must be the start of the mapped vDSO (a well-formed ELF image,
/// as the kernel provides it).
unsafe fn lookup(base: usize) -> Option<usize> {
    // SAFETY (whole body): offsets come from the image's own headers.
    unsafe {
        if at::<[u8; 4]>(base, 0) != *b"\x7fELF" {
            return None;
        }
        let phoff: u64 = at(base, 0x20);
        let shoff: u64 = at(base, 0x28);
        let phnum: u16 = at(base, 0x38);
        let shentsize: u16 = at(base, 0x3a);
        let shnum: u16 = at(base, 0x3c);
        // Load bias: the first PT_LOAD's vaddr sits at `base`.
        let mut first_vaddr = None;
        for i in 0..phnum as usize {
            let ph = phoff as usize + i * 56;
            if at::<u32>(base, ph) == PT_LOAD {
                first_vaddr = Some(at::<u64>(base, ph + 16) as usize);
                break;
            }
        }
        let bias = base.wrapping_sub(first_vaddr?);
        for i in 0..shnum as usize {
            let sh = shoff as usize + i * shentsize as usize;
            if at::<u32>(base, sh + 4) != SHT_DYNSYM {
                continue;
            }
            let symoff = at::<u64>(base, sh + 0x18) as usize;
            let symsize = at::<u64>(base, sh + 0x20) as usize;
            let link = at::<u32>(base, sh + 0x28) as usize;
            let strsh = shoff as usize + link * shentsize as usize;
            let stroff = at::<u64>(base, strsh + 0x18) as usize;
            for s in 0..symsize / 24 {
                let sym = symoff + s * 24;
                let name = stroff + at::<u32>(base, sym) as usize;
                let want = b"__vdso_clock_gettime\0";
                if (0..want.len()).all(|k| at::<u8>(base, name + k) == want[k]) {
                    let value = at::<u64>(base, sym + 8) as usize;
                    return (value != 0).then(|| bias.wrapping_add(value));
                }
            }
        }
        None
    }
}

/// CLOCK_MONOTONIC (or its coarse variant, see the module's doc) through
/// the vDSO (no system call once resolved).
#[inline(always)]
pub fn monotonic(ts: &mut timespec) {
    // Acquire: a thread that sees FUNC set sees the CLOCK stored before it.
    let mut f = FUNC.load(Ordering::Acquire);
    if f == 0 {
        CLOCK.store(chosen_clock(), Ordering::Relaxed);
        // SAFETY: vdso_base returns the kernel-provided vDSO start.
        f = vdso_base().and_then(|b| unsafe { lookup(b) }).unwrap_or(1);
        FUNC.store(f, Ordering::Release);
    }
    let clock = CLOCK.load(Ordering::Relaxed);
    if f == 1 {
        // SAFETY: `ts` is a valid out-pointer.
        unsafe { libc::clock_gettime(clock, ts) };
        return;
    }
    // SAFETY: `f` is the vDSO's clock_gettime, which has this signature.
    unsafe {
        let g: ClockGettime = core::mem::transmute::<usize, ClockGettime>(f);
        g(clock, ts);
    }
}
