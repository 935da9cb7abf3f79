//! The ptrace path of synchronization recording: int3 breakpoints on the
//! pthread/semaphore functions, for static executables (which cannot load
//! the agent) and for `record --sync=ptrace` on any program. It produces the
//! same `SyncOp`s as the agent (`mechanism` = `ptrace`).
//!
//! # How a call is seen
//! - **Arming** ([`arm`]): after exec, every watched function the mapped
//!   objects define (and, for dynamic programs under `--sync=ptrace`, every
//!   object mapped executable later: libc) gets an int3 over its first byte.
//!   The original bytes are kept per process and address.
//! - **Entry** ([`trap`]): the SIGTRAP stop of a thread at a known entry:
//!   arguments from registers, the call site at `[rsp]` and the callers by
//!   the frame-pointer chain, what must be read before the call (mutex
//!   kind). The replaced first instruction is emulated ([`emulate`]); only
//!   when it is not understood is the byte restored and the thread
//!   single-stepped (while it steps, another thread running of the same
//!   process could pass the function unseen: the byte is the original for
//!   that one instruction).
//! - **Return**: the return address on the stack (`[rsp]` at entry) is
//!   replaced by the function's own entry address, so the `ret` lands on
//!   the entry int3. That trap, by the same thread with rsp = entry rsp + 8,
//!   is the return: rax gives the outcome, rip is set to the real return
//!   address. No code byte changes per call, so threads sharing a call site
//!   cannot race over a return breakpoint (an int3 at the call site would
//!   have to be stepped over while another thread's call returns there, and
//!   that thread could pass it unseen meanwhile: measured, it lost ~5% of
//!   the unlocks of `static_mutex`).
//!   The price: while the call runs, its frame's return address is not the
//!   caller's. An unwinder walking through it (glibc's forced unwinding when
//!   a thread is cancelled inside a recorded cancellation point such as
//!   `pthread_cond_wait`, `pthread_join` or `sem_wait`) does not find the
//!   caller; and the hang snapshot's stack scan misses the call-site frame
//!   of a thread blocked in a recorded call (the sync event has it).
//!
//! So a recorded call costs two stops when the first instruction is
//! emulated. Whether a try-first acquire waited is decided by the syscalls
//! the thread makes in between (a futex wait): see [`ops::Shape::TryFirst`].
//!
//! # Processes
//! A forked child starts with a copy of its parent's table (its memory has
//! the same int3s). Threads share their process's table. Exec drops the
//! table and re-arms; the end of the process drops it. A call left by
//! longjmp or cancellation is dropped at the thread's next entry trap with
//! a stack pointer above the call's.

pub mod arm;
pub mod emulate;
pub mod ops;
pub mod trap;

use crate::clock::SeqClock;
use crate::error::TraceeError;
use crate::mem::{Memory, ProcMem};
use crate::tracee::Stopped;
use emulate::Insn;
use lockstep_symbols::Symbolizer;
use lockstep_trace::{Pid, Stamp, SyncOp, Tid};
use std::collections::{HashMap, HashSet};

/// Which processes get breakpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Only processes whose executable is static (the agent covers the rest).
    StaticOnly,
    /// Every process (`--sync=ptrace`; no LD_PRELOAD).
    All,
}

/// An armed entry breakpoint.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Index into [`ops::SPECS`].
    pub spec: usize,
    /// The byte the int3 replaced.
    pub orig: u8,
    /// The first instruction, when the emulator understands it.
    pub insn: Option<(Insn, usize)>,
}

/// The breakpoints of one process.
#[derive(Clone, Debug, Default)]
pub struct Proc {
    pub entries: HashMap<u64, Entry>,
    /// Paths of the mapped objects already searched for watched functions.
    pub armed: Vec<String>,
    /// Arm objects mapped later (dynamic programs under `--sync=ptrace`).
    pub watch_mmaps: bool,
}

