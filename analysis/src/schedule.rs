//! Thread states over time from the kernel's schedule, and thread
//! priorities over time from the recorded scheduling attributes.
//!
//! A [`Timeline`] replays the `sched_switch` and `sched_wakeup` rows of a
//! trace: a thread switched in is *running* (on that CPU) until it is
//! switched out; switched out still runnable (preempted, `R`/`R+`) or woken
//! it is *runnable*; switched out in any other state (sleeping, stopped by
//! the tracer) it is *blocked* until its wakeup. Before its first event a
//! thread's state is unknown (no span). What a blocked thread waits for and
//! which locks it holds come from the sync ops (see `inversion`, `export`).
//!
//! [`Priorities`] answers "what were the policy, real-time priority and
//! nice value of thread T at time t" from the `sched_attrs` rows.

use lockstep_trace::{SchedAttr, Schedule};
use std::collections::HashMap;

/// What a thread was doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Running { cpu: u32 },
    Runnable,
    Blocked,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Running { .. } => "running",
            State::Runnable => "runnable",
            State::Blocked => "blocked",
        }
    }
}

/// A state over `[start, end)` (CLOCK_MONOTONIC ns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
    pub state: State,
}

/// Every traced thread's states over time.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    spans: HashMap<i32, Vec<Span>>,
}

impl Timeline {
    /// Replays the switches and wakeups of `sched`; open states end at
    /// the last event.
    pub fn build(sched: &Schedule) -> Timeline {
        enum Ev {
            Switch(usize),
            Wakeup(usize),
        }
        let mut evs: Vec<(u64, Ev)> = sched
            .switches
            .iter()
            .enumerate()
            .map(|(i, s)| (s.ts_ns, Ev::Switch(i)))
            .chain(
                sched
                    .wakeups
                    .iter()
                    .enumerate()
                    .map(|(i, w)| (w.ts_ns, Ev::Wakeup(i))),
            )
            .collect();
        evs.sort_by_key(|(t, _)| *t);
        let mut open: HashMap<i32, (u64, State)> = HashMap::new();
        let mut spans: HashMap<i32, Vec<Span>> = HashMap::new();
        let mut set = |tid: i32, t: u64, state: State, open: &mut HashMap<i32, (u64, State)>| {
            if let Some((start, prev)) = open.insert(tid, (t, state)) {
                if t > start {
                    spans.entry(tid).or_default().push(Span {
                        start,
                        end: t,
                        state: prev,
                    });
                }
            }
        };
        let end = evs.last().map(|(t, _)| *t).unwrap_or(0);
        for (t, ev) in evs {
            match ev {
                Ev::Switch(i) => {
                    let s = &sched.switches[i];
                    let after = if s.prev_runnable() {
                        State::Runnable
                    } else {
                        State::Blocked
                    };
                    set(s.prev_tid, t, after, &mut open);
                    set(s.next_tid, t, State::Running { cpu: s.cpu }, &mut open);
                }
                Ev::Wakeup(i) => {
                    let w = &sched.wakeups[i];
                    match open.get(&w.tid) {
                        Some((_, State::Running { .. } | State::Runnable)) => {}
                        _ => set(w.tid, t, State::Runnable, &mut open),
                    }
                }
            }
        }
        let tids: Vec<i32> = open.keys().copied().collect();
        for tid in tids {
            set(tid, end, State::Blocked, &mut open);
        }
        Timeline { spans }
    }

    /// Whether there is any state at all (the trace had tracepoints).
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// `tid`'s spans in time order.
    pub fn spans(&self, tid: i32) -> &[Span] {
        self.spans.get(&tid).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Time `tid` ran within `[a, b)`.
    pub fn running_ns(&self, tid: i32, a: u64, b: u64) -> u64 {
        self.spans(tid)
            .iter()
            .filter(|s| matches!(s.state, State::Running { .. }))
            .map(|s| overlap(s.start, s.end, a, b))
            .sum()
    }

    /// Time within `[a, b)` during which `waiting` was runnable while `runner` ran.
    pub fn runnable_while_running(&self, waiting: i32, runner: i32, a: u64, b: u64) -> u64 {
        let mut total = 0;
        for w in self.spans(waiting) {
            if w.state != State::Runnable || w.end <= a || w.start >= b {
                continue;
            }
            let (wa, wb) = (w.start.max(a), w.end.min(b));
            total += self
                .spans(runner)
                .iter()
                .filter(|r| matches!(r.state, State::Running { .. }))
                .map(|r| overlap(r.start, r.end, wa, wb))
                .sum::<u64>();
        }
        total
    }
}

/// The length of `[a1, b1) ∩ [a2, b2)`.
pub fn overlap(a1: u64, b1: u64, a2: u64, b2: u64) -> u64 {
    b1.min(b2).saturating_sub(a1.max(a2))
}

/// A thread's scheduling priority at some moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prio {
    pub policy: String,
    pub rt_priority: i32,
    pub nice: i32,
}

impl Prio {
    /// Orders threads as the scheduler favours them: every real-time
    /// thread above every normal one, then by real-time priority, normal
    /// threads by nice value (lower nice first), idle last.
    pub fn rank(&self) -> i32 {
        match self.policy.as_str() {
            "fifo" | "rr" => 1000 + self.rt_priority,
            "deadline" => 2000,
            "idle" => -100,
            _ => -self.nice,
        }
    }

    pub fn realtime(&self) -> bool {
        matches!(self.policy.as_str(), "fifo" | "rr" | "deadline")
    }

    /// `SCHED_FIFO 30`, `SCHED_OTHER nice 5`.
    pub fn label(&self) -> String {
        let p = format!("SCHED_{}", self.policy.to_uppercase());
        if self.realtime() {
            format!("{p} {}", self.rt_priority)
        } else {
            format!("{p} nice {}", self.nice)
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "policy": self.policy, "rt_priority": self.rt_priority, "nice": self.nice,
            "label": self.label(),
        })
    }
}

/// Each thread's attributes over time.
#[derive(Clone, Debug, Default)]
pub struct Priorities {
    by_tid: HashMap<i32, Vec<SchedAttr>>,
}

impl Priorities {
    pub fn new(attrs: &[SchedAttr]) -> Priorities {
        let mut by_tid: HashMap<i32, Vec<SchedAttr>> = HashMap::new();
        for a in attrs {
            by_tid.entry(a.tid.0).or_default().push(a.clone());
        }
        for v in by_tid.values_mut() {
            v.sort_by_key(|a| a.at.seq);
        }
        Priorities { by_tid }
    }

    /// The attributes of `tid` in force at `ts_ns` (its first ones before
    /// that), if any were recorded.
    pub fn at(&self, tid: i32, ts_ns: u64) -> Option<Prio> {
        let v = self.by_tid.get(&tid)?;
        let a = v.iter().rev().find(|a| a.at.ts_ns <= ts_ns).or(v.first())?;
        Some(Prio {
            policy: a.policy.clone(),
            rt_priority: a.rt_priority,
            nice: a.nice,
        })
    }

    /// Threads with recorded attributes.
    pub fn tids(&self) -> impl Iterator<Item = i32> + '_ {
        self.by_tid.keys().copied()
    }
}
