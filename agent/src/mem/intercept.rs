//! Heap blocks and libc ranges, recorded while memory capture is on.
//!
//! * `malloc`, `calloc`, `realloc`, `posix_memalign`, `aligned_alloc` and
//!   `free` called from the program's own code become sync events (`obj`
//!   the block, `arg` its size) so that the analysis can name heap
//!   locations by their allocation site and treat reused memory as new;
//!   `free` is also a write of the whole block (ThreadSanitizer's rule: a
//!   free racing with a use is a race).
//! * The memory and string functions (`memcpy`, `memset`, `strcpy`...)
//!   called from the program record the ranges they read and write,
//!   attributed to the call site, as ThreadSanitizer's interceptors do:
//!   the instructions inside libc are not instrumented.
//!
//! The allocator is reached through glibc's `__libc_*` entry points, never
//! `dlsym` (which may itself allocate). Calls from anywhere but the
//! program (libc itself, other libraries, the agent) are forwarded
//! untouched, and so is everything while capture is off: these symbols
//! are interposed in every process the agent is loaded into.

use libc::{c_char, c_int, c_void, size_t};
use lockstep_agent_abi::{via, Op};

use crate::frame;
use crate::record::{self, Conv, Detail, Shape};
use crate::stack::Frame;

use super::{program_call_site, ranges_on, record_range};

extern "C" {
    fn __libc_malloc(n: size_t) -> *mut c_void;
    fn __libc_calloc(n: size_t, m: size_t) -> *mut c_void;
    fn __libc_realloc(p: *mut c_void, n: size_t) -> *mut c_void;
    fn __libc_free(p: *mut c_void);
    fn __libc_memalign(align: size_t, n: size_t) -> *mut c_void;
    fn malloc_usable_size(p: *mut c_void) -> size_t;
}

const READ: u8 = 1;
const WRITE: u8 = 2;

/// Records a heap event (`obj` = block, `arg` = size, `arg2` = old block)
/// if the interposer whose frame is `f` was called by the program and the
/// block is not null.
fn heap_event(f: Frame, op: Op, block: *mut c_void, size: u64, old: *mut c_void) {
    if !block.is_null() && from_program(f).is_some() {
        record_heap(f, op, block, size, old);
    }
}

/// Records a heap event; the caller has checked that the program called.
fn record_heap(f: Frame, op: Op, block: *mut c_void, size: u64, old: *mut c_void) {
    let rec = record::begin(f, op, Shape::Done, || Detail {
        obj: block as u64,
        arg: size,
        arg2: old as u64,
        flags: 0,
    });
    record::finish(rec, Shape::Done, Conv::Code, 0);
}

/// The program's call site of the interposer whose frame is `f`, if
/// capture is on and the caller is the program.
#[inline(always)]
fn from_program(f: Frame) -> Option<u64> {
    if !ranges_on() {
        return None;
    }
    program_call_site(f)
}

#[no_mangle]
pub unsafe extern "C" fn malloc(n: size_t) -> *mut c_void {
    // SAFETY: glibc's allocator, same contract.
    let p = unsafe { __libc_malloc(n) };
    heap_event(frame!(), Op::Malloc, p, n as u64, core::ptr::null_mut());
    p
}

#[no_mangle]
pub unsafe extern "C" fn calloc(n: size_t, m: size_t) -> *mut c_void {
    // SAFETY: glibc's allocator, same contract.
    let p = unsafe { __libc_calloc(n, m) };
    let size = (n as u64).saturating_mul(m as u64);
    heap_event(frame!(), Op::Calloc, p, size, core::ptr::null_mut());
    p
}

#[no_mangle]
pub unsafe extern "C" fn realloc(old: *mut c_void, n: size_t) -> *mut c_void {
    let f = frame!();
    let prog = from_program(f);
    if let (Some(ip), false) = (prog, old.is_null()) {
        // SAFETY: `old` is a live block of glibc's allocator.
        let size = unsafe { malloc_usable_size(old) } as u64;
        record_range(old as u64, size, READ, via::MEMCPY, ip);
    }
    // SAFETY: glibc's allocator, same contract.
    let p = unsafe { __libc_realloc(old, n) };
    if !p.is_null() && prog.is_some() {
        record_heap(f, Op::Realloc, p, n as u64, old);
    }
    p
}

