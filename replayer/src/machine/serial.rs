//! Replaying a serialized recording (`record --serialize`): the recorder's
//! decisions are taken again at the same points. A thread back from a
//! syscall (or at its start, or preempted) runs user code only when its
//! recorded `run` decision is due; while it runs, nothing else runs user
//! code, so the program's memory evolves exactly as recorded, races
//! included.
//!
//! A recorded preemption stopped the thread at some instruction; without
//! hardware counters the replay finds that point again with a hardware
//! execution breakpoint (debug register DR0) on the recorded `rip`, and at
//! each hit compares the general-purpose registers and the checksum of the
//! stack top with the recorded ones: the first hit where all agree is the
//! point. Two iterations of a loop that differ in neither (a spin-wait on a
//! flag) are the same point as far as the program can tell.

use super::{Gate, Replayer};
use lockstep_recorder::error::TraceeError;
use lockstep_recorder::serial::{regs_vec, COMPARED, RIP};
use lockstep_recorder::tracee::{Resume, Stopped};
use lockstep_trace::{SerialKind, Tid};

/// How many passes over a preemption point's instruction are tried
/// before the replay gives up on finding it (each costs a ptrace stop).
const MAX_PASSES: u64 = 2_000;

/// DR7 with breakpoint 0 enabled (local), on execution, length 1.
const DR7_EXEC_BP0: u64 = 1;

impl Replayer {
    /// The recorded thread a live one plays.
    fn recorded(&self, live: Tid) -> Option<Tid> {
        self.threads.get(&live).map(|l| l.rec)
    }

    /// Lets a thread that finished a syscall (or starts, or was
    /// preempted) go on: in a serialized replay it waits for its recorded
    /// turn to run user code; otherwise it just runs.
    pub(super) fn after_call(&mut self, t: Stopped) -> Result<(), TraceeError> {
        let next = self
            .recorded(t.tid())
            .and_then(|rec| self.script.serial.get(&rec))
            .and_then(|q| q.front())
            .filter(|e| e.kind == SerialKind::Run)
            .map(|e| e.at.seq.0);
        match next {
            Some(seq) if self.script.due(seq) && !self.turn_waits(&Gate::Sched(seq)) => {
                self.sched_release(t, seq)
            }
            Some(seq) => {
                self.held.insert(t.tid(), (t, Gate::Sched(seq)));
                Ok(())
            }
            None => t.resume(Resume::Syscall, 0),
        }
    }

    /// The thread's `run` decision is due: it runs user code, with a
    /// breakpoint at its recorded preemption point if it was preempted
    /// before its next syscall.
    pub(super) fn sched_release(&mut self, t: Stopped, seq: u64) -> Result<(), TraceeError> {
        self.script.done(seq);
        let Some(rec) = self.recorded(t.tid()) else {
            return t.resume(Resume::Syscall, 0);
        };
        let next_call = self.script.next_entry(rec);
        let queue = self.script.serial.entry(rec).or_default();
        queue.pop_front();
        let preempt = queue
            .front()
            .filter(|e| e.kind == SerialKind::Preempt && e.at.seq.0 < next_call)
            .and_then(|e| e.point.clone().map(|p| (e.at.seq.0, p)));
        if let Some((pseq, point)) = preempt {
            if let Some(n) = point.sync_op {
                // At its n-th sync call: the agent stops there.
                tracing::debug!(tid = t.tid().0, n, pseq, "yield point asked");
                if let Some(a) = &self.area {
                    a.ask_yield(t.tid(), n);
                }
                self.yielding.insert(t.tid(), (pseq, n));
            } else if let Some(&rip) = point.regs.get(RIP) {
                t.set_debugreg(0, rip)?;
                t.set_debugreg(7, DR7_EXEC_BP0)?;
                self.armed.insert(t.tid(), (pseq, point));
            }
        }
        t.resume(Resume::Syscall, 0)
    }

