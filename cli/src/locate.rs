//! Source locations for the analyses: the trace's mapping snapshots say
//! which file an address of a process was in at a given time, and the
//! symbolizer turns (file, offset) into function, file and line.

use lockstep_analysis::finding::{Locator, SourcePos};
use lockstep_symbols::Symbolizer;
use lockstep_trace::{Mapping, Pid, Seq, TraceReader};
use std::collections::HashMap;

/// A [`Locator`] over one trace.
pub struct TraceLocator<'t> {
    trace: &'t TraceReader,
    maps: HashMap<i32, Vec<(Seq, Vec<lockstep_symbols::Mapping>)>>,
    memo: HashMap<(i32, u64, u64), SourcePos>,
    symbols: Symbolizer,
}

fn convert(m: Mapping) -> lockstep_symbols::Mapping {
    lockstep_symbols::Mapping {
        start: m.start,
        end: m.end,
        file_offset: m.file_offset,
        path: m.path,
    }
}

impl<'t> TraceLocator<'t> {
    pub fn new(trace: &'t TraceReader) -> Self {
        TraceLocator {
            trace,
            maps: HashMap::new(),
            memo: HashMap::new(),
            symbols: Symbolizer::new(),
        }
    }

    /// The index of `pid`'s mapping snapshot in force at `seq`.
    fn snapshot(&mut self, pid: i32, seq: u64) -> Option<usize> {
        let trace = self.trace;
        let snaps = self.maps.entry(pid).or_insert_with(|| {
            let snaps = trace.mappings(Pid(pid)).unwrap_or_default();
            snaps
                .into_iter()
                .map(|(s, ms)| (s, ms.into_iter().map(convert).collect()))
                .collect()
        });
        // The latest snapshot taken before `seq`, or the first one (code
        // mapped before the first snapshot stays mapped).
        snaps
            .iter()
            .rposition(|(s, _)| s.0 <= seq)
            .or(if snaps.is_empty() { None } else { Some(0) })
    }
}

impl Locator for TraceLocator<'_> {
    fn object_name(&mut self, pid: i32, addr: u64) -> Option<String> {
        // Globals live in the modules of the latest snapshot.
        let i = self.snapshot(pid, u64::MAX)?;
        let (_, maps) = &self.maps[&pid][i];
        self.symbols.data_symbol(maps, addr).map(|d| d.render())
    }

    fn locate(&mut self, pid: i32, seq: u64, ra: u64) -> SourcePos {
        let Some(i) = self.snapshot(pid, seq) else {
            return SourcePos::default();
        };
        let (snap, maps) = &self.maps[&pid][i];
        let snap = snap.0;
        if let Some(p) = self.memo.get(&(pid, snap, ra)) {
            return p.clone();
        }
        let frames = self.symbols.symbolize_return_address(maps, ra);
        // The innermost frame is the call site itself (inlined or not).
        let pos = match frames.first() {
            Some(f) => SourcePos {
                function: Some(f.function.clone().unwrap_or_else(|| {
                    let module = std::path::Path::new(&f.module)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned());
                    format!("{}+{:#x}", module.unwrap_or_default(), f.module_offset)
                })),
                file: f.file.clone(),
                line: f.line,
                internal: f.module.contains("liblockstep_agent"),
            },
            None => SourcePos::default(),
        };
        self.memo.insert((pid, snap, ra), pos.clone());
        pos
    }
}
