//! Hang detection: which syscalls block a thread indefinitely. A thread in
//! one of these, without a timeout, cannot make progress on its own; when
//! every live thread is in one and nothing happened for the hang timeout,
//! the program is hung.

use crate::decode::flags::futex_cmd;

/// Whether syscall `name` with raw `args` blocks until another thread or
/// process acts (and has no finite timeout).
pub fn blocks_indefinitely(name: &str, args: &[u64; 6]) -> bool {
    match name {
        // WAIT, LOCK_PI, WAIT_BITSET, WAIT_REQUEUE_PI, LOCK_PI2 without a timeout.
        "futex" => matches!(futex_cmd(args[1]), 0 | 6 | 9 | 11 | 13) && args[3] == 0,
        "futex_wait" | "futex_waitv" => args[4] == 0 || name == "futex_wait" && args[3] == 0,
        "read" | "readv" | "pread64" | "preadv" | "preadv2" | "recvfrom" | "recvmsg"
        | "recvmmsg" | "write" | "writev" | "pwrite64" | "pwritev" | "pwritev2" | "sendto"
        | "sendmsg" | "sendmmsg" | "accept" | "accept4" | "connect" | "wait4" | "waitid"
        | "pause" | "rt_sigsuspend" | "msgrcv" | "msgsnd" | "semop" | "flock" | "splice"
        | "tee" | "open" | "openat" => true,
        "poll" => (args[2] as i32) < 0,
        "ppoll" | "select" | "pselect6" => {
            let timeout_arg = if name == "select" || name == "pselect6" {
                args[4]
            } else {
                args[2]
            };
            timeout_arg == 0
        }
        "epoll_wait" | "epoll_pwait" => (args[3] as i32) < 0,
        "epoll_pwait2" => args[3] == 0,
        "rt_sigtimedwait" => args[2] == 0,
        "semtimedop" => args[3] == 0,
        // F_SETLKW, F_OFD_SETLKW.
        "fcntl" => matches!(args[1], 7 | 38),
        _ => false,
    }
}

/// The kernel's wait channel of a thread, e.g. `pipe_read`.
pub fn wchan(pid: i32, tid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/wchan"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_waits_and_sleeps_are_not_hangs() {
        assert!(blocks_indefinitely("futex", &[0x1000, 128, 2, 0, 0, 0]));
        assert!(
            !blocks_indefinitely("futex", &[0x1000, 128, 2, 0x7ff0, 0, 0]),
            "FUTEX_WAIT with a timeout"
        );
        assert!(
            !blocks_indefinitely("futex", &[0x1000, 129, 1, 0, 0, 0]),
            "FUTEX_WAKE"
        );
        assert!(blocks_indefinitely("read", &[0, 0x1000, 10, 0, 0, 0]));
        assert!(blocks_indefinitely("wait4", &[u64::MAX, 0, 0, 0, 0, 0]));
        assert!(!blocks_indefinitely("nanosleep", &[0x1000, 0, 0, 0, 0, 0]));
        assert!(!blocks_indefinitely(
            "clock_nanosleep",
            &[0, 0, 0x1000, 0, 0, 0]
        ));
        assert!(blocks_indefinitely(
            "poll",
            &[0x1000, 1, (-1i64) as u64, 0, 0, 0]
        ));
        assert!(!blocks_indefinitely("poll", &[0x1000, 1, 100, 0, 0, 0]));
    }
}
