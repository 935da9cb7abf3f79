//! Measures how fast TraceWriter stores sync ops (rows per second), the
//! recorder's upper bound for recording uncontended locking (the agent
//! path's records: [`SyncEvent`]s, a ring's drain per record).
//! `cargo run --release -p lockstep-trace --example writer_throughput [N]`

use lockstep_trace::*;
use std::time::Instant;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("lockstep-writer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.db");
    let ops: Vec<SyncEvent> = (0..n)
        .map(|i| {
            let mut frames = [0; SYNC_EVENT_FRAMES];
            frames[..3].copy_from_slice(&[0x5555_1000 + (i % 3), 0x5555_2000, 0x7fff_0000]);
            SyncEvent {
                at: Stamp {
                    seq: Seq(i + 1),
                    ts_ns: i * 100,
                },
                pid: Pid(1),
                tid: Tid(1 + (i % 2) as i32),
                op: if i % 3 == 2 {
                    "pthread_mutex_unlock"
                } else {
                    "pthread_mutex_lock"
                },
                phase: ["request", "acquired", "released"][(i % 3) as usize],
                obj: 0x5555_0000 + (i % 2) * 0x40,
                arg: 0,
                arg2: 0,
                flags: 0,
                ret: 0,
                frames,
                mechanism: "agent",
            }
        })
        .collect();
    let start = Instant::now();
    let mut w = TraceWriter::create(&path, true).unwrap();
    // As the recorder hands them over: one record per drain of a ring.
    for chunk in ops.chunks(8192) {
        w.write(&Record::SyncEvents(chunk.to_vec())).unwrap();
    }
    let written = start.elapsed();
    w.finish().unwrap();
    let total = start.elapsed();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "{n} sync rows: write {:.2}s ({:.0} ns/row), with finish {:.2}s ({:.0} ns/row), {:.1} bytes/row",
        written.as_secs_f64(),
        written.as_nanos() as f64 / n as f64,
        total.as_secs_f64(),
        total.as_nanos() as f64 / n as f64,
        size as f64 / n as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
