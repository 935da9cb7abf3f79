//! The lockstep recorder: runs a program under ptrace and writes everything
//! its process tree does into a trace.
//!
//! All ptrace, waitpid and /proc code of lockstep lives in this crate, in
//! [`tracee`] (requests on stopped threads), [`launch`] (starting the
//! program) and [`mem`] (reading tracee memory). [`machine`] is the step
//! machine that turns stops into [`lockstep_trace::Record`]s; [`sink`] writes
//! them on a thread of its own.

pub mod affinity;
pub mod agent;
pub mod auxv;
pub mod breakpoints;
pub mod clock;
pub mod copies;
pub mod decode;
pub mod error;
pub mod fdobj;
pub mod hang;
pub mod launch;
pub mod machine;
pub mod maps;
pub mod mem;
pub mod memlog;
pub mod memstep;
pub mod raised;
pub mod sched;
pub mod serial;
pub mod signals;
pub mod sink;
pub mod sysdata;
pub mod tracee;
pub mod tsc;
pub mod unwind;

pub use error::RecordError;
pub use machine::Counts;

use lockstep_trace::{ExitStatus, Record, TraceWriter};
use std::path::PathBuf;

/// What to record and where; built by the CLI from its arguments.
#[derive(Clone, Debug)]
pub struct RecordConfig {
    /// The program as the user named it (resolved through PATH).
    pub program: String,
    /// Its arguments, without the program itself.
    pub args: Vec<String>,
    /// The trace to create.
    pub output: PathBuf,
    /// Replace an existing trace.
    pub force: bool,
    /// Which CPU the recording runs on.
    pub cpu: affinity::CpuBinding,
    /// How to record synchronization operations.
    pub sync: SyncMode,
    /// End the program when it makes no progress for this long with every
    /// thread blocked (`None`: never).
    pub hang_timeout: Option<std::time::Duration>,
    /// How memory accesses are recorded.
    pub mem: MemMode,
    /// Whether the kernel's schedule is recorded (`--sched`).
    pub sched: sched::SchedMode,
    /// Run one thread at a time, every switch decided and recorded
    /// (`--serialize`): replays exactly even for racy programs.
    pub serialize: bool,
    /// With `serialize`: random (PCT-like) decisions from this seed (`--chaos`).
    pub chaos: Option<u64>,
    /// Trap rdtsc/rdtscp and record their values (`--trap-tsc`; always
    /// on with `serialize`), so that a replay gives the program the same.
    pub trap_tsc: bool,
}

/// How memory accesses (for the race detector) are recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemMode {
    /// Not at all (`LOCKSTEP_MEM=off` for the agent).
    Off,
    /// By the agent, instrumenting the main executable (`LOCKSTEP_MEM=exe`);
    /// needs the agent (`SyncMode::Agent`).
    Agent,
    /// By single-stepping the main executable's code under ptrace (the
    /// reference mechanism, ~76 µs per instruction); the agent, if loaded,
    /// still records heap ops and libc memory-function ranges
    /// (`LOCKSTEP_MEM=step`).
    Step,
}

impl MemMode {
    /// The name in the trace's meta (`mem`) and in `LOCKSTEP_MEM`'s terms.
    pub fn name(self) -> &'static str {
        match self {
            MemMode::Off => "off",
            MemMode::Agent => "agent",
            MemMode::Step => "step",
        }
    }

    /// The value of `LOCKSTEP_MEM` for the agent.
    pub fn agent_env(self) -> &'static str {
        match self {
            MemMode::Off => "off",
            MemMode::Agent => "exe",
            MemMode::Step => "step",
        }
    }
}

/// How synchronization operations (pthread calls) are recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Not at all: syscalls only.
    Off,
    /// With the in-process agent at this path, injected with LD_PRELOAD;
    /// processes whose executable is static (no PT_INTERP, so no
    /// LD_PRELOAD) get breakpoints instead (`--sync=auto`/`agent`).
    Agent(PathBuf),
    /// With breakpoints in every process, no LD_PRELOAD (`--sync=ptrace`).
    Ptrace,
}

/// The result of a recording.
#[derive(Clone, Debug)]
pub struct Recording {
    pub trace: PathBuf,
    /// How the program (the root process) ended.
    pub status: ExitStatus,
    pub counts: Counts,
    pub wall_ns: u64,
    /// The hang detector found the program hung and killed it.
    pub hung: bool,
}

/// Records `cfg.program` and its whole tree into `cfg.output`.
///
/// Fails before starting the program when it cannot be found or the trace
/// cannot be created.
pub fn record(cfg: &RecordConfig) -> Result<Recording, RecordError> {
    record_with_progress(cfg, &mut |_, _| {})
}

