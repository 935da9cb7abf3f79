//! The test side of the agent's contract: a stand-in for the recorder.
//!
//! It compiles the C programs of `tests/c/` with `gcc -g -O0 -pthread`,
//! creates a shared-memory file the way the recorder does (sparse file of
//! `SHM_SIZE` bytes, header with magic, version, ready = 1, seq = 1), runs a
//! program with `LD_PRELOAD` = the agent built for this test run and
//! `LOCKSTEP_SHM` = the file, and drains the rings while the program runs
//! (acquire load of `head`, copy, release store of `tail`), then once more
//! after it exited.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Duration;

use lockstep_agent_abi::{
    event_offset, ring_header_offset, Event, Header, Op, Phase, RingHeader, MAGIC, MAX_RINGS,
    SHM_SIZE, VERSION,
};

/// The agent, built for this test run. Cargo does not build a cdylib-only
/// library for integration tests, so the first call runs
/// `cargo build --lib` for this package with the test executable's profile,
/// target directory and environment (RUSTFLAGS included): a no-op when the
/// library is fresh, and never a stale `.so`.
pub fn agent_so() -> PathBuf {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps/<test>");
        let target_dir = profile_dir.parent().expect("target dir");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(name) => name,
            None => panic!("no profile directory in {}", exe.display()),
        };
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let out = Command::new(env!("CARGO"))
            .args(["build", "--lib", "--profile", profile, "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target_dir)
            .output()
            .expect("run cargo build");
        assert!(
            out.status.success(),
            "cargo build of the agent: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let so = profile_dir.join("liblockstep_agent.so");
        assert!(so.exists(), "{} not built", so.display());
        so
    })
    .clone()
}

