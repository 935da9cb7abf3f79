//! Synchronization events recorded by the in-process agent on real
//! programs: the ops of each thread in order, their outcomes and return
//! codes, mutex types and protocols, and call sites at the fixture's lines.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Records a fixture and returns its sync events (`events --json`, kind sync).
fn sync_events(fixture: &str) -> Vec<Value> {
    let dir = scratch(&format!("sync-{fixture}"));
    let (trace, run) = record(&dir, fixture_path(fixture).to_str().unwrap(), &[]);
    assert_eq!(run.code, Some(0), "{fixture}: {run:?}");
    events(&dir, &trace, &[])
        .into_iter()
        .filter(|e| e["kind"] == "sync")
        .collect()
}

fn fixture_path(name: &str) -> std::path::PathBuf {
    fixture(name)
}

/// (op, phase, ret, line) of every event of `tid` on object `obj`.
fn ops_of(evs: &[Value], tid: i64, obj: u64) -> Vec<(String, String, i64, u64)> {
    evs.iter()
        .filter(|e| e["event"]["tid"] == tid && e["event"]["obj"] == obj)
        .map(|e| {
            (
                e["event"]["op"].as_str().unwrap().to_string(),
                e["event"]["phase"].as_str().unwrap().to_string(),
                e["event"]["ret"].as_i64().unwrap(),
                e["site"]["line"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn first(evs: &[Value], op: &str, line: u64) -> Value {
    evs.iter()
        .find(|e| e["event"]["op"] == op && e["site"]["line"] == line)
        .unwrap_or_else(|| panic!("no {op} at line {line}"))
        .clone()
}

#[test]
fn recursive_and_errorcheck_mutexes_exact_sequences() {
    let fx = "recursive_mutex";
    let evs = sync_events(fx);
    let l = |m: &str| marker_line(fx, m);
    let rec = first(&evs, "pthread_mutex_init", l("REC-INIT"))["event"]["obj"]
        .as_u64()
        .unwrap();
    // Two threads each lock the recursive mutex three times and unlock it three times.
    let workers: Vec<i64> = {
        let mut v: Vec<i64> = evs
            .iter()
            .filter(|e| e["event"]["obj"] == rec && e["event"]["op"] == "pthread_mutex_lock")
            .map(|e| e["event"]["tid"].as_i64().unwrap())
            .collect();
        v.dedup();
        v
    };
    assert_eq!(workers.len(), 2, "{workers:?}");
    for &t in &workers {
        // Uncontended acquisitions are one `acquired` event (no `request`:
        // they could not block); the workers are joined one after the other.
        let expected: Vec<(String, String, i64, u64)> = [
            ("pthread_mutex_lock", "acquired", "REC-LOCK-1"),
            ("pthread_mutex_lock", "acquired", "REC-LOCK-2"),
            ("pthread_mutex_lock", "acquired", "REC-LOCK-3"),
            ("pthread_mutex_unlock", "released", "REC-UNLOCK-3"),
            ("pthread_mutex_unlock", "released", "REC-UNLOCK-2"),
            ("pthread_mutex_unlock", "released", "REC-UNLOCK-1"),
        ]
        .iter()
        .map(|(o, p, m)| (o.to_string(), p.to_string(), 0, l(m)))
        .collect();
        assert_eq!(ops_of(&evs, t, rec), expected, "thread {t}");
    }
    for e in evs
        .iter()
        .filter(|e| e["event"]["obj"] == rec && e["event"]["op"] == "pthread_mutex_lock")
    {
        assert_eq!(
            e["event"]["flags"].as_u64().unwrap() & 3,
            1,
            "recursive type recorded"
        );
    }
    // The errorcheck mutex refuses a relock (EDEADLK) and a foreign unlock (EPERM).
    let relock = first(&evs, "pthread_mutex_lock", l("EC-RELOCK-MAIN"));
    let relock_outcome = evs
        .iter()
        .find(|e| {
            e["event"]["op"] == "pthread_mutex_lock"
                && e["site"]["line"] == l("EC-RELOCK-MAIN")
                && e["event"]["phase"] != "request"
        })
        .unwrap();
    assert_eq!(relock_outcome["event"]["phase"], "failed");
    assert_eq!(relock_outcome["event"]["ret"], libc::EDEADLK);
    assert_eq!(
        relock["event"]["flags"].as_u64().unwrap() & 3,
        2,
        "errorcheck type recorded"
    );
    let foreign = first(&evs, "pthread_mutex_unlock", l("EC-UNLOCK-T3"));
    assert_eq!(foreign["event"]["phase"], "failed");
    assert_eq!(foreign["event"]["ret"], libc::EPERM);
}

#[test]
fn rwlock_semaphore_spinlock_and_barrier_outcomes() {
    let fx = "rwlock";
    let evs = sync_events(fx);
    let tr = first(
        &evs,
        "pthread_rwlock_tryrdlock",
        marker_line(fx, "MAIN-TRYRDLOCK"),
    );
    assert_eq!(
        (tr["event"]["phase"].as_str(), tr["event"]["ret"].as_i64()),
        (Some("failed"), Some(libc::EBUSY as i64))
    );
    let tw = first(
        &evs,
        "pthread_rwlock_trywrlock",
        marker_line(fx, "MAIN-TRYWRLOCK"),
    );
    assert_eq!(tw["event"]["phase"], "acquired");
    // Every reader's rdlock is acquired and released at the fixture's lines.
    let reads = evs
        .iter()
        .filter(|e| {
            e["event"]["op"] == "pthread_rwlock_rdlock" && e["event"]["phase"] == "acquired"
        })
        .count();
    assert_eq!(reads, 15, "3 readers x 5");

    let fx = "semaphores";
    let evs = sync_events(fx);
    let t = first(&evs, "sem_trywait", marker_line(fx, "MAIN-TRYWAIT"));
    assert_eq!(
        (t["event"]["phase"].as_str(), t["event"]["ret"].as_i64()),
        (Some("failed"), Some(libc::EAGAIN as i64))
    );
    let t = evs
        .iter()
        .find(|e| e["event"]["op"] == "sem_timedwait" && e["event"]["phase"] != "request")
        .expect("timedwait outcome");
    assert_eq!(t["event"]["ret"], libc::ETIMEDOUT);
    assert_eq!(t["site"]["line"], marker_line(fx, "MAIN-TIMEDWAIT"));
    let named = first(&evs, "sem_open", marker_line(fx, "NAMED-OPEN"));
    assert_eq!(named["event"]["flags"], 1, "named semaphore");
    let posts = evs
        .iter()
        .filter(|e| e["event"]["op"] == "sem_post")
        .count();
    assert!(posts > 2, "worker posts, main's posts and the named post");

    let fx = "spinlock";
    let evs = sync_events(fx);
    let t = first(&evs, "pthread_spin_trylock", marker_line(fx, "T1-TRYLOCK"));
    assert_eq!(
        (t["event"]["phase"].as_str(), t["event"]["ret"].as_i64()),
        (Some("failed"), Some(libc::EBUSY as i64))
    );

    let fx = "barrier";
    let evs = sync_events(fx);
    let mut per_thread: BTreeMap<i64, usize> = BTreeMap::new();
    for e in evs
        .iter()
        .filter(|e| e["event"]["op"] == "pthread_barrier_wait" && e["event"]["phase"] != "request")
    {
        assert_eq!(e["site"]["line"], marker_line(fx, "BAR-WAIT"));
        *per_thread
            .entry(e["event"]["tid"].as_i64().unwrap())
            .or_default() += 1;
    }
    assert_eq!(
        per_thread.values().copied().collect::<Vec<_>>(),
        vec![3, 3, 3, 3],
        "4 threads x 3 rounds"
    );
}

#[test]
fn pi_and_protect_mutexes_record_their_protocol() {
    let fx = "pi_mutex";
    let evs = sync_events(fx);
    let pi = first(&evs, "pthread_mutex_lock", marker_line(fx, "PI-LOCK-T1"));
    assert_ne!(
        pi["event"]["flags"].as_u64().unwrap() & 0x20,
        0,
        "PRIO_INHERIT"
    );
    let pp = first(&evs, "pthread_mutex_lock", marker_line(fx, "PP-LOCK-T1"));
    assert_ne!(
        pp["event"]["flags"].as_u64().unwrap() & 0x40,
        0,
        "PRIO_PROTECT"
    );
}

#[test]
fn every_acquire_is_paired_with_a_release_and_seqs_are_one_order() {
    for fx in ["prodcons", "pthread_condvar", "hemiphore"] {
        let evs = sync_events(fx);
        assert!(!evs.is_empty());
        let mut held: HashMap<(i64, u64), i64> = HashMap::new();
        let mut last_seq = 0;
        for e in &evs {
            let ev = &e["event"];
            let seq = ev["at"]["seq"].as_u64().unwrap();
            assert!(seq > last_seq, "{fx}: sync ops in global order");
            last_seq = seq;
            let key = (ev["tid"].as_i64().unwrap(), ev["obj"].as_u64().unwrap());
            match (ev["op"].as_str().unwrap(), ev["phase"].as_str().unwrap()) {
                ("pthread_mutex_lock", "acquired") => *held.entry(key).or_default() += 1,
                ("pthread_mutex_unlock", "released") => {
                    let n = held.entry(key).or_default();
                    assert!(*n > 0, "{fx}: unlock without lock by the same thread: {e}");
                    *n -= 1;
                }
                ("pthread_cond_wait", "request") => {
                    let m = (key.0, ev["arg"].as_u64().unwrap());
                    assert_eq!(
                        held.get(&m),
                        Some(&1),
                        "{fx}: cond_wait with its mutex held: {e}"
                    );
                    held.insert(m, 0);
                }
                ("pthread_cond_wait", "acquired") => {
                    held.insert((key.0, ev["arg"].as_u64().unwrap()), 1);
                }
                _ => {}
            }
        }
        assert!(
            held.values().all(|&n| n == 0),
            "{fx}: every lock released: {held:?}"
        );
    }
}

#[test]
fn locks_lists_objects_with_kinds_and_first_use() {
    let dir = scratch("locks-cmd");
    let (trace, _) = record(&dir, fixture_path("recursive_mutex").to_str().unwrap(), &[]);
    let locks = json(&dir, &["locks", trace.to_str().unwrap()]);
    let list = locks.as_array().unwrap();
    let rec = list
        .iter()
        .find(|o| o["attributes"][0] == "recursive")
        .expect("the recursive mutex");
    assert_eq!(rec["kind"], "mutex");
    assert!(rec["first_used_at"]
        .as_str()
        .unwrap()
        .ends_with(&format!(":{}", marker_line("recursive_mutex", "REC-INIT"))));
    assert_eq!(
        rec["ops"].as_object().unwrap().len(),
        3,
        "main (init) and the two workers"
    );
    assert!(list.iter().any(|o| o["attributes"][0] == "errorcheck"));
    let ps = json(&dir, &["ps", trace.to_str().unwrap()]);
    assert_eq!(ps[0]["sync_mechanism"], "agent");
}

#[test]
fn bad_input_does_not_change_the_program_or_lose_sync_ops() {
    // A program that closes every fd at start: the agent's area stays mapped.
    let evs = sync_events("close_all_fds");
    let locks = evs
        .iter()
        .filter(|e| e["event"]["op"] == "pthread_mutex_lock" && e["event"]["phase"] == "acquired")
        .count();
    assert_eq!(locks, 200, "2 threads x 100");
    assert!(evs.iter().all(|e| e["site"]["line"] != 0));

    // An LD_PRELOAD that cannot load: the loader complains, the program runs as
    // it would without lockstep, and the agent (first in LD_PRELOAD) records.
    let dir = scratch("sync-bad-preload");
    let bin = fixture_path("close_all_fds");
    let native = std::process::Command::new(&bin)
        .env("LD_PRELOAD", "/nonexistent/libnothing.so")
        .output()
        .unwrap();
    let run = finish(
        {
            let mut c = std::process::Command::new(LOCKSTEP);
            c.args(["record", "-q", "-o", "t.db", "--", bin.to_str().unwrap()])
                .current_dir(&dir)
                .env("LD_PRELOAD", "/nonexistent/libnothing.so")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            std::os::unix::process::CommandExt::process_group(&mut c, 0);
            c.spawn().unwrap()
        },
        std::time::Duration::from_secs(60),
    );
    assert_eq!(run.code, native.status.code(), "{run:?}");
    assert_eq!(run.stdout, String::from_utf8_lossy(&native.stdout));
    let evs = events(&dir, &dir.join("t.db"), &[]);
    let locks = evs
        .iter()
        .filter(|e| e["kind"] == "sync" && e["event"]["op"] == "pthread_mutex_lock")
        .count();
    assert!(
        locks >= 200,
        "sync ops recorded despite the broken LD_PRELOAD: {locks}"
    );
}
