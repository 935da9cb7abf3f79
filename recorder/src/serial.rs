//! `record --serialize`: one thread of the whole tree runs the program's
//! code at a time. Threads may sit in the kernel together (a futex wait, a
//! pipe read), but only the thread the recorder chose runs user code; the
//! others are held at their syscall-exit stop (or their first stop, or
//! where they were preempted) until chosen. A thread that runs a whole
//! time slice without a syscall is stopped with PTRACE_INTERRUPT and its
//! registers and stack-top checksum are recorded, so that a spin-wait
//! cannot hang the recording and a replay can stop it at the same point.
//!
//! Where the preemption lands matters for the replay, which must find the
//! same point without counting instructions: at the end of its slice the
//! thread is first let run on to the return address of its current frame
//! (a hardware breakpoint there), a point a replay reaches in a few passes
//! even inside a counting loop; only if it does not get there within
//! another slice (a spin-wait that never returns) is it stopped where it is.
//!
//! Every decision is a [`SerialEvent`] in the trace, in the global order;
//! the replayer takes the same decisions at the same points.
//!
//! `--chaos[=SEED]` makes the choices random in the manner of PCT
//! (probabilistic concurrency testing): each thread gets a random
//! priority, the highest-priority ready thread runs, and at a few random
//! decision points the running thread's priority drops below everyone's;
//! time slices are random too. The seed is in the trace's meta.

use crate::mem::{Memory, ProcMem};
use crate::tracee::Stopped;
use lockstep_trace::{Pid, PreemptPoint, Tid};
use std::collections::HashMap;

/// How long a thread runs user code before it is preempted.
const SLICE_NS: u64 = 20_000_000;
/// How many priority change points a chaos run gets, spread over this
/// many decisions.
const CHANGE_POINTS: usize = 3;
const CHANGE_SPAN: u64 = 2_000;

/// xorshift64*: small, seedable, good enough to shuffle schedules.
struct Rng(u64);

impl Rng {
    /// A non-zero state from any seed (splitmix64 of it), so that nearby
    /// seeds give unrelated schedules.
    fn seeded(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)).max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

struct Chaos {
    rng: Rng,
    priority: HashMap<Tid, u64>,
    change_at: Vec<u64>,
    lowest: u64,
}

/// How far the preemption of the running thread has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Its slice is over: asked (through the agent's shared area) to stop
    /// at a yield point as it enters its next sync call, since then.
    AskedAgent(u64),
    /// Interrupted at the end of its slice (or of its yield wait), since
    /// then; asked again if no stop came for a whole slice.
    Asked(u64),
    /// Running on to the breakpoint at its frame's return address, since then.
    Deferred(u64),
    /// Interrupted again: preempted wherever it is.
    AskedAgain,
}

/// How the recorder is to preempt the thread whose slice is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// Ask the agent for a yield point at its next sync call.
    Agent,
    /// Interrupt it (PTRACE_INTERRUPT) and find a point by breakpoint.
    Interrupt,
}

/// What the recorder does with a PTRACE_EVENT_STOP it asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupted {
    /// Not a preemption stop (or the thread no longer runs user code).
    No,
    /// Let it run on to its frame's return address.
    Defer,
    /// Preempt it here.
    Now,
}

/// The serializing scheduler's state.
pub struct Serial {
    ready: Vec<Stopped>,
    running: Option<(Tid, u64)>,
    interrupting: Option<(Tid, Stage)>,
    /// The running thread has the return-address breakpoint armed.
    armed: Option<Tid>,
    decisions: u64,
    chaos: Option<Chaos>,
    /// The agent is loaded (yield points at sync calls are available).
    agent: bool,
    /// The running thread has a signal held back: its slice is over now,
    /// alone or not.
    urgent: Option<Tid>,
}

impl Serial {
    /// The root runs first (it is alone). `agent`: the in-process agent is
    /// loaded, so a slice first ends at the thread's next sync call.
    pub fn new(root: Tid, now_ns: u64, chaos_seed: Option<u64>, agent: bool) -> Serial {
        let chaos = chaos_seed.map(|seed| {
            let mut rng = Rng::seeded(seed);
            let change_at = (0..CHANGE_POINTS)
                .map(|_| rng.next() % CHANGE_SPAN)
                .collect();
            Chaos {
                rng,
                priority: HashMap::new(),
                change_at,
                lowest: u64::MAX / 2,
            }
        });
        Serial {
            ready: Vec::new(),
            running: Some((root, now_ns)),
            interrupting: None,
            armed: None,
            decisions: 0,
            chaos,
            agent,
            urgent: None,
        }
    }

