//! Reader-writer locks: `pthread_rwlock_*`.
//!
//! Read and write acquisitions are told apart by the op. An unlock says in
//! `flags` bit 0 whether the caller held the lock for writing: glibc keeps
//! the writer's tid in `__cur_writer` (an `int` at byte offset 24 of
//! `pthread_rwlock_t` on x86-64), read before the real unlock.

use libc::{c_int, pthread_rwlock_t, pthread_rwlockattr_t, timespec};

use crate::local::Local;
use crate::record::Detail;
use crate::{intercept, real};

/// Byte offset of `__cur_writer` in glibc's x86-64 `pthread_rwlock_t`.
const CUR_WRITER_OFFSET: usize = 24;
/// `flags` of an unlock by the writer.
const FLAG_WRITER: u8 = 1;

/// The unlock's detail: the lock, and whether the caller is its writer.
fn describe_unlock(l: *const pthread_rwlock_t) -> Detail {
    if l.is_null() {
        return Detail::default();
    }
    // SAFETY: `l` is the caller's non-null rwlock, which the real unlock is
    // about to access as a pthread_rwlock_t (56 bytes, 8-aligned), so the
    // int at offset 24 is readable.
    let writer =
        unsafe { core::ptr::read_volatile(l.cast::<u8>().add(CUR_WRITER_OFFSET).cast::<i32>()) };
    let me = Local::current().tid();
    Detail {
        flags: if writer == me { FLAG_WRITER } else { 0 },
        ..Detail::obj(l)
    }
}

/// `pthread_rwlock_init`: `Done`.
#[no_mangle]
pub unsafe extern "C" fn pthread_rwlock_init(
    l: *mut pthread_rwlock_t,
    a: *const pthread_rwlockattr_t,
) -> c_int {
    intercept!(
        RwInit,
        Done,
        Code,
        Detail::obj(l),
        real::pthread_rwlock_init(l, a)
    )
}

/// Declares rwlock interposers that take only the lock.
macro_rules! rwlock_calls {
    ($($(#[$doc:meta])* $name:ident => $op:ident, $shape:ident;)*) => {$(
        $(#[$doc])*
        #[no_mangle]
        pub unsafe extern "C" fn $name(l: *mut pthread_rwlock_t) -> c_int {
            intercept!($op, $shape, Code, Detail::obj(l), real::$name(l))
        }
    )*};
}

/// `Acquired` at once when uncontended; otherwise `Request`, then
/// `Acquired` or `Failed` (EDEADLK, EAGAIN).
#[no_mangle]
pub unsafe extern "C" fn pthread_rwlock_rdlock(l: *mut pthread_rwlock_t) -> c_int {
    crate::intercept_try_first!(
        RwRdlock,
        Code,
        Detail::obj(l),
        real::pthread_rwlock_tryrdlock(l),
        real::pthread_rwlock_rdlock(l)
    )
}

/// `Acquired` at once when uncontended; otherwise `Request`, then
/// `Acquired` or `Failed` (EDEADLK).
#[no_mangle]
pub unsafe extern "C" fn pthread_rwlock_wrlock(l: *mut pthread_rwlock_t) -> c_int {
    crate::intercept_try_first!(
        RwWrlock,
        Code,
        Detail::obj(l),
        real::pthread_rwlock_trywrlock(l),
        real::pthread_rwlock_wrlock(l)
    )
}

rwlock_calls! {
    /// `Acquired` or `Failed` (EBUSY).
    pthread_rwlock_tryrdlock => RwTryrdlock, Attempt;
    /// `Acquired` or `Failed` (EBUSY).
    pthread_rwlock_trywrlock => RwTrywrlock, Attempt;
    /// `Done`.
    pthread_rwlock_destroy => RwDestroy, Done;
}

/// Declares the timed rwlock interposers.
macro_rules! rwlock_timed_calls {
    ($($name:ident => $op:ident;)*) => {$(
        #[doc = concat!("`", stringify!($name), "`: `Request`, then `Acquired` or `Failed` (ETIMEDOUT).")]
        #[no_mangle]
        pub unsafe extern "C" fn $name(l: *mut pthread_rwlock_t, t: *const timespec) -> c_int {
            intercept!($op, Blocking, Code, Detail::obj(l), real::$name(l, t))
        }
    )*};
}

rwlock_timed_calls! {
    pthread_rwlock_timedrdlock => RwTimedrdlock;
    pthread_rwlock_timedwrlock => RwTimedwrlock;
}

/// `pthread_rwlock_unlock`: `Released` (flags bit 0: the writer's unlock)
/// or `Failed` (EPERM).
#[no_mangle]
pub unsafe extern "C" fn pthread_rwlock_unlock(l: *mut pthread_rwlock_t) -> c_int {
    intercept!(
        RwUnlock,
        Release,
        Code,
        describe_unlock(l),
        real::pthread_rwlock_unlock(l)
    )
}
