//! Memory accesses: what the race analysis reads.
//!
//! Accesses come in [`MemSegment`]s: the accesses one thread made between
//! two of its synchronization operations (or a buffer flush), deduplicated
//! by address, size and kind, the first instruction that made each kept.
//! Inside a segment the thread's lockset and vector clock are constant, so
//! the order of the accesses within it does not matter to the analysis;
//! the segment's `seq` is drawn from the global counter when the segment
//! is closed, before the sync operation that closes it takes its own.
//!
//! Stored in `mem_rows`, one row per segment, the accesses packed in a
//! blob of [`ACCESS_BYTES`]-byte little-endian entries (see
//! [`MemAccess::to_bytes`]); docs/SCHEMA.md describes the layout.

use crate::ids::{Pid, Tid};
use crate::model::Stamp;
use serde::{Deserialize, Serialize};

/// Bits of [`MemAccess::flags`].
pub mod access {
    /// The access read memory.
    pub const READ: u8 = 1;
    /// The access wrote memory.
    pub const WRITE: u8 = 2;
    /// A lock-prefixed or `xchg` instruction: synchronization, not a race.
    pub const ATOMIC: u8 = 4;
}

/// What made an access besides a plain instruction of the program: a libc
/// memory or string function called from the program (the access is
/// attributed to its call site, as ThreadSanitizer's interceptors do) or
/// the kernel filling or reading a syscall's user buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Via {
    Instruction = 0,
    Memcpy = 1,
    Memmove = 2,
    Memset = 3,
    Strcpy = 4,
    Strncpy = 5,
    Strcat = 6,
    Strlen = 7,
    Strcmp = 8,
    Memcmp = 9,
    Syscall = 10,
    Free = 11,
    Strncmp = 12,
    Strchr = 13,
    Strdup = 14,
}

impl Via {
    pub const ALL: [Via; 15] = [
        Via::Instruction,
        Via::Memcpy,
        Via::Memmove,
        Via::Memset,
        Via::Strcpy,
        Via::Strncpy,
        Via::Strcat,
        Via::Strlen,
        Via::Strcmp,
        Via::Memcmp,
        Via::Syscall,
        Via::Free,
        Via::Strncmp,
        Via::Strchr,
        Via::Strdup,
    ];

    pub fn from_code(c: u8) -> Option<Via> {
        Via::ALL.get(c as usize).copied()
    }

    /// The function's name (`memcpy`), `syscall`, or `instruction`.
    pub fn name(self) -> &'static str {
        match self {
            Via::Instruction => "instruction",
            Via::Memcpy => "memcpy",
            Via::Memmove => "memmove",
            Via::Memset => "memset",
            Via::Strcpy => "strcpy",
            Via::Strncpy => "strncpy",
            Via::Strcat => "strcat",
            Via::Strlen => "strlen",
            Via::Strcmp => "strcmp",
            Via::Memcmp => "memcmp",
            Via::Syscall => "syscall",
            Via::Free => "free",
            Via::Strncmp => "strncmp",
            Via::Strchr => "strchr",
            Via::Strdup => "strdup",
        }
    }
}

/// One access (or the union of identical ones inside a segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemAccess {
    /// The first byte touched.
    pub addr: u64,
    /// Bytes touched (1–64 for instructions; any for libc ranges).
    pub size: u32,
    /// The instruction's address (for [`Via`] other than `Instruction`:
    /// the return address of the libc call, i.e. its call site).
    pub ip: u64,
    /// [`access`] bits.
    pub flags: u8,
    pub via: Via,
}

/// Bytes of one packed [`MemAccess`].
pub const ACCESS_BYTES: usize = 24;

impl MemAccess {
    pub fn is_write(&self) -> bool {
        self.flags & access::WRITE != 0
    }
    pub fn is_read(&self) -> bool {
        self.flags & access::READ != 0
    }
    pub fn is_atomic(&self) -> bool {
        self.flags & access::ATOMIC != 0
    }

    /// `addr u64, ip u64, size u32, flags u8, via u8, 0u16`, little-endian.
    pub fn to_bytes(&self) -> [u8; ACCESS_BYTES] {
        let mut b = [0u8; ACCESS_BYTES];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..16].copy_from_slice(&self.ip.to_le_bytes());
        b[16..20].copy_from_slice(&self.size.to_le_bytes());
        b[20] = self.flags;
        b[21] = self.via as u8;
        b
    }

    /// Unpacks one entry; `None` for an unknown `via` code.
    pub fn from_bytes(b: &[u8]) -> Option<MemAccess> {
        if b.len() < ACCESS_BYTES {
            return None;
        }
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Some(MemAccess {
            addr: u64_at(0),
            ip: u64_at(8),
            size: u32::from_le_bytes(b[16..20].try_into().expect("4 bytes")),
            flags: b[20],
            via: Via::from_code(b[21])?,
        })
    }
}

