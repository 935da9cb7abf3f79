//! CPU binding of the recording.
//!
//! A ptrace stop is two context switches between the tracee and the tracer.
//! When they sit on different CPUs each switch is a cross-CPU wakeup, and on
//! a VM waking an idle vCPU goes through the hypervisor: measured here, 200k
//! getppid() calls under `strace -f` take 6.8 s on two CPUs and 0.93 s with
//! tracer and tracee on one. So, like rr, lockstep by default runs the tracer
//! thread and the whole recorded tree on one CPU, and the trace writer on
//! the others.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid as NixPid;

/// Where the recording runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CpuBinding {
    /// One CPU of those allowed, chosen by lockstep (the default).
    #[default]
    Auto,
    /// This CPU.
    Cpu(usize),
    /// No binding: the program runs on every allowed CPU.
    Unbound,
}

/// The CPU chosen for the tracer and the tracees, if any.
pub fn choose(binding: CpuBinding) -> Option<usize> {
    let allowed = sched_getaffinity(NixPid::from_raw(0)).ok()?;
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| allowed.is_set(c).unwrap_or(false))
        .collect();
    match binding {
        CpuBinding::Unbound => None,
        CpuBinding::Cpu(c) => Some(c),
        // The last allowed CPU: CPU 0 tends to take more interrupts.
        CpuBinding::Auto => cpus.last().copied(),
    }
}

/// Binds the calling thread to `cpu`.
pub fn bind_this_thread(cpu: usize) -> nix::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(NixPid::from_raw(0), &set)
}

/// Keeps the calling thread off `cpu` when other CPUs are allowed.
pub fn avoid_in_this_thread(cpu: usize) {
    if let Ok(mut set) = sched_getaffinity(NixPid::from_raw(0)) {
        let others = (0..CpuSet::count())
            .filter(|&c| c != cpu && set.is_set(c).unwrap_or(false))
            .count();
        if others > 0 && set.unset(cpu).is_ok() {
            let _ = sched_setaffinity(NixPid::from_raw(0), &set);
        }
    }
}

/// Gives the calling (tracer) thread the highest real-time priority, when
/// allowed. Bound to one CPU with the program, a tracer of normal priority
/// would starve behind any SCHED_FIFO/SCHED_RR thread of the program (the
/// Mars Pathfinder fixture spins at FIFO 20); at the top priority it runs
/// whenever a stop wakes it, and it spends the rest of its time blocked in
/// waitpid. Called after the program was forked, so the program does not
/// inherit it (SCHED_RESET_ON_FORK keeps later forks clean too).
pub fn raise_tracer_priority() -> bool {
    // SAFETY: sched_get_priority_max and sched_setscheduler on the calling
    // thread with a valid sched_param.
    unsafe {
        let max = libc::sched_get_priority_max(libc::SCHED_FIFO);
        let param = libc::sched_param {
            sched_priority: max,
        };
        libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param) == 0
    }
}
