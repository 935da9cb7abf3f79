//! The recorder as a step machine: each [`Recorder::step`] collects one
//! ptrace-stop, turns what the kernel reported into records, and lets the
//! thread go on. It owns the table of live threads and the pairing of
//! syscall entries with their exits.

use crate::agent::SharedArea;
use crate::breakpoints::{Breakpoints, Policy, Trap};
use crate::clock::SeqClock;
use crate::decode::EntryDecode;
use crate::error::{RecordError, TraceeError};
use crate::sink::Sink;
use crate::tracee::{wait_stop, Event, Resume, Stop, Stopped};
use lockstep_trace::*;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use tracing::{debug, trace};

mod end;
mod schedhooks;
mod serialize;
mod sigdefer;
mod syscall;
mod tree;

const NR_EXECVE: i64 = 59;
const NR_EXECVEAT: i64 = 322;
const NR_EXIT: i64 = 60;
const NR_FUTEX: i64 = 202;
const PROT_EXEC: u64 = 4;

/// A syscall whose entry was seen and whose exit was not yet.
struct Pending {
    /// The thread that entered the syscall (an exec'ing thread changes tid
    /// before its execve returns).
    tid: Tid,
    nr: i64,
    name: String,
    args: [u64; 6],
    entry: Stamp,
    decode: EntryDecode,
    /// The call stack at entry (only for the syscalls `unwind::wants_stack` names).
    stack: Vec<u64>,
}

/// What the recorder knows of a live thread.
struct Thread {
    pid: Pid,
    pending: Option<Pending>,
    /// False for the root before its execve: lockstep's own pre-exec code
    /// is not part of the recording.
    started: bool,
    /// In a system call of the agent's own (left out of the recording).
    agent_call: bool,
}

/// What one step did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A stop was handled; call `step` again.
    Continue,
    /// A signal interrupted the wait; the caller may forward it.
    Interrupted,
    /// No tracee is left.
    Done,
}

/// Counters for the end-of-recording summary.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub processes: u64,
    pub threads: u64,
    pub syscalls: u64,
    pub signals: u64,
    pub stops: u64,
    pub sync_ops: u64,
    /// Memory-access segments and accesses written.
    pub mem_segments: u64,
    pub mem_accesses: u64,
}

pub struct Recorder {
    clock: SeqClock,
    sink: Sink,
    /// The agent's shared area, drained at every stop.
    area: Option<Rc<SharedArea>>,
    threads: HashMap<Tid, Thread>,
    /// Parents of processes, for CLONE_PARENT.
    parents: HashMap<Pid, Option<Pid>>,
    /// New children whose first stop arrived before their creator's event.
    parked: HashMap<Tid, Stopped>,
    /// New children announced by their creator whose first stop is due.
    expected: HashSet<Tid>,
    root: Pid,
    root_status: Option<ExitStatus>,
    root_exec_error: Option<i64>,
    /// The executable mappings of each process as last snapshotted, for
    /// the stack scans of syscall call sites.
    code_maps: HashMap<Pid, Vec<Mapping>>,
    /// When a tracee last did anything (a stop or an agent event).
    last_progress_ns: u64,
    /// Set once the hang detector killed the program.
    hung: bool,
    /// The breakpoint path of sync recording (static binaries, `--sync=ptrace`).
    bp: Option<Breakpoints>,
    /// The agent's memory files (with the agent area).
    memlog: Option<crate::memlog::MemLog>,
    /// `--mem=step`: single-stepping of the executables' code.
    memstep: Option<crate::memstep::MemStep>,
    /// The schedule capture (`--sched`).
    sched: Option<crate::sched::Sched>,
    pub counts: Counts,
    /// `--serialize`: the scheduler that lets one thread run at a time.
    serial: Option<crate::serial::Serial>,
    /// `--serialize`: the thread the agent's shared area asks for a yield
    /// point, as last written there (`Tid(0)`: none).
    yield_asked: Tid,
    /// `--serialize`: asynchronous signals held back to a replayable point.
    sigdefer: sigdefer::Deferred,
    /// The recorder's own stdout and stderr, to keep what the program writes there.
    terminal: crate::sysdata::Terminal,
    /// rdtsc/rdtscp fault in the tree and are emulated (`crate::tsc`).
    trap_tsc: bool,
}

