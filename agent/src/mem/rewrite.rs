//! Instrumenting the executable: every function of its symbol table gets
//! a relocated copy in which each instruction that touches memory is
//! preceded by a probe call (see [`super::probe`]), and the original
//! function's first instruction becomes a `jmp` to the copy.
//!
//! iced-x86 decodes the original code and its `BlockEncoder` lays out the
//! copy: branches inside the function are retargeted to the copy (a branch
//! to an instrumented instruction lands on its probe, which carries the
//! instruction's original address), branches and RIP-relative operands that
//! point elsewhere keep their targets (the copies live within ±2 GiB of the
//! executable). Calls keep going to the *original* entry points, which jump
//! to the copies, so function pointers, return addresses into the original
//! code and `dlsym` all stay valid.
//!
//! What is captured (the same class as the recorder's single-step reference
//! mechanism): every instruction with an explicit memory operand except
//! `lea`, nops, prefetches and cache flushes, `fs:`/`gs:` operands
//! (thread-local data), control transfers through memory, `push`/`pop`,
//! and vector-indexed (VSIB) operands; string instructions and implicit
//! stack accesses have no explicit operand and are not captured.
//! Lock-prefixed instructions, `xchg` with memory and a `mov` store
//! followed by a full fence (`mfence`, `lock or [rsp], 0`) are atomic: they
//! call the atomic probe. Plain accesses get the inline fast path of
//! [`super::probe`] (its labels are instructions with made-up addresses
//! above the canonical user range, which the encoder resolves like any
//! branch target inside the block).
//!
//! A function is left alone (still correct, just not observed) when it is
//! shorter than the 5-byte jump, does not decode, cannot be re-encoded, or
//! when some branch of the executable targets its first five bytes other
//! than its entry. Known limits: a computed jump (a `switch` jump table)
//! lands in the original code, which runs uninstrumented until the function
//! returns; C++ programs (with `.gcc_except_table`) are not instrumented,
//! because the copies carry no unwind tables.

use iced_x86::{
    BlockEncoder, BlockEncoderOptions, Code, Decoder, DecoderOptions, FlowControl, Instruction,
    InstructionBlock, InstructionInfoFactory, Mnemonic, OpAccess, OpKind, Register,
};
use std::collections::HashSet;

use super::probe;
use super::sequence::{atomic_sequence, inline_sequence, Operand, LABELS};
use super::sites::{Map, Site};

/// A function of the executable, as loaded.
pub struct Function {
    pub addr: u64,
    pub size: u64,
}

/// One function's instrumented copy, before it is placed.
struct Plan {
    func_addr: u64,
    /// The instruction list handed to the BlockEncoder.
    instrs: Vec<Instruction>,
    /// For each original instruction: (index in `instrs` of its chunk's
    /// first instruction, original address).
    chunk_starts: Vec<(usize, u64)>,
}

