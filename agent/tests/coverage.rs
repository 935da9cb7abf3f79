//! Every interposed function, and the program does not notice the agent:
//! `tests/c/everything.c` prints the same output and exits with the same
//! status natively, with an inert agent (no `LOCKSTEP_SHM`) and with a
//! recording agent, including threads cancelled inside `pthread_cond_wait`
//! and `sem_wait` and a thread ending with `pthread_exit` (glibc's forced
//! unwinding passes through the agent's frames).

mod common;

use std::sync::atomic::Ordering;

use common::{check_order, compile, run, scratch, try_first_calls, Got, Run, Shm, TryFirst};
use lockstep_agent_abi::{Op, Phase};

/// Every op the agent can record (ThreadStart included).
const ALL_OPS: &[Op] = &[
    Op::MutexInit,
    Op::MutexLock,
    Op::MutexTrylock,
    Op::MutexTimedlock,
    Op::MutexUnlock,
    Op::MutexDestroy,
    Op::MutexConsistent,
    Op::RwInit,
    Op::RwRdlock,
    Op::RwWrlock,
    Op::RwTryrdlock,
    Op::RwTrywrlock,
    Op::RwTimedrdlock,
    Op::RwTimedwrlock,
    Op::RwUnlock,
    Op::RwDestroy,
    Op::CondInit,
    Op::CondWait,
    Op::CondTimedwait,
    Op::CondSignal,
    Op::CondBroadcast,
    Op::CondDestroy,
    Op::SemInit,
    Op::SemOpen,
    Op::SemWait,
    Op::SemTrywait,
    Op::SemTimedwait,
    Op::SemPost,
    Op::SemDestroy,
    Op::SemClose,
    Op::SpinInit,
    Op::SpinLock,
    Op::SpinTrylock,
    Op::SpinUnlock,
    Op::SpinDestroy,
    Op::BarrierInit,
    Op::BarrierWait,
    Op::BarrierDestroy,
    Op::ThreadCreate,
    Op::ThreadStart,
    Op::ThreadJoin,
    Op::ThreadDetach,
    Op::ThreadExit,
    Op::Once,
    Op::SetSchedParam,
    Op::SetSchedPrio,
    Op::AttrSetSchedParam,
    Op::AttrSetSchedPolicy,
    Op::AttrSetInheritSched,
    Op::MutexattrSetType,
    Op::MutexattrSetProtocol,
    Op::MutexattrSetPrioceiling,
    Op::MutexattrSetRobust,
];

/// everything.c does not call these (they are covered by sync.c).
const NOT_CALLED: &[Op] = &[
    Op::CondInit,
    Op::CondDestroy,
    Op::CondSignal,
    Op::MutexattrSetType,
    Op::MutexTrylock,
];

fn events(run: &Run, op: Op, phase: Phase) -> Vec<&Got> {
    run.events
        .iter()
        .filter(|g| g.op() == op && g.phase() == phase)
        .collect()
}

#[test]
fn output_and_status_are_unchanged() {
    let dir = scratch("coverage");
    let exe = compile("everything", &dir);
    let native = run(&exe, &[], None, false);
    let inert = run(&exe, &[], None, true);
    let shm = Shm::valid(&dir);
    let recorded = run(&exe, &[], Some(&shm), true);
    assert_eq!(
        native.status.code(),
        Some(3),
        "native run:\n{}",
        native.stdout
    );
    assert!(
        native.stdout.contains("cancel_cond=1 cancel_sem=1 exit=42"),
        "{}",
        native.stdout
    );
    for (name, r) in [("inert", &inert), ("recording", &recorded)] {
        assert_eq!(
            r.status.code(),
            native.status.code(),
            "{name} agent changed the exit status"
        );
        assert_eq!(r.stdout, native.stdout, "{name} agent changed the output");
    }
    assert!(inert.events.is_empty());
    assert!(!recorded.events.is_empty());
}

