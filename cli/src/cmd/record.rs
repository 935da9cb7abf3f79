//! `lockstep record`: run a program under the recorder.

use anyhow::Result;
use lockstep_recorder::affinity::CpuBinding;
use lockstep_recorder::sched::SchedMode;
use lockstep_recorder::{record_with_progress, MemMode, RecordConfig, Recording, SyncMode};
use std::path::PathBuf;

/// The options of a recording, shared by `record` and `check`.
#[derive(clap::Args)]
pub struct RecordOpts {
    /// The trace to write (default: ./lockstep-traces/<program>-<N>.db).
    #[arg(short = 'o', long = "output", value_name = "TRACE")]
    pub output: Option<PathBuf>,
    /// Overwrite an existing trace.
    #[arg(long)]
    pub force: bool,
    /// The CPU the recording runs on: a number, `auto` (one CPU chosen by
    /// lockstep, the default: ptrace stops are several times cheaper when
    /// tracer and program share a CPU) or `all` (no binding).
    #[arg(long, default_value = "auto", value_parser = parse_cpu)]
    pub cpu: CpuBinding,
    /// How to record pthread synchronization: `auto` (the in-process agent
    /// where it loads, breakpoints in static executables), `agent` (the
    /// same), `ptrace` (breakpoints everywhere, no LD_PRELOAD), or `off`
    /// (syscalls only).
    #[arg(long, default_value = "auto", value_parser = ["auto", "agent", "ptrace", "off"])]
    pub sync: String,
    /// How to record memory accesses (for data races): `auto` (the agent
    /// instruments the main executable, the default; nothing where the
    /// agent does not load), `agent` (the same, an error without the
    /// agent), `step` (single-step the executable's code under ptrace: exact
    /// on any binary but ~76 µs per instruction; the reference the agent is
    /// tested against), or `off`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "agent", "step", "off"])]
    pub mem: String,
    /// How to record the kernel's schedule (for priority inversion and the
    /// timeline): `auto`/`on` (the sched_switch and sched_wakeup
    /// tracepoints through perf_event_open where permitted, per-thread
    /// schedstat samples otherwise; the default), `schedstat` (the
    /// fallback only) or `off`. `--sched` alone means `on`.
    #[arg(long, default_value = "auto", num_args = 0..=1, default_missing_value = "on",
          value_parser = ["auto", "on", "schedstat", "off"])]
    pub sched: String,
    /// The same as `--sched=off`.
    #[arg(long, conflicts_with = "sched")]
    pub no_sched: bool,
    /// End the program when no thread makes progress for this many seconds
    /// and every thread is blocked; the trace gets a snapshot of the hang
    /// and `record` exits with status 124. 0 disables.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub hang_timeout: f64,
    /// Run one thread of the whole tree at a time, every switch decided
    /// and recorded (at syscalls, and after a 20 ms time slice): slower,
    /// but `lockstep replay` then reproduces even a racy program exactly.
    #[arg(long)]
    pub serialize: bool,
    /// With --serialize (implied): random scheduling decisions in the
    /// manner of PCT, so that races and deadlocks show up in fewer runs.
    /// The seed (random by default) is kept in the trace.
    #[arg(long, value_name = "SEED", num_args = 0..=1, default_missing_value = "random")]
    pub chaos: Option<String>,
    /// Trap rdtsc/rdtscp (prctl PR_SET_TSC) and record the values the
    /// program reads, so that `lockstep replay` gives it the same ones.
    /// Always on with --serialize. Costs a ptrace stop per read (ld.so
    /// reads the counter a few times at every program start).
    #[arg(long)]
    pub trap_tsc: bool,
    /// Say nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    opts: RecordOpts,
    /// The program and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM"
    )]
    command: Vec<String>,
}

/// The exit status of `record` when the program hung and was killed.
pub const HANG_EXIT: u8 = 124;

