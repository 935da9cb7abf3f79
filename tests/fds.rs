//! File descriptors across processes, end to end: the exam's pipeline
//! fixtures (question 10) and real shell pipelines are recorded with
//! `lockstep check`, and the tests assert the fd findings (kinds,
//! severities, the processes and fds they name, the pipe) and what
//! `lockstep fds --json` says each process held.

mod common;

use common::*;
use serde_json::Value;
use std::path::PathBuf;

const FD_KINDS: [&str; 4] = ["fd_leak", "bad_fd", "fd_misuse", "deadlock"];

/// A recorded run: its scratch directory and its findings.
struct Checked {
    dir: PathBuf,
    findings: Vec<Value>,
}

impl Checked {
    /// `lockstep fds --json` of the run's trace (extra args: --pid, --at).
    fn fds(&self, extra: &[&str]) -> Vec<Value> {
        let mut a = vec!["fds", "t.db"];
        a.extend_from_slice(extra);
        json(&self.dir, &a).as_array().unwrap().clone()
    }

    /// The pid of the process whose last exec ran `prog` (argv[0]'s basename).
    fn pid_of(&self, prog: &str) -> i64 {
        let ps = json(&self.dir, &["ps", "t.db"]);
        let hits: Vec<i64> = ps
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["argv"][0]
                    .as_str()
                    .is_some_and(|a| a.rsplit('/').next() == Some(prog))
            })
            .map(|p| p["pid"].as_i64().unwrap())
            .collect();
        assert_eq!(hits.len(), 1, "one process runs {prog}: {ps}");
        hits[0]
    }

    fn root(&self) -> i64 {
        let ps = json(&self.dir, &["ps", "t.db"]);
        ps.as_array()
            .unwrap()
            .iter()
            .find(|p| p["ppid"].is_null())
            .unwrap()["pid"]
            .as_i64()
            .unwrap()
    }

    fn kinds(&self) -> Vec<String> {
        let mut k: Vec<String> = self
            .findings
            .iter()
            .map(|f| {
                format!(
                    "{}:{}",
                    f["kind"].as_str().unwrap(),
                    f["severity"].as_str().unwrap()
                )
            })
            .collect();
        k.sort();
        k
    }

    fn one(&self, kind: &str) -> &Value {
        let hits: Vec<&Value> = self.findings.iter().filter(|f| f["kind"] == kind).collect();
        assert_eq!(
            hits.len(),
            1,
            "one {kind}: {}",
            serde_json::to_string_pretty(&self.findings).unwrap()
        );
        hits[0]
    }
}

/// `lockstep check --hang-timeout 1 --format json` on a program.
fn check(name: &str, argv: &[&str], hangs: bool) -> Checked {
    let dir = scratch(&format!("fds-{name}"));
    let (run, findings) = check_json(&dir, argv);
    assert_eq!(
        run.code,
        Some(if findings.is_empty() { 0 } else { 1 }),
        "{name}: {run:?}"
    );
    assert_eq!(run.stderr.contains("hung"), hangs, "{name}: {}", run.stderr);
    Checked { dir, findings }
}

fn fixture_check(name: &str, hangs: bool) -> Checked {
    let bin = fixture(name);
    check(name, &[bin.to_str().unwrap()], hangs)
}

