//! The data-race detector: Eraser's lockset algorithm refined by
//! happens-before, over the memory segments of a trace.
//!
//! Segments, sync ops and spawns are fed in sequence order (see
//! [`crate::racerun::RaceRun`], which merges them): a sync op updates the thread's
//! lockset ([`crate::lockset`]) and vector clock ([`crate::causality`]),
//! heap ops and thread stacks update [`crate::regions`], and every access
//! of a segment runs the state machine of its bytes ([`crate::shadow`]) with
//! the thread's current locksets and clock (constant inside a segment).
//!
//! What is special:
//! - accesses flagged atomic are synchronization and skipped; any address
//!   ever touched by an atomic instruction (flag or `atomic` op) of the
//!   process is never reported, checked at the end;
//! - `free` writes its whole block (from the op, with the size malloc
//!   recorded, and from `Via::Free` accesses), and an allocation makes its
//!   block virgin again (a new location);
//! - a process whose accesses were not captured (no segment but syscall
//!   ones) is not analysed: syscall buffers alone would only give noise;
//! - a spinlock the program built on atomics (`while (xchg(&l, 1)) ;`
//!   ... `l = 0;`) releases with a plain store, which orders nothing in a
//!   trace of segments. A segment that follows the thread's `atomic` op on
//!   `l` (no other sync op between) and writes `l` with a plain store is a
//!   critical section: its accesses hold the pseudo-lock "spinlock l" for
//!   the lockset. A hand-made lock without atomics (the broken
//!   test-and-set) gets nothing;
//! - `pthread_once`: the agent stamps a `released` when the init routine
//!   returns (after closing the routine's segment), an exact release. From
//!   traces without it (older agents): the agent closes a thread's segment
//!   when the call starts and stamps the return after it, so the init
//!   routine's accesses land in the segment after the return; that segment
//!   is published as the once's release too (later callers are ordered
//!   after the whole segment);
//! - conflicts are gathered per pair of code sites (instruction address and
//!   how: instruction, memcpy, free...), not per address, with the racing
//!   bytes merged into ranges; [`crate::racereport`] turns them into findings.

use crate::causality::Causality;
use crate::finding::{Finding, Locator};
use crate::lockset::{Holding, Locksets};
use crate::regions::{Block, Place, Regions};
use crate::shadow::{Acc, Access, Conflict, Shadow, State};
use crate::vclock::{IntMap, ThreadIx};
use lockstep_trace::{MemAccess, MemSegment, Spawn, SyncOp, Via};
use std::collections::{HashMap, HashSet};

/// Byte ranges kept per racing pair before merging.
const MAX_RANGES: usize = 4096;

/// A code site: where an access was made, and how.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Site {
    pub pid: i32,
    /// The instruction (or, for libc functions, the call's return address).
    pub ip: u64,
    pub via: Via,
    pub write: bool,
    /// The widest access seen here.
    pub size: u64,
    /// For syscall buffers: the syscall's name.
    pub label: Option<String>,
    /// For syscall buffers: the call stack at the call's entry, when the
    /// recorder took one (the report names the program's frame in it).
    pub stack: Vec<u64>,
}

/// What tells sites apart: process, address, how, write, syscall, stack.
type SiteKey = (i32, u64, u8, bool, Option<String>, Vec<u64>);

/// The stack of a thread's most recent sync op, and which op it was.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Context {
    pub op: String,
    pub stack: Vec<u64>,
}

/// Everything seen of one racing pair of sites.
#[derive(Clone, Debug)]
pub struct Race {
    pub pid: i32,
    /// The first conflict seen (its two accesses are the reported ones).
    pub first: Conflict,
    /// What the first racing byte was at that moment.
    pub place: Place,
    pub ranges: Vec<(u64, u64)>,
    /// More racing bytes were seen than `ranges` keeps.
    pub truncated: bool,
    pub occurrences: u64,
}

/// The detector's state.
#[derive(Default)]
pub struct RaceDetector {
    pub(crate) hb: Causality,
    pub(crate) sets: Locksets,
    shadow: Shadow,
    pub(crate) regions: Regions,
    pub(crate) sites: Vec<Site>,
    site_ix: HashMap<SiteKey, u32>,
    pub(crate) contexts: Vec<Context>,
    context_ix: HashMap<Context, u32>,
    thread_ctx: IntMap<ThreadIx, u32>,
    /// The address of each thread's latest sync op when it was an `atomic`
    /// acquire (a spinlock it may have just taken).
    atomic_last: IntMap<ThreadIx, u64>,
    /// The once control of each thread whose latest sync op was a
    /// `pthread_once` return.
    once_last: IntMap<ThreadIx, (i32, u64)>,
    /// Once controls whose init routine's return was recorded (`released`):
    /// no segment needs publishing for them.
    once_exact: HashSet<(i32, u64)>,
    pub(crate) races: HashMap<(u32, u32), Race>,
    captured: HashSet<i32>,
    accesses: u64,
}

