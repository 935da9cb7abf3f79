//! The trace's clock: one global sequence counter and a monotonic time.
//!
//! Every event of the recorded tree takes its [`Stamp`] here, so the trace
//! has one total order. When the in-process agent is in use the counter
//! lives in the shared area and the agent draws from the same one.

use crate::agent::SharedArea;
use lockstep_trace::{Seq, Stamp};
use std::rc::Rc;

/// Hands out strictly increasing sequence numbers with CLOCK_MONOTONIC time.
pub struct SeqClock {
    next: u64,
    shared: Option<Rc<SharedArea>>,
    issued: u64,
}

impl SeqClock {
    /// A clock of the recorder's own.
    pub fn new() -> Self {
        SeqClock {
            next: 1,
            shared: None,
            issued: 0,
        }
    }

    /// A clock drawing from the agent area's counter.
    pub fn shared(area: Rc<SharedArea>) -> Self {
        SeqClock {
            next: 0,
            shared: Some(area),
            issued: 0,
        }
    }

    /// The next stamp.
    pub fn stamp(&mut self) -> Stamp {
        let seq = match &self.shared {
            Some(a) => a.next_seq(),
            None => {
                self.next += 1;
                self.next - 1
            }
        };
        self.issued += 1;
        Stamp {
            seq: Seq(seq),
            ts_ns: monotonic_ns(),
        }
    }

    /// How many stamps this clock handed out.
    pub fn issued(&self) -> u64 {
        self.issued
    }
}

impl Default for SeqClock {
    fn default() -> Self {
        Self::new()
    }
}

/// CLOCK_MONOTONIC in nanoseconds (a vDSO call, no syscall).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
