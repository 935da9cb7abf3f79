//! The data-race detector on synthetic traces: the races students write,
//! and the correct patterns that a lockset-only detector would flag.

use lockstep_analysis::builder::{mem, OpsBuilder};
use lockstep_analysis::finding::{Locator, NoLocator, SourcePos};
use lockstep_analysis::racerun;
use lockstep_analysis::sysaccess::syscall_segment;
use lockstep_analysis::{Finding, Severity};
use lockstep_trace::{access, Via};

/// Global `counter`.
const X: u64 = 0x60_1000;
/// Mutexes, a condvar, a semaphore, a barrier, an rwlock, a once control.
const M: u64 = 0x60_2000;
const M2: u64 = 0x60_2040;
const COND: u64 = 0x60_2080;
const SEM: u64 = 0x60_20c0;
const BAR: u64 = 0x60_2100;
const RW: u64 = 0x60_2140;
const ONCE: u64 = 0x60_2180;
/// A heap block.
const P: u64 = 0x7000_0000;

/// Instruction at source line `n` of race.c (16 bytes of code per line).
fn ip(n: u64) -> u64 {
    0x40_0000 + n * 16
}

/// Names the test's globals and lines.
struct Names;

impl Locator for Names {
    fn locate(&mut self, _pid: i32, _seq: u64, ra: u64) -> SourcePos {
        let a = ra - 1;
        if !(0x40_0000..0x41_0000).contains(&a) {
            return SourcePos::default();
        }
        SourcePos {
            function: Some("worker".into()),
            file: Some("race.c".into()),
            line: Some(((a - 0x40_0000) / 16) as u32),
            internal: false,
        }
    }
    fn object_name(&mut self, _pid: i32, addr: u64) -> Option<String> {
        Some(
            match addr {
                X..0x60_1004 => "counter",
                M => "m",
                M2 => "m2",
                RW => "rw",
                0x60_3000..0x60_3100 => "table",
                _ => return None,
            }
            .into(),
        )
    }
}

fn run_with(b: &OpsBuilder, loc: &mut dyn Locator) -> Vec<Finding> {
    let (ops, spawns) = b.build();
    racerun::findings(&ops, &spawns, &b.segments(), loc)
}

fn run(b: &OpsBuilder) -> Vec<Finding> {
    run_with(b, &mut Names)
}

fn none(b: &OpsBuilder) {
    let f = run(b);
    assert!(f.is_empty(), "{f:#?}");
}

/// Threads 2 and 3 of main thread 1.
fn two_threads() -> OpsBuilder {
    let mut b = OpsBuilder::new();
    b.spawn(1, 2).spawn(1, 3);
    b
}

/// `counter++`: a load at line `n`, then a store on the same line.
fn increment(b: &mut OpsBuilder, tid: i32, n: u64) {
    b.segment(
        tid,
        &[
            mem(X, 4, ip(n), access::READ, Via::Instruction),
            mem(X, 4, ip(n) + 6, access::WRITE, Via::Instruction),
        ],
    );
}

#[test]
fn counter_without_lock_races_once_per_line_pair() {
    let mut b = two_threads();
    for _ in 0..3 {
        increment(&mut b, 2, 14);
        increment(&mut b, 3, 14);
    }
    let f = run(&b);
    assert_eq!(f.len(), 1, "{f:#?}");
    let f = &f[0];
    assert_eq!(
        (f.kind.as_str(), f.severity),
        ("data_race", Severity::Error)
    );
    assert_eq!(f.tids, vec![2, 3]);
    assert!(
        f.summary
            .starts_with("data race on counter: write by thread 2 at race.c:14 vs. "),
        "{}",
        f.summary
    );
    assert_eq!(f.locations.len(), 2);
    assert_eq!(f.locations[0].role, "thread 2 writes counter");
    assert_eq!(f.locations[1].line, Some(14));
    let d = &f.details;
    assert_eq!(d["eraser"]["state"], "shared-modified");
    assert_eq!(
        d["eraser"]["candidate_lockset"].as_array().unwrap().len(),
        0
    );
    assert_eq!(d["place"]["kind"], "global");
    assert_eq!(d["ranges"][0]["bytes"], 4);
    assert_eq!(d["accesses"][0]["access"], "write");
    assert_eq!(d["accesses"][0]["via"], "instruction");
    assert_eq!(d["accesses"][0]["size"], 4);
    assert_eq!(d["accesses"][1]["tid"], 3);
    // Without line information: one finding per instruction pair.
    assert!(!run_with(&b, &mut NoLocator).is_empty());
}

