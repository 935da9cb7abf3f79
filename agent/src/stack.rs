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

    /// The calling thread's stack: for the main thread from
    /// `pthread_getattr_np` (which knows how far it may grow; it allocates,
    /// but the constructor asks before any other thread exists), for the
    /// others the mapping their stack pointer is in, which does not
    /// allocate (see [`crate::sys::mapping_of`]). `UNKNOWN` if neither can say.
    pub fn of_current_thread() -> Bounds {
        if crate::sys::gettid() != crate::sys::getpid() {
            let sp = frame!().sp;
            return match crate::sys::mapping_of(sp) {
                Some((lo, hi)) => Bounds { lo, hi },
                None => Bounds::UNKNOWN,
            };
        }
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
/// DWARF CFI (.eh_frame, [`cfi`]), and if the two disagree on the caller's frame,
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
        sites::USE_CFI => cfi::walk(f, bounds, out),
        _ => {
            let mut alt = *out;
            cfi::walk(f, bounds, &mut alt);
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

/// DWARF CFI unwinding (.eh_frame, through gimli: `lockstep-unwind`) for
/// callers without frame pointers: slower than the frame-pointer walk (a
/// binary search and a CFI program per frame), so used only where that
/// walk is wrong. No allocation, no lock, no system call: the object of a
/// code address comes from glibc's `_dl_find_object` (lock-free and
/// async-signal-safe, glibc >= 2.35; without it, frame pointers only), and
/// the stack is read only between the interposer's stack pointer and the
/// top of the thread's stack.
pub mod cfi {
    use super::{read_frame, Bounds, Frame, OWN_FRAME_MAX};
    use core::sync::atomic::{AtomicUsize, Ordering};
    use lockstep_agent_abi::STACK_DEPTH;
    use lockstep_unwind::{Image, Memory, Objects, Regs};

    /// glibc's `struct dl_find_object` (<dlfcn.h>, x86-64).
    #[repr(C)]
    struct DlFindObject {
        flags: u64,
        map_start: *const u8,
        map_end: *const u8,
        link_map: *const u8,
        eh_frame: *const u8,
        reserved: [u64; 7],
    }
    type FindFn = unsafe extern "C" fn(*const u8, *mut DlFindObject) -> i32;

    /// `_dl_find_object`, looked up once by [`init`] (0: not available).
    static FIND: AtomicUsize = AtomicUsize::new(0);

    /// Looks `_dl_find_object` up (dlsym may lock and allocate: call it
    /// from the constructor, not from an interposer).
    pub fn init() {
        // SAFETY: dlsym with a NUL-terminated name; the result is only
        // called through the type glibc declares.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_dl_find_object".as_ptr()) };
        FIND.store(p as usize, Ordering::Release);
    }

    /// The loaded objects, as glibc knows them; code in the memory
    /// capture's relocated copies stands for the original code.
    struct Loaded(FindFn);

    impl Objects for Loaded {
        fn find(&self, pc: u64) -> Option<Image<'_>> {
            // SAFETY: all-zero bytes are a valid out-struct.
            let mut o: DlFindObject = unsafe { core::mem::zeroed() };
            // SAFETY: `_dl_find_object` only reads its tables and fills `o`.
            if unsafe { (self.0)(pc as *const u8, &mut o) } != 0 || o.eh_frame.is_null() {
                return None;
            }
            let len = (o.map_end as usize).checked_sub(o.map_start as usize)?;
            // SAFETY: [map_start, map_end) is the object's mapping, alive
            // while it is loaded (an object unloaded during the walk is the
            // program's use-after-dlclose); gimli reads only its unwind
            // tables in it, which are mapped and readable.
            let bytes = unsafe { core::slice::from_raw_parts(o.map_start, len) };
            Some(Image {
                start: o.map_start as u64,
                bytes,
                eh_frame_hdr: o.eh_frame as u64,
            })
        }

        fn original(&self, pc: u64) -> u64 {
            crate::mem::sites::get().map_or(pc, |m| m.original(pc))
        }
    }

    /// The live part of the thread's stack, `[lo, hi)`.
    struct LiveStack {
        lo: u64,
        hi: u64,
    }

    impl Memory for LiveStack {
        fn read_u64(&self, addr: u64) -> Option<u64> {
            if addr < self.lo || addr.checked_add(8)? > self.hi {
                return None;
            }
            // SAFETY: [addr, addr + 8) lies between the interposer's stack
            // pointer and the top of the thread's stack, which is mapped.
            Some(unsafe { core::ptr::read_unaligned(addr as *const u64) })
        }
    }

    /// Unwinds from the interposer's frame `f` into `out` (`out[0]`, the
    /// call site, is already there); leaves `out` alone when the unwind
    /// does not get past the call site.
    #[inline(never)]
    pub fn walk(f: Frame, bounds: Bounds, out: &mut [u64; STACK_DEPTH]) {
        let find = FIND.load(Ordering::Acquire);
        let own_ok = f.fp % 8 == 0 && f.fp >= f.sp && f.fp - f.sp <= OWN_FRAME_MAX - 16;
        if find == 0 || !own_ok || !bounds.contains(f.sp) {
            return;
        }
        // SAFETY: a non-zero FIND is `_dl_find_object`, of this type.
        let objects = Loaded(unsafe { core::mem::transmute::<usize, FindFn>(find) });
        // SAFETY: the interposer's own frame, checked just above as in
        // walk_fp: 16 bytes just above the captured stack pointer.
        let (rbp, pc) = unsafe { read_frame(f.fp) };
        let regs = Regs {
            pc: pc as u64,
            rsp: (f.fp + 16) as u64,
            rbp: rbp as u64,
        };
        let stack = LiveStack {
            lo: f.sp as u64,
            hi: bounds.hi as u64,
        };
        let mut alt = [0u64; STACK_DEPTH];
        let n = lockstep_unwind::unwind(&objects, &stack, regs, &mut alt);
        if n > 1 {
            *out = alt;
        }
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
