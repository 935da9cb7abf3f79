//! The kernel's schedule as the trace keeps it (schema version 3): context
//! switches and wakeups from the `sched:sched_switch` / `sched:sched_wakeup`
//! tracepoints, each thread's scheduling attributes (policy, real-time
//! priority, nice value, CPU affinity) at its start and after every change,
//! and per-thread CPU time samples from `/proc/PID/task/TID/schedstat` (the
//! fallback evidence where tracepoints are not permitted).
//!
//! The model types, their rows and how [`TraceReader`] returns them; the
//! writer inserts them through [`insert`].

use crate::error::TraceError;
use crate::ids::{Pid, Tid};
use crate::model::{Record, Stamp};
use crate::reader::{stamp, TraceReader};
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

/// One context switch on a CPU (`sched:sched_switch`) into or out of a
/// traced thread. Priorities are the kernel's (`prio`: 0–99 real-time,
/// 99 − rt_priority; 100–139 normal, 120 + nice), boosts included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedSwitch {
    /// CLOCK_MONOTONIC ns, the trace's clock.
    pub ts_ns: u64,
    pub cpu: u32,
    pub prev_tid: i32,
    pub prev_prio: i32,
    /// The kernel's `prev_state`: 0 runnable, bit 0 sleeping (S), bit 1
    /// uninterruptible (D), bit 2 stopped, bit 3 traced, 0x100 preempted.
    pub prev_state: i64,
    pub next_tid: i32,
    pub next_prio: i32,
}

/// `prev_state` value of a preempted task (TASK_REPORT_MAX, shown `R+`).
pub const STATE_PREEMPTED: i64 = 0x100;

impl SchedSwitch {
    /// Whether `prev` left the CPU still runnable (preempted or yielding).
    pub fn prev_runnable(&self) -> bool {
        self.prev_state & 0xff == 0
    }
}

/// `R`, `R+`, `S`, `D`, `T`, `t`, `X`, `Z`, `P`, `I` (letters joined by `|`),
/// as `perf script` and ftrace print a `prev_state`.
pub fn state_text(state: i64) -> String {
    const LETTERS: [(i64, &str); 8] = [
        (1, "S"),
        (2, "D"),
        (4, "T"),
        (8, "t"),
        (0x10, "X"),
        (0x20, "Z"),
        (0x40, "P"),
        (0x80, "I"),
    ];
    let low = state & 0xff;
    if low == 0 {
        return if state & STATE_PREEMPTED != 0 {
            "R+"
        } else {
            "R"
        }
        .into();
    }
    LETTERS
        .iter()
        .filter(|(bit, _)| low & bit != 0)
        .map(|(_, l)| *l)
        .collect::<Vec<_>>()
        .join("|")
}

/// One wakeup of a traced thread (`sched:sched_wakeup`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedWakeup {
    pub ts_ns: u64,
    /// The CPU the wakeup ran on.
    pub cpu: u32,
    /// The thread that woke it (the one running: 0 for an interrupt on idle).
    pub waker_tid: i32,
    pub tid: i32,
    pub prio: i32,
    pub target_cpu: i32,
}

/// A thread's scheduling attributes, read by the recorder (sched_getattr,
/// sched_getaffinity) at its first stop and after each syscall that may
/// change them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedAttr {
    pub at: Stamp,
    pub pid: Pid,
    pub tid: Tid,
    /// `other`, `fifo`, `rr`, `batch`, `idle`, `deadline`.
    pub policy: String,
    /// 1–99 for `fifo`/`rr`, 0 otherwise.
    pub rt_priority: i32,
    pub nice: i32,
    /// The CPUs it may run on.
    pub affinity: Vec<u32>,
    /// `start` (first stop), or the syscall after which it was read.
    pub cause: String,
}

impl SchedAttr {
    /// Whether the policy is a real-time one.
    pub fn realtime(&self) -> bool {
        matches!(self.policy.as_str(), "fifo" | "rr" | "deadline")
    }
}

/// The name of a SCHED_* policy number.
pub fn policy_name(policy: u32) -> &'static str {
    match policy & 0xff {
        0 => "other",
        1 => "fifo",
        2 => "rr",
        3 => "batch",
        5 => "idle",
        6 => "deadline",
        _ => "unknown",
    }
}

/// One sample of a thread's /proc/PID/task/TID/schedstat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedStat {
    pub at: Stamp,
    pub pid: Pid,
    pub tid: Tid,
    /// Time spent running on a CPU, ns.
    pub cpu_ns: u64,
    /// Time spent runnable, waiting for a CPU, ns.
    pub wait_ns: u64,
    /// Timeslices run.
    pub slices: u64,
}

