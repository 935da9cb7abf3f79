//! How a recording ends: the hang detector (nothing happened for a while
//! and every thread is blocked: snapshot, then kill the tree) and the
//! final flush (open syscalls closed, the agent's last events and memory
//! files, the counters as meta rows).

use super::{Counts, Recorder};
use crate::error::RecordError;
use lockstep_trace::*;
use std::collections::HashSet;

impl Recorder {
    /// Checks for a hang: nothing happened for `timeout_ns` and every live
    /// thread is blocked indefinitely in a syscall. On a hang, writes the
    /// snapshot and kills every process of the tree; returns true.
    pub fn check_hang(&mut self, timeout_ns: u64) -> Result<bool, RecordError> {
        let now = crate::clock::monotonic_ns();
        if self.hung
            || self.threads.is_empty()
            || now.saturating_sub(self.last_progress_ns) < timeout_ns
        {
            return Ok(false);
        }
        let all_blocked = self.threads.values().all(|t| {
            t.pending
                .as_ref()
                .is_some_and(|p| crate::hang::blocks_indefinitely(&p.name, &p.args))
        });
        if !all_blocked || !self.parked.is_empty() || !self.expected.is_empty() {
            return Ok(false);
        }
        self.drain_agent()?;
        let mut threads: Vec<HungThread> = self
            .threads
            .iter()
            .map(|(&tid, t)| {
                let p = t
                    .pending
                    .as_ref()
                    .expect("blocked threads are in a syscall");
                HungThread {
                    pid: t.pid,
                    tid,
                    syscall: Some(p.name.clone()),
                    entry_seq: Some(p.entry.seq),
                    args: serde_json::Value::Object(p.decode.args().clone()).to_string(),
                    wchan: crate::hang::wchan(t.pid.0, tid.0),
                    stack: Vec::new(),
                }
            })
            .collect();
        // Where each thread is blocked: interrupt it and read its stack
        // (it is killed right after, so it stays stopped).
        for t in &mut threads {
            let maps = crate::maps::exec_mappings(t.pid);
            t.stack = crate::unwind::stack_of_blocked(t.pid, t.tid, &maps);
        }
        threads.sort_by_key(|t| t.tid);
        let at = self.clock.stamp();
        tracing::info!(threads = threads.len(), "program hung; killing it");
        self.emit(Record::Hang(Hang {
            at,
            timeout_ms: timeout_ns / 1_000_000,
            threads,
        }))?;
        self.sink.hand_over()?;
        self.hung = true;
        let pids: HashSet<Pid> = self.threads.values().map(|t| t.pid).collect();
        for pid in pids {
            // SAFETY: kill(2) on a process of the traced tree.
            unsafe { libc::kill(pid.0, libc::SIGKILL) };
        }
        Ok(true)
    }

    /// Closes what is still open when the recording ends early and flushes
    /// the trace.
    pub fn finish(mut self) -> Result<(Counts, Option<ExitStatus>), RecordError> {
        let open: Vec<Tid> = self.threads.keys().copied().collect();
        for tid in open {
            let mut th = self.threads.remove(&tid).expect("listed");
            if let Some(p) = th.pending.take() {
                self.finish_syscall(th.pid, p, None, SyscallOutcome::Unfinished)?;
            }
        }
        self.drain_agent()?;
        self.finish_sched()?;
        if let Some(m) = &mut self.memlog {
            m.import_all(&mut self.sink)?;
            (self.counts.mem_segments, self.counts.mem_accesses) = (m.segments, m.accesses);
        }
        if let Some(m) = &mut self.memstep {
            m.finish(&mut self.clock);
            self.counts.mem_segments += m.stats.segments;
            self.counts.mem_accesses += m.stats.accesses;
            self.flush_breakpoints()?;
        }
        if let Some(area) = &self.area {
            let dropped = area.dropped();
            self.emit(Record::Meta {
                key: "sync_dropped".into(),
                value: dropped.to_string(),
            })?;
        }
        // Breakpoint path: single-steps are stops too; the costs go to meta.
        if let Some(bp) = &self.bp {
            self.counts.stops += bp.stats.steps;
            let s = bp.stats;
            for (k, v) in [
                ("sync_ptrace_calls", s.calls),
                ("sync_ptrace_traps", s.traps),
                ("sync_ptrace_steps", s.steps),
                ("sync_ptrace_armed", s.armed),
            ] {
                self.emit(Record::Meta {
                    key: k.into(),
                    value: v.to_string(),
                })?;
            }
        }
        self.emit(Record::Meta {
            key: "stops".into(),
            value: self.counts.stops.to_string(),
        })?;
        let counts = self.counts.clone();
        let status = self.root_status;
        self.sink.close()?;
        Ok((counts, status))
    }
}
