//! What a new file descriptor refers to, read from /proc/PID/fd/N right
//! after the syscall that made it returned (a readlink, no ptrace stop):
//! `pipe:[4711]`, `socket:[99]`, `/etc/passwd`, `anon_inode:[eventfd]`.
//! Both ends of a pipe and every copy of a descriptor in every process show
//! the same kernel object, which is what lets the fd analyses follow a pipe
//! end across fork, dup and exec.

use crate::mem::{Memory, ProcMem};
use lockstep_trace::Pid;
use serde_json::{json, Map, Value};

/// Syscalls whose (non-negative) return value is a new descriptor.
fn returns_fd(name: &str) -> bool {
    matches!(
        name,
        "open"
            | "openat"
            | "openat2"
            | "creat"
            | "dup"
            | "dup2"
            | "dup3"
            | "socket"
            | "accept"
            | "accept4"
            | "eventfd"
            | "eventfd2"
            | "epoll_create"
            | "epoll_create1"
            | "memfd_create"
            | "timerfd_create"
            | "signalfd"
            | "signalfd4"
            | "inotify_init"
            | "inotify_init1"
            | "fanotify_init"
            | "pidfd_open"
            | "userfaultfd"
            | "perf_event_open"
            | "memfd_secret"
            | "open_tree"
            | "fsopen"
            | "fspick"
    )
}

/// The object behind `fd` of `pid`, if the process still has it.
pub fn object_of(pid: Pid, fd: i64) -> Option<String> {
    std::fs::read_link(format!("/proc/{}/fd/{fd}", pid.0))
        .ok()
        .map(|p| p.display().to_string())
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
    if name == "mmap" && args[4] as i32 >= 0 && args[3] & 0x20 == 0 {
        // The file behind a file mapping, which a replay maps again.
        if let Some(o) = object_of(pid, args[4] as i32 as i64) {
            map.insert("object".into(), json!(o));
        }
        return;
    }
    if name == "recvmsg" {
        let fds = scm_rights(&ProcMem { pid }, args[1]);
        if !fds.is_empty() {
            map.insert("scm_objects".into(), objects_of(pid, &fds));
            map.insert("scm_rights".into(), json!(fds));
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

/// The descriptors a recvmsg received in SCM_RIGHTS control messages: the
/// kernel updated `msg_controllen` of the `struct msghdr` at `msghdr`.
pub fn scm_rights(mem: &dyn Memory, msghdr: u64) -> Vec<i64> {
    const SOL_SOCKET: i32 = 1;
    const SCM_RIGHTS: i32 = 1;
    let (Some(control), Some(len)) = (mem.read_u64(msghdr + 32), mem.read_u64(msghdr + 40)) else {
        return Vec::new();
    };
    if control == 0 || !(16..=64 * 1024).contains(&len) {
        return Vec::new();
    }
    let mut buf = vec![0u8; len as usize];
    if mem.read(control, &mut buf) != buf.len() {
        return Vec::new();
    }
    let mut fds = Vec::new();
    let mut off = 0usize;
    // struct cmsghdr { size_t len; int level; int type; data... }, 8-aligned.
    while off + 16 <= buf.len() {
        let clen = u64::from_le_bytes(buf[off..off + 8].try_into().expect("8 bytes")) as usize;
        let level = i32::from_le_bytes(buf[off + 8..off + 12].try_into().expect("4 bytes"));
        let kind = i32::from_le_bytes(buf[off + 12..off + 16].try_into().expect("4 bytes"));
        if clen < 16 || off + clen > buf.len() {
            break;
        }
        if level == SOL_SOCKET && kind == SCM_RIGHTS {
            for c in buf[off + 16..off + clen].chunks_exact(4) {
                fds.push(i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64);
            }
        }
        off += (clen + 7) & !7;
    }
    fds
}

fn add_pair_objects(map: &mut Map<String, Value>, key: &str, pid: Pid) {
    let fds: Vec<i64> = map
        .get(key)
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_i64()).collect())
        .unwrap_or_default();
    if fds.len() == 2 {
        map.insert("objects".into(), objects_of(pid, &fds));
    }
}

/// The objects behind `fds` of `pid`, as a JSON array (null for a closed fd).
fn objects_of(pid: Pid, fds: &[i64]) -> Value {
    Value::Array(
        fds.iter()
            .map(|&fd| object_of(pid, fd).map(Value::String).unwrap_or(Value::Null))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::BufMem;

    #[test]
    fn reads_the_fds_of_an_scm_rights_message() {
        let mut hdr = vec![0u8; 56];
        hdr[32..40].copy_from_slice(&0x2000u64.to_le_bytes());
        hdr[40..48].copy_from_slice(&24u64.to_le_bytes());
        let mut cmsg = 24u64.to_le_bytes().to_vec();
        cmsg.extend_from_slice(&1i32.to_le_bytes());
        cmsg.extend_from_slice(&1i32.to_le_bytes());
        cmsg.extend_from_slice(&7i32.to_le_bytes());
        cmsg.extend_from_slice(&9i32.to_le_bytes());
        let mem = BufMem::new().map(0x1000, hdr).map(0x2000, cmsg);
        assert_eq!(scm_rights(&mem, 0x1000), vec![7, 9]);
        assert!(scm_rights(&BufMem::new(), 0x1000).is_empty());
    }
}
