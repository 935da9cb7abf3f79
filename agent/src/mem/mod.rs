//! Memory-access capture: the fast mechanism of the race analysis.
//!
//! When `$LOCKSTEP_MEM` says `exe` and the program can have threads (it
//! imports `pthread_create`), the constructor instruments the executable
//! ([`rewrite`]): every instruction that touches memory first calls a
//! probe that appends `(address, site)` to a per-thread buffer, a few
//! nanoseconds and no system call. The buffer becomes a *segment* (the
//! thread's accesses since its previous sync operation, deduplicated)
//! just before the thread's next sync event draws its sequence number, so
//! every access is ordered against every sync op of the trace
//! ([`segment`]); segments go to a per-thread file the recorder imports
//! ([`memfile`]).
//!
//! Atomic instructions take the slow path: the segment so far is closed,
//! an `atomic` event with phase `Released` is written before the
//! instruction runs and one with phase `Acquired` at the thread's next
//! access or sync op (after it ran), which gives the analysis
//! happens-before through atomics without ever missing an edge. A spinning
//! `xchg` loop makes one pair of events, not one per iteration.
//!
//! With `exe` or `step` the agent also records heap blocks (malloc and
//! friends, free as a write of the block) and the ranges the program's
//! calls to libc's memory and string functions touch ([`intercept`]).
//!
//! Module map: [`probe`] (assembly), [`rewrite`] (relocated copies),
//! [`sequence`] (the instructions before an access), [`exe`] (the
//! executable), [`sites`] (what the probes mean), [`segment`],
//! [`memfile`], [`intercept`].

pub mod dedup;
pub mod exe;
pub mod intercept;
pub mod memfile;
pub mod probe;
pub mod rewrite;
pub mod segment;
pub mod sequence;
pub mod sites;

use core::sync::atomic::{AtomicU8, Ordering};
use lockstep_agent_abi::{Event, Op, Phase, ENV_MEM, STACK_DEPTH};

use crate::local::{self, Local};
use crate::shm::{self, Shm};
use crate::stack::{self, Frame};
use segment::MEM;

const OFF: u8 = 0;
/// Heap blocks and libc ranges only (the recorder single-steps).
const RANGES: u8 = 1;
/// The executable is instrumented.
const INSTRUMENTED: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(OFF);

/// Whether heap blocks and libc ranges are recorded.
#[inline(always)]
pub fn ranges_on() -> bool {
    MODE.load(Ordering::Relaxed) != OFF
}

/// Called by the constructor once the agent is active: reads
/// `$LOCKSTEP_MEM` and instruments the executable if asked to.
pub fn init() {
    let mut name = [0u8; ENV_MEM.len() + 1];
    name[..ENV_MEM.len()].copy_from_slice(ENV_MEM.as_bytes());
    // SAFETY: `name` is NUL-terminated.
    let v = unsafe { libc::getenv(name.as_ptr().cast()) };
    if v.is_null() {
        return;
    }
    // SAFETY: getenv returns a NUL-terminated string.
    let v = unsafe { core::ffi::CStr::from_ptr(v) }.to_bytes();
    if v == b"step" {
        // No copies: the map only says where the program's code is, for
        // the call sites of heap and libc calls.
        if let Some(exe) = exe::read() {
            sites::publish(sites::Map {
                sites: Vec::new(),
                lo: 0,
                hi: 0,
                chunks: Vec::new(),
                exe_lo: exe.text.0,
                exe_hi: exe.text.1,
            });
        }
        MODE.store(RANGES, Ordering::Relaxed);
        announce_stack();
        return;
    }
    if !v.starts_with(b"exe") {
        return;
    }
    let Some(exe) = exe::read() else { return };
    if !exe.threaded || exe.cxx_exceptions {
        return;
    }
    let _ = exe.bias;
    let Some((map, patches)) = rewrite::instrument(&exe.functions, exe.text.1, exe.text) else {
        return;
    };
    sites::publish(map);
    if rewrite::patch_entries(&patches, exe.text) {
        MODE.store(INSTRUMENTED, Ordering::Relaxed);
        announce_stack();
    }
}

/// Records the calling thread's stack bounds (`thread_stack`), so that the
/// analysis can name stack locations.
pub fn announce_stack() {
    if !ranges_on() {
        return;
    }
    let local = Local::current();
    let Some(shm) = shm::get() else { return };
    if !local.enter() {
        return;
    }
    local.learn_bounds();
    let b = local.bounds();
    if b.hi > b.lo {
        emit(
            local,
            shm,
            Op::ThreadStack,
            Phase::Done,
            [b.lo as u64, b.hi as u64, 0],
            [0; STACK_DEPTH],
        );
    }
    local.leave();
}

