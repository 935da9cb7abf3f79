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

extern "C" fn on_tick(_sig: libc::c_int) {}

/// Makes the tracer's wait return EINTR every `period_ms`, so that records
/// of an idle program are handed to the writer in time.
pub fn start_ticker(period_ms: u64) {
    // SAFETY: a zeroed sigaction with a no-op handler; setitimer with a
    // valid itimerval.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_tick as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
        let tv = libc::timeval {
            tv_sec: (period_ms / 1000) as _,
            tv_usec: ((period_ms % 1000) * 1000) as _,
        };
        let it = libc::itimerval {
            it_interval: tv,
            it_value: tv,
        };
        libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut());
    }
}

/// Stops the ticker.
pub fn stop_ticker() {
    // SAFETY: setitimer with a zeroed itimerval disarms the timer.
    unsafe {
        let it: libc::itimerval = std::mem::zeroed();
        libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut());
    }
}

/// Blocks the recorder's signals in the calling (helper) thread, so that
/// they interrupt the tracer thread's wait and nothing else.
pub fn block_in_this_thread() {
    // SAFETY: building a sigset and setting this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGALRM,
        ] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Whether a signal for the recorder is waiting to be forwarded (without
/// taking it).
pub fn is_pending() -> bool {
    PENDING.load(Ordering::SeqCst) != 0
}

/// Takes the signal to forward, if any.
pub fn take_pending() -> Option<i32> {
    match PENDING.swap(0, Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}
