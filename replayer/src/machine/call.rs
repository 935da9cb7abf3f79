//! One recorded call of one thread: its entry (held until its turn,
//! compared with the recording under `--verify`, parked if the recording
//! ended in it), how it runs (emulated: skipped and its results put back;
//! or executed again, pinned to its recorded address or with ids
//! translated), and its exit (the recorded result and data, the recorded
//! signals raised after it, then the thread's turn to run user code).

use super::{Aside, Gate, Live, Replayer, CLONE_PARENT_SETTID, NR_EXECVE};
use crate::divergence::Divergence;
use crate::script::{is_sleep, unordered, Call};
use crate::sysdata::{self, Policy};
use lockstep_recorder::decode::table::syscall_name;
use lockstep_recorder::error::TraceeError;
use lockstep_recorder::tracee::{AgentCall, Resume, Stopped, SyscallInfo};
use lockstep_trace::{DataKind, Pid, SyscallOutcome, Tid};
use std::collections::HashMap;
use std::io::Write;

impl Replayer {
    pub(super) fn on_syscall(&mut self, t: Stopped) -> Result<(), TraceeError> {
        let tid = t.tid();
        let Some(live) = self.threads.get_mut(&tid) else {
            return t.resume(Resume::Syscall, 0);
        };
        let info = t.syscall_info()?;
        // The agent's own calls were left out of the recording; they run
        // as they come (see lockstep_agent_abi::AGENT_CALL_R14).
        match info {
            SyscallInfo::Exit { .. } if live.aside.is_some() => {
                if let Some(Aside::Sleep(until)) = live.aside.take() {
                    if let Some(seq) = until.filter(|&s| !self.script.due(s)) {
                        self.held.insert(tid, (t, Gate::Woken(seq)));
                        return Ok(());
                    }
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
                        // But one the recording has still to come returns
                        // no earlier than it did: after what the recording
                        // saw happen first (another thread's lock wait,
                        // which decides how the sleeper unlocks).
                        sysdata::skip_call(&t)?;
                        let rec = live.rec;
                        let until = self.script.take_sleep(rec, nr).and_then(|c| c.exit_seq);
                        if let Some(l) = self.threads.get_mut(&tid) {
                            l.aside = Some(Aside::Sleep(until));
                        }
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
    pub(super) fn at_exit(&mut self, t: Stopped, rval: i64) -> Result<(), TraceeError> {
        let Some(live) = self.threads.get(&t.tid()) else {
            return t.resume(Resume::Syscall, 0);
        };
        let Some((call, policy)) = &live.current else {
            // An unordered call (a futex): serialized, the thread still
            // waits for its turn to run user code.
            if !live.started {
                return t.resume(Resume::Syscall, 0);
            }
            return self.after_call(t);
        };
        if *policy != Policy::Emulate && sysdata::is_restart(rval) && call.ret != Some(rval) {
            // A live signal (one the replay suppresses) interrupted a call
            // that runs again (a fork before it made its child); the kernel
            // restarts it, which is the same recorded call entered once
            // more. Not held for its exit's turn: that turn may wait for
            // what only the restarted call makes (the child's first run).
            let tid = t.tid();
            if let Some((call, _)) = self.threads.get_mut(&tid).and_then(|l| l.current.take()) {
                tracing::debug!(name = call.name, rval, "restarted by the kernel");
                self.script
                    .calls
                    .entry(call.tid)
                    .or_default()
                    .push_front(call);
            }
            return t.resume(Resume::Syscall, 0);
        }
        match call.exit_seq {
            Some(seq) if !self.script.due(seq) => {
                self.held.insert(t.tid(), (t, Gate::Exit(rval)));
                Ok(())
            }
            _ => self.leave(t, rval),
        }
    }

    /// Replays the entry of the thread's current call (it is due).
    pub(super) fn enter(&mut self, t: Stopped) -> Result<(), TraceeError> {
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
        if call.name == "rt_sigsuspend" {
            // It waits with the mask it is given, which is what lets the
            // signal in (a shell blocks SIGCHLD around fork and waits for
            // it here): it runs for real, and the recorded signals it woke
            // for are raised before it, so it returns at once for them,
            // the handler run with that mask as when recorded.
            self.raise_recorded(tid);
        }
        self.run(t, call, policy)
    }

    /// Lets the thread's current call happen (emulated, or for real).
    pub(super) fn run(
        &mut self,
        t: Stopped,
        call: Call,
        policy: Policy,
    ) -> Result<(), TraceeError> {
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
    pub(super) fn leave(&mut self, t: Stopped, rval: i64) -> Result<(), TraceeError> {
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
    pub(super) fn take_over_leader(&mut self, l: &mut Live) {
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
    pub(super) fn set_parent_tid(
        &self,
        t: &Stopped,
        call: &Call,
        recorded: i64,
    ) -> Result<(), TraceeError> {
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

    pub(super) fn print_output(&mut self, call: &Call) {
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
}

/// Calls that end the thread or its program image themselves (the
/// recording saw no return from them, and the replay must run them).
fn ends_thread(name: &str) -> bool {
    matches!(name, "exit" | "exit_group" | "execve" | "execveat")
}

/// With `--verify`: the arguments the replayed call was made with against
/// the recorded ones (as many as the call takes).
fn compare_args(call: &Call, args: &[u64; 6]) -> Option<Divergence> {
    let n = lockstep_recorder::decode::signature::signature(&call.name)
        .map(|s| s.len())
        .unwrap_or(0)
        .min(6);
    const MAP_FIXED: u64 = 0x10;
    const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
    let read = match call.name.as_str() {
        "futex" => lockstep_recorder::decode::flags::futex_args_read(call.args[1]),
        // A hint, not an address: the replay pins the mapping where the
        // recording got it whatever the hint, which comes from earlier
        // results (glibc's next-heap hint, set by whichever thread made a
        // heap first: another one in a default replay of threads that
        // race only inside malloc).
        "mmap" if call.args[3] & (MAP_FIXED | MAP_FIXED_NOREPLACE) == 0 => ((1u8 << n) - 1) & !1,
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
