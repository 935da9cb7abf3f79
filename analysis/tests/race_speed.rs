//! Throughput of the race detector (ignored by default; run with
//! `cargo test --release -p lockstep-analysis --test race_speed -- --ignored --nocapture`).
//!
//! A matrix-multiply-like load: 4 threads, each segment 1000 accesses
//! (reads of two shared 128×128 double matrices, writes of its own rows of
//! a third, and a mutex-protected counter between segments), 10M accesses
//! in all. Prints accesses per second of the detector alone; the racing
//! variant has all threads write the same rows.

use lockstep_analysis::builder::{mem, OpsBuilder};
use lockstep_analysis::finding::NoLocator;
use lockstep_analysis::racerun;
use lockstep_trace::{access, Via};
use std::time::Instant;

const N: u64 = 128;
const A: u64 = 0x1000_0000;
const B: u64 = A + N * N * 8;
const C: u64 = B + N * N * 8;
const COUNTER: u64 = 0x60_1000;
const M: u64 = 0x60_2000;

#[test]
#[ignore]
fn ten_million_accesses() {
    let f = run(false);
    assert!(f.is_empty(), "{f:#?}");
}

/// The worst case: every thread writes every row of `C` unlocked, so each
/// write is checked against the others and gathered into findings.
#[test]
#[ignore]
fn ten_million_racing_accesses() {
    assert!(!run(true).is_empty());
}

fn run(racing: bool) -> Vec<lockstep_analysis::Finding> {
    let threads = 4u64;
    let per_segment = 1000u64;
    let total = 10_000_000u64;
    let mut b = OpsBuilder::new();
    for t in 0..threads {
        b.spawn(1, 2 + t as i32);
    }
    let mut k = 0u64;
    let mut seg = Vec::with_capacity(per_segment as usize);
    for s in 0..total / per_segment {
        let t = s % threads;
        let tid = 2 + t as i32;
        seg.clear();
        for _ in 0..per_segment / 4 {
            let own = if racing { 0 } else { t * (N / threads) };
            let (i, j, kk) = (own + (k / N) % (N / threads), k % N, (k / 7) % N);
            seg.push(mem(
                A + (i * N + kk) * 8,
                8,
                0x401000,
                access::READ,
                Via::Instruction,
            ));
            seg.push(mem(
                B + (kk * N + j) * 8,
                8,
                0x401008,
                access::READ,
                Via::Instruction,
            ));
            seg.push(mem(
                C + (i * N + j) * 8,
                8,
                0x401010,
                access::READ,
                Via::Instruction,
            ));
            seg.push(mem(
                C + (i * N + j) * 8,
                8,
                0x401018,
                access::WRITE,
                Via::Instruction,
            ));
            k += 1;
        }
        b.segment(tid, &seg);
        b.lock(tid, M)
            .write(tid, COUNTER, 4, 0x401020)
            .unlock(tid, M);
    }
    let (ops, spawns) = b.build();
    let segments = b.segments();
    let n: usize = segments.iter().map(|s| s.accesses.len()).sum();
    let start = Instant::now();
    let f = racerun::findings(&ops, &spawns, &segments, &mut NoLocator);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "race detector{}: {n} accesses, {} sync ops in {secs:.2} s = {:.1} M accesses/s; {} findings",
        if racing { " (racing)" } else { "" },
        ops.len(),
        n as f64 / secs / 1e6,
        f.len()
    );
    f
}