/// Writes one event now (the caller is inside the agent).
fn emit(local: &Local, shm: Shm, op: Op, phase: Phase, args: [u64; 3], stack: [u64; STACK_DEPTH]) {
    let Some(ring) = local.ring(shm) else { return };
    let ev = Event {
        seq: shm.next_seq(),
        ts_ns: crate::record::now_ns(),
        pid: local::pid(),
        tid: local.tid(),
        op: op as u16,
        phase: phase as u8,
        obj: args[0],
        arg: args[1],
        arg2: args[2],
        stack,
        ..Event::default()
    };
    shm.append(ring, &ev, local);
}

/// Before the calling thread's sync event draws its sequence number: write
/// a pending atomic `Acquired`, close the segment. The caller is inside
/// the agent.
#[inline(always)]
pub fn before_sync(local: &Local, shm: Shm) {
    if !ranges_on() {
        return;
    }
    MEM.with(|t| {
        settle_pending(t, local, shm);
        t.flush(local::pid(), local.tid());
    });
}

/// Writes the `Acquired` of an atomic instruction that has run.
fn settle_pending(t: &segment::MemThread, local: &Local, shm: Shm) {
    if let Some((addr, site, fp, sp)) = t.pending.take() {
        let (size, ip) = site_info(site);
        emit(
            local,
            shm,
            Op::Atomic,
            Phase::Acquired,
            [addr, size, ip],
            atomic_stack(ip, fp, sp, local),
        );
        t.open_fast_path();
    }
}

fn site_info(site: u32) -> (u64, u64) {
    sites::get()
        .and_then(|m| m.site(site))
        .map_or((0, 0), |s| (s.size as u64, s.ip))
}

/// The stack of an atomic instruction: its address, then the frames of the
/// instrumented function (its frame pointer is untouched by the probe).
fn atomic_stack(ip: u64, fp: u64, sp: u64, local: &Local) -> [u64; STACK_DEPTH] {
    let mut out = [0u64; STACK_DEPTH];
    out[0] = ip;
    let mut rest = [0u64; STACK_DEPTH];
    stack::walk_frames(
        Frame {
            fp: fp as usize,
            sp: sp as usize,
        },
        local.bounds(),
        &mut rest,
    );
    out[1..].copy_from_slice(&rest[..STACK_DEPTH - 1]);
    sites::translate_stack(&mut out);
    out
}

/// The probes' slow path (see [`probe`]): a full or missing buffer, an
/// atomic instruction (`kind` 1), or a pending atomic `Acquired`.
pub extern "C" fn slow_path(addr: u64, site: u32, kind: u32, fp: u64, sp: u64) {
    let local = Local::current();
    // Inside the agent already (a signal handler interrupted it): drop.
    if !local.enter() {
        return;
    }
    let Some(shm) = shm::get() else {
        local.leave();
        return;
    };
    let err = crate::record::errno();
    MEM.with(|t| {
        let (pid, tid) = (local::pid(), local.tid());
        if kind == 1 {
            if let Some((a, s, _, _)) = t.pending.get() {
                if a == addr && s == site {
                    // The same atomic again (a spin loop): one pair of events.
                    return;
                }
            }
            settle_pending(t, local, shm);
            t.flush(pid, tid);
            let (size, ip) = site_info(site);
            emit(
                local,
                shm,
                Op::Atomic,
                Phase::Released,
                [addr, size, ip],
                atomic_stack(ip, fp, sp, local),
            );
            t.push_access(pid, tid, addr, site);
            t.pending.set(Some((addr, site, fp, sp)));
            t.close_fast_path();
        } else {
            settle_pending(t, local, shm);
            t.push_access(pid, tid, addr, site);
        }
    });
    crate::record::set_errno(err);
    local.leave();
}

/// Records a range the program's call to a libc function touched.
pub fn record_range(addr: u64, size: u64, flags: u8, via: u8, ip: u64) {
    if size == 0 {
        return;
    }
    let local = Local::current();
    if !local.enter() {
        return;
    }
    if let Some(shm) = shm::get() {
        MEM.with(|t| {
            settle_pending(t, local, shm);
            let range = lockstep_agent_abi::MemEntry {
                addr,
                ip,
                size: size.min(u32::MAX as u64) as u32,
                flags,
                via,
                _pad: 0,
            };
            t.push_range(local::pid(), local.tid(), range);
        });
    }
    local.leave();
}

/// The calling thread ends: its last segment, then its file is closed.
pub fn thread_finish() {
    if !ranges_on() {
        return;
    }
    let local = Local::current();
    if !local.enter() {
        return;
    }
    MEM.with(|t| t.finish(local::pid(), local.tid()));
    local.leave();
}

/// In a fork child: forget the parent's file.
pub fn after_fork_in_child() {
    MEM.with(|t| t.forget_parent());
}

/// The call site of an interposed libc function, in the program's own
/// code (made original), or `None` when the caller is not the program.
#[inline(always)]
pub fn program_call_site(f: Frame) -> Option<u64> {
    let map = sites::get()?;
    let ip = map.original(stack::call_site(f));
    (ip != 0 && map.is_program(ip)).then_some(ip)
}
