//! `--mem=step`, the reference mechanism of memory-access recording:
//! every thread is single-stepped while it executes the main executable's
//! own code, each instruction decoded with capstone ([`decode`]) and its
//! memory operands evaluated with the registers before the step. Simple and
//! exact on any binary, at one ptrace stop (~70 µs) per instruction; the
//! fast agent path is tested against it.
//!
//! # Which code is stepped
//! - **Start**: not the dynamic loader nor libc's start-up. After exec the
//!   main thread gets a hardware breakpoint (debug registers: per thread,
//!   no code byte changed) at `main` (the ELF entry point when the
//!   executable has no symbol table); stepping starts when it fires.
//! - **Leaving**: when a step lands outside the executable's text (a call
//!   into a shared library, which is where every pthread call and syscall
//!   is), the thread's segment is closed and it runs freely until the
//!   return address found on the stack, again a hardware breakpoint; so
//!   several threads returning to one address never interfere. `syscall`
//!   and `int3` instructions of the executable are run the same way (a
//!   step would hide a syscall from the recorder's syscall stops; an int3
//!   is the sync breakpoint path's).
//! - **New threads and processes** (after their process started stepping)
//!   are stepped from birth, through libc's thread start-up or fork return
//!   (a bounded number of steps, syscalls run freely), until they reach the
//!   executable's code: their start routine, or the code after fork().
//! - **Known limit**: code of the executable called back from a library
//!   while the thread runs freely (qsort comparators, atexit handlers,
//!   signal handlers entered in library code) is not stepped.
//!
//! Accesses are gathered per thread into a segment (deduplicated by
//! address, size, flags and instruction, as the agent does), closed with a stamp from
//! the recorder's clock whenever the thread leaves the executable's code
//! (so before any sync op it makes) and when it exits. A lock-prefixed or
//! `xchg` instruction closes the segment and is bracketed by `atomic` sync
//! ops, `released` before and `acquired` after, as the agent does.

pub mod decode;
pub mod run;

use crate::clock::SeqClock;
use crate::error::TraceeError;
use crate::tracee::{Resume, Stopped};
use decode::{Decoder, Insn, Kind};
use lockstep_trace::{MemAccess, Pid, Record, Tid};
use run::{
    add, arm, atomic_op, birth_step, close, read_code, return_target, run_until, stats_meta,
};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// Steps a new thread may take through library code before reaching the
/// executable's (glibc's thread start-up takes a few hundred).
const BIRTH_STEPS: u32 = 20_000;
/// si_code of a SIGTRAP from an int3 (not a step or a debug register).
const SI_KERNEL: i32 = 0x80;
/// DR7 with DR0 enabled as a local execute breakpoint of length 1.
const DR7_DR0_EXEC: u64 = 1;

/// What the stepper does with a thread when it resumes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Run freely; with `bp`, until the hardware breakpoint there, then `then`.
    Free { bp: Option<u64>, then: Then },
    /// Step the executable's code.
    Stepping,
    /// Step library code until the executable's is reached (`left` steps).
    Birth { left: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Then {
    Step,
    Birth(u32),
}

/// The instruction about to be stepped and its accesses.
struct Pending {
    ip: u64,
    next: u64,
    accesses: Vec<(u64, u32, u8)>,
    /// `(addr, size)` of a lock-prefixed or xchg access.
    atomic: Option<(u64, u32)>,
}

struct Thread {
    pid: Pid,
    mode: Mode,
    pending: Option<Pending>,
    /// Registers read at the last trap (valid until the thread resumes).
    regs: Option<libc::user_regs_struct>,
    /// The instruction interrupted by a signal delivered with the last step.
    sig_ip: Option<u64>,
    seg: Vec<MemAccess>,
    seen: HashSet<(u64, u32, u8, u64)>,
    /// The start routine of a thread being born, once known.
    routine: Option<u64>,
}

/// A process whose executable is stepped.
#[derive(Clone, Default)]
struct Proc {
    /// The executable's text mappings.
    text: Vec<(u64, u64)>,
    /// Decoded instructions by address (`None`: not decodable).
    cache: HashMap<u64, Option<Rc<Insn>>>,
}

impl Proc {
    fn in_text(&self, ip: u64) -> bool {
        self.text.iter().any(|&(s, e)| (s..e).contains(&ip))
    }
}

/// Counters for the trace's meta rows.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub steps: u64,
    /// Accesses executed (before deduplication within segments).
    pub executed: u64,
    pub hw_traps: u64,
    pub accesses: u64,
    pub segments: u64,
    pub atomics: u64,
}

