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
use crate::script::{is_sleep, unordered, Call, Script};
use crate::sysdata::{self, Policy};
use crate::ReplayConfig;
use lockstep_recorder::agent::SharedArea;
use lockstep_recorder::decode::table::syscall_name;
use lockstep_recorder::error::TraceeError;
/// What one step did: the recorder's step machine says the same.
pub use lockstep_recorder::machine::Outcome;
use lockstep_recorder::tracee::{wait_stop, AgentCall, Event, Resume, Stop, Stopped, SyscallInfo};
use lockstep_trace::{DataKind, ExitStatus, Pid, SyscallOutcome, Tid};
use std::collections::{HashMap, HashSet};
use std::io::Write;

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
    /// A sleep of a parallel recording: skipped, returns 0.
    Sleep,
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
    fn raise_recorded(&mut self, tid: Tid) {
        let Some(l) = self.threads.get(&tid) else {
            return;
        };
        let (rec, pid) = (l.rec, l.live_pid.0);
        let before = self.script.next_entry(rec);
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
            Gate::Sched(s) | Gate::Preempt(s) => Some(*s),
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
        let f = sym.symbolize(&maps, r.rip).into_iter().next()?;
        Some(f.to_string())
    }

    fn on_syscall(&mut self, t: Stopped) -> Result<(), TraceeError> {
        let tid = t.tid();
        let Some(live) = self.threads.get_mut(&tid) else {
            return t.resume(Resume::Syscall, 0);
        };
        let info = t.syscall_info()?;
        // The agent's own calls were left out of the recording; they run
        // as they come (see lockstep_agent_abi::AGENT_CALL_R14).
        match info {
            SyscallInfo::Exit { .. } if live.aside.is_some() => {
                if live.aside.take() == Some(Aside::Sleep) {
                    sysdata::set_return(&t, 0)?;
                    return self.after_call(t);
                }
                return t.resume(Resume::Syscall, 0);
            }
            SyscallInfo::Entry { .. } if live.started && self.area.is_some() => {
                if let Some(call) = t.agent_call()? {
                    live.aside = Some(Aside::Agent);
                    return match call {
                        AgentCall::Yield { sync_calls } => self.on_yield_point(t, sync_calls),
                        AgentCall::Own => t.resume(Resume::Syscall, 0),
                    };
                }
            }
            _ => {}
        }
        match info {
            SyscallInfo::Entry { nr, args } => {
                // The root's execve points into lockstep's own memory.
                let launcher_exec = !live.started;
                if !live.started {
                    if nr != NR_EXECVE {
                        return t.resume(Resume::Syscall, 0);
                    }
                    live.started = true;
                }
                let name = syscall_name(nr).unwrap_or("unknown");
                let serialized = self.script.serialized;
                if unordered(name, &args, serialized) {
                    if is_sleep(name) {
                        // Not waited for: the time it took is not replayed.
                        sysdata::skip_call(&t)?;
                        live.aside = Some(Aside::Sleep);
                    }
                    return t.resume(Resume::Syscall, 0);
                }
                let rec = live.rec;
                let next = self.script.calls.get_mut(&rec).and_then(|q| {
                    while q
                        .front()
                        .is_some_and(|c| unordered(&c.name, &c.args, serialized))
                    {
                        q.pop_front();
                    }
                    q.pop_front()
                });
                let Some(call) = next else {
                    let location = self.location(&t);
                    self.diverge(Divergence {
                        seq: None,
                        tid: Some(rec),
                        what: "syscall after the recorded thread's last one".into(),
                        expected: "no more syscalls".into(),
                        got: name.into(),
                        location,
                    });
                    return t.resume(Resume::Syscall, 0);
                };
                if call.nr != nr {
                    let location = self.location(&t);
                    self.diverge(Divergence {
                        seq: Some(call.entry_seq),
                        tid: Some(rec),
                        what: "syscall".into(),
                        expected: call.name.clone(),
                        got: name.into(),
                        location,
                    });
                    return t.resume(Resume::Syscall, 0);
                }
                if self.cfg.verify && !launcher_exec {
                    if let Some(d) = compare_args(&call, &args) {
                        let location = self.location(&t);
                        self.diverge(Divergence { location, ..d });
                        return t.resume(Resume::Syscall, 0);
                    }
                }
                let policy = sysdata::policy(&call);
                let seq = call.entry_seq;
                live.current = Some((call, policy));
                if self.script.due(seq) {
                    self.enter(t)
                } else {
                    self.held.insert(tid, (t, Gate::Entry));
                    Ok(())
                }
            }
            SyscallInfo::Exit { rval, .. } => self.at_exit(t, rval),
            SyscallInfo::None => t.resume(Resume::Syscall, 0),
        }
    }

    /// At an exit stop: replays the exit now if it is due, holds it otherwise.
    fn at_exit(&mut self, t: Stopped, rval: i64) -> Result<(), TraceeError> {
        let Some(live) = self.threads.get(&t.tid()) else {
            return t.resume(Resume::Syscall, 0);
        };
        let Some((call, _)) = &live.current else {
            // An unordered call (a futex): serialized, the thread still
            // waits for its turn to run user code.
            if !live.started {
                return t.resume(Resume::Syscall, 0);
            }
            return self.after_call(t);
        };
        match call.exit_seq {
            Some(seq) if !self.script.due(seq) => {
                self.held.insert(t.tid(), (t, Gate::Exit(rval)));
                Ok(())
            }
            _ => self.leave(t, rval),
        }
    }

    /// Replays the entry of the thread's current call (it is due).
    fn enter(&mut self, t: Stopped) -> Result<(), TraceeError> {
        let tid = t.tid();
        let (call, policy) = match self.threads.get(&tid).and_then(|l| l.current.clone()) {
            Some(c) => c,
            None => return t.resume(Resume::Syscall, 0),
        };
        self.script.done(call.entry_seq);
        if self.cfg.stop_at.is_some_and(|s| call.entry_seq >= s) && self.stopped_at.is_none() {
            self.stopped_at = Some(crate::stopat::report(&t, &call, self.live_pid(tid)));
            self.kill_all();
            return t.resume(Resume::Syscall, 0);
        }
        // The recording ended with the thread in this call (blocked at a
        // hang, or killed in it): it goes no further.
        if call.outcome != SyscallOutcome::Returned && !ends_thread(&call.name) {
            tracing::debug!(
                seq = call.entry_seq,
                name = call.name,
                "parked at the recorded end"
            );
            self.parked.insert(tid, t);
            return Ok(());
        }
        if self.script.serialized && call.name == "exit" && self.live_pid(tid).0 != tid.0 {
            self.dying.insert(tid);
        }
        // An address-space call runs when the recording says it returned:
        // two threads mapping memory at once get it in the recorded order.
        let deferred = policy != Policy::Emulate && sysdata::shapes_address_space(&call.name);
        if let Some(x) = call.exit_seq.filter(|&x| deferred && !self.script.due(x)) {
            tracing::trace!(x, "address-space call waits for its exit's turn");
            self.held.insert(tid, (t, Gate::Run));
            return Ok(());
        }
        self.run(t, call, policy)
    }

    /// Lets the thread's current call happen (emulated, or for real).
    fn run(&mut self, t: Stopped, call: Call, policy: Policy) -> Result<(), TraceeError> {
        match policy {
            Policy::Emulate => {
                self.counts.emulated += 1;
                if call.name == "futex" {
                    sysdata::pi_lock_waits(&t, &call);
                }
                sysdata::skip_call(&t)?;
                t.resume(Resume::Syscall, 0)
            }
            Policy::Execute => {
                self.counts.executed += 1;
                let mut r = t.regs()?;
                if sysdata::pin_address(&call, &mut r) {
                    t.set_regs(r)?;
                }
                t.resume(Resume::Syscall, 0)
            }
            Policy::ExecuteTranslated => {
                self.counts.executed += 1;
                let mut r = t.regs()?;
                let tr = |v: u64, ids: &HashMap<i32, i32>| -> u64 {
                    let id = v as i32;
                    let live = ids.get(&id.abs()).copied().unwrap_or(id.abs());
                    (if id < 0 { -live } else { live }) as i64 as u64
                };
                match call.name.as_str() {
                    "tgkill" => {
                        r.rdi = tr(r.rdi, &self.ids);
                        r.rsi = tr(r.rsi, &self.ids);
                    }
                    _ if (r.rdi as i32) > 0 || (r.rdi as i32) < -1 => r.rdi = tr(r.rdi, &self.ids),
                    _ => {}
                }
                t.set_regs(r)?;
                t.resume(Resume::Syscall, 0)
            }
            Policy::MapFile => {
                self.counts.executed += 1;
                let (t, got) = crate::mapping::map_file(t, &call)?;
                self.at_exit(t, got)
            }
        }
    }

    /// Replays the exit of the thread's current call (it is due).
    fn leave(&mut self, t: Stopped, rval: i64) -> Result<(), TraceeError> {
        let tid = t.tid();
        let Some((call, policy)) = self.threads.get_mut(&tid).and_then(|l| l.current.take()) else {
            return t.resume(Resume::Syscall, 0);
        };
        if let Some(x) = call.exit_seq {
            self.script.done(x);
        }
        match policy {
            Policy::Emulate => {
                if self.cfg.verify && call.data.iter().any(|r| r.kind != DataKind::Out) {
                    let live = sysdata::live_terminal_bytes(&t, &call);
                    let rec: Vec<u8> = call.terminal_bytes();
                    if live != rec {
                        let location = self.location(&t);
                        self.diverge(Divergence {
                            seq: Some(call.entry_seq),
                            tid: Some(call.tid),
                            what: format!("output of {}", call.name),
                            expected: format!("{:?}", String::from_utf8_lossy(&rec)),
                            got: format!("{:?}", String::from_utf8_lossy(&live)),
                            location,
                        });
                        return t.resume(Resume::Syscall, 0);
                    }
                }
                if let Some(addr) = sysdata::put_back(&t, &call)? {
                    tracing::warn!(
                        addr,
                        name = call.name,
                        "could not write the recorded data back"
                    );
                }
                self.print_output(&call);
            }
            _ if is_restart(rval) && call.ret != Some(rval) => {
                // A live signal (one the replay suppresses) interrupted a
                // call that runs again; the kernel restarts it, which is
                // the same recorded call entered once more.
                tracing::debug!(name = call.name, rval, "restarted by the kernel");
                self.script
                    .calls
                    .entry(call.tid)
                    .or_default()
                    .push_front(call);
                return t.resume(Resume::Syscall, 0);
            }
            _ => {
                let recorded = call.ret.unwrap_or(rval);
                if sysdata::returns_recorded_id(&call.name) {
                    if rval > 0 && recorded > 0 {
                        self.ids.insert(recorded as i32, rval as i32);
                    }
                    sysdata::set_return(&t, recorded)?;
                } else if self.cfg.verify && rval != recorded && call.name != "execve" {
                    let location = self.location(&t);
                    self.diverge(Divergence {
                        seq: call.exit_seq,
                        tid: Some(call.tid),
                        what: format!("result of {}", call.name),
                        expected: recorded.to_string(),
                        got: rval.to_string(),
                        location,
                    });
                    return t.resume(Resume::Syscall, 0);
                }
            }
        }
        self.raise_recorded(tid);
        self.after_call(t)
    }

    /// A thread other than the leader exec'd: it takes the leader's id, and
    /// the recording has its calls from the exec on under the leader's tid
    /// (the leader's own calls it never finished are dropped).
    fn take_over_leader(&mut self, l: &mut Live) {
        let Some((exec, _)) = &l.current else {
            return;
        };
        let (leader, cut) = (Tid(exec.pid.0), exec.entry_seq);
        if let Some(q) = self.script.calls.get_mut(&leader) {
            let gone: Vec<Call> = q.iter().filter(|c| c.entry_seq < cut).cloned().collect();
            q.retain(|c| c.entry_seq > cut);
            for c in gone {
                self.script.done(c.entry_seq);
                if let Some(x) = c.exit_seq {
                    self.script.done(x);
                }
            }
        }
        l.rec = leader;
    }

    /// clone with CLONE_PARENT_SETTID: the kernel wrote the live tid where
    /// the program keeps it (glibc's `struct pthread`); the program must
    /// see the recorded one.
    fn set_parent_tid(&self, t: &Stopped, call: &Call, recorded: i64) -> Result<(), TraceeError> {
        use lockstep_recorder::mem::{Memory, ProcMem};
        let (flags, ptid) = match call.name.as_str() {
            "clone" => (call.args[0], call.args[2]),
            "clone3" => {
                let mem = ProcMem {
                    pid: Pid(t.tid().0),
                };
                (
                    mem.read_u64(call.args[0]).unwrap_or(0),
                    mem.read_u64(call.args[0] + 24).unwrap_or(0),
                )
            }
            _ => return Ok(()),
        };
        if flags & CLONE_PARENT_SETTID != 0 && ptid != 0 {
            t.write_mem(ptid, &(recorded as i32).to_le_bytes());
        }
        Ok(())
    }

    fn print_output(&mut self, call: &Call) {
        for r in call.data.iter() {
            let res = match r.kind {
                DataKind::Out => continue,
                DataKind::Stdout => {
                    let mut o = std::io::stdout().lock();
                    o.write_all(&r.bytes).and_then(|_| o.flush())
                }
                DataKind::Stderr => std::io::stderr().lock().write_all(&r.bytes),
            };
            if res.is_ok() {
                self.counts.output_bytes += r.bytes.len() as u64;
            }
        }
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
/// The kernel's "restart this call" results (ERESTARTSYS, ERESTARTNOINTR,
/// ERESTARTNOHAND, ERESTART_RESTARTBLOCK): a signal interrupted the call.
fn is_restart(rval: i64) -> bool {
    matches!(rval, -512 | -513 | -514 | -516)
}

/// Calls that end the thread or its program image themselves (the
/// recording saw no return from them, and the replay must run them).
fn ends_thread(name: &str) -> bool {
    matches!(name, "exit" | "exit_group" | "execve" | "execveat")
}

fn thread_group(tid: Tid) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{}/status", tid.0)).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// With `--verify`: the arguments the replayed call was made with against
/// the recorded ones (as many as the call takes).
fn compare_args(call: &Call, args: &[u64; 6]) -> Option<Divergence> {
    let n = lockstep_recorder::decode::signature::signature(&call.name)
        .map(|s| s.len())
        .unwrap_or(0)
        .min(6);
    let read = match call.name.as_str() {
        "futex" => lockstep_recorder::decode::flags::futex_args_read(call.args[1]),
        _ => (1u8 << n) - 1,
    };
    (0..6)
        .filter(|&i| read & (1 << i) != 0)
        .find(|&i| call.args[i] != args[i])
        .map(|i| Divergence {
            seq: Some(call.entry_seq),
            tid: Some(call.tid),
            what: format!("argument {} of {}", i + 1, call.name),
            expected: format!("{:#x}", call.args[i]),
            got: format!("{:#x}", args[i]),
            location: None,
        })
}
