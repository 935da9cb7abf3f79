//! The cost of the agent on the hottest path: 1,000,000 uncontended
//! lock/unlock pairs (`tests/c/bench.c`), natively, with an inert agent and
//! with a recording agent whose rings this test drains concurrently, as the
//! recorder would. The numbers are printed (run with `--nocapture` or
//! `--show-output`), not asserted: timing is not a test oracle. What is
//! asserted is that every event arrived.
//!
//! Wall time includes the producer waiting for the drainer when its ring
//! is full (8192 events, 4096 pairs); CPU time is the thread's own work.

mod common;

use std::sync::atomic::Ordering;

use common::{compile, run, run_counting, scratch, Run, Shm};
use lockstep_agent_abi::{Op, Phase};

const PAIRS: u64 = 1_000_000;
const ROUNDS: usize = 3;

/// Best (wall, cpu) ns per pair over the runs.
fn best(runs: &[Run]) -> (f64, f64) {
    let get = |r: &Run, k: &str| -> f64 { r.values()[k].parse().unwrap() };
    let min = |k: &str| runs.iter().map(|r| get(r, k)).fold(f64::INFINITY, f64::min);
    (min("wall_ns_per_pair"), min("cpu_ns_per_pair"))
}

#[test]
fn lock_unlock_cost() {
    let dir = scratch("bench");
    let exe = compile("bench", &dir);
    let arg = PAIRS.to_string();
    let (mut native, mut inert, mut recording) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        native.push(run(&exe, &[&arg], None, false));
        inert.push(run(&exe, &[&arg], None, true));
        let shm = Shm::valid(&dir);
        let r = run_counting(&exe, &[&arg], &shm);
        assert_eq!(shm.header().dropped.load(Ordering::Relaxed), 0);
        // Uncontended: the lock is tried first and recorded as one event.
        assert_eq!(r.count(Op::MutexLock, Phase::Request), 0);
        assert_eq!(r.count(Op::MutexLock, Phase::Acquired), PAIRS as usize);
        assert_eq!(r.count(Op::MutexUnlock, Phase::Released), PAIRS as usize);
        recording.push(r);
    }
    let ((nw, nc), (iw, ic), (rw, rc)) = (best(&native), best(&inert), best(&recording));
    println!("uncontended pthread_mutex_lock+unlock, {PAIRS} pairs, best of {ROUNDS} (ns per pair; /2 per call):");
    println!("  {:<18} {:>10} {:>10}", "", "wall", "cpu");
    println!("  {:<18} {nw:>10.1} {nc:>10.1}", "native");
    println!("  {:<18} {iw:>10.1} {ic:>10.1}", "agent, inert");
    println!(
        "  {:<18} {rw:>10.1} {rc:>10.1}   (2 events per pair)",
        "agent, recording"
    );
    println!(
        "  recording cost per event: {:.1} ns wall, {:.1} ns cpu",
        (rw - nw) / 2.0,
        (rc - nc) / 2.0
    );
}
