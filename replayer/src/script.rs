//! The recording as a replay reads it: each recorded thread's syscalls in
//! order, with their results and the bytes they moved, and the global
//! order in which their entries and exits happened.

use crate::error::ReplayError;
use lockstep_trace::{
    DataRegion, ExitStatus, Pid, SyscallData, SyscallFilter, SyscallOutcome, Tid, TraceReader,
};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// One recorded syscall.
#[derive(Clone, Debug)]
pub struct Call {
    pub pid: Pid,
    pub tid: Tid,
    pub nr: i64,
    pub name: String,
    pub args: [u64; 6],
    pub entry_seq: u64,
    pub exit_seq: Option<u64>,
    pub ret: Option<i64>,
    pub outcome: SyscallOutcome,
    /// The file behind an fd the call used (mmap) or made (openat), as
    /// the recorder resolved it.
    pub object: Option<String>,
    pub data: Vec<DataRegion>,
}

impl Call {
    /// What the call wrote to the recording's terminal, concatenated.
    pub fn terminal_bytes(&self) -> Vec<u8> {
        self.data
            .iter()
            .filter(|r| r.kind != lockstep_trace::DataKind::Out)
            .flat_map(|r| r.bytes.iter().copied())
            .collect()
    }
}

/// Syscalls whose place in the recorded order is not enforced: they only
/// synchronise threads (the kernel decides again, from the program's own
/// memory, who waits), or are harmless to repeat anywhere. In a default
/// (parallel) recording the sleeps too: a loop polling a flag another
/// thread sets (`while (!flag) usleep(..)`) goes round as many times as
/// that thread's timing allows, which replaying its syscalls in order does
/// not reproduce; the sleeps are skipped wherever they come (one matched
/// to a recorded sleep returns no earlier than its recorded exit's turn).
///
/// A serialized recording has none: every syscall entry is where the
/// running thread gave up the user-code slot, so the next thread's turn
/// may come only after it (a `sched_yield` outside the order let the next
/// thread run while the yielding one still ran); and what a futex wait
/// returned (woken, timed out, the word changed) decided what its thread
/// did next, which a live wait would decide again by the replay's own
/// timing (a timed wait of a lock that polls, like Python's GIL). Its
/// futexes are emulated like any call.
pub fn unordered(name: &str, args: &[u64; 6], serialized: bool) -> bool {
    !serialized
        && ((name == "futex" && !is_pi_futex(args)) || name == "sched_yield" || is_sleep(name))
}

/// A priority-inheritance futex operation. Its word holds the owner's tid,
/// which the program knows as the recorded one and the kernel would look
/// up as a live one: these are replayed in the recorded order, emulated,
/// with the word as the kernel left it put back.
pub use lockstep_recorder::sysdata::is_pi_futex;

/// Calls that only wait for time to pass.
pub fn is_sleep(name: &str) -> bool {
    matches!(name, "nanosleep" | "clock_nanosleep")
}

/// Everything a replay needs from a trace.
pub struct Script {
    /// The recorded command line, executable, working directory, environment.
    pub argv: Vec<String>,
    pub exe: String,
    pub cwd: String,
    pub env: Vec<String>,
    /// The agent's shared area the program's environment names ("" without).
    pub agent_area: String,
    /// Each recorded thread's syscalls, in order.
    pub calls: HashMap<Tid, VecDeque<Call>>,
    /// Sequence numbers of the ordered events (syscall entries and exits)
    /// not yet replayed.
    pub pending: BTreeSet<u64>,
    /// The recorded root process and how it ended.
    pub root: Pid,
    pub root_status: ExitStatus,
    /// The hang detector ended the recording.
    pub hung: bool,
    /// Where each thread was blocked when the recording was declared hung
    /// (recorded tid, syscall name), by tid.
    pub hang_snapshot: Vec<(Tid, String)>,
    pub total_calls: usize,
    /// The recorded signals to raise again.
    pub signals: crate::signals::Recorded,
    /// Recorded with `--serialize`: one thread ran user code at a time.
    pub serialized: bool,
    /// The serializing scheduler's decisions per recorded thread, in order.
    pub serial: HashMap<Tid, VecDeque<lockstep_trace::SerialEvent>>,
    /// The trapped rdtsc/rdtscp reads per recorded thread (meta `tsc`).
    pub tsc: crate::tsc::Reads,
}

