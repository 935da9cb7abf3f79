//! `--serialize`: asynchronous signals are delivered at points a replay
//! reaches again. A signal that interrupts the running thread in the
//! middle of its user code (a child's SIGCHLD, a timer, a kill from
//! outside) lands at an instruction nothing in the trace names; the
//! recorder holds it back and raises it again (tgkill) at the thread's
//! next syscall entry (it is then delivered as that call returns, or
//! interrupts it) or where the thread is next preempted, asking for that
//! preemption at once. Either is a point the replay raises it at too. A
//! signal so delayed arrives a little later than the kernel would have
//! delivered it: programs cannot count on when an asynchronous signal
//! arrives, and the recording is of what the program then saw.

use super::Recorder;
use crate::error::TraceeError;
use crate::raised::{add_pending, Raised};
use crate::tracee::Stopped;
use lockstep_trace::Tid;
use std::collections::HashMap;

/// Signals held back, and the ones raised again whose delivery is due.
#[derive(Default)]
pub struct Deferred {
    held: HashMap<Tid, Vec<i32>>,
    raised: Raised,
}

impl Recorder {
    /// At a signal-delivery stop of a serialized recording: holds an
    /// asynchronous signal back if it interrupted user code (returns
    /// `None`, the thread resumed without it), else gives the thread back.
    pub(super) fn serial_hold_signal(
        &mut self,
        t: Stopped,
        sig: i32,
        code: i32,
    ) -> Result<Option<Stopped>, TraceeError> {
        let tid = t.tid();
        if self.serial.is_none() || lockstep_trace::is_fault(sig, code) || sig == libc::SIGKILL {
            return Ok(Some(t));
        }
        // Raised again by us: delivered here, where the replay raises it.
        if self.sigdefer.raised.take(tid, sig) {
            return Ok(Some(t));
        }
        // Returning from a syscall of the program (orig_rax is its
        // number): a point the trace names already. Not from one of the
        // agent's own (its marks still in r14/r15), which the trace leaves
        // out: that moment depends on the agent's buffers.
        let r = t.regs()?;
        let agent_call = r.r14 == lockstep_agent_abi::AGENT_CALL_R14
            && r.r15 == lockstep_agent_abi::AGENT_CALL_R15;
        if r.orig_rax as i64 != -1 && !agent_call {
            return Ok(Some(t));
        }
        tracing::debug!(tid = tid.0, sig, "signal held back");
        self.serial_hold(tid, sig);
        self.go(t, 0)?;
        Ok(None)
    }

    /// Holds `sig` back for `tid` until its next syscall entry or
    /// preemption, which is asked for at once.
    pub(super) fn serial_hold(&mut self, tid: Tid, sig: i32) {
        add_pending(self.sigdefer.held.entry(tid).or_default(), sig);
        if let Some(s) = &mut self.serial {
            s.urge(tid);
        }
    }

    /// Raises the signals held back for `t` again (at its syscall entry or
    /// preemption): they are delivered when it next runs.
    pub(super) fn serial_raise_held(&mut self, t: &Stopped, pid: i32) {
        let tid = t.tid();
        let Some(sigs) = self.sigdefer.held.remove(&tid) else {
            return;
        };
        for sig in sigs {
            self.sigdefer.raised.raise(pid, tid, sig);
        }
    }

    /// A thread died: what it had pending is gone with it.
    pub(super) fn serial_forget_signals(&mut self, tid: Tid) {
        self.sigdefer.held.remove(&tid);
        self.sigdefer.raised.forget(tid);
    }
}
