//! `lockstep export TRACE --format perfetto -o FILE`: the trace as Chrome
//! trace-event JSON, which the Perfetto UI (ui.perfetto.dev, "Open trace
//! file") and chrome://tracing load. One track per thread grouped by
//! process; syscalls as slices; lock-held and blocked spans from the sync
//! ops; sync ops, signals, execs and exits as instant events; flow arrows
//! from each unlock to the next acquisition of the same lock by another
//! thread (lock hand-offs) and from each pipe write to the read that got
//! its data; findings as global instant events with their locations.
//! When the trace has the kernel's schedule, each thread gets a second
//! track beside it, "CPU state": running (on which CPU), runnable
//! (waiting for a CPU) and blocked slices from `sched_switch`; each
//! priority inversion is an async slice over H's wait on the process.

use crate::locate::TraceLocator;
use anyhow::{Context, Result};
use lockstep_analysis::finding::Locator;
use lockstep_analysis::schedule::{State, Timeline};
use lockstep_trace::{SyscallFilter, TraceReader};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The trace (default: lockstep-traces/latest).
    trace: Option<PathBuf>,
    /// Output format.
    #[arg(long, default_value = "perfetto", value_parser = ["perfetto"])]
    format: String,
    /// The file to write.
    #[arg(short = 'o', long = "output", value_name = "FILE", required = true)]
    output: PathBuf,
}

/// Microseconds since the trace's first event (trace-event time unit).
struct Clock {
    origin: u64,
}

impl Clock {
    fn us(&self, ns: u64) -> f64 {
        ns.saturating_sub(self.origin) as f64 / 1000.0
    }
}

pub fn run(a: Args) -> Result<u8> {
    // Fail on an unwritable output before reading anything.
    let mut out = std::fs::File::create(&a.output)
        .with_context(|| format!("{}: cannot write", a.output.display()))?;
    let t = super::open_trace(a.trace)?;
    let events = build(&t)?;
    let doc = json!({"traceEvents": events, "displayTimeUnit": "ms",
        "otherData": {"generator": "lockstep", "command": t.command()?}});
    serde_json::to_writer(&mut out, &doc)?;
    writeln!(out)?;
    eprintln!(
        "lockstep: wrote {} trace events to {} (open it in ui.perfetto.dev or chrome://tracing)",
        doc["traceEvents"].as_array().map(|v| v.len()).unwrap_or(0),
        a.output.display()
    );
    Ok(0)
}

fn build(t: &TraceReader) -> Result<Vec<Value>> {
    let (mut ev, clock, end_ns) = timeline(t)?;
    finding_instants(t, &clock, end_ns, &mut ev)?;
    Ok(ev)
}

/// The trace as trace events without the findings (what the HTML
/// report's timeline draws), with the clock and the end of the recording.
pub fn timeline_events(t: &TraceReader) -> Result<Vec<Value>> {
    Ok(timeline(t)?.0)
}

/// The time (CLOCK_MONOTONIC ns) the events' `ts` count from.
pub fn origin_ns(t: &TraceReader) -> Result<u64> {
    Ok(t.spawns()?.first().map(|s| s.at.ts_ns).unwrap_or(0))
}

fn timeline(t: &TraceReader) -> Result<(Vec<Value>, Clock, u64)> {
    let spawns = t.spawns()?;
    let origin = origin_ns(t)?;
    let clock = Clock { origin };
    let mut ev: Vec<Value> = Vec::new();
    // Process and thread names.
    let procs = t.processes()?;
    for p in &procs {
        let name = p
            .argv
            .as_ref()
            .map(|a| a.join(" "))
            .or_else(|| p.exe.clone())
            .unwrap_or_else(|| format!("pid {}", p.pid));
        ev.push(json!({"ph": "M", "name": "process_name", "pid": p.pid.0, "tid": p.pid.0, "args": {"name": name}}));
    }
    for s in &spawns {
        ev.push(json!({"ph": "M", "name": "thread_name", "pid": s.pid.0, "tid": s.tid.0,
            "args": {"name": format!("{} {}", if s.tid.0 == s.pid.0 { "main" } else { "thread" }, s.tid.0)}}));
    }
    for x in t.execs()? {
        ev.push(
            json!({"ph": "i", "s": "t", "name": format!("exec {}", x.exe), "cat": "process",
            "pid": x.pid.0, "tid": x.pid.0, "ts": clock.us(x.at.ts_ns), "args": {"argv": x.argv}}),
        );
    }
    for e in t.exits()? {
        ev.push(
            json!({"ph": "i", "s": "t", "name": format!("exit {:?}", e.status), "cat": "process",
            "pid": e.pid.0, "tid": e.tid.0, "ts": clock.us(e.at.ts_ns)}),
        );
    }
    for s in t.signals()? {
        ev.push(json!({"ph": "i", "s": "t", "name": format!("signal {}", crate::render::signal_name(s.signo)), "cat": "signal",
            "pid": s.pid.0, "tid": s.tid.0, "ts": clock.us(s.at.ts_ns)}));
    }
    syscall_slices(t, &clock, &mut ev)?;
    let end_ns = t
        .exits()?
        .iter()
        .map(|e| e.at.ts_ns)
        .max()
        .unwrap_or(origin);
    sync_spans(t, &clock, end_ns, &mut ev)?;
    sched_states(t, &spawns, &clock, &mut ev)?;
    Ok((ev, clock, end_ns))
}