/// A fresh directory for one test's files (tests run in parallel).
pub fn scratch(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Compiles `tests/c/<name>.c` into `dir`.
pub fn compile(name: &str, dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(format!("{name}.c"));
    let exe = dir.join(name);
    let out = Command::new("gcc")
        .args(["-g", "-O0", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("run gcc");
    assert!(
        out.status.success(),
        "gcc {}: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Compiles `tests/c/<lib>.c` into `dir/lib<lib>.so` and `tests/c/<name>.c`
/// into a program linked with it.
pub fn compile_with_lib(name: &str, lib: &str, dir: &Path) -> PathBuf {
    let c = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c");
    let so = dir.join(format!("lib{lib}.so"));
    let exe = dir.join(name);
    let mut rpath = std::ffi::OsString::from("-Wl,-rpath,");
    rpath.push(dir);
    for (what, cmd) in [
        (
            "library",
            Command::new("gcc")
                .args(["-g", "-O0", "-pthread", "-shared", "-fPIC", "-o"])
                .arg(&so)
                .arg(c.join(format!("{lib}.c")))
                .output(),
        ),
        (
            "program",
            Command::new("gcc")
                .args(["-g", "-O0", "-pthread", "-o"])
                .arg(&exe)
                .arg(c.join(format!("{name}.c")))
                .arg(&so)
                .arg(&rpath)
                .output(),
        ),
    ] {
        let out = cmd.expect("run gcc");
        assert!(
            out.status.success(),
            "gcc {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    exe
}

/// One drained event and the ring it came from.
#[derive(Clone, Copy, Debug)]
pub struct Got {
    pub ring: usize,
    pub ev: Event,
}

impl Got {
    pub fn op(&self) -> Op {
        Op::from_code(self.ev.op).unwrap_or_else(|| panic!("bad op code {}", self.ev.op))
    }
    pub fn phase(&self) -> Phase {
        Phase::from_code(self.ev.phase).unwrap_or_else(|| panic!("bad phase {}", self.ev.phase))
    }
}

/// The recorder's side of the shared-memory file.
pub struct Shm {
    pub path: PathBuf,
    base: *mut u8,
}

impl Shm {
    /// Creates the file in `dir` and initialises its header; `magic` lets a
    /// test make an invalid one.
    pub fn create(dir: &Path, magic: u64) -> Shm {
        use std::os::fd::AsRawFd;
        let path = dir.join("lockstep.shm");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("create shm file");
        file.set_len(SHM_SIZE as u64).expect("ftruncate");
        // SAFETY: maps the whole file we just sized; shared so the agent's
        // writes are visible.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SHM_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "mmap shm");
        let base = base.cast::<u8>();
        // SAFETY: the header is at offset 0 of a zeroed mapping.
        unsafe {
            let h = base.cast::<Header>();
            std::ptr::addr_of_mut!((*h).magic).write(magic);
            std::ptr::addr_of_mut!((*h).version).write(VERSION);
            (*h).seq.store(1, Ordering::SeqCst);
            (*h).ready.store(1, Ordering::Release);
        }
        Shm { path, base }
    }

    pub fn valid(dir: &Path) -> Shm {
        Shm::create(dir, MAGIC)
    }

    pub fn header(&self) -> &Header {
        // SAFETY: mapped for the life of self.
        unsafe { &*self.base.cast::<Header>() }
    }

    pub fn ring(&self, i: usize) -> &RingHeader {
        assert!(i < MAX_RINGS);
        // SAFETY: i < MAX_RINGS: inside the mapping.
        unsafe { &*self.base.add(ring_header_offset(i)).cast::<RingHeader>() }
    }

    /// Rings claimed so far (capped at MAX_RINGS).
    pub fn rings(&self) -> usize {
        (self.header().rings_claimed.load(Ordering::Acquire) as usize).min(MAX_RINGS)
    }

    /// Hands every published event to `out`; returns how many.
    pub fn drain(&self, out: &mut impl FnMut(Got)) -> usize {
        let mut n = 0;
        for i in 0..self.rings() {
            let r = self.ring(i);
            let head = r.head.load(Ordering::Acquire);
            let mut tail = r.tail.load(Ordering::Relaxed);
            if tail == head {
                continue; // do not write the producer's cache line for nothing
            }
            while tail < head {
                // SAFETY: slot `tail` was published by the release store of
                // `head`; it is inside the mapping.
                let ev = unsafe {
                    std::ptr::read(
                        self.base
                            .add(event_offset(i, tail as usize))
                            .cast::<Event>(),
                    )
                };
                out(Got { ring: i, ev });
                tail += 1;
                n += 1;
            }
            r.tail.store(tail, Ordering::Release);
        }
        n
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: unmaps our own mapping.
        unsafe { libc::munmap(self.base.cast(), SHM_SIZE) };
    }
}

/// What a run produced.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub pid: i32,
    /// The events, unless the run was made with [`run_counting`].
    pub events: Vec<Got>,
    /// How many events of each (op, phase) arrived.
    pub counts: BTreeMap<(u16, u8), usize>,
}

impl Run {
    /// The `name=value` lines of the program's output.
    pub fn values(&self) -> BTreeMap<String, String> {
        self.stdout
            .lines()
            .filter_map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect()
    }

    /// A printed address or number (`0x...` or decimal).
    pub fn value(&self, key: &str) -> u64 {
        let v = self
            .values()
            .remove(key)
            .unwrap_or_else(|| panic!("{key} not printed:\n{}", self.stdout));
        match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).expect("hex"),
            None => v.parse().expect("number"),
        }
    }

    pub fn count(&self, op: Op, phase: Phase) -> usize {
        self.counts
            .get(&(op as u16, phase as u8))
            .copied()
            .unwrap_or(0)
    }
}

/// Runs `exe args` with the agent preloaded; `shm` None leaves
/// `LOCKSTEP_SHM` unset (inert agent), `preload` false runs it natively.
/// Rings are drained while it runs.
pub fn run(exe: &Path, args: &[&str], shm: Option<&Shm>, preload: bool) -> Run {
    run_with(exe, args, shm, preload, true, true)
}

/// [`run`], keeping only the counts of events (for millions of them).
pub fn run_counting(exe: &Path, args: &[&str], shm: &Shm) -> Run {
    run_with(exe, args, Some(shm), true, false, true)
}

/// [`run`] with a dead recorder: nothing is drained while the program
/// runs (the events left in the rings are collected after it exits).
pub fn run_without_draining(exe: &Path, args: &[&str], shm: &Shm) -> Run {
    run_with(exe, args, Some(shm), true, true, false)
}

fn run_with(
    exe: &Path,
    args: &[&str],
    shm: Option<&Shm>,
    preload: bool,
    keep: bool,
    live: bool,
) -> Run {
    let out_path = exe.with_extension(format!("out{}", std::process::id()));
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdout(out)
        .stderr(Stdio::inherit())
        .env_remove("LOCKSTEP_SHM")
        .env_remove("LD_PRELOAD");
    if preload {
        cmd.env("LD_PRELOAD", agent_so());
    }
    if let Some(shm) = shm {
        cmd.env("LOCKSTEP_SHM", &shm.path);
    }
    let mut child = cmd.spawn().expect("spawn program");
    let mut events = Vec::new();
    let mut counts = BTreeMap::new();
    let mut sink = |g: Got| {
        *counts.entry((g.ev.op, g.ev.phase)).or_insert(0) += 1;
        if keep {
            events.push(g);
        }
    };
    let status = loop {
        let drained = match shm {
            Some(s) if live => s.drain(&mut sink),
            _ => 0,
        };
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if drained == 0 {
            // Poll gently: a drainer spinning on the header's cache line
            // would slow the producer's seq.fetch_add down.
            std::thread::sleep(Duration::from_micros(if shm.is_some() && live {
                20
            } else {
                1000
            }));
        }
    };
    if let Some(shm) = shm {
        shm.drain(&mut sink);
    }
    let stdout = std::fs::read_to_string(&out_path).expect("read stdout");
    Run {
        status,
        stdout,
        pid: child.id() as i32,
        events,
        counts,
    }
}

/// Checks the invariants every recording must keep: unique seqs, every
/// ring in seq order, ring headers matching their events' pid/tid.
pub fn check_order(shm: &Shm, events: &[Got]) {
    let mut seqs: Vec<u64> = events.iter().map(|g| g.ev.seq).collect();
    seqs.sort_unstable();
    let before = seqs.len();
    seqs.dedup();
    assert_eq!(seqs.len(), before, "duplicate seq numbers");
    assert!(
        seqs.first().map_or(true, |&s| s >= 1),
        "seq 0 was drawn (header seq starts at 1)"
    );
    let mut last: BTreeMap<(i32, i32), u64> = BTreeMap::new();
    let mut ring_last: BTreeMap<usize, u64> = BTreeMap::new();
    for g in events {
        let ring = shm.ring(g.ring);
        assert_eq!(
            ring.pid.load(Ordering::Relaxed),
            g.ev.pid,
            "ring {} pid",
            g.ring
        );
        assert_eq!(
            ring.tid.load(Ordering::Relaxed),
            g.ev.tid,
            "ring {} tid",
            g.ring
        );
        let previous = [
            last.insert((g.ev.pid, g.ev.tid), g.ev.seq),
            ring_last.insert(g.ring, g.ev.seq),
        ];
        for prev in previous.into_iter().flatten() {
            assert!(
                prev < g.ev.seq,
                "thread {} events out of order: {prev} then {}",
                g.ev.tid,
                g.ev.seq
            );
        }
    }
}

/// One call of a blocking acquire that the agent tries first
/// (`pthread_mutex_lock`, `pthread_rwlock_rdlock`/`wrlock`,
/// `pthread_spin_lock`, `sem_wait`).
#[derive(Clone, Copy, Debug)]
pub struct TryFirst<'a> {
    /// The `Request`, written only when the try failed (contended, or an
    /// error such as EDEADLK).
    pub request: Option<&'a Got>,
    /// The `Acquired` or `Failed`; `None` when the thread was cancelled
    /// while blocked (it ends with a `ThreadExit` with flags 2).
    pub end: Option<&'a Got>,
}

impl TryFirst<'_> {
    /// The call's first event.
    pub fn first(&self) -> &Got {
        self.request.or(self.end).expect("a call has an event")
    }

    pub fn obj(&self) -> u64 {
        self.first().ev.obj
    }

    pub fn tid(&self) -> i32 {
        self.first().ev.tid
    }

    pub fn acquired(&self) -> bool {
        self.end.is_some_and(|g| g.phase() == Phase::Acquired)
    }
}

/// The calls of the try-first op `op` in `events`, in seq order, checking
/// their shape: a call is either a lone `Acquired` (the try succeeded), or
/// a `Request` whose thread's very next event is the `Acquired` or `Failed`
/// of the same op and object, or, for a thread cancelled while blocked, a
/// `Request` after which the thread makes no call of `op` and ends with a
/// `ThreadExit` with flags 2. A `Failed` always follows a `Request`: a
/// failed try goes the slow way. (For programs without signal handlers
/// that record while a thread is blocked.)
pub fn try_first_calls(events: &[Got], op: Op) -> Vec<TryFirst<'_>> {
    let mut by_thread: BTreeMap<(i32, i32), Vec<&Got>> = BTreeMap::new();
    for g in events {
        by_thread.entry((g.ev.pid, g.ev.tid)).or_default().push(g);
    }
    let mut calls = Vec::new();
    for (_, mut evs) in by_thread {
        evs.sort_by_key(|g| g.ev.seq);
        let mut i = 0;
        while i < evs.len() {
            let g = evs[i];
            i += 1;
            if g.op() != op {
                continue;
            }
            let what = |g: &Got| {
                format!(
                    "{} {} of {:#x} (seq {})",
                    g.op().name(),
                    g.phase().name(),
                    g.ev.obj,
                    g.ev.seq
                )
            };
            match g.phase() {
                Phase::Acquired => calls.push(TryFirst {
                    request: None,
                    end: Some(g),
                }),
                Phase::Request => {
                    let next = evs.get(i).copied().unwrap_or_else(|| {
                        panic!("thread {}: {} is its last event", g.ev.tid, what(g))
                    });
                    i += 1;
                    let end = if next.op() == op
                        && next.ev.obj == g.ev.obj
                        && matches!(next.phase(), Phase::Acquired | Phase::Failed)
                    {
                        Some(next)
                    } else {
                        // Cancelled while blocked: the thread ends here
                        // (unwinding and cleanup handlers may make other
                        // calls first, none of this op).
                        let rest = &evs[i - 1..];
                        let last = rest[rest.len() - 1];
                        assert!(
                            last.op() == Op::ThreadExit
                                && last.ev.flags == 2
                                && rest.iter().all(|e| e.op() != op),
                            "thread {}: {} followed by {}, and it is not cancelled there",
                            g.ev.tid,
                            what(g),
                            what(next)
                        );
                        i = evs.len();
                        None
                    };
                    calls.push(TryFirst {
                        request: Some(g),
                        end,
                    });
                }
                _ => panic!("thread {}: {} without a Request", g.ev.tid, what(g)),
            }
        }
    }
    calls.sort_by_key(|c| c.first().ev.seq);
    calls
}
