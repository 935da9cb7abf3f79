//! Turning an interposed call into events: the one place that decides what
//! an event holds, when its sequence number is drawn, and how the real
//! call's result becomes a phase and a `ret`.
//!
//! Every interposer is one [`intercept!`] (or [`begin`], the real call,
//! [`finish`]) with a [`Shape`] saying which events the call makes:
//!
//! | shape      | before the real call      | after it                         |
//! |------------|---------------------------|----------------------------------|
//! | `Blocking` | `Request`                 | `Acquired` or `Failed`           |
//! | `Attempt`  | –                         | `Acquired` or `Failed`           |
//! | `Release`  | (seq drawn)               | `Released` or `Failed`           |
//! | `Done`     | –                         | `Done`                           |
//! | `Waited`   | `Request`                 | `Done`                           |
//!
//! except the blocking acquires that try first, [`intercept_try_first!`]
//! (`pthread_mutex_lock`, `pthread_rwlock_rdlock`/`wrlock`,
//! `pthread_spin_lock`, `sem_wait`): the non-blocking variant is called
//! first, and if it acquires, the call is an `Attempt` (one `Acquired`, no
//! `Request`); if it fails (contended, or an error such as EDEADLK), the
//! call is then made as `Blocking` (`Request`, the real blocking call,
//! `Acquired` or `Failed`). The timed acquires (`*_timedlock`,
//! `sem_timedwait`...) are plain `Blocking`.
//!
//! A release draws its sequence number *before* the real call, so that the
//! release is ordered before whatever it lets another thread do (that thread
//! can only record its `Acquired` after the real unlock). The thread stays
//! inside the agent (busy) until the event is written, so its ring stays in
//! seq order; releases do not block, so this holds nobody up.
//! `pthread_create` uses the same shape for its `Done`, so that the creation
//! precedes every event of the new thread.
//!
//! Nothing here allocates or locks. A call made while the thread is already
//! inside the agent (a signal handler, or malloc called from the agent), or
//! by a thread that found no ring, is forwarded without events and the
//! events it would have made are counted in `Header::dropped` (a call that
//! tries first is forwarded untried and counts as one, its uncontended
//! shape). errno is preserved across the agent's own work, before and after
//! the real call.
//!
//! # Unwinding through the agent
//! glibc ends threads (`pthread_exit`, cancellation in `pthread_cond_wait`,
//! `sem_wait`, `pthread_join`...) by *forced unwinding*, which walks up
//! through the interposer's frame (and the thread trampoline's). That works
//! because no function of the agent has a landing pad: the crate is built
//! with `panic = "abort"` and every foreign function it calls is declared
//! `extern "C"` (nounwind), so its frames carry unwind tables but no
//! personality routine, and the unwinder passes them like C frames without
//! cleanups. They hold nothing to clean up: `Rec` has no destructor, and the
//! thread is never left marked busy across a call that can unwind.
//! Do not declare anything `extern "C-unwind"` here: under panic=abort rustc
//! wraps such calls in an abort-on-unwind landing pad, and a cancelled
//! thread would abort the process (`tests/coverage.rs` checks this).

use libc::c_int;
use lockstep_agent_abi::{Event, Op, Phase};

use crate::local::Local;
use crate::shm::{self, Shm};
use crate::stack::{self, Frame};

/// Which events a call makes (see the module table).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Blocking,
    Attempt,
    Release,
    Done,
    Waited,
}

/// How the real function reports its outcome.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Conv {
    /// pthread style: 0 or an error number is returned; `EOWNERDEAD` (a
    /// robust mutex whose owner died) still acquires.
    Code,
    /// sem style: 0, or -1 with errno.
    Errno,
    /// `pthread_barrier_wait`: 0 or `PTHREAD_BARRIER_SERIAL_THREAD` both
    /// pass the barrier.
    Barrier,
}

impl Conv {
    /// Whether the call succeeded, and the value for `Event::ret`.
    #[inline(always)]
    fn judge(self, r: c_int, err: c_int) -> (bool, i32) {
        match self {
            Conv::Code => (r == 0 || r == libc::EOWNERDEAD, r),
            Conv::Errno if r == 0 => (true, 0),
            Conv::Errno => (false, err),
            Conv::Barrier => (r == 0 || r == libc::PTHREAD_BARRIER_SERIAL_THREAD, r),
        }
    }
}

/// The op-specific fields of an event.
#[derive(Clone, Copy, Default)]
pub struct Detail {
    pub obj: u64,
    pub arg: u64,
    pub arg2: u64,
    pub flags: u8,
}

