//! Memory accesses made by the kernel on a syscall's behalf: `read` into a
//! buffer writes it, `write` from a buffer reads it, as ThreadSanitizer's
//! interceptors count them. Each syscall becomes a segment of its buffer
//! accesses (mechanism `syscall NAME`, access via [`Via::Syscall`]) that the
//! caller merges with the recorded segments by seq.
//!
//! A buffer the kernel fills is stamped at the syscall's exit (the bytes are
//! there once it returns, `ret` of them); a buffer it reads, at the entry
//! (`count` bytes, what the program offered). Both lie between the thread's
//! sync ops around the call, which is all the detector needs.
//!
//! Where the buffers are:
//! - `read`, `pread64`, `recvfrom`, `write`, `pwrite64`, `sendto`: the
//!   arguments say (buffer, count) and the return value how much was moved;
//! - `readv`, `preadv`, `preadv2`: the iovec array is not in the trace, but
//!   the bytes the kernel wrote are (`syscall_data_rows`, kind `out`, at
//!   their addresses, cut at the return value): each region is a write;
//! - `writev`, `pwritev`, `pwritev2`: the trace keeps the bytes taken from
//!   the iovec buffers only when they went to the recording's terminal
//!   (kind `stdout`/`stderr`): those regions are reads; a vectored write to
//!   any other file is not covered (its buffers are not in the trace).
//!
//! The access's address is the call's first stack frame when the recorder
//! took a stack, else 0 (the report then names the syscall); the whole
//! stack goes with the segment ([`SyscallSegment`]) so that the report can
//! name the program's call site rather than libc's wrapper.

use lockstep_trace::{
    access, DataKind, MemAccess, MemSegment, Stamp, Syscall, SyscallData, SyscallOutcome, Via,
};

/// The syscalls whose buffers are accesses (what to read from the trace).
pub const SYSCALLS: &[&str] = &[
    "read", "pread64", "recvfrom", "write", "pwrite64", "sendto", "readv", "preadv", "preadv2",
    "writev", "pwritev", "pwritev2",
];

/// Whether the buffers of syscall `name` come from its recorded data
/// ([`SyscallData`]) rather than from its arguments.
pub fn needs_data(name: &str) -> bool {
    matches!(
        name,
        "readv" | "preadv" | "preadv2" | "writev" | "pwritev" | "pwritev2"
    )
}

/// One syscall's buffer accesses, and the call stack the recorder took at
/// its entry (empty when it took none).
#[derive(Clone, Debug, PartialEq)]
pub struct SyscallSegment {
    pub segment: MemSegment,
    pub stack: Vec<u64>,
}

fn returned(s: &Syscall) -> Option<i64> {
    s.ret.filter(|_| s.outcome == SyscallOutcome::Returned)
}

fn segment(s: &Syscall, at: Stamp, write: bool, buffers: &[(u64, u64)]) -> Option<SyscallSegment> {
    let ip = s.stack.first().copied().unwrap_or(0);
    let accesses: Vec<MemAccess> = buffers
        .iter()
        .filter(|&&(addr, size)| addr != 0 && size != 0)
        .map(|&(addr, size)| MemAccess {
            addr,
            size: size.min(u32::MAX as u64) as u32,
            ip,
            flags: if write { access::WRITE } else { access::READ },
            via: Via::Syscall,
        })
        .collect();
    if accesses.is_empty() {
        return None;
    }
    Some(SyscallSegment {
        segment: MemSegment {
            at,
            pid: s.pid,
            tid: s.tid,
            mechanism: format!("syscall {}", s.name),
            accesses,
        },
        stack: s.stack.clone(),
    })
}

/// The segment of kernel accesses of `s`, if it touches a user buffer its
/// arguments describe (the read/write-like calls; see [`syscall_data_segment`]
/// for the vectored ones).
pub fn syscall_segment(s: &Syscall) -> Option<SyscallSegment> {
    let (buf, count) = (s.args[1], s.args[2]);
    let ret = returned(s);
    match s.name.as_str() {
        "read" | "pread64" | "recvfrom" => {
            let n = ret.filter(|&r| r > 0)? as u64;
            segment(s, s.exit?, true, &[(buf, n)])
        }
        "write" | "pwrite64" | "sendto" => segment(s, s.entry, false, &[(buf, count)]),
        _ => None,
    }
}

