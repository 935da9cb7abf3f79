//! The contract between the recorder and the in-process agent
//! (`liblockstep_agent.so`, injected with LD_PRELOAD): the layout of the
//! shared-memory file they both map, and the codes of the events the agent
//! writes into it. No dependencies, no allocation, `no_std`: the agent links
//! it into every traced process.
//!
//! Layout of the file named by [`ENV_SHM`] (sizes in bytes):
//!
//! ```text
//! 0                      Header (one page)
//! RINGS_OFFSET           RingHeader × MAX_RINGS (64 each)
//! EVENTS_OFFSET          ring 0: Event × RING_EVENTS, ring 1: ..., ring MAX_RINGS-1
//! ```
//!
//! Every thread that makes a sync call claims a ring (`Header::rings_claimed`
//! is the allocator) and is its only producer; the recorder is the only
//! consumer. The producer writes an event at `head % RING_EVENTS`, then
//! publishes it with a release store of `head + 1`; the consumer reads up to
//! an acquire load of `head` and releases the slots by storing `tail`.
//! Every event takes its sequence number from `Header::seq`, the same
//! counter the recorder's ptrace side draws from, so the trace has one order.

#![no_std]

use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64};

/// Environment variable with the path of the shared-memory file.
pub const ENV_SHM: &str = "LOCKSTEP_SHM";
/// `Header::magic`: "LKSTSHM1".
pub const MAGIC: u64 = u64::from_le_bytes(*b"LKSTSHM1");
pub const VERSION: u32 = 2;

/// How many threads (over the whole recording) can have a ring.
pub const MAX_RINGS: usize = 4096;
/// Events per ring (a power of two).
pub const RING_EVENTS: usize = 8192;
/// Return addresses kept per event, innermost first.
pub const STACK_DEPTH: usize = 8;

pub const RINGS_OFFSET: usize = 4096;
pub const EVENTS_OFFSET: usize = RINGS_OFFSET + MAX_RINGS * core::mem::size_of::<RingHeader>();
/// Total size of the file (sparse: only touched pages use memory).
pub const SHM_SIZE: usize = EVENTS_OFFSET + MAX_RINGS * RING_EVENTS * core::mem::size_of::<Event>();

/// The first page of the file.
#[repr(C)]
pub struct Header {
    pub magic: u64,
    pub version: u32,
    /// Non-zero once the recorder has initialised the file.
    pub ready: AtomicU32,
    /// The global sequence counter: `fetch_add(1)` gives the next seq.
    pub seq: AtomicU64,
    /// Rings handed out so far; a thread claims one with `fetch_add(1)`.
    pub rings_claimed: AtomicU32,
    /// Set by the agent when a thread found no free ring (events lost).
    pub overflow: AtomicU32,
    /// Events dropped because no ring was left.
    pub dropped: AtomicU64,
    /// `record --serialize`: the thread whose time slice is over (0: none).
    /// Entering its next interposed sync call, with its count of such
    /// calls at least `yield_at`, it makes the marked call
    /// [`YIELD_POINT_R13`] names, where the recorder preempts it (and a
    /// replay stops it at the same count).
    pub yield_tid: AtomicI32,
    pub yield_at: AtomicU64,
}

/// Per-ring bookkeeping, one cache line.
#[repr(C, align(64))]
pub struct RingHeader {
    /// Process and thread that own the ring (0 while unclaimed).
    pub pid: AtomicI32,
    pub tid: AtomicI32,
    /// Events written (producer) and consumed (consumer), never wrapped.
    pub head: AtomicU64,
    pub tail: AtomicU64,
    /// 1 while in use; set to 2 by the agent when the thread exits.
    pub state: AtomicU32,
}

