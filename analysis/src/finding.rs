//! Findings as the report contract describes them (PRODUCT.md: kind,
//! severity, summary, pids, tids, locations, details), and the [`Locator`]
//! through which analyses turn code addresses into source locations.

use serde::Serialize;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Note,
}

/// One place in the program a finding points at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Location {
    /// What happened here, e.g. `holds A`, `acquires B`, `waits`.
    pub role: String,
    pub pid: i32,
    pub tid: i32,
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// The code address (a return address: the instruction after the call).
    pub address: u64,
    /// The rest of the call stack, innermost first, as `function file:line`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<String>,
    /// When (sequence number) this place was reached, if known: lets a
    /// later pass resolve addresses in the mappings of that moment.
    #[serde(skip)]
    pub seq: Option<u64>,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub kind: String,
    pub severity: Severity,
    pub summary: String,
    pub pids: Vec<i32>,
    pub tids: Vec<i32>,
    pub locations: Vec<Location>,
    pub details: serde_json::Value,
}

/// A resolved source position.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourcePos {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// A frame of lockstep's own agent, hidden from reports.
    pub internal: bool,
}

/// Turns a return address of process `pid` (as of sequence number `seq`)
/// into a source position.
pub trait Locator {
    fn locate(&mut self, pid: i32, seq: u64, return_address: u64) -> SourcePos;

    /// A name for the data object at `addr` of process `pid` (a global
    /// variable, `accounts[1].lock`), if one is known.
    fn object_name(&mut self, _pid: i32, _addr: u64) -> Option<String> {
        None
    }
}

/// `mutex A`, or `mutex 0x5555...` when the object has no name.
pub fn object_label(loc: &mut dyn Locator, kind: &str, pid: i32, addr: u64) -> String {
    match loc.object_name(pid, addr) {
        Some(n) => format!("{kind} {n}"),
        None => format!("{kind} {addr:#x}"),
    }
}

/// A locator that knows nothing: addresses only.
pub struct NoLocator;

impl Locator for NoLocator {
    fn locate(&mut self, _pid: i32, _seq: u64, _ra: u64) -> SourcePos {
        SourcePos::default()
    }
}

impl SourcePos {
    /// `function file:line`, with what is known.
    pub fn render(&self, address: u64) -> String {
        let f = self.function.as_deref().unwrap_or("??");
        match (&self.file, self.line) {
            (Some(file), Some(line)) => format!("{f} {file}:{line}"),
            _ => format!("{f} {address:#x}"),
        }
    }
}

/// Builds a [`Location`] for a stack (innermost first) seen at `seq`.
pub fn location(
    loc: &mut dyn Locator,
    role: &str,
    pid: i32,
    tid: i32,
    seq: u64,
    stack: &[u64],
) -> Location {
    let address = stack.first().copied().unwrap_or(0);
    let top = if address != 0 {
        loc.locate(pid, seq, address)
    } else {
        SourcePos::default()
    };
    let rest = stack
        .iter()
        .skip(1)
        .filter_map(|&a| {
            let p = loc.locate(pid, seq, a);
            (!p.internal).then(|| p.render(a))
        })
        .collect();
    Location {
        role: role.to_string(),
        pid,
        tid,
        function: top.function,
        file: top.file,
        line: top.line,
        address,
        stack: rest,
        seq: Some(seq),
    }
}

/// Fills in a location from a raw call stack (innermost first, as the
/// recorder scanned it: the instruction pointer in a libc wrapper, then
/// return addresses): the first frame with a source file becomes the
/// location, the frames from there on its stack.
pub fn resolve_stack(loc: &mut dyn Locator, l: &mut Location, seq: u64, frames: &[u64]) {
    if frames.is_empty() {
        return;
    }
    let pos: Vec<(u64, SourcePos)> = frames
        .iter()
        .map(|&a| (a, loc.locate(l.pid, seq, a)))
        .collect();
    let top = pos
        .iter()
        .position(|(_, p)| p.file.is_some() && !p.internal)
        .unwrap_or(0);
    let (address, p) = pos[top].clone();
    l.address = address;
    l.function = p.function;
    l.file = p.file;
    l.line = p.line;
    l.stack = pos[top + 1..]
        .iter()
        .filter(|(_, p)| !p.internal)
        .map(|(a, p)| p.render(*a))
        .collect();
}
