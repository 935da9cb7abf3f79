//! One syscall of one thread, as the recorder sees it: the entry stop
//! (the agent's own calls set aside, the arguments decoded, a stack where
//! fds are made), the exit stop (the result and the memory the kernel
//! wrote, a new mapping's snapshot, the syscall row), and under
//! `--serialize` the scheduling decision each stop is.

use super::{Pending, Recorder, NR_EXECVE, NR_EXECVEAT, NR_EXIT, NR_FUTEX, PROT_EXEC};
use crate::decode::{self, decode_entry, table::syscall_name};
use crate::error::{RecordError, TraceeError};
use crate::mem::{Memory, ProcMem};
use crate::tracee::{AgentCall, Resume, Stopped, SyscallInfo};
use lockstep_trace::*;

impl Recorder {
    pub(super) fn on_syscall(&mut self, t: Stopped) -> Result<(), TraceeError> {
        let tid = t.tid();
        let Some(thread) = self.threads.get_mut(&tid) else {
            return t.resume(Resume::Syscall, 0);
        };
        let info = t.syscall_info()?;
        let exit_stop = matches!(info, SyscallInfo::Exit { .. });
        let nr_at_entry = match info {
            SyscallInfo::Entry { nr, .. } => Some(nr),
            _ => None,
        };
        let pid_of_thread = thread.pid;
        // The agent's own calls are not the program's: not recorded, no
        // scheduling decision (see lockstep_agent_abi::AGENT_CALL_R14).
        if exit_stop && thread.agent_call {
            thread.agent_call = false;
            return self.go(t, 0);
        }
        if !exit_stop && thread.started && self.area.is_some() {
            if let Some(call) = t.agent_call()? {
                thread.agent_call = true;
                if let AgentCall::Yield { sync_calls } = call {
                    if self.serial.as_mut().is_some_and(|s| s.yielded(tid)) {
                        return self.serial_yielded(t, sync_calls);
                    }
                }
                return self.go(t, 0);
            }
        }
        match info {
            SyscallInfo::Entry { nr, args } => {
                if !thread.started {
                    if nr != NR_EXECVE {
                        return t.resume(Resume::Syscall, 0);
                    }
                    thread.started = true;
                }
                let pid = thread.pid;
                let stale = thread.pending.take();
                let entry = self.clock.stamp();
                let name = syscall_name(nr)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("syscall_{nr}"));
                let decode = decode_entry(&name, &args, &ProcMem { pid });
                if let Some(p) = stale {
                    // An entry without an exit in between: the kernel
                    // restarted or abandoned it; keep what we saw.
                    Self::deferred(self.finish_syscall(pid, p, None, SyscallOutcome::Unfinished))?;
                }
                // Breakpoint path: a futex wait inside a sync call means it waited.
                if let Some(bp) = &mut self.bp {
                    bp.on_syscall_entry(tid, nr, &args, &mut self.clock);
                }
                // Where fd-relevant calls are made, for "created where, closed where".
                let stack = match (crate::unwind::wants_stack(&name), self.code_maps.get(&pid)) {
                    (true, Some(maps)) => match t.regs() {
                        Ok(r) => crate::unwind::scan(pid, r.rip, r.rsp, maps),
                        Err(_) => Vec::new(),
                    },
                    _ => Vec::new(),
                };
                if nr == NR_FUTEX && self.sched.as_ref().is_some_and(|s| s.sampling()) {
                    Self::deferred(self.sched_sample(pid))?;
                }
                let thread = self.threads.get_mut(&tid).expect("thread present");
                thread.pending = Some(Pending {
                    tid,
                    nr,
                    name,
                    args,
                    entry,
                    decode,
                    stack,
                });
            }
            SyscallInfo::Exit { rval, .. } => {
                let pid = thread.pid;
                if let Some(bp) = &mut self.bp {
                    bp.on_syscall_exit(tid, rval);
                }
                let thread = self.threads.get_mut(&tid).expect("thread present");
                if let Some(p) = thread.pending.take() {
                    let new_code = p.name == "mmap" && p.args[2] & PROT_EXEC != 0 && rval >= 0;
                    if new_code {
                        Self::deferred(self.snapshot_mappings(pid))?;
                        // Breakpoint path: arm a newly mapped libc (dynamic programs, --sync=ptrace).
                        if let Some(bp) = &mut self.bp {
                            bp.on_new_code(&t, pid)?;
                        }
                    }
                    if (p.nr == NR_EXECVE || p.nr == NR_EXECVEAT)
                        && rval < 0
                        && pid == self.root
                        && self.counts.syscalls == 0
                    {
                        self.root_exec_error = Some(-rval);
                    }
                    let (name, args) = (p.name.clone(), p.args);
                    Self::deferred(self.finish_syscall(
                        pid,
                        p,
                        Some(rval),
                        SyscallOutcome::Returned,
                    ))?;
                    Self::deferred(self.sched_syscall(pid, tid, &name, &args, rval))?;
                }
            }
            SyscallInfo::None => {}
        }
        if let Some(s) = &mut self.serial {
            // Serialized: a thread back from the kernel waits for its turn
            // to run user code; one going in frees the slot.
            let ends_thread =
                !exit_stop && tid.0 != pid_of_thread.0 && nr_at_entry == Some(NR_EXIT);
            if exit_stop {
                s.hold(t);
            } else if ends_thread {
                // A thread leaving keeps the user-code slot until it is
                // reaped: on its way out the kernel clears its tid word
                // (CLONE_CHILD_CLEARTID), which a joiner reads, so nobody
                // runs user code until that write has happened, in the
                // recording as in the replay.
                s.not_preempted(tid);
                self.serial_disarm(&t)?;
                self.go(t, 0)?;
            } else {
                s.entered_kernel(tid);
                s.not_preempted(tid);
                self.serial_disarm(&t)?;
                self.serial_raise_held(&t, pid_of_thread.0);
                self.go(t, 0)?;
            }
            return self.serial_schedule();
        }
        self.go(t, 0)
    }

    pub(super) fn finish_syscall(
        &mut self,
        pid: Pid,
        p: Pending,
        ret: Option<i64>,
        outcome: SyscallOutcome,
    ) -> Result<(), RecordError> {
        let tid = p.tid;
        let exit =
            (outcome != SyscallOutcome::Unfinished || ret.is_some()).then(|| self.clock.stamp());
        let mem = ProcMem { pid };
        let mut d = p.decode.finish(ret, ret.map(|_| &mem as &dyn Memory));
        if let Some(r) = ret {
            crate::fdobj::annotate(&p.name, &p.args, r, pid, &mut d.result);
        }
        self.counts.syscalls += 1;
        let data = ret.map(|r| self.terminal.syscall_data(pid, &p.name, &p.args, r, &mem));
        let entry_seq = p.entry.seq;
        self.emit(Record::Syscall(Box::new(Syscall {
            pid,
            tid,
            nr: p.nr,
            name: p.name,
            args: p.args,
            entry: p.entry,
            decoded: d.args,
            text: d.text,
            exit,
            outcome,
            ret,
            error: ret.and_then(decode::error_name),
            result: d.result,
            stack: p.stack,
        })))?;
        match data {
            Some(regions) if !regions.is_empty() => {
                self.emit(Record::SyscallData(Box::new(SyscallData {
                    entry: entry_seq,
                    pid,
                    tid,
                    regions,
                })))
            }
            _ => Ok(()),
        }
    }
}

impl Pending {
    pub(super) fn decode_args(&self) -> serde_json::Map<String, serde_json::Value> {
        self.decode.args().clone()
    }
}
