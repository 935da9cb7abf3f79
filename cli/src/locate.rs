//! Source locations for the analyses: the trace's mapping snapshots say
//! which file an address of a process was in at a given time, and the
//! symbolizer turns (file, offset) into function, file and line.

use lockstep_analysis::finding::{Locator, SourcePos};
use lockstep_trace::{Mapping, Pid, Seq, TraceReader};
use std::collections::HashMap;

/// A [`Locator`] over one trace.
pub struct TraceLocator<'t> {
    trace: &'t TraceReader,
    maps: HashMap<i32, Vec<(Seq, Vec<Mapping>)>>,
    memo: HashMap<(i32, u64, u64), SourcePos>,
}

impl<'t> TraceLocator<'t> {
    pub fn new(trace: &'t TraceReader) -> Self {
        TraceLocator { trace, maps: HashMap::new(), memo: HashMap::new() }
    }

    /// The index of `pid`'s mapping snapshot in force at `seq`.
    fn snapshot(&mut self, pid: i32, seq: u64) -> Option<usize> {
        let trace = self.trace;
        let snaps = self.maps.entry(pid).or_insert_with(|| trace.mappings(Pid(pid)).unwrap_or_default());
        // The latest snapshot taken before `seq`, or the first one (code
        // mapped before the first snapshot stays mapped).
        snaps.iter().rposition(|(s, _)| s.0 <= seq).or(if snaps.is_empty() { None } else { Some(0) })
    }
}

impl Locator for TraceLocator<'_> {
    fn locate(&mut self, pid: i32, seq: u64, ra: u64) -> SourcePos {
        let Some(i) = self.snapshot(pid, seq) else { return SourcePos::default() };
        let (snap, maps) = &self.maps[&pid][i];
        let snap = snap.0;
        if let Some(p) = self.memo.get(&(pid, snap, ra)) {
            return p.clone();
        }
        let pos = match maps.iter().find(|m| ra >= m.start && ra < m.end) {
            Some(m) => SourcePos {
                function: Some(format!(
                    "{}+{:#x}",
                    std::path::Path::new(&m.path).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
                    ra - m.start + m.file_offset
                )),
                file: None,
                line: None,
            },
            None => SourcePos::default(),
        };
        self.memo.insert((pid, snap, ra), pos.clone());
        pos
    }
}
