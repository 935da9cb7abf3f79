//! File mappings in a replay. The program's `openat` was emulated, so the
//! fd its `mmap` names does not exist in the replayed process: the replayer
//! opens the recorded file in the tracee itself (an injected `openat`),
//! maps it at the recorded address, closes it again, and hands the program
//! the recorded return value. When the file is gone (deleted since, or a
//! temporary file of the recording), anonymous memory is mapped there
//! instead: right for files the program made and filled itself, and caught
//! by `--verify` otherwise.
//!
//! Injection works at a syscall-entry stop: the registers are turned into
//! another call, the thread runs to that call's exit stop, and to make one
//! more call it is sent back over its `syscall` instruction (`rip - 2`).

use crate::script::Call;
use lockstep_recorder::error::TraceeError;
use lockstep_recorder::tracee::{Stop, Stopped};
use lockstep_trace::DataKind;
use std::path::Path;

const NR_MMAP: u64 = 9;
const NR_OPENAT: u64 = 257;
const NR_CLOSE: u64 = 3;
const AT_FDCWD: u64 = (-100i64) as u64;
const MAP_SHARED: u64 = 0x01;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const PROT_WRITE: u64 = 0x2;
const MAP_DENYWRITE: u64 = 0x800;
/// Bytes below the stack pointer the x86-64 ABI lets leaf code use; the
/// path string is written under them.
const RED_ZONE: u64 = 128;

/// The recorded file behind the mapping, if it is still there.
fn live_file(call: &Call) -> Option<String> {
    let o = call.object.as_deref()?;
    if o.ends_with(" (deleted)") || !o.starts_with('/') {
        return None;
    }
    Path::new(o).is_file().then(|| o.to_string())
}

/// What a shared writable file mapping held when recorded, if kept.
fn shared_contents(call: &Call) -> Option<&[u8]> {
    let shared_writable = call.args[3] & MAP_SHARED != 0 && call.args[2] & PROT_WRITE != 0;
    let r = call
        .data
        .iter()
        .find(|r| r.kind == DataKind::Out && Some(r.addr as i64) == call.ret)?;
    shared_writable.then_some(r.bytes.as_slice())
}

/// The flags of the anonymous stand-in for a vanished file: private (a
/// shared anonymous mapping has a fixed size, and the program may grow it
/// with mremap as it grew its file), fixed, no MAP_DENYWRITE.
fn anonymous(flags: u64) -> u64 {
    const MAP_PRIVATE: u64 = 0x02;
    (flags & !(MAP_SHARED | MAP_DENYWRITE)) | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS
}

/// Runs the call the registers describe (the thread is at a syscall-entry
/// stop) to its exit stop; returns the thread and the call's result.
fn run_to_exit(t: Stopped) -> Result<(Stopped, i64), TraceeError> {
    match t.syscall_step()? {
        (Stop::Syscall, Some(t)) => {
            let r = t.regs()?.rax as i64;
            Ok((t, r))
        }
        _ => Err(TraceeError::Died),
    }
}

/// From an exit stop, makes the thread enter `nr(args)` (back over its
/// `syscall` instruction) and runs it to its exit stop.
fn again(
    t: Stopped,
    saved: &libc::user_regs_struct,
    nr: u64,
    args: [u64; 6],
) -> Result<(Stopped, i64), TraceeError> {
    let mut r = *saved;
    r.rip = saved.rip - 2;
    r.rax = nr;
    t.set_regs(r)?;
    let t = match t.syscall_step()? {
        (Stop::Syscall, Some(t)) => t,
        _ => return Err(TraceeError::Died),
    };
    let mut r = t.regs()?;
    r.orig_rax = nr;
    (r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9) =
        (args[0], args[1], args[2], args[3], args[4], args[5]);
    t.set_regs(r)?;
    run_to_exit(t)
}

/// Replays the file-backed `mmap` the thread is entering: maps the
/// recorded file (or anonymous memory) at the recorded address. Returns
/// the thread at the exit stop of the mmap, with the live result (which
/// should be the recorded address) in `rax`.
pub fn map_file(t: Stopped, call: &Call) -> Result<(Stopped, i64), TraceeError> {
    let a = call.args;
    let want = call.ret.unwrap_or(-1);
    if want < 0 {
        // The recorded call failed: emulate the failure.
        crate::sysdata::skip_call(&t)?;
        return run_to_exit(t);
    }
    let saved = t.regs()?;
    // A shared writable mapping whose contents the recording kept: shared
    // anonymous memory (still shared with fork children) holding them.
    if let Some(kept) = shared_contents(call) {
        let mut r = saved;
        let flags = (a[3] & !MAP_DENYWRITE) | MAP_FIXED | MAP_ANONYMOUS;
        (r.rdi, r.r10, r.r8, r.r9) = (want as u64, flags, u64::MAX, 0);
        t.set_regs(r)?;
        let (t, got) = run_to_exit(t)?;
        if got == want && !t.write_mem(want as u64, kept) {
            tracing::warn!(
                addr = want,
                "could not put a shared mapping's recorded contents back"
            );
        }
        return Ok((t, got));
    }
    let Some(path) = live_file(call) else {
        let mut r = saved;
        (r.rdi, r.r10, r.r8, r.r9) = (want as u64, anonymous(a[3]), u64::MAX, 0);
        t.set_regs(r)?;
        return run_to_exit(t);
    };
    // The path goes below the red zone, saved and restored around the calls.
    let mut bytes = path.into_bytes();
    bytes.push(0);
    let scratch = (saved.rsp - RED_ZONE - bytes.len() as u64 - 64) & !15;
    let mut old = vec![0u8; bytes.len()];
    {
        use lockstep_recorder::mem::{Memory, ProcMem};
        let mem = ProcMem {
            pid: lockstep_trace::Pid(t.tid().0),
        };
        mem.read(scratch, &mut old);
    }
    if !t.write_mem(scratch, &bytes) {
        return Err(TraceeError::Died);
    }
    let writable = a[3] & MAP_SHARED != 0 && a[2] & PROT_WRITE != 0;
    let flags = if writable {
        libc::O_RDWR
    } else {
        libc::O_RDONLY
    } as u64;
    let mut r = saved;
    r.orig_rax = NR_OPENAT;
    (r.rdi, r.rsi, r.rdx, r.r10) = (AT_FDCWD, scratch, flags | libc::O_CLOEXEC as u64, 0);
    t.set_regs(r)?;
    let (t, fd) = run_to_exit(t)?;
    t.write_mem(scratch, &old);
    if fd < 0 {
        // Unreadable now: anonymous memory, as for a vanished file.
        let anon = [want as u64, a[1], a[2], anonymous(a[3]), u64::MAX, 0];
        let (t, got) = again(t, &saved, NR_MMAP, anon)?;
        return Ok((t, got));
    }
    let fixed = [want as u64, a[1], a[2], a[3] | MAP_FIXED, fd as u64, a[5]];
    let (t, got) = again(t, &saved, NR_MMAP, fixed)?;
    let (t, _) = again(t, &saved, NR_CLOSE, [fd as u64, 0, 0, 0, 0, 0])?;
    let mut r = saved;
    r.rax = got as u64;
    t.set_regs(r)?;
    Ok((t, got))
}
