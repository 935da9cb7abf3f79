//! Trapping and emulating the time-stamp counter (`record --trap-tsc`, and
//! every `--serialize` recording).
//!
//! `rdtsc` and `rdtscp` read a counter that differs on every run, without
//! a system call, so a replay could not give the program the recorded
//! value. The launch child sets `prctl(PR_SET_TSC, PR_TSC_SIGSEGV)` before
//! its execve (the flag survives exec and is inherited by fork and clone),
//! after which the CPU faults on both instructions in the whole tree and
//! the kernel reports a SIGSEGV with `si_code == SI_KERNEL`. At that stop
//! the tracer executes the instruction itself, puts its result in the
//! thread's registers, moves `rip` past it and resumes without the signal;
//! the value goes into the trace (`tsc_rows`). The replayer
//! (`replayer/src/tsc.rs`) traps the same way and gives each thread its
//! recorded values instead.
//!
//! Cost: one ptrace stop per read. ld.so reads the counter a few times at
//! every program start; the agent's own timestamps switch to the coarse
//! clock, which does not read it (`LOCKSTEP_TSC`, `agent/src/vdso.rs`).

use crate::clock::SeqClock;
use crate::error::TraceeError;
use crate::tracee::Stopped;
use lockstep_trace::{Pid, TscRead};

/// The `si_code` of the SIGSEGV the kernel sends for a trapped TSC read
/// (a general-protection fault in user mode).
const SI_KERNEL: i32 = 0x80;

/// The value of `LOCKSTEP_TSC` that tells the agent the TSC is trapped.
pub const AGENT_ENV_TRAP: &str = "trap";

/// Which instruction faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insn {
    /// `0F 31`: edx:eax = TSC.
    Rdtsc,
    /// `0F 01 F9`: edx:eax = TSC, ecx = TSC_AUX.
    Rdtscp,
}

impl Insn {
    /// Its encoding's length (no prefixes: compilers emit none).
    pub fn encoded_len(self) -> u64 {
        match self {
            Insn::Rdtsc => 2,
            Insn::Rdtscp => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Insn::Rdtsc => "rdtsc",
            Insn::Rdtscp => "rdtscp",
        }
    }

    /// The instruction that starts the little-endian code word `word`.
    pub fn decode(word: u64) -> Option<Insn> {
        let b = word.to_le_bytes();
        match b {
            [0x0f, 0x31, ..] => Some(Insn::Rdtsc),
            [0x0f, 0x01, 0xf9, ..] => Some(Insn::Rdtscp),
            _ => None,
        }
    }
}

/// At a signal-delivery stop of `sig`: the trapped TSC instruction the
/// thread is at, with its registers, or `None` for any other signal (a
/// real fault, a SIGSEGV sent by a process), which is delivered as usual.
pub fn trapped(
    t: &Stopped,
    sig: i32,
) -> Result<Option<(Insn, libc::user_regs_struct)>, TraceeError> {
    if sig != libc::SIGSEGV || t.siginfo()?.si_code != SI_KERNEL {
        return Ok(None);
    }
    let regs = t.regs()?;
    // A page the thread cannot read (a jump into nowhere) is a real fault.
    let Ok(word) = t.peek(regs.rip) else {
        return Ok(None);
    };
    Ok(Insn::decode(word).map(|i| (i, regs)))
}

/// Completes `insn` for the thread as the CPU would have: edx:eax =
/// `value` (the upper halves of rax and rdx cleared, as 32-bit writes do),
/// ecx = `aux` for rdtscp, `rip` past the instruction.
pub fn complete(
    t: &Stopped,
    mut regs: libc::user_regs_struct,
    insn: Insn,
    value: u64,
    aux: u32,
) -> Result<(), TraceeError> {
    regs.rax = value & 0xffff_ffff;
    regs.rdx = value >> 32;
    if insn == Insn::Rdtscp {
        regs.rcx = aux as u64;
    }
    regs.rip += insn.encoded_len();
    t.set_regs(regs)
}

/// Executes `insn` here, in the tracer (whose TSC is not trapped): the
/// counter and, for rdtscp, TSC_AUX. The tracer and the program share
/// the machine's TSC, so the program gets a value it could have read.
pub fn read_native(insn: Insn) -> (u64, Option<u32>) {
    match insn {
        // SAFETY: rdtsc has no memory operands and is always available on
        // x86-64; the tracer's own TSC is never trapped (only the launch
        // child sets PR_SET_TSC).
        Insn::Rdtsc => (unsafe { core::arch::x86_64::_rdtsc() }, None),
        Insn::Rdtscp => {
            let mut aux = 0u32;
            // SAFETY: `aux` is a valid out-pointer; rdtscp exists on every
            // CPU that can run the programs that trapped on it.
            let v = unsafe { core::arch::x86_64::__rdtscp(&mut aux) };
            (v, Some(aux))
        }
    }
}

/// The recorder's hook: at a SIGSEGV-delivery stop that is a trapped TSC
/// read, executes it for the thread and returns the read to record (the
/// caller resumes the thread without the signal); `None` otherwise.
pub fn emulate(
    t: &Stopped,
    pid: Pid,
    sig: i32,
    clock: &mut SeqClock,
) -> Result<Option<TscRead>, TraceeError> {
    let Some((insn, regs)) = trapped(t, sig)? else {
        return Ok(None);
    };
    let (value, aux) = read_native(insn);
    complete(t, regs, insn, value, aux.unwrap_or(0))?;
    Ok(Some(TscRead {
        at: clock.stamp(),
        pid,
        tid: t.tid(),
        value,
        aux,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_both_instructions_and_nothing_else() {
        // rdtsc one byte further on is not the faulting instruction.
        assert_eq!(
            Insn::decode(u64::from_le_bytes([0x90, 0x0f, 0x31, 0, 0, 0, 0, 0])),
            None
        );
        assert_eq!(
            Insn::decode(u64::from_le_bytes([0x0f, 0x31, 0x90, 0, 0, 0, 0, 0])),
            Some(Insn::Rdtsc)
        );
        assert_eq!(
            Insn::decode(u64::from_le_bytes([0x0f, 0x01, 0xf9, 0xc3, 0, 0, 0, 0])),
            Some(Insn::Rdtscp)
        );
        // 0F 01 D0 is xgetbv, not rdtscp.
        assert_eq!(
            Insn::decode(u64::from_le_bytes([0x0f, 0x01, 0xd0, 0, 0, 0, 0, 0])),
            None
        );
        assert_eq!(Insn::Rdtsc.encoded_len(), 2);
        assert_eq!(Insn::Rdtscp.encoded_len(), 3);
    }
}
