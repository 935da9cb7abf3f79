//! The call stack of an event: a frame-pointer walk that starts at the
//! interposer's own frame.
//!
//! The agent is built with `-C force-frame-pointers=yes`, so every
//! interposer begins with `push rbp; mov rbp, rsp`: `[rbp]` is the caller's
//! frame pointer and `[rbp + 8]` the return address into the caller, i.e.
//! the instruction after the user's `call pthread_mutex_lock`. That is
//! `stack[0]`; the walk then follows the saved frame pointers of the user's
//! frames.
//!
//! The walk never reads memory it cannot prove mapped:
//! * the interposer's own frame is trusted only if it lies just above the
//!   stack pointer captured with it (the live part of the current stack);
//! * every further frame must be 8-aligned, strictly above the previous
//!   one, and inside the thread's stack bounds (learnt once per thread with
//!   `pthread_getattr_np`); frames of code built without frame pointers may
//!   give wrong addresses, never a fault.
//!
//! On a stack the agent does not know (a signal alternate stack, a
//! coroutine stack) only `stack[0]` is recorded.

use lockstep_agent_abi::STACK_DEPTH;

/// The interposer's frame: its frame pointer and stack pointer, captured by
/// [`frame!`](crate::frame) in the interposer's own body.
#[derive(Clone, Copy)]
pub struct Frame {
    pub fp: usize,
    pub sp: usize,
}

/// Captures the current function's [`Frame`]. A macro rather than a
/// function so that the registers read are those of the interposer that
/// expands it, whatever the optimiser inlines.
#[macro_export]
macro_rules! frame {
    () => {{
        let fp: usize;
        let sp: usize;
        // SAFETY: copies two registers into two outputs; reads and writes no
        // memory and leaves the flags alone.
        unsafe {
            core::arch::asm!(
                "mov {fp}, rbp",
                "mov {sp}, rsp",
                fp = out(reg) fp,
                sp = out(reg) sp,
                options(nomem, nostack, preserves_flags),
            );
        }
        $crate::stack::Frame { fp, sp }
    }};
}

/// How far above the stack pointer the interposer's own frame pointer may
/// be. Interposer frames are a few hundred bytes; anything further means
/// `rbp` is not a frame pointer (the agent was built without them).
const OWN_FRAME_MAX: usize = 4096;

/// A thread's stack, `[lo, hi)`; `UNKNOWN` until learnt.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Bounds {
    pub lo: usize,
    pub hi: usize,
}

impl Bounds {
    pub const UNKNOWN: Bounds = Bounds { lo: 0, hi: 0 };

    /// The calling thread's stack, from `pthread_getattr_np`; `UNKNOWN` if
    /// glibc cannot say. Allocates (glibc's attr holds a cpuset).
    pub fn of_current_thread() -> Bounds {
        // SAFETY: all-zero bytes are a valid pthread_attr_t to be filled by
        // pthread_getattr_np.
        let mut attr: libc::pthread_attr_t = unsafe { core::mem::zeroed() };
        // SAFETY: `attr` is a valid out-pointer; pthread_self is the caller.
        if unsafe { libc::pthread_getattr_np(libc::pthread_self(), &mut attr) } != 0 {
            return Bounds::UNKNOWN;
        }
        let mut addr: *mut libc::c_void = core::ptr::null_mut();
        let mut size: libc::size_t = 0;
        // SAFETY: `attr` was initialised by pthread_getattr_np above; the
        // out-pointers are valid.
        let got = unsafe { libc::pthread_attr_getstack(&attr, &mut addr, &mut size) } == 0;
        // SAFETY: `attr` is initialised and destroyed exactly once.
        unsafe { libc::pthread_attr_destroy(&mut attr) };
        if !got || addr.is_null() {
            return Bounds::UNKNOWN;
        }
        let lo = addr as usize;
        Bounds {
            lo,
            hi: lo.saturating_add(size),
        }
    }

    fn contains(self, addr: usize) -> bool {
        self.lo <= addr && addr < self.hi
    }
}

/// Fills `out` with return addresses, innermost first, starting with the
/// one in the interposer's frame `f`; the rest stays 0.
#[inline(always)]
pub fn walk(f: Frame, bounds: Bounds, out: &mut [u64; STACK_DEPTH]) {
    let own_ok = f.fp % 8 == 0 && f.fp >= f.sp && f.fp - f.sp <= OWN_FRAME_MAX - 16;
    if !own_ok {
        return;
    }
    // Frames beyond our own are followed only on the thread's known stack,
    // up to its top; elsewhere the walk ends after stack[0].
    let hi = if bounds.contains(f.sp) { bounds.hi } else { 0 };
    let mut fp = f.fp;
    // SAFETY: `fp` is the interposer's own frame: 16 bytes at
    // [fp, fp + 16) lie between the captured stack pointer and at most 4 KiB
    // above it, in the live part of the current stack.
    let (mut next, mut ret) = unsafe { read_frame(fp) };
    let mut n = 0;
    loop {
        if ret == 0 {
            break;
        }
        out[n] = ret as u64;
        n += 1;
        if n == STACK_DEPTH {
            break;
        }
        let valid = next % 8 == 0 && next > fp && next.checked_add(16).is_some_and(|end| end <= hi);
        if !valid {
            break;
        }
        fp = next;
        // SAFETY: `fp` is 8-aligned and [fp, fp + 16) is inside
        // [sp, bounds.hi): above the current stack pointer (fp only grows
        // from f.fp >= f.sp) and below the top of the thread's stack, all of
        // which is mapped.
        (next, ret) = unsafe { read_frame(fp) };
    }
}

/// Reads the saved frame pointer and return address of the frame at `fp`.
///
/// # Safety
/// `[fp, fp + 16)` must be mapped and readable, `fp` 8-aligned.
#[inline(always)]
unsafe fn read_frame(fp: usize) -> (usize, usize) {
    let p = fp as *const usize;
    // SAFETY: guaranteed by the caller.
    unsafe {
        (
            core::ptr::read_volatile(p),
            core::ptr::read_volatile(p.add(1)),
        )
    }
}
