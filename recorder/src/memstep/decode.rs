//! What one instruction of the program does to memory, decoded once per
//! address with capstone (detail mode) and evaluated against the registers
//! before each execution.
//!
//! The class captured is the agent's: every explicit memory operand except
//! those of `lea`, nops and cache hints (prefetch, clflush, clwb), `fs:`/
//! `gs:` operands (thread-local data), control transfers through memory
//! (`call`/`jmp *mem`), push and pop (also `push [mem]`: the agent leaves
//! them out too), string instructions (movs/stos/lods/cmps/scas) and VSIB
//! gathers/scatters. Implicit stack accesses (call, ret, leave, enter) are
//! not operands, so they are not captured either.

use capstone::arch::x86::{ArchMode, X86OperandType};
use capstone::arch::{ArchOperand, BuildsCapstone};
use capstone::{Capstone, RegAccessType, RegId};
use lockstep_trace::access;

/// A register, as the operand names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    None,
    /// The instruction pointer (RIP-relative: the next instruction's address).
    Rip,
    /// Index into [`gpr`]'s order; `wide` false for a 32-bit name (addr32).
    Gpr {
        i: u8,
        wide: bool,
    },
}

/// One memory operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemOp {
    pub base: Reg,
    pub index: Reg,
    pub scale: u8,
    pub disp: i64,
    pub size: u32,
    /// [`access`] bits (ATOMIC included for lock-prefixed and xchg).
    pub flags: u8,
}

/// What executing the instruction means for the stepper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Stepped; its memory operands are the accesses.
    Plain,
    /// `syscall`, `sysenter`, `int N`: run, not stepped (a step would hide
    /// the syscall from the recorder's syscall stops).
    Syscall,
    /// `int3`: a breakpoint (the sync path's, or the program's); run, not stepped.
    Int3,
}

/// One decoded instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insn {
    pub len: u8,
    pub kind: Kind,
    pub ops: Vec<MemOp>,
}

const GPR: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];
const GPR32: [&str; 16] = [
    "eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "r8d", "r9d", "r10d", "r11d", "r12d",
    "r13d", "r14d", "r15d",
];

/// The value of general-purpose register `i` (in [`GPR`]'s order).
pub fn gpr(r: &libc::user_regs_struct, i: u8) -> u64 {
    [
        r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15,
    ][i as usize]
}

/// The decoder (one capstone handle, x86-64, detail mode).
pub struct Decoder {
    cs: Capstone,
}

impl Decoder {
    pub fn new() -> Decoder {
        let cs = Capstone::new()
            .x86()
            .mode(ArchMode::Mode64)
            .detail(true)
            .build()
            .expect("capstone supports x86-64");
        Decoder { cs }
    }

    /// A register operand, or `None` when the operand is one we do not
    /// evaluate (a vector index, a segment register).
    fn reg(&self, id: RegId) -> Option<Reg> {
        if id.0 == 0 {
            return Some(Reg::None);
        }
        let name = self.cs.reg_name(id)?;
        if name == "rip" || name == "eip" {
            return Some(Reg::Rip);
        }
        if let Some(i) = GPR.iter().position(|&g| g == name) {
            return Some(Reg::Gpr {
                i: i as u8,
                wide: true,
            });
        }
        let i = GPR32.iter().position(|&g| g == name)?;
        Some(Reg::Gpr {
            i: i as u8,
            wide: false,
        })
    }