/// One synchronization event, fixed size.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    pub pid: i32,
    pub tid: i32,
    /// An [`Op`] code.
    pub op: u16,
    /// A [`Phase`] code.
    pub phase: u8,
    /// Op-specific: for mutexes the kind bits of glibc's `__kind` (type in
    /// bits 0-1, robust 16, PRIO_INHERIT 32, PRIO_PROTECT 64); for
    /// semaphores 1 when named.
    pub flags: u8,
    /// The return value of the call (0 on success, an errno otherwise;
    /// -1 with errno for the sem_* calls is stored as the errno).
    pub ret: i32,
    /// The object's address (mutex, rwlock, cond, sem, spinlock, barrier,
    /// once control, pthread_t for join/detach).
    pub obj: u64,
    /// Op-specific: the mutex of a cond wait; the new thread's tid for create;
    /// the priority for setschedparam; the initial value for sem_init;
    /// the count for barrier_init; the type/protocol for mutexattr ops.
    pub arg: u64,
    /// Op-specific: the start routine for create; the policy for
    /// setschedparam; the prioceiling for PRIO_PROTECT mutexes.
    pub arg2: u64,
    /// Return addresses, innermost first (the call site of the pthread
    /// function is `stack[0]`); 0 ends the list.
    pub stack: [u64; STACK_DEPTH],
}

/// Where in its life a sync call is.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// About to call the real function, which may block (for the
    /// try-first acquires: only after the non-blocking try failed).
    Request = 0,
    /// The lock/wait succeeded.
    Acquired = 1,
    /// The object was released (unlock, post, signal...).
    Released = 2,
    /// The call failed or timed out; `ret` says why.
    Failed = 3,
    /// A call that neither acquires nor releases completed (init, destroy,
    /// create, join, setschedparam...).
    Done = 4,
}

macro_rules! ops {
    ($($name:ident = $code:expr, $text:expr;)*) => {
        /// The synchronization calls the agent records.
        #[repr(u16)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Op { $($name = $code,)* }

        impl Op {
            pub fn from_code(c: u16) -> Option<Op> {
                match c { $($code => Some(Op::$name),)* _ => None }
            }
            /// The function's name, e.g. `pthread_mutex_lock`.
            pub fn name(self) -> &'static str {
                match self { $(Op::$name => $text,)* }
            }
        }
    };
}

ops! {
    MutexInit = 1, "pthread_mutex_init";
    MutexLock = 2, "pthread_mutex_lock";
    MutexTrylock = 3, "pthread_mutex_trylock";
    MutexTimedlock = 4, "pthread_mutex_timedlock";
    MutexUnlock = 5, "pthread_mutex_unlock";
    MutexDestroy = 6, "pthread_mutex_destroy";
    MutexConsistent = 7, "pthread_mutex_consistent";
    RwInit = 10, "pthread_rwlock_init";
    RwRdlock = 11, "pthread_rwlock_rdlock";
    RwWrlock = 12, "pthread_rwlock_wrlock";
    RwTryrdlock = 13, "pthread_rwlock_tryrdlock";
    RwTrywrlock = 14, "pthread_rwlock_trywrlock";
    RwTimedrdlock = 15, "pthread_rwlock_timedrdlock";
    RwTimedwrlock = 16, "pthread_rwlock_timedwrlock";
    RwUnlock = 17, "pthread_rwlock_unlock";
    RwDestroy = 18, "pthread_rwlock_destroy";
    CondInit = 20, "pthread_cond_init";
    CondWait = 21, "pthread_cond_wait";
    CondTimedwait = 22, "pthread_cond_timedwait";
    CondSignal = 23, "pthread_cond_signal";
    CondBroadcast = 24, "pthread_cond_broadcast";
    CondDestroy = 25, "pthread_cond_destroy";
    SemInit = 30, "sem_init";
    SemOpen = 31, "sem_open";
    SemWait = 32, "sem_wait";
    SemTrywait = 33, "sem_trywait";
    SemTimedwait = 34, "sem_timedwait";
    SemPost = 35, "sem_post";
    SemDestroy = 36, "sem_destroy";
    SemClose = 37, "sem_close";
    SpinInit = 40, "pthread_spin_init";
    SpinLock = 41, "pthread_spin_lock";
    SpinTrylock = 42, "pthread_spin_trylock";
    SpinUnlock = 43, "pthread_spin_unlock";
    SpinDestroy = 44, "pthread_spin_destroy";
    BarrierInit = 50, "pthread_barrier_init";
    BarrierWait = 51, "pthread_barrier_wait";
    BarrierDestroy = 52, "pthread_barrier_destroy";
    ThreadCreate = 60, "pthread_create";
    ThreadStart = 61, "thread_start";
    ThreadJoin = 62, "pthread_join";
    ThreadDetach = 63, "pthread_detach";
    ThreadExit = 64, "pthread_exit";
    Once = 65, "pthread_once";
    // The calling thread's stack: `obj` its lowest address, `arg` one past
    // its highest (recorded at thread start while memory accesses are
    // captured, and for the main thread when the agent starts).
    ThreadStack = 66, "thread_stack";
    SetSchedParam = 70, "pthread_setschedparam";
    SetSchedPrio = 71, "pthread_setschedprio";
    AttrSetSchedParam = 72, "pthread_attr_setschedparam";
    AttrSetSchedPolicy = 73, "pthread_attr_setschedpolicy";
    AttrSetInheritSched = 74, "pthread_attr_setinheritsched";
    MutexattrSetType = 80, "pthread_mutexattr_settype";
    MutexattrSetProtocol = 81, "pthread_mutexattr_setprotocol";
    MutexattrSetPrioceiling = 82, "pthread_mutexattr_setprioceiling";
    MutexattrSetRobust = 83, "pthread_mutexattr_setrobust";
    // Heap blocks (recorded while memory accesses are captured): `obj` the
    // block, `arg` its size, `arg2` the old block for realloc.
    Malloc = 90, "malloc";
    Calloc = 91, "calloc";
    Realloc = 92, "realloc";
    Free = 93, "free";
    PosixMemalign = 94, "posix_memalign";
    AlignedAlloc = 95, "aligned_alloc";
    // A lock-prefixed or xchg instruction of the program on `obj` (`arg`
    // bytes, `arg2` the instruction's address): `Released` is drawn before
    // it executes, `Acquired` after, so that happens-before through atomics
    // is never missed.
    Atomic = 96, "atomic";
}

