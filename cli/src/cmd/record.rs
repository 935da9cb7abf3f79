//! `lockstep record`: run a program under the recorder.

use anyhow::Result;
use lockstep_recorder::affinity::CpuBinding;
use lockstep_recorder::{record, RecordConfig, SyncMode};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The trace to write (default: ./lockstep-traces/<program>-<N>.db).
    #[arg(short = 'o', long = "output", value_name = "TRACE")]
    output: Option<PathBuf>,
    /// Overwrite an existing trace.
    #[arg(long)]
    force: bool,
    /// The CPU the recording runs on: a number, `auto` (one CPU chosen by
    /// lockstep, the default: ptrace stops are several times cheaper when
    /// tracer and program share a CPU) or `all` (no binding).
    #[arg(long, default_value = "auto", value_parser = parse_cpu)]
    cpu: CpuBinding,
    /// How to record pthread synchronization: `auto` (the in-process agent
    /// where it loads), `agent`, or `off` (syscalls only). The breakpoint
    /// mechanism for static binaries (`ptrace`) is not built yet.
    #[arg(long, default_value = "auto", value_parser = ["auto", "agent", "ptrace", "off"])]
    sync: String,
    /// End the program when no thread makes progress for this many seconds
    /// and every thread is blocked; the trace gets a snapshot of the hang
    /// and lockstep exits with status 124. 0 disables.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    hang_timeout: f64,
    /// Say nothing but errors.
    #[arg(short, long)]
    quiet: bool,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "PROGRAM")]
    command: Vec<String>,
}

/// The exit status of `record` when the program hung and was killed.
pub const HANG_EXIT: u8 = 124;

pub fn run(a: Args) -> Result<u8> {
    let program = a.command[0].clone();
    // Fail on a missing program before creating anything.
    lockstep_recorder::launch::resolve_program(&program)?;
    let (output, default) = match a.output {
        Some(o) => (o, false),
        None => (crate::paths::new_trace_path(&program)?, true),
    };
    if !(a.hang_timeout >= 0.0 && a.hang_timeout.is_finite()) {
        anyhow::bail!("--hang-timeout: {} is not a number of seconds", a.hang_timeout);
    }
    let hang_timeout = (a.hang_timeout > 0.0).then(|| std::time::Duration::from_secs_f64(a.hang_timeout));
    let sync = match a.sync.as_str() {
        "off" => SyncMode::Off,
        "ptrace" => anyhow::bail!("--sync=ptrace: the breakpoint mechanism is not available in this version"),
        mode => match crate::agent_lib::agent_path()? {
            Some(p) => SyncMode::Agent(p),
            None if mode == "auto" => SyncMode::Off,
            None => anyhow::bail!("--sync=agent: this lockstep was built without its agent"),
        },
    };
    let cfg = RecordConfig { program, args: a.command[1..].to_vec(), output: output.clone(), force: a.force, cpu: a.cpu, sync, hang_timeout };
    let rec = record(&cfg)?;
    if default {
        crate::paths::update_latest(&output)?;
    }
    if !a.quiet {
        eprintln!(
            "lockstep: recorded {} processes, {} threads, {} syscalls, {} sync ops, {} signals in {:.2}s: {}",
            rec.counts.processes,
            rec.counts.threads,
            rec.counts.syscalls,
            rec.counts.sync_ops,
            rec.counts.signals,
            rec.wall_ns as f64 / 1e9,
            rec.trace.display()
        );
    }
    if rec.hung {
        eprintln!("lockstep: the program hung (every thread blocked for {:.1}s); it was killed. Run `lockstep report` to see why.", a.hang_timeout);
        return Ok(HANG_EXIT);
    }
    Ok(rec.status.shell_code().clamp(0, 255) as u8)
}

fn parse_cpu(s: &str) -> Result<CpuBinding, String> {
    match s {
        "auto" => Ok(CpuBinding::Auto),
        "all" => Ok(CpuBinding::Unbound),
        n => n.parse().map(CpuBinding::Cpu).map_err(|_| format!("{n:?} is not a CPU number, `auto` or `all`")),
    }
}
