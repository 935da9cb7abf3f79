//! The schedule end to end: the Pathfinder fixtures and their variants
//! recorded through the CLI, the kernel's context switches checked in the
//! trace (switch rows for the threads, H blocked while M runs), and the
//! `priority_inversion` findings checked against the fixtures' marked
//! lines and recorded priorities. Needs root for SCHED_FIFO and the
//! tracepoints (CI runs as root); without SCHED_FIFO the RT tests stop
//! early, saying so.

mod common;

use common::*;
use rusqlite::Connection;
use serde_json::Value;
use std::path::Path;

const MS: i64 = 1_000_000;

/// The fixtures pin all their threads to the first allowed CPU, and the
/// Pathfinder ones run SCHED_FIFO there: two recorded at once would
/// schedule each other's threads out of the inversion being checked (a
/// nice-19 holder starved for seconds by another test's real-time thread).
/// So they are recorded one at a time.
static ONE_CPU: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `lockstep` with `args` in `dir`, no other fixture of this file running.
fn lockstep_alone(dir: &Path, args: &[&str]) -> Run {
    let _g = ONE_CPU.lock().unwrap_or_else(|e| e.into_inner());
    lockstep(dir, args)
}

/// Whether the fixture ran without real-time priorities.
fn no_rt(run: &Run) -> bool {
    let denied = run.stdout.contains("SCHED_FIFO not permitted");
    if denied {
        eprintln!("skipped: SCHED_FIFO not permitted here");
    }
    denied
}

/// The priority_inversion findings of `check` on fixture `name`.
fn inversions(name: &str, extra: &[&str]) -> (Run, Vec<Value>, std::path::PathBuf) {
    let exe = fixture(name);
    let dir = scratch(&format!("sched-{name}-{}", extra.join("")));
    let mut argv: Vec<&str> = extra.to_vec();
    argv.push(exe.to_str().unwrap());
    let (run, findings) = check_json_with(&dir, extra, exe.to_str().unwrap());
    assert!(run.code.is_some(), "{name}: check did not finish: {run:?}");
    let inv = findings
        .into_iter()
        .filter(|f| f["kind"] == "priority_inversion")
        .collect();
    (run, inv, dir.join("t.db"))
}

/// `check` with record options `extra`, the JSON report in r.json.
fn check_json_with(dir: &Path, extra: &[&str], exe: &str) -> (Run, Vec<Value>) {
    let mut a = vec!["check", "-q", "--format", "json", "--report-file", "r.json"];
    a.extend_from_slice(extra);
    a.extend_from_slice(&["-o", "t.db", "--", exe]);
    let run = lockstep_alone(dir, &a);
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("r.json")).unwrap_or_else(|e| panic!("{e}: {run:?}")),
    )
    .expect("JSON report");
    (
        run,
        report["findings"].as_array().cloned().unwrap_or_default(),
    )
}

/// The tid of the thread whose recorded SCHED_FIFO priority became `prio`.
fn tid_with_rt(db: &Connection, prio: i64) -> i64 {
    db.query_row(
        "SELECT tid FROM sched_attrs WHERE policy = 'fifo' AND rt_priority = ?1 AND cause != 'start'",
        [prio],
        |r| r.get(0),
    )
    .unwrap_or_else(|e| panic!("no thread with FIFO {prio}: {e}"))
}

/// The location of a finding whose role starts with `role`.
fn loc<'a>(f: &'a Value, role: &str) -> &'a Value {
    f["locations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["role"].as_str().unwrap().starts_with(role))
        .unwrap_or_else(|| panic!("no location {role}: {f:#}"))
}

fn at_marker(l: &Value, fixture: &str, marker: &str) {
    assert!(
        l["file"]
            .as_str()
            .unwrap_or("")
            .ends_with(&format!("{fixture}.c")),
        "{l}"
    );
    assert_eq!(l["line"], marker_line(fixture, marker), "{marker}: {l}");
}

