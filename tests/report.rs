//! The report formats on recorded fixtures: the text report's blocks
//! (source lines, locks held, hints, summary, the trace named last by
//! `check`, no colour in a pipe), `check` without `-o` (a temporary trace),
//! SARIF validated against the SARIF 2.1.0 schema, and the progress line
//! of a long recording on a terminal (through `script`'s pty).

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
