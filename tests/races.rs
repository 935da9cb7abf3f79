//! Data races end to end: real fixtures recorded by `lockstep check` with
//! the agent's instrumentation of the executable (the default), and the
//! `data_race` findings checked against the lines the fixtures mark.
//!
//! Besides the named tests, every `fixtures/race_*.c` must be reported at
//! each line marked `/* RACE */`, and every `fixtures/norace_*.c` (and the
//! correct sync fixtures) must get no `data_race` at all.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;

/// The data_race findings of `check` on fixture `name`.
fn races(name: &str) -> Vec<Value> {
    let exe = fixture(name);
    let dir = scratch(&format!("races-{name}"));
    let (run, findings) = check_json(&dir, &[exe.to_str().unwrap()]);
    assert!(run.code.is_some(), "{name}: check did not finish: {run:?}");
    findings
        .into_iter()
        .filter(|f| f["kind"] == "data_race")
        .collect()
}

/// (file name, line) of every location of a finding in `file`.
fn lines(f: &Value, file: &str) -> BTreeSet<u64> {
    f["locations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| {
            l["file"]
                .as_str()
                .is_some_and(|p| p.ends_with(&format!("/{file}.c")))
        })
        .filter_map(|l| l["line"].as_u64())
        .collect()
}

fn tids(f: &Value) -> BTreeSet<i64> {
    f["locations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["tid"].as_i64())
        .collect()
}

/// Lines of `name`.c that contain `/* RACE */`.
fn race_lines(name: &str) -> Vec<u64> {
    let src =
        std::fs::read_to_string(repo_root().join("fixtures").join(format!("{name}.c"))).unwrap();
    src.lines()
        .enumerate()
        .filter(|(_, l)| l.contains("/* RACE */"))
        .map(|(i, _)| i as u64 + 1)
        .collect()
}

fn fixtures_named(prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo_root().join("fixtures"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix) && n.ends_with(".c"))
        .map(|n| n.trim_end_matches(".c").to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn the_unlocked_counter_is_one_race_between_the_two_workers() {
    let found = races("counter_race");
    assert_eq!(
        found.len(),
        1,
        "one finding for the variable, not one per address: {found:#?}"
    );
    let f = &found[0];
    let inc = marker_line("counter_race", "COUNTER-INC");
    assert_eq!(lines(f, "counter_race"), BTreeSet::from([inc]), "{f:#}");
    assert_eq!(tids(f).len(), 2, "two different threads: {f:#}");
    assert!(
        f["summary"].as_str().unwrap().contains("counter"),
        "names the variable: {f:#}"
    );
    assert_eq!(f["severity"], "error");
}

#[test]
fn the_matrix_ikj_stack_bug_is_a_race_on_mains_stack() {
    let found = races("matrix_race");
    assert!(
        !found.is_empty(),
        "the &m of a loop-local struct is shared by every thread"
    );
    let on_stack: Vec<&Value> = found
        .iter()
        .filter(|f| f["summary"].as_str().unwrap().contains("stack of thread"))
        .collect();
    assert!(!on_stack.is_empty(), "named as stack memory: {found:#?}");
    let marked: BTreeSet<u64> = ["M-WRITE", "M-READ-SZ", "M-READ-ROW", "M-READ-MULT"]
        .iter()
        .map(|m| marker_line("matrix_race", m))
        .collect();
    let reported: BTreeSet<u64> = found.iter().flat_map(|f| lines(f, "matrix_race")).collect();
    assert!(
        !reported.is_disjoint(&marked) || reported.contains(&marker_line("matrix_race", "C-ACCUM")),
        "reported at the struct's or the row's accesses: {reported:?}"
    );
}

#[test]
fn the_matrix_kij_race_on_c_names_the_calloc_block() {
    let found = races("matrix_kij_race");
    let accum = marker_line("matrix_kij_race", "C-ACCUM");
    let f = found
        .iter()
        .find(|f| lines(f, "matrix_kij_race").contains(&accum))
        .unwrap_or_else(|| panic!("a race at C-ACCUM: {found:#?}"));
    let summary = f["summary"].as_str().unwrap();
    let calloc = marker_line("matrix_kij_race", "CALLOC-C");
    assert!(
        summary.contains("heap block") && summary.contains(&format!("matrix_kij_race.c:{calloc}")),
        "the heap block and its allocation site: {summary}"
    );
}

#[test]
fn correct_programs_have_no_races() {
    let mut clean = vec![
        "matrix_race_fixed".to_string(),
        "counter_locked".to_string(),
        "prodcons".to_string(),
        "barrier".to_string(),
        "semaphores".to_string(),
        "rwlock".to_string(),
        "pthread_condvar".to_string(),
        "spinlock".to_string(),
    ];
    clean.extend(fixtures_named("norace_"));
    for name in &clean {
        let found = races(name);
        assert!(
            found.is_empty(),
            "{name}: no data race expected, got {found:#?}"
        );
    }
}

#[test]
fn every_marked_race_is_reported() {
    for name in fixtures_named("race_") {
        let want = race_lines(&name);
        assert!(
            !want.is_empty(),
            "{name}.c marks its racing lines with /* RACE */"
        );
        let found = races(&name);
        let got: BTreeSet<u64> = found.iter().flat_map(|f| lines(f, &name)).collect();
        for line in want {
            assert!(
                got.contains(&line),
                "{name}.c:{line} not reported; got lines {got:?}: {found:#?}"
            );
        }
    }
}

#[test]
fn reports_of_one_trace_are_identical_run_to_run() {
    // Several pairs of sites race on `balance` (load and store of both
    // increments): which one the finding shows must not depend on the
    // iteration order of a hash map.
    let exe = fixture("race_inconsistent_locks");
    let dir = scratch("races-deterministic");
    let (trace, run) = record(&dir, exe.to_str().unwrap(), &[]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let reports: Vec<String> = (0..5)
        .map(|_| {
            let r = lockstep(
                &dir,
                &["report", trace.to_str().unwrap(), "--format", "json"],
            );
            assert_eq!(r.code, Some(1), "{r:?}");
            r.stdout
        })
        .collect();
    for r in &reports[1..] {
        assert_eq!(r, &reports[0], "two reports of one trace differ");
    }
    let doc: Value = serde_json::from_str(&reports[0]).unwrap();
    let races: Vec<&Value> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "data_race")
        .collect();
    assert_eq!(races.len(), 1, "{races:#?}");
    // The shown pair is the write/write one.
    let acc = races[0]["details"]["accesses"].as_array().unwrap();
    assert_eq!(
        (&acc[0]["access"], &acc[1]["access"]),
        (&"write".into(), &"write".into())
    );
}

#[test]
fn readv_into_a_shared_buffer_races_with_an_unsynchronized_reader() {
    let found = races("race_readv");
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = &found[0];
    let acc = f["details"]["accesses"].as_array().unwrap();
    let kernel = acc
        .iter()
        .find(|a| a["via"] == "readv(2)")
        .unwrap_or_else(|| panic!("no readv side: {f:#}"));
    assert_eq!(kernel["access"], "write", "{f:#}");
    let other = acc.iter().find(|a| a["via"] != "readv(2)").unwrap();
    assert_eq!(other["access"], "read");
    assert_eq!(other["line"], marker_line("race_readv", "RACE"), "{f:#}");
    assert_ne!(kernel["tid"], other["tid"]);
    assert!(
        f["summary"].as_str().unwrap().contains("readv(2)"),
        "{}",
        f["summary"]
    );
    assert_eq!(f["details"]["variable"], "msg");
    assert_eq!(f["details"]["bytes"], 32, "both iovec buffers race: {f:#}");
}

#[test]
fn readv_then_join_then_read_is_clean() {
    let found = races("norace_readv_join");
    assert!(found.is_empty(), "{found:#?}");
}
