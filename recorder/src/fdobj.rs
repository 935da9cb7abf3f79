//! What a new file descriptor refers to, read from /proc/PID/fd/N right
//! after the syscall that made it returned (a readlink, no ptrace stop):
//! `pipe:[4711]`, `socket:[99]`, `/etc/passwd`, `anon_inode:[eventfd]`.
//! Both ends of a pipe and every copy of a descriptor in every process show
//! the same kernel object, which is what lets the fd analyses follow a pipe
//! end across fork, dup and exec.

use lockstep_trace::Pid;
use serde_json::{json, Map, Value};

/// Syscalls whose (non-negative) return value is a new descriptor.
fn returns_fd(name: &str) -> bool {
    matches!(
        name,
        "open" | "openat" | "openat2" | "creat" | "dup" | "dup2" | "dup3" | "socket" | "accept" | "accept4"
            | "eventfd" | "eventfd2" | "epoll_create" | "epoll_create1" | "memfd_create" | "timerfd_create"
            | "signalfd" | "signalfd4" | "inotify_init" | "inotify_init1" | "fanotify_init" | "pidfd_open"
            | "userfaultfd" | "perf_event_open" | "memfd_secret" | "open_tree" | "fsopen" | "fspick"
    )
}

/// The object behind `fd` of `pid`, if the process still has it.
pub fn object_of(pid: Pid, fd: i64) -> Option<String> {
    std::fs::read_link(format!("/proc/{}/fd/{fd}", pid.0)).ok().map(|p| p.display().to_string())
}

/// Adds `object` (or `objects` for fd pairs) to a syscall's result when it
/// made descriptors.
pub fn annotate(name: &str, args: &[u64; 6], ret: i64, pid: Pid, result: &mut Value) {
    if ret < 0 {
        return;
    }
    let Value::Object(map) = result else { return };
    if returns_fd(name) || (name == "fcntl" && matches!(args[1], 0 | 1030)) {
        if let Some(o) = object_of(pid, ret) {
            map.insert("object".into(), json!(o));
        }
        return;
    }
    let pair_key = match name {
        "pipe" | "pipe2" => "pipefd",
        "socketpair" => "sv",
        _ => return,
    };
    add_pair_objects(map, pair_key, pid);
}

fn add_pair_objects(map: &mut Map<String, Value>, key: &str, pid: Pid) {
    let fds: Vec<i64> = map.get(key).and_then(|v| v.as_array()).map(|a| a.iter().filter_map(|x| x.as_i64()).collect()).unwrap_or_default();
    if fds.len() == 2 {
        let objs: Vec<Value> = fds.iter().map(|&fd| object_of(pid, fd).map(Value::String).unwrap_or(Value::Null)).collect();
        map.insert("objects".into(), Value::Array(objs));
    }
}