/// The pseudo-tid of thread `tid`'s CPU-state track (above any real tid:
/// pid_max is at most 2^22).
pub const SCHED_TRACK: i32 = 10_000_000;

/// The CPU-state track of every thread, from the kernel's switches.
fn sched_states(
    t: &TraceReader,
    spawns: &[lockstep_trace::Spawn],
    clock: &Clock,
    ev: &mut Vec<Value>,
) -> Result<()> {
    let sched = t.schedule()?;
    if sched.switches.is_empty() {
        return Ok(());
    }
    let tl = Timeline::build(&sched);
    for (i, s) in spawns.iter().enumerate() {
        let (pid, tid) = (s.pid.0, s.tid.0);
        let track = tid + SCHED_TRACK;
        ev.push(
            json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": track,
            "args": {"name": format!("{tid}: CPU state")}}),
        );
        ev.push(json!({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid, "args": {"sort_index": 2 * i}}));
        ev.push(json!({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": track, "args": {"sort_index": 2 * i + 1}}));
        for sp in tl.spans(tid) {
            let (name, cname) = match sp.state {
                State::Running { cpu } => (format!("running (cpu {cpu})"), "thread_state_running"),
                State::Runnable => ("runnable".to_string(), "thread_state_runnable"),
                State::Blocked => ("blocked".to_string(), "thread_state_sleeping"),
            };
            ev.push(
                json!({"ph": "X", "name": name, "cat": "sched", "cname": cname,
                "pid": pid, "tid": track, "ts": clock.us(sp.start),
                "dur": (sp.end - sp.start) as f64 / 1000.0, "args": {"tid": tid}}),
            );
        }
    }
    Ok(())
}

/// Syscalls as complete slices; pipe writes → reads as flows.
fn syscall_slices(t: &TraceReader, clock: &Clock, ev: &mut Vec<Value>) -> Result<()> {
    // Per pipe object: queue of (write flow id) waiting for a read.
    let mut objects: HashMap<(i32, i64), String> = HashMap::new();
    let mut pending_writes: HashMap<String, Vec<u64>> = HashMap::new();
    let mut flow_id = 1_000_000u64;
    t.each_syscall(&SyscallFilter::default(), |s| {
        let end = s.exit.map(|x| x.ts_ns).unwrap_or(s.entry.ts_ns);
        ev.push(json!({"ph": "X", "name": s.name, "cat": "syscall", "pid": s.pid.0, "tid": s.tid.0,
            "ts": clock.us(s.entry.ts_ns), "dur": (clock.us(end) - clock.us(s.entry.ts_ns)).max(0.001),
            "args": {"args": s.text, "ret": s.ret, "error": s.error, "seq": s.entry.seq.0}}));
        // Remember what each fd is, from the recorder's annotations.
        if let Some(objs) = s.result.get("objects").and_then(|o| o.as_array()) {
            let fds = s.result.get("pipefd").or_else(|| s.result.get("sv")).and_then(|f| f.as_array());
            for (fd, o) in fds.into_iter().flatten().zip(objs) {
                if let (Some(fd), Some(o)) = (fd.as_i64(), o.as_str()) {
                    objects.insert((s.pid.0, fd), o.to_string());
                }
            }
        }
        if let (Some(o), Some(r)) = (s.result.get("object").and_then(|o| o.as_str()), s.ret) {
            objects.insert((s.pid.0, r), o.to_string());
        }
        let fd = s.decoded.get("fd").and_then(|f| f.as_i64());
        let obj = fd.and_then(|fd| objects.get(&(s.pid.0, fd))).filter(|o| o.starts_with("pipe:")).cloned();
        if let (Some(obj), Some(ret)) = (obj, s.ret) {
            if ret > 0 && s.name == "write" {
                flow_id += 1;
                ev.push(json!({"ph": "s", "id": flow_id, "name": "pipe", "cat": "pipe", "pid": s.pid.0, "tid": s.tid.0, "ts": clock.us(s.entry.ts_ns)}));
                pending_writes.entry(obj).or_default().push(flow_id);
            } else if ret > 0 && s.name == "read" {
                if let Some(q) = pending_writes.get_mut(&obj) {
                    if !q.is_empty() {
                        let id = q.remove(0);
                        ev.push(json!({"ph": "f", "bp": "e", "id": id, "name": "pipe", "cat": "pipe", "pid": s.pid.0, "tid": s.tid.0, "ts": clock.us(end)}));
                    }
                }
            }
        }
        Ok(())
    })?;
    Ok(())
}

/// Lock-held and blocked spans, sync instants and hand-off flows.
fn sync_spans(t: &TraceReader, clock: &Clock, end_ns: u64, ev: &mut Vec<Value>) -> Result<()> {
    let mut loc = TraceLocator::new(t);
    // (tid, obj) → (start ts, name) of an open held / blocked span.
    let mut held: HashMap<(i32, u64), (i32, f64)> = HashMap::new();
    let mut blocked: HashMap<(i32, u64), (i32, f64)> = HashMap::new();
    // obj → (flow id, releasing tid) of the last release.
    let mut last_release: HashMap<u64, (u64, i32)> = HashMap::new();
    let mut names: HashMap<(i32, u64), String> = HashMap::new();
    let mut flow_id = 0u64;
    let ops = t.sync_ops()?;
    for op in &ops {
        let ts = clock.us(op.at.ts_ns);
        let (pid, tid) = (op.pid.0, op.tid.0);
        let name = names
            .entry((pid, op.obj))
            .or_insert_with(|| {
                loc.object_name(pid, op.obj)
                    .unwrap_or_else(|| format!("{:#x}", op.obj))
            })
            .clone();
        let lockish = op.op.contains("mutex_") && !op.op.contains("attr")
            || op.op.contains("rwlock_")
            || op.op.contains("spin_");
        ev.push(json!({"ph": "i", "s": "t", "name": format!("{} {}", op.op, op.phase), "cat": "sync",
            "pid": pid, "tid": tid, "ts": ts, "args": {"object": name, "ret": op.ret, "seq": op.at.seq.0}}));
        match op.phase.as_str() {
            "request" => {
                blocked.insert((tid, op.obj), (pid, ts));
            }
            "acquired" | "failed" => {
                if let Some((_, start)) = blocked.remove(&(tid, op.obj)) {
                    ev.push(
                        json!({"ph": "X", "name": format!("blocked on {name}"), "cat": "blocked",
                        "pid": pid, "tid": tid, "ts": start, "dur": (ts - start).max(0.001)}),
                    );
                }
                if op.phase == "acquired" && lockish {
                    held.entry((tid, op.obj)).or_insert((pid, ts));
                    if let Some((id, from)) = last_release.remove(&op.obj) {
                        if from != tid {
                            ev.push(json!({"ph": "f", "bp": "e", "id": id, "name": "hand-off", "cat": "lock", "pid": pid, "tid": tid, "ts": ts}));
                        }
                    }
                }
            }
            "released" if lockish => {
                if let Some((_, start)) = held.remove(&(tid, op.obj)) {
                    ev.push(
                        json!({"ph": "X", "name": format!("holds {name}"), "cat": "lock",
                        "pid": pid, "tid": tid, "ts": start, "dur": (ts - start).max(0.001)}),
                    );
                }
                flow_id += 1;
                ev.push(json!({"ph": "s", "id": flow_id, "name": "hand-off", "cat": "lock", "pid": pid, "tid": tid, "ts": ts}));
                last_release.insert(op.obj, (flow_id, tid));
            }
            _ => {}
        }
    }
    // What was still held or awaited when the recording ended (a deadlock).
    let end = clock.us(end_ns);
    for (what, open) in [("holds", held), ("blocked on", blocked)] {
        for ((tid, obj), (pid, start)) in open {
            let name = names
                .get(&(pid, obj))
                .cloned()
                .unwrap_or_else(|| format!("{obj:#x}"));
            ev.push(json!({"ph": "X", "name": format!("{what} {name} (until the end)"), "cat": if what == "holds" { "lock" } else { "blocked" },
                "pid": pid, "tid": tid, "ts": start, "dur": (end - start).max(0.001)}));
        }
    }
    Ok(())
}

/// The findings of every analysis as instants on the first thread they
/// name, at the end of the recording (when they are known to be true).
fn finding_instants(
    t: &TraceReader,
    clock: &Clock,
    end_ns: u64,
    ev: &mut Vec<Value>,
) -> Result<()> {
    for (n, f) in crate::analyze::findings(t)?.into_iter().enumerate() {
        let pid = f.pids.first().copied().unwrap_or(0);
        let tid = f.tids.first().copied().unwrap_or(pid);
        if let (Some(start), Some(wait)) = (
            f.details["wait_start_ns"].as_u64(),
            f.details["wait_ns"].as_u64(),
        ) {
            // The inversion itself: an async slice over H's wait.
            let name = format!("priority inversion ({:?})", f.severity);
            let common =
                json!({"cat": "priority_inversion", "id": n, "name": name, "pid": pid, "tid": tid});
            let mut b = common.clone();
            b["ph"] = "b".into();
            b["ts"] = clock.us(start).into();
            b["args"] = json!({"summary": f.summary, "details": f.details});
            let mut e = common;
            e["ph"] = "e".into();
            e["ts"] = clock.us(start + wait).into();
            ev.push(b);
            ev.push(e);
        }
        ev.push(json!({"ph": "i", "s": "p", "name": format!("{} ({:?})", f.kind, f.severity), "cat": "finding",
            "pid": pid, "tid": tid, "ts": clock.us(end_ns),
            "args": {"summary": f.summary, "locations": f.locations, "details": f.details}}));
    }
    Ok(())
}
