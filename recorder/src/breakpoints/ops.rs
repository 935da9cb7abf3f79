//! Which functions the breakpoint path watches and what events each call
//! makes: the same table the agent's interposers implement (see
//! `agent/src/record.rs` for the shapes and `agent-abi` for the fields), in
//! data form so one entry/return handler serves every function.

/// Which events a call makes (the agent's `Shape`, plus `TryFirst`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `request` at entry, `acquired`/`failed` at return.
    Blocking,
    /// `acquired`/`failed` at return.
    Attempt,
    /// Stamp drawn at entry, `released`/`failed` written at return.
    Release,
    /// `done` at return.
    Done,
    /// `request` at entry, `done` at return (join).
    Waited,
    /// The agent's try-first acquires: one `acquired` when the call made no
    /// blocking syscall; `request` (stamped at the first blocking syscall)
    /// then `acquired`/`failed` when it waited; `request` + `failed` for a
    /// failure without waiting (the agent's failed try then failed call).
    TryFirst,
    /// `pthread_create`: stamp at entry (before the new thread's events),
    /// `done` with `obj` = the new pthread_t at return.
    Create,
    /// `pthread_exit`: `done` at entry; it does not return.
    Exit,
}

/// How the return value reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conv {
    /// 0 or an errno; EOWNERDEAD still acquires.
    Code,
    /// sem style: 0, or -1 with errno (see [`super::Call::last_err`]).
    Errno,
    /// 0 or PTHREAD_BARRIER_SERIAL_THREAD (-1) pass the barrier.
    Barrier,
}

/// Which argument registers become `obj`/`arg`/`arg2`/`flags`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// `obj` = arg0.
    Obj,
    /// A mutex: `obj` = arg0, `flags` = `__kind` bits, `arg2` = ceiling.
    Mutex,
    /// `pthread_mutex_init`: as `Mutex` after the call, `arg` = the attr's
    /// type | protocol << 32.
    MutexInit,
    /// cond wait: `obj` = cond, `arg` = mutex.
    CondWait,
    /// rwlock unlock: `flags` 1 when the caller is the writer.
    RwUnlock,
    /// `obj` = arg0, `arg` = arg1 as a 32-bit value (attr setters, spin_init).
    ObjArg1,
    /// `obj` = arg0, `arg` = arg2 (barrier_init count).
    ObjArg2,
    /// sem_init: `arg` = value (arg2), `arg2` = pshared (arg1).
    SemInit,
    /// sem_close: `flags` 1.
    Named,
    /// sem_open: `obj` = the result, `flags` 1, `arg` = value if O_CREAT, `arg2` = oflag.
    SemOpen,
    /// `obj` = arg0, `arg2` = arg1 (pthread_once: the routine).
    ObjRoutine,
    /// pthread_create: `arg2` = the routine (arg2), `obj` = *arg0 after.
    Create,
    /// pthread_exit: `arg` = the value.
    ExitValue,
    /// setschedparam: `obj` = thread, `arg` = *param priority, `arg2` = policy.
    SchedParam,
    /// attr_setschedparam: `obj` = attr, `arg` = *param priority.
    AttrSchedParam,
}

/// One watched function.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// The symbol to resolve and the op name written to the trace.
    pub name: &'static str,
    pub shape: Shape,
    pub conv: Conv,
    pub detail: Detail,
}

macro_rules! specs {
    ($($name:literal $shape:ident $conv:ident $detail:ident;)*) => {
        /// Every function the breakpoint path watches.
        pub const SPECS: &[Spec] = &[$(Spec {
            name: $name,
            shape: Shape::$shape,
            conv: Conv::$conv,
            detail: Detail::$detail,
        },)*];
    };
}

