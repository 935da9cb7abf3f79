//! The probes that instrumented code calls before each memory access, in
//! assembly: they must preserve every register and the flags of code that
//! was never compiled to call anything there.
//!
//! The instrumented copy of an instruction that touches memory is preceded
//! by (see [`super::rewrite`]):
//!
//! ```text
//! lea  rsp, [rsp - 128]      ; step over the red zone
//! push rdi
//! push rsi
//! lea  rdi, [same operand]   ; the effective address
//! mov  esi, SITE             ; index into the site table
//! call <trampoline>          ; jmp [rip+0] to lockstep_probe_access/_atomic
//! pop  rsi
//! pop  rdi
//! lea  rsp, [rsp + 128]
//! ```
//!
//! The fast path appends `(addr, site)` (16 bytes) to the thread's raw
//! buffer, whose cursor and limit live in an initial-exec TLS block
//! (`lockstep_mem_tls`, two words) so that the probe reaches them with one
//! `fs:` load: about a dozen instructions, no call into Rust. A full (or
//! not yet allocated) buffer, an atomic instruction, or a pending "after
//! the atomic" event (signalled by a zero limit) take the slow path, which
//! saves the remaining caller-saved registers and the SSE state and calls
//! [`super::slow_path`].

use core::arch::global_asm;

/// Bytes between the slow path's frame pointer and the instrumented code's
/// stack pointer: return into the stub (8), the stub's pushes (flags, rax,
/// rcx: 24), return into the probe sequence (8), rdi and rsi (16), the red
/// zone (128), and the slow path's own saved rbp (8).
pub const ORIGINAL_SP_FROM_FP: usize = 192;

global_asm!(
    r#"
    .section .tbss,"awT",@nobits
    .p2align 4
    .type lockstep_mem_tls,@object
    .size lockstep_mem_tls, 16
lockstep_mem_tls:
    .zero 16

    .text
    .p2align 4
    .globl lockstep_probe_access
    .hidden lockstep_probe_access
    .type lockstep_probe_access,@function
lockstep_probe_access:
    pushfq
    push rax
    push rcx
    mov rax, qword ptr [rip + lockstep_mem_tls@GOTTPOFF]
    mov rcx, qword ptr fs:[rax]
    cmp rcx, qword ptr fs:[rax + 8]
    jae 2f
    mov qword ptr [rcx], rdi
    mov dword ptr [rcx + 8], esi
    add rcx, 16
    mov qword ptr fs:[rax], rcx
1:
    pop rcx
    pop rax
    popfq
    ret
2:
    xor eax, eax
    call lockstep_probe_slow
    jmp 1b
    .size lockstep_probe_access, .-lockstep_probe_access

    .p2align 4
    .globl lockstep_probe_atomic
    .hidden lockstep_probe_atomic
    .type lockstep_probe_atomic,@function
lockstep_probe_atomic:
    pushfq
    push rax
    push rcx
    mov eax, 1
    call lockstep_probe_slow
    pop rcx
    pop rax
    popfq
    ret
    .size lockstep_probe_atomic, .-lockstep_probe_atomic

    .p2align 4
    .type lockstep_probe_slow,@function
lockstep_probe_slow:
    push rbp
    mov rbp, rsp
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    and rsp, -64
    sub rsp, 512
    fxsave64 [rsp]
    mov edx, eax
    mov rcx, qword ptr [rbp]
    lea r8, [rbp + {sp_from_fp}]
    call {slow}
    fxrstor64 [rsp]
    lea rsp, [rbp - 56]
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rbp
    ret
    .size lockstep_probe_slow, .-lockstep_probe_slow

    .p2align 4
    .type lockstep_mem_tls_addr,@function
lockstep_mem_tls_addr:
    mov rax, qword ptr [rip + lockstep_mem_tls@GOTTPOFF]
    add rax, qword ptr fs:[0]
    ret
    .size lockstep_mem_tls_addr, .-lockstep_mem_tls_addr
"#,
    slow = sym super::slow_path,
    sp_from_fp = const ORIGINAL_SP_FROM_FP,
);

extern "C" {
    fn lockstep_probe_access();
    fn lockstep_probe_atomic();
    fn lockstep_mem_tls_addr() -> *mut [usize; 2];
}

/// The address of the plain-access probe.
pub fn access_probe() -> u64 {
    lockstep_probe_access as *const () as u64
}

/// The address of the atomic-instruction probe.
pub fn atomic_probe() -> u64 {
    lockstep_probe_atomic as *const () as u64
}

/// The calling thread's `[cursor, limit]` pair.
#[inline(always)]
pub fn cursor() -> *mut [usize; 2] {
    // SAFETY: reads the thread pointer and a link-time constant; no
    // memory of the program is touched.
    unsafe { lockstep_mem_tls_addr() }
}
