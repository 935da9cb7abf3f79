//! The timeline picture: one row per thread, grouped by process; each row
//! shows when the thread lived (running), its long syscalls (blocked in
//! the kernel), the locks it held and the locks it waited for, and its
//! sync operations as ticks. Spans of the locks and threads of a deadlock
//! or lock-order inversion are outlined in red. With the kernel's schedule
//! a thin strip under each row shows when the thread ran (green) and when
//! it was runnable but waiting for a CPU (orange); a priority inversion is
//! a dashed red band over H's wait on the rows of H, L and M (labelled H,
//! L, M); each access of a data race is a red diamond on its row
//! (`marks`). Drawn from
//! the same trace events as `lockstep export` (microseconds since the
//! first event).

use super::{clip, esc};
use lockstep_analysis::Finding;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;

const WIDTH: f64 = 1240.0;
const LABEL: f64 = 200.0;
const ROW: f64 = 22.0;
const HEAD: f64 = 20.0;
const AXIS: f64 = 28.0;
/// At most this many ticks per thread, and this many spans in all.
const MAX_TICKS: usize = 300;
const MAX_SPANS: usize = 6000;

struct Span {
    tid: i32,
    start: f64,
    dur: f64,
    class: &'static str,
    name: String,
    hot: bool,
}

/// The lock names (without their kind: `A` for `mutex A`) and threads of
/// the deadlocks and inversions, which the picture highlights.
fn hot_set(findings: &[&Finding]) -> (HashSet<i32>, HashSet<String>) {
    let mut tids = HashSet::new();
    let mut locks = HashSet::new();
    let bare = |s: &str| s.split_once(' ').map_or(s, |(_, n)| n).to_string();
    for f in findings {
        if f.kind == "priority_inversion" {
            tids.extend(f.tids.iter().copied());
            if let Some(l) = f.details["lock"].as_str() {
                locks.insert(bare(l));
            }
            continue;
        }
        if f.kind != "deadlock" && f.kind != "lock_order_inversion" {
            continue;
        }
        tids.extend(f.tids.iter().copied());
        for l in f.details["cycle"].as_array().into_iter().flatten() {
            if let Some(l) = l.as_str() {
                locks.insert(bare(l));
            }
        }
        for t in f.details["threads"].as_array().into_iter().flatten() {
            for l in t["holds"].as_array().into_iter().flatten() {
                if let Some(l) = l.as_str() {
                    locks.insert(bare(l));
                }
            }
        }
    }
    (tids, locks)
}

/// `holds A (until the end)` → `A`.
fn span_lock(name: &str) -> &str {
    name.strip_prefix("holds ")
        .or_else(|| name.strip_prefix("blocked on "))
        .unwrap_or(name)
        .trim_end_matches(" (until the end)")
}

/// The priority inversions as (start µs, end µs, tids, summary), `ts`
/// counting from `origin_ns`.
fn inversions(findings: &[&Finding], origin_ns: u64) -> Vec<(f64, f64, Vec<i32>, String)> {
    findings
        .iter()
        .filter(|f| f.kind == "priority_inversion")
        .filter_map(|f| {
            let start = f.details["wait_start_ns"].as_u64()?;
            let end = start + f.details["wait_ns"].as_u64()?;
            let us = |ns: u64| ns.saturating_sub(origin_ns) as f64 / 1000.0;
            Some((us(start), us(end), f.tids.clone(), f.summary.clone()))
        })
        .collect()
}

