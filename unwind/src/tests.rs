//! The unwinder on a synthetic object: `.eh_frame` written with gimli's
//! writer, `.eh_frame_hdr` laid out by hand, a stack in a buffer.

use super::*;
use gimli::write::{
    Address, CallFrameInstruction as I, CommonInformationEntry, EndianVec, FrameDescriptionEntry,
    FrameTable,
};
use gimli::{constants, Encoding, Format};

const IMAGE: u64 = 0x10000;
const HDR_AT: u64 = IMAGE;
const EH_FRAME_AT: u64 = IMAGE + 0x100;
/// Code: `leaf` (no frame pointer: push rbx; sub rsp, 0x20), `middle`
/// (push rbp; mov rbp, rsp), `outer` (return address undefined, like
/// `_start`), `broken` (CFA = rsp, which cannot be a caller's frame).
const LEAF: u64 = 0x1000;
const MIDDLE: u64 = 0x1100;
const OUTER: u64 = 0x1200;
const BROKEN: u64 = 0x1300;
const STACK: u64 = 0x7000_0000;

fn fde(at: u64, rules: &[(u32, I)]) -> FrameDescriptionEntry {
    let mut f = FrameDescriptionEntry::new(Address::Constant(at), 0x100);
    for (off, i) in rules {
        f.add_instruction(*off, i.clone());
    }
    f
}

/// The object's image: `.eh_frame_hdr` at `HDR_AT`, `.eh_frame` at `EH_FRAME_AT`.
fn image() -> Vec<u8> {
    let encoding = Encoding {
        format: Format::Dwarf32,
        version: 1,
        address_size: 8,
    };
    let mut cie = CommonInformationEntry::new(encoding, 1, -8, RA);
    cie.add_instruction(I::Cfa(RSP, 8));
    cie.add_instruction(I::Offset(RA, -8));
    let mut table = FrameTable::default();
    let cie = table.add_cie(cie);
    table.add_fde(
        cie,
        fde(
            LEAF,
            &[
                (1, I::CfaOffset(16)),
                (1, I::Offset(Register(3), -16)),
                (5, I::CfaOffset(48)),
            ],
        ),
    );
    table.add_fde(
        cie,
        fde(
            MIDDLE,
            &[
                (1, I::CfaOffset(16)),
                (1, I::Offset(RBP, -16)),
                (4, I::CfaRegister(RBP)),
            ],
        ),
    );
    table.add_fde(cie, fde(OUTER, &[(0, I::Undefined(RA))]));
    table.add_fde(cie, fde(BROKEN, &[(0, I::Cfa(RSP, 0))]));
    let mut eh = gimli::write::EhFrame(EndianVec::new(LittleEndian));
    table.write_eh_frame(&mut eh).unwrap();
    let eh = eh.0.into_vec();

    // Where each FDE landed, for the search table.
    let bases = BaseAddresses::default().set_eh_frame(EH_FRAME_AT);
    let section = EhFrame::new(&eh, LittleEndian);
    let mut entries = section.entries(&bases);
    let mut rows = Vec::new();
    while let Some(e) = entries.next().unwrap() {
        if let gimli::CieOrFde::Fde(p) = e {
            let offset = EH_FRAME_AT + p.offset() as u64;
            let f = p.parse(EhFrame::cie_from_offset).unwrap();
            rows.push((f.initial_address(), offset));
        }
    }
    rows.sort();
    let rel = |a: u64| ((a as i64 - HDR_AT as i64) as i32).to_le_bytes();
    let mut hdr = vec![
        1,
        constants::DW_EH_PE_pcrel.0 | constants::DW_EH_PE_sdata4.0,
        constants::DW_EH_PE_udata4.0,
        constants::DW_EH_PE_datarel.0 | constants::DW_EH_PE_sdata4.0,
    ];
    // eh_frame_ptr is relative to its own position (offset 4).
    hdr.extend_from_slice(&((EH_FRAME_AT - (HDR_AT + 4)) as i32).to_le_bytes());
    hdr.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    for (pc, fde) in rows {
        hdr.extend_from_slice(&rel(pc));
        hdr.extend_from_slice(&rel(fde));
    }
    let mut img = hdr;
    img.resize((EH_FRAME_AT - IMAGE) as usize, 0);
    img.extend_from_slice(&eh);
    img
}

