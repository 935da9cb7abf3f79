//! The breakpoint (ptrace) path of sync recording: a static binary recorded
//! with default options, the same ops from both mechanisms on dynamic
//! programs, and a deadlock found in a static build.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Compiles fixtures/<name>.c with `-g -O0 -pthread -static` into `dir`.
fn static_build(name: &str, dir: &Path) -> PathBuf {
    let src = format!("{}/../fixtures/{name}.c", env!("CARGO_MANIFEST_DIR"));
    let bin = dir.join(format!("{name}-static"));
    let out = Command::new("gcc")
        .args(["-g", "-O0", "-pthread", "-static", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("run gcc");
    assert!(
        out.status.success(),
        "gcc -static {src}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// Records `bin` with extra `record` options; returns the trace and the run.
fn record_with(dir: &Path, bin: &Path, opts: &[&str]) -> (PathBuf, Run) {
    let trace = dir.join("trace.db");
    let mut a = vec!["record", "--force", "-o", trace.to_str().unwrap()];
    a.extend_from_slice(opts);
    a.push("--");
    a.push(bin.to_str().unwrap());
    let run = lockstep(dir, &a);
    assert!(trace.exists(), "no trace: {run:?}");
    (trace, run)
}

fn sync_of(dir: &Path, trace: &Path) -> Vec<Value> {
    events(dir, trace, &[])
        .into_iter()
        .filter(|e| e["kind"] == "sync")
        .collect()
}

/// The call-site line when the site is in fixtures/<fixture>.c, else 0.
fn line_in(e: &Value, fixture: &str) -> u64 {
    let file = e["site"]["file"].as_str().unwrap_or("");
    if file.ends_with(&format!("/fixtures/{fixture}.c")) {
        e["site"]["line"].as_u64().unwrap_or(0)
    } else {
        0
    }
}

type Op = (String, String, i64, u64);

/// Per thread (in creation order = tid order), the (op, phase, ret, line)
/// of its sync events made by the program itself (site in the fixture) plus
/// the thread's start and end.
fn per_thread(evs: &[Value], fixture: &str) -> Vec<Vec<Op>> {
    let mut by: BTreeMap<i64, Vec<Op>> = BTreeMap::new();
    for e in evs {
        let ev = &e["event"];
        let op = ev["op"].as_str().unwrap().to_string();
        let line = line_in(e, fixture);
        if line == 0 && op != "thread_start" && op != "pthread_exit" {
            continue;
        }
        let entry = (
            op,
            ev["phase"].as_str().unwrap().to_string(),
            ev["ret"].as_i64().unwrap(),
            line,
        );
        by.entry(ev["tid"].as_i64().unwrap())
            .or_default()
            .push(entry);
    }
    by.into_values().collect()
}

#[test]
fn static_binary_records_sync_ops_with_breakpoints() {
    let fx = "static_mutex";
    let dir = scratch("ptrace-static-mutex");
    let bin = fixture(fx);
    let native = Command::new(&bin).output().unwrap();
    let (trace, run) = record_with(&dir, &bin, &["-q"]);
    assert_eq!(run.code, native.status.code(), "{run:?}");
    assert_eq!(run.stdout, String::from_utf8_lossy(&native.stdout));
    assert_eq!(run.stdout.trim(), "counter=200 handoff=1");
    let ps = json(&dir, &["ps", trace.to_str().unwrap()]);
    assert_eq!(ps[0]["sync_mechanism"], "ptrace", "{ps}");
    let evs = sync_of(&dir, &trace);
    assert!(evs.iter().all(|e| e["event"]["mechanism"] == "ptrace"));
    let l = |m: &str| marker_line(fx, m);
    let threads = per_thread(&evs, fx);
    assert_eq!(threads.len(), 3, "{threads:?}");
    let key = |t: &[Op], op: &str, phase: &str, line: u64| {
        t.iter()
            .filter(|o| o.0 == op && o.1 == phase && o.3 == line)
            .count()
    };
    // main: create T1, T2; join T1, T2 (a join is request + done).
    let main: Vec<(&str, &str, u64)> = threads[0]
        .iter()
        .map(|o| (o.0.as_str(), o.1.as_str(), o.3))
        .collect();
    assert_eq!(main.len(), 6, "{main:?}");
    assert_eq!(
        main.iter()
            .filter(|o| o.0 == "pthread_create" && o.1 == "done")
            .count(),
        2
    );
    assert_eq!(
        main.iter()
            .filter(|o| o.0 == "pthread_join" && o.1 == "done")
            .count(),
        2
    );
    for (i, t) in threads[1..].iter().enumerate() {
        assert_eq!(
            t.first().map(|o| o.0.as_str()),
            Some("thread_start"),
            "T{}: {t:?}",
            i + 1
        );
        assert_eq!(
            t.last().map(|o| o.0.as_str()),
            Some("pthread_exit"),
            "T{}",
            i + 1
        );
        assert_eq!(
            key(t, "pthread_mutex_lock", "acquired", l("LOOP-LOCK")),
            100,
            "T{}",
            i + 1
        );
        assert_eq!(
            key(t, "pthread_mutex_unlock", "released", l("LOOP-UNLOCK")),
            100,
            "T{}",
            i + 1
        );
        // Every loop unlock follows its lock's acquisition.
        let loop_ops: Vec<&str> = t
            .iter()
            .filter(|o| o.3 == l("LOOP-LOCK") && o.1 == "acquired" || o.3 == l("LOOP-UNLOCK"))
            .map(|o| o.0.as_str())
            .collect();
        assert!(
            loop_ops
                .chunks(2)
                .all(|c| c == ["pthread_mutex_lock", "pthread_mutex_unlock"]),
            "T{}",
            i + 1
        );
    }
    let (t1, t2) = (&threads[1], &threads[2]);
    assert_eq!(key(t1, "pthread_mutex_lock", "acquired", l("T1-LOCK")), 1);
    assert_eq!(
        key(
            t1,
            "pthread_cond_signal",
            "released",
            l("T1-SIGNAL-WAITING")
        ),
        1
    );
    assert_eq!(
        key(t1, "pthread_cond_wait", "request", l("T1-WAIT-READY")),
        1
    );
    assert_eq!(
        key(t1, "pthread_cond_wait", "acquired", l("T1-WAIT-READY")),
        1
    );
    assert_eq!(
        key(t1, "pthread_mutex_unlock", "released", l("T1-UNLOCK")),
        1
    );
    assert_eq!(key(t2, "pthread_mutex_lock", "acquired", l("T2-LOCK")), 1);
    assert_eq!(
        key(t2, "pthread_cond_signal", "released", l("T2-SIGNAL-READY")),
        1
    );
    assert_eq!(
        key(t2, "pthread_mutex_unlock", "released", l("T2-UNLOCK")),
        1
    );
    // Thread starts carry the pthread_t that create wrote and join names.
    let created: Vec<u64> = evs
        .iter()
        .filter(|e| e["event"]["op"] == "pthread_create")
        .map(|e| e["event"]["obj"].as_u64().unwrap())
        .collect();
    let started: Vec<u64> = evs
        .iter()
        .filter(|e| e["event"]["op"] == "thread_start")
        .map(|e| e["event"]["obj"].as_u64().unwrap())
        .collect();
    let joined: Vec<u64> = evs
        .iter()
        .filter(|e| e["event"]["op"] == "pthread_join" && e["event"]["phase"] == "done")
        .map(|e| e["event"]["obj"].as_u64().unwrap())
        .collect();
    assert_eq!(created.len(), 2);
    assert!(
        created
            .iter()
            .all(|c| *c != 0 && started.contains(c) && joined.contains(c)),
        "{created:?} {started:?} {joined:?}"
    );
    // Two stops per recorded call: the summary line counts them.
    assert!(
        run.stderr.is_empty() || !run.stderr.contains("error"),
        "{}",
        run.stderr
    );
}

/// Records `fixture` with `--sync=agent` and `--sync=ptrace`; the per-thread
/// sequences must be equal.
fn same_ops_both_ways(fx: &str) {
    let fixture_name = fx;
    let bin = fixture(fixture_name);
    let fixture = fixture_name;
    let mut seqs = Vec::new();
    for mode in ["agent", "ptrace"] {
        let dir = scratch(&format!("ptrace-both-{fixture}-{mode}"));
        // Memory capture (the agent's, by default) adds atomic and heap ops
        // the breakpoint path has no counterpart for: compare sync alone.
        let (trace, run) = record_with(&dir, &bin, &["-q", "--sync", mode, "--mem", "off"]);
        assert_eq!(run.code, Some(0), "{fixture} {mode}: {run:?}");
        let evs = sync_of(&dir, &trace);
        assert!(
            evs.iter().all(|e| e["event"]["mechanism"] == mode),
            "{fixture}: mechanisms under --sync={mode}"
        );
        let ps = json(&dir, &["ps", trace.to_str().unwrap()]);
        assert_eq!(ps[0]["sync_mechanism"], mode, "{ps}");
        // What depends on the run's interleaving, not on the mechanism: the
        // `request` of a try-first acquire (written only when contended)
        // and which thread a barrier picks as the serial one (ret -1).
        let try_first = [
            "pthread_mutex_lock",
            "pthread_rwlock_rdlock",
            "pthread_rwlock_wrlock",
            "pthread_spin_lock",
            "sem_wait",
        ];
        let normal: Vec<Vec<Op>> = per_thread(&evs, fixture)
            .into_iter()
            .map(|t| {
                t.into_iter()
                    .filter(|o| !(o.1 == "request" && try_first.contains(&o.0.as_str())))
                    .map(|mut o| {
                        if o.0 == "pthread_barrier_wait" && o.2 == -1 {
                            o.2 = 0;
                        }
                        o
                    })
                    .collect()
            })
            .collect();
        seqs.push(normal);
    }
    assert!(
        seqs[0].iter().map(Vec::len).sum::<usize>() > 4,
        "{fixture}: {:?}",
        seqs[0]
    );
    assert_eq!(seqs[0], seqs[1], "{fixture}: agent vs ptrace");
}

#[test]
fn agent_and_ptrace_give_the_same_ops_recursive_mutex() {
    same_ops_both_ways("recursive_mutex");
}

#[test]
fn agent_and_ptrace_give_the_same_ops_rwlock() {
    same_ops_both_ways("rwlock");
}

#[test]
fn agent_and_ptrace_give_the_same_ops_barrier() {
    same_ops_both_ways("barrier");
}

#[test]
fn check_finds_the_deadlock_of_a_static_binary() {
    let fx = "abba_deadlock";
    let dir = scratch("ptrace-static-abba");
    let bin = static_build(fx, &dir);
    let (_run, findings) = check_json(&dir, &[bin.to_str().unwrap()]);
    let file = format!("/fixtures/{fx}.c");
    let lines: Vec<u64> = ["LOCK-A-T1", "LOCK-B-T1", "LOCK-B-T2", "LOCK-A-T2"]
        .iter()
        .map(|m| marker_line(fx, m))
        .collect();
    let found = findings.iter().any(|f| {
        f["kind"] == "deadlock"
            && lines.iter().all(|&l| {
                f["locations"].as_array().unwrap().iter().any(|loc| {
                    loc["line"].as_u64() == Some(l)
                        && loc["file"].as_str().is_some_and(|p| p.ends_with(&file))
                })
            })
    });
    assert!(
        found,
        "no deadlock at lines {lines:?}: {}",
        serde_json::to_string_pretty(&findings).unwrap()
    );
    let ps = json(&dir, &["ps", "t.db"]);
    assert_eq!(ps[0]["sync_mechanism"], "ptrace", "{ps}");
}
