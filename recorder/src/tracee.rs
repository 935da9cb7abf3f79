//! Every ptrace and waitpid call of the recorder lives here.
//!
//! A tracee is a typestate: [`Stopped`] exists only while the kernel holds the
//! thread in a ptrace-stop, and every ptrace operation is a method on it.
//! Resuming consumes it, so no code can poke a running thread. [`wait_stop`]
//! is the one function that turns a wait status into a [`Stop`].

use crate::error::TraceeError;
use lockstep_trace::{Pid, Tid};
use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid as NixPid;

/// ptrace events, as `status >> 16` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Fork,
    Vfork,
    Clone,
    Exec,
    VforkDone,
    Exit,
    /// PTRACE_EVENT_STOP: group-stop, PTRACE_INTERRUPT, or the first stop of
    /// an auto-attached child.
    Stop,
    Other(i32),
}

/// Why a thread is not running, decoded once from a wait status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Entering or leaving a syscall (PTRACE_O_TRACESYSGOOD).
    Syscall,
    /// A ptrace event; `sig` is the stop signal (meaningful for [`Event::Stop`]).
    Event { event: Event, sig: i32 },
    /// A signal is about to be delivered.
    Signal { sig: i32 },
    /// The thread is gone: exited with a code.
    Exited { code: i32 },
    /// The thread is gone: killed by a signal.
    Killed { sig: i32, core_dumped: bool },
}

impl Stop {
    /// True when the thread no longer exists and has no [`Stopped`] handle.
    pub fn is_death(self) -> bool {
        matches!(self, Stop::Exited { .. } | Stop::Killed { .. })
    }
}

fn nix_pid(tid: Tid) -> NixPid {
    NixPid::from_raw(tid.0)
}

fn event_of(code: i32) -> Event {
    match code {
        libc::PTRACE_EVENT_FORK => Event::Fork,
        libc::PTRACE_EVENT_VFORK => Event::Vfork,
        libc::PTRACE_EVENT_CLONE => Event::Clone,
        libc::PTRACE_EVENT_EXEC => Event::Exec,
        libc::PTRACE_EVENT_VFORK_DONE => Event::VforkDone,
        libc::PTRACE_EVENT_EXIT => Event::Exit,
        libc::PTRACE_EVENT_STOP => Event::Stop,
        other => Event::Other(other),
    }
}

/// Waits for the next stop or death of any tracee. Returns `Ok(None)` when
/// there are no tracees left, `Err(EINTR)` when a signal interrupted the wait.
/// A stop comes with its [`Stopped`] handle; a death comes without.
pub fn wait_stop() -> Result<Option<(Tid, Stop, Option<Stopped>)>, Errno> {
    let status = loop {
        match waitpid(None, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::StillAlive) => continue,
            Ok(s) => break s,
            Err(Errno::ECHILD) => return Ok(None),
            Err(e) => return Err(e),
        }
    };
    let Some((tid, stop)) = decode_status(status) else {
        return Ok(None);
    };
    let handle = if stop.is_death() {
        None
    } else {
        Some(Stopped { tid })
    };
    Ok(Some((tid, stop, handle)))
}

/// Turns a wait status into the thread and its [`Stop`]; `None` for
/// `StillAlive` (not reported without WNOHANG).
fn decode_status(status: WaitStatus) -> Option<(Tid, Stop)> {
    let (pid, stop) = match status {
        WaitStatus::Exited(pid, code) => (pid, Stop::Exited { code }),
        WaitStatus::Signaled(pid, sig, core) => (
            pid,
            Stop::Killed {
                sig: sig as i32,
                core_dumped: core,
            },
        ),
        WaitStatus::PtraceSyscall(pid) => (pid, Stop::Syscall),
        WaitStatus::PtraceEvent(pid, sig, ev) => (
            pid,
            Stop::Event {
                event: event_of(ev),
                sig: sig as i32,
            },
        ),
        WaitStatus::Stopped(pid, sig) => (pid, Stop::Signal { sig: sig as i32 }),
        // Without WCONTINUED / WNOHANG these are not reported.
        WaitStatus::Continued(pid) => (
            pid,
            Stop::Event {
                event: Event::Other(-1),
                sig: 0,
            },
        ),
        WaitStatus::StillAlive => return None,
    };
    Some((Tid(pid.as_raw()), stop))
}

