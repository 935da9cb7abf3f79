//! The instructions laid out before each instrumented instruction: the
//! inline fast path of a plain access and the probe call of an atomic one
//! (both described in [`super::probe`]), built as iced-x86 instructions for
//! [`super::rewrite`]'s block encoder.

use iced_x86::{Code, Instruction, MemoryOperand, Register};

/// The memory operand of an instrumented instruction, before the probe
/// sequence's pushes move the stack pointer.
pub struct Operand {
    pub base: Register,
    pub index: Register,
    pub scale: u32,
    pub displ: i64,
}

impl Operand {
    /// The operand as seen after the red zone and `pushes` bytes of pushes.
    pub fn operand(&self, pushes: i64) -> MemoryOperand {
        let mut displ = self.displ;
        if self.base == Register::RSP || self.base == Register::ESP {
            displ += 128 + pushes;
        }
        // 1: the encoder picks disp8 or disp32; RIP-relative wants 8 (64-bit).
        let displ_size = if self.base == Register::RIP { 8 } else { 1 };
        MemoryOperand::new(
            self.base,
            self.index,
            self.scale,
            displ,
            displ_size,
            false,
            Register::None,
        )
    }
}

/// Made-up addresses of the inline sequences' labels: above the canonical
/// user range, so no original instruction or branch target has them.
pub const LABELS: u64 = 0xf000_0000_0000_0000;

/// `fs:[tls + field]`, the thread's TLS pair (see [`super::probe`]).
fn fs_word(tls: i64, field: i64) -> MemoryOperand {
    MemoryOperand::new(
        Register::None,
        Register::None,
        1,
        tls + field,
        8,
        false,
        Register::FS,
    )
}

/// The inline fast path before a plain access (see [`super::probe`]);
/// `label` and `label + 1` name its slow call and its end. The slow call's
/// target is a placeholder (`u64::MAX`) replaced by the trampoline's
/// address once the region is known.
pub fn inline_sequence(
    mem: MemoryOperand,
    site: u32,
    tls: i64,
    label: u64,
) -> Option<Vec<Instruction>> {
    use Register::{ESI, RAX, RCX, RDI, RDX, RSI, RSP};
    let (slow, done) = (label, label + 1);
    let slot = (site as i64) * 8;
    let cache = MemoryOperand::with_base_displ(RDX, slot);
    let entry = MemoryOperand::new(RDX, RCX, 8, 0, 0, false, Register::None);
    let entry_site = MemoryOperand::new(RDX, RCX, 8, 8, 1, false, Register::None);
    let mut v = vec![
        Instruction::with2(
            Code::Lea_r64_m,
            RSP,
            MemoryOperand::with_base_displ(RSP, -128),
        )
        .ok()?,
        Instruction::with1(Code::Push_r64, RAX).ok()?,
        Instruction::with1(Code::Push_r64, RCX).ok()?,
        Instruction::with1(Code::Push_r64, RDX).ok()?,
        Instruction::with2(Code::Lea_r64_m, RAX, mem).ok()?,
        Instruction::with2(Code::Mov_r64_rm64, RCX, fs_word(tls, 0)).ok()?,
        Instruction::with_branch(Code::Jrcxz_rel8_64, slow).ok()?,
        Instruction::with2(Code::Mov_r64_rm64, RDX, fs_word(tls, 8)).ok()?,
        Instruction::with2(Code::Mov_r64_rm64, RCX, cache).ok()?,
        Instruction::with1(Code::Not_rm64, RCX).ok()?,
        Instruction::with2(
            Code::Lea_r64_m,
            RCX,
            MemoryOperand::new(RCX, RAX, 1, 1, 1, false, Register::None),
        )
        .ok()?,
        Instruction::with_branch(Code::Jrcxz_rel8_64, done).ok()?,
        // The index again: checked again, so that whatever a signal
        // handler did in between, the entry lands inside the buffer.
        Instruction::with2(Code::Mov_r64_rm64, RCX, fs_word(tls, 0)).ok()?,
        Instruction::with_branch(Code::Jrcxz_rel8_64, slow).ok()?,
        Instruction::with2(Code::Mov_rm64_r64, cache, RAX).ok()?,
        Instruction::with2(Code::Mov_rm64_r64, entry, RAX).ok()?,
        Instruction::with2(Code::Mov_rm32_imm32, entry_site, site).ok()?,
        Instruction::with2(Code::Lea_r64_m, RCX, MemoryOperand::with_base_displ(RCX, 2)).ok()?,
        Instruction::with2(Code::Mov_rm64_r64, fs_word(tls, 0), RCX).ok()?,
        Instruction::with_branch(Code::Jmp_rel32_64, done).ok()?,
    ];
    let mut call = vec![
        Instruction::with1(Code::Push_r64, RDI).ok()?,
        Instruction::with1(Code::Push_r64, RSI).ok()?,
        Instruction::with2(Code::Mov_r64_rm64, RDI, RAX).ok()?,
        Instruction::with2(Code::Mov_r32_imm32, ESI, site).ok()?,
        Instruction::with_branch(Code::Call_rel32_64, u64::MAX).ok()?,
        Instruction::with1(Code::Pop_r64, RSI).ok()?,
        Instruction::with1(Code::Pop_r64, RDI).ok()?,
    ];
    call[0].set_ip(slow);
    v.append(&mut call);
    let mut end = vec![
        Instruction::with1(Code::Pop_r64, RDX).ok()?,
        Instruction::with1(Code::Pop_r64, RCX).ok()?,
        Instruction::with1(Code::Pop_r64, RAX).ok()?,
        Instruction::with2(
            Code::Lea_r64_m,
            RSP,
            MemoryOperand::with_base_displ(RSP, 128),
        )
        .ok()?,
    ];
    end[0].set_ip(done);
    v.append(&mut end);
    Some(v)
}

