//! Shared text rendering of trace data for the inspection commands.

use lockstep_trace::ExitStatus;

/// A signal's name, e.g. `SIGSEGV`.
pub fn signal_name(sig: i32) -> String {
    lockstep_recorder::decode::names::signal_name(sig)
}

/// `exited 0`, `killed by SIGSEGV (core dumped)`, ...
pub fn exit_status(s: &ExitStatus) -> String {
    match *s {
        ExitStatus::Exited { code } => format!("exited {code}"),
        ExitStatus::Killed {
            signal,
            core_dumped,
        } => {
            format!(
                "killed by {}{}",
                signal_name(signal),
                if core_dumped { " (core dumped)" } else { "" }
            )
        }
        ExitStatus::Execed => "ended by exec".into(),
        ExitStatus::Unknown => "unknown".into(),
    }
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}
