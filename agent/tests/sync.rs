//! The agent records exactly what `tests/c/sync.c` does: exact counts per
//! op and phase (bounded only where contention decides), one order, lock
//! pairing, which calls had to wait, mutex kinds, error codes, call sites,
//! and thread identities.

mod common;

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::atomic::Ordering;

use common::{check_order, compile, run, scratch, try_first_calls, Got, Run, Shm, TryFirst};
use lockstep_agent_abi::{Op, Phase};

const fn exactly(n: usize) -> RangeInclusive<usize> {
    RangeInclusive::new(n, n)
}

/// What sync.c must produce, and nothing else. The counts are exact but
/// for the `Request`s of `pthread_mutex_lock` and `sem_wait`: the agent
/// tries those first and writes a `Request` only when the try fails, which
/// contention decides for some calls (see
/// `only_the_calls_that_had_to_wait_make_a_request` for each call).
const EXPECTED: &[(Op, Phase, RangeInclusive<usize>)] = &[
    (Op::MutexattrSetType, Phase::Done, exactly(2)),
    (Op::MutexattrSetProtocol, Phase::Done, exactly(1)),
    (Op::MutexInit, Phase::Done, exactly(3)),
    // 2010 lock calls, each ending in one Acquired or Failed: 2 workers x
    // 1000, m twice (consumer, main), busy, ec twice (the relock fails
    // with EDEADLK), rec twice, pi, held twice (main, blocked).
    (Op::MutexLock, Phase::Acquired, exactly(2009)),
    (Op::MutexLock, Phase::Failed, exactly(1)),
    // At least the relock of ec and blocked's lock of held; at most those
    // and the calls that can find their mutex taken: the workers' and
    // main's lock of m.
    (Op::MutexLock, Phase::Request, 2..=2003),
    (Op::MutexUnlock, Phase::Released, exactly(2009)),
    // The intruder's unlock of ec.
    (Op::MutexUnlock, Phase::Failed, exactly(1)),
    (Op::MutexTrylock, Phase::Failed, exactly(1)),
    (Op::MutexDestroy, Phase::Done, exactly(1)),
    (Op::CondWait, Phase::Request, exactly(1)),
    (Op::CondWait, Phase::Acquired, exactly(1)),
    (Op::CondSignal, Phase::Released, exactly(1)),
    (Op::SemInit, Phase::Done, exactly(2)),
    (Op::SemPost, Phase::Released, exactly(2)),
    // Main's waits on sem (the consumer may have posted already) and on
    // go (posted only once main waits).
    (Op::SemWait, Phase::Request, 1..=2),
    (Op::SemWait, Phase::Acquired, exactly(2)),
    (Op::SemDestroy, Phase::Done, exactly(2)),
    (Op::ThreadCreate, Phase::Done, exactly(5)),
    (Op::ThreadStart, Phase::Done, exactly(5)),
    (Op::ThreadExit, Phase::Done, exactly(5)),
    (Op::ThreadJoin, Phase::Request, exactly(5)),
    (Op::ThreadJoin, Phase::Done, exactly(5)),
];

fn record_sync() -> (Shm, Run) {
    let dir = scratch("sync");
    let exe = compile("sync", &dir);
    let shm = Shm::valid(&dir);
    let run = run(&exe, &[], Some(&shm), true);
    assert!(
        run.status.success(),
        "sync.c failed: {:?}\n{}",
        run.status,
        run.stdout
    );
    (shm, run)
}

fn find(run: &Run, op: Op, phase: Phase, obj: u64) -> Vec<&Got> {
    run.events
        .iter()
        .filter(|g| g.op() == op && g.phase() == phase && g.ev.obj == obj)
        .collect()
}

