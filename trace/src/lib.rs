//! The lockstep trace model.
//!
//! This crate is the only contract between the recorder, the replayer and the
//! analyses: plain data types for everything a recording contains ([`model`]),
//! the versioned SQLite schema ([`schema`]), and [`TraceWriter`] / [`TraceReader`],
//! which hide rusqlite from every other crate. It knows nothing about ptrace,
//! processes or the machine it runs on.

pub mod error;
pub mod evidence;
pub mod ids;
pub mod memory;
pub mod model;
pub mod reader;
pub mod sched;
pub mod schema;
pub mod serial;
pub mod syncrows;
pub mod sysdata;
pub mod tsc;
pub mod writer;

pub use error::TraceError;
pub use evidence::StoredFinding;
pub use ids::{Addr, Pid, Seq, Tid};
pub use memory::{access, MemAccess, MemSegment, Via};
pub use model::*;
pub use reader::{ProcessInfo, SyscallFilter, SyscallStat, TraceReader};
pub use sched::{
    policy_name, state_text, SchedAttr, SchedStat, SchedSwitch, SchedWakeup, Schedule,
    STATE_PREEMPTED,
};
pub use serial::{PreemptPoint, SerialEvent, SerialKind};
pub use sysdata::{DataKind, DataRegion, SyscallData};
pub use tsc::TscRead;
pub use writer::TraceWriter;
