//! `lockstep report`: every analysis over a trace, as text or JSON.
//! Exit status: 0 no findings, 1 findings, 2 usage or trace error.

use crate::render::print_json;
use anyhow::{Context, Result};
use lockstep_analysis::{Finding, Severity};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Report options, shared by `report` and `check`.
#[derive(clap::Args)]
pub struct ReportOpts {
    /// Output format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
}

#[derive(clap::Args)]
pub struct Args {
    /// The trace (default: lockstep-traces/latest).
    trace: Option<PathBuf>,
    #[command(flatten)]
    opts: ReportOpts,
    /// Write the report to this file instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    output: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<u8> {
    let path = a.trace.clone().unwrap_or_else(crate::paths::default_trace);
    report(&path, &a.opts, a.output.as_deref())
}

/// Analyses the trace at `path` and writes the report; returns the exit status.
pub fn report(path: &Path, opts: &ReportOpts, out: Option<&Path>) -> Result<u8> {
    // An unwritable output path is an error before any work is done.
    let mut sink: Box<dyn Write> = match out {
        Some(p) => Box::new(
            std::fs::File::create(p)
                .with_context(|| format!("{}: cannot write report", p.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let trace = lockstep_trace::TraceReader::open(path)?;
    let findings = crate::analyze::findings(&trace)?;
    store(&trace, &findings);
    let command = trace.command()?;
    match opts.format.as_str() {
        "json" => {
            let doc = serde_json::json!({"trace": path.display().to_string(), "command": command, "findings": findings});
            if out.is_none() {
                print_json(&doc)?;
            } else {
                serde_json::to_writer_pretty(&mut sink, &doc)?;
                writeln!(sink)?;
            }
        }
        _ => write_text(&mut sink, path, &command, &findings)?,
    }
    Ok(if findings.is_empty() { 0 } else { 1 })
}

/// Keeps the findings in the trace (its `findings` view). A trace that
/// cannot be written is still reported on; the failure is only logged.
fn store(trace: &lockstep_trace::TraceReader, findings: &[Finding]) {
    let rows: Vec<lockstep_trace::StoredFinding> = findings
        .iter()
        .map(|f| lockstep_trace::StoredFinding {
            kind: f.kind.clone(),
            severity: serde_json::to_value(f.severity)
                .unwrap_or_default()
                .as_str()
                .unwrap_or("")
                .to_string(),
            summary: f.summary.clone(),
            pids: serde_json::json!(f.pids),
            tids: serde_json::json!(f.tids),
            locations: serde_json::to_value(&f.locations).unwrap_or_default(),
            details: f.details.clone(),
        })
        .collect();
    if let Err(e) = trace.store_findings(&rows) {
        tracing::warn!("findings not stored in the trace: {e}");
    }
}

fn hint(f: &Finding) -> &'static str {
    match f.kind.as_str() {
        "lock_order_inversion" => "take the locks in one global order everywhere (or guard the pair with one lock)",
        "deadlock" if f.details["nested_monitor"] == true => {
            "do not hold the outer lock across a wait on an inner monitor's condvar"
        }
        "deadlock" if f.details.get("objects").is_some() => {
            "close every pipe end a process does not use, in the parent and in each child, before waiting"
        }
        "deadlock" => "take the locks in one global order everywhere",
        "fd_leak" => "close the pipe end after fork/dup2 where it is not used, or create it with O_CLOEXEC",
        "bad_fd" => "check which pipe end goes where: pipefd[0] is the read end, pipefd[1] the write end",
        "fd_misuse" => "the writer's stdout gets pipefd[1], the reader's stdin pipefd[0]",
        "fd_open_at_exit" => "close what you open (or open it O_CLOEXEC)",
        "hang" => "check that every wait has a matching signal/post/close and that nobody waits for itself",
        "self_deadlock" => "do not lock a lock you hold (or make it PTHREAD_MUTEX_RECURSIVE on purpose)",
        "unlock_not_held" => "unlock only what this thread locked",
        "cond_wait_holding_lock" => "release other locks before waiting on a condition variable",
        _ => "",
    }
}

fn write_text(
    out: &mut dyn Write,
    path: &Path,
    command: &[String],
    findings: &[Finding],
) -> Result<()> {
    for f in findings {
        let sev = match f.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
            Severity::Note => "NOTE",
        };
        writeln!(
            out,
            "================================================================="
        )?;
        writeln!(out, "lockstep {sev}: {} ({})", f.summary, f.kind)?;
        for l in &f.locations {
            let place = match (&l.file, l.line) {
                (Some(file), Some(line)) => format!("{file}:{line}"),
                _ => format!("{:#x}", l.address),
            };
            writeln!(out, "  {} [pid {} tid {}]", l.role, l.pid, l.tid)?;
            // Findings about syscalls may have no code address at all.
            if l.address != 0 || l.file.is_some() {
                writeln!(
                    out,
                    "    #0 {} {}",
                    l.function.as_deref().unwrap_or("??"),
                    place
                )?;
            }
            for (i, frame) in l.stack.iter().enumerate() {
                writeln!(out, "    #{} {frame}", i + 1)?;
            }
        }
        if let Some(reason) = f.details.get("reason").and_then(|r| r.as_str()) {
            writeln!(out, "  note: {reason}")?;
        }
        let h = hint(f);
        if !h.is_empty() {
            writeln!(out, "  hint: {h}")?;
        }
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .count();
    let notes = findings
        .iter()
        .filter(|f| f.severity == Severity::Note)
        .count();
    if !findings.is_empty() {
        writeln!(
            out,
            "================================================================="
        )?;
    }
    writeln!(
        out,
        "lockstep: {} finding{} ({errors} error{}, {warnings} warning{}{}) in `{}`: {}",
        findings.len(),
        if findings.len() == 1 { "" } else { "s" },
        if errors == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" },
        match notes {
            0 => String::new(),
            1 => ", 1 note".to_string(),
            n => format!(", {n} notes"),
        },
        command.join(" "),
        path.display()
    )?;
    Ok(())
}