/// [`record`], calling `progress` with the counts so far and the time
/// since the start (ns) from the recorder's periodic timer path (about ten
/// times a second; never from the stop path, so it costs nothing per stop).
pub fn record_with_progress(
    cfg: &RecordConfig,
    progress: &mut dyn FnMut(&machine::Counts, u64),
) -> Result<Recording, RecordError> {
    let exe = launch::resolve_program(&cfg.program)?;
    let mut writer = TraceWriter::create(&cfg.output, cfg.force)?;
    let mut argv = vec![cfg.program.clone()];
    argv.extend(cfg.args.iter().cloned());
    let meta = |k: &str, v: String| Record::Meta {
        key: k.into(),
        value: v,
    };
    writer.write(&meta(
        "command",
        serde_json::to_string(&argv).expect("argv serializes"),
    ))?;
    writer.write(&meta("exe", exe.display().to_string()))?;
    writer.write(&meta(
        "cwd",
        std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
    ))?;
    writer.write(&meta("lockstep_version", env!("CARGO_PKG_VERSION").into()))?;
    writer.write(&meta("started_unix_ns", unix_ns().to_string()))?;
    let mode = match &cfg.sync {
        SyncMode::Off => "off".to_string(),
        SyncMode::Agent(p) => format!("agent {}", p.display()),
        SyncMode::Ptrace => "ptrace".to_string(),
    };
    writer.write(&meta("sync_mode", mode))?;
    writer.write(&meta("mem", cfg.mem.name().into()))?;
    writer.flush()?;

    signals::install();
    // Orphaned grandchildren are reparented to us rather than to init, so
    // that their ends are reported and reaped here.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };

    let cpu = affinity::choose(cfg.cpu);
    if let Some(c) = cpu {
        affinity::bind_this_thread(c).map_err(RecordError::sys("sched_setaffinity"))?;
    }
    let meta_cpu = cpu.map(|c| c.to_string()).unwrap_or_else(|| "all".into());
    writer.write(&meta("cpu", meta_cpu))?;
    writer.flush()?;
    let started = clock::monotonic_ns();
    // The child inherits the tracer thread's binding through fork.
    let area = match &cfg.sync {
        SyncMode::Off | SyncMode::Ptrace => None,
        SyncMode::Agent(_) => Some(std::rc::Rc::new(agent::SharedArea::create()?)),
    };
    let policy = match &cfg.sync {
        SyncMode::Off => None,
        SyncMode::Agent(_) => Some(breakpoints::Policy::StaticOnly),
        SyncMode::Ptrace => Some(breakpoints::Policy::All),
    };
    let trap_tsc = cfg.trap_tsc || cfg.serialize;
    let env: Vec<_> = match (&cfg.sync, &area) {
        (SyncMode::Agent(so), Some(a)) => agent::program_env(so, a, cfg.mem, trap_tsc),
        _ => std::env::vars_os().collect(),
    };
    let env = launch::replayable_env(env);
    // What a replay needs to start the program the same way (same
    // environment, so the same stack layout; no address randomisation).
    writer.write(&meta(
        "env",
        serde_json::to_string(&launch::env_strings(&env)).expect("env serializes"),
    ))?;
    writer.write(&meta("aslr", "off".into()))?;
    writer.write(&meta(
        "agent_area",
        area.as_ref()
            .map(|a| a.path().display().to_string())
            .unwrap_or_default(),
    ))?;
    if cfg.serialize && cfg.mem == MemMode::Step {
        return Err(RecordError::Writer(
            "--serialize and --mem=step cannot be combined".into(),
        ));
    }
    writer.write(&meta("serialize", (cfg.serialize as u8).to_string()))?;
    if let Some(seed) = cfg.chaos {
        writer.write(&meta("chaos_seed", seed.to_string()))?;
    }
    // A replay reads this to trap the TSC the same way.
    writer.write(&meta(
        "tsc",
        if trap_tsc { "trap" } else { "native" }.into(),
    ))?;
    let root = launch::launch(&exe, &argv, &env, trap_tsc)?;
    if cpu.is_some() && !affinity::raise_tracer_priority() {
        tracing::debug!("tracer stays at normal priority (no CAP_SYS_NICE)");
    }
    let sink = sink::Sink::start(writer, cpu);
    // Serialized, the timer also ends time slices.
    signals::start_ticker(if cfg.serialize {
        5
    } else {
        sink::MAX_AGE_NS / 2_000_000
    });
    let mut rec = machine::Recorder::new(root, sink, area.clone(), policy)?;
    if cfg.serialize {
        rec.serialize(cfg.chaos);
    }
    if trap_tsc {
        rec.trap_tsc();
    }
    if cfg.mem == MemMode::Step {
        rec.step_memory();
    }
    rec.capture_schedule(sched::Sched::open(cfg.sched))?;
    loop {
        match rec.step()? {
            machine::Outcome::Continue => {}
            machine::Outcome::Interrupted => {
                rec.serial_tick();
                rec.tick()?;
                progress(&rec.counts, clock::monotonic_ns() - started);
                if let Some(t) = cfg.hang_timeout {
                    rec.check_hang(t.as_nanos() as u64)?;
                }
                if let Some(sig) = signals::take_pending() {
                    tracing::info!(sig, "forwarding signal to the program");
                    // SAFETY: kill with a pid we created and a valid signal.
                    unsafe { libc::kill(root.0, sig) };
                }
            }
            machine::Outcome::Done => break,
        }
    }
    signals::stop_ticker();
    let exec_error = rec.root_exec_error();
    let hung = rec.hung();
    let (counts, status) = rec.finish()?;
    if let Some(errno) = exec_error {
        return Err(RecordError::NotExecutable {
            program: cfg.program.clone(),
            reason: nix::errno::Errno::from_raw(errno as i32).desc().to_string(),
        });
    }
    Ok(Recording {
        trace: cfg.output.clone(),
        status: status.unwrap_or(ExitStatus::Unknown),
        counts,
        wall_ns: clock::monotonic_ns() - started,
        hung,
    })
}

fn unix_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
