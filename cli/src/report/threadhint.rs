//! Hints and side labels for the findings about two or three threads'
//! timing: data races (which lock to protect the variable with: the one
//! the other side held, one of two different ones, or a new one; when to
//! free a shared block) and priority inversions (PTHREAD_PRIO_INHERIT on
//! the named mutex, what to do where inheritance cannot help), and the
//! thread, its part (high, low, medium) and priority in front of each
//! inversion role.

use lockstep_analysis::{Finding, Location};
use serde_json::Value;

fn s<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// The variable as a reader names it: `counter`, `heap block 0x55...`.
fn variable(d: &Value) -> Option<String> {
    if s(&d["place"], "kind") == Some("heap") {
        if let Some(block) = s(&d["place"], "block") {
            return Some(format!("heap block {block}"));
        }
    }
    s(d, "variable")
        .or_else(|| s(d, "var"))
        .or_else(|| s(d, "object"))
        .map(str::to_string)
}

/// `file.c:34` of an access (the file's name only: the stacks have the
/// whole path, a hint stays one line).
fn at(a: &Value) -> String {
    match (s(a, "file"), a["line"].as_u64()) {
        (Some(file), Some(line)) => {
            let name = file.rsplit('/').next().unwrap_or(file);
            format!("{name}:{line}")
        }
        _ => s(a, "function").unwrap_or("an unknown place").to_string(),
    }
}

/// `reads`, `writes`, `frees`.
fn verb(a: &Value) -> &'static str {
    match (s(a, "via"), s(a, "access")) {
        (Some("free"), _) => "frees",
        (_, Some("write")) => "writes",
        _ => "reads",
    }
}

/// A name for a new mutex beside `var`: `counter_lock`.
fn lock_name(var: &str) -> String {
    let ident: String = var
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if ident.is_empty() || var.starts_with("heap block") {
        "lock".to_string()
    } else {
        format!("{ident}_lock")
    }
}

/// Which lock to protect the variable with, from the locks each access
/// held (`protect `current` with mutex m ...`), or when to free a block.
pub fn data_race(f: &Finding) -> Option<String> {
    let d = &f.details;
    let var = variable(d)?;
    let acc: Vec<&Value> = d["accesses"].as_array().into_iter().flatten().collect();
    let [a, b] = acc[..] else {
        return Some(format!(
            "protect `{var}` with one mutex that every access holds (e.g. pthread_mutex_lock(&{0}) around each access)",
            lock_name(&var)
        ));
    };
    if let Some((freer, user)) = [(a, b), (b, a)]
        .into_iter()
        .find(|(x, _)| s(x, "via") == Some("free"))
    {
        return Some(format!(
            "thread {} frees {var} at {} while thread {} may still use it at {}: free it only after that thread is done with it (pthread_join it first, or hand the block over under a mutex or condvar)",
            freer["tid"],
            at(freer),
            user["tid"],
            at(user)
        ));
    }
    let (la, lb) = (super::hint::locks_of(a), super::hint::locks_of(b));
    Some(match (la.first(), lb.first()) {
        (None, None) => format!(
            "protect `{var}` with one mutex held around both accesses ({1} and {2}), e.g. a pthread_mutex_t {0}, or make it an atomic",
            lock_name(&var),
            at(a),
            at(b)
        ),
        (Some(m), None) | (None, Some(m)) => {
            let (bare, held) = if la.is_empty() { (a, b) } else { (b, a) };
            format!(
                "protect `{var}` with {m}: thread {} {} it at {} without {m}, which thread {} holds at {}; take {m} there too",
                bare["tid"],
                verb(bare),
                at(bare),
                held["tid"],
                at(held)
            )
        }
        (Some(ma), Some(_)) => format!(
            "protect `{var}` with one mutex: thread {} holds {} but thread {} holds {} (different locks do not exclude each other); take {ma} at {} too",
            a["tid"],
            la.join(", "),
            b["tid"],
            lb.join(", "),
            at(b)
        ),
    })
}

