//! `lockstep summary`: per-syscall counts, errors and time, like `strace -c`.

use crate::render::print_json;
use anyhow::Result;

pub type Args = super::TraceArgs;

pub fn run(a: Args) -> Result<u8> {
    let t = super::open_trace(a.trace)?;
    let stats = t.syscall_stats()?;
    if a.json {
        print_json(&stats)?;
        return Ok(0);
    }
    let total_ns: u64 = stats.iter().map(|s| s.total_ns).sum();
    println!("% time     seconds  usecs/call     calls    errors syscall");
    println!("------ ----------- ----------- --------- --------- ----------------");
    for s in &stats {
        let pct = if total_ns == 0 {
            0.0
        } else {
            100.0 * s.total_ns as f64 / total_ns as f64
        };
        println!(
            "{:>6.2} {:>11.6} {:>11} {:>9} {:>9} {}",
            pct,
            s.total_ns as f64 / 1e9,
            (s.total_ns / 1000).checked_div(s.calls).unwrap_or(0),
            s.calls,
            if s.errors == 0 {
                String::new()
            } else {
                s.errors.to_string()
            },
            s.name
        );
    }
    let calls: u64 = stats.iter().map(|s| s.calls).sum();
    let errors: u64 = stats.iter().map(|s| s.errors).sum();
    println!("------ ----------- ----------- --------- --------- ----------------");
    println!(
        "100.00 {:>11.6} {:>11} {:>9} {:>9} total",
        total_ns as f64 / 1e9,
        (total_ns / 1000).checked_div(calls).unwrap_or(0),
        calls,
        if errors == 0 {
            String::new()
        } else {
            errors.to_string()
        }
    );
    Ok(0)
}
