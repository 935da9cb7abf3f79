//! The two traps of a recorded call: the entry breakpoint (gather the
//! arguments and the stack, write what precedes the real call, point the
//! return address at the entry int3, step over the first instruction) and
//! the return (the same int3 hit with the call's stack pointer + 8: the
//! outcome from rax, then rip = the real return address). Also the
//! construction of the events.

use super::ops::{Detail, Shape, SPECS};
use super::{arm, emulate, Breakpoints, Call, TraceeMem, Trap};
use crate::clock::SeqClock;
use crate::error::TraceeError;
use crate::mem::{Memory, ProcMem};
use crate::tracee::{Resume, Stop, Stopped};
use lockstep_trace::{Pid, Stamp, SyncOp, Tid};

/// Frames kept per event (the agent's STACK_DEPTH).
const STACK_DEPTH: usize = 8;
/// si_code of an int3 trap.
const SI_KERNEL: i32 = 0x80;
/// O_CREAT, for sem_open's optional arguments.
const O_CREAT: u64 = 0o100;

/// One sync event of the ptrace path.
#[allow(clippy::too_many_arguments)]
pub fn event(
    at: Stamp,
    pid: Pid,
    tid: Tid,
    op: &str,
    phase: &str,
    obj: u64,
    arg: u64,
    arg2: u64,
    flags: u32,
    ret: i32,
    stack: &[u64],
) -> SyncOp {
    SyncOp {
        at,
        pid,
        tid,
        op: op.into(),
        phase: phase.into(),
        obj,
        arg,
        arg2,
        flags,
        ret,
        stack: stack.to_vec(),
        mechanism: "ptrace".into(),
    }
}

/// The event of `c` with `phase` and `ret`.
pub fn call_event(c: &Call, at: Stamp, tid: Tid, phase: &str, ret: i32) -> SyncOp {
    event(
        at,
        c.pid,
        tid,
        SPECS[c.spec].name,
        phase,
        c.obj,
        c.arg,
        c.arg2,
        c.flags,
        ret,
        &c.stack,
    )
}

/// The return address and the callers: `[rsp]` at entry, then the frame
/// pointer chain from the caller's rbp (still in rbp at function entry).
fn stack_at_entry(mem: &ProcMem, rsp: u64, mut rbp: u64) -> Vec<u64> {
    let mut stack = Vec::with_capacity(STACK_DEPTH);
    let Some(ret) = mem.read_u64(rsp) else {
        return stack;
    };
    stack.push(ret);
    let mut floor = rsp;
    while stack.len() < STACK_DEPTH && rbp > floor && rbp.is_multiple_of(8) {
        let (Some(next), Some(ra)) = (mem.read_u64(rbp), mem.read_u64(rbp + 8)) else {
            break;
        };
        if ra == 0 {
            break;
        }
        stack.push(ra);
        floor = rbp;
        rbp = next;
    }
    stack
}

fn read_u32(mem: &ProcMem, addr: u64) -> u32 {
    let mut b = [0u8; 4];
    if mem.read(addr, &mut b) == 4 {
        u32::from_le_bytes(b)
    } else {
        0
    }
}

/// `(flags, ceiling)` of the mutex at `m`: glibc's `__kind` bits (offset
/// 16) and, for PRIO_PROTECT, the ceiling in bits 19-31 of `__lock`.
fn mutex_kind(mem: &ProcMem, m: u64) -> (u32, u64) {
    if m == 0 {
        return (0, 0);
    }
    let kind = read_u32(mem, m + 16);
    let ceiling = if kind & 64 != 0 {
        ((read_u32(mem, m) & 0xfff8_0000) >> 19) as u64
    } else {
        0
    };
    ((kind & 3) | (kind & 0x70), ceiling)
}

