//! Mutexes: `pthread_mutex_*` and the `pthread_mutexattr_set*` calls that
//! decide a mutex's type and protocol.
//!
//! Every mutex event carries in `flags` the kind bits of glibc's `__kind`
//! field (an `int` at byte offset 16 of `pthread_mutex_t` on x86-64):
//! bits 0-1 the type (0 normal, 1 recursive, 2 errorcheck, 3 adaptive),
//! 0x10 robust, 0x20 PRIO_INHERIT, 0x40 PRIO_PROTECT. For PRIO_PROTECT
//! mutexes `arg2` holds the priority ceiling, which glibc keeps in bits
//! 19-31 of `__lock` (the first int; its low bits are the lock word, the
//! ceiling bits only change with pthread_mutex_setprioceiling). Both are
//! read before the real call (an unlock may let another thread destroy the
//! mutex).

use libc::{c_int, pthread_mutex_t, pthread_mutexattr_t, timespec};
use lockstep_agent_abi::{Op, Phase};

use crate::record::{self, Detail, Shape};
use crate::{frame, intercept, real};

/// Byte offsets of `__lock` and `__kind` in glibc's x86-64 `pthread_mutex_t`.
const LOCK_OFFSET: usize = 0;
const KIND_OFFSET: usize = 16;
/// glibc's PTHREAD_MUTEX_PRIO_PROTECT_NP bit of `__kind`.
const KIND_PRIO_PROTECT: u32 = 64;
/// glibc's PTHREAD_MUTEX_PRIO_CEILING_SHIFT / _MASK (bits of `__lock`).
const CEILING_SHIFT: u32 = 19;
const CEILING_MASK: u32 = 0xfff8_0000;

/// The event fields describing mutex `m`: its address, kind bits and, for
/// PRIO_PROTECT mutexes, its ceiling.
fn describe(m: *const pthread_mutex_t) -> Detail {
    if m.is_null() {
        return Detail::default();
    }
    let field = |offset: usize| {
        // SAFETY: `m` is the caller's mutex, non-null, which the real
        // function is about to access as a pthread_mutex_t (40 bytes,
        // 8-aligned), so its ints at offsets 0 and 16 are readable.
        unsafe { core::ptr::read_volatile(m.cast::<u8>().add(offset).cast::<i32>()) as u32 }
    };
    let kind = field(KIND_OFFSET);
    let ceiling = if kind & KIND_PRIO_PROTECT != 0 {
        (field(LOCK_OFFSET) & CEILING_MASK) >> CEILING_SHIFT
    } else {
        0
    };
    Detail {
        obj: m as u64,
        arg: 0,
        arg2: ceiling as u64,
        flags: ((kind & 3) | (kind & 0x70)) as u8,
    }
}

/// `pthread_mutex_init`: `Done`; `flags`/`arg2` describe the new mutex and
/// `arg` is the attr's type (low 32 bits) and protocol (high 32 bits).
#[no_mangle]
pub unsafe extern "C" fn pthread_mutex_init(
    m: *mut pthread_mutex_t,
    attr: *const pthread_mutexattr_t,
) -> c_int {
    let f = frame!();
    let rec = record::begin(f, Op::MutexInit, Shape::Done, || Detail::obj(m));
    // SAFETY: forwards the caller's arguments.
    let r = unsafe { real::pthread_mutex_init(m, attr) };
    if let Some(mut rec) = rec {
        let err = record::errno();
        if r == 0 {
            let d = describe(m);
            rec.ev.flags = d.flags;
            rec.ev.arg2 = d.arg2;
        }
        if !attr.is_null() {
            let (mut kind, mut protocol) = (0, 0);
            // SAFETY: `attr` is the caller's initialised attribute object;
            // the out-pointers are valid.
            unsafe {
                real::pthread_mutexattr_gettype(attr, &mut kind);
                real::pthread_mutexattr_getprotocol(attr, &mut protocol);
            }
            rec.ev.arg = (kind as u32 as u64) | ((protocol as u32 as u64) << 32);
        }
        record::set_errno(err);
        rec.complete(Phase::Done, r);
    }
    r
}

/// Declares mutex interposers that take only the mutex.
macro_rules! mutex_calls {
    ($($(#[$doc:meta])* $name:ident => $op:ident, $shape:ident;)*) => {$(
        $(#[$doc])*
        #[no_mangle]
        pub unsafe extern "C" fn $name(m: *mut pthread_mutex_t) -> c_int {
            intercept!($op, $shape, Code, describe(m), real::$name(m))
        }
    )*};
}

/// `Acquired` at once when uncontended; otherwise `Request`, then
/// `Acquired` (ret 0 or EOWNERDEAD) or `Failed` (EDEADLK...).
#[no_mangle]
pub unsafe extern "C" fn pthread_mutex_lock(m: *mut pthread_mutex_t) -> c_int {
    crate::intercept_try_first!(
        MutexLock,
        Code,
        describe(m),
        real::pthread_mutex_trylock(m),
        real::pthread_mutex_lock(m)
    )
}

mutex_calls! {
    /// `Acquired` or `Failed` (EBUSY).
    pthread_mutex_trylock => MutexTrylock, Attempt;
    /// `Released`, or `Failed` (EPERM: an errorcheck/robust mutex the
    /// caller does not own).
    pthread_mutex_unlock => MutexUnlock, Release;
    /// `Done`.
    pthread_mutex_destroy => MutexDestroy, Done;
    /// `Done`: a robust mutex made consistent after EOWNERDEAD.
    pthread_mutex_consistent => MutexConsistent, Done;
}

/// `Request`, then `Acquired` or `Failed` (ETIMEDOUT).
#[no_mangle]
pub unsafe extern "C" fn pthread_mutex_timedlock(
    m: *mut pthread_mutex_t,
    t: *const timespec,
) -> c_int {
    intercept!(
        MutexTimedlock,
        Blocking,
        Code,
        describe(m),
        real::pthread_mutex_timedlock(m, t)
    )
}

/// Declares the `pthread_mutexattr_set*` interposers: `Done` with
/// `obj` = the attr and `arg` = the value set.
macro_rules! mutexattr_calls {
    ($($name:ident => $op:ident;)*) => {$(
        #[doc = concat!("`", stringify!($name), "`: `Done`, `obj` = attr, `arg` = the value.")]
        #[no_mangle]
        pub unsafe extern "C" fn $name(a: *mut pthread_mutexattr_t, value: c_int) -> c_int {
            intercept!($op, Done, Code, Detail { arg: value as u32 as u64, ..Detail::obj(a) }, real::$name(a, value))
        }
    )*};
}

mutexattr_calls! {
    pthread_mutexattr_settype => MutexattrSetType;
    pthread_mutexattr_setprotocol => MutexattrSetProtocol;
    pthread_mutexattr_setprioceiling => MutexattrSetPrioceiling;
    pthread_mutexattr_setrobust => MutexattrSetRobust;
}