/// A recorded call between its entry and return trap.
#[derive(Clone, Debug)]
pub struct Call {
    pub pid: Pid,
    pub spec: usize,
    /// The entry breakpoint it came through (where it returns to).
    pub entry: u64,
    /// The real return address (replaced on the stack by `entry`) and rsp at entry.
    pub ret_addr: u64,
    pub entry_rsp: u64,
    /// rdi, rsi, rdx, rcx at entry.
    pub args: [u64; 4],
    pub stack: Vec<u64>,
    /// The event fields known at entry.
    pub obj: u64,
    pub arg: u64,
    pub arg2: u64,
    pub flags: u32,
    /// The stamp drawn at entry (releases, create).
    pub stamp: Option<Stamp>,
    /// The thread made a blocking futex call since entry.
    pub blocked: bool,
    /// The errno of the last failed syscall since entry (for sem_* failures,
    /// whose errno lives in TLS): EAGAIN when there was none.
    pub last_err: i32,
}

/// Counters for the trace's meta rows.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Entry and return traps handled.
    pub traps: u64,
    /// Single-steps (not counted in the machine's stops).
    pub steps: u64,
    /// Calls recorded.
    pub calls: u64,
    /// Entry breakpoints armed.
    pub armed: u64,
}

/// The breakpoint path's state over the whole recording.
pub struct Breakpoints {
    pub policy: Policy,
    pub procs: HashMap<Pid, Proc>,
    pub calls: HashMap<Tid, Call>,
    /// Threads created by a recorded pthread_create whose first stop is
    /// due: the start routine.
    pub starts: HashMap<Tid, u64>,
    /// Threads whose `thread_start` was written and whose end was not.
    pub started: HashSet<Tid>,
    pub sym: Symbolizer,
    /// Events made, for the machine to emit.
    pub out: Vec<SyncOp>,
    pub stats: Stats,
}

/// What a SIGTRAP was.
pub enum Trap {
    /// Not a breakpoint of ours: the machine handles the signal as usual.
    NotOurs(Stopped),
    /// Handled and resumed.
    Handled,
    /// Handled, but a single-step ended in another stop, which the machine
    /// must dispatch.
    Foreign(Tid, crate::tracee::Stop, Option<Stopped>),
}

