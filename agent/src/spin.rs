//! Spinlocks (`pthread_spin_*`) and barriers (`pthread_barrier_*`): the
//! two remaining pthread synchronization objects.
//!
//! A spinlock is recorded like a mutex (a spin is a wait even without the
//! kernel). A barrier wait is a blocking acquire of the barrier:
//! `Request` on arrival, `Acquired` on leaving, with `ret` 0 or
//! `PTHREAD_BARRIER_SERIAL_THREAD` (-1) for the one thread glibc picks.

use libc::{c_int, c_uint, pthread_barrier_t, pthread_barrierattr_t, pthread_spinlock_t};

use crate::record::Detail;
use crate::{intercept, real};

/// `pthread_spin_init`: `Done`, `arg` = pshared.
#[no_mangle]
pub unsafe extern "C" fn pthread_spin_init(s: *mut pthread_spinlock_t, pshared: c_int) -> c_int {
    intercept!(
        SpinInit,
        Done,
        Code,
        Detail {
            arg: pshared as u32 as u64,
            ..Detail::obj(s)
        },
        real::pthread_spin_init(s, pshared)
    )
}

/// Declares the spinlock interposers that take only the lock.
macro_rules! spin_calls {
    ($($(#[$doc:meta])* $name:ident => $op:ident, $shape:ident;)*) => {$(
        $(#[$doc])*
        #[no_mangle]
        pub unsafe extern "C" fn $name(s: *mut pthread_spinlock_t) -> c_int {
            intercept!($op, $shape, Code, Detail::obj(s), real::$name(s))
        }
    )*};
}

/// `Acquired` at once when free; otherwise `Request`, then `Acquired`.
#[no_mangle]
pub unsafe extern "C" fn pthread_spin_lock(s: *mut pthread_spinlock_t) -> c_int {
    crate::intercept_try_first!(
        SpinLock,
        Code,
        Detail::obj(s),
        real::pthread_spin_trylock(s),
        spin_until_locked(s)
    )
}

/// The blocking spin as a loop of `trylock`s with a yield point between
/// two: a serialized recording preempts a thread spinning on a lock whose
/// holder cannot run until it does, at a point named by the count of the
/// call it spins in (every turn of the loop is the same point to the
/// program: a failed trylock changes nothing).
///
/// # Safety
/// `s` is a spinlock, as for `pthread_spin_lock`.
unsafe fn spin_until_locked(s: *mut pthread_spinlock_t) -> c_int {
    loop {
        // SAFETY: the caller's guarantee.
        let r = unsafe { real::pthread_spin_trylock(s) };
        if r != libc::EBUSY {
            return r;
        }
        crate::record::yield_point_in_call();
        core::hint::spin_loop();
    }
}

spin_calls! {
    /// `Acquired` or `Failed` (EBUSY).
    pthread_spin_trylock => SpinTrylock, Attempt;
    /// `Released`.
    pthread_spin_unlock => SpinUnlock, Release;
    /// `Done`.
    pthread_spin_destroy => SpinDestroy, Done;
}

/// `pthread_barrier_init`: `Done`, `arg` = count.
#[no_mangle]
pub unsafe extern "C" fn pthread_barrier_init(
    b: *mut pthread_barrier_t,
    a: *const pthread_barrierattr_t,
    count: c_uint,
) -> c_int {
    intercept!(
        BarrierInit,
        Done,
        Code,
        Detail {
            arg: count as u64,
            ..Detail::obj(b)
        },
        real::pthread_barrier_init(b, a, count)
    )
}

/// `pthread_barrier_wait`: `Request`, then `Acquired` (ret 0 or -1 for the
/// serial thread) or `Failed`.
#[no_mangle]
pub unsafe extern "C" fn pthread_barrier_wait(b: *mut pthread_barrier_t) -> c_int {
    intercept!(
        BarrierWait,
        Blocking,
        Barrier,
        Detail::obj(b),
        real::pthread_barrier_wait(b)
    )
}

/// `pthread_barrier_destroy`: `Done`.
#[no_mangle]
pub unsafe extern "C" fn pthread_barrier_destroy(b: *mut pthread_barrier_t) -> c_int {
    intercept!(
        BarrierDestroy,
        Done,
        Code,
        Detail::obj(b),
        real::pthread_barrier_destroy(b)
    )
}
