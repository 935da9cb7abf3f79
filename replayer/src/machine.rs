//! The replayer as a step machine, mirroring the recorder's: each
//! [`Replayer::step`] collects one ptrace-stop of the re-executed tree and
//! decides, from the recording, what the thread does next.
//!
//! Order: every recorded syscall entry and exit has a sequence number; a
//! thread that reaches one before its turn is held at that stop until every
//! earlier event has been replayed, so the replayed tree makes its syscalls
//! in the recorded order (futex waits excepted: they only say who waits,
//! and the kernel decides that again from the program's memory).

use crate::divergence::Divergence;
use crate::script::{Call, Script};
use crate::sysdata::Policy;
use crate::ReplayConfig;
use lockstep_recorder::agent::SharedArea;
use lockstep_recorder::error::TraceeError;
/// What one step did: the recorder's step machine says the same.
pub use lockstep_recorder::machine::Outcome;
use lockstep_recorder::tracee::{wait_stop, Event, Resume, Stop, Stopped};
use lockstep_trace::{ExitStatus, Pid, Tid};
use std::collections::{HashMap, HashSet};

mod call;
mod serial;
mod stall;

const NR_EXECVE: i64 = 59;
const CLONE_PARENT_SETTID: u64 = 0x0010_0000;

/// A live thread of the replay and the recorded thread it plays.
struct Live {
    rec: Tid,
    live_pid: Pid,
    /// False for the root before its execve.
    started: bool,
    /// Its first stop (the attach's PTRACE_EVENT_STOP) is still to come.
    fresh: bool,
    /// The recorded call the thread is in, and how it is replayed.
    current: Option<(Call, Policy)>,
    /// In a call outside the recorded order that the replay runs aside.
    aside: Option<Aside>,
}

/// A call a thread makes outside the recorded order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aside {
    /// The agent's own (not in the recording): it runs as it comes.
    Agent,
    /// A sleep of a parallel recording: skipped, returns 0; when it is
    /// one the thread's recording has still to come, it returns at that
    /// one's exit's turn (`Some(exit seq)`).
    Sleep(Option<u64>),
}

/// Which stop a held thread waits at.
#[derive(Clone, Copy, Debug)]
enum Gate {
    Entry,
    /// Entered an address-space call, which runs at its exit's turn.
    Run,
    Exit(i64),
    /// Serialized: waits for its recorded turn to run user code (the
    /// scheduler's decision with this sequence number).
    Sched(u64),
    /// Serialized: stopped at its recorded preemption point, which is
    /// replayed when this sequence number is due.
    Preempt(u64),
    /// A skipped sleep returns when this sequence number is due.
    Woken(u64),
}

/// Counters for the end-of-replay summary.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub stops: u64,
    /// Times a held thread was let go before its recorded turn because the
    /// others waited for it in the kernel.
    pub relaxed: u64,
    /// Serialized: preemptions replayed, and breakpoint hits it took to find them.
    pub preemptions: u64,
    pub breakpoint_hits: u64,
    /// Serialized, without --verify: preemption points not found exactly
    /// and taken at a pass of the same instruction instead.
    pub approximate: u64,
    pub emulated: u64,
    pub executed: u64,
    pub output_bytes: u64,
}

pub struct Replayer {
    pub script: Script,
    cfg: ReplayConfig,
    threads: HashMap<Tid, Live>,
    /// New children whose first stop came before their creator's event.
    early: HashMap<Tid, Stopped>,
    held: HashMap<Tid, (Stopped, Gate)>,
    /// Threads stopped at the entry of the call they were blocked in when
    /// the recording ended (a hang): they stay there.
    parked: HashMap<Tid, Stopped>,
    /// Recorded pid/tid → live pid/tid (for kill and tgkill).
    ids: HashMap<i32, i32>,
    live_root: Pid,
    pub live_root_status: Option<ExitStatus>,
    pub divergence: Option<Divergence>,
    /// `--stop-at` was reached: the report printed there.
    pub stopped_at: Option<String>,
    /// The replay ran out of recorded events with the program still alive
    /// (a recorded hang, or a recording cut short).
    pub ended_early: bool,
    /// Where the threads were blocked then.
    pub snapshot: Vec<(Tid, String)>,
    last_progress_ns: u64,
    raised: crate::signals::Raised,
    /// Serialized: the preemption point each live thread's breakpoint waits for.
    armed: HashMap<Tid, (u64, lockstep_trace::PreemptPoint)>,
    /// Serialized: passes over the armed instruction so far, per thread.
    passes: HashMap<Tid, u64>,
    /// Live non-leader threads that entered `exit` and are not reaped yet
    /// (serialized recordings only: see `turn_waits`).
    dying: HashSet<Tid>,
    /// The agent's shared area of the replayed program.
    area: Option<SharedArea>,
    /// Serialized: the preemption at a sync call each live thread is to
    /// stop at (its sequence number and the thread's count of sync calls).
    yielding: HashMap<Tid, (u64, u64)>,
    pub counts: Counts,
}

