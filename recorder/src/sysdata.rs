//! Which user memory each syscall's kernel side wrote, and the bytes the
//! program wrote to the recording's terminal: kept in the trace
//! ([`lockstep_trace::SyscallData`]) so that a replay can emulate the call
//! (write the same bytes back, return the same value) and print the same
//! output. Mirrors `replayer/src/sysdata.rs`, which puts them back.
//!
//! The table covers what programs built on glibc commonly call (reads,
//! stat, directory listings, pipes, waits, clocks, randomness, terminal
//! ioctls, socket addresses, signal masks...). A call that writes memory
//! and is not in the table is emulated with its return value only; replay
//! `--verify` names it if the program then behaves differently.

use crate::mem::Memory;
use lockstep_trace::{DataKind, DataRegion};

/// The largest region kept in one piece: a bigger one (a program reading
/// its own 100 MB executable, as node does) is kept as consecutive pieces.
const MAX_REGION: usize = 64 << 20;
/// The most kept for one call (a read of more is cut: replay diverges
/// there rather than the trace growing without bound).
const MAX_CALL: usize = 1 << 30;

const TCGETS: u64 = 0x5401;
const TIOCGPGRP: u64 = 0x540F;
const TIOCGWINSZ: u64 = 0x5413;
const FIONREAD: u64 = 0x541B;
const PR_GET_NAME: u64 = 16;
const F_GETLK: u64 = 5;

/// The `(addr, len)` pairs of an iovec array, cut at `total` bytes.
fn iovecs(mem: &dyn Memory, iov: u64, cnt: u64, total: usize) -> Vec<(u64, usize)> {
    let mut out = Vec::new();
    let mut left = total;
    for i in 0..cnt.min(1024) {
        if left == 0 {
            break;
        }
        let (Some(base), Some(len)) = (mem.read_u64(iov + 16 * i), mem.read_u64(iov + 16 * i + 8))
        else {
            break;
        };
        let n = (len as usize).min(left);
        if n > 0 {
            out.push((base, n));
        }
        left -= n;
    }
    out
}

/// A `u32` length the program passed by pointer (socklen_t, optlen).
fn deref_len(mem: &dyn Memory, p: u64, cap: usize) -> usize {
    if p == 0 {
        return 0;
    }
    mem.read_i32(p)
        .map(|n| (n.max(0) as usize).min(cap))
        .unwrap_or(0)
}

/// The regions of user memory the kernel wrote during `name(args) = ret`,
/// read after the call returned (lengths that the kernel updates, like
/// socklen_t, are read back as updated).
/// A priority-inheritance futex operation (LOCK_PI, UNLOCK_PI, TRYLOCK_PI,
/// WAIT_REQUEUE_PI, CMP_REQUEUE_PI, LOCK_PI2): the kernel reads and writes
/// the owner's tid in the futex word.
pub fn is_pi_futex(args: &[u64; 6]) -> bool {
    matches!(args[1] & 0x7f, 6 | 7 | 8 | 11 | 12 | 13)
}

/// How much of a shared writable file mapping the recording keeps.
pub const SHARED_MAP_CAP: usize = 1 << 20;

