//! DWARF CFI unwinding of x86-64 call stacks through gimli's `.eh_frame`
//! parser, without allocation and without locks, so that the agent can run
//! it inside the program it records (in an interposed pthread call, maybe
//! in a signal handler).
//!
//! Where frame pointers are absent (`gcc -O2` omits them), the caller of a
//! function cannot be found from `rbp`; the compiler's call frame
//! information can: for every code address, `.eh_frame` says how to compute
//! the canonical frame address (CFA, the stack pointer before the call) from
//! the registers, and where the return address and the saved registers are
//! relative to it. [`unwind`] applies those rules frame after frame,
//! starting from the registers at a call site:
//!
//! * the object containing a code address comes from [`Objects`] (the agent
//!   asks glibc's lock-free `_dl_find_object`; tests give a synthetic image),
//!   with its `.eh_frame_hdr`, whose binary-search table finds the FDE;
//! * memory (saved registers, return addresses) is read through [`Memory`]
//!   (the agent's reads are bounded by the thread's stack, so a wrong rule
//!   ends the walk instead of faulting);
//! * only `rsp`, `rbp` and the return address are tracked: a CFA computed
//!   from another register, or a DWARF expression, ends the walk.
//!
//! The unwind context lives on the caller's stack (about 3 KiB).

#![cfg_attr(not(test), no_std)]

use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, EndianSlice, LittleEndian, Pointer, Register,
    RegisterRule, UnwindContext, UnwindContextStorage, UnwindSection, UnwindTableRow,
};

/// DWARF register numbers of x86-64.
const RBP: Register = Register(6);
const RSP: Register = Register(7);
const RA: Register = Register(16);

/// Reads the memory of the unwound thread.
pub trait Memory {
    /// The 8 bytes at `addr`, little-endian; `None` when they may not be read.
    fn read_u64(&self, addr: u64) -> Option<u64>;
}

/// A loaded object's image: `bytes` are its memory from `start` on (at
/// least up to the end of its `.eh_frame`), `eh_frame_hdr` the address of
/// its `.eh_frame_hdr` (the `PT_GNU_EH_FRAME` segment).
#[derive(Clone, Copy, Debug)]
pub struct Image<'a> {
    pub start: u64,
    pub bytes: &'a [u8],
    pub eh_frame_hdr: u64,
}

impl<'a> Image<'a> {
    /// The bytes from `addr` to the end of the image.
    fn from(&self, addr: u64) -> Option<&'a [u8]> {
        let off = usize::try_from(addr.checked_sub(self.start)?).ok()?;
        self.bytes.get(off..)
    }
}

/// Finds the object that contains a code address.
pub trait Objects {
    /// The image of the object containing `pc`.
    fn find(&self, pc: u64) -> Option<Image<'_>>;
    /// `pc` as the object's unwind tables know it (the agent's relocated
    /// copies of instrumented code map back to the original); also what
    /// [`unwind`] reports.
    fn original(&self, pc: u64) -> u64 {
        pc
    }
}

/// The registers at a call site, just after the call returned: `pc` is the
/// return address, `rsp` the stack pointer after the return, `rbp` the
/// frame pointer register (whatever it holds in code without frame
/// pointers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Regs {
    pub pc: u64,
    pub rsp: u64,
    pub rbp: u64,
}

/// Fixed-size storage for gimli's unwind context: rules for up to 24
/// registers (x86-64 code saves at most the 6 callee-saved ones and the
/// return address), 4 remembered states.
struct OnStack;

impl UnwindContextStorage<usize> for OnStack {
    type Rules = [(Register, RegisterRule<usize>); 24];
    type Stack = [UnwindTableRow<usize, Self>; 4];
}

type Slice<'a> = EndianSlice<'a, LittleEndian>;

/// Fills `out` with the return addresses of the stack whose innermost call
/// site `regs` describes: `out[0]` is `regs.pc`, then each caller's, as
/// long as the CFI of every frame is found and understood. Returns how
/// many were written; the rest of `out` is left alone.
pub fn unwind(objs: &impl Objects, mem: &impl Memory, regs: Regs, out: &mut [u64]) -> usize {
    let mut ctx = UnwindContext::<usize, OnStack>::new_in();
    let mut regs = regs;
    let mut n = 0;
    while n < out.len() && regs.pc != 0 {
        let pc = objs.original(regs.pc);
        out[n] = pc;
        n += 1;
        if n == out.len() {
            break;
        }
        match caller(objs, mem, &mut ctx, pc, regs) {
            Some(next) => regs = next,
            None => break,
        }
    }
    n
}

/// The registers of the caller of the frame at return address `pc`.
fn caller(
    objs: &impl Objects,
    mem: &impl Memory,
    ctx: &mut UnwindContext<usize, OnStack>,
    pc: u64,
    regs: Regs,
) -> Option<Regs> {
    let image = objs.find(pc)?;
    let hdr_bytes = image.from(image.eh_frame_hdr)?;
    let mut bases = BaseAddresses::default().set_eh_frame_hdr(image.eh_frame_hdr);
    let hdr = EhFrameHdr::new(hdr_bytes, LittleEndian)
        .parse(&bases, 8)
        .ok()?;
    let Pointer::Direct(eh_frame_addr) = hdr.eh_frame_ptr() else {
        return None;
    };
    bases = bases.set_eh_frame(eh_frame_addr);
    let eh_frame: EhFrame<Slice<'_>> = EhFrame::new(image.from(eh_frame_addr)?, LittleEndian);
    // A return address follows the call: the call itself is at pc - 1
    // (which matters when the call is a function's last instruction).
    let at = pc.checked_sub(1)?;
    let fde = hdr
        .table()?
        .fde_for_address(&eh_frame, &bases, at, EhFrame::cie_from_offset)
        .ok()?;
    let row = fde
        .unwind_info_for_address(&eh_frame, &bases, ctx, at)
        .ok()?;
    let reg = |r: Register| match r {
        RSP => Some(regs.rsp),
        RBP => Some(regs.rbp),
        _ => None,
    };
    let cfa = match *row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } => {
            reg(register)?.wrapping_add(offset as u64)
        }
        CfaRule::Expression(_) => return None,
    };
    // The stack grows down: a caller's frame is above its callee's.
    if cfa <= regs.rsp {
        return None;
    }
    let value = |rule: Option<RegisterRule<usize>>, same: u64| match rule {
        None | Some(RegisterRule::SameValue) => Some(same),
        Some(RegisterRule::Offset(off)) => mem.read_u64(cfa.wrapping_add(off as u64)),
        Some(RegisterRule::ValOffset(off)) => Some(cfa.wrapping_add(off as u64)),
        Some(RegisterRule::Register(r)) => reg(r),
        Some(_) => None,
    };
    let pc = match row.register(RA) {
        Some(RegisterRule::Undefined) => 0,
        rule => value(rule, 0)?,
    };
    Some(Regs {
        pc,
        rsp: cfa,
        rbp: value(row.register(RBP), regs.rbp)?,
    })
}

#[cfg(test)]
mod tests;
