//! The text report: one sanitizer-style block per finding (headline with
//! severity, kind and summary; each side's role, thread and stack as
//! `#N function file:line` with the source line itself; the locks held;
//! a one-line fix hint), then a one-line summary of the counts.

use super::hint::{hint, locks_held};
use super::source::{display_path, Sources};
use super::style::Style;
use super::Report;
use lockstep_analysis::{Finding, Location};
use std::io::Write;

const RULE: &str = "=================================================================";

/// Writes the report; `trace_line` (for `check`) becomes the last line.
pub fn write(
    out: &mut dyn Write,
    report: &Report<'_>,
    style: Style,
    trace_line: Option<&str>,
) -> std::io::Result<()> {
    let mut sources = Sources::default();
    for f in &report.findings {
        writeln!(out, "{}", style.dim(RULE))?;
        block(out, f, style, &mut sources)?;
    }
    if !report.findings.is_empty() {
        writeln!(out, "{}", style.dim(RULE))?;
    }
    writeln!(out, "{}", style.bold(&report.summary_line()))?;
    if let Some(t) = trace_line {
        writeln!(out, "{t}")?;
    }
    Ok(())
}

/// One finding's block.
fn block(
    out: &mut dyn Write,
    f: &Finding,
    style: Style,
    sources: &mut Sources,
) -> std::io::Result<()> {
    writeln!(
        out,
        "lockstep {}: {} {}",
        style.severity(f.severity),
        style.bold(&f.summary),
        style.dim(&format!("({})", f.kind))
    )?;
    for l in &f.locations {
        location(out, f, l, style, sources)?;
    }
    let held = locks_held(f);
    if !held.is_empty() {
        writeln!(out, "  locks held: {}", held.join("; "))?;
    }
    if let Some(reason) = f.details.get("reason").and_then(|r| r.as_str()) {
        writeln!(out, "  note: {reason}")?;
    }
    writeln!(out, "  hint: {}", style.hint(&hint(f)))?;
    Ok(())
}

/// One side: its role and thread, its stack, the source line of frame #0.
fn location(
    out: &mut dyn Write,
    f: &Finding,
    l: &Location,
    style: Style,
    sources: &mut Sources,
) -> std::io::Result<()> {
    let role = super::threadhint::role(f, l);
    writeln!(out, "  {role} [pid {} tid {}]", l.pid, l.tid)?;
    // Findings about syscalls may have no code address at all.
    if l.address == 0 && l.file.is_none() {
        return Ok(());
    }
    let place = match (&l.file, l.line) {
        (Some(file), Some(line)) => style.place(&format!("{}:{line}", display_path(file))),
        _ => format!("{:#x}", l.address),
    };
    writeln!(
        out,
        "    #0 {} {place}",
        l.function.as_deref().unwrap_or("??")
    )?;
    if let (Some(file), Some(line)) = (&l.file, l.line) {
        if let Some(text) = sources.line(file, line) {
            writeln!(
                out,
                "       {}",
                style.dim(&format!("{line:>5} | {}", text.trim_end()))
            )?;
        }
    }
    for (i, frame) in l.stack.iter().enumerate() {
        writeln!(out, "    #{} {}", i + 1, short_frame(frame))?;
    }
    Ok(())
}

/// `function file:line` with the file shortened like frame #0's.
fn short_frame(frame: &str) -> String {
    match frame.rsplit_once(' ') {
        Some((func, place)) if place.contains(':') => format!("{func} {}", display_path(place)),
        _ => frame.to_string(),
    }
}
