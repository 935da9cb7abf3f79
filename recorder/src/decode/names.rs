//! Names of x86-64 Linux errno values, signals and `si_code` values, as
//! strace prints them (`ENOENT`, `SIGRTMIN+3`, `SEGV_MAPERR`). The numbers
//! are written out from the kernel UAPI headers (a fact table); nothing here
//! calls into libc. Bit-mask decoders live in the sibling module `flags`.

use super::flags::lookup;

/// Looks `value` up in a dense name list whose first entry stands for `first`;
/// empty entries are gaps.
fn dense_name(value: i64, first: i64, names: &[&'static str]) -> Option<&'static str> {
    let index = usize::try_from(value.checked_sub(first)?).ok()?;
    names.get(index).copied().filter(|name| !name.is_empty())
}

// ---------------------------------------------------------------- errno

/// errno names 0..=133 (`asm-generic/errno-base.h`, `asm-generic/errno.h`);
/// 41 and 58 are unused (their old names are aliases of 11 and 35).
#[rustfmt::skip]
const ERRNO_NAMES: [&str; 134] = [
    "", "EPERM", "ENOENT", "ESRCH", "EINTR", "EIO", "ENXIO", "E2BIG", "ENOEXEC", "EBADF",
    "ECHILD", "EAGAIN", "ENOMEM", "EACCES", "EFAULT", "ENOTBLK", "EBUSY", "EEXIST", "EXDEV",
    "ENODEV", "ENOTDIR", "EISDIR", "EINVAL", "ENFILE", "EMFILE", "ENOTTY", "ETXTBSY", "EFBIG",
    "ENOSPC", "ESPIPE", "EROFS", "EMLINK", "EPIPE", "EDOM", "ERANGE", "EDEADLK", "ENAMETOOLONG",
    "ENOLCK", "ENOSYS", "ENOTEMPTY", "ELOOP", "", "ENOMSG", "EIDRM", "ECHRNG", "EL2NSYNC",
    "EL3HLT", "EL3RST", "ELNRNG", "EUNATCH", "ENOCSI", "EL2HLT", "EBADE", "EBADR", "EXFULL",
    "ENOANO", "EBADRQC", "EBADSLT", "", "EBFONT", "ENOSTR", "ENODATA", "ETIME", "ENOSR",
    "ENONET", "ENOPKG", "EREMOTE", "ENOLINK", "EADV", "ESRMNT", "ECOMM", "EPROTO", "EMULTIHOP",
    "EDOTDOT", "EBADMSG", "EOVERFLOW", "ENOTUNIQ", "EBADFD", "EREMCHG", "ELIBACC", "ELIBBAD",
    "ELIBSCN", "ELIBMAX", "ELIBEXEC", "EILSEQ", "ERESTART", "ESTRPIPE", "EUSERS", "ENOTSOCK",
    "EDESTADDRREQ", "EMSGSIZE", "EPROTOTYPE", "ENOPROTOOPT", "EPROTONOSUPPORT",
    "ESOCKTNOSUPPORT", "EOPNOTSUPP", "EPFNOSUPPORT", "EAFNOSUPPORT", "EADDRINUSE",
    "EADDRNOTAVAIL", "ENETDOWN", "ENETUNREACH", "ENETRESET", "ECONNABORTED", "ECONNRESET",
    "ENOBUFS", "EISCONN", "ENOTCONN", "ESHUTDOWN", "ETOOMANYREFS", "ETIMEDOUT", "ECONNREFUSED",
    "EHOSTDOWN", "EHOSTUNREACH", "EALREADY", "EINPROGRESS", "ESTALE", "EUCLEAN", "ENOTNAM",
    "ENAVAIL", "EISNAM", "EREMOTEIO", "EDQUOT", "ENOMEDIUM", "EMEDIUMTYPE", "ECANCELED",
    "ENOKEY", "EKEYEXPIRED", "EKEYREVOKED", "EKEYREJECTED", "EOWNERDEAD", "ENOTRECOVERABLE",
    "ERFKILL", "EHWPOISON",
];

/// Kernel-internal codes 512..=531 (`include/linux/errno.h`) that can leak
/// to a tracer in syscall-exit stops; 520 is unused.
#[rustfmt::skip]
const KERNEL_ERRNO_NAMES: [&str; 20] = [
    "ERESTARTSYS", "ERESTARTNOINTR", "ERESTARTNOHAND", "ENOIOCTLCMD", "ERESTART_RESTARTBLOCK",
    "EPROBE_DEFER", "EOPENSTALE", "ENOPARAM", "", "EBADHANDLE", "ENOTSYNC", "EBADCOOKIE",
    "ENOTSUPP", "ETOOSMALL", "ESERVERFAULT", "EBADTYPE", "EJUKEBOX", "EIOCBQUEUED",
    "ERECALLCONFLICT", "ENOGRACE",
];

/// The symbolic name of the positive errno `e` (`2` is `ENOENT`).
pub fn errno_name(e: i64) -> Option<&'static str> {
    dense_name(e, 0, &ERRNO_NAMES).or_else(|| dense_name(e, 512, &KERNEL_ERRNO_NAMES))
}

// ---------------------------------------------------------------- signals

/// Standard signal names 1..=31 on x86-64.
#[rustfmt::skip]
const SIGNAL_NAMES: [&str; 31] = [
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL",
    "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD",
    "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ",
    "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
];

/// SIGRTMIN as glibc reports it (32 and 33 are reserved by NPTL).
const GLIBC_SIGRTMIN: i32 = 34;
/// The highest signal number on x86-64 Linux.
const SIGRTMAX: i32 = 64;

const SIGTRAP: i32 = 5;
const SIGILL: i32 = 4;
const SIGFPE: i32 = 8;
const SIGBUS: i32 = 7;
const SIGSEGV: i32 = 11;
const SIGCHLD: i32 = 17;
const SIGIO: i32 = 29;
const SIGSYS: i32 = 31;

/// The name of signal `sig`: `SIGKILL`, `SIGRTMIN`, `SIGRTMIN+3`; the NPTL
/// signals 32 and 33 and anything out of range render as `SIG<n>`.
pub fn signal_name(sig: i32) -> String {
    if let Some(name) = dense_name(i64::from(sig), 1, &SIGNAL_NAMES) {
        return name.to_string();
    }
    match sig {
        GLIBC_SIGRTMIN => "SIGRTMIN".to_string(),
        s if s > GLIBC_SIGRTMIN && s <= SIGRTMAX => format!("SIGRTMIN+{}", s - GLIBC_SIGRTMIN),
        s => format!("SIG{s}"),
    }
}

/// Generic `si_code` values (`asm-generic/siginfo.h`).
const SI_CODES: &[(i64, &str)] = &[
    (0, "SI_USER"),
    (0x80, "SI_KERNEL"),
    (-1, "SI_QUEUE"),
    (-2, "SI_TIMER"),
    (-3, "SI_MESGQ"),
    (-4, "SI_ASYNCIO"),
    (-5, "SI_SIGIO"),
    (-6, "SI_TKILL"),
    (-7, "SI_DETHREAD"),
    (-60, "SI_ASYNCNL"),
];

/// Signal-specific `si_code` names, dense from code 1 (empty entries are gaps).
#[rustfmt::skip]
const ILL_CODES: &[&str] = &[
    "ILL_ILLOPC", "ILL_ILLOPN", "ILL_ILLADR", "ILL_ILLTRP", "ILL_PRVOPC", "ILL_PRVREG",
    "ILL_COPROC", "ILL_BADSTK", "ILL_BADIADDR",
];
#[rustfmt::skip]
const FPE_CODES: &[&str] = &[
    "FPE_INTDIV", "FPE_INTOVF", "FPE_FLTDIV", "FPE_FLTOVF", "FPE_FLTUND", "FPE_FLTRES",
    "FPE_FLTINV", "FPE_FLTSUB", "", "", "", "", "", "FPE_FLTUNK", "FPE_CONDTRAP",
];
#[rustfmt::skip]
const SEGV_CODES: &[&str] = &[
    "SEGV_MAPERR", "SEGV_ACCERR", "SEGV_BNDERR", "SEGV_PKUERR", "SEGV_ACCADI", "SEGV_ADIDERR",
    "SEGV_ADIPERR", "SEGV_MTEAERR", "SEGV_MTESERR", "SEGV_CPERR",
];
const BUS_CODES: &[&str] = &[
    "BUS_ADRALN",
    "BUS_ADRERR",
    "BUS_OBJERR",
    "BUS_MCEERR_AR",
    "BUS_MCEERR_AO",
];
const TRAP_CODES: &[&str] = &[
    "TRAP_BRKPT",
    "TRAP_TRACE",
    "TRAP_BRANCH",
    "TRAP_HWBKPT",
    "TRAP_UNK",
    "TRAP_PERF",
];
const CLD_CODES: &[&str] = &[
    "CLD_EXITED",
    "CLD_KILLED",
    "CLD_DUMPED",
    "CLD_TRAPPED",
    "CLD_STOPPED",
    "CLD_CONTINUED",
];
const POLL_CODES: &[&str] = &[
    "POLL_IN", "POLL_OUT", "POLL_MSG", "POLL_ERR", "POLL_PRI", "POLL_HUP",
];
const SYS_CODES: &[&str] = &["SYS_SECCOMP", "SYS_USER_DISPATCH"];

/// Renders `si_code` for a siginfo of signal `signo`: signal-specific names
/// for positive codes below `SI_KERNEL`, generic `SI_*` names otherwise,
/// decimal when nothing matches.
pub fn si_code(signo: i32, code: i32) -> String {
    let specific: &[&str] = match signo {
        SIGILL => ILL_CODES,
        SIGFPE => FPE_CODES,
        SIGSEGV => SEGV_CODES,
        SIGBUS => BUS_CODES,
        SIGTRAP => TRAP_CODES,
        SIGCHLD => CLD_CODES,
        SIGIO => POLL_CODES,
        SIGSYS => SYS_CODES,
        _ => &[],
    };
    let code = i64::from(code);
    let name = if code > 0 && code < 0x80 {
        dense_name(code, 1, specific)
    } else {
        lookup(code, SI_CODES)
    };
    name.map_or_else(|| code.to_string(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(1), Some("EPERM"));
        assert_eq!(errno_name(2), Some("ENOENT"));
        assert_eq!(errno_name(11), Some("EAGAIN"));
        assert_eq!(errno_name(40), Some("ELOOP"));
        assert_eq!(errno_name(42), Some("ENOMSG"));
        assert_eq!(errno_name(59), Some("EBFONT"));
        assert_eq!(errno_name(110), Some("ETIMEDOUT"));
        assert_eq!(errno_name(133), Some("EHWPOISON"));
        assert_eq!(errno_name(512), Some("ERESTARTSYS"));
        assert_eq!(errno_name(513), Some("ERESTARTNOINTR"));
        assert_eq!(errno_name(514), Some("ERESTARTNOHAND"));
        assert_eq!(errno_name(515), Some("ENOIOCTLCMD"));
        assert_eq!(errno_name(516), Some("ERESTART_RESTARTBLOCK"));
        assert_eq!(errno_name(524), Some("ENOTSUPP"));
        assert_eq!(errno_name(531), Some("ENOGRACE"));
        for gap in [0, 41, 58, 134, 511, 520, 532, 4095, -2] {
            assert_eq!(errno_name(gap), None, "errno {gap}");
        }
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(1), "SIGHUP");
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(17), "SIGCHLD");
        assert_eq!(signal_name(31), "SIGSYS");
        assert_eq!(signal_name(32), "SIG32");
        assert_eq!(signal_name(33), "SIG33");
        assert_eq!(signal_name(34), "SIGRTMIN");
        assert_eq!(signal_name(37), "SIGRTMIN+3");
        assert_eq!(signal_name(64), "SIGRTMIN+30");
        assert_eq!(signal_name(0), "SIG0");
        assert_eq!(signal_name(65), "SIG65");
        assert_eq!(signal_name(-1), "SIG-1");
    }

    #[test]
    fn si_codes() {
        assert_eq!(si_code(SIGSEGV, 1), "SEGV_MAPERR");
        assert_eq!(si_code(SIGSEGV, 2), "SEGV_ACCERR");
        assert_eq!(si_code(SIGBUS, 3), "BUS_OBJERR");
        assert_eq!(si_code(SIGFPE, 1), "FPE_INTDIV");
        assert_eq!(si_code(SIGFPE, 14), "FPE_FLTUNK");
        assert_eq!(si_code(SIGFPE, 9), "9");
        assert_eq!(si_code(SIGILL, 2), "ILL_ILLOPN");
        assert_eq!(si_code(SIGTRAP, 1), "TRAP_BRKPT");
        assert_eq!(si_code(SIGTRAP, 2), "TRAP_TRACE");
        assert_eq!(si_code(SIGCHLD, 1), "CLD_EXITED");
        assert_eq!(si_code(SIGCHLD, 6), "CLD_CONTINUED");
        assert_eq!(si_code(SIGSYS, 1), "SYS_SECCOMP");
        assert_eq!(si_code(SIGCHLD, 0), "SI_USER");
        assert_eq!(si_code(SIGSEGV, 0x80), "SI_KERNEL");
        assert_eq!(si_code(10, -1), "SI_QUEUE");
        assert_eq!(si_code(14, -2), "SI_TIMER");
        assert_eq!(si_code(10, -6), "SI_TKILL");
        assert_eq!(si_code(10, 1), "1");
        assert_eq!(si_code(SIGCHLD, 7), "7");
        assert_eq!(si_code(SIGTRAP, 0x85), "133");
    }
}