/// The thread of `tid` in an inversion: `high`, `low`, `medium` (or an
/// other medium thread) and its priority label.
fn part(d: &Value, tid: i32) -> Option<(&'static str, Option<&str>)> {
    for (key, word) in [("high", "high"), ("low", "low"), ("medium", "medium")] {
        if d[key]["tid"].as_i64() == Some(tid as i64) {
            return Some((word, s(&d[key]["priority"], "label")));
        }
    }
    let others = d["other_medium_tids"].as_array()?;
    others
        .iter()
        .any(|t| t.as_i64() == Some(tid as i64))
        .then_some(("medium", None))
}

/// `thread 12 (SCHED_FIFO 10)` for the part `key` of an inversion.
fn who(d: &Value, key: &str, fallback: &str) -> String {
    match (d[key]["tid"].as_i64(), s(&d[key]["priority"], "label")) {
        (Some(t), Some(p)) => format!("thread {t} ({p})"),
        (Some(t), None) => format!("thread {t}"),
        _ => fallback.to_string(),
    }
}

/// PTHREAD_PRIO_INHERIT on the named mutex, or what to do where
/// inheritance cannot help (a condvar, nice values) or is already there.
pub fn priority_inversion(f: &Finding) -> Option<String> {
    let d = &f.details;
    let lock = s(d, "lock").or_else(|| s(d, "mutex"))?;
    let var = lock.split_once(' ').map_or(lock, |(_, v)| v);
    let high = s(&d["high"]["priority"], "label").unwrap_or("the waiter's priority");
    let low = who(d, "low", "the lower-priority thread");
    let mid = who(d, "medium", "the thread between");
    let nice = s(&d["high"]["priority"], "policy").is_some_and(|p| p == "other" || p == "batch");
    Some(match (s(d, "via"), s(d, "protocol")) {
        (Some("condvar"), _) => format!(
            "no thread owns {lock}, so priority inheritance cannot help: raise {low} to {high} for the hand-off (pthread_setschedprio), or keep {mid} off that CPU"
        ),
        (_, Some(p)) if p != "none" => format!(
            "{lock} already uses PTHREAD_PRIO_{}: the wait is bounded by {low}'s critical section; keep it short",
            p.to_uppercase()
        ),
        _ if nice => format!(
            "Linux's PTHREAD_PRIO_INHERIT boosts real-time priorities only, not nice values: keep the critical section on {lock} in {low} short, or run the threads SCHED_FIFO and make {lock} PTHREAD_PRIO_INHERIT (pthread_mutexattr_setprotocol) so that the holder runs ahead of {mid}"
        ),
        _ => format!(
            "make {lock} a priority-inheritance mutex: pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT), then pthread_mutex_init(&{var}, &attr); {low} then runs at {high} while it holds it, ahead of {mid}"
        ),
    })
}

/// The locks an inversion's holder held: `thread 12: mutex bus`.
pub fn inversion_locks_held(f: &Finding) -> Option<String> {
    let d = &f.details;
    if s(d, "via") != Some("mutex") {
        return None;
    }
    Some(format!(
        "thread {}: {}",
        d["low"]["tid"].as_i64()?,
        s(d, "lock")?
    ))
}

/// The role of `l` as the reports show it: a priority inversion's roles
/// (`waits for mutex bus`) get the thread, its part and its priority in
/// front (`thread 7 (high, SCHED_FIFO 30) waits for mutex bus`).
pub fn role(f: &Finding, l: &Location) -> String {
    if f.kind != "priority_inversion" || l.role.starts_with("thread ") {
        return l.role.clone();
    }
    match part(&f.details, l.tid) {
        Some((p, Some(label))) => format!("thread {} ({p}, {label}) {}", l.tid, l.role),
        Some((p, None)) => format!("thread {} ({p}) {}", l.tid, l.role),
        None => format!("thread {} {}", l.tid, l.role),
    }
}