fn has_line(f: &Value, line: u64) -> bool {
    f["locations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["line"].as_u64() == Some(line))
}

/// The fds of `pid` in a `lockstep fds --json` listing.
fn table_of(tables: &[Value], pid: i64) -> Vec<Value> {
    tables
        .iter()
        .find(|t| t["pid"] == pid)
        .unwrap_or_else(|| panic!("no table for {pid}"))["fds"]
        .as_array()
        .unwrap()
        .clone()
}

fn pipe_ends(fds: &[Value]) -> Vec<(i64, String)> {
    fds.iter()
        .filter(|f| f["object"].as_str().is_some_and(|o| o.starts_with("pipe:")))
        .map(|f| {
            (
                f["fd"].as_i64().unwrap(),
                f["end"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn correct_pipelines_have_no_fd_findings() {
    let c = fixture_check("pipe_correct", false);
    assert!(c.findings.is_empty(), "{:#?}", c.findings);
    for t in c.fds(&[]) {
        let ends = pipe_ends(t["fds"].as_array().unwrap());
        assert!(
            ends.is_empty(),
            "pid {} still has pipe ends at exit: {ends:?}",
            t["pid"]
        );
    }
    let c = fixture_check("pipe_echo", false);
    assert!(c.findings.is_empty(), "{:#?}", c.findings);
    for (name, fx) in [
        ("fork_exec", "fork_exec"),
        ("pthread_condvar", "pthread_condvar"),
    ] {
        let c = fixture_check(fx, false);
        let fd: Vec<&Value> = c
            .findings
            .iter()
            .filter(|f| FD_KINDS.contains(&f["kind"].as_str().unwrap()))
            .collect();
        assert!(fd.is_empty(), "{name}: {fd:#?}");
    }
}

#[test]
fn real_shell_pipelines_are_clean() {
    for (name, argv) in [
        ("sh-echo-wc", ["sh", "-c", "echo foo | wc -c"]),
        ("sh-three", ["sh", "-c", "seq 100000 | sort -n | tail -1"]),
        (
            "bash-three",
            ["bash", "-c", "cat /etc/passwd | grep root | wc -l"],
        ),
    ] {
        let c = check(name, &argv, false);
        assert!(c.findings.is_empty(), "{name}: {:#?}", c.findings);
    }
}

#[test]
fn parent_keeping_the_write_end_open_is_named() {
    let c = fixture_check("pipe_leak_hang", true);
    assert_eq!(c.kinds(), ["deadlock:error", "fd_leak:error"]);
    let (parent, wc) = (c.root(), c.pid_of("wc"));
    let leak = c.one("fd_leak");
    assert_eq!(leak["details"]["reader"]["pid"], wc);
    assert_eq!(leak["details"]["reader"]["fd"], 0);
    let holders = leak["details"]["holders"].as_array().unwrap();
    assert_eq!(holders.len(), 1, "{holders:#?}");
    assert_eq!(
        (holders[0]["pid"].as_i64(), holders[0]["fd"].as_i64()),
        (Some(parent), Some(4))
    );
    assert_eq!(holders[0]["never_writes"], true);
    assert!(holders[0]["state"].as_str().unwrap().contains("wait4"));
    assert!(leak["summary"]
        .as_str()
        .unwrap()
        .contains(&format!("close fd 4 in pid {parent} after the fork")));
    assert!(
        has_line(leak, marker_line("pipe_leak_hang", "WAIT-C2")),
        "{leak:#}"
    );
    let pipe = leak["details"]["object"].as_str().unwrap().to_string();
    assert!(pipe.starts_with("pipe:["));

    let dl = c.one("deadlock");
    let mut pids: Vec<i64> = dl["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap())
        .collect();
    pids.sort();
    assert_eq!(pids, [parent.min(wc), parent.max(wc)]);
    assert_eq!(dl["details"]["objects"][0], pipe.as_str());

    // At the hang the parent still holds both ends; wc only the read end, as stdin.
    let at = leak["details"]["at_seq"].as_u64().unwrap().to_string();
    let tables = c.fds(&["--at", &at]);
    let p = table_of(&tables, parent);
    assert_eq!(
        pipe_ends(&p),
        [(3, "read end".into()), (4, "write end".into())]
    );
    assert!(p
        .iter()
        .any(|f| f["fd"] == 4 && f["object"] == pipe.as_str() && f["syscall"] == "pipe2()"));
    assert_eq!(pipe_ends(&table_of(&tables, wc)), [(0, "read end".into())]);
    let only = c.fds(&["--pid", &parent.to_string(), "--at", &at]);
    assert_eq!(only.len(), 1);
}

#[test]
fn writer_blocked_on_a_full_pipe_is_a_deadlock() {
    let c = fixture_check("pipe_64k_deadlock", true);
    assert_eq!(c.kinds(), ["deadlock:error"]);
    let (parent, head) = (c.root(), c.pid_of("head"));
    let dl = c.one("deadlock");
    let cycle = dl["details"]["cycle"].as_array().unwrap();
    let edge = |pid: i64| {
        cycle.iter().find(|s| s["pid"] == pid).unwrap()["edge"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(edge(head), "pipe_write");
    assert_eq!(edge(parent), "wait");
    assert!(dl["summary"]
        .as_str()
        .unwrap()
        .contains("only reads after the writer exits"));
    assert!(
        has_line(dl, marker_line("pipe_64k_deadlock", "WAIT-C1-EARLY")),
        "{dl:#}"
    );
}

#[test]
fn swapped_pipe_ends_give_two_bad_fds() {
    let c = fixture_check("pipe_ebadf", false);
    assert_eq!(c.kinds(), ["bad_fd:error", "bad_fd:error"]);
    let (echo, wc) = (c.pid_of("echo"), c.pid_of("wc"));
    let by = |pid: i64| {
        c.findings
            .iter()
            .find(|f| f["pids"][0] == pid)
            .unwrap_or_else(|| panic!("no bad_fd for {pid}"))
    };
    let e = by(echo);
    assert_eq!(
        (
            e["details"]["fd"].as_i64(),
            e["details"]["syscall"].as_str()
        ),
        (Some(1), Some("write"))
    );
    assert!(
        e["summary"]
            .as_str()
            .unwrap()
            .contains("writing needs the write end"),
        "{e:#}"
    );
    let w = by(wc);
    assert_eq!(
        (
            w["details"]["fd"].as_i64(),
            w["details"]["syscall"].as_str()
        ),
        (Some(0), Some("read"))
    );
    assert!(
        w["summary"]
            .as_str()
            .unwrap()
            .contains("reading needs the read end"),
        "{w:#}"
    );
}

#[test]
fn write_end_on_stdin_is_a_misuse() {
    let c = fixture_check("pipe_wrong_output", false);
    assert_eq!(c.kinds(), ["fd_misuse:warning"]);
    let echo = c.pid_of("echo");
    let f = c.one("fd_misuse");
    assert_eq!(f["pids"][0], echo);
    assert_eq!(f["details"]["fd"], 0);
    assert_eq!(f["details"]["end"], "write");
    assert_eq!(f["details"]["bytes_written"], 0);
    let wc = c.pid_of("wc");
    assert_eq!(f["details"]["eof_readers"][0], format!("wc (pid {wc})"));
}

#[test]
fn pipe_end_carried_across_exec_is_a_leak() {
    let c = fixture_check("fd_leak_exec", false);
    assert_eq!(c.kinds(), ["fd_leak:warning"]);
    let (parent, sleep) = (c.root(), c.pid_of("sleep"));
    let f = c.one("fd_leak");
    assert_eq!(f["pids"][0], sleep);
    assert_eq!(f["details"]["fd"], 4);
    assert_eq!(f["details"]["end"], "write");
    assert_eq!(f["details"]["entry"]["created_at"]["pid"], parent);
    let pipe = f["details"]["object"].as_str().unwrap();
    // Right after the exec, sleep holds the write end as fd 4 (inherited, not cloexec).
    let at = f["details"]["exec_seq"].as_u64().unwrap().to_string();
    let s = table_of(&c.fds(&["--at", &at]), sleep);
    let w = s.iter().find(|x| x["fd"] == 4).expect("fd 4 in sleep");
    assert_eq!(
        (
            w["object"].as_str(),
            w["end"].as_str(),
            w["cloexec"].as_bool()
        ),
        (Some(pipe), Some("write end"), Some(false))
    );
    assert_eq!(w["origin"]["kind"], "inherited");
    assert_eq!(w["origin"]["from_pid"], parent);
}

#[test]
fn descriptors_left_open_at_exit_are_a_note() {
    let c = fixture_check("fd_open_at_exit", false);
    assert_eq!(c.kinds(), ["fd_open_at_exit:note"]);
    let f = c.one("fd_open_at_exit");
    let fds: Vec<i64> = f["details"]["fds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["fd"].as_i64().unwrap())
        .collect();
    assert_eq!(fds, vec![3, 4, 5]);
    assert_eq!(f["pids"][0].as_i64(), Some(c.root()));
    // A hang's open pipe ends are explained by the hang, not reported again.
    let bin = fixture("pipe_leak_hang");
    let c = check(
        "pipe_leak_hang-no-exit-note",
        &[bin.to_str().unwrap()],
        true,
    );
    assert!(!c.kinds().iter().any(|k| k.starts_with("fd_open_at_exit")));
}

#[test]
fn a_small_shell_running_a_three_stage_pipeline_is_clean() {
    let c = fixture_check("pipe_three_stage", false);
    assert!(c.findings.is_empty(), "{:#?}", c.findings);
    // Each of the three children exec'd with exactly fds 0-2.
    let ps = json(&c.dir, &["ps", "t.db"]);
    let children: Vec<i64> = ps
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !p["ppid"].is_null())
        .map(|p| p["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(children.len(), 3, "{ps}");
}

#[test]
fn closing_every_fd_at_start_is_not_a_bad_fd() {
    let c = fixture_check("close_all_fds", false);
    assert!(c.findings.is_empty(), "{:#?}", c.findings);
}

#[test]
fn fd_syscalls_are_named_by_their_call_sites() {
    let bin = fixture("pipe_leak_hang");
    let c = check("pipe_leak_hang-call-sites", &[bin.to_str().unwrap()], true);
    let f = c.one("fd_leak");
    // Where the pipe was made, and where each child closed its copy of the
    // write end: the fixture's own lines, found through the syscalls' stacks.
    for marker in ["PIPE", "CLOSE-C1-W", "CLOSE-C2-W"] {
        let line = marker_line("pipe_leak_hang", marker);
        assert!(
            has_line(f, line),
            "{marker} (line {line}) in {}",
            serde_json::to_string_pretty(f).unwrap()
        );
    }
    let db = rusqlite::Connection::open(c.dir.join("t.db")).unwrap();
    let with_stack: i64 = db
        .query_row(
            "SELECT count(*) FROM syscalls WHERE name IN ('pipe', 'pipe2') AND stack IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(with_stack >= 1, "pipe() rows carry their call stack");
    // `lockstep fds` names the call site that put each fd there.
    let wc = table_of(&c.fds(&[]), c.pid_of("wc"));
    let stdin = wc.iter().find(|f| f["fd"] == 0).unwrap();
    let line = marker_line("pipe_leak_hang", "DUP2-C2-STDIN");
    assert!(
        stdin["call_site"]
            .as_str()
            .is_some_and(|s| s.ends_with(&format!("pipe_leak_hang.c:{line}"))),
        "{stdin}"
    );
}

#[test]
fn descriptors_passed_with_scm_rights_join_the_receivers_table() {
    let c = fixture_check("scm_rights", false);
    assert!(c.findings.is_empty(), "{:#?}", c.findings);
    let root = c.root();
    let history = json(
        &c.dir,
        &["fds", "t.db", "--history", "--pid", &root.to_string()],
    );
    let received: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["change"] == "open" && e["by"].as_str().unwrap().starts_with("recvmsg"))
        .collect();
    assert_eq!(received.len(), 1, "{history}");
    assert!(
        received[0]["label"].as_str().unwrap().starts_with("pipe:["),
        "the child's pipe: {}",
        received[0]
    );
    // The same kernel object the child created.
    let object = received[0]["label"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let all = json(&c.dir, &["fds", "t.db", "--history"]);
    assert!(all
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["pid"] != root && e["label"].as_str().unwrap().starts_with(&object)));
}
