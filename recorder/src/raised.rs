//! Signals a tracer raises in its own tracees (tgkill) and whose delivery
//! it then waits for: the recorder re-raising a signal it held back
//! (`--serialize`), the replayer raising a recorded one. At the
//! signal-delivery stop, one of these is told from a live signal by
//! [`Raised::take`].

use lockstep_trace::Tid;
use std::collections::HashMap;

/// Raised signals not delivered yet, per live thread.
#[derive(Default)]
pub struct Raised {
    pending: HashMap<Tid, Vec<i32>>,
}

impl Raised {
    /// Raises `sig` in the live thread `tid` of process `pid`. A standard
    /// signal still pending is not raised twice: the kernel would deliver
    /// it once, and the second would later let a live one through.
    pub fn raise(&mut self, pid: i32, tid: Tid, sig: i32) {
        if add_pending(self.pending.entry(tid).or_default(), sig) {
            // SAFETY: tgkill with ids of our own tracee and a valid signal.
            unsafe { libc::syscall(libc::SYS_tgkill, pid, tid.0, sig) };
        }
    }

    /// At a signal-delivery stop of `tid`: whether `sig` is one raised
    /// here (it is then no longer pending).
    pub fn take(&mut self, tid: Tid, sig: i32) -> bool {
        let Some(v) = self.pending.get_mut(&tid) else {
            return false;
        };
        match v.iter().position(|&s| s == sig) {
            Some(i) => {
                v.remove(i);
                true
            }
            None => false,
        }
    }

    /// The thread is gone, and what was pending for it.
    pub fn forget(&mut self, tid: Tid) {
        self.pending.remove(&tid);
    }
}

/// Adds `sig` to a thread's pending signals as the kernel keeps them: a
/// standard signal already pending is not pending twice (two arrivals are
/// one delivery), a real-time one queues. Returns whether it was added.
pub fn add_pending(pending: &mut Vec<i32>, sig: i32) -> bool {
    if sig < libc::SIGRTMIN() && pending.contains(&sig) {
        return false;
    }
    pending.push(sig);
    true
}
