//! Reports built from the findings of every analysis: the model all
//! formats share (findings sorted by severity and deduplicated, the counts,
//! the one-line summary) and one module per format (`text`, `sarif`; HTML
//! lives in `crate::html`). JSON is written by `cmd::report` exactly as the
//! contract says and does not go through this model.

pub mod hint;
pub mod sarif;
pub mod source;
pub mod style;
pub mod text;
pub mod threadhint;

use lockstep_analysis::{Finding, Severity};
use std::collections::HashSet;
use std::path::Path;

/// What a report is about: the trace, the recorded command and its findings.
pub struct Report<'a> {
    pub trace: &'a Path,
    pub command: &'a [String],
    /// Sorted by severity (errors first), duplicates removed, in order of
    /// appearance otherwise.
    pub findings: Vec<&'a Finding>,
}

/// What makes two findings the same for a reader: kind, summary and the
/// places they point at.
fn key(f: &Finding) -> String {
    let mut k = format!("{}\u{1}{}", f.kind, f.summary);
    for l in &f.locations {
        k.push_str(&format!(
            "\u{1}{}\u{2}{:?}\u{2}{:?}\u{2}{:?}",
            l.role, l.function, l.file, l.line
        ));
    }
    k
}

impl<'a> Report<'a> {
    pub fn new(trace: &'a Path, command: &'a [String], all: &'a [Finding]) -> Report<'a> {
        let mut seen = HashSet::new();
        let mut findings: Vec<&Finding> = all.iter().filter(|f| seen.insert(key(f))).collect();
        findings.sort_by_key(|f| f.severity);
        Report {
            trace,
            command,
            findings,
        }
    }

    /// How many findings of `severity`.
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// `1 error, 2 warnings, 0 notes`.
    pub fn counts(&self) -> String {
        let n = |c: usize, word: &str| format!("{c} {word}{}", if c == 1 { "" } else { "s" });
        format!(
            "{}, {}, {}",
            n(self.count(Severity::Error), "error"),
            n(self.count(Severity::Warning), "warning"),
            n(self.count(Severity::Note), "note")
        )
    }

    /// The report's last line: `lockstep: 2 findings: 1 error, 1 warning,
    /// 0 notes in `./prog` (trace t.db)`.
    pub fn summary_line(&self) -> String {
        let n = self.findings.len();
        format!(
            "lockstep: {n} finding{}: {} in `{}` (trace {})",
            if n == 1 { "" } else { "s" },
            self.counts(),
            self.command.join(" "),
            self.trace.display()
        )
    }

    /// The finding kinds present, in order of first appearance.
    pub fn kinds(&self) -> Vec<&'a str> {
        let mut kinds: Vec<&str> = Vec::new();
        for f in &self.findings {
            if !kinds.contains(&f.kind.as_str()) {
                kinds.push(&f.kind);
            }
        }
        kinds
    }
}

/// The line that names the trace of a `check`, so it can be replayed:
/// `trace: PATH  (lockstep replay PATH)`.
pub fn trace_line(trace: &Path) -> String {
    let p = trace.display();
    format!("trace: {p}  (lockstep replay {p})")
}

/// The severity as a lowercase word (`error`, `warning`, `note`), as in JSON.
pub fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_analysis::Location;

    fn finding(kind: &str, severity: Severity, line: u32) -> Finding {
        Finding {
            kind: kind.into(),
            severity,
            summary: format!("{kind} at {line}"),
            pids: vec![1],
            tids: vec![1],
            locations: vec![Location {
                role: "here".into(),
                pid: 1,
                tid: 1,
                function: Some("main".into()),
                file: Some("a.c".into()),
                line: Some(line),
                address: 0x10,
                stack: Vec::new(),
                seq: None,
            }],
            details: serde_json::json!({}),
        }
    }

    #[test]
    fn findings_are_sorted_by_severity_and_deduplicated() {
        let all = vec![
            finding("fd_open_at_exit", Severity::Note, 3),
            finding("lock_order_inversion", Severity::Warning, 2),
            finding("deadlock", Severity::Error, 1),
            finding("lock_order_inversion", Severity::Warning, 2),
            finding("lock_order_inversion", Severity::Warning, 5),
        ];
        let cmd = vec!["./prog".to_string()];
        let r = Report::new(Path::new("t.db"), &cmd, &all);
        let kinds: Vec<(&str, u32)> = r
            .findings
            .iter()
            .map(|f| (f.kind.as_str(), f.locations[0].line.unwrap()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("deadlock", 1),
                ("lock_order_inversion", 2),
                ("lock_order_inversion", 5),
                ("fd_open_at_exit", 3)
            ]
        );
        assert_eq!(r.counts(), "1 error, 2 warnings, 1 note");
        assert_eq!(
            r.summary_line(),
            "lockstep: 4 findings: 1 error, 2 warnings, 1 note in `./prog` (trace t.db)"
        );
        assert_eq!(
            r.kinds(),
            ["deadlock", "lock_order_inversion", "fd_open_at_exit"]
        );
    }
}
