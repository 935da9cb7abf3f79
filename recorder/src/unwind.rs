//! Call stacks of threads stopped outside the agent (a thread blocked in a
//! syscall at a hang): interrupt it, read its registers, and find return
//! addresses on its stack. Without DWARF CFI unwinding this scans the stack
//! for words that point into executable code right after a call
//! instruction, the heuristic debuggers fall back to; it finds the frames of
//! code built with or without frame pointers, at the price of an occasional
//! stale frame.

use crate::mem::{Memory, ProcMem};
use lockstep_trace::{Mapping, Pid, Tid};
use nix::sys::ptrace;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid as NixPid;

/// How many bytes of stack are scanned, and how many frames kept.
const SCAN_BYTES: usize = 16 * 1024;
const MAX_FRAMES: usize = 8;

/// Whether the bytes before `ra` end with a call instruction (e8 rel32,
/// ff /2 with the common ModRM forms).
fn follows_call(mem: &dyn Memory, ra: u64) -> bool {
    let mut b = [0u8; 7];
    if ra < 7 || mem.read(ra - 7, &mut b) != 7 {
        return false;
    }
    let call_rel32 = b[2] == 0xe8;
    let call_reg = b[5] == 0xff && (b[6] & 0x38) == 0x10 && (b[6] & 0xc0) == 0xc0;
    let call_mem_disp8 = b[4] == 0xff && (b[5] & 0x38) == 0x10 && (b[5] & 0xc0) == 0x40;
    let call_rip = b[1] == 0xff && b[2] == 0x15;
    let call_mem = b[5] == 0xff && (b[6] & 0x38) == 0x10 && (b[6] & 0xc0) == 0x00;
    call_rel32 || call_reg || call_mem_disp8 || call_rip || call_mem
}

/// Interrupts `tid` (blocked in a syscall), waits for its stop, and returns
/// its call stack, innermost first (`rip`, then return addresses). The
/// thread stays stopped: the caller is about to kill it.
pub fn stack_of_blocked(pid: Pid, tid: Tid, maps: &[Mapping]) -> Vec<u64> {
    let t = NixPid::from_raw(tid.0);
    if ptrace::interrupt(t).is_err() {
        return Vec::new();
    }
    match waitpid(t, Some(WaitPidFlag::__WALL)) {
        Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(_) => return Vec::new(),
        Ok(_) => {}
    }
    let Ok(regs) = ptrace::getregs(t) else {
        return Vec::new();
    };
    scan(pid, regs.rip, regs.rsp, maps)
}

/// The call stack of a stopped thread whose instruction and stack pointers
/// are `rip` and `rsp`, innermost first: `rip`, then the return addresses
/// found on the stack.
pub fn scan(pid: Pid, rip: u64, rsp: u64, maps: &[Mapping]) -> Vec<u64> {
    let mem = ProcMem { pid };
    let in_code = |a: u64| maps.iter().any(|m| a >= m.start && a < m.end);
    let mut frames = vec![rip];
    let mut buf = vec![0u8; SCAN_BYTES];
    let n = mem.read(rsp, &mut buf);
    for word in buf[..n - n % 8].chunks_exact(8) {
        let a = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        if frames.len() >= MAX_FRAMES {
            break;
        }
        if in_code(a) && follows_call(&mem, a) {
            frames.push(a);
        }
    }
    frames
}

/// Syscalls whose call site the fd analyses name ("created where, closed
/// where"): their stacks are taken at entry. Hot data calls (read, write)
/// are left out to keep a stop cheap.
pub fn wants_stack(name: &str) -> bool {
    matches!(
        name,
        "pipe"
            | "pipe2"
            | "dup"
            | "dup2"
            | "dup3"
            | "close"
            | "close_range"
            | "open"
            | "openat"
            | "creat"
            | "socket"
            | "socketpair"
            | "accept"
            | "accept4"
            | "fcntl"
            | "fork"
            | "vfork"
            | "clone"
            | "clone3"
            | "execve"
            | "execveat"
            | "wait4"
            | "waitid"
    )
}
