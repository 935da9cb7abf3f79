//! What one syscall does to its process's fd table, as a list of [`Op`]s
//! the model builder applies at the syscall's exit: new fds (with their
//! object, pipe end, access mode and close-on-exec flag), dups, closes,
//! close_range, F_SETFD, uses of an fd (reads and writes, for pipe traffic
//! and leak analysis) and EBADF failures.
//!
//! Raw argument registers are used where their meaning is fixed by the ABI
//! (fd numbers, flag words); the recorder's `result` gives the fds a call
//! wrote back (`pipefd`, `sv`) and the kernel object of each new fd.

use crate::fds::{Access, End};
use lockstep_trace::Syscall;
use serde_json::Value;

const O_CLOEXEC: u64 = 0o2000000;
const SOCK_CLOEXEC: u64 = 0o2000000;
const MFD_CLOEXEC: u64 = 1;
const FAN_CLOEXEC: u64 = 1;
const PERF_FLAG_FD_CLOEXEC: u64 = 8;
const F_DUPFD: u64 = 0;
const F_SETFD: u64 = 2;
const F_DUPFD_CLOEXEC: u64 = 1030;
const CLOSE_RANGE_UNSHARE: u64 = 2;
const CLOSE_RANGE_CLOEXEC: u64 = 4;

/// Direction of a data transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Read,
    Write,
}

/// One change (or use) of an fd table.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    New {
        fd: i32,
        object: Option<String>,
        end: Option<End>,
        access: Access,
        cloexec: bool,
    },
    /// `new` becomes a copy of `old` (closing what `new` was, for dup2/dup3).
    Dup {
        old: i32,
        new: i32,
        cloexec: bool,
        object: Option<String>,
    },
    Close {
        fd: i32,
    },
    CloseRange {
        first: u32,
        last: u32,
        cloexec: bool,
        unshare: bool,
    },
    SetCloexec {
        fd: i32,
        on: bool,
    },
    /// The call used `fd`; `dir`/`bytes` for data transfers (bytes >= 0).
    Use {
        fd: i32,
        dir: Option<Dir>,
        bytes: i64,
    },
    /// The call failed with EBADF on `fd`.
    BadFd {
        fd: i32,
    },
}

fn fd(a: u64) -> i32 {
    a as i32
}

