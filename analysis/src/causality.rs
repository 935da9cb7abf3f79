//! Happens-before for the race detector: every thread's vector clock,
//! advanced online as spawns and sync ops are fed in sequence order.
//!
//! The edges (a release stores the releasing thread's clock in the
//! object's clock, an acquire joins the object's clock into the acquiring
//! thread's):
//!
//! | from (release)                                   | to (acquire)                                   |
//! |--------------------------------------------------|------------------------------------------------|
//! | thread creation (spawn row, `pthread_create`)    | everything the new thread does (`thread_start`)|
//! | everything a thread did                          | a `pthread_join` of it that returned 0         |
//! | `pthread_cond_signal`/`broadcast` (`released`)   | a cond wait that returned `acquired`           |
//! | `sem_post` (`released`)                          | `sem_wait`/`trywait`/`timedwait` `acquired`    |
//! | every arrival (`request`) of a barrier generation| every departure (`acquired`) of that generation|
//! | a `pthread_once` return (the initialiser's first)| every later `pthread_once` return on it        |
//! | `pthread_rwlock_unlock` of a write-held rwlock   | any later rwlock acquire                       |
//! | `atomic` `released` (before the instruction)     | `atomic` `acquired` on the same address        |
//!
//! Object clocks accumulate (joins, not overwrites): a wait acquires every
//! signal so far, a conservative choice that can only hide races, never
//! invent them. Mutex and spinlock unlock→lock are deliberately *not*
//! edges: the lockset covers them, and a race that this run's lock order
//! happened to serialize is still found (that is the point of Eraser).
//! Processes never race with each other (separate address spaces), so fork,
//! exec and wait add nothing; objects are keyed by process.
//!
//! Barrier generations: the agent records `request` on arrival and
//! `acquired` on leaving. With the count from `pthread_barrier_init`, the
//! N-th arrival closes a generation and each departure acquires the
//! generation its thread arrived in. Without a known count, a departure
//! acquires every arrival so far (may hide a race across phases, never adds one).
//!
//! `pthread_once`: the agent stamps `released` when the init routine
//! returns, inside the call and before waiters wake, and `done` after the
//! call; the `released` is the release that orders every later return.
//! (Traces of older agents have only `done`: a waiter woken by the
//! initialiser may draw its seq first, and its reads are then reported.)

use crate::vclock::{IntMap, ThreadIx, Threads, VClock};
use lockstep_trace::{Spawn, SpawnKind, SyncOp};
use std::collections::HashMap;

/// What kind of object a clock belongs to (one address can be several).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Obj {
    Cond,
    Sem,
    Once,
    RwLock,
    Atomic,
    Create,
    /// A mutex, spinlock or rwlock, in the lock-inclusive clocks only.
    Lock,
}

#[derive(Default)]
struct Barrier {
    /// From `pthread_barrier_init`.
    count: Option<u64>,
    /// Arrivals in the open generation.
    arrived: u64,
    generation: u64,
    /// The join of the open generation's arrivals (strict, lock-inclusive).
    pending: (VClock, VClock),
    /// Clocks of closed generations still being left.
    closed: HashMap<u64, (VClock, VClock)>,
    /// Every arrival ever (fallback without a count).
    all: (VClock, VClock),
}

fn join_pair(into: &mut (VClock, VClock), c: &VClock, l: &VClock) {
    into.0.join(c);
    into.1.join(l);
}

/// The clocks of every thread of a run.
#[derive(Default)]
pub struct Causality {
    pub threads: Threads,
    clocks: Vec<VClock>,
    objs: HashMap<(i32, u64, Obj), VClock>,
    /// The same clocks with mutex, spinlock and rwlock unlock → lock edges
    /// too ("ordered at least by a lock"; see [`Causality::lock_clock`]).
    lock_clocks: Vec<VClock>,
    lock_objs: HashMap<(i32, u64, Obj), VClock>,
    /// Latest `thread_start` per (pid, pthread_t): who a join joins.
    starts: HashMap<(i32, u64), ThreadIx>,
    barriers: HashMap<(i32, u64), Barrier>,
    /// The generation each waiting thread arrived in, per barrier.
    arrivals: IntMap<(ThreadIx, u64), u64>,
    /// rwlocks held in write mode, by thread.
    writers: IntMap<(ThreadIx, u64), ()>,
}

