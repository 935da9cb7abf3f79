//! One-line fix hints and the locks each side held, from a finding's own
//! data: which fd or pipe end in which process, which locks in which
//! order, which variable with which mutex. Falls back to the kind's
//! general advice when the details say too little.

use lockstep_analysis::Finding;
use serde_json::Value;

fn s<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// The text between `start` and `end` in `text` (or to its end).
pub fn between<'t>(text: &'t str, start: &str, end: &str) -> Option<&'t str> {
    let rest = &text[text.find(start)? + start.len()..];
    Some(rest.find(end).map_or(rest, |i| &rest[..i]))
}

/// A one-line hint on how to fix `f`.
pub fn hint(f: &Finding) -> String {
    let d = &f.details;
    let specific = match f.kind.as_str() {
        "lock_order_inversion" => inversion(d),
        "deadlock" if d["nested_monitor"] == true => nested_monitor(d),
        "deadlock" if d.get("objects").is_some() => pipe_deadlock(d),
        "deadlock" => lock_deadlock(d),
        "fd_leak" => s(d, "fix").map(str::to_string).or_else(|| {
            let fixes: Vec<&str> = d["holders"]
                .as_array()?
                .iter()
                .filter_map(|h| s(h, "fix"))
                .collect();
            (!fixes.is_empty()).then(|| fixes.join("; "))
        }),
        "bad_fd" => bad_fd(d),
        "fd_misuse" => fd_misuse(d),
        "fd_open_at_exit" => {
            let fds: Vec<String> = d["fds"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["fd"].as_i64().map(|fd| format!("fd {fd}")))
                .collect();
            (!fds.is_empty()).then(|| {
                format!(
                    "close {} in pid {} when done with {} (or open with O_CLOEXEC)",
                    fds.join(", "),
                    d["pid"],
                    if fds.len() == 1 { "it" } else { "them" }
                )
            })
        }
        "hang" => hang(d),
        "self_deadlock" => s(d, "lock_name").or_else(|| s(d, "lock")).map(|l| {
            format!("do not lock {l} again while holding it: split the function into a locked and an unlocked variant (or make it PTHREAD_MUTEX_RECURSIVE on purpose)")
        }),
        "unlock_not_held" => between(&f.summary, "which thread ", " holds").map(|t| {
            format!(
                "only thread {t}, which locked {}, may unlock it: move the unlock into the thread that locked",
                s(d, "lock_name").or_else(|| s(d, "lock")).unwrap_or("the mutex")
            )
        }),
        "cond_wait_holding_lock" => between(&f.summary, "while holding ", ":").map(|held| {
            format!(
                "release {held} before waiting on the condition variable (pthread_cond_wait releases only its own mutex)"
            )
        }),
        "data_race" => super::threadhint::data_race(f),
        "priority_inversion" => super::threadhint::priority_inversion(f),
        _ => None,
    };
    specific.unwrap_or_else(|| general(&f.kind).to_string())
}

/// The kind's general advice.
fn general(kind: &str) -> &'static str {
    match kind {
        "lock_order_inversion" | "deadlock" => {
            "take the locks in one global order everywhere (or guard the pair with one lock)"
        }
        "fd_leak" => {
            "close the pipe end after fork/dup2 where it is not used, or create it with O_CLOEXEC"
        }
        "bad_fd" => {
            "check which pipe end goes where: pipefd[0] is the read end, pipefd[1] the write end"
        }
        "fd_misuse" => "the writer's stdout gets pipefd[1], the reader's stdin pipefd[0]",
        "fd_open_at_exit" => "close what you open (or open it O_CLOEXEC)",
        "hang" => {
            "check that every wait has a matching signal/post/close that still happens, and wait in a `while` loop"
        }
        "self_deadlock" => {
            "do not lock a lock you hold (or make it PTHREAD_MUTEX_RECURSIVE on purpose)"
        }
        "unlock_not_held" => "unlock only what this thread locked",
        "cond_wait_holding_lock" => "release other locks before waiting on a condition variable",
        "data_race" => "protect the variable with one mutex held by every access",
        "priority_inversion" => {
            "make the shared mutex PTHREAD_PRIO_INHERIT (pthread_mutexattr_setprotocol)"
        }
        _ => "see `lockstep explain KIND`",
    }
}