impl Breakpoints {
    pub fn new(policy: Policy) -> Self {
        Breakpoints {
            policy,
            procs: HashMap::new(),
            calls: HashMap::new(),
            starts: HashMap::new(),
            started: HashSet::new(),
            sym: Symbolizer::new(),
            out: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// After `pid` exec'd `exe` (stopped in `t`): drops the old image's
    /// breakpoints and arms the new one's, if the policy covers it.
    pub fn on_exec(&mut self, t: &Stopped, pid: Pid, exe: &str) -> Result<(), TraceeError> {
        self.procs.remove(&pid);
        self.calls.retain(|_, c| c.pid != pid);
        let is_static = arm::is_static(exe);
        if self.policy == Policy::StaticOnly && !is_static {
            return Ok(());
        }
        let mut p = Proc {
            watch_mmaps: !is_static,
            ..Proc::default()
        };
        let maps = arm::exec_mappings(pid);
        let n = arm::arm_new_objects(t, &mut p, &mut self.sym, &maps)?;
        self.stats.armed += n as u64;
        tracing::debug!(pid = pid.0, exe, armed = n, "breakpoints armed");
        self.procs.insert(pid, p);
        Ok(())
    }

    /// After an executable mmap in `pid`: arms newly mapped objects of a
    /// dynamic program recorded with breakpoints.
    pub fn on_new_code(&mut self, t: &Stopped, pid: Pid) -> Result<(), TraceeError> {
        let Some(p) = self.procs.get_mut(&pid) else {
            return Ok(());
        };
        if !p.watch_mmaps {
            return Ok(());
        }
        let maps = arm::exec_mappings(pid);
        let n = arm::arm_new_objects(t, p, &mut self.sym, &maps)?;
        self.stats.armed += n as u64;
        Ok(())
    }

    /// A new thread or process `child` of `creator` (in `creator_pid`).
    pub fn on_spawn(&mut self, creator: Tid, creator_pid: Pid, child: Tid, thread: bool) {
        if thread {
            if let Some(c) = self.calls.get(&creator) {
                if ops::SPECS[c.spec].shape == ops::Shape::Create {
                    self.starts.insert(child, c.args[2]);
                }
            }
            return;
        }
        // A new process: same memory image, so the same entries. The
        // forking thread is in fork(), not in a recorded call.
        if let Some(p) = self.procs.get(&creator_pid) {
            self.procs.insert(Pid(child.0), p.clone());
        }
    }

    /// The first stop of a new thread: its `thread_start` if a recorded
    /// pthread_create made it (`obj` = its pthread_self, which on x86-64
    /// glibc is its fs_base).
    pub fn on_first_stop(
        &mut self,
        t: &Stopped,
        pid: Pid,
        clock: &mut SeqClock,
    ) -> Result<(), TraceeError> {
        let Some(routine) = self.starts.remove(&t.tid()) else {
            return Ok(());
        };
        let regs = t.regs()?;
        let at = clock.stamp();
        self.started.insert(t.tid());
        self.out.push(trap::event(
            at,
            pid,
            t.tid(),
            "thread_start",
            "done",
            regs.fs_base,
            0,
            routine,
            0,
            0,
            &[],
        ));
        Ok(())
    }

    /// A syscall entry of `tid` (number, args): notes a wait inside a call,
    /// writing the `request` of a try-first acquire.
    pub fn on_syscall_entry(&mut self, tid: Tid, nr: i64, args: &[u64; 6], clock: &mut SeqClock) {
        const NR_FUTEX: i64 = 202;
        let Some(c) = self.calls.get_mut(&tid) else {
            return;
        };
        if nr != NR_FUTEX || !ops::futex_blocks(args[1]) || c.blocked {
            return;
        }
        c.blocked = true;
        if ops::SPECS[c.spec].shape == ops::Shape::TryFirst {
            let c = c.clone();
            self.out
                .push(trap::call_event(&c, clock.stamp(), tid, "request", 0));
        }
    }

    /// A syscall exit of `tid` with result `rval`.
    pub fn on_syscall_exit(&mut self, tid: Tid, rval: i64) {
        if let Some(c) = self.calls.get_mut(&tid) {
            if (-4095..0).contains(&rval) {
                c.last_err = -rval as i32;
            }
        }
    }

    /// `tid` is about to exit (PTRACE_EVENT_EXIT): a thread started by a
    /// recorded pthread_create whose routine returned ends with the agent's
    /// `pthread_exit` event with flags 1.
    pub fn on_thread_exit(&mut self, tid: Tid, pid: Pid, clock: &mut SeqClock) {
        if self.started.remove(&tid) {
            self.out.push(trap::event(
                clock.stamp(),
                pid,
                tid,
                "pthread_exit",
                "done",
                0,
                0,
                0,
                1,
                0,
                &[],
            ));
        }
    }

    /// `tid` is gone; with `process_exit`, its whole process.
    pub fn on_death(&mut self, tid: Tid, pid: Pid, process_exit: bool) {
        self.starts.remove(&tid);
        self.started.remove(&tid);
        self.drop_call(tid);
        if process_exit {
            self.procs.remove(&pid);
        }
    }

    /// Forgets `tid`'s open call, if any.
    pub fn drop_call(&mut self, tid: Tid) {
        self.calls.remove(&tid);
    }

    /// Whether `pid` has breakpoints (it records sync ops this way).
    pub fn covers(&self, pid: Pid) -> bool {
        self.procs.contains_key(&pid)
    }
}

/// The tracee memory the emulator works on: reads without a stop
/// (process_vm_readv), writes with PTRACE_POKEDATA.
struct TraceeMem<'a> {
    t: &'a Stopped,
    mem: ProcMem,
}

impl emulate::Access for TraceeMem<'_> {
    fn read_u64(&self, addr: u64) -> Option<u64> {
        self.mem.read_u64(addr)
    }
    fn write_u64(&self, addr: u64, value: u64) -> Option<()> {
        self.t.poke(addr, value).ok()
    }
}
