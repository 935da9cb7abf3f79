//! Importing the agent's memory files into the trace.
//!
//! Each thread whose memory accesses the agent captures appends segments to
//! a file of its own, `<agent area>.mem.<tid>` (layout in
//! `lockstep-agent-abi`: a 64-byte [`abi::MemFileHeader`], then records of a
//! [`abi::MemRecord`] and its [`abi::MemEntry`]s). The recorder imports a
//! thread's file when the thread is gone, and every file left at the end of
//! the recording (a hang kill, a signal, a crash, exec'd processes), and
//! deletes it. Files are read as a stream, a record at a time: a
//! sync-heavy thread's file can hold millions of segments.
//!
//! The file is written by the program, so nothing in it is trusted: the
//! magic is checked, `committed` is clamped to the file's size, a record
//! cut short (the process died while writing it, or `committed` lies) ends
//! the import, and entries with an unknown `via` code are skipped.

use crate::sink::Sink;
use crate::RecordError;
use lockstep_agent_abi as abi;
use lockstep_trace::memory::ACCESS_BYTES;
use lockstep_trace::{MemAccess, MemSegment, Pid, Record, Seq, Stamp, Tid};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

const HEADER: usize = std::mem::size_of::<abi::MemFileHeader>();
const RECORD: usize = std::mem::size_of::<abi::MemRecord>();
const ENTRY: usize = std::mem::size_of::<abi::MemEntry>();
const _: () = assert!(ENTRY == ACCESS_BYTES);

/// Why a memory file could not be imported (at all).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MemFileError {
    #[error("shorter than its header ({0} bytes)")]
    Short(usize),
    #[error("bad magic {0:#x}")]
    Magic(u64),
}

/// What one file held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub segments: Vec<MemSegment>,
    /// Entries dropped for an unknown `via` code.
    pub bad_entries: u64,
    /// A record was cut short (only complete records are kept).
    pub truncated: bool,
}

/// What reading one file found, besides its segments.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Damage {
    /// Entries dropped for an unknown `via` code.
    pub bad_entries: u64,
    /// A record was cut short (only complete records are kept).
    pub truncated: bool,
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

/// Parses the contents of one memory file held in memory.
pub fn parse(buf: &[u8]) -> Result<Parsed, MemFileError> {
    let mut segments = Vec::new();
    let damage = read_segments(buf, buf.len() as u64, &mut |s| {
        segments.push(s);
        true
    })?;
    Ok(Parsed {
        segments,
        bad_entries: damage.bad_entries,
        truncated: damage.truncated,
    })
}

/// Reads a memory file of `len` bytes from `r` one record at a time,
/// handing each segment to `each` (which returns false to stop): memory
/// stays bounded by the largest record, whatever the file's size.
pub fn read_segments(
    mut r: impl Read,
    len: u64,
    each: &mut dyn FnMut(MemSegment) -> bool,
) -> Result<Damage, MemFileError> {
    let mut head = [0u8; HEADER];
    if len < HEADER as u64 || r.read_exact(&mut head).is_err() {
        return Err(MemFileError::Short(len.min(HEADER as u64) as usize));
    }
    let magic = u64_at(&head, 0);
    if magic != abi::MEM_MAGIC {
        return Err(MemFileError::Magic(magic));
    }
    let pid = Pid(u32_at(&head, 8) as i32);
    let tid = Tid(u32_at(&head, 12) as i32);
    // `committed` is the program's word: never read past the file.
    let mut left = u64_at(&head, 16).min(len - HEADER as u64);
    let mut out = Damage::default();
    let mut rec = [0u8; RECORD];
    let mut entries = Vec::new();
    while left > 0 {
        if left < RECORD as u64 || r.read_exact(&mut rec).is_err() {
            out.truncated = true;
            break;
        }
        left -= RECORD as u64;
        let seq = u64_at(&rec, 0);
        let ts_ns = u64_at(&rec, 8);
        let count = u32_at(&rec, 16) as u64;
        let size = count * ENTRY as u64;
        if size > left {
            out.truncated = true;
            break;
        }
        entries.resize(size as usize, 0);
        if r.read_exact(&mut entries).is_err() {
            out.truncated = true;
            break;
        }
        left -= size;
        let mut accesses = Vec::with_capacity(count as usize);
        for e in entries.chunks_exact(ENTRY) {
            match MemAccess::from_bytes(e) {
                Some(a) => accesses.push(a),
                None => out.bad_entries += 1,
            }
        }
        if accesses.is_empty() {
            continue;
        }
        let seg = MemSegment {
            at: Stamp {
                seq: Seq(seq),
                ts_ns,
            },
            pid,
            tid,
            mechanism: "agent".into(),
            accesses,
        };
        if !each(seg) {
            break;
        }
    }
    Ok(out)
}

