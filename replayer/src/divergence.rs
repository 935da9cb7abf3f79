//! The first point where the replayed program stopped doing what the
//! recorded one did: which event, which thread, what the recording says
//! and what the replay saw, and where the thread was.

use lockstep_trace::Tid;
use std::fmt;

/// A replay that no longer follows its recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// The recorded event (sequence number) the replay was at, if any.
    pub seq: Option<u64>,
    /// The recorded thread.
    pub tid: Option<Tid>,
    /// What differs ("syscall", "argument 2 of write", "exit status"...).
    pub what: String,
    pub expected: String,
    pub got: String,
    /// Where the thread was (symbolized instruction pointer), when known.
    pub location: Option<String>,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "replay diverged")?;
        if let Some(s) = self.seq {
            write!(f, " at event {s}")?;
        }
        if let Some(t) = self.tid {
            write!(f, " in thread {}", t.0)?;
        }
        write!(
            f,
            ": {}: expected {}, got {}",
            self.what, self.expected, self.got
        )?;
        if let Some(l) = &self.location {
            write!(f, " (at {l})")?;
        }
        Ok(())
    }
}