#[test]
fn counter_under_one_mutex_is_fine() {
    let mut b = two_threads();
    for _ in 0..3 {
        for t in [2, 3] {
            b.lock(t, M);
            increment(&mut b, t, 14);
            b.unlock(t, M);
        }
    }
    none(&b);
}

#[test]
fn inconsistent_locks_race_and_name_both_locks() {
    let mut b = two_threads();
    // Serialized by this schedule: thread 2 is done before thread 3 starts.
    for (t, m) in [(2, M), (3, M2)] {
        for _ in 0..2 {
            b.lock(t, m);
            increment(&mut b, t, 20 + t as u64);
            b.unlock(t, m);
        }
    }
    let f = run(&b);
    assert_eq!(f.len(), 1, "{f:#?}");
    let d = &f[0].details;
    assert_eq!(d["accesses"][0]["locks_held"][0], "mutex m");
    assert_eq!(d["accesses"][1]["locks_held"][0], "mutex m2");
    assert!(f[0].summary.contains("race.c:22") && f[0].summary.contains("race.c:23"));
}

/// A finding's report as the CLI writes it: everything the user sees.
fn shown(f: &[Finding]) -> String {
    f.iter()
        .map(|f| format!("{}\n{:?}\n{}\n", f.summary, f.locations, f.details))
        .collect()
}

#[test]
fn the_pair_shown_is_chosen_by_a_total_order_not_by_hashing() {
    // Both threads increment `counter` (a load and a store on one line)
    // holding different mutexes, in one segment each: the second thread's
    // segment conflicts with the first's store twice at one seq, as a read
    // and as a write, so two pairs of sites compete for one line pair.
    let mut b = two_threads();
    for (t, m) in [(2, M), (3, M2)] {
        b.lock(t, m);
        increment(&mut b, t, 20 + t as u64);
        b.unlock(t, m);
    }
    let first = run(&b);
    assert_eq!(first.len(), 1, "{first:#?}");
    // Each run has fresh hash maps (new random keys): the same trace must
    // give the same report every time.
    for _ in 0..32 {
        assert_eq!(shown(&run(&b)), shown(&first));
    }
    // Write/write is preferred over write/read.
    assert_eq!(
        first[0].summary,
        "data race on counter: write by thread 2 at race.c:22 vs. write by thread 3 at race.c:23"
    );
    assert_eq!(first[0].details["pairs"].as_array().unwrap().len(), 2);
}

#[test]
fn a_write_write_pair_is_shown_even_when_a_read_raced_first() {
    // Thread 3 reads `counter` (line 31) before it writes it on the same
    // line: the read/write pair is seen first, the write/write one later;
    // the finding shows the write/write pair and lists both.
    let mut b = two_threads();
    b.write(2, X, 4, ip(30));
    b.read(3, X, 4, ip(31)).lock(3, M).unlock(3, M);
    b.write(3, X, 4, ip(31) + 6);
    let f = run(&b);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        f[0].summary,
        "data race on counter: write by thread 2 at race.c:30 vs. write by thread 3 at race.c:31"
    );
    let pairs = f[0].details["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 2, "{pairs:#?}");
    assert_eq!(pairs[0]["second"]["access"], "write");
    assert_eq!(pairs[1]["second"]["access"], "read");
}

#[test]
fn race_hidden_by_this_runs_mutex_order_is_still_found() {
    let mut b = two_threads();
    b.write(2, X, 4, ip(30)).lock(2, M).unlock(2, M);
    b.lock(3, M).unlock(3, M).write(3, X, 4, ip(31));
    let f = run(&b);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        f[0].details["eraser"]["previous_state"],
        "exclusive (thread 2)"
    );
}

