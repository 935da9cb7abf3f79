//! Deadlocks, hangs and lock misuse on synthetic traces.

use lockstep_analysis::builder::OpsBuilder;
use lockstep_analysis::deadlock::{hang_findings, lock_misuse};
use lockstep_analysis::finding::NoLocator;
use lockstep_analysis::Severity;

const A: u64 = 0xa0;
const B: u64 = 0xb0;
const C: u64 = 0xc0;
const M: u64 = 0x10;
const N: u64 = 0x20;
const COND_N: u64 = 0x30;

#[test]
fn abba_that_hung_is_a_deadlock_naming_both_threads_and_locks() {
    let mut b = OpsBuilder::new();
    b.spawn(1, 2).spawn(1, 3);
    b.lock(2, A).lock(3, B).lock_blocks(2, B).lock_blocks(3, A);
    b.op(1, "pthread_join", "request", 2, 0, 0, 0);
    let hang = b.hang(&[1, 2, 3]);
    let (ops, _) = b.build();
    let f = hang_findings(&ops, &hang, &mut NoLocator);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].kind, "deadlock");
    assert_eq!(f[0].tids, vec![2, 3]);
    assert!(
        f[0].summary
            .contains("thread 2 waits for mutex 0xb0 held by thread 3"),
        "{}",
        f[0].summary
    );
    assert!(
        f[0].summary
            .contains("thread 3 waits for mutex 0xa0 held by thread 2"),
        "{}",
        f[0].summary
    );
    // Where each waits and where each took what it holds.
    assert_eq!(f[0].locations.len(), 4);
}

#[test]
fn three_way_cycle_and_dining_philosophers() {
    let mut b = OpsBuilder::new();
    let forks = [A, B, C, M, N];
    for t in 0..5 {
        b.spawn(1, 10 + t);
    }
    for t in 0..5 {
        b.lock(10 + t, forks[t as usize]);
    }
    for t in 0..5 {
        b.lock_blocks(10 + t, forks[(t as usize + 1) % 5]);
    }
    let hang = b.hang(&[10, 11, 12, 13, 14]);
    let f = hang_findings(&b.build().0, &hang, &mut NoLocator);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].tids, vec![10, 11, 12, 13, 14]);
}

#[test]
fn nested_monitor_is_explained_as_such() {
    let mut b = OpsBuilder::new();
    b.spawn(1, 2).spawn(1, 3);
    // T2: methodA: lock M, then N.alloc: lock N, wait on cond_n (releases N only).
    b.lock(2, M).lock(2, N).cond_wait(2, COND_N, N);
    // T3: methodB needs M to call N.free, which would broadcast.
    b.lock_blocks(3, M);
    let hang = b.hang(&[2, 3]);
    let f = hang_findings(&b.build().0, &hang, &mut NoLocator);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].kind, "deadlock");
    assert!(f[0].summary.contains("nested monitor"), "{}", f[0].summary);
    assert_eq!(f[0].details["nested_monitor"], true);

    // Without a hang, waiting while holding M is still a warning.
    let w = lock_misuse(&b.build().0, &mut NoLocator);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(w[0].kind, "cond_wait_holding_lock");
    assert_eq!(w[0].severity, Severity::Warning);
}

#[test]
fn a_lost_wakeup_is_a_hang_without_a_cycle() {
    let mut b = OpsBuilder::new();
    b.spawn(1, 2);
    b.lock(2, M).cond_wait(2, COND_N, M);
    b.op(1, "pthread_join", "request", 2, 0, 0, 0);
    let hang = b.hang(&[1, 2]);
    let f = hang_findings(&b.build().0, &hang, &mut NoLocator);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].kind, "hang");
    assert!(
        f[0].summary.contains("thread 2 waits on condvar 0x30"),
        "{}",
        f[0].summary
    );
    assert!(
        f[0].summary.contains("thread 1 waits in pthread_join"),
        "{}",
        f[0].summary
    );
}

#[test]
fn self_deadlock_and_unlocks_of_locks_not_held() {
    let mut b = OpsBuilder::new();
    b.lock(1, A).lock_blocks(1, A);
    let f = lock_misuse(&b.build().0, &mut NoLocator);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].kind, "self_deadlock");
    assert_eq!(f[0].locations[0].role, "locks it again");

    let mut b = OpsBuilder::new();
    b.spawn(1, 2);
    b.lock(1, A).unlock(2, A).unlock(2, B);
    let f = lock_misuse(&b.build().0, &mut NoLocator);
    assert_eq!(f.len(), 2, "{f:#?}");
    assert!(f[0].summary.contains("which thread 1 holds"));
    assert!(f[1].summary.contains("not locked"));
    assert!(f
        .iter()
        .all(|f| f.kind == "unlock_not_held" && f.severity == Severity::Error));

    // The owner's own unlock after another thread stole the lock is a consequence, not a second bug.
    let mut b = OpsBuilder::new();
    b.spawn(1, 2);
    b.lock(1, A).unlock(2, A).unlock(1, A);
    assert_eq!(lock_misuse(&b.build().0, &mut NoLocator).len(), 1);

    // Recursive relock is fine.
    let mut b = OpsBuilder::new();
    b.lock_recursive(1, A)
        .lock_recursive(1, A)
        .unlock(1, A)
        .unlock(1, A);
    assert!(lock_misuse(&b.build().0, &mut NoLocator).is_empty());
}
