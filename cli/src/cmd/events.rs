//! `lockstep events`: the trace as strace-like lines, in the global order.

use crate::render::{exit_status, signal_name};
use anyhow::Result;
use lockstep_trace::{Pid, Seq, Syscall, SyscallFilter, SyscallOutcome, Tid, TraceReader};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The trace (default: lockstep-traces/latest).
    trace: Option<PathBuf>,
    /// Only this process.
    #[arg(long)]
    pid: Option<i32>,
    /// Only this thread.
    #[arg(long)]
    tid: Option<i32>,
    /// Only these syscalls (repeat or separate with commas); hides process events.
    #[arg(long = "syscall", value_delimiter = ',')]
    syscalls: Vec<String>,
    /// Prefix every line with its sequence number.
    #[arg(long)]
    seq: bool,
    /// Print JSON lines (one object per event).
    #[arg(long)]
    json: bool,
}

/// A non-syscall event, rendered.
struct Lifecycle {
    seq: Seq,
    pid: Pid,
    tid: Tid,
    text: String,
    json: serde_json::Value,
}

fn lifecycle(t: &TraceReader) -> Result<Vec<Lifecycle>> {
    let mut v = Vec::new();
    for s in t.spawns()? {
        let text = match s.creator_tid {
            Some(c) => format!("+++ started ({} by {c}) +++", s.kind.as_str()),
            None => "+++ started +++".to_string(),
        };
        v.push(Lifecycle {
            seq: s.at.seq,
            pid: s.pid,
            tid: s.tid,
            text,
            json: json!({"kind": "spawn", "event": s}),
        });
    }
    for x in t.execs()? {
        let text = format!("+++ exec {} {} +++", x.exe, serde_json::to_string(&x.argv)?);
        v.push(Lifecycle {
            seq: x.at.seq,
            pid: x.pid,
            tid: Tid(x.pid.0),
            text,
            json: json!({"kind": "exec", "event": x}),
        });
    }
    for s in t.signals()? {
        let mut text = format!(
            "--- {} {{si_code={}",
            signal_name(s.signo),
            lockstep_recorder::decode::names::si_code(s.signo, s.code)
        );
        if let Some(p) = s.sender_pid {
            text.push_str(&format!(", si_pid={p}"));
        }
        if let Some(a) = s.fault_addr {
            text.push_str(&format!(", si_addr={a:#x}"));
        }
        text.push_str("} ---");
        v.push(Lifecycle {
            seq: s.at.seq,
            pid: s.pid,
            tid: s.tid,
            text,
            json: json!({"kind": "signal", "event": s}),
        });
    }
    for e in t.exits()? {
        let text = format!(
            "+++ {}{} +++",
            exit_status(&e.status),
            if e.process_exit { "" } else { " (thread)" }
        );
        v.push(Lifecycle {
            seq: e.at.seq,
            pid: e.pid,
            tid: e.tid,
            text,
            json: json!({"kind": "exit", "event": e}),
        });
    }
    for r in t.tsc_reads()? {
        let aux = r.aux.map(|a| format!(", aux={a}")).unwrap_or_default();
        v.push(Lifecycle {
            seq: r.at.seq,
            pid: r.pid,
            tid: r.tid,
            text: format!(
                "--- {} = {:#x}{aux} (trapped) ---",
                r.instruction(),
                r.value
            ),
            json: json!({"kind": "rdtsc", "event": r}),
        });
    }
    let mut loc = crate::locate::TraceLocator::new(t);
    t.each_sync_op(None, |op| {
        use lockstep_analysis::finding::Locator;
        let ra = op.stack.first().copied().unwrap_or(0);
        let pos = if ra != 0 {
            loc.locate(op.pid.0, op.at.seq.0, ra)
        } else {
            Default::default()
        };
        let site = match (&pos.file, pos.line) {
            (Some(f), Some(l)) => format!(
                "{}:{l}",
                std::path::Path::new(f)
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ),
            _ => pos.render(ra),
        };
        let arg = if op.arg != 0 {
            format!(", {:#x}", op.arg)
        } else {
            String::new()
        };
        let text = format!(
            "{}({:#x}{arg}) {} = {}  <{site}>",
            op.op, op.obj, op.phase, op.ret
        );
        let json = json!({"kind": "sync", "event": op,
            "site": {"function": pos.function, "file": pos.file, "line": pos.line}});
        v.push(Lifecycle {
            seq: op.at.seq,
            pid: op.pid,
            tid: op.tid,
            text,
            json,
        });
        Ok(())
    })?;
    v.sort_by_key(|l| l.seq);
    Ok(v)
}

