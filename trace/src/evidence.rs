//! The evidence the analyses read beyond processes and syscalls: sync
//! ops (names and stacks interned), mapping snapshots, the hang snapshot,
//! and the findings a report stored. Split from `reader.rs`, same type.

use crate::error::TraceError;
use crate::ids::{Pid, Seq, Tid};
use crate::memory::MemSegment;
use crate::model::*;
use crate::reader::{stamp, TraceReader};
use rusqlite::Row;
use std::collections::HashMap;

impl TraceReader {
    /// Calls `f` for every sync operation, in sequence order (of one thread
    /// when `tid` is given).
    pub fn each_sync_op(
        &self,
        tid: Option<Tid>,
        mut f: impl FnMut(SyncOp) -> Result<(), TraceError>,
    ) -> Result<(), TraceError> {
        let mut names: HashMap<i64, String> = HashMap::new();
        {
            let mut st = self
                .conn
                .prepare("SELECT code, name FROM sync_names")
                .map_err(self.sq())?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                .map_err(self.sq())?;
            for row in rows {
                let (c, n) = row.map_err(self.sq())?;
                names.insert(c, n);
            }
        }
        let name = |c: i64| names.get(&c).cloned().unwrap_or_else(|| format!("#{c}"));
        let mut stacks: HashMap<i64, Vec<u64>> = HashMap::new();
        {
            let mut st = self
                .conn
                .prepare("SELECT id, frames FROM stacks")
                .map_err(self.sq())?;
            let rows = st
                .query_map([], |r| {
                    let blob = r.get_ref(1)?.as_blob()?;
                    let frames = blob
                        .chunks_exact(8)
                        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                        .collect();
                    Ok((r.get::<_, i64>(0)?, frames))
                })
                .map_err(self.sq())?;
            for row in rows {
                let (id, frames) = row.map_err(self.sq())?;
                stacks.insert(id, frames);
            }
        }
        let sql =
            "SELECT seq, ts_ns, pid, tid, op, phase, obj, arg, arg2, flags, ret, stack, mechanism
                   FROM sync_rows WHERE ?1 IS NULL OR tid = ?1 ORDER BY seq";
        let mut st = self.conn.prepare(sql).map_err(self.sq())?;
        let mut rows = st.query([tid.map(|t| t.0)]).map_err(self.sq())?;
        while let Some(r) = rows.next().map_err(self.sq())? {
            let read = |r: &Row<'_>| -> Result<SyncOp, rusqlite::Error> {
                let stack_id: i64 = r.get(11)?;
                Ok(SyncOp {
                    at: stamp(r, 0, 1)?,
                    pid: Pid(r.get(2)?),
                    tid: Tid(r.get(3)?),
                    op: name(r.get(4)?),
                    phase: name(r.get(5)?),
                    obj: r.get::<_, i64>(6)? as u64,
                    arg: r.get::<_, i64>(7)? as u64,
                    arg2: r.get::<_, i64>(8)? as u64,
                    flags: r.get(9)?,
                    ret: r.get(10)?,
                    stack: stacks.get(&stack_id).cloned().unwrap_or_default(),
                    mechanism: name(r.get(12)?),
                })
            };
            f(read(r).map_err(self.sq())?)?;
        }
        Ok(())
    }

    /// Every sync operation, in sequence order.
    pub fn sync_ops(&self) -> Result<Vec<SyncOp>, TraceError> {
        let mut out = Vec::new();
        self.each_sync_op(None, |o| {
            out.push(o);
            Ok(())
        })?;
        Ok(out)
    }

    /// The snapshots of `pid`'s executable mappings, oldest first.
    pub fn mappings(&self, pid: Pid) -> Result<Vec<(Seq, Vec<Mapping>)>, TraceError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT seq, start, end, file_offset, perms, path FROM mapping_rows WHERE pid = ?1 ORDER BY seq, start",
            )
            .map_err(self.sq())?;
        let rows = st
            .query_map([pid.0], |r| {
                Ok((
                    Seq(r.get::<_, i64>(0)? as u64),
                    Mapping {
                        start: r.get::<_, i64>(1)? as u64,
                        end: r.get::<_, i64>(2)? as u64,
                        file_offset: r.get::<_, i64>(3)? as u64,
                        perms: r.get(4)?,
                        path: r.get(5)?,
                    },
                ))
            })
            .map_err(self.sq())?;
        let mut out: Vec<(Seq, Vec<Mapping>)> = Vec::new();
        for row in rows {
            let (seq, m) = row.map_err(self.sq())?;
            match out.last_mut() {
                Some((s, v)) if *s == seq => v.push(m),
                _ => out.push((seq, vec![m])),
            }
        }
        Ok(out)
    }
}

impl TraceReader {
    /// The hang snapshot, if the recorder found the program hung.
    pub fn hang(&self) -> Result<Option<Hang>, TraceError> {
        let mut st = self
            .conn
            .prepare("SELECT seq, ts_ns, timeout_ms, pid, tid, syscall, entry_seq, args, wchan, stack FROM hang_rows ORDER BY tid")
            .map_err(self.sq())?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    stamp(r, 0, 1)?,
                    r.get::<_, i64>(2)? as u64,
                    HungThread {
                        pid: Pid(r.get(3)?),
                        tid: Tid(r.get(4)?),
                        syscall: r.get(5)?,
                        entry_seq: r.get::<_, Option<i64>>(6)?.map(|s| Seq(s as u64)),
                        args: r.get(7)?,
                        wchan: r.get(8)?,
                        stack: serde_json::from_str(&r.get::<_, String>(9)?).unwrap_or_default(),
                    },
                ))
            })
            .map_err(self.sq())?;
        let mut hang: Option<Hang> = None;
        for row in rows {
            let (at, timeout_ms, t) = row.map_err(self.sq())?;
            hang.get_or_insert_with(|| Hang {
                at,
                timeout_ms,
                threads: Vec::new(),
            })
            .threads
            .push(t);
        }
        Ok(hang)
    }
}

