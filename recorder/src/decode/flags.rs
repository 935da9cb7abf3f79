//! Decoders that render x86-64 Linux syscall argument constants and bit
//! masks the way strace prints them (`O_RDONLY|O_CLOEXEC`, `FUTEX_WAIT_PRIVATE`,
//! `[{WIFEXITED(s) && WEXITSTATUS(s) == 0}]`, ...).
//!
//! Everything here is pure: the constant values are written out from the
//! kernel UAPI headers for x86-64 (a fact table), so nothing calls into libc.
//!
//! Conventions shared by the bit-mask decoders:
//! * names are emitted in table order, which is ascending bit value except
//!   that a multi-bit name (such as `O_SYNC` = `__O_SYNC|O_DSYNC`) sits before
//!   the single bits it contains so that it wins over them;
//! * bits no name accounts for are appended as one `0x...` part;
//! * a value with no set bits renders as the decoder's zero text (usually `0`).
//!
//! Enumerated values with no name render as decimal. Errno, signal and
//! `si_code` names live in the sibling module `names`.

use std::fmt::Write as _;

use super::names::signal_name;

/// Returns the name paired with `value` in `table`, if any.
pub(super) fn lookup<T: PartialEq + Copy>(
    value: T,
    table: &[(T, &'static str)],
) -> Option<&'static str> {
    table
        .iter()
        .find(|&&(v, _)| v == value)
        .map(|&(_, name)| name)
}

/// Renders an enumerated value: its name from `table`, else the decimal number.
fn render_enum(value: u64, table: &[(u64, &'static str)]) -> String {
    lookup(value, table).map_or_else(|| value.to_string(), str::to_string)
}

/// Pushes the name of every `table` entry whose bits are all still set in
/// `value`, in table order, clearing those bits; returns the bits left over.
fn take_bits(mut value: u64, table: &[(u64, &str)], parts: &mut Vec<String>) -> u64 {
    for &(mask, name) in table {
        if mask != 0 && value & mask == mask {
            parts.push(name.to_string());
            value &= !mask;
        }
    }
    value
}

/// Joins `parts` and a hex `rest` (when nonzero) with `|`, or returns `zero`
/// when there is nothing to show.
fn join_parts(mut parts: Vec<String>, rest: u64, zero: &str) -> String {
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    if parts.is_empty() {
        zero.to_string()
    } else {
        parts.join("|")
    }
}

/// Renders a bit mask: names of the set bits in table order, then any
/// unnamed remainder as `0x...`; `zero` when `value` is 0.
fn render_bits(value: u64, table: &[(u64, &str)], zero: &str) -> String {
    let mut parts = Vec::new();
    let rest = take_bits(value, table, &mut parts);
    join_parts(parts, rest, zero)
}

/// Pushes the name `fields` gives `value & field_mask`, if any, clearing the
/// field; returns the bits left over (an unnamed field value stays in them).
fn take_field(
    value: u64,
    field_mask: u64,
    fields: &[(u64, &'static str)],
    parts: &mut Vec<String>,
) -> u64 {
    match lookup(value & field_mask, fields) {
        Some(name) => {
            parts.push(name.to_string());
            value & !field_mask
        }
        None => value,
    }
}

/// Renders a value made of an enumerated field (`value & field_mask`, named
/// by `fields`) followed by bit flags.
fn render_field_and_bits(
    value: u64,
    field_mask: u64,
    fields: &[(u64, &'static str)],
    bits: &[(u64, &str)],
    zero: &str,
) -> String {
    let mut parts = Vec::new();
    let rest = take_field(value, field_mask, fields, &mut parts);
    let rest = take_bits(rest, bits, &mut parts);
    join_parts(parts, rest, zero)
}

// ---------------------------------------------------------------- files

const O_ACCMODE: u64 = 0o3;
const O_ACCESS_MODES: &[(u64, &str)] = &[(0, "O_RDONLY"), (1, "O_WRONLY"), (2, "O_RDWR")];

/// Status flags of `open(2)` (`asm-generic/fcntl.h`, octal as there).
const OPEN_FLAGS: &[(u64, &str)] = &[
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o4010000, "O_SYNC"), // __O_SYNC|O_DSYNC, ahead of O_DSYNC
    (0o10000, "O_DSYNC"),
    (0o20000, "O_ASYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (0o20200000, "O_TMPFILE"), // __O_TMPFILE|O_DIRECTORY, ahead of O_DIRECTORY
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"),
];

/// Renders `open(2)` flags: access mode first, then the status flags.
pub fn open_flags(f: u64) -> String {
    render_field_and_bits(f, O_ACCMODE, O_ACCESS_MODES, OPEN_FLAGS, "0")
}

/// Flags of `pipe2(2)`; O_NOTIFICATION_PIPE shares O_EXCL's bit.
#[rustfmt::skip]
const PIPE_FLAGS: &[(u64, &str)] = &[
    (0o200, "O_NOTIFICATION_PIPE"), (0o4000, "O_NONBLOCK"), (0o40000, "O_DIRECT"),
    (0o2000000, "O_CLOEXEC"),
];

/// Renders `pipe2(2)` flags.
pub fn pipe_flags(f: u64) -> String {
    render_bits(f, PIPE_FLAGS, "0")
}

#[rustfmt::skip]
const FCNTL_CMDS: &[(u64, &str)] = &[
    (0, "F_DUPFD"), (1, "F_GETFD"), (2, "F_SETFD"), (3, "F_GETFL"), (4, "F_SETFL"), (5, "F_GETLK"),
    (6, "F_SETLK"), (7, "F_SETLKW"), (8, "F_SETOWN"), (9, "F_GETOWN"), (10, "F_SETSIG"),
    (11, "F_GETSIG"), (15, "F_SETOWN_EX"), (16, "F_GETOWN_EX"), (36, "F_OFD_GETLK"),
    (37, "F_OFD_SETLK"), (38, "F_OFD_SETLKW"), (1024, "F_SETLEASE"), (1025, "F_GETLEASE"),
    (1026, "F_NOTIFY"), (1027, "F_DUPFD_QUERY"), (1028, "F_CREATED_QUERY"), (1029, "F_CANCELLK"),
    (1030, "F_DUPFD_CLOEXEC"), (1031, "F_SETPIPE_SZ"), (1032, "F_GETPIPE_SZ"),
    (1033, "F_ADD_SEALS"), (1034, "F_GET_SEALS"), (1035, "F_GET_RW_HINT"), (1036, "F_SET_RW_HINT"),
    (1037, "F_GET_FILE_RW_HINT"), (1038, "F_SET_FILE_RW_HINT"),
];

/// Renders an `fcntl(2)` command.
pub fn fcntl_cmd(cmd: u64) -> String {
    render_enum(cmd, FCNTL_CMDS)
}

/// Renders file-descriptor flags (`F_GETFD`/`F_SETFD`).
pub fn fd_flags(f: u64) -> String {
    render_bits(f, &[(1, "FD_CLOEXEC")], "0")
}

/// Renders a `*at(2)` directory fd: `AT_FDCWD` or the signed number.
pub fn at_dirfd(fd: u64) -> String {
    // Truncation to the low 32 bits is what the kernel does with an int fd.
    match fd as i32 {
        -100 => "AT_FDCWD".to_string(),
        n => n.to_string(),
    }
}

/// `AT_*` flags; 0x200 is AT_REMOVEDIR for unlinkat and AT_EACCESS for
/// faccessat, rendered generically as AT_REMOVEDIR.
#[rustfmt::skip]
const AT_FLAGS: &[(u64, &str)] = &[
    (0x100, "AT_SYMLINK_NOFOLLOW"), (0x200, "AT_REMOVEDIR"), (0x400, "AT_SYMLINK_FOLLOW"),
    (0x800, "AT_NO_AUTOMOUNT"), (0x1000, "AT_EMPTY_PATH"), (0x2000, "AT_STATX_FORCE_SYNC"),
    (0x4000, "AT_STATX_DONT_SYNC"), (0x8000, "AT_RECURSIVE"),
];

/// Renders `AT_*` flags (AT_STATX_SYNC_AS_STAT is 0 and shows as `0`).
pub fn at_flags(f: u64) -> String {
    render_bits(f, AT_FLAGS, "0")
}

/// Renders an `access(2)` mode: `F_OK`, or `R_OK|W_OK|X_OK` in that order.
pub fn access_mode(m: u64) -> String {
    render_bits(m, &[(4, "R_OK"), (2, "W_OK"), (1, "X_OK")], "F_OK")
}

// ---------------------------------------------------------------- processes

/// `clone(2)` flags (`linux/sched.h`) above the exit-signal byte, plus
/// CLONE_NEWTIME (0x80), which only clone3/unshare can pass and which no
/// exit signal can contain since signals stop at 64.
#[rustfmt::skip]
const CLONE_FLAGS: &[(u64, &str)] = &[
    (0x80, "CLONE_NEWTIME"), (0x100, "CLONE_VM"), (0x200, "CLONE_FS"), (0x400, "CLONE_FILES"),
    (0x800, "CLONE_SIGHAND"), (0x1000, "CLONE_PIDFD"), (0x2000, "CLONE_PTRACE"),
    (0x4000, "CLONE_VFORK"), (0x8000, "CLONE_PARENT"), (0x10000, "CLONE_THREAD"),
    (0x20000, "CLONE_NEWNS"), (0x40000, "CLONE_SYSVSEM"), (0x80000, "CLONE_SETTLS"),
    (0x100000, "CLONE_PARENT_SETTID"), (0x200000, "CLONE_CHILD_CLEARTID"),
    (0x400000, "CLONE_DETACHED"), (0x800000, "CLONE_UNTRACED"), (0x1000000, "CLONE_CHILD_SETTID"),
    (0x2000000, "CLONE_NEWCGROUP"), (0x4000000, "CLONE_NEWUTS"), (0x8000000, "CLONE_NEWIPC"),
    (0x10000000, "CLONE_NEWUSER"), (0x20000000, "CLONE_NEWPID"), (0x40000000, "CLONE_NEWNET"),
    (0x80000000, "CLONE_IO"), (0x100000000, "CLONE_CLEAR_SIGHAND"),
    (0x200000000, "CLONE_INTO_CGROUP"),
];

/// Renders `clone(2)` flags in ascending bit order, then the exit signal held
/// in the low bits (`|SIGCHLD`) when nonzero.
pub fn clone_flags(f: u64) -> String {
    let signal_bits = 0x7f;
    let mut parts = Vec::new();
    let rest = take_bits(f & !signal_bits, CLONE_FLAGS, &mut parts);
    let sig = f & signal_bits;
    if sig != 0 {
        // sig < 0x80, so the cast is lossless.
        parts.push(signal_name(sig as i32));
    }
    join_parts(parts, rest, "0")
}

const FUTEX_PRIVATE_FLAG: u64 = 128;
const FUTEX_CLOCK_REALTIME: u64 = 256;

#[rustfmt::skip]
const FUTEX_CMDS: &[(u64, &str)] = &[
    (0, "FUTEX_WAIT"), (1, "FUTEX_WAKE"), (2, "FUTEX_FD"), (3, "FUTEX_REQUEUE"),
    (4, "FUTEX_CMP_REQUEUE"), (5, "FUTEX_WAKE_OP"), (6, "FUTEX_LOCK_PI"), (7, "FUTEX_UNLOCK_PI"),
    (8, "FUTEX_TRYLOCK_PI"), (9, "FUTEX_WAIT_BITSET"), (10, "FUTEX_WAKE_BITSET"),
    (11, "FUTEX_WAIT_REQUEUE_PI"), (12, "FUTEX_CMP_REQUEUE_PI"), (13, "FUTEX_LOCK_PI2"),
];

/// The futex command number of `op`: its low 7 bits, i.e. without
/// FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME or any higher bits.
pub fn futex_cmd(op: u64) -> u64 {
    op & 0x7f
}

/// The arguments a futex command reads, as a bit mask (bit i: argument
/// i). The others are whatever the caller's registers held (glibc's
/// `lll_futex_wake` leaves r8 as it was), so they are not the call's.
pub fn futex_args_read(op: u64) -> u8 {
    match futex_cmd(op) {
        1 | 2 => 0b00_0111,  // WAKE, FD: uaddr, op, val
        0 => 0b00_1111,      // WAIT: + timeout
        6 | 13 => 0b00_1011, // LOCK_PI(2): uaddr, op, timeout
        7 | 8 => 0b00_0011,  // UNLOCK_PI, TRYLOCK_PI
        9 => 0b10_1111,      // WAIT_BITSET: + bitset
        10 => 0b10_0111,     // WAKE_BITSET
        3 | 11 => 0b01_1111, // REQUEUE, WAIT_REQUEUE_PI: + uaddr2
        _ => 0b11_1111,      // CMP_REQUEUE(_PI), WAKE_OP, unknown
    }
}

/// Renders a futex op strace style: `FUTEX_WAIT_PRIVATE`,
/// `FUTEX_WAIT_BITSET_PRIVATE|FUTEX_CLOCK_REALTIME`.
pub fn futex_op(op: u64) -> String {
    let cmd = futex_cmd(op);
    let mut rest = op & !0x7f;
    let head = match lookup(cmd, FUTEX_CMDS) {
        Some(name) if rest & FUTEX_PRIVATE_FLAG != 0 => {
            rest &= !FUTEX_PRIVATE_FLAG;
            format!("{name}_PRIVATE")
        }
        Some(name) => name.to_string(),
        None => cmd.to_string(),
    };
    let mut parts = vec![head];
    let flags = [
        (FUTEX_PRIVATE_FLAG, "FUTEX_PRIVATE_FLAG"),
        (FUTEX_CLOCK_REALTIME, "FUTEX_CLOCK_REALTIME"),
    ];
    let rest = take_bits(rest, &flags, &mut parts);
    join_parts(parts, rest, "0")
}

/// `wait4`/`waitid` options (`linux/wait.h`). Bit 2 is both WUNTRACED and
/// WSTOPPED; it renders as WUNTRACED.
#[rustfmt::skip]
const WAIT_OPTIONS: &[(u64, &str)] = &[
    (1, "WNOHANG"), (2, "WUNTRACED"), (4, "WEXITED"), (8, "WCONTINUED"), (0x1000000, "WNOWAIT"),
    (0x20000000, "__WNOTHREAD"), (0x40000000, "__WALL"), (0x80000000, "__WCLONE"),
];

/// Renders wait options.
pub fn wait_options(o: u64) -> String {
    render_bits(o, WAIT_OPTIONS, "0")
}

/// `PTRACE_EVENT_*` numbers found in bits 16..24 of a ptrace stop status.
#[rustfmt::skip]
const PTRACE_EVENTS: &[(u64, &str)] = &[
    (1, "PTRACE_EVENT_FORK"), (2, "PTRACE_EVENT_VFORK"), (3, "PTRACE_EVENT_CLONE"),
    (4, "PTRACE_EVENT_EXEC"), (5, "PTRACE_EVENT_VFORK_DONE"), (6, "PTRACE_EVENT_EXIT"),
    (7, "PTRACE_EVENT_SECCOMP"), (128, "PTRACE_EVENT_STOP"),
];

/// `text` when `cond` holds, else the empty string.
fn text_if(cond: bool, text: &'static str) -> &'static str {
    if cond {
        text
    } else {
        ""
    }
}

/// Renders a wait status strace style, e.g.
/// `[{WIFEXITED(s) && WEXITSTATUS(s) == 0}]`,
/// `[{WIFSIGNALED(s) && WTERMSIG(s) == SIGKILL && WCOREDUMP(s)}]`,
/// `[{WIFSTOPPED(s) && WSTOPSIG(s) == SIGTRAP} | PTRACE_EVENT_CLONE << 16]`.
/// A stop signal with 0x80 set (PTRACE_O_TRACESYSGOOD) shows ` | 0x80`.
pub fn wait_status(st: i32) -> String {
    // Work on the raw bit pattern.
    let bits = st as u32;
    let low7 = bits & 0x7f;
    let high = (bits >> 8) & 0xff;
    let (text, used) = if bits & 0xff == 0x7f {
        let sig = signal_name((high & 0x7f) as i32);
        let sysgood = text_if(high & 0x80 != 0, " | 0x80");
        (
            format!("WIFSTOPPED(s) && WSTOPSIG(s) == {sig}{sysgood}"),
            0xffff,
        )
    } else if low7 != 0 && low7 != 0x7f {
        let sig = signal_name(low7 as i32);
        let core = text_if(bits & 0x80 != 0, " && WCOREDUMP(s)");
        (
            format!("WIFSIGNALED(s) && WTERMSIG(s) == {sig}{core}"),
            0xff,
        )
    } else if low7 == 0 {
        (format!("WIFEXITED(s) && WEXITSTATUS(s) == {high}"), 0xff00)
    } else if bits == 0xffff {
        ("WIFCONTINUED(s)".to_string(), 0xffff)
    } else {
        return format!("[{bits:#x}]");
    };
    let mut out = format!("[{{{text}}}");
    let mut rest = bits & !used;
    let event = u64::from(rest >> 16);
    if event != 0 {
        let name =
            lookup(event, PTRACE_EVENTS).map_or_else(|| format!("{event:#x}"), str::to_string);
        let _ = write!(out, " | {name} << 16");
        rest &= 0xffff;
    }
    if rest != 0 {
        let _ = write!(out, " | {rest:#x}");
    }
    out.push(']');
    out
}

/// Renders a `waitid(2)` id type.
pub fn idtype(t: u64) -> String {
    let names = [(0, "P_ALL"), (1, "P_PID"), (2, "P_PGID"), (3, "P_PIDFD")];
    render_enum(t, &names)
}

/// Renders a scheduling policy with an optional `|SCHED_RESET_ON_FORK`.
pub fn sched_policy(p: u64) -> String {
    let reset_on_fork = 0x4000_0000;
    #[rustfmt::skip]
    let policies = [
        (0, "SCHED_OTHER"), (1, "SCHED_FIFO"), (2, "SCHED_RR"), (3, "SCHED_BATCH"),
        (5, "SCHED_IDLE"), (6, "SCHED_DEADLINE"),
    ];
    render_field_and_bits(
        p,
        !reset_on_fork,
        &policies,
        &[(reset_on_fork, "SCHED_RESET_ON_FORK")],
        "0",
    )
}

/// Renders the `which` argument of `getpriority`/`setpriority`.
pub fn prio_which(w: u64) -> String {
    let names = [(0, "PRIO_PROCESS"), (1, "PRIO_PGRP"), (2, "PRIO_USER")];
    render_enum(w, &names)
}

/// Renders the `how` argument of `rt_sigprocmask`.
pub fn sigprocmask_how(h: u64) -> String {
    let names = [(0, "SIG_BLOCK"), (1, "SIG_UNBLOCK"), (2, "SIG_SETMASK")];
    render_enum(h, &names)
}

// ---------------------------------------------------------------- memory

#[rustfmt::skip]
const MMAP_PROT: &[(u64, &str)] = &[
    (0x1, "PROT_READ"), (0x2, "PROT_WRITE"), (0x4, "PROT_EXEC"), (0x8, "PROT_SEM"),
    (0x1000000, "PROT_GROWSDOWN"), (0x2000000, "PROT_GROWSUP"),
];

/// Renders `mmap`/`mprotect` protection bits; 0 is `PROT_NONE`.
pub fn mmap_prot(p: u64) -> String {
    render_bits(p, MMAP_PROT, "PROT_NONE")
}

const MAP_TYPE: u64 = 0x0f;
const MAP_TYPES: &[(u64, &str)] = &[
    (1, "MAP_SHARED"),
    (2, "MAP_PRIVATE"),
    (3, "MAP_SHARED_VALIDATE"),
];
const MAP_HUGETLB: u64 = 0x40000;
const MAP_HUGE_SHIFT: u32 = 26;
const MAP_HUGE_MASK: u64 = 0x3f;

#[rustfmt::skip]
const MMAP_FLAGS: &[(u64, &str)] = &[
    (0x10, "MAP_FIXED"), (0x20, "MAP_ANONYMOUS"), (0x40, "MAP_32BIT"), (0x100, "MAP_GROWSDOWN"),
    (0x800, "MAP_DENYWRITE"), (0x1000, "MAP_EXECUTABLE"), (0x2000, "MAP_LOCKED"),
    (0x4000, "MAP_NORESERVE"), (0x8000, "MAP_POPULATE"), (0x10000, "MAP_NONBLOCK"),
    (0x20000, "MAP_STACK"), (MAP_HUGETLB, "MAP_HUGETLB"), (0x80000, "MAP_SYNC"),
    (0x100000, "MAP_FIXED_NOREPLACE"),
];

/// Renders `mmap` flags: mapping type first, then flags; with MAP_HUGETLB
/// a page-size field renders as e.g. `MAP_HUGE_2MB`.
pub fn mmap_flags(f: u64) -> String {
    let mut parts = Vec::new();
    let rest = take_field(f, MAP_TYPE, MAP_TYPES, &mut parts);
    let mut rest = take_bits(rest, MMAP_FLAGS, &mut parts);
    let huge_log2 = (f >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK;
    if f & MAP_HUGETLB != 0 && huge_log2 != 0 {
        let (size, unit) = match huge_log2 {
            n if n >= 30 => (1u64 << (n - 30), "GB"),
            n if n >= 20 => (1u64 << (n - 20), "MB"),
            n if n >= 10 => (1u64 << (n - 10), "KB"),
            n => (1u64 << n, "B"),
        };
        parts.push(format!("MAP_HUGE_{size}{unit}"));
        rest &= !(MAP_HUGE_MASK << MAP_HUGE_SHIFT);
    }
    join_parts(parts, rest, "0")
}

// ---------------------------------------------------------------- sockets

/// Renders a socket address family.
pub fn socket_family(f: u64) -> String {
    #[rustfmt::skip]
    let families = [
        (0, "AF_UNSPEC"), (1, "AF_UNIX"), (2, "AF_INET"), (10, "AF_INET6"), (16, "AF_NETLINK"),
        (17, "AF_PACKET"), (38, "AF_ALG"), (40, "AF_VSOCK"),
    ];
    render_enum(f, &families)
}

const SOCK_TYPE_MASK: u64 = 0xf;
#[rustfmt::skip]
const SOCK_TYPES: &[(u64, &str)] = &[
    (1, "SOCK_STREAM"), (2, "SOCK_DGRAM"), (3, "SOCK_RAW"), (4, "SOCK_RDM"), (5, "SOCK_SEQPACKET"),
    (6, "SOCK_DCCP"), (10, "SOCK_PACKET"),
];

/// Renders a socket type with `|SOCK_NONBLOCK|SOCK_CLOEXEC`.
pub fn socket_type(t: u64) -> String {
    let flags = [(0o4000, "SOCK_NONBLOCK"), (0o2000000, "SOCK_CLOEXEC")];
    render_field_and_bits(t, SOCK_TYPE_MASK, SOCK_TYPES, &flags, "0")
}

#[cfg(test)]
#[rustfmt::skip] // table-driven cases read best one per line
mod tests {
    use super::*;

    /// Asserts `f(input) == want` for every case.
    fn check(f: fn(u64) -> String, cases: &[(u64, &str)]) {
        for &(input, want) in cases {
            assert_eq!(f(input), want, "input {input:#x}");
        }
    }

    #[test]
    fn render_bits_names_in_table_order_then_remainder() {
        let table = [(0x4, "C"), (0x1, "A"), (0x6, "BC")];
        assert_eq!(render_bits(0, &table, "none"), "none");
        assert_eq!(render_bits(0x5, &table, "0"), "C|A");
        assert_eq!(render_bits(0x2, &table, "0"), "0x2");
        assert_eq!(render_bits(0x31, &table, "0"), "A|0x30");
    }

    #[test]
    fn open_pipe_fd() {
        check(open_flags, &[
            (0, "O_RDONLY"),
            (0o2000000 | 0o100 | 1, "O_WRONLY|O_CREAT|O_CLOEXEC"),
            (2 | 0o200 | 0o1000 | 0o2000, "O_RDWR|O_EXCL|O_TRUNC|O_APPEND"),
            (0o4000 | 0o200000, "O_RDONLY|O_NONBLOCK|O_DIRECTORY"),
            (0o10000, "O_RDONLY|O_DSYNC"),
            (0o4010000 | 2, "O_RDWR|O_SYNC"),
            (0o20200000 | 2, "O_RDWR|O_TMPFILE"),
            (0o10000000 | 0o2000000, "O_RDONLY|O_CLOEXEC|O_PATH"),
            (0o20000 | 0o40000 | 0o100000, "O_RDONLY|O_ASYNC|O_DIRECT|O_LARGEFILE"),
            (0o400 | 0o400000 | 0o1000000, "O_RDONLY|O_NOCTTY|O_NOFOLLOW|O_NOATIME"),
            (3, "0x3"),
            (1 | 0o100000000, "O_WRONLY|0x1000000"),
        ]);
        check(pipe_flags, &[
            (0, "0"),
            (0o2000000 | 0o4000, "O_NONBLOCK|O_CLOEXEC"),
            (0o200 | 0o40000, "O_NOTIFICATION_PIPE|O_DIRECT"),
        ]);
        check(fd_flags, &[(0, "0"), (1, "FD_CLOEXEC"), (3, "FD_CLOEXEC|0x2")]);
    }

    #[test]
    fn fcntl_at_access() {
        check(fcntl_cmd, &[(0, "F_DUPFD"), (2, "F_SETFD"), (16, "F_GETOWN_EX"), (38, "F_OFD_SETLKW")]);
        check(fcntl_cmd, &[(1030, "F_DUPFD_CLOEXEC"), (1034, "F_GET_SEALS"), (12, "12")]);
        check(at_dirfd, &[(-100i64 as u64, "AT_FDCWD"), (0xffff_ff9c, "AT_FDCWD"), (3, "3"), (u64::MAX, "-1")]);
        check(at_flags, &[
            (0, "0"),
            (0x200, "AT_REMOVEDIR"),
            (0x1100, "AT_SYMLINK_NOFOLLOW|AT_EMPTY_PATH"),
            (0x4800, "AT_NO_AUTOMOUNT|AT_STATX_DONT_SYNC"),
            (0x10001, "0x10001"),
        ]);
        check(access_mode, &[(0, "F_OK"), (7, "R_OK|W_OK|X_OK"), (5, "R_OK|X_OK"), (9, "X_OK|0x8")]);
    }

    #[test]
    fn clone() {
        check(clone_flags, &[
            (0, "0"),
            (0x3d0f00, "CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|\
                        CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID"),
            (0x1200011, "CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD"),
            (17, "SIGCHLD"),
            (0x4111, "CLONE_VM|CLONE_VFORK|SIGCHLD"),
            (0x1_0000_1000, "CLONE_PIDFD|CLONE_CLEAR_SIGHAND"),
            (0x2_0000_0000, "CLONE_INTO_CGROUP"),
            (0x20080, "CLONE_NEWTIME|CLONE_NEWNS"),
            (0x1_0000_0000_0100, "CLONE_VM|0x1000000000000"),
        ]);
    }

    #[test]
    fn futex() {
        assert_eq!(futex_cmd(128), 0);
        assert_eq!(futex_cmd(9 | 128 | 256), 9);
        assert_eq!(futex_cmd(13), 13);
        check(futex_op, &[
            (0, "FUTEX_WAIT"),
            (1, "FUTEX_WAKE"),
            (128, "FUTEX_WAIT_PRIVATE"),
            (129, "FUTEX_WAKE_PRIVATE"),
            (9 | 128 | 256, "FUTEX_WAIT_BITSET_PRIVATE|FUTEX_CLOCK_REALTIME"),
            (9 | 256, "FUTEX_WAIT_BITSET|FUTEX_CLOCK_REALTIME"),
            (13 | 128, "FUTEX_LOCK_PI2_PRIVATE"),
            (20 | 128, "20|FUTEX_PRIVATE_FLAG"),
            (1 | 0x400, "FUTEX_WAKE|0x400"),
        ]);
    }

    #[test]
    fn wait() {
        check(wait_options, &[
            (0, "0"),
            (0x4000_0001, "WNOHANG|__WALL"),
            (0x100_0004, "WEXITED|WNOWAIT"),
            (0x8000_000a, "WUNTRACED|WCONTINUED|__WCLONE"),
        ]);
        let cases = [
            (0, "[{WIFEXITED(s) && WEXITSTATUS(s) == 0}]"),
            (0x300, "[{WIFEXITED(s) && WEXITSTATUS(s) == 3}]"),
            (9, "[{WIFSIGNALED(s) && WTERMSIG(s) == SIGKILL}]"),
            (0x8b, "[{WIFSIGNALED(s) && WTERMSIG(s) == SIGSEGV && WCOREDUMP(s)}]"),
            (0x137f, "[{WIFSTOPPED(s) && WSTOPSIG(s) == SIGSTOP}]"),
            (0x857f, "[{WIFSTOPPED(s) && WSTOPSIG(s) == SIGTRAP | 0x80}]"),
            (0x3057f, "[{WIFSTOPPED(s) && WSTOPSIG(s) == SIGTRAP} | PTRACE_EVENT_CLONE << 16]"),
            (0x80057f, "[{WIFSTOPPED(s) && WSTOPSIG(s) == SIGTRAP} | PTRACE_EVENT_STOP << 16]"),
            (0xffff, "[{WIFCONTINUED(s)}]"),
            (0x7fff, "[0x7fff]"),
        ];
        for (status, want) in cases {
            assert_eq!(wait_status(status), want, "status {status:#x}");
        }
        check(idtype, &[(0, "P_ALL"), (3, "P_PIDFD"), (4, "4")]);
    }

    #[test]
    fn sched_prio_sigmask() {
        check(sched_policy, &[
            (0, "SCHED_OTHER"),
            (6, "SCHED_DEADLINE"),
            (0x4000_0001, "SCHED_FIFO|SCHED_RESET_ON_FORK"),
            (0x4000_0000, "SCHED_OTHER|SCHED_RESET_ON_FORK"),
            (4, "0x4"),
        ]);
        check(prio_which, &[(0, "PRIO_PROCESS"), (2, "PRIO_USER"), (3, "3")]);
        check(sigprocmask_how, &[(0, "SIG_BLOCK"), (2, "SIG_SETMASK"), (7, "7")]);
    }

    #[test]
    fn mmap() {
        check(mmap_prot, &[(0, "PROT_NONE"), (3, "PROT_READ|PROT_WRITE"), (5, "PROT_READ|PROT_EXEC"), (0x10, "0x10")]);
        check(mmap_flags, &[
            (0, "0"),
            (0x22, "MAP_PRIVATE|MAP_ANONYMOUS"),
            (0x812, "MAP_PRIVATE|MAP_FIXED|MAP_DENYWRITE"),
            (0x20022, "MAP_PRIVATE|MAP_ANONYMOUS|MAP_STACK"),
            (0x80003, "MAP_SHARED_VALIDATE|MAP_SYNC"),
            (0x100021, "MAP_SHARED|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE"),
            (0x22 | MAP_HUGETLB | 21 << 26, "MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|MAP_HUGE_2MB"),
            (0x22 | MAP_HUGETLB | 30 << 26, "MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|MAP_HUGE_1GB"),
            (0x24, "MAP_ANONYMOUS|0x4"),
            (0x1 | MAP_HUGETLB | 21 << 26 | 0x1 << 40, "MAP_SHARED|MAP_HUGETLB|MAP_HUGE_2MB|0x10000000000"),
            (0x2 | 21 << 26, "MAP_PRIVATE|0x54000000"),
        ]);
    }

    #[test]
    fn sockets() {
        check(socket_family, &[(1, "AF_UNIX"), (2, "AF_INET"), (10, "AF_INET6"), (16, "AF_NETLINK")]);
        check(socket_family, &[(17, "AF_PACKET"), (99, "99")]);
        check(socket_type, &[
            (1, "SOCK_STREAM"),
            (2 | 0o2000000, "SOCK_DGRAM|SOCK_CLOEXEC"),
            (5 | 0o4000 | 0o2000000, "SOCK_SEQPACKET|SOCK_NONBLOCK|SOCK_CLOEXEC"),
            (3 | 0x10, "SOCK_RAW|0x10"),
        ]);
    }
}
