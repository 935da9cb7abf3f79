//! `lockstep`: record a program's process tree and inspect the trace.
//!
//! One file per subcommand under `cmd/`; each turns its arguments into the
//! plain config structs of the library crates. Errors are `anyhow` here and
//! only here, printed as one line.

mod agent_lib;
mod analyze;
mod cmd;
mod html;
mod locate;
mod paths;
mod progress;
mod render;
mod report;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "lockstep",
    version,
    about = "Record, replay and debug multithreaded programs and pipelines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Record a program and its whole process tree into a trace.
    Record(cmd::record::Args),
    /// Re-execute a recorded program deterministically: same syscall results, same output, same exit status.
    Replay(cmd::replay::Args),
    /// List the processes of a trace as a tree.
    Ps(cmd::ps::Args),
    /// Print the events of a trace, strace-like.
    Events(cmd::events::Args),
    /// Per-syscall counts, errors and time, like `strace -c`.
    Summary(cmd::summary::Args),
    /// List the synchronization objects of a trace and who used them.
    Locks(cmd::locks::Args),
    /// Each process's file-descriptor table: fd, object, flags, where it came from.
    Fds(cmd::fds::Args),
    /// Analyse a trace: deadlocks, lock-order inversions, hangs, lock misuse, fd leaks (text, JSON, SARIF or HTML).
    Report(cmd::report::Args),
    /// Record a program, then report on it (the main job).
    Check(cmd::check::Args),
    /// Export a trace as a timeline (Chrome trace-event JSON for Perfetto).
    Export(cmd::export::Args),
    /// What a finding kind means, why it matters and how to fix it.
    Explain(cmd::explain::Args),
}

/// Exit status for usage and trace errors (the contract's 2).
pub const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    // Like every Unix tool: a closed pipe (`lockstep events | head`) ends us quietly.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOCKSTEP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Record(a) => cmd::record::run(a),
        Command::Replay(a) => cmd::replay::run(a),
        Command::Ps(a) => cmd::ps::run(a),
        Command::Events(a) => cmd::events::run(a),
        Command::Summary(a) => cmd::summary::run(a),
        Command::Report(a) => cmd::report::run(a),
        Command::Locks(a) => cmd::locks::run(a),
        Command::Fds(a) => cmd::fds::run(a),
        Command::Check(a) => cmd::check::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Explain(a) => cmd::explain::run(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("lockstep: {e:#}");
            ExitCode::from(cmd::exit_code_of(&e))
        }
    }
}
