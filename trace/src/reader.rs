//! [`TraceReader`]: opens a trace, checks that it is one this build can read,
//! and gives its contents back as model types.

use crate::error::TraceError;
use crate::ids::{Pid, Seq, Tid};
use crate::model::*;
use crate::schema::{APPLICATION_ID, MIN_READABLE_VERSION, SCHEMA_VERSION};
use rusqlite::{Connection, OpenFlags, Row};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Which syscalls to read. Empty fields match everything.
#[derive(Clone, Debug, Default)]
pub struct SyscallFilter {
    pub pid: Option<Pid>,
    pub tid: Option<Tid>,
    pub names: Vec<String>,
}

/// A process as the `processes` view describes it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ProcessInfo {
    pub pid: Pid,
    pub ppid: Option<Pid>,
    pub spawn_kind: SpawnKind,
    pub start_seq: Seq,
    pub exit_seq: Option<Seq>,
    pub status: Option<ExitStatus>,
    pub exe: Option<String>,
    pub argv: Option<Vec<String>>,
    pub exec_count: i64,
    pub threads: i64,
    /// How its sync operations were recorded: `agent` or `none`.
    pub sync_mechanism: String,
}

/// An open, validated trace.
pub struct TraceReader {
    pub(crate) conn: Connection,
    path: PathBuf,
    /// The trace's `PRAGMA user_version`.
    pub(crate) version: i64,
}

