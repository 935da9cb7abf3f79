//! Test harness: compiles fixtures with the system gcc, runs `lockstep`
//! under a hard timeout, and opens the traces it writes.

#![allow(dead_code)]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const LOCKSTEP: &str = env!("CARGO_BIN_EXE_lockstep");

/// The default hard timeout of one lockstep run in a test.
pub const TIMEOUT: Duration = Duration::from_secs(60);

static COMPILE: Mutex<()> = Mutex::new(());

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

/// Compiles `fixtures/<name>.c` (once per test run, unless the source is
/// newer) with `gcc -g -O0 -pthread` and returns the binary.
pub fn fixture(name: &str) -> PathBuf {
    let _g = COMPILE.lock().unwrap_or_else(|e| e.into_inner());
    let src = repo_root().join("fixtures").join(format!("{name}.c"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
    std::fs::create_dir_all(&dir).expect("create fixture dir");
    let bin = dir.join(name);
    let stale = match (std::fs::metadata(&src), std::fs::metadata(&bin)) {
        (Ok(s), Ok(b)) => s.modified().unwrap() > b.modified().unwrap(),
        (Ok(_), Err(_)) => true,
        (Err(e), _) => panic!("{}: {e}", src.display()),
    };
    if stale {
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        // A first line `// lockstep-build: FLAGS` adds compiler flags (e.g. -static).
        let text = std::fs::read_to_string(&src).expect("read fixture");
        let extra: Vec<&str> = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("// lockstep-build:"))
            .map(|f| f.split_whitespace().collect())
            .unwrap_or_default();
        let out = Command::new("gcc")
            .args(["-g", "-O0", "-pthread"])
            .args(&extra)
            .arg("-o")
            .arg(&tmp)
            .arg(&src)
            .output()
            .expect("run gcc");
        assert!(
            out.status.success(),
            "gcc {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&tmp, &bin).expect("install fixture");
    }
    bin
}

/// A finished command.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// A fresh scratch directory for one test.
pub fn scratch(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("scratch")
        .join(test);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

/// Starts `lockstep ARGS` in `dir`, in its own process group so that a
/// timeout can kill everything it started.
pub fn spawn(dir: &Path, args: &[&str]) -> Child {
    spawn_command(Command::new(LOCKSTEP).args(args), dir)
}

/// Starts `cmd` in `dir` with no stdin, piped output, in its own process
/// group (what [`finish`] expects).
pub fn spawn_command(cmd: &mut Command, dir: &Path) -> Child {
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn")
}

/// Runs `lockstep check -q --hang-timeout 1 --force -o TRACE EXTRA... --
/// ARGV` in `dir` under the default timeout (the report goes to stdout
/// unless EXTRA names a file).
pub fn check(dir: &Path, trace: &str, extra: &[&str], argv: &[&str]) -> Run {
    let mut a = vec!["check", "-q", "--hang-timeout", "1", "--force", "-o", trace];
    a.extend_from_slice(extra);
    a.push("--");
    a.extend_from_slice(argv);
    lockstep(dir, &a)
}

/// Waits for `child` at most `timeout`; on timeout kills its process group
/// and fails the test.
pub fn finish(mut child: Child, timeout: Duration) -> Run {
    // Drain both pipes while waiting: a full pipe would block lockstep.
    let drain = |p: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = p {
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait lockstep") {
            break st;
        }
        if start.elapsed() > timeout {
            // SAFETY: kill(2) on the process group we created.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!("lockstep did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = out.join().expect("stdout reader");
    let stderr = err.join().expect("stderr reader");
    Run {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// Runs `lockstep ARGS` in `dir` under the default timeout.
pub fn lockstep(dir: &Path, args: &[&str]) -> Run {
    finish(spawn(dir, args), TIMEOUT)
}

/// Records `program args` into `dir/trace.db`, asserting the recorder
/// itself succeeded (any program exit status is returned).
pub fn record(dir: &Path, program: &str, args: &[&str]) -> (PathBuf, Run) {
    let trace = dir.join("trace.db");
    let mut a = vec![
        "record",
        "-q",
        "--force",
        "-o",
        trace.to_str().unwrap(),
        "--",
        program,
    ];
    a.extend_from_slice(args);
    let run = lockstep(dir, &a);
    assert!(trace.exists(), "no trace written: {run:?}");
    (trace, run)
}

/// Runs an inspection command with `--json` and parses its output.
pub fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let run = lockstep(dir, &a);
    assert_eq!(run.code, Some(0), "{args:?} failed: {run:?}");
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: bad JSON ({e}): {}", run.stdout))
}

/// `lockstep events --json` as a list of objects.
pub fn events(dir: &Path, trace: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut a = vec!["events", trace.to_str().unwrap(), "--json"];
    a.extend_from_slice(extra);
    let run = lockstep(dir, &a);
    assert_eq!(run.code, Some(0), "events failed: {run:?}");
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// Syscall events of one name.
pub fn syscalls<'a>(evs: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    evs.iter()
        .filter(|e| e["kind"] == "syscall" && e["name"] == name)
        .collect()
}

/// The line of `/* MARKER */` in fixtures/<fixture>.c (markers appear once).
pub fn marker_line(fixture: &str, marker: &str) -> u64 {
    let src =
        std::fs::read_to_string(repo_root().join("fixtures").join(format!("{fixture}.c"))).unwrap();
    let needle = format!("/* {marker} */");
    let hits: Vec<usize> = src
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(&needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "{fixture}.c: marker {marker} must appear once"
    );
    hits[0] as u64
}

/// Runs `lockstep check --hang-timeout 1 --format json --report-file r.json
/// -o t.db -- ARGV` in `dir` (the program's own output goes to stdout, the
/// report to its file) and returns the run and the report's findings.
pub fn check_json(dir: &Path, argv: &[&str]) -> (Run, Vec<serde_json::Value>) {
    let mut a = vec![
        "check",
        "-q",
        "--hang-timeout",
        "1",
        "--format",
        "json",
        "--report-file",
        "r.json",
        "-o",
        "t.db",
        "--",
    ];
    a.extend_from_slice(argv);
    let run = finish(spawn(dir, &a), Duration::from_secs(60));
    let text = std::fs::read_to_string(dir.join("r.json"))
        .unwrap_or_else(|e| panic!("{argv:?}: no report ({e}): {run:?}"));
    let doc: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{argv:?}: bad JSON ({e}): {text}"));
    let findings = doc["findings"].as_array().expect("findings array").clone();
    (run, findings)
}

/// Replays run one at a time (within a test binary): a replay binds itself
/// and the program to one CPU and declares a stall after seconds without
/// progress, which a concurrent recording on the same CPU (a spin-wait,
/// say) can provoke.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records `argv` with the options `extra` into `dir/trace.db` (the
/// recorder must succeed; any program exit status is returned).
pub fn rec(dir: &Path, argv: &[&str], extra: &[&str]) -> (PathBuf, Run) {
    let trace = dir.join("trace.db");
    let mut a = vec!["record", "-q", "--force", "-o", trace.to_str().unwrap()];
    a.extend_from_slice(extra);
    a.push("--");
    a.extend_from_slice(argv);
    let run = lockstep(dir, &a);
    assert!(trace.exists(), "no trace: {run:?}");
    (trace, run)
}

/// `lockstep replay TRACE EXTRA...` in `dir`.
pub fn replay(dir: &Path, trace: &Path, extra: &[&str]) -> Run {
    let mut a = vec!["replay", trace.to_str().unwrap()];
    a.extend_from_slice(extra);
    lockstep(dir, &a)
}