/// A system call of lockstep's in-process agent (see
/// `lockstep_agent_abi::AGENT_CALL_R14`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentCall {
    /// Its own business (memory files, buffers, ids): not the program's.
    Own,
    /// A yield point: the thread entering its `sync_calls`-th sync call,
    /// asked to stop there (`record --serialize`).
    Yield { sync_calls: u64 },
}

/// How to let a stopped tracee go on.
#[derive(Clone, Copy, Debug)]
pub enum Resume {
    /// Run to the next syscall entry or exit (PTRACE_SYSCALL).
    Syscall,
    /// Keep a group-stopped tracee stopped but let it report job control (PTRACE_LISTEN).
    Listen,
    /// Execute one instruction and stop with SIGTRAP (PTRACE_SINGLESTEP;
    /// no syscall stops meanwhile: `--mem=step` never steps a syscall
    /// instruction).
    Step,
}

/// The register state at a syscall stop, from PTRACE_GET_SYSCALL_INFO.
#[derive(Clone, Copy, Debug)]
pub enum SyscallInfo {
    Entry {
        nr: i64,
        args: [u64; 6],
    },
    Exit {
        rval: i64,
        is_error: bool,
    },
    /// Not at a syscall stop the kernel can describe.
    None,
}

/// Kernel layout of `struct ptrace_syscall_info` (linux/ptrace.h).
#[repr(C)]
#[derive(Default)]
struct RawSyscallInfo {
    op: u8,
    pad: [u8; 3],
    arch: u32,
    instruction_pointer: u64,
    stack_pointer: u64,
    // union { entry {nr, args[6]}; exit {rval, is_error}; seccomp {...} }
    data: [u64; 8],
}

const PTRACE_GET_SYSCALL_INFO: libc::c_uint = 0x420e;

/// A thread the kernel holds in a ptrace-stop. Only this type can issue
/// ptrace requests; [`Stopped::resume`] consumes it.
#[derive(Debug)]
pub struct Stopped {
    tid: Tid,
}

impl Stopped {
    pub fn tid(&self) -> Tid {
        self.tid
    }

    /// Sets the ptrace options (fork/clone/exec/exit events, EXITKILL...).
    pub fn set_options(&self, opts: ptrace::Options) -> Result<(), TraceeError> {
        ptrace::setoptions(nix_pid(self.tid), opts)
            .map_err(|e| TraceeError::from_errno("PTRACE_SETOPTIONS", e))
    }

    /// The syscall number and arguments (at entry) or return value (at exit).
    pub fn syscall_info(&self) -> Result<SyscallInfo, TraceeError> {
        let mut raw = RawSyscallInfo::default();
        // SAFETY: PTRACE_GET_SYSCALL_INFO writes at most `size` bytes into
        // `raw`, which is a properly sized and aligned repr(C) struct that
        // lives for the duration of the call.
        let r = unsafe {
            libc::ptrace(
                PTRACE_GET_SYSCALL_INFO,
                self.tid.0,
                std::mem::size_of::<RawSyscallInfo>(),
                &mut raw as *mut RawSyscallInfo,
            )
        };
        if r < 0 {
            return Err(TraceeError::from_errno(
                "PTRACE_GET_SYSCALL_INFO",
                Errno::last(),
            ));
        }
        Ok(match raw.op {
            1 => {
                let mut args = [0u64; 6];
                args.copy_from_slice(&raw.data[1..7]);
                SyscallInfo::Entry {
                    nr: raw.data[0] as i64,
                    args,
                }
            }
            2 => SyscallInfo::Exit {
                rval: raw.data[0] as i64,
                is_error: raw.data[1] & 0xff != 0,
            },
            _ => SyscallInfo::None,
        })
    }

    /// PTRACE_GETEVENTMSG: the new tid at fork/clone, the former tid at exec,
    /// the wait status at exit.
    pub fn event_msg(&self) -> Result<u64, TraceeError> {
        ptrace::getevent(nix_pid(self.tid))
            .map(|v| v as u64)
            .map_err(|e| TraceeError::from_errno("PTRACE_GETEVENTMSG", e))
    }