impl TraceReader {
    /// Opens `path`, refusing anything that is not a complete, readable
    /// lockstep trace of a version this build knows.
    pub fn open(path: &Path) -> Result<Self, TraceError> {
        check_header(path)?;
        let sq = |e| TraceError::sqlite(path, e);
        // Read-write so that SQLite can recover the WAL of a recording that
        // was cut short; fall back to read-only for traces we cannot write.
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .or_else(|_| Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY))
            .map_err(sq)?;
        let app: i64 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(sq)?;
        if app != APPLICATION_ID {
            return Err(TraceError::NotATrace(path.to_path_buf()));
        }
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sq)?;
        if version > SCHEMA_VERSION {
            return Err(TraceError::NewerSchema {
                path: path.to_path_buf(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version < MIN_READABLE_VERSION {
            return Err(TraceError::NotATrace(path.to_path_buf()));
        }
        // Touch every table once so that a damaged file fails here, with one
        // clear error, rather than halfway through a report.
        for table in [
            "meta",
            "spawn_rows",
            "exit_rows",
            "exec_rows",
            "signal_rows",
            "syscall_rows",
            "sync_rows",
            "sync_names",
            "stacks",
            "mapping_rows",
            "hang_rows",
            "finding_rows",
            "mem_rows",
            "syscall_data_rows",
            "serial_rows",
            "switch_rows",
            "wakeup_rows",
            "sched_attr_rows",
            "schedstat_rows",
            "tsc_rows",
        ] {
            if (table == "mem_rows" && version < 2)
                || ((table == "syscall_data_rows" || table == "serial_rows") && version < 3)
                || (table == "tsc_rows" && version < 4)
            {
                continue;
            }
            let schedule = [
                "switch_rows",
                "wakeup_rows",
                "sched_attr_rows",
                "schedstat_rows",
            ];
            if schedule.contains(&table) && version < 3 {
                continue;
            }
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(sq)?;
        }
        Ok(TraceReader {
            conn,
            path: path.to_path_buf(),
            version,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn sq(&self) -> impl Fn(rusqlite::Error) -> TraceError + '_ {
        move |e| TraceError::sqlite(&self.path, e)
    }

    /// A metadata value (`command`, `complete`, `start_time`, ...).
    pub fn meta(&self, key: &str) -> Result<Option<String>, TraceError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")
            .map_err(self.sq())?;
        let mut rows = st.query([key]).map_err(self.sq())?;
        match rows.next().map_err(self.sq())? {
            Some(r) => Ok(Some(r.get(0).map_err(self.sq())?)),
            None => Ok(None),
        }
    }

    /// The recorded command line.
    pub fn command(&self) -> Result<Vec<String>, TraceError> {
        match self.meta("command")? {
            Some(s) => serde_json::from_str(&s).map_err(|e| self.bad(format!("meta.command: {e}"))),
            None => Ok(Vec::new()),
        }
    }

    pub(crate) fn bad(&self, detail: String) -> TraceError {
        TraceError::BadValue {
            path: self.path.clone(),
            detail,
        }
    }

    /// Every process, in order of creation.
    pub fn processes(&self) -> Result<Vec<ProcessInfo>, TraceError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT pid, ppid, spawn_kind, start_seq, exit_seq, exit_how, exit_code, exit_signal,
                        core_dumped, exe, argv, exec_count, sync_mechanism,
                        (SELECT count(*) FROM spawn_rows t WHERE t.pid = p.pid AND t.seq >= p.start_seq
                           AND (p.exit_seq IS NULL OR t.seq < p.exit_seq))
                 FROM processes p ORDER BY start_seq",
            )
            .map_err(self.sq())?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    ProcessInfo {
                        pid: Pid(r.get(0)?),
                        ppid: r.get::<_, Option<i32>>(1)?.map(Pid),
                        spawn_kind: SpawnKind::Root,
                        start_seq: Seq(r.get::<_, i64>(3)? as u64),
                        exit_seq: r.get::<_, Option<i64>>(4)?.map(|s| Seq(s as u64)),
                        status: exit_status(r, 5)?,
                        exe: r.get(9)?,
                        argv: None,
                        exec_count: r.get(11)?,
                        threads: r.get(13)?,
                        sync_mechanism: r.get(12)?,
                    },
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(10)?,
                ))
            })
            .map_err(self.sq())?;
        let mut out = Vec::new();
        for row in rows {
            let (mut p, kind, argv) = row.map_err(self.sq())?;
            p.spawn_kind =
                SpawnKind::parse(&kind).ok_or_else(|| self.bad(format!("spawn kind {kind:?}")))?;
            p.argv = match argv {
                Some(a) => {
                    Some(serde_json::from_str(&a).map_err(|e| self.bad(format!("argv: {e}")))?)
                }
                None => None,
            };
            out.push(p);
        }
        Ok(out)
    }

    /// Every process and thread creation, in sequence order.
    pub fn spawns(&self) -> Result<Vec<Spawn>, TraceError> {
        let mut st = self
            .conn
            .prepare("SELECT seq, ts_ns, kind, tid, pid, parent_pid, creator_tid, clone_flags FROM spawn_rows ORDER BY seq")
            .map_err(self.sq())?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(2)?,
                    Spawn {
                        at: stamp(r, 0, 1)?,
                        kind: SpawnKind::Root,
                        tid: Tid(r.get(3)?),
                        pid: Pid(r.get(4)?),
                        parent_pid: r.get::<_, Option<i32>>(5)?.map(Pid),
                        creator_tid: r.get::<_, Option<i32>>(6)?.map(Tid),
                        clone_flags: r.get::<_, Option<i64>>(7)?.map(|f| f as u64),
                    },
                ))
            })
            .map_err(self.sq())?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, mut s) = row.map_err(self.sq())?;
            s.kind =
                SpawnKind::parse(&kind).ok_or_else(|| self.bad(format!("spawn kind {kind:?}")))?;
            out.push(s);
        }
        Ok(out)
    }

    /// Every thread and process end, in sequence order.
    pub fn exits(&self) -> Result<Vec<Exit>, TraceError> {
        let mut st = self
            .conn
            .prepare("SELECT seq, ts_ns, tid, pid, how, code, signal, core_dumped, process_exit FROM exit_rows ORDER BY seq")
            .map_err(self.sq())?;
        let rows = st
            .query_map([], |r| {
                Ok(Exit {
                    at: stamp(r, 0, 1)?,
                    tid: Tid(r.get(2)?),
                    pid: Pid(r.get(3)?),
                    status: exit_status(r, 4)?.unwrap_or(ExitStatus::Unknown),
                    process_exit: r.get(8)?,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<_, _>>().map_err(self.sq())
    }

    /// Every successful exec, in sequence order.
    pub fn execs(&self) -> Result<Vec<Exec>, TraceError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT seq, ts_ns, pid, former_tid, exe, path, argv FROM exec_rows ORDER BY seq",
            )
            .map_err(self.sq())?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    Exec {
                        at: stamp(r, 0, 1)?,
                        pid: Pid(r.get(2)?),
                        former_tid: Tid(r.get(3)?),
                        exe: r.get(4)?,
                        path: r.get(5)?,
                        argv: Vec::new(),
                    },
                    r.get::<_, String>(6)?,
                ))
            })
            .map_err(self.sq())?;
        let mut out = Vec::new();
        for row in rows {
            let (mut x, argv) = row.map_err(self.sq())?;
            x.argv = serde_json::from_str(&argv).map_err(|e| self.bad(format!("argv: {e}")))?;
            out.push(x);
        }
        Ok(out)
    }

    /// Every signal delivery, in sequence order.
    pub fn signals(&self) -> Result<Vec<Signal>, TraceError> {
        let mut st = self
            .conn
            .prepare("SELECT seq, ts_ns, pid, tid, signo, code, sender_pid, fault_addr FROM signal_rows ORDER BY seq")
            .map_err(self.sq())?;
        let rows = st
            .query_map([], |r| {
                Ok(Signal {
                    at: stamp(r, 0, 1)?,
                    pid: Pid(r.get(2)?),
                    tid: Tid(r.get(3)?),
                    signo: r.get(4)?,
                    code: r.get(5)?,
                    sender_pid: r.get::<_, Option<i32>>(6)?.map(Pid),
                    fault_addr: r.get::<_, Option<i64>>(7)?.map(|a| a as u64),
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<_, _>>().map_err(self.sq())
    }

    /// Whether the trace keeps the bytes syscalls moved (schema 3 and
    /// later): what a replay needs.
    pub fn has_syscall_data(&self) -> bool {
        self.version >= 3
    }

    /// The data of every syscall, in order of entry (empty before schema 3).
    pub fn syscall_data(&self) -> Result<Vec<crate::sysdata::SyscallData>, TraceError> {
        use crate::sysdata::{DataKind, DataRegion, SyscallData};
        let mut out: Vec<SyscallData> = Vec::new();
        if !self.has_syscall_data() {
            return Ok(out);
        }
        let mut st = self
            .conn
            .prepare("SELECT entry_seq, pid, tid, kind, addr, data FROM syscall_data_rows ORDER BY entry_seq, idx")
            .map_err(self.sq())?;
        let mut rows = st.query([]).map_err(self.sq())?;
        while let Some(r) = rows.next().map_err(self.sq())? {
            let entry = Seq(r.get::<_, i64>(0).map_err(self.sq())? as u64);
            let kind: String = r.get(3).map_err(self.sq())?;
            let region = DataRegion {
                kind: DataKind::parse(&kind).ok_or_else(|| TraceError::BadValue {
                    path: self.path.clone(),
                    detail: format!("syscall data of kind {kind:?}"),
                })?,
                addr: r.get::<_, i64>(4).map_err(self.sq())? as u64,
                bytes: r.get(5).map_err(self.sq())?,
            };
            match out.last_mut() {
                Some(d) if d.entry == entry => d.regions.push(region),
                _ => out.push(SyscallData {
                    entry,
                    pid: Pid(r.get(1).map_err(self.sq())?),
                    tid: Tid(r.get(2).map_err(self.sq())?),
                    regions: vec![region],
                }),
            }
        }
        Ok(out)
    }

    /// The decisions of a serialized recording, in order (none otherwise).
    pub fn serial_events(&self) -> Result<Vec<crate::serial::SerialEvent>, TraceError> {
        use crate::serial::{regs_of_blob, PreemptPoint, SerialEvent, SerialKind};
        if self.version < 3 {
            return Ok(Vec::new());
        }
        let sql = if self.version < 4 {
            "SELECT seq, ts_ns, pid, tid, kind, regs, stack_sum, NULL FROM serial_rows ORDER BY seq"
        } else {
            "SELECT seq, ts_ns, pid, tid, kind, regs, stack_sum, sync_op FROM serial_rows ORDER BY seq"
        };
        let mut st = self.conn.prepare(sql).map_err(self.sq())?;
        let rows = st
            .query_map([], |r| {
                let kind: String = r.get(4)?;
                let regs: Option<Vec<u8>> = r.get(5)?;
                let sum: Option<i64> = r.get(6)?;
                let sync_op: Option<i64> = r.get(7)?;
                Ok(SerialEvent {
                    at: stamp(r, 0, 1)?,
                    pid: Pid(r.get(2)?),
                    tid: Tid(r.get(3)?),
                    kind: SerialKind::parse(&kind).unwrap_or(SerialKind::Run),
                    point: regs.map(|b| PreemptPoint {
                        regs: regs_of_blob(&b),
                        stack_sum: sum.unwrap_or(0) as u64,
                        sync_op: sync_op.map(|n| n as u64),
                    }),
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<_, _>>().map_err(self.sq())
    }

    /// The trapped rdtsc/rdtscp reads in seq order (none for a recording
    /// without trapping, or older than schema version 4).
    pub fn tsc_reads(&self) -> Result<Vec<crate::tsc::TscRead>, TraceError> {
        if self.version < 4 {
            return Ok(Vec::new());
        }
        let mut st = self
            .conn
            .prepare("SELECT seq, ts_ns, pid, tid, value, aux FROM tsc_rows ORDER BY seq")
            .map_err(self.sq())?;
        let rows = st
            .query_map([], |r| {
                Ok(crate::tsc::TscRead {
                    at: stamp(r, 0, 1)?,
                    pid: Pid(r.get(2)?),
                    tid: Tid(r.get(3)?),
                    value: r.get::<_, i64>(4)? as u64,
                    aux: r.get(5)?,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<_, _>>().map_err(self.sq())
    }

    /// Calls `f` for every syscall matching `filter`, in order of entry,
    /// without holding them all in memory.
    pub fn each_syscall(
        &self,
        filter: &SyscallFilter,
        mut f: impl FnMut(Syscall) -> Result<(), TraceError>,
    ) -> Result<(), TraceError> {
        let mut sql = String::from(
            "SELECT pid, tid, nr, name, a0, a1, a2, a3, a4, a5, entry_seq, entry_ns, decoded, text,
                    exit_seq, exit_ns, outcome, ret, error, result, stack FROM syscall_rows WHERE 1",
        );
        let mut params: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(p) = filter.pid {
            params.push(p.0.into());
            sql.push_str(&format!(" AND pid = ?{}", params.len()));
        }
        if let Some(t) = filter.tid {
            params.push(t.0.into());
            sql.push_str(&format!(" AND tid = ?{}", params.len()));
        }
        if !filter.names.is_empty() {
            let mut holes = Vec::new();
            for n in &filter.names {
                params.push(n.clone().into());
                holes.push(format!("?{}", params.len()));
            }
            sql.push_str(&format!(" AND name IN ({})", holes.join(",")));
        }
        sql.push_str(" ORDER BY entry_seq");
        let mut st = self.conn.prepare(&sql).map_err(self.sq())?;
        let mut rows = st
            .query(rusqlite::params_from_iter(params))
            .map_err(self.sq())?;
        while let Some(r) = rows.next().map_err(self.sq())? {
            let s = self.syscall_row(r).map_err(self.sq())?;
            let s = s.map_err(|d| self.bad(d))?;
            f(s)?;
        }
        Ok(())
    }

    /// The syscalls matching `filter`, in order of entry.
    pub fn syscalls(&self, filter: &SyscallFilter) -> Result<Vec<Syscall>, TraceError> {
        let mut out = Vec::new();
        self.each_syscall(filter, |s| {
            out.push(s);
            Ok(())
        })?;
        Ok(out)
    }

    fn syscall_row(&self, r: &Row<'_>) -> Result<Result<Syscall, String>, rusqlite::Error> {
        let mut args = [0u64; 6];
        for (i, a) in args.iter_mut().enumerate() {
            *a = r.get::<_, i64>(4 + i)? as u64;
        }
        let outcome: String = r.get(16)?;
        let Some(outcome) = SyscallOutcome::parse(&outcome) else {
            return Ok(Err(format!("syscall outcome {outcome:?}")));
        };
        let decoded: String = r.get(12)?;
        let result: String = r.get(19)?;
        let (Ok(decoded), Ok(result)) = (
            serde_json::from_str(&decoded),
            serde_json::from_str(&result),
        ) else {
            return Ok(Err("syscall arguments are not JSON".into()));
        };
        let exit = match (r.get::<_, Option<i64>>(14)?, r.get::<_, Option<i64>>(15)?) {
            (Some(s), Some(t)) => Some(Stamp {
                seq: Seq(s as u64),
                ts_ns: t as u64,
            }),
            _ => None,
        };
        Ok(Ok(Syscall {
            pid: Pid(r.get(0)?),
            tid: Tid(r.get(1)?),
            nr: r.get(2)?,
            name: r.get(3)?,
            args,
            entry: stamp(r, 10, 11)?,
            decoded,
            text: r.get(13)?,
            exit,
            outcome,
            ret: r.get(17)?,
            error: r.get(18)?,
            result,
            stack: r
                .get::<_, Option<String>>(20)?
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default(),
        }))
    }

    /// Runs a read-only query and returns its rows as JSON values; used by
    /// inspection commands that aggregate in SQL.
    pub fn query_rows(&self, sql: &str) -> Result<Vec<Vec<serde_json::Value>>, TraceError> {
        let mut st = self.conn.prepare(sql).map_err(self.sq())?;
        let n = st.column_count();
        let rows = st
            .query_map([], |r| {
                (0..n)
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => serde_json::Value::Null,
                            rusqlite::types::ValueRef::Integer(v) => v.into(),
                            rusqlite::types::ValueRef::Real(v) => v.into(),
                            rusqlite::types::ValueRef::Text(t) => {
                                String::from_utf8_lossy(t).into_owned().into()
                            }
                            rusqlite::types::ValueRef::Blob(b) => b.len().into(),
                        })
                    })
                    .collect::<Result<Vec<_>, rusqlite::Error>>()
            })
            .map_err(self.sq())?;
        rows.collect::<Result<_, _>>().map_err(self.sq())
    }
}

pub(crate) fn stamp(r: &Row<'_>, seq: usize, ts: usize) -> Result<Stamp, rusqlite::Error> {
    Ok(Stamp {
        seq: Seq(r.get::<_, i64>(seq)? as u64),
        ts_ns: r.get::<_, i64>(ts)? as u64,
    })
}

/// Reads (how, code, signal, core_dumped) starting at column `how`.
fn exit_status(r: &Row<'_>, how: usize) -> Result<Option<ExitStatus>, rusqlite::Error> {
    let h: Option<String> = r.get(how)?;
    Ok(match h.as_deref() {
        None => None,
        Some("exited") => Some(ExitStatus::Exited {
            code: r.get::<_, Option<i32>>(how + 1)?.unwrap_or(0),
        }),
        Some("killed") => Some(ExitStatus::Killed {
            signal: r.get::<_, Option<i32>>(how + 2)?.unwrap_or(0),
            core_dumped: r.get::<_, Option<bool>>(how + 3)?.unwrap_or(false),
        }),
        Some("execed") => Some(ExitStatus::Execed),
        Some(_) => Some(ExitStatus::Unknown),
    })
}

/// Checks the SQLite header before SQLite sees the file: not SQLite at all,
/// or shorter than the header says (a truncated copy), are told apart here.
fn check_header(path: &Path) -> Result<(), TraceError> {
    let io = |source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(TraceError::Missing(path.to_path_buf()))
        }
        Err(e) => return Err(io(e)),
    };
    if f.metadata().map_err(io)?.is_dir() {
        return Err(TraceError::NotATrace(path.to_path_buf()));
    }
    let len = f.metadata().map_err(io)?.len();
    let mut header = [0u8; 100];
    let mut got = 0;
    while got < header.len() {
        match f.read(&mut header[got..]).map_err(io)? {
            0 => break,
            n => got += n,
        }
    }
    if got < header.len() || &header[..16] != b"SQLite format 3\0" {
        return Err(TraceError::NotATrace(path.to_path_buf()));
    }
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536u64,
        n => n as u64,
    };
    let pages = u32::from_be_bytes(header[28..32].try_into().expect("4 bytes")) as u64;
    let change = &header[24..28];
    let valid_for = &header[92..96];
    // The in-header size is only meaningful when the two counters agree.
    if change == valid_for && pages > 0 && len < pages * page_size {
        return Err(TraceError::Truncated(path.to_path_buf()));
    }
    Ok(())
}

/// Per-syscall totals of a trace, as `lockstep summary` shows them.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SyscallStat {
    pub name: String,
    pub calls: u64,
    pub errors: u64,
    /// Time between entry and exit stops, summed (includes tracing overhead).
    pub total_ns: u64,
}

impl TraceReader {
    /// Totals per syscall name, the most time-consuming first.
    pub fn syscall_stats(&self) -> Result<Vec<SyscallStat>, TraceError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT name, count(*), sum(error IS NOT NULL), sum(coalesce(exit_ns - entry_ns, 0)) AS t
                 FROM syscall_rows GROUP BY name ORDER BY t DESC, name",
            )
            .map_err(self.sq())?;
        let rows = st
            .query_map([], |r| {
                Ok(SyscallStat {
                    name: r.get(0)?,
                    calls: r.get::<_, i64>(1)? as u64,
                    errors: r.get::<_, i64>(2)? as u64,
                    total_ns: r.get::<_, i64>(3)?.max(0) as u64,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<_, _>>().map_err(self.sq())
    }
}
