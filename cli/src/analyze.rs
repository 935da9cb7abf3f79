//! Runs every analysis over a trace and gathers the findings, sorted by
//! severity then by sequence of appearance.

use crate::locate::TraceLocator;
use anyhow::Result;
use lockstep_analysis::fdbuild::FdModelBuilder;
use lockstep_analysis::fds::FdModel;
use lockstep_analysis::{deadlock, fdleak, fdwait, lockorder, Finding};
use lockstep_trace::{SyscallFilter, TraceReader};

/// All findings of `trace`.
pub fn findings(trace: &TraceReader) -> Result<Vec<Finding>> {
    let ops = trace.sync_ops()?;
    let spawns = trace.spawns()?;
    let mut loc = TraceLocator::new(trace);
    let mut out = Vec::new();
    let hang = trace.hang()?;
    let fds = fdleak::fd_findings(&fd_model(trace)?, hang.as_ref(), &mut loc);
    if let Some(hang) = &hang {
        let mut h = deadlock::hang_findings(&ops, hang, &mut loc);
        // A hang that the pipe analysis explains needs no generic `hang` finding.
        if fdwait::explains_hang(&fds, hang) {
            h.retain(|f| f.kind != "hang");
        }
        out.extend(h);
    }
    out.extend(lockorder::findings(&ops, &spawns, &mut loc));
    out.extend(deadlock::lock_misuse(&ops, &mut loc));
    out.extend(fds);
    out.sort_by_key(|f| f.severity);
    Ok(out)
}

/// The fd tables of every process, in one pass over the syscalls.
pub fn fd_model(trace: &TraceReader) -> Result<FdModel> {
    let (spawns, execs, exits) = (trace.spawns()?, trace.execs()?, trace.exits()?);
    let mut b = FdModelBuilder::new(&spawns, &execs, &exits);
    trace.each_syscall(&SyscallFilter::default(), |s| {
        b.push(&s);
        Ok(())
    })?;
    Ok(b.finish())
}
