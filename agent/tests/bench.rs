//! The cost of the agent on the hottest path: 1,000,000 uncontended
//! lock/unlock pairs (`tests/c/bench.c`), natively, with an inert agent and
//! with a recording agent whose rings this test drains concurrently, as the
//! recorder would. The numbers are printed (run with `--nocapture` or
//! `--show-output`), not asserted: timing is not a test oracle. What is
//! asserted is that every event arrived.

mod common;

use std::sync::atomic::Ordering;

use common::{compile, run, scratch, Shm};
use lockstep_agent_abi::{Op, Phase};

const PAIRS: u64 = 1_000_000;
const ROUNDS: usize = 3;

#[test]
fn lock_unlock_cost() {
    let dir = scratch("bench");
    let exe = compile("bench", &dir);
    let arg = PAIRS.to_string();
    let per_pair = |r: &common::Run| -> f64 { r.values()["ns_per_pair"].parse().unwrap() };
    let (mut native, mut inert, mut recording) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        native.push(per_pair(&run(&exe, &[&arg], None, false)));
        inert.push(per_pair(&run(&exe, &[&arg], None, true)));
        let shm = Shm::valid(&dir);
        let r = run(&exe, &[&arg], Some(&shm), true);
        assert_eq!(shm.header().dropped.load(Ordering::Relaxed), 0);
        assert_eq!(r.count(Op::MutexLock, Phase::Request), PAIRS as usize);
        assert_eq!(r.count(Op::MutexLock, Phase::Acquired), PAIRS as usize);
        assert_eq!(r.count(Op::MutexUnlock, Phase::Released), PAIRS as usize);
        recording.push(per_pair(&r));
    }
    let best = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
    let (n, i, r) = (best(&native), best(&inert), best(&recording));
    println!("uncontended pthread_mutex_lock+unlock, {PAIRS} pairs, best of {ROUNDS}:");
    println!("  native           {n:8.1} ns/pair  {:8.1} ns/call", n / 2.0);
    println!("  agent, inert     {i:8.1} ns/pair  {:8.1} ns/call", i / 2.0);
    println!("  agent, recording {r:8.1} ns/pair  {:8.1} ns/call  (3 events per pair)", r / 2.0);
    println!("  recording overhead {:.1} ns/pair, {:.1} ns/event", r - n, (r - n) / 3.0);
}