/// The segment of kernel accesses of a vectored call `s` from the regions
/// of its recorded data, given as `(kind, address, length)`: for
/// `readv`/`preadv`/`preadv2`, the `out` regions (written, at the exit);
/// for `writev`/`pwritev`/`pwritev2`, the terminal regions (read, at the
/// entry). `None` for any other call, a failed call, or no regions.
pub fn syscall_data_segment(
    s: &Syscall,
    regions: &[(DataKind, u64, u64)],
) -> Option<SyscallSegment> {
    returned(s).filter(|&r| r > 0)?;
    let pick = |want: &dyn Fn(DataKind) -> bool| -> Vec<(u64, u64)> {
        regions
            .iter()
            .filter(|(k, _, _)| want(*k))
            .map(|&(_, a, n)| (a, n))
            .collect()
    };
    match s.name.as_str() {
        "readv" | "preadv" | "preadv2" => segment(s, s.exit?, true, &pick(&|k| k == DataKind::Out)),
        "writev" | "pwritev" | "pwritev2" => {
            segment(s, s.entry, false, &pick(&|k| k != DataKind::Out))
        }
        _ => None,
    }
}

/// [`syscall_data_segment`] from the data as [`lockstep_trace::TraceReader::syscall_data`]
/// gives it (`data.entry` must be `s`'s entry).
pub fn syscall_segment_from(s: &Syscall, data: &SyscallData) -> Option<SyscallSegment> {
    debug_assert_eq!(data.entry, s.entry.seq);
    let regions: Vec<(DataKind, u64, u64)> = data
        .regions
        .iter()
        .map(|r| (r.kind, r.addr, r.bytes.len() as u64))
        .collect();
    syscall_data_segment(s, &regions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::OpsBuilder;
    use lockstep_trace::{DataRegion, Seq};

    #[test]
    fn read_writes_what_it_returned_and_write_reads_what_it_was_given() {
        let mut b = OpsBuilder::new();
        let r = syscall_segment(&b.syscall(2, "read", 0x1000, 64, 5))
            .unwrap()
            .segment;
        assert_eq!(r.at.seq, Seq(2));
        assert_eq!((r.accesses[0].size, r.accesses[0].is_write()), (5, true));
        assert_eq!(r.mechanism, "syscall read");
        let w = syscall_segment(&b.syscall(2, "write", 0x2000, 7, 7))
            .unwrap()
            .segment;
        assert_eq!(w.at.seq, Seq(3));
        assert_eq!((w.accesses[0].size, w.accesses[0].is_read()), (7, true));
        assert!(syscall_segment(&b.syscall(2, "read", 0x1000, 64, -11)).is_none());
        assert!(syscall_segment(&b.syscall(2, "close", 0, 0, 0)).is_none());
        assert!(syscall_segment(&b.syscall(2, "readv", 0x1000, 2, 9)).is_none());
    }

    #[test]
    fn readv_writes_each_recorded_out_region_at_the_exit() {
        let mut b = OpsBuilder::new();
        let mut s = b.syscall(2, "readv", 0x7fff_0000, 2, 9);
        s.stack = vec![0x7000_1234, 0x40_1160];
        let data = SyscallData {
            entry: s.entry.seq,
            pid: s.pid,
            tid: s.tid,
            regions: vec![
                DataRegion {
                    kind: DataKind::Out,
                    addr: 0x5000,
                    bytes: vec![1; 4],
                },
                DataRegion {
                    kind: DataKind::Out,
                    addr: 0x6000,
                    bytes: vec![2; 5],
                },
            ],
        };
        let g = syscall_segment_from(&s, &data).unwrap();
        assert_eq!(g.segment.at, s.exit.unwrap());
        assert_eq!(g.segment.mechanism, "syscall readv");
        let got: Vec<(u64, u32, bool, u64)> = g
            .segment
            .accesses
            .iter()
            .map(|a| (a.addr, a.size, a.is_write(), a.ip))
            .collect();
        assert_eq!(
            got,
            vec![
                (0x5000, 4, true, 0x7000_1234),
                (0x6000, 5, true, 0x7000_1234)
            ]
        );
        assert_eq!(g.stack, s.stack);
        // A failed readv wrote nothing.
        let failed = b.syscall(2, "readv", 0x7fff_0000, 2, -14);
        assert!(syscall_data_segment(&failed, &[(DataKind::Out, 0x5000, 4)]).is_none());
    }

    #[test]
    fn writev_reads_the_buffers_that_reached_the_terminal() {
        let mut b = OpsBuilder::new();
        let s = b.syscall(2, "writev", 0x7fff_0000, 2, 12);
        let g = syscall_data_segment(
            &s,
            &[(DataKind::Stdout, 0x5000, 5), (DataKind::Stdout, 0x6000, 7)],
        )
        .unwrap();
        assert_eq!(g.segment.at, s.entry);
        assert!(g.segment.accesses.iter().all(|a| a.is_read()));
        assert_eq!(g.segment.accesses.len(), 2);
        // To any other file: no data recorded, no access.
        assert!(syscall_data_segment(&s, &[]).is_none());
        assert!(needs_data("writev") && needs_data("preadv") && !needs_data("read"));
    }
}