/// The stepper's state over the whole recording.
#[derive(Default)]
pub struct MemStep {
    decoder: Decoder,
    procs: HashMap<Pid, Proc>,
    threads: HashMap<Tid, Thread>,
    /// Start routines of threads by `pthread_t` (from the agent's events).
    routines: HashMap<u64, u64>,
    /// Records made (segments, atomic sync ops), for the machine to emit.
    pub out: Vec<Record>,
    pub stats: Stats,
}

impl MemStep {
    pub fn new() -> MemStep {
        MemStep::default()
    }

    /// After `pid` exec'd (stopped in `t`, its only thread): the new
    /// image's text, and a hardware breakpoint at `main` to start stepping.
    pub fn on_exec(&mut self, t: &Stopped, pid: Pid) -> Result<(), TraceeError> {
        self.threads.retain(|_, th| th.pid != pid);
        self.procs.remove(&pid);
        let Some((text, start)) = run::image(pid) else {
            return Ok(());
        };
        tracing::debug!(pid = pid.0, start, ?text, "stepping from main");
        let proc = Proc {
            text,
            cache: HashMap::new(),
        };
        self.procs.insert(pid, proc);
        let bp = arm(t, Some(start))?;
        let mode = Mode::Free {
            bp,
            then: Then::Step,
        };
        self.threads.insert(t.tid(), Thread::new(pid, mode));
        Ok(())
    }

    /// A new thread (or process, `pid` != `creator_pid`) of a stepped
    /// process; `routine` is its start routine when the sync breakpoints
    /// saw the pthread_create.
    pub fn on_spawn(&mut self, child: Tid, pid: Pid, creator_pid: Pid, routine: Option<u64>) {
        let Some(p) = self.procs.get(&creator_pid) else {
            return;
        };
        if pid != creator_pid {
            let p = p.clone();
            self.procs.insert(pid, p);
        }
        let mut th = Thread::new(pid, Mode::Birth { left: BIRTH_STEPS });
        th.routine = routine;
        self.threads.insert(child, th);
    }

    /// An agent event: the creator's `pthread_create` (the new thread's
    /// `pthread_t`, which on x86-64 glibc is its fs base, and its routine)
    /// or the thread's own `thread_start` name the start routine, so that
    /// a thread stepped from birth runs freely to it from its next stop
    /// instead of stepping through libc's and the agent's start-up.
    pub fn on_agent_op(&mut self, op: &lockstep_trace::SyncOp) {
        match op.op.as_str() {
            "pthread_create" if op.obj != 0 => {
                self.routines.insert(op.obj, op.arg2);
            }
            "thread_start" => {
                if let Some(th) = self.threads.get_mut(&op.tid) {
                    th.routine = Some(op.arg2);
                }
            }
            _ => {}
        }
    }

    /// A SIGTRAP stop of `t`: true when it is the stepper's (a step or its
    /// hardware breakpoint), to be resumed without the signal.
    pub fn on_trap(&mut self, t: &Stopped, clock: &mut SeqClock) -> Result<bool, TraceeError> {
        let Some(th) = self.threads.get_mut(&t.tid()) else {
            return Ok(false);
        };
        if matches!(th.mode, Mode::Free { bp: None, .. }) {
            return Ok(false);
        }
        let code = t.siginfo()?.si_code;
        if code <= 0 || code == SI_KERNEL {
            return Ok(false);
        }
        let regs = t.regs()?;
        match th.mode {
            Mode::Free { bp: Some(at), then } if regs.rip == at => {
                t.set_debugreg(7, 0)?;
                self.stats.hw_traps += 1;
                th.mode = match then {
                    Then::Step => Mode::Stepping,
                    Then::Birth(left) => Mode::Birth { left },
                };
            }
            Mode::Free { .. } => return Ok(false),
            Mode::Stepping => {
                if let Some(p) = th.pending.take() {
                    let pid = th.pid;
                    if regs.rip == p.next {
                        self.stats.executed += p.accesses.len() as u64;
                        for &(addr, size, flags) in &p.accesses {
                            add(th, addr, size, flags, p.ip);
                        }
                    }
                    if let Some((addr, size)) = p.atomic {
                        let at = clock.stamp();
                        let op = atomic_op(at, pid, t.tid(), "acquired", addr, size, p.ip);
                        self.out.push(op);
                    }
                }
            }
            Mode::Birth { .. } => {}
        }
        th.regs = Some(regs);
        Ok(true)
    }