impl RaceDetector {
    pub fn new() -> Self {
        let mut d = Self::default();
        // Context 0: no sync op yet.
        d.context(Context {
            op: String::new(),
            stack: Vec::new(),
        });
        d
    }

    /// Accesses processed so far.
    pub fn accesses(&self) -> u64 {
        self.accesses
    }

    fn context(&mut self, c: Context) -> u32 {
        if let Some(&i) = self.context_ix.get(&c) {
            return i;
        }
        let i = self.contexts.len() as u32;
        self.contexts.push(c.clone());
        self.context_ix.insert(c, i);
        i
    }

    fn site(
        &mut self,
        pid: i32,
        a: &MemAccess,
        write: bool,
        label: Option<&str>,
        stack: &[u64],
    ) -> u32 {
        let key = (
            pid,
            a.ip,
            a.via as u8,
            write,
            label.map(str::to_string),
            stack.to_vec(),
        );
        let size = a.size as u64;
        if let Some(&i) = self.site_ix.get(&key) {
            let s = &mut self.sites[i as usize];
            s.size = s.size.max(size);
            return i;
        }
        let i = self.sites.len() as u32;
        self.sites.push(Site {
            pid,
            ip: a.ip,
            via: a.via,
            write,
            size,
            label: key.4.clone(),
            stack: key.5.clone(),
        });
        self.site_ix.insert(key, i);
        i
    }

    /// A thread or process was created.
    pub fn spawn(&mut self, s: &Spawn) {
        self.hb.spawn(s);
    }

    /// One sync op, in sequence order.
    pub fn sync(&mut self, op: &SyncOp) {
        self.sets.apply(op);
        self.hb.apply(op);
        let t = self.hb.ix(op.tid.0);
        let pid = op.pid.0;
        if (op.op.as_str(), op.phase.as_str()) == ("atomic", "acquired") {
            self.atomic_last.insert(t, op.obj);
        } else {
            self.atomic_last.remove(&t);
        }
        if (op.op.as_str(), op.phase.as_str()) == ("pthread_once", "released") {
            self.once_exact.insert((pid, op.obj));
        }
        if (op.op.as_str(), op.phase.as_str()) == ("pthread_once", "done")
            && !self.once_exact.contains(&(pid, op.obj))
        {
            self.once_last.insert(t, (pid, op.obj));
        } else {
            self.once_last.remove(&t);
        }
        if !op.stack.is_empty() {
            let c = self.context(Context {
                op: op.op.clone(),
                stack: op.stack.clone(),
            });
            self.thread_ctx.insert(t, c);
        }
        let call_site = op.stack.first().copied().unwrap_or(0);
        match op.op.as_str() {
            "malloc" | "calloc" | "realloc" | "posix_memalign" | "aligned_alloc" if op.obj != 0 => {
                let old = (op.op == "realloc" && op.arg2 != 0).then_some(op.arg2);
                let old_size = old.and_then(|o| self.regions.live_size(pid, o));
                match (old, old_size) {
                    // Grown or shrunk in place: only new bytes are new.
                    (Some(o), Some(n)) if o == op.obj => {
                        if op.arg > n {
                            self.shadow.reset(pid, op.obj + n, op.arg - n);
                        }
                    }
                    _ => {
                        if let (Some(o), Some(n)) = (old, old_size) {
                            self.regions.free(pid, o);
                            self.write_block(op, o, n, call_site);
                        }
                        self.shadow.reset(pid, op.obj, op.arg);
                    }
                }
                self.regions.alloc(
                    pid,
                    Block {
                        addr: op.obj,
                        size: op.arg,
                        seq: op.at.seq.0,
                        tid: op.tid.0,
                        stack: op.stack.clone(),
                        by: op.op.clone(),
                        freed: false,
                    },
                );
            }
            "free" if op.obj != 0 => {
                if let Some(n) = self.regions.free(pid, op.obj) {
                    self.write_block(op, op.obj, n, call_site);
                }
            }
            "atomic" => self.regions.atomic(pid, op.obj, op.arg),
            "thread_stack" => self.regions.thread_stack(pid, op.tid.0, op.obj, op.arg),
            _ => {}
        }
    }

    /// `free` of a block: a write of all of it by the freeing call.
    fn write_block(&mut self, op: &SyncOp, addr: u64, size: u64, ip: u64) {
        let a = MemAccess {
            addr,
            size: size.min(u32::MAX as u64) as u32,
            ip,
            flags: lockstep_trace::access::WRITE,
            via: Via::Free,
        };
        let hold = self.sets.holding(op.tid.0);
        self.access(op.pid.0, op.tid.0, op.at.seq.0, &a, (None, &[]), hold);
    }

    /// One memory segment, in sequence order.
    pub fn segment(&mut self, seg: &MemSegment) {
        self.segment_with_stack(seg, &[]);
    }

