//! The schedule of the recorded tree (`record --sched`, on by default).
//!
//! ptrace sees syscalls, not the CPU: it cannot tell a thread that runs
//! from one that waits for a CPU. The kernel can. [`Sched`] opens the
//! `sched:sched_switch` and `sched:sched_wakeup` tracepoints on every CPU
//! ([`perf`]), drains their rings at the recorder's periodic ticks and every
//! 64 stops (never adding a stop), and keeps the switches into or out of
//! traced threads and the wakeups of traced threads. Where tracepoints are
//! not permitted it falls back to sampling each thread's
//! `/proc/PID/task/TID/schedstat` (CPU time and run-queue wait) at the
//! futex stops the recording has anyway. Either way each thread's policy,
//! real-time priority, nice value and affinity are read (sched_getattr,
//! sched_getaffinity: no ptrace) at its first stop and after every syscall
//! that may change them.

mod format;
mod perf;

use crate::clock::SeqClock;
use format::Formats;
use lockstep_trace::*;
use std::collections::{HashSet, VecDeque};

/// Which evidence of the schedule a recording collects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SchedMode {
    /// Tracepoints where permitted, schedstat samples otherwise (the default).
    #[default]
    Auto,
    /// Schedstat samples only, even where tracepoints are permitted (the
    /// fallback, selectable to compare and test it).
    Schedstat,
    /// Neither (scheduling attributes are still read).
    Off,
}

/// Unresolved events are kept this long for their thread to become known.
const UNRESOLVED_NS: u64 = 2_000_000_000;
const UNRESOLVED_MAX: usize = 100_000;

/// The schedule capture of one recording.
pub struct Sched {
    rings: Vec<perf::CpuRing>,
    formats: Formats,
    /// Sample schedstat at futex stops (no tracepoints).
    schedstat: bool,
    /// Every traced thread and process so far.
    tids: HashSet<i32>,
    pids: HashSet<i32>,
    /// Threads were added since the unresolved events were last looked at.
    new_threads: bool,
    /// Events naming threads not known yet (a new thread runs before its
    /// creator's clone event reaches the recorder), with when they were seen.
    unresolved: VecDeque<(u64, Record)>,
    /// `meta.sched` and, when tracepoints were not opened, why.
    pub evidence: &'static str,
    pub note: String,
    pub switches: u64,
}

impl Sched {
    /// Opens the capture as `mode` says.
    pub fn open(mode: SchedMode) -> Sched {
        let mut s = Sched {
            rings: Vec::new(),
            formats: Formats::default(),
            schedstat: false,
            tids: HashSet::new(),
            pids: HashSet::new(),
            new_threads: false,
            unresolved: VecDeque::new(),
            evidence: "off",
            note: String::new(),
            switches: 0,
        };
        match mode {
            SchedMode::Off => {
                s.note = "--sched=off".into();
                return s;
            }
            SchedMode::Schedstat => return s.fallback("--sched=schedstat".into()),
            SchedMode::Auto => {}
        }
        match Formats::load() {
            Ok(f) => s.formats = f,
            Err(format::NoTracefs(why)) => return s.fallback(why),
        }
        for cpu in online_cpus() {
            match perf::CpuRing::open(&s.formats, cpu) {
                Ok(r) => s.rings.push(r),
                Err((call, errno)) => {
                    s.rings.clear();
                    return s.fallback(format!("{call} (cpu {cpu}): {}", errno.desc()));
                }
            }
        }
        s.evidence = "perf";
        s
    }

    fn fallback(mut self, why: String) -> Sched {
        tracing::info!("scheduler tracepoints unavailable ({why}); sampling schedstat");
        self.evidence = "schedstat";
        self.schedstat = true;
        self.note = why;
        self
    }

    /// A thread of the traced tree (known from now on).
    pub fn on_thread(&mut self, pid: Pid, tid: Tid) {
        self.new_threads |= self.tids.insert(tid.0);
        self.pids.insert(pid.0);
    }

    /// Whether schedstat samples are wanted (no tracepoints).
    pub fn sampling(&self) -> bool {
        self.schedstat
    }

