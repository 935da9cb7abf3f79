//! The recorder's side of the in-process agent: the shared-memory file the
//! agent writes sync events into (layout in `lockstep-agent-abi`), the
//! environment that makes traced programs load it, and draining its rings
//! into [`SyncOp`] records.
//!
//! The file's header also holds the global sequence counter: once the area
//! exists, the ptrace side takes its sequence numbers from it too, so agent
//! events and ptrace events share one order.

use crate::error::RecordError;
use lockstep_agent_abi as abi;
use lockstep_trace::{Pid, Seq, Stamp, SyncEvent, SyncOp, Tid, SYNC_EVENT_FRAMES};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// The mapped shared-memory file.
pub struct SharedArea {
    path: PathBuf,
    base: *mut u8,
    /// The file, open and share-locked for as long as the area lives.
    fd: libc::c_int,
}

fn shm_dir() -> PathBuf {
    let d = Path::new("/dev/shm");
    if d.is_dir() {
        d.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Whether some live area holds `path` (its owner keeps a shared flock on
/// it: a replay recreates a recorded area under the recorder's dead pid).
fn in_use(path: &Path) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) != 0 }
}

/// Removes area files left by recorders that were killed (their pid is in the name).
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("lockstep-area-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() && !in_use(&e.path()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl SharedArea {
    /// Creates and maps a fresh area with its header initialised.
    pub fn create() -> Result<SharedArea, RecordError> {
        let dir = shm_dir();
        remove_stale(&dir);
        SharedArea::create_at(dir.join(format!(
            "lockstep-area-{}-{}",
            std::process::id(),
            crate::clock::monotonic_ns()
        )))
    }

    /// Creates and maps a fresh area at `path` (a replay recreates the
    /// recorded one, whose path the program's environment names).
    pub fn create_at(path: PathBuf) -> Result<SharedArea, RecordError> {
        let c = CString::new(path.as_os_str().as_bytes()).expect("no NUL in area path");
        // SAFETY: open/ftruncate/mmap/close on a path and fd we own; the
        // mapping is checked for MAP_FAILED before use.
        let base = unsafe {
            let fd = libc::open(
                c.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o600,
            );
            if fd < 0 {
                return Err(RecordError::Sys {
                    syscall: "open(agent area)",
                    errno: nix::errno::Errno::last(),
                });
            }
            if libc::ftruncate(fd, abi::SHM_SIZE as libc::off_t) < 0 {
                let errno = nix::errno::Errno::last();
                libc::close(fd);
                let _ = std::fs::remove_file(&path);
                return Err(RecordError::Sys {
                    syscall: "ftruncate(agent area)",
                    errno,
                });
            }
            let p = libc::mmap(
                std::ptr::null_mut(),
                abi::SHM_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                fd,
                0,
            );
            if p == libc::MAP_FAILED {
                libc::close(fd);
                let _ = std::fs::remove_file(&path);
                return Err(RecordError::Sys {
                    syscall: "mmap(agent area)",
                    errno: nix::errno::Errno::last(),
                });
            }
            // Held (shared lock) while the area lives: see `in_use`.
            libc::flock(fd, libc::LOCK_SH);
            (p as *mut u8, fd)
        };
        let (base, fd) = base;
        let area = SharedArea { path, base, fd };
        // SAFETY: the header lies at offset 0 of a fresh, zeroed mapping
        // that nobody else has opened yet.
        unsafe {
            let h = area.base as *mut abi::Header;
            (*h).magic = abi::MAGIC;
            (*h).version = abi::VERSION;
            (*h).seq.store(1, Ordering::SeqCst);
            (*h).ready.store(1, Ordering::SeqCst);
        }
        Ok(area)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn header(&self) -> &abi::Header {
        // SAFETY: the mapping starts with a Header and lives as long as self.
        unsafe { &*(self.base as *const abi::Header) }
    }

    fn ring(&self, i: usize) -> &abi::RingHeader {
        // SAFETY: i < MAX_RINGS (checked by callers); ring headers are in the mapping.
        unsafe { &*(self.base.add(abi::ring_header_offset(i)) as *const abi::RingHeader) }
    }

    /// `record --serialize` and its replay: asks thread `tid` to stop at
    /// a yield point as it enters a sync call whose count is at least `at`
    /// (0: its next); `Tid(0)` asks nobody.
    pub fn ask_yield(&self, tid: Tid, at: u64) {
        let h = self.header();
        h.yield_at.store(at, Ordering::SeqCst);
        h.yield_tid.store(tid.0, Ordering::SeqCst);
    }

    /// The next global sequence number.
    pub fn next_seq(&self) -> u64 {
        self.header().seq.fetch_add(1, Ordering::SeqCst)
    }

    /// Events the agent could not record (no ring left, or a reentrant call).
    pub fn dropped(&self) -> u64 {
        self.header().dropped.load(Ordering::Relaxed)
    }

    /// Moves every published event out of the rings: into `out`, or into
    /// `odd` for the rare event whose op or phase code this recorder does
    /// not know (a newer agent), which keeps its code in its name.
    pub fn drain(&self, out: &mut Vec<SyncEvent>, odd: &mut Vec<SyncOp>) {
        let claimed =
            (self.header().rings_claimed.load(Ordering::Acquire) as usize).min(abi::MAX_RINGS);
        for i in 0..claimed {
            let ring = self.ring(i);
            let head = ring.head.load(Ordering::Acquire);
            let tail = ring.tail.load(Ordering::Relaxed);
            if head == tail {
                continue;
            }
            assert!(
                head > tail && head - tail <= abi::RING_EVENTS as u64,
                "agent ring {i} corrupt: head {head} tail {tail}"
            );
            for slot in tail..head {
                // SAFETY: slots below `head` were fully written before the
                // producer's release store of head, which we acquired.
                let ev = unsafe {
                    std::ptr::read_volatile(
                        self.base.add(abi::event_offset(i, slot as usize)) as *const abi::Event
                    )
                };
                match to_sync_event(&ev) {
                    Some(e) => out.push(e),
                    None => odd.push(to_sync_op(&ev)),
                }
            }
            ring.tail.store(head, Ordering::Release);
        }
    }
}

impl Drop for SharedArea {
    fn drop(&mut self) {
        // SAFETY: unmapping the region we mapped in `create_at` and closing its fd.
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, abi::SHM_SIZE);
            libc::close(self.fd);
        };
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The event with static names, `None` for unknown codes.
fn to_sync_event(ev: &abi::Event) -> Option<SyncEvent> {
    const _: () = assert!(abi::STACK_DEPTH <= SYNC_EVENT_FRAMES);
    let mut frames = [0u64; SYNC_EVENT_FRAMES];
    frames[..abi::STACK_DEPTH].copy_from_slice(&ev.stack);
    Some(SyncEvent {
        at: Stamp {
            seq: Seq(ev.seq),
            ts_ns: ev.ts_ns,
        },
        pid: Pid(ev.pid),
        tid: Tid(ev.tid),
        op: abi::Op::from_code(ev.op)?.name(),
        phase: abi::Phase::from_code(ev.phase)?.name(),
        mechanism: "agent",
        obj: ev.obj,
        arg: ev.arg,
        arg2: ev.arg2,
        flags: ev.flags as u32,
        ret: ev.ret,
        frames,
    })
}

fn to_sync_op(ev: &abi::Event) -> SyncOp {
    SyncOp {
        at: Stamp {
            seq: Seq(ev.seq),
            ts_ns: ev.ts_ns,
        },
        pid: Pid(ev.pid),
        tid: Tid(ev.tid),
        op: abi::Op::from_code(ev.op)
            .map(|o| o.name().to_string())
            .unwrap_or_else(|| format!("op_{}", ev.op)),
        phase: abi::Phase::from_code(ev.phase)
            .map(|p| p.name().to_string())
            .unwrap_or_else(|| format!("phase_{}", ev.phase)),
        obj: ev.obj,
        arg: ev.arg,
        arg2: ev.arg2,
        flags: ev.flags as u32,
        ret: ev.ret,
        stack: ev.stack.iter().copied().take_while(|&a| a != 0).collect(),
        mechanism: "agent".into(),
    }
}

/// The environment of the traced program: the recorder's own, with the
/// agent first in LD_PRELOAD, the area's path in LOCKSTEP_SHM, what the
/// agent does about memory accesses in LOCKSTEP_MEM, and LOCKSTEP_TSC=trap
/// when the TSC is trapped (the agent then timestamps with a clock that
/// does not read it; a replay starts the program with the same variables).
pub fn program_env(
    agent: &Path,
    area: &SharedArea,
    mem: crate::MemMode,
    trap_tsc: bool,
) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let mut env: Vec<_> = std::env::vars_os()
        .filter(|(k, _)| {
            k != "LD_PRELOAD" && k != abi::ENV_SHM && k != abi::ENV_MEM && k != abi::ENV_TSC
        })
        .collect();
    let mut preload = agent.as_os_str().to_owned();
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        preload.push(":");
        preload.push(old);
    }
    env.push(("LD_PRELOAD".into(), preload));
    env.push((abi::ENV_SHM.into(), area.path().as_os_str().to_owned()));
    env.push((abi::ENV_MEM.into(), mem.agent_env().into()));
    if trap_tsc {
        env.push((abi::ENV_TSC.into(), crate::tsc::AGENT_ENV_TRAP.into()));
    }
    env
}
