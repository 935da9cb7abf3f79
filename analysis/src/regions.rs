//! What the race detector knows about the memory of each process besides
//! accesses: heap blocks (from the agent's malloc/free ops, to name a racy
//! location and to know how much a `free` writes), thread stacks (from
//! `thread_stack` ops), and the addresses that atomic instructions touch
//! (never reported: a plain load of a C11 atomic is a `mov` on x86-64).

use std::collections::{BTreeMap, HashMap};

/// A heap block as allocated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub addr: u64,
    pub size: u64,
    /// The allocating call: seq, thread and call stack.
    pub seq: u64,
    pub tid: i32,
    pub stack: Vec<u64>,
    /// The function (`malloc`, `calloc`...).
    pub by: String,
    /// Set once the block is freed (it is still named, as a freed block).
    pub freed: bool,
}

/// What a racy address is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    Heap(Block),
    /// In the stack of this thread.
    Stack(i32),
    /// Anything else: a global (named by the locator) or unknown memory.
    Other,
}

#[derive(Default)]
struct Proc {
    /// Blocks by start address (live and freed; a new block at the same
    /// address replaces the old one).
    blocks: BTreeMap<u64, Block>,
    /// Thread stacks: lowest address → (one past the highest, thread).
    stacks: BTreeMap<u64, (u64, i32)>,
    /// Atomic ranges: start → end (exclusive), possibly overlapping.
    atomics: BTreeMap<u64, u64>,
}

/// Memory regions of every process.
#[derive(Default)]
pub struct Regions {
    procs: HashMap<i32, Proc>,
}

impl Regions {
    pub fn new() -> Self {
        Self::default()
    }

    fn proc(&mut self, pid: i32) -> &mut Proc {
        self.procs.entry(pid).or_default()
    }

    /// A block was allocated (it replaces any block it overlaps).
    pub fn alloc(&mut self, pid: i32, b: Block) {
        let p = self.proc(pid);
        let end = b.addr.saturating_add(b.size.max(1));
        let stale: Vec<u64> = p
            .blocks
            .range(..end)
            .rev()
            .take_while(|(_, o)| o.addr + o.size.max(1) > b.addr)
            .map(|(&a, _)| a)
            .collect();
        for a in stale {
            p.blocks.remove(&a);
        }
        p.blocks.insert(b.addr, b);
    }

    /// The block at `addr` was freed; returns its size if known.
    pub fn free(&mut self, pid: i32, addr: u64) -> Option<u64> {
        let b = self.proc(pid).blocks.get_mut(&addr)?;
        if b.freed {
            return None;
        }
        b.freed = true;
        Some(b.size)
    }

    /// The size of the live block starting at `addr`.
    pub fn live_size(&self, pid: i32, addr: u64) -> Option<u64> {
        let b = self.procs.get(&pid)?.blocks.get(&addr)?;
        (!b.freed).then_some(b.size)
    }

    pub fn thread_stack(&mut self, pid: i32, tid: i32, lo: u64, hi: u64) {
        if hi > lo {
            self.proc(pid).stacks.insert(lo, (hi, tid));
        }
    }

    /// An atomic instruction touched `[addr, addr + size)`.
    pub fn atomic(&mut self, pid: i32, addr: u64, size: u64) {
        let end = addr.saturating_add(size.max(1));
        let e = self.proc(pid).atomics.entry(addr).or_insert(end);
        *e = (*e).max(end);
    }

    /// Whether any byte of `[addr, addr + len)` was touched atomically.
    pub fn is_atomic(&self, pid: i32, addr: u64, len: u64) -> bool {
        let Some(p) = self.procs.get(&pid) else {
            return false;
        };
        let end = addr.saturating_add(len.max(1));
        // Ranges are short (≤ 16 bytes): look back a little from the end.
        p.atomics
            .range(addr.saturating_sub(64)..end)
            .any(|(&s, &e)| s < end && e > addr)
    }

    /// What `addr` of `pid` is, as of now.
    pub fn place(&self, pid: i32, addr: u64) -> Place {
        let Some(p) = self.procs.get(&pid) else {
            return Place::Other;
        };
        if let Some((_, b)) = p.blocks.range(..=addr).next_back() {
            if addr < b.addr + b.size.max(1) {
                return Place::Heap(b.clone());
            }
        }
        if let Some((_, &(hi, tid))) = p.stacks.range(..=addr).next_back() {
            if addr < hi {
                return Place::Stack(tid);
            }
        }
        Place::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(addr: u64, size: u64) -> Block {
        Block {
            addr,
            size,
            seq: 1,
            tid: 1,
            stack: vec![],
            by: "malloc".into(),
            freed: false,
        }
    }

    #[test]
    fn blocks_stacks_and_atomics() {
        let mut r = Regions::new();
        r.alloc(1, block(0x1000, 64));
        r.thread_stack(1, 7, 0x7000, 0x8000);
        r.atomic(1, 0x2000, 4);
        assert!(matches!(r.place(1, 0x103f), Place::Heap(ref b) if b.size == 64));
        assert_eq!(r.place(1, 0x1040), Place::Other);
        assert_eq!(r.place(1, 0x7ff0), Place::Stack(7));
        assert!(
            r.is_atomic(1, 0x2002, 1) && !r.is_atomic(1, 0x2004, 4) && !r.is_atomic(2, 0x2000, 4)
        );
        assert_eq!(r.free(1, 0x1000), Some(64));
        assert_eq!(r.free(1, 0x1000), None);
        // A new block over the freed one replaces it.
        r.alloc(1, block(0x1010, 16));
        assert_eq!(r.place(1, 0x1000), Place::Other);
        assert_eq!(r.live_size(1, 0x1010), Some(16));
    }
}
