//! What the instrumentation knows after it ran, read by every thread
//! without locks: the site table (probe argument → original instruction,
//! size, read/write) and the map from addresses in the relocated copies
//! back to the original code, for stacks and call sites.
//!
//! Both are built once by the constructor, before the program runs a
//! single instrumented instruction, then published with a release store
//! and never changed: readers only need an acquire load.

use core::sync::atomic::{AtomicPtr, Ordering};
use lockstep_agent_abi::{CopyMap, COPY_MAP_ADDR, COPY_MAP_MAGIC};

/// One instrumented instruction.
#[derive(Clone, Copy, Debug, Default)]
pub struct Site {
    /// The original instruction's address.
    pub ip: u64,
    /// Bytes of its memory operand.
    pub size: u32,
    /// `READ` 1, `WRITE` 2, `ATOMIC` 4 (as in the memory file).
    pub flags: u8,
}

/// The instrumentation's result, immutable once published.
pub struct Map {
    pub sites: Vec<Site>,
    /// The relocated code, `[lo, hi)`.
    pub lo: u64,
    pub hi: u64,
    /// `(address in the copy, original address)` of the first byte of each
    /// original instruction's chunk (its probe, if any, then itself),
    /// sorted by copy address.
    pub chunks: Vec<(u64, u64)>,
    /// The executable's code, `[lo, hi)`: where the program's own call
    /// sites are.
    pub exe_lo: u64,
    pub exe_hi: u64,
}

static MAP: AtomicPtr<Map> = AtomicPtr::new(core::ptr::null_mut());

/// Publishes the map (once; it lives until the process ends), and the
/// copies' chunk table for tracers at [`COPY_MAP_ADDR`].
pub fn publish(map: Map) {
    if map.hi > map.lo {
        announce_copies(&map);
    }
    MAP.store(Box::into_raw(Box::new(map)), Ordering::Release);
}

/// Writes where the copies are and their chunk table (as `[u64; 2]`
/// pairs, whose layout is fixed) at [`COPY_MAP_ADDR`], with the agent's
/// own calls; a tracer reads it from outside.
fn announce_copies(map: &Map) {
    if !crate::sys::map_page_at(COPY_MAP_ADDR) {
        return;
    }
    let pairs: Vec<[u64; 2]> = map.chunks.iter().map(|&(c, o)| [c, o]).collect();
    let pairs = pairs.leak();
    // SAFETY: the page was just mapped writable at COPY_MAP_ADDR and is
    // ours; CopyMap is repr(C) plain data smaller than a page.
    unsafe {
        (COPY_MAP_ADDR as *mut CopyMap).write(CopyMap {
            magic: COPY_MAP_MAGIC,
            lo: map.lo,
            hi: map.hi,
            chunks: pairs.as_ptr() as u64,
            len: pairs.len() as u64,
        });
    }
}

/// The published map, if the executable was instrumented.
#[inline(always)]
pub fn get() -> Option<&'static Map> {
    // SAFETY: a non-null pointer was leaked by `publish` and is never freed.
    unsafe { MAP.load(Ordering::Acquire).as_ref() }
}

impl Map {
    /// The site of a probe argument.
    #[inline(always)]
    pub fn site(&self, id: u32) -> Option<Site> {
        self.sites.get(id as usize).copied()
    }

    /// `addr` in the original code's terms: a return address or call site
    /// inside a relocated copy becomes the address it stands for.
    pub fn original(&self, addr: u64) -> u64 {
        if addr < self.lo || addr >= self.hi {
            return addr;
        }
        // The chunk containing addr: a return address is the start of the
        // next chunk, which maps to the original return address exactly.
        match self.chunks.binary_search_by(|&(new, _)| new.cmp(&addr)) {
            Ok(i) => self.chunks[i].1,
            Err(0) => addr,
            Err(i) => self.chunks[i - 1].1,
        }
    }

    /// Whether `addr` (already made original) is the program's own code.
    #[inline(always)]
    pub fn is_program(&self, addr: u64) -> bool {
        (self.exe_lo..self.exe_hi).contains(&addr) || (self.lo..self.hi).contains(&addr)
    }
}

/// Rewrites return addresses inside relocated copies to the original ones.
pub fn translate_stack(stack: &mut [u64]) {
    if let Some(map) = get() {
        for a in stack.iter_mut() {
            if *a != 0 {
                *a = map.original(*a);
            }
        }
    }
}