impl Detail {
    /// Just the object's address.
    #[inline(always)]
    pub fn obj<T>(p: *const T) -> Detail {
        Detail {
            obj: p as u64,
            ..Detail::default()
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds (vDSO, no system call: see [`crate::vdso`]).
#[inline(always)]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    crate::vdso::monotonic(&mut ts);
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// `r`, returned with the other caller-saved registers zeroed: what an
/// interposer leaves in them is the agent's (timestamps, ring positions),
/// different in every run, and a serialized replay finds a preempted
/// thread by comparing its registers with the recorded ones; code that
/// never reads a register it did not write cannot tell.
#[inline(always)]
pub fn scrubbed(r: c_int) -> c_int {
    let out: c_int;
    // SAFETY: only zeroes registers the asm declares as clobbered.
    unsafe {
        core::arch::asm!(
            "xor ecx, ecx",
            "xor edx, edx",
            "xor esi, esi",
            "xor edi, edi",
            "xor r8d, r8d",
            "xor r9d, r9d",
            "xor r10d, r10d",
            "xor r11d, r11d",
            inlateout("eax") r => out,
            out("rcx") _,
            out("rdx") _,
            out("rsi") _,
            out("rdi") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            options(nomem, nostack, preserves_flags),
        );
    }
    out
}

#[inline(always)]
pub fn errno() -> c_int {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

#[inline(always)]
pub fn set_errno(value: c_int) {
    // SAFETY: as in errno().
    unsafe { *libc::__errno_location() = value };
}

/// An event being made by the calling thread. While `busy` is true the
/// thread is inside the agent (between [`begin`] and the real call of a
/// release, or while writing).
pub struct Rec {
    shm: Shm,
    local: &'static Local,
    ring: u32,
    busy: bool,
    pub ev: Event,
}

impl Rec {
    /// Enters the agent and prepares an event of `op` with the stack of
    /// frame `f`; `None` (the call is to be forwarded unrecorded) if the
    /// thread is already inside the agent or has no ring.
    #[inline(always)]
    fn open(
        shm: Shm,
        local: &'static Local,
        f: Frame,
        op: Op,
        detail: impl FnOnce() -> Detail,
    ) -> Option<Rec> {
        if !local.enter() {
            return None;
        }
        let n = local.sync_calls.get() + 1;
        local.sync_calls.set(n);
        // After ring(): a fork child has learnt its own tid there.
        let ring = local.ring(shm);
        shm.yield_point(local.tid(), n);
        let Some(ring) = ring else {
            local.leave();
            return None;
        };
        let detail = detail();
        let mut ev = Event {
            pid: crate::local::pid(),
            tid: local.tid(),
            op: op as u16,
            flags: detail.flags,
            obj: detail.obj,
            arg: detail.arg,
            arg2: detail.arg2,
            ..Event::default()
        };
        stack::walk(f, local.bounds(), &mut ev.stack);
        // The thread's accesses so far form a segment ordered before this
        // event (whatever phase draws its sequence number).
        crate::mem::before_sync(local, shm);
        Some(Rec {
            shm,
            local,
            ring,
            busy: true,
            ev,
        })
    }

    /// Draws the event's sequence number and time: the event happens now.
    #[inline(always)]
    fn stamp(&mut self) {
        self.ev.seq = self.shm.next_seq();
        self.ev.ts_ns = now_ns();
    }

    /// Writes the event with `phase` and `ret`.
    #[inline(always)]
    fn publish(&mut self, phase: Phase, ret: i32) {
        self.ev.phase = phase as u8;
        self.ev.ret = ret;
        self.shm.append(self.ring, &self.ev, self.local);
    }

    /// Leaves the agent, e.g. before a call that may block.
    #[inline(always)]
    fn leave(&mut self) {
        self.busy = false;
        self.local.leave();
    }

    /// Writes the event that ends the call, with `phase` and `ret`, and
    /// leaves the agent. If the thread is still inside the agent since
    /// [`begin`] (a release), the event keeps the sequence number drawn
    /// then; otherwise it re-enters and draws one now. The thread cannot be
    /// inside the agent already at that point: a signal handler's
    /// interposed calls have all returned before the interrupted code
    /// resumes. errno is preserved.
    #[inline(always)]
    pub fn complete(mut self, phase: Phase, ret: i32) {
        let err = errno();
        if !self.busy {
            let entered = self.local.enter();
            debug_assert!(entered);
            self.stamp();
        }
        self.publish(phase, ret);
        self.leave();
        set_errno(err);
    }

    /// The ring the event goes to.
    pub fn ring(&self) -> u32 {
        self.ring
    }

    pub fn shm(&self) -> Shm {
        self.shm
    }
}

/// A thread waiting in a loop inside an interposed call (a spin lock): a
/// yield point named by the count of the call it is in.
pub fn yield_point_in_call() {
    if let Some(shm) = shm::get() {
        let local = Local::current();
        shm.yield_point(local.tid(), local.sync_calls.get());
    }
}

/// Starts recording a call of `op` of the given `shape` (see the module
/// table): writes the `Request` of blocking calls, or draws the sequence
/// number of releases. `detail` is evaluated only when recording. `None`
/// when the call is not recorded (agent inert, nested call, no ring).
///
/// Between `begin` and [`finish`] the interposer calls the real function
/// (see the module docs on unwinding).
#[inline(always)]
pub fn begin(f: Frame, op: Op, shape: Shape, detail: impl FnOnce() -> Detail) -> Option<Rec> {
    let shm = shm::get()?;
    // A first event may claim a ring and learn the stack bounds, which can
    // touch errno: keep the caller's (a signal handler's caller's) errno.
    let err = errno();
    let rec = Rec::open(shm, Local::current(), f, op, detail);
    set_errno(err);
    let Some(mut rec) = rec else {
        // Count the events the call would have made.
        let events = if matches!(shape, Shape::Blocking | Shape::Waited) {
            2
        } else {
            1
        };
        shm.count_dropped(events);
        return None;
    };
    match shape {
        Shape::Blocking | Shape::Waited => {
            rec.stamp();
            rec.publish(Phase::Request, 0);
            rec.leave();
        }
        Shape::Release => rec.stamp(),
        Shape::Attempt | Shape::Done => rec.leave(),
    }
    Some(rec)
}

/// Ends recording a call begun with [`begin`], whose real function
/// returned `r`: writes `Acquired`/`Released`/`Failed`/`Done` as the shape
/// and `conv` say.
#[inline(always)]
pub fn finish(rec: Option<Rec>, shape: Shape, conv: Conv, r: c_int) {
    let Some(rec) = rec else { return };
    let (ok, ret) = conv.judge(r, errno());
    let phase = match (shape, ok) {
        (Shape::Done | Shape::Waited, _) => Phase::Done,
        (Shape::Release, true) => Phase::Released,
        (_, true) => Phase::Acquired,
        (_, false) => Phase::Failed,
    };
    rec.complete(phase, ret);
}

/// Whether result `r` of a call under `conv` acquired the object.
#[inline(always)]
pub fn acquired(conv: Conv, r: c_int) -> bool {
    conv.judge(r, errno()).0
}

/// The body of a blocking acquire that tries first: an uncontended
/// acquisition is recorded as one `Acquired` event (it could not have
/// blocked, so there is no `Request`), which saves a third of the events of
/// uncontended locking. When the try fails (contended, or an error such as
/// relocking a held errorcheck mutex), the call is recorded as usual: a
/// `Request`, the real blocking call, then `Acquired` or `Failed`.
///
/// `intercept_try_first!(Op, Conv, detail_expr, real::try_name(args), real::name(args))`.
#[macro_export]
macro_rules! intercept_try_first {
    ($op:ident, $conv:ident, $detail:expr, $($try:ident)::+ ( $($targ:ident),* ), $($real:ident)::+ ( $($arg:ident),* )) => {{
        let frame = $crate::frame!();
        let attempt = $crate::record::Shape::Attempt;
        match $crate::record::begin(frame, lockstep_agent_abi::Op::$op, attempt, || $detail) {
            // SAFETY: forwards the interposer's arguments to the real function.
            None => unsafe { $($real)::+($($arg),*) },
            Some(rec) => {
                let err = $crate::record::errno();
                // SAFETY: the real non-blocking variant, same arguments.
                let r = unsafe { $($try)::+($($targ),*) };
                if $crate::record::acquired($crate::record::Conv::$conv, r) {
                    $crate::record::finish(Some(rec), attempt, $crate::record::Conv::$conv, r);
                    $crate::record::scrubbed(r)
                } else {
                    $crate::record::set_errno(err);
                    $crate::intercept!($op, Blocking, $conv, $detail, $($real)::+($($arg),*))
                }
            }
        }
    }};
}

/// The body of an interposer: captures the frame, [`begin`]s, calls the
/// real function with the interposer's own arguments, [`finish`]es and
/// returns the real result.
///
/// `intercept!(Op, Shape, Conv, detail_expr, real::name(arg, ...))`, the
/// arguments being the interposer's parameters.
#[macro_export]
macro_rules! intercept {
    ($op:ident, $shape:ident, $conv:ident, $detail:expr, $($real:ident)::+ ( $($arg:ident),* )) => {{
        let frame = $crate::frame!();
        let shape = $crate::record::Shape::$shape;
        let rec = $crate::record::begin(frame, lockstep_agent_abi::Op::$op, shape, || $detail);
        // SAFETY: calls the real function with the arguments the
        // interposer received, under the same C signature.
        let r = unsafe { $($real)::+($($arg),*) };
        $crate::record::finish(rec, shape, $crate::record::Conv::$conv, r);
        $crate::record::scrubbed(r)
    }};
}