pub fn out_regions(name: &str, a: &[u64; 6], ret: i64, mem: &dyn Memory) -> Vec<(u64, usize)> {
    if ret < 0 {
        return Vec::new();
    }
    let r = ret as usize;
    let nz = |addr: u64, len: usize| -> Vec<(u64, usize)> {
        if addr == 0 || len == 0 {
            Vec::new()
        } else {
            vec![(addr, len)]
        }
    };
    let v: Vec<(u64, usize)> = match name {
        "getrandom" | "getcwd" => nz(a[0], r),
        "read" | "pread64" | "getdents" | "getdents64" => nz(a[1], r),
        "readv" | "preadv" | "preadv2" => iovecs(mem, a[1], a[2], r),
        "recvfrom" => {
            let mut v = nz(a[1], r);
            v.extend(nz(a[4], deref_len(mem, a[5], 128)));
            v.extend(nz(a[5], 4));
            v
        }
        "recvmsg" => {
            // struct msghdr: name, namelen, iov, iovlen, control, controllen, flags.
            let h = a[1];
            let mut v = nz(h, 56);
            let word = |o: u64| mem.read_u64(h + o).unwrap_or(0);
            v.extend(nz(word(0), (word(8) as u32 as usize).min(128)));
            v.extend(iovecs(mem, word(16), word(24), r));
            v.extend(nz(word(32), (word(40) as usize).min(4096)));
            v
        }
        "stat" | "lstat" | "fstat" => nz(a[1], 144),
        "newfstatat" => nz(a[2], 144),
        "statx" => nz(a[4], 256),
        "statfs" | "fstatfs" => nz(a[1], 120),
        "pipe" | "pipe2" => nz(a[0], 8),
        "socketpair" => nz(a[3], 8),
        "wait4" => {
            let mut v = nz(a[1], 4);
            v.extend(nz(a[3], 144));
            v
        }
        "waitid" => {
            let mut v = nz(a[2], 128);
            v.extend(nz(a[4], 144));
            v
        }
        "clock_gettime" | "clock_getres" => nz(a[1], 16),
        "gettimeofday" => {
            let mut v = nz(a[0], 16);
            v.extend(nz(a[1], 8));
            v
        }
        "time" => nz(a[0], 8),
        "uname" => nz(a[0], 390),
        "sysinfo" => nz(a[0], 112),
        "times" => nz(a[0], 32),
        "getrusage" => nz(a[1], 144),
        "getrlimit" => nz(a[1], 16),
        "prlimit64" => nz(a[3], 16),
        "readlink" => nz(a[1], r),
        "readlinkat" => nz(a[2], r),
        "rt_sigaction" => nz(a[2], 32),
        "rt_sigprocmask" => nz(a[2], (a[3] as usize).min(128)),
        "sigaltstack" => nz(a[1], 24),
        "sched_getaffinity" => nz(a[2], r),
        "poll" | "ppoll" => nz(a[0], (a[1] as usize).min(1 << 16) * 8),
        "select" | "pselect6" => {
            let set = (a[0] as usize).div_ceil(64) * 8;
            let mut v = nz(a[1], set);
            v.extend(nz(a[2], set));
            v.extend(nz(a[3], set));
            v.extend(nz(a[4], 16));
            v
        }
        "epoll_wait" | "epoll_pwait" | "epoll_pwait2" => nz(a[1], r * 12),
        // A shared, writable file mapping (a POSIX semaphore or shm
        // object): what the file held then, which the replay cannot get
        // from the file (the program's own writes to it are emulated, the
        // file is often gone). Up to 1 MiB.
        "mmap" if a[3] & 0x01 != 0 && a[3] & 0x20 == 0 && a[2] & 0x2 != 0 && (a[4] as i32) >= 0 => {
            nz(ret as u64, (a[1] as usize).min(SHARED_MAP_CAP))
        }
        // Priority-inheritance futex operations: the word as the kernel
        // left it (the owner's tid, the waiters bit), which a replay
        // puts back rather than running them (the tids it holds are the
        // recorded ones).
        "futex" if is_pi_futex(a) => nz(a[0], 4),
        "nanosleep" => nz(a[1], 16),
        "clock_nanosleep" => nz(a[3], 16),
        "ioctl" => match a[1] {
            TCGETS => nz(a[2], 36),
            TIOCGWINSZ => nz(a[2], 8),
            FIONREAD | TIOCGPGRP => nz(a[2], 4),
            _ => Vec::new(),
        },
        "getsockname" | "getpeername" | "accept" | "accept4" => {
            let mut v = nz(a[1], deref_len(mem, a[2], 128));
            v.extend(nz(a[2], 4));
            v
        }
        "getsockopt" => {
            let mut v = nz(a[3], deref_len(mem, a[4], 256));
            v.extend(nz(a[4], 4));
            v
        }
        "getresuid" | "getresgid" => {
            let mut v = nz(a[0], 4);
            v.extend(nz(a[1], 4));
            v.extend(nz(a[2], 4));
            v
        }
        "getgroups" if a[0] > 0 => nz(a[1], r * 4),
        "sched_getparam" => nz(a[1], 4),
        "sched_getattr" => nz(a[1], (a[2] as usize).min(128)),
        "sched_rr_get_interval" => nz(a[1], 16),
        "prctl" if a[0] == PR_GET_NAME => nz(a[1], 16),
        "rt_sigtimedwait" => nz(a[1], 128),
        "fcntl" if a[1] == F_GETLK => nz(a[2], 32),
        "getcpu" => {
            let mut v = nz(a[0], 4);
            v.extend(nz(a[1], 4));
            v
        }
        "getitimer" => nz(a[1], 32),
        "setitimer" => nz(a[2], 32),
        "timerfd_gettime" | "timer_gettime" => nz(a[1], 32),
        "timerfd_settime" | "timer_settime" => nz(a[3], 32),
        "sendfile" => nz(a[2], 8),
        "getxattr" | "lgetxattr" | "fgetxattr" => nz(a[2], r),
        "listxattr" | "llistxattr" | "flistxattr" => nz(a[1], r),
        _ => Vec::new(),
    };
    pieces(&v)
}

