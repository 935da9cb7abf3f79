//! The HTML report in a real browser: `check --format html` and `report
//! --format html -o` on recorded fixtures (a lock deadlock and a pipeline
//! fd leak) write one self-contained page with the three pictures; a data
//! race has both accesses marked on the timeline and a priority inversion
//! its H, L and M rows labelled under the inversion's band; Debian's
//! headless chromium loads it without console errors (the page's script
//! sets a marker once it ran) and takes a screenshot into the target
//! directory. Skipped, with a message, only when chromium is not installed
//! (.ci/run installs it).

mod common;

use common::{fixture, lockstep, scratch};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The chromium binary, if installed.
fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
}

/// What one headless chromium run printed.
struct Browser {
    stdout: String,
    stderr: String,
}

/// Runs headless chromium on `page` with `extra` flags, in its own process
/// group, under a timeout; kills the whole group afterwards so that no
/// chromium process outlives the test.
fn run_chromium(bin: &Path, page: &Path, extra: &[&str], profile: &Path) -> Browser {
    let _ = std::fs::remove_dir_all(profile);
    std::fs::create_dir_all(profile).unwrap();
    let mut child = common::spawn_command(
        Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(format!("file://{}", page.display())),
        profile,
    );
    let pgid = child.id() as i32;
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > Duration::from_secs(90) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // SAFETY: kill(2) on the process group chromium was started in
    // (helpers it left behind, or chromium itself after a timeout).
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    let status = status.unwrap_or_else(|| panic!("chromium did not finish in 90 s: {stderr}"));
    assert!(status.success(), "chromium failed: {status:?}\n{stderr}");
    let _ = std::fs::remove_dir_all(profile);
    Browser { stdout, stderr }
}

/// Static checks: one file, no network, the three pictures.
fn assert_self_contained(html: &str) {
    assert!(html.starts_with("<!DOCTYPE html>"));
    for banned in [
        "http://", "https://", "<link", "src=", "@import", "url(http",
    ] {
        assert!(!html.contains(banned), "the page references {banned}");
    }
    for id in ["id=\"timeline\"", "id=\"lockgraph\"", "id=\"proctree\""] {
        let present = html.contains(id);
        // The lock graph may be a note instead of a picture.
        assert!(present || id.contains("lockgraph"), "{id} missing");
    }
}

/// Loads `page` in chromium: no console errors, the script ran, a
/// screenshot is taken to `png`.
fn assert_loads_cleanly(chrome: &Path, page: &Path, png: &Path, work: &Path) {
    let dom = run_chromium(chrome, page, &["--dump-dom"], &work.join("profile-dom"));
    assert!(
        dom.stdout.contains("data-rendered=\"ok\""),
        "the page's script did not finish: {}",
        &dom.stdout[..dom.stdout.len().min(400)]
    );
    for l in dom.stderr.lines() {
        assert!(
            !l.contains("Uncaught") && !l.contains(":CONSOLE("),
            "console message: {l}"
        );
    }
    let _ = std::fs::remove_file(png);
    let shot = run_chromium(
        chrome,
        page,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,2000",
            "--hide-scrollbars",
        ],
        &work.join("profile-shot"),
    );
    let bytes =
        std::fs::read(png).unwrap_or_else(|e| panic!("no screenshot ({e}): {}", shot.stderr));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 30_000,
        "screenshot too small: {} bytes",
        bytes.len()
    );
}

