//! Newtypes for the identifiers a trace is made of, so a tid is never passed
//! where a pid is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident, $inner:ty) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

id_newtype!(
    /// A process id as the kernel reported it during the recording.
    Pid, i32
);
id_newtype!(
    /// A thread id (the kernel's tid); the main thread's tid equals its pid.
    Tid, i32
);
id_newtype!(
    /// The global sequence number: one total order over every event of the
    /// recorded tree, shared by all recording mechanisms.
    Seq, u64
);

/// An address in a tracee's address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Addr(pub u64);

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl Tid {
    /// The tid of a process's main thread.
    pub fn leader_of(pid: Pid) -> Tid {
        Tid(pid.0)
    }
}
