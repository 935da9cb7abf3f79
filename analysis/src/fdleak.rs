//! File-descriptor findings over the [`FdModel`]:
//!
//! - `fd_leak` (warning): a pipe end, socket or file above fd 2 carried
//!   across an exec without close-on-exec into a program that never uses it;
//! - `bad_fd` (error): a call that failed with EBADF, with the fd's history
//!   (the wrong end of a pipe, closed where, or never opened);
//! - `fd_misuse` (warning): a pipe end installed on the wrong standard fd
//!   (a write end as stdin, a read end as stdout/stderr) that the program
//!   ran with, without an EBADF to show for it (exam question 10C);
//! - and, through [`crate::fdwait`], the blocked-pipe findings of a hang
//!   (`fd_leak` errors naming every holder of a write end, `deadlock`s
//!   through pipe edges).

use crate::fds::{Access, CloseHow, End, FdEntry, FdModel, Origin, Place};
use crate::finding::{Finding, Location, Locator, Severity};
use lockstep_trace::Hang;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// Every fd finding of a trace.
pub fn fd_findings(m: &FdModel, hang: Option<&Hang>, loc: &mut dyn Locator) -> Vec<Finding> {
    let mut out = crate::fdwait::pipe_wait_findings(m, hang, loc);
    // A holder already named by a blocked reader's fd_leak needs no second finding.
    let named: BTreeSet<(i64, i64)> = out
        .iter()
        .flat_map(|f| f.details["holders"].as_array().cloned().unwrap_or_default())
        .filter_map(|h| Some((h["pid"].as_i64()?, h["fd"].as_i64()?)))
        .collect();
    out.extend(exec_leaks(m).into_iter().filter(|f| {
        let key = (
            f.details["pid"].as_i64().unwrap_or(0),
            f.details["fd"].as_i64().unwrap_or(0),
        );
        !named.contains(&key)
    }));
    let (bad, reported) = bad_fds(m);
    out.extend(bad);
    out.extend(misuse(m, &reported));
    // Call sites of the syscalls the locations point at (pipe, dup2, close...).
    for f in &mut out {
        for l in &mut f.locations {
            if let (0, Some(seq)) = (l.address, l.seq) {
                if let Some((entry, frames)) = m.call_stacks.get(&(l.pid, seq)) {
                    crate::finding::resolve_stack(loc, l, *entry, frames);
                }
            }
        }
    }
    // At a hang the recorder killed the tree: what was open then belongs
    // to the hang's explanation, not to a careless exit.
    if hang.is_none() {
        out.extend(open_at_exit(m, &named));
    }
    out
}

/// Files, pipes and sockets a process opened itself and still had open
/// when it ended (besides 0-2), like `valgrind --track-fds`: a note per
/// process. Pipe ends that kept another process waiting are `fd_leak`
/// errors already (`named`) and are not repeated.
fn open_at_exit(m: &FdModel, named: &BTreeSet<(i64, i64)>) -> Vec<Finding> {
    let mut per_pid: BTreeMap<i32, Vec<&FdEntry>> = BTreeMap::new();
    for e in &m.entries {
        let at_exit = e.closed.as_ref().is_some_and(|c| c.how == CloseHow::Exit);
        if at_exit
            && e.fd > 2
            && e.origin == Origin::Created
            && leakable(e)
            && !named.contains(&(e.at.pid as i64, e.fd as i64))
        {
            per_pid.entry(e.at.pid).or_default().push(e);
        }
    }
    per_pid
        .into_iter()
        .map(|(pid, es)| {
            let list: Vec<String> = es.iter().map(|e| format!("fd {} ({})", e.fd, e.label())).collect();
            let exit = es[0].closed.as_ref().map(|c| c.at.clone()).expect("closed at exit");
            let mut locations: Vec<Location> =
                es.iter().map(|e| at(format!("fd {} ({}) opened by {} at seq {}", e.fd, e.label(), e.at.what, e.at.seq), &e.at)).collect();
            locations.push(at(format!("{} exits with them open", m.name_of(pid, exit.seq)), &exit));
            Finding {
                kind: "fd_open_at_exit".into(),
                severity: Severity::Note,
                summary: format!("{} exits with {} still open: {}", m.name_of(pid, exit.seq), if es.len() == 1 { "a descriptor it opened" } else { "descriptors it opened" }, list.join(", ")),
                pids: vec![pid],
                tids: vec![exit.tid],
                locations,
                details: json!({"pid": pid, "fds": es.iter().map(|e| entry_json(m, e)).collect::<Vec<_>>()}),
            }
        })
        .collect()
}

