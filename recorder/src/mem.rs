//! Reading a tracee's memory without a ptrace stop per word:
//! process_vm_readv reads any length in one syscall. Decoders see memory
//! only through the [`Memory`] trait, so they are tested on plain buffers.

use lockstep_trace::Pid;

/// Read access to an address space.
pub trait Memory {
    /// Copies up to `buf.len()` bytes from `addr`; returns how many were
    /// readable (0 for an unmapped address).
    fn read(&self, addr: u64, buf: &mut [u8]) -> usize;

    /// Reads a NUL-terminated string of at most `max` bytes. Returns `None`
    /// for a NULL or unreadable pointer; a string longer than `max` is cut.
    fn read_cstr(&self, addr: u64, max: usize) -> Option<String> {
        if addr == 0 {
            return None;
        }
        let mut out = Vec::new();
        let mut chunk = [0u8; 256];
        let mut at = addr;
        while out.len() < max {
            // Never cross a page boundary in one read: the next page may be
            // unmapped even though the string ends before it.
            let to_page = (4096 - (at % 4096)) as usize;
            let want = chunk.len().min(to_page).min(max - out.len());
            let n = self.read(at, &mut chunk[..want]);
            if n == 0 {
                break;
            }
            if let Some(end) = chunk[..n].iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..end]);
                return Some(String::from_utf8_lossy(&out).into_owned());
            }
            out.extend_from_slice(&chunk[..n]);
            at += n as u64;
        }
        if out.is_empty() && self.read(addr, &mut chunk[..1]) == 0 {
            return None;
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    /// Reads a little-endian u64 / pointer.
    fn read_u64(&self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        (self.read(addr, &mut b) == 8).then(|| u64::from_le_bytes(b))
    }

    /// Reads a little-endian i32.
    fn read_i32(&self, addr: u64) -> Option<i32> {
        let mut b = [0u8; 4];
        (self.read(addr, &mut b) == 4).then(|| i32::from_le_bytes(b))
    }

    /// Reads a NULL-terminated array of string pointers (argv, envp), at most
    /// `max` entries.
    fn read_str_array(&self, addr: u64, max: usize) -> Option<Vec<String>> {
        if addr == 0 {
            return None;
        }
        let mut out = Vec::new();
        for i in 0..max as u64 {
            let p = self.read_u64(addr + 8 * i)?;
            if p == 0 {
                break;
            }
            out.push(self.read_cstr(p, 4096).unwrap_or_default());
        }
        Some(out)
    }
}

/// The memory of a live (stopped) tracee process.
pub struct ProcMem {
    pub pid: Pid,
}

impl Memory for ProcMem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> usize {
        if buf.is_empty() {
            return 0;
        }
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: `local` describes `buf`, which we own mutably for the call;
        // the remote iovec is only read by the kernel from the other process.
        let n = unsafe { libc::process_vm_readv(self.pid.0, &local, 1, &remote, 1, 0) };
        if n < 0 {
            0
        } else {
            n as usize
        }
    }
}

/// Copies `bytes` to `addr` in `pid` with process_vm_writev (one syscall,
/// any length; fails on read-only pages). Returns how many were written.
pub fn write_remote(pid: Pid, addr: u64, bytes: &[u8]) -> usize {
    if bytes.is_empty() {
        return 0;
    }
    let local = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: `local` describes `bytes`, which the kernel only reads; the
    // remote iovec names memory of the other process.
    let n = unsafe { libc::process_vm_writev(pid.0, &local, 1, &remote, 1, 0) };
    n.max(0) as usize
}

/// An address space made of byte buffers, for tests of decoders.
#[derive(Default)]
pub struct BufMem {
    regions: Vec<(u64, Vec<u8>)>,
}

impl BufMem {
    pub fn new() -> Self {
        Self::default()
    }
    /// Maps `bytes` at `addr`.
    pub fn map(mut self, addr: u64, bytes: impl Into<Vec<u8>>) -> Self {
        self.regions.push((addr, bytes.into()));
        self
    }
}

impl Memory for BufMem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> usize {
        for (base, bytes) in &self.regions {
            if addr >= *base && addr < base + bytes.len() as u64 {
                let off = (addr - base) as usize;
                let n = buf.len().min(bytes.len() - off);
                buf[..n].copy_from_slice(&bytes[off..off + n]);
                return n;
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cstr_stops_at_nul_and_at_unmapped_memory() {
        let m = BufMem::new()
            .map(0x1000, b"hello\0world".to_vec())
            .map(0x2000, b"abc".to_vec());
        assert_eq!(m.read_cstr(0x1000, 100).as_deref(), Some("hello"));
        assert_eq!(m.read_cstr(0x1006, 100).as_deref(), Some("world"));
        assert_eq!(m.read_cstr(0x2000, 2).as_deref(), Some("ab"));
        assert_eq!(m.read_cstr(0x9000, 100), None);
        assert_eq!(m.read_cstr(0, 100), None);
    }

    #[test]
    fn string_arrays_follow_pointers() {
        let mut ptrs = Vec::new();
        ptrs.extend_from_slice(&0x2000u64.to_le_bytes());
        ptrs.extend_from_slice(&0x2003u64.to_le_bytes());
        ptrs.extend_from_slice(&0u64.to_le_bytes());
        let m = BufMem::new()
            .map(0x1000, ptrs)
            .map(0x2000, b"ls\0-l\0".to_vec());
        assert_eq!(
            m.read_str_array(0x1000, 10),
            Some(vec!["ls".to_string(), "-l".to_string()])
        );
    }
}
