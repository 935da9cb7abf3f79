//! The bytes a syscall moved between the kernel and the program, kept so
//! that a replay can emulate the call instead of doing it again.
//!
//! Two kinds of bytes are kept:
//! - what the kernel wrote into the program's memory (a `read` buffer, a
//!   `stat` struct, the two fds of `pipe`, a wait status, a clock value):
//!   the replayer writes them back at the same addresses when it emulates
//!   the call;
//! - what the program wrote to the terminal the recording ran on (its own
//!   stdout or stderr, whatever fd number the program used): the replayer
//!   prints them again, so a replay shows the recorded output, and
//!   `replay --verify` compares them with what the replayed program writes.

use crate::ids::{Pid, Seq, Tid};
use serde::{Deserialize, Serialize};

/// Where a region of syscall data goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataKind {
    /// The kernel wrote these bytes at `addr` in the program's memory.
    Out,
    /// The program wrote these bytes (from `addr`) to the recording's stdout.
    Stdout,
    /// The program wrote these bytes (from `addr`) to the recording's stderr.
    Stderr,
}

impl DataKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::Out => "out",
            DataKind::Stdout => "stdout",
            DataKind::Stderr => "stderr",
        }
    }

    pub fn parse(s: &str) -> Option<DataKind> {
        Some(match s {
            "out" => DataKind::Out,
            "stdout" => DataKind::Stdout,
            "stderr" => DataKind::Stderr,
            _ => return None,
        })
    }
}

/// One contiguous region of a syscall's data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataRegion {
    pub kind: DataKind,
    pub addr: u64,
    pub bytes: Vec<u8>,
}

/// The data of the syscall that entered at `entry` (its `entry_seq`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyscallData {
    pub entry: Seq,
    pub pid: Pid,
    pub tid: Tid,
    pub regions: Vec<DataRegion>,
}

impl SyscallData {
    /// The bytes written to the recording's terminal, in order, with the stream.
    pub fn terminal(&self) -> impl Iterator<Item = &DataRegion> {
        self.regions.iter().filter(|r| r.kind != DataKind::Out)
    }
}
