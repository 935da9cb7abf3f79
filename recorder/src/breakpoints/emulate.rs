//! Stepping over an entry breakpoint without single-stepping: the first
//! instruction of the watched function, which the int3 replaced, is
//! executed here on the stopped thread's registers. This keeps a recorded
//! call at two stops (entry and return) instead of four.
//!
//! Only the instructions glibc's pthread functions actually start with are
//! understood (checked on Debian's glibc 2.36, static and shared):
//! `endbr64`, `push r64`, `mov $imm, r32/r64`, `mov disp(base), r32/r64`,
//! `mov r64, r64`, `sub $imm, %rsp`, `xor r32, r32` (same register). Anything
//! else decodes to `None` and the caller single-steps the original byte.

use libc::user_regs_struct as Regs;

/// A decoded first instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insn {
    Endbr,
    Push(u8),
    MovImm {
        reg: u8,
        imm: u64,
        wide: bool,
    },
    Load {
        dst: u8,
        base: u8,
        disp: i64,
        wide: bool,
    },
    MovReg {
        dst: u8,
        src: u8,
        wide: bool,
    },
    SubRsp(u64),
    XorSelf(u8),
}

/// Decodes the instruction at the start of `code`: the instruction and its
/// length, or `None` when it is not one the emulator handles.
pub fn decode(code: &[u8]) -> Option<(Insn, usize)> {
    if code.starts_with(&[0xf3, 0x0f, 0x1e, 0xfa]) {
        return Some((Insn::Endbr, 4));
    }
    let (rex, i) = match code.first()? {
        b @ 0x40..=0x4f => (*b, 1),
        _ => (0, 0),
    };
    let (w, r, b) = (rex & 8 != 0, (rex >> 2) & 1, rex & 1);
    let op = *code.get(i)?;
    let imm32 = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(code.get(at..at + 4)?.try_into().ok()?))
    };
    match op {
        0x50..=0x57 => Some((Insn::Push((op - 0x50) | b << 3), i + 1)),
        0xb8..=0xbf if w => {
            let imm = u64::from_le_bytes(code.get(i + 1..i + 9)?.try_into().ok()?);
            Some((
                Insn::MovImm {
                    reg: (op - 0xb8) | b << 3,
                    imm,
                    wide: true,
                },
                i + 9,
            ))
        }
        0xb8..=0xbf => Some((
            Insn::MovImm {
                reg: (op - 0xb8) | b << 3,
                imm: imm32(i + 1)? as u64,
                wide: false,
            },
            i + 5,
        )),
        0x8b | 0x89 | 0x31 | 0x83 | 0x81 => {
            let modrm = *code.get(i + 1)?;
            let (md, rg, rm) = (
                modrm >> 6,
                ((modrm >> 3) & 7) | r << 3,
                (modrm & 7) | b << 3,
            );
            match (op, md) {
                (0x8b, 0..=2) if modrm & 7 != 4 && !(md == 0 && modrm & 7 == 5) => {
                    let (disp, len) = match md {
                        0 => (0, 0),
                        1 => (*code.get(i + 2)? as i8 as i64, 1),
                        _ => (imm32(i + 2)? as i32 as i64, 4),
                    };
                    Some((
                        Insn::Load {
                            dst: rg,
                            base: rm,
                            disp,
                            wide: w,
                        },
                        i + 2 + len,
                    ))
                }
                (0x89, 3) => Some((
                    Insn::MovReg {
                        dst: rm,
                        src: rg,
                        wide: w,
                    },
                    i + 2,
                )),
                (0x31, 3) if rg == rm => Some((Insn::XorSelf(rm), i + 2)),
                (0x83, 3) if w && rm == 4 && rg == 5 => {
                    Some((Insn::SubRsp(*code.get(i + 2)? as i8 as i64 as u64), i + 3))
                }
                (0x81, 3) if w && rm == 4 && rg == 5 => {
                    Some((Insn::SubRsp(imm32(i + 2)? as i32 as i64 as u64), i + 6))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Register `n` (x86 encoding order: rax rcx rdx rbx rsp rbp rsi rdi r8..r15).
pub fn reg(regs: &mut Regs, n: u8) -> &mut u64 {
    match n {
        0 => &mut regs.rax,
        1 => &mut regs.rcx,
        2 => &mut regs.rdx,
        3 => &mut regs.rbx,
        4 => &mut regs.rsp,
        5 => &mut regs.rbp,
        6 => &mut regs.rsi,
        7 => &mut regs.rdi,
        8 => &mut regs.r8,
        9 => &mut regs.r9,
        10 => &mut regs.r10,
        11 => &mut regs.r11,
        12 => &mut regs.r12,
        13 => &mut regs.r13,
        14 => &mut regs.r14,
        _ => &mut regs.r15,
    }
}

/// Arithmetic flags (CF PF AF ZF SF OF) of eflags.
const FLAGS: u64 = 0x8d5;

fn parity_even(v: u64) -> bool {
    (v as u8).count_ones().is_multiple_of(2)
}

/// What the emulation needs from the tracee's memory.
pub trait Access {
    fn read_u64(&self, addr: u64) -> Option<u64>;
    fn write_u64(&self, addr: u64, value: u64) -> Option<()>;
}

/// Executes `insn` (of length `len`, at `regs.rip`) on `regs` and memory.
/// `None` when a memory access failed (the caller then single-steps).
pub fn apply(insn: Insn, len: usize, regs: &mut Regs, mem: &dyn Access) -> Option<()> {
    match insn {
        Insn::Endbr => {}
        Insn::Push(n) => {
            let v = *reg(regs, n);
            let sp = regs.rsp.wrapping_sub(8);
            mem.write_u64(sp, v)?;
            regs.rsp = sp;
        }
        Insn::MovImm { reg: n, imm, .. } => *reg(regs, n) = imm,
        Insn::Load {
            dst,
            base,
            disp,
            wide,
        } => {
            let addr = reg(regs, base).wrapping_add(disp as u64);
            let v = mem.read_u64(addr)?;
            *reg(regs, dst) = if wide { v } else { v & 0xffff_ffff };
        }
        Insn::MovReg { dst, src, wide } => {
            let v = *reg(regs, src);
            *reg(regs, dst) = if wide { v } else { v & 0xffff_ffff };
        }
        Insn::SubRsp(imm) => {
            let a = regs.rsp;
            let res = a.wrapping_sub(imm);
            let mut f = regs.eflags & !FLAGS;
            f |= (a < imm) as u64; // CF
            f |= (parity_even(res) as u64) << 2; // PF
            f |= (((a ^ imm ^ res) >> 4) & 1) << 4; // AF
            f |= ((res == 0) as u64) << 6; // ZF
            f |= (res >> 63) << 7; // SF
            f |= (((a ^ imm) & (a ^ res)) >> 63) << 11; // OF
            regs.eflags = f;
            regs.rsp = res;
        }
        Insn::XorSelf(n) => {
            *reg(regs, n) = 0;
            // ZF and PF set, CF OF SF cleared (AF undefined: cleared).
            regs.eflags = (regs.eflags & !FLAGS) | 1 << 6 | 1 << 2;
        }
    }
    regs.rip = regs.rip.wrapping_add(len as u64);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_glibc_prologues() {
        assert_eq!(
            decode(&[0x8b, 0x47, 0x10]),
            Some((
                Insn::Load {
                    dst: 0,
                    base: 7,
                    disp: 16,
                    wide: false
                },
                3
            ))
        );
        assert_eq!(
            decode(&[0xbe, 1, 0, 0, 0]),
            Some((
                Insn::MovImm {
                    reg: 6,
                    imm: 1,
                    wide: false
                },
                5
            ))
        );
        assert_eq!(decode(&[0x41, 0x57]), Some((Insn::Push(15), 2)));
        assert_eq!(decode(&[0x55]), Some((Insn::Push(5), 1)));
        assert_eq!(
            decode(&[0x41, 0xb8, 1, 0, 0, 0]),
            Some((
                Insn::MovImm {
                    reg: 8,
                    imm: 1,
                    wide: false
                },
                6
            ))
        );
        assert_eq!(
            decode(&[0x48, 0x83, 0xec, 0x08]),
            Some((Insn::SubRsp(8), 4))
        );
        assert_eq!(
            decode(&[0x48, 0x8b, 0x07]),
            Some((
                Insn::Load {
                    dst: 0,
                    base: 7,
                    disp: 0,
                    wide: true
                },
                3
            ))
        );
        assert_eq!(
            decode(&[0x48, 0x89, 0xf2]),
            Some((
                Insn::MovReg {
                    dst: 2,
                    src: 6,
                    wide: true
                },
                3
            ))
        );
        assert_eq!(decode(&[0x31, 0xc0]), Some((Insn::XorSelf(0), 2)));
        assert_eq!(decode(&[0xf3, 0x0f, 0x1e, 0xfa]), Some((Insn::Endbr, 4)));
        // lock decl (%rdi), test, rip-relative loads: not emulated.
        assert_eq!(decode(&[0xf0, 0xff, 0x0f]), None);
        assert_eq!(decode(&[0x48, 0x85, 0xff]), None);
        assert_eq!(decode(&[0x8b, 0x05, 0, 0, 0, 0]), None);
    }

    struct Mem(std::cell::RefCell<std::collections::HashMap<u64, u64>>);
    impl Access for Mem {
        fn read_u64(&self, a: u64) -> Option<u64> {
            self.0.borrow().get(&a).copied()
        }
        fn write_u64(&self, a: u64, v: u64) -> Option<()> {
            self.0.borrow_mut().insert(a, v);
            Some(())
        }
    }

    #[test]
    fn push_and_load_and_sub() {
        // SAFETY: user_regs_struct is plain integers; all-zero is valid.
        let mut r: Regs = unsafe { std::mem::zeroed() };
        let mem = Mem(Default::default());
        r.rsp = 0x1000;
        r.r15 = 42;
        r.rip = 0x400000;
        apply(Insn::Push(15), 2, &mut r, &mem).unwrap();
        assert_eq!(
            (r.rsp, mem.read_u64(0xff8), r.rip),
            (0xff8, Some(42), 0x400002)
        );
        mem.write_u64(0x2010, 0xdead_beef_0000_0001).unwrap();
        r.rdi = 0x2000;
        r.rax = u64::MAX;
        apply(
            Insn::Load {
                dst: 0,
                base: 7,
                disp: 16,
                wide: false,
            },
            3,
            &mut r,
            &mem,
        )
        .unwrap();
        assert_eq!(r.rax, 1);
        apply(Insn::SubRsp(8), 4, &mut r, &mem).unwrap();
        assert_eq!(r.rsp, 0xff0);
        assert_eq!(r.eflags & FLAGS, 1 << 2); // PF only (0xf0 has 4 bits set)
    }
}
