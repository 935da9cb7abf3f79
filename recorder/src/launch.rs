//! Starting the program under ptrace.
//!
//! The child stops itself with SIGSTOP before exec; the recorder seizes it
//! (PTRACE_SEIZE, so group-stops are told apart from signals and new
//! children start with a PTRACE_EVENT_STOP), and the tracing starts from the
//! program's execve.

use crate::error::{RecordError, TraceeError};
use lockstep_trace::Pid;
use nix::sys::ptrace::Options;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult};
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The options every tracee gets: all creation events, exec and exit
/// events, syscall stops marked with 0x80, and EXITKILL so that no tracee
/// outlives the recorder.
pub fn trace_options() -> Options {
    Options::PTRACE_O_TRACESYSGOOD
        | Options::PTRACE_O_TRACEFORK
        | Options::PTRACE_O_TRACEVFORK
        | Options::PTRACE_O_TRACECLONE
        | Options::PTRACE_O_TRACEEXEC
        | Options::PTRACE_O_TRACEEXIT
        | Options::PTRACE_O_TRACEVFORKDONE
        | Options::PTRACE_O_EXITKILL
}

/// Finds `program` like a shell does: a name with a slash is a path, any
/// other is looked up in PATH.
pub fn resolve_program(program: &str) -> Result<PathBuf, RecordError> {
    let executable = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return match std::fs::metadata(&p) {
            Err(_) => Err(RecordError::NotFound {
                program: program.into(),
            }),
            Ok(m) if m.is_dir() => Err(RecordError::NotExecutable {
                program: program.into(),
                reason: "is a directory".into(),
            }),
            Ok(_) if !executable(&p) => Err(RecordError::NotExecutable {
                program: program.into(),
                reason: "permission denied".into(),
            }),
            Ok(_) => Ok(p),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
        .ok_or_else(|| RecordError::NotFound {
            program: program.into(),
        })
}

/// The environment a recorded (and replayed) program gets: `env` with
/// glibc's restartable sequences turned off, since the kernel writes the
/// rseq area (the current CPU) behind the program's back, which no replay
/// could reproduce.
pub fn replayable_env(mut env: Vec<(OsString, OsString)>) -> Vec<(OsString, OsString)> {
    const RSEQ_OFF: &str = "glibc.pthread.rseq=0";
    match env.iter_mut().find(|(k, _)| k == "GLIBC_TUNABLES") {
        Some((_, v)) if !v.to_string_lossy().contains("glibc.pthread.rseq") => {
            v.push(":");
            v.push(RSEQ_OFF);
        }
        Some(_) => {}
        None => env.push(("GLIBC_TUNABLES".into(), RSEQ_OFF.into())),
    }
    env
}

/// `env` as the `K=V` strings of the trace's `env` meta key.
pub fn env_strings(env: &[(OsString, OsString)]) -> Vec<String> {
    env.iter()
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
        .collect()
}

/// Forks, lets the child stop itself, seizes it. Returns the child's pid;
/// its first ptrace-stop (PTRACE_EVENT_STOP) is waiting to be collected.
/// With `trap_tsc`, rdtsc/rdtscp fault in the whole tree (see [`crate::tsc`]).
pub fn launch(
    exe: &Path,
    argv: &[String],
    env: &[(OsString, OsString)],
    trap_tsc: bool,
) -> Result<Pid, RecordError> {
    // Everything the child needs is built before fork: after it, the child
    // only makes async-signal-safe calls.
    let path =
        CString::new(exe.as_os_str().as_bytes()).map_err(|_| RecordError::NotExecutable {
            program: exe.display().to_string(),
            reason: "NUL in path".into(),
        })?;
    let args: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| RecordError::NotExecutable {
            program: exe.display().to_string(),
            reason: "NUL in argument".into(),
        })?;
    let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());
    let env: Vec<CString> = env
        .iter()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());

    // SAFETY: the child branch calls only personality, prctl, raise, execve
    // and _exit, which are async-signal-safe (plain system calls), on
    // memory prepared before the fork.
    match unsafe { fork() }.map_err(RecordError::sys("fork"))? {
        ForkResult::Child => {
            // SAFETY: plain libc calls on valid, NUL-terminated data.
            unsafe {
                // The same addresses in every run (stack, heap, mmap
                // bases), so that a replay's memory matches the recording.
                let persona = libc::personality(0xffff_ffff);
                if persona != -1 {
                    libc::personality((persona | libc::ADDR_NO_RANDOMIZE) as libc::c_ulong);
                }
                // rdtsc/rdtscp fault from here on, in this process and
                // every one it execs, forks or clones (the flag is kept
                // across execve and inherited), so the tracer can give
                // them recorded values. The pre-exec code reads no TSC.
                if trap_tsc {
                    libc::prctl(libc::PR_SET_TSC, libc::PR_TSC_SIGSEGV, 0, 0, 0);
                }
                libc::raise(libc::SIGSTOP);
                libc::execve(path.as_ptr(), arg_ptrs.as_ptr(), env_ptrs.as_ptr());
                let code = if *libc::__errno_location() == libc::ENOENT {
                    127
                } else {
                    126
                };
                libc::_exit(code);
            }
        }
        ForkResult::Parent { child } => {
            match waitpid(child, Some(WaitPidFlag::WSTOPPED))
                .map_err(RecordError::sys("waitpid"))?
            {
                WaitStatus::Stopped(_, _) => {}
                other => {
                    return Err(RecordError::Writer(format!(
                        "child did not stop before exec: {other:?}"
                    )));
                }
            }
            let pid = Pid(child.as_raw());
            crate::tracee::seize(lockstep_trace::Tid(pid.0), trace_options()).map_err(
                |e| match e {
                    TraceeError::Died => RecordError::Sys {
                        syscall: "ptrace(PTRACE_SEIZE)",
                        errno: nix::errno::Errno::ESRCH,
                    },
                    TraceeError::Ptrace { errno, .. } => RecordError::Sys {
                        syscall: "ptrace(PTRACE_SEIZE)",
                        errno,
                    },
                },
            )?;
            Ok(pid)
        }
    }
}
