//! How each recorded syscall is replayed, and putting its recorded effects
//! back. Mirrors `recorder/src/sysdata.rs`, which kept them.
//!
//! Most calls are emulated: the kernel is told to skip the call (its number
//! becomes -1 at the entry stop), and at the exit stop the recorded return
//! value goes into `rax` and the recorded bytes back into the program's
//! memory. Nothing is read from or written to files, pipes or sockets.
//! The calls that shape the address space, the process tree, signal
//! dispositions and thread bookkeeping are executed again, because the
//! kernel state they build is needed for the program to run at all; the
//! replay checks that they return what they returned when recorded.

use crate::script::Call;
use lockstep_recorder::tracee::Stopped;
use lockstep_trace::DataKind;

/// What the replayer does with a recorded call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Skip the call, put its recorded result back.
    Emulate,
    /// Let the kernel do it again.
    Execute,
    /// Let the kernel do it again with pids and tids translated from the
    /// recorded ones the program knows to the live ones (kill, tgkill...).
    ExecuteTranslated,
    /// Map the recorded file again at the recorded address (a file-backed
    /// mmap), or anonymous memory there when the file is gone.
    MapFile,
}

const MAP_ANONYMOUS: u64 = 0x20;

pub fn policy(call: &Call) -> Policy {
    match call.name.as_str() {
        // Only the ordered futexes get here: priority-inheritance ones, and
        // all of a serialized recording's.
        "futex" => Policy::Emulate,
        "mmap" if call.args[3] & MAP_ANONYMOUS == 0 && call.args[4] as i32 >= 0 => Policy::MapFile,
        "brk" | "mmap" | "munmap" | "mprotect" | "mremap" | "madvise" | "arch_prctl"
        | "set_tid_address" | "set_robust_list" | "rseq" | "execve" | "execveat" | "clone"
        | "clone3" | "fork" | "vfork" | "exit" | "exit_group" | "rt_sigaction"
        | "rt_sigprocmask" | "rt_sigreturn" | "sigaltstack" | "rt_sigsuspend" | "sched_yield"
        | "prlimit64" | "mlock" | "munlock" | "membarrier" | "pkey_mprotect" => Policy::Execute,
        "kill" | "tgkill" | "tkill" => Policy::ExecuteTranslated,
        _ => Policy::Emulate,
    }
}

/// Pins an address-space call to the address it got when recorded: an
/// anonymous `mmap` gets `MAP_FIXED_NOREPLACE` at the recorded address (it
/// fails, and the replay reports it, rather than clobber a mapping), a
/// `mremap` that moved gets `MREMAP_FIXED` to where it moved. Threads
/// mapping memory at the same time then get the same addresses in every
/// replay, whatever order the kernel serves them in.
pub fn pin_address(call: &Call, r: &mut libc::user_regs_struct) -> bool {
    const MAP_FIXED: u64 = 0x10;
    const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
    const MREMAP_MAYMOVE: u64 = 1;
    const MREMAP_FIXED: u64 = 2;
    let Some(ret) = call.ret.filter(|&v| v >= 0).map(|v| v as u64) else {
        return false;
    };
    match call.name.as_str() {
        "mmap" if call.args[3] & MAP_FIXED == 0 => {
            r.rdi = ret;
            r.r10 = call.args[3] | MAP_FIXED_NOREPLACE;
            true
        }
        "mremap" if call.args[3] & MREMAP_MAYMOVE != 0 && ret != call.args[0] => {
            r.r10 = call.args[3] | MREMAP_FIXED;
            r.r8 = ret;
            true
        }
        _ => false,
    }
}

/// Calls that change the address space, whose order between threads
/// decides where the kernel puts things.
pub fn shapes_address_space(name: &str) -> bool {
    matches!(
        name,
        "mmap" | "munmap" | "mremap" | "mprotect" | "brk" | "madvise" | "pkey_mprotect"
    )
}