    /// The siginfo of the signal about to be delivered.
    pub fn siginfo(&self) -> Result<libc::siginfo_t, TraceeError> {
        ptrace::getsiginfo(nix_pid(self.tid))
            .map_err(|e| TraceeError::from_errno("PTRACE_GETSIGINFO", e))
    }

    /// The general-purpose registers (PTRACE_GETREGS).
    pub fn regs(&self) -> Result<libc::user_regs_struct, TraceeError> {
        ptrace::getregs(nix_pid(self.tid)).map_err(|e| TraceeError::from_errno("PTRACE_GETREGS", e))
    }

    /// At a syscall-entry stop: whether the call is the in-process agent's
    /// own (it carries the agent's marks in r14/r15), not the program's,
    /// and whether it is a yield point.
    pub fn agent_call(&self) -> Result<Option<AgentCall>, TraceeError> {
        use lockstep_agent_abi::{AGENT_CALL_R14, AGENT_CALL_R15, YIELD_POINT_R13};
        let r = self.regs()?;
        if r.r14 != AGENT_CALL_R14 || r.r15 != AGENT_CALL_R15 {
            return Ok(None);
        }
        Ok(Some(if r.r13 == YIELD_POINT_R13 {
            AgentCall::Yield { sync_calls: r.r12 }
        } else {
            AgentCall::Own
        }))
    }

    /// Sets the general-purpose registers (PTRACE_SETREGS).
    pub fn set_regs(&self, regs: libc::user_regs_struct) -> Result<(), TraceeError> {
        ptrace::setregs(nix_pid(self.tid), regs)
            .map_err(|e| TraceeError::from_errno("PTRACE_SETREGS", e))
    }

    /// Reads the word at `addr` of the thread's process (PTRACE_PEEKDATA;
    /// works on read-only text).
    pub fn peek(&self, addr: u64) -> Result<u64, TraceeError> {
        ptrace::read(nix_pid(self.tid), addr as ptrace::AddressType)
            .map(|w| w as u64)
            .map_err(|e| TraceeError::from_errno("PTRACE_PEEKDATA", e))
    }

    /// Writes the word at `addr` of the thread's process (PTRACE_POKEDATA;
    /// the kernel breaks copy-on-write of private text mappings).
    pub fn poke(&self, addr: u64, word: u64) -> Result<(), TraceeError> {
        ptrace::write(
            nix_pid(self.tid),
            addr as ptrace::AddressType,
            word as libc::c_long,
        )
        .map_err(|e| TraceeError::from_errno("PTRACE_POKEDATA", e))
    }

    /// Writes debug register `i` (PTRACE_POKEUSER into `u_debugreg`): DR0-3
    /// are breakpoint addresses, DR7 enables them. Debug registers belong
    /// to the thread: a hardware breakpoint stops this thread only and
    /// changes no code byte.
    pub fn set_debugreg(&self, i: usize, value: u64) -> Result<(), TraceeError> {
        assert!(i < 8, "x86-64 has debug registers 0-7");
        let offset = std::mem::offset_of!(libc::user, u_debugreg) + i * 8;
        // SAFETY: PTRACE_POKEUSER takes an offset into `struct user` and a
        // word by value; no pointer of ours is passed.
        let r = unsafe {
            libc::ptrace(
                libc::PTRACE_POKEUSER,
                self.tid.0,
                offset as *mut libc::c_void,
                value as *mut libc::c_void,
            )
        };
        if r < 0 {
            return Err(TraceeError::from_errno(
                "PTRACE_POKEUSER(debugreg)",
                Errno::last(),
            ));
        }
        Ok(())
    }

    /// Executes one instruction (PTRACE_SINGLESTEP) and waits for this
    /// thread alone. Returns the stop that ended the step: normally a
    /// SIGTRAP signal stop with the handle back; anything else (another
    /// signal, an exit event, a death) is for the caller to dispatch.
    pub fn singlestep(self) -> Result<(Stop, Option<Stopped>), TraceeError> {
        let pid = nix_pid(self.tid);
        ptrace::step(pid, None).map_err(|e| TraceeError::from_errno("PTRACE_SINGLESTEP", e))?;
        wait_this(pid)
    }

