//! `liblockstep_agent.so`, the in-process half of the lockstep recorder.
//!
//! The recorder starts the program with `LD_PRELOAD` naming this library
//! and `LOCKSTEP_SHM` naming a shared-memory file laid out as
//! [`lockstep_agent_abi`] describes. The agent exports the pthread and
//! semaphore functions (mutexes, rwlocks, condition variables, semaphores,
//! spinlocks, barriers, thread creation/join/exit, once, scheduling), so
//! the program's calls land here first; each interposer records what the
//! call did as fixed-size events in the calling thread's ring, then calls
//! the real glibc function. That costs no ptrace stop: the recorder drains
//! the rings at the stops it takes anyway and on a timer.
//!
//! Module map:
//! * [`shm`]: mapping the file, claiming rings, appending events;
//! * [`local`]: per-thread state (ring, tid, stack bounds, reentrancy flag), pid, fork;
//! * [`record`]: how a call becomes events (the one generic helper);
//! * [`stack`]: the frame-pointer walk that gives every event its call stack;
//! * [`real`]: the real functions, found with `dlsym(RTLD_NEXT)`;
//! * [`sys`]: the agent's own system calls, marked so that tracers leave
//!   them out of the recorded order, and its own address region;
//! * the interposers: [`mutex`], [`rwlock`], [`cond`], [`sem`], [`spin`]
//!   (spinlocks and barriers), [`thread`] (threads and scheduling).
//!
//! Rules the code keeps: never print, never abort, never allocate or lock
//! on the recording path; when the file is missing or not valid the agent
//! is inert and only forwards calls. It must be built with
//! `-C force-frame-pointers=yes` (see [`stack`]).

#![deny(unsafe_op_in_unsafe_fn)]
#![allow(clippy::missing_safety_doc)]

pub mod stack;

pub mod cond;
pub mod local;
pub mod mem;
pub mod mutex;
pub mod real;
pub mod record;
pub mod rwlock;
pub mod sem;
pub mod shm;
pub mod spin;
pub mod sys;
pub mod thread;
pub mod vdso;

/// Runs when the library is loaded (before `main`): maps the file, and
/// learns the main thread's stack bounds while that is still safe (outside
/// any signal handler). Interposed calls made before this (from other
/// libraries' constructors) initialise the agent lazily instead.
extern "C" fn constructor() {
    if shm::get().is_some() {
        stack::cfi::init();
        local::prepare_current_thread();
        mem::init();
    }
}

/// Runs at exit: the main thread's last memory segment.
extern "C" fn destructor() {
    mem::thread_finish();
}

#[used]
#[link_section = ".fini_array"]
static DESTRUCTOR: extern "C" fn() = destructor;

#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = constructor;