impl Phase {
    pub fn from_code(c: u8) -> Option<Phase> {
        Some(match c {
            0 => Phase::Request,
            1 => Phase::Acquired,
            2 => Phase::Released,
            3 => Phase::Failed,
            4 => Phase::Done,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Phase::Request => "request",
            Phase::Acquired => "acquired",
            Phase::Released => "released",
            Phase::Failed => "failed",
            Phase::Done => "done",
        }
    }
}

/// Byte offset of ring `i`'s header.
pub const fn ring_header_offset(i: usize) -> usize {
    RINGS_OFFSET + i * core::mem::size_of::<RingHeader>()
}

/// Byte offset of event slot `slot` of ring `i`.
pub const fn event_offset(i: usize, slot: usize) -> usize {
    EVENTS_OFFSET + (i * RING_EVENTS + (slot % RING_EVENTS)) * core::mem::size_of::<Event>()
}

const _: () = assert!(core::mem::size_of::<Header>() <= RINGS_OFFSET);
const _: () = assert!(core::mem::size_of::<RingHeader>() == 64);
const _: () = assert!(core::mem::size_of::<Event>() == 128);
const _: () = assert!(RING_EVENTS.is_power_of_two());

// ---------------------------------------------------------------------------
// Memory accesses.
//
// Each thread whose accesses are captured appends segments to a file of its
// own, `<LOCKSTEP_SHM>.mem.<tid>`, that it maps and grows itself (a few
// syscalls per megabytes, no ptrace stop per segment). The recorder imports
// the file when the thread exits, or at the end of the recording, and
// deletes it. Layout: a [`MemFileHeader`], then records, each a
// [`MemRecord`] followed by `count` [`MemEntry`]s. `committed` in the header
// is the byte length of the complete records (release-stored after each).

/// Environment variable choosing what the agent instruments: `off`, `exe`
/// (the main executable, the default when set by the recorder), or
/// `exe,NAME,...` (also the shared objects whose file name contains NAME).
pub const ENV_MEM: &str = "LOCKSTEP_MEM";

/// `trap` when the recorder traps rdtsc/rdtscp (every read a ptrace stop):
/// the agent then timestamps its events with CLOCK_MONOTONIC_COARSE,
/// which the vDSO serves without reading the TSC.
pub const ENV_TSC: &str = "LOCKSTEP_TSC";
/// `MemFileHeader::magic`: "LKSTMEM1".
pub const MEM_MAGIC: u64 = u64::from_le_bytes(*b"LKSTMEM1");

#[repr(C)]
pub struct MemFileHeader {
    pub magic: u64,
    pub pid: i32,
    pub tid: i32,
    /// Bytes of complete records after the header.
    pub committed: AtomicU64,
    pub _reserved: [u64; 5],
}

/// One segment: the accesses since the thread's previous segment.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MemRecord {
    /// From [`Header::seq`], drawn when the segment was closed.
    pub seq: u64,
    pub ts_ns: u64,
    pub count: u32,
    pub _pad: u32,
}