impl Causality {
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of `tid` (registering it).
    pub fn ix(&mut self, tid: i32) -> ThreadIx {
        let i = self.threads.ix(tid);
        if self.clocks.len() <= i as usize {
            self.clocks.resize(i as usize + 1, VClock::new());
            self.lock_clocks.resize(i as usize + 1, VClock::new());
        }
        i
    }

    /// Thread `t`'s clock counting lock hand-overs as ordering too. Not
    /// happens-before for the race verdict (the lockset judges locks), but
    /// what tells a read of data published under a mutex (Eraser's
    /// initialisation tolerance) from a read of data nothing published.
    pub fn lock_clock(&self, t: ThreadIx) -> &VClock {
        &self.lock_clocks[t as usize]
    }

    /// The current clocks of all threads, by number.
    pub fn clocks(&self) -> &[VClock] {
        &self.clocks
    }

    /// The current clock of thread `t`.
    pub fn clock(&self, t: ThreadIx) -> &VClock {
        &self.clocks[t as usize]
    }

    /// `t`'s clocks as of its event at `seq`, to be stored by a release.
    fn released(&mut self, t: ThreadIx, seq: u64) -> (VClock, VClock) {
        let c = &mut self.clocks[t as usize];
        c.advance(t, seq);
        let l = &mut self.lock_clocks[t as usize];
        l.advance(t, seq);
        (c.clone(), l.clone())
    }

    /// Joins clocks `(c, l)` into thread `t`'s.
    fn learn(&mut self, t: ThreadIx, c: &VClock, l: &VClock) {
        self.clocks[t as usize].join(c);
        self.lock_clocks[t as usize].join(l);
    }

    fn release(&mut self, t: ThreadIx, seq: u64, key: (i32, u64, Obj)) {
        let (c, l) = self.released(t, seq);
        if key.2 != Obj::Lock {
            self.objs.entry(key).or_default().join(&c);
        }
        self.lock_objs.entry(key).or_default().join(&l);
    }

    fn acquire(&mut self, t: ThreadIx, key: (i32, u64, Obj)) {
        if let Some(c) = self.objs.get(&key) {
            self.clocks[t as usize].join(c);
        }
        if let Some(l) = self.lock_objs.get(&key) {
            self.lock_clocks[t as usize].join(l);
        }
    }

    /// A process or thread came to be: a new thread starts with its
    /// creator's knowledge (a new process too: harmless, pids never race).
    pub fn spawn(&mut self, s: &Spawn) {
        let child = self.ix(s.tid.0);
        let Some(creator) = s.creator_tid else { return };
        if matches!(s.kind, SpawnKind::Root | SpawnKind::ExecTakeover) {
            return;
        }
        let creator = self.ix(creator.0);
        let (c, l) = self.released(creator, s.at.seq.0);
        self.learn(child, &c, &l);
    }

