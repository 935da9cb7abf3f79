//! The fd-table model and the fd analyses on synthetic syscall traces.

use lockstep_analysis::fdbuilder::{SysTrace, O_CLOEXEC};
use lockstep_analysis::fdleak::fd_findings;
use lockstep_analysis::fds::{CloseHow, End, FdEventKind, FdModel, Origin};
use lockstep_analysis::fdwait::explains_hang;
use lockstep_analysis::finding::NoLocator;
use lockstep_analysis::Finding;
use lockstep_trace::{Hang, Seq, Stamp};
use serde_json::json;

const P: i32 = 100;
const C1: i32 = 101;
const C2: i32 = 102;

fn fds(m: &FdModel, pid: i32, seq: u64) -> Vec<i32> {
    m.table_at(pid, seq).iter().map(|e| e.fd).collect()
}

fn findings(t: &SysTrace, hang: Option<&Hang>) -> Vec<Finding> {
    fd_findings(&t.model(), hang, &mut NoLocator)
}

fn kinds(f: &[Finding]) -> Vec<String> {
    let mut k: Vec<String> = f
        .iter()
        .map(|f| format!("{}:{:?}", f.kind, f.severity).to_lowercase())
        .collect();
    k.sort();
    k
}

#[test]
fn fork_copies_the_table_and_closes_stay_private() {
    let mut t = SysTrace::new(P);
    let pipe = t.pipe(P, 3, 4, 0);
    let fork = t.fork(P, C1);
    t.close(C1, 3);
    let s = t.seq();
    let m = t.model();
    assert_eq!(fds(&m, P, s), [0, 1, 2, 3, 4]);
    assert_eq!(fds(&m, C1, s), [0, 1, 2, 4]);
    let w = m.entry_at(C1, 4, s).unwrap();
    assert_eq!(w.object.as_deref(), Some(pipe.as_str()));
    assert_eq!(w.end, Some(End::Write));
    assert!(
        matches!(w.origin, Origin::Inherited { from_pid: P, fork_seq, .. } if fork_seq == fork)
    );
    assert_eq!(w.created.pid, P, "the chain starts at the parent's pipe()");
    assert_eq!(w.created.what, "pipe2()");
    // Before the fork the child did not exist.
    assert!(m.table_at(C1, fork - 1).is_empty());
}

#[test]
fn clone_files_shares_one_table_until_exec() {
    let mut t = SysTrace::new(P);
    t.clone_files(P, C1);
    t.open(C1, "/tmp/a", 0, 3);
    t.close(P, 0);
    let s = t.seq();
    t.exec(C1, &["cat"]);
    t.open(P, "/tmp/b", 0, 4);
    let end = t.seq();
    let m = t.model();
    assert_eq!(
        fds(&m, P, s),
        [1, 2, 3],
        "the child's open and the parent's close are seen by both"
    );
    assert_eq!(fds(&m, C1, s), [1, 2, 3]);
    assert_eq!(fds(&m, P, end), [1, 2, 3, 4]);
    assert_eq!(fds(&m, C1, end), [1, 2, 3], "exec unshared the table");
}

