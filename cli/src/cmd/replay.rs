//! `lockstep replay [TRACE] [--verify] [--stop-at SEQ]`: re-executes the
//! recorded program with its syscalls emulated from the trace, prints what
//! it printed, and exits with the recorded status.

use anyhow::{Context, Result};
use lockstep_replayer::{replay, ReplayConfig};
use lockstep_trace::{ExitStatus, TraceReader};
use std::path::PathBuf;

/// Exit status of a replay that diverged from its recording.
const EXIT_DIVERGED: u8 = 3;

#[derive(clap::Args)]
pub struct Args {
    /// The trace (default: lockstep-traces/latest).
    trace: Option<PathBuf>,
    /// Check every syscall and its arguments, the output and the exit
    /// status against the recording; report the first divergence and exit 3.
    #[arg(long)]
    verify: bool,
    /// Stop at the first event at or after this sequence number and print
    /// the thread's registers and stack.
    #[arg(long, value_name = "SEQ")]
    stop_at: Option<u64>,
    /// Declare the replay stuck when no thread moves for this long (ms).
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    stall_ms: u64,
}

pub fn run(a: Args) -> Result<u8> {
    let trace = a.trace.unwrap_or_else(crate::paths::default_trace);
    check_agent(&trace)?;
    let cfg = ReplayConfig {
        trace: trace.clone(),
        verify: a.verify,
        stop_at: a.stop_at,
        stall_ms: a.stall_ms,
    };
    let out = replay(&cfg).with_context(|| format!("replay of {}", trace.display()))?;
    if let Some(s) = &out.stopped_at {
        print!("{s}");
        return Ok(0);
    }
    if let Some(d) = &out.divergence {
        eprintln!("lockstep: {d}");
        return Ok(EXIT_DIVERGED);
    }
    if out.reached_recorded_end {
        let why = if out.hung {
            "the recorded hang"
        } else {
            "the end of the recording"
        };
        eprintln!(
            "lockstep: replay reached {why}; the program was stopped there, as when recorded"
        );
        for (tid, call) in &out.snapshot {
            eprintln!("  thread {} blocked in {call}", tid.0);
        }
    }
    if a.verify {
        let relaxed = match out.counts.relaxed {
            0 => String::new(),
            n => format!("; {n} held threads let go before their recorded turn, as the others waited for them"),
        };
        eprintln!(
            "lockstep: replay verified: {} recorded syscalls ({} emulated, {} executed again), same output, same exit status; {} ptrace stops{relaxed}",
            out.recorded_calls, out.counts.emulated, out.counts.executed, out.counts.stops
        );
    }
    if out.hung {
        // As `record` exits when its hang detector ends the program.
        return Ok(crate::cmd::record::HANG_EXIT);
    }
    Ok(match out.recorded {
        ExitStatus::Exited { code } => code as u8,
        ExitStatus::Killed { signal, .. } => 128u8.wrapping_add(signal as u8),
        _ => 0,
    })
}

/// A trace recorded with the agent names the agent's file in its
/// environment: it must be this build's (the replayed program loads it).
fn check_agent(trace: &std::path::Path) -> Result<()> {
    let t = TraceReader::open(trace)?;
    let mode = t.meta("sync_mode")?.unwrap_or_default();
    let Some(recorded) = mode.strip_prefix("agent ") else {
        return Ok(());
    };
    let ours = crate::agent_lib::agent_path()?;
    if ours.as_deref() != Some(std::path::Path::new(recorded)) {
        anyhow::bail!(
            "{}: recorded with another lockstep build's agent ({recorded}); replay it with that build",
            trace.display()
        );
    }
    Ok(())
}