/// Calls whose result names a thread or process: the program must see the
/// recorded id, not the live one the kernel returned.
pub fn returns_recorded_id(name: &str) -> bool {
    matches!(
        name,
        "clone" | "clone3" | "fork" | "vfork" | "set_tid_address"
    )
}

/// Tells the kernel to skip the call the thread is entering (entry stop).
pub fn skip_call(t: &Stopped) -> Result<(), lockstep_recorder::error::TraceeError> {
    let mut r = t.regs()?;
    r.orig_rax = u64::MAX;
    t.set_regs(r)
}

/// At the exit stop of an emulated call: the recorded return value in
/// `rax`, the recorded bytes back in memory. Returns the address of a
/// region that could not be written, if any.
pub fn put_back(
    t: &Stopped,
    call: &Call,
) -> Result<Option<u64>, lockstep_recorder::error::TraceeError> {
    for r in call.data.iter().filter(|r| r.kind == DataKind::Out) {
        if !t.write_mem(r.addr, &r.bytes) {
            return Ok(Some(r.addr));
        }
    }
    let ret = call.ret.unwrap_or(-(libc::ENOSYS as i64));
    let mut r = t.regs()?;
    r.rax = ret as u64;
    if is_restart(ret) {
        // The kernel turns a restart code into EINTR, or restarts the
        // call, only for a syscall in progress; this one was skipped
        // (`orig_rax` -1): it is one again, so that the recorded signal
        // raised now finds it as the recording's did.
        r.orig_rax = call.nr as u64;
    }
    t.set_regs(r)?;
    Ok(None)
}

/// The kernel's "restart this call" results (ERESTARTSYS, ERESTARTNOINTR,
/// ERESTARTNOHAND, ERESTART_RESTARTBLOCK): a signal interrupted the call.
pub fn is_restart(rval: i64) -> bool {
    matches!(rval, -512 | -513 | -514 | -516)
}

/// Sets the return value the thread sees (exit stop).
pub fn set_return(t: &Stopped, value: i64) -> Result<(), lockstep_recorder::error::TraceeError> {
    let mut r = t.regs()?;
    r.rax = value as u64;
    t.set_regs(r)
}

/// The bytes the live program is writing to the terminal in this call,
/// read from where the recorded ones came from (for `--verify`).
pub fn live_terminal_bytes(t: &Stopped, call: &Call) -> Vec<u8> {
    let mem = lockstep_recorder::mem::ProcMem {
        pid: lockstep_trace::Pid(t.tid().0),
    };
    let regions: Vec<(u64, usize)> = call
        .data
        .iter()
        .filter(|r| r.kind != DataKind::Out)
        .map(|r| (r.addr, r.bytes.len()))
        .collect();
    lockstep_recorder::sysdata::capture(&mem, &regions, DataKind::Stdout)
        .into_iter()
        .flat_map(|r| r.bytes)
        .collect()
}

/// At the entry of an emulated FUTEX_LOCK_PI(2) on a word that has an
/// owner: what the kernel would do first, setting FUTEX_WAITERS in it, so
/// that the owner's unlock goes to the kernel (FUTEX_UNLOCK_PI) as it did
/// when recorded instead of releasing the lock in user space.
pub fn pi_lock_waits(t: &Stopped, call: &Call) {
    use lockstep_recorder::mem::{Memory, ProcMem};
    const FUTEX_WAITERS: u32 = 0x8000_0000;
    const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
    if !matches!(call.args[1] & 0x7f, 6 | 13) {
        return;
    }
    let mem = ProcMem {
        pid: lockstep_trace::Pid(t.tid().0),
    };
    let mut word = [0u8; 4];
    if mem.read(call.args[0], &mut word) != 4 {
        return;
    }
    let w = u32::from_le_bytes(word);
    if w & FUTEX_TID_MASK != 0 && w & FUTEX_WAITERS == 0 {
        t.write_mem(call.args[0], &(w | FUTEX_WAITERS).to_le_bytes());
    }
}