#[test]
fn join_then_read_is_fine() {
    let mut b = two_threads();
    increment(&mut b, 2, 14);
    b.join(1, 2);
    increment(&mut b, 1, 40);
    b.read(1, X, 4, ip(41));
    none(&b);
}

#[test]
fn init_before_create_is_fine_but_writing_after_create_races() {
    let mut b = OpsBuilder::new();
    b.write(1, X, 4, ip(10))
        .spawn(1, 2)
        .read(2, X, 4, ip(11))
        .write(2, X, 4, ip(12));
    none(&b);
    b.write(1, X, 4, ip(13));
    assert_eq!(run(&b).len(), 1);
}

#[test]
fn condvar_handoff_is_fine() {
    let mut b = two_threads();
    b.lock(3, M).cond_wait(3, COND, M);
    b.write(2, X, 4, ip(10))
        .lock(2, M)
        .cond_signal(2, COND)
        .unlock(2, M);
    b.cond_woken(3, COND, M).unlock(3, M).write(3, X, 4, ip(11));
    none(&b);
}

#[test]
fn semaphore_handoff_is_fine() {
    let mut b = two_threads();
    b.write(2, X, 4, ip(10)).sem_post(2, SEM);
    b.sem_wait(3, SEM)
        .read(3, X, 4, ip(11))
        .write(3, X, 4, ip(12));
    none(&b);
}

#[test]
fn barrier_phases_are_fine() {
    let mut b = OpsBuilder::new();
    b.barrier_init(1, BAR, 2).spawn(1, 2).spawn(1, 3);
    // Phase 1: each writes its own slot; phase 2: each reads and writes the other's.
    b.write(2, X, 4, ip(10)).write(3, X + 4, 4, ip(10));
    b.barrier_arrive(2, BAR).barrier_arrive(3, BAR);
    b.barrier_leave(3, BAR).write(3, X, 4, ip(11));
    b.barrier_leave(2, BAR)
        .read(2, X + 4, 4, ip(12))
        .write(2, X + 4, 4, ip(11));
    b.barrier_arrive(2, BAR).barrier_arrive(3, BAR);
    b.barrier_leave(2, BAR).barrier_leave(3, BAR);
    b.write(2, X, 4, ip(13)).write(3, X + 4, 4, ip(13));
    none(&b);
}

#[test]
fn an_early_arrival_at_the_next_phase_does_not_order_the_slow_thread() {
    let mut b = OpsBuilder::new();
    b.barrier_init(1, BAR, 2).spawn(1, 2).spawn(1, 3);
    b.barrier_arrive(2, BAR)
        .barrier_arrive(3, BAR)
        .barrier_leave(2, BAR);
    // Thread 2 writes in phase 2 and arrives again before thread 3 leaves phase 1.
    b.write(2, X, 4, ip(10)).barrier_arrive(2, BAR);
    b.barrier_leave(3, BAR).write(3, X, 4, ip(11));
    assert_eq!(run(&b).len(), 1);
}

#[test]
fn rwlock_readers_and_writer_are_fine() {
    let mut b = two_threads();
    b.spawn(1, 4);
    for t in [3, 4] {
        b.rdlock(t, RW).read(t, X, 4, ip(10)).rwunlock(t, RW);
    }
    b.wrlock(2, RW).write(2, X, 4, ip(11)).rwunlock(2, RW);
    b.rdlock(3, RW).read(3, X, 4, ip(10)).rwunlock(3, RW);
    none(&b);
}

#[test]
fn rwlock_writer_without_the_lock_races_with_the_readers() {
    let mut b = two_threads();
    b.spawn(1, 4);
    for t in [3, 4] {
        b.rdlock(t, RW).read(t, X, 4, ip(10)).rwunlock(t, RW);
    }
    b.write(2, X, 4, ip(11));
    let f = run(&b);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].details["accesses"][0]["locks_held"][0], "rwlock rw");
    assert_eq!(f[0].details["pairs"][0]["occurrences"], 2);
}

#[test]
fn a_read_lock_does_not_protect_a_write() {
    let mut b = two_threads();
    for t in [2, 3] {
        b.rdlock(t, RW).write(t, X, 4, ip(10)).rwunlock(t, RW);
    }
    assert_eq!(run(&b).len(), 1);
}

