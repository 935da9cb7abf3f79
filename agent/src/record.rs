//! Turning an interposed call into events: the one place that decides what
//! an event holds, when its sequence number is drawn, and how the real
//! call's result becomes a phase and a `ret`.
//!
//! Every interposer is one call to [`call`] with a [`Shape`] saying which
//! events the call makes:
//!
//! | shape      | before the real call      | after it                         |
//! |------------|---------------------------|----------------------------------|
//! | `Blocking` | `Request`                 | `Acquired` or `Failed`           |
//! | `Attempt`  | –                         | `Acquired` or `Failed`           |
//! | `Release`  | (seq drawn)               | `Released` or `Failed`           |
//! | `Done`     | –                         | `Done`                           |
//! | `Waited`   | `Request`                 | `Done`                           |
//!
//! A release draws its sequence number *before* the real call, so that the
//! release is ordered before whatever it lets another thread do (that thread
//! can only record its `Acquired` after the real unlock). The thread stays
//! inside the agent (busy) until the event is written, so its ring stays in
//! seq order; releases do not block, so this holds nobody up.
//!
//! Nothing here allocates or locks. A call made while the thread is already
//! inside the agent (a signal handler, or malloc called from the agent) is
//! forwarded without events and counted in `Header::dropped`. errno is
//! preserved across the recording done after the real call.

use libc::c_int;
use lockstep_agent_abi::{Event, Op, Phase};

use crate::local::{Local, LOCAL};
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
        Detail { obj: p as u64, ..Detail::default() }
    }
}

/// CLOCK_MONOTONIC in nanoseconds (vDSO, no system call).
#[inline(always)]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.tv_nsec as u64)
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

/// An event being made by the calling thread, which is inside the agent
/// (busy) while a `Rec` is live and not `left`.
pub struct Rec<'a> {
    shm: Shm,
    local: &'a Local,
    ring: u32,
    pub ev: Event,
}

impl<'a> Rec<'a> {
    /// Enters the agent and prepares an event of `op` with the stack of
    /// frame `f`; `None` (the call is to be forwarded unrecorded) if the
    /// thread is already inside the agent or has no ring.
    #[inline(always)]
    fn open(shm: Shm, local: &'a Local, f: Frame, op: Op, detail: Detail) -> Option<Rec<'a>> {
        if !local.enter() {
            shm.count_dropped();
            return None;
        }
        let Some(ring) = local.ring(shm) else {
            shm.count_dropped();
            local.leave();
            return None;
        };
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
        Some(Rec { shm, local, ring, ev })
    }

    /// Draws the event's sequence number and time: the event happens now.
    #[inline(always)]
    pub fn stamp(&mut self) {
        self.ev.seq = self.shm.next_seq();
        self.ev.ts_ns = now_ns();
    }

    /// Writes the event with `phase` and `ret` (stamped earlier).
    #[inline(always)]
    pub fn publish(&mut self, phase: Phase, ret: i32) {
        self.ev.phase = phase as u8;
        self.ev.ret = ret;
        self.shm.append(self.ring, &self.ev, &self.local.stalled);
    }

    /// Stamps and writes the event.
    #[inline(always)]
    pub fn emit(&mut self, phase: Phase, ret: i32) {
        self.stamp();
        self.publish(phase, ret);
    }

    /// Leaves the agent (before a call that may block, or at the end).
    #[inline(always)]
    pub fn leave(&self) {
        self.local.leave();
    }

    /// Re-enters the agent after [`Rec::leave`]. The thread cannot be
    /// inside the agent at this point: a signal handler's interposed calls
    /// have all returned before the interrupted code resumes.
    #[inline(always)]
    pub fn reenter(&self) {
        let entered = self.local.enter();
        debug_assert!(entered);
    }

    /// The ring the event goes to.
    pub fn ring(&self) -> u32 {
        self.ring
    }

    pub fn shm(&self) -> Shm {
        self.shm
    }
}

/// Runs `body` with an open [`Rec`] for an event of `op` (or `None` when
/// the call is not to be recorded: agent inert, nested call, no ring).
/// `detail` is evaluated only when recording. The body must leave the agent.
#[inline(always)]
pub fn session<R>(
    f: Frame,
    op: Op,
    detail: impl FnOnce() -> Detail,
    body: impl FnOnce(Option<&mut Rec<'_>>) -> R,
) -> R {
    let Some(shm) = shm::get() else {
        return body(None);
    };
    LOCAL.with(|local| match Rec::open(shm, local, f, op, detail()) {
        Some(mut rec) => body(Some(&mut rec)),
        None => body(None),
    })
}

/// Records an interposed call of `op` of the given `shape` around `real`,
/// the call of the real function; returns what `real` returned.
#[inline(always)]
pub fn call(
    f: Frame,
    op: Op,
    shape: Shape,
    conv: Conv,
    detail: impl FnOnce() -> Detail,
    real: impl FnOnce() -> c_int,
) -> c_int {
    session(f, op, detail, |rec| {
        let Some(rec) = rec else { return real() };
        match shape {
            Shape::Blocking | Shape::Waited => {
                rec.emit(Phase::Request, 0);
                rec.leave();
            }
            Shape::Release => rec.stamp(),
            Shape::Attempt | Shape::Done => rec.leave(),
        }
        let r = real();
        let err = errno();
        let (ok, ret) = conv.judge(r, err);
        let phase = match (shape, ok) {
            (Shape::Done | Shape::Waited, _) => Phase::Done,
            (Shape::Release, true) => Phase::Released,
            (_, true) => Phase::Acquired,
            (_, false) => Phase::Failed,
        };
        match shape {
            Shape::Release => rec.publish(phase, ret),
            _ => {
                rec.reenter();
                rec.emit(phase, ret);
            }
        }
        rec.leave();
        set_errno(err);
        r
    })
}
