//! What can stop a replay before it runs or while it runs (a divergence is
//! not an error: it is a result, [`crate::Divergence`]).

use lockstep_trace::TraceError;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("this trace cannot be replayed: {0}")]
    NotReplayable(String),
    #[error("cannot start the recorded program: {0}")]
    Launch(#[from] lockstep_recorder::RecordError),
    #[error("{syscall} failed: {errno}")]
    Sys {
        syscall: &'static str,
        errno: nix::errno::Errno,
    },
}