/// The timeline as an SVG element; events' `ts` count from `origin_ns`.
pub fn svg(events: &[Value], findings: &[&Finding], origin_ns: u64) -> String {
    let sched_track = crate::cmd::export::SCHED_TRACK;
    let mut cpu: HashMap<i32, Vec<(f64, f64, &'static str, String)>> = HashMap::new();
    let inv = inversions(findings, origin_ns);
    let races = super::marks::race_marks(events, findings);
    let parts = super::marks::inversion_parts(findings);
    let mut procs: BTreeMap<i64, String> = BTreeMap::new();
    let mut threads: Vec<(i64, i32, String)> = Vec::new();
    let mut extent: HashMap<i32, (f64, f64)> = HashMap::new();
    let mut spans: Vec<Span> = Vec::new();
    let mut ticks: HashMap<i32, Vec<(f64, String)>> = HashMap::new();
    let mut end = 0f64;
    let (hot_tids, hot_locks) = hot_set(findings);
    let deadlocked = findings.iter().any(|f| f.kind == "deadlock");
    for e in events {
        let (pid, tid) = (
            e["pid"].as_i64().unwrap_or(0),
            e["tid"].as_i64().unwrap_or(0) as i32,
        );
        let name = e["name"].as_str().unwrap_or("");
        let ts = e["ts"].as_f64().unwrap_or(0.0);
        let dur = e["dur"].as_f64().unwrap_or(0.0);
        match e["ph"].as_str() {
            Some("M") if name == "process_name" => {
                procs.insert(pid, e["args"]["name"].as_str().unwrap_or("").to_string());
            }
            Some("M") if name == "thread_name" && tid >= sched_track => {}
            Some("X") if e["cat"] == "sched" => {
                let class = match name.split(' ').next() {
                    Some("running") => "cpu-run",
                    Some("runnable") => "cpu-rdy",
                    _ => continue,
                };
                let real = e["args"]["tid"].as_i64().unwrap_or(0) as i32;
                cpu.entry(real)
                    .or_default()
                    .push((ts, dur, class, name.to_string()));
            }
            Some("M") if name == "thread_name" => {
                threads.push((
                    pid,
                    tid,
                    e["args"]["name"].as_str().unwrap_or("").to_string(),
                ));
            }
            Some("M") => {}
            ph => {
                end = end.max(ts + dur);
                let x = extent.entry(tid).or_insert((ts, ts + dur));
                x.0 = x.0.min(ts);
                x.1 = x.1.max(ts + dur);
                let cat = e["cat"].as_str().unwrap_or("");
                if ph == Some("X") {
                    let class = match cat {
                        "lock" => "held",
                        "blocked" => "blk",
                        _ => "sys",
                    };
                    let hot = class != "sys"
                        && hot_tids.contains(&tid)
                        && hot_locks.contains(span_lock(name));
                    spans.push(Span {
                        tid,
                        start: ts,
                        dur,
                        class,
                        name: name.to_string(),
                        hot,
                    });
                } else if cat == "sync" {
                    ticks.entry(tid).or_default().push((ts, name.to_string()));
                }
            }
        }
    }
    if threads.is_empty() || end <= 0.0 {
        return "<p class=\"empty\">No threads in this trace.</p>".to_string();
    }
    // Long syscalls only: the ones a reader can see (blocked in the kernel).
    let min_sys = end / 400.0;
    spans.retain(|s| s.class != "sys" || s.dur >= min_sys);
    if spans.len() > MAX_SPANS {
        spans.sort_by(|a, b| b.hot.cmp(&a.hot).then(b.dur.total_cmp(&a.dur)));
        spans.truncate(MAX_SPANS);
    }
    // Syscalls under lock spans.
    spans.sort_by_key(|s| match s.class {
        "sys" => 0,
        "held" => 1,
        _ => 2,
    });
    let plot = WIDTH - LABEL - 20.0;
    let x = |t: f64| LABEL + t / end * plot;
    // Rows: a header per process, then its threads in order of creation.
    let mut rows: Vec<(Option<i32>, String, i64)> = Vec::new();
    for (&pid, pname) in &procs {
        rows.push((None, format!("pid {pid}: {}", clip(pname, 26)), pid));
        for (p, tid, tname) in &threads {
            if *p == pid {
                rows.push((Some(*tid), tname.clone(), pid));
            }
        }
    }
    let height = AXIS
        + rows
            .iter()
            .map(|r| if r.0.is_some() { ROW } else { HEAD })
            .sum::<f64>()
        + 30.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg id=\"timeline\" viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" height=\"{height}\" role=\"img\" aria-label=\"timeline of the threads\">"
    );
    // Time axis.
    let step = nice_step(end / 8.0);
    let mut t = 0.0;
    while t <= end {
        let _ = write!(
            s,
            "<line class=\"axis\" x1=\"{0:.1}\" y1=\"{AXIS}\" x2=\"{0:.1}\" y2=\"{1:.1}\"/><text x=\"{0:.1}\" y=\"16\" text-anchor=\"middle\">{2}</text>",
            x(t),
            height - 26.0,
            fmt_us(t)
        );
        t += step;
    }
    let mut y = AXIS;
    for (tid, label, _pid) in &rows {
        let Some(tid) = tid else {
            let _ = write!(
                s,
                "<g class=\"proc\"><text class=\"ph\" x=\"6\" y=\"{:.1}\">{}</text></g>",
                y + 14.0,
                esc(label)
            );
            y += HEAD;
            continue;
        };
        let _ = write!(s, "<g data-tid=\"{tid}\">");
        let label = match parts.get(tid) {
            Some(p) => format!("{} ({p})", clip(label, 20)),
            None => clip(label, 24),
        };
        let _ = write!(
            s,
            "<text x=\"16\" y=\"{:.1}\">{}</text>",
            y + 15.0,
            esc(&label)
        );
        if let Some(&(a, b)) = extent.get(tid) {
            let _ = write!(
                s,
                "<rect class=\"run\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"14\"><title>thread {tid}: alive (running unless blocked)</title></rect>",
                x(a),
                y + 4.0,
                (x(b) - x(a)).max(1.0)
            );
        }
        for sp in spans.iter().filter(|sp| sp.tid == *tid) {
            // Held locks in the row's upper half, waits in the lower one.
            let (yy, hh) = match sp.class {
                "sys" => (y + 4.0, 14.0),
                "held" => (y + 4.0, 7.0),
                _ => (y + 11.0, 7.0),
            };
            let _ = write!(
                s,
                "<rect class=\"{}{}\" x=\"{:.1}\" y=\"{yy:.1}\" width=\"{:.1}\" height=\"{hh}\"><title>{} ({})</title></rect>",
                sp.class,
                if sp.hot { " hl" } else { "" },
                x(sp.start),
                (x(sp.start + sp.dur) - x(sp.start)).max(1.5),
                esc(&sp.name),
                fmt_us(sp.dur)
            );
        }
        for (ts, dur, class, name) in cpu.get(tid).into_iter().flatten().take(MAX_SPANS) {
            let _ = write!(
                s,
                "<rect class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"3\"><title>{} ({})</title></rect>",
                x(*ts),
                y + 18.5,
                (x(ts + dur) - x(*ts)).max(0.5),
                esc(name),
                fmt_us(*dur)
            );
        }
        for (a, b, tids, summary) in inv.iter().filter(|i| i.2.contains(tid)) {
            let _ = write!(
                s,
                "<rect class=\"inv\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"20\"><title>priority inversion ({}): {}</title></rect>",
                x(*a),
                y + 1.0,
                (x(*b) - x(*a)).max(1.5),
                ["waits (H)", "holder (L)", "runs meanwhile (M)"]
                    [tids.iter().position(|t| t == tid).unwrap_or(0).min(2)],
                esc(summary)
            );
        }
        if let Some(tk) = ticks.get(tid) {
            let stride = tk.len().div_ceil(MAX_TICKS).max(1);
            for (ts, name) in tk.iter().step_by(stride) {
                let _ = write!(
                    s,
                    "<line class=\"tick\" x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"{2:.1}\"><title>{3}</title></line>",
                    x(*ts),
                    y + 1.0,
                    y + 5.0,
                    esc(name)
                );
            }
        }
        for m in races.iter().filter(|m| m.tid == *tid) {
            s.push_str(&super::marks::diamond(x(m.ts), y + 11.0, &m.title));
        }
        s.push_str("</g>");
        y += ROW;
    }
    if deadlocked {
        let _ = write!(
            s,
            "<line class=\"hl\" x1=\"{0:.1}\" y1=\"{AXIS}\" x2=\"{0:.1}\" y2=\"{1:.1}\"/><text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"end\" fill=\"#b71c1c\">hang detected: deadlock</text>",
            x(end),
            y,
            x(end) - 4.0,
            y + 14.0
        );
    }
    s.push_str("</svg>");
    s.push_str(LEGEND);
    s
}

const LEGEND: &str = "<div class=\"legend\"><span><i style=\"background:#c8e6c9\"></i>alive</span><span><i style=\"background:#ffe082\"></i>blocked in a syscall</span><span><i style=\"background:#64b5f6\"></i>holds a lock</span><span><i style=\"background:#ef9a9a\"></i>waits for a lock</span><span><i style=\"border:2px solid #b71c1c\"></i>part of the deadlock / inversion</span><span><i style=\"background:#2e7d32\"></i>on a CPU</span><span><i style=\"background:#fb8c00\"></i>runnable, waiting for a CPU</span><span><i style=\"background:rgba(211,47,47,.12);border:1px dashed #b71c1c\"></i>priority inversion (H waits, L holds, M runs)</span><span><b style=\"color:#d32f2f\">◆</b> access of a data race</span><span>| sync operation</span></div>";

/// A round step (1, 2 or 5 times a power of ten) near `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1e-3);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

/// Microseconds as `850 µs`, `12.5 ms`, `1.20 s`.
fn fmt_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}