    /// Resumes `t` with `sig`: a single-step when it is stepped (its next
    /// instruction decoded first), else to its next syscall stop.
    pub fn resume(
        &mut self,
        t: Stopped,
        sig: i32,
        clock: &mut SeqClock,
    ) -> Result<(), TraceeError> {
        let tid = t.tid();
        let Some(th) = self.threads.get_mut(&tid) else {
            return t.resume(Resume::Syscall, sig);
        };
        if matches!(th.mode, Mode::Free { .. }) {
            return t.resume(Resume::Syscall, sig);
        }
        let regs = match th.regs.take() {
            Some(r) => r,
            None => t.regs()?,
        };
        let pid = th.pid;
        let Some(proc) = self.procs.get_mut(&pid) else {
            th.mode = Mode::Free {
                bp: None,
                then: Then::Step,
            };
            return t.resume(Resume::Syscall, sig);
        };
        let rip = regs.rip;
        if !proc.in_text(rip) {
            return match th.mode {
                Mode::Birth { left } => match th
                    .routine
                    .or_else(|| self.routines.get(&regs.fs_base).copied())
                    .filter(|&r| proc.in_text(r))
                {
                    Some(r) => run_until(t, th, Some(r), Then::Step, sig),
                    None => birth_step(t, th, rip, left, sig, &mut self.stats),
                },
                _ => {
                    // Left the executable: free until back at the call site.
                    close(th, tid, clock, &mut self.out, &mut self.stats);
                    let target = match th.sig_ip.take() {
                        Some(ip) => Some(ip),
                        None => return_target(pid, regs.rsp, proc),
                    };
                    run_until(t, th, target, Then::Step, sig)
                }
            };
        }
        if let Mode::Birth { left } = th.mode {
            tracing::debug!(
                tid = tid.0,
                steps = BIRTH_STEPS - left,
                "new thread reached the executable"
            );
        }
        th.mode = Mode::Stepping;
        let insn = proc
            .cache
            .entry(rip)
            .or_insert_with(|| {
                read_code(pid, rip)
                    .and_then(|c| self.decoder.decode(&c, rip))
                    .map(Rc::new)
            })
            .clone();
        let Some(insn) = insn else {
            th.pending = None;
            self.stats.steps += 1;
            return t.resume(Resume::Step, sig);
        };
        let next = rip + insn.len as u64;
        match insn.kind {
            Kind::Syscall | Kind::Int3 => {
                close(th, tid, clock, &mut self.out, &mut self.stats);
                let target = match insn.kind {
                    Kind::Syscall => Some(next),
                    _ => return_target(pid, regs.rsp, proc),
                };
                return run_until(t, th, target, Then::Step, sig);
            }
            Kind::Plain => {}
        }
        let mut p = Pending {
            ip: rip,
            next,
            accesses: Vec::with_capacity(insn.ops.len()),
            atomic: None,
        };
        for op in &insn.ops {
            let addr = op.address(&regs, next);
            if op.flags & lockstep_trace::access::ATOMIC != 0 {
                p.atomic = Some((addr, op.size));
            }
            p.accesses.push((addr, op.size, op.flags));
        }
        if let Some((addr, size)) = p.atomic {
            // Accesses before the atomic are ordered before its release.
            self.stats.executed += p.accesses.len() as u64;
            for &(a, s, f) in &p.accesses {
                add(th, a, s, f, rip);
            }
            p.accesses.clear();
            close(th, tid, clock, &mut self.out, &mut self.stats);
            let at = clock.stamp();
            self.out
                .push(atomic_op(at, pid, tid, "released", addr, size, rip));
            self.stats.atomics += 1;
        }
        th.sig_ip = (sig != 0).then_some(rip);
        th.pending = Some(p);
        self.stats.steps += 1;
        t.resume(Resume::Step, sig)
    }

    /// `tid` is about to exit: its last segment.
    pub fn on_exit(&mut self, tid: Tid, clock: &mut SeqClock) {
        if let Some(th) = self.threads.get_mut(&tid) {
            close(th, tid, clock, &mut self.out, &mut self.stats);
        }
    }

    /// `tid` is gone (with `process_exit`, its process).
    pub fn on_death(&mut self, tid: Tid, pid: Pid, process_exit: bool, clock: &mut SeqClock) {
        self.on_exit(tid, clock);
        self.threads.remove(&tid);
        if process_exit {
            self.procs.remove(&pid);
        }
    }

    /// The end of the recording: every open segment, and the counters as
    /// meta rows (`mem_step_*`).
    pub fn finish(&mut self, clock: &mut SeqClock) {
        let mut tids: Vec<Tid> = self.threads.keys().copied().collect();
        tids.sort();
        for tid in tids {
            self.on_exit(tid, clock);
        }
        self.out.extend(stats_meta(&self.stats));
    }
}