/// The memory files of one recording: `<area>.mem.<tid>`.
pub struct MemLog {
    area: PathBuf,
    /// Segments and accesses imported so far.
    pub segments: u64,
    pub accesses: u64,
}

impl MemLog {
    /// The files of the agent area at `area`.
    pub fn new(area: &Path) -> MemLog {
        MemLog {
            area: area.to_path_buf(),
            segments: 0,
            accesses: 0,
        }
    }

    fn file_of(&self, tid: Tid) -> PathBuf {
        let mut p = self.area.clone().into_os_string();
        p.push(format!(".mem.{}", tid.0));
        PathBuf::from(p)
    }

    /// Imports and deletes the file of `tid`, if it has one (called when the
    /// thread is gone, so nobody writes it any more).
    pub fn import_thread(&mut self, tid: Tid, sink: &mut Sink) -> Result<(), RecordError> {
        let path = self.file_of(tid);
        if path.exists() {
            self.import(&path, sink)?;
        }
        Ok(())
    }

    /// Imports and deletes every file still there (end of the recording).
    pub fn import_all(&mut self, sink: &mut Sink) -> Result<(), RecordError> {
        let (Some(dir), Some(name)) = (self.area.parent(), self.area.file_name()) else {
            return Ok(());
        };
        let prefix = format!("{}.mem.", name.to_string_lossy());
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        let mut files: Vec<(i64, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                let tid = n.strip_prefix(&prefix)?.parse().ok()?;
                Some((tid, e.path()))
            })
            .collect();
        files.sort();
        for (_, path) in files {
            self.import(&path, sink)?;
        }
        Ok(())
    }

    /// Imports one file (a bad file is logged and skipped: the recording
    /// goes on) and deletes it.
    fn import(&mut self, path: &Path, sink: &mut Sink) -> Result<(), RecordError> {
        let mut sent = Ok(());
        let (mut segments, mut accesses) = (0u64, 0u64);
        let mut each = |seg: MemSegment| {
            segments += 1;
            accesses += seg.accesses.len() as u64;
            sent = sink.send(Record::Mem(Box::new(seg)));
            sent.is_ok()
        };
        let read = std::fs::File::open(path)
            .and_then(|f| Ok((f.metadata()?.len(), f)))
            .map_err(|e| e.to_string())
            .and_then(|(len, f)| {
                read_segments(BufReader::with_capacity(1 << 16, f), len, &mut each)
                    .map_err(|e| e.to_string())
            });
        let _ = std::fs::remove_file(path);
        sent?;
        self.segments += segments;
        self.accesses += accesses;
        match read {
            Err(e) => tracing::warn!(path = %path.display(), "memory file not imported: {e}"),
            Ok(d) if d.truncated || d.bad_entries > 0 => tracing::warn!(
                path = %path.display(),
                truncated = d.truncated,
                bad_entries = d.bad_entries,
                "memory file damaged; complete records imported"
            ),
            Ok(_) => tracing::debug!(path = %path.display(), segments, "memory file imported"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_trace::memory::{access, Via};

    fn header(committed: u64) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&abi::MEM_MAGIC.to_le_bytes());
        b.extend_from_slice(&7i32.to_le_bytes());
        b.extend_from_slice(&9i32.to_le_bytes());
        b.extend_from_slice(&committed.to_le_bytes());
        b.resize(HEADER, 0);
        b
    }

    fn record(seq: u64, entries: &[[u8; ENTRY]]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&seq.to_le_bytes());
        b.extend_from_slice(&(seq * 10).to_le_bytes());
        b.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for e in entries {
            b.extend_from_slice(e);
        }
        b
    }

    fn access(addr: u64, flags: u8) -> MemAccess {
        MemAccess {
            addr,
            size: 4,
            ip: 0x1139,
            flags,
            via: Via::Instruction,
        }
    }

    /// A file of two records, `committed` as given (None: the true length).
    fn file(committed: Option<u64>) -> (Vec<u8>, usize) {
        let r1 = record(5, &[access(0x10, access::READ).to_bytes()]);
        let mut bad = access(0x20, access::WRITE).to_bytes();
        bad[21] = 200;
        let r2 = record(
            8,
            &[bad, access(0x30, access::WRITE | access::ATOMIC).to_bytes()],
        );
        let body = [r1.clone(), r2].concat();
        let mut b = header(committed.unwrap_or(body.len() as u64));
        b.extend_from_slice(&body);
        // Grown ahead of what is written, as the agent's ftruncate does.
        b.resize(b.len() + 4096, 0);
        (b, r1.len())
    }

    #[test]
    fn complete_records_with_unknown_via_skipped() {
        let (b, _) = file(None);
        let p = parse(&b).unwrap();
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.bad_entries, 1);
        assert!(!p.truncated);
        let s = &p.segments[1];
        assert_eq!(
            (s.pid, s.tid, s.at.seq, s.at.ts_ns),
            (Pid(7), Tid(9), Seq(8), 80)
        );
        assert_eq!(s.mechanism, "agent");
        assert_eq!(
            s.accesses,
            vec![access(0x30, access::WRITE | access::ATOMIC)]
        );
        assert_eq!(p.segments[0].accesses, vec![access(0x10, access::READ)]);
    }

    #[test]
    fn truncated_last_record_is_dropped() {
        let (b, first) = file(None);
        // Cut the file in the middle of the second record's entries.
        let cut = &b[..HEADER + first + RECORD + 10];
        let p = parse(cut).unwrap();
        assert!(p.truncated);
        assert_eq!(p.segments.len(), 1);
        // `committed` in the middle of a record header.
        let (b, _) = file(Some(first as u64 + 3));
        let p = parse(&b).unwrap();
        assert!(p.truncated);
        assert_eq!(p.segments.len(), 1);
    }

    #[test]
    fn committed_beyond_the_file_and_huge_counts_are_not_trusted() {
        let (mut b, _) = file(Some(u64::MAX));
        b.truncate(b.len() - 4096);
        assert_eq!(parse(&b).unwrap().segments.len(), 2);
        let mut b = header(RECORD as u64);
        let mut r = record(1, &[]);
        r[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        b.extend_from_slice(&r);
        let p = parse(&b).unwrap();
        assert!(p.truncated && p.segments.is_empty());
    }

    #[test]
    fn bad_headers() {
        assert_eq!(parse(&[0u8; 10]), Err(MemFileError::Short(10)));
        let mut b = header(0);
        b[0] = b'X';
        assert!(matches!(parse(&b), Err(MemFileError::Magic(_))));
        assert_eq!(parse(&header(0)).unwrap(), Parsed::default());
    }

    #[test]
    fn the_agents_via_codes_are_the_traces() {
        use lockstep_agent_abi::via;
        let pairs = [
            (via::INSTRUCTION, Via::Instruction),
            (via::MEMCPY, Via::Memcpy),
            (via::MEMMOVE, Via::Memmove),
            (via::MEMSET, Via::Memset),
            (via::STRCPY, Via::Strcpy),
            (via::STRNCPY, Via::Strncpy),
            (via::STRCAT, Via::Strcat),
            (via::STRLEN, Via::Strlen),
            (via::STRCMP, Via::Strcmp),
            (via::MEMCMP, Via::Memcmp),
            (via::SYSCALL, Via::Syscall),
            (via::FREE, Via::Free),
            (via::STRNCMP, Via::Strncmp),
        ];
        for (code, v) in pairs {
            assert_eq!(Via::from_code(code), Some(v), "code {code}");
        }
    }
}