#[test]
fn records_exactly_what_the_program_does() {
    let (shm, run) = record_sync();
    let v = |k: &str| run.value(k);
    assert_eq!(v("counter"), 2000);
    assert_eq!(
        shm.header().dropped.load(Ordering::Relaxed),
        0,
        "events dropped"
    );
    assert_eq!(shm.header().overflow.load(Ordering::Relaxed), 0);
    check_order(&shm, &run.events);

    // The counts of the table, and no event outside it.
    let mut counts: BTreeMap<(u16, u8), usize> = BTreeMap::new();
    for g in &run.events {
        *counts.entry((g.ev.op, g.ev.phase)).or_default() += 1;
    }
    for (op, phase, n) in EXPECTED {
        let got = run.count(*op, *phase);
        assert!(
            n.contains(&got),
            "{} {}: {got}, expected {n:?}",
            op.name(),
            phase.name()
        );
        counts.remove(&(*op as u16, *phase as u8));
    }
    let extra: Vec<String> = counts
        .iter()
        .map(|(&(op, ph), n)| format!("{:?} {:?} x{n}", Op::from_code(op), Phase::from_code(ph)))
        .collect();
    assert!(extra.is_empty(), "unexpected events: {extra:?}");

    // Every event of the process carries its pid; the main thread's tid is the pid.
    assert!(run.events.iter().all(|g| g.ev.pid == run.pid));
    assert!(run.events.iter().any(|g| g.ev.tid == run.pid));
    assert!(run.events.iter().all(|g| g.ev.ts_ns > 0));
}

#[test]
fn locks_pair_up_per_thread() {
    let (_shm, run) = record_sync();
    let mut by_thread: BTreeMap<i32, Vec<&Got>> = BTreeMap::new();
    for g in &run.events {
        by_thread.entry(g.ev.tid).or_default().push(g);
    }
    for (tid, mut events) in by_thread {
        events.sort_by_key(|g| g.ev.seq);
        let mut held: BTreeMap<u64, i64> = BTreeMap::new();
        for g in events {
            let (obj, delta, what) = match (g.op(), g.phase()) {
                (Op::MutexLock | Op::MutexTrylock | Op::MutexTimedlock, Phase::Acquired) => {
                    (g.ev.obj, 1, "lock")
                }
                (Op::MutexUnlock, Phase::Released) => (g.ev.obj, -1, "unlock"),
                (Op::CondWait, Phase::Request) => (g.ev.arg, -1, "cond wait"),
                (Op::CondWait, Phase::Acquired | Phase::Failed) => (g.ev.arg, 1, "wake-up"),
                _ => continue,
            };
            let n = held.entry(obj).or_default();
            *n += delta;
            assert!(
                *n >= 0,
                "thread {tid}: {what} of {obj:#x} (seq {}) without holding it",
                g.ev.seq
            );
        }
        let leaked: Vec<_> = held.iter().filter(|(_, &n)| n != 0).collect();
        assert!(leaked.is_empty(), "thread {tid} ends holding {leaked:x?}");
    }
}

