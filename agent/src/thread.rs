//! Threads: `pthread_create` (and the start of the new thread), `join`,
//! `detach`, `exit` and `once`.
//!
//! `pthread_create` hands glibc a trampoline instead of the user's start
//! routine. The trampoline records `ThreadStart` (`obj` = `pthread_self()`,
//! `arg2` = the routine) as the new thread's first event, runs the routine,
//! and when it returns records `ThreadExit` (`flags` 1) and retires the
//! thread's ring. The (routine, argument) pair travels in a 16-byte block
//! from libc `malloc`, freed by the new thread: pthread_create is not a hot
//! path, and the allocation happens outside the agent's recording code.
//!
//! The creator's `ThreadCreate` event (`Done`, `obj` = the new `pthread_t`,
//! `arg2` = the routine) draws its sequence number before the real
//! pthread_create, so it precedes every event of the new thread; it is
//! written after the call, when the `pthread_t` is known.
//!
//! `pthread_exit`, `pthread_join` and `pthread_once` may unwind (glibc's
//! forced unwinding for exit and cancellation) through the interposer and
//! the trampoline: they are `extern "C-unwind"` and own nothing that would
//! need a destructor.

use core::ptr;

use libc::{c_int, c_void, pthread_attr_t, pthread_once_t, pthread_t};
use lockstep_agent_abi::{Op, Phase};

use crate::frame;
use crate::real;
use crate::record::{self, Conv, Detail, Shape};
use crate::stack::Frame;

/// What the trampoline needs: the user's routine and argument.
#[repr(C)]
struct Start {
    routine: *mut c_void,
    arg: *mut c_void,
}

/// `flags` of a `ThreadExit`: the start routine returned (0: pthread_exit).
const RETURNED: u8 = 1;

type Routine = unsafe extern "C-unwind" fn(*mut c_void) -> *mut c_void;

/// `pthread_create`: `Done` with `obj` = the new thread's `pthread_t`
/// (0 on failure) and `arg2` = the start routine.
#[no_mangle]
pub unsafe extern "C" fn pthread_create(
    thread: *mut pthread_t,
    attr: *const pthread_attr_t,
    routine: *mut c_void,
    arg: *mut c_void,
) -> c_int {
    let f = frame!();
    if crate::shm::get().is_none() || routine.is_null() {
        // SAFETY: forwards the caller's arguments.
        return unsafe { real::pthread_create(thread, attr, routine, arg) };
    }
    // SAFETY: malloc of a small block; checked for null below.
    let start = unsafe { libc::malloc(core::mem::size_of::<Start>()) }.cast::<Start>();
    if start.is_null() {
        // SAFETY: forwards the caller's arguments (the thread goes unwatched).
        return unsafe { real::pthread_create(thread, attr, routine, arg) };
    }
    // SAFETY: `start` is a fresh allocation of the right size and alignment.
    unsafe { start.write(Start { routine, arg }) };
    let detail = || Detail { arg2: routine as u64, ..Detail::default() };
    record::session(f, Op::ThreadCreate, detail, |mut rec| {
        if let Some(rec) = rec.as_deref_mut() {
            // Stays inside the agent until written: see the module docs.
            rec.stamp();
        }
        // SAFETY: the trampoline has the start-routine signature and takes
        // ownership of `start` in the new thread.
        let r = unsafe { real::pthread_create(thread, attr, trampoline as *mut c_void, start.cast()) };
        let err = record::errno();
        if r != 0 {
            // SAFETY: no thread was created, so `start` is still ours.
            unsafe { libc::free(start.cast()) };
        }
        if let Some(rec) = rec {
            // SAFETY: on success glibc stored the new id in `*thread`.
            rec.ev.obj = if r == 0 && !thread.is_null() { (unsafe { *thread }) as u64 } else { 0 };
            rec.publish(Phase::Done, r);
            rec.leave();
        }
        record::set_errno(err);
        r
    })
}

/// The start routine glibc runs in every thread created through the agent.
unsafe extern "C-unwind" fn trampoline(start: *mut c_void) -> *mut c_void {
    let f = frame!();
    // SAFETY: `start` is the block pthread_create filled and gave to this
    // thread alone; it is read once and freed.
    let Start { routine, arg } = unsafe { ptr::read(start.cast::<Start>()) };
    // SAFETY: allocated with malloc by pthread_create.
    unsafe { libc::free(start) };
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() };
    let detail = || Detail { obj: me as u64, arg2: routine as u64, ..Detail::default() };
    record::call(f, Op::ThreadStart, Shape::Done, Conv::Code, detail, || 0);
    // SAFETY: `routine` is the user's non-null start routine.
    let routine: Routine = unsafe { core::mem::transmute(routine) };
    // SAFETY: calls the user's routine with the user's argument, as glibc
    // would have.
    let value = unsafe { routine(arg) };
    thread_end(f, value, RETURNED);
    value
}

/// Records the calling thread's `ThreadExit` (`arg` = its return value)
/// and marks its ring as retired. Events may still follow (TLS destructors
/// run after this), and go to the same ring.
fn thread_end(f: Frame, value: *mut c_void, flags: u8) {
    let detail = || Detail { arg: value as u64, flags, ..Detail::default() };
    record::session(f, Op::ThreadExit, detail, |rec| {
        if let Some(rec) = rec {
            rec.emit(Phase::Done, 0);
            rec.shm().retire(rec.ring());
            rec.leave();
        }
    });
}

/// `pthread_exit`: `ThreadExit` (`Done`, `arg` = the value) before the
/// real call, which does not return.
#[no_mangle]
pub unsafe extern "C-unwind" fn pthread_exit(value: *mut c_void) -> ! {
    let f = frame!();
    thread_end(f, value, 0);
    // SAFETY: forwards the caller's argument.
    unsafe { real::pthread_exit(value) }
}

/// `pthread_join`: `Request`, then `Done` with `obj` = the joined
/// `pthread_t` and `ret` the result. A cancellation point.
#[no_mangle]
pub unsafe extern "C-unwind" fn pthread_join(thread: pthread_t, value: *mut *mut c_void) -> c_int {
    let f = frame!();
    record::call(f, Op::ThreadJoin, Shape::Waited, Conv::Code, || Detail { obj: thread as u64, ..Detail::default() }, || {
        // SAFETY: forwards the caller's arguments.
        unsafe { real::pthread_join(thread, value) }
    })
}

/// `pthread_detach`: `Done`, `obj` = the `pthread_t`.
#[no_mangle]
pub unsafe extern "C" fn pthread_detach(thread: pthread_t) -> c_int {
    let f = frame!();
    record::call(f, Op::ThreadDetach, Shape::Done, Conv::Code, || Detail { obj: thread as u64, ..Detail::default() }, || {
        // SAFETY: forwards the caller's argument.
        unsafe { real::pthread_detach(thread) }
    })
}

/// `pthread_once`: `Done` after the call (so after the init routine, if
/// this call ran it), `obj` = the once control, `arg2` = the routine.
#[no_mangle]
pub unsafe extern "C-unwind" fn pthread_once(once: *mut pthread_once_t, init: *mut c_void) -> c_int {
    let f = frame!();
    let detail = || Detail { arg2: init as u64, ..Detail::obj(once) };
    record::call(f, Op::Once, Shape::Done, Conv::Code, detail, || {
        // SAFETY: forwards the caller's arguments.
        unsafe { real::pthread_once(once, init) }
    })
}