struct Obj {
    img: Vec<u8>,
    /// Code addresses `[lo, hi)` that stand for `lo - shift...` (a relocated copy).
    copy: Option<(u64, u64, u64)>,
}

impl Objects for Obj {
    fn find(&self, pc: u64) -> Option<Image<'_>> {
        (LEAF..BROKEN + 0x100).contains(&pc).then(|| Image {
            start: IMAGE,
            bytes: &self.img,
            eh_frame_hdr: HDR_AT,
        })
    }
    fn original(&self, pc: u64) -> u64 {
        match self.copy {
            Some((lo, hi, shift)) if (lo..hi).contains(&pc) => pc - shift,
            _ => pc,
        }
    }
}

/// A stack of words from `STACK` on; reads outside it are refused.
struct Words(Vec<u64>);

impl Memory for Words {
    fn read_u64(&self, addr: u64) -> Option<u64> {
        let i = addr.checked_sub(STACK)?;
        (i % 8 == 0).then_some(())?;
        self.0.get((i / 8) as usize).copied()
    }
}

/// `leaf` called from `middle` called from `outer`: leaf's frame is 48
/// bytes (return address at +40), middle's frame pointer is at +64 (saved
/// rbp there, return address at +72).
fn stack() -> (Words, Regs) {
    let mut w = vec![0u64; 16];
    w[5] = MIDDLE + 0x20; // leaf's return address, into middle
    w[8] = 0; // middle's saved rbp
    w[9] = OUTER + 0x10; // middle's return address, into outer
    let regs = Regs {
        pc: LEAF + 0x10,
        rsp: STACK,
        rbp: STACK + 64,
    };
    (Words(w), regs)
}

fn obj() -> Obj {
    Obj {
        img: image(),
        copy: None,
    }
}

#[test]
fn frames_without_and_with_frame_pointers_up_to_an_undefined_return_address() {
    let (mem, regs) = stack();
    let mut out = [0u64; 8];
    let n = unwind(&obj(), &mem, regs, &mut out);
    assert_eq!(&out[..n], &[LEAF + 0x10, MIDDLE + 0x20, OUTER + 0x10]);
    assert_eq!(&out[n..], &[0; 5]);
}

#[test]
fn a_short_output_is_filled() {
    let (mem, regs) = stack();
    let mut out = [0u64; 2];
    assert_eq!(unwind(&obj(), &mem, regs, &mut out), 2);
    assert_eq!(out, [LEAF + 0x10, MIDDLE + 0x20]);
}

#[test]
fn unreadable_memory_and_unknown_code_end_the_walk() {
    let (_, regs) = stack();
    let mut out = [0u64; 8];
    assert_eq!(unwind(&obj(), &Words(vec![]), regs, &mut out), 1);
    let (mem, mut regs) = stack();
    regs.pc = 0x9000;
    assert_eq!(unwind(&obj(), &mem, regs, &mut out), 1);
    assert_eq!(out[0], 0x9000);
}

#[test]
fn a_frame_that_does_not_move_up_the_stack_ends_the_walk() {
    let (mem, mut regs) = stack();
    regs.pc = BROKEN + 0x10;
    let mut out = [0u64; 8];
    assert_eq!(unwind(&obj(), &mem, regs, &mut out), 1);
}

#[test]
fn addresses_in_a_relocated_copy_are_unwound_and_reported_as_the_original() {
    let (mut mem, mut regs) = stack();
    let shift = 0x40_0000;
    regs.pc += shift;
    mem.0[5] += shift;
    let o = Obj {
        img: image(),
        copy: Some((LEAF + shift, BROKEN + shift, shift)),
    };
    let mut out = [0u64; 8];
    let n = unwind(&o, &mem, regs, &mut out);
    assert_eq!(&out[..n], &[LEAF + 0x10, MIDDLE + 0x20, OUTER + 0x10]);
}
