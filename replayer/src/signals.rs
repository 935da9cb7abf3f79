//! Signals in a replay. A fault (SIGSEGV at a NULL write, SIGFPE...) comes
//! back by itself when the same instruction runs again, and is delivered.
//! Every other signal depends on what happened outside the thread (a child
//! exited, a pipe lost its reader, a timer fired, another process called
//! kill): the live ones are suppressed, and the recorded ones are raised
//! again (tgkill) right after the syscall the recording saw them follow,
//! with that syscall's recorded result (-ERESTARTSYS, -EINTR) in place, so
//! the kernel restarts or interrupts the call as it did when recorded.
//! In a default recording, a signal recorded in the middle of user code is
//! raised at the end of the thread's previous syscall: earlier than
//! recorded (a limit). A serialized recording delivers such a signal at
//! the thread's next syscall or preemption (see the recorder's
//! `machine/sigdefer.rs`), and the replay raises it there.

use lockstep_trace::{Signal, Tid};
use std::collections::{HashMap, VecDeque};

/// Whether a delivered signal is a fault of the instruction the thread
/// ran, which a faithful re-execution repeats by itself.
pub use lockstep_trace::is_fault;

/// The recorded signals to raise again, per recorded thread, in order.
#[derive(Default)]
pub struct Recorded {
    queues: HashMap<Tid, VecDeque<(u64, i32)>>,
}

impl Recorded {
    pub fn new(signals: &[Signal]) -> Recorded {
        let mut queues: HashMap<Tid, VecDeque<(u64, i32)>> = HashMap::new();
        for s in signals.iter().filter(|s| !is_fault(s.signo, s.code)) {
            queues
                .entry(s.tid)
                .or_default()
                .push_back((s.at.seq.0, s.signo));
        }
        Recorded { queues }
    }

    /// The signals thread `tid` received before sequence number `before`
    /// (its next syscall), taken off its queue.
    pub fn take_before(&mut self, tid: Tid, before: u64) -> Vec<i32> {
        let Some(q) = self.queues.get_mut(&tid) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while q.front().is_some_and(|&(seq, _)| seq < before) {
            out.push(q.pop_front().expect("front").1);
        }
        out
    }
}

/// Signals raised by the replayer and not yet delivered, per live thread.
#[derive(Default)]
pub struct Raised(lockstep_recorder::raised::Raised);

impl Raised {
    /// Raises `sig` in the live thread `tid` of process `pid` (a standard
    /// signal still pending is not raised twice).
    pub fn raise(&mut self, pid: i32, tid: Tid, sig: i32) {
        self.0.raise(pid, tid, sig);
    }

    /// At a signal-delivery stop: whether to deliver `sig` (one the
    /// replayer raised, or a fault) or to suppress it (a live asynchronous
    /// signal the recording does not have there).
    pub fn deliver(&mut self, tid: Tid, sig: i32, code: i32) -> bool {
        self.0.take(tid, sig) || is_fault(sig, code) || sig == libc::SIGKILL
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_trace::{Pid, Seq, Stamp};

    fn sig(seq: u64, tid: i32, signo: i32, code: i32) -> Signal {
        Signal {
            at: Stamp {
                seq: Seq(seq),
                ts_ns: 0,
            },
            pid: Pid(tid),
            tid: Tid(tid),
            signo,
            code,
            sender_pid: None,
            fault_addr: None,
        }
    }

    #[test]
    fn faults_are_left_to_the_re_execution() {
        let mut r = Recorded::new(&[sig(5, 1, libc::SIGSEGV, 1), sig(7, 1, libc::SIGCHLD, 1)]);
        assert_eq!(r.take_before(Tid(1), 100), vec![libc::SIGCHLD]);
    }

    #[test]
    fn signals_are_raised_before_the_next_syscall_only() {
        let mut r = Recorded::new(&[sig(5, 1, libc::SIGPIPE, 0), sig(9, 1, libc::SIGINT, 0)]);
        assert_eq!(r.take_before(Tid(1), 8), vec![libc::SIGPIPE]);
        assert_eq!(r.take_before(Tid(1), 8), Vec::<i32>::new());
        assert_eq!(r.take_before(Tid(1), 10), vec![libc::SIGINT]);
    }

    #[test]
    fn live_asynchronous_signals_are_suppressed() {
        let mut raised = Raised::default();
        assert!(!raised.deliver(Tid(1), libc::SIGCHLD, 1));
        assert!(raised.deliver(Tid(1), libc::SIGSEGV, 1));
    }
}
