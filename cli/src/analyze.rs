//! Runs every analysis over a trace and gathers the findings, sorted by
//! severity then by sequence of appearance.

use crate::locate::TraceLocator;
use crate::progress::Progress;
use anyhow::Result;
use lockstep_analysis::fdbuild::FdModelBuilder;
use lockstep_analysis::fds::FdModel;
use lockstep_analysis::racerun::RaceRun;
use lockstep_analysis::sysaccess::syscall_segment;
use lockstep_analysis::{deadlock, fdleak, fdwait, inversion, lockorder, Finding};
use lockstep_trace::{SyncOp, SyscallFilter, TraceReader};

/// All findings of `trace`.
pub fn findings(trace: &TraceReader) -> Result<Vec<Finding>> {
    findings_with(trace, &Progress::new("", false))
}

/// All findings of `trace`, telling `progress` how far the work is.
pub fn findings_with(trace: &TraceReader, progress: &Progress) -> Result<Vec<Finding>> {
    progress.phase("reading sync ops", count(trace, "sync_rows"));
    let mut ops = Vec::new();
    trace.each_sync_op(None, |o| {
        ops.push(o);
        if ops.len().is_multiple_of(4096) {
            progress.set(ops.len() as u64);
        }
        Ok(())
    })?;
    let spawns = trace.spawns()?;
    let mut loc = TraceLocator::new(trace);
    let mut out = Vec::new();
    let hang = trace.hang()?;
    let model = fd_model_with(trace, progress)?;
    progress.phase("fd leaks", 0);
    let fds = fdleak::fd_findings(&model, hang.as_ref(), &mut loc);
    progress.phase("deadlocks and lock order", 0);
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
    progress.phase("priority inversion", 0);
    out.extend(inversion::findings(&ops, &trace.schedule()?, &mut loc));
    if trace.has_mem()? {
        // Segments come in batches of unknown size: a count, not a bar.
        progress.phase("data races: memory segments", 0);
        out.extend(races(trace, &ops, &spawns, &mut loc, progress)?);
    }
    out.sort_by_key(|f| f.severity);
    Ok(out)
}

/// Data races: the memory segments streamed from the trace, merged by seq
/// with the sync ops, spawns and the buffers of read/write-like syscalls.
fn races(
    trace: &TraceReader,
    ops: &[SyncOp],
    spawns: &[lockstep_trace::Spawn],
    loc: &mut TraceLocator<'_>,
    progress: &Progress,
) -> Result<Vec<Finding>> {
    let filter = SyscallFilter {
        names: ["read", "pread64", "recvfrom", "write", "pwrite64", "sendto"]
            .map(String::from)
            .to_vec(),
        ..SyscallFilter::default()
    };
    let mut buffers = Vec::new();
    trace.each_syscall(&filter, |s| {
        buffers.extend(syscall_segment(&s));
        Ok(())
    })?;
    let mut run = RaceRun::new(ops, spawns, buffers);
    let mut n = 0u64;
    trace.each_mem_segment(|seg| {
        run.segment(&seg);
        n += 1;
        if n.is_multiple_of(256) {
            progress.set(n);
        }
        Ok(())
    })?;
    Ok(run.finish(loc))
}

/// The fd tables of every process, in one pass over the syscalls.
pub fn fd_model(trace: &TraceReader) -> Result<FdModel> {
    fd_model_with(trace, &Progress::new("", false))
}

/// [`fd_model`], counting the syscalls read in `progress`.
fn fd_model_with(trace: &TraceReader, progress: &Progress) -> Result<FdModel> {
    let (spawns, execs, exits) = (trace.spawns()?, trace.execs()?, trace.exits()?);
    progress.phase("fd tables: syscalls", count(trace, "syscall_rows"));
    let mut b = FdModelBuilder::new(&spawns, &execs, &exits);
    let mut n = 0u64;
    trace.each_syscall(&SyscallFilter::default(), |s| {
        b.push(&s);
        n += 1;
        if n.is_multiple_of(1024) {
            progress.set(n);
        }
        Ok(())
    })?;
    Ok(b.finish())
}

/// The rows of `table` (0 when unknown): the total of a progress bar.
fn count(trace: &TraceReader, table: &str) -> u64 {
    trace
        .query_rows(&format!("SELECT count(*) FROM {table}"))
        .ok()
        .and_then(|r| r.first()?.first()?.as_u64())
        .unwrap_or(0)
}
