//! The analyses on real programs: each fixture of fixtures/ is recorded with
//! `lockstep check`, and the test asserts the finding kinds, severities,
//! threads and the file:line of every side (found through `/* MARKER */`
//! comments in the fixture's source, never hard-coded line numbers).

mod common;

use common::*;
use serde_json::Value;

/// Runs `lockstep check --format json` on a fixture; returns the findings.
fn check(fixture: &str, hangs: bool) -> Vec<Value> {
    let dir = scratch(&format!("analyses-{fixture}"));
    let bin = fixture_bin(fixture);
    let (run, findings) = check_json(&dir, &[bin.to_str().unwrap()]);
    assert_eq!(
        run.code,
        Some(if findings.is_empty() { 0 } else { 1 }),
        "{fixture}: {run:?}"
    );
    let hung = run.stderr.contains("hung");
    assert_eq!(
        hung, hangs,
        "{fixture}: hang detected = {hung}: {}",
        run.stderr
    );
    findings
}

fn fixture_bin(name: &str) -> std::path::PathBuf {
    fixture(name)
}

/// Asserts one finding of `kind`/`severity` points at every marker's line in the fixture.
fn expect(
    findings: &[Value],
    fixture: &str,
    kind: &str,
    severity: &str,
    markers: &[&str],
) -> Value {
    let file = format!("/fixtures/{fixture}.c");
    let lines: Vec<u64> = markers.iter().map(|m| marker_line(fixture, m)).collect();
    let found = findings.iter().find(|f| {
        f["kind"] == kind
            && f["severity"] == severity
            && lines.iter().all(|&l| {
                f["locations"].as_array().unwrap().iter().any(|loc| {
                    loc["line"].as_u64() == Some(l)
                        && loc["file"].as_str().is_some_and(|p| p.ends_with(&file))
                })
            })
    });
    found.cloned().unwrap_or_else(|| {
        panic!(
            "{fixture}: no {severity} {kind} at {markers:?} (lines {lines:?}) among {}",
            serde_json::to_string_pretty(findings).unwrap()
        )
    })
}