/// A location for a point of the trace (syscalls have no call stacks yet).
pub fn at(role: String, p: &Place) -> Location {
    Location {
        role,
        pid: p.pid,
        tid: p.tid,
        function: None,
        file: None,
        line: None,
        address: 0,
        stack: Vec::new(),
        seq: Some(p.seq),
    }
}

/// `pipe:[N] (created by pipe2() in pid P at seq S)`.
pub fn created_text(m: &FdModel, e: &FdEntry) -> String {
    format!(
        "{} in {} at seq {}",
        e.created.what,
        m.name_of(e.created.pid, e.created.seq),
        e.created.seq
    )
}

fn entry_json(m: &FdModel, e: &FdEntry) -> serde_json::Value {
    json!({
        "pid": m.pids_of_table(e.table, e.at.seq).first().copied().unwrap_or(e.at.pid),
        "fd": e.fd, "object": e.object, "end": e.end, "label": e.label(), "how": e.how(),
        "installed_at": e.at, "created_at": e.created, "closed_at": e.closed,
    })
}

fn leakable(e: &FdEntry) -> bool {
    let Some(o) = e.object.as_deref() else {
        return false;
    };
    if crate::fds::is_internal(o) {
        return false;
    }
    o.starts_with("pipe:")
        || o.starts_with("socket:")
        || (o.starts_with('/')
            && !["/dev/", "/proc/", "/sys/"]
                .iter()
                .any(|p| o.starts_with(p)))
}