    /// Runs the thread to its next syscall stop (PTRACE_SYSCALL) and waits
    /// for this thread alone: how a replay injects a syscall of its own.
    /// Anything but a syscall stop is for the caller to dispatch.
    pub fn syscall_step(self) -> Result<(Stop, Option<Stopped>), TraceeError> {
        let pid = nix_pid(self.tid);
        ptrace::syscall(pid, None).map_err(|e| TraceeError::from_errno("PTRACE_SYSCALL", e))?;
        wait_this(pid)
    }

    /// Writes `bytes` at `addr` of the thread's process: process_vm_writev,
    /// then word by word with PTRACE_POKEDATA for what it could not write
    /// (read-only pages). Returns whether all of it was written.
    pub fn write_mem(&self, addr: u64, bytes: &[u8]) -> bool {
        let done = crate::mem::write_remote(Pid(self.tid.0), addr, bytes);
        if done == bytes.len() {
            return true;
        }
        let mut at = addr + done as u64;
        let mut rest = &bytes[done..];
        while !rest.is_empty() {
            let n = rest.len().min(8);
            let Ok(old) = self.peek(at) else { return false };
            let mut w = old.to_le_bytes();
            w[..n].copy_from_slice(&rest[..n]);
            if self.poke(at, u64::from_le_bytes(w)).is_err() {
                return false;
            }
            at += n as u64;
            rest = &rest[n..];
        }
        true
    }

    /// Lets the thread run again, delivering `sig` (0 for none).
    pub fn resume(self, how: Resume, sig: i32) -> Result<(), TraceeError> {
        let signal = if sig == 0 {
            None
        } else {
            Signal::try_from(sig).ok()
        };
        let pid = nix_pid(self.tid);
        match how {
            Resume::Syscall => ptrace::syscall(pid, signal)
                .map_err(|e| TraceeError::from_errno("PTRACE_SYSCALL", e)),
            Resume::Step => ptrace::step(pid, signal)
                .map_err(|e| TraceeError::from_errno("PTRACE_SINGLESTEP", e)),
            Resume::Listen => {
                // SAFETY: PTRACE_LISTEN takes no pointers; the tid is a
                // seized tracee in group-stop.
                let r = unsafe { libc::ptrace(libc::PTRACE_LISTEN, self.tid.0, 0usize, 0usize) };
                if r < 0 {
                    Err(TraceeError::from_errno("PTRACE_LISTEN", Errno::last()))
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Stops a running thread (PTRACE_INTERRUPT): it reports a
/// PTRACE_EVENT_STOP, which [`wait_stop`] sees.
pub fn interrupt(tid: Tid) -> Result<(), TraceeError> {
    ptrace::interrupt(nix_pid(tid)).map_err(|e| TraceeError::from_errno("PTRACE_INTERRUPT", e))
}

/// Waits for the next stop or death of `pid` alone.
fn wait_this(pid: NixPid) -> Result<(Stop, Option<Stopped>), TraceeError> {
    // A thread let go for one step (an injected call, a single-step)
    // reports at once; one that does not within this long (the call
    // blocked) is given up on rather than waited for without end, and so
    // is the wait when lockstep itself is asked to stop (its ticker's
    // signal interrupts the wait).
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);
    let start = std::time::Instant::now();
    loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL)) {
            Ok(status) => {
                let Some((tid, stop)) = decode_status(status) else {
                    continue;
                };
                let handle = if stop.is_death() {
                    None
                } else {
                    Some(Stopped { tid })
                };
                return Ok((stop, handle));
            }
            Err(Errno::EINTR) if start.elapsed() > PATIENCE || crate::signals::is_pending() => {
                return Err(TraceeError::from_errno(
                    "waitpid (one step)",
                    Errno::ETIMEDOUT,
                ));
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => return Err(TraceeError::Died),
            Err(e) => return Err(TraceeError::from_errno("waitpid", e)),
        }
    }
}

/// Seizes `tid` (which must be a stopped child of ours) with `opts`. The
/// kernel re-reports its stop as a PTRACE_EVENT_STOP that [`wait_stop`] sees.
pub fn seize(tid: Tid, opts: ptrace::Options) -> Result<(), TraceeError> {
    ptrace::seize(nix_pid(tid), opts).map_err(|e| TraceeError::from_errno("PTRACE_SEIZE", e))
}