#[test]
fn spinlock_protects_like_a_mutex() {
    let mut b = two_threads();
    for t in [2, 3] {
        b.spin_lock(t, M).write(t, X, 4, ip(10)).spin_unlock(t, M);
    }
    none(&b);
}

#[test]
fn atomics_are_never_reported() {
    let mut b = two_threads();
    for t in [2, 3] {
        b.atomic(t, X, 4, ip(10));
        // A plain load of an atomic (a `mov` on x86-64) and a relaxed store.
        b.read(t, X, 4, ip(11)).write(t, X, 4, ip(12));
    }
    none(&b);
}

#[test]
fn atomic_flag_publishes_data() {
    let mut b = two_threads();
    b.write(2, X + 8, 4, ip(10)).atomic(2, X, 4, ip(11));
    b.atomic(3, X, 4, ip(12))
        .read(3, X + 8, 4, ip(13))
        .write(3, X + 8, 4, ip(14));
    none(&b);
}

#[test]
fn pthread_once_orders_the_initialiser_before_later_callers() {
    let mut b = two_threads();
    b.write(2, X, 4, ip(10)).once(2, ONCE);
    b.once(3, ONCE).read(3, X, 4, ip(11)).write(3, X, 4, ip(12));
    none(&b);
}

#[test]
fn the_init_routine_in_the_segment_after_the_once_return_is_ordered_too() {
    let mut b = two_threads();
    b.once(2, ONCE).write(2, X, 4, ip(10));
    b.once(3, ONCE).read(3, X, 4, ip(11)).write(3, X, 4, ip(12));
    none(&b);
}

#[test]
fn free_while_another_thread_reads_races() {
    let mut b = OpsBuilder::new();
    b.malloc(1, P, 64)
        .write(1, P + 8, 8, ip(10))
        .spawn(1, 2)
        .spawn(1, 3);
    b.read(2, P + 8, 8, ip(11)).free(3, P);
    let f = run(&b);
    assert_eq!(f.len(), 1, "{f:#?}");
    let d = &f[0].details;
    assert_eq!(d["accesses"][1]["via"], "free");
    assert_eq!(
        f[0].locations[1].role,
        "thread 3 frees heap block 0x70000000"
    );
    assert_eq!(d["accesses"][1]["access"], "write");
    assert_eq!(d["place"]["kind"], "heap");
    assert_eq!(d["place"]["size"], 64);
    assert!(
        d["variable"]
            .as_str()
            .unwrap()
            .contains("heap block of 64 bytes at 0x70000000"),
        "{d}"
    );
}

#[test]
fn memory_reused_by_malloc_is_a_new_location() {
    let mut b = two_threads();
    b.malloc(2, P, 32).write(2, P, 8, ip(10)).free(2, P);
    b.malloc(3, P, 32)
        .write(3, P, 8, ip(11))
        .read(3, P, 8, ip(12));
    none(&b);
}

#[test]
fn check_then_use_outside_the_lock_races() {
    let mut b = two_threads();
    b.lock(2, M)
        .read(2, X, 8, ip(10))
        .unlock(2, M)
        .read(2, X, 8, ip(11));
    b.lock(3, M).write(3, X, 8, ip(20)).unlock(3, M);
    let f = run(&b);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert!(
        f[0].summary.contains("read by thread 2 at race.c:11"),
        "{}",
        f[0].summary
    );
    assert!(
        f[0].summary.contains("write by thread 3 at race.c:20"),
        "{}",
        f[0].summary
    );
}

#[test]
fn one_finding_per_instruction_pair_with_merged_ranges() {
    let mut b = two_threads();
    let table = 0x60_3000;
    for i in 0..8 {
        b.write(2, table + 4 * i, 4, ip(10));
        b.write(3, table + 4 * i, 4, ip(11));
    }
    b.write(2, table + 0x80, 1, ip(12))
        .write(3, table + 0x80, 1, ip(13));
    let f = run_with(&b, &mut NoLocator);
    assert_eq!(f.len(), 2, "{f:#?}");
    assert_eq!(f[0].details["ranges"].as_array().unwrap().len(), 1);
    assert_eq!(f[0].details["ranges"][0]["bytes"], 32);
    assert_eq!(f[0].details["bytes"], 32);
    assert_eq!(f[1].details["bytes"], 1);
}

