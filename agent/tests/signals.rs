//! Reentrancy: signal handlers calling an interposed function (`sem_post`)
//! while the interrupted thread is inside the agent. Nothing breaks, the
//! interrupted thread's events are all there and in seq order, and a post
//! that found the thread busy is forwarded unrecorded and counted.

mod common;

use std::sync::atomic::Ordering;

use common::{check_order, compile, run, scratch, Shm};
use lockstep_agent_abi::{Op, Phase};

#[test]
fn signal_handlers_inside_the_agent_are_forwarded_and_counted() {
    let dir = scratch("signals");
    let exe = compile("signals", &dir);
    let shm = Shm::valid(&dir);
    let run = run(&exe, &["300000"], Some(&shm), true);
    assert!(run.status.success(), "{:?}\n{}", run.status, run.stdout);
    check_order(&shm, &run.events);
    let (pairs, posts, value) = (
        run.value("pairs") as usize,
        run.value("posts") as usize,
        run.value("value"),
    );
    assert_eq!(
        value as usize, posts,
        "every post reached the real sem_post"
    );
    assert!(posts > 100, "only {posts} signals arrived");
    // The interrupted thread loses nothing. It is the only thread and the
    // handler does not lock: every lock's try succeeds (no Request).
    assert_eq!(run.count(Op::MutexLock, Phase::Request), 0);
    assert_eq!(run.count(Op::MutexLock, Phase::Acquired), pairs);
    assert_eq!(run.count(Op::MutexUnlock, Phase::Released), pairs);
    // Each post is either recorded or counted as dropped.
    let recorded = run.count(Op::SemPost, Phase::Released);
    let dropped = shm.header().dropped.load(Ordering::Relaxed) as usize;
    assert_eq!(
        recorded + dropped,
        posts,
        "recorded {recorded} + dropped {dropped}"
    );
    assert!(
        recorded > 0 && dropped > 0,
        "recorded {recorded}, dropped {dropped}: both paths taken"
    );
    println!("{posts} signals: {recorded} posts recorded, {dropped} landed inside the agent");
}
