//! Pure analyses over the lockstep trace model.
//!
//! Nothing here calls ptrace, reads /proc or opens a trace: every analysis is
//! a function from model data ([`lockstep_trace::SyncOp`]s and friends) to
//! [`Finding`]s, so that it is tested on synthetic traces built with
//! [`builder::OpsBuilder`]. Source locations come from a [`Locator`] that the
//! caller provides (the CLI symbolizes with DWARF; tests use a table).

#![forbid(unsafe_code)]

pub mod builder;
pub mod causality;
pub mod cycles;
pub mod deadlock;
pub mod fdbuild;
pub mod fdbuilder;
pub mod fdleak;
pub mod fds;
pub mod fdsys;
pub mod fdwait;
pub mod finding;
pub mod hb;
pub mod inversion;
pub mod lockorder;
pub mod locks;
pub mod lockset;
pub mod ops;
pub mod race;
pub mod racereport;
pub mod racerun;
pub mod regions;
pub mod schedbuilder;
pub mod schedule;
pub mod shadow;
pub mod sysaccess;
pub mod vclock;

pub use finding::{Finding, Location, Locator, Severity};