#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    if !p.is_null() {
        let f = frame!();
        if let Some(ip) = from_program(f) {
            // SAFETY: `p` is a live block of glibc's allocator.
            let size = unsafe { malloc_usable_size(p) } as u64;
            record_range(p as u64, size, WRITE, via::FREE, ip);
            record_heap(f, Op::Free, p, size, core::ptr::null_mut());
        }
    }
    // SAFETY: glibc's allocator, same contract.
    unsafe { __libc_free(p) }
}

#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: size_t, n: size_t) -> c_int {
    if align < core::mem::size_of::<usize>() || !align.is_power_of_two() {
        return libc::EINVAL;
    }
    // SAFETY: glibc's allocator, same contract.
    let p = unsafe { __libc_memalign(align, n) };
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller's out-pointer.
    unsafe { *out = p };
    let f = frame!();
    heap_event(f, Op::PosixMemalign, p, n as u64, core::ptr::null_mut());
    0
}

#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: size_t, n: size_t) -> *mut c_void {
    // SAFETY: glibc's allocator, same contract.
    let p = unsafe { __libc_memalign(align, n) };
    let f = frame!();
    heap_event(f, Op::AlignedAlloc, p, n as u64, core::ptr::null_mut());
    p
}

/// Length of the NUL-terminated string at `s`, without calling strlen
/// (which is interposed too).
///
/// # Safety
/// `s` must be a NUL-terminated string.
unsafe fn c_len(s: *const c_char) -> u64 {
    let mut n = 0;
    // SAFETY: the caller's guarantee: every byte up to the NUL is readable.
    while unsafe { *s.add(n) } != 0 {
        n += 1;
    }
    n as u64
}

mod real {
    use core::sync::atomic::{AtomicUsize, Ordering};
    use libc::{c_char, c_int, c_void, size_t};

    macro_rules! next {
        ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {$(
            #[inline(always)]
            pub unsafe fn $name($($arg: $ty),*) -> $ret {
                static ADDR: AtomicUsize = AtomicUsize::new(0);
                let mut addr = ADDR.load(Ordering::Relaxed);
                if addr == 0 {
                    // SAFETY: a NUL-terminated literal.
                    addr = unsafe {
                        libc::dlsym(libc::RTLD_NEXT, concat!(stringify!($name), "\0").as_ptr().cast())
                    } as usize;
                    ADDR.store(addr, Ordering::Relaxed);
                }
                // SAFETY: glibc's function of this C signature (dlsym of a
                // libc string function never fails).
                let f: unsafe extern "C" fn($($ty),*) -> $ret = unsafe { core::mem::transmute(addr) };
                // SAFETY: forwards the interposer's arguments.
                unsafe { f($($arg),*) }
            }
        )*};
    }

    next! {
        memcpy(d: *mut c_void, s: *const c_void, n: size_t) -> *mut c_void;
        memmove(d: *mut c_void, s: *const c_void, n: size_t) -> *mut c_void;
        memset(d: *mut c_void, c: c_int, n: size_t) -> *mut c_void;
        memcmp(a: *const c_void, b: *const c_void, n: size_t) -> c_int;
        strcpy(d: *mut c_char, s: *const c_char) -> *mut c_char;
        strncpy(d: *mut c_char, s: *const c_char, n: size_t) -> *mut c_char;
        strcat(d: *mut c_char, s: *const c_char) -> *mut c_char;
        strlen(s: *const c_char) -> size_t;
        strcmp(a: *const c_char, b: *const c_char) -> c_int;
        strncmp(a: *const c_char, b: *const c_char, n: size_t) -> c_int;
    }
}

#[no_mangle]
pub unsafe extern "C" fn memcpy(d: *mut c_void, s: *const c_void, n: size_t) -> *mut c_void {
    if let Some(ip) = from_program(frame!()) {
        record_range(s as u64, n as u64, READ, via::MEMCPY, ip);
        record_range(d as u64, n as u64, WRITE, via::MEMCPY, ip);
    }
    // SAFETY: forwards the caller's arguments.
    unsafe { real::memcpy(d, s, n) }
}

#[no_mangle]
pub unsafe extern "C" fn memmove(d: *mut c_void, s: *const c_void, n: size_t) -> *mut c_void {
    if let Some(ip) = from_program(frame!()) {
        record_range(s as u64, n as u64, READ, via::MEMMOVE, ip);
        record_range(d as u64, n as u64, WRITE, via::MEMMOVE, ip);
    }
    // SAFETY: forwards the caller's arguments.
    unsafe { real::memmove(d, s, n) }
}

