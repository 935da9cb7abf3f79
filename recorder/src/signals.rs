//! Signals sent to the recorder itself. Ctrl-C at a terminal reaches the
//! whole foreground process group, the program included, so the recorder
//! only keeps going and lets the program decide; a signal sent to the
//! recorder alone (kill, a CI runner's SIGTERM) is passed on to the program.

use std::sync::atomic::{AtomicI32, Ordering};

/// The last signal sent to the recorder by a process (not by the terminal),
/// still to be forwarded; 0 when none.
static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    // SI_KERNEL / tty-generated signals went to the whole process group.
    if code <= 0 {
        PENDING.store(sig, Ordering::SeqCst);
    }
}

/// Installs the handlers for SIGINT, SIGTERM, SIGHUP and SIGQUIT, without
/// SA_RESTART so that the tracer's waitpid returns EINTR.
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: a zeroed sigaction with a valid handler and empty mask is
        // a well-formed argument; the handler only touches an atomic.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Takes the signal to forward, if any.
pub fn take_pending() -> Option<i32> {
    match PENDING.swap(0, Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}
