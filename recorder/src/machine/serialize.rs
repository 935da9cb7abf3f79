//! The recorder's side of `--serialize`: one thread runs user code at a
//! time ([`crate::serial::Serial`] decides which), each decision recorded
//! as a [`SerialEvent`]; time slices end with PTRACE_INTERRUPT on the
//! recorder's timer, deferred to a frame's return address when possible.

use super::Recorder;
use crate::error::TraceeError;
use crate::tracee::Stopped;
use lockstep_trace::*;

impl Recorder {
    /// The process of a live thread.
    pub(super) fn pid_of(&self, tid: Tid) -> Pid {
        self.threads
            .get(&tid)
            .map(|th| th.pid)
            .unwrap_or(Pid(tid.0))
    }

    /// Records one decision of the serializing scheduler.
    fn emit_serial(
        &mut self,
        tid: Tid,
        kind: SerialKind,
        point: Option<PreemptPoint>,
    ) -> Result<(), TraceeError> {
        let at = self.clock.stamp();
        let pid = self.pid_of(tid);
        Self::deferred(self.emit(Record::Serial(Box::new(SerialEvent {
            at,
            pid,
            tid,
            kind,
            point,
        }))))
    }

    /// Records the program under the serializing scheduler (`--serialize`,
    /// with `--chaos` when `chaos` has a seed).
    pub fn serialize(&mut self, chaos: Option<u64>) {
        let now = crate::clock::monotonic_ns();
        let agent = self.area.is_some();
        self.serial = Some(crate::serial::Serial::new(
            Tid(self.root.0),
            now,
            chaos,
            agent,
        ));
    }

    /// Lets the next thread run user code if none does, recording the decision.
    pub(super) fn serial_schedule(&mut self) -> Result<(), TraceeError> {
        self.serial_sync_yield();
        loop {
            let now = crate::clock::monotonic_ns();
            let Some(t) = self.serial.as_mut().and_then(|s| s.pick(now)) else {
                return Ok(());
            };
            let tid = t.tid();
            self.emit_serial(tid, SerialKind::Run, None)?;
            match self.go(t, 0) {
                Err(TraceeError::Died) => {
                    if let Some(s) = &mut self.serial {
                        s.gone(tid);
                    }
                }
                r => return r,
            }
        }
    }

    /// Serialized: interrupts the thread that has run user code for a
    /// whole slice (called on the recorder's timer).
    pub fn serial_tick(&mut self) {
        let now = crate::clock::monotonic_ns();
        if let Some((tid, ask)) = self.serial.as_mut().and_then(|s| s.due_preemption(now)) {
            tracing::debug!(tid = tid.0, ?ask, "slice over");
            if ask == crate::serial::Ask::Interrupt {
                let _ = crate::tracee::interrupt(tid);
            }
        }
        self.serial_sync_yield();
    }

    /// Writes the scheduler's wish for a yield point into the agent's
    /// shared area when it changed (a thread's slice ended, or the thread
    /// asked entered the kernel or was interrupted instead).
    fn serial_sync_yield(&mut self) {
        let want = self
            .serial
            .as_ref()
            .and_then(|s| s.yield_wanted())
            .unwrap_or(Tid(0));
        if want != self.yield_asked {
            if let Some(a) = &self.area {
                a.ask_yield(want, 0);
            }
            self.yield_asked = want;
        }
    }

    /// Serialized: the running thread whose slice is over entered its
    /// `sync_calls`-th sync call (the agent's yield point): preempted
    /// there, at a point its count names exactly.
    pub(super) fn serial_yielded(
        &mut self,
        t: Stopped,
        sync_calls: u64,
    ) -> Result<(), TraceeError> {
        tracing::debug!(tid = t.tid().0, sync_calls, "yield point");
        self.serial_sync_yield();
        let mut point = crate::serial::point_of(&t, self.pid_of(t.tid()));
        if let Some(p) = &mut point {
            p.sync_op = Some(sync_calls);
        }
        self.emit_serial(t.tid(), SerialKind::Preempt, point)?;
        self.serial_raise_held(&t, self.pid_of(t.tid()).0);
        if let Some(s) = &mut self.serial {
            s.hold(t);
        }
        self.serial_schedule()
    }

    /// Serialized: the thread's slice is over; let it run on to the return
    /// address of its frame (found by the frame pointer) and preempt it
    /// there, a point the replay finds in few passes.
    pub(super) fn serial_defer(&mut self, t: Stopped) -> Result<(), TraceeError> {
        let maps = crate::maps::exec_mappings(self.pid_of(t.tid()));
        match crate::serial::return_point(&t, &maps) {
            Some(addr) => {
                t.set_debugreg(0, addr)?;
                t.set_debugreg(7, 1)?;
                if let Some(s) = &mut self.serial {
                    s.arm(t.tid());
                }
                self.go(t, 0)
            }
            // No frame to return to: preempted where it is.
            None => self.serial_preempted(t),
        }
    }

    /// Clears the return-address breakpoint of `t` if it has one.
    pub(super) fn serial_disarm(&mut self, t: &Stopped) -> Result<(), TraceeError> {
        if self.serial.as_mut().is_some_and(|s| s.take_armed(t.tid())) {
            t.set_debugreg(7, 0)?;
        }
        Ok(())
    }

    /// Serialized: interrupted a second time, the thread is preempted where
    /// it is (out of the agent's probe first).
    pub(super) fn serial_preempt_here(&mut self, t: Stopped) -> Result<(), TraceeError> {
        self.serial_disarm(&t)?;
        let tid = t.tid();
        let maps = crate::maps::exec_mappings(self.pid_of(tid));
        let mut held = Vec::new();
        let stepped = crate::serial::step_out_of_agent(t, &maps, &mut held);
        // Signals that came during the steps: raised where it is preempted.
        for sig in held {
            self.serial_hold(tid, sig);
        }
        match stepped? {
            Some(t) => self.serial_preempted(t),
            None => Ok(()),
        }
    }

    /// Serialized: the interrupted thread stopped; records where, holds it.
    pub(super) fn serial_preempted(&mut self, t: Stopped) -> Result<(), TraceeError> {
        tracing::debug!(tid = t.tid().0, "preempted");
        let point = crate::serial::point_of(&t, self.pid_of(t.tid()));
        self.emit_serial(t.tid(), SerialKind::Preempt, point)?;
        self.serial_raise_held(&t, self.pid_of(t.tid()).0);
        if let Some(s) = &mut self.serial {
            s.hold(t);
        }
        self.serial_schedule()
    }
}
