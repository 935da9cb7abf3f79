//! The decisions of a serialized recording (`record --serialize`): the
//! recorder lets one thread at a time run the program's code, and says in
//! the trace which thread it let run, when, and where it stopped a thread
//! that ran too long without a syscall (a preemption), so that a replay
//! takes the same decisions at the same points.

use crate::ids::{Pid, Tid};
use crate::model::Stamp;
use serde::{Deserialize, Serialize};

/// What the recorder decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SerialKind {
    /// The thread, stopped at a syscall exit, at its start or preempted,
    /// runs the program's code from here until its next syscall.
    Run,
    /// The thread ran for a whole time slice without a syscall and was
    /// stopped at the instruction `regs` describe.
    Preempt,
}

impl SerialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SerialKind::Run => "run",
            SerialKind::Preempt => "preempt",
        }
    }

    pub fn parse(s: &str) -> Option<SerialKind> {
        match s {
            "run" => Some(SerialKind::Run),
            "preempt" => Some(SerialKind::Preempt),
            _ => None,
        }
    }
}

/// Where a preempted thread was stopped: how a replay finds the same
/// point without hardware counters. `regs` are the general-purpose
/// registers in `user_regs_struct` order; `stack_sum` is a checksum of the
/// current stack frame (at -O0 loop counters live there).
///
/// `sync_op: Some(n)`: the thread was stopped as it entered its n-th
/// interposed sync call (counted by lockstep's agent, per thread, from its
/// start): a software counter that names the point exactly, which the
/// replay's agent stops at again. `regs` are then only informative (the
/// agent's own leftovers in caller-saved registers differ between runs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreemptPoint {
    pub regs: Vec<u64>,
    pub stack_sum: u64,
    #[serde(default)]
    pub sync_op: Option<u64>,
}

/// One decision of the serializing scheduler.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialEvent {
    pub at: Stamp,
    pub pid: Pid,
    pub tid: Tid,
    pub kind: SerialKind,
    pub point: Option<PreemptPoint>,
}

/// FNV-1a over `bytes`: the stack checksum of a preemption point.
pub fn stack_sum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The registers of a point as bytes (little-endian u64s), for the trace.
pub fn regs_blob(regs: &[u64]) -> Vec<u8> {
    regs.iter().flat_map(|r| r.to_le_bytes()).collect()
}

/// The registers of a point from the trace's bytes.
pub fn regs_of_blob(blob: &[u8]) -> Vec<u64> {
    blob.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}
