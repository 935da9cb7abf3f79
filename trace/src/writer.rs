//! [`TraceWriter`]: appends [`Record`]s to a new trace, batched in
//! transactions so that a row costs microseconds, not an fsync.

use crate::error::TraceError;
use crate::model::*;
use crate::schema::{APPLICATION_ID, CREATE, INDEX_AT_END, SCHEMA_VERSION};
use crate::syncrows::SyncRows;
use rusqlite::{params, Connection};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Rows per transaction. Large enough that commits are rare, small enough
/// that a crash of the recorder loses little.
const BATCH_ROWS: usize = 8192;

/// Writes one trace. Create it with [`TraceWriter::create`], feed it records
/// with [`TraceWriter::write`], end with [`TraceWriter::finish`]. Dropping it
/// without `finish` leaves a readable trace up to the last committed batch.
pub struct TraceWriter {
    conn: Connection,
    path: PathBuf,
    in_tx: usize,
    /// Sync rows, their names and stacks.
    sync: SyncRows,
    /// Memory segments waiting to be written, a batch per thread.
    pending_mem: HashMap<(i32, i32), MemBatch>,
}

/// Consecutive memory segments of one thread, packed for one row.
struct MemBatch {
    mechanism: String,
    first: Stamp,
    last_seq: u64,
    segments: i64,
    accesses: i64,
    blob: Vec<u8>,
    /// The accesses of the batch's last segments (at most REPEAT_WINDOW).
    earlier: std::collections::VecDeque<Vec<crate::memory::MemAccess>>,
}

/// A batch is written once its blob reaches this size.
const MEM_BATCH_BYTES: usize = 256 * 1024;

