//! The `sync_rows` table's writing side: interning of op, phase and
//! mechanism names (`sync_names`) and of call stacks (`stacks`), and rows
//! inserted 64 at a time with one multi-row statement.
//!
//! This is the recorder's hottest path (an uncontended lock loop makes
//! millions of rows), so nothing here allocates per row: names from the
//! agent path are `&'static str` interned by address, stacks are looked up
//! by slice in a table keyed with a cheap multiplicative hash (the keys are
//! the recorder's own addresses, not attacker-chosen), and parameters are
//! bound in place (`raw_bind_parameter`) without clearing the statement.

use crate::model::{SyncEvent, SyncOp};
use rusqlite::{params, Connection};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const COLUMNS: usize = 14;
/// Rows per multi-row INSERT (14 × 64 parameters, well under SQLite's limit).
const ROWS_PER_INSERT: usize = 64;
const COLS: &str =
    "seq, ts_ns, pid, tid, op, phase, obj, arg, arg2, flags, ret, call_site, stack, mechanism";

/// A multiply-rotate hasher over whole words (FxHash's scheme).
#[derive(Default)]
pub struct WordHasher(u64);

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

type Fast = BuildHasherDefault<WordHasher>;

/// Sync rows on their way into the trace.
#[derive(Default)]
pub struct SyncRows {
    /// Interned names by content.
    names: HashMap<String, i64, Fast>,
    /// Interned static names by (address, length).
    static_names: HashMap<(usize, usize), i64, Fast>,
    /// Interned call stacks.
    stacks: HashMap<Vec<u64>, i64, Fast>,
    /// Rows waiting for a multi-row insert.
    pending: Vec<[i64; COLUMNS]>,
    multi_insert_sql: Option<String>,
}

/// The row values that do not need interning.
struct Plain {
    seq: u64,
    ts_ns: u64,
    pid: i32,
    tid: i32,
    obj: u64,
    arg: u64,
    arg2: u64,
    flags: u32,
    ret: i32,
}

impl SyncRows {
    /// Whether rows wait for [`SyncRows::flush`].
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Adds a row for `o`.
    pub fn push_op(&mut self, c: &Connection, o: &SyncOp) -> Result<(), rusqlite::Error> {
        let codes = [
            self.name_code(c, &o.op)?,
            self.name_code(c, &o.phase)?,
            self.name_code(c, &o.mechanism)?,
        ];
        let plain = Plain {
            seq: o.at.seq.0,
            ts_ns: o.at.ts_ns,
            pid: o.pid.0,
            tid: o.tid.0,
            obj: o.obj,
            arg: o.arg,
            arg2: o.arg2,
            flags: o.flags,
            ret: o.ret,
        };
        self.push(c, plain, codes, &o.stack)
    }

    /// Adds a row for `e`.
    pub fn push_event(&mut self, c: &Connection, e: &SyncEvent) -> Result<(), rusqlite::Error> {
        let codes = [
            self.static_code(c, e.op)?,
            self.static_code(c, e.phase)?,
            self.static_code(c, e.mechanism)?,
        ];
        let plain = Plain {
            seq: e.at.seq.0,
            ts_ns: e.at.ts_ns,
            pid: e.pid.0,
            tid: e.tid.0,
            obj: e.obj,
            arg: e.arg,
            arg2: e.arg2,
            flags: e.flags,
            ret: e.ret,
        };
        self.push(c, plain, codes, e.stack())
    }

    fn push(
        &mut self,
        c: &Connection,
        p: Plain,
        [op, phase, mech]: [i64; 3],
        stack: &[u64],
    ) -> Result<(), rusqlite::Error> {
        let stack_id = self.stack_id(c, stack)?;
        self.pending.push([
            p.seq as i64,
            p.ts_ns as i64,
            p.pid as i64,
            p.tid as i64,
            op,
            phase,
            p.obj as i64,
            p.arg as i64,
            p.arg2 as i64,
            p.flags as i64,
            p.ret as i64,
            stack.first().copied().unwrap_or(0) as i64,
            stack_id,
            mech,
        ]);
        if self.pending.len() == ROWS_PER_INSERT {
            self.flush(c)?;
        }
        Ok(())
    }

    /// The code of a static name, interning it on first use.
    fn static_code(&mut self, c: &Connection, name: &'static str) -> Result<i64, rusqlite::Error> {
        let key = (name.as_ptr() as usize, name.len());
        if let Some(&code) = self.static_names.get(&key) {
            return Ok(code);
        }
        let code = self.name_code(c, name)?;
        self.static_names.insert(key, code);
        Ok(code)
    }

    /// The code of a name, interning it on first use.
    fn name_code(&mut self, c: &Connection, name: &str) -> Result<i64, rusqlite::Error> {
        if let Some(&code) = self.names.get(name) {
            return Ok(code);
        }
        let code = self.names.len() as i64 + 1;
        c.prepare_cached("INSERT INTO sync_names(code, name) VALUES (?1, ?2)")?
            .execute(params![code, name])?;
        self.names.insert(name.to_string(), code);
        Ok(code)
    }

    /// The id of a call stack, interning it on first use.
    fn stack_id(&mut self, c: &Connection, frames: &[u64]) -> Result<i64, rusqlite::Error> {
        if let Some(&id) = self.stacks.get(frames) {
            return Ok(id);
        }
        let id = self.stacks.len() as i64 + 1;
        let blob: Vec<u8> = frames.iter().flat_map(|a| a.to_le_bytes()).collect();
        c.prepare_cached("INSERT INTO stacks(id, frames) VALUES (?1, ?2)")?
            .execute(params![id, blob])?;
        self.stacks.insert(frames.to_vec(), id);
        Ok(id)
    }

    /// Inserts the pending rows: a full group with one multi-row statement
    /// (far fewer statement executions), a partial one row by row.
    pub fn flush(&mut self, c: &Connection) -> Result<(), rusqlite::Error> {
        if self.pending.len() == ROWS_PER_INSERT {
            let sql = self.multi_insert_sql.get_or_insert_with(|| {
                let one = format!("({})", vec!["?"; COLUMNS].join(","));
                format!(
                    "INSERT INTO sync_rows({COLS}) VALUES {}",
                    vec![one; ROWS_PER_INSERT].join(",")
                )
            });
            let mut st = c.prepare_cached(sql)?;
            for (i, v) in self.pending.iter().flatten().enumerate() {
                st.raw_bind_parameter(i + 1, v)?;
            }
            st.raw_execute()?;
        } else if !self.pending.is_empty() {
            let one = format!(
                "INSERT INTO sync_rows({COLS}) VALUES ({})",
                vec!["?"; COLUMNS].join(",")
            );
            let mut st = c.prepare_cached(&one)?;
            for r in &self.pending {
                for (i, v) in r.iter().enumerate() {
                    st.raw_bind_parameter(i + 1, v)?;
                }
                st.raw_execute()?;
            }
        }
        self.pending.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn word_hasher_separates_stacks_that_differ_in_one_frame() {
        let h = |s: &[u64]| Fast::default().hash_one(s);
        assert_ne!(h(&[1, 2, 3]), h(&[1, 2, 4]));
        assert_ne!(h(&[1, 2]), h(&[2, 1]));
        assert_eq!(h(&[7, 8]), h(&[7, 8]));
    }
}
