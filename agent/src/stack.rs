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
/// Whether the frame-pointer walk can be trusted from a call site, learnt
/// once per call site: the first event from a site is also unwound with
/// DWARF CFI (.eh_frame), and if the two disagree on the caller's frame,
/// the function around the site was built without frame pointers (its rbp
/// is some ancestor's, so the walk would skip frames) and every later event
/// from it is unwound with CFI. A fixed lock-free table, no allocation.
mod sites {
    use core::sync::atomic::{AtomicU64, Ordering};

    const SLOTS: usize = 4096;
    const PROBES: usize = 8;
    pub const FP_OK: u64 = 1;
    pub const USE_CFI: u64 = 2;

    static TABLE: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

    fn slot(site: u64) -> usize {
        (site.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize % SLOTS
    }

    /// The learnt state of `site` (0 when unknown).
    pub fn get(site: u64) -> u64 {
        let start = slot(site);
        for i in 0..PROBES {
            let v = TABLE[(start + i) % SLOTS].load(Ordering::Relaxed);
            if v == 0 {
                return 0;
            }
            if v >> 2 == site {
                return v & 3;
            }
        }
        // A full neighbourhood: trust frame pointers rather than unwind every time.
        FP_OK
    }

    pub fn set(site: u64, state: u64) {
        let start = slot(site);
        for i in 0..PROBES {
            let cell = &TABLE[(start + i) % SLOTS];
            match cell.compare_exchange(
                0,
                (site << 2) | state,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(v) if v >> 2 == site => return,
                Err(_) => {}
            }
        }
    }
}

#[inline(always)]
pub fn walk(f: Frame, bounds: Bounds, out: &mut [u64; STACK_DEPTH]) {
    walk_fp(f, bounds, out);
    crate::mem::sites::translate_stack(out);
    let site = out[0];
    if site == 0 {
        return;
    }
    match sites::get(site) {
        sites::FP_OK => {}
        sites::USE_CFI => cfi::walk(out),
        _ => {
            let mut alt = *out;
            cfi::walk(&mut alt);
            if alt[1] == out[1] {
                sites::set(site, sites::FP_OK);
            } else {
                sites::set(site, sites::USE_CFI);
                *out = alt;
            }
        }
    }
}

/// The return address in the interposer's own frame `f` (its call site),
/// 0 when the frame is not trustworthy: `stack[0]` of [`walk`] without
/// walking further, for interposers that only need to know who called.
#[inline(always)]
pub fn call_site(f: Frame) -> u64 {
    let mut out = [0u64; STACK_DEPTH];
    walk_fp(f, Bounds::UNKNOWN, &mut out);
    out[0]
}

/// The frame-pointer walk alone, from frame `f` (the memory capture uses
/// it from frames that are not the agent's own).
#[inline(always)]
pub fn walk_frames(f: Frame, bounds: Bounds, out: &mut [u64; STACK_DEPTH]) -> usize {
    walk_fp(f, bounds, out)
}

#[inline(always)]
fn walk_fp(f: Frame, bounds: Bounds, out: &mut [u64; STACK_DEPTH]) -> usize {
    let own_ok = f.fp % 8 == 0 && f.fp >= f.sp && f.fp - f.sp <= OWN_FRAME_MAX - 16;
    if !own_ok {
        return 0;
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
    n
}

/// DWARF CFI unwinding (.eh_frame, through libgcc's unwinder, which every
/// glibc process has) for callers without frame pointers: slower than the
/// frame-pointer walk (microseconds), so used only when that walk stops
/// short. Frames up to the call site (`out[0]`, known exactly from the
/// interposer's own frame) are the agent's and are skipped.
mod cfi {
    use core::cell::Cell;
    use core::ffi::c_void;
    use lockstep_agent_abi::STACK_DEPTH;

    std::thread_local! {
        /// Set while this thread runs libgcc's unwinder, which locks its own
        /// mutexes through pthread_mutex_lock: those calls are the agent's
        /// own, not the program's, and are neither recorded nor counted.
        pub static UNWINDING: Cell<bool> = const { Cell::new(false) };
    }

    #[repr(C)]
    struct Context {
        _private: [u8; 0],
    }
    type TraceFn = extern "C" fn(*mut Context, *mut c_void) -> i32;
    extern "C" {
        fn _Unwind_Backtrace(f: TraceFn, arg: *mut c_void) -> i32;
        fn _Unwind_GetIP(ctx: *mut Context) -> usize;
    }
    /// _URC_NO_REASON: go on; _URC_END_OF_STACK: stop.
    const GO_ON: i32 = 0;
    const STOP: i32 = 5;

    struct State<'a> {
        out: &'a mut [u64; STACK_DEPTH],
        n: usize,
        found: bool,
    }

    extern "C" fn each(ctx: *mut Context, arg: *mut c_void) -> i32 {
        // SAFETY: `arg` is the &mut State passed to _Unwind_Backtrace below,
        // alive for the whole call.
        let st = unsafe { &mut *(arg as *mut State<'_>) };
        // SAFETY: `ctx` is the unwinder's context for the current frame.
        let ip = unsafe { _Unwind_GetIP(ctx) } as u64;
        if !st.found {
            st.found = ip == st.out[0];
            if st.found {
                st.n = 1;
            }
            return GO_ON;
        }
        if ip == 0 || st.n == STACK_DEPTH {
            return STOP;
        }
        st.out[st.n] = ip;
        st.n += 1;
        GO_ON
    }

    #[inline(never)]
    pub fn walk(out: &mut [u64; STACK_DEPTH]) {
        let mut st = State {
            out,
            n: 0,
            found: false,
        };
        UNWINDING.with(|u| u.set(true));
        // SAFETY: the callback only touches `st`, which outlives the call.
        unsafe { _Unwind_Backtrace(each, &mut st as *mut State<'_> as *mut c_void) };
        UNWINDING.with(|u| u.set(false));
        if !st.found {
            // The unwinder did not get as far as the call site: keep what
            // the frame-pointer walk found.
            return;
        }
        let n = st.n;
        for slot in st.out[n..].iter_mut() {
            *slot = 0;
        }
    }
}

/// Whether the calling thread is inside the agent's own CFI unwinding.
#[inline(always)]
pub fn unwinding() -> bool {
    cfi::UNWINDING.with(|u| u.get())
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