    /// `tid` has an asynchronous signal held back until its next syscall
    /// or preemption: it is preempted as soon as it can be.
    pub fn urge(&mut self, tid: Tid) {
        self.urgent = Some(tid);
    }

    /// Holds `t` (at a syscall exit, its first stop, or preempted) until chosen.
    pub fn hold(&mut self, t: Stopped) {
        if self.urgent == Some(t.tid()) {
            self.urgent = None;
        }
        if self.running.is_some_and(|(r, _)| r == t.tid()) {
            self.running = None;
        }
        if let Some(c) = &mut self.chaos {
            let p = c.rng.next() % (u64::MAX / 4) + u64::MAX / 2;
            c.priority.entry(t.tid()).or_insert(p);
        }
        self.ready.push(t);
    }

    /// The running thread entered a syscall: the user-code slot is free.
    pub fn entered_kernel(&mut self, tid: Tid) {
        if self.urgent == Some(tid) {
            self.urgent = None;
        }
        if self.running.is_some_and(|(r, _)| r == tid) {
            self.running = None;
        }
    }

    /// A thread died.
    pub fn gone(&mut self, tid: Tid) {
        self.entered_kernel(tid);
        self.ready.retain(|t| t.tid() != tid);
        if self.interrupting.is_some_and(|(t, _)| t == tid) {
            self.interrupting = None;
        }
        if self.armed == Some(tid) {
            self.armed = None;
        }
    }

    /// The thread to run next when nothing runs user code, taken off the
    /// ready list (it is now the running one).
    pub fn pick(&mut self, now_ns: u64) -> Option<Stopped> {
        if self.running.is_some() || self.ready.is_empty() {
            return None;
        }
        let i = match &mut self.chaos {
            None => 0,
            Some(c) => {
                let best = (0..self.ready.len())
                    .max_by_key(|&i| c.priority.get(&self.ready[i].tid()).copied().unwrap_or(0))
                    .expect("not empty");
                if c.change_at.contains(&self.decisions) {
                    // A change point: the chosen thread drops below everyone.
                    c.lowest -= 1;
                    c.priority.insert(self.ready[best].tid(), c.lowest);
                }
                best
            }
        };
        self.decisions += 1;
        let t = self.ready.remove(i);
        self.running = Some((t.tid(), now_ns));
        Some(t)
    }

    /// The running thread to preempt, when its slice is over (once) and
    /// another thread is ready to run user code. While the others all wait
    /// in the kernel (a worker computing while its peers sleep on a
    /// condvar) a preemption would only choose the same thread again, and
    /// each one is a point a replay must find by breakpoint passes.
    ///
    /// A slice ends first at the thread's next sync call (a yield point,
    /// counted exactly: see [`Ask::Agent`]); a thread that makes none for
    /// another slice (a spin-wait on a plain flag) is interrupted.
    pub fn due_preemption(&mut self, now_ns: u64) -> Option<(Tid, Ask)> {
        let others_ready = !self.ready.is_empty();
        self.slice_over(now_ns, others_ready)
    }

