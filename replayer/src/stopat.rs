//! `replay --stop-at SEQ`: the thread's registers and symbolized stack at
//! the first recorded event at or after SEQ, as a debugger would show them.

use crate::script::Call;
use lockstep_recorder::tracee::Stopped;
use lockstep_trace::Pid;
use std::fmt::Write;

/// The report printed when the replay reaches the `--stop-at` event.
pub fn report(t: &Stopped, call: &Call, live_pid: Pid) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "stopped at event {} in thread {} (process {}): entering {}",
        call.entry_seq, call.tid.0, call.pid.0, call.name
    );
    let Ok(r) = t.regs() else {
        return s;
    };
    let regs = [
        ("rip", r.rip),
        ("rsp", r.rsp),
        ("rbp", r.rbp),
        ("rax", r.orig_rax),
        ("rdi", r.rdi),
        ("rsi", r.rsi),
        ("rdx", r.rdx),
        ("r10", r.r10),
        ("r8", r.r8),
        ("r9", r.r9),
        ("rbx", r.rbx),
        ("rcx", r.rcx),
        ("r11", r.r11),
        ("r12", r.r12),
        ("r13", r.r13),
        ("r14", r.r14),
        ("r15", r.r15),
        ("eflags", r.eflags),
        ("fs_base", r.fs_base),
    ];
    for chunk in regs.chunks(4) {
        let line: Vec<String> = chunk
            .iter()
            .map(|(n, v)| format!("{n:>7} {v:#018x}"))
            .collect();
        let _ = writeln!(s, "{}", line.join("  "));
    }
    let maps = lockstep_recorder::maps::exec_mappings(live_pid);
    let stack = lockstep_recorder::unwind::scan(live_pid, r.rip, r.rsp, &maps);
    let maps = symbol_maps(live_pid);
    let mut sym = lockstep_symbols::Symbolizer::new();
    let mem = lockstep_recorder::mem::ProcMem { pid: live_pid };
    let _ = writeln!(s, "stack:");
    for (i, &pc) in stack.iter().enumerate() {
        // Code run from the agent's instrumented copies: named by the
        // original instruction.
        let pc = lockstep_recorder::copies::original(&mem, pc);
        let frames = if i == 0 {
            sym.symbolize(&maps, pc)
        } else {
            sym.symbolize_return_address(&maps, pc)
        };
        match frames.first() {
            Some(f) => {
                let _ = writeln!(s, "  #{i} {pc:#x} {f}");
            }
            None => {
                let _ = writeln!(s, "  #{i} {pc:#x}");
            }
        }
    }
    s
}

/// The live mappings of `pid` as the symbolizer takes them.
pub fn symbol_maps(pid: Pid) -> Vec<lockstep_symbols::Mapping> {
    std::fs::read_to_string(format!("/proc/{}/maps", pid.0))
        .map(|t| lockstep_symbols::parse_proc_maps(&t))
        .unwrap_or_default()
}