#[test]
fn mutex_kinds_errors_and_wakeups() {
    let (_shm, run) = record_sync();
    let v = |k: &str| run.value(k);
    let kinds = |obj: u64| -> Vec<u8> {
        run.events
            .iter()
            .filter(|g| g.ev.obj == obj && matches!(g.op(), Op::MutexLock | Op::MutexUnlock))
            .map(|g| g.ev.flags)
            .collect()
    };
    let (rec, ec, pi, counter_lock) = (v("rec"), v("ec"), v("pi"), v("counter_lock"));
    assert!(
        kinds(rec).iter().all(|&f| f == 1),
        "recursive: {:?}",
        kinds(rec)
    );
    assert!(
        kinds(ec).iter().all(|&f| f == 2),
        "errorcheck: {:?}",
        kinds(ec)
    );
    assert!(
        !kinds(pi).is_empty() && kinds(pi).iter().all(|&f| f == 0x20),
        "PI: {:?}",
        kinds(pi)
    );
    assert!(kinds(counter_lock).iter().all(|&f| f == 0));
    // pthread_mutex_init records the attr's type (low half) and protocol (high half).
    let init = |obj| find(&run, Op::MutexInit, Phase::Done, obj)[0].ev;
    assert_eq!(
        (init(rec).arg, init(rec).flags),
        (libc::PTHREAD_MUTEX_RECURSIVE as u64, 1)
    );
    assert_eq!(init(ec).arg, libc::PTHREAD_MUTEX_ERRORCHECK as u64);
    assert_eq!(
        (init(pi).arg >> 32, init(pi).flags),
        (libc::PTHREAD_PRIO_INHERIT as u64, 0x20)
    );

    // The failed trylock says EBUSY; the non-owner's unlock EPERM.
    let busy = v("busy");
    let try_fail = find(&run, Op::MutexTrylock, Phase::Failed, busy);
    assert_eq!(try_fail.len(), 1);
    assert_eq!(try_fail[0].ev.ret, libc::EBUSY);
    assert_eq!(v("try"), libc::EBUSY as u64);
    let bad_unlock = find(&run, Op::MutexUnlock, Phase::Failed, ec);
    assert_eq!(bad_unlock.len(), 1);
    assert_eq!(bad_unlock[0].ev.ret, libc::EPERM);
    assert_ne!(
        bad_unlock[0].ev.tid, run.pid,
        "the intruder thread, not main, failed to unlock"
    );

    // Cond wait: obj = cond, arg = mutex; the signal precedes the wake-up,
    // and the consumer's wait (which released m) precedes main's lock of m.
    let (cond, m) = (v("cond"), v("m"));
    let wait_req = find(&run, Op::CondWait, Phase::Request, cond);
    let woken = find(&run, Op::CondWait, Phase::Acquired, cond);
    assert_eq!((wait_req[0].ev.arg, woken[0].ev.arg), (m, m));
    let signal = find(&run, Op::CondSignal, Phase::Released, cond)[0];
    assert!(signal.ev.seq < woken[0].ev.seq);
    let main_lock_m = find(&run, Op::MutexLock, Phase::Acquired, m)
        .into_iter()
        .find(|g| g.ev.tid == run.pid)
        .unwrap();
    assert!(wait_req[0].ev.seq < main_lock_m.ev.seq);
    // Semaphore: the post precedes the wait's success.
    let sem = v("sem");
    let post = find(&run, Op::SemPost, Phase::Released, sem)[0];
    let got = find(&run, Op::SemWait, Phase::Acquired, sem)[0];
    assert!(post.ev.seq < got.ev.seq && post.ev.tid != got.ev.tid);
}