impl Recorder {
    /// A recorder for the freshly seized `root`; `area` is the agent's
    /// shared area when the agent is in use, `bp` which processes get sync
    /// breakpoints (none: `None`).
    pub fn new(
        root: Pid,
        sink: Sink,
        area: Option<Rc<SharedArea>>,
        bp: Option<Policy>,
    ) -> Result<Recorder, RecordError> {
        let memlog = area.as_ref().map(|a| crate::memlog::MemLog::new(a.path()));
        let mut r = Recorder {
            clock: area.clone().map(SeqClock::shared).unwrap_or_default(),
            sink,
            area,
            threads: HashMap::new(),
            parents: HashMap::new(),
            parked: HashMap::new(),
            expected: HashSet::new(),
            root,
            root_status: None,
            root_exec_error: None,
            code_maps: HashMap::new(),
            last_progress_ns: crate::clock::monotonic_ns(),
            hung: false,
            bp: bp.map(Breakpoints::new),
            memlog,
            memstep: None,
            sched: None,
            counts: Counts::default(),
            terminal: crate::sysdata::Terminal::of_this_process(),
            serial: None,
            yield_asked: Tid(0),
            sigdefer: Default::default(),
            trap_tsc: false,
        };
        let at = r.clock.stamp();
        r.threads.insert(
            Tid(root.0),
            Thread {
                pid: root,
                pending: None,
                started: false,
                agent_call: false,
            },
        );
        r.parents.insert(root, None);
        r.expected.insert(Tid(root.0));
        r.counts.processes += 1;
        r.counts.threads += 1;
        r.emit(Record::Spawn(Spawn {
            at,
            kind: SpawnKind::Root,
            tid: Tid(root.0),
            pid: root,
            parent_pid: None,
            creator_tid: None,
            clone_flags: None,
        }))?;
        Ok(r)
    }

    /// The tree was launched with the TSC trapped: its SIGSEGVs at
    /// rdtsc/rdtscp are emulated and recorded, not delivered.
    pub fn trap_tsc(&mut self) {
        self.trap_tsc = true;
    }

    /// Records memory accesses by single-stepping (`--mem=step`).
    pub fn step_memory(&mut self) {
        self.memstep = Some(crate::memstep::MemStep::new());
    }

    /// Resumes `t` with `sig`: to its next syscall stop, or one instruction
    /// when `--mem=step` steps it.
    fn go(&mut self, t: Stopped, sig: i32) -> Result<(), TraceeError> {
        match &mut self.memstep {
            Some(m) => m.resume(t, sig, &mut self.clock),
            None => t.resume(Resume::Syscall, sig),
        }
    }

    pub fn root(&self) -> Pid {
        self.root
    }

    /// How the root process ended, once it has.
    pub fn root_status(&self) -> Option<ExitStatus> {
        self.root_status
    }

    /// The error of the root's execve when the program could not be started.
    pub fn root_exec_error(&self) -> Option<i64> {
        self.root_exec_error
    }

    fn emit(&mut self, rec: Record) -> Result<(), RecordError> {
        self.sink.send(rec)
    }

    /// Hands old records to the writer (called when the wait was interrupted).
    pub fn tick(&mut self) -> Result<(), RecordError> {
        self.drain_agent()?;
        self.drain_sched()?;
        self.sink.tick()
    }

    /// Moves the agent's events into the trace.
    fn drain_agent(&mut self) -> Result<(), RecordError> {
        let Some(area) = &self.area else {
            return Ok(());
        };
        let mut events = Vec::new();
        let mut odd = Vec::new();
        area.drain(&mut events, &mut odd);
        if events.is_empty() && odd.is_empty() {
            return Ok(());
        }
        self.counts.sync_ops += (events.len() + odd.len()) as u64;
        self.last_progress_ns = crate::clock::monotonic_ns();
        if let Some(m) = &mut self.memstep {
            events.iter().for_each(|e| m.on_agent_op(&e.to_op()));
            odd.iter().for_each(|o| m.on_agent_op(o));
        }
        for op in odd {
            self.sink.send(Record::Sync(Box::new(op)))?;
        }
        if !events.is_empty() {
            self.sink.send(Record::SyncEvents(events))?;
        }
        Ok(())
    }

    /// Whether the hang detector ended the program.
    pub fn hung(&self) -> bool {
        self.hung
    }

    /// Records `pid`'s executable mappings as they are now.
    fn snapshot_mappings(&mut self, pid: Pid) -> Result<(), RecordError> {
        let maps = crate::maps::exec_mappings(pid);
        if maps.is_empty() {
            return Ok(());
        }
        self.code_maps.insert(pid, maps.clone());
        let at = self.clock.stamp();
        self.emit(Record::Mappings { at, pid, maps })
    }

