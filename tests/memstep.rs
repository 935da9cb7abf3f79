//! Memory-access recording: the import of the agent's per-thread memory
//! files (faked by a fixture that writes them itself), and the reference
//! mechanism `--mem=step` (ptrace single-stepping of the executable's code,
//! decoded with capstone) checked against the fixtures' marked lines.

mod common;

use common::*;
use rusqlite::Connection;
use std::path::Path;

/// One access of a memory segment (the 24-byte entry of docs/SCHEMA.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Access {
    tid: i64,
    addr: u64,
    ip: u64,
    size: u32,
    flags: u8,
    via: u8,
}

/// Every access in the trace, with its segment's mechanism, in sequence
/// order (read through the trace crate, which unpacks the batches).
fn accesses(trace: &Path) -> Vec<(String, Access)> {
    let t = lockstep_trace::TraceReader::open(trace).unwrap();
    let mut out = Vec::new();
    t.each_mem_segment(|seg| {
        for a in &seg.accesses {
            out.push((
                seg.mechanism.clone(),
                Access {
                    tid: seg.tid.0 as i64,
                    addr: a.addr,
                    ip: a.ip,
                    size: a.size,
                    flags: a.flags,
                    via: a.via as u8,
                },
            ));
        }
        Ok(())
    })
    .unwrap();
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
    // This recording's files only (other tests record at the same time).
    let area = meta(&trace, "agent_area").unwrap();
    let area = std::path::Path::new(&area)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let after: Vec<String> = shm_leftovers()
        .into_iter()
        .filter(|n| !before.contains(n) && n.starts_with(&area))
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

// --- `--mem=step`: the reference mechanism -------------------------------

/// What a stepped recording says about one fixture: its accesses made by
/// instructions (with the fixture's source line), its sync ops, and the
/// run-time address of a global.
struct Stepped {
    trace: std::path::PathBuf,
    /// (access, line in the fixture or 0)
    accesses: Vec<(Access, u64)>,
    sync: Vec<lockstep_trace::SyncOp>,
    main_tid: i64,
    maps: Vec<lockstep_symbols::Mapping>,
    sym: lockstep_symbols::Symbolizer,
    bin: std::path::PathBuf,
}

impl Stepped {
    /// Records `fixture args` with `--mem=step --sync=agent`.
    fn record(name: &str, args: &[&str]) -> Stepped {
        Stepped::with("step", name, args)
    }

    /// Records `fixture args` with `--mem=MECH --sync=agent`; keeps the
    /// instruction accesses of that mechanism.
    fn with(mech: &str, name: &str, args: &[&str]) -> Stepped {
        let dir = scratch(&format!("memstep_{name}_{mech}"));
        let bin = fixture(name);
        let mut argv = vec![bin.to_str().unwrap()];
        argv.extend_from_slice(args);
        let started = std::time::Instant::now();
        let (trace, run) = rec(&dir, "t", &["--mem", mech, "--sync", "agent"], &argv);
        assert_eq!(run.code, Some(0), "{run:?}");
        eprintln!("{name}: recorded in {:?}", started.elapsed());
        assert_eq!(meta(&trace, "mem").as_deref(), Some(mech));
        let t = lockstep_trace::TraceReader::open(&trace).unwrap();
        let sync = t.sync_ops().unwrap();
        let main_tid = sync
            .iter()
            .find(|o| o.op == "pthread_create")
            .unwrap()
            .tid
            .0 as i64;
        let exe = std::fs::canonicalize(&bin).unwrap();
        let (_, snap) = t
            .mappings(lockstep_trace::Pid(main_tid as i32))
            .unwrap()
            .remove(0);
        let maps: Vec<lockstep_symbols::Mapping> = snap
            .into_iter()
            .filter(|m| Path::new(&m.path) == exe)
            .map(|m| lockstep_symbols::Mapping {
                start: m.start,
                end: m.end,
                file_offset: m.file_offset,
                path: m.path,
            })
            .collect();
        assert!(!maps.is_empty(), "no mapping of {}", exe.display());
        let mut s = Stepped {
            trace,
            accesses: Vec::new(),
            sync,
            main_tid,
            maps,
            sym: lockstep_symbols::Symbolizer::new(),
            bin: exe,
        };
        let src = format!("/fixtures/{name}.c");
        for (m, a) in accesses(&s.trace) {
            if m != mech || (mech == "agent" && a.via != 0) {
                continue;
            }
            assert_eq!(a.via, 0, "step accesses are instructions: {a:?}");
            let frames = s.sym.symbolize(&s.maps, a.ip);
            let line = frames
                .iter()
                .find(|f| f.file.as_deref().is_some_and(|p| p.ends_with(&src)))
                .and_then(|f| f.line)
                .unwrap_or_else(|| panic!("{a:x?} not in {src}: {frames:?}"));
            s.accesses.push((a, line as u64));
        }
        s
    }

    /// The run-time address of the global `name` (symbol table + load bias).
    fn global(&mut self, name: &str) -> u64 {
        let out = std::process::Command::new("nm")
            .arg(&self.bin)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let vaddr = text
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 3 && f[2] == name).then(|| u64::from_str_radix(f[0], 16).unwrap())
            })
            .unwrap_or_else(|| panic!("nm: no {name}"));
        vaddr + self.sym.load_bias(&self.maps[0]).unwrap()
    }

    /// The (tid, flags, size) of the accesses to `addr` at `line`.
    fn at(&self, line: u64, addr: u64) -> Vec<(i64, u8, u32)> {
        let mut v: Vec<_> = self
            .accesses
            .iter()
            .filter(|(a, l)| *l == line && a.addr == addr)
            .map(|(a, _)| (a.tid, a.flags, a.size))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

#[test]
fn step_records_the_counter_race() {
    let mut s = Stepped::record("counter_race", &["200"]);
    let counter = s.global("counter");
    let line = marker_line("counter_race", "COUNTER-INC");
    let got = s.at(line, counter);
    let workers: Vec<i64> = s
        .sync
        .iter()
        .filter(|o| o.op == "thread_start")
        .map(|o| o.tid.0 as i64)
        .collect();
    assert_eq!(workers.len(), 2);
    // `counter++` at -O0: a 4-byte load, then a 4-byte store, in each worker.
    let mut want: Vec<(i64, u8, u32)> = workers
        .iter()
        .flat_map(|&t| [(t, 1, 4), (t, 2, 4)])
        .collect();
    want.sort();
    assert_eq!(got, want, "accesses to counter at line {line}");
    // main reads counter for its printf after the joins.
    assert!(s
        .accesses
        .iter()
        .any(|(a, _)| a.tid == s.main_tid && a.addr == counter && a.flags == 1));
    assert!(s.sync.iter().all(|o| o.op != "atomic"));
    // Stepping starts at main and runs libraries freely: a few thousand steps.
    let steps: u64 = meta(&s.trace, "mem_step_steps").unwrap().parse().unwrap();
    assert!((1_000..20_000).contains(&steps), "{steps} steps");
}

#[test]
fn step_brackets_atomics_with_sync_ops() {
    let n = 20;
    let mut s = Stepped::record("atomic_counter", &[&n.to_string()]);
    let hits = s.global("hits");
    let flag = s.global("flag");
    let inc = marker_line("atomic_counter", "ATOMIC-INC");
    let xchg = marker_line("atomic_counter", "ATOMIC-XCHG");
    let workers: Vec<lockstep_trace::Tid> = s
        .sync
        .iter()
        .filter(|o| o.op == "thread_start")
        .map(|o| o.tid)
        .collect();
    for (addr, size, line, per_thread) in [(hits, 8, inc, n), (flag, 4, xchg, 1)] {
        // lock xadd / xchg: read + write + atomic.
        let got = s.at(line, addr);
        let want: Vec<_> = workers.iter().map(|t| (t.0 as i64, 7u8, size)).collect();
        assert_eq!(got, want, "accesses at line {line}");
        for &t in &workers {
            let ops: Vec<&str> = s
                .sync
                .iter()
                .filter(|o| o.op == "atomic" && o.tid == t && o.obj == addr)
                .map(|o| {
                    assert_eq!((o.arg, o.mechanism.as_str()), (size as u64, "ptrace"));
                    let frames = s.sym.symbolize(&s.maps, o.arg2);
                    assert_eq!(frames.first().and_then(|f| f.line), Some(line as u32));
                    o.phase.as_str()
                })
                .collect();
            let pair = ["released", "acquired"];
            assert_eq!(
                ops,
                pair.repeat(per_thread),
                "atomic ops of {t:?} on line {line}"
            );
        }
    }
    // main's read after the joins is a plain read.
    let fin = marker_line("atomic_counter", "FINAL-READ");
    assert_eq!(s.at(fin, hits), vec![(s.main_tid, 1, 8)]);
}

#[test]
fn step_records_the_matrix_stack_race() {
    let s = Stepped::record("matrix_race", &[]);
    let m_write = marker_line("matrix_race", "M-WRITE");
    let m_read = marker_line("matrix_race", "M-READ-SZ");
    // main writes the loop-local struct `m` on its stack; every worker reads
    // `m->sz` through the pointer it was given: the same address.
    let written: Vec<u64> = s
        .accesses
        .iter()
        .filter(|(a, l)| *l == m_write && a.tid == s.main_tid && a.flags == 2)
        .map(|(a, _)| a.addr)
        .collect();
    let read_by: std::collections::BTreeSet<i64> = s
        .accesses
        .iter()
        .filter(|(a, l)| *l == m_read && a.flags == 1 && a.size == 8 && written.contains(&a.addr))
        .map(|(a, _)| a.tid)
        .collect();
    assert_eq!(
        read_by.len(),
        4,
        "readers of m->sz: {read_by:?}, written {written:x?}"
    );
    assert!(!read_by.contains(&s.main_tid));
}

/// The fast mechanism against the reference: the same fixture lines make
/// the same kinds of accesses (flags and size) to the same globals
/// (matrix_race: up to its result check, whose branch varies by run).
#[test]
fn agent_and_step_capture_the_same_accesses() {
    for (name, args) in [("counter_race", &["200"][..]), ("matrix_race", &[][..])] {
        let shape = |mech: &str| {
            let mut s = Stepped::with(mech, name, args);
            let counter = if name == "counter_race" {
                s.global("counter")
            } else {
                0
            };
            let mut set: Vec<(u64, u8, u32, bool)> = s
                .accesses
                .iter()
                .filter(|(_, l)| name != "matrix_race" || *l < 98)
                .map(|(a, l)| (*l, a.flags, a.size, a.addr == counter))
                .collect();
            set.sort();
            set.dedup();
            set
        };
        assert_eq!(
            shape("agent"),
            shape("step"),
            "{name}: (line, flags, size, is counter)"
        );
    }
}
