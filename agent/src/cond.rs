//! Condition variables: `pthread_cond_*`.
//!
//! A wait is recorded like a blocking acquire whose object is the
//! condition variable and whose `arg` is the mutex: the `Request` (drawn
//! before the real call) stands for "released the mutex and started
//! waiting", the `Acquired` for "woken, mutex held again", `Failed` for a
//! timeout (ETIMEDOUT) or error. A signal or broadcast is a `Released` of
//! the condition variable, its sequence number drawn before the real call
//! so that it precedes the wake-ups it causes.
//!
//! The real functions are the `GLIBC_2.3.2` versions (see
//! [`real`](crate::real)). Waits are cancellation points: a thread
//! cancelled while waiting unwinds through the interposer (see
//! [`record`](crate::record) for why that works).

use libc::{c_int, pthread_cond_t, pthread_condattr_t, pthread_mutex_t, timespec};

use crate::record::Detail;
use crate::{intercept, real};

/// The wait's detail: the condition variable and its mutex.
fn wait_detail(c: *const pthread_cond_t, m: *const pthread_mutex_t) -> Detail {
    Detail {
        arg: m as u64,
        ..Detail::obj(c)
    }
}

/// `pthread_cond_init`: `Done`.
#[no_mangle]
pub unsafe extern "C" fn pthread_cond_init(
    c: *mut pthread_cond_t,
    a: *const pthread_condattr_t,
) -> c_int {
    intercept!(
        CondInit,
        Done,
        Code,
        Detail::obj(c),
        real::pthread_cond_init(c, a)
    )
}

/// `pthread_cond_wait`: `Request`, then `Acquired` (or `Failed`), with
/// `obj` = cond and `arg` = mutex.
#[no_mangle]
pub unsafe extern "C" fn pthread_cond_wait(
    c: *mut pthread_cond_t,
    m: *mut pthread_mutex_t,
) -> c_int {
    intercept!(
        CondWait,
        Blocking,
        Code,
        wait_detail(c, m),
        real::pthread_cond_wait(c, m)
    )
}

/// `pthread_cond_timedwait`: `Request`, then `Acquired` or `Failed`
/// (ETIMEDOUT), with `obj` = cond and `arg` = mutex.
#[no_mangle]
pub unsafe extern "C" fn pthread_cond_timedwait(
    c: *mut pthread_cond_t,
    m: *mut pthread_mutex_t,
    t: *const timespec,
) -> c_int {
    intercept!(
        CondTimedwait,
        Blocking,
        Code,
        wait_detail(c, m),
        real::pthread_cond_timedwait(c, m, t)
    )
}

/// Declares the cond interposers that take only the condition variable.
macro_rules! cond_calls {
    ($($(#[$doc:meta])* $name:ident => $op:ident, $shape:ident;)*) => {$(
        $(#[$doc])*
        #[no_mangle]
        pub unsafe extern "C" fn $name(c: *mut pthread_cond_t) -> c_int {
            intercept!($op, $shape, Code, Detail::obj(c), real::$name(c))
        }
    )*};
}

cond_calls! {
    /// `Released`: wakes one waiter.
    pthread_cond_signal => CondSignal, Release;
    /// `Released`: wakes all waiters.
    pthread_cond_broadcast => CondBroadcast, Release;
    /// `Done`.
    pthread_cond_destroy => CondDestroy, Done;
}
