//! Runs every analysis over a trace and gathers the findings, sorted by
//! severity then by sequence of appearance.

use crate::locate::TraceLocator;
use anyhow::Result;
use lockstep_analysis::{deadlock, lockorder, Finding};
use lockstep_trace::TraceReader;

/// All findings of `trace`.
pub fn findings(trace: &TraceReader) -> Result<Vec<Finding>> {
    let ops = trace.sync_ops()?;
    let spawns = trace.spawns()?;
    let mut loc = TraceLocator::new(trace);
    let mut out = Vec::new();
    if let Some(hang) = trace.hang()? {
        out.extend(deadlock::hang_findings(&ops, &hang, &mut loc));
    }
    out.extend(lockorder::findings(&ops, &spawns, &mut loc));
    out.extend(deadlock::lock_misuse(&ops, &mut loc));
    out.sort_by_key(|f| f.severity);
    Ok(out)
}
