//! The recorder's error type: every variant names the operation that failed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{program}: command not found")]
    NotFound { program: String },
    #[error("{program}: {reason}")]
    NotExecutable { program: String, reason: String },
    #[error("{syscall} failed: {errno}")]
    Sys {
        syscall: &'static str,
        errno: nix::errno::Errno,
    },
    #[error("{path}: cannot create trace directory: {source}")]
    TraceDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Trace(#[from] lockstep_trace::TraceError),
    #[error("trace writer stopped: {0}")]
    Writer(String),
}

impl RecordError {
    pub(crate) fn sys(syscall: &'static str) -> impl FnOnce(nix::errno::Errno) -> RecordError {
        move |errno| RecordError::Sys { syscall, errno }
    }
}

/// The outcome of one ptrace request on a tracee: ESRCH means the tracee
/// died under us (killed, or reaped by an exit_group of another thread),
/// which the recorder treats as an event, not an error.
#[derive(Debug, thiserror::Error)]
pub enum TraceeError {
    #[error("tracee died")]
    Died,
    #[error("{request} failed: {errno}")]
    Ptrace {
        request: &'static str,
        errno: nix::errno::Errno,
    },
}

impl TraceeError {
    pub(crate) fn from_errno(request: &'static str, errno: nix::errno::Errno) -> Self {
        if errno == nix::errno::Errno::ESRCH {
            TraceeError::Died
        } else {
            TraceeError::Ptrace { request, errno }
        }
    }
}
