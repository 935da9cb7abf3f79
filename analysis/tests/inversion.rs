//! Priority inversion and the thread-state timeline on synthetic traces.

use lockstep_analysis::builder::OpsBuilder;
use lockstep_analysis::finding::NoLocator;
use lockstep_analysis::inversion::findings;
use lockstep_analysis::ops::MUTEX_PRIO_INHERIT;
use lockstep_analysis::schedbuilder::SchedBuilder;
use lockstep_analysis::schedule::{State, Timeline};
use lockstep_analysis::{Finding, Severity};

const BUS: u64 = 0xb05;
const COND: u64 = 0xc0;
const MS: u64 = 1_000_000;
const L: i32 = 2;
const H: i32 = 3;
const M: i32 = 4;

/// Pathfinder: L holds `bus`; H asks for it at ~10 ms and gets it at
/// ~250 ms; M runs 10..210 ms while L is preempted, then L runs and unlocks.
/// `mutex_flags` are the mutex's init flags; with `m_asks` M asks for
/// `bus` too during H's wait.
fn pathfinder_with(ops: &mut OpsBuilder, mutex_flags: u32, m_asks: bool) -> (u64, u64) {
    ops.spawn(1, L).spawn(1, H).spawn(1, M);
    ops.op(1, "pthread_mutex_init", "done", BUS, 0, mutex_flags, 0);
    ops.lock(L, BUS);
    ops.sleep_ns(10 * MS);
    let asked = ops.next_ns();
    ops.lock_blocks(H, BUS);
    if m_asks {
        ops.sleep_ns(5 * MS).lock_blocks(M, BUS);
    }
    ops.sleep_ns(240 * MS);
    ops.unlock(L, BUS);
    let got = ops.next_ns();
    ops.op(H, "pthread_mutex_lock", "acquired", BUS, 0, mutex_flags, 0);
    ops.unlock(H, BUS);
    (asked, got)
}

fn pathfinder(ops: &mut OpsBuilder, mutex_flags: u32) -> (u64, u64) {
    pathfinder_with(ops, mutex_flags, false)
}

fn fifo_sched(b: &mut SchedBuilder, m_prio: i32) {
    b.attr(L, "fifo", 0, 0, 0).attr(L, "fifo", 10, 0, 1);
    b.attr(H, "fifo", 30, 0, 1).attr(M, "fifo", m_prio, 0, 1);
}

/// The schedule of the inversion: L preempted by M for 200 ms, then L runs.
fn preempting(b: &mut SchedBuilder, asked: u64, got: u64) {
    b.run(L, 0, asked - MS, true); // L runs, preempted (runnable from then on)
    b.run(H, asked - MS, asked + MS, false); // H blocks on the lock
    b.run(M, asked + MS, asked + 201 * MS, false);
    b.run(L, asked + 201 * MS, got, false);
    b.wakeup(H, got - 1000).run(H, got, got + MS, false);
}

fn only(f: &[Finding]) -> &Finding {
    assert_eq!(f.len(), 1, "{f:#?}");
    &f[0]
}

#[test]
fn pathfinder_is_an_error_naming_the_three_threads() {
    let mut ops = OpsBuilder::new();
    let (asked, got) = pathfinder(&mut ops, 0);
    let mut s = SchedBuilder::new();
    fifo_sched(&mut s, 20);
    preempting(&mut s, asked, got);
    let (ops, _) = ops.build();
    let f = findings(&ops, &s.build(), &mut NoLocator);
    let f = only(&f);
    assert_eq!(f.kind, "priority_inversion");
    assert_eq!(f.severity, Severity::Error);
    assert_eq!(f.tids, vec![H, L, M]);
    let d = &f.details;
    assert_eq!(d["evidence"], "sched_switch tracepoints");
    assert_eq!(d["high"]["priority"]["rt_priority"], 30);
    assert_eq!(d["low"]["priority"]["rt_priority"], 10);
    assert_eq!(d["medium"]["priority"]["rt_priority"], 20);
    assert_eq!(d["via"], "mutex");
    assert_eq!(d["protocol"], "none");
    assert_eq!(d["medium_ran_ns"], 200 * MS);
    assert_eq!(d["low_preempted_ns"], 200 * MS);
    assert_eq!(d["wait_ns"], got - asked);
    let roles: Vec<&str> = f.locations.iter().map(|l| l.role.as_str()).collect();
    assert_eq!(roles[0], "waits for mutex 0xb05");
    assert_eq!(roles[1], "holds mutex 0xb05");
    assert!(roles[2].starts_with("runs meanwhile"), "{roles:?}");
    assert!(f.summary.contains("ran 200.0 ms"), "{}", f.summary);
}

#[test]
fn priority_inheritance_makes_it_a_note() {
    let mut ops = OpsBuilder::new();
    let (asked, got) = pathfinder(&mut ops, MUTEX_PRIO_INHERIT);
    let mut s = SchedBuilder::new();
    fifo_sched(&mut s, 20);
    preempting(&mut s, asked, got);
    let f = findings(&ops.build().0, &s.build(), &mut NoLocator);
    assert_eq!(only(&f).severity, Severity::Note);
    assert_eq!(f[0].details["protocol"], "inherit");
}

