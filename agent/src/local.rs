//! Per-thread and per-process state: the thread's ring, its cached tid and
//! stack bounds, the reentrancy flag, and the cached pid.
//!
//! Everything lives in one `thread_local!` with a `const` initializer and no
//! destructor, so touching it never allocates and never registers anything:
//! it is safe from the first instruction of a thread to its last, and from a
//! signal handler.
//!
//! After `fork` the child is a new process whose only thread is the forking
//! one: the `pthread_atfork` child handler registered by [`watch_forks`]
//! makes that thread forget its ring and tid and the process its pid, so
//! that the child's events go to a fresh ring stamped with the child's ids
//! (the mapping itself is inherited, MAP_SHARED). Child handlers run in
//! registration order, so another library's handler may make a sync call
//! in the child before ours runs (unlocking what its prepare handler
//! locked, typically): writing that to the parent's ring would make two
//! producers on one ring. So from our prepare handler until our parent or
//! child handler, every event first checks `getpid()` against the cached
//! pid (one system call per event, only in that window).

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::shm::Shm;
use crate::stack::Bounds;

/// `Local::ring` before the thread's first event.
const NO_RING: u32 = u32::MAX;
/// `Local::ring` when the thread found every ring taken: record nothing.
const LOST: u32 = u32::MAX - 1;

/// The calling thread's agent state.
pub struct Local {
    /// Set while the thread is inside the agent's recording code: a nested
    /// interposed call (from a signal handler, or from malloc called by the
    /// agent) is then forwarded without being recorded.
    busy: Cell<bool>,
    ring: Cell<u32>,
    tid: Cell<i32>,
    bounds: Cell<Bounds>,
    /// The recorder did not drain this thread's full ring for a second.
    pub stalled: Cell<bool>,
    /// The ring's `tail` as last read: the producer re-reads the
    /// consumer-written `tail` only when the ring looks full by it.
    pub tail_seen: Cell<u64>,
    /// The thread's `ThreadExit` has been recorded.
    pub exited: Cell<bool>,
    /// Interposed sync calls the thread has entered (not nested ones): the
    /// software counter that names a yield point (see `Shm::yield_point`).
    pub sync_calls: Cell<u64>,
}

thread_local! {
    pub static LOCAL: Local = const {
        Local {
            busy: Cell::new(false),
            ring: Cell::new(NO_RING),
            tid: Cell::new(0),
            bounds: Cell::new(Bounds::UNKNOWN),
            stalled: Cell::new(false),
            tail_seen: Cell::new(0),
            exited: Cell::new(false),
            sync_calls: Cell::new(0),
        }
    };
}

/// The pid of this process, 0 until first asked.
static PID: AtomicI32 = AtomicI32::new(0);
/// Set while a fork is under way (between our prepare handler and our
/// parent or child handler).
static FORKING: AtomicBool = AtomicBool::new(false);

/// The calling process's pid, cached.
#[inline(always)]
pub fn pid() -> i32 {
    let pid = PID.load(Ordering::Relaxed);
    if pid != 0 {
        return pid;
    }
    let pid = crate::sys::getpid();
    PID.store(pid, Ordering::Relaxed);
    pid
}

impl Local {
    /// The calling thread's state.
    #[inline(always)]
    pub fn current() -> &'static Local {
        // SAFETY: LOCAL has a const initializer and no destructor, so its
        // storage is valid and initialised for the thread's whole life. The
        // 'static reference cannot leave the thread (Local is !Sync, so
        // &Local is !Send) and is only held for the duration of a call.
        LOCAL.with(|local| unsafe { &*(local as *const Local) })
    }

    /// Enters the agent's recording code; false if the thread is already in
    /// it (the caller must then not record).
    #[inline(always)]
    pub fn enter(&self) -> bool {
        if self.busy.get() {
            return false;
        }
        self.busy.set(true);
        true
    }

    /// Leaves the agent's recording code.
    #[inline(always)]
    pub fn leave(&self) {
        self.busy.set(false);
    }

    /// The kernel thread id, cached.
    #[inline(always)]
    pub fn tid(&self) -> i32 {
        let tid = self.tid.get();
        if tid != 0 {
            return tid;
        }
        let tid = crate::sys::gettid();
        self.tid.set(tid);
        tid
    }

    /// The thread's stack bounds, as learnt so far.
    #[inline(always)]
    pub fn bounds(&self) -> Bounds {
        self.bounds.get()
    }

    /// Learns the thread's stack bounds if not known yet. The caller must
    /// be inside the agent ([`Local::enter`]): pthread_getattr_np allocates,
    /// and an allocator may call interposed functions.
    pub fn learn_bounds(&self) {
        if self.bounds.get() == Bounds::UNKNOWN {
            self.bounds.set(Bounds::of_current_thread());
        }
    }

    /// The thread's ring, claiming one on first use; `None` if every ring
    /// was taken when the thread tried. The caller must be inside the agent.
    #[inline(always)]
    pub fn ring(&self, shm: Shm) -> Option<u32> {
        if FORKING.load(Ordering::Relaxed) {
            self.notice_fork();
        }
        match self.ring.get() {
            NO_RING => self.claim(shm),
            LOST => None,
            ring => Some(ring),
        }
    }

    #[cold]
    fn claim(&self, shm: Shm) -> Option<u32> {
        self.learn_bounds();
        match shm.claim(pid(), self.tid()) {
            Some(ring) => {
                self.ring.set(ring);
                self.tail_seen.set(0);
                Some(ring)
            }
            None => {
                self.ring.set(LOST);
                None
            }
        }
    }

    /// The thread's ring if it has claimed one, without claiming.
    pub fn claimed_ring(&self) -> Option<u32> {
        match self.ring.get() {
            NO_RING | LOST => None,
            ring => Some(ring),
        }
    }

    /// If the calling thread is in a new process (a fork child), forgets
    /// the parent's ring, tid and pid: the next event claims a fresh ring
    /// with the child's ids. The stack bounds stay (the forking thread's
    /// stack is at the same addresses in the child), and so does `busy`.
    #[cold]
    fn notice_fork(&self) {
        let now = crate::sys::getpid();
        if PID.load(Ordering::Relaxed) != now {
            PID.store(now, Ordering::Relaxed);
            self.ring.set(NO_RING);
            self.tid.set(0);
            self.stalled.set(false);
            self.exited.set(false);
        }
    }
}

/// Registers the fork handlers; called once, when the agent becomes active.
pub fn watch_forks() {
    // SAFETY: registers plain functions as handlers; they stay valid
    // because the agent is never unloaded while the program runs.
    unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_in_parent),
            Some(after_fork_in_child),
        )
    };
}

extern "C" fn before_fork() {
    FORKING.store(true, Ordering::Relaxed);
}

extern "C" fn after_fork_in_parent() {
    FORKING.store(false, Ordering::Relaxed);
}

/// The child handler: forget the parent (unless an event from an earlier
/// child handler already did).
extern "C" fn after_fork_in_child() {
    LOCAL.with(Local::notice_fork);
    crate::mem::after_fork_in_child();
    FORKING.store(false, Ordering::Relaxed);
}

/// Learns the calling thread's stack bounds now, outside any signal handler
/// (the constructor does this for the main thread), so that a first event
/// from a signal handler does not have to call pthread_getattr_np there.
pub fn prepare_current_thread() {
    LOCAL.with(|local| {
        if local.enter() {
            local.learn_bounds();
            local.leave();
        }
    });
}
