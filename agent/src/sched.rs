//! Scheduling: the calls that set a thread's policy and priority, directly
//! or through the attributes of a thread to be created. The priority
//! inversion analysis needs them; each is a `Done` event after the call.
//!
//! | call                           | `obj`       | `arg`          | `arg2`  |
//! |--------------------------------|-------------|----------------|---------|
//! | `pthread_setschedparam`        | `pthread_t` | sched_priority | policy  |
//! | `pthread_setschedprio`         | `pthread_t` | priority       | –       |
//! | `pthread_attr_setschedparam`   | attr        | sched_priority | –       |
//! | `pthread_attr_setschedpolicy`  | attr        | policy         | –       |
//! | `pthread_attr_setinheritsched` | attr        | inherit        | –       |

use libc::{c_int, pthread_attr_t, pthread_t, sched_param};
use crate::record::Detail;
use crate::{intercept, real};

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
pub unsafe extern "C" fn pthread_setschedparam(thread: pthread_t, policy: c_int, param: *const sched_param) -> c_int {
    intercept!(SetSchedParam, Done, Code, Detail { obj: thread as u64, arg: priority(param), arg2: policy as u32 as u64, flags: 0 }, real::pthread_setschedparam(thread, policy, param))
}

/// `pthread_setschedprio`: `obj` = thread, `arg` = priority.
#[no_mangle]
pub unsafe extern "C" fn pthread_setschedprio(thread: pthread_t, prio: c_int) -> c_int {
    intercept!(SetSchedPrio, Done, Code, Detail { obj: thread as u64, arg: prio as u32 as u64, ..Detail::default() }, real::pthread_setschedprio(thread, prio))
}

/// `pthread_attr_setschedparam`: `obj` = attr, `arg` = priority.
#[no_mangle]
pub unsafe extern "C" fn pthread_attr_setschedparam(a: *mut pthread_attr_t, param: *const sched_param) -> c_int {
    intercept!(AttrSetSchedParam, Done, Code, Detail { arg: priority(param), ..Detail::obj(a) }, real::pthread_attr_setschedparam(a, param))
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
