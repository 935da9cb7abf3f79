//! Threads: `pthread_create` (and the start of the new thread), `join`,
//! `detach`, `exit`, `once`, and the scheduling calls.
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
//! A thread that ends neither way (cancelled) is caught by the destructor
//! of a pthread key the trampoline sets: it records `ThreadExit` with
//! `flags` 2 and retires the ring, unless the thread's exit was recorded.
//!
//! `pthread_exit`, `pthread_join` and `pthread_once` may unwind (glibc's
//! forced unwinding for exit and cancellation) through the interposer and
//! the trampoline; see [`record`](crate::record) for why that is fine.
//!
//! Scheduling calls (directly or through the attributes of a thread to be
//! created) are `Done` events after the call, for the priority-inversion
//! analysis:
//!
//! | call                           | `obj`       | `arg`          | `arg2`  |
//! |--------------------------------|-------------|----------------|---------|
//! | `pthread_setschedparam`        | `pthread_t` | sched_priority | policy  |
//! | `pthread_setschedprio`         | `pthread_t` | priority       | –       |
//! | `pthread_attr_setschedparam`   | attr        | sched_priority | –       |
//! | `pthread_attr_setschedpolicy`  | attr        | policy         | –       |
//! | `pthread_attr_setinheritsched` | attr        | inherit        | –       |

use core::cell::Cell;
use core::ptr;
use core::sync::atomic::{AtomicU32, Ordering};

use libc::{c_int, c_void, pthread_attr_t, pthread_once_t, pthread_t, sched_param};
use lockstep_agent_abi::{Op, Phase};

use crate::local::Local;
use crate::record::{self, Conv, Detail, Shape};
use crate::stack::Frame;
use crate::{frame, intercept, real};

/// What the trampoline needs: the user's routine and argument.
#[repr(C)]
struct Start {
    routine: *mut c_void,
    arg: *mut c_void,
}

/// `flags` of a `ThreadExit`: the start routine returned (0: pthread_exit).
const RETURNED: u8 = 1;
/// `flags` of a `ThreadExit` seen only by the key destructor (cancelled).
const VANISHED: u8 = 2;

/// The pthread key whose destructor notices threads that end without
/// returning from their routine or calling pthread_exit; `NO_KEY` if none.
static EXIT_KEY: AtomicU32 = AtomicU32::new(NO_KEY);
const NO_KEY: u32 = u32::MAX;

/// Creates [`EXIT_KEY`]; called once, when the agent becomes active.
/// pthread_key_create does not allocate.
pub fn watch_exits() {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is a valid out-pointer; the destructor is a plain
    // function that stays valid for the life of the process.
    if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) } == 0 {
        EXIT_KEY.store(key, Ordering::Release);
    }
}

/// The key destructor: glibc runs it at the end of every thread that set
/// the key (after cleanup handlers, with TLS still valid).
unsafe extern "C" fn on_thread_exit(_value: *mut c_void) {
    if !Local::current().exited.get() {
        thread_end(frame!(), ptr::null_mut(), VANISHED);
    }
}

type Routine = unsafe extern "C" fn(*mut c_void) -> *mut c_void;

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
    // Shape::Release: the sequence number is drawn now, and the thread
    // stays inside the agent until the event is written (module docs).
    let rec = record::begin(f, Op::ThreadCreate, Shape::Release, || Detail {
        arg2: routine as u64,
        ..Detail::default()
    });
    // SAFETY: the trampoline has the start-routine signature and takes
    // ownership of `start` in the new thread.
    let r = unsafe { real::pthread_create(thread, attr, trampoline as *mut c_void, start.cast()) };
    if r != 0 {
        // SAFETY: no thread was created, so `start` is still ours.
        unsafe { libc::free(start.cast()) };
    }
    if let Some(mut rec) = rec {
        // SAFETY: on success glibc stored the new id in `*thread`.
        rec.ev.obj = if r == 0 && !thread.is_null() {
            unsafe { *thread }
        } else {
            0
        };
        rec.complete(Phase::Done, r);
    }
    r
}

