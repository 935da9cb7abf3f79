//! The probes that instrumented code runs before each memory access: they
//! must preserve every register and the flags of code that was never
//! compiled to call anything there.
//!
//! A plain access runs an inline fast path that [`super::rewrite`] lays
//! out before the instruction; it touches no flags (only `mov`, `lea`,
//! `not` and `jrcxz`), so it needs no `pushfq`/`popfq`, and it calls
//! nothing:
//!
//! ```text
//! lea  rsp, [rsp - 128]          ; step over the red zone
//! push rax / push rcx / push rdx
//! lea  rax, [same operand]       ; the effective address
//! mov  rdx, fs:[TLS + 8]         ; end of the raw buffer = the site cache
//! mov  rcx, [rdx + SITE*8]       ; this site's last address in the segment
//! not  rcx
//! lea  rcx, [rcx + rax + 1]      ; rax - last: zero when the same address
//! jrcxz done                     ; already logged in this segment
//! mov  rcx, fs:[TLS]             ; -(2 x free entries), 0 = take the slow path
//! jrcxz slow
//! mov  [rdx + SITE*8], rax       ; remember the address
//! mov  [rdx + rcx*8], rax        ; append (addr, site) below the end
//! mov  dword ptr [rdx + rcx*8 + 8], SITE
//! lea  rcx, [rcx + 2]
//! mov  fs:[TLS], rcx
//! jmp  done
//! slow: push rdi / push rsi; mov rdi, rax; mov esi, SITE
//!       call <trampoline>        ; jmp [rip+0] to lockstep_probe_flush
//!       pop rsi / pop rdi
//! done: pop rdx / pop rcx / pop rax
//! lea  rsp, [rsp + 128]
//! ```
//!
//! `TLS` is the thread-pointer offset of `lockstep_mem_tls`, an
//! initial-exec TLS pair `[index, end]` (the same offset in every thread,
//! known once the agent is loaded: see [`tls_offset`]). The index counts
//! up from `-2 x capacity` to 0, so a full buffer, a thread that has no
//! buffer yet and a closed fast path (an atomic's `Acquired` pending) are
//! all "index 0", and however a signal handler interleaves with the
//! sequence, the index stays in the buffer's range: an interleaving can
//! lose the handler's entries, never write outside the buffer.
//!
//! The site cache (one word per site, right after the buffer) is what
//! makes a loop cheap: an instruction that reads the same address again
//! in the same segment (a loop counter, `m->sz`, the base pointer of an
//! array) costs six instructions and no entry. Every cached address has an
//! entry in the raw buffer, and absorbing the buffer clears the cache
//! words of its entries, so the cache is empty after each segment.
//!
//! Atomic instructions keep a call: `lea rsp, [rsp-128]; push rdi; push
//! rsi; lea rdi, [operand]; mov esi, SITE; call lockstep_probe_atomic`,
//! which saves the remaining caller-saved registers, the flags and the SSE
//! state and calls [`super::slow_path`], as `lockstep_probe_flush` does.

use core::arch::global_asm;

/// Bytes between the slow path's frame pointer and the instrumented code's
/// stack pointer in the atomic probe: return into the stub (8), the stub's
/// pushes (flags, rax, rcx: 24), return into the probe sequence (8), rdi
/// and rsi (16), the red zone (128), and the slow path's own saved rbp (8).
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
    .globl lockstep_probe_flush
    .hidden lockstep_probe_flush
    .type lockstep_probe_flush,@function
lockstep_probe_flush:
    pushfq
    push rax
    push rcx
    xor eax, eax
    call lockstep_probe_slow
    pop rcx
    pop rax
    popfq
    ret
    .size lockstep_probe_flush, .-lockstep_probe_flush

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

    .p2align 4
    .type lockstep_mem_tls_off,@function
lockstep_mem_tls_off:
    mov rax, qword ptr [rip + lockstep_mem_tls@GOTTPOFF]
    ret
    .size lockstep_mem_tls_off, .-lockstep_mem_tls_off
"#,
    slow = sym super::slow_path,
    sp_from_fp = const ORIGINAL_SP_FROM_FP,
);

extern "C" {
    fn lockstep_probe_flush();
    fn lockstep_probe_atomic();
    fn lockstep_mem_tls_addr() -> *mut [isize; 2];
    fn lockstep_mem_tls_off() -> i64;
}

/// The address of the plain accesses' slow path.
pub fn flush_probe() -> u64 {
    lockstep_probe_flush as *const () as u64
}

/// The address of the atomic-instruction probe.
pub fn atomic_probe() -> u64 {
    lockstep_probe_atomic as *const () as u64
}

/// The calling thread's `[index, end]` pair (see the module doc).
#[inline(always)]
pub fn tls() -> *mut [isize; 2] {
    // SAFETY: reads the thread pointer and a link-time constant; no
    // memory of the program is touched.
    unsafe { lockstep_mem_tls_addr() }
}

/// The offset of the TLS pair from the thread pointer (`fs:` base), the
/// same in every thread of the process: initial-exec TLS of an object
/// loaded at startup.
pub fn tls_offset() -> i64 {
    // SAFETY: returns a value the dynamic linker wrote into the GOT.
    unsafe { lockstep_mem_tls_off() }
}