#[test]
fn every_interposed_function_is_recorded() {
    let dir = scratch("every-op");
    let exe = compile("everything", &dir);
    let shm = Shm::valid(&dir);
    let run = run(&exe, &[], Some(&shm), true);
    assert_eq!(run.status.code(), Some(3), "{}", run.stdout);
    assert_eq!(shm.header().dropped.load(Ordering::Relaxed), 0);
    check_order(&shm, &run.events);
    for &op in ALL_OPS {
        let seen = run.events.iter().any(|g| g.op() == op);
        assert_eq!(seen, !NOT_CALLED.contains(&op), "{}", op.name());
    }

    // Blocking acquires are tried first. everything.c takes its rwlock (once
    // for reading, once for writing) and its spinlock in one thread, free:
    // each is a lone Acquired, no Request.
    for op in [Op::RwRdlock, Op::RwWrlock, Op::SpinLock] {
        let calls = try_first_calls(&run.events, op);
        assert_eq!(calls.len(), 1, "{}: {calls:?}", op.name());
        assert!(
            calls[0].request.is_none() && calls[0].acquired(),
            "{}: {calls:?}",
            op.name()
        );
        assert_eq!(calls[0].end.unwrap().ev.ret, 0, "{}", op.name());
    }
    // Robust mutex whose owner died: acquired with EOWNERDEAD, flags robust;
    // the try already acquires it that way, so there is no Request.
    let owner_dead: Vec<_> = try_first_calls(&run.events, Op::MutexLock)
        .into_iter()
        .filter(|c| c.end.is_some_and(|g| g.ev.ret == libc::EOWNERDEAD))
        .collect();
    assert_eq!(owner_dead.len(), 1);
    assert!(owner_dead[0].acquired() && owner_dead[0].request.is_none());
    assert_eq!(owner_dead[0].end.unwrap().ev.flags, 0x10);
    // PRIO_PROTECT mutex: the kind bit and the ceiling.
    let pp = events(&run, Op::MutexInit, Phase::Done)
        .into_iter()
        .find(|g| g.ev.flags & 0x40 != 0)
        .unwrap();
    assert_eq!(
        (pp.ev.arg2, pp.ev.arg >> 32),
        (10, libc::PTHREAD_PRIO_PROTECT as u64)
    );
    // Timeouts are failures with ETIMEDOUT, try-failures say EBUSY/EAGAIN.
    for op in [
        Op::MutexTimedlock,
        Op::CondTimedwait,
        Op::SemTimedwait,
        Op::RwTimedwrlock,
    ] {
        let failed = events(&run, op, Phase::Failed);
        assert_eq!(failed.len(), 1, "{}", op.name());
        assert_eq!(failed[0].ev.ret, libc::ETIMEDOUT, "{}", op.name());
    }
    for (op, err) in [
        (Op::RwTrywrlock, libc::EBUSY),
        (Op::SpinTrylock, libc::EBUSY),
        (Op::SemTrywait, libc::EAGAIN),
    ] {
        assert_eq!(
            events(&run, op, Phase::Failed)
                .iter()
                .map(|g| g.ev.ret)
                .collect::<Vec<_>>(),
            [err]
        );
    }
    // A timed-out cond wait still carries its mutex.
    let timed = events(&run, Op::CondTimedwait, Phase::Failed)[0];
    assert_ne!(timed.ev.arg, 0);
    // Barrier: two arrivals, two departures, exactly one serial thread.
    let left = events(&run, Op::BarrierWait, Phase::Acquired);
    assert_eq!(events(&run, Op::BarrierWait, Phase::Request).len(), 2);
    assert_eq!(
        left.iter()
            .filter(|g| g.ev.ret == libc::PTHREAD_BARRIER_SERIAL_THREAD)
            .count(),
        1
    );
    assert_eq!(left.len(), 2);
    // Named semaphore: obj = the sem_t*, flags 1, the same object closed.
    let open = events(&run, Op::SemOpen, Phase::Done)[0];
    assert!(open.ev.obj != 0 && open.ev.flags == 1 && open.ev.arg == 1);
    let close = events(&run, Op::SemClose, Phase::Done)[0];
    assert_eq!((close.ev.obj, close.ev.flags), (open.ev.obj, 1));
    // The sem_post on it is not a named-semaphore op, but the same object.
    assert!(events(&run, Op::SemPost, Phase::Released)
        .iter()
        .any(|g| g.ev.obj == open.ev.obj));
    // Writer's rwlock unlock says so (flags bit 0), readers' do not.
    let unlocks = events(&run, Op::RwUnlock, Phase::Released);
    assert_eq!(
        unlocks.iter().map(|g| g.ev.flags).collect::<Vec<_>>(),
        [0, 0, 1, 0]
    );
}