#[test]
fn only_the_calls_that_had_to_wait_make_a_request() {
    let (_shm, run) = record_sync();
    let v = |k: &str| run.value(k);
    let main = run.pid;
    // The shape of every call (a lone Acquired, or Request then the same
    // thread's Acquired/Failed of the same object) is checked here.
    let locks = try_first_calls(&run.events, Op::MutexLock);
    let waits = try_first_calls(&run.events, Op::SemWait);
    assert!(
        locks.iter().chain(&waits).all(|c| c.end.is_some()),
        "nobody is cancelled in sync.c"
    );
    fn on<'a>(calls: &[TryFirst<'a>], obj: u64) -> Vec<TryFirst<'a>> {
        calls.iter().copied().filter(|c| c.obj() == obj).collect()
    }
    let released = |op: Op, name: &str, tid: i32| -> &Got {
        let r = find(&run, op, Phase::Released, v(name));
        let r: Vec<_> = r.into_iter().filter(|g| g.ev.tid == tid).collect();
        assert_eq!(r.len(), 1, "{name} released by {tid}");
        r[0]
    };

    // Per mutex: calls, how many failed, how many Requests.
    let mut total = 0;
    for (name, calls, failed, requests) in [
        ("counter_lock", 2000, 0, 0..=2000),
        ("m", 2, 0, 0..=1),
        ("busy", 1, 0, exactly(0)),
        ("ec", 2, 1, exactly(1)),
        ("rec", 2, 0, exactly(0)),
        ("pi", 1, 0, exactly(0)),
        ("held", 2, 0, exactly(1)),
    ] {
        let c = on(&locks, v(name));
        assert_eq!(c.len(), calls, "lock calls on {name}");
        let n_failed = c.iter().filter(|c| !c.acquired()).count();
        assert_eq!(n_failed, failed, "failed locks of {name}");
        let n_requests = c.iter().filter(|c| c.request.is_some()).count();
        assert!(
            requests.contains(&n_requests),
            "{name}: {n_requests} Requests, expected {requests:?}"
        );
        total += calls;
    }
    assert_eq!(locks.len(), total, "lock calls on other objects");

    // m: the consumer locks it before main can (main waits for the
    // consumer's post, made while holding m); main's lock may wait.
    let m = on(&locks, v("m"));
    assert_ne!(m[0].tid(), main);
    assert!(m[0].request.is_none(), "{:?}", m[0]);
    assert_eq!(m[1].tid(), main);

    // ec: main's relock of it fails with EDEADLK. The try fails (EBUSY),
    // so the call goes the slow way: Request, then Failed.
    let ec = on(&locks, v("ec"));
    assert!(ec.iter().all(|c| c.tid() == main));
    assert!(ec[0].request.is_none() && ec[0].acquired());
    let (req, end) = (ec[1].request.unwrap(), ec[1].end.unwrap());
    assert_eq!(end.phase(), Phase::Failed);
    assert_eq!(end.ev.ret, libc::EDEADLK);
    assert_eq!(v("relock"), libc::EDEADLK as u64);
    assert_eq!(req.ev.ret, 0);

    // held: main's lock is uncontended; blocked's must wait for main's
    // unlock: its Request precedes that unlock, its Acquired follows it.
    let held = on(&locks, v("held"));
    assert_eq!(held[0].tid(), main);
    assert!(held[0].request.is_none() && held[0].acquired());
    let blocked = held[1];
    assert_ne!(blocked.tid(), main);
    assert!(blocked.acquired());
    let unlock = released(Op::MutexUnlock, "held", main);
    let (req, got) = (blocked.request.unwrap(), blocked.end.unwrap());
    assert!(
        req.ev.seq < unlock.ev.seq && unlock.ev.seq < got.ev.seq,
        "Request {} < main's unlock {} < Acquired {}",
        req.ev.seq,
        unlock.ev.seq,
        got.ev.seq
    );
    assert_eq!(got.ev.ret, 0);

    // Semaphores: main waits once on each; go is posted (by blocked) only
    // once main waits, so that wait has a Request before the post and an
    // Acquired after it.
    assert!(waits.iter().all(|c| c.tid() == main && c.acquired()));
    let sem = on(&waits, v("sem"));
    assert_eq!(sem.len(), 1);
    let go = on(&waits, v("go"));
    assert_eq!(go.len(), 1);
    assert_eq!(waits.len(), 2, "waits on other objects");
    let post = released(Op::SemPost, "go", blocked.tid());
    let (req, got) = (go[0].request.unwrap(), go[0].end.unwrap());
    assert!(
        req.ev.seq < post.ev.seq && post.ev.seq < got.ev.seq,
        "Request {} < blocked's post {} < Acquired {}",
        req.ev.seq,
        post.ev.seq,
        got.ev.seq
    );
}

#[test]
fn stacks_start_at_the_call_site() {
    let (_shm, run) = record_sync();
    let v = |k: &str| run.value(k);
    let (worker, main, lock_busy) = (v("worker"), v("main"), v("lock_busy"));
    // Every event of the workers' locks, Requests (if any) and Acquireds.
    let worker_locks: Vec<_> = run
        .events
        .iter()
        .filter(|g| g.op() == Op::MutexLock && g.ev.obj == v("counter_lock"))
        .collect();
    assert_eq!(
        worker_locks
            .iter()
            .filter(|g| g.phase() == Phase::Acquired)
            .count(),
        2000
    );
    for g in &worker_locks {
        let at = g.ev.stack[0];
        assert!(
            (worker..worker + 0x400).contains(&at),
            "stack[0] {at:#x} not in worker [{worker:#x}, +0x400): {:x?}",
            g.ev.stack
        );
    }
    // lock_busy() called from main: two frames of user code.
    let busy = find(&run, Op::MutexLock, Phase::Acquired, v("busy"))[0];
    assert!(
        (lock_busy..lock_busy + 0x40).contains(&busy.ev.stack[0]),
        "{:x?}",
        busy.ev.stack
    );
    assert!(
        (main..main + 0x1000).contains(&busy.ev.stack[1]),
        "{:x?}",
        busy.ev.stack
    );
}