/// Returns the instrumentation of `funcs` (code readable in this
/// process), written to a fresh executable region near `near`, and the
/// entry patches to apply: `(function address, copy address)`.
pub fn instrument(
    funcs: &[Function],
    near: u64,
    exe: (u64, u64),
) -> Option<(Map, Vec<(u64, u64)>)> {
    let mut sites: Vec<Site> = Vec::new();
    let mut plans = Vec::new();
    let mut targets: HashSet<u64> = HashSet::new();
    let mut factory = InstructionInfoFactory::new();
    let tls = probe::tls_offset();
    for f in funcs {
        // SAFETY: the function's bytes lie in the executable's mapped text.
        let code = unsafe { std::slice::from_raw_parts(f.addr as *const u8, f.size as usize) };
        let decoded: Vec<Instruction> = Decoder::with_ip(64, code, f.addr, DecoderOptions::NONE)
            .into_iter()
            .collect();
        if decoded.iter().any(|i| i.is_invalid()) {
            continue;
        }
        for i in &decoded {
            if matches!(i.op0_kind(), OpKind::NearBranch64) {
                targets.insert(i.near_branch_target());
            }
        }
        if let Some(plan) = plan_function(f, &decoded, &mut sites, &mut factory, tls) {
            plans.push(plan);
        }
    }
    // A branch into the first five bytes (other than the entry) would land
    // in the middle of the patch.
    plans.retain(|p| !(1..5).any(|d| targets.contains(&(p.func_addr + d))));
    if plans.is_empty() {
        return None;
    }
    let estimate: usize = plans
        .iter()
        .map(|p| p.instrs.len() * 16 + 64)
        .sum::<usize>()
        + 4096;
    let region = map_near(near, estimate)?;
    // Two trampolines at the start: jmp [rip+0] to each probe.
    let tramp_access = region;
    let tramp_atomic = region + 16;
    // SAFETY: the region is ours, writable, at least a page.
    unsafe {
        write_trampoline(tramp_access as *mut u8, probe::flush_probe());
        write_trampoline(tramp_atomic as *mut u8, probe::atomic_probe());
    }
    let mut cursor = region + 32;
    let end = region + estimate as u64;
    let mut chunks: Vec<(u64, u64)> = Vec::new();
    let mut patches = Vec::new();
    for mut plan in plans {
        for ins in plan.instrs.iter_mut() {
            if ins.code() == Code::Call_rel32_64 && ins.ip() == 0 && ins.near_branch64() == u64::MAX
            {
                ins.set_near_branch64(tramp_access);
            } else if ins.code() == Code::Call_rel32_64
                && ins.ip() == 0
                && ins.near_branch64() == u64::MAX - 1
            {
                ins.set_near_branch64(tramp_atomic);
            }
        }
        cursor = (cursor + 15) & !15;
        let block = InstructionBlock::new(&plan.instrs, cursor);
        let Ok(done) = BlockEncoder::encode(
            64,
            block,
            BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
        ) else {
            continue;
        };
        let len = done.code_buffer.len() as u64;
        if cursor + len > end {
            break;
        }
        if plan
            .chunk_starts
            .iter()
            .any(|&(i, _)| done.new_instruction_offsets[i] == u32::MAX)
        {
            continue;
        }
        // SAFETY: [cursor, cursor + len) is inside the writable region.
        unsafe {
            std::ptr::copy_nonoverlapping(
                done.code_buffer.as_ptr(),
                cursor as *mut u8,
                len as usize,
            )
        };
        for &(i, orig) in &plan.chunk_starts {
            chunks.push((cursor + done.new_instruction_offsets[i] as u64, orig));
        }
        patches.push((plan.func_addr, cursor));
        cursor += len;
    }
    // SAFETY: our region; from now on it is code.
    unsafe {
        libc::mprotect(
            region as *mut _,
            estimate,
            libc::PROT_READ | libc::PROT_EXEC,
        )
    };
    chunks.sort_unstable();
    Some((
        Map {
            sites,
            lo: region,
            hi: region + estimate as u64,
            chunks,
            exe_lo: exe.0,
            exe_hi: exe.1,
        },
        patches,
    ))
}

/// The copy of one function with its probes, or `None` to leave it alone.
fn plan_function(
    f: &Function,
    decoded: &[Instruction],
    sites: &mut Vec<Site>,
    factory: &mut InstructionInfoFactory,
    tls: i64,
) -> Option<Plan> {
    if f.size < 5 {
        return None;
    }
    let mut labels = LABELS;
    let mut instrs = Vec::with_capacity(decoded.len() * 3);
    let mut chunk_starts = Vec::with_capacity(decoded.len());
    let first_site = sites.len();
    for (k, ins) in decoded.iter().enumerate() {
        let start = instrs.len();
        chunk_starts.push((start, ins.ip()));
        match probe_for(ins, factory) {
            Some((op, size, flags, atomic)) => {
                // A plain `mov` store followed by a full fence is how gcc
                // compiles a store then `atomic_thread_fence(seq_cst)` (and,
                // before gcc 11, a seq_cst `atomic_store`): a release, as a
                // locked instruction is.
                let fenced = !atomic
                    && flags == 2
                    && ins.mnemonic() == Mnemonic::Mov
                    && decoded.get(k + 1).is_some_and(full_fence);
                let (flags, atomic) = if fenced {
                    (2 | 4, true)
                } else {
                    (flags, atomic)
                };
                let site = sites.len() as u32;
                sites.push(Site {
                    ip: ins.ip(),
                    size,
                    flags,
                });
                let mut seq = if atomic {
                    atomic_sequence(op.operand(16), site)?
                } else {
                    labels += 2;
                    inline_sequence(op.operand(24), site, tls, labels)?
                };
                // The probe takes the instruction's address, so that a branch
                // to the instruction runs its probe; the rest have ip 0.
                seq[0].set_ip(ins.ip());
                instrs.extend(seq);
                let mut copy = *ins;
                copy.set_ip(0);
                instrs.push(copy);
            }
            None => instrs.push(*ins),
        }
    }
    if sites.len() == first_site {
        // Nothing to observe: leave the function as it is.
        return None;
    }
    Some(Plan {
        func_addr: f.addr,
        instrs,
        chunk_starts,
    })
}

