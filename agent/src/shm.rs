//! The recorder's shared-memory file: mapping it, handing out rings, and
//! appending events to them.
//!
//! The agent is *active* when `$LOCKSTEP_SHM` names a regular file of at
//! least `SHM_SIZE` bytes whose header carries the right magic and version
//! and has `ready != 0`; otherwise it is *inert* and every interposer only
//! forwards to the real function. The decision is taken once per process
//! image, by the constructor or by whichever interposed call comes first,
//! without allocating and without printing anything.
//!
//! Every ring has exactly one producer (the thread that claimed it), so the
//! append path needs no lock: write the slot, then publish it with a release
//! store of `head`. The recorder is the only consumer and frees slots by
//! storing `tail`.

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use lockstep_agent_abi::{
    event_offset, ring_header_offset, Event, Header, RingHeader, ENV_SHM, MAGIC, MAX_RINGS,
    RING_EVENTS, SHM_SIZE, VERSION,
};

use crate::local::Local;

/// `ENV_SHM` with a terminating NUL, for `getenv`.
const ENV_NAME: [u8; ENV_SHM.len() + 1] = {
    let mut name = [0u8; ENV_SHM.len() + 1];
    let src = ENV_SHM.as_bytes();
    let mut i = 0;
    while i < src.len() {
        name[i] = src[i];
        i += 1;
    }
    name
};

const UNINIT: u8 = 0;
const INITIALISING: u8 = 1;
const ACTIVE: u8 = 2;
const INERT: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);
static BASE: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());

/// How long a producer waits for the recorder to free a slot in a full ring
/// before it drops the event (a dead recorder must never hang the program).
const FULL_RING_PATIENCE_NS: u64 = 1_000_000_000;

/// A handle on the mapped file; only exists while the agent is active.
#[derive(Clone, Copy)]
pub struct Shm {
    base: *mut u8,
}

/// The mapping if the agent is active, mapping it first if nobody has tried
/// yet. A call that races with the first initialisation sees `None` (its
/// event is not recorded; the header is not mapped yet, so it cannot even be
/// counted).
#[inline(always)]
pub fn get() -> Option<Shm> {
    match STATE.load(Ordering::Acquire) {
        ACTIVE => Some(Shm {
            base: BASE.load(Ordering::Relaxed),
        }),
        UNINIT => init(),
        _ => None,
    }
}

#[cold]
fn init() -> Option<Shm> {
    if STATE
        .compare_exchange(UNINIT, INITIALISING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return get_settled();
    }
    match map() {
        Some(base) => {
            BASE.store(base, Ordering::Relaxed);
            STATE.store(ACTIVE, Ordering::Release);
            crate::local::watch_forks();
            crate::thread::watch_exits();
            Some(Shm { base })
        }
        None => {
            STATE.store(INERT, Ordering::Release);
            None
        }
    }
}

fn get_settled() -> Option<Shm> {
    match STATE.load(Ordering::Acquire) {
        ACTIVE => Some(Shm {
            base: BASE.load(Ordering::Relaxed),
        }),
        _ => None,
    }
}

