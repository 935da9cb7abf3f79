//! A recorder that misbehaves must not hang or break the program: when
//! nobody drains a full ring the agent waits about a second, then drops
//! (and counts) events; when every ring is taken, a thread records nothing
//! and says so in the header.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{compile, run, run_without_draining, scratch, Shm};
use lockstep_agent_abi::{MAX_RINGS, RING_EVENTS};

#[test]
fn a_dead_recorder_costs_one_second_then_events_are_dropped() {
    let dir = scratch("dead-recorder");
    let exe = compile("bench", &dir);
    let shm = Shm::valid(&dir);
    let pairs = 10_000;
    // One thread, one mutex: every lock's try succeeds, so a pair is two
    // events (Acquired, Released).
    let events = 2 * pairs;
    let started = Instant::now();
    let run = run_without_draining(&exe, &[&pairs.to_string()], &shm);
    let took = started.elapsed();
    assert!(run.status.success());
    assert_eq!(run.value("pairs"), pairs as u64);
    // The ring fills, the producer waits ~1 s once, then drops at once.
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "took {took:?}"
    );
    assert_eq!(
        run.events.len(),
        RING_EVENTS,
        "the ring holds what was written before it filled"
    );
    let dropped = shm.header().dropped.load(Ordering::Relaxed) as usize;
    assert_eq!(
        dropped + RING_EVENTS,
        events,
        "every event is written or counted"
    );
    // Seq numbers were still drawn for the dropped events: gaps tell the
    // recorder where events are missing.
    assert_eq!(
        shm.header().seq.load(Ordering::Relaxed) as usize,
        1 + events
    );
}

#[test]
fn no_ring_left_means_nothing_recorded_and_overflow_set() {
    let dir = scratch("overflow");
    let exe = compile("sync", &dir);
    let shm = Shm::valid(&dir);
    shm.header()
        .rings_claimed
        .store(MAX_RINGS as u32, Ordering::SeqCst);
    let run = run(&exe, &[], Some(&shm), true);
    assert!(run.status.success());
    assert_eq!(run.value("counter"), 2000);
    assert!(run.events.is_empty());
    assert_eq!(shm.header().overflow.load(Ordering::Relaxed), 1);
    // Every event sync.c makes is counted as dropped. Without a ring a
    // pthread_mutex_lock or sem_wait is forwarded untried and counts as one
    // event (its uncontended shape) however it ends, so the count is exact:
    // tests/sync.rs's table without the Requests of those two ops, 4064.
    assert_eq!(shm.header().dropped.load(Ordering::Relaxed), 4064);
    assert_eq!(
        shm.header().seq.load(Ordering::Relaxed),
        1,
        "no seq drawn for unrecorded events"
    );
}
