//! `lockstep locks`: every synchronization object of a trace: its kind, how
//! many ops each thread did on it, and where it was initialised or first used.

use crate::locate::TraceLocator;
use crate::render::print_json;
use anyhow::Result;
use lockstep_analysis::finding::{Locator, SourcePos};
use lockstep_trace::SyncOp;
use serde::Serialize;
use std::collections::BTreeMap;

pub type Args = super::TraceArgs;

#[derive(Serialize)]
struct Object {
    pid: i32,
    address: String,
    /// The variable it lives in (`A`, `accounts[1].lock`), when known.
    name: Option<String>,
    kind: &'static str,
    /// Mutex type / protocol when known (`normal`, `recursive`, `errorcheck`; `prio_inherit`...).
    attributes: Vec<&'static str>,
    first_seq: u64,
    first_op: String,
    first_used_at: String,
    /// Ops per thread: tid → op name → count.
    ops: BTreeMap<i32, BTreeMap<String, u64>>,
    failures: u64,
}

fn kind_of(op: &str) -> &'static str {
    match op {
        o if o.starts_with("pthread_mutexattr") => "mutexattr",
        o if o.starts_with("pthread_mutex") => "mutex",
        o if o.starts_with("pthread_rwlock") => "rwlock",
        o if o.starts_with("pthread_cond") => "condvar",
        o if o.starts_with("sem_") => "semaphore",
        o if o.starts_with("pthread_spin") => "spinlock",
        o if o.starts_with("pthread_barrier") => "barrier",
        "pthread_once" => "once",
        o if o.starts_with("pthread_attr") => "thread_attr",
        _ => "thread",
    }
}

fn attributes(kind: &str, flags: u32) -> Vec<&'static str> {
    if kind != "mutex" {
        return Vec::new();
    }
    let mut v = vec![match flags & 3 {
        1 => "recursive",
        2 => "errorcheck",
        3 => "adaptive",
        _ => "normal",
    }];
    for (bit, name) in [
        (0x10, "robust"),
        (0x20, "prio_inherit"),
        (0x40, "prio_protect"),
    ] {
        if flags & bit != 0 {
            v.push(name);
        }
    }
    v
}

pub fn run(a: Args) -> Result<u8> {
    let t = super::open_trace(a.trace)?;
    let mut objects: BTreeMap<(i32, u64), (Object, SyncOp)> = BTreeMap::new();
    t.each_sync_op(None, |op| {
        let kind = kind_of(&op.op);
        if kind == "thread" || kind == "thread_attr" || kind == "mutexattr" {
            return Ok(());
        }
        let entry = objects.entry((op.pid.0, op.obj)).or_insert_with(|| {
            (
                Object {
                    pid: op.pid.0,
                    address: format!("{:#x}", op.obj),
                    name: None,
                    kind,
                    attributes: attributes(kind, op.flags),
                    first_seq: op.at.seq.0,
                    first_op: op.op.clone(),
                    first_used_at: String::new(),
                    ops: BTreeMap::new(),
                    failures: 0,
                },
                op.clone(),
            )
        });
        if op.phase != "request" {
            *entry
                .0
                .ops
                .entry(op.tid.0)
                .or_default()
                .entry(op.op.clone())
                .or_default() += 1;
        }
        if op.phase == "failed" {
            entry.0.failures += 1;
        }
        Ok(())
    })?;
    let mut loc = TraceLocator::new(&t);
    let mut list: Vec<Object> = objects
        .into_values()
        .map(|(mut o, first)| {
            let ra = first.stack.first().copied().unwrap_or(0);
            let pos: SourcePos = if ra != 0 {
                loc.locate(first.pid.0, first.at.seq.0, ra)
            } else {
                SourcePos::default()
            };
            o.first_used_at = pos.render(ra);
            o.name = loc.object_name(first.pid.0, first.obj);
            o
        })
        .collect();
    list.sort_by_key(|o| o.first_seq);
    if a.json {
        print_json(&list)?;
        return Ok(0);
    }
    for o in &list {
        let attrs = if o.attributes.is_empty() {
            String::new()
        } else {
            format!(" ({})", o.attributes.join(", "))
        };
        let name = o
            .name
            .as_ref()
            .map(|n| format!("{n} ({})", o.address))
            .unwrap_or_else(|| o.address.clone());
        println!(
            "{} {} in pid {}{}: first {} at {}",
            o.kind, name, o.pid, attrs, o.first_op, o.first_used_at
        );
        for (tid, ops) in &o.ops {
            let list: Vec<String> = ops.iter().map(|(op, n)| format!("{op} x{n}")).collect();
            println!("    thread {tid}: {}", list.join(", "));
        }
        if o.failures > 0 {
            println!("    {} failed or timed-out calls", o.failures);
        }
    }
    Ok(0)
}