    /// Moves the rings' events about traced threads to `out`.
    pub fn drain(&mut self, out: &mut Vec<Record>) {
        let now = crate::clock::monotonic_ns();
        let mut fresh = Vec::new();
        let f = &self.formats;
        for ring in &mut self.rings {
            ring.drain(&mut |s| {
                let kind = perf::field(s.raw, f.common_type) as u64;
                if kind == f.switch_id {
                    fresh.push((
                        s.tid,
                        Record::SchedSwitch(SchedSwitch {
                            ts_ns: s.time,
                            cpu: s.cpu,
                            prev_tid: perf::field(s.raw, f.prev_pid) as i32,
                            prev_prio: perf::field(s.raw, f.prev_prio) as i32,
                            prev_state: perf::field(s.raw, f.prev_state),
                            next_tid: perf::field(s.raw, f.next_pid) as i32,
                            next_prio: perf::field(s.raw, f.next_prio) as i32,
                        }),
                    ));
                } else if kind == f.wakeup_id {
                    fresh.push((
                        s.tid,
                        Record::SchedWakeup(SchedWakeup {
                            ts_ns: s.time,
                            cpu: s.cpu,
                            waker_tid: s.tid,
                            tid: perf::field(s.raw, f.wakeup_pid) as i32,
                            prio: perf::field(s.raw, f.wakeup_prio) as i32,
                            target_cpu: perf::field(s.raw, f.wakeup_target_cpu) as i32,
                        }),
                    ));
                }
            });
        }
        // Earlier unresolved events first: their threads may be known now
        // (looked through only when threads were added: on a busy machine
        // the queue holds tens of thousands of other programs' switches).
        while self
            .unresolved
            .front()
            .is_some_and(|(seen, _)| now.saturating_sub(*seen) >= UNRESOLVED_NS)
        {
            self.unresolved.pop_front();
        }
        if std::mem::take(&mut self.new_threads) {
            let waiting = std::mem::take(&mut self.unresolved);
            for (seen, rec) in waiting {
                if self.traced(&rec) {
                    self.keep(rec, out);
                } else {
                    self.unresolved.push_back((seen, rec));
                }
            }
        }
        for (_, rec) in fresh {
            if self.traced(&rec) {
                self.keep(rec, out);
            } else if self.unresolved.len() < UNRESOLVED_MAX {
                self.unresolved.push_back((now, rec));
            }
        }
    }

    fn keep(&mut self, rec: Record, out: &mut Vec<Record>) {
        if matches!(rec, Record::SchedSwitch(_)) {
            self.switches += 1;
        }
        out.push(rec);
    }

    /// Whether an event concerns a traced thread.
    fn traced(&self, rec: &Record) -> bool {
        match rec {
            Record::SchedSwitch(s) => {
                self.tids.contains(&s.prev_tid) || self.tids.contains(&s.next_tid)
            }
            Record::SchedWakeup(w) => self.tids.contains(&w.tid),
            _ => false,
        }
    }

    /// Records lost by the kernel (a ring overflowed between drains).
    pub fn lost(&self) -> u64 {
        self.rings.iter().map(|r| r.lost).sum()
    }

    /// Stops the tracepoints; a last `drain` empties the rings.
    pub fn stop(&self) {
        for r in &self.rings {
            r.disable();
        }
    }
}

/// The CPUs online (/sys/devices/system/cpu/online, e.g. `0-3,6`).
fn online_cpus() -> Vec<u32> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let mut ends = part.splitn(2, '-').map(|x| x.parse::<u32>().ok());
        match (ends.next().flatten(), ends.next()) {
            (Some(a), Some(Some(b))) => cpus.extend(a..=b),
            (Some(a), None) => cpus.push(a),
            _ => {}
        }
    }
    if cpus.is_empty() {
        cpus.push(0);
    }
    cpus
}

/// The scheduling attributes of `tid` now (None: it is gone).
pub fn read_attrs(clock: &mut SeqClock, pid: Pid, tid: Tid, cause: &str) -> Option<SchedAttr> {
    // struct sched_attr, SCHED_ATTR_SIZE_VER1 (56 bytes).
    let mut buf = [0u32; 14];
    // SAFETY: sched_getattr writes at most `size` (56) bytes into `buf`,
    // which is 56 bytes long and lives across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            tid.0 as libc::pid_t,
            buf.as_mut_ptr(),
            56u32,
            0u32,
        )
    };
    if rc != 0 {
        return None;
    }
    // Layout: size u32, policy u32, flags u64, nice s32, priority u32, ...
    let policy = buf[1];
    let nice = buf[4] as i32;
    let rt_priority = buf[5] as i32;
    let affinity = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(tid.0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&c| set.is_set(c).unwrap_or(false))
                .map(|c| c as u32)
                .collect()
        })
        .unwrap_or_default();
    Some(SchedAttr {
        at: clock.stamp(),
        pid,
        tid,
        policy: policy_name(policy).into(),
        rt_priority,
        nice,
        affinity,
        cause: cause.into(),
    })
}

/// One schedstat sample of `tid` (None: it is gone).
pub fn read_schedstat(clock: &mut SeqClock, pid: Pid, tid: Tid) -> Option<SchedStat> {
    let text = std::fs::read_to_string(format!("/proc/{}/task/{}/schedstat", pid.0, tid.0)).ok()?;
    let mut n = text.split_whitespace().map(|x| x.parse::<u64>().ok());
    let (cpu_ns, wait_ns, slices) = (n.next()??, n.next()??, n.next()??);
    Some(SchedStat {
        at: clock.stamp(),
        pid,
        tid,
        cpu_ns,
        wait_ns,
        slices,
    })
}

/// The thread(s) whose attributes a successful syscall may have changed:
/// `Some(tid)` (0 is the caller), or `None` for all threads.
pub fn changed_by(name: &str, args: &[u64; 6]) -> Option<Option<i32>> {
    match name {
        "sched_setscheduler" | "sched_setparam" | "sched_setattr" | "sched_setaffinity" => {
            Some(Some(args[0] as i32))
        }
        // PRIO_PROCESS names one thread on Linux; a group or user: all.
        "setpriority" if args[0] == 0 => Some(Some(args[1] as i32)),
        "setpriority" => Some(None),
        _ => None,
    }
}
