//! The process tree as the recorder follows it: new processes and threads
//! (fork, vfork, clone), execs (a non-main thread's exec takes over the
//! process's tid), and deaths (the open syscall closed, the exit recorded,
//! the thread's memory file imported).

use super::{Recorder, Thread};
use crate::error::{RecordError, TraceeError};
use crate::mem::{Memory, ProcMem};
use crate::tracee::{Event, Stop};
use lockstep_trace::*;

const CLONE_THREAD: u64 = 0x0001_0000;
const CLONE_PARENT: u64 = 0x0000_8000;

impl Recorder {
    pub(super) fn on_spawn(
        &mut self,
        creator: Tid,
        child: Tid,
        event: Event,
    ) -> Result<(), RecordError> {
        let Some(parent) = self.threads.get(&creator) else {
            return Ok(());
        };
        let creator_pid = parent.pid;
        let clone_flags = parent.pending.as_ref().and_then(|p| match p.name.as_str() {
            "clone" => Some(p.args[0]),
            "clone3" => ProcMem { pid: creator_pid }.read_u64(p.args[0]),
            _ => None,
        });
        let kind = match event {
            Event::Fork => SpawnKind::Fork,
            Event::Vfork => SpawnKind::Vfork,
            _ if clone_flags.is_some_and(|f| f & CLONE_THREAD != 0) => SpawnKind::Thread,
            _ => SpawnKind::Clone,
        };
        let (pid, parent_pid) = if kind == SpawnKind::Thread {
            (creator_pid, Some(creator_pid))
        } else if clone_flags.is_some_and(|f| f & CLONE_PARENT != 0) {
            (
                Pid(child.0),
                self.parents.get(&creator_pid).copied().flatten(),
            )
        } else {
            (Pid(child.0), Some(creator_pid))
        };
        if kind == SpawnKind::Thread {
            self.counts.threads += 1;
        } else {
            self.counts.processes += 1;
            self.counts.threads += 1;
            self.parents.insert(pid, parent_pid);
        }
        let at = self.clock.stamp();
        self.threads.insert(
            child,
            Thread {
                pid,
                pending: None,
                started: true,
                agent_call: false,
            },
        );
        self.sched_thread(pid, child);
        self.emit(Record::Spawn(Spawn {
            at,
            kind,
            tid: child,
            pid,
            parent_pid,
            creator_tid: Some(creator),
            clone_flags,
        }))?;
        if kind != SpawnKind::Thread {
            // A forked child runs its parent's code until it execs: give it
            // its own mapping snapshot so its call sites can be named.
            self.snapshot_mappings(pid)?;
        }
        // Breakpoint path: a new process inherits the table, a new thread may start.
        if let Some(bp) = &mut self.bp {
            bp.on_spawn(creator, creator_pid, child, kind == SpawnKind::Thread);
        }
        if let Some(m) = &mut self.memstep {
            let routine = self.bp.as_ref().and_then(|bp| bp.starts.get(&child));
            m.on_spawn(child, pid, creator_pid, routine.copied());
        }
        if self.parked.contains_key(&child) {
            self.sched_first_stop(child)?;
        }
        match self.parked.remove(&child) {
            Some(stopped) => match self
                .first_stop_breakpoints(&stopped, pid)
                .and_then(|()| self.go(stopped, 0))
            {
                Ok(()) | Err(TraceeError::Died) => {}
                Err(TraceeError::Ptrace { request, errno }) => {
                    return Err(RecordError::Sys {
                        syscall: request,
                        errno,
                    })
                }
            },
            None => {
                self.expected.insert(child);
            }
        }
        Ok(())
    }

    pub(super) fn on_exec(&mut self, tid: Tid, former: Tid) -> Result<(), RecordError> {
        let pid = Pid(tid.0);
        let mut thread = self.threads.remove(&former).unwrap_or(Thread {
            pid,
            pending: None,
            started: true,
            agent_call: false,
        });
        if former != tid {
            // A non-main thread exec'd: the main thread is gone without a
            // death report, and the exec'ing thread takes its tid.
            if let Some(mut old) = self.threads.remove(&tid) {
                if let Some(p) = old.pending.take() {
                    self.finish_syscall(pid, p, None, SyscallOutcome::ThreadExited)?;
                }
                let at = self.clock.stamp();
                self.emit(Record::Exit(Exit {
                    at,
                    tid,
                    pid,
                    status: ExitStatus::Execed,
                    process_exit: false,
                }))?;
            }
            let at = self.clock.stamp();
            self.emit(Record::Exit(Exit {
                at,
                tid: former,
                pid,
                status: ExitStatus::Execed,
                process_exit: false,
            }))?;
            let at = self.clock.stamp();
            self.emit(Record::Spawn(Spawn {
                at,
                kind: SpawnKind::ExecTakeover,
                tid,
                pid,
                parent_pid: Some(pid),
                creator_tid: Some(former),
                clone_flags: None,
            }))?;
        }
        thread.started = true;
        let (path, argv) = match &thread.pending {
            Some(p) => {
                let d = p.decode_args();
                (
                    d.get("path")
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .to_string(),
                    d.get("argv")
                        .and_then(|v| v.as_array())
                        .map(|a| {
                            a.iter()
                                .filter_map(|s| s.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                )
            }
            None => (String::new(), Vec::new()),
        };
        let at = self.clock.stamp();
        let exe = std::fs::read_link(format!("/proc/{}/exe", pid.0))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| path.clone());
        self.threads.insert(tid, thread);
        self.emit(Record::Exec(Exec {
            at,
            pid,
            former_tid: former,
            exe,
            path,
            argv,
        }))?;
        self.snapshot_mappings(pid)
    }

    pub(super) fn on_death(&mut self, tid: Tid, stop: Stop) -> Result<(), RecordError> {
        self.expected.remove(&tid);
        self.serial_forget_signals(tid);
        if let Some(s) = &mut self.serial {
            s.gone(tid);
            match self.serial_schedule() {
                Ok(()) | Err(TraceeError::Died) => {}
                Err(TraceeError::Ptrace { request, errno }) => {
                    return Err(RecordError::Sys {
                        syscall: request,
                        errno,
                    })
                }
            }
        }
        let _ = self.parked.remove(&tid);
        let Some(mut thread) = self.threads.remove(&tid) else {
            return Ok(());
        };
        let pid = thread.pid;
        if let Some(p) = thread.pending.take() {
            self.finish_syscall(pid, p, None, SyscallOutcome::ThreadExited)?;
        }
        let status = match stop {
            Stop::Exited { code } => ExitStatus::Exited { code },
            Stop::Killed { sig, core_dumped } => ExitStatus::Killed {
                signal: sig,
                core_dumped,
            },
            _ => ExitStatus::Unknown,
        };
        // The main thread's death is reported after every other thread's,
        // so it is the process's end.
        let process_exit = tid.0 == pid.0;
        if let Some(bp) = &mut self.bp {
            bp.on_death(tid, pid, process_exit);
        }
        if let Some(m) = &mut self.memstep {
            m.on_death(tid, pid, process_exit, &mut self.clock);
        }
        if let Some(m) = &mut self.memlog {
            m.import_thread(tid, &mut self.sink)?;
        }
        if process_exit && pid == self.root {
            self.root_status = Some(status);
        }
        let at = self.clock.stamp();
        self.emit(Record::Exit(Exit {
            at,
            tid,
            pid,
            status,
            process_exit,
        }))
    }
}
