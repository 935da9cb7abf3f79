//! Throughput: a report symbolizes the same few thousand addresses over and
//! over (every lock acquisition of a hot loop). 1,000,000 lookups of 4,000
//! distinct addresses, in the fixture and in libc, must stay fast: each module
//! is parsed once and each (module, address) resolved once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use lockstep_symbols::{Frame, Mapping, Symbolizer};

const LOOKUPS: usize = 1_000_000;

/// Up to `n` addresses spread over the code mapping of `path`.
fn code_addresses(maps: &[Mapping], path_contains: &str, n: u64) -> Vec<u64> {
    // The code mapping is the one that holds the module's entry code: the
    // second mapping of a file built by GNU ld (headers, code, rodata, data).
    let mapping = maps
        .iter()
        .filter(|m| m.path.contains(path_contains))
        .nth(1)
        .unwrap_or_else(|| panic!("{path_contains} has a code mapping: {maps:?}"));
    let len = mapping.end - mapping.start;
    let step = (len / n).max(1);
    (0..n).map(|i| mapping.start + (i * step) % len).collect()
}

#[test]
fn a_million_lookups_of_a_few_thousand_addresses() {
    let exe = scratch("throughput").join("callsites");
    gcc(&["-g", "-O0", "-I.", "callsites.c", "-o", exe.to_str().unwrap()]);
    let run = run(&exe);
    let mut addrs = code_addresses(&run.maps, exe.to_str().unwrap(), 2000);
    addrs.extend(code_addresses(&run.maps, "/libc.so", 2000));
    addrs.sort_unstable();
    addrs.dedup();
    assert!(addrs.len() > 2000, "{} distinct addresses", addrs.len());

    let mut sym = Symbolizer::new();
    let first: Vec<Vec<Frame>> = addrs.iter().map(|&a| sym.symbolize(&run.maps, a)).collect();
    assert!(first.iter().all(|f| !f.is_empty()), "every address is mapped");

    let started = Instant::now();
    let mut frames = 0usize;
    for i in 0..LOOKUPS {
        let at = (i * 7919) % addrs.len();
        let result = sym.symbolize(&run.maps, addrs[at]);
        if i % 4096 == 0 {
            assert_eq!(result, first[at], "memoized answers do not drift");
        }
        frames += result.len();
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{LOOKUPS} lookups of {} addresses: {elapsed:?} ({:.0} ns each, {frames} frames)",
        addrs.len(),
        elapsed.as_nanos() as f64 / LOOKUPS as f64
    );
    // Generous for an unoptimized test build on a loaded machine; a release
    // build does it in a fraction of a second.
    let limit = if cfg!(debug_assertions) { 20 } else { 3 };
    assert!(elapsed < Duration::from_secs(limit), "{elapsed:?}");

    // The fixture's own lines are among the answers.
    let src = fixture("callsites.c");
    let with_lines = first
        .iter()
        .flatten()
        .filter(|f| f.file.as_deref() == Some(src.to_str().unwrap()))
        .count();
    assert!(with_lines > 0, "some addresses fall in callsites.c functions");
}
