//! `lockstep ps`: the processes of a trace, as a tree.

use crate::render::{exit_status, print_json};
use anyhow::Result;
use lockstep_trace::{Pid, ProcessInfo};
use std::collections::HashMap;

pub type Args = super::TraceArgs;

pub fn run(a: Args) -> Result<u8> {
    let t = super::open_trace(a.trace)?;
    let procs = t.processes()?;
    if a.json {
        print_json(&procs)?;
        return Ok(0);
    }
    println!(
        "{:>7} {:>7} {:<7} {:>7} {:<28} COMMAND",
        "PID", "PPID", "SPAWN", "THREADS", "END"
    );
    let mut children: HashMap<Option<Pid>, Vec<&ProcessInfo>> = HashMap::new();
    let known: std::collections::HashSet<Pid> = procs.iter().map(|p| p.pid).collect();
    for p in &procs {
        // Roots of the printed tree: processes whose parent is not traced.
        let key = p.ppid.filter(|pp| known.contains(pp));
        children.entry(key).or_default().push(p);
    }
    fn walk(
        map: &HashMap<Option<Pid>, Vec<&ProcessInfo>>,
        key: Option<Pid>,
        depth: usize,
        seen: &mut Vec<Pid>,
    ) {
        for p in map.get(&key).into_iter().flatten() {
            if seen.contains(&p.pid) {
                continue;
            }
            seen.push(p.pid);
            let cmd = match (&p.argv, &p.exe) {
                (Some(argv), _) if !argv.is_empty() => argv.join(" "),
                (_, Some(exe)) => exe.clone(),
                _ => "(no exec)".into(),
            };
            println!(
                "{:>7} {:>7} {:<7} {:>7} {:<28} {}{}",
                p.pid,
                p.ppid.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
                p.spawn_kind.as_str(),
                p.threads,
                p.status
                    .as_ref()
                    .map(exit_status)
                    .unwrap_or_else(|| "running at end".into()),
                "  ".repeat(depth),
                cmd
            );
            walk(map, Some(p.pid), depth + 1, seen);
        }
    }
    walk(&children, None, 0, &mut Vec::new());
    Ok(0)
}