/// Fds above 2 kept across an exec that the new program never used.
fn exec_leaks(m: &FdModel) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for x in &m.execs {
        for &id in &x.kept {
            let e = &m.entries[id];
            if e.fd <= 2
                || !leakable(e)
                || !seen.insert(id)
                || e.last_use.is_some_and(|u| u > x.seq)
            {
                continue;
            }
            // Closed on purpose by the new program: it dealt with it.
            let (end_seq, end_how) = match &e.closed {
                Some(c)
                    if matches!(
                        c.how,
                        CloseHow::Close | CloseHow::CloseRange | CloseHow::Replaced
                    ) =>
                {
                    continue
                }
                Some(c) => (Some(c.at.seq), Some(c.how)),
                None => (None, None),
            };
            let prog = m.name_of(x.pid, x.seq);
            let before = m.name_of(x.pid, x.seq - 1);
            let what = e.noun();
            // The other end of the same pipe, closed by this process before the exec.
            let other = m.entries_of(e.object.as_deref().unwrap_or("")).find(|o| {
                o.table == e.table
                    && o.end.is_some()
                    && o.end != e.end
                    && o.closed
                        .as_ref()
                        .is_some_and(|c| c.how == CloseHow::Close && c.at.seq < x.seq)
            });
            let like = other.map(|o| {
                format!(
                    ", as it did with the {} (fd {}) at seq {}",
                    o.end.map(End::name).unwrap_or(""),
                    o.fd,
                    o.closed.as_ref().map_or(0, |c| c.at.seq)
                )
            });
            let fix = match &e.origin {
                Origin::Inherited { fork_seq, .. } => format!(
                    "close it in the child {before} after the fork (seq {fork_seq}), before the exec (seq {}){}",
                    x.seq,
                    like.unwrap_or_default()
                ),
                _ => format!("close it in {before} before the exec (seq {})", x.seq),
            };
            let flag = if e
                .object
                .as_deref()
                .is_some_and(|o| o.starts_with("socket:"))
            {
                "SOCK_CLOEXEC"
            } else {
                "O_CLOEXEC"
            };
            let held = match end_seq {
                Some(s) if end_how == Some(CloseHow::Exit) => {
                    format!("holds it until it exits (seq {s})")
                }
                Some(s) => format!("holds it until its next exec (seq {s})"),
                None => "still holds it at the end of the recording".into(),
            };
            let mut symptom = None;
            if let (Some(o), Some(End::Write), Some(s)) = (&e.object, e.end, end_seq) {
                let others = m.holders_of(o, Some(End::Write), s - 1).len();
                if let Some(r) = m
                    .pipes
                    .get(o)
                    .and_then(|io| io.eof_reads.iter().find(|r| r.seq > s))
                    .filter(|_| others == 1)
                {
                    symptom = Some(format!(
                        "{} got EOF on {o} only after that (seq {})",
                        m.name_of(r.pid, r.seq),
                        r.seq
                    ));
                }
            }
            let mut locations = vec![
                at(
                    format!(
                        "{} creates {o} by {} (fd {} is {what})",
                        m.name_of(e.created.pid, e.created.seq),
                        e.created.what,
                        e.fd,
                        o = e.object.as_deref().unwrap_or("?")
                    ),
                    &e.created,
                ),
                at(format!("{before} gets fd {} ({what}): {}", e.fd, e.how()), &e.at),
                at(
                    format!("exec of {prog} with fd {} still open: it should have been closed before this", e.fd),
                    &Place { pid: x.pid, tid: x.tid, seq: x.seq, what: "exec".into() },
                ),
            ];
            if let Some(c) = &e.closed {
                locations.push(at(
                    format!("fd {} closed only at {}", e.fd, c.at.what),
                    &c.at,
                ));
            }
            out.push(Finding {
                kind: "fd_leak".into(),
                severity: Severity::Warning,
                summary: format!(
                    "fd_leak: {prog} was exec'd with fd {} open ({what}, created by {}) without {flag}; it never uses it and {held}; {fix}, or create it with {flag}{}",
                    e.fd,
                    created_text(m, e),
                    symptom.as_ref().map(|s| format!("; {s}")).unwrap_or_default()
                ),
                pids: vec![x.pid],
                tids: vec![x.tid],
                locations,
                details: json!({
                    "pid": x.pid, "fd": e.fd, "object": e.object, "end": e.end, "exec_seq": x.seq, "argv": x.argv,
                    "entry": entry_json(m, e), "fix": fix, "symptom": symptom,
                }),
            });
        }
    }
    out
}

/// Which direction a syscall moves data in.
fn needs(name: &str) -> Option<End> {
    match name {
        "read" | "readv" | "pread64" | "preadv" | "recvfrom" | "recvmsg" | "getdents64"
        | "getdents" => Some(End::Read),
        "write" | "writev" | "pwrite64" | "pwritev" | "sendto" | "sendmsg" | "ftruncate"
        | "fsync" => Some(End::Write),
        _ => None,
    }
}

