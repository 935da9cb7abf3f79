//! Errors of the trace crate. Every variant renders as one line a user can act on.

use std::path::PathBuf;

/// What can go wrong creating, writing or opening a trace.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{0}: no such trace")]
    Missing(PathBuf),
    #[error("{0}: not a lockstep trace")]
    NotATrace(PathBuf),
    #[error("{path}: trace schema version {found} is newer than this lockstep supports ({supported}); upgrade lockstep")]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("{0}: trace is truncated")]
    Truncated(PathBuf),
    #[error("{path}: trace is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("{0}: already exists (use --force to overwrite)")]
    Exists(PathBuf),
    #[error("{path}: cannot write trace: {source}")]
    Unwritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: sqlite: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{path}: bad value in trace: {detail}")]
    BadValue { path: PathBuf, detail: String },
}

impl TraceError {
    /// Classifies a rusqlite error on `path`, turning SQLite's corruption codes
    /// into the variants users see.
    pub(crate) fn sqlite(path: &std::path::Path, source: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        let path = path.to_path_buf();
        match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => TraceError::NotATrace(path),
            Some(ErrorCode::DatabaseCorrupt) => TraceError::Corrupt {
                path,
                detail: source.to_string(),
            },
            _ => TraceError::Sqlite { path, source },
        }
    }
}