/// Opens, checks and maps the file named by `$LOCKSTEP_SHM`.
fn map() -> Option<*mut u8> {
    // SAFETY: ENV_NAME is NUL-terminated; getenv only reads the environment.
    let path = unsafe { libc::getenv(ENV_NAME.as_ptr().cast()) };
    if path.is_null() {
        return None;
    }
    // The agent's own calls (see `crate::sys`): a replay runs them for
    // real, so the replayed agent shares the replayer's area as the
    // recorded one shared the recorder's (a serialized replay asks it for
    // yield points there).
    // SAFETY: `path` is a NUL-terminated string owned by the environment.
    let fd = unsafe {
        crate::sys::open(
            path.cast(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOCTTY,
            0,
        )
    }?;
    // A short file would raise SIGBUS on the first access past its end.
    if !matches!(crate::sys::regular_file_size(fd), Some(n) if n >= SHM_SIZE as u64) {
        crate::sys::close(fd);
        return None;
    }
    let base = crate::sys::map(
        SHM_SIZE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED,
        fd,
    );
    // The mapping keeps the file referenced.
    crate::sys::close(fd);
    let base = base?;
    // SAFETY: the mapping is SHM_SIZE bytes, larger than a Header, and page
    // aligned; Header is repr(C) with atomics for the shared fields.
    let header = unsafe { &*base.cast::<Header>() };
    if header.magic != MAGIC
        || header.version != VERSION
        || header.ready.load(Ordering::Acquire) == 0
    {
        // SAFETY: unmapping the mapping made above, which nothing else uses.
        unsafe { crate::sys::munmap(base, SHM_SIZE) };
        return None;
    }
    Some(base)
}

impl Shm {
    #[inline(always)]
    fn header(self) -> &'static Header {
        // SAFETY: `base` is a live SHM_SIZE mapping (never unmapped once the
        // agent is active) and the header is at offset 0.
        unsafe { &*self.base.cast::<Header>() }
    }

    #[inline(always)]
    fn ring(self, ring: u32) -> &'static RingHeader {
        debug_assert!((ring as usize) < MAX_RINGS);
        // SAFETY: `ring < MAX_RINGS` (only claim() makes ring numbers), so
        // the offset is inside the mapping; RingHeader is 64-byte aligned
        // there by construction of the layout.
        unsafe {
            &*self
                .base
                .add(ring_header_offset(ring as usize))
                .cast::<RingHeader>()
        }
    }

    /// `record --serialize`: the calling thread `tid` enters its
    /// `sync_calls`-th sync call; if its time slice is over (the recorder
    /// named it in `yield_tid`), or a replay is looking for this count, it
    /// stops at a marked call there.
    #[inline(always)]
    pub fn yield_point(self, tid: i32, sync_calls: u64) {
        let h = self.header();
        if h.yield_tid.load(Ordering::Relaxed) == tid
            && sync_calls >= h.yield_at.load(Ordering::Relaxed)
        {
            crate::sys::yield_point(sync_calls);
        }
    }

    /// The next global sequence number.
    #[inline(always)]
    pub fn next_seq(self) -> u64 {
        self.header().seq.fetch_add(1, Ordering::SeqCst)
    }

    /// Counts `events` events that could not be recorded.
    #[inline]
    pub fn count_dropped(self, events: u64) {
        self.header().dropped.fetch_add(events, Ordering::Relaxed);
    }

    /// Claims a fresh ring for thread `tid` of process `pid`; `None` (and
    /// the overflow flag set) when all rings are taken.
    pub fn claim(self, pid: i32, tid: i32) -> Option<u32> {
        let header = self.header();
        let ring = header.rings_claimed.fetch_add(1, Ordering::AcqRel);
        if ring as usize >= MAX_RINGS {
            header.overflow.store(1, Ordering::Release);
            return None;
        }
        let rh = self.ring(ring);
        rh.pid.store(pid, Ordering::Relaxed);
        rh.tid.store(tid, Ordering::Relaxed);
        rh.state.store(1, Ordering::Release);
        Some(ring)
    }

    /// Marks `ring` as belonging to a thread that has ended.
    pub fn retire(self, ring: u32) {
        self.ring(ring).state.store(2, Ordering::Release);
    }

    /// Appends `ev` to `ring`, which the calling thread `producer` owns.
    /// When the ring is full, yields until the recorder drains it (a
    /// traced sched_yield is itself a stop at which the recorder drains),
    /// for at most [`FULL_RING_PATIENCE_NS`]; after such a timeout the
    /// producer is marked stalled and later appends to a full ring drop at
    /// once, until room appears. Returns false (and counts the event as
    /// dropped) if it was not written.
    #[inline(always)]
    pub fn append(self, ring: u32, ev: &Event, producer: &Local) -> bool {
        let rh = self.ring(ring);
        // Only this thread stores `head`, so a relaxed load sees its own value.
        let head = rh.head.load(Ordering::Relaxed);
        if head.wrapping_sub(producer.tail_seen.get()) >= RING_EVENTS as u64 {
            let tail = rh.tail.load(Ordering::Acquire);
            producer.tail_seen.set(tail);
            if head.wrapping_sub(tail) >= RING_EVENTS as u64 {
                if !wait_for_room(rh, head, producer) {
                    self.count_dropped(1);
                    return false;
                }
            } else if producer.stalled.get() {
                // The recorder drains again: full rings are worth waiting for.
                producer.stalled.set(false);
            }
        }
        // SAFETY: event_offset() is inside the mapping for ring < MAX_RINGS;
        // the slot is free (head - tail < RING_EVENTS) and only this thread
        // writes to this ring; the consumer reads it only after the release
        // store below.
        unsafe {
            let slot = self
                .base
                .add(event_offset(ring as usize, head as usize))
                .cast::<Event>();
            ptr::write(slot, *ev);
        }
        rh.head.store(head + 1, Ordering::Release);
        true
    }
}

/// Yields until the consumer frees a slot of the ring whose producer is at
/// `head`; false if it gave up.
#[cold]
fn wait_for_room(rh: &RingHeader, head: u64, producer: &Local) -> bool {
    if producer.stalled.get() {
        return false;
    }
    let start = crate::record::now_ns();
    let mut spins: u32 = 0;
    loop {
        crate::sys::sched_yield();
        let tail = rh.tail.load(Ordering::Acquire);
        if head.wrapping_sub(tail) < RING_EVENTS as u64 {
            producer.tail_seen.set(tail);
            return true;
        }
        spins = spins.wrapping_add(1);
        if spins % 64 == 0 && crate::record::now_ns().wrapping_sub(start) > FULL_RING_PATIENCE_NS {
            producer.stalled.set(true);
            return false;
        }
    }
}