#[no_mangle]
pub unsafe extern "C" fn memset(d: *mut c_void, c: c_int, n: size_t) -> *mut c_void {
    if let Some(ip) = from_program(frame!()) {
        record_range(d as u64, n as u64, WRITE, via::MEMSET, ip);
    }
    // SAFETY: forwards the caller's arguments.
    unsafe { real::memset(d, c, n) }
}

#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const c_void, b: *const c_void, n: size_t) -> c_int {
    if let Some(ip) = from_program(frame!()) {
        record_range(a as u64, n as u64, READ, via::MEMCMP, ip);
        record_range(b as u64, n as u64, READ, via::MEMCMP, ip);
    }
    // SAFETY: forwards the caller's arguments.
    unsafe { real::memcmp(a, b, n) }
}

#[no_mangle]
pub unsafe extern "C" fn strcpy(d: *mut c_char, s: *const c_char) -> *mut c_char {
    if let Some(ip) = from_program(frame!()) {
        // SAFETY: strcpy's contract: `s` is a string.
        let n = unsafe { c_len(s) } + 1;
        record_range(s as u64, n, READ, via::STRCPY, ip);
        record_range(d as u64, n, WRITE, via::STRCPY, ip);
    }
    // SAFETY: forwards the caller's arguments.
    unsafe { real::strcpy(d, s) }
}

#[no_mangle]
pub unsafe extern "C" fn strncpy(d: *mut c_char, s: *const c_char, n: size_t) -> *mut c_char {
    if let Some(ip) = from_program(frame!()) {
        let mut len = 0usize;
        // SAFETY: strncpy reads `s` up to its NUL or n bytes.
        while len < n && unsafe { *s.add(len) } != 0 {
            len += 1;
        }
        record_range(
            s as u64,
            (len + usize::from(len < n)) as u64,
            READ,
            via::STRNCPY,
            ip,
        );
        record_range(d as u64, n as u64, WRITE, via::STRNCPY, ip);
    }
    // SAFETY: forwards the caller's arguments.
    unsafe { real::strncpy(d, s, n) }
}

#[no_mangle]
pub unsafe extern "C" fn strcat(d: *mut c_char, s: *const c_char) -> *mut c_char {
    if let Some(ip) = from_program(frame!()) {
        // SAFETY: strcat's contract: both are strings.
        let (dl, sl) = unsafe { (c_len(d), c_len(s)) };
        record_range(s as u64, sl + 1, READ, via::STRCAT, ip);
        record_range(d as u64, dl, READ, via::STRCAT, ip);
        record_range(d as u64 + dl, sl + 1, WRITE, via::STRCAT, ip);
    }
    // SAFETY: forwards the caller's arguments.
    unsafe { real::strcat(d, s) }
}

#[no_mangle]
pub unsafe extern "C" fn strlen(s: *const c_char) -> size_t {
    // SAFETY: forwards the caller's argument.
    let n = unsafe { real::strlen(s) };
    if let Some(ip) = from_program(frame!()) {
        record_range(s as u64, n as u64 + 1, READ, via::STRLEN, ip);
    }
    n
}

#[no_mangle]
pub unsafe extern "C" fn strcmp(a: *const c_char, b: *const c_char) -> c_int {
    if let Some(ip) = from_program(frame!()) {
        // SAFETY: strcmp's contract: both are strings. (It reads at most
        // the shorter prefix plus one; the whole strings are recorded.)
        let (al, bl) = unsafe { (c_len(a), c_len(b)) };
        record_range(a as u64, al + 1, READ, via::STRCMP, ip);
        record_range(b as u64, bl + 1, READ, via::STRCMP, ip);
    }
    // SAFETY: forwards the caller's arguments.
    unsafe { real::strcmp(a, b) }
}

#[no_mangle]
pub unsafe extern "C" fn strncmp(a: *const c_char, b: *const c_char, n: size_t) -> c_int {
    if let Some(ip) = from_program(frame!()) {
        let bounded = |s: *const c_char| {
            let mut len = 0usize;
            // SAFETY: strncmp reads up to the NUL or n bytes.
            while len < n && unsafe { *s.add(len) } != 0 {
                len += 1;
            }
            (len + usize::from(len < n)) as u64
        };
        record_range(a as u64, bounded(a), READ, via::STRNCMP, ip);
        record_range(b as u64, bounded(b), READ, via::STRNCMP, ip);
    }
    // SAFETY: forwards the caller's arguments.
    unsafe { real::strncmp(a, b, n) }
}
