//! A small builder of synthetic sync-op traces for the analyses' tests:
//! each call appends the ops a real pthread call would produce, with
//! increasing sequence numbers and a one-frame stack equal to `0x1000 + seq`
//! so that a test can tell which op a location came from.

use lockstep_trace::{Hang, HungThread, Pid, Seq, Spawn, SpawnKind, Stamp, SyncOp, Tid};

pub const PID: i32 = 100;

#[derive(Default)]
pub struct OpsBuilder {
    ops: Vec<SyncOp>,
    spawns: Vec<Spawn>,
    seq: u64,
}

impl OpsBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn stamp(&mut self) -> Stamp {
        self.seq += 1;
        Stamp {
            seq: Seq(self.seq),
            ts_ns: self.seq * 1000,
        }
    }

    /// The next sequence number to be used.
    pub fn next_seq(&self) -> u64 {
        self.seq + 1
    }

    /// Appends one raw op.
    #[allow(clippy::too_many_arguments)]
    pub fn op(
        &mut self,
        tid: i32,
        op: &str,
        phase: &str,
        obj: u64,
        arg: u64,
        flags: u32,
        ret: i32,
    ) -> &mut Self {
        let at = self.stamp();
        self.ops.push(SyncOp {
            at,
            pid: Pid(PID),
            tid: Tid(tid),
            op: op.into(),
            phase: phase.into(),
            obj,
            arg,
            arg2: 0,
            flags,
            ret,
            stack: vec![0x1000 + at.seq.0],
            mechanism: "agent".into(),
        });
        self
    }

    /// `creator` starts thread `child` (pthread_t value `child as u64`).
    pub fn spawn(&mut self, creator: i32, child: i32) -> &mut Self {
        let at = self.stamp();
        self.spawns.push(Spawn {
            at,
            kind: SpawnKind::Thread,
            tid: Tid(child),
            pid: Pid(PID),
            parent_pid: Some(Pid(PID)),
            creator_tid: Some(Tid(creator)),
            clone_flags: None,
        });
        self.op(child, "thread_start", "done", child as u64, 0, 0, 0)
    }

    /// `tid` joins thread `child`.
    pub fn join(&mut self, tid: i32, child: i32) -> &mut Self {
        self.op(tid, "pthread_join", "request", child as u64, 0, 0, 0)
            .op(tid, "pthread_join", "done", child as u64, 0, 0, 0)
    }

    pub fn lock(&mut self, tid: i32, m: u64) -> &mut Self {
        self.op(tid, "pthread_mutex_lock", "request", m, 0, 0, 0)
            .op(tid, "pthread_mutex_lock", "acquired", m, 0, 0, 0)
    }

    /// A lock request that never completes (the thread blocks).
    pub fn lock_blocks(&mut self, tid: i32, m: u64) -> &mut Self {
        self.op(tid, "pthread_mutex_lock", "request", m, 0, 0, 0)
    }

    pub fn lock_recursive(&mut self, tid: i32, m: u64) -> &mut Self {
        self.op(tid, "pthread_mutex_lock", "request", m, 0, 1, 0)
            .op(tid, "pthread_mutex_lock", "acquired", m, 0, 1, 0)
    }

    pub fn trylock(&mut self, tid: i32, m: u64, ok: bool) -> &mut Self {
        if ok {
            self.op(tid, "pthread_mutex_trylock", "acquired", m, 0, 0, 0)
        } else {
            self.op(tid, "pthread_mutex_trylock", "failed", m, 0, 0, 16)
        }
    }

    pub fn unlock(&mut self, tid: i32, m: u64) -> &mut Self {
        self.op(tid, "pthread_mutex_unlock", "released", m, 0, 0, 0)
    }

    pub fn rdlock(&mut self, tid: i32, l: u64) -> &mut Self {
        self.op(tid, "pthread_rwlock_rdlock", "request", l, 0, 0, 0)
            .op(tid, "pthread_rwlock_rdlock", "acquired", l, 0, 0, 0)
    }

    pub fn wrlock(&mut self, tid: i32, l: u64) -> &mut Self {
        self.op(tid, "pthread_rwlock_wrlock", "request", l, 0, 0, 0)
            .op(tid, "pthread_rwlock_wrlock", "acquired", l, 0, 0, 0)
    }

    pub fn rwunlock(&mut self, tid: i32, l: u64) -> &mut Self {
        self.op(tid, "pthread_rwlock_unlock", "released", l, 0, 0, 0)
    }

    /// `tid` starts waiting on `cond`, giving up `m`.
    pub fn cond_wait(&mut self, tid: i32, cond: u64, m: u64) -> &mut Self {
        self.op(tid, "pthread_cond_wait", "request", cond, m, 0, 0)
    }

    /// `tid`'s wait on `cond` returns with `m` held again.
    pub fn cond_woken(&mut self, tid: i32, cond: u64, m: u64) -> &mut Self {
        self.op(tid, "pthread_cond_wait", "acquired", cond, m, 0, 0)
    }

    pub fn destroy(&mut self, tid: i32, m: u64) -> &mut Self {
        self.op(tid, "pthread_mutex_destroy", "done", m, 0, 0, 0)
    }

    pub fn init(&mut self, tid: i32, m: u64) -> &mut Self {
        self.op(tid, "pthread_mutex_init", "done", m, 0, 0, 0)
    }

    /// The hang snapshot of threads `tids`, all blocked in futex waits.
    pub fn hang(&mut self, tids: &[i32]) -> Hang {
        let at = self.stamp();
        Hang {
            at,
            timeout_ms: 5000,
            threads: tids
                .iter()
                .map(|&t| HungThread {
                    pid: Pid(PID),
                    tid: Tid(t),
                    syscall: Some("futex".into()),
                    entry_seq: None,
                    args: "{}".into(),
                    wchan: "futex_wait_queue".into(),
                    stack: Vec::new(),
                })
                .collect(),
        }
    }

    pub fn build(&self) -> (Vec<SyncOp>, Vec<Spawn>) {
        (self.ops.clone(), self.spawns.clone())
    }
}