/// Inserts a schedule record; false when `rec` is not one.
pub(crate) fn insert(c: &Connection, rec: &Record) -> Result<bool, rusqlite::Error> {
    match rec {
        Record::SchedSwitch(s) => {
            c.prepare_cached(
                "INSERT INTO switch_rows(ts_ns, cpu, prev_tid, prev_prio, prev_state, next_tid, next_prio)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                s.ts_ns as i64,
                s.cpu,
                s.prev_tid,
                s.prev_prio,
                s.prev_state,
                s.next_tid,
                s.next_prio
            ])?;
        }
        Record::SchedWakeup(w) => {
            c.prepare_cached(
                "INSERT INTO wakeup_rows(ts_ns, cpu, waker_tid, tid, prio, target_cpu)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                w.ts_ns as i64,
                w.cpu,
                w.waker_tid,
                w.tid,
                w.prio,
                w.target_cpu
            ])?;
        }
        Record::SchedAttr(a) => {
            let cpus = a
                .affinity
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",");
            c.prepare_cached(
                "INSERT INTO sched_attr_rows(seq, ts_ns, pid, tid, policy, rt_priority, nice, affinity, cause)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                a.at.seq.0 as i64,
                a.at.ts_ns as i64,
                a.pid.0,
                a.tid.0,
                a.policy,
                a.rt_priority,
                a.nice,
                cpus,
                a.cause
            ])?;
        }
        Record::SchedStat(s) => {
            c.prepare_cached(
                "INSERT INTO schedstat_rows(seq, ts_ns, pid, tid, cpu_ns, wait_ns, slices)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                s.at.seq.0 as i64,
                s.at.ts_ns as i64,
                s.pid.0,
                s.tid.0,
                s.cpu_ns as i64,
                s.wait_ns as i64,
                s.slices as i64
            ])?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Everything a trace knows of the schedule.
#[derive(Clone, Debug, Default)]
pub struct Schedule {
    /// In time order.
    pub switches: Vec<SchedSwitch>,
    pub wakeups: Vec<SchedWakeup>,
    /// In sequence order.
    pub attrs: Vec<SchedAttr>,
    pub stats: Vec<SchedStat>,
    /// `meta.sched`: `perf` (tracepoints), `schedstat`, `off`, or empty
    /// for traces of older versions.
    pub evidence: String,
}

impl TraceReader {
    /// The recorded schedule (empty before schema version 3).
    pub fn schedule(&self) -> Result<Schedule, TraceError> {
        let mut s = Schedule {
            evidence: self.meta("sched")?.unwrap_or_default(),
            ..Schedule::default()
        };
        if self.version < 3 {
            return Ok(s);
        }
        let q = |sql: &str| self.conn.prepare(sql).map_err(self.sq());
        let mut st = q(
            "SELECT ts_ns, cpu, prev_tid, prev_prio, prev_state, next_tid, next_prio
                        FROM switch_rows ORDER BY ts_ns, rowid",
        )?;
        let rows = st
            .query_map([], |r| {
                Ok(SchedSwitch {
                    ts_ns: r.get::<_, i64>(0)? as u64,
                    cpu: r.get(1)?,
                    prev_tid: r.get(2)?,
                    prev_prio: r.get(3)?,
                    prev_state: r.get(4)?,
                    next_tid: r.get(5)?,
                    next_prio: r.get(6)?,
                })
            })
            .map_err(self.sq())?;
        s.switches = rows.collect::<Result<_, _>>().map_err(self.sq())?;
        let mut st = q("SELECT ts_ns, cpu, waker_tid, tid, prio, target_cpu
                        FROM wakeup_rows ORDER BY ts_ns, rowid")?;
        let rows = st
            .query_map([], |r| {
                Ok(SchedWakeup {
                    ts_ns: r.get::<_, i64>(0)? as u64,
                    cpu: r.get(1)?,
                    waker_tid: r.get(2)?,
                    tid: r.get(3)?,
                    prio: r.get(4)?,
                    target_cpu: r.get(5)?,
                })
            })
            .map_err(self.sq())?;
        s.wakeups = rows.collect::<Result<_, _>>().map_err(self.sq())?;
        let mut st = q(
            "SELECT seq, ts_ns, pid, tid, policy, rt_priority, nice, affinity, cause
                        FROM sched_attr_rows ORDER BY seq",
        )?;
        let rows = st
            .query_map([], |r| {
                Ok(SchedAttr {
                    at: stamp(r, 0, 1)?,
                    pid: Pid(r.get(2)?),
                    tid: Tid(r.get(3)?),
                    policy: r.get(4)?,
                    rt_priority: r.get(5)?,
                    nice: r.get(6)?,
                    affinity: r
                        .get::<_, String>(7)?
                        .split(',')
                        .filter_map(|c| c.parse().ok())
                        .collect(),
                    cause: r.get(8)?,
                })
            })
            .map_err(self.sq())?;
        s.attrs = rows.collect::<Result<_, _>>().map_err(self.sq())?;
        let mut st = q("SELECT seq, ts_ns, pid, tid, cpu_ns, wait_ns, slices
                        FROM schedstat_rows ORDER BY seq")?;
        let rows = st
            .query_map([], |r| {
                Ok(SchedStat {
                    at: stamp(r, 0, 1)?,
                    pid: Pid(r.get(2)?),
                    tid: Tid(r.get(3)?),
                    cpu_ns: r.get::<_, i64>(4)? as u64,
                    wait_ns: r.get::<_, i64>(5)? as u64,
                    slices: r.get::<_, i64>(6)? as u64,
                })
            })
            .map_err(self.sq())?;
        s.stats = rows.collect::<Result<_, _>>().map_err(self.sq())?;
        Ok(s)
    }
}
