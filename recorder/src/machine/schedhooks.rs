//! Where the step machine meets the schedule capture ([`crate::sched`]):
//! threads made known to it, attributes read at each thread's first stop
//! and after the syscalls that change them, schedstat samples at futex
//! stops when there are no tracepoints, and the rings drained at ticks,
//! every 64 stops and at the end. None of it adds a ptrace stop.

use super::Recorder;
use crate::error::RecordError;
use crate::sched::{self, Sched};
use lockstep_trace::*;

impl Recorder {
    /// Records the schedule with `s` from now on.
    pub fn capture_schedule(&mut self, mut s: Sched) -> Result<(), RecordError> {
        for (&tid, t) in &self.threads {
            s.on_thread(t.pid, tid);
        }
        for (k, v) in [
            ("sched", s.evidence.to_string()),
            ("sched_note", s.note.clone()),
        ] {
            self.emit(Record::Meta {
                key: k.into(),
                value: v,
            })?;
        }
        self.sched = Some(s);
        Ok(())
    }

    /// A new thread of the tree.
    pub(super) fn sched_thread(&mut self, pid: Pid, tid: Tid) {
        if let Some(s) = &mut self.sched {
            s.on_thread(pid, tid);
        }
    }

    /// The first stop of `tid`: its attributes as it starts.
    pub(super) fn sched_first_stop(&mut self, tid: Tid) -> Result<(), RecordError> {
        let Some(pid) = self.threads.get(&tid).map(|t| t.pid) else {
            return Ok(());
        };
        if self.sched.is_none() {
            return Ok(());
        }
        if let Some(a) = sched::read_attrs(&mut self.clock, pid, tid, "start") {
            self.emit(Record::SchedAttr(Box::new(a)))?;
        }
        Ok(())
    }

    /// After a syscall of `tid` returned `ret`: attributes it changed, and
    /// schedstat samples around futex waits when sampling.
    pub(super) fn sched_syscall(
        &mut self,
        pid: Pid,
        tid: Tid,
        name: &str,
        args: &[u64; 6],
        ret: i64,
    ) -> Result<(), RecordError> {
        let Some(s) = &self.sched else {
            return Ok(());
        };
        if name == "futex" && s.sampling() {
            return self.sched_sample(pid);
        }
        if ret < 0 {
            return Ok(());
        }
        let targets: Vec<(Pid, Tid)> = match sched::changed_by(name, args) {
            None => return Ok(()),
            Some(Some(0)) => vec![(pid, tid)],
            Some(Some(t)) => match self.threads.get(&Tid(t)) {
                Some(th) => vec![(th.pid, Tid(t))],
                None => return Ok(()),
            },
            Some(None) => self.threads.iter().map(|(&t, th)| (th.pid, t)).collect(),
        };
        for (p, t) in targets {
            if let Some(a) = sched::read_attrs(&mut self.clock, p, t, name) {
                self.emit(Record::SchedAttr(Box::new(a)))?;
            }
        }
        Ok(())
    }

    /// A schedstat sample of every live thread of `pid` (at most 64).
    pub(super) fn sched_sample(&mut self, pid: Pid) -> Result<(), RecordError> {
        let tids: Vec<Tid> = self
            .threads
            .iter()
            .filter(|(_, t)| t.pid == pid)
            .map(|(&tid, _)| tid)
            .take(64)
            .collect();
        for tid in tids {
            if let Some(s) = sched::read_schedstat(&mut self.clock, pid, tid) {
                self.emit(Record::SchedStat(s))?;
            }
        }
        Ok(())
    }

    /// `tid` is about to exit: its last schedstat sample, when sampling
    /// (its CPU time until the end, which a wait it overlapped needs).
    pub(super) fn sched_exit(&mut self, pid: Pid, tid: Tid) -> Result<(), RecordError> {
        if !self.sched.as_ref().is_some_and(Sched::sampling) {
            return Ok(());
        }
        if let Some(s) = sched::read_schedstat(&mut self.clock, pid, tid) {
            self.emit(Record::SchedStat(s))?;
        }
        Ok(())
    }

    /// Moves the tracepoints' events into the trace.
    pub(super) fn drain_sched(&mut self) -> Result<(), RecordError> {
        let Some(s) = &mut self.sched else {
            return Ok(());
        };
        let mut out = Vec::new();
        s.drain(&mut out);
        for rec in out {
            self.sink.send(rec)?;
        }
        Ok(())
    }

    /// The last events and the capture's counters, at the end.
    pub(super) fn finish_sched(&mut self) -> Result<(), RecordError> {
        if let Some(s) = &self.sched {
            s.stop();
        }
        self.drain_sched()?;
        let Some(s) = &self.sched else {
            return Ok(());
        };
        let meta = [
            ("sched_switches", s.switches.to_string()),
            ("sched_lost", s.lost().to_string()),
        ];
        for (k, v) in meta {
            self.emit(Record::Meta {
                key: k.into(),
                value: v,
            })?;
        }
        Ok(())
    }
}