impl Script {
    pub fn load(t: &TraceReader) -> Result<Script, ReplayError> {
        if !t.has_syscall_data() {
            return Err(ReplayError::NotReplayable(
                "it was recorded by an older lockstep that kept no syscall data (schema < 3)"
                    .into(),
            ));
        }
        let meta = |k: &str| -> Result<String, ReplayError> { Ok(t.meta(k)?.unwrap_or_default()) };
        if meta("aslr")? != "off" {
            return Err(ReplayError::NotReplayable(
                "it was recorded with address randomisation on".into(),
            ));
        }
        let env: Vec<String> = serde_json::from_str(&meta("env")?)
            .map_err(|_| ReplayError::NotReplayable("its environment is not recorded".into()))?;
        let mut data: HashMap<u64, Vec<DataRegion>> = t
            .syscall_data()?
            .into_iter()
            .map(|SyscallData { entry, regions, .. }| (entry.0, regions))
            .collect();
        let serialized = meta("serialize")? == "1";
        let mut calls: HashMap<Tid, VecDeque<Call>> = HashMap::new();
        let mut pending = BTreeSet::new();
        let mut total_calls = 0;
        t.each_syscall(&SyscallFilter::default(), |s| {
            let entry_seq = s.entry.seq.0;
            // Only a call that returned has an exit the replay will see.
            let exit_seq = s
                .exit
                .filter(|_| s.outcome == SyscallOutcome::Returned)
                .map(|e| e.seq.0);
            if !unordered(&s.name, &s.args, serialized) {
                pending.insert(entry_seq);
                if let Some(x) = exit_seq {
                    pending.insert(x);
                }
            }
            total_calls += 1;
            let object = s
                .result
                .get("object")
                .and_then(|v| v.as_str())
                .map(str::to_string);
            calls.entry(s.tid).or_default().push_back(Call {
                pid: s.pid,
                tid: s.tid,
                nr: s.nr,
                name: s.name,
                args: s.args,
                entry_seq,
                exit_seq,
                ret: s.ret,
                outcome: s.outcome,
                object,
                data: data.remove(&entry_seq).unwrap_or_default(),
            });
            Ok(())
        })?;
        let mut serial: HashMap<Tid, VecDeque<lockstep_trace::SerialEvent>> = HashMap::new();
        for e in t.serial_events()? {
            pending.insert(e.at.seq.0);
            serial.entry(e.tid).or_default().push_back(e);
        }
        let procs = t.processes()?;
        let root = procs
            .iter()
            .find(|p| p.ppid.is_none())
            .or(procs.first())
            .ok_or_else(|| ReplayError::NotReplayable("it holds no process".into()))?;
        let hang_snapshot: Vec<(Tid, String)> = t
            .query_rows("SELECT tid, coalesce(syscall, 'running') FROM hang_rows ORDER BY tid")?
            .into_iter()
            .map(|r| {
                (
                    Tid(r[0].as_i64().unwrap_or(0) as i32),
                    r[1].as_str().unwrap_or("?").to_string(),
                )
            })
            .collect();
        let hung = !hang_snapshot.is_empty();
        Ok(Script {
            argv: t.command()?,
            exe: meta("exe")?,
            cwd: meta("cwd")?,
            env,
            agent_area: meta("agent_area")?,
            calls,
            pending,
            root: root.pid,
            root_status: root.status.unwrap_or(ExitStatus::Unknown),
            hung,
            hang_snapshot,
            total_calls,
            signals: crate::signals::Recorded::new(&t.signals()?),
            serialized,
            serial,
            tsc: crate::tsc::Reads::new(meta("tsc")? == "trap", t.tsc_reads()?),
        })
    }

    /// Whether the ordered event `seq` may happen now: it is the next one,
    /// or it was given up on (everything before a thread released early
    /// is: see `relax`).
    pub fn due(&self, seq: u64) -> bool {
        self.pending.first().is_none_or(|&first| seq <= first)
    }

    /// The entry of recorded thread `tid`'s next ordered syscall (`u64::MAX`
    /// when it makes no more).
    pub fn next_entry(&self, tid: Tid) -> u64 {
        self.calls
            .get(&tid)
            .and_then(|q| {
                q.iter()
                    .find(|c| !unordered(&c.name, &c.args, self.serialized))
            })
            .map(|c| c.entry_seq)
            .unwrap_or(u64::MAX)
    }

    /// A sleep of recorded thread `tid` (call `nr`) still to come before its
    /// next ordered call (sleeps are outside the order of a parallel
    /// recording), taken off its queue.
    pub fn take_sleep(&mut self, tid: Tid, nr: i64) -> Option<Call> {
        let serialized = self.serialized;
        let q = self.calls.get_mut(&tid)?;
        let i = q
            .iter()
            .take_while(|c| unordered(&c.name, &c.args, serialized))
            .position(|c| c.nr == nr)?;
        q.remove(i)
    }

    /// The recorded syscalls no replayed thread reached (futex waits left
    /// at the end excepted): the earliest.
    pub fn first_unreplayed(&self) -> Option<&Call> {
        self.left_over().min_by_key(|c| c.entry_seq)
    }

    /// How many recorded syscalls no replayed thread reached.
    pub fn unreplayed(&self) -> usize {
        self.left_over().count()
    }

    fn left_over(&self) -> impl Iterator<Item = &Call> {
        self.calls
            .values()
            .flat_map(|q| q.iter())
            .filter(|c| !unordered(&c.name, &c.args, self.serialized))
    }

    /// Marks the ordered event `seq` replayed.
    pub fn done(&mut self, seq: u64) {
        self.pending.remove(&seq);
    }
}