/// `regions` cut into pieces of at most [`MAX_REGION`], [`MAX_CALL`] in all.
fn pieces(regions: &[(u64, usize)]) -> Vec<(u64, usize)> {
    let mut out = Vec::new();
    let mut left = MAX_CALL;
    for &(addr, len) in regions {
        let mut off = 0;
        while off < len.min(left) {
            let n = (len.min(left) - off).min(MAX_REGION);
            out.push((addr + off as u64, n));
            off += n;
        }
        left -= len.min(left);
    }
    out
}

/// The regions of a write-family call's data (`write`, `pwrite64`,
/// `writev`, `pwritev`, `sendto`, `sendmsg`): the fd and the bytes it
/// accepted, or `None` for any other call.
pub fn written_regions(
    name: &str,
    a: &[u64; 6],
    ret: i64,
    mem: &dyn Memory,
) -> Option<(i32, Vec<(u64, usize)>)> {
    if ret <= 0 {
        return None;
    }
    let r = ret as usize;
    let regions = match name {
        "write" | "pwrite64" | "sendto" => vec![(a[1], r)],
        "writev" | "pwritev" | "pwritev2" => iovecs(mem, a[1], a[2], r),
        "sendmsg" => {
            let iov = mem.read_u64(a[1] + 16)?;
            let cnt = mem.read_u64(a[1] + 24)?;
            iovecs(mem, iov, cnt, r)
        }
        _ => return None,
    };
    Some((a[0] as i32, regions))
}

/// Reads `regions` out of `mem` as data regions of `kind` (a region that
/// cannot be read whole is kept as far as it could be read).
pub fn capture(mem: &dyn Memory, regions: &[(u64, usize)], kind: DataKind) -> Vec<DataRegion> {
    regions
        .iter()
        .filter_map(|&(addr, len)| {
            let mut bytes = vec![0u8; len];
            let n = mem.read(addr, &mut bytes);
            bytes.truncate(n);
            (!bytes.is_empty()).then_some(DataRegion { kind, addr, bytes })
        })
        .collect()
}

/// The recording's terminal: the recorder's own stdout and stderr, told
/// apart by device and inode so that a program writing to them through any
/// fd number (a dup, a shell's redirection) is recognised.
pub struct Terminal {
    stdout: Option<(u64, u64)>,
    stderr: Option<(u64, u64)>,
}

fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

impl Terminal {
    pub fn of_this_process() -> Terminal {
        let id = |p: &str| std::fs::metadata(p).ok().map(|m| identity(&m));
        Terminal {
            stdout: id("/proc/self/fd/1"),
            stderr: id("/proc/self/fd/2"),
        }
    }

