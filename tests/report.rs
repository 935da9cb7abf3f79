//! The report formats on recorded fixtures: the text report's blocks
//! (source lines, locks held, hints, summary, the trace named last by
//! `check`, no colour in a pipe), `check` without `-o` (a temporary trace),
//! SARIF validated against the SARIF 2.1.0 schema, and the progress line
//! of a long recording and the analysis bar of a large report on a
//! terminal (through `script`'s pty; never in JSON), and the data race and
//! priority inversion blocks (both sides, locks held, the lock to use,
//! PTHREAD_PRIO_INHERIT on the named mutex) in text, JSON and SARIF.

mod common;

use common::{finish, fixture, lockstep, marker_line, scratch, LOCKSTEP};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn text_report_has_stacks_source_lines_locks_hint_and_names_the_trace_last() {
    let dir = scratch("report_text");
    let bin = fixture("abba_deadlock");
    let run = common::check(&dir, "t.db", &[], &[s(&bin)]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let out = &run.stdout;
    assert!(!out.contains('\x1b'), "no colour in a pipe: {out}");
    assert!(out.contains("lockstep ERROR: deadlock: thread"), "{out}");
    // Both sides, each with its frame #0 at the fixture's line and the
    // source line itself.
    for marker in ["LOCK-A-T1", "LOCK-B-T1", "LOCK-A-T2", "LOCK-B-T2"] {
        let line = marker_line("abba_deadlock", marker);
        assert!(
            out.contains(&format!("abba_deadlock.c:{line}")),
            "{marker} at line {line}: {out}"
        );
        assert!(
            out.lines()
                .any(|l| l.contains(&format!("{line} |")) && l.contains(&format!("/* {marker} */"))),
            "source line of {marker}: {out}"
        );
    }
    assert!(
        out.contains("    #0 t1_main ") && out.contains("    #0 t2_main "),
        "{out}"
    );
    let held = out
        .lines()
        .find(|l| l.starts_with("  locks held: "))
        .unwrap_or_else(|| panic!("locks held: {out}"));
    assert!(
        held.contains(": mutex A") && held.contains(": mutex B"),
        "{held}"
    );
    let hint = out
        .lines()
        .find(|l| l.starts_with("  hint: "))
        .unwrap_or_else(|| panic!("hint: {out}"));
    assert!(
        hint.contains("take mutex A before mutex B everywhere")
            && hint.contains("holds mutex B")
            && hint.contains("then takes mutex A"),
        "{hint}"
    );
    let lines: Vec<&str> = out.lines().collect();
    let n = lines.len();
    assert!(
        lines[n - 2].starts_with("lockstep: 1 finding: 1 error, 0 warnings, 0 notes in `"),
        "{}",
        lines[n - 2]
    );
    assert_eq!(lines[n - 1], "trace: t.db  (lockstep replay t.db)");

    // `report` prints the same blocks and ends with the summary.
    let rep = lockstep(&dir, &["report", "t.db"]);
    assert_eq!(rep.code, Some(1));
    assert!(rep
        .stdout
        .lines()
        .last()
        .unwrap()
        .starts_with("lockstep: 1 finding: "));
    assert!(rep.stdout.contains(hint));

    // A report file gets the report; stderr still names the trace last.
    // (Not quiet: -q would leave the trace line out.)
    let run = lockstep(
        &dir,
        &[
            "check",
            "--hang-timeout",
            "1",
            "--force",
            "-o",
            "t.db",
            "--report-file",
            "r.txt",
            "--",
            s(&bin),
        ],
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    let text = std::fs::read_to_string(dir.join("r.txt")).unwrap();
    assert!(
        text.contains("hint: take mutex A before mutex B everywhere") && !text.contains('\x1b'),
        "{text}"
    );
    assert_eq!(
        run.stderr.lines().last().unwrap(),
        "lockstep: trace: t.db  (lockstep replay t.db)"
    );
}

#[test]
fn fd_hints_name_the_fd_the_process_and_the_pipe_end() {
    let dir = scratch("report_fd_hints");
    let run = common::check(&dir, "t.db", &[], &[s(&fixture("pipe_leak_hang"))]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let hints: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("  hint: "))
        .collect();
    assert!(
        hints.iter().any(|h| h.contains("close fd 4 in pid ")),
        "{hints:?}"
    );
    let run = lockstep(
        &dir,
        &[
            "check",
            "-q",
            "--force",
            "-o",
            "e.db",
            "--",
            s(&fixture("pipe_ebadf")),
        ],
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout
            .contains("hint: dup2(3, 1) put the read end on fd 1, but write() needs the write end"),
        "{}",
        run.stdout
    );
}

#[test]
fn check_without_o_records_into_a_temporary_trace_it_names_last() {
    let dir = scratch("check_tmp");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let child = common::spawn_command(
        Command::new(LOCKSTEP)
            .args(["check", "-q", "--", s(&fixture("pipe_correct"))])
            .env("TMPDIR", &tmp),
        &dir,
    );
    let run = finish(child, Duration::from_secs(60));
    assert_eq!(run.code, Some(0), "{run:?}");
    let last = run.stdout.lines().last().unwrap();
    let path = last
        .strip_prefix("trace: ")
        .and_then(|r| r.split("  (lockstep replay ").next())
        .unwrap_or_else(|| panic!("{last}"));
    assert!(
        last.ends_with(&format!("(lockstep replay {path})")),
        "{last}"
    );
    let uid = unsafe { libc::getuid() };
    assert!(
        Path::new(path).starts_with(tmp.join(format!("lockstep-{uid}"))),
        "{path}"
    );
    assert!(Path::new(path).exists(), "{path}");
    assert!(!dir.join("lockstep-traces").exists(), "nothing in the cwd");
    let ps = common::json(&dir, &["ps", path]);
    assert_eq!(ps.as_array().unwrap().len(), 3, "{ps}");
}

/// Validates `doc` against the vendored SARIF 2.1.0 schema.
fn validate_sarif(doc: &Value) {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("cli/tests/data/sarif-schema-2.1.0.json"))
            .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft7::new(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "SARIF schema errors: {errors:#?}\n{doc:#}"
    );
}

#[test]
fn sarif_is_valid_with_rules_levels_locations_and_related_locations() {
    let dir = scratch("report_sarif");
    let (trace, _) = common::record(&dir, s(&fixture("abba_concurrent_no_hang")), &[]);
    // Run from the repository root: the fixture's path becomes relative.
    let run = lockstep(repo_root(), &["report", s(&trace), "--format", "sarif"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    validate_sarif(&doc);
    // The validator is live: a level SARIF does not know is refused.
    let mut bad = doc.clone();
    bad["runs"][0]["results"][0]["level"] = "fatal".into();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("cli/tests/data/sarif-schema-2.1.0.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(!jsonschema::draft7::new(&schema).unwrap().is_valid(&bad));
    assert_eq!(doc["version"], "2.1.0");
    let sarif_run = &doc["runs"][0];
    let rules = sarif_run["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["id"], "lock_order_inversion");
    assert!(rules[0]["help"]["text"]
        .as_str()
        .unwrap()
        .contains("How to fix it"));
    let r = &sarif_run["results"][0];
    assert_eq!(r["ruleId"], "lock_order_inversion");
    assert_eq!(r["level"], "error");
    let loc = &r["locations"][0]["physicalLocation"];
    assert_eq!(
        loc["artifactLocation"]["uri"],
        "fixtures/abba_concurrent_no_hang.c"
    );
    assert_eq!(loc["artifactLocation"]["uriBaseId"], "SRCROOT");
    assert_eq!(
        loc["region"]["startLine"],
        marker_line("abba_concurrent_no_hang", "LOCK-A-T1")
    );
    let related: Vec<u64> = r["relatedLocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["physicalLocation"]["region"]["startLine"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let mut want: Vec<u64> = ["LOCK-B-T1", "LOCK-B-T2", "LOCK-A-T2"]
        .iter()
        .map(|m| marker_line("abba_concurrent_no_hang", m))
        .collect();
    let mut got = related.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);

    // Pipe findings: locations without code (a blocked read) are related
    // locations with a message only; the document stays valid.
    let run = common::check(
        &dir,
        "p.db",
        &["--format", "sarif", "--report-file", "p.sarif"],
        &[s(&fixture("pipe_leak_hang"))],
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout.is_empty(),
        "the report went to the file: {}",
        run.stdout
    );
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("p.sarif")).unwrap()).unwrap();
    validate_sarif(&doc);
    let levels: Vec<&str> = doc["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["level"].as_str().unwrap())
        .collect();
    assert!(levels.iter().all(|l| *l == "error"), "{levels:?}");
    let ids: Vec<&str> = doc["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"fd_leak") && ids.contains(&"deadlock"),
        "{ids:?}"
    );
}

/// Runs `lockstep ARGS` on a pseudo-terminal (util-linux `script`), so
/// that stderr is a TTY; returns everything it wrote.
fn on_a_tty(dir: &Path, args: &str) -> String {
    let child = common::spawn_command(
        Command::new("script").args(["-qefc", &format!("{LOCKSTEP} {args}"), "/dev/null"]),
        dir,
    );
    finish(child, Duration::from_secs(60)).stdout
}

#[test]
fn a_long_recording_shows_progress_on_a_tty_only() {
    if Command::new("script").arg("--version").output().is_err() {
        println!("SKIPPED: util-linux `script` is not installed");
        return;
    }
    let dir = scratch("progress");
    let out = on_a_tty(&dir, "record -o t.db -- sh -c 'sleep 3'");
    assert!(
        out.contains("\r\x1b[Klockstep: recording ")
            && out.contains(" processes, ")
            && out.contains(" events ("),
        "{out:?}"
    );
    // The final summary line replaces the status line.
    assert!(out.contains("\r\x1b[Klockstep: recorded "), "{out:?}");
    // -q: nothing; and not on a pipe.
    let out = on_a_tty(&dir, "record -q --force -o t.db -- sh -c 'sleep 3'");
    assert!(!out.contains("recording"), "{out:?}");
    let run = lockstep(
        &dir,
        &[
            "record", "--force", "-o", "t.db", "--", "sh", "-c", "sleep 3",
        ],
    );
    assert!(!run.stderr.contains("recording"), "{:?}", run.stderr);
}

#[test]
fn a_large_report_shows_a_progress_bar_on_a_tty_never_in_json() {
    if Command::new("script").arg("--version").output().is_err() {
        println!("SKIPPED: util-linux `script` is not installed");
        return;
    }
    let dir = scratch("progress_report");
    let (trace, run) = common::record(&dir, s(&fixture("pthread_mutex_loop")), &["200000"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let t = s(&trace);
    let out = on_a_tty(&dir, &format!("report {t}"));
    // Which phases get a frame depends on the machine's speed: some does.
    assert!(out.contains("\r\x1b[Klockstep: analysing: "), "{out:?}");
    // The bar's line is cleared before the report's own summary.
    let summary = out.find("lockstep: 0 findings").expect("the summary");
    assert!(out[..summary].ends_with("\r\x1b[K\x1b[1m"), "{out:?}");
    // JSON on a terminal: the document and nothing else (stdout and
    // stderr are one pty here).
    let out = on_a_tty(&dir, &format!("report {t} --format json"));
    assert!(!out.contains("analysing"), "{out:?}");
    let doc: Value = serde_json::from_str(&out.replace("\r\n", "\n")).unwrap();
    assert_eq!(doc["findings"], serde_json::json!([]));
    // -q on a terminal: no bar.
    let out = on_a_tty(&dir, &format!("report -q {t}"));
    assert!(!out.contains("analysing"), "{out:?}");
}

/// Every finding and location has the contract's fields (PRODUCT.md).
fn assert_contract(doc: &Value) {
    assert!(
        doc["trace"].is_string() && doc["command"].is_array(),
        "{doc}"
    );
    for f in doc["findings"].as_array().unwrap() {
        for key in ["kind", "severity", "summary"] {
            assert!(f[key].is_string(), "{key}: {f}");
        }
        assert!(["error", "warning", "note"].contains(&f["severity"].as_str().unwrap()));
        assert!(f["pids"].is_array() && f["tids"].is_array() && f["details"].is_object());
        for l in f["locations"].as_array().unwrap() {
            let o = l.as_object().unwrap();
            for key in ["role", "pid", "tid", "function", "file", "line", "address"] {
                assert!(o.contains_key(key), "{key} missing: {l}");
            }
        }
    }
}

/// The `  PREFIX...` line of a text report.
fn line_of<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line: {out}"))
}

#[test]
fn data_race_reports_name_the_lock_to_use_in_text_json_and_sarif() {
    let dir = scratch("report_race");
    // The writer holds m, the reader does not: the hint says take m there.
    let run = common::check(&dir, "r.db", &[], &[s(&fixture("race_check_then_use"))]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let out = &run.stdout;
    assert!(
        out.contains("lockstep ERROR: data race on current"),
        "{out}"
    );
    assert!(
        out.contains("    #0 reader ") && out.contains("    #0 writer "),
        "{out}"
    );
    let src = out
        .lines()
        .filter(|l| l.contains(" | ") && l.contains("/* RACE */"));
    assert_eq!(src.count(), 2, "both source lines: {out}");
    let held = line_of(out, "  locks held: ");
    assert!(
        held.contains(": none") && held.contains(": mutex m"),
        "{held}"
    );
    let hint = line_of(out, "  hint: ");
    assert!(
        hint.contains("protect `current` with mutex m: thread ")
            && hint.contains(" reads it at race_check_then_use.c:")
            && hint.contains("take mutex m there too"),
        "{hint}"
    );
    let rep = lockstep(&dir, &["report", "r.db", "--format", "json"]);
    let doc: Value = serde_json::from_str(&rep.stdout).unwrap();
    assert_contract(&doc);
    let race = &doc["findings"][0];
    assert_eq!(race["kind"], "data_race");
    let accesses = race["details"]["accesses"].as_array().unwrap();
    assert_eq!(accesses.len(), 2);
    for a in accesses {
        assert!(race["tids"].as_array().unwrap().contains(&a["tid"]));
        assert!(a["locks_held"].is_array(), "{a}");
    }
    let rep = lockstep(&dir, &["report", "r.db", "--format", "sarif"]);
    let sarif: Value = serde_json::from_str(&rep.stdout).unwrap();
    validate_sarif(&sarif);
    let r = &sarif["runs"][0]["results"][0];
    assert_eq!(r["ruleId"], "data_race");
    assert_eq!(r["relatedLocations"].as_array().unwrap().len(), 1, "{r}");
    assert!(r["message"]["text"]
        .as_str()
        .unwrap()
        .contains("with mutex m"));

    // Each side holds a different lock: use one of them in both.
    let run = common::check(&dir, "i.db", &[], &[s(&fixture("race_inconsistent_locks"))]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let hint = line_of(&run.stdout, "  hint: ");
    assert!(
        hint.contains("protect `balance` with one mutex")
            && hint.contains("mutex m1")
            && hint.contains("mutex m2")
            && hint.contains("different locks do not exclude each other"),
        "{hint}"
    );
}

#[test]
fn priority_inversion_report_names_h_l_m_the_mutex_and_prio_inherit() {
    let dir = scratch("report_inversion");
    let run = common::check(&dir, "p.db", &[], &[s(&fixture("mars_pathfinder"))]);
    if run.stdout.contains("SCHED_FIFO not permitted") {
        println!("SKIPPED: SCHED_FIFO not permitted here");
        return;
    }
    assert_eq!(run.code, Some(1), "{run:?}");
    let out = &run.stdout;
    let rep = lockstep(&dir, &["report", "p.db", "--format", "json"]);
    let doc: Value = serde_json::from_str(&rep.stdout).unwrap();
    assert_contract(&doc);
    let inv = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "priority_inversion")
        .unwrap_or_else(|| panic!("no inversion: {out}"));
    let tid = |k: &str| inv["details"][k]["tid"].as_i64().unwrap();
    let (h, l, m) = (tid("high"), tid("low"), tid("medium"));
    for (t, part, marker) in [
        (h, "high, SCHED_FIFO 30) waits for mutex bus", "LOCK-BUS-H"),
        (l, "low, SCHED_FIFO 10) holds mutex bus", "LOCK-BUS-L"),
        (m, "medium, SCHED_FIFO 20) runs meanwhile", ""),
    ] {
        assert!(
            out.contains(&format!("  thread {t} ({part}")),
            "{part}: {out}"
        );
        if !marker.is_empty() {
            let n = marker_line("mars_pathfinder", marker);
            assert!(
                out.contains(&format!("mars_pathfinder.c:{n}")),
                "{marker}: {out}"
            );
        }
    }
    assert_eq!(
        line_of(out, "  locks held: "),
        format!("  locks held: thread {l}: mutex bus")
    );
    let hint = line_of(out, "  hint: ");
    assert!(
        hint.contains("make mutex bus a priority-inheritance mutex")
            && hint.contains("PTHREAD_PRIO_INHERIT")
            && hint.contains("pthread_mutex_init(&bus, &attr)")
            && hint.contains(&format!("ahead of thread {m}")),
        "{hint}"
    );
    let rep = lockstep(&dir, &["report", "p.db", "--format", "sarif"]);
    let sarif: Value = serde_json::from_str(&rep.stdout).unwrap();
    validate_sarif(&sarif);
    let r = &sarif["runs"][0]["results"][0];
    assert_eq!(r["ruleId"], "priority_inversion");
    let related: Vec<&str> = r["relatedLocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["message"]["text"].as_str().unwrap())
        .collect();
    assert!(
        related
            .iter()
            .any(|t| t.contains("(low, SCHED_FIFO 10) holds mutex bus"))
            && related
                .iter()
                .any(|t| t.contains("(medium, SCHED_FIFO 20)")),
        "{related:?}"
    );
    // explain: each kind once, this one with its fix and example.
    let list = lockstep(&dir, &["explain"]).stdout;
    assert_eq!(list.matches("  data_race ").count(), 1, "{list}");
    let e = lockstep(&dir, &["explain", "priority_inversion"]).stdout;
    assert!(
        e.contains("PTHREAD_PRIO_INHERIT") && e.contains("Example:"),
        "{e}"
    );
}

#[test]
fn lock_misuse_and_hang_hints_name_the_lock_and_the_waits() {
    let dir = scratch("report_misuse");
    let run = common::check(&dir, "s.db", &[], &[s(&fixture("self_deadlock"))]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let out = &run.stdout;
    assert!(
        out.contains(" locks mutex m again while holding it"),
        "{out}"
    );
    let hints: Vec<&str> = out.lines().filter(|l| l.starts_with("  hint: ")).collect();
    assert!(
        hints
            .iter()
            .any(|h| h.contains("do not lock mutex m again")),
        "{hints:?}"
    );
    assert!(
        hints
            .iter()
            .any(|h| h.contains(" waits in pthread_join") && h.contains("nothing left will wake")),
        "{hints:?}"
    );
}