/// A finding as stored in the trace (JSON columns as in the JSON report).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredFinding {
    pub kind: String,
    pub severity: String,
    pub summary: String,
    pub pids: serde_json::Value,
    pub tids: serde_json::Value,
    pub locations: serde_json::Value,
    pub details: serde_json::Value,
}

impl TraceReader {
    /// Replaces the findings stored in the trace (the `findings` view).
    /// The only write a reader makes: the analysis result belongs with the
    /// recording it describes. A trace that cannot be written (read-only
    /// file) keeps its old findings and reports the error.
    pub fn store_findings(&self, findings: &[StoredFinding]) -> Result<(), TraceError> {
        let tx = self.conn.unchecked_transaction().map_err(self.sq())?;
        tx.execute("DELETE FROM finding_rows", [])
            .map_err(self.sq())?;
        {
            let mut st = tx
                .prepare(
                    "INSERT INTO finding_rows(kind, severity, summary, pids, tids, locations, details)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(self.sq())?;
            for f in findings {
                st.execute(rusqlite::params![
                    f.kind,
                    f.severity,
                    f.summary,
                    f.pids.to_string(),
                    f.tids.to_string(),
                    f.locations.to_string(),
                    f.details.to_string()
                ])
                .map_err(self.sq())?;
            }
        }
        tx.commit().map_err(self.sq())
    }

    /// The findings stored by the last analysis.
    pub fn stored_findings(&self) -> Result<Vec<StoredFinding>, TraceError> {
        let mut st = self
            .conn
            .prepare("SELECT kind, severity, summary, pids, tids, locations, details FROM finding_rows ORDER BY id")
            .map_err(self.sq())?;
        let rows = st
            .query_map([], |r| {
                let j = |i: usize| -> Result<serde_json::Value, rusqlite::Error> {
                    let t: String = r.get(i)?;
                    Ok(serde_json::from_str(&t).unwrap_or(serde_json::Value::Null))
                };
                Ok(StoredFinding {
                    kind: r.get(0)?,
                    severity: r.get(1)?,
                    summary: r.get(2)?,
                    pids: j(3)?,
                    tids: j(4)?,
                    locations: j(5)?,
                    details: j(6)?,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<_, _>>().map_err(self.sq())
    }
}

impl TraceReader {
    /// Whether the trace has memory-access segments (version 2 and a
    /// recording that captured them).
    pub fn has_mem(&self) -> Result<bool, TraceError> {
        if self.version < 2 {
            return Ok(false);
        }
        self.conn
            .query_row("SELECT EXISTS (SELECT 1 FROM mem_rows)", [], |r| r.get(0))
            .map_err(self.sq())
    }

    /// Calls `f` for every memory segment in sequence order (batches of
    /// different threads overlap in sequence; they are merged). A version
    /// 1 trace has none.
    pub fn each_mem_segment(
        &self,
        mut f: impl FnMut(MemSegment) -> Result<(), TraceError>,
    ) -> Result<(), TraceError> {
        use std::cmp::Reverse;
        use std::collections::{BinaryHeap, VecDeque};
        if self.version < 2 {
            return Ok(());
        }
        let mut st = self
            .conn
            .prepare("SELECT seq, pid, tid, mechanism, segments FROM mem_rows ORDER BY seq")
            .map_err(self.sq())?;
        let mut rows = st.query([]).map_err(self.sq())?;
        // Decoded batches still being merged, and the heap of their next
        // segment's seq.
        let mut open: Vec<VecDeque<MemSegment>> = Vec::new();
        let mut heap: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
        let mut emit_before = |limit: u64,
                               open: &mut Vec<VecDeque<MemSegment>>,
                               heap: &mut BinaryHeap<Reverse<(u64, usize)>>|
         -> Result<(), TraceError> {
            while let Some(&Reverse((seq, i))) = heap.peek() {
                if seq >= limit {
                    break;
                }
                heap.pop();
                let seg = open[i].pop_front().expect("a queued segment");
                if let Some(next) = open[i].front() {
                    heap.push(Reverse((next.at.seq.0, i)));
                }
                f(seg)?;
            }
            Ok(())
        };
        while let Some(r) = rows.next().map_err(self.sq())? {
            let first = r.get::<_, i64>(0).map_err(self.sq())? as u64;
            emit_before(first, &mut open, &mut heap)?;
            let read = |r: &Row<'_>| -> Result<VecDeque<MemSegment>, rusqlite::Error> {
                let mech: String = r.get(3)?;
                Ok(crate::memory::unpack_segments(
                    r.get_ref(4)?.as_blob()?,
                    Pid(r.get(1)?),
                    Tid(r.get(2)?),
                    &mech,
                )
                .into())
            };
            let batch = read(r).map_err(self.sq())?;
            if let Some(first_seq) = batch.front().map(front_seq) {
                // Reuse an exhausted slot to keep `open` small.
                let slot = match open.iter().position(|q| q.is_empty()) {
                    Some(i) => {
                        open[i] = batch;
                        i
                    }
                    None => {
                        open.push(batch);
                        open.len() - 1
                    }
                };
                heap.push(Reverse((first_seq, slot)));
            }
        }
        emit_before(u64::MAX, &mut open, &mut heap)?;
        Ok(())
    }
}

fn front_seq(s: &MemSegment) -> u64 {
    s.at.seq.0
}
