//! `lockstep fds`: the file-descriptor table of each process, at the end of
//! the trace (for a process that ended: just before it ended) or at a given
//! sequence number: fd, object (`pipe:[N] write end`, a path, a socket),
//! flags, and the event that put it there.

use crate::locate::TraceLocator;
use crate::render::print_json;
use anyhow::Result;
use lockstep_analysis::fds::{Access, FdEntry, FdModel, ProcFds};
use serde::Serialize;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The trace (default: lockstep-traces/latest).
    trace: Option<PathBuf>,
    /// Only this process.
    #[arg(long)]
    pid: Option<i32>,
    /// The tables as they were at this sequence number.
    #[arg(long)]
    at: Option<u64>,
    /// Print every change of the tables instead (open, inherit, dup, close, cloexec), in order.
    #[arg(long)]
    history: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Change {
    seq: u64,
    pid: i32,
    tid: i32,
    fd: i32,
    /// `open`, `inherit`, `dup`, `close` (with how), `set_cloexec`.
    change: String,
    /// The syscall or event (`dup2(4, 1)`, `fork`, `exec`, `exit`).
    by: String,
    label: String,
}

/// The event stream of the model, for `--history` (filtered by --pid, up to --at).
fn history(m: &FdModel, a: &Args) -> Vec<Change> {
    use lockstep_analysis::fds::FdEventKind;
    m.events
        .iter()
        .filter(|e| a.pid.is_none_or(|p| p == e.pid) && a.at.is_none_or(|s| e.seq <= s))
        .map(|e| {
            let entry = &m.entries[e.entry];
            let (change, by) = match e.kind {
                FdEventKind::Open => ("open".to_string(), entry.at.what.clone()),
                FdEventKind::Inherit => ("inherit".to_string(), entry.at.what.clone()),
                FdEventKind::Dup => ("dup".to_string(), entry.at.what.clone()),
                FdEventKind::Close(how) => {
                    let by = entry
                        .closed
                        .as_ref()
                        .map_or(String::new(), |c| c.at.what.clone());
                    let how = serde_json::to_value(how)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    (
                        if how == "close" {
                            how
                        } else {
                            format!("close ({how})")
                        },
                        by,
                    )
                }
                FdEventKind::SetCloexec(on) => (format!("set_cloexec {on}"), String::new()),
            };
            Change {
                seq: e.seq,
                pid: e.pid,
                tid: e.tid,
                fd: e.fd,
                change,
                by,
                label: entry.label(),
            }
        })
        .collect()
}

#[derive(Serialize)]
struct Fd {
    fd: i32,
    object: Option<String>,
    end: Option<&'static str>,
    /// `pipe:[N] write end`, the path, ...
    label: String,
    cloexec: bool,
    access: Access,
    /// In words: `created by pipe2() at seq 17`, `inherited from pid 10 at fork seq 20`...
    how: String,
    /// The event that put it in this table.
    syscall: String,
    pid: i32,
    tid: i32,
    seq: u64,
    /// Where the open file description was made.
    created: lockstep_analysis::fds::Place,
    origin: lockstep_analysis::fds::Origin,
    /// The call site of the syscall that put it there (`function file:line`), when recorded.
    call_site: Option<String>,
}

#[derive(Serialize)]
struct Table {
    pid: i32,
    parent: Option<i32>,
    command: Vec<String>,
    /// The sequence number the table is shown at.
    at_seq: u64,
    /// `running`, `exited` (shown just before its end) or `not_started`.
    state: &'static str,
    exit_seq: Option<u64>,
    fds: Vec<Fd>,
}

/// `function file:line` of the syscall at (pid, seq), from its recorded stack.
fn call_site(m: &FdModel, loc: &mut TraceLocator<'_>, pid: i32, seq: u64) -> Option<String> {
    let (entry, frames) = m.call_stacks.get(&(pid, seq))?;
    let mut l = lockstep_analysis::Location {
        role: String::new(),
        pid,
        tid: pid,
        function: None,
        file: None,
        line: None,
        address: 0,
        stack: Vec::new(),
        seq: None,
    };
    lockstep_analysis::finding::resolve_stack(loc, &mut l, *entry, frames);
    let f = l.function.unwrap_or_else(|| "??".into());
    Some(match (l.file, l.line) {
        (Some(file), Some(line)) => format!("{f} {file}:{line}"),
        _ => f,
    })
}