impl Breakpoints {
    /// A SIGTRAP signal-delivery stop of `t` (in `pid`): handles it if it is
    /// one of our breakpoints.
    pub fn on_trap(
        &mut self,
        t: Stopped,
        pid: Pid,
        clock: &mut SeqClock,
    ) -> Result<Trap, TraceeError> {
        let Some(p) = self.procs.get(&pid) else {
            return Ok(Trap::NotOurs(t));
        };
        if t.siginfo()?.si_code != SI_KERNEL {
            return Ok(Trap::NotOurs(t));
        }
        let regs = t.regs()?;
        let addr = regs.rip.wrapping_sub(1);
        self.stats.traps += 1;
        let returning = self
            .calls
            .get(&t.tid())
            .is_some_and(|c| c.entry == addr && regs.rsp == c.entry_rsp + 8);
        if returning {
            self.on_return(t, regs, clock)
        } else if p.entries.contains_key(&addr) {
            self.on_entry(t, pid, regs, addr, clock)
        } else {
            self.stats.traps -= 1;
            Ok(Trap::NotOurs(t))
        }
    }

    fn on_entry(
        &mut self,
        t: Stopped,
        pid: Pid,
        regs: libc::user_regs_struct,
        addr: u64,
        clock: &mut SeqClock,
    ) -> Result<Trap, TraceeError> {
        let tid = t.tid();
        let spec_i = self.procs[&pid].entries[&addr].spec;
        let spec = SPECS[spec_i];
        // A call still open deeper in the stack makes this one nested
        // (glibc calling itself): not recorded, like the agent's. One whose
        // frame is gone (longjmp, cancellation) is dropped.
        let nested = match self.calls.get(&tid) {
            Some(c) if regs.rsp < c.entry_rsp => true,
            Some(_) => {
                self.drop_call(tid);
                false
            }
            None => false,
        };
        if !nested {
            let mem = ProcMem { pid };
            let args = [regs.rdi, regs.rsi, regs.rdx, regs.rcx];
            let stack = stack_at_entry(&mem, regs.rsp, regs.rbp);
            let mut c = Call {
                pid,
                spec: spec_i,
                entry: addr,
                ret_addr: stack.first().copied().unwrap_or(0),
                entry_rsp: regs.rsp,
                args,
                stack,
                obj: args[0],
                arg: 0,
                arg2: 0,
                flags: 0,
                stamp: None,
                blocked: false,
                last_err: libc::EAGAIN,
            };
            match spec.detail {
                Detail::Mutex | Detail::MutexInit => (c.flags, c.arg2) = mutex_kind(&mem, args[0]),
                Detail::CondWait => c.arg = args[1],
                Detail::RwUnlock => c.flags = (read_u32(&mem, args[0] + 24) as i32 == tid.0) as u32,
                Detail::ObjArg1 => c.arg = args[1] as u32 as u64,
                Detail::ObjArg2 => c.arg = args[2] as u32 as u64,
                Detail::SemInit => (c.arg, c.arg2) = (args[2] as u32 as u64, args[1] as u32 as u64),
                Detail::Named => c.flags = 1,
                Detail::SemOpen => {
                    c.obj = 0;
                    c.flags = 1;
                    c.arg = if args[1] & O_CREAT != 0 {
                        args[3] as u32 as u64
                    } else {
                        0
                    };
                    c.arg2 = args[1] as u32 as u64;
                }
                Detail::ObjRoutine => c.arg2 = args[1],
                Detail::Create => (c.obj, c.arg2) = (0, args[2]),
                Detail::ExitValue => (c.obj, c.arg) = (0, args[0]),
                Detail::SchedParam => {
                    (c.arg, c.arg2) = (read_u32(&mem, args[2]) as u64, args[1] as u32 as u64)
                }
                Detail::AttrSchedParam => c.arg = read_u32(&mem, args[1]) as u64,
                Detail::Obj => {}
            }
            match spec.shape {
                Shape::Blocking | Shape::Waited => {
                    self.out
                        .push(call_event(&c, clock.stamp(), tid, "request", 0))
                }
                Shape::Release | Shape::Create => c.stamp = Some(clock.stamp()),
                Shape::Exit => {
                    self.started.remove(&tid);
                    self.out.push(call_event(&c, clock.stamp(), tid, "done", 0));
                }
                Shape::Attempt | Shape::Done | Shape::TryFirst => {}
            }
            if spec.shape != Shape::Exit && c.ret_addr != 0 {
                // The return comes back to the entry int3 (see the module docs).
                t.poke(regs.rsp, addr)?;
                self.calls.insert(tid, c);
            }
            self.stats.calls += 1;
        }
        self.step_over_entry(t, pid, regs, addr)
    }

