//! `lockstep check`: record the program, then report on it. The main job.
//! Without `-o` the trace goes to a fresh file in the temporary directory;
//! either way it is kept, and a text report ends with the line that names
//! it (`trace: PATH  (lockstep replay PATH)`). Exit status: 0 no findings,
//! 1 findings, 2 usage or trace error (127/126: no such program).

use super::record::{record_with, RecordOpts};
use super::report::{report, Job, ReportOpts};
use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    rec: RecordOpts,
    #[command(flatten)]
    rep: ReportOpts,
    /// Write the report to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    report_file: Option<PathBuf>,
    /// The program and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM"
    )]
    command: Vec<String>,
}

pub fn run(mut a: Args) -> Result<u8> {
    // Check the report file can be written before the program runs.
    if let Some(p) = &a.report_file {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .with_context(|| format!("{}: cannot write report", p.display()))?;
    }
    if a.rec.output.is_none() {
        lockstep_recorder::launch::resolve_program(&a.command[0])?;
        a.rec.output = Some(crate::paths::temporary_trace_path(&a.command[0])?);
    }
    let rec = record_with(&a.rec, &a.command)?;
    let text = a.rep.format == "text";
    let code = report(&Job {
        trace: &rec.trace,
        opts: &a.rep,
        out: a.report_file.as_deref(),
        quiet: a.rec.quiet,
        name_trace: text,
    })?;
    // A report in a file (or not in text) still names the trace, on stderr.
    let on_stdout = text && a.report_file.is_none();
    if !on_stdout && !a.rec.quiet {
        if let Some(p) = &a.report_file {
            eprintln!("lockstep: report written to {}", p.display());
        }
        eprintln!("lockstep: {}", crate::report::trace_line(&rec.trace));
    }
    Ok(code)
}
