//! Replays sync ops to know, at every point, which thread holds which lock
//! and which thread waits for which. Lock *instances* are told apart: an
//! address that is destroyed and initialised again is a new lock.

use crate::ops::{effect, Effect, LockKind, Mode, MUTEX_RECURSIVE, MUTEX_TYPE_MASK};
use lockstep_trace::SyncOp;
use std::collections::HashMap;

/// One lifetime of a lock at an address in a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockId {
    pub pid: i32,
    pub obj: u64,
    pub generation: u32,
}

/// A lock a thread holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub lock: LockId,
    pub kind: LockKind,
    pub mode: Mode,
    /// Recursion depth (recursive mutexes, nested read locks).
    pub count: u32,
    /// Where and when it was taken.
    pub seq: u64,
    pub stack: Vec<u64>,
    pub try_: bool,
}

/// What the replay reports to an analysis.
pub enum Event<'a> {
    /// `op`'s thread took `lock` while holding `held_before`.
    Acquired {
        op: &'a SyncOp,
        lock: LockId,
        kind: LockKind,
        mode: Mode,
        try_: bool,
        held_before: &'a [Held],
    },
    /// `op`'s thread asks for a non-recursive lock it already holds.
    SelfDeadlock {
        op: &'a SyncOp,
        lock: LockId,
        held: &'a Held,
    },
    /// `op`'s thread released a lock it did not hold; `owner` held it (if anyone).
    UnlockNotHeld {
        op: &'a SyncOp,
        lock: LockId,
        owner: Option<(i32, &'a Held)>,
        refused: bool,
    },
    /// `op`'s thread waits on a condvar while holding other locks than the condvar's mutex.
    CondWaitHolding {
        op: &'a SyncOp,
        mutex: LockId,
        others: &'a [Held],
    },
}

/// A blocked acquisition in progress.
#[derive(Clone, Debug)]
pub struct Waiting {
    pub lock: LockId,
    pub mode: Mode,
    pub kind: LockKind,
    pub op: SyncOp,
    /// For a condvar wait: the condvar (the lock is then its mutex, to be re-taken).
    pub cond: Option<u64>,
}

/// The replay state.
#[derive(Default)]
pub struct Tracker {
    generations: HashMap<(i32, u64), u32>,
    held: HashMap<i32, Vec<Held>>,
    waiting: HashMap<i32, Waiting>,
    /// Mutex type bits seen for a lock (from init or any op's flags).
    flags: HashMap<LockId, u32>,
    /// The mutex a thread gave up for a condvar wait, to restore on wakeup.
    parked: HashMap<i32, Held>,
    /// Holds released by another thread's unlock: the owner's own unlock
    /// that follows is a consequence, not a second bug.
    stolen: std::collections::HashSet<(i32, LockId)>,
}