/// Records `command` as `o` says; returns the recording and the trace path.
pub fn record_with(o: &RecordOpts, command: &[String]) -> Result<Recording> {
    let program = command[0].clone();
    // Fail on a missing program before creating anything.
    lockstep_recorder::launch::resolve_program(&program)?;
    if !(o.hang_timeout >= 0.0 && o.hang_timeout.is_finite()) {
        anyhow::bail!(
            "--hang-timeout: {} is not a number of seconds",
            o.hang_timeout
        );
    }
    let hang_timeout =
        (o.hang_timeout > 0.0).then(|| std::time::Duration::from_secs_f64(o.hang_timeout));
    let sync = match o.sync.as_str() {
        "off" => SyncMode::Off,
        "ptrace" => SyncMode::Ptrace,
        mode => match crate::agent_lib::agent_path()? {
            Some(p) => SyncMode::Agent(p),
            // Without an embedded agent, breakpoints do the job everywhere.
            None if mode == "auto" => SyncMode::Ptrace,
            None => anyhow::bail!("--sync=agent: this lockstep was built without its agent"),
        },
    };
    let mem = match (o.mem.as_str(), &sync) {
        ("off", _) => MemMode::Off,
        ("step", _) => MemMode::Step,
        (_, SyncMode::Agent(_)) => MemMode::Agent,
        ("auto", _) => MemMode::Off,
        _ => anyhow::bail!("--mem=agent needs the agent (--sync=auto or agent)"),
    };
    let (output, default) = match &o.output {
        Some(p) => (p.clone(), false),
        None => (crate::paths::new_trace_path(&program)?, true),
    };
    let cfg = RecordConfig {
        program,
        args: command[1..].to_vec(),
        output: output.clone(),
        force: o.force,
        cpu: o.cpu,
        sync,
        hang_timeout,
        mem,
        serialize: o.serialize || o.chaos.is_some(),
        trap_tsc: o.trap_tsc,
        chaos: match o.chaos.as_deref() {
            None => None,
            Some("random") => {
                Some(lockstep_recorder::clock::monotonic_ns() ^ std::process::id() as u64)
            }
            Some(s) => Some(
                s.parse::<u64>()
                    .map_err(|_| anyhow::anyhow!("--chaos: not a seed: {s:?}"))?,
            ),
        },
        sched: match o.sched.as_str() {
            _ if o.no_sched => SchedMode::Off,
            "off" => SchedMode::Off,
            "schedstat" => SchedMode::Schedstat,
            _ => SchedMode::Auto,
        },
    };
    // A status line on a terminal once the recording runs long.
    let mut meter = crate::progress::RecordMeter::new(!o.quiet && crate::report::style::is_tty(2));
    let rec = record_with_progress(&cfg, &mut |c, ns| meter.update(c, ns));
    meter.clear();
    let rec = rec?;
    if default {
        crate::paths::update_latest(&output)?;
    }
    if !o.quiet {
        eprintln!(
            "lockstep: recorded {} processes, {} threads, {} syscalls, {} sync ops, {} memory accesses, {} signals, {} stops in {:.2}s: {}",
            rec.counts.processes,
            rec.counts.threads,
            rec.counts.syscalls,
            rec.counts.sync_ops,
            rec.counts.mem_accesses,
            rec.counts.signals,
            rec.counts.stops,
            rec.wall_ns as f64 / 1e9,
            rec.trace.display()
        );
    }
    if rec.hung {
        eprintln!(
            "lockstep: the program hung (every thread blocked for {:.1}s) and was killed; `lockstep report {}` says why",
            o.hang_timeout,
            rec.trace.display()
        );
    }
    Ok(rec)
}

pub fn run(a: Args) -> Result<u8> {
    let rec = record_with(&a.opts, &a.command)?;
    if rec.hung {
        return Ok(HANG_EXIT);
    }
    Ok(rec.status.shell_code().clamp(0, 255) as u8)
}

fn parse_cpu(s: &str) -> Result<CpuBinding, String> {
    match s {
        "auto" => Ok(CpuBinding::Auto),
        "all" => Ok(CpuBinding::Unbound),
        n => n
            .parse()
            .map(CpuBinding::Cpu)
            .map_err(|_| format!("{n:?} is not a CPU number, `auto` or `all`")),
    }
}