impl TraceWriter {
    /// Creates a new, empty trace at `path`. An existing file is an error
    /// unless `force`, in which case it is replaced.
    pub fn create(path: &Path, force: bool) -> Result<Self, TraceError> {
        if path.exists() {
            if !force {
                return Err(TraceError::Exists(path.to_path_buf()));
            }
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut p = path.as_os_str().to_owned();
                p.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(p));
            }
        }
        // Create the file ourselves first so that an unwritable location is
        // reported as such, not as an obscure SQLite error.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|source| TraceError::Unwritable {
                path: path.to_path_buf(),
                source,
            })?;
        let sq = |e| TraceError::sqlite(path, e);
        let conn = Connection::open(path).map_err(sq)?;
        // Bigger pages and cache, rarer checkpoints: traces are written
        // append-only at up to millions of rows a second.
        conn.pragma_update(None, "page_size", 16384).map_err(sq)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sq)?;
        conn.pragma_update(None, "cache_size", -131072)
            .map_err(sq)?;
        conn.pragma_update(None, "wal_autocheckpoint", 16384)
            .map_err(sq)?;
        // A trace must survive the recorder dying, not the machine crashing:
        // no fsync at all (the OS has the pages once a transaction commits).
        conn.pragma_update(None, "synchronous", "OFF").map_err(sq)?;
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(sq)?;
        conn.execute_batch(CREATE).map_err(sq)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(sq)?;
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('complete', '0'), ('schema_version', ?1)",
            params![SCHEMA_VERSION.to_string()],
        )
        .map_err(sq)?;
        Ok(TraceWriter {
            conn,
            path: path.to_path_buf(),
            in_tx: 0,
            sync: SyncRows::default(),
            pending_mem: HashMap::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sq(&self) -> impl Fn(rusqlite::Error) -> TraceError + '_ {
        move |e| TraceError::sqlite(&self.path, e)
    }

    /// Appends one record; commits every [`BATCH_ROWS`] rows.
    pub fn write(&mut self, rec: &Record) -> Result<(), TraceError> {
        self.begin()?;
        self.insert(rec).map_err(self.sq())?;
        self.added(match rec {
            Record::SyncEvents(events) => events.len(),
            _ => 1,
        })
    }

    /// [`TraceWriter::write`] of a record the caller gives up: a memory
    /// segment's accesses are kept without a copy.
    pub fn write_owned(&mut self, rec: Record) -> Result<(), TraceError> {
        let Record::Mem(m) = rec else {
            return self.write(&rec);
        };
        self.begin()?;
        self.add_mem(*m).map_err(self.sq())?;
        self.added(1)
    }

    fn begin(&mut self) -> Result<(), TraceError> {
        if self.in_tx == 0 {
            self.conn.execute_batch("BEGIN").map_err(self.sq())?;
        }
        Ok(())
    }

    /// Counts `rows` more in the transaction; commits when it is full.
    fn added(&mut self, rows: usize) -> Result<(), TraceError> {
        self.in_tx += rows;
        if self.in_tx >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// Commits what has been written so far.
    pub fn flush(&mut self) -> Result<(), TraceError> {
        if !self.pending_mem.is_empty() {
            if self.in_tx == 0 {
                self.conn.execute_batch("BEGIN").map_err(self.sq())?;
                self.in_tx = 1;
            }
            let keys: Vec<_> = self.pending_mem.keys().cloned().collect();
            for k in keys {
                self.insert_mem_batch(&k).map_err(self.sq())?;
            }
        }
        if !self.sync.is_empty() {
            if self.in_tx == 0 {
                self.conn.execute_batch("BEGIN").map_err(self.sq())?;
                self.in_tx = 1;
            }
            self.sync.flush(&self.conn).map_err(self.sq())?;
        }
        if self.in_tx > 0 {
            self.conn.execute_batch("COMMIT").map_err(self.sq())?;
            self.in_tx = 0;
        }
        Ok(())
    }

    /// Marks the trace complete, checkpoints the WAL and leaves one
    /// self-contained file.
    pub fn finish(mut self) -> Result<(), TraceError> {
        self.flush()?;
        self.conn.execute_batch(INDEX_AT_END).map_err(self.sq())?;
        self.write(&Record::Meta {
            key: "complete".into(),
            value: "1".into(),
        })?;
        self.flush()?;
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(self.sq())?;
        self.conn
            .query_row("PRAGMA journal_mode=DELETE", [], |_| Ok(()))
            .map_err(self.sq())?;
        Ok(())
    }

    fn insert(&mut self, rec: &Record) -> Result<(), rusqlite::Error> {
        match rec {
            Record::Sync(o) => return self.sync.push_op(&self.conn, o),
            Record::SyncEvents(events) => {
                for e in events {
                    self.sync.push_event(&self.conn, e)?;
                }
                return Ok(());
            }
            _ => {}
        }
        if let Record::Mem(m) = rec {
            return self.add_mem((**m).clone());
        }
        self.insert_other(rec)
    }

    /// Adds a memory segment to its thread's batch.
    fn add_mem(&mut self, m: crate::memory::MemSegment) -> Result<(), rusqlite::Error> {
        let key = (m.pid.0, m.tid.0);
        if self
            .pending_mem
            .get(&key)
            .is_some_and(|b| b.mechanism != m.mechanism)
        {
            self.insert_mem_batch(&key)?;
        }
        let batch = self.pending_mem.entry(key).or_insert_with(|| MemBatch {
            mechanism: m.mechanism.clone(),
            first: m.at,
            last_seq: m.at.seq.0,
            segments: 0,
            accesses: 0,
            blob: Vec::new(),
            earlier: Default::default(),
        });
        crate::memory::pack_segment(&mut batch.blob, &m, batch.earlier.make_contiguous());
        if batch.earlier.len() == crate::memory::REPEAT_WINDOW {
            batch.earlier.pop_front();
        }
        batch.last_seq = m.at.seq.0;
        batch.segments += 1;
        batch.accesses += m.accesses.len() as i64;
        batch.earlier.push_back(m.accesses);
        if batch.blob.len() >= MEM_BATCH_BYTES {
            self.insert_mem_batch(&key)?;
        }
        Ok(())
    }

    /// Writes the pending batch of `key` as one row.
    fn insert_mem_batch(&mut self, key: &(i32, i32)) -> Result<(), rusqlite::Error> {
        let Some(b) = self.pending_mem.remove(key) else {
            return Ok(());
        };
        self.conn
            .prepare_cached(
                "INSERT INTO mem_rows(seq, last_seq, ts_ns, pid, tid, mechanism, nsegments, count, segments)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                b.first.seq.0 as i64,
                b.last_seq as i64,
                b.first.ts_ns as i64,
                key.0,
                key.1,
                b.mechanism,
                b.segments,
                b.accesses,
                b.blob
            ])?;
        Ok(())
    }

    fn insert_other(&self, rec: &Record) -> Result<(), rusqlite::Error> {
        let c = &self.conn;
        if crate::sched::insert(c, rec)? {
            return Ok(());
        }
        match rec {
            Record::Meta { key, value } => {
                c.prepare_cached("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)")?
                    .execute(params![key, value])?;
            }
            Record::Spawn(s) => {
                c.prepare_cached(
                    "INSERT INTO spawn_rows(seq, ts_ns, kind, tid, pid, parent_pid, creator_tid, clone_flags)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    s.at.seq.0 as i64,
                    s.at.ts_ns as i64,
                    s.kind.as_str(),
                    s.tid.0,
                    s.pid.0,
                    s.parent_pid.map(|p| p.0),
                    s.creator_tid.map(|t| t.0),
                    s.clone_flags.map(|f| f as i64),
                ])?;
            }
            Record::Exit(e) => {
                let (how, code, signal, core) = match e.status {
                    ExitStatus::Exited { code } => ("exited", Some(code), None, None),
                    ExitStatus::Killed {
                        signal,
                        core_dumped,
                    } => ("killed", None, Some(signal), Some(core_dumped)),
                    ExitStatus::Execed => ("execed", None, None, None),
                    ExitStatus::Unknown => ("unknown", None, None, None),
                };
                c.prepare_cached(
                    "INSERT INTO exit_rows(seq, ts_ns, tid, pid, how, code, signal, core_dumped, process_exit)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    e.at.seq.0 as i64,
                    e.at.ts_ns as i64,
                    e.tid.0,
                    e.pid.0,
                    how,
                    code,
                    signal,
                    core,
                    e.process_exit
                ])?;
            }
            Record::Exec(x) => {
                let argv = serde_json::to_string(&x.argv).expect("argv serializes");
                c.prepare_cached(
                    "INSERT INTO exec_rows(seq, ts_ns, pid, former_tid, exe, path, argv)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    x.at.seq.0 as i64,
                    x.at.ts_ns as i64,
                    x.pid.0,
                    x.former_tid.0,
                    x.exe,
                    x.path,
                    argv
                ])?;
            }
            Record::Signal(s) => {
                c.prepare_cached(
                    "INSERT INTO signal_rows(seq, ts_ns, pid, tid, signo, code, sender_pid, fault_addr)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    s.at.seq.0 as i64,
                    s.at.ts_ns as i64,
                    s.pid.0,
                    s.tid.0,
                    s.signo,
                    s.code,
                    s.sender_pid.map(|p| p.0),
                    s.fault_addr.map(|a| a as i64)
                ])?;
            }
            Record::Sync(_) | Record::SyncEvents(_) => {
                unreachable!("sync ops are inserted by `insert`")
            }
            Record::Mem(_) => unreachable!("memory segments are batched by `insert`"),
            Record::Serial(e) => {
                c.prepare_cached(
                    "INSERT INTO serial_rows(seq, ts_ns, pid, tid, kind, regs, stack_sum, sync_op)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    e.at.seq.0 as i64,
                    e.at.ts_ns as i64,
                    e.pid.0,
                    e.tid.0,
                    e.kind.as_str(),
                    e.point.as_ref().map(|p| crate::serial::regs_blob(&p.regs)),
                    e.point.as_ref().map(|p| p.stack_sum as i64),
                    e.point.as_ref().and_then(|p| p.sync_op).map(|n| n as i64),
                ])?;
            }
            Record::Tsc(t) => {
                c.prepare_cached(
                    "INSERT INTO tsc_rows(seq, ts_ns, pid, tid, value, aux)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    t.at.seq.0 as i64,
                    t.at.ts_ns as i64,
                    t.pid.0,
                    t.tid.0,
                    t.value as i64,
                    t.aux,
                ])?;
            }
            Record::SyscallData(d) => {
                let mut st = c.prepare_cached(
                    "INSERT INTO syscall_data_rows(entry_seq, idx, pid, tid, kind, addr, data)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for (i, r) in d.regions.iter().enumerate() {
                    st.execute(params![
                        d.entry.0 as i64,
                        i as i64,
                        d.pid.0,
                        d.tid.0,
                        r.kind.as_str(),
                        r.addr as i64,
                        r.bytes,
                    ])?;
                }
            }
            Record::Hang(h) => {
                let mut st = c.prepare_cached(
                    "INSERT INTO hang_rows(seq, ts_ns, timeout_ms, pid, tid, syscall, entry_seq, args, wchan, stack)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?;
                for t in &h.threads {
                    st.execute(params![
                        h.at.seq.0 as i64,
                        h.at.ts_ns as i64,
                        h.timeout_ms as i64,
                        t.pid.0,
                        t.tid.0,
                        t.syscall,
                        t.entry_seq.map(|s| s.0 as i64),
                        t.args,
                        t.wchan,
                        serde_json::to_string(&t.stack).expect("stack serializes")
                    ])?;
                }
            }
            Record::Mappings { at, pid, maps } => {
                let mut st = c.prepare_cached(
                    "INSERT INTO mapping_rows(seq, pid, start, end, file_offset, perms, path)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for m in maps {
                    st.execute(params![
                        at.seq.0 as i64,
                        pid.0,
                        m.start as i64,
                        m.end as i64,
                        m.file_offset as i64,
                        m.perms,
                        m.path
                    ])?;
                }
            }
            Record::Syscall(s) => {
                c.prepare_cached(
                    "INSERT INTO syscall_rows(pid, tid, nr, name, a0, a1, a2, a3, a4, a5, entry_seq, entry_ns,
                        decoded, text, exit_seq, exit_ns, outcome, ret, error, result, stack)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
                )?
                .execute(params![
                    s.pid.0,
                    s.tid.0,
                    s.nr,
                    s.name,
                    s.args[0] as i64,
                    s.args[1] as i64,
                    s.args[2] as i64,
                    s.args[3] as i64,
                    s.args[4] as i64,
                    s.args[5] as i64,
                    s.entry.seq.0 as i64,
                    s.entry.ts_ns as i64,
                    s.decoded.to_string(),
                    s.text,
                    s.exit.map(|x| x.seq.0 as i64),
                    s.exit.map(|x| x.ts_ns as i64),
                    s.outcome.as_str(),
                    s.ret,
                    s.error,
                    s.result.to_string(),
                    (!s.stack.is_empty()).then(|| serde_json::to_string(&s.stack).expect("stack serializes")),
                ])?;
            }
            Record::SchedSwitch(_)
            | Record::SchedWakeup(_)
            | Record::SchedAttr(_)
            | Record::SchedStat(_) => unreachable!("inserted by sched::insert"),
        }
        Ok(())
    }
}

impl Drop for TraceWriter {
    fn drop(&mut self) {
        // Keep what was written: a recording cut short still opens.
        let _ = self.flush();
    }
}