/// `MemEntry::via` codes: what made an access besides an instruction of the
/// program (the same codes as `lockstep_trace::Via`; a recorder test keeps
/// them equal).
pub mod via {
    pub const INSTRUCTION: u8 = 0;
    pub const MEMCPY: u8 = 1;
    pub const MEMMOVE: u8 = 2;
    pub const MEMSET: u8 = 3;
    pub const STRCPY: u8 = 4;
    pub const STRNCPY: u8 = 5;
    pub const STRCAT: u8 = 6;
    pub const STRLEN: u8 = 7;
    pub const STRCMP: u8 = 8;
    pub const MEMCMP: u8 = 9;
    pub const SYSCALL: u8 = 10;
    pub const FREE: u8 = 11;
    pub const STRNCMP: u8 = 12;
}

/// One access, as `lockstep_trace::MemAccess` packs it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemEntry {
    pub addr: u64,
    /// The original instruction's address (or a libc call's return address).
    pub ip: u64,
    pub size: u32,
    /// READ 1, WRITE 2, ATOMIC 4.
    pub flags: u8,
    /// 0 instruction, else the libc function (codes of `lockstep_trace::Via`).
    pub via: u8,
    pub _pad: u16,
}

const _: () = assert!(core::mem::size_of::<MemFileHeader>() == 64);
const _: () = assert!(core::mem::size_of::<MemRecord>() == 24);
const _: () = assert!(core::mem::size_of::<MemEntry>() == 24);

/// The agent's own system calls (its memory files, buffers, ids, waits for
/// ring room) carry these two values in `r14` and `r15`, which the syscall
/// ABI leaves alone. The recorder and the replayer read them at the entry
/// stop: such a call is the agent's business, made at a moment that
/// depends on the interleaving (a buffer filling up), so it is neither
/// recorded nor put in the replayed order. No program plausibly holds both
/// values there at a syscall.
pub const AGENT_CALL_R14: u64 = u64::from_le_bytes(*b"LKSTAGNT");
pub const AGENT_CALL_R15: u64 = u64::from_le_bytes(*b"OWNCALL!");
/// A marked agent call (a `getpid`) with this in `r13` is a yield point:
/// the thread named by `Header::yield_tid` entering a sync call, with its
/// count of sync calls in `r12`.
pub const YIELD_POINT_R13: u64 = u64::from_le_bytes(*b"YIELDPT!");

/// Where the agent puts the mappings it makes as the program runs (memory
/// files, access buffers): far from where the kernel places the program's
/// own mappings (top-down below the stack) and its heap and executable
/// (low addresses), so that the agent's mappings, made at moments a replay
/// does not reproduce, never take an address the program got when recorded.
pub const AGENT_REGION_BASE: u64 = 0x2000_0000_0000;
/// The region's size: the agent's mappings never go past it.
pub const AGENT_REGION_LEN: u64 = 0x1000_0000_0000;

/// Where the agent of each process that runs instrumented copies of the
/// program's code says where they are (a page just below its region): a
/// tracer reads [`CopyMap`] there to name an address in a copy by the
/// original instruction it stands for (a replay's divergence, `--stop-at`).
pub const COPY_MAP_ADDR: u64 = AGENT_REGION_BASE - 0x1000;
/// `CopyMap::magic`: "LKSTCOPY".
pub const COPY_MAP_MAGIC: u64 = u64::from_le_bytes(*b"LKSTCOPY");

/// The copies `[lo, hi)` and their chunk table: `len` pairs `[address in
/// the copy, original address]` at `chunks`, sorted by copy address, each
/// the first byte of one original instruction's chunk (its probe, then
/// itself).
#[repr(C)]
pub struct CopyMap {
    pub magic: u64,
    pub lo: u64,
    pub hi: u64,
    pub chunks: u64,
    pub len: u64,
}
