//! Memory accesses made by the kernel on a syscall's behalf: `read` into a
//! buffer writes it, `write` from a buffer reads it, as ThreadSanitizer's
//! interceptors count them. Each syscall becomes a one-access segment
//! (mechanism `syscall NAME`, access via [`Via::Syscall`]) that the caller
//! merges with the recorded segments by seq.
//!
//! A buffer the kernel fills is stamped at the syscall's exit (the bytes are
//! there once it returns, `ret` of them); a buffer it reads, at the entry
//! (`count` bytes, what the program offered). Both lie between the thread's
//! sync ops around the call, which is all the detector needs. The access's
//! address is the call's first stack frame when the recorder took one, else
//! 0 (the report then names the syscall). Vectored calls (`readv`,
//! `writev`, `recvmsg`, `sendmsg`) need the iovec array, which the trace
//! does not keep: they are not covered.

use lockstep_trace::{access, MemAccess, MemSegment, Syscall, SyscallOutcome, Via};

/// The segment of kernel accesses of `s`, if it touches a user buffer.
pub fn syscall_segment(s: &Syscall) -> Option<MemSegment> {
    let (buf, count) = (s.args[1], s.args[2]);
    let ret = s.ret.filter(|_| s.outcome == SyscallOutcome::Returned);
    let (write, size, at) = match s.name.as_str() {
        "read" | "pread64" | "recvfrom" => (true, ret.filter(|&r| r > 0)? as u64, s.exit?),
        "write" | "pwrite64" | "sendto" => (false, count, s.entry),
        _ => return None,
    };
    if buf == 0 || size == 0 {
        return None;
    }
    Some(MemSegment {
        at,
        pid: s.pid,
        tid: s.tid,
        mechanism: format!("syscall {}", s.name),
        accesses: vec![MemAccess {
            addr: buf,
            size: size.min(u32::MAX as u64) as u32,
            ip: s.stack.first().copied().unwrap_or(0),
            flags: if write { access::WRITE } else { access::READ },
            via: Via::Syscall,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::OpsBuilder;
    use lockstep_trace::Seq;

    #[test]
    fn read_writes_what_it_returned_and_write_reads_what_it_was_given() {
        let mut b = OpsBuilder::new();
        let r = syscall_segment(&b.syscall(2, "read", 0x1000, 64, 5)).unwrap();
        assert_eq!(r.at.seq, Seq(2));
        assert_eq!((r.accesses[0].size, r.accesses[0].is_write()), (5, true));
        assert_eq!(r.mechanism, "syscall read");
        let w = syscall_segment(&b.syscall(2, "write", 0x2000, 7, 7)).unwrap();
        assert_eq!(w.at.seq, Seq(3));
        assert_eq!((w.accesses[0].size, w.accesses[0].is_read()), (7, true));
        assert!(syscall_segment(&b.syscall(2, "read", 0x1000, 64, -11)).is_none());
        assert!(syscall_segment(&b.syscall(2, "close", 0, 0, 0)).is_none());
    }
}
