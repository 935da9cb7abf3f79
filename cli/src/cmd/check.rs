//! `lockstep check`: record the program, then report on it. The main job.

use super::record::{record_with, RecordOpts};
use super::report::{report, ReportOpts};
use anyhow::Result;
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

pub fn run(a: Args) -> Result<u8> {
    // Check the report file can be written before the program runs.
    if let Some(p) = &a.report_file {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| anyhow::anyhow!("{}: cannot write report: {e}", p.display()))?;
    }
    let rec = record_with(&a.rec, &a.command)?;
    let code = report(&rec.trace, &a.rep, a.report_file.as_deref())?;
    if a.rep.format == "text" {
        eprintln!(
            "lockstep: trace kept in {} (lockstep replay / events / report take it)",
            rec.trace.display()
        );
    }
    Ok(code)
}
