//! Lock-order analysis on synthetic traces: one case per known pattern,
//! including the false alarms Helgrind and TSan are known for.

use lockstep_analysis::builder::OpsBuilder;
use lockstep_analysis::finding::NoLocator;
use lockstep_analysis::{lockorder, Finding, Severity};

const A: u64 = 0xa0;
const B: u64 = 0xb0;
const C: u64 = 0xc0;
const G: u64 = 0x90;

fn run(b: &OpsBuilder) -> Vec<Finding> {
    let (ops, spawns) = b.build();
    lockorder::findings(&ops, &spawns, &mut NoLocator)
}

/// T1 takes `first` then `second`; T2 the other way round; concurrently
/// (both start before either locks).
fn abba(b: &mut OpsBuilder, gate: Option<u64>) {
    b.spawn(1, 2).spawn(1, 3);
    for (t, x, y) in [(2, A, B), (3, B, A)] {
        if let Some(g) = gate {
            b.lock(t, g);
        }
        b.lock(t, x).lock(t, y).unlock(t, y).unlock(t, x);
        if let Some(g) = gate {
            b.unlock(t, g);
        }
    }
    b.join(1, 2).join(1, 3);
}

#[test]
fn abba_between_concurrent_threads_is_an_error_with_both_sides() {
    let mut b = OpsBuilder::new();
    abba(&mut b, None);
    let f = run(&b);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].kind, "lock_order_inversion");
    assert_eq!(f[0].severity, Severity::Error);
    assert_eq!(f[0].tids, vec![2, 3]);
    // Each edge: where the held lock was taken and where the next was asked for.
    assert_eq!(f[0].locations.len(), 4);
    let roles: Vec<&str> = f[0].locations.iter().map(|l| l.role.as_str()).collect();
    assert!(
        roles[0].starts_with("thread 2 holds mutex 0xa0"),
        "{roles:?}"
    );
    assert!(
        roles[1].starts_with("thread 2 acquires mutex 0xb0"),
        "{roles:?}"
    );
    assert!(
        roles[2].starts_with("thread 3 holds mutex 0xb0"),
        "{roles:?}"
    );
    assert!(
        roles[3].starts_with("thread 3 acquires mutex 0xa0"),
        "{roles:?}"
    );
}

#[test]
fn a_common_gate_lock_suppresses_the_report() {
    let mut b = OpsBuilder::new();
    abba(&mut b, Some(G));
    assert!(run(&b).is_empty());
}

#[test]
fn consistent_order_is_fine() {
    let mut b = OpsBuilder::new();
    b.spawn(1, 2).spawn(1, 3);
    for t in [2, 3] {
        b.lock(t, A).lock(t, B).unlock(t, B).unlock(t, A);
    }
    assert!(run(&b).is_empty());
}

#[test]
fn inversion_serialised_by_join_is_a_warning() {
    let mut b = OpsBuilder::new();
    b.spawn(1, 2);
    b.lock(2, A).lock(2, B).unlock(2, B).unlock(2, A);
    b.join(1, 2);
    b.spawn(1, 3);
    b.lock(3, B).lock(3, A).unlock(3, A).unlock(3, B);
    b.join(1, 3);
    let f = run(&b);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Warning);
    assert!(f[0].details["reason"]
        .as_str()
        .unwrap()
        .contains("creation/join"));
}

#[test]
fn inversion_within_one_thread_is_a_warning() {
    let mut b = OpsBuilder::new();
    b.lock(1, A).lock(1, B).unlock(1, B).unlock(1, A);
    b.lock(1, B).lock(1, A).unlock(1, A).unlock(1, B);
    let f = run(&b);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Warning);
    assert!(f[0].details["reason"]
        .as_str()
        .unwrap()
        .contains("one thread"));
}

#[test]
fn trylock_with_backoff_does_not_close_a_cycle() {
    let mut b = OpsBuilder::new();
    b.spawn(1, 2).spawn(1, 3);
    b.lock(2, A).lock(2, B).unlock(2, B).unlock(2, A);
    b.lock(3, B).trylock(3, A, false).unlock(3, B);
    b.lock(3, B).trylock(3, A, true).unlock(3, A).unlock(3, B);
    assert!(run(&b).is_empty());
}

#[test]
fn three_lock_cycle_is_reported_once() {
    let mut b = OpsBuilder::new();
    b.spawn(1, 2).spawn(1, 3).spawn(1, 4);
    for (t, x, y) in [(2, A, B), (3, B, C), (4, C, A)] {
        b.lock(t, x).lock(t, y).unlock(t, y).unlock(t, x);
    }
    let f = run(&b);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].severity, Severity::Error);
    assert_eq!(f[0].tids, vec![2, 3, 4]);
    assert_eq!(f[0].details["cycle"].as_array().unwrap().len(), 3);
}

#[test]
fn read_read_cycles_on_rwlocks_cannot_block_but_writes_can() {
    let mut b = OpsBuilder::new();
    b.spawn(1, 2).spawn(1, 3);
    b.rdlock(2, A).rdlock(2, B).rwunlock(2, B).rwunlock(2, A);
    b.rdlock(3, B).rdlock(3, A).rwunlock(3, A).rwunlock(3, B);
    assert!(run(&b).is_empty());

    let mut b = OpsBuilder::new();
    b.spawn(1, 2).spawn(1, 3);
    b.rdlock(2, A).wrlock(2, B).rwunlock(2, B).rwunlock(2, A);
    b.rdlock(3, B).wrlock(3, A).rwunlock(3, A).rwunlock(3, B);
    let f = run(&b);
    assert_eq!(f.len(), 1);
    assert!(f[0].summary.contains("rwlock"));
}

#[test]
fn recursive_relock_adds_no_edge_and_reused_addresses_are_new_locks() {
    let mut b = OpsBuilder::new();
    b.spawn(1, 2).spawn(1, 3);
    b.lock_recursive(2, A)
        .lock(2, B)
        .lock_recursive(2, A)
        .unlock(2, A)
        .unlock(2, B)
        .unlock(2, A);
    assert!(run(&b).is_empty());

    // B→A is taken on the old lock at B's address; A→B on a new lock there.
    let mut b = OpsBuilder::new();
    b.spawn(1, 2).spawn(1, 3);
    b.lock(2, B).lock(2, A).unlock(2, A).unlock(2, B);
    b.destroy(2, B).init(2, B);
    b.lock(3, A).lock(3, B).unlock(3, B).unlock(3, A);
    assert!(run(&b).is_empty());
}