/// `count` of a segment header whose accesses are those of the k-th
/// previous segment of the batch is `SAME_AS_EARLIER | k` (1 <= k <=
/// [`REPEAT_WINDOW`]): a thread that locks in a loop makes the same few
/// segments over and over.
pub const SAME_AS_EARLIER: u32 = 0xFFFF_FF00;
/// How many earlier segments a repeat may refer to.
pub const REPEAT_WINDOW: usize = 8;

/// Appends one segment to a `mem_rows.segments` blob: `seq u64, ts_ns
/// u64, count u32, 0u32`, then the packed accesses, unless they equal
/// those of one of `earlier` (the batch's last segments, most recent
/// last), which is then referred to instead.
pub fn pack_segment(blob: &mut Vec<u8>, seg: &MemSegment, earlier: &[Vec<MemAccess>]) {
    let back = (!seg.accesses.is_empty())
        .then(|| {
            earlier
                .iter()
                .rev()
                .take(REPEAT_WINDOW)
                .position(|e| *e == seg.accesses)
        })
        .flatten();
    let same = back.is_some();
    let count = match back {
        Some(i) => SAME_AS_EARLIER | (i as u32 + 1),
        None => seg.accesses.len() as u32,
    };
    blob.extend_from_slice(&seg.at.seq.0.to_le_bytes());
    blob.extend_from_slice(&seg.at.ts_ns.to_le_bytes());
    blob.extend_from_slice(&count.to_le_bytes());
    blob.extend_from_slice(&0u32.to_le_bytes());
    if !same {
        for a in &seg.accesses {
            blob.extend_from_slice(&a.to_bytes());
        }
    }
}

/// Unpacks a `mem_rows.segments` blob into the segments of thread `tid`
/// of `pid`, in order (a truncated tail and entries with unknown codes
/// are skipped).
pub fn unpack_segments(blob: &[u8], pid: Pid, tid: Tid, mechanism: &str) -> Vec<MemSegment> {
    let mut out: Vec<MemSegment> = Vec::new();
    let mut at = 0;
    while at + ACCESS_BYTES <= blob.len() {
        let u64_at = |i: usize| u64::from_le_bytes(blob[i..i + 8].try_into().expect("8 bytes"));
        let (seq, ts_ns) = (u64_at(at), u64_at(at + 8));
        let count = u32::from_le_bytes(blob[at + 16..at + 20].try_into().expect("4 bytes"));
        at += ACCESS_BYTES;
        let accesses = if count & SAME_AS_EARLIER == SAME_AS_EARLIER {
            let k = (count & 0xff) as usize;
            out.len()
                .checked_sub(k)
                .map(|i| out[i].accesses.clone())
                .unwrap_or_default()
        } else {
            let end = (at + count as usize * ACCESS_BYTES).min(blob.len());
            let v = blob[at..end]
                .chunks_exact(ACCESS_BYTES)
                .filter_map(MemAccess::from_bytes)
                .collect();
            at = end;
            v
        };
        out.push(MemSegment {
            at: Stamp {
                seq: crate::ids::Seq(seq),
                ts_ns,
            },
            pid,
            tid,
            mechanism: mechanism.to_string(),
            accesses,
        });
    }
    out
}

/// The accesses one thread made between two of its sync operations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemSegment {
    /// Drawn when the segment was closed: after every access in it, before
    /// the thread's next sync operation.
    pub at: Stamp,
    pub pid: Pid,
    pub tid: Tid,
    /// `agent` (in-process instrumentation) or `step` (ptrace single-step).
    pub mechanism: String,
    pub accesses: Vec<MemAccess>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_round_trips_through_its_packed_form() {
        let a = MemAccess {
            addr: 0x7fff_1234_5678,
            size: 8,
            ip: 0x5555_0000_1139,
            flags: access::READ | access::WRITE,
            via: Via::Memcpy,
        };
        assert_eq!(MemAccess::from_bytes(&a.to_bytes()), Some(a));
        let seg = |seq: u64, n: usize| MemSegment {
            at: Stamp {
                seq: crate::ids::Seq(seq),
                ts_ns: seq * 10,
            },
            pid: Pid(1),
            tid: Tid(2),
            mechanism: "agent".into(),
            accesses: vec![a; n],
        };
        let mut blob = Vec::new();
        let segs = [seg(5, 2), seg(9, 0), seg(12, 1), seg(13, 2), seg(14, 1)];
        let mut earlier: Vec<Vec<MemAccess>> = Vec::new();
        for s in &segs {
            pack_segment(&mut blob, s, &earlier);
            earlier.push(s.accesses.clone());
        }
        assert_eq!(
            blob.len(),
            5 * 24 + 3 * 24,
            "repeated segments are a header only"
        );
        assert_eq!(
            unpack_segments(&blob, Pid(1), Tid(2), "agent"),
            segs.to_vec()
        );
    }
}
