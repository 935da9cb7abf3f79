//! Feeding the race detector: sync ops, spawns and syscall-buffer
//! segments (held in memory, small) merged by sequence number with the
//! memory segments streamed from the trace (large: never all in memory).

use crate::finding::{Finding, Locator};
use crate::race::RaceDetector;
use crate::sysaccess::SyscallSegment;
use lockstep_trace::{MemSegment, Spawn, SyncOp};

/// Feeds a [`RaceDetector`] in sequence order: the sync ops, spawns and
/// extra segments (syscall buffers) held in memory are merged with the
/// memory segments streamed from the trace.
pub struct RaceRun<'a> {
    det: RaceDetector,
    ops: &'a [SyncOp],
    spawns: Vec<&'a Spawn>,
    extra: Vec<SyscallSegment>,
    next: (usize, usize, usize),
}

impl<'a> RaceRun<'a> {
    /// `ops` in sequence order (as the trace gives them); `extra` in any order.
    pub fn new(ops: &'a [SyncOp], spawns: &'a [Spawn], mut extra: Vec<SyscallSegment>) -> Self {
        let mut spawns: Vec<&Spawn> = spawns.iter().collect();
        spawns.sort_by_key(|s| s.at.seq);
        extra.sort_by_key(|s| s.segment.at.seq);
        RaceRun {
            det: RaceDetector::new(),
            ops,
            spawns,
            extra,
            next: (0, 0, 0),
        }
    }

    /// Feeds everything held in memory that comes before `seq`.
    fn until(&mut self, seq: u64) {
        loop {
            let (o, s, e) = self.next;
            let op = self.ops.get(o).map(|x| x.at.seq.0).unwrap_or(u64::MAX);
            let sp = self.spawns.get(s).map(|x| x.at.seq.0).unwrap_or(u64::MAX);
            let ex = self
                .extra
                .get(e)
                .map(|x| x.segment.at.seq.0)
                .unwrap_or(u64::MAX);
            let min = op.min(sp).min(ex);
            if min >= seq || min == u64::MAX {
                return;
            }
            if sp == min {
                self.det.spawn(self.spawns[s]);
                self.next.1 += 1;
            } else if op == min {
                self.det.sync(&self.ops[o]);
                self.next.0 += 1;
            } else {
                // Taken, not cloned: each is fed once.
                let accesses = std::mem::take(&mut self.extra[e].segment.accesses);
                let stack = std::mem::take(&mut self.extra[e].stack);
                let x = &self.extra[e].segment;
                let seg = MemSegment {
                    at: x.at,
                    pid: x.pid,
                    tid: x.tid,
                    mechanism: x.mechanism.clone(),
                    accesses,
                };
                self.det.segment_with_stack(&seg, &stack);
                self.next.2 += 1;
            }
        }
    }

    /// One segment from the trace (segments in sequence order).
    pub fn segment(&mut self, seg: &MemSegment) {
        self.until(seg.at.seq.0);
        self.det.segment(seg);
    }

    /// Accesses processed so far.
    pub fn accesses(&self) -> u64 {
        self.det.accesses()
    }

    pub fn finish(mut self, loc: &mut dyn Locator) -> Vec<Finding> {
        self.until(u64::MAX);
        self.det.finish(loc)
    }
}

/// Runs the detector over segments held in memory (tests, small traces).
pub fn findings(
    ops: &[SyncOp],
    spawns: &[Spawn],
    segments: &[MemSegment],
    loc: &mut dyn Locator,
) -> Vec<Finding> {
    let mut run = RaceRun::new(ops, spawns, Vec::new());
    let mut segs: Vec<&MemSegment> = segments.iter().collect();
    segs.sort_by_key(|s| s.at.seq);
    for s in segs {
        run.segment(s);
    }
    run.finish(loc)
}