fn now_ns() -> u64 {
    lockstep_recorder::clock::monotonic_ns()
}

impl Replayer {
    pub fn new(
        script: Script,
        cfg: ReplayConfig,
        live_root: Pid,
        area: Option<SharedArea>,
    ) -> Replayer {
        let mut threads = HashMap::new();
        threads.insert(
            Tid(live_root.0),
            Live {
                rec: Tid(script.root.0),
                live_pid: live_root,
                started: false,
                fresh: true,
                current: None,
                aside: None,
            },
        );
        let mut ids = HashMap::new();
        ids.insert(script.root.0, live_root.0);
        Replayer {
            script,
            cfg,
            threads,
            early: HashMap::new(),
            held: HashMap::new(),
            ids,
            live_root,
            live_root_status: None,
            divergence: None,
            stopped_at: None,
            ended_early: false,
            snapshot: Vec::new(),
            last_progress_ns: now_ns(),
            raised: Default::default(),
            armed: HashMap::new(),
            parked: HashMap::new(),
            passes: HashMap::new(),
            dying: HashSet::new(),
            area,
            yielding: HashMap::new(),
            counts: Counts::default(),
        }
    }

    pub fn step(&mut self) -> Outcome {
        let (tid, stop, handle) = match wait_stop() {
            Ok(Some(x)) => x,
            Ok(None) => return Outcome::Done,
            Err(nix::errno::Errno::EINTR) => return Outcome::Interrupted,
            Err(_) => return Outcome::Done,
        };
        self.counts.stops += 1;
        self.last_progress_ns = now_ns();
        let _span = tracing::trace_span!("replay stop", tid = tid.0).entered();
        let r = match (stop, handle) {
            // A death can let a held thread have its turn (`turn_waits`).
            (stop, None) => {
                self.on_death(tid, stop);
                Ok(())
            }
            (Stop::Syscall, Some(t)) => self.on_syscall(t),
            (Stop::Event { event, sig }, Some(t)) => self.on_event(t, event, sig),
            (Stop::Signal { sig }, Some(t)) => self.on_signal(t, sig),
            (Stop::Exited { .. } | Stop::Killed { .. }, Some(_)) => Ok(()),
        };
        if let Err(TraceeError::Ptrace { request, errno }) = r {
            tracing::warn!(request, %errno, "ptrace request failed during replay");
        }
        if let Err(e) = self.release_due() {
            tracing::debug!(?e, "a held thread vanished");
        }
        Outcome::Continue
    }

    fn on_signal(&mut self, t: Stopped, sig: i32) -> Result<(), TraceeError> {
        if sig == libc::SIGTRAP && self.armed.contains_key(&t.tid()) {
            return self.on_breakpoint(t);
        }
        // A trapped rdtsc/rdtscp gets its recorded value (crate::tsc).
        if let Some(rec) = self.threads.get(&t.tid()).map(|l| l.rec) {
            match self.script.tsc.on_signal(&t, sig, rec, self.cfg.verify)? {
                crate::tsc::Handled::No => {}
                crate::tsc::Handled::Replayed => return t.resume(Resume::Syscall, 0),
                crate::tsc::Handled::Diverged(d) => {
                    let location = self.location(&t);
                    self.diverge(Divergence { location, ..d });
                    return t.resume(Resume::Syscall, 0);
                }
            }
        }
        let code = t.siginfo().map(|i| i.si_code).unwrap_or(0);
        let deliver = self.raised.deliver(t.tid(), sig, code);
        tracing::debug!(sig, code, deliver, "signal");
        t.resume(Resume::Syscall, if deliver { sig } else { 0 })
    }

