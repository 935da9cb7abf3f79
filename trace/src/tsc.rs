//! Time-stamp counter reads (`rdtsc`, `rdtscp`) of a recording made with
//! the TSC trapped (`record --trap-tsc`, `--serialize`): the kernel faults
//! every such instruction, the recorder executes it in its place, and the
//! value it gave the program is kept here so that a replay gives the same.

use crate::ids::{Pid, Tid};
use crate::model::Stamp;
use serde::{Deserialize, Serialize};

/// One trapped `rdtsc` or `rdtscp` of a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TscRead {
    pub at: Stamp,
    pub pid: Pid,
    pub tid: Tid,
    /// The 64-bit counter the program got (edx:eax).
    pub value: u64,
    /// `rdtscp`'s TSC_AUX (ecx); `None` for `rdtsc`.
    pub aux: Option<u32>,
}

impl TscRead {
    /// The instruction's name, as the `events` view says it.
    pub fn instruction(&self) -> &'static str {
        if self.aux.is_some() {
            "rdtscp"
        } else {
            "rdtsc"
        }
    }
}