/// EBADF failures, once per (pid, fd, call, entry); also returns the (pid,
/// fd, entry) of the open fds they were reported on.
fn bad_fds(m: &FdModel) -> (Vec<Finding>, BTreeSet<(i32, i32, usize)>) {
    let mut groups: BTreeMap<(i32, i32, String, Option<usize>), Vec<&Place>> = BTreeMap::new();
    let mut reported = BTreeSet::new();
    let mut never_open_closes: BTreeMap<i32, usize> = BTreeMap::new();
    for b in m
        .bad_calls
        .iter()
        .filter(|b| b.name == "close" && b.fd >= 0)
    {
        if m.last_entry(b.at.pid, b.fd, b.at.seq).is_none() {
            *never_open_closes.entry(b.at.pid).or_default() += 1;
        }
    }
    let close_all_idiom: BTreeSet<i32> = never_open_closes
        .into_iter()
        .filter(|&(_, n)| n >= 8)
        .map(|(p, _)| p)
        .collect();
    for b in &m.bad_calls {
        if b.fd < 0 {
            continue;
        }
        let (pid, seq) = (b.at.pid, b.at.seq);
        let open = m.entry_at(pid, b.fd, seq);
        let last = open.or_else(|| m.last_entry(pid, b.fd, seq));
        if last
            .and_then(|e| e.object.as_deref())
            .is_some_and(crate::fds::is_internal)
        {
            continue;
        }
        // A second close() of an fd this single-threaded process closed itself
        // is harmless (bash does it); with threads it could close another's fd.
        let closed_here = last
            .and_then(|e| e.closed.as_ref())
            .is_some_and(|c| c.how == CloseHow::Close && c.at.pid == pid);
        // Many close()s of fds that were never open are the close-everything
        // idiom of daemons and shells (`for fd in 3..1024: close(fd)`): no bug.
        let idiom = last.is_none() && close_all_idiom.contains(&pid);
        if b.name == "close" && open.is_none() && (closed_here && b.threads <= 1 || idiom) {
            continue;
        }
        if let Some(e) = open {
            reported.insert((pid, b.fd, e.id));
        }
        groups
            .entry((pid, b.fd, b.name.clone(), last.map(|e| e.id)))
            .or_default()
            .push(&b.at);
    }
    let mut out = Vec::new();
    for ((pid, fd, name, last), calls) in groups {
        let first = calls[0];
        let prog = m.name_of(pid, first.seq);
        let mut locations = vec![at(format!("{prog}: {name}({fd}) fails with EBADF"), first)];
        let open = m.entry_at(pid, fd, first.seq).is_some();
        let why = match last.map(|i| &m.entries[i]) {
            Some(e) if open => {
                locations.push(at(
                    format!("fd {fd} becomes {}: {}", e.noun(), e.how()),
                    &e.at,
                ));
                if e.created != e.at {
                    let o = e.object.as_deref().unwrap_or("it");
                    locations.push(at(
                        format!(
                            "{o} created by {} in {}",
                            e.created.what,
                            m.name_of(e.created.pid, e.created.seq)
                        ),
                        &e.created,
                    ));
                }
                match (e.end, needs(&name), e.access) {
                    (Some(have), Some(want), _) if have != want => format!(
                        "fd {fd} is {} ({}); {} needs the {}",
                        e.noun(),
                        e.how(),
                        if want == End::Write {
                            "writing"
                        } else {
                            "reading"
                        },
                        want.name()
                    ),
                    (None, Some(End::Write), Access::Read) => {
                        format!(
                            "fd {fd} is {} opened read-only; writing needs O_WRONLY or O_RDWR",
                            e.label()
                        )
                    }
                    (None, Some(End::Read), Access::Write) => {
                        format!(
                            "fd {fd} is {} opened write-only; reading needs O_RDONLY or O_RDWR",
                            e.label()
                        )
                    }
                    _ => format!(
                        "fd {fd} is open ({}, {}) but {name}() refuses it",
                        e.label(),
                        e.how()
                    ),
                }
            }
            Some(e) => {
                let c = e.closed.as_ref().expect("not open, so closed");
                locations.push(at(
                    format!("fd {fd} ({}) closed by {}", e.label(), c.at.what),
                    &c.at,
                ));
                let how = match c.how {
                    CloseHow::Exec => "at exec (close-on-exec)".to_string(),
                    CloseHow::Exit => "when its process ended".to_string(),
                    _ => format!("by {}", c.at.what),
                };
                format!(
                    "fd {fd} was {}, closed {how} in pid {} at seq {}",
                    e.noun(),
                    c.at.pid,
                    c.at.seq
                )
            }
            None => match m
                .procs
                .get(&pid)
                .and_then(|p| p.parent.map(|pp| (pp, p.start)))
            {
                Some((pp, s)) => {
                    format!("fd {fd} was never open in pid {pid} (nor inherited from pid {pp} at fork seq {s})")
                }
                None => format!("fd {fd} was never open in pid {pid}"),
            },
        };
        let times = if calls.len() > 1 {
            format!(" ({} times)", calls.len())
        } else {
            String::new()
        };
        out.push(Finding {
            kind: "bad_fd".into(),
            severity: Severity::Error,
            summary: format!("bad_fd: {prog} {name}({fd}) failed with EBADF{times}: {why}"),
            pids: vec![pid],
            tids: vec![first.tid],
            locations,
            details: json!({
                "pid": pid, "fd": fd, "syscall": name, "error": "EBADF", "seq": first.seq, "count": calls.len(),
                "open": open, "explanation": why, "entry": last.map(|i| entry_json(m, &m.entries[i])),
            }),
        });
    }
    (out, reported)
}

