//! How a stepped thread runs: where stepping starts in a freshly exec'd
//! process (the executable's text mappings, from /proc/PID/maps, and the
//! address of `main` from the symbol table + the load bias, or the ELF
//! entry point from /proc/PID/auxv when the executable has no `main`
//! symbol, in which case main itself, called back from libc, is not
//! stepped), the hardware breakpoint a thread runs freely to, the steps of
//! a thread being born, and the segment a thread's accesses gather in.

use super::{Mode, Proc, Stats, Then, Thread, DR7_DR0_EXEC};
use crate::clock::SeqClock;
use crate::error::TraceeError;
use crate::mem::{Memory, ProcMem};
use crate::tracee::{Resume, Stopped};
use lockstep_symbols::{Mapping, Symbolizer};
use lockstep_trace::{MemAccess, MemSegment, Pid, Record, Tid, Via};

const AT_ENTRY: u64 = 9;

/// The executable's text ranges and the address to start stepping at.
pub fn image(pid: Pid) -> Option<(Vec<(u64, u64)>, u64)> {
    let exe = std::fs::read_link(format!("/proc/{}/exe", pid.0)).ok()?;
    let exe = exe.to_string_lossy().into_owned();
    let maps: Vec<Mapping> = crate::breakpoints::arm::exec_mappings(pid)
        .into_iter()
        .filter(|m| m.path == exe)
        .collect();
    if maps.is_empty() {
        tracing::debug!(pid = pid.0, exe, "no text mapping of the executable");
        return None;
    }
    let text = maps.iter().map(|m| (m.start, m.end)).collect();
    let start = main_address(&exe, &maps).or_else(|| entry_point(pid))?;
    Some((text, start))
}

/// `main`'s run-time address, if the executable's symbol table has it.
fn main_address(exe: &str, maps: &[Mapping]) -> Option<u64> {
    let mut sym = Symbolizer::new();
    let (vaddr, _) = sym.function_vaddr(exe, "main")?;
    maps.iter().find_map(|m| {
        let addr = vaddr.wrapping_add(sym.load_bias(m)?);
        (m.start..m.end).contains(&addr).then_some(addr)
    })
}

/// AT_ENTRY from the process's auxiliary vector.
fn entry_point(pid: Pid) -> Option<u64> {
    let auxv = std::fs::read(format!("/proc/{}/auxv", pid.0)).ok()?;
    auxv.chunks_exact(16).find_map(|kv| {
        let k = u64::from_le_bytes(kv[..8].try_into().expect("8 bytes"));
        let v = u64::from_le_bytes(kv[8..].try_into().expect("8 bytes"));
        (k == AT_ENTRY).then_some(v)
    })
}

/// One more step of a thread not yet in the executable's code.
pub(super) fn birth_step(
    t: Stopped,
    th: &mut Thread,
    rip: u64,
    left: u32,
    sig: i32,
    stats: &mut Stats,
) -> Result<(), TraceeError> {
    if left == 0 {
        tracing::debug!(
            tid = t.tid().0,
            "never reached the executable's code; not stepped"
        );
        th.mode = Mode::Free {
            bp: None,
            then: Then::Step,
        };
        return t.resume(Resume::Syscall, sig);
    }
    let mut code = [0u8; 2];
    ProcMem { pid: th.pid }.read(rip, &mut code);
    if code == [0x0f, 0x05] {
        return run_until(t, th, Some(rip + 2), Then::Birth(left), sig);
    }
    th.mode = Mode::Birth { left: left - 1 };
    stats.steps += 1;
    t.resume(Resume::Step, sig)
}

/// Lets `t` run freely until `target` (a hardware breakpoint), then `then`.
pub(super) fn run_until(
    t: Stopped,
    th: &mut Thread,
    target: Option<u64>,
    then: Then,
    sig: i32,
) -> Result<(), TraceeError> {
    let bp = arm(&t, target)?;
    th.mode = Mode::Free { bp, then };
    th.pending = None;
    t.resume(Resume::Syscall, sig)
}