    /// Handles one stop.
    pub fn step(&mut self) -> Result<Outcome, RecordError> {
        let (tid, stop, handle) = match wait_stop() {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(Outcome::Done),
            Err(nix::errno::Errno::EINTR) => return Ok(Outcome::Interrupted),
            Err(e) => {
                return Err(RecordError::Sys {
                    syscall: "waitpid",
                    errno: e,
                })
            }
        };
        self.counts.stops += 1;
        self.last_progress_ns = crate::clock::monotonic_ns();
        self.drain_agent()?;
        if self.counts.stops.is_multiple_of(64) {
            self.drain_sched()?;
            self.sink.tick()?;
        }
        let _span = tracing::trace_span!("stop", tid = tid.0, seq = self.clock.issued()).entered();
        self.dispatch(tid, stop, handle)
    }

    /// Handles one stop of `tid` (also the stops that end a breakpoint's
    /// single-step, which `step` never sees).
    fn dispatch(
        &mut self,
        tid: Tid,
        stop: Stop,
        handle: Option<Stopped>,
    ) -> Result<Outcome, RecordError> {
        trace!(?stop, "stop");
        let Some(handle) = handle else {
            self.on_death(tid, stop)?;
            self.flush_breakpoints()?;
            return Ok(Outcome::Continue);
        };
        let result = match stop {
            Stop::Syscall => self.on_syscall(handle),
            Stop::Event { event, sig } => self.on_event(handle, event, sig),
            Stop::Signal { sig } => self.on_signal(handle, sig),
            Stop::Exited { .. } | Stop::Killed { .. } => unreachable!("deaths have no handle"),
        };
        self.flush_breakpoints()?;
        match result {
            // The thread vanished between its stop and our request (SIGKILL,
            // another thread's exit_group): its death will be reported.
            Err(TraceeError::Died) => Ok(Outcome::Continue),
            Err(TraceeError::Ptrace { request, errno }) => Err(RecordError::Sys {
                syscall: request,
                errno,
            }),
            Ok(()) => Ok(Outcome::Continue),
        }
    }

    /// Emits the events the breakpoint path and the stepper made during
    /// the last stop.
    fn flush_breakpoints(&mut self) -> Result<(), RecordError> {
        if let Some(m) = self.memstep.as_mut().filter(|m| !m.out.is_empty()) {
            for rec in std::mem::take(&mut m.out) {
                self.sink.send(rec)?;
            }
        }
        let Some(bp) = &mut self.bp else {
            return Ok(());
        };
        if bp.out.is_empty() {
            return Ok(());
        }
        let ops = std::mem::take(&mut bp.out);
        self.counts.sync_ops += ops.len() as u64;
        for op in ops {
            self.sink.send(Record::Sync(Box::new(op)))?;
        }
        Ok(())
    }

    fn deferred<T>(r: Result<T, RecordError>) -> Result<T, TraceeError> {
        // Writer failures end the recording; surface them as a ptrace-level
        // failure so `step` returns them.
        r.map_err(|e| {
            tracing::error!("{e}");
            TraceeError::Ptrace {
                request: "trace writer",
                errno: nix::errno::Errno::EIO,
            }
        })
    }

    fn on_event(&mut self, t: Stopped, event: Event, sig: i32) -> Result<(), TraceeError> {
        let tid = t.tid();
        match event {
            Event::Fork | Event::Vfork | Event::Clone => {
                let child = Tid(t.event_msg()? as i32);
                Self::deferred(self.on_spawn(tid, child, event))?;
                self.go(t, 0)
            }
            Event::Exec => {
                let former = Tid(t.event_msg()? as i32);
                // The program's clock reads become syscalls (recorded, replayable).
                crate::auxv::hide_vdso(&t)?;
                Self::deferred(self.on_exec(tid, former))?;
                // Breakpoint path: drop the old image's table, arm the new one.
                if let Some(bp) = &mut self.bp {
                    let pid = Pid(tid.0);
                    let exe =
                        std::fs::read_link(format!("/proc/{}/exe", pid.0)).unwrap_or_default();
                    bp.on_exec(&t, pid, &exe.to_string_lossy())?;
                }
                if let Some(m) = &mut self.memstep {
                    m.on_exec(&t, Pid(tid.0))?;
                }
                self.go(t, 0)
            }
            Event::Exit => {
                // The thread is about to die; a syscall it is in never returns.
                if let Some(th) = self.threads.get_mut(&tid) {
                    let pid = th.pid;
                    Self::deferred(self.sched_exit(pid, tid))?;
                    if let Some(bp) = &mut self.bp {
                        bp.on_thread_exit(tid, pid, &mut self.clock);
                    }
                    if let Some(m) = &mut self.memstep {
                        m.on_exit(tid, &mut self.clock);
                    }
                    let th = self.threads.get_mut(&tid).expect("present");
                    if let Some(p) = th.pending.take() {
                        Self::deferred(self.finish_syscall(
                            pid,
                            p,
                            None,
                            SyscallOutcome::ThreadExited,
                        ))?;
                    }
                }
                self.go(t, 0)
            }
            Event::Stop => {
                if !self.threads.contains_key(&tid) {
                    // A new child reporting before its creator's event.
                    debug!(tid = tid.0, "parking early child");
                    self.parked.insert(tid, t);
                    return Ok(());
                }
                if self.expected.remove(&tid) {
                    Self::deferred(self.sched_first_stop(tid))?;
                    // Breakpoint path: a thread made by a recorded pthread_create starts.
                    if let (Some(bp), Some(th)) = (&mut self.bp, self.threads.get(&tid)) {
                        bp.on_first_stop(&t, th.pid, &mut self.clock)?;
                    }
                    if let Some(s) = &mut self.serial {
                        s.hold(t);
                        return self.serial_schedule();
                    }
                    return self.go(t, 0);
                }
                let now = crate::clock::monotonic_ns();
                match self.serial.as_mut().map(|s| s.interrupted(tid, now)) {
                    Some(crate::serial::Interrupted::Defer) => return self.serial_defer(t),
                    Some(crate::serial::Interrupted::Now) => return self.serial_preempt_here(t),
                    _ => {}
                }
                if matches!(
                    sig,
                    libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
                ) {
                    // A job-control group-stop: stay stopped until SIGCONT.
                    t.resume(Resume::Listen, 0)
                } else {
                    self.go(t, 0)
                }
            }
            Event::VforkDone | Event::Other(_) => self.go(t, 0),
        }
    }