/// Pipe ends dup'd onto the wrong standard fd and kept until exec or exit.
fn misuse(m: &FdModel, reported: &BTreeSet<(i32, i32, usize)>) -> Vec<Finding> {
    let mut out = Vec::new();
    for e in &m.entries {
        let wrong = match (e.fd, e.end) {
            (0, Some(End::Write)) => ("stdin", "read end", "stdout (fd 1)"),
            (1, Some(End::Read)) => ("stdout", "write end", "stdin (fd 0)"),
            (2, Some(End::Read)) => ("stderr", "write end", "stdin (fd 0)"),
            _ => continue,
        };
        if !matches!(e.origin, Origin::Dup { .. }) || reported.iter().any(|r| r.2 == e.id) {
            continue;
        }
        let pid = e.at.pid;
        let until = e.closed.as_ref().map_or(u64::MAX, |c| c.at.seq);
        let exec = m
            .execs
            .iter()
            .find(|x| x.pid == pid && x.seq > e.at.seq && x.seq < until);
        let kept = exec.is_some() || e.closed.as_ref().is_none_or(|c| c.how == CloseHow::Exit);
        if !kept {
            continue;
        }
        let seq = exec.map_or(e.at.seq, |x| x.seq);
        let prog = m.name_of(pid, seq);
        let obj = e.object.clone().unwrap_or_default();
        let io = m.pipes.get(&obj).cloned().unwrap_or_default();
        let eof: Vec<String> = io
            .eof_reads
            .iter()
            .map(|r| m.name_of(r.pid, r.seq))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut effect = if io.bytes_written == 0 {
            format!("nothing was ever written to {obj}")
        } else {
            format!("{} bytes went through {obj}", io.bytes_written)
        };
        if !eof.is_empty() {
            effect += &format!(" and {} read EOF from it", eof.join(", "));
        }
        let mut locations = vec![at(
            format!(
                "{prog}: {} (fd {}) becomes {} by {}",
                wrong.0,
                e.fd,
                e.noun(),
                e.at.what
            ),
            &e.at,
        )];
        if let Some(x) = exec {
            locations.push(at(
                format!("exec of {prog} with {} as its {}", e.noun(), wrong.0),
                &Place {
                    pid,
                    tid: x.tid,
                    seq: x.seq,
                    what: "exec".into(),
                },
            ));
        }
        locations.push(at(
            format!(
                "{obj} created by {} in {}",
                e.created.what,
                m.name_of(e.created.pid, e.created.seq)
            ),
            &e.created,
        ));
        out.push(Finding {
            kind: "fd_misuse".into(),
            severity: Severity::Warning,
            summary: format!(
                "fd_misuse: {prog} runs with {} as its {} (fd {}, {} at seq {}); a pipe's {} belongs on {}: {effect}",
                e.noun(),
                wrong.0,
                e.fd,
                e.at.what,
                e.at.seq,
                e.end.map(End::name).unwrap_or_default(),
                wrong.2
            ),
            pids: vec![pid],
            tids: vec![e.at.tid],
            locations,
            details: json!({
                "pid": pid, "fd": e.fd, "object": obj, "end": e.end, "expected_end": wrong.1,
                "bytes_written": io.bytes_written, "eof_readers": eof, "entry": entry_json(m, e),
            }),
        });
    }
    out
}
