//! Syscall argument decoding: raw registers plus the tracee's memory become
//! a JSON object (for queries and analyses) and a strace-like text (for
//! people). Input arguments are read at entry, output arguments at exit, as
//! the kernel left them.

pub mod flags;
pub mod names;
pub mod signature;
pub mod table;

use crate::mem::Memory;
use serde_json::{json, Map, Value};
use signature::{signature, Arg};

/// How many bytes of a read/write buffer the text shows, like strace -s 32.
const BUF_SHOWN: usize = 32;

enum Piece {
    Text(String),
    /// An output argument, rendered at exit from what the kernel wrote.
    Out {
        key: &'static str,
        arg: Arg,
        raw: u64,
    },
}

/// What the entry stop produced; completed by [`EntryDecode::finish`] at exit.
pub struct EntryDecode {
    pieces: Vec<Piece>,
    json: Map<String, Value>,
}

/// The decoded form of one complete syscall.
pub struct Decoded {
    pub args: Value,
    pub text: String,
    pub result: Value,
}

/// Decodes the arguments of `name` at its entry stop.
pub fn decode_entry(name: &str, args: &[u64; 6], mem: &dyn Memory) -> EntryDecode {
    let mut d = EntryDecode {
        pieces: Vec::new(),
        json: Map::new(),
    };
    let Some(sig) = signature(name) else {
        let text = args
            .iter()
            .map(|a| format!("{a:#x}"))
            .collect::<Vec<_>>()
            .join(", ");
        d.pieces.push(Piece::Text(text));
        return d;
    };
    for (i, &(key, arg)) in sig.iter().enumerate() {
        let raw = args[i];
        let next = args.get(i + 1).copied().unwrap_or(0);
        match entry_arg(name, key, arg, raw, next, args, mem) {
            Some((text, value)) => {
                if !value.is_null() || arg == Arg::Path {
                    d.json.insert(key.to_string(), value);
                }
                if !text.is_empty() {
                    d.pieces.push(Piece::Text(text));
                }
            }
            None => d.pieces.push(Piece::Out { key, arg, raw }),
        }
    }
    if name == "futex" {
        d.json
            .insert("cmd".into(), json!(flags::futex_cmd(args[1])));
        d.json.insert("private".into(), json!(args[1] & 128 != 0));
    }
    d
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Renders up to [`BUF_SHOWN`] bytes of a buffer of `len` bytes at `addr`.
fn buffer(mem: &dyn Memory, addr: u64, len: u64) -> String {
    let shown = (len as usize).min(BUF_SHOWN);
    let mut b = vec![0u8; shown];
    let n = mem.read(addr, &mut b);
    if n < shown {
        return format!("{addr:#x}");
    }
    let mut s = quote(&String::from_utf8_lossy(&b));
    if len as usize > shown {
        s.push_str("...");
    }
    s
}

fn ptr(raw: u64) -> String {
    if raw == 0 {
        "NULL".into()
    } else {
        format!("{raw:#x}")
    }
}

fn timespec(mem: &dyn Memory, addr: u64) -> (String, Value) {
    if addr == 0 {
        return ("NULL".into(), Value::Null);
    }
    match (mem.read_u64(addr), mem.read_u64(addr + 8)) {
        (Some(sec), Some(nsec)) => (
            format!("{{tv_sec={}, tv_nsec={}}}", sec as i64, nsec as i64),
            json!({"sec": sec as i64, "nsec": nsec as i64}),
        ),
        _ => (format!("{addr:#x}"), json!(addr)),
    }
}

/// One input argument: `Some((text, json))`, or `None` for an output
/// argument to be rendered at exit.
fn entry_arg(
    name: &str,
    key: &str,
    arg: Arg,
    raw: u64,
    next: u64,
    args: &[u64; 6],
    mem: &dyn Memory,
) -> Option<(String, Value)> {
    let i32v = raw as i32;
    let s = |t: String| Some((t.clone(), Value::String(t)));
    match arg {
        Arg::Fd | Arg::Pid | Arg::Int => Some((i32v.to_string(), json!(i32v))),
        Arg::Long => Some(((raw as i64).to_string(), json!(raw as i64))),
        Arg::UInt => Some(((raw as u32).to_string(), json!(raw as u32))),
        Arg::Size => Some((raw.to_string(), json!(raw))),
        Arg::Hex => Some((format!("{raw:#x}"), json!(raw))),
        Arg::Ptr => Some((ptr(raw), json!(raw))),
        Arg::DirFd => Some((flags::at_dirfd(raw), json!(i32v))),
        Arg::Path => match mem.read_cstr(raw, 4096) {
            Some(p) => Some((quote(&p), Value::String(p))),
            None => Some((ptr(raw), Value::Null)),
        },
        Arg::OpenFlags => s(flags::open_flags(raw)),
        Arg::Mode => Some((
            if raw as u32 == 0 {
                "0".into()
            } else {
                format!("0{:o}", raw as u32)
            },
            json!(raw as u32),
        )),
        Arg::AtFlags => s(flags::at_flags(raw)),
        Arg::AccessMode => s(flags::access_mode(raw)),
        Arg::Argv => match mem.read_str_array(raw, 4096) {
            Some(v) => {
                let text = format!(
                    "[{}]",
                    v.iter().map(|a| quote(a)).collect::<Vec<_>>().join(", ")
                );
                Some((text, json!(v)))
            }
            None => Some((ptr(raw), Value::Null)),
        },
        Arg::Envp => {
            let n = mem.read_str_array(raw, 65536).map(|v| v.len()).unwrap_or(0);
            Some((format!("{} /* {n} vars */", ptr(raw)), json!(n)))
        }
        Arg::CloneFlags => s(flags::clone_flags(raw)),
        Arg::CloneArgs => match mem.read_u64(raw) {
            Some(f) => {
                let exit_signal = mem.read_u64(raw + 32).unwrap_or(0);
                let fl = flags::clone_flags(f | (exit_signal & 0xff));
                Some((format!("{{flags={fl}}}"), json!(fl)))
            }
            None => Some((ptr(raw), Value::Null)),
        },
        Arg::FutexOp => s(flags::futex_op(raw)),
        Arg::FutexTimeout => match flags::futex_cmd(args[1]) {
            // WAIT, LOCK_PI, WAIT_BITSET, WAIT_REQUEUE_PI, LOCK_PI2 take a timeout.
            0 | 6 | 9 | 11 | 13 => Some(timespec(mem, raw)),
            // REQUEUE, CMP_REQUEUE, WAKE_OP, CMP_REQUEUE_PI take val2 there.
            3 | 4 | 5 | 12 => Some(((raw as u32).to_string(), json!(raw as u32))),
            _ => Some((String::new(), Value::Null)),
        },
        Arg::FcntlCmd => s(flags::fcntl_cmd(raw)),
        Arg::FcntlArg => match args[1] {
            0 | 1030 => Some((i32v.to_string(), json!(i32v))),
            2 => s(flags::fd_flags(raw)),
            4 => s(flags::open_flags(raw)),
            1 | 3 | 9 | 1032 | 1034 => Some((String::new(), Value::Null)),
            _ => Some((format!("{raw:#x}"), json!(raw))),
        },
        Arg::WaitOptions => s(flags::wait_options(raw)),
        Arg::Signal => Some((names::signal_name(i32v), json!(i32v))),
        Arg::SchedPolicy => s(flags::sched_policy(raw)),
        Arg::SchedParam => match mem.read_i32(raw) {
            Some(p) => Some((format!("[{p}]"), json!(p))),
            None => Some((ptr(raw), Value::Null)),
        },
        Arg::SchedAttr => {
            let mut b = [0u8; 24];
            if raw != 0 && mem.read(raw, &mut b) == 24 {
                let policy = u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")) as u64;
                let nice = i32::from_le_bytes(b[16..20].try_into().expect("4 bytes"));
                let prio = u32::from_le_bytes(b[20..24].try_into().expect("4 bytes"));
                let pol = flags::sched_policy(policy);
                Some((
                    format!("{{sched_policy={pol}, sched_nice={nice}, sched_priority={prio}}}"),
                    json!({"policy": pol, "nice": nice, "priority": prio}),
                ))
            } else {
                Some((ptr(raw), Value::Null))
            }
        }
        Arg::PrioWhich => s(flags::prio_which(raw)),
        Arg::InBuf => Some((buffer(mem, raw, next), Value::Null)),
        Arg::IdType => s(flags::idtype(raw)),
        Arg::Prot => s(flags::mmap_prot(raw)),
        Arg::MmapFlags => s(flags::mmap_flags(raw)),
        Arg::PipeFlags => s(flags::pipe_flags(raw)),
        Arg::SigHow => s(flags::sigprocmask_how(raw)),
        Arg::SockFamily => s(flags::socket_family(raw)),
        Arg::SockType => s(flags::socket_type(raw)),
        Arg::Timespec => Some(timespec(mem, raw)),
        Arg::FdFlags => s(flags::fd_flags(raw)),
        Arg::OutBuf | Arg::OutWaitStatus | Arg::OutSiginfo | Arg::OutFdPair => {
            let _ = (name, key);
            None
        }
    }
}

impl EntryDecode {
    /// The input arguments decoded so far.
    pub fn args(&self) -> &Map<String, Value> {
        &self.json
    }

    /// Completes the decoding at the exit stop: `ret` is the raw return
    /// value (`None` when the syscall never returned), `mem` the address
    /// space as the kernel left it (`None` when it is gone).
    pub fn finish(self, ret: Option<i64>, mem: Option<&dyn Memory>) -> Decoded {
        let ok = ret.is_some_and(|r| !(-4095..0).contains(&r));
        let mut result = Map::new();
        let mut texts = Vec::with_capacity(self.pieces.len());
        for piece in self.pieces {
            match piece {
                Piece::Text(t) => texts.push(t),
                Piece::Out { key, arg, raw } => {
                    let rendered = match (ok, mem) {
                        (true, Some(mem)) => {
                            exit_arg(arg, raw, ret.unwrap_or(0), mem, key, &mut result)
                        }
                        _ => None,
                    };
                    texts.push(rendered.unwrap_or_else(|| ptr(raw)));
                }
            }
        }
        Decoded {
            args: Value::Object(self.json),
            text: texts.join(", "),
            result: Value::Object(result),
        }
    }
}

fn exit_arg(
    arg: Arg,
    raw: u64,
    ret: i64,
    mem: &dyn Memory,
    key: &str,
    result: &mut Map<String, Value>,
) -> Option<String> {
    match arg {
        Arg::OutBuf => Some(buffer(mem, raw, ret.max(0) as u64)),
        Arg::OutFdPair => {
            let (a, b) = (mem.read_i32(raw)?, mem.read_i32(raw + 4)?);
            result.insert(key.into(), json!([a, b]));
            Some(format!("[{a}, {b}]"))
        }
        Arg::OutWaitStatus => {
            if ret <= 0 || raw == 0 {
                return None;
            }
            let st = mem.read_i32(raw)?;
            result.insert("wstatus".into(), json!(st));
            if st & 0x7f == 0 {
                result.insert("exit_code".into(), json!((st >> 8) & 0xff));
            } else if ((st & 0x7f) + 1) as i8 >> 1 > 0 {
                result.insert("signal".into(), json!(st & 0x7f));
            }
            Some(flags::wait_status(st))
        }
        Arg::OutSiginfo => {
            if raw == 0 {
                return None;
            }
            let (signo, code, pid, status) = (
                mem.read_i32(raw)?,
                mem.read_i32(raw + 8)?,
                mem.read_i32(raw + 16)?,
                mem.read_i32(raw + 24)?,
            );
            result.insert("si_pid".into(), json!(pid));
            result.insert("si_code".into(), json!(code));
            result.insert("si_status".into(), json!(status));
            Some(format!(
                "{{si_signo={}, si_code={}, si_pid={pid}, si_status={status}}}",
                if signo == 0 {
                    "0".into()
                } else {
                    names::signal_name(signo)
                },
                names::si_code(signo, code)
            ))
        }
        _ => None,
    }
}

/// The error name of a failed syscall's return value, if it failed.
pub fn error_name(ret: i64) -> Option<String> {
    if (-4095..0).contains(&ret) {
        Some(
            names::errno_name(-ret)
                .map(str::to_string)
                .unwrap_or_else(|| format!("E{}", -ret)),
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::BufMem;

    #[test]
    fn openat_decodes_path_and_flags() {
        let mem = BufMem::new().map(0x1000, b"/etc/passwd\0".to_vec());
        let d = decode_entry(
            "openat",
            &[(-100i64) as u64, 0x1000, 0o2000000, 0, 0, 0],
            &mem,
        )
        .finish(Some(3), Some(&mem));
        assert_eq!(d.text, "AT_FDCWD, \"/etc/passwd\", O_RDONLY|O_CLOEXEC, 0");
        assert_eq!(d.args["path"], "/etc/passwd");
        assert_eq!(d.args["dirfd"], -100);
    }

    #[test]
    fn pipe_fds_are_read_at_exit() {
        let entry_mem = BufMem::new();
        let e = decode_entry("pipe2", &[0x2000, 0, 0, 0, 0, 0], &entry_mem);
        let mut fds = 3i32.to_le_bytes().to_vec();
        fds.extend_from_slice(&4i32.to_le_bytes());
        let exit_mem = BufMem::new().map(0x2000, fds);
        let d = e.finish(Some(0), Some(&exit_mem));
        assert_eq!(d.text, "[3, 4], 0");
        assert_eq!(d.result["pipefd"], json!([3, 4]));
    }

    #[test]
    fn failed_calls_leave_outputs_raw() {
        let d = decode_entry("pipe", &[0x2000, 0, 0, 0, 0, 0], &BufMem::new())
            .finish(Some(-24), Some(&BufMem::new()));
        assert_eq!(d.text, "0x2000");
        assert_eq!(error_name(-24).as_deref(), Some("EMFILE"));
        assert_eq!(error_name(3), None);
    }

    #[test]
    fn futex_wait_reads_its_timeout() {
        let mut ts = 1u64.to_le_bytes().to_vec();
        ts.extend_from_slice(&500u64.to_le_bytes());
        let mem = BufMem::new().map(0x3000, ts);
        let d = decode_entry("futex", &[0x7f00, 128, 2, 0x3000, 0, 0], &mem)
            .finish(Some(0), Some(&mem));
        assert_eq!(
            d.text,
            "0x7f00, FUTEX_WAIT_PRIVATE, 2, {tv_sec=1, tv_nsec=500}, 0x0, 0"
        );
        assert_eq!(d.args["cmd"], 0);
        assert_eq!(d.args["timeout"]["nsec"], 500);
    }

    #[test]
    fn write_shows_its_buffer_and_execve_its_argv() {
        let mem = BufMem::new().map(0x1000, b"foo\n".to_vec());
        let d = decode_entry("write", &[1, 0x1000, 4, 0, 0, 0], &mem).finish(Some(4), None);
        assert_eq!(d.text, "1, \"foo\\n\", 4");
        let mut argv = 0x2000u64.to_le_bytes().to_vec();
        argv.extend_from_slice(&0u64.to_le_bytes());
        let mem = BufMem::new()
            .map(0x1000, argv)
            .map(0x2000, b"wc\0".to_vec())
            .map(0x3000, b"/usr/bin/wc\0".to_vec());
        let d = decode_entry("execve", &[0x3000, 0x1000, 0, 0, 0, 0], &mem).finish(Some(0), None);
        assert_eq!(d.args["argv"], json!(["wc"]));
        assert!(d.text.starts_with("\"/usr/bin/wc\", [\"wc\"], NULL"));
    }
}
