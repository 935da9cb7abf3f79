//! Runs every analysis over a trace and gathers the findings, sorted by
//! severity then by sequence of appearance.

use crate::locate::TraceLocator;
use crate::progress::Progress;
use anyhow::Result;
use lockstep_analysis::fdbuild::FdModelBuilder;
use lockstep_analysis::fds::FdModel;
use lockstep_analysis::racerun::RaceRun;
use lockstep_analysis::sysaccess;
use lockstep_analysis::{deadlock, fdleak, fdwait, inversion, lockorder, Finding};
use lockstep_trace::{DataKind, SyncOp, SyscallFilter, TraceReader};

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
        names: sysaccess::SYSCALLS.iter().map(|n| n.to_string()).collect(),
        ..SyscallFilter::default()
    };
    let mut buffers = Vec::new();
    let mut vectored = Vec::new();
    trace.each_syscall(&filter, |s| {
        if sysaccess::needs_data(&s.name) {
            vectored.push(s);
        } else {
            buffers.extend(sysaccess::syscall_segment(&s));
        }
        Ok(())
    })?;
    if !vectored.is_empty() && trace.has_syscall_data() {
        // Where the kernel's bytes went (not the bytes): (entry, kind, addr, len).
        let names = vectored_names();
        let rows = trace.query_rows(&format!(
            "SELECT d.entry_seq, d.kind, d.addr, length(d.data) FROM syscall_data_rows d \
             JOIN syscall_rows s ON s.entry_seq = d.entry_seq \
             WHERE s.name IN ({names}) ORDER BY d.entry_seq, d.idx"
        ))?;
        let mut regions: std::collections::HashMap<u64, Vec<(DataKind, u64, u64)>> =
            std::collections::HashMap::new();
        for r in rows {
            let (Some(entry), Some(kind), Some(addr), Some(len)) = (
                r[0].as_i64(),
                r[1].as_str().and_then(DataKind::parse),
                r[2].as_i64(),
                r[3].as_i64(),
            ) else {
                continue;
            };
            regions
                .entry(entry as u64)
                .or_default()
                .push((kind, addr as u64, len as u64));
        }
        for s in &vectored {
            if let Some(r) = regions.get(&s.entry.seq.0) {
                buffers.extend(sysaccess::syscall_data_segment(s, r));
            }
        }
    }
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

/// `'readv','preadv',...`: the vectored calls, quoted for SQL.
fn vectored_names() -> String {
    sysaccess::SYSCALLS
        .iter()
        .filter(|n| sysaccess::needs_data(n))
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(",")
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