/// Points `t`'s DR0 at `target` and enables it; returns the breakpoint set
/// (`None` without a target, or when the kernel refuses the address).
pub(super) fn arm(t: &Stopped, target: Option<u64>) -> Result<Option<u64>, TraceeError> {
    let Some(addr) = target else {
        return Ok(None);
    };
    match t
        .set_debugreg(0, addr)
        .and_then(|()| t.set_debugreg(7, DR7_DR0_EXEC))
    {
        Ok(()) => Ok(Some(addr)),
        Err(TraceeError::Died) => Err(TraceeError::Died),
        Err(e) => {
            tracing::debug!(addr, "hardware breakpoint refused: {e}");
            Ok(None)
        }
    }
}

/// Where a thread that just left the executable's code comes back: the
/// first of the top three stack words inside the executable's text (the
/// return address; a lazy-binding PLT stub pushed two words above it).
pub(super) fn return_target(pid: Pid, rsp: u64, proc: &Proc) -> Option<u64> {
    let mem = ProcMem { pid };
    (0..3)
        .filter_map(|i| mem.read_u64(rsp + 8 * i))
        .find(|&a| proc.in_text(a))
}

/// The code bytes at `ip` (the longest x86 instruction is 15 bytes).
pub(super) fn read_code(pid: Pid, ip: u64) -> Option<Vec<u8>> {
    let mut code = vec![0u8; 16];
    let n = ProcMem { pid }.read(ip, &mut code);
    (n > 0).then(|| {
        code.truncate(n);
        code
    })
}

/// Adds one access to `th`'s segment unless it already has it (the same
/// address, size and kind by the same instruction: as the agent, so that
/// every code location touching an address is kept).
pub(super) fn add(th: &mut Thread, addr: u64, size: u32, flags: u8, ip: u64) {
    if th.seen.insert((addr, size, flags, ip)) {
        th.seg.push(MemAccess {
            addr,
            size,
            ip,
            flags,
            via: Via::Instruction,
        });
    }
}

/// Closes `th`'s segment: a `Record::Mem` stamped now, if it has accesses.
pub(super) fn close(
    th: &mut Thread,
    tid: Tid,
    clock: &mut SeqClock,
    out: &mut Vec<Record>,
    stats: &mut Stats,
) {
    if th.seg.is_empty() {
        return;
    }
    th.seen.clear();
    let accesses = std::mem::take(&mut th.seg);
    stats.segments += 1;
    stats.accesses += accesses.len() as u64;
    out.push(Record::Mem(Box::new(MemSegment {
        at: clock.stamp(),
        pid: th.pid,
        tid,
        mechanism: "step".into(),
        accesses,
    })));
}

impl Thread {
    pub(super) fn new(pid: Pid, mode: Mode) -> Thread {
        Thread {
            pid,
            mode,
            pending: None,
            regs: None,
            sig_ip: None,
            seg: Vec::new(),
            seen: std::collections::HashSet::new(),
            routine: None,
        }
    }
}

/// The `atomic` sync op (`phase` `released` before the instruction,
/// `acquired` after), exactly as the agent writes it.
pub(super) fn atomic_op(
    at: lockstep_trace::Stamp,
    pid: Pid,
    tid: Tid,
    phase: &str,
    addr: u64,
    size: u32,
    ip: u64,
) -> Record {
    let op = crate::breakpoints::trap::event(
        at,
        pid,
        tid,
        "atomic",
        phase,
        addr,
        size as u64,
        ip,
        0,
        0,
        &[],
    );
    Record::Sync(Box::new(op))
}

/// The stepper's counters as meta rows (`mem_step_*`).
pub(super) fn stats_meta(s: &Stats) -> Vec<Record> {
    [
        ("mem_step_steps", s.steps),
        ("mem_step_hw_traps", s.hw_traps),
        ("mem_step_executed", s.executed),
        ("mem_step_accesses", s.accesses),
        ("mem_step_segments", s.segments),
        ("mem_step_atomics", s.atomics),
    ]
    .into_iter()
    .map(|(k, v)| Record::Meta {
        key: k.into(),
        value: v.to_string(),
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_text_and_an_entry() {
        let pid = Pid(std::process::id() as i32);
        let (text, start) = image(pid).expect("the test binary is mapped");
        assert!(text.iter().any(|&(s, e)| (s..e).contains(&start)));
        let entry = entry_point(pid).unwrap();
        assert!(text.iter().any(|&(s, e)| (s..e).contains(&entry)));
    }
}
