//! The new program's auxiliary vector, rewritten at its exec stop (before
//! the loader runs) so that glibc does not use the vDSO: its clock_gettime,
//! gettimeofday, time and getcpu then make real syscalls, which the
//! recorder records and a replay emulates. (The vDSO would answer them in
//! user space, invisible to ptrace, and a replay would see other times.)
//! rr patches the vDSO's code for the same reason; hiding it is simpler
//! and leaves the kernel's copy (`/proc/PID/auxv`) intact for the agent,
//! which still reads its own timestamps through it.

use crate::error::TraceeError;
use crate::mem::{Memory, ProcMem};
use crate::tracee::Stopped;
use lockstep_trace::Pid;

const AT_NULL: u64 = 0;
const AT_IGNORE: u64 = 1;
const AT_SYSINFO_EHDR: u64 = 33;

/// Where the auxiliary vector starts, from the stack pointer at exec
/// (argc, argv..., NULL, envp..., NULL, auxv).
fn auxv_start(mem: &dyn Memory, rsp: u64) -> Option<u64> {
    let argc = mem.read_u64(rsp)?;
    let mut p = rsp + 8 + 8 * (argc + 1);
    for _ in 0..100_000 {
        let w = mem.read_u64(p)?;
        p += 8;
        if w == 0 {
            return Some(p);
        }
    }
    None
}

/// Turns the `AT_SYSINFO_EHDR` entry of the thread's fresh auxiliary
/// vector into `AT_IGNORE`. Returns whether there was one.
pub fn hide_vdso(t: &Stopped) -> Result<bool, TraceeError> {
    let rsp = t.regs()?.rsp;
    let mem = ProcMem {
        pid: Pid(t.tid().0),
    };
    let Some(mut p) = auxv_start(&mem, rsp) else {
        return Ok(false);
    };
    for _ in 0..64 {
        match mem.read_u64(p) {
            Some(AT_NULL) | None => return Ok(false),
            Some(AT_SYSINFO_EHDR) => {
                return Ok(t.write_mem(p, &AT_IGNORE.to_le_bytes()));
            }
            Some(_) => p += 16,
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::BufMem;

    #[test]
    fn the_auxv_follows_argv_and_envp() {
        let words: [u64; 9] = [2, 0x10, 0x20, 0, 0x30, 0, AT_SYSINFO_EHDR, 0x7fff_0000, 0];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mem = BufMem::new().map(0x1000, bytes);
        assert_eq!(auxv_start(&mem, 0x1000), Some(0x1000 + 6 * 8));
    }
}
