//! Synthetic schedules for the tests of [`crate::inversion`] and
//! [`crate::schedule`]: scheduling attributes per thread, running slices
//! on a CPU (a switch in, a switch out in a given state), wakeups and
//! schedstat samples, in the shape the recorder stores them.

use lockstep_trace::{
    Pid, SchedAttr, SchedStat, SchedSwitch, SchedWakeup, Schedule, Seq, Stamp, Tid, STATE_PREEMPTED,
};

/// The tid standing for "some other task" (idle, the tracer).
pub const OTHER: i32 = 0;

/// Builds a [`Schedule`]; times are CLOCK_MONOTONIC ns like the ops'.
#[derive(Default)]
pub struct SchedBuilder {
    sched: Schedule,
    seq: u64,
}

impl SchedBuilder {
    pub fn new() -> Self {
        SchedBuilder {
            sched: Schedule {
                evidence: "perf".into(),
                ..Schedule::default()
            },
            seq: 0,
        }
    }

    fn stamp(&mut self, ts_ns: u64) -> Stamp {
        self.seq += 1;
        Stamp {
            seq: Seq(self.seq),
            ts_ns,
        }
    }

    /// `tid` has `policy` (`fifo`, `other`...) with `rt` priority and `nice` from `ts_ns` on.
    pub fn attr(&mut self, tid: i32, policy: &str, rt: i32, nice: i32, ts_ns: u64) -> &mut Self {
        let at = self.stamp(ts_ns);
        self.sched.attrs.push(SchedAttr {
            at,
            pid: Pid(crate::builder::PID),
            tid: Tid(tid),
            policy: policy.into(),
            rt_priority: rt,
            nice,
            affinity: vec![0],
            cause: "start".into(),
        });
        self
    }

    /// `tid` runs on CPU 0 over `[from, to)`, then leaves it `preempted`
    /// (still runnable) or sleeping.
    pub fn run(&mut self, tid: i32, from: u64, to: u64, preempted: bool) -> &mut Self {
        self.switch(from, OTHER, 0, tid);
        let state = if preempted { STATE_PREEMPTED } else { 1 };
        self.switch(to, tid, state, OTHER)
    }

    /// One context switch on CPU 0.
    pub fn switch(&mut self, ts_ns: u64, prev: i32, prev_state: i64, next: i32) -> &mut Self {
        self.sched.switches.push(SchedSwitch {
            ts_ns,
            cpu: 0,
            prev_tid: prev,
            prev_prio: 120,
            prev_state,
            next_tid: next,
            next_prio: 120,
        });
        self
    }

    /// `tid` is woken at `ts_ns`.
    pub fn wakeup(&mut self, tid: i32, ts_ns: u64) -> &mut Self {
        self.sched.wakeups.push(SchedWakeup {
            ts_ns,
            cpu: 0,
            waker_tid: OTHER,
            tid,
            prio: 120,
            target_cpu: 0,
        });
        self
    }

    /// A schedstat sample: `tid` had run `cpu_ns` by `ts_ns`.
    pub fn stat(&mut self, tid: i32, ts_ns: u64, cpu_ns: u64) -> &mut Self {
        let at = self.stamp(ts_ns);
        self.sched.stats.push(SchedStat {
            at,
            pid: Pid(crate::builder::PID),
            tid: Tid(tid),
            cpu_ns,
            wait_ns: 0,
            slices: 0,
        });
        self
    }

    /// The schedule, switches and wakeups in time order.
    pub fn build(&self) -> Schedule {
        let mut s = self.sched.clone();
        s.switches.sort_by_key(|x| x.ts_ns);
        s.wakeups.sort_by_key(|x| x.ts_ns);
        if s.switches.is_empty() {
            s.evidence = if s.stats.is_empty() {
                "off"
            } else {
                "schedstat"
            }
            .into();
        }
        s
    }
}