#[test]
fn threads_are_identified() {
    let (shm, run) = record_sync();
    let v = |k: &str| run.value(k);
    let sorted = |op: Op, phase: Phase| -> Vec<&Got> {
        let mut evs: Vec<&Got> = run
            .events
            .iter()
            .filter(|g| g.op() == op && g.phase() == phase)
            .collect();
        evs.sort_by_key(|g| g.ev.seq);
        evs
    };
    // glibc reuses the pthread_t of joined threads, so the same value can
    // name several threads: pair creations, starts and joins in seq order.
    let names = ["w1", "w2", "c", "in", "bl"];
    let creates = sorted(Op::ThreadCreate, Phase::Done);
    let joins = sorted(Op::ThreadJoin, Phase::Done);
    let mut starts = sorted(Op::ThreadStart, Phase::Done);
    assert_eq!(
        creates.iter().map(|g| g.ev.obj).collect::<Vec<_>>(),
        names.map(v)
    );
    assert_eq!(
        joins.iter().map(|g| g.ev.obj).collect::<Vec<_>>(),
        names.map(v)
    );
    for (i, name) in names.into_iter().enumerate() {
        let create = creates[i];
        assert_eq!(
            (create.ev.tid, create.ev.ret),
            (run.pid, 0),
            "main created {name}"
        );
        let at = starts
            .iter()
            .position(|s| s.ev.obj == create.ev.obj && s.ev.seq > create.ev.seq);
        let start = starts.remove(at.unwrap_or_else(|| panic!("no ThreadStart for {name}")));
        assert_ne!(start.ev.tid, run.pid);
        assert_eq!(
            create.ev.arg2, start.ev.arg2,
            "{name}: the same start routine"
        );
        if name.starts_with('w') {
            assert_eq!(create.ev.arg2, v("worker"), "{name} runs worker()");
        }
        let exit = run
            .events
            .iter()
            .find(|g| g.op() == Op::ThreadExit && g.ev.tid == start.ev.tid)
            .unwrap();
        assert_eq!(exit.ev.flags, 1, "{name} returned from its routine");
        assert!(
            create.ev.seq < start.ev.seq && exit.ev.seq < joins[i].ev.seq,
            "{name}: create < start, exit < join"
        );
        assert_eq!(
            shm.ring(start.ring).state.load(Ordering::Relaxed),
            2,
            "{name}'s ring retired"
        );
        let thread_events = run.events.iter().filter(|g| g.ev.tid == start.ev.tid);
        assert!(
            thread_events.clone().all(|g| g.ring == start.ring),
            "one ring per thread"
        );
        assert_eq!(
            thread_events.min_by_key(|g| g.ev.seq).unwrap().op(),
            Op::ThreadStart
        );
    }
    let main_ring = run
        .events
        .iter()
        .find(|g| g.ev.tid == run.pid)
        .unwrap()
        .ring;
    assert_eq!(shm.ring(main_ring).state.load(Ordering::Relaxed), 1);
    assert_eq!(shm.rings(), 6, "main + 5 threads");
}

#[test]
fn an_invalid_file_leaves_the_agent_inert() {
    let dir = scratch("inert");
    let exe = compile("sync", &dir);
    let shm = Shm::create(&dir, u64::from_le_bytes(*b"NOTMAGIC"));
    let run = run(&exe, &[], Some(&shm), true);
    assert!(run.status.success());
    assert_eq!(run.value("counter"), 2000);
    assert!(run.events.is_empty());
    assert_eq!(shm.header().rings_claimed.load(Ordering::Relaxed), 0);
    assert_eq!(shm.header().seq.load(Ordering::Relaxed), 1);
}