#[test]
fn exec_drops_close_on_exec_fds() {
    let mut t = SysTrace::new(P);
    t.open(P, "/etc/passwd", O_CLOEXEC, 3);
    t.pipe(P, 4, 5, 0);
    t.pipe(P, 6, 7, O_CLOEXEC);
    let set = t.fcntl(P, 4, 2, 1, 0); // F_SETFD FD_CLOEXEC
    let before = t.seq();
    let exec = t.exec(P, &["sleep", "1"]);
    let m = t.model();
    assert_eq!(fds(&m, P, before), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(fds(&m, P, exec), [0, 1, 2, 5]);
    let e = m.last_entry(P, 4, exec).unwrap();
    assert!(!e.cloexec_at(set) && e.cloexec_at(set + 1));
    assert_eq!(e.closed.as_ref().unwrap().how, CloseHow::Exec);
    assert_eq!(m.execs[0].kept.len(), 4);
}

#[test]
fn dup2_replaces_and_dups_keep_the_object() {
    let mut t = SysTrace::new(P);
    t.open(P, "/tmp/out", 1, 3);
    let d = t.dup2(P, 3, 1);
    t.dup3(P, 3, 8, O_CLOEXEC);
    t.fcntl(P, 3, 1030, 10, 10); // F_DUPFD_CLOEXEC
    t.dup(P, 3, 4);
    t.dup2(P, 4, 4); // no-op
    let s = t.seq();
    let m = t.model();
    let old = m.last_entry(P, 1, d - 1).unwrap();
    assert_eq!(old.closed.as_ref().unwrap().how, CloseHow::Replaced);
    let one = m.entry_at(P, 1, s).unwrap();
    assert_eq!(one.object.as_deref(), Some("/tmp/out"));
    assert!(matches!(
        one.origin,
        Origin::Dup {
            from_fd: 3,
            from_entry: Some(_)
        }
    ));
    assert_eq!(one.at.what, "dup2(3, 1)");
    let cloexec: Vec<(i32, bool)> = m.table_at(P, s).iter().map(|e| (e.fd, e.cloexec)).collect();
    assert_eq!(
        cloexec,
        [
            (0, false),
            (1, false),
            (2, false),
            (3, false),
            (4, false),
            (8, true),
            (10, true)
        ]
    );
    assert_eq!(m.holders_of("/tmp/out", None, s).len(), 5);
}

#[test]
fn close_range_closes_or_marks_cloexec() {
    let mut t = SysTrace::new(P);
    for fd in 3..7 {
        t.open(P, &format!("/tmp/f{fd}"), 0, fd);
    }
    t.close_range(P, 5, u32::MAX, 0);
    let a = t.seq();
    t.close_range(P, 3, 3, 4); // CLOSE_RANGE_CLOEXEC
    let b = t.exec(P, &["true"]);
    let m = t.model();
    assert_eq!(fds(&m, P, a), [0, 1, 2, 3, 4]);
    assert_eq!(fds(&m, P, b), [0, 1, 2, 4]);
    assert_eq!(
        m.last_entry(P, 5, a).unwrap().closed.as_ref().unwrap().how,
        CloseHow::CloseRange
    );
}

#[test]
fn pipe_ends_share_the_object_and_holders_follow_forks() {
    let mut t = SysTrace::new(P);
    let pipe = t.pipe(P, 3, 4, 0);
    t.fork(P, C1);
    t.fork(P, C2);
    let all = t.seq();
    t.close(C1, 4);
    t.close(C2, 4);
    t.close(P, 4);
    let none = t.seq();
    let m = t.model();
    let r = m.entry_at(P, 3, all).unwrap();
    let w = m.entry_at(P, 4, all).unwrap();
    assert_eq!(r.object, w.object);
    assert_eq!((r.end, w.end), (Some(End::Read), Some(End::Write)));
    assert_eq!(w.label(), format!("{pipe} write end"));
    let holders: Vec<(i32, i32)> = m
        .holders_of(&pipe, Some(End::Write), all)
        .iter()
        .map(|h| (h.0, h.1))
        .collect();
    assert_eq!(holders, [(P, 4), (C1, 4), (C2, 4)]);
    assert!(m.holders_of(&pipe, Some(End::Write), none).is_empty());
    assert_eq!(m.holders_of(&pipe, Some(End::Read), none).len(), 3);
    assert_eq!(m.holders_of(&pipe, None, all).len(), 6);
}

#[test]
fn process_exit_closes_its_table_and_events_are_in_order() {
    let mut t = SysTrace::new(P);
    t.pipe(P, 3, 4, 0);
    t.fork(P, C1);
    let exit = t.exit(C1);
    let m = t.model();
    let e = m.last_entry(C1, 4, exit).unwrap();
    assert_eq!(e.closed.as_ref().unwrap().how, CloseHow::Exit);
    assert!(m.table_at(C1, exit).is_empty());
    assert!(m.events.windows(2).all(|w| w[0].seq <= w[1].seq));
    let c1: Vec<FdEventKind> = m
        .events
        .iter()
        .filter(|e| e.pid == C1)
        .map(|e| e.kind)
        .collect();
    assert_eq!(c1.iter().filter(|k| **k == FdEventKind::Inherit).count(), 5);
    assert_eq!(
        c1.iter()
            .filter(|k| **k == FdEventKind::Close(CloseHow::Exit))
            .count(),
        5
    );
}

#[test]
fn effects_apply_at_syscall_exit_and_threads_share_the_table() {
    let mut t = SysTrace::new(P);
    t.thread(P, 150);
    t.open(P, "/tmp/x", 0, 3);
    // Thread P's close(3) enters first but returns after thread 150's dup2(3, 5).
    let close = t.call(
        P,
        P,
        "close",
        [3, 0, 0, 0, 0, 0],
        json!({"fd": 3}),
        Some(0),
        None,
        json!({}),
    );
    let dup = t.call(
        P,
        150,
        "dup2",
        [3, 5, 0, 0, 0, 0],
        json!({}),
        Some(5),
        None,
        json!({}),
    );
    let (ci, di) = (t.syscalls.len() - 2, t.syscalls.len() - 1);
    t.syscalls[ci].exit = Some(Stamp {
        seq: Seq(dup + 2),
        ts_ns: 0,
    });
    t.syscalls[di].entry = Stamp {
        seq: Seq(close + 1),
        ts_ns: 0,
    };
    t.syscalls[di].exit = Some(Stamp {
        seq: Seq(dup),
        ts_ns: 0,
    });
    let m = t.model();
    assert_eq!(fds(&m, P, dup + 2), [0, 1, 2, 5]);
    let five = m.entry_at(P, 5, dup + 2).unwrap();
    assert_eq!(five.object.as_deref(), Some("/tmp/x"));
    assert_eq!(
        (five.at.pid, five.at.tid),
        (P, 150),
        "a thread's dup2 changes its process's table"
    );
}

/// The exam's pipeline skeleton: pipe, fork echo (dup2 w→1), fork wc (dup2 r→0).
fn pipeline(t: &mut SysTrace, parent_closes: bool, wc_closes_w: bool) -> String {
    let pipe = t.pipe(P, 3, 4, 0);
    t.fork(P, C1);
    t.dup2(C1, 4, 1);
    t.close(C1, 3);
    t.close(C1, 4);
    t.exec(C1, &["echo", "foo"]);
    t.io(C1, "write", 1, 4);
    t.exit(C1);
    if parent_closes {
        t.close(P, 4);
    }
    t.fork(P, C2);
    t.dup2(C2, 3, 0);
    t.close(C2, 3);
    if wc_closes_w && !parent_closes {
        t.close(C2, 4);
    }
    t.exec(C2, &["wc", "-c"]);
    t.io(C2, "read", 0, 4);
    pipe
}

#[test]
fn correct_pipeline_has_no_findings() {
    let mut t = SysTrace::new(P);
    pipeline(&mut t, true, true);
    t.io(C2, "read", 0, 0);
    t.close(P, 3);
    t.exit(C2);
    t.exit(P);
    assert!(findings(&t, None).is_empty(), "{:#?}", findings(&t, None));
}

#[test]
fn parent_holding_the_write_end_is_a_leak_and_a_deadlock() {
    let mut t = SysTrace::new(P);
    let pipe = pipeline(&mut t, false, true);
    let read = t.block(C2, "read", json!({"fd": 0, "count": 16384}));
    let wait = t.block(P, "wait4", json!({"pid": C2, "options": "0"}));
    let hang = t.hang(&[(P, wait, "do_wait"), (C2, read, "anon_pipe_read")]);
    let f = findings(&t, Some(&hang));
    assert_eq!(kinds(&f), ["deadlock:error", "fd_leak:error"]);
    let leak = f.iter().find(|f| f.kind == "fd_leak").unwrap();
    assert_eq!(leak.details["object"], pipe);
    let holders = leak.details["holders"].as_array().unwrap();
    assert_eq!(holders.len(), 1);
    assert_eq!(
        (holders[0]["pid"].as_i64(), holders[0]["fd"].as_i64()),
        (Some(P as i64), Some(4))
    );
    assert_eq!(holders[0]["never_writes"], true);
    assert!(holders[0]["state"].as_str().unwrap().contains("wait4"));
    assert!(
        leak.summary
            .contains("close fd 4 in pid 100 after the fork"),
        "{}",
        leak.summary
    );
    assert!(leak
        .locations
        .iter()
        .any(|l| l.pid == C1 && l.role.contains("closed its copy")));
    let dl = f.iter().find(|f| f.kind == "deadlock").unwrap();
    assert_eq!(dl.pids, [P, C2]);
    assert!(explains_hang(&f, &hang));
    // Without a hang snapshot (the recording was cut short), the calls that
    // never returned tell the same story.
    assert_eq!(
        kinds(&findings(&t, None)),
        ["deadlock:error", "fd_leak:error"]
    );
}

#[test]
fn reader_holding_its_own_write_end_waits_for_itself() {
    // The parent closes its write end after the fork, but wc keeps its copy.
    let mut t2 = SysTrace::new(P);
    t2.pipe(P, 3, 4, 0);
    t2.fork(P, C2);
    t2.close(P, 4);
    t2.dup2(C2, 3, 0);
    t2.close(C2, 3);
    t2.exec(C2, &["wc", "-c"]);
    let read = t2.block(C2, "read", json!({"fd": 0}));
    let wait = t2.block(P, "wait4", json!({"pid": -1}));
    let hang = t2.hang(&[(P, wait, "do_wait"), (C2, read, "pipe_read")]);
    let f = findings(&t2, Some(&hang));
    assert_eq!(kinds(&f), ["deadlock:error", "fd_leak:error"]);
    let dl = f.iter().find(|f| f.kind == "deadlock").unwrap();
    assert_eq!(
        dl.details["cycle"].as_array().unwrap().len(),
        1,
        "a cycle of one: the reader holds the write end"
    );
    assert_eq!(
        dl.pids,
        [C2, P],
        "the parent waits for the deadlocked reader"
    );
    let leak = f.iter().find(|f| f.kind == "fd_leak").unwrap();
    assert!(
        leak.summary.contains("the reader itself"),
        "{}",
        leak.summary
    );
    assert_eq!(leak.pids, [C2], "the reader is also the only holder");
    assert_eq!(leak.details["holders"][0]["pid"], C2);
    assert_eq!(leak.details["holders"][0]["fd"], 4);
    assert!(explains_hang(&f, &hang));
}

#[test]
fn writer_on_a_full_pipe_whose_reader_waits_for_it() {
    let mut t = SysTrace::new(P);
    let pipe = t.pipe(P, 3, 4, 0);
    t.fork(P, C1);
    t.dup2(C1, 4, 1);
    t.close(C1, 3);
    t.close(C1, 4);
    t.exec(C1, &["head", "-c", "100000"]);
    t.io(C1, "write", 1, 65536);
    let write = t.block(C1, "write", json!({"fd": 1, "count": 4096}));
    let wait = t.block(P, "wait4", json!({"pid": C1}));
    let hang = t.hang(&[(P, wait, "do_wait"), (C1, write, "pipe_write")]);
    let f = findings(&t, Some(&hang));
    assert_eq!(kinds(&f), ["deadlock:error"]);
    assert_eq!(f[0].pids, [P, C1]);
    assert_eq!(f[0].details["objects"], json!([pipe]));
    assert!(
        f[0].summary.contains("only reads after the writer exits"),
        "{}",
        f[0].summary
    );
}

#[test]
fn pipe_end_leaked_across_exec() {
    let mut t = SysTrace::new(P);
    let pipe = t.pipe(P, 3, 4, 0);
    t.fork(P, C1);
    t.close(C1, 3);
    let exec = t.exec(C1, &["sleep", "0.1"]);
    t.close(P, 4);
    t.exit(C1);
    t.io(P, "read", 3, 0);
    let f = findings(&t, None);
    assert_eq!(kinds(&f), ["fd_leak:warning"]);
    assert_eq!(
        (f[0].pids.clone(), f[0].details["fd"].as_i64()),
        (vec![C1], Some(4))
    );
    assert_eq!(f[0].details["object"], pipe);
    assert_eq!(f[0].details["exec_seq"], exec);
    assert!(
        f[0].summary.contains("as it did with the read end (fd 3)"),
        "{}",
        f[0].summary
    );
    assert!(f[0].summary.contains("got EOF"), "{}", f[0].summary);

    // Used by the new program (a deliberate hand-over), or close-on-exec: no leak.
    let mut t = SysTrace::new(P);
    t.pipe(P, 3, 4, 0);
    t.fork(P, C1);
    t.exec(C1, &["writer"]);
    t.io(C1, "write", 4, 10);
    t.close(P, 3);
    t.close(P, 4);
    t.pipe(P, 5, 6, O_CLOEXEC);
    t.fork(P, C2);
    t.exec(C2, &["true"]);
    t.open(P, "/dev/shm/lockstep-area-1-2", 2, 7);
    t.fork(P, 103);
    t.exec(103, &["true"]);
    let f = findings(&t, None);
    assert_eq!(
        kinds(&f),
        ["fd_leak:warning"],
        "only the read end the writer never used: {f:#?}"
    );
    assert_eq!(
        (f[0].pids.clone(), f[0].details["fd"].as_i64()),
        (vec![C1], Some(3))
    );
}

#[test]
fn ebadf_explains_the_fd() {
    let mut t = SysTrace::new(P);
    let pipe = t.pipe(P, 3, 4, 0);
    t.fork(P, C1);
    t.dup2(C1, 3, 1);
    t.close(C1, 3);
    t.close(C1, 4);
    t.exec(C1, &["echo", "foo"]);
    t.ebadf(C1, "write", 1);
    t.ebadf(C1, "write", 1);
    t.ebadf(P, "close", 7);
    t.ebadf(P, "close", -1);
    t.close(P, 3);
    t.ebadf(P, "close", 3); // a double close, single-threaded: harmless
    t.ebadf(P, "read", 3);
    let f = findings(&t, None);
    assert_eq!(kinds(&f), ["bad_fd:error", "bad_fd:error", "bad_fd:error"]);
    let echo = f.iter().find(|f| f.pids == [C1]).unwrap();
    assert_eq!(echo.details["count"], 2);
    assert!(
        echo.summary
            .contains(&format!("fd 1 is the read end of {pipe}")),
        "{}",
        echo.summary
    );
    assert!(
        echo.summary.contains("writing needs the write end"),
        "{}",
        echo.summary
    );
    let never = f.iter().find(|f| f.details["fd"] == 7).unwrap();
    assert!(
        never.summary.contains("never open in pid 100"),
        "{}",
        never.summary
    );
    let closed = f.iter().find(|f| f.details["fd"] == 3).unwrap();
    assert!(
        closed.summary.contains("closed by close(3)"),
        "{}",
        closed.summary
    );

    // With a second thread, a double close may close another thread's new fd.
    let mut t = SysTrace::new(P);
    t.thread(P, 150);
    t.open(P, "/tmp/x", 0, 3);
    t.close(P, 3);
    t.ebadf(P, "close", 3);
    assert_eq!(kinds(&findings(&t, None)), ["bad_fd:error"]);
}

#[test]
fn write_end_as_stdin_is_a_misuse() {
    let mut t = SysTrace::new(P);
    let pipe = t.pipe(P, 3, 4, 0);
    t.fork(P, C1);
    t.dup2(C1, 4, 0);
    t.close(C1, 3);
    t.close(C1, 4);
    t.exec(C1, &["echo", "foo"]);
    t.fork(P, C2);
    t.dup2(C2, 3, 0);
    t.close(C2, 3);
    t.close(C2, 4);
    t.exec(C2, &["wc", "-c"]);
    t.close(P, 3);
    t.close(P, 4);
    t.exit(C1);
    t.io(C2, "read", 0, 0);
    let f = findings(&t, None);
    assert_eq!(kinds(&f), ["fd_misuse:warning"]);
    assert_eq!(f[0].pids, [C1]);
    assert_eq!(f[0].details["object"], pipe);
    assert_eq!(f[0].details["bytes_written"], 0);
    assert_eq!(f[0].details["eof_readers"], json!(["wc (pid 102)"]));

    // The same install with an EBADF to show for it is a bad_fd, not also a misuse.
    let mut t = SysTrace::new(P);
    t.pipe(P, 3, 4, 0);
    t.fork(P, C2);
    t.dup2(C2, 4, 0);
    t.exec(C2, &["wc", "-c"]);
    t.ebadf(C2, "read", 0);
    let f = findings(&t, None);
    let f: Vec<&Finding> = f.iter().filter(|f| f.kind != "fd_leak").collect();
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].kind, "bad_fd");
}