/// The start routine glibc runs in every thread created through the agent.
unsafe extern "C" fn trampoline(start: *mut c_void) -> *mut c_void {
    let f = frame!();
    // SAFETY: `start` is the block pthread_create filled and gave to this
    // thread alone; it is read once and freed.
    let Start { routine, arg } = unsafe { ptr::read(start.cast::<Start>()) };
    // SAFETY: allocated with malloc by pthread_create.
    unsafe { libc::free(start) };
    let key = EXIT_KEY.load(Ordering::Acquire);
    if key != NO_KEY {
        // SAFETY: a key created by watch_exits; any non-null value makes
        // glibc run its destructor when this thread ends.
        unsafe { libc::pthread_setspecific(key, 1 as *const c_void) };
    }
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() };
    let rec = record::begin(f, Op::ThreadStart, Shape::Done, || Detail {
        obj: me as u64,
        arg2: routine as u64,
        ..Detail::default()
    });
    record::finish(rec, Shape::Done, Conv::Code, 0);
    crate::mem::announce_stack();
    // SAFETY: `routine` is the user's non-null start routine.
    let routine: Routine = unsafe { core::mem::transmute(routine) };
    // SAFETY: calls the user's routine with the user's argument, as glibc
    // would have.
    let value = unsafe { call_clean(routine, arg) };
    thread_end(f, value, RETURNED);
    value
}

/// `routine(arg)` with the other caller-saved registers zeroed: the
/// thread's code starts with no value of the agent's (its timestamps, ring
/// positions) left in a register, since a serialized replay compares a
/// preempted thread's registers with the recorded ones (see
/// `record::scrubbed`).
///
/// # Safety
/// As calling `routine(arg)`.
#[inline(never)]
unsafe fn call_clean(routine: Routine, arg: *mut c_void) -> *mut c_void {
    let value: *mut c_void;
    // SAFETY: a plain C call of `routine` with `arg` in rdi; the zeroed
    // registers are clobbered by the call anyway (clobber_abi), r12 holds
    // the callee (callee-saved, so the routine gives it back). The stack
    // is 16-byte aligned here as at any call site of this function.
    unsafe {
        core::arch::asm!(
            "xor eax, eax",
            "xor ecx, ecx",
            "xor edx, edx",
            "xor esi, esi",
            "xor r8d, r8d",
            "xor r9d, r9d",
            "xor r10d, r10d",
            "xor r11d, r11d",
            "call r12",
            in("r12") routine,
            in("rdi") arg,
            lateout("rax") value,
            clobber_abi("C"),
        );
    }
    value
}

/// Records the calling thread's `ThreadExit` (`arg` = its return value)
/// and marks its ring as retired. Events may still follow (TLS destructors
/// run after this), and go to the same ring.
fn thread_end(f: Frame, value: *mut c_void, flags: u8) {
    Local::current().exited.set(true);
    let rec = record::begin(f, Op::ThreadExit, Shape::Done, || Detail {
        arg: value as u64,
        flags,
        ..Detail::default()
    });
    if let Some(rec) = rec {
        let (shm, ring) = (rec.shm(), rec.ring());
        rec.complete(Phase::Done, 0);
        crate::mem::thread_finish();
        shm.retire(ring);
    }
}

/// `pthread_exit`: `ThreadExit` (`Done`, `arg` = the value) before the
/// real call, which does not return.
#[no_mangle]
pub unsafe extern "C" fn pthread_exit(value: *mut c_void) -> ! {
    let f = frame!();
    thread_end(f, value, 0);
    // SAFETY: forwards the caller's argument.
    unsafe { real::pthread_exit(value) }
}

/// `pthread_join`: `Request`, then `Done` with `obj` = the joined
/// `pthread_t` and `ret` the result. A cancellation point.
#[no_mangle]
pub unsafe extern "C" fn pthread_join(thread: pthread_t, value: *mut *mut c_void) -> c_int {
    intercept!(
        ThreadJoin,
        Waited,
        Code,
        Detail {
            obj: thread,
            ..Detail::default()
        },
        real::pthread_join(thread, value)
    )
}

/// `pthread_detach`: `Done`, `obj` = the `pthread_t`.
#[no_mangle]
pub unsafe extern "C" fn pthread_detach(thread: pthread_t) -> c_int {
    intercept!(
        ThreadDetach,
        Done,
        Code,
        Detail {
            obj: thread,
            ..Detail::default()
        },
        real::pthread_detach(thread)
    )
}