#[test]
fn thread_ends_are_recorded_however_threads_end() {
    let dir = scratch("thread-ends");
    let exe = compile("everything", &dir);
    let shm = Shm::valid(&dir);
    let run = run(&exe, &[], Some(&shm), true);
    assert_eq!(run.status.code(), Some(3));
    let starts = events(&run, Op::ThreadStart, Phase::Done);
    let exits = events(&run, Op::ThreadExit, Phase::Done);
    // die_holding and barrier_peer return; exits calls pthread_exit(42);
    // the two waiters are cancelled; the detached thread returns too, but
    // main may exit before it gets that far.
    assert_eq!(starts.len(), 6);
    let detach = events(&run, Op::ThreadDetach, Phase::Done)[0];
    let mut flags: Vec<(u8, u64)> = exits.iter().map(|g| (g.ev.flags, g.ev.arg)).collect();
    flags.sort();
    assert!(
        (2..=3).contains(&flags.iter().filter(|f| f.0 == 1).count()),
        "{flags:?}"
    );
    assert!(flags.contains(&(0, 42)), "{flags:?}");
    assert_eq!(
        flags.iter().filter(|f| f.0 == 2).count(),
        2,
        "cancelled threads: {flags:?}"
    );
    for s in starts.iter().filter(|s| s.ev.obj != detach.ev.obj) {
        assert!(
            exits
                .iter()
                .any(|e| e.ev.tid == s.ev.tid && e.ev.seq > s.ev.seq),
            "no exit for {}",
            s.ev.tid
        );
        assert_eq!(shm.ring(s.ring).state.load(Ordering::Relaxed), 2);
    }
    // Cancellation: the waiter's Request is the last thing before its end.
    let cancelled_cond = events(&run, Op::CondWait, Phase::Request)[0];
    assert!(events(&run, Op::CondWait, Phase::Acquired).is_empty());
    let its_exit = exits
        .iter()
        .find(|e| e.ev.tid == cancelled_cond.ev.tid)
        .unwrap();
    assert_eq!(its_exit.ev.flags, 2);
    // sem_wait on a semaphore never posted: the try fails, so Request, and
    // the thread is cancelled inside the real call (no Acquired or Failed
    // before its end). Main's three waits (started twice, detached_done)
    // all succeed.
    let waits = try_first_calls(&run.events, Op::SemWait);
    assert_eq!(waits.len(), 4, "{waits:?}");
    let (cancelled, done): (Vec<TryFirst>, Vec<TryFirst>) =
        waits.iter().partition(|c| c.end.is_none());
    assert_eq!(cancelled.len(), 1, "{waits:?}");
    assert!(cancelled[0].request.is_some());
    assert!(exits
        .iter()
        .any(|e| e.ev.tid == cancelled[0].tid() && e.ev.flags == 2));
    assert!(done.iter().all(|c| c.acquired() && c.tid() == run.pid));
    // The detach names the thread the create returned.
    assert!(events(&run, Op::ThreadCreate, Phase::Done)
        .iter()
        .any(|c| c.ev.obj == detach.ev.obj));
    let sched = events(&run, Op::SetSchedParam, Phase::Done)[0];
    let printed: i32 = run.stdout.split("setschedparam=").nth(1).unwrap()[..2]
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        (sched.ev.arg2, sched.ev.ret),
        (libc::SCHED_OTHER as u64, printed)
    );
}