/// `name(args) = ret` for one syscall.
pub fn syscall_line(s: &Syscall) -> String {
    let ret = match (s.outcome, s.ret) {
        (_, Some(r)) => match &s.error {
            Some(e) => format!("-1 {e}"),
            None if matches!(s.name.as_str(), "mmap" | "brk" | "mremap" | "shmat") => {
                format!("{r:#x}")
            }
            None => r.to_string(),
        },
        (SyscallOutcome::ThreadExited, None) => "? <thread exited>".into(),
        _ => "? <unfinished>".into(),
    };
    format!("{}({}) = {}", s.name, s.text, ret)
}

pub fn run(a: Args) -> Result<u8> {
    let t = super::open_trace(a.trace)?;
    let keep =
        |pid: Pid, tid: Tid| a.pid.is_none_or(|p| p == pid.0) && a.tid.is_none_or(|x| x == tid.0);
    let mut life: Vec<Lifecycle> = if a.syscalls.is_empty() {
        lifecycle(&t)?
            .into_iter()
            .filter(|l| keep(l.pid, l.tid))
            .collect()
    } else {
        Vec::new()
    };
    life.reverse();
    let filter = SyscallFilter {
        pid: a.pid.map(Pid),
        tid: a.tid.map(Tid),
        names: a.syscalls.clone(),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let emit_life = |l: Lifecycle, out: &mut dyn Write| -> std::io::Result<()> {
        if a.json {
            let mut j = l.json;
            j["seq"] = json!(l.seq.0);
            writeln!(out, "{j}")
        } else if a.seq {
            writeln!(out, "{:>8} [{}/{}] {}", l.seq.0, l.pid, l.tid, l.text)
        } else {
            writeln!(out, "[{}/{}] {}", l.pid, l.tid, l.text)
        }
    };
    t.each_syscall(&filter, |s| {
        let io = |e: std::io::Error| lockstep_trace::TraceError::Io {
            path: "stdout".into(),
            source: e,
        };
        while life.last().is_some_and(|l| l.seq < s.entry.seq) {
            emit_life(life.pop().expect("non-empty"), &mut out).map_err(io)?;
        }
        if a.json {
            let mut j = serde_json::to_value(&s).expect("syscall serializes");
            j["kind"] = json!("syscall");
            j["seq"] = json!(s.entry.seq.0);
            writeln!(out, "{j}").map_err(io)?;
        } else if a.seq {
            writeln!(
                out,
                "{:>8} [{}/{}] {}",
                s.entry.seq.0,
                s.pid,
                s.tid,
                syscall_line(&s)
            )
            .map_err(io)?;
        } else {
            writeln!(out, "[{}/{}] {}", s.pid, s.tid, syscall_line(&s)).map_err(io)?;
        }
        Ok(())
    })
    .or_else(|e| match e {
        // A closed pipe (`| head`) is not an error.
        lockstep_trace::TraceError::Io { ref source, .. }
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(())
        }
        e => Err(e),
    })?;
    while let Some(l) = life.pop() {
        if emit_life(l, &mut out).is_err() {
            break;
        }
    }
    let _ = out.flush();
    Ok(0)
}
