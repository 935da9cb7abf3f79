//! One module per subcommand.

pub mod check;
pub mod events;
pub mod explain;
pub mod export;
pub mod fds;
pub mod locks;
pub mod ps;
pub mod record;
pub mod replay;
pub mod report;
pub mod summary;

use crate::EXIT_USAGE;
use lockstep_trace::{TraceError, TraceReader};
use std::path::PathBuf;

/// The arguments every inspection command takes.
#[derive(clap::Args)]
pub struct TraceArgs {
    /// The trace (default: lockstep-traces/latest).
    pub trace: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Opens the trace named on the command line, or the latest one.
pub fn open_trace(path: Option<PathBuf>) -> anyhow::Result<TraceReader> {
    let path = path.unwrap_or_else(crate::paths::default_trace);
    Ok(TraceReader::open(&path)?)
}

/// The exit status for an error: 127 for a program that cannot be found,
/// 126 for one that cannot be run, 2 for everything else (usage, traces,
/// output paths).
pub fn exit_code_of(e: &anyhow::Error) -> u8 {
    use lockstep_recorder::RecordError;
    for cause in e.chain() {
        if let Some(r) = cause.downcast_ref::<RecordError>() {
            match r {
                RecordError::NotFound { .. } => return 127,
                RecordError::NotExecutable { .. } => return 126,
                _ => {}
            }
        }
        if cause.downcast_ref::<TraceError>().is_some() {
            return EXIT_USAGE;
        }
    }
    EXIT_USAGE
}
