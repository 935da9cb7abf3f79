//! Memory-access recording: the import of the agent's per-thread memory
//! files (faked by a fixture that writes them itself), and the reference
//! mechanism `--mem=step` (ptrace single-stepping of the executable's code,
//! decoded with capstone) checked against the fixtures' marked lines.

mod common;

use common::*;
use rusqlite::Connection;
use std::path::Path;

/// One access of a `mem_segments` row (the 24-byte entry of docs/SCHEMA.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Access {
    tid: i64,
    addr: u64,
    ip: u64,
    size: u32,
    flags: u8,
    via: u8,
}

/// Every access in the trace, with its segment's mechanism.
fn accesses(trace: &Path) -> Vec<(String, Access)> {
    let db = Connection::open(trace).unwrap();
    let mut st = db
        .prepare("SELECT tid, mechanism, count, accesses FROM mem_segments ORDER BY seq")
        .unwrap();
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Vec<u8>>(3)?,
            ))
        })
        .unwrap();
    let mut out = Vec::new();
    for row in rows {
        let (tid, mech, count, blob) = row.unwrap();
        assert_eq!(blob.len(), count as usize * 24, "blob of {count} entries");
        for e in blob.chunks_exact(24) {
            let u64_at = |i: usize| u64::from_le_bytes(e[i..i + 8].try_into().unwrap());
            out.push((
                mech.clone(),
                Access {
                    tid,
                    addr: u64_at(0),
                    ip: u64_at(8),
                    size: u32::from_le_bytes(e[16..20].try_into().unwrap()),
                    flags: e[20],
                    via: e[21],
                },
            ));
        }
    }
    out
}

fn meta(trace: &Path, key: &str) -> Option<String> {
    let db = Connection::open(trace).unwrap();
    db.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .ok()
}

fn shm_leftovers() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".mem."))
                .collect()
        })
        .unwrap_or_default()
}

/// The fake's files: the worker's (imported at its death; a bad entry and
/// a truncated record skipped) and main's (imported at the end).
fn assert_fake_imported(trace: &Path) {
    let acc = accesses(trace);
    let addrs: Vec<(u64, u8, u8)> = acc
        .iter()
        .map(|(m, a)| {
            assert_eq!(m, "agent");
            (a.addr, a.flags, a.via)
        })
        .collect();
    assert_eq!(addrs.len(), 2, "{acc:?}");
    assert!(addrs.contains(&(0x1000, 1, 0)), "{addrs:?}");
    assert!(addrs.contains(&(0x2000, 2, 1)), "{addrs:?}");
    let main = acc.iter().find(|(_, a)| a.addr == 0x2000).unwrap().1;
    let worker = acc.iter().find(|(_, a)| a.addr == 0x1000).unwrap().1;
    assert_ne!(main.tid, worker.tid);
}

/// `lockstep record -q --force -o DIR/NAME.db OPTS -- ARGV`.
fn rec(dir: &Path, name: &str, opts: &[&str], argv: &[&str]) -> (std::path::PathBuf, Run) {
    let trace = dir.join(format!("{name}.db"));
    let mut a = vec!["record", "-q", "--force", "-o", trace.to_str().unwrap()];
    a.extend_from_slice(opts);
    a.push("--");
    a.extend_from_slice(argv);
    let run = lockstep(dir, &a);
    (trace, run)
}

#[test]
fn agent_memory_files_are_imported_and_deleted() {
    let dir = scratch("memlog_import");
    let bin = fixture("mem_file_fake");
    let (trace, run) = rec(&dir, "t", &["--mem", "off"], &[bin.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_fake_imported(&trace);
    assert_eq!(meta(&trace, "mem").as_deref(), Some("off"));
    let area = meta(&trace, "sync_mode").unwrap();
    assert!(area.starts_with("agent"), "{area}");
}

#[test]
fn memory_files_survive_a_hang_kill() {
    let dir = scratch("memlog_hang");
    let bin = fixture("mem_file_fake");
    let before = shm_leftovers();
    let opts = ["--mem", "off", "--hang-timeout", "1"];
    let (trace, run) = rec(&dir, "t", &opts, &[bin.to_str().unwrap(), "hang"]);
    assert_eq!(run.code, Some(124), "{run:?}");
    assert_fake_imported(&trace);
    let after: Vec<String> = shm_leftovers()
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert!(after.is_empty(), "memory files left: {after:?}");
}

#[test]
fn mem_option_is_in_the_meta() {
    let dir = scratch("mem_meta");
    for (opt, want) in [("auto", "agent"), ("agent", "agent"), ("off", "off")] {
        let (trace, run) = rec(&dir, opt, &["--mem", opt], &["true"]);
        assert_eq!(run.code, Some(0), "{run:?}");
        assert_eq!(meta(&trace, "mem").as_deref(), Some(want));
    }
    // Without the agent, auto records none and agent is refused.
    let (trace, run) = rec(&dir, "ptrace", &["--sync", "ptrace"], &["true"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(meta(&trace, "mem").as_deref(), Some("off"));
    let (_, run) = rec(
        &dir,
        "refused",
        &["--sync", "ptrace", "--mem", "agent"],
        &["true"],
    );
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("--mem=agent"), "{run:?}");
}
