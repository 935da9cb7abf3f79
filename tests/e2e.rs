//! End-to-end tests: record real programs with the `lockstep` binary and
//! assert on the trace through the CLI's JSON output and the SQLite views.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::io::BufRead;
use std::time::Duration;

fn s(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn proc_by_argv0<'a>(ps: &'a Value, argv0: &str) -> Vec<&'a Value> {
    ps.as_array()
        .unwrap()
        .iter()
        .filter(|p| p["argv"][0] == argv0)
        .collect()
}

/// Sequence numbers are unique and every syscall's exit follows its entry.
fn assert_global_order(evs: &[Value]) {
    let mut seen = BTreeSet::new();
    for e in evs {
        let seq = e["seq"].as_u64().expect("seq");
        assert!(seen.insert(seq), "duplicate seq {seq}");
        if e["kind"] == "syscall" {
            if let Some(x) = e["exit"]["seq"].as_u64() {
                assert!(x > seq, "exit before entry: {e}");
                assert!(seen.insert(x), "duplicate exit seq {x}");
                assert!(e["exit"]["ts_ns"].as_u64() >= e["entry"]["ts_ns"].as_u64());
            }
        }
    }
    let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "events are not in sequence order"
    );
}

#[test]
fn shell_pipeline_has_three_processes_the_pipe_and_both_execs() {
    let dir = scratch("pipeline");
    let (trace, run) = record(&dir, "sh", &["-c", "echo foo | wc -c"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout.trim(), "4");

    let ps = json(&dir, &["ps", s(&trace)]);
    let procs = ps.as_array().unwrap();
    assert_eq!(procs.len(), 3, "sh, the echo subshell and wc: {ps}");
    let root = &procs[0];
    assert_eq!(root["spawn_kind"], "root");
    assert_eq!(
        root["argv"],
        serde_json::json!(["sh", "-c", "echo foo | wc -c"])
    );
    let root_pid = root["pid"].as_i64().unwrap();
    let wc = proc_by_argv0(&ps, "wc");
    assert_eq!(wc.len(), 1, "{ps}");
    assert!(wc[0]["exe"].as_str().unwrap().ends_with("/wc"));
    let wc_pid = wc[0]["pid"].as_i64().unwrap();
    for p in &procs[1..] {
        assert_eq!(p["ppid"].as_i64(), Some(root_pid));
        assert_eq!(p["status"]["how"], "exited");
    }

    let evs = events(&dir, &trace, &[]);
    assert_global_order(&evs);
    let execs: Vec<&Value> = evs.iter().filter(|e| e["kind"] == "exec").collect();
    assert_eq!(execs.len(), 2, "the shell's and wc's execs");
    assert_eq!(execs[1]["event"]["argv"], serde_json::json!(["wc", "-c"]));

    // The pipe: created by the shell, its write end on the echo child's
    // stdout, its read end on wc's stdin.
    let pipes: Vec<&Value> = syscalls(&evs, "pipe2")
        .into_iter()
        .chain(syscalls(&evs, "pipe"))
        .filter(|e| e["ret"] == 0)
        .collect();
    assert_eq!(pipes.len(), 1, "one pipe");
    assert_eq!(pipes[0]["pid"].as_i64(), Some(root_pid));
    let fds = pipes[0]["result"]["pipefd"]
        .as_array()
        .expect("pipe fds decoded")
        .clone();
    let (rfd, wfd) = (fds[0].as_i64().unwrap(), fds[1].as_i64().unwrap());
    let dup2 = syscalls(&evs, "dup2");
    assert!(dup2.iter().any(|d| d["decoded"]["oldfd"] == wfd
        && d["decoded"]["newfd"] == 1
        && d["pid"] != root_pid));
    assert!(dup2
        .iter()
        .any(|d| d["decoded"]["oldfd"] == rfd && d["decoded"]["newfd"] == 0 && d["pid"] == wc_pid));

    // What went through: "foo\n" into the pipe, "4\n" out of wc.
    let writes = syscalls(&evs, "write");
    assert!(writes.iter().any(|w| w["decoded"]["fd"] == 1
        && w["ret"] == 4
        && w["text"].as_str().unwrap().contains("foo\\n")));
    let wc_out: Vec<_> = writes
        .iter()
        .filter(|w| w["pid"] == wc_pid && w["decoded"]["fd"] == 1)
        .collect();
    assert_eq!(wc_out.len(), 1);
    assert_eq!(wc_out[0]["ret"], 2, "wc printed \"4\\n\"");
    let reads = syscalls(&evs, "read");
    assert!(reads
        .iter()
        .any(|r| r["pid"] == wc_pid && r["decoded"]["fd"] == 0 && r["ret"] == 4));

    // Every syscall but the final exit_group returned.
    for e in evs.iter().filter(|e| e["kind"] == "syscall") {
        if e["name"] == "exit_group" {
            assert_eq!(e["outcome"], "thread_exited");
        } else {
            assert_eq!(e["outcome"], "returned", "{e}");
        }
    }
}

#[test]
fn pthread_program_records_every_thread_and_its_futex_calls() {
    let dir = scratch("pthread");
    let bin = fixture("pthread_condvar");
    let (trace, run) = record(&dir, s(&bin), &[]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("total=210"));

    let ps = json(&dir, &["ps", s(&trace)]);
    assert_eq!(ps.as_array().unwrap().len(), 1);
    assert_eq!(ps[0]["threads"], 4, "main and three workers");
    let pid = ps[0]["pid"].as_i64().unwrap();

    let evs = events(&dir, &trace, &[]);
    assert_global_order(&evs);
    let spawns: Vec<&Value> = evs
        .iter()
        .filter(|e| e["kind"] == "spawn" && e["event"]["kind"] == "thread")
        .collect();
    assert_eq!(spawns.len(), 3);
    let workers: BTreeSet<i64> = spawns
        .iter()
        .map(|e| e["event"]["tid"].as_i64().unwrap())
        .collect();
    for sp in &spawns {
        assert_eq!(sp["event"]["pid"].as_i64(), Some(pid));
        assert_eq!(sp["event"]["creator_tid"].as_i64(), Some(pid));
        let flags = sp["event"]["clone_flags"]
            .as_u64()
            .expect("clone flags recorded");
        assert_ne!(flags & 0x10000, 0, "CLONE_THREAD");
    }
    let exits: BTreeSet<i64> = evs
        .iter()
        .filter(|e| e["kind"] == "exit" && e["event"]["process_exit"] == false)
        .map(|e| e["event"]["tid"].as_i64().unwrap())
        .collect();
    assert_eq!(exits, workers, "every worker's end is recorded");

    let futex = syscalls(&evs, "futex");
    assert!(!futex.is_empty());
    let mut by_tid: HashMap<i64, usize> = HashMap::new();
    for f in &futex {
        assert!(
            f["decoded"]["op"].as_str().unwrap().starts_with("FUTEX_"),
            "{f}"
        );
        assert!(f["decoded"]["uaddr"].as_u64().is_some());
        *by_tid.entry(f["tid"].as_i64().unwrap()).or_default() += 1;
    }
    assert!(
        workers.iter().any(|w| by_tid.contains_key(w)),
        "worker threads wait on the condvar: {by_tid:?}"
    );
    // The filter by thread shows only that thread.
    let w = *workers.iter().next().unwrap();
    let only = events(&dir, &trace, &["--tid", &w.to_string()]);
    assert!(!only.is_empty());
    assert!(only
        .iter()
        .all(|e| e["tid"].as_i64().or(e["event"]["tid"].as_i64()) == Some(w)));
}

#[test]
fn fork_exec_child_and_exit_status() {
    let dir = scratch("fork_exec");
    let (trace, run) = record(&dir, s(&fixture("fork_exec")), &[]);
    assert_eq!(run.code, Some(3), "record exits with the program's status");
    let ps = json(&dir, &["ps", s(&trace)]);
    let child = proc_by_argv0(&ps, "echo");
    assert_eq!(child.len(), 1, "{ps}");
    assert_eq!(child[0]["spawn_kind"], "fork");
    assert_eq!(
        child[0]["argv"],
        serde_json::json!(["echo", "hello-from-child"])
    );
    assert_eq!(
        ps[0]["status"],
        serde_json::json!({"how": "exited", "code": 3})
    );
    let evs = events(&dir, &trace, &["--syscall", "wait4,waitid"]);
    let waited: Vec<&Value> = evs.iter().filter(|e| e["ret"] == child[0]["pid"]).collect();
    assert_eq!(waited.len(), 1, "{evs:?}");
    let r = &waited[0]["result"];
    assert!(r["exit_code"] == 0 || r["si_status"] == 0, "{r}");
}

#[test]
fn vfork_and_posix_spawn_children() {
    let dir = scratch("vfork");
    let (trace, run) = record(&dir, s(&fixture("vfork_spawn")), &[]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let ps = json(&dir, &["ps", s(&trace)]);
    let kinds: Vec<(&str, &str)> = ps.as_array().unwrap()[1..]
        .iter()
        .map(|p| {
            (
                p["spawn_kind"].as_str().unwrap(),
                p["argv"][0].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(kinds.len(), 2, "{ps}");
    assert_eq!(kinds[0], ("vfork", "true"));
    assert_eq!(kinds[1].1, "echo");
}

#[test]
fn exec_from_a_non_main_thread() {
    let dir = scratch("exec_thread");
    let (trace, run) = record(&dir, s(&fixture("exec_from_thread")), &[]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("exec-from-thread"));
    let evs = events(&dir, &trace, &[]);
    assert_global_order(&evs);
    let execs: Vec<&Value> = evs.iter().filter(|e| e["kind"] == "exec").collect();
    assert_eq!(execs.len(), 2);
    let x = &execs[1]["event"];
    let pid = x["pid"].as_i64().unwrap();
    let former = x["former_tid"].as_i64().unwrap();
    assert_ne!(former, pid, "the exec came from the second thread");
    assert!(x["exe"].as_str().unwrap().ends_with("/echo"));
    // The exec'ing thread's execve is its own; it goes on as the main thread.
    let execve: Vec<_> = syscalls(&evs, "execve")
        .into_iter()
        .filter(|e| e["ret"] == 0)
        .collect();
    assert_eq!(execve[1]["tid"].as_i64(), Some(former));
    assert!(evs.iter().any(|e| e["kind"] == "spawn"
        && e["event"]["kind"] == "exec_takeover"
        && e["event"]["creator_tid"] == former));
    // The old main thread was blocked in pthread_join's futex and never returned.
    assert!(syscalls(&evs, "futex")
        .iter()
        .any(|f| f["tid"] == pid && f["outcome"] == "thread_exited"));
}

#[test]
fn killed_by_signal_statuses() {
    let dir = scratch("killed");
    let (trace, run) = record(&dir, s(&fixture("killed_by_signal")), &[]);
    assert_eq!(run.code, Some(139), "128 + SIGSEGV: {run:?}");
    let evs = events(&dir, &trace, &[]);
    let sig: Vec<_> = evs.iter().filter(|e| e["kind"] == "signal").collect();
    assert_eq!(sig.len(), 1);
    assert_eq!(sig[0]["event"]["signo"], 11);
    assert_eq!(sig[0]["event"]["fault_addr"], 0);
    let ps = json(&dir, &["ps", s(&trace)]);
    assert_eq!(ps[0]["status"]["how"], "killed");
    assert_eq!(ps[0]["status"]["signal"], 11);

    let (trace, run) = record(&dir, s(&fixture("sigterm_self")), &[]);
    assert_eq!(run.code, Some(143));
    let evs = events(&dir, &trace, &[]);
    let sig: Vec<_> = evs.iter().filter(|e| e["kind"] == "signal").collect();
    assert_eq!(sig[0]["event"]["signo"], 15);
    assert_eq!(
        sig[0]["event"]["sender_pid"], sig[0]["event"]["pid"],
        "sent by itself"
    );
}

#[test]
fn summary_counts_syscalls_like_strace_c() {
    let dir = scratch("summary");
    let (trace, run) = record(&dir, s(&fixture("syscall_loop")), &["2000"]);
    assert_eq!(run.code, Some(0));
    let sum = json(&dir, &["summary", s(&trace)]);
    let getppid = sum
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "getppid")
        .expect("getppid row");
    assert_eq!(
        getppid["calls"], 2001,
        "the loop plus the reference call before it"
    );
    assert_eq!(getppid["errors"], 0);
    let text = lockstep(&dir, &["summary", s(&trace)]);
    assert!(
        text.stdout
            .lines()
            .any(|l| l.ends_with(" getppid") && l.contains(" 2001 ")),
        "{}",
        text.stdout
    );
    let ev = lockstep(&dir, &["events", s(&trace), "--syscall", "getppid"]);
    assert_eq!(ev.stdout.lines().count(), 2001);
    assert!(ev
        .stdout
        .lines()
        .all(|l| l.starts_with('[') && l.contains("] getppid() = ")));
}

#[test]
fn views_answer_sqlite_queries() {
    let dir = scratch("views");
    let (trace, _) = record(&dir, "sh", &["-c", "echo foo | wc -c"]);
    let db = rusqlite::Connection::open(&trace).unwrap();
    let n: i64 = db
        .query_row("SELECT count(*) FROM processes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
    let n: i64 = db
        .query_row("SELECT count(*) FROM threads", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
    let (name, fds): (String, String) = db
        .query_row(
            "SELECT name, json_extract(result, '$.pipefd') FROM syscalls WHERE name LIKE 'pipe%'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(name.starts_with("pipe"));
    assert!(fds.starts_with('['));
    let v: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, lockstep_trace::schema::SCHEMA_VERSION);
    let complete: String = db
        .query_row("SELECT value FROM meta WHERE key = 'complete'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(complete, "1");
}

#[test]
fn missing_program_exits_127_with_one_line() {
    let dir = scratch("missing");
    let run = lockstep(&dir, &["record", "-o", "t.db", "--", "no-such-program-xyz"]);
    assert_eq!(run.code, Some(127));
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("no-such-program-xyz"));
    assert!(
        !dir.join("t.db").exists(),
        "no trace for a program that never ran"
    );
    let run = lockstep(&dir, &["record", "-o", "t.db", "--", "./nope/prog"]);
    assert_eq!(run.code, Some(127));
}

#[test]
fn unwritable_output_fails_before_the_program_starts() {
    let dir = scratch("unwritable");
    let marker = dir.join("ran");
    let cmd = format!("touch {}", s(&marker));
    let run = lockstep(
        &dir,
        &[
            "record",
            "-o",
            "/nonexistent-dir/t.db",
            "--",
            "sh",
            "-c",
            &cmd,
        ],
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(!marker.exists(), "the program must not run");

    // An existing trace is kept unless --force.
    std::fs::write(dir.join("old.db"), b"precious").unwrap();
    let run = lockstep(&dir, &["record", "-o", "old.db", "--", "sh", "-c", &cmd]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("--force"), "{}", run.stderr);
    assert_eq!(std::fs::read(dir.join("old.db")).unwrap(), b"precious");
    assert!(!marker.exists());
}

#[test]
fn bad_traces_exit_2_with_one_line() {
    let dir = scratch("bad_traces");
    let (trace, _) = record(&dir, s(&fixture("syscall_loop")), &["20000"]);
    let bytes = std::fs::read(&trace).unwrap();
    assert!(bytes.len() > 64 * 1024, "trace big enough to truncate");

    std::fs::write(dir.join("text.db"), b"hello, I am not a trace\n").unwrap();
    std::fs::write(dir.join("truncated.db"), &bytes[..bytes.len() / 2]).unwrap();
    let mut corrupt = bytes.clone();
    for b in &mut corrupt[4096..bytes.len() - 4096] {
        *b = 0xA5;
    }
    std::fs::write(dir.join("corrupt.db"), &corrupt).unwrap();
    std::fs::write(dir.join("newer.db"), &bytes).unwrap();
    rusqlite::Connection::open(dir.join("newer.db"))
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    rusqlite::Connection::open(dir.join("other.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();

    for (file, what) in [
        ("text.db", "not a lockstep trace"),
        ("other.db", "not a lockstep trace"),
        ("truncated.db", "truncated"),
        ("corrupt.db", "corrupt"),
        ("newer.db", "newer"),
        ("missing.db", "no such trace"),
    ] {
        for cmd in ["ps", "events", "summary"] {
            let run = lockstep(&dir, &[cmd, file]);
            assert_eq!(run.code, Some(2), "{cmd} {file}: {run:?}");
            assert_eq!(
                run.stderr.lines().count(),
                1,
                "{cmd} {file}: {}",
                run.stderr
            );
            assert!(run.stderr.contains(what), "{cmd} {file}: {}", run.stderr);
        }
    }
}

/// Starts a recording of the sleeper and waits until the program runs.
fn start_sleeper(dir: &std::path::Path) -> std::process::Child {
    let bin = fixture("sleep_then_exit");
    let mut child = spawn(dir, &["record", "-q", "-o", "t.db", "--", s(&bin)]);
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    child
}

#[test]
fn sigterm_to_the_recorder_reaches_the_program_and_keeps_the_trace() {
    let dir = scratch("sigterm");
    let child = start_sleeper(&dir);
    // Let the program get into its sleep, so the signal interrupts a syscall.
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on the recorder we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let run = finish(child, Duration::from_secs(30));
    assert_eq!(run.code, Some(143), "{run:?}");
    let ps = json(&dir, &["ps", "t.db"]);
    assert_eq!(ps[0]["status"]["signal"], 15);
    let evs = events(&dir, &dir.join("t.db"), &[]);
    assert!(evs
        .iter()
        .any(|e| e["kind"] == "signal" && e["event"]["signo"] == 15));
    let mut sleeps = syscalls(&evs, "clock_nanosleep");
    sleeps.extend(syscalls(&evs, "nanosleep"));
    let last = sleeps
        .iter()
        .max_by_key(|e| e["seq"].as_u64())
        .expect("the program slept");
    // Either the signal cut the last sleep short (the kernel's own word for
    // it is recorded), or it arrived between two sleeps, after the last one
    // returned.
    let sig_seq = evs.iter().find(|e| e["kind"] == "signal").unwrap()["seq"]
        .as_u64()
        .unwrap();
    let interrupted = last["error"]
        .as_str()
        .is_some_and(|e| e.starts_with("ERESTART") || e == "EINTR");
    let before = last["ret"] == 0 && last["exit"]["seq"].as_u64().is_some_and(|x| x < sig_seq);
    assert!(
        interrupted || before,
        "last sleep {last} vs signal at {sig_seq}"
    );
}

#[test]
fn ctrl_c_to_the_process_group_ends_the_program_and_keeps_the_trace() {
    let dir = scratch("ctrl_c");
    let child = start_sleeper(&dir);
    // Like a terminal's Ctrl-C: SIGINT to the whole foreground group.
    // SAFETY: kill(2) on the process group we created for the recorder.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
    let run = finish(child, Duration::from_secs(30));
    assert_eq!(run.code, Some(130), "{run:?}");
    let evs = events(&dir, &dir.join("t.db"), &[]);
    let sigs: Vec<_> = evs.iter().filter(|e| e["kind"] == "signal").collect();
    assert_eq!(
        sigs.len(),
        1,
        "delivered once, not forwarded twice: {sigs:?}"
    );
}

#[test]
fn default_trace_path_and_latest_link() {
    let dir = scratch("default_path");
    let run = lockstep(&dir, &["record", "-q", "--", "true"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let run = lockstep(&dir, &["record", "-q", "--", "true"]);
    assert_eq!(run.code, Some(0));
    assert!(dir.join("lockstep-traces/true-1.db").exists());
    assert!(dir.join("lockstep-traces/true-2.db").exists());
    let latest = std::fs::read_link(dir.join("lockstep-traces/latest")).unwrap();
    assert_eq!(latest, std::path::PathBuf::from("true-2.db"));
    let ps = json(&dir, &["ps"]);
    assert_eq!(ps[0]["argv"], serde_json::json!(["true"]));
}

#[test]
fn a_hung_program_is_killed_with_a_snapshot_and_reported() {
    let dir = scratch("hang");
    let bin = fixture("spin_forever");
    let run = finish(
        spawn(
            &dir,
            &[
                "record",
                "-q",
                "--hang-timeout",
                "0.5",
                "-o",
                "t.db",
                "--",
                s(&bin),
            ],
        ),
        Duration::from_secs(30),
    );
    assert_eq!(run.code, Some(124), "{run:?}");
    let ps = json(&dir, &["ps", "t.db"]);
    assert_eq!(ps[0]["status"]["signal"], 9, "killed by the hang detector");
    let rep = lockstep(&dir, &["report", "t.db", "--format", "json"]);
    assert_eq!(rep.code, Some(1), "findings exit 1: {rep:?}");
    let doc: Value = serde_json::from_str(&rep.stdout).unwrap();
    assert_eq!(doc["trace"], "t.db");
    let f = &doc["findings"][0];
    assert_eq!(f["kind"], "hang");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["details"]["threads"][0]["syscall"], "pause");
    for key in ["summary", "pids", "tids", "locations", "details"] {
        assert!(f.get(key).is_some(), "finding has {key}");
    }
    // The report is kept in the trace, in the `findings` view.
    let db = rusqlite::Connection::open(dir.join("t.db")).unwrap();
    let (kind, severity, threads): (String, String, String) = db
        .query_row(
            "SELECT kind, severity, json_extract(details, '$.threads') FROM findings",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((kind.as_str(), severity.as_str()), ("hang", "error"));
    assert!(threads.contains("pause"));
}

#[test]
fn check_of_a_clean_program_exits_0_and_keeps_the_trace() {
    let dir = scratch("check_clean");
    let run = lockstep(
        &dir,
        &["check", "-o", "t.db", "--", s(&fixture("fork_exec"))],
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout
            .contains("0 findings: 0 errors, 0 warnings, 0 notes"),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.stdout.lines().last().unwrap(),
        "trace: t.db  (lockstep replay t.db)",
        "the last line names the trace: {}",
        run.stdout
    );
    let run = lockstep(&dir, &["report", "t.db", "--format", "json"]);
    assert_eq!(run.code, Some(0));
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["findings"], serde_json::json!([]));
    assert!(doc["command"][0].as_str().unwrap().ends_with("fork_exec"));
    let run = lockstep(&dir, &["report", "missing.db"]);
    assert_eq!(run.code, Some(2));
}

#[test]
fn perfetto_export_has_tracks_slices_lock_spans_flows_and_findings() {
    let dir = scratch("export");
    let bin = fixture("abba_deadlock");
    let run = finish(
        spawn(
            &dir,
            &[
                "record",
                "-q",
                "--hang-timeout",
                "1",
                "-o",
                "t.db",
                "--",
                s(&bin),
            ],
        ),
        Duration::from_secs(30),
    );
    assert_eq!(run.code, Some(124));
    let run = lockstep(
        &dir,
        &["export", "t.db", "--format", "perfetto", "-o", "t.json"],
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("t.json")).unwrap()).unwrap();
    let ev = doc["traceEvents"].as_array().expect("traceEvents array");
    // Every event has the fields the trace-event format requires.
    for e in ev {
        assert!(
            e["ph"].is_string() && e["pid"].is_i64() && e["tid"].is_i64(),
            "{e}"
        );
        if e["ph"] != "M" {
            assert!(e["ts"].is_number(), "{e}");
        }
        if e["ph"] == "X" {
            assert!(e["dur"].as_f64().unwrap() > 0.0, "{e}");
        }
    }
    let names = |ph: &str, cat: &str| -> Vec<String> {
        ev.iter()
            .filter(|e| e["ph"] == ph && e["cat"] == cat)
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };
    // One named track per thread (main + 2 workers) in one process, and
    // with the kernel's schedule recorded, one "CPU state" track beside each.
    let tracks: Vec<&str> = ev
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    let cpu = tracks.iter().filter(|n| n.ends_with(": CPU state")).count();
    assert_eq!(tracks.len() - cpu, 3, "{tracks:?}");
    assert!(cpu == 0 || cpu == 3, "{tracks:?}");
    assert_eq!(
        ev.iter()
            .filter(|e| e["ph"] == "M" && e["name"] == "process_name")
            .count(),
        1
    );
    assert!(names("X", "syscall").iter().any(|n| n == "futex"));
    let held = names("X", "lock");
    assert!(
        held.iter().any(|n| n == "holds A (until the end)")
            && held.iter().any(|n| n == "holds B (until the end)"),
        "{held:?}"
    );
    let blocked = names("X", "blocked");
    assert!(
        blocked.iter().any(|n| n == "blocked on A (until the end)"),
        "{blocked:?}"
    );
    assert!(names("i", "finding")
        .iter()
        .any(|n| n.starts_with("deadlock")));
    assert!(names("i", "sync")
        .iter()
        .any(|n| n == "pthread_mutex_lock acquired"));

    // Pipe writes flow to the reads that got their data.
    let (trace, _) = record(&dir, "sh", &["-c", "echo foo | wc -c"]);
    let run = lockstep(&dir, &["export", s(&trace), "-o", "p.json"]);
    assert_eq!(run.code, Some(0));
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("p.json")).unwrap()).unwrap();
    let ev = doc["traceEvents"].as_array().unwrap();
    let starts: Vec<&Value> = ev
        .iter()
        .filter(|e| e["ph"] == "s" && e["cat"] == "pipe")
        .collect();
    let ends: Vec<&Value> = ev
        .iter()
        .filter(|e| e["ph"] == "f" && e["cat"] == "pipe")
        .collect();
    assert_eq!(starts.len(), 1, "echo's write into the pipe");
    assert_eq!(ends.len(), 1, "wc's read of it");
    assert_eq!(starts[0]["id"], ends[0]["id"]);
    assert_ne!(starts[0]["pid"], ends[0]["pid"]);
}

#[test]
fn explain_covers_every_finding_kind() {
    let dir = scratch("explain");
    for kind in [
        "data_race",
        "deadlock",
        "lock_order_inversion",
        "hang",
        "self_deadlock",
        "unlock_not_held",
        "cond_wait_holding_lock",
        "fd_leak",
        "bad_fd",
        "fd_misuse",
        "fd_open_at_exit",
        "data_race",
        "priority_inversion",
    ] {
        let run = lockstep(&dir, &["explain", kind]);
        assert_eq!(run.code, Some(0), "{kind}: {run:?}");
        assert!(
            run.stdout.contains("How to fix it:") && run.stdout.contains("Example:"),
            "{kind}"
        );
    }
    let run = lockstep(&dir, &["explain", "no_such_kind"]);
    assert_eq!(run.code, Some(2));
    assert_eq!(run.stderr.lines().count(), 1);
}
