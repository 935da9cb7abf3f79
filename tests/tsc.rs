//! The time-stamp counter under record and replay: `record --trap-tsc`
//! (and every `--serialize` recording) traps rdtsc/rdtscp, records the
//! values the program read, and `lockstep replay` gives them back, so a
//! program whose output depends on the counter replays exactly.

mod common;

use common::*;
use std::path::Path;

fn native(exe: &Path) -> String {
    let out = std::process::Command::new(exe).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn db(trace: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(trace).unwrap()
}

/// The integer a one-value query gives.
fn count(trace: &Path, sql: &str) -> i64 {
    db(trace).query_row(sql, [], |r| r.get(0)).unwrap()
}

fn meta(trace: &Path, key: &str) -> Option<String> {
    db(trace)
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .ok()
}

/// The recorded reads per thread of the program's worker threads (spawn
/// kind `thread`): (tid, rdtsc count, rdtscp count).
fn worker_reads(trace: &Path) -> Vec<(i64, i64, i64)> {
    let c = db(trace);
    let mut st = c
        .prepare(
            "SELECT s.tid, sum(r.aux IS NULL), sum(r.aux IS NOT NULL)
             FROM spawn_rows s JOIN tsc_rows r ON r.tid = s.tid
             WHERE s.kind = 'thread' GROUP BY s.tid ORDER BY s.tid",
        )
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn counter_dependent_output_replays_exactly_trapped_and_serialized() {
    let _serial = one_at_a_time();
    let exe = fixture("rdtsc_clock");
    // The program really is nondeterministic: two native runs differ.
    assert_ne!(native(&exe), native(&exe));
    for mode in ["--trap-tsc", "--serialize"] {
        let dir = scratch(&format!("tsc-{}", mode.trim_start_matches('-')));
        let (trace, recorded) = rec(&dir, &[exe.to_str().unwrap()], &[mode]);
        assert_eq!(recorded.code, Some(0), "{mode}: {recorded:?}");
        assert!(recorded.stdout.ends_with("done\n"), "{mode}: {recorded:?}");
        assert_eq!(meta(&trace, "tsc").as_deref(), Some("trap"), "{mode}");
        // Both threads' reads: 4 rdtscp each in the fixture's first loop
        // and one more after the spin; rdtsc at least 4 + 3.
        let reads = worker_reads(&trace);
        assert_eq!(reads.len(), 2, "{mode}: {reads:?}");
        for &(tid, rdtsc, rdtscp) in &reads {
            assert!(rdtsc >= 7 && rdtscp >= 5, "{mode}: thread {tid}: {reads:?}");
        }
        // Every event of the trace has one seq: the reads are in `events`.
        let n = count(&trace, "SELECT count(*) FROM events WHERE kind = 'rdtsc'");
        assert!(n >= 24, "{mode}: {n} rdtsc events");
        for _ in 0..2 {
            let r = replay(&dir, &trace, &["--verify"]);
            assert_eq!(r.code, Some(0), "{mode}: {r:?}");
            assert_eq!(r.stdout, recorded.stdout, "{mode}");
            assert!(r.stderr.contains("replay verified"), "{mode}: {r:?}");
        }
    }
}

#[test]
fn a_missing_recorded_value_is_a_divergence() {
    let _serial = one_at_a_time();
    let dir = scratch("tsc-missing");
    let exe = fixture("rdtsc_clock");
    let (trace, recorded) = rec(&dir, &[exe.to_str().unwrap()], &["--trap-tsc"]);
    assert_eq!(recorded.code, Some(0), "{recorded:?}");
    let (tid, _, _) = worker_reads(&trace)[0];
    let gone = db(&trace)
        .execute(
            "DELETE FROM tsc_rows WHERE seq = (SELECT max(seq) FROM tsc_rows WHERE tid = ?1)",
            [tid],
        )
        .unwrap();
    assert_eq!(gone, 1);
    for extra in [&[][..], &["--verify"][..]] {
        let r = replay(&dir, &trace, extra);
        assert_ne!(r.code, Some(0), "{extra:?}: {r:?}");
        assert!(r.stderr.contains("replay diverged"), "{extra:?}: {r:?}");
        assert!(r.stderr.contains("TSC"), "{extra:?}: {r:?}");
        // The worker runs from the agent's instrumented copy of the code
        // (memory capture on): still named by its source line.
        assert!(
            r.stderr.contains("in worker") && r.stderr.contains("rdtsc_clock.c:"),
            "{extra:?}: {r:?}"
        );
    }
}

#[test]
fn without_trapping_nothing_is_recorded_and_older_traces_still_replay() {
    let _serial = one_at_a_time();
    let dir = scratch("tsc-native");
    let exe = fixture("rdtsc_clock");
    let (trace, recorded) = rec(&dir, &[exe.to_str().unwrap()], &[]);
    assert_eq!(recorded.code, Some(0), "{recorded:?}");
    assert_eq!(meta(&trace, "tsc").as_deref(), Some("native"));
    assert_eq!(count(&trace, "SELECT count(*) FROM tsc_rows"), 0);
    // `check` takes the recording options too.
    let checked = check(&dir, "c.db", &["--trap-tsc"], &[exe.to_str().unwrap()]);
    assert_eq!(checked.code, Some(0), "{checked:?}");
    assert_eq!(
        meta(&dir.join("c.db"), "tsc").as_deref(),
        Some("trap"),
        "{checked:?}"
    );
    // A schema-3 trace (no tsc_rows, the old `events` view) still reads
    // and replays: its program reads the counter natively, so only the
    // syscalls and the output are checked.
    let tail: String = recorded.stdout.lines().last().unwrap().into();
    db(&trace)
        .execute_batch(
            "DROP VIEW events; DROP VIEW tsc_reads; DROP TABLE tsc_rows;
             DELETE FROM meta WHERE key = 'tsc';
             CREATE VIEW events AS SELECT seq, ts_ns, pid, tid, 'spawn' AS kind, kind AS detail
                 FROM spawn_rows;
             PRAGMA user_version = 3;",
        )
        .unwrap();
    let ev = lockstep(&dir, &["events", trace.to_str().unwrap()]);
    assert_eq!(ev.code, Some(0), "{ev:?}");
    let r = replay(&dir, &trace, &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, recorded.stdout);
    assert_eq!(tail, "done");
}