fn object(s: &Syscall) -> Option<String> {
    s.result
        .get("object")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn access_of(flags: u64) -> Access {
    match flags & 3 {
        0 => Access::Read,
        1 => Access::Write,
        2 => Access::ReadWrite,
        _ => Access::Unknown,
    }
}

fn path_arg(s: &Syscall) -> Option<String> {
    s.decoded
        .get("path")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// `dup2(4, 1)`, `pipe2()`, `openat("/etc/passwd")`: how an op is named in reports.
pub fn describe(s: &Syscall) -> String {
    let a = &s.args;
    match s.name.as_str() {
        "dup" | "close" => format!("{}({})", s.name, fd(a[0])),
        "dup2" | "dup3" => format!("{}({}, {})", s.name, fd(a[0]), fd(a[1])),
        "fcntl" => {
            let cmd = s
                .decoded
                .get("cmd")
                .and_then(Value::as_str)
                .map_or_else(|| a[1].to_string(), str::to_string);
            format!("fcntl({}, {cmd})", fd(a[0]))
        }
        "open" | "openat" | "openat2" | "creat" => match path_arg(s) {
            Some(p) => format!("{}({p:?})", s.name),
            None => format!("{}()", s.name),
        },
        _ => format!("{}()", s.name),
    }
}

fn pair(s: &Syscall, key: &str) -> Option<(i32, i32, Option<String>, Option<String>)> {
    let fds = s.result.get(key)?.as_array()?;
    let (a, b) = (fds.first()?.as_i64()? as i32, fds.get(1)?.as_i64()? as i32);
    let objs = s.result.get("objects").and_then(Value::as_array);
    let obj = |i: usize| {
        objs.and_then(|o| o.get(i))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Some((a, b, obj(0), obj(1)))
}

fn new_fd(s: &Syscall, ret: i64, access: Access, cloexec: bool) -> Vec<Op> {
    vec![Op::New {
        fd: ret as i32,
        object: object(s).or_else(|| path_arg(s)),
        end: None,
        access,
        cloexec,
    }]
}

/// The ops of a syscall that returned `ret`.
pub fn ops(s: &Syscall) -> Vec<Op> {
    let Some(ret) = s.ret else { return Vec::new() };
    let a = &s.args;
    if ret < 0 {
        // fcntl(fd, F_GETFD/F_GETFL) is how programs ask whether an fd is open.
        if s.error.as_deref() != Some("EBADF") || (s.name == "fcntl" && matches!(a[1], 1 | 3)) {
            return Vec::new();
        }
        let bad = match s.name.as_str() {
            "dup2" | "dup3" | "dup" | "close" | "fcntl" | "read" | "write" | "readv" | "writev"
            | "pread64" | "pwrite64" | "preadv" | "pwritev" | "fstat" | "lseek" | "ioctl"
            | "fsync" | "fdatasync" | "ftruncate" | "getdents64" | "getdents" | "fchdir"
            | "fchmod" | "fchown" | "flock" | "accept" | "accept4" | "connect" | "bind"
            | "listen" | "sendto" | "recvfrom" | "sendmsg" | "recvmsg" | "shutdown" => fd(a[0]),
            _ => match ["fd", "epfd", "dirfd"]
                .iter()
                .find_map(|k| s.decoded.get(*k))
                .and_then(Value::as_i64)
            {
                Some(f) => f as i32,
                None => return Vec::new(),
            },
        };
        return vec![Op::BadFd { fd: bad }];
    }
    let cloexec = |flags: u64, bit: u64| flags & bit != 0;
    match s.name.as_str() {
        "open" => new_fd(s, ret, access_of(a[1]), cloexec(a[1], O_CLOEXEC)),
        "openat" => new_fd(s, ret, access_of(a[2]), cloexec(a[2], O_CLOEXEC)),
        "openat2" => new_fd(s, ret, Access::Unknown, false),
        "creat" => new_fd(s, ret, Access::Write, false),
        "socket" => new_fd(s, ret, Access::ReadWrite, cloexec(a[1], SOCK_CLOEXEC)),
        "accept" => {
            vec![
                Op::Use {
                    fd: fd(a[0]),
                    dir: None,
                    bytes: 0,
                },
                new_fd(s, ret, Access::ReadWrite, false).remove(0),
            ]
        }
        "accept4" => {
            let n = new_fd(s, ret, Access::ReadWrite, cloexec(a[3], SOCK_CLOEXEC)).remove(0);
            vec![
                Op::Use {
                    fd: fd(a[0]),
                    dir: None,
                    bytes: 0,
                },
                n,
            ]
        }
        "eventfd" | "epoll_create" | "inotify_init" | "signalfd"
            if s.name != "signalfd" || fd(a[0]) == -1 =>
        {
            new_fd(s, ret, Access::ReadWrite, false)
        }
        "eventfd2" | "timerfd_create" => {
            new_fd(s, ret, Access::ReadWrite, cloexec(a[1], O_CLOEXEC))
        }
        "epoll_create1" | "inotify_init1" | "userfaultfd" => {
            new_fd(s, ret, Access::ReadWrite, cloexec(a[0], O_CLOEXEC))
        }
        "signalfd4" if fd(a[0]) == -1 => new_fd(s, ret, Access::Read, cloexec(a[3], O_CLOEXEC)),
        "memfd_create" => new_fd(s, ret, Access::ReadWrite, cloexec(a[1], MFD_CLOEXEC)),
        "fanotify_init" => new_fd(s, ret, Access::ReadWrite, cloexec(a[0], FAN_CLOEXEC)),
        "perf_event_open" => new_fd(s, ret, Access::Read, cloexec(a[4], PERF_FLAG_FD_CLOEXEC)),
        "pidfd_open" => new_fd(s, ret, Access::Read, true),
        "pipe" | "pipe2" => {
            let Some((r, w, ro, wo)) = pair(s, "pipefd") else {
                return Vec::new();
            };
            let ce = s.name == "pipe2" && cloexec(a[1], O_CLOEXEC);
            // Without the recorder's objects, both ends still share one id.
            let fallback = format!("pipe@{}", s.entry.seq.0);
            let (ro, wo) = (
                ro.or_else(|| wo.clone())
                    .unwrap_or_else(|| fallback.clone()),
                wo,
            );
            let wo = wo.unwrap_or_else(|| ro.clone());
            vec![
                Op::New {
                    fd: r,
                    object: Some(ro),
                    end: Some(End::Read),
                    access: Access::Read,
                    cloexec: ce,
                },
                Op::New {
                    fd: w,
                    object: Some(wo),
                    end: Some(End::Write),
                    access: Access::Write,
                    cloexec: ce,
                },
            ]
        }
        "socketpair" => {
            let Some((x, y, xo, yo)) = pair(s, "sv") else {
                return Vec::new();
            };
            let ce = cloexec(a[1], SOCK_CLOEXEC);
            vec![
                Op::New {
                    fd: x,
                    object: xo,
                    end: None,
                    access: Access::ReadWrite,
                    cloexec: ce,
                },
                Op::New {
                    fd: y,
                    object: yo,
                    end: None,
                    access: Access::ReadWrite,
                    cloexec: ce,
                },
            ]
        }
        "dup" => vec![Op::Dup {
            old: fd(a[0]),
            new: ret as i32,
            cloexec: false,
            object: object(s),
        }],
        "dup2" if fd(a[0]) == fd(a[1]) => vec![Op::Use {
            fd: fd(a[0]),
            dir: None,
            bytes: 0,
        }],
        "dup2" => vec![Op::Dup {
            old: fd(a[0]),
            new: ret as i32,
            cloexec: false,
            object: object(s),
        }],
        "dup3" => {
            vec![Op::Dup {
                old: fd(a[0]),
                new: ret as i32,
                cloexec: cloexec(a[2], O_CLOEXEC),
                object: object(s),
            }]
        }
        "fcntl" => match a[1] {
            F_DUPFD | F_DUPFD_CLOEXEC => {
                vec![Op::Dup {
                    old: fd(a[0]),
                    new: ret as i32,
                    cloexec: a[1] == F_DUPFD_CLOEXEC,
                    object: object(s),
                }]
            }
            F_SETFD => vec![Op::SetCloexec {
                fd: fd(a[0]),
                on: a[2] & 1 != 0,
            }],
            _ => vec![Op::Use {
                fd: fd(a[0]),
                dir: None,
                bytes: 0,
            }],
        },
        "close" => vec![Op::Close { fd: fd(a[0]) }],
        "close_range" => vec![Op::CloseRange {
            first: a[0] as u32,
            last: a[1] as u32,
            cloexec: a[2] & CLOSE_RANGE_CLOEXEC != 0,
            unshare: a[2] & CLOSE_RANGE_UNSHARE != 0,
        }],
        "recvmsg" => {
            let mut v = vec![Op::Use {
                fd: fd(a[0]),
                dir: Some(Dir::Read),
                bytes: ret,
            }];
            // Descriptors passed over a unix socket (SCM_RIGHTS) are new fds
            // of the receiver, copies of the sender's open files.
            let fds = s
                .result
                .get("scm_rights")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let objs = s
                .result
                .get("scm_objects")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (i, f) in fds.iter().enumerate() {
                let Some(f) = f.as_i64() else { continue };
                let object = objs.get(i).and_then(Value::as_str).map(str::to_string);
                let cloexec = a[2] & 0x4000_0000 != 0; // MSG_CMSG_CLOEXEC
                                                       // Which end of a pipe was passed is not in its object name.
                v.push(Op::New {
                    fd: f as i32,
                    object,
                    end: None,
                    access: Access::Unknown,
                    cloexec,
                });
            }
            v
        }
        "read" | "readv" | "pread64" | "preadv" | "preadv2" | "recvfrom" => {
            vec![Op::Use {
                fd: fd(a[0]),
                dir: Some(Dir::Read),
                bytes: ret,
            }]
        }
        "write" | "writev" | "pwrite64" | "pwritev" | "pwritev2" | "sendto" | "sendmsg" => {
            vec![Op::Use {
                fd: fd(a[0]),
                dir: Some(Dir::Write),
                bytes: ret,
            }]
        }
        "sendfile" | "splice" | "tee" | "copy_file_range" => {
            let (out, inp) = if s.name == "sendfile" {
                (fd(a[0]), fd(a[1]))
            } else {
                (fd(a[2]), fd(a[0]))
            };
            vec![
                Op::Use {
                    fd: inp,
                    dir: Some(Dir::Read),
                    bytes: ret,
                },
                Op::Use {
                    fd: out,
                    dir: Some(Dir::Write),
                    bytes: ret,
                },
            ]
        }
        _ => ["fd", "epfd", "oldfd", "dirfd"]
            .iter()
            .filter_map(|k| s.decoded.get(*k).and_then(Value::as_i64))
            .filter(|&f| f >= 0)
            .map(|f| Op::Use {
                fd: f as i32,
                dir: None,
                bytes: 0,
            })
            .collect(),
    }
}

/// The fd a blocked call waits on (read/write family), from its decoded arguments.
pub fn blocked_fd(name: &str, decoded: &Value) -> Option<(i32, Dir)> {
    let dir = match name {
        "read" | "readv" | "recvfrom" | "recvmsg" => Dir::Read,
        "write" | "writev" | "sendto" | "sendmsg" => Dir::Write,
        _ => return None,
    };
    Some((decoded.get("fd")?.as_i64()? as i32, dir))
}
