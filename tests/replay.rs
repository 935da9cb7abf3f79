//! Deterministic replay end to end: real programs recorded with `lockstep
//! record`, replayed with `lockstep replay [--verify]`, and the replay's
//! output and exit status compared with the recording's.

mod common;

use common::*;
use std::path::Path;

fn native(exe: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(exe).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn output_that_differs_on_every_run_is_replayed_exactly() {
    let _serial = one_at_a_time();
    let dir = scratch("replay-sources");
    let exe = fixture("replay_sources");
    let file = dir.join("input.txt");
    std::fs::write(&file, "only in the recording\n").unwrap();
    let f = file.to_str().unwrap();
    // The program really is nondeterministic: two native runs differ.
    assert_ne!(native(&exe, &[f]), native(&exe, &[f]));
    let (trace, recorded) = rec(&dir, &[exe.to_str().unwrap(), f], &[]);
    assert_eq!(recorded.code, Some(5), "{recorded:?}");
    assert!(recorded.stdout.contains("file only in the recording"));
    // Deleted after recording: the replay reads what the recording read.
    std::fs::remove_file(&file).unwrap();
    for extra in [&[][..], &["--verify"][..]] {
        let r = replay(&dir, &trace, extra);
        assert_eq!(r.code, Some(5), "{extra:?}: {r:?}");
        assert_eq!(r.stdout, recorded.stdout, "{extra:?}");
    }
    let r = replay(&dir, &trace, &["--verify"]);
    assert!(r.stderr.contains("replay verified"), "{r:?}");
}

#[test]
fn a_shell_pipeline_replays_through_its_forks_and_execs() {
    let _serial = one_at_a_time();
    let dir = scratch("replay-pipeline");
    let (trace, recorded) = rec(&dir, &["sh", "-c", "seq 1 3000 | sort -rn | head -3"], &[]);
    assert_eq!(recorded.stdout, "3000\n2999\n2998\n", "{recorded:?}");
    let r = replay(&dir, &trace, &["--verify"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, recorded.stdout);
}

#[test]
fn a_crash_replays_to_the_same_signal() {
    let _serial = one_at_a_time();
    let dir = scratch("replay-segv");
    let exe = fixture("killed_by_signal");
    let (trace, recorded) = rec(&dir, &[exe.to_str().unwrap()], &[]);
    assert_eq!(recorded.code, Some(139));
    let r = replay(&dir, &trace, &["--verify"]);
    assert_eq!(r.code, Some(139), "{r:?}");
    assert_eq!(r.stdout, "about to crash\n");
}

#[test]
fn threads_replay_in_the_recorded_order() {
    let _serial = one_at_a_time();
    let dir = scratch("replay-threads");
    // With memory capture (the default): the agent's own memory files
    // grow at moments that depend on the interleaving; those calls are
    // left out of the recording and of the replayed order.
    for name in ["counter_locked", "prodcons"] {
        let exe = fixture(name);
        let (trace, recorded) = rec(&dir, &[exe.to_str().unwrap()], &[]);
        assert_eq!(recorded.code, Some(0), "{name}: {recorded:?}");
        let db = rusqlite::Connection::open(&trace).unwrap();
        let agent_files: i64 = db
            .query_row(
                "SELECT count(*) FROM syscalls WHERE name = 'openat' AND text LIKE '%.mem.%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            agent_files, 0,
            "{name}: the agent's memory files are not the program's calls"
        );
        let accesses: i64 = db
            .query_row("SELECT coalesce(sum(count), 0) FROM mem_batches", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(accesses > 0, "{name}: memory accesses were captured");
        verified_as_recorded(&dir, &trace, &recorded, 2, name);
    }
}

#[test]
fn a_deadlock_replays_to_the_recorded_hang() {
    let _serial = one_at_a_time();
    let dir = scratch("replay-deadlock");
    let exe = fixture("abba_deadlock");
    let (trace, recorded) = rec(&dir, &[exe.to_str().unwrap()], &["--hang-timeout", "1"]);
    assert_eq!(recorded.code, Some(124), "{recorded:?}");
    let r = replay(&dir, &trace, &["--verify", "--stall-ms", "1000"]);
    assert_eq!(r.code, Some(124), "{r:?}");
    assert!(r.stderr.contains("reached the recorded hang"), "{r:?}");
    // The same threads blocked in the same calls as the recorded snapshot.
    let db = rusqlite::Connection::open(&trace).unwrap();
    let mut st = db.prepare("SELECT tid, syscall FROM hang_rows").unwrap();
    let rows: Vec<(i64, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 3, "main and two threads");
    for (tid, call) in rows {
        let line = format!("thread {tid} blocked in {call}");
        assert!(r.stderr.contains(&line), "{line}: {r:?}");
    }
}

#[test]
fn an_edited_trace_is_a_divergence() {
    let _serial = one_at_a_time();
    let dir = scratch("replay-divergence");
    let exe = fixture("replay_sources");
    let (trace, _) = rec(&dir, &[exe.to_str().unwrap()], &[]);
    let db = rusqlite::Connection::open(&trace).unwrap();
    // Other random bytes: the program prints another number than recorded.
    let n = db
        .execute(
            "UPDATE syscall_data_rows SET data = x'0102030405060708'
             WHERE entry_seq = (SELECT entry_seq FROM syscall_rows WHERE name = 'getrandom'
                                ORDER BY entry_seq DESC LIMIT 1)",
            [],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(db);
    let r = replay(&dir, &trace, &["--verify"]);
    assert_eq!(r.code, Some(3), "{r:?}");
    // The printed line is one digit shorter: the write's length differs.
    assert!(
        r.stderr.contains("replay diverged") && r.stderr.contains("of write"),
        "{r:?}"
    );

    // Another syscall than the one the program makes.
    let db = rusqlite::Connection::open(&trace).unwrap();
    db.execute(
        "UPDATE syscall_rows SET nr = 39, name = 'getpid' WHERE name = 'getrandom'
         AND entry_seq = (SELECT max(entry_seq) FROM syscall_rows WHERE name = 'getrandom')",
        [],
    )
    .unwrap();
    drop(db);
    let r = replay(&dir, &trace, &[]);
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(
        r.stderr.contains("syscall: expected getpid, got getrandom"),
        "{r:?}"
    );
    assert_eq!(r.stderr.lines().count(), 1, "one line: {r:?}");
}

#[test]
fn stop_at_shows_the_registers_and_the_source_line() {
    let _serial = one_at_a_time();
    let dir = scratch("replay-stop-at");
    let exe = fixture("replay_sources");
    let (trace, _) = rec(&dir, &[exe.to_str().unwrap()], &[]);
    let db = rusqlite::Connection::open(&trace).unwrap();
    let seq: i64 = db
        .query_row(
            "SELECT max(entry_seq) FROM syscall_rows WHERE name = 'getrandom'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let r = replay(&dir, &trace, &["--stop-at", &seq.to_string()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout.contains(&format!("stopped at event {seq}")),
        "{r:?}"
    );
    assert!(r.stdout.contains("rip 0x"), "{r:?}");
    let line = marker_line("replay_sources", "GETRANDOM");
    assert!(
        r.stdout.contains("main") && r.stdout.contains(&format!("replay_sources.c:{line}")),
        "{}",
        r.stdout
    );
}

#[test]
fn what_is_not_a_trace_is_refused_in_one_line() {
    let _serial = one_at_a_time();
    let dir = scratch("replay-bad");
    std::fs::write(dir.join("junk.db"), b"not a trace").unwrap();
    let r = lockstep(&dir, &["replay", "junk.db"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
}

/// The serializing scheduler's decisions in a trace, by kind.
fn decisions(trace: &Path, kind: &str) -> i64 {
    let db = rusqlite::Connection::open(trace).unwrap();
    db.query_row(
        "SELECT count(*) FROM schedule_decisions WHERE kind = ?1",
        [kind],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn a_serialized_spin_wait_neither_hangs_nor_diverges() {
    let _serial = one_at_a_time();
    let dir = scratch("replay-serialize");
    let exe = fixture("spin_wait_flag");
    // Memory capture off (the loop is the program's own code) and on (the
    // loop runs instrumented, with an inline probe before its load of the
    // flag, where a preemption must not land).
    for mem in ["off", "agent"] {
        let (trace, recorded) = rec(
            &dir,
            &[exe.to_str().unwrap()],
            &["--serialize", "--mem", mem],
        );
        assert_eq!(recorded.code, Some(0), "{recorded:?}");
        assert!(recorded.stdout.contains("spinner saw the flag"));
        // The spinner could only let main set the flag by being preempted.
        assert!(decisions(&trace, "preempt") >= 1, "--mem {mem}");
        assert!(decisions(&trace, "run") >= 4, "main and three threads ran");
        verified_as_recorded(&dir, &trace, &recorded, 2, &format!("--mem {mem}"));
    }
}

#[test]
fn a_serialized_lock_loop_is_preempted_at_its_sync_calls() {
    let _serial = one_at_a_time();
    let dir = scratch("replay-serialize-sync");
    let exe = fixture("counter_locked");
    // Memory capture on (the default): the loop runs instrumented code.
    let (trace, recorded) = rec(&dir, &[exe.to_str().unwrap()], &["--serialize"]);
    assert_eq!(recorded.code, Some(0), "{recorded:?}");
    assert!(recorded.stdout.contains("counter=200000"), "{recorded:?}");
    // Two threads of 100000 locked increments: each is preempted at an
    // interposed sync call, named by the thread's count of them.
    let db = rusqlite::Connection::open(&trace).unwrap();
    let (preempts, at_sync): (i64, i64) = db
        .query_row(
            "SELECT count(*), count(sync_op) FROM schedule_decisions WHERE kind = 'preempt'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(preempts >= 1, "no preemption in {trace:?}");
    assert_eq!(preempts, at_sync, "every preemption at a sync call");
    verified_as_recorded(&dir, &trace, &recorded, 2, "");
}

#[test]
fn a_signal_in_the_middle_of_a_loop_replays_at_the_same_turn() {
    let _serial = one_at_a_time();
    let dir = scratch("replay-signal-in-loop");
    let exe = fixture("signal_in_loop");
    // Natively the turns at which the timer's ticks are seen differ.
    let native = |_: u32| {
        let out = std::process::Command::new(&exe).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_ne!(native(1), native(2), "the fixture is not timing-dependent");
    let (trace, recorded) = rec(&dir, &[exe.to_str().unwrap()], &["--serialize"]);
    assert_eq!(recorded.code, Some(0), "{recorded:?}");
    assert!(recorded.stdout.starts_with("turns="), "{recorded:?}");
    let db = rusqlite::Connection::open(&trace).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    // Six ticks seen, each delivered where the loop was preempted at a
    // pthread call (held back from the middle of its user code).
    assert!(count("SELECT count(*) FROM signal_rows WHERE signo = 14") >= 6);
    assert!(count("SELECT count(sync_op) FROM schedule_decisions WHERE kind = 'preempt'") >= 1);
    verified_as_recorded(&dir, &trace, &recorded, 2, "");
}

#[test]
fn chaos_keeps_its_seed_and_replays() {
    let _serial = one_at_a_time();
    let dir = scratch("replay-chaos");
    let exe = fixture("spin_wait_flag");
    let (trace, recorded) = rec(
        &dir,
        &[exe.to_str().unwrap()],
        &["--chaos=7", "--mem", "off"],
    );
    assert_eq!(recorded.code, Some(0), "{recorded:?}");
    let db = rusqlite::Connection::open(&trace).unwrap();
    let meta = |k: &str| -> String {
        db.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(meta("serialize"), "1");
    assert_eq!(meta("chaos_seed"), "7");
    verified_as_recorded(&dir, &trace, &recorded, 1, "chaos");
}

#[test]
fn a_hang_in_a_blocking_call_replays_to_that_call() {
    let _serial = one_at_a_time();
    let dir = scratch("replay-pipe-hang");
    // The parent waits (wait4) for a child that waits for a reader that
    // never comes: the replay must stop both where they were, not let the
    // emulated wait4 return.
    let exe = fixture("pipe_64k_deadlock");
    let (trace, recorded) = rec(&dir, &[exe.to_str().unwrap()], &["--hang-timeout", "1"]);
    assert_eq!(recorded.code, Some(124), "{recorded:?}");
    let r = replay(&dir, &trace, &["--verify"]);
    assert_eq!(r.code, Some(124), "{r:?}");
    assert!(r.stderr.contains("reached the recorded hang"), "{r:?}");
    assert!(r.stderr.contains("blocked in wait4"), "{r:?}");
    assert!(!r.stderr.contains("diverged"), "{r:?}");
}

#[test]
fn exec_from_a_thread_shared_semaphores_and_sigsuspend_replay() {
    let _serial = one_at_a_time();
    let dir = scratch("replay-exec-sem");
    // exec from a second thread: the exec'ing thread takes the leader's
    // id, and its calls after the exec are recorded under it.
    // semaphores: sem_open writes the semaphore's file and maps it shared;
    // the write is emulated and the file is gone, so the mapping's
    // recorded contents are what the replay maps. sigchld_sigsuspend
    // waits for SIGCHLD in sigsuspend with SIGCHLD blocked around it.
    for name in ["exec_from_thread", "semaphores", "sigchld_sigsuspend"] {
        replays_verified(&dir, name, 2);
    }
}

#[test]
fn polling_loops_pi_mutexes_and_short_threads_replay() {
    let _serial = one_at_a_time();
    let dir = scratch("replay-poll-pi");
    // cond_wait_holding_other polls a flag with nanosleep (the sleeps are
    // skipped outside the order); pi_mutex takes PTHREAD_PRIO_INHERIT
    // mutexes (FUTEX_LOCK_PI on words holding recorded tids);
    // norace_join_read starts threads whose malloc arenas must not depend
    // on which thread ended first.
    for name in ["cond_wait_holding_other", "pi_mutex", "norace_join_read"] {
        replays_verified(&dir, name, 1);
    }
}

/// Records fixture `name` (it must exit 0) and replays it `times` times
/// with `--verify`: each replay verified, with the recorded output.
fn replays_verified(dir: &Path, name: &str, times: usize) {
    let exe = fixture(name);
    let (trace, recorded) = rec(dir, &[exe.to_str().unwrap()], &[]);
    assert_eq!(recorded.code, Some(0), "{name}: {recorded:?}");
    verified_as_recorded(dir, &trace, &recorded, times, name);
}

/// Replays `trace` `times` times with `--verify`: each exits 0, says it
/// verified, and prints the recorded stdout.
fn verified_as_recorded(dir: &Path, trace: &Path, recorded: &Run, times: usize, what: &str) {
    for _ in 0..times {
        let r = replay(dir, trace, &["--verify"]);
        assert_eq!(r.code, Some(0), "{what}: {r:?}");
        assert_eq!(r.stdout, recorded.stdout, "{what}");
        assert!(r.stderr.contains("replay verified"), "{what}: {r:?}");
    }
}