    fn slice_over(&mut self, now_ns: u64, others_ready: bool) -> Option<(Tid, Ask)> {
        let (tid, since) = self.running?;
        let urgent = self.urgent == Some(tid);
        if !others_ready && !urgent {
            return None;
        }
        let slice = match &mut self.chaos {
            None => SLICE_NS,
            Some(c) => SLICE_NS / 4 + c.rng.next() % SLICE_NS,
        };
        let over = |from: u64| urgent || now_ns.saturating_sub(from) >= slice;
        match self.interrupting {
            None if over(since) && self.agent => {
                self.interrupting = Some((tid, Stage::AskedAgent(now_ns)));
                Some((tid, Ask::Agent))
            }
            None if over(since) => {
                self.interrupting = Some((tid, Stage::Asked(now_ns)));
                Some((tid, Ask::Interrupt))
            }
            Some((t, Stage::AskedAgent(at))) if t == tid && over(at) => {
                self.interrupting = Some((tid, Stage::Asked(now_ns)));
                Some((tid, Ask::Interrupt))
            }
            Some((t, Stage::Asked(at))) if t == tid && over(at) => {
                // The interruption's stop never came (it can be lost to a
                // signal-delivery stop): asked again.
                self.interrupting = Some((tid, Stage::Asked(now_ns)));
                Some((tid, Ask::Interrupt))
            }
            Some((t, Stage::Deferred(at))) if t == tid && over(at) => {
                self.interrupting = Some((tid, Stage::AskedAgain));
                Some((tid, Ask::Interrupt))
            }
            _ => None,
        }
    }

    /// The thread the agent is to stop at its next sync call, if any.
    pub fn yield_wanted(&self) -> Option<Tid> {
        match self.interrupting {
            Some((t, Stage::AskedAgent(_))) if self.running.is_some_and(|(r, _)| r == t) => Some(t),
            _ => None,
        }
    }

    /// A yield point of `tid` was reached: whether it is the preemption
    /// asked for (else it came too late, and is the agent's own call).
    pub fn yielded(&mut self, tid: Tid) -> bool {
        if self.yield_wanted() != Some(tid) {
            return false;
        }
        self.interrupting = None;
        true
    }

    /// What a PTRACE_EVENT_STOP of `tid` is.
    pub fn interrupted(&mut self, tid: Tid, now_ns: u64) -> Interrupted {
        let Some((t, stage)) = self.interrupting else {
            return Interrupted::No;
        };
        if t != tid || self.running.is_none_or(|(r, _)| r != tid) {
            return Interrupted::No;
        }
        match stage {
            Stage::Asked(_) => {
                self.interrupting = Some((tid, Stage::Deferred(now_ns)));
                Interrupted::Defer
            }
            Stage::AskedAgain => {
                self.interrupting = None;
                Interrupted::Now
            }
            Stage::Deferred(_) | Stage::AskedAgent(_) => Interrupted::No,
        }
    }

    /// The return-address breakpoint is armed in the running thread.
    pub fn arm(&mut self, tid: Tid) {
        self.armed = Some(tid);
    }

    /// Whether `tid` has the breakpoint armed; disarms the bookkeeping
    /// (the caller clears the debug register).
    pub fn take_armed(&mut self, tid: Tid) -> bool {
        if self.armed != Some(tid) {
            return false;
        }
        self.armed = None;
        if self.interrupting.is_some_and(|(t, _)| t == tid) {
            self.interrupting = None;
        }
        true
    }

    /// The preemption was given up (the thread entered a syscall first).
    pub fn not_preempted(&mut self, tid: Tid) {
        if self.interrupting.is_some_and(|(t, _)| t == tid) {
            self.interrupting = None;
        }
    }

    pub fn running(&self) -> Option<Tid> {
        self.running.map(|(t, _)| t)
    }
}

/// The first return address up the frame-pointer chain that lies in the
/// program's or a library's code (not lockstep's agent, not anonymous
/// memory such as the agent's instrumented copies, whose frames return
/// on every memory access): where a deferred preemption waits.
pub fn return_point(t: &Stopped, maps: &[lockstep_trace::Mapping]) -> Option<u64> {
    let mut rbp = t.regs().ok()?.rbp;
    for _ in 0..16 {
        if rbp == 0 || rbp % 8 != 0 {
            return None;
        }
        let ret = t.peek(rbp + 8).ok()?;
        let m = maps.iter().find(|m| ret >= m.start && ret < m.end);
        if let Some(m) = m {
            if !m.path.is_empty() && !m.path.contains("liblockstep_agent") {
                return Some(ret);
            }
        }
        let next = t.peek(rbp).ok()?;
        if next <= rbp {
            return None;
        }
        rbp = next;
    }
    None
}

/// The first bytes of an inline memory probe in instrumented code: `lea
/// rsp, [rsp - 128]`, stepping over the red zone (see the agent's
/// `mem/probe.rs`).
const PROBE_START: [u8; 5] = [0x48, 0x8d, 0x64, 0x24, 0x80];
/// How far a thread in instrumented code is stepped to reach the start of
/// the next probe (a fast path is about 20 instructions).
const PROBE_STEPS: u32 = 64;