    /// Executes the entry's first instruction (emulated, or restored and
    /// single-stepped) and resumes the thread.
    fn step_over_entry(
        &mut self,
        t: Stopped,
        pid: Pid,
        mut regs: libc::user_regs_struct,
        addr: u64,
    ) -> Result<Trap, TraceeError> {
        let entry = self.procs[&pid].entries[&addr].clone();
        regs.rip = addr;
        if let Some((insn, len)) = entry.insn {
            let mem = TraceeMem {
                t: &t,
                mem: ProcMem { pid },
            };
            let mut r = regs;
            if emulate::apply(insn, len, &mut r, &mem).is_some() {
                t.set_regs(r)?;
                t.resume(Resume::Syscall, 0)?;
                return Ok(Trap::Handled);
            }
        }
        self.step_original(t, regs, addr, entry.orig, true)
    }

    /// Runs the original instruction at `addr` (byte `orig` put back for
    /// one single-step) and, with `reinsert`, writes the int3 again.
    fn step_original(
        &mut self,
        t: Stopped,
        regs: libc::user_regs_struct,
        addr: u64,
        orig: u8,
        reinsert: bool,
    ) -> Result<Trap, TraceeError> {
        t.set_regs(regs)?;
        arm::write_byte(&t, addr, orig)?;
        self.stats.steps += 1;
        let tid = t.tid();
        let (stop, handle) = t.singlestep()?;
        match (stop, handle) {
            (Stop::Signal { sig: libc::SIGTRAP }, Some(t)) => {
                if reinsert {
                    arm::insert(&t, addr)?;
                }
                t.resume(Resume::Syscall, 0)?;
                Ok(Trap::Handled)
            }
            (stop, handle) => {
                if let (true, Some(t)) = (reinsert, &handle) {
                    arm::insert(t, addr)?;
                }
                Ok(Trap::Foreign(tid, stop, handle))
            }
        }
    }

    /// The return of `t`'s open call, trapped at the entry int3 its
    /// rewritten return address pointed to: the outcome, then on to the
    /// real return address.
    fn on_return(
        &mut self,
        t: Stopped,
        mut regs: libc::user_regs_struct,
        clock: &mut SeqClock,
    ) -> Result<Trap, TraceeError> {
        let tid = t.tid();
        let c = self.calls.remove(&tid).expect("checked by on_trap");
        regs.rip = c.ret_addr;
        t.set_regs(regs)?;
        self.finish_call(&c, tid, regs.rax, clock);
        t.resume(Resume::Syscall, 0)?;
        Ok(Trap::Handled)
    }

    /// Writes the events that end call `c`, which returned `rax`.
    fn finish_call(&mut self, c: &Call, tid: Tid, rax: u64, clock: &mut SeqClock) {
        let spec = SPECS[c.spec];
        let mut c = c.clone();
        let r = rax as i32;
        let (ok, ret) = spec.conv.judge(r, c.last_err);
        let mem = ProcMem { pid: c.pid };
        match spec.detail {
            Detail::Create if r == 0 => c.obj = mem.read_u64(c.args[0]).unwrap_or(0),
            Detail::MutexInit if r == 0 => {
                (c.flags, c.arg2) = mutex_kind(&mem, c.args[0]);
                if c.args[1] != 0 {
                    let v = read_u32(&mem, c.args[1]);
                    c.arg = (v & 0x0f00_0fff) as u64 | (((v & 0x3000_0000) >> 28) as u64) << 32;
                }
            }
            Detail::SemOpen if rax != 0 => c.obj = rax,
            _ => {}
        }
        let ret = if spec.detail == Detail::SemOpen {
            if rax == 0 {
                c.last_err
            } else {
                0
            }
        } else {
            ret
        };
        let phase = match (spec.shape, ok) {
            (Shape::Done | Shape::Waited | Shape::Create | Shape::Exit, _) => "done",
            (Shape::Release, true) => "released",
            (_, true) => "acquired",
            (_, false) => "failed",
        };
        if spec.shape == Shape::TryFirst && !ok && !c.blocked {
            // The agent's failed try, then the failing blocking call.
            self.out
                .push(call_event(&c, clock.stamp(), tid, "request", 0));
        }
        let at = c.stamp.take().unwrap_or_else(|| clock.stamp());
        self.out.push(call_event(&c, at, tid, phase, ret));
    }
}