    /// Decodes the instruction at the start of `code` (at address `ip`);
    /// `None` when capstone cannot.
    pub fn decode(&self, code: &[u8], ip: u64) -> Option<Insn> {
        let insns = self.cs.disasm_count(code, ip, 1).ok()?;
        let insn = insns.iter().next()?;
        let len = insn.len() as u8;
        let mnemonic = insn.mnemonic().unwrap_or("");
        let kind = match mnemonic {
            "syscall" | "sysenter" | "int" | "int1" | "into" => Kind::Syscall,
            "int3" => Kind::Int3,
            _ => Kind::Plain,
        };
        let mut out = Insn {
            len,
            kind,
            ops: Vec::new(),
        };
        let detail = self.cs.insn_detail(insn).ok()?;
        let arch = detail.arch_detail();
        let x86 = arch.x86()?;
        let opcode = x86.opcode();
        let string = (0xa4..=0xaf).contains(&opcode[0]) && opcode[1] == 0;
        // Control transfers (capstone groups jump, call, ret, int, iret),
        // whatever prefix (`bnd jmp` in .plt.sec) the mnemonic carries.
        let transfer = detail.groups().iter().any(|g| (1..=5).contains(&g.0));
        let skipped = string
            || transfer
            || matches!(mnemonic, "lea" | "push" | "pop" | "clwb" | "cldemote")
            || mnemonic.starts_with("nop")
            || mnemonic.starts_with("prefetch")
            || mnemonic.starts_with("clflush");
        if kind != Kind::Plain || skipped {
            return Some(out);
        }
        let atomic = x86.prefix().contains(&0xf0) || mnemonic == "xchg";
        // Capstone 5 annotates some stores as reads (movq/movups/vmovsd to
        // memory, movhps...) and cmpxchg's operand as a read: moves are
        // decided by the operand's position (the destination is first),
        // cmpxchg reads and (conditionally) writes.
        let base_mnemonic = mnemonic.rsplit(' ').next().unwrap_or("");
        let is_move = base_mnemonic.starts_with("mov") || base_mnemonic.starts_with("vmov");
        let is_cmpxchg = base_mnemonic.starts_with("cmpxchg");
        for (i, op) in arch.operands().into_iter().enumerate() {
            let ArchOperand::X86Operand(op) = op else {
                continue;
            };
            let X86OperandType::Mem(m) = op.op_type else {
                continue;
            };
            let segment = self.cs.reg_name(m.segment()).unwrap_or_default();
            if segment == "fs" || segment == "gs" {
                continue;
            }
            let (Some(base), Some(index)) = (self.reg(m.base()), self.reg(m.index())) else {
                continue;
            };
            let mut flags = match op.access {
                _ if is_move && i == 0 => access::WRITE,
                _ if is_move => access::READ,
                _ if is_cmpxchg => access::READ | access::WRITE,
                Some(RegAccessType::WriteOnly) => access::WRITE,
                Some(RegAccessType::ReadWrite) => access::READ | access::WRITE,
                // Capstone leaves a few operands unannotated: a read is
                // the safe guess (it never makes a write-write race).
                Some(RegAccessType::ReadOnly) | None => access::READ,
            };
            if atomic {
                // As the agent: an atomic reads and writes, whatever the operand says.
                flags = access::READ | access::WRITE | access::ATOMIC;
            }
            out.ops.push(MemOp {
                base,
                index,
                scale: m.scale() as u8,
                disp: m.disp(),
                size: (op.size as u32).max(1),
                flags,
            });
        }
        Some(out)
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl MemOp {
    /// The effective address with the registers before the instruction
    /// runs; `next_ip` is the address of the following instruction.
    pub fn address(&self, r: &libc::user_regs_struct, next_ip: u64) -> u64 {
        let mut narrow = false;
        let mut value = |reg: Reg| match reg {
            Reg::None => 0,
            Reg::Rip => next_ip,
            Reg::Gpr { i, wide } => {
                narrow |= !wide;
                gpr(r, i)
            }
        };
        let a = value(self.base)
            .wrapping_add(value(self.index).wrapping_mul(self.scale as u64))
            .wrapping_add(self.disp as u64);
        if narrow {
            a & 0xffff_ffff
        } else {
            a
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_trace::access::{ATOMIC, READ, WRITE};

    fn ops(code: &[u8]) -> Vec<(u32, u8)> {
        let d = Decoder::new().decode(code, 0x1000).expect("decodes");
        d.ops.iter().map(|o| (o.size, o.flags)).collect()
    }

    #[test]
    fn loads_stores_and_read_modify_write() {
        // mov eax, [rip+0x2ee6]  (counter++ at -O0, first half)
        assert_eq!(ops(&[0x8b, 0x05, 0xe6, 0x2e, 0, 0]), vec![(4, READ)]);
        // mov [rip+0x2edd], eax
        assert_eq!(ops(&[0x89, 0x05, 0xdd, 0x2e, 0, 0]), vec![(4, WRITE)]);
        // add [rdx], eax
        assert_eq!(ops(&[0x01, 0x02]), vec![(4, READ | WRITE)]);
        // movsd xmm0, [rax+rdx*8] (SSE, not the string instruction)
        assert_eq!(ops(&[0xf2, 0x0f, 0x10, 0x04, 0xd0]), vec![(8, READ)]);
        // Capstone calls these stores reads: movq [rax], xmm0; movups
        // [rax], xmm0; vmovsd [rax], xmm0; movhps [rax], xmm0.
        for code in [
            &[0x66, 0x0f, 0xd6, 0x00][..],
            &[0x0f, 0x11, 0x00],
            &[0xc5, 0xfb, 0x11, 0x00],
            &[0x0f, 0x17, 0x00],
        ] {
            assert_eq!(ops(code)[0].1, WRITE, "{code:x?}");
        }
        // cmpxchg [rdx], rcx (no lock): read and write.
        assert_eq!(ops(&[0x48, 0x0f, 0xb1, 0x0a]), vec![(8, READ | WRITE)]);
        // movzx eax, byte ptr [rax]; mov byte ptr [rax], 1
        assert_eq!(ops(&[0x0f, 0xb6, 0x00]), vec![(1, READ)]);
        assert_eq!(ops(&[0xc6, 0x00, 0x01]), vec![(1, WRITE)]);
        // cmp dword ptr [rbp-4], 0x1869f
        assert_eq!(
            ops(&[0x81, 0x7d, 0xfc, 0x9f, 0x86, 0x01, 0x00]),
            vec![(4, READ)]
        );
    }

    #[test]
    fn atomics() {
        // lock add dword ptr [rip+0x10], 1
        assert_eq!(
            ops(&[0xf0, 0x83, 0x05, 0x10, 0, 0, 0, 0x01]),
            vec![(4, READ | WRITE | ATOMIC)]
        );
        // xchg [rdi], eax
        assert_eq!(ops(&[0x87, 0x07]), vec![(4, READ | WRITE | ATOMIC)]);
    }

    #[test]
    fn excluded_instructions() {
        for code in [
            &[0x48, 0x8d, 0x45, 0xf0][..],                  // lea rax, [rbp-0x10]
            &[0x0f, 0x1f, 0x40, 0x00],                      // nop dword ptr [rax]
            &[0x0f, 0x18, 0x08],                            // prefetcht0 [rax]
            &[0xff, 0x25, 0x10, 0, 0, 0],                   // jmp [rip+0x10] (PLT)
            &[0xff, 0x15, 0x10, 0, 0, 0],                   // call [rip+0x10]
            &[0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0, 0, 0], // mov rax, fs:[0x28]
            &[0xf3, 0x48, 0xab],                            // rep stosq
            &[0xa4],                                        // movsb
            &[0x55],                                        // push rbp
            &[0xc9],                                        // leave
        ] {
            assert_eq!(ops(code), vec![], "{code:x?}");
        }
        let d = Decoder::new();
        assert_eq!(d.decode(&[0x0f, 0x05], 0).unwrap().kind, Kind::Syscall);
        assert_eq!(d.decode(&[0xcc], 0).unwrap().kind, Kind::Int3);
    }

    #[test]
    fn effective_addresses() {
        let d = Decoder::new();
        // SAFETY: user_regs_struct is plain integers; all-zero is valid.
        let mut r: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        r.rax = 0x1000;
        r.rdx = 3;
        // movsd xmm0, [rax+rdx*8]
        let i = d.decode(&[0xf2, 0x0f, 0x10, 0x04, 0xd0], 0x400).unwrap();
        assert_eq!(i.ops[0].address(&r, 0x405), 0x1018);
        // mov eax, [rip+0x2ee6] at 0x1139, 6 bytes
        let i = d.decode(&[0x8b, 0x05, 0xe6, 0x2e, 0, 0], 0x1139).unwrap();
        assert_eq!(i.ops[0].address(&r, 0x1139 + 6), 0x1139 + 6 + 0x2ee6);
        // mov eax, [rbp-4] with rbp = 0x7fff0010
        r.rbp = 0x7fff_0010;
        let i = d.decode(&[0x8b, 0x45, 0xfc], 0).unwrap();
        assert_eq!(i.ops[0].address(&r, 3), 0x7fff_000c);
        // addr32: mov eax, [ebx+0x10] with the upper half of rbx set
        r.rbx = 0x1_0000_0100;
        let i = d.decode(&[0x67, 0x8b, 0x43, 0x10], 0).unwrap();
        assert_eq!(i.ops[0].address(&r, 4), 0x110);
    }
}