impl Tracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current instance of `obj` in `pid`.
    pub fn lock_id(&self, pid: i32, obj: u64) -> LockId {
        LockId {
            pid,
            obj,
            generation: self.generations.get(&(pid, obj)).copied().unwrap_or(0),
        }
    }

    /// The locks `tid` holds now, oldest first.
    pub fn held(&self, tid: i32) -> &[Held] {
        self.held.get(&tid).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Threads inside a blocking acquisition or condvar wait now.
    pub fn waiting(&self) -> &HashMap<i32, Waiting> {
        &self.waiting
    }

    /// Every thread holding `lock` now, with how.
    pub fn holders(&self, lock: LockId) -> Vec<(i32, &Held)> {
        let mut v: Vec<(i32, &Held)> = self
            .held
            .iter()
            .flat_map(|(&t, hs)| {
                hs.iter()
                    .filter(move |h| h.lock == lock)
                    .map(move |h| (t, h))
            })
            .collect();
        v.sort_by_key(|(t, _)| *t);
        v
    }

    fn recursive(&self, lock: LockId, flags: u32) -> bool {
        let f = self.flags.get(&lock).copied().unwrap_or(flags);
        f & MUTEX_TYPE_MASK == MUTEX_RECURSIVE
    }

    /// Applies one op, reporting to `visit`.
    pub fn apply(&mut self, op: &SyncOp, visit: &mut dyn FnMut(Event<'_>)) {
        let tid = op.tid.0;
        let pid = op.pid.0;
        match effect(op) {
            Effect::Init { obj, flags } => {
                let key = (pid, obj);
                let lock = self.lock_id(pid, obj);
                // Re-initialising an address that was in use starts a new lock.
                if self.flags.contains_key(&lock)
                    || self.held.values().flatten().any(|h| h.lock == lock)
                {
                    *self.generations.entry(key).or_default() += 1;
                }
                self.flags.insert(self.lock_id(pid, obj), flags);
            }
            Effect::Destroy { obj } => {
                *self.generations.entry((pid, obj)).or_default() += 1;
            }
            Effect::Request { obj, kind, mode } => {
                let lock = self.lock_id(pid, obj);
                if let Some(h) = self.held(tid).iter().find(|h| h.lock == lock) {
                    let reentrant = match kind {
                        LockKind::Mutex => self.recursive(lock, op.flags),
                        LockKind::RwLock => mode == Mode::Shared && h.mode == Mode::Shared,
                        LockKind::Spin => false,
                    };
                    if !reentrant {
                        visit(Event::SelfDeadlock { op, lock, held: h });
                    }
                }
                self.waiting.insert(
                    tid,
                    Waiting {
                        lock,
                        mode,
                        kind,
                        op: op.clone(),
                        cond: None,
                    },
                );
            }
            Effect::RequestFailed { .. } => {
                self.waiting.remove(&tid);
            }
            Effect::Acquire {
                obj,
                kind,
                mode,
                try_,
                flags,
            } => {
                self.waiting.remove(&tid);
                let lock = self.lock_id(pid, obj);
                if kind == LockKind::Mutex {
                    self.flags.entry(lock).or_insert(flags);
                }
                let held = self.held.entry(tid).or_default();
                if let Some(h) = held.iter_mut().find(|h| h.lock == lock) {
                    h.count += 1;
                    return;
                }
                visit(Event::Acquired {
                    op,
                    lock,
                    kind,
                    mode,
                    try_,
                    held_before: held,
                });
                let held = self.held.entry(tid).or_default();
                held.push(Held {
                    lock,
                    kind,
                    mode,
                    count: 1,
                    seq: op.at.seq.0,
                    stack: op.stack.clone(),
                    try_,
                });
            }
            Effect::Release { obj } => {
                let lock = self.lock_id(pid, obj);
                if self.release(tid, lock) || self.stolen.remove(&(tid, lock)) {
                    return;
                }
                let owner = self.holders(lock).first().map(|&(t, _)| t);
                match owner {
                    Some(o) => {
                        let h = self
                            .held(o)
                            .iter()
                            .find(|h| h.lock == lock)
                            .expect("holder holds")
                            .clone();
                        visit(Event::UnlockNotHeld {
                            op,
                            lock,
                            owner: Some((o, &h)),
                            refused: false,
                        });
                        // A normal mutex unlocked by another thread is free again.
                        self.release(o, lock);
                        self.stolen.insert((o, lock));
                    }
                    None => visit(Event::UnlockNotHeld {
                        op,
                        lock,
                        owner: None,
                        refused: false,
                    }),
                }
            }
            Effect::ReleaseFailed { obj, .. } => {
                let lock = self.lock_id(pid, obj);
                let owner = self.holders(lock).first().map(|&(t, h)| (t, h.clone()));
                visit(Event::UnlockNotHeld {
                    op,
                    lock,
                    owner: owner.as_ref().map(|(t, h)| (*t, h)),
                    refused: true,
                });
            }
            Effect::CondWaitStart { cond, mutex } => {
                let lock = self.lock_id(pid, mutex);
                let others: Vec<Held> = self
                    .held(tid)
                    .iter()
                    .filter(|h| h.lock != lock)
                    .cloned()
                    .collect();
                if !others.is_empty() {
                    visit(Event::CondWaitHolding {
                        op,
                        mutex: lock,
                        others: &others,
                    });
                }
                // The mutex is released for the duration of the wait.
                let kept = self
                    .held
                    .get(&tid)
                    .and_then(|hs| hs.iter().find(|h| h.lock == lock))
                    .cloned();
                self.release_all(tid, lock);
                self.waiting.insert(
                    tid,
                    Waiting {
                        lock,
                        mode: Mode::Exclusive,
                        kind: LockKind::Mutex,
                        op: op.clone(),
                        cond: Some(cond),
                    },
                );
                if let Some(k) = kept {
                    self.parked.insert(tid, k);
                }
            }
            Effect::CondWaitEnd { mutex, .. } => {
                self.waiting.remove(&tid);
                let lock = self.lock_id(pid, mutex);
                let restored = self.parked.remove(&tid).unwrap_or(Held {
                    lock,
                    kind: LockKind::Mutex,
                    mode: Mode::Exclusive,
                    count: 1,
                    seq: op.at.seq.0,
                    stack: op.stack.clone(),
                    try_: false,
                });
                let held = self.held.entry(tid).or_default();
                if !held.iter().any(|h| h.lock == lock) {
                    held.push(restored);
                }
            }
            Effect::ThreadStart { .. }
            | Effect::Join { .. }
            | Effect::CondSignal { .. }
            | Effect::Other => {}
        }
    }

    /// Drops one level of `tid`'s hold on `lock`; false if it did not hold it.
    fn release(&mut self, tid: i32, lock: LockId) -> bool {
        let Some(held) = self.held.get_mut(&tid) else {
            return false;
        };
        let Some(i) = held.iter().position(|h| h.lock == lock) else {
            return false;
        };
        held[i].count -= 1;
        if held[i].count == 0 {
            held.remove(i);
        }
        true
    }

    fn release_all(&mut self, tid: i32, lock: LockId) {
        if let Some(held) = self.held.get_mut(&tid) {
            held.retain(|h| h.lock != lock);
        }
    }
}