    /// One memory segment of a syscall's buffers with the call's stack (see
    /// [`crate::sysaccess`]), in sequence order.
    pub fn segment_with_stack(&mut self, seg: &MemSegment, stack: &[u64]) {
        let label = seg.mechanism.strip_prefix("syscall ");
        let (pid, tid) = (seg.pid.0, seg.tid.0);
        if label.is_none() {
            self.captured.insert(pid);
        }
        let mut hold = self.sets.holding(tid);
        let t = self.hb.ix(tid);
        let releases = |l: u64| {
            seg.accesses.iter().any(|a| {
                !a.is_atomic() && a.is_write() && a.addr <= l && l < a.addr + a.size as u64
            })
        };
        if let Some(&l) = self.atomic_last.get(&t).filter(|&&l| releases(l)) {
            hold = self.sets.with_spin(hold, pid, l);
        }
        for a in &seg.accesses {
            self.access(pid, tid, seg.at.seq.0, a, (label, stack), hold);
        }
        if let Some((p, once)) = self.once_last.remove(&t) {
            self.hb.once_segment(t, seg.at.seq.0, p, once);
        }
    }

    /// One access; a syscall buffer's comes with the syscall's name and
    /// call stack.
    fn access(
        &mut self,
        pid: i32,
        tid: i32,
        seq: u64,
        a: &MemAccess,
        (label, stack): (Option<&str>, &[u64]),
        hold: Holding,
    ) {
        self.accesses += 1;
        if a.is_atomic() {
            self.regions.atomic(pid, a.addr, a.size as u64);
            return;
        }
        let write = a.is_write();
        let t = self.hb.ix(tid);
        let site = self.site(pid, a, write, label, stack);
        let locks = hold.for_access(write);
        let ctx = self.thread_ctx.get(&t).copied().unwrap_or(0);
        let Self {
            hb,
            sets,
            shadow,
            regions,
            races,
            ..
        } = self;
        let access = Access {
            acc: Acc {
                thread: t,
                site,
                locks,
                ctx,
                seq,
            },
            write,
            clock: hb.clock(t),
            clocks: hb.clocks(),
            lock_clock: hb.lock_clock(t),
        };
        shadow.access(pid, a.addr, a.size as u64, &access, sets, &mut |c| {
            record(races, regions, pid, c)
        });
    }

    /// The findings: pairs of processes whose accesses were captured, minus
    /// the bytes touched atomically.
    pub fn finish(mut self, loc: &mut dyn Locator) -> Vec<Finding> {
        let mut races: Vec<Race> = std::mem::take(&mut self.races).into_values().collect();
        races.retain_mut(|r| {
            if !self.captured.contains(&r.pid) {
                return false;
            }
            r.ranges = merge(std::mem::take(&mut r.ranges));
            r.ranges
                .retain(|&(s, e)| !self.regions.is_atomic(r.pid, s, e - s));
            !r.ranges.is_empty()
        });
        // A total order (the map's iteration order is random): a pair of
        // sites is one race, and site numbers follow the trace's order.
        races.sort_by_key(|r| {
            let c = &r.first;
            (c.cur.seq, c.prev.seq, c.prev.site, c.cur.site)
        });
        crate::racereport::findings(&self, races, loc)
    }

    /// The thread id of a dense thread number.
    pub(crate) fn tid(&self, t: ThreadIx) -> i32 {
        self.hb.threads.tid(t)
    }
}

/// Files a conflict under its (unordered) pair of sites.
fn record(races: &mut HashMap<(u32, u32), Race>, regions: &Regions, pid: i32, c: Conflict) {
    let key = (c.prev.site.min(c.cur.site), c.prev.site.max(c.cur.site));
    let end = c.addr + c.len as u64;
    let r = races.entry(key).or_insert_with(|| Race {
        pid,
        place: regions.place(pid, c.addr),
        first: c.clone(),
        ranges: Vec::new(),
        truncated: false,
        occurrences: 0,
    });
    r.occurrences += 1;
    if let Some(last) = r.ranges.last_mut() {
        if last.0 <= c.addr && c.addr <= last.1 {
            last.1 = last.1.max(end);
            return;
        }
    }
    if r.ranges.len() >= MAX_RANGES {
        r.ranges = merge(std::mem::take(&mut r.ranges));
        if r.ranges.len() >= MAX_RANGES / 2 {
            // Enough to show; the rest only counts as an occurrence.
            r.truncated = true;
            return;
        }
    }
    r.ranges.push((c.addr, end));
}

/// Sorts and merges overlapping or adjacent ranges.
fn merge(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(l) if s <= l.1 => l.1 = l.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

impl State {
    /// `exclusive (thread 1235)`, `shared-modified`.
    pub fn describe(self, owner: i32) -> String {
        match self {
            State::Exclusive => format!("exclusive (thread {owner})"),
            s => s.name().to_string(),
        }
    }
}
