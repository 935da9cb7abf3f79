//! fork and exec: a forked child's events carry its own pid and tid and go
//! to a ring of their own; an exec'd image maps the file again through the
//! environment and claims another ring.

mod common;

use std::collections::BTreeSet;

use common::{check_order, compile, compile_with_lib, run, scratch, Got, Run, Shm};
use lockstep_agent_abi::{Op, Phase};

fn record(mode: &str) -> (Shm, Run) {
    let dir = scratch(&format!("fork-{mode}"));
    let exe = compile("fork", &dir);
    let shm = Shm::valid(&dir);
    let run = run(&exe, &[mode], Some(&shm), true);
    assert!(
        run.status.success(),
        "{mode}: {:?}\n{}",
        run.status,
        run.stdout
    );
    assert_eq!(run.value("status"), 0, "{}", run.stdout);
    check_order(&shm, &run.events);
    (shm, run)
}

/// The lock/unlock pairs of `pid`'s events: (ring, tid, seq of the lock).
fn pairs(run: &Run, pid: i32) -> Vec<(usize, i32, u64)> {
    let of_pid: Vec<&Got> = run.events.iter().filter(|g| g.ev.pid == pid).collect();
    let locks: Vec<_> = of_pid
        .iter()
        .filter(|g| g.op() == Op::MutexLock && g.phase() == Phase::Acquired)
        .collect();
    let unlocks = of_pid
        .iter()
        .filter(|g| g.op() == Op::MutexUnlock && g.phase() == Phase::Released)
        .count();
    assert_eq!(locks.len(), unlocks, "pid {pid}: every lock is unlocked");
    locks.iter().map(|g| (g.ring, g.ev.tid, g.ev.seq)).collect()
}

fn rings(pairs: &[(usize, i32, u64)]) -> BTreeSet<usize> {
    pairs.iter().map(|p| p.0).collect()
}

#[test]
fn a_forked_child_gets_its_own_pid_and_ring() {
    let (shm, run) = record("plain");
    let (parent, child) = (run.value("parent") as i32, run.value("child") as i32);
    assert_eq!(parent, run.pid);
    assert_ne!(parent, child);
    let p = pairs(&run, parent);
    let c = pairs(&run, child);
    assert_eq!(
        (p.len(), c.len()),
        (2, 1),
        "parent locks twice, the child once"
    );
    assert_eq!(c[0].1, child, "the child's only thread has tid = its pid");
    assert!(p.iter().all(|x| x.1 == parent));
    assert!(
        rings(&p).is_disjoint(&rings(&c)),
        "parent rings {:?}, child rings {:?}",
        rings(&p),
        rings(&c)
    );
    assert_eq!((rings(&p).len(), rings(&c).len()), (1, 1));
    // One order across processes: parent lock < child lock < parent's second lock.
    assert!(p[0].2 < c[0].2 && c[0].2 < p[1].2);
    assert_eq!(shm.rings(), 2);
    let child_ring = *rings(&c).iter().next().unwrap();
    let ring = shm.ring(child_ring);
    assert_eq!(ring.pid.load(std::sync::atomic::Ordering::Relaxed), child);
}

#[test]
fn a_thread_that_forks_becomes_the_childs_main_thread() {
    let (_shm, run) = record("thread");
    let (parent, child) = (run.value("parent") as i32, run.value("child") as i32);
    let p = pairs(&run, parent);
    let c = pairs(&run, child);
    assert_eq!((p.len(), c.len()), (2, 1));
    assert!(
        p.iter().all(|x| x.1 != parent),
        "the forking thread is not main"
    );
    assert_eq!(
        c[0].1, child,
        "after fork the thread's tid is the child's pid"
    );
    assert!(rings(&p).is_disjoint(&rings(&c)));
}

#[test]
fn an_exec_maps_the_file_again() {
    let (shm, run) = record("exec");
    let (parent, child) = (run.value("parent") as i32, run.value("child") as i32);
    let p = pairs(&run, parent);
    let c = pairs(&run, child);
    assert_eq!(
        (p.len(), c.len()),
        (2, 2),
        "the child locks before and after exec"
    );
    assert!(c.iter().all(|x| x.1 == child));
    let child_rings = rings(&c);
    assert_eq!(child_rings.len(), 2, "the exec'd image claims a new ring");
    assert!(rings(&p).is_disjoint(&child_rings));
    assert!(p[0].2 < c[0].2 && c[0].2 < c[1].2 && c[1].2 < p[1].2);
    assert_eq!(shm.rings(), 3);
}

#[test]
fn sync_calls_in_other_fork_handlers_go_to_the_right_process() {
    // atfork_lib.c's handlers were registered before the agent's: its
    // prepare runs after the agent's, its child handler before.
    let dir = scratch("atfork");
    let exe = compile_with_lib("atfork", "atfork_lib", &dir);
    let shm = Shm::valid(&dir);
    let run = run(&exe, &[], Some(&shm), true);
    assert!(
        run.status.success() && run.value("status") == 0,
        "{}",
        run.stdout
    );
    check_order(&shm, &run.events);
    let (parent, child, lock) = (
        run.value("parent") as i32,
        run.value("child") as i32,
        run.value("lib_lock"),
    );
    let of = |pid: i32, op: Op, phase: Phase| {
        run.events
            .iter()
            .filter(|g| g.ev.pid == pid && g.ev.obj == lock && g.op() == op && g.phase() == phase)
            .count()
    };
    // Parent: prepare locks, the parent handler unlocks.
    assert_eq!(of(parent, Op::MutexLock, Phase::Acquired), 1);
    assert_eq!(of(parent, Op::MutexUnlock, Phase::Released), 1);
    // Child: the child handler unlocks (before the agent's handler ran),
    // then main locks and unlocks once more: all in the child's own ring.
    assert_eq!(of(child, Op::MutexUnlock, Phase::Released), 2);
    assert_eq!(of(child, Op::MutexLock, Phase::Acquired), 1);
    let child_rings: BTreeSet<usize> = run
        .events
        .iter()
        .filter(|g| g.ev.pid == child)
        .map(|g| g.ring)
        .collect();
    let parent_rings: BTreeSet<usize> = run
        .events
        .iter()
        .filter(|g| g.ev.pid == parent)
        .map(|g| g.ring)
        .collect();
    assert_eq!(child_rings.len(), 1, "one ring for the child, not two");
    assert!(child_rings.is_disjoint(&parent_rings));
}