thread_local! {
    /// The once control and init routine of the calling thread's innermost
    /// `pthread_once` (the routine runs in the calling thread, if at all).
    static ONCE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// What the real `pthread_once` runs instead of the program's routine:
/// the routine, then a `Released` of the once control, stamped before
/// `pthread_once` marks it done and wakes the threads waiting for it.
extern "C" fn once_routine() {
    let (once, init) = ONCE.with(|c| c.get());
    if init == 0 {
        return;
    }
    // SAFETY: the routine the program passed to pthread_once, a `void
    // (*)(void)`, called once, as the real pthread_once would.
    let routine: extern "C" fn() = unsafe { core::mem::transmute(init as *const ()) };
    routine();
    let rec = crate::record::begin(crate::frame!(), Op::Once, Shape::Release, || Detail {
        obj: once,
        arg2: init,
        ..Detail::default()
    });
    if let Some(rec) = rec {
        rec.complete(Phase::Released, 0);
    }
}

/// `pthread_once`: `Released` when the init routine returns (if this call
/// ran it), `Done` after the call; `obj` = the once control, `arg2` = the
/// routine.
#[no_mangle]
pub unsafe extern "C" fn pthread_once(once: *mut pthread_once_t, init: *mut c_void) -> c_int {
    let outer = ONCE.with(|c| c.replace((once as u64, init as u64)));
    let wrapped = once_routine as *mut c_void;
    let r = intercept!(
        Once,
        Done,
        Code,
        Detail {
            arg2: init as u64,
            ..Detail::obj(once)
        },
        real::pthread_once(once, wrapped)
    );
    ONCE.with(|c| c.set(outer));
    r
}

/// The priority in `*param`, or 0 for a null pointer.
fn priority(param: *const sched_param) -> u64 {
    if param.is_null() {
        return 0;
    }
    // SAFETY: a non-null sched_param the real function is about to read.
    unsafe { (*param).sched_priority as u32 as u64 }
}

/// `pthread_setschedparam`: `obj` = thread, `arg` = priority, `arg2` = policy.
#[no_mangle]
pub unsafe extern "C" fn pthread_setschedparam(
    thread: pthread_t,
    policy: c_int,
    param: *const sched_param,
) -> c_int {
    intercept!(
        SetSchedParam,
        Done,
        Code,
        Detail {
            obj: thread,
            arg: priority(param),
            arg2: policy as u32 as u64,
            flags: 0
        },
        real::pthread_setschedparam(thread, policy, param)
    )
}

/// `pthread_setschedprio`: `obj` = thread, `arg` = priority.
#[no_mangle]
pub unsafe extern "C" fn pthread_setschedprio(thread: pthread_t, prio: c_int) -> c_int {
    intercept!(
        SetSchedPrio,
        Done,
        Code,
        Detail {
            obj: thread,
            arg: prio as u32 as u64,
            ..Detail::default()
        },
        real::pthread_setschedprio(thread, prio)
    )
}

/// `pthread_attr_setschedparam`: `obj` = attr, `arg` = priority.
#[no_mangle]
pub unsafe extern "C" fn pthread_attr_setschedparam(
    a: *mut pthread_attr_t,
    param: *const sched_param,
) -> c_int {
    intercept!(
        AttrSetSchedParam,
        Done,
        Code,
        Detail {
            arg: priority(param),
            ..Detail::obj(a)
        },
        real::pthread_attr_setschedparam(a, param)
    )
}

/// Declares the attr interposers that set one int.
macro_rules! attr_int_calls {
    ($($name:ident => $op:ident;)*) => {$(
        #[doc = concat!("`", stringify!($name), "`: `obj` = attr, `arg` = the value.")]
        #[no_mangle]
        pub unsafe extern "C" fn $name(a: *mut pthread_attr_t, value: c_int) -> c_int {
            intercept!($op, Done, Code, Detail { arg: value as u32 as u64, ..Detail::obj(a) }, real::$name(a, value))
        }
    )*};
}

attr_int_calls! {
    pthread_attr_setschedpolicy => AttrSetSchedPolicy;
    pthread_attr_setinheritsched => AttrSetInheritSched;
}