#[test]
fn adjacent_bytes_of_one_word_do_not_race() {
    let mut b = two_threads();
    for i in 0..4 {
        b.write(2, X + 2 * i, 1, ip(10))
            .write(3, X + 2 * i + 1, 1, ip(11));
    }
    none(&b);
    // A word-wide write by a third thread overlaps both.
    b.spawn(1, 4).write(4, X, 8, ip(12));
    let f = run(&b);
    assert_eq!(f.len(), 2, "{f:#?}");
}

#[test]
fn different_processes_never_race() {
    let mut b = OpsBuilder::new();
    b.process(200).spawn(200, 201).write(201, X, 4, ip(10));
    b.process(300).spawn(300, 301).write(301, X, 4, ip(11));
    b.process(200).write(201, X, 4, ip(10));
    b.process(300).write(301, X, 4, ip(11));
    none(&b);
    // The same accesses inside one process do race.
    b.write(300, X, 4, ip(12));
    let f = run(&b);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].pids, vec![300]);
}

#[test]
fn a_write_read_by_another_thread_and_written_again_reports_the_read() {
    let mut b = two_threads();
    b.write(2, X, 4, ip(10));
    // Thread 3 reads then writes within one segment.
    b.segment(
        3,
        &[
            mem(X, 4, ip(11), access::READ, Via::Instruction),
            mem(X, 4, ip(12), access::WRITE, Via::Instruction),
        ],
    );
    let f = run(&b);
    let lines: Vec<&str> = f.iter().map(|f| f.summary.as_str()).collect();
    assert!(
        lines
            .iter()
            .any(|s| s.contains("read by thread 3 at race.c:11")),
        "{lines:#?}"
    );
    assert_eq!(f.len(), 2, "{lines:#?}");
}

#[test]
fn data_published_under_a_mutex_then_only_read_is_not_reported() {
    let mut b = two_threads();
    b.write(2, X, 4, ip(10)).lock(2, M).unlock(2, M);
    b.lock(3, M)
        .unlock(3, M)
        .read(3, X, 4, ip(11))
        .read(2, X, 4, ip(12));
    none(&b);
}

#[test]
fn a_read_of_a_write_nothing_published_races() {
    // The exam's `&m` bug: main rewrites the struct a running thread reads.
    let mut b = two_threads();
    b.write(1, X, 4, ip(10)).read(3, X, 4, ip(11));
    let f = run(&b);
    assert_eq!(f.len(), 1, "{f:#?}");
    let s = &f[0].summary;
    assert!(
        s.contains("write by thread 1 at race.c:10 vs. read by thread 3 at race.c:11"),
        "{s}"
    );
}

#[test]
fn memcpy_into_a_shared_buffer_is_reported_at_the_call() {
    let mut b = two_threads();
    let buf = 0x60_3000;
    b.segment(2, &[mem(buf, 64, ip(50) + 5, access::WRITE, Via::Memcpy)]);
    b.read(3, buf + 16, 8, ip(51));
    let f = run(&b);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].details["accesses"][0]["via"], "memcpy");
    assert_eq!(f[0].details["accesses"][0]["size"], 64);
    assert_eq!(f[0].locations[0].line, Some(50));
    assert_eq!(f[0].details["ranges"][0]["bytes"], 8);
}

#[test]
fn stack_slots_are_named_by_their_thread() {
    let mut b = OpsBuilder::new();
    b.thread_stack(1, 0x7ff0_0000, 0x7ff1_0000).spawn(1, 2);
    let slot = 0x7ff0_fff0;
    b.write(1, slot, 8, ip(10)).read(2, slot, 8, ip(11));
    b.write(1, slot, 8, ip(10));
    let f = run(&b);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert!(
        f[0].summary.starts_with("data race on stack of thread 1"),
        "{}",
        f[0].summary
    );
}