    /// Raises the recorded signals the thread received after the call it
    /// just finished and before its next one.
    pub(super) fn raise_recorded(&mut self, tid: Tid) {
        let Some(l) = self.threads.get(&tid) else {
            return;
        };
        let (rec, pid) = (l.rec, l.live_pid.0);
        // Serialized: a signal the recorder held back to the thread's
        // preemption is raised there, not before.
        // Only the decisions before its next syscall are looked at (a
        // thread's queue holds all its decisions to the end).
        let next = self.script.next_entry(rec);
        let preempt = self.script.serial.get(&rec).and_then(|q| {
            q.iter()
                .take_while(|e| e.at.seq.0 < next)
                .find(|e| e.kind == lockstep_trace::SerialKind::Preempt)
                .map(|e| e.at.seq.0)
        });
        let before = next.min(preempt.unwrap_or(u64::MAX));
        for sig in self.script.signals.take_before(rec, before) {
            self.raised.raise(pid, tid, sig);
        }
    }

    fn on_death(&mut self, tid: Tid, stop: Stop) {
        tracing::debug!(tid = tid.0, ?stop, "death");
        self.threads.remove(&tid);
        self.held.remove(&tid);
        self.parked.remove(&tid);
        self.dying.remove(&tid);
        if tid.0 == self.live_root.0 {
            self.live_root_status = match stop {
                Stop::Exited { code } => Some(ExitStatus::Exited { code }),
                Stop::Killed { sig, core_dumped } => Some(ExitStatus::Killed {
                    signal: sig,
                    core_dumped,
                }),
                _ => None,
            };
        }
    }

    fn diverge(&mut self, d: Divergence) {
        tracing::info!(%d, "divergence");
        if self.divergence.is_none() {
            self.divergence = Some(d);
        }
        self.kill_all();
    }

    /// Ends the replayed tree (a divergence, `--stop-at`, the recording's end).
    pub fn kill_all(&mut self) {
        let pids: std::collections::HashSet<i32> =
            self.threads.values().map(|l| l.live_pid.0).collect();
        for p in pids {
            // SAFETY: kill with a pid of our own tracee and SIGKILL.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        for (_, (t, _)) in self.held.drain() {
            let _ = t.resume(Resume::Syscall, 0);
        }
        for (_, t) in self.parked.drain() {
            let _ = t.resume(Resume::Syscall, 0);
        }
    }

    /// The agent's shared area of the replayed program, if it has one.
    pub fn area(&self) -> Option<&SharedArea> {
        self.area.as_ref()
    }

    /// The live process of a live thread.
    fn live_pid(&self, tid: Tid) -> Pid {
        self.threads
            .get(&tid)
            .map(|l| l.live_pid)
            .unwrap_or(Pid(tid.0))
    }

    /// Serialized: a thread's recorded turn to run user code waits while
    /// a thread that left (`exit`) is not reaped yet, as the recorder's
    /// did: the kernel clears the leaving thread's tid word on its way out
    /// (CLONE_CHILD_CLEARTID), and a joiner reads it.
    fn turn_waits(&self, gate: &Gate) -> bool {
        matches!(gate, Gate::Sched(_)) && !self.dying.is_empty()
    }

    /// The sequence number a held thread waits for (`None`: nothing to wait for).
    fn gate_seq(&self, tid: &Tid, gate: &Gate) -> Option<u64> {
        match gate {
            Gate::Sched(s) | Gate::Preempt(s) | Gate::Woken(s) => Some(*s),
            _ => {
                let (call, _) = self.threads.get(tid)?.current.as_ref()?;
                match gate {
                    Gate::Entry => Some(call.entry_seq),
                    _ => call.exit_seq,
                }
            }
        }
    }

    fn location(&self, t: &Stopped) -> Option<String> {
        let r = t.regs().ok()?;
        let pid = self.live_pid(t.tid());
        let maps = crate::stopat::symbol_maps(pid);
        let mut sym = lockstep_symbols::Symbolizer::new();
        // Code run from the agent's instrumented copies: named by the
        // original instruction.
        let rip =
            lockstep_recorder::copies::original(&lockstep_recorder::mem::ProcMem { pid }, r.rip);
        // An inlined frame (an intrinsic, a static inline helper) is named
        // with the function it was inlined into, whose line is the
        // program's.
        let frames: Vec<String> = sym
            .symbolize(&maps, rip)
            .iter()
            .map(|f| f.to_string())
            .collect();
        let mut at = frames.first()?.clone();
        if at.ends_with("(inlined)") {
            if let Some(outer) = frames.get(1) {
                at = format!("{at} in {outer}");
            }
        }
        Some(at)
    }