/// Single-steps a thread stopped inside lockstep's agent (its memory-access
/// probe runs between almost every two instructions of instrumented code)
/// until it is back in the program's code: a probe's registers differ on
/// every call, the program's do not, and the replay compares them. `maps`
/// are the process's file-backed executable mappings. In the instrumented
/// copy of the program's code (anonymous executable memory)
/// it is stepped on to the start of the next inline probe, where the stack
/// pointer is the program's again (inside one, the frame checksum would
/// take in the probe's pushes and stale red-zone bytes). Asynchronous
/// signals that arrive meanwhile are suppressed and put in `held`, for
/// the caller to raise again. Returns the thread, or `None` when it
/// stopped otherwise (it died, a fault).
pub fn step_out_of_agent(
    mut t: Stopped,
    maps: &[lockstep_trace::Mapping],
    held: &mut Vec<i32>,
) -> Result<Option<Stopped>, crate::error::TraceeError> {
    let in_agent = |rip: u64| {
        maps.iter()
            .any(|m| rip >= m.start && rip < m.end && m.path.contains("liblockstep_agent"))
    };
    // `maps` has the file-backed code only: anything else is anonymous.
    let in_copy = |rip: u64| !maps.iter().any(|m| rip >= m.start && rip < m.end);
    let mut copy_steps = 0;
    for _ in 0..10_000 {
        let rip = t.regs()?.rip;
        let at_probe = || {
            t.peek(rip)
                .is_ok_and(|w| w.to_le_bytes()[..5] == PROBE_START)
        };
        let settled = !in_agent(rip) && (!in_copy(rip) || copy_steps >= PROBE_STEPS || at_probe());
        if settled {
            return Ok(Some(t));
        }
        if in_copy(rip) {
            copy_steps += 1;
        }
        match t.singlestep()? {
            (crate::tracee::Stop::Signal { sig: libc::SIGTRAP }, Some(next)) => t = next,
            // An asynchronous signal arrived during the steps: taken out of
            // the way (the caller holds it back, as it would any signal
            // that lands in user code) and the stepping goes on.
            (crate::tracee::Stop::Signal { sig }, Some(next))
                if !lockstep_trace::is_fault(sig, next.siginfo()?.si_code) =>
            {
                held.push(sig);
                t = next;
            }
            (crate::tracee::Stop::Signal { sig }, Some(other)) => {
                other.resume(crate::tracee::Resume::Syscall, sig)?;
                return Ok(None);
            }
            (_, Some(other)) => {
                other.resume(crate::tracee::Resume::Syscall, 0)?;
                return Ok(None);
            }
            (_, None) => return Ok(None),
        }
    }
    Ok(Some(t))
}

/// Where the stopped thread is: its registers and the checksum of its
/// stack top, recorded with a preemption.
pub fn point_of(t: &Stopped, pid: Pid) -> Option<PreemptPoint> {
    let r = t.regs().ok()?;
    let regs = regs_vec(&r);
    Some(PreemptPoint {
        stack_sum: frame_sum(pid, &regs),
        regs,
        sync_op: None,
    })
}

/// The checksum of the current frame (from the stack pointer to the
/// return address, at most 256 bytes): where -O0 code keeps its locals,
/// loop counters included; the frames above may hold values that differ
/// between runs (timestamps of lockstep's own thread wrapper). A frame
/// with nothing below its saved frame pointer (`rbp == rsp`: a leaf
/// keeps its locals in the red zone, among stale bytes of earlier calls)
/// is its saved `rbp` and return address only.
pub fn frame_sum(pid: Pid, regs: &[u64]) -> u64 {
    let (rsp, rbp) = (regs[19], regs[4]);
    let len = if rbp >= rsp && rbp - rsp <= 240 {
        (rbp - rsp + 16) as usize
    } else {
        64
    };
    let mut top = [0u8; 256];
    let n = ProcMem { pid }.read(rsp, &mut top[..len]);
    lockstep_trace::serial::stack_sum(&top[..n])
}