    /// Breakpoint path: the first stop of a new thread (see `on_first_stop`).
    fn first_stop_breakpoints(&mut self, t: &Stopped, pid: Pid) -> Result<(), TraceeError> {
        match &mut self.bp {
            Some(bp) => bp.on_first_stop(t, pid, &mut self.clock),
            None => Ok(()),
        }
    }

    fn on_signal(&mut self, t: Stopped, sig: i32) -> Result<(), TraceeError> {
        let tid = t.tid();
        let Some(thread) = self.threads.get(&tid) else {
            return t.resume(Resume::Syscall, sig);
        };
        let pid = thread.pid;
        if !thread.started {
            return t.resume(Resume::Syscall, sig);
        }
        // A trapped rdtsc/rdtscp: executed here, recorded, not delivered.
        if self.trap_tsc && sig == libc::SIGSEGV {
            if let Some(read) = crate::tsc::emulate(&t, pid, sig, &mut self.clock)? {
                Self::deferred(self.emit(Record::Tsc(read)))?;
                return self.go(t, 0);
            }
        }
        // --serialize: the preempted thread reached its frame's return address.
        if sig == libc::SIGTRAP && self.serial.as_mut().is_some_and(|s| s.take_armed(tid)) {
            t.set_debugreg(7, 0)?;
            return self.serial_preempted(t);
        }
        // --mem=step: a single-step or the stepper's hardware breakpoint.
        if let (Some(m), libc::SIGTRAP) = (&mut self.memstep, sig) {
            if m.on_trap(&t, &mut self.clock)? {
                return self.go(t, 0);
            }
        }
        // Breakpoint path: an int3 of ours is handled there and not delivered.
        let t = match (&mut self.bp, sig) {
            (Some(bp), libc::SIGTRAP) => match bp.on_trap(t, pid, &mut self.clock)? {
                Trap::NotOurs(t) => t,
                Trap::Handled => return Ok(()),
                Trap::Foreign(tid, stop, handle) => {
                    Self::deferred(self.flush_breakpoints())?;
                    return Self::deferred(self.dispatch(tid, stop, handle)).map(|_| ());
                }
            },
            _ => t,
        };
        let info = t.siginfo()?;
        let code = info.si_code;
        let Some(t) = self.serial_hold_signal(t, sig, code)? else {
            return Ok(());
        };
        // SAFETY: si_pid is valid for signals sent by a process (SI_USER,
        // SI_TKILL, SI_QUEUE) and for SIGCHLD; si_addr for the fault signals.
        let (sender, fault) = unsafe {
            let sender = (code <= 0 || sig == libc::SIGCHLD).then(|| Pid(info.si_pid()));
            let fault = lockstep_trace::is_fault(sig, code).then(|| info.si_addr() as u64);
            (sender, fault)
        };
        self.counts.signals += 1;
        let at = self.clock.stamp();
        Self::deferred(self.emit(Record::Signal(Signal {
            at,
            pid,
            tid,
            signo: sig,
            code,
            sender_pid: sender,
            fault_addr: fault,
        })))?;
        self.go(t, sig)
    }
}
