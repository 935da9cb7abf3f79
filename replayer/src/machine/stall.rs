//! When the replay stops moving: threads held at their recorded turn while
//! the others wait in the kernel for them (a lock taken in another order
//! than recorded: sync ops themselves are not ordered), the recorded end
//! (a hang), or a real divergence.

use super::{now_ns, Divergence, Replayer};
use lockstep_recorder::decode::table::syscall_name;
use lockstep_trace::Tid;

const NR_FUTEX: i64 = 202;
/// How long the tree must be still before a held thread is let go early.
const RELAX_AFTER_NS: u64 = 50_000_000;
/// How long a hung recording's replay must be still, once all its events
/// are replayed, to have reached the recorded hang.
const AT_END_NS: u64 = 300_000_000;

impl Replayer {
    /// Called when the wait was interrupted: a replay that made no progress
    /// for a while is stuck (a divergence) or at the recorded end (a hang).
    pub fn check_stall(&mut self, after_ns: u64) {
        let idle = now_ns() - self.last_progress_ns;
        // A serialized recording is replayed decision by decision, never relaxed.
        if idle >= RELAX_AFTER_NS
            && !self.script.serialized
            && self.waiting_for_held()
            && self.relax()
        {
            self.last_progress_ns = now_ns();
            return;
        }
        // Every recorded event of a hung recording replayed: the threads
        // still alive are where the recording left them (parked, or in a
        // futex wait), which a short quiet spell confirms.
        let at_end = self.script.hung && self.script.pending.is_empty();
        let after_ns = if at_end {
            after_ns.min(AT_END_NS)
        } else {
            after_ns
        };
        if idle < after_ns || self.threads.is_empty() {
            return;
        }
        self.last_progress_ns = now_ns();
        // Nothing moved at all for that long while a thread is held at its
        // turn: whatever the others wait for (not always visibly a futex),
        // letting it go can only help.
        if !self.script.serialized && self.relax() {
            return;
        }
        let Some(&next) = self.script.pending.first() else {
            self.ended_early = true;
            self.snapshot = self.blocked_threads();
            if self.cfg.verify && self.script.hung && self.snapshot != self.script.hang_snapshot {
                let show = |v: &[(Tid, String)]| {
                    v.iter()
                        .map(|(t, s)| format!("{} in {s}", t.0))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let (expected, got) = (show(&self.script.hang_snapshot), show(&self.snapshot));
                self.diverge(Divergence {
                    seq: None,
                    tid: None,
                    what: "threads blocked at the recorded hang".into(),
                    expected,
                    got,
                    location: None,
                });
            }
            self.kill_all();
            return;
        };
        let owner = self
            .script
            .calls
            .values()
            .flat_map(|q| q.iter())
            .chain(
                self.threads
                    .values()
                    .filter_map(|l| l.current.as_ref().map(|(c, _)| c)),
            )
            .find(|c| c.entry_seq == next || c.exit_seq == Some(next))
            .map(|c| (c.tid, c.name.clone()))
            .or_else(|| self.serial_owner(next));
        let (tid, name) = owner.unwrap_or((Tid(0), "?".into()));
        self.diverge(Divergence {
            seq: Some(next),
            tid: Some(tid),
            what: "progress".into(),
            expected: format!("thread {} to reach its {name} (event {next})", tid.0),
            got: format!(
                "no thread moving for {} s ({})",
                after_ns / 1_000_000_000,
                self.thread_states()
            ),
            location: None,
        });
    }
    /// The recorded thread and kind of a serializing decision `seq`.
    fn serial_owner(&self, seq: u64) -> Option<(Tid, String)> {
        self.script.serial.iter().find_map(|(tid, q)| {
            let e = q.iter().find(|e| e.at.seq.0 == seq)?;
            let what = match e.kind {
                lockstep_trace::SerialKind::Run => "turn to run",
                lockstep_trace::SerialKind::Preempt => "preemption point",
            };
            Some((*tid, what.to_string()))
        })
    }

    /// Where each live thread is, for a stall report: `held` at its
    /// recorded turn, `parked`, in a syscall, or running user code.
    fn thread_states(&self) -> String {
        let mut v: Vec<(Tid, String)> = self
            .threads
            .iter()
            .map(|(live, l)| {
                let state = if let Some((_, gate)) = self.held.get(live) {
                    match self.gate_seq(live, gate) {
                        Some(seq) => format!("held for event {seq}"),
                        None => "held".to_string(),
                    }
                } else if self.parked.contains_key(live) {
                    "parked".to_string()
                } else {
                    match syscall_in(*live) {
                        Some(nr) => format!("in {}", syscall_name(nr).unwrap_or("unknown")),
                        None => "running".to_string(),
                    }
                };
                (l.rec, state)
            })
            .collect();
        v.sort();
        v.iter()
            .map(|(t, s)| format!("{} {s}", t.0))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Each live thread as (recorded tid, the syscall it is blocked in),
    /// from /proc/TID/syscall: the replay's hang snapshot.
    fn blocked_threads(&self) -> Vec<(Tid, String)> {
        let mut v: Vec<(Tid, String)> = self
            .threads
            .iter()
            .map(|(live, l)| {
                let name = match syscall_in(*live) {
                    Some(nr) => syscall_name(nr).unwrap_or("unknown").to_string(),
                    None => "running".to_string(),
                };
                (l.rec, name)
            })
            .collect();
        v.sort();
        v
    }

    /// Whether every live thread that is not held waits in a futex: they
    /// wait for a held one, which waits for its turn after theirs.
    fn waiting_for_held(&self) -> bool {
        if self.held.is_empty() {
            return false;
        }

        self.threads
            .keys()
            .filter(|t| !self.held.contains_key(t) && !self.parked.contains_key(t))
            .all(|t| syscall_in(*t) == Some(NR_FUTEX))
    }

    /// Lets the held thread with the earliest recorded event go out of
    /// order (its events are marked replayed). Syscall results stay each
    /// thread's own recorded ones, so a race-free program still computes
    /// the same; `--verify` checks it. Returns whether one was released.
    pub(super) fn relax(&mut self) -> bool {
        let first = self
            .held
            .iter()
            .filter_map(|(tid, (_, gate))| {
                let seq = self.gate_seq(tid, gate).or_else(|| {
                    // A call without an exit waits for nothing after its entry.
                    let (call, _) = self.threads.get(tid)?.current.as_ref()?;
                    Some(call.entry_seq)
                })?;
                Some((seq, *tid))
            })
            .min();
        let Some((seq, tid)) = first else {
            return false;
        };
        // Everything recorded before it is given up on.
        let earlier: Vec<u64> = self.script.pending.range(..=seq).copied().collect();
        for s in earlier {
            self.script.done(s);
        }
        self.counts.relaxed += 1;
        tracing::debug!(seq, tid = tid.0, "released out of the recorded order");
        let _ = self.release_due();
        true
    }
}

/// The syscall a live thread is in, from /proc/TID/syscall (`None` when
/// it runs user code or is gone).
fn syscall_in(tid: Tid) -> Option<i64> {
    let text = std::fs::read_to_string(format!("/proc/{}/syscall", tid.0)).ok()?;
    text.split_whitespace().next()?.parse().ok()
}
