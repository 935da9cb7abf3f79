//! A small builder of synthetic sync-op traces for the analyses' tests:
//! each call appends the ops a real pthread call would produce, with
//! increasing sequence numbers and a one-frame stack equal to `0x1000 + seq`
//! so that a test can tell which op a location came from. Memory accesses
//! are one-access segments (or several with [`OpsBuilder::segment`]) closed
//! at the next sequence number; [`OpsBuilder::process`] switches the process
//! the following ops and accesses belong to.

use lockstep_trace::{
    access, Hang, HungThread, MemAccess, MemSegment, Pid, Seq, Spawn, SpawnKind, Stamp, SyncOp,
    Syscall, SyscallOutcome, Tid, Via,
};

pub const PID: i32 = 100;

#[derive(Default)]
pub struct OpsBuilder {
    ops: Vec<SyncOp>,
    spawns: Vec<Spawn>,
    segments: Vec<MemSegment>,
    seq: u64,
    /// The process of what follows (0: [`PID`]).
    pid: i32,
    /// Time added to every stamp from now on (see [`OpsBuilder::sleep_ns`]).
    extra_ns: u64,
}

impl OpsBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn stamp(&mut self) -> Stamp {
        self.seq += 1;
        Stamp {
            seq: Seq(self.seq),
            ts_ns: self.seq * 1000 + self.extra_ns,
        }
    }

    /// Lets `ns` nanoseconds pass before the next op.
    pub fn sleep_ns(&mut self, ns: u64) -> &mut Self {
        self.extra_ns += ns;
        self
    }

    /// The time the last op got.
    pub fn now_ns_of_last(&self) -> u64 {
        self.seq * 1000 + self.extra_ns
    }

    /// The time the next op will get.
    pub fn next_ns(&self) -> u64 {
        (self.seq + 1) * 1000 + self.extra_ns
    }

    fn pid(&self) -> i32 {
        if self.pid == 0 {
            PID
        } else {
            self.pid
        }
    }

    /// Ops, spawns and accesses from now on belong to process `pid`.
    pub fn process(&mut self, pid: i32) -> &mut Self {
        self.pid = pid;
        self
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
            pid: Pid(self.pid()),
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
            pid: Pid(self.pid()),
            parent_pid: Some(Pid(self.pid())),
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

    /// The memory segments so far.
    pub fn segments(&self) -> Vec<MemSegment> {
        self.segments.clone()
    }

    /// A segment of `tid` with these accesses, closed now.
    pub fn segment(&mut self, tid: i32, accesses: &[MemAccess]) -> &mut Self {
        let at = self.stamp();
        self.segments.push(MemSegment {
            at,
            pid: Pid(self.pid()),
            tid: Tid(tid),
            mechanism: "agent".into(),
            accesses: accesses.to_vec(),
        });
        self
    }

    /// `tid` reads `size` bytes at `addr` with the instruction at `ip`.
    pub fn read(&mut self, tid: i32, addr: u64, size: u32, ip: u64) -> &mut Self {
        self.segment(tid, &[mem(addr, size, ip, access::READ, Via::Instruction)])
    }

    /// `tid` writes `size` bytes at `addr` with the instruction at `ip`.
    pub fn write(&mut self, tid: i32, addr: u64, size: u32, ip: u64) -> &mut Self {
        self.segment(tid, &[mem(addr, size, ip, access::WRITE, Via::Instruction)])
    }

    /// An op with `arg2` too.
    fn op2(&mut self, tid: i32, op: &str, phase: &str, obj: u64, arg: u64, arg2: u64) -> &mut Self {
        self.op(tid, op, phase, obj, arg, 0, 0);
        self.ops.last_mut().expect("just pushed").arg2 = arg2;
        self
    }

    pub fn malloc(&mut self, tid: i32, block: u64, size: u64) -> &mut Self {
        self.op(tid, "malloc", "done", block, size, 0, 0)
    }

    pub fn realloc(&mut self, tid: i32, old: u64, block: u64, size: u64) -> &mut Self {
        self.op2(tid, "realloc", "done", block, size, old)
    }

    pub fn free(&mut self, tid: i32, block: u64) -> &mut Self {
        self.op(tid, "free", "done", block, 0, 0, 0)
    }

    /// A lock-prefixed instruction at `ip` on `size` bytes at `addr`: the
    /// ops around it and the access itself.
    pub fn atomic(&mut self, tid: i32, addr: u64, size: u32, ip: u64) -> &mut Self {
        let rw = access::READ | access::WRITE | access::ATOMIC;
        self.op2(tid, "atomic", "released", addr, size as u64, ip)
            .segment(tid, &[mem(addr, size, ip, rw, Via::Instruction)])
            .op2(tid, "atomic", "acquired", addr, size as u64, ip)
    }

    pub fn sem_post(&mut self, tid: i32, s: u64) -> &mut Self {
        self.op(tid, "sem_post", "released", s, 0, 0, 0)
    }

    pub fn sem_wait(&mut self, tid: i32, s: u64) -> &mut Self {
        self.op(tid, "sem_wait", "acquired", s, 0, 0, 0)
    }

    pub fn cond_signal(&mut self, tid: i32, cond: u64) -> &mut Self {
        self.op(tid, "pthread_cond_signal", "released", cond, 0, 0, 0)
    }

    pub fn barrier_init(&mut self, tid: i32, b: u64, count: u64) -> &mut Self {
        self.op(tid, "pthread_barrier_init", "done", b, count, 0, 0)
    }

    /// `tid` arrives at barrier `b` (it leaves with [`Self::barrier_leave`]).
    pub fn barrier_arrive(&mut self, tid: i32, b: u64) -> &mut Self {
        self.op(tid, "pthread_barrier_wait", "request", b, 0, 0, 0)
    }

    pub fn barrier_leave(&mut self, tid: i32, b: u64) -> &mut Self {
        self.op(tid, "pthread_barrier_wait", "acquired", b, 0, 0, 0)
    }

    pub fn once(&mut self, tid: i32, control: u64) -> &mut Self {
        self.op(tid, "pthread_once", "done", control, 0, 0, 0)
    }

    pub fn spin_lock(&mut self, tid: i32, s: u64) -> &mut Self {
        self.op(tid, "pthread_spin_lock", "acquired", s, 0, 0, 0)
    }

    pub fn spin_unlock(&mut self, tid: i32, s: u64) -> &mut Self {
        self.op(tid, "pthread_spin_unlock", "released", s, 0, 0, 0)
    }

    /// A `read`/`write`-like syscall of `tid` on `buf` (`count` bytes
    /// asked, `ret` returned), entered and exited at the next two seqs.
    pub fn syscall(&mut self, tid: i32, name: &str, buf: u64, count: u64, ret: i64) -> Syscall {
        let (entry, exit) = (self.stamp(), self.stamp());
        Syscall {
            pid: Pid(self.pid()),
            tid: Tid(tid),
            nr: 0,
            name: name.into(),
            args: [3, buf, count, 0, 0, 0],
            entry,
            decoded: serde_json::Value::Null,
            text: String::new(),
            exit: Some(exit),
            outcome: SyscallOutcome::Returned,
            ret: Some(ret),
            error: None,
            result: serde_json::Value::Null,
            stack: vec![],
        }
    }

    /// `tid`'s stack is `[lo, hi)`.
    pub fn thread_stack(&mut self, tid: i32, lo: u64, hi: u64) -> &mut Self {
        self.op(tid, "thread_stack", "done", lo, hi, 0, 0)
    }
}

/// One access (a helper for [`OpsBuilder::segment`]).
pub fn mem(addr: u64, size: u32, ip: u64, flags: u8, via: Via) -> MemAccess {
    MemAccess {
        addr,
        size,
        ip,
        flags,
        via,
    }
}