    /// Applies one sync op (in sequence order).
    pub fn apply(&mut self, op: &SyncOp) {
        let t = self.ix(op.tid.0);
        let (pid, obj, seq) = (op.pid.0, op.obj, op.at.seq.0);
        self.clocks[t as usize].advance(t, seq);
        self.lock_clocks[t as usize].advance(t, seq);
        let key = |o: Obj| (pid, obj, o);
        match (op.op.as_str(), op.phase.as_str()) {
            ("pthread_create", "done") if op.ret == 0 => self.release(t, seq, key(Obj::Create)),
            ("thread_start", _) => {
                self.starts.insert((pid, obj), t);
                self.acquire(t, key(Obj::Create));
            }
            ("pthread_join", "done") if op.ret == 0 => {
                if let Some(&child) = self.starts.get(&(pid, obj)) {
                    // Everything the child did happened before the join returned.
                    let mut c = self.clocks[child as usize].clone();
                    c.advance(child, seq);
                    let mut l = self.lock_clocks[child as usize].clone();
                    l.advance(child, seq);
                    self.learn(t, &c, &l);
                }
            }
            ("pthread_cond_signal" | "pthread_cond_broadcast", "released") => {
                self.release(t, seq, key(Obj::Cond))
            }
            ("pthread_cond_wait" | "pthread_cond_timedwait", "acquired") => {
                self.acquire(t, key(Obj::Cond));
                self.acquire(t, (pid, op.arg, Obj::Lock));
            }
            ("sem_post", "released") => self.release(t, seq, key(Obj::Sem)),
            ("sem_wait" | "sem_trywait" | "sem_timedwait", "acquired") => {
                self.acquire(t, key(Obj::Sem))
            }
            // The end of the init routine, if the agent records it.
            ("pthread_once", "released") => self.release(t, seq, key(Obj::Once)),
            ("pthread_once", "done") => {
                self.acquire(t, key(Obj::Once));
                self.release(t, seq, key(Obj::Once));
            }
            ("atomic", "released") => self.release(t, seq, key(Obj::Atomic)),
            ("atomic", "acquired") => self.acquire(t, key(Obj::Atomic)),
            (
                "pthread_rwlock_wrlock" | "pthread_rwlock_trywrlock" | "pthread_rwlock_timedwrlock",
                "acquired",
            ) => {
                self.writers.insert((t, obj), ());
                self.acquire(t, key(Obj::RwLock));
            }
            (
                "pthread_rwlock_rdlock" | "pthread_rwlock_tryrdlock" | "pthread_rwlock_timedrdlock",
                "acquired",
            ) => self.acquire(t, key(Obj::RwLock)),
            // Only a writer's unlock publishes (readers change nothing).
            ("pthread_rwlock_unlock", "released") if self.writers.remove(&(t, obj)).is_some() => {
                self.release(t, seq, key(Obj::RwLock))
            }
            ("pthread_barrier_init", "done") if op.ret == 0 => {
                self.barriers.insert(
                    (pid, obj),
                    Barrier {
                        count: (op.arg > 0).then_some(op.arg),
                        ..Barrier::default()
                    },
                );
            }
            ("pthread_barrier_wait", "request") => self.arrive(t, seq, (pid, obj)),
            (
                "pthread_mutex_unlock" | "pthread_spin_unlock" | "pthread_rwlock_unlock",
                "released",
            ) => self.release(t, seq, key(Obj::Lock)),
            // A condvar wait gives its mutex up and takes it back.
            ("pthread_cond_wait" | "pthread_cond_timedwait", "request") => {
                self.release(t, seq, (pid, op.arg, Obj::Lock))
            }
            ("pthread_cond_wait" | "pthread_cond_timedwait", "failed") => {
                self.acquire(t, (pid, op.arg, Obj::Lock))
            }
            (name, "acquired")
                if name.starts_with("pthread_mutex_") || name.starts_with("pthread_spin_") =>
            {
                self.acquire(t, key(Obj::Lock))
            }
            ("pthread_barrier_wait", "acquired") => self.depart(t, (pid, obj)),
            _ => {}
        }
    }

    /// Thread `t`'s segment closed at `seq`, right after its
    /// `pthread_once` on `obj` returned: the agent closes the segment before
    /// the call, so the init routine's accesses are in this one. Published
    /// again as the once's release, later callers are ordered after them.
    pub fn once_segment(&mut self, t: ThreadIx, seq: u64, pid: i32, obj: u64) {
        self.release(t, seq, (pid, obj, Obj::Once));
    }

    fn arrive(&mut self, t: ThreadIx, seq: u64, key: (i32, u64)) {
        let (c, l) = self.released(t, seq);
        let b = self.barriers.entry(key).or_default();
        join_pair(&mut b.pending, &c, &l);
        join_pair(&mut b.all, &c, &l);
        b.arrived += 1;
        self.arrivals.insert((t, key.1), b.generation);
        if b.count == Some(b.arrived) {
            let done = std::mem::take(&mut b.pending);
            b.closed.insert(b.generation, done);
            b.generation += 1;
            b.arrived = 0;
        }
    }

    fn depart(&mut self, t: ThreadIx, key: (i32, u64)) {
        let Some(b) = self.barriers.get_mut(&key) else {
            return;
        };
        let generation = self.arrivals.remove(&(t, key.1));
        let (c, l) = match (b.count, generation.and_then(|g| b.closed.get(&g))) {
            (Some(_), Some(c)) => c,
            _ => &b.all,
        };
        self.clocks[t as usize].join(c);
        self.lock_clocks[t as usize].join(l);
        // Generations older than the open one minus a few are left by now.
        let keep = b.generation.saturating_sub(4);
        b.closed.retain(|&g, _| g >= keep);
    }
}
