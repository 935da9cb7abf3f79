//! `lockstep report`: every analysis over a trace, as text (default),
//! JSON (the contract's `{"trace", "command", "findings"}`), SARIF 2.1.0 or
//! one self-contained HTML file. Exit status: 0 no findings, 1 findings,
//! 2 usage or trace error.

use crate::progress::Progress;
use crate::report::{style::Style, Report};
use anyhow::{Context, Result};
use lockstep_analysis::Finding;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Report options, shared by `report` and `check`.
#[derive(clap::Args)]
pub struct ReportOpts {
    /// Output format: text (sanitizer-style blocks), json (the report
    /// contract), sarif (SARIF 2.1.0 for code-scanning tools) or html (one
    /// self-contained page with pictures).
    #[arg(long, default_value = "text", value_parser = ["text", "json", "sarif", "html"])]
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
    /// No progress indicator.
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(a: Args) -> Result<u8> {
    let path = a.trace.clone().unwrap_or_else(crate::paths::default_trace);
    report(&Job {
        trace: &path,
        opts: &a.opts,
        out: a.output.as_deref(),
        quiet: a.quiet,
        name_trace: false,
    })
}

/// One report to write.
pub struct Job<'a> {
    pub trace: &'a Path,
    pub opts: &'a ReportOpts,
    /// The report file (default: stdout).
    pub out: Option<&'a Path>,
    /// No progress indicator.
    pub quiet: bool,
    /// End a text report with the line that names the trace (`check`).
    pub name_trace: bool,
}

/// Opens the report's output: the file, or stdout.
pub fn open_output(out: Option<&Path>) -> Result<Box<dyn Write>> {
    Ok(match out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .with_context(|| format!("{}: cannot write report", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    })
}

/// Analyses the trace and writes the report; returns the exit status.
pub fn report(job: &Job<'_>) -> Result<u8> {
    let path = job.trace;
    // An unwritable output path is an error before any work is done.
    let mut sink = open_output(job.out)?;
    let trace = lockstep_trace::TraceReader::open(path)?;
    let format = job.opts.format.as_str();
    // Progress goes to a terminal's stderr, never with JSON or -q.
    let progress = Progress::new(
        "analysing",
        !job.quiet && format != "json" && crate::report::style::is_tty(2),
    );
    let findings = crate::analyze::findings_with(&trace, &progress)?;
    store(&trace, &findings);
    let command = trace.command()?;
    let rep = Report::new(path, &command, &findings);
    match format {
        "json" => {
            let doc = serde_json::json!({"trace": path.display().to_string(), "command": command, "findings": findings});
            serde_json::to_writer_pretty(&mut sink, &doc)?;
            writeln!(sink)?;
        }
        "sarif" => {
            let root = std::env::current_dir().context("current directory")?;
            serde_json::to_writer_pretty(&mut sink, &crate::report::sarif::sarif(&rep, &root))?;
            writeln!(sink)?;
        }
        "html" => {
            progress.phase("drawing the report", 0);
            let page = crate::html::page(&trace, &rep).context("rendering the HTML report")?;
            sink.write_all(page.as_bytes())?;
        }
        _ => {
            let style = if job.out.is_none() {
                Style::for_stdout()
            } else {
                Style::plain()
            };
            let line = job.name_trace.then(|| crate::report::trace_line(path));
            progress.finish();
            crate::report::text::write(&mut sink, &rep, style, line.as_deref())?;
        }
    }
    progress.finish();
    sink.flush()?;
    Ok(if findings.is_empty() { 0 } else { 1 })
}

/// Keeps the findings in the trace (its `findings` view). A trace that
/// cannot be written is still reported on; the failure is only logged.
fn store(trace: &lockstep_trace::TraceReader, findings: &[Finding]) {
    let rows: Vec<lockstep_trace::StoredFinding> = findings
        .iter()
        .map(|f| lockstep_trace::StoredFinding {
            kind: f.kind.clone(),
            severity: crate::report::severity_word(f.severity).to_string(),
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