fn kinds(findings: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = findings
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

#[test]
fn abba_deadlock_names_both_threads_and_all_four_lines() {
    let f = check("abba_deadlock", true);
    assert_eq!(kinds(&f), ["deadlock:error"]);
    let d = expect(
        &f,
        "abba_deadlock",
        "deadlock",
        "error",
        &["LOCK-A-T1", "LOCK-B-T1", "LOCK-B-T2", "LOCK-A-T2"],
    );
    assert_eq!(d["tids"].as_array().unwrap().len(), 2);
}

#[test]
fn abba_inversion_joined_in_sequence_is_a_warning() {
    let f = check("abba_inversion", false);
    assert_eq!(kinds(&f), ["lock_order_inversion:warning"]);
    expect(
        &f,
        "abba_inversion",
        "lock_order_inversion",
        "warning",
        &["LOCK-A-T1", "LOCK-B-T1", "LOCK-B-T2", "LOCK-A-T2"],
    );
}

#[test]
fn abba_concurrent_without_hang_is_an_error() {
    let f = check("abba_concurrent_no_hang", false);
    assert_eq!(kinds(&f), ["lock_order_inversion:error"]);
    expect(
        &f,
        "abba_concurrent_no_hang",
        "lock_order_inversion",
        "error",
        &["LOCK-A-T1", "LOCK-B-T1", "LOCK-B-T2", "LOCK-A-T2"],
    );
}

#[test]
fn three_lock_cycles() {
    let f = check("three_lock_cycle", true);
    assert_eq!(kinds(&f), ["deadlock:error"]);
    let d = expect(
        &f,
        "three_lock_cycle",
        "deadlock",
        "error",
        &["LOCK-B-T1", "LOCK-C-T2", "LOCK-A-T3", "LOCK-A-T1"],
    );
    assert_eq!(d["tids"].as_array().unwrap().len(), 3);
    let f = check("three_lock_cycle_no_hang", false);
    assert_eq!(kinds(&f), ["lock_order_inversion:error"]);
    let d = expect(
        &f,
        "three_lock_cycle_no_hang",
        "lock_order_inversion",
        "error",
        &["LOCK-A-T1", "LOCK-B-T2", "LOCK-C-T3", "LOCK-A-T3"],
    );
    assert_eq!(d["details"]["cycle"].as_array().unwrap().len(), 3);
}

#[test]
fn bank_transfer_with_locks_inside_structs() {
    let f = check("bank_transfer_deadlock", true);
    assert_eq!(kinds(&f), ["deadlock:error"]);
    expect(
        &f,
        "bank_transfer_deadlock",
        "deadlock",
        "error",
        &["LOCK-FROM", "LOCK-TO"],
    );
    let f = check("bank_transfer", false);
    assert_eq!(
        kinds(&f),
        ["lock_order_inversion:warning"],
        "the threads run one after the other"
    );
    expect(
        &f,
        "bank_transfer",
        "lock_order_inversion",
        "warning",
        &["LOCK-FROM", "LOCK-TO"],
    );
}

#[test]
fn no_findings_for_correct_locking() {
    for fx in [
        "gate_lock",
        "consistent_order",
        "trylock_backoff",
        "recursive_ok",
        "prodcons",
        "pthread_condvar",
    ] {
        let f = check(fx, false);
        assert!(
            f.is_empty(),
            "{fx}: {}",
            serde_json::to_string_pretty(&f).unwrap()
        );
    }
}

#[test]
fn nested_monitor_is_a_deadlock_explained_as_such() {
    let f = check("nested_monitor", true);
    assert_eq!(
        kinds(&f),
        ["cond_wait_holding_lock:warning", "deadlock:error"]
    );
    let d = expect(
        &f,
        "nested_monitor",
        "deadlock",
        "error",
        &["COND-WAIT-N", "LOCK-M-A", "LOCK-M-B"],
    );
    assert!(d["summary"].as_str().unwrap().contains("nested monitor"));
    expect(
        &f,
        "nested_monitor",
        "cond_wait_holding_lock",
        "warning",
        &["COND-WAIT-N", "LOCK-M-A"],
    );
    let f = check("cond_wait_holding_other", false);
    assert_eq!(kinds(&f), ["cond_wait_holding_lock:warning"]);
    expect(
        &f,
        "cond_wait_holding_other",
        "cond_wait_holding_lock",
        "warning",
        &["COND-WAIT-HOLDING-X", "LOCK-X"],
    );
}

#[test]
fn self_deadlock_and_dining_philosophers() {
    let f = check("self_deadlock", true);
    assert!(
        kinds(&f).contains(&"self_deadlock:error".to_string()),
        "{f:?}"
    );
    expect(
        &f,
        "self_deadlock",
        "self_deadlock",
        "error",
        &["LOCK-2", "LOCK-1"],
    );
    let f = check("dining_philosophers", true);
    assert_eq!(kinds(&f), ["deadlock:error"]);
    let d = expect(
        &f,
        "dining_philosophers",
        "deadlock",
        "error",
        &["LEFT-FORK", "RIGHT-FORK"],
    );
    assert_eq!(d["tids"].as_array().unwrap().len(), 5);
}

#[test]
fn unlock_of_a_mutex_held_by_another_thread() {
    let f = check("unlock_not_held", false);
    assert_eq!(kinds(&f), ["unlock_not_held:error"]);
    expect(
        &f,
        "unlock_not_held",
        "unlock_not_held",
        "error",
        &["UNLOCK-NOT-HELD-T2", "LOCK-T1"],
    );
}

#[test]
fn stacks_of_code_without_frame_pointers_come_from_cfi_unwinding() {
    // Built with -O2 -fomit-frame-pointer: the agent learns per call site
    // that the frame-pointer walk skips frames and unwinds with .eh_frame
    // (gimli). Here the memory capture runs the code from relocated copies,
    // whose return addresses the unwinder maps back to the original code.
    deep_stacks(&check("deep_stack_no_fp", true));
}

#[test]
fn stacks_of_code_without_frame_pointers_without_memory_capture() {
    let fx = "deep_stack_no_fp";
    let dir = scratch("analyses-deep-stack-mem-off");
    let bin = fixture_bin(fx);
    let extra = [
        "--mem",
        "off",
        "--format",
        "json",
        "--report-file",
        "r.json",
    ];
    let run = common::check(&dir, "t.db", &extra, &[bin.to_str().unwrap()]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let text = std::fs::read_to_string(dir.join("r.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    deep_stacks(doc["findings"].as_array().unwrap());
}

/// Each waiting thread of deep_stack_no_fp's deadlock has a stack of at
/// least 3 frames at the fixture's lines: level2, level1, its own caller.
fn deep_stacks(f: &[Value]) {
    let fx = "deep_stack_no_fp";
    assert_eq!(kinds(f), ["deadlock:error"]);
    let d = expect(f, fx, "deadlock", "error", &["TAKE"]);
    let file = format!("{fx}.c");
    let line = |m: &str| format!("{file}:{}", marker_line(fx, m));
    let waits: Vec<&Value> = d["locations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["role"].as_str().unwrap().contains("waits for"))
        .collect();
    assert_eq!(waits.len(), 2);
    let mut seconds = Vec::new();
    for w in &waits {
        let stack: Vec<&str> = w["stack"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert!(stack.len() >= 3, "{stack:?}");
        assert!(
            stack[0].starts_with("level2 ") && stack[0].ends_with(&line("LEVEL2")),
            "{stack:?}"
        );
        assert!(
            stack[1].starts_with("level1 ") && stack[1].ends_with(&line("LEVEL1")),
            "{stack:?}"
        );
        for second in ["T1-SECOND", "T2-SECOND"] {
            if stack.iter().any(|s| s.ends_with(&line(second))) {
                seconds.push(second);
            }
        }
    }
    seconds.sort();
    assert_eq!(
        seconds,
        ["T1-SECOND", "T2-SECOND"],
        "each thread's own caller"
    );
}
