//! Replaying trapped time-stamp counter reads, mirroring
//! `recorder/src/tsc.rs`: a trace recorded with the TSC trapped (meta
//! `tsc` = `trap`) is replayed with it trapped too, and each rdtsc/rdtscp
//! of a thread gets the next value its recorded thread got, in the
//! thread's order. The reads are not ordered against other threads'
//! events: a value depends only on which read of the thread it is.
//!
//! A thread that reads more often than recorded (no value left), or, under
//! `--verify`, runs rdtsc where rdtscp was recorded or the other way round,
//! has diverged: the SIGSEGV is never delivered (the program would die of
//! a fault the recording does not have).

use crate::divergence::Divergence;
use lockstep_recorder::error::TraceeError;
use lockstep_recorder::tracee::Stopped;
use lockstep_recorder::tsc::{complete, trapped, Insn};
use lockstep_trace::{Tid, TscRead};
use std::collections::{HashMap, VecDeque};

/// The recorded reads, per recorded thread, in order.
#[derive(Default)]
pub struct Reads {
    /// The recording trapped the TSC: so does the replay.
    pub trapped: bool,
    queues: HashMap<Tid, VecDeque<TscRead>>,
}

/// What a SIGSEGV stop of the replay was.
pub enum Handled {
    /// Not a trapped TSC read: the signal goes its usual way.
    No,
    /// The recorded value is in the thread's registers.
    Replayed,
    /// The replay no longer follows the recording.
    Diverged(Divergence),
}

impl Reads {
    /// `reads` in seq order (as `TraceReader::tsc_reads` returns them).
    pub fn new(trapped: bool, reads: Vec<TscRead>) -> Reads {
        let mut queues: HashMap<Tid, VecDeque<TscRead>> = HashMap::new();
        for r in reads {
            queues.entry(r.tid).or_default().push_back(r);
        }
        Reads { trapped, queues }
    }

    /// The earliest recorded read no replayed thread made, and how many
    /// are left (for `--verify` at the end).
    pub fn left(&self) -> Option<(&TscRead, usize)> {
        let n = self.queues.values().map(VecDeque::len).sum();
        let first = self
            .queues
            .values()
            .filter_map(VecDeque::front)
            .min_by_key(|r| r.at.seq)?;
        Some((first, n))
    }

    /// At a signal-delivery stop of `sig` of a live thread playing recorded
    /// thread `rec`: replays a trapped rdtsc/rdtscp with its recorded value.
    pub fn on_signal(
        &mut self,
        t: &Stopped,
        sig: i32,
        rec: Tid,
        verify: bool,
    ) -> Result<Handled, TraceeError> {
        if !self.trapped {
            return Ok(Handled::No);
        }
        let Some((insn, regs)) = trapped(t, sig)? else {
            return Ok(Handled::No);
        };
        let Some(read) = self.queues.get_mut(&rec).and_then(VecDeque::pop_front) else {
            return Ok(Handled::Diverged(Divergence {
                seq: None,
                tid: Some(rec),
                what: format!("{} after the recorded thread's last one", insn.name()),
                expected: "no more TSC reads".into(),
                got: insn.name().into(),
                location: None,
            }));
        };
        let recorded = if read.aux.is_some() {
            Insn::Rdtscp
        } else {
            Insn::Rdtsc
        };
        if verify && recorded != insn {
            return Ok(Handled::Diverged(Divergence {
                seq: Some(read.at.seq.0),
                tid: Some(rec),
                what: "TSC read".into(),
                expected: recorded.name().into(),
                got: insn.name().into(),
                location: None,
            }));
        }
        complete(t, regs, insn, read.value, read.aux.unwrap_or(0))?;
        Ok(Handled::Replayed)
    }
}