#[test]
fn html_report_is_self_contained_and_loads_in_headless_chromium() {
    let dir = scratch("html");
    // A lock deadlock: timeline spans and the A/B cycle.
    let run = common::check(
        &dir,
        "abba.db",
        &["--format", "html", "--report-file", "abba.html"],
        &[s(&fixture("abba_deadlock"))],
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let html = std::fs::read_to_string(dir.join("abba.html")).unwrap();
    assert_self_contained(&html);
    let graph = &html[html.find("id=\"lockgraph\"").expect("lock graph")..];
    let graph = &graph[..graph.find("</svg>").unwrap()];
    assert!(
        graph.contains(">mutex A</text>") && graph.contains(">mutex B</text>"),
        "{graph}"
    );
    assert_eq!(
        graph.matches("class=\"edge cycle\"").count(),
        2,
        "A→B and B→A"
    );
    let timeline = &html[html.find("id=\"timeline\"").unwrap()..];
    let timeline = &timeline[..timeline.find("</svg>").unwrap()];
    assert_eq!(timeline.matches("data-tid=").count(), 3, "main + 2 threads");
    assert!(timeline.contains("class=\"held hl\"") && timeline.contains("class=\"blk hl\""));
    assert!(html.contains("LOCK-B-T1"), "source snippets");

    // A pipeline leak, with `report -o`: the tree shows the pipe, who holds
    // which end, and the blamed fd.
    let run = common::check(&dir, "pipe.db", &[], &[s(&fixture("pipe_leak_hang"))]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let run = lockstep(
        &dir,
        &["report", "pipe.db", "--format", "html", "-o", "pipe.html"],
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    let html = std::fs::read_to_string(dir.join("pipe.html")).unwrap();
    assert_self_contained(&html);
    let tree = &html[html.find("id=\"proctree\"").unwrap()..];
    let tree = &tree[..tree.find("</svg>").unwrap()];
    assert_eq!(
        tree.matches("class=\"pbox\"").count(),
        3,
        "parent, echo, wc"
    );
    assert_eq!(tree.matches("class=\"pipe\"").count(), 1, "one pipe");
    assert!(tree.contains("fd 4: write end of pipe:["), "{tree}");
    assert!(
        tree.contains("class=\"leak\""),
        "the leaked write end is red"
    );

    let Some(chrome) = chromium() else {
        println!("SKIPPED the browser part: chromium is not installed (apt-get install chromium)");
        return;
    };
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    assert_loads_cleanly(
        &chrome,
        &dir.join("abba.html"),
        &shots.join("abba_deadlock.png"),
        &dir,
    );
    assert_loads_cleanly(
        &chrome,
        &dir.join("pipe.html"),
        &shots.join("pipe_leak_hang.png"),
        &dir,
    );
}

/// The `<g data-tid="T">` row of thread `tid` in the timeline.
fn row<'h>(timeline: &'h str, tid: &str) -> &'h str {
    let start = timeline
        .find(&format!("<g data-tid=\"{tid}\">"))
        .unwrap_or_else(|| panic!("no row for {tid}"));
    let rest = &timeline[start..];
    &rest[..rest.find("</g>").unwrap()]
}

#[test]
fn race_and_inversion_are_marked_on_the_timeline() {
    let dir = scratch("html_threads");
    // A data race: both accesses are diamonds on their threads' rows.
    let run = common::check(
        &dir,
        "race.db",
        &["--format", "html", "--report-file", "race.html"],
        &[s(&fixture("race_check_then_use"))],
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    let html = std::fs::read_to_string(dir.join("race.html")).unwrap();
    assert_self_contained(&html);
    let timeline = &html[html.find("id=\"timeline\"").unwrap()..];
    let timeline = &timeline[..timeline.find("</svg>").unwrap()];
    let card = &html[html.find("data-tids=\"").unwrap() + 11..];
    let tids: Vec<&str> = card[..card.find('"').unwrap()].split(' ').collect();
    assert_eq!(tids.len(), 2, "{tids:?}");
    for tid in &tids {
        let r = row(timeline, tid);
        assert_eq!(r.matches("class=\"race\"").count(), 1, "{r}");
        assert!(r.contains("data race on current: thread "), "{r}");
    }
    assert!(html.contains("protect `current` with mutex m"), "the hint");

    // A priority inversion: H, L and M labelled, the band on each row.
    let run = common::check(
        &dir,
        "inv.db",
        &["--format", "html", "--report-file", "inv.html"],
        &[s(&fixture("mars_pathfinder"))],
    );
    let html = std::fs::read_to_string(dir.join("inv.html")).unwrap();
    let rt = !html.contains("0 errors");
    if rt {
        assert_eq!(run.code, Some(1), "{run:?}");
        assert_self_contained(&html);
        let timeline = &html[html.find("id=\"timeline\"").unwrap()..];
        let timeline = &timeline[..timeline.find("</svg>").unwrap()];
        for part in ["H", "L", "M"] {
            let label = format!(" ({part})</text>");
            let at = timeline.find(&label).unwrap_or_else(|| panic!("{label}"));
            let r = &timeline[timeline[..at].rfind("<g data-tid=").unwrap()..];
            let r = &r[..r.find("</g>").unwrap()];
            assert!(r.contains("class=\"inv\""), "{part}: {r}");
        }
        assert!(html.contains("(high, SCHED_FIFO 30) waits for mutex bus"));
        assert!(html.contains("PTHREAD_PRIO_INHERIT"));
    } else {
        println!("SKIPPED the inversion: SCHED_FIFO not permitted here");
    }

    let Some(chrome) = chromium() else {
        println!("SKIPPED the browser part: chromium is not installed (apt-get install chromium)");
        return;
    };
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let race_png = shots.join("race_check_then_use.png");
    assert_loads_cleanly(&chrome, &dir.join("race.html"), &race_png, &dir);
    if rt {
        let inv_png = shots.join("mars_pathfinder.png");
        assert_loads_cleanly(&chrome, &dir.join("inv.html"), &inv_png, &dir);
    }
}