/// The registers in `user_regs_struct` order.
pub fn regs_vec(r: &libc::user_regs_struct) -> Vec<u64> {
    vec![
        r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx, r.rdx,
        r.rsi, r.rdi, r.orig_rax, r.rip, r.cs, r.eflags, r.rsp, r.ss, r.fs_base, r.gs_base, r.ds,
        r.es, r.fs, r.gs,
    ]
}

/// Index of `rip` in [`regs_vec`].
pub const RIP: usize = 16;
/// The registers a replay compares to find a preemption point again: the
/// general-purpose ones, rip and rsp (not orig_rax, segment or flag bits).
pub const COMPARED: [usize; 17] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 19];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_change_points() {
        let a = Serial::new(Tid(1), 0, Some(42), false);
        let b = Serial::new(Tid(1), 0, Some(42), false);
        let c = Serial::new(Tid(1), 0, Some(43), false);
        let points = |s: &Serial| s.chaos.as_ref().unwrap().change_at.clone();
        assert_eq!(points(&a), points(&b));
        assert_ne!(points(&a), points(&c));
    }

    #[test]
    fn a_slice_is_preempted_once() {
        let mut s = Serial::new(Tid(1), 0, None, false);
        let int = Some((Tid(1), Ask::Interrupt));
        assert_eq!(s.slice_over(SLICE_NS - 1, true), None);
        assert_eq!(s.slice_over(SLICE_NS, true), int);
        assert_eq!(s.slice_over(2 * SLICE_NS - 1, true), None, "already asked");
        assert_eq!(s.interrupted(Tid(1), 2 * SLICE_NS - 1), Interrupted::Defer);
        assert_eq!(s.slice_over(2 * SLICE_NS + 1, true), None, "deferred");
        assert_eq!(s.slice_over(3 * SLICE_NS, true), int);
        assert_eq!(s.interrupted(Tid(1), 3 * SLICE_NS), Interrupted::Now);
        assert_eq!(s.interrupted(Tid(1), 3 * SLICE_NS), Interrupted::No);
    }

    #[test]
    fn an_interruption_whose_stop_never_came_is_asked_again() {
        let mut s = Serial::new(Tid(1), 0, None, false);
        let int = Some((Tid(1), Ask::Interrupt));
        assert_eq!(s.slice_over(SLICE_NS, true), int);
        assert_eq!(s.slice_over(2 * SLICE_NS - 1, true), None);
        assert_eq!(s.slice_over(2 * SLICE_NS, true), int, "asked again");
        assert_eq!(s.interrupted(Tid(1), 2 * SLICE_NS), Interrupted::Defer);
    }

    #[test]
    fn a_thread_alone_is_not_preempted() {
        let mut s = Serial::new(Tid(1), 0, None, false);
        assert_eq!(s.due_preemption(10 * SLICE_NS), None, "nobody ready");
        assert_eq!(s.slice_over(10 * SLICE_NS, false), None);
        // Someone became ready long after the slice ended: at once.
        assert_eq!(
            s.slice_over(10 * SLICE_NS, true),
            Some((Tid(1), Ask::Interrupt))
        );
    }

    #[test]
    fn with_the_agent_a_slice_ends_at_a_sync_call_first() {
        let mut s = Serial::new(Tid(1), 0, None, true);
        assert_eq!(s.slice_over(SLICE_NS, true), Some((Tid(1), Ask::Agent)));
        assert_eq!(s.yield_wanted(), Some(Tid(1)));
        assert!(!s.yielded(Tid(2)), "not the thread asked");
        assert!(s.yielded(Tid(1)));
        assert_eq!(s.yield_wanted(), None);
        // No sync call for a whole slice more: interrupted instead.
        let mut s = Serial::new(Tid(1), 0, None, true);
        assert_eq!(s.slice_over(SLICE_NS, true), Some((Tid(1), Ask::Agent)));
        assert_eq!(s.slice_over(SLICE_NS + 1, true), None);
        assert_eq!(
            s.slice_over(2 * SLICE_NS, true),
            Some((Tid(1), Ask::Interrupt))
        );
        assert_eq!(s.yield_wanted(), None);
        assert!(!s.yielded(Tid(1)), "too late");
    }
}
