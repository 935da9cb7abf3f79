//! POSIX semaphores: `sem_*`, unnamed and named.
//!
//! The sem functions fail with -1 and errno; the event's `ret` is that
//! errno (EAGAIN for a failed `sem_trywait`, ETIMEDOUT, EINTR...), and the
//! caller still sees -1 and its errno. `sem_post` is async-signal-safe and
//! is often called from signal handlers: if the handler interrupted the
//! agent itself, the post is forwarded unrecorded (counted as dropped).
//! `flags` is 1 for named semaphores (`sem_open`/`sem_close`).

use libc::{c_char, c_int, c_uint, mode_t, sem_t, timespec};
use lockstep_agent_abi::{Op, Phase};

use crate::record::{self, Detail, Shape};
use crate::{frame, intercept, real};

/// `flags` of a named semaphore's events.
const NAMED: u8 = 1;

/// `sem_init`: `Done`, `arg` = initial value, `arg2` = pshared.
#[no_mangle]
pub unsafe extern "C" fn sem_init(s: *mut sem_t, pshared: c_int, value: c_uint) -> c_int {
    intercept!(
        SemInit,
        Done,
        Errno,
        Detail {
            arg: value as u64,
            arg2: pshared as u32 as u64,
            ..Detail::obj(s)
        },
        real::sem_init(s, pshared, value)
    )
}

/// `sem_wait`: `Acquired` at once when the count is positive; otherwise
/// `Request`, then `Acquired` or `Failed` (EINTR). A cancellation point
/// when it blocks.
#[no_mangle]
pub unsafe extern "C" fn sem_wait(s: *mut sem_t) -> c_int {
    crate::intercept_try_first!(
        SemWait,
        Errno,
        Detail::obj(s),
        real::sem_trywait(s),
        real::sem_wait(s)
    )
}

/// `sem_timedwait`: `Request`, then `Acquired` or `Failed` (ETIMEDOUT,
/// EINTR). A cancellation point.
#[no_mangle]
pub unsafe extern "C" fn sem_timedwait(s: *mut sem_t, t: *const timespec) -> c_int {
    intercept!(
        SemTimedwait,
        Blocking,
        Errno,
        Detail::obj(s),
        real::sem_timedwait(s, t)
    )
}

/// Declares the sem interposers that take only the semaphore.
macro_rules! sem_calls {
    ($($(#[$doc:meta])* $name:ident => $op:ident, $shape:ident, $flags:expr;)*) => {$(
        $(#[$doc])*
        #[no_mangle]
        pub unsafe extern "C" fn $name(s: *mut sem_t) -> c_int {
            intercept!($op, $shape, Errno, Detail { flags: $flags, ..Detail::obj(s) }, real::$name(s))
        }
    )*};
}

sem_calls! {
    /// `Acquired` or `Failed` (EAGAIN).
    sem_trywait => SemTrywait, Attempt, 0;
    /// `Released` (or `Failed`, EOVERFLOW).
    sem_post => SemPost, Release, 0;
    /// `Done`.
    sem_destroy => SemDestroy, Done, 0;
    /// `Done`, flags 1.
    sem_close => SemClose, Done, NAMED;
}

/// `sem_open` (variadic in C: `sem_open(name, oflag, ...)`; on x86-64 SysV
/// reading `mode` and `value` when the caller passed none is harmless, they
/// are just whatever the registers held). `Done` with `obj` = the returned
/// `sem_t *` (0 on failure, `ret` = errno), `flags` 1, `arg` = the initial
/// value when `O_CREAT` was given, `arg2` = `oflag`.
#[no_mangle]
pub unsafe extern "C" fn sem_open(
    name: *const c_char,
    oflag: c_int,
    mode: mode_t,
    value: c_uint,
) -> *mut sem_t {
    let f = frame!();
    let creating = oflag & libc::O_CREAT != 0;
    let detail = || Detail {
        arg: if creating { value as u64 } else { 0 },
        arg2: oflag as u32 as u64,
        flags: NAMED,
        ..Detail::default()
    };
    let rec = record::begin(f, Op::SemOpen, Shape::Done, detail);
    // SAFETY: forwards the caller's arguments.
    let s = unsafe { real::sem_open(name, oflag, mode, value) };
    if let Some(mut rec) = rec {
        let failed = s == libc::SEM_FAILED;
        rec.ev.obj = if failed { 0 } else { s as u64 };
        rec.complete(Phase::Done, if failed { record::errno() } else { 0 });
    }
    s
}