/// `mfence`, or `lock or qword ptr [rsp], 0` (gcc's cheaper full fence).
fn full_fence(ins: &Instruction) -> bool {
    ins.mnemonic() == Mnemonic::Mfence
        || (ins.has_lock_prefix()
            && ins.mnemonic() == Mnemonic::Or
            && ins.memory_base() == Register::RSP
            && ins.op_count() == 2
            && ins.op1_kind() != OpKind::Register
            && ins.immediate(1) == 0)
}

/// What to log for `ins`: its memory operand, size, flags and whether it
/// is atomic; `None` for instructions outside the captured class.
fn probe_for(
    ins: &Instruction,
    factory: &mut InstructionInfoFactory,
) -> Option<(Operand, u32, u8, bool)> {
    let explicit = (0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Memory);
    if !explicit || ins.flow_control() != FlowControl::Next {
        return None;
    }
    if matches!(
        ins.mnemonic(),
        Mnemonic::Lea
            | Mnemonic::Nop
            | Mnemonic::Push
            | Mnemonic::Pop
            | Mnemonic::Prefetch
            | Mnemonic::Prefetchnta
            | Mnemonic::Prefetcht0
            | Mnemonic::Prefetcht1
            | Mnemonic::Prefetcht2
            | Mnemonic::Prefetchw
            | Mnemonic::Clflush
            | Mnemonic::Clflushopt
            | Mnemonic::Clwb
    ) {
        return None;
    }
    let seg = ins.memory_segment();
    if seg == Register::FS || seg == Register::GS {
        return None;
    }
    if ins.memory_index().is_vector_register() {
        return None;
    }
    let info = factory.info(ins);
    // iced reports a RIP-relative operand as an absolute address.
    let rip = ins.memory_base() == Register::RIP;
    let used = info.used_memory().iter().find(|m| {
        if rip {
            m.base() == Register::None && m.displacement() == ins.memory_displacement64()
        } else {
            m.base() == ins.memory_base() && m.index() == ins.memory_index()
        }
    })?;
    let flags = match used.access() {
        OpAccess::Read | OpAccess::CondRead => 1,
        OpAccess::Write | OpAccess::CondWrite => 2,
        OpAccess::ReadWrite | OpAccess::ReadCondWrite => 3,
        _ => return None,
    };
    let size = used.memory_size().size() as u32;
    if size == 0 {
        return None;
    }
    let atomic = ins.has_lock_prefix() || ins.mnemonic() == Mnemonic::Xchg;
    let flags = if atomic { 3 | 4 } else { flags };
    let op = Operand {
        base: ins.memory_base(),
        index: ins.memory_index(),
        scale: ins.memory_index_scale(),
        displ: ins.memory_displacement64() as i64,
    };
    Some((op, size, flags, atomic))
}

/// `jmp qword ptr [rip + 0]` followed by the target.
///
/// # Safety
/// `at` must be 14 writable bytes.
unsafe fn write_trampoline(at: *mut u8, target: u64) {
    let mut b = [0u8; 14];
    b[0] = 0xff;
    b[1] = 0x25;
    b[6..14].copy_from_slice(&target.to_le_bytes());
    // SAFETY: the caller's guarantee.
    unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), at, 14) };
}

/// A fresh read-write mapping of `len` bytes within ±1 GiB of `near`.
fn map_near(near: u64, len: usize) -> Option<u64> {
    let len = (len + 4095) & !4095;
    let base = (near + (1 << 20) + 0xffff) & !0xffff;
    for step in 0..64u64 {
        let hint = base + step * (16 << 20);
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
        let p = unsafe {
            libc::mmap(
                hint as *mut _,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            let p = p as u64;
            if p.abs_diff(near) < (1 << 30) {
                return Some(p);
            }
            // SAFETY: our own mapping, not used.
            unsafe { libc::munmap(p as *mut _, len) };
        }
    }
    None
}

/// Writes `jmp rel32` at each function's entry.
pub fn patch_entries(patches: &[(u64, u64)], text: (u64, u64)) -> bool {
    let lo = text.0 & !4095;
    let hi = (text.1 + 4095) & !4095;
    let len = (hi - lo) as usize;
    // SAFETY: the executable's own text pages; the process has a single
    // thread while the constructor runs, and nothing executes them now.
    unsafe {
        if libc::mprotect(
            lo as *mut _,
            len,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
        ) != 0
        {
            return false;
        }
        for &(from, to) in patches {
            let rel = (to as i64 - (from as i64 + 5)) as i32;
            let mut b = [0xe9u8, 0, 0, 0, 0];
            b[1..5].copy_from_slice(&rel.to_le_bytes());
            std::ptr::copy_nonoverlapping(b.as_ptr(), from as *mut u8, 5);
        }
        libc::mprotect(lo as *mut _, len, libc::PROT_READ | libc::PROT_EXEC);
    }
    true
}