    /// A SIGTRAP of a thread with an armed breakpoint: the recorded
    /// preemption point, or another pass over the same instruction.
    pub(super) fn on_breakpoint(&mut self, t: Stopped) -> Result<(), TraceeError> {
        let tid = t.tid();
        let Some((seq, point)) = self.armed.get(&tid).cloned() else {
            return t.resume(Resume::Syscall, libc::SIGTRAP);
        };
        let regs = regs_vec(&t.regs()?);
        let same_regs = COMPARED.iter().all(|&i| regs.get(i) == point.regs.get(i));
        let same_stack = same_regs && {
            lockstep_recorder::serial::frame_sum(self.live_pid(tid), &regs) == point.stack_sum
        };
        tracing::debug!(?regs, recorded = ?point.regs, same_regs, "preemption point pass");
        self.counts.breakpoint_hits += 1;
        if !same_stack {
            let passes = self.passes.entry(tid).or_insert(0);
            *passes += 1;
            if *passes > MAX_PASSES && !self.cfg.verify {
                // Best effort: preempted here, near the recorded point.
                self.passes.remove(&tid);
                self.counts.approximate += 1;
                t.set_debugreg(7, 0)?;
                self.armed.remove(&tid);
                return if self.script.due(seq) {
                    self.preempt_release(t, seq)
                } else {
                    self.held.insert(tid, (t, Gate::Preempt(seq)));
                    Ok(())
                };
            }
            if *passes > MAX_PASSES {
                let rec = self.recorded(tid);
                self.diverge(crate::Divergence {
                    seq: Some(seq),
                    tid: rec,
                    what: "preemption point".into(),
                    expected: format!(
                        "registers and stack as recorded at rip {:#x}",
                        point.regs[RIP]
                    ),
                    got: format!("{MAX_PASSES} passes there without a match"),
                    location: None,
                });
            }
            return t.resume(Resume::Syscall, 0);
        }
        self.passes.remove(&tid);
        t.set_debugreg(7, 0)?;
        self.armed.remove(&tid);
        if self.script.due(seq) {
            self.preempt_release(t, seq)
        } else {
            self.held.insert(tid, (t, Gate::Preempt(seq)));
            Ok(())
        }
    }

    /// A yield point of the agent (the thread entering a sync call): the
    /// recorded preemption at this count of sync calls, or a call to let go
    /// by (a yield asked for and not taken back in time).
    pub(super) fn on_yield_point(
        &mut self,
        t: Stopped,
        sync_calls: u64,
    ) -> Result<(), TraceeError> {
        let tid = t.tid();
        tracing::debug!(tid = tid.0, sync_calls, wanted = ?self.yielding.get(&tid), "yield point");
        let Some(&(seq, n)) = self.yielding.get(&tid) else {
            return t.resume(Resume::Syscall, 0);
        };
        if sync_calls < n {
            return t.resume(Resume::Syscall, 0);
        }
        self.yielding.remove(&tid);
        if let Some(a) = &self.area {
            a.ask_yield(Tid(0), 0);
        }
        if sync_calls > n {
            let rec = self.recorded(tid);
            self.diverge(crate::Divergence {
                seq: Some(seq),
                tid: rec,
                what: "preemption point".into(),
                expected: format!("a stop entering sync call {n} of the thread"),
                got: format!("sync call {sync_calls}"),
                location: None,
            });
            return t.resume(Resume::Syscall, 0);
        }
        if self.script.due(seq) {
            self.preempt_release(t, seq)
        } else {
            self.held.insert(tid, (t, Gate::Preempt(seq)));
            Ok(())
        }
    }

    /// The thread is at its recorded preemption point and the preemption
    /// is due: it waits for its next turn.
    pub(super) fn preempt_release(&mut self, t: Stopped, seq: u64) -> Result<(), TraceeError> {
        self.script.done(seq);
        if let Some(rec) = self.recorded(t.tid()) {
            if let Some(q) = self.script.serial.get_mut(&rec) {
                q.pop_front();
            }
        }
        self.counts.preemptions += 1;
        self.raise_recorded(t.tid());
        self.after_call(t)
    }
}
