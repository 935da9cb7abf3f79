//! The lockstep replayer: re-executes a recorded process tree under ptrace
//! and makes it do what the recording says.
//!
//! The program is started the way it was recorded (same executable,
//! arguments, environment, working directory, no address randomisation,
//! the agent's shared area at the same path). Its syscalls are then
//! emulated from the trace ([`sysdata`]: results and the bytes the kernel
//! wrote put back, nothing read or written outside) except those that
//! build the address space and the process tree, which run again and are
//! checked; file mappings are redone by injected syscalls ([`mapping`]).
//! [`machine`] holds each thread at each syscall until its recorded turn.
//! What the program wrote to the recording's terminal is printed again.
//!
//! All ptrace requests go through `lockstep_recorder::tracee`, shared with
//! the recorder.

pub mod divergence;
pub mod error;
pub mod machine;
pub mod mapping;
pub mod script;
pub mod signals;
pub mod stopat;
pub mod sysdata;
pub mod tsc;

pub use divergence::Divergence;
pub use error::ReplayError;

use lockstep_trace::{ExitStatus, TraceReader};
use std::ffi::OsString;
use std::path::PathBuf;

/// What to replay and how; built by the CLI from its arguments.
#[derive(Clone, Debug, Default)]
pub struct ReplayConfig {
    pub trace: PathBuf,
    /// Check every event's syscall and arguments, the output and the exit
    /// status against the recording.
    pub verify: bool,
    /// Stop at the first event at or after this sequence number.
    pub stop_at: Option<u64>,
    /// How long no thread may move before the replay is declared stuck.
    pub stall_ms: u64,
}

/// How a replay ended.
#[derive(Clone, Debug)]
pub struct ReplayOutcome {
    /// The recorded exit status of the root process.
    pub recorded: ExitStatus,
    /// The replayed one (None when the replay ended it).
    pub replayed: Option<ExitStatus>,
    pub divergence: Option<Divergence>,
    pub stopped_at: Option<String>,
    /// The recording ended (a recorded hang) with the program still alive.
    pub reached_recorded_end: bool,
    pub hung: bool,
    /// Where the replayed threads were blocked at the recorded end
    /// (recorded tid, syscall).
    pub snapshot: Vec<(lockstep_trace::Tid, String)>,
    pub counts: machine::Counts,
    pub recorded_calls: usize,
}

/// Empties the agent's rings in the replayed program.
fn discard_agent_events(area: Option<&lockstep_recorder::agent::SharedArea>) {
    if let Some(a) = area {
        let (mut events, mut odd) = (Vec::new(), Vec::new());
        a.drain(&mut events, &mut odd);
    }
}

/// Replays `cfg.trace`.
pub fn replay(cfg: &ReplayConfig) -> Result<ReplayOutcome, ReplayError> {
    let trace = TraceReader::open(&cfg.trace)?;
    let script = script::Script::load(&trace)?;
    drop(trace);
    let exe = PathBuf::from(&script.exe);
    if !exe.is_file() {
        return Err(ReplayError::NotReplayable(format!(
            "the recorded program {} is gone",
            exe.display()
        )));
    }
    let env: Vec<(OsString, OsString)> = script
        .env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.into(), v.into()),
            None => (kv.into(), OsString::new()),
        })
        .collect();
    // The agent's shared area, where the recorded environment says it is.
    let area = if script.agent_area.is_empty() {
        None
    } else {
        let p = PathBuf::from(&script.agent_area);
        let _ = std::fs::remove_file(&p);
        Some(lockstep_recorder::agent::SharedArea::create_at(p)?)
    };
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    lockstep_recorder::signals::install();
    let here = std::env::current_dir().ok();
    if !script.cwd.is_empty() && std::env::set_current_dir(&script.cwd).is_err() {
        return Err(ReplayError::NotReplayable(format!(
            "its working directory {} is gone",
            script.cwd
        )));
    }
    // Tracer and program on one CPU, as when recording: a ptrace stop is
    // several times cheaper without cross-CPU wakeups. (The program's own
    // affinity calls are emulated, so it stays there.)
    // Not for a serialized recording: its replay is held to the recorded
    // decisions, and a thread spinning towards its preemption point must
    // not share the tracer's CPU.
    if !script.serialized {
        if let Some(cpu) = lockstep_recorder::affinity::choose(Default::default()) {
            let _ = lockstep_recorder::affinity::bind_this_thread(cpu);
        }
    }
    let launched = lockstep_recorder::launch::launch(&exe, &script.argv, &env, script.tsc.trapped);
    if let Some(h) = here {
        let _ = std::env::set_current_dir(h);
    }
    let root = launched?;
    let recorded = script.root_status;
    let hung = script.hung;
    let recorded_calls = script.total_calls;
    let mut r = machine::Replayer::new(script, cfg.clone(), root, area);
    lockstep_recorder::signals::start_ticker(100);
    let stall = cfg.stall_ms.max(200) * 1_000_000;
    loop {
        match r.step() {
            machine::Outcome::Continue => {
                // The agent's rings must be emptied, or a thread whose ring
                // is full waits for the recorder (sched_yield, up to a
                // second) before dropping: the events are in the trace already.
                if r.counts.stops.is_multiple_of(64) {
                    discard_agent_events(r.area());
                }
            }
            machine::Outcome::Interrupted => {
                discard_agent_events(r.area());
                if lockstep_recorder::signals::take_pending().is_some() {
                    r.kill_all();
                }
                r.check_stall(stall);
            }
            machine::Outcome::Done => break,
        }
    }
    lockstep_recorder::signals::stop_ticker();
    let mut divergence = r.divergence.take();
    let ended = r.ended_early;
    if divergence.is_none() && r.stopped_at.is_none() && !ended && cfg.verify {
        if r.live_root_status != Some(recorded) {
            divergence = Some(Divergence {
                seq: None,
                tid: None,
                what: "exit status".into(),
                expected: format!("{recorded:?}"),
                got: format!("{:?}", r.live_root_status),
                location: None,
            });
        } else if let Some(left) = r.script.first_unreplayed() {
            divergence = Some(Divergence {
                seq: Some(left.entry_seq),
                tid: Some(left.tid),
                what: "end".into(),
                expected: format!(
                    "{} more recorded syscalls, the first {}",
                    r.script.unreplayed(),
                    left.name
                ),
                got: "the program ended".into(),
                location: None,
            });
        } else if let Some(&left) = r.script.pending.first() {
            divergence = Some(Divergence {
                seq: Some(left),
                tid: None,
                what: "end".into(),
                expected: format!("{} more recorded events", r.script.pending.len()),
                got: "the program ended".into(),
                location: None,
            });
        } else if let Some((read, n)) = r.script.tsc.left() {
            divergence = Some(Divergence {
                seq: Some(read.at.seq.0),
                tid: Some(read.tid),
                what: "end".into(),
                expected: format!("{n} more recorded TSC reads"),
                got: "the program ended".into(),
                location: None,
            });
        }
    }
    Ok(ReplayOutcome {
        recorded,
        replayed: r.live_root_status,
        divergence,
        stopped_at: r.stopped_at.take(),
        reached_recorded_end: ended,
        hung,
        snapshot: std::mem::take(&mut r.snapshot),
        counts: r.counts.clone(),
        recorded_calls,
    })
}