#[test]
fn syscall_buffers_count_as_accesses_where_memory_was_captured() {
    let buf = 0x60_3000;
    let mut b = two_threads();
    b.read(3, buf + 4, 4, ip(60));
    let seg = syscall_segment(&b.syscall(2, "read", buf, 64, 16)).unwrap();
    let (ops, spawns) = b.build();
    let mut run = racerun::RaceRun::new(&ops, &spawns, vec![seg.clone()]);
    for s in b.segments() {
        run.segment(&s);
    }
    let f = run.finish(&mut Names);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].details["accesses"][1]["via"], "read(2)");
    // No capture in the process: nothing at all.
    let mut run = racerun::RaceRun::new(&ops, &spawns, vec![seg]);
    run.segment(
        &syscall_segment(&b.syscall(3, "write", buf, 64, 64))
            .unwrap()
            .segment,
    );
    assert!(run.finish(&mut Names).is_empty());
}

#[test]
fn readv_buffers_race_and_the_program_frame_of_its_stack_is_named() {
    use lockstep_analysis::sysaccess::syscall_data_segment;
    use lockstep_trace::DataKind;
    let buf = 0x60_3000;
    let mut b = two_threads();
    b.read(3, buf + 20, 4, ip(61));
    let mut s = b.syscall(2, "readv", 0x7fff_0000, 2, 32);
    // libc's wrapper (no source line), then the call in the program.
    s.stack = vec![0x7000_1000, ip(50) + 5];
    let seg = syscall_data_segment(
        &s,
        &[(DataKind::Out, buf, 16), (DataKind::Out, buf + 16, 16)],
    )
    .unwrap();
    let (ops, spawns) = b.build();
    let mut run = racerun::RaceRun::new(&ops, &spawns, vec![seg]);
    for s in b.segments() {
        run.segment(&s);
    }
    let f = run.finish(&mut Names);
    assert_eq!(f.len(), 1, "{f:#?}");
    let d = &f[0].details;
    let kernel = d["accesses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["via"] == "readv(2)")
        .unwrap();
    assert_eq!(
        (kernel["access"].as_str(), kernel["line"].as_u64()),
        (Some("write"), Some(50))
    );
    assert!(f[0].summary.contains("race.c:50") && f[0].summary.contains("race.c:61"));
}

/// `while (xchg(&lock, 1)) ;` then `counter++; lock = 0;` (a plain store).
fn spin_section(b: &mut OpsBuilder, tid: i32, lock: u64, atomic: bool) {
    if atomic {
        b.atomic(tid, lock, 4, ip(70));
    } else {
        // One segment: no sync op anywhere in a hand-made lock.
        b.segment(
            tid,
            &[
                mem(lock, 4, ip(70), access::READ, Via::Instruction),
                mem(lock, 4, ip(71), access::WRITE, Via::Instruction),
            ],
        );
    }
    b.segment(
        tid,
        &[
            mem(X, 4, ip(72), access::READ, Via::Instruction),
            mem(X, 4, ip(72) + 6, access::WRITE, Via::Instruction),
            mem(lock, 4, ip(73), access::WRITE, Via::Instruction),
        ],
    );
}

#[test]
fn a_spinlock_built_on_atomics_protects_its_critical_sections() {
    let lock = 0x60_2200;
    let mut b = two_threads();
    for _ in 0..3 {
        spin_section(&mut b, 2, lock, true);
        spin_section(&mut b, 3, lock, true);
    }
    none(&b);
}

#[test]
fn a_test_and_set_without_atomics_races() {
    let lock = 0x60_2200;
    let mut b = two_threads();
    for _ in 0..3 {
        spin_section(&mut b, 2, lock, false);
        spin_section(&mut b, 3, lock, false);
    }
    let f = run(&b);
    let lines: Vec<&str> = f.iter().map(|f| f.summary.as_str()).collect();
    // The spin read, the store that takes the lock, the one that gives it
    // back, and the counter.
    for n in 70..=73 {
        let line = format!("race.c:{n}");
        assert!(
            lines.iter().any(|s| s.contains(&line)),
            "{line}: {lines:#?}"
        );
    }
}
