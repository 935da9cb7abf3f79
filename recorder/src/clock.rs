//! The trace's clock: one global sequence counter and a monotonic time.
//!
//! Every event of the recorded tree takes its [`Stamp`] here, so the trace
//! has one total order. Mechanisms added later (an in-process agent writing
//! to shared memory) draw from the same counter.

use lockstep_trace::{Seq, Stamp};

/// Hands out strictly increasing sequence numbers with CLOCK_MONOTONIC time.
#[derive(Debug, Default)]
pub struct SeqClock {
    next: u64,
}

impl SeqClock {
    pub fn new() -> Self {
        SeqClock { next: 1 }
    }

    /// The next stamp.
    pub fn stamp(&mut self) -> Stamp {
        let seq = Seq(self.next);
        self.next += 1;
        Stamp { seq, ts_ns: monotonic_ns() }
    }

    /// How many stamps were handed out.
    pub fn issued(&self) -> u64 {
        self.next.saturating_sub(1)
    }
}

/// CLOCK_MONOTONIC in nanoseconds (a vDSO call, no syscall).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into `ts`, which we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