    /// Which stream of the terminal `fd` of `pid` is, if any.
    fn stream(&self, pid: lockstep_trace::Pid, fd: i32) -> Option<DataKind> {
        if fd < 0 || (self.stdout.is_none() && self.stderr.is_none()) {
            return None;
        }
        let id = identity(&std::fs::metadata(format!("/proc/{}/fd/{fd}", pid.0)).ok()?);
        match (Some(id) == self.stdout, Some(id) == self.stderr) {
            (true, true) if fd == 2 => Some(DataKind::Stderr),
            (true, _) => Some(DataKind::Stdout),
            (false, true) => Some(DataKind::Stderr),
            (false, false) => None,
        }
    }

    /// The data of `name(args) = ret` in `pid` worth keeping: what the
    /// kernel wrote into the program, and what the program wrote to the
    /// terminal.
    pub fn syscall_data(
        &self,
        pid: lockstep_trace::Pid,
        name: &str,
        args: &[u64; 6],
        ret: i64,
        mem: &dyn Memory,
    ) -> Vec<DataRegion> {
        let mut out = capture(mem, &out_regions(name, args, ret, mem), DataKind::Out);
        if let Some((fd, regions)) = written_regions(name, args, ret, mem) {
            if let Some(kind) = self.stream(pid, fd) {
                out.extend(capture(mem, &regions, kind));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::BufMem;

    #[test]
    fn a_read_keeps_what_the_kernel_returned() {
        let mem = BufMem::new().map(0x1000, b"hello world".to_vec());
        let regs = out_regions("read", &[3, 0x1000, 100, 0, 0, 0], 5, &mem);
        assert_eq!(regs, vec![(0x1000, 5)]);
        let data = capture(&mem, &regs, DataKind::Out);
        assert_eq!(data[0].bytes, b"hello");
    }

    #[test]
    fn a_huge_read_is_kept_in_pieces() {
        let regs = out_regions(
            "read",
            &[3, 0x1000, 200 << 20, 0, 0, 0],
            150 << 20,
            &BufMem::new(),
        );
        assert_eq!(
            regs,
            vec![
                (0x1000, 64 << 20),
                (0x1000 + (64 << 20), 64 << 20),
                (0x1000 + (128 << 20), 22 << 20)
            ]
        );
        assert_eq!(
            pieces(&[(0, 3 << 30)]).iter().map(|r| r.1).sum::<usize>(),
            MAX_CALL
        );
    }

    #[test]
    fn failed_calls_wrote_nothing() {
        let mem = BufMem::new();
        assert!(out_regions("read", &[3, 0x1000, 100, 0, 0, 0], -11, &mem).is_empty());
        assert!(out_regions("stat", &[0x10, 0x2000, 0, 0, 0, 0], -2, &mem).is_empty());
    }

    #[test]
    fn iovecs_are_cut_at_the_byte_count() {
        let mut iov = Vec::new();
        for (base, len) in [(0x5000u64, 4u64), (0x6000, 10)] {
            iov.extend_from_slice(&base.to_le_bytes());
            iov.extend_from_slice(&len.to_le_bytes());
        }
        let mem = BufMem::new().map(0x4000, iov);
        assert_eq!(
            out_regions("readv", &[0, 0x4000, 2, 0, 0, 0], 7, &mem),
            vec![(0x5000, 4), (0x6000, 3)]
        );
        assert_eq!(
            written_regions("writev", &[1, 0x4000, 2, 0, 0, 0], 14, &mem),
            Some((1, vec![(0x5000, 4), (0x6000, 10)]))
        );
    }

    #[test]
    fn getrandom_and_getcwd_fill_their_first_argument() {
        let mem = BufMem::new();
        assert_eq!(
            out_regions("getrandom", &[0x7000, 16, 0, 0, 0, 0], 16, &mem),
            vec![(0x7000, 16)]
        );
        assert_eq!(
            out_regions("getcwd", &[0x7000, 4096, 0, 0, 0, 0], 6, &mem),
            vec![(0x7000, 6)]
        );
    }
}