/// Time thread `tid` ran within [a, b) by the trace's switch rows.
fn running_ns(db: &Connection, tid: i64, a: i64, b: i64) -> i64 {
    let mut st = db
        .prepare("SELECT ts_ns, next_tid = ?1 FROM sched_switches WHERE next_tid = ?1 OR prev_tid = ?1 ORDER BY ts_ns")
        .unwrap();
    let rows: Vec<(i64, bool)> = st
        .query_map([tid], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut total = 0;
    let mut since = None;
    for (t, into) in rows {
        match (into, since) {
            (true, _) => since = Some(t),
            (false, Some(s)) => {
                total += (t.min(b) - s.max(a)).max(0);
                since = None;
            }
            _ => {}
        }
    }
    total
}

#[test]
fn pathfinder_trace_has_the_switches_and_h_blocked_while_m_ran() {
    let exe = fixture("mars_pathfinder");
    let dir = scratch("sched-trace");
    let (trace, run) = record(&dir, exe.to_str().unwrap(), &[]);
    assert_eq!(run.code, Some(0), "{run:?}");
    if no_rt(&run) {
        return;
    }
    let db = Connection::open(&trace).unwrap();
    let meta = |k: &str| -> String {
        db.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(meta("sched"), "perf", "note: {}", meta("sched_note"));
    let (l, h, m) = (
        tid_with_rt(&db, 10),
        tid_with_rt(&db, 30),
        tid_with_rt(&db, 20),
    );
    for tid in [l, h, m] {
        let n: i64 = db
            .query_row(
                "SELECT count(*) FROM sched_switches WHERE next_tid = ?1",
                [tid],
                |r| r.get(0),
            )
            .unwrap();
        assert!(n > 0, "no switch into thread {tid}");
    }
    // H's wait for bus: its contended lock's request and acquisition.
    let span = |phase: &str| -> i64 {
        db.query_row(
            "SELECT ts_ns FROM sync_ops WHERE tid = ?1 AND op = 'pthread_mutex_lock' AND phase = ?2",
            rusqlite::params![h, phase],
            |r| r.get(0),
        )
        .unwrap()
    };
    let (a, b) = (span("request"), span("acquired"));
    assert!(b - a > 150 * MS, "H waited only {} ms", (b - a) / MS);
    // M ran during most of it; H did not run at all in between.
    let m_ran = running_ns(&db, m, a, b);
    assert!(m_ran > 150 * MS, "M ran {} ms of H's wait", m_ran / MS);
    assert!(running_ns(&db, h, a + MS, b - MS) < 5 * MS);
    // The switch times are on the trace's clock: inside the recording.
    let (first, last): (i64, i64) = db
        .query_row(
            "SELECT min(ts_ns), max(ts_ns) FROM sched_switches",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let (t0, t1): (i64, i64) = db
        .query_row("SELECT min(ts_ns), max(ts_ns) FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert!(
        first >= t0 - 100 * MS && last <= t1 + 100 * MS,
        "{first}..{last} vs {t0}..{t1}"
    );
}

/// Checks the Pathfinder finding: the three threads, priorities, lines.
fn assert_pathfinder(f: &Value, db: &Path, fixture: &str, evidence: &str) {
    let db = Connection::open(db).unwrap();
    let (l, h, m) = (
        tid_with_rt(&db, 10),
        tid_with_rt(&db, 30),
        tid_with_rt(&db, 20),
    );
    assert_eq!(f["severity"], "error", "{f:#}");
    assert_eq!(f["tids"], serde_json::json!([h, l, m]));
    let d = &f["details"];
    assert_eq!(d["evidence"], evidence);
    assert_eq!(d["lock"], "mutex bus");
    assert_eq!(d["high"]["priority"]["rt_priority"], 30);
    assert_eq!(d["low"]["priority"]["rt_priority"], 10);
    assert_eq!(d["medium"]["priority"]["rt_priority"], 20);
    assert!(d["medium_ran_ns"].as_i64().unwrap() > 150 * MS, "{d}");
    at_marker(loc(f, "waits for mutex bus"), fixture, "LOCK-BUS-H");
    at_marker(loc(f, "holds mutex bus"), fixture, "LOCK-BUS-L");
    assert_eq!(loc(f, "runs meanwhile")["function"], "medium_main");
}

#[test]
fn pathfinder_is_a_priority_inversion_error() {
    let (run, inv, db) = inversions("mars_pathfinder", &[]);
    if no_rt(&run) {
        return;
    }
    assert_eq!(inv.len(), 1, "{inv:#?}");
    assert_pathfinder(&inv[0], &db, "mars_pathfinder", "sched_switch tracepoints");
    assert_eq!(run.code, Some(1));
}

#[test]
fn pathfinder_from_schedstat_samples_alone() {
    let (run, inv, db) = inversions("mars_pathfinder", &["--sched=schedstat"]);
    if no_rt(&run) {
        return;
    }
    assert_eq!(inv.len(), 1, "{inv:#?}");
    assert_pathfinder(&inv[0], &db, "mars_pathfinder", "schedstat");
    let n: i64 = Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM sched_switches", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn priority_inheritance_leaves_no_inversion_error() {
    let (run, inv, _) = inversions("mars_pathfinder_pi", &[]);
    if no_rt(&run) {
        return;
    }
    assert!(run.stdout.contains("inversion=no"), "{run:?}");
    assert!(inv.iter().all(|f| f["severity"] == "note"), "{inv:#?}");
}

#[test]
fn a_condvar_hand_off_inverts_too() {
    let (run, inv, db) = inversions("priority_inversion_condvar", &[]);
    if no_rt(&run) {
        return;
    }
    assert_eq!(inv.len(), 1, "{inv:#?}");
    let f = &inv[0];
    let db = Connection::open(db).unwrap();
    let (l, h, m) = (
        tid_with_rt(&db, 10),
        tid_with_rt(&db, 30),
        tid_with_rt(&db, 20),
    );
    assert_eq!(f["severity"], "error");
    assert_eq!(f["tids"], serde_json::json!([h, l, m]));
    assert_eq!(f["details"]["via"], "condvar");
    at_marker(
        loc(f, "waits on condvar cond"),
        "priority_inversion_condvar",
        "H-WAIT",
    );
    at_marker(
        loc(f, "signals condvar cond"),
        "priority_inversion_condvar",
        "L-SIGNAL",
    );
}

#[test]
fn nice_values_give_a_warning() {
    let (run, inv, db) = inversions("priority_inversion_nice", &[]);
    assert_eq!(inv.len(), 1, "{run:?} {inv:#?}");
    let f = &inv[0];
    assert_eq!(f["severity"], "warning");
    let db = Connection::open(db).unwrap();
    let nice_tid = |n: i64| -> i64 {
        db.query_row(
            "SELECT tid FROM sched_attrs WHERE nice = ?1 AND cause = 'setpriority'",
            [n],
            |r| r.get(0),
        )
        .unwrap()
    };
    let (l, m) = (nice_tid(19), nice_tid(5));
    assert_eq!(f["tids"][1], l);
    assert_eq!(f["tids"][2], m);
    assert_eq!(f["details"]["high"]["priority"]["nice"], 0);
    at_marker(
        loc(f, "waits for mutex bus"),
        "priority_inversion_nice",
        "LOCK-BUS-H",
    );
    at_marker(
        loc(f, "holds mutex bus"),
        "priority_inversion_nice",
        "LOCK-BUS-L",
    );
}

#[test]
fn no_sched_records_attributes_but_no_schedule() {
    let exe = fixture("priority_inversion_nice");
    let dir = scratch("sched-off");
    let trace = dir.join("t.db");
    let run = lockstep_alone(
        &dir,
        &[
            "record",
            "-q",
            "--no-sched",
            "-o",
            trace.to_str().unwrap(),
            "--",
            exe.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let db = Connection::open(&trace).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM sched_switches"), 0);
    assert_eq!(count("SELECT count(*) FROM schedstats"), 0);
    assert_eq!(count("SELECT count(*) FROM sched_attrs WHERE nice = 19"), 1);
    let ev: String = db
        .query_row("SELECT value FROM meta WHERE key = 'sched'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(ev, "off");
}

#[test]
fn perfetto_export_has_cpu_states_and_the_inversion() {
    let exe = fixture("mars_pathfinder");
    let dir = scratch("sched-export");
    let (trace, run) = record(&dir, exe.to_str().unwrap(), &[]);
    if no_rt(&run) {
        return;
    }
    let out = dir.join("p.json");
    let r = lockstep_alone(
        &dir,
        &[
            "export",
            trace.to_str().unwrap(),
            "--format",
            "perfetto",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let ev = doc["traceEvents"].as_array().unwrap();
    let db = Connection::open(&trace).unwrap();
    let (l, h, m) = (
        tid_with_rt(&db, 10),
        tid_with_rt(&db, 30),
        tid_with_rt(&db, 20),
    );
    for tid in [l, h, m] {
        let states: Vec<&str> = ev
            .iter()
            .filter(|e| e["cat"] == "sched" && e["args"]["tid"] == tid)
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert!(
            states.iter().any(|s| s.starts_with("running (cpu")),
            "{tid}: {states:?}"
        );
        let track = ev
            .iter()
            .find(|e| e["cat"] == "sched" && e["args"]["tid"] == tid)
            .unwrap()["tid"]
            .as_i64()
            .unwrap();
        assert!(ev.iter().any(|e| e["ph"] == "M"
            && e["tid"] == track
            && e["args"]["name"] == format!("{tid}: CPU state")));
    }
    // L was runnable (preempted by M) for a while.
    let runnable_ms: f64 = ev
        .iter()
        .filter(|e| e["cat"] == "sched" && e["args"]["tid"] == l && e["name"] == "runnable")
        .map(|e| e["dur"].as_f64().unwrap() / 1000.0)
        .sum();
    assert!(runnable_ms > 150.0, "L runnable {runnable_ms} ms");
    let begin = ev
        .iter()
        .find(|e| e["cat"] == "priority_inversion" && e["ph"] == "b")
        .expect("inversion slice");
    let end = ev
        .iter()
        .find(|e| e["cat"] == "priority_inversion" && e["ph"] == "e" && e["id"] == begin["id"])
        .expect("its end");
    assert_eq!(begin["tid"], h);
    assert_eq!(begin["args"]["details"]["medium"]["tid"], m);
    let dur_ms = (end["ts"].as_f64().unwrap() - begin["ts"].as_f64().unwrap()) / 1000.0;
    assert!(dur_ms > 150.0, "{dur_ms}");
}

#[test]
fn the_medium_thread_is_shown_where_it_was_during_the_wait() {
    let fixture = "priority_inversion_medium_ops";
    let (run, inv, _) = inversions(fixture, &[]);
    if no_rt(&run) {
        return;
    }
    assert_eq!(inv.len(), 1, "{inv:#?}");
    let f = &inv[0];
    assert_eq!(f["severity"], "error", "{f:#}");
    // Its latest sync op with a source line during H's wait, not the
    // opening line of its start routine.
    let m = loc(f, "runs meanwhile");
    at_marker(m, fixture, "M-STATS");
    assert_eq!(m["function"], "medium_main");
    assert_eq!(
        f["details"]["medium"]["location"]["from"], "latest sync op",
        "{f:#}"
    );
}
