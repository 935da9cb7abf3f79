//! Finding and arming the entry breakpoints of a process: which mapped
//! objects define the watched functions (by name through
//! `lockstep_symbols`, aliases included: static glibc defines
//! `pthread_mutex_lock` as an alias of `___pthread_mutex_lock`), where they
//! are at run time (link-time address + the mapping's load bias: 0 for a
//! non-PIE executable, computed from /proc/PID/maps otherwise), and the
//! int3 written over each first byte.

use super::emulate::{self, Insn};
use super::ops::SPECS;
use super::{Entry, Proc};
use crate::error::TraceeError;
use crate::tracee::Stopped;
use lockstep_symbols::{Mapping, Symbolizer};
use lockstep_trace::Pid;

const INT3: u64 = 0xcc;
const PT_INTERP: u32 = 3;

/// Whether the ELF file at `path` is statically linked: it has no
/// PT_INTERP program header (so no dynamic loader, and no LD_PRELOAD).
/// Unreadable or non-ELF files count as dynamic (nothing to arm).
pub fn is_static(path: &str) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    };
    // 64-bit little-endian ELF only (the recorder is x86-64).
    if bytes.get(0..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1]) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    !(0..phnum).any(|i| u32_at(phoff + i * phentsize) == Some(PT_INTERP))
}

/// The file-backed executable mappings of `pid` (the symbolizer's type).
pub fn exec_mappings(pid: Pid) -> Vec<Mapping> {
    crate::maps::exec_mappings(pid)
        .into_iter()
        .map(|m| Mapping {
            start: m.start,
            end: m.end,
            file_offset: m.file_offset,
            path: m.path,
        })
        .collect()
}

/// Arms every watched function defined by a mapped object of `t`'s
/// process not armed yet (`p.armed` lists the paths done). Functions whose
/// first word cannot be read are skipped. Returns how many were armed.
pub fn arm_new_objects(
    t: &Stopped,
    p: &mut Proc,
    sym: &mut Symbolizer,
    maps: &[Mapping],
) -> Result<usize, TraceeError> {
    let mut armed = 0;
    for m in maps {
        if p.armed.contains(&m.path) || m.path.contains("liblockstep_agent") {
            continue;
        }
        p.armed.push(m.path.clone());
        let Some(bias) = sym.load_bias(m) else {
            continue;
        };
        for (index, spec) in SPECS.iter().enumerate() {
            for (vaddr, _size) in sym.function_vaddrs(&m.path, spec.name) {
                let addr = vaddr.wrapping_add(bias);
                if !(m.start..m.end).contains(&addr) || p.entries.contains_key(&addr) {
                    continue;
                }
                if arm_one(t, p, index, addr)? {
                    armed += 1;
                }
            }
        }
    }
    Ok(armed)
}

/// Writes the int3 at `addr` and records the entry (original word and how
/// to step over its first instruction). False when `addr` is unreadable.
fn arm_one(t: &Stopped, p: &mut Proc, spec: usize, addr: u64) -> Result<bool, TraceeError> {
    let word = match t.peek(addr) {
        Ok(w) => w,
        Err(TraceeError::Died) => return Err(TraceeError::Died),
        Err(e) => {
            tracing::debug!(addr, "cannot read breakpoint site: {e:?}");
            return Ok(false);
        }
    };
    // Sixteen bytes are enough for every instruction the emulator decodes.
    let next = t.peek(addr + 8).unwrap_or(0);
    let mut code = [0u8; 16];
    code[..8].copy_from_slice(&word.to_le_bytes());
    code[8..].copy_from_slice(&next.to_le_bytes());
    let insn: Option<(Insn, usize)> = emulate::decode(&code);
    match t.poke(addr, (word & !0xff) | INT3) {
        Ok(()) => {}
        Err(TraceeError::Died) => return Err(TraceeError::Died),
        Err(e) => {
            tracing::debug!(addr, "cannot write breakpoint: {e:?}");
            return Ok(false);
        }
    }
    p.entries.insert(
        addr,
        Entry {
            spec,
            orig: word as u8,
            insn,
        },
    );
    Ok(true)
}

/// Puts byte `orig` back at `addr` (or, with `int3`, the breakpoint).
pub fn write_byte(t: &Stopped, addr: u64, byte: u8) -> Result<(), TraceeError> {
    let word = t.peek(addr)?;
    t.poke(addr, (word & !0xff) | byte as u64)
}

/// Writes an int3 at `addr`; returns the byte it replaced.
pub fn insert(t: &Stopped, addr: u64) -> Result<u8, TraceeError> {
    let word = t.peek(addr)?;
    t.poke(addr, (word & !0xff) | INT3)?;
    Ok(word as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dynamic_executables() {
        // The test binary itself is dynamically linked.
        let me = std::env::current_exe().unwrap();
        assert!(!is_static(me.to_str().unwrap()));
        assert!(!is_static("/nonexistent"));
    }
}
