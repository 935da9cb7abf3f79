//! What each recorded sync call does to locks and threads: the one place
//! that knows the pthread API's semantics. Analyses match on [`Effect`]s,
//! never on function names.

use lockstep_trace::SyncOp;

/// How a lock is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    Exclusive,
    Shared,
}

/// The kind of a lock-like object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockKind {
    Mutex,
    RwLock,
    Spin,
}

impl LockKind {
    pub fn name(self) -> &'static str {
        match self {
            LockKind::Mutex => "mutex",
            LockKind::RwLock => "rwlock",
            LockKind::Spin => "spinlock",
        }
    }
}

/// glibc mutex type bits as the agent records them in `flags`.
pub const MUTEX_RECURSIVE: u32 = 1;
pub const MUTEX_ERRORCHECK: u32 = 2;
pub const MUTEX_TYPE_MASK: u32 = 3;
pub const MUTEX_ROBUST: u32 = 0x10;
pub const MUTEX_PRIO_INHERIT: u32 = 0x20;
pub const MUTEX_PRIO_PROTECT: u32 = 0x40;

/// The effect of one sync op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The thread starts a blocking acquisition of `obj`.
    Request {
        obj: u64,
        kind: LockKind,
        mode: Mode,
    },
    /// A blocking acquisition failed or timed out: the thread no longer waits.
    RequestFailed {
        obj: u64,
    },
    /// The thread now holds `obj` (`try_` for trylock: it could not have blocked).
    Acquire {
        obj: u64,
        kind: LockKind,
        mode: Mode,
        try_: bool,
        flags: u32,
    },
    /// The thread released `obj`.
    Release {
        obj: u64,
    },
    /// An unlock the implementation refused (EPERM: not the owner).
    ReleaseFailed {
        obj: u64,
        ret: i32,
    },
    /// cond_wait began: `mutex` is released while waiting on `cond`.
    CondWaitStart {
        cond: u64,
        mutex: u64,
    },
    /// cond_wait returned (woken or timed out): `mutex` is held again.
    CondWaitEnd {
        cond: u64,
        mutex: u64,
    },
    /// pthread_cond_signal / pthread_cond_broadcast on `cond`.
    CondSignal {
        cond: u64,
    },
    /// `obj` was initialised (a new lifetime of the address begins).
    Init {
        obj: u64,
        flags: u32,
    },
    /// `obj` was destroyed (its lifetime ends).
    Destroy {
        obj: u64,
    },
    /// A thread began with this pthread_t value.
    ThreadStart {
        pthread: u64,
    },
    /// The thread joined the thread with this pthread_t value.
    Join {
        pthread: u64,
    },
    Other,
}

fn lock_kind(op: &str) -> Option<(LockKind, Mode, bool)> {
    Some(match op {
        "pthread_mutex_lock" | "pthread_mutex_timedlock" => {
            (LockKind::Mutex, Mode::Exclusive, false)
        }
        "pthread_mutex_trylock" => (LockKind::Mutex, Mode::Exclusive, true),
        "pthread_rwlock_rdlock" | "pthread_rwlock_timedrdlock" => {
            (LockKind::RwLock, Mode::Shared, false)
        }
        "pthread_rwlock_tryrdlock" => (LockKind::RwLock, Mode::Shared, true),
        "pthread_rwlock_wrlock" | "pthread_rwlock_timedwrlock" => {
            (LockKind::RwLock, Mode::Exclusive, false)
        }
        "pthread_rwlock_trywrlock" => (LockKind::RwLock, Mode::Exclusive, true),
        "pthread_spin_lock" => (LockKind::Spin, Mode::Exclusive, false),
        "pthread_spin_trylock" => (LockKind::Spin, Mode::Exclusive, true),
        _ => return None,
    })
}

/// The effect of `op`.
pub fn effect(op: &SyncOp) -> Effect {
    let phase = op.phase.as_str();
    if let Some((kind, mode, try_)) = lock_kind(&op.op) {
        return match phase {
            "request" => Effect::Request {
                obj: op.obj,
                kind,
                mode,
            },
            // EOWNERDEAD: a robust mutex whose owner died is acquired all the same.
            "acquired" => Effect::Acquire {
                obj: op.obj,
                kind,
                mode,
                try_,
                flags: op.flags,
            },
            "failed" if !try_ => Effect::RequestFailed { obj: op.obj },
            _ => Effect::Other,
        };
    }
    match (op.op.as_str(), phase) {
        ("pthread_mutex_unlock" | "pthread_rwlock_unlock" | "pthread_spin_unlock", "released") => {
            Effect::Release { obj: op.obj }
        }
        ("pthread_mutex_unlock" | "pthread_rwlock_unlock" | "pthread_spin_unlock", "failed") => {
            Effect::ReleaseFailed {
                obj: op.obj,
                ret: op.ret,
            }
        }
        ("pthread_cond_wait" | "pthread_cond_timedwait", "request") => Effect::CondWaitStart {
            cond: op.obj,
            mutex: op.arg,
        },
        ("pthread_cond_wait" | "pthread_cond_timedwait", "acquired" | "failed") => {
            Effect::CondWaitEnd {
                cond: op.obj,
                mutex: op.arg,
            }
        }
        ("pthread_cond_signal" | "pthread_cond_broadcast", _) => {
            Effect::CondSignal { cond: op.obj }
        }
        (
            "pthread_mutex_init"
            | "pthread_rwlock_init"
            | "pthread_spin_init"
            | "pthread_cond_init"
            | "sem_init",
            "done",
        ) => Effect::Init {
            obj: op.obj,
            flags: op.flags,
        },
        (
            "pthread_mutex_destroy"
            | "pthread_rwlock_destroy"
            | "pthread_spin_destroy"
            | "pthread_cond_destroy"
            | "sem_destroy",
            "done",
        ) => Effect::Destroy { obj: op.obj },
        ("thread_start", _) => Effect::ThreadStart { pthread: op.obj },
        ("pthread_join", "done") if op.ret == 0 => Effect::Join { pthread: op.obj },
        _ => Effect::Other,
    }
}