    /// Lets the held threads whose events are now due go on.
    fn release_due(&mut self) -> Result<(), TraceeError> {
        loop {
            let due = self.held.iter().find_map(|(tid, (_, gate))| {
                let seq = self.gate_seq(tid, gate);
                (seq.is_none_or(|s| self.script.due(s)) && !self.turn_waits(gate)).then_some(*tid)
            });
            let Some(tid) = due else { return Ok(()) };
            let (t, gate) = self.held.remove(&tid).expect("held");
            match gate {
                Gate::Entry => self.enter(t)?,
                Gate::Run => {
                    let current = self.threads.get(&tid).and_then(|l| l.current.clone());
                    match current {
                        Some((call, policy)) => self.run(t, call, policy)?,
                        None => t.resume(Resume::Syscall, 0)?,
                    }
                }
                Gate::Exit(rval) => self.leave(t, rval)?,
                Gate::Sched(seq) => self.sched_release(t, seq)?,
                Gate::Preempt(seq) => self.preempt_release(t, seq)?,
                Gate::Woken(_) => {
                    crate::sysdata::set_return(&t, 0)?;
                    self.after_call(t)?
                }
            }
        }
    }

    fn on_event(&mut self, t: Stopped, event: Event, sig: i32) -> Result<(), TraceeError> {
        let tid = t.tid();
        match event {
            Event::Fork | Event::Vfork | Event::Clone => {
                let child = Tid(t.event_msg()? as i32);
                tracing::debug!(
                    child = child.0,
                    early = self.early.contains_key(&child),
                    "new child"
                );
                let creator = self.threads.get(&tid);
                let recorded = creator
                    .and_then(|l| l.current.as_ref())
                    .and_then(|(c, _)| c.ret)
                    .filter(|&r| r > 0);
                if let (Some(c), Some(r)) = (creator, recorded) {
                    // Before the child runs: it may read its own id at once
                    // (pthread_self()->tid), long before the parent's clone
                    // returns in the recorded order.
                    if let Some((call, _)) = &c.current {
                        self.set_parent_tid(&t, call, r)?;
                    }
                    let same_process = thread_group(child) == Some(c.live_pid.0);
                    let live_pid = if same_process {
                        c.live_pid
                    } else {
                        Pid(child.0)
                    };
                    self.ids.insert(r as i32, child.0);
                    self.threads.insert(
                        child,
                        Live {
                            rec: Tid(r as i32),
                            live_pid,
                            started: true,
                            fresh: true,
                            current: None,
                            aside: None,
                        },
                    );
                }
                if let Some(c) = self.early.remove(&child) {
                    if let Some(l) = self.threads.get_mut(&child) {
                        l.fresh = false;
                    }
                    self.after_call(c)?;
                }
                t.resume(Resume::Syscall, 0)
            }
            Event::Exec => {
                let former = Tid(t.event_msg()? as i32);
                lockstep_recorder::auxv::hide_vdso(&t)?;
                if former != tid {
                    if let Some(mut l) = self.threads.remove(&former) {
                        self.take_over_leader(&mut l);
                        self.threads.insert(tid, l);
                    }
                }
                t.resume(Resume::Syscall, 0)
            }
            Event::Stop => {
                let Some(live) = self.threads.get_mut(&tid) else {
                    tracing::debug!("first stop before the creator's event");
                    self.early.insert(tid, t);
                    return Ok(());
                };
                if std::mem::take(&mut live.fresh) {
                    return self.after_call(t);
                }
                if matches!(
                    sig,
                    libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
                ) {
                    t.resume(Resume::Listen, 0)
                } else {
                    t.resume(Resume::Syscall, 0)
                }
            }
            _ => t.resume(Resume::Syscall, 0),
        }
    }
}

/// The thread group (process) of a live thread.
fn thread_group(tid: Tid) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{}/status", tid.0)).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}