/// `take mutex A before mutex B everywhere: thread 7 takes them the other
/// way round (holds mutex B at f.c:54, then takes mutex A at f.c:55)`.
fn inversion(d: &Value) -> Option<String> {
    let cycle: Vec<&str> = d["cycle"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if cycle.len() < 2 {
        return None;
    }
    let (first, last) = (cycle[0], cycle[cycle.len() - 1]);
    let order = cycle.join(" before ");
    let closing = d["edges"]
        .as_array()?
        .iter()
        .find(|e| s(e, "holds") == Some(last) && s(e, "acquires") == Some(first));
    Some(match closing {
        Some(e) => format!(
            "take {order} everywhere: thread {} takes them the other way round (holds {last} at {}, then takes {first} at {})",
            e["tid"],
            crate::report::source::display_path(s(e, "held_at").unwrap_or("?")),
            crate::report::source::display_path(s(e, "acquired_at").unwrap_or("?"))
        ),
        None => format!("take {order} everywhere"),
    })
}

/// A lock cycle at a hang: the order the first thread took them in is the
/// one to keep; name the thread that breaks it.
fn lock_deadlock(d: &Value) -> Option<String> {
    let threads = d["threads"].as_array()?;
    let held: Vec<&str> = threads
        .iter()
        .filter_map(|t| t["holds"].as_array()?.first()?.as_str())
        .collect();
    if held.len() < 2 {
        return None;
    }
    let last = threads.last()?;
    let waits = between(s(last, "waits_for")?, "waits for ", " held by")?;
    Some(format!(
        "take {} everywhere: thread {} holds {} and then takes {waits}, the other way round",
        held.join(" before "),
        last["tid"],
        held[held.len() - 1]
    ))
}

fn nested_monitor(d: &Value) -> Option<String> {
    let holder = d["threads"]
        .as_array()?
        .iter()
        .find(|t| t["holds"].as_array().is_some_and(|h| !h.is_empty()))?;
    let held = holder["holds"][0].as_str()?;
    let cond = between(s(holder, "waits_for")?, "waits on ", " (").unwrap_or("the inner condvar");
    Some(format!(
        "thread {} must not hold {held} while it waits on {cond}: release it before waiting, or let the signaller do without it",
        holder["tid"]
    ))
}

/// Pipe wait cycles: a reader waiting for a write end nobody will close,
/// or a writer on a full pipe whose reader waits for it.
fn pipe_deadlock(d: &Value) -> Option<String> {
    let cycle = d["cycle"].as_array()?;
    for step in cycle {
        let text = s(step, "step").unwrap_or("");
        match s(step, "edge") {
            Some("pipe_read") => {
                let holder = between(text, "whose write end ", " holds")?;
                let fd = between(text, "holds (", ")").unwrap_or("its copy");
                return Some(format!(
                    "close the write end ({fd}) in {holder}, which never writes to it, before it waits: then the reader sees EOF"
                ));
            }
            Some("pipe_write") => {
                let waiter = cycle.iter().find(|x| s(x, "edge") == Some("wait"));
                let who = waiter
                    .and_then(|w| s(w, "step"))
                    .and_then(|t| t.split(" waits").next())
                    .unwrap_or("the parent");
                return Some(format!(
                    "{who} must fork the reader before it waits for the writer: a pipe holds only 64 KiB, and the writer blocks once it is full"
                ));
            }
            _ => {}
        }
    }
    None
}

/// A hang without a cycle: what each thread waits for, and what must
/// still happen.
fn hang(d: &Value) -> Option<String> {
    let threads = d["threads"].as_array()?;
    if threads.is_empty() || threads.len() > 3 {
        return None;
    }
    let waits: Vec<String> = threads
        .iter()
        .filter_map(|t| Some(format!("thread {} {}", t["tid"], s(t, "blocked")?)))
        .collect();
    Some(format!(
        "{}: nothing left will wake {}; make sure the signal, post, unlock or close it waits for still happens (and wait for a condition in a `while` loop)",
        waits.join("; "),
        if waits.len() == 1 { "it" } else { "them" }
    ))
}

fn bad_fd(d: &Value) -> Option<String> {
    let fd = d["fd"].as_i64()?;
    let call = s(d, "syscall").unwrap_or("the call");
    let entry = &d["entry"];
    match (s(entry, "end"), d["open"].as_bool()) {
        (Some(end), Some(true)) => {
            let (want, other) = if end == "read" {
                ("write", "pipefd[1]")
            } else {
                ("read", "pipefd[0]")
            };
            let by = s(&entry["installed_at"], "what").unwrap_or("an earlier call");
            Some(format!(
                "{by} put the {end} end on fd {fd}, but {call}() needs the {want} end: use {other} there (pipefd[0] reads, pipefd[1] writes)"
            ))
        }
        _ => {
            let closed = s(&entry["closed_at"]["at"], "what");
            Some(match closed {
                Some(c) => format!("fd {fd} was already closed by {c} when {call}() used it: close it after its last use"),
                None => format!("fd {fd} was never opened in this process when {call}() used it: check the fd number"),
            })
        }
    }
}

fn fd_misuse(d: &Value) -> Option<String> {
    let fd = d["fd"].as_i64()?;
    let end = s(d, "end")?;
    let by = s(&d["entry"]["installed_at"], "what").unwrap_or("dup2");
    let (target, which) = if end == "write" {
        ("STDOUT_FILENO (1)", "pipefd[1]")
    } else {
        ("STDIN_FILENO (0)", "pipefd[0]")
    };
    Some(format!(
        "{by} put the {end} end on fd {fd} in pid {}: dup2 {which} onto {target} instead",
        d["pid"]
    ))
}

/// Every lock name in a `locks`/`locks_held`/`held` list of `v` or of its
/// `accesses`.
pub fn locks_of(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |x: &Value| {
        for key in ["locks", "locks_held", "held"] {
            for l in x[key].as_array().into_iter().flatten() {
                if let Some(l) = l.as_str() {
                    if !out.iter().any(|o: &String| o == l) {
                        out.push(l.to_string());
                    }
                }
            }
        }
    };
    add(v);
    for a in v["accesses"].as_array().into_iter().flatten() {
        add(a);
    }
    out
}

/// `thread T: mutex A, mutex B` per thread that held locks, from the
/// details (deadlocks, data races); empty when they do not say.
pub fn locks_held(f: &Finding) -> Vec<String> {
    let d = &f.details;
    let mut out = Vec::new();
    for t in d["threads"].as_array().into_iter().flatten() {
        if let Some(h) = t["holds"].as_array() {
            let names: Vec<&str> = h.iter().filter_map(Value::as_str).collect();
            out.push(format!(
                "thread {}: {}",
                t["tid"],
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ));
        }
    }
    for a in d["accesses"].as_array().into_iter().flatten() {
        let names = locks_of(a);
        if let Some(tid) = a.get("tid") {
            out.push(format!(
                "thread {tid}: {}",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ));
        }
    }
    if f.kind == "priority_inversion" {
        out.extend(super::threadhint::inversion_locks_held(f));
    }
    if f.kind == "cond_wait_holding_lock" {
        if let Some(held) = between(&f.summary, "while holding ", ":") {
            let tid = f.tids.first().map(|t| t.to_string()).unwrap_or_default();
            out.push(format!(
                "thread {tid}: {held} (and the condvar's own mutex)"
            ));
        }
    }
    out
}