specs! {
    "pthread_mutex_init" Done Code MutexInit;
    "pthread_mutex_lock" TryFirst Code Mutex;
    "pthread_mutex_trylock" Attempt Code Mutex;
    "pthread_mutex_timedlock" Blocking Code Mutex;
    "pthread_mutex_unlock" Release Code Mutex;
    "pthread_mutex_destroy" Done Code Mutex;
    "pthread_mutex_consistent" Done Code Mutex;
    "pthread_rwlock_init" Done Code Obj;
    "pthread_rwlock_rdlock" TryFirst Code Obj;
    "pthread_rwlock_wrlock" TryFirst Code Obj;
    "pthread_rwlock_tryrdlock" Attempt Code Obj;
    "pthread_rwlock_trywrlock" Attempt Code Obj;
    "pthread_rwlock_timedrdlock" Blocking Code Obj;
    "pthread_rwlock_timedwrlock" Blocking Code Obj;
    "pthread_rwlock_unlock" Release Code RwUnlock;
    "pthread_rwlock_destroy" Done Code Obj;
    "pthread_cond_init" Done Code Obj;
    "pthread_cond_wait" Blocking Code CondWait;
    "pthread_cond_timedwait" Blocking Code CondWait;
    "pthread_cond_signal" Release Code Obj;
    "pthread_cond_broadcast" Release Code Obj;
    "pthread_cond_destroy" Done Code Obj;
    "sem_init" Done Errno SemInit;
    "sem_open" Done Errno SemOpen;
    "sem_wait" TryFirst Errno Obj;
    "sem_trywait" Attempt Errno Obj;
    "sem_timedwait" Blocking Errno Obj;
    "sem_post" Release Errno Obj;
    "sem_destroy" Done Errno Obj;
    "sem_close" Done Errno Named;
    "pthread_spin_init" Done Code ObjArg1;
    "pthread_spin_lock" TryFirst Code Obj;
    "pthread_spin_trylock" Attempt Code Obj;
    "pthread_spin_unlock" Release Code Obj;
    "pthread_spin_destroy" Done Code Obj;
    "pthread_barrier_init" Done Code ObjArg2;
    "pthread_barrier_wait" Blocking Barrier Obj;
    "pthread_barrier_destroy" Done Code Obj;
    "pthread_create" Create Code Create;
    "pthread_join" Waited Code Obj;
    "pthread_detach" Done Code Obj;
    "pthread_exit" Exit Code ExitValue;
    "pthread_once" Done Code ObjRoutine;
    "pthread_setschedparam" Done Code SchedParam;
    "pthread_setschedprio" Done Code ObjArg1;
    "pthread_attr_setschedparam" Done Code AttrSchedParam;
    "pthread_attr_setschedpolicy" Done Code ObjArg1;
    "pthread_attr_setinheritsched" Done Code ObjArg1;
    "pthread_mutexattr_settype" Done Code ObjArg1;
    "pthread_mutexattr_setprotocol" Done Code ObjArg1;
    "pthread_mutexattr_setprioceiling" Done Code ObjArg1;
    "pthread_mutexattr_setrobust" Done Code ObjArg1;
}

impl Conv {
    /// Whether return value `r` (eax) means success, and the `ret` to write
    /// (`err`: the errno a sem_* failure left, see `Call::last_err`).
    pub fn judge(self, r: i32, err: i32) -> (bool, i32) {
        match self {
            Conv::Code => (r == 0 || r == libc::EOWNERDEAD, r),
            Conv::Errno if r == 0 => (true, 0),
            Conv::Errno => (false, err),
            Conv::Barrier => (r == 0 || r == libc::PTHREAD_BARRIER_SERIAL_THREAD, r),
        }
    }
}

/// The futex operations that put the caller to sleep (FUTEX_WAIT,
/// LOCK_PI, WAIT_BITSET, WAIT_REQUEUE_PI, LOCK_PI2): a thread inside a
/// sync call that makes one had to wait.
pub fn futex_blocks(op: u64) -> bool {
    matches!(op & 0x7f, 0 | 6 | 9 | 11 | 13)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_agent_ops() {
        for s in SPECS {
            let known = (1..=83u16)
                .filter_map(lockstep_agent_abi::Op::from_code)
                .any(|o| o.name() == s.name);
            assert!(known, "{} is not an agent op", s.name);
        }
    }

    #[test]
    fn futex_waits() {
        assert!(futex_blocks(0x80)); // FUTEX_WAIT_PRIVATE
        assert!(futex_blocks(0x189)); // WAIT_BITSET_PRIVATE | CLOCK_REALTIME
        assert!(!futex_blocks(0x81)); // FUTEX_WAKE_PRIVATE
    }
}