/// The probe call before an atomic instruction (see [`super::probe`]). The
/// call's target is a placeholder (`u64::MAX - 1`) replaced by the
/// trampoline's address once the region is known.
pub fn atomic_sequence(mem: MemoryOperand, site: u32) -> Option<Vec<Instruction>> {
    let below = MemoryOperand::with_base_displ(Register::RSP, -128);
    let above = MemoryOperand::with_base_displ(Register::RSP, 128);
    Some(vec![
        Instruction::with2(Code::Lea_r64_m, Register::RSP, below).ok()?,
        Instruction::with1(Code::Push_r64, Register::RDI).ok()?,
        Instruction::with1(Code::Push_r64, Register::RSI).ok()?,
        Instruction::with2(Code::Lea_r64_m, Register::RDI, mem).ok()?,
        Instruction::with2(Code::Mov_r32_imm32, Register::ESI, site).ok()?,
        Instruction::with_branch(Code::Call_rel32_64, u64::MAX - 1).ok()?,
        Instruction::with1(Code::Pop_r64, Register::RSI).ok()?,
        Instruction::with1(Code::Pop_r64, Register::RDI).ok()?,
        Instruction::with2(Code::Lea_r64_m, Register::RSP, above).ok()?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{
        BlockEncoder, BlockEncoderOptions, Decoder, DecoderOptions, InstructionBlock,
        InstructionInfoFactory,
    };

    /// The inline sequence before `mov rax, [rsp+8]`, encoded at 0x4000
    /// with its slow call to 0x5000, decoded back.
    fn encoded(tls: i64, site: u32) -> Vec<Instruction> {
        let op = Operand {
            base: Register::RSP,
            index: Register::None,
            scale: 1,
            displ: 8,
        };
        let mut v = inline_sequence(op.operand(24), site, tls, LABELS + 2).unwrap();
        v[0].set_ip(0x1000);
        for i in v.iter_mut() {
            if i.code() == Code::Call_rel32_64 {
                i.set_near_branch64(0x5000);
            }
        }
        let orig = Instruction::with2(
            Code::Mov_r64_rm64,
            Register::RAX,
            MemoryOperand::with_base_displ(Register::RSP, 8),
        )
        .unwrap();
        v.push(orig);
        let done = BlockEncoder::encode(
            64,
            InstructionBlock::new(&v, 0x4000),
            BlockEncoderOptions::NONE,
        )
        .unwrap();
        Decoder::with_ip(64, &done.code_buffer, 0x4000, DecoderOptions::NONE)
            .into_iter()
            .collect()
    }

    #[test]
    fn the_fast_path_leaves_the_flags_alone_and_reaches_tls_below_the_thread_pointer() {
        let code = encoded(-0x40, 5);
        let end = code.last().unwrap().ip();
        let mut info = InstructionInfoFactory::new();
        let mut fs = Vec::new();
        for i in &code[..code.len() - 1] {
            if i.code() != Code::Call_rel32_64 {
                assert_eq!(i.rflags_modified(), 0, "{:?} changes flags", i.code());
            }
            if i.memory_segment() == Register::FS {
                // 64-bit addressing, no base: the displacement sign-extends.
                assert_eq!(i.memory_base(), Register::None);
                assert_eq!(i.memory_index(), Register::None);
                fs.push(i.memory_displacement64() as i64);
            }
            if i.code() == Code::Jrcxz_rel8_64 {
                let t = i.near_branch_target();
                assert!(t > i.ip() && t < end, "jrcxz stays in the sequence");
            }
            let _ = info.info(i);
        }
        assert_eq!(fs, vec![-0x40, -0x38, -0x40, -0x40]);
        // The address operand sees the original rsp: red zone + 3 pushes.
        let lea = code
            .iter()
            .find(|i| i.code() == Code::Lea_r64_m && i.op0_register() == Register::RAX);
        assert_eq!(lea.unwrap().memory_displacement64(), 8 + 128 + 24);
        // The site is both the cache slot and the logged value.
        assert!(code.iter().any(|i| i.memory_base() == Register::RDX
            && i.memory_index() == Register::None
            && i.memory_displacement64() == 5 * 8));
        assert!(code
            .iter()
            .any(|i| i.code() == Code::Mov_rm32_imm32 && i.immediate32() == 5));
    }

    #[test]
    fn the_atomic_sequence_calls_the_probe_with_the_operand() {
        let op = Operand {
            base: Register::RSP,
            index: Register::None,
            scale: 1,
            displ: 0,
        };
        let v = atomic_sequence(op.operand(16), 9).unwrap();
        let lea = &v[3];
        assert_eq!(lea.op0_register(), Register::RDI);
        assert_eq!(lea.memory_displacement64(), 128 + 16);
        assert_eq!(v[5].near_branch64(), u64::MAX - 1);
    }
}