#[test]
fn no_medium_thread_running_is_a_bounded_wait_and_not_reported() {
    let mut ops = OpsBuilder::new();
    let (asked, got) = pathfinder(&mut ops, 0);
    let mut s = SchedBuilder::new();
    fifo_sched(&mut s, 20);
    // L runs the whole time H waits; M runs only after.
    s.run(H, asked - MS, asked, false).run(L, asked, got, false);
    s.run(M, got + MS, got + 100 * MS, false);
    assert!(findings(&ops.build().0, &s.build(), &mut NoLocator).is_empty());
}

#[test]
fn a_medium_thread_outside_the_band_or_using_the_lock_is_not_m() {
    for m_prio in [10, 30, 40] {
        let mut ops = OpsBuilder::new();
        let (asked, got) = pathfinder(&mut ops, 0);
        let mut s = SchedBuilder::new();
        fifo_sched(&mut s, m_prio);
        preempting(&mut s, asked, got);
        let f = findings(&ops.build().0, &s.build(), &mut NoLocator);
        assert!(f.is_empty(), "M at {m_prio}: {f:#?}");
    }
    // M in the band, but it waits for `bus` too during H's wait.
    let mut ops = OpsBuilder::new();
    let (asked, got) = pathfinder_with(&mut ops, 0, true);
    let mut s = SchedBuilder::new();
    fifo_sched(&mut s, 20);
    preempting(&mut s, asked, got);
    assert!(findings(&ops.build().0, &s.build(), &mut NoLocator).is_empty());
}

#[test]
fn nice_values_make_it_a_warning() {
    let mut ops = OpsBuilder::new();
    let (asked, got) = pathfinder(&mut ops, 0);
    let mut s = SchedBuilder::new();
    s.attr(L, "other", 0, 19, 0)
        .attr(H, "other", 0, 0, 0)
        .attr(M, "other", 0, 5, 0);
    preempting(&mut s, asked, got);
    let f = findings(&ops.build().0, &s.build(), &mut NoLocator);
    let f = only(&f);
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.details["low"]["priority"]["nice"], 19);
    assert!(f.summary.contains("SCHED_OTHER nice 19"), "{}", f.summary);
}

#[test]
fn a_condvar_hand_off_is_an_inversion_through_the_signaller() {
    let mut ops = OpsBuilder::new();
    ops.spawn(1, L).spawn(1, H).spawn(1, M).sleep_ns(10 * MS);
    ops.lock(H, BUS).cond_wait(H, COND, BUS);
    let asked = ops.now_ns_of_last();
    ops.sleep_ns(240 * MS);
    ops.lock(L, BUS).cond_signal(L, COND);
    let signalled = ops.now_ns_of_last();
    ops.unlock(L, BUS).cond_woken(H, COND, BUS).unlock(H, BUS);
    let mut s = SchedBuilder::new();
    fifo_sched(&mut s, 20);
    preempting(&mut s, asked, signalled);
    let f = findings(&ops.build().0, &s.build(), &mut NoLocator);
    let f = only(&f);
    assert_eq!(f.severity, Severity::Error);
    assert_eq!(f.details["via"], "condvar");
    assert_eq!(f.tids, vec![H, L, M]);
    assert_eq!(f.locations[1].role, "signals condvar 0xc0");
}

#[test]
fn schedstat_samples_are_evidence_when_there_are_no_tracepoints() {
    let mut ops = OpsBuilder::new();
    let (asked, got) = pathfinder(&mut ops, 0);
    let mut s = SchedBuilder::new();
    fifo_sched(&mut s, 20);
    s.stat(M, asked + 1000, 5 * MS)
        .stat(M, got - 1000, 180 * MS);
    let f = findings(&ops.build().0, &s.build(), &mut NoLocator);
    let f = only(&f);
    assert_eq!(f.severity, Severity::Error);
    assert_eq!(f.details["evidence"], "schedstat");
    assert_eq!(f.details["medium_ran_ns"], 175 * MS);
}

#[test]
fn sync_ops_alone_give_a_warning() {
    let mut ops = OpsBuilder::new();
    ops.spawn(1, L).spawn(1, H);
    ops.lock(L, BUS);
    ops.sleep_ns(MS);
    ops.lock_blocks(H, BUS);
    ops.sleep_ns(MS).spawn(1, M).sleep_ns(100 * MS);
    ops.unlock(L, BUS)
        .op(H, "pthread_mutex_lock", "acquired", BUS, 0, 0, 0);
    let mut s = SchedBuilder::new();
    fifo_sched(&mut s, 20);
    let f = findings(&ops.build().0, &s.build(), &mut NoLocator);
    let f = only(&f);
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.details["evidence"], "sync ops only");
}

#[test]
fn the_timeline_tells_running_runnable_and_blocked() {
    let mut s = SchedBuilder::new();
    s.run(L, 0, 10, true)
        .run(M, 10, 30, false)
        .run(L, 30, 40, false);
    s.wakeup(M, 35).run(M, 50, 60, false);
    let tl = Timeline::build(&s.build());
    let states: Vec<(u64, u64, &str)> = tl
        .spans(L)
        .iter()
        .map(|x| (x.start, x.end, x.state.name()))
        .collect();
    assert_eq!(
        states,
        vec![
            (0, 10, "running"),
            (10, 30, "runnable"),
            (30, 40, "running"),
            (40, 60, "blocked")
        ]
    );
    assert_eq!(tl.spans(M)[1].state, State::Blocked);
    assert_eq!(
        (tl.spans(M)[2].start, tl.spans(M)[2].state),
        (35, State::Runnable)
    );
    assert_eq!(tl.running_ns(M, 0, 100), 30);
    assert_eq!(tl.runnable_while_running(L, M, 0, 100), 20);
}