fn fd_of(e: FdEntry, site: Option<String>) -> Fd {
    Fd {
        call_site: site,
        fd: e.fd,
        label: e.label(),
        how: e.how(),
        end: e.end.map(|x| x.name()),
        cloexec: e.cloexec,
        access: e.access,
        syscall: e.at.what.clone(),
        pid: e.at.pid,
        tid: e.at.tid,
        seq: e.at.seq,
        object: e.object,
        created: e.created,
        origin: e.origin,
    }
}

/// The sequence number a process's table is shown at (`at`, default the
/// end of the trace; just before its exit when it ended by then) and its
/// state then: `running`, `exited` or `not_started`.
pub fn shown_at(m: &FdModel, p: &ProcFds, at: Option<u64>) -> (u64, &'static str) {
    let want = at.unwrap_or(m.end_seq);
    if want < p.start {
        (want, "not_started")
    } else {
        match p.exit {
            Some(x) if want >= x => (x.saturating_sub(1).max(p.start), "exited"),
            _ => (want, "running"),
        }
    }
}

fn table(m: &FdModel, loc: &mut TraceLocator<'_>, p: &ProcFds, at: Option<u64>) -> Table {
    let (seq, state) = shown_at(m, p, at);
    let fds = if state == "not_started" {
        Vec::new()
    } else {
        m.table_at(p.pid, seq)
            .into_iter()
            .map(|e| {
                let site = call_site(m, loc, e.at.pid, e.at.seq);
                fd_of(e, site)
            })
            .collect()
    };
    let command = m
        .procs
        .get(&p.pid)
        .map(|x| x.argv_at(seq).to_vec())
        .unwrap_or_default();
    Table {
        pid: p.pid,
        parent: p.parent,
        command,
        at_seq: seq,
        state,
        exit_seq: p.exit,
        fds,
    }
}

pub fn run(a: Args) -> Result<u8> {
    let t = super::open_trace(a.trace.clone())?;
    let m = crate::analyze::fd_model(&t)?;
    if let Some(pid) = a.pid {
        anyhow::ensure!(m.procs.contains_key(&pid), "no process {pid} in this trace");
    }
    if a.history {
        let h = history(&m, &a);
        if a.json {
            print_json(&h)?;
        }
        for c in h.iter().filter(|_| !a.json) {
            println!(
                "{:>8} [{}/{}] fd {:<4} {:<16} {:<36} {}",
                c.seq, c.pid, c.tid, c.fd, c.change, c.label, c.by
            );
        }
        return Ok(0);
    }
    let mut loc = TraceLocator::new(&t);
    let tables: Vec<Table> = m
        .procs
        .values()
        .filter(|p| a.pid.is_none_or(|x| x == p.pid))
        .map(|p| table(&m, &mut loc, p, a.at))
        .filter(|t| a.pid.is_some() || t.state != "not_started")
        .collect();
    if a.json {
        print_json(&tables)?;
        return Ok(0);
    }
    for t in &tables {
        let cmd = if t.command.is_empty() {
            "(no exec)".to_string()
        } else {
            t.command.join(" ")
        };
        let when = match t.state {
            "exited" => format!(
                "exited at seq {}, table just before",
                t.exit_seq.unwrap_or(0)
            ),
            "not_started" => "not started yet".to_string(),
            _ => "running".to_string(),
        };
        println!("pid {} ({cmd}) at seq {} ({when})", t.pid, t.at_seq);
        if t.fds.is_empty() {
            println!("    (no open fds)");
            continue;
        }
        println!("    {:>4}  {:<36} {:<8} FROM", "FD", "OBJECT", "FLAGS");
        for f in &t.fds {
            let who = if f.pid == t.pid {
                String::new()
            } else {
                format!(" (pid {})", f.pid)
            };
            let site = f
                .call_site
                .as_ref()
                .map(|s| format!(" at {s}"))
                .unwrap_or_default();
            println!(
                "    {:>4}  {:<36} {:<8} {}{who}{site}",
                f.fd,
                f.label,
                if f.cloexec { "cloexec" } else { "" },
                f.how
            );
        }
    }
    Ok(0)
}
