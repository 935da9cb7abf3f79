//! The process-tree picture: every process of the trace as a box (pid,
//! program, exit or still running) placed under its parent, listing the
//! pipe ends in its fd table (as `lockstep fds` shows it: at the end of
//! the trace, or just before the process ended), and one node per pipe
//! with a line from each holder: write ends solid, read ends dashed, and
//! the fds that a finding blames (a leak, a misplaced end) in red.

use super::{clip, esc};
use crate::cmd::fds::shown_at;
use lockstep_analysis::fds::{End, FdModel};
use lockstep_analysis::Finding;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;

const BOX_W: f64 = 360.0;
const LINE: f64 = 16.0;
const INDENT: f64 = 28.0;
const PIPE_X: f64 = 620.0;
const PIPE_W: f64 = 170.0;

/// One process as drawn.
struct Proc {
    pid: i32,
    depth: usize,
    title: String,
    /// (fd, pipe object, end)
    pipes: Vec<(i32, String, Option<End>)>,
    others: usize,
}

/// (pid, fd) pairs a finding blames.
fn blamed(findings: &[&Finding]) -> HashSet<(i64, i64)> {
    let mut out = HashSet::new();
    for f in findings {
        if !matches!(f.kind.as_str(), "fd_leak" | "fd_misuse" | "bad_fd") {
            continue;
        }
        let d = &f.details;
        let mut add = |v: &serde_json::Value| {
            if let (Some(p), Some(fd)) = (v["pid"].as_i64(), v["fd"].as_i64()) {
                out.insert((p, fd));
            }
        };
        add(d);
        add(&d["entry"]);
        for h in d["holders"].as_array().into_iter().flatten() {
            add(h);
        }
    }
    out
}

/// Processes in tree order (each after its parent), with their depth.
fn order(m: &FdModel) -> Vec<(i32, usize)> {
    let mut kids: BTreeMap<Option<i32>, Vec<i32>> = BTreeMap::new();
    for p in m.procs.values() {
        let parent = p.parent.filter(|pp| m.procs.contains_key(pp));
        kids.entry(parent).or_default().push(p.pid);
    }
    let mut out = Vec::new();
    let mut stack: Vec<(i32, usize)> = kids
        .get(&None)
        .into_iter()
        .flatten()
        .rev()
        .map(|&p| (p, 0))
        .collect();
    while let Some((pid, depth)) = stack.pop() {
        out.push((pid, depth));
        for &k in kids.get(&Some(pid)).into_iter().flatten().rev() {
            stack.push((k, depth + 1));
        }
    }
    out
}

/// The process tree as an SVG element.
pub fn svg(m: &FdModel, findings: &[&Finding]) -> String {
    let bad = blamed(findings);
    let procs: Vec<Proc> = order(m)
        .into_iter()
        .filter_map(|(pid, depth)| {
            let p = m.procs.get(&pid)?;
            let (seq, state) = shown_at(m, p, None);
            let entries = m.table_at(pid, seq);
            let (pipes, others): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| e.is_pipe());
            let state = match state {
                "exited" => "ended",
                _ => "still running at the end",
            };
            Some(Proc {
                pid,
                depth,
                title: format!("{} — {state}", m.name_of(pid, seq)),
                pipes: pipes
                    .into_iter()
                    .map(|e| (e.fd, e.object.clone().unwrap_or_default(), e.end))
                    .collect(),
                others: others.len(),
            })
        })
        .collect();
    if procs.is_empty() {
        return "<p class=\"empty\">No processes in this trace.</p>".to_string();
    }
    // Boxes, top to bottom.
    let mut y = 16.0;
    let mut boxes: HashMap<i32, (f64, f64, f64)> = HashMap::new(); // pid → (x, y, h)
    let mut fd_y: Vec<(i32, i32, f64, String, Option<End>)> = Vec::new();
    for p in &procs {
        let x = 16.0 + p.depth as f64 * INDENT;
        let lines = p.pipes.len() + usize::from(p.others > 0);
        let h = 26.0 + LINE * lines as f64;
        for (i, (fd, obj, end)) in p.pipes.iter().enumerate() {
            fd_y.push((
                p.pid,
                *fd,
                y + 26.0 + LINE * i as f64 + 4.0,
                obj.clone(),
                *end,
            ));
        }
        boxes.insert(p.pid, (x, y, h));
        y += h + 12.0;
    }
    // Pipe nodes at the mean height of their holders, kept apart.
    let mut pipe_y: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for (_, _, fy, obj, _) in &fd_y {
        let e = pipe_y.entry(obj.clone()).or_insert((0.0, 0));
        e.0 += fy;
        e.1 += 1;
    }
    let mut pipes: Vec<(String, f64)> = pipe_y
        .into_iter()
        .map(|(o, (sum, n))| (o, sum / n as f64))
        .collect();
    pipes.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut last = f64::MIN;
    for p in &mut pipes {
        p.1 = p.1.max(last + 44.0);
        last = p.1;
    }
    let height = y.max(last + 40.0) + 10.0;
    let width = PIPE_X + PIPE_W + 20.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg id=\"proctree\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"process tree and pipes\"><defs><marker id=\"parr\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#455a64\"/></marker></defs>"
    );
    // Parent → child connectors.
    for p in m.procs.values() {
        if let (Some(parent), Some(&(cx, cy, _))) = (p.parent, boxes.get(&p.pid)) {
            if let Some(&(px, py, _)) = boxes.get(&parent) {
                let _ = write!(
                    s,
                    "<path class=\"edge\" d=\"M{:.1},{:.1} V{:.1} H{cx:.1}\"/>",
                    px + 10.0,
                    py + 22.0,
                    cy + 12.0
                );
            }
        }
    }
    // Holder → pipe lines (under the boxes' text).
    let pipe_at: HashMap<&str, f64> = pipes.iter().map(|(o, y)| (o.as_str(), *y)).collect();
    for (pid, fd, fy, obj, end) in &fd_y {
        let Some(&py) = pipe_at.get(obj.as_str()) else {
            continue;
        };
        let (bx, _, _) = boxes[pid];
        let x1 = bx + BOX_W;
        let class = if bad.contains(&(*pid as i64, *fd as i64)) {
            "leak"
        } else if *end == Some(End::Write) {
            "wr"
        } else {
            "rd"
        };
        let _ = write!(
            s,
            "<path class=\"{class}\" marker-end=\"url(#parr)\" d=\"M{x1:.1},{fy:.1} C{:.1},{fy:.1} {:.1},{py:.1} {PIPE_X},{py:.1}\"><title>pid {pid} fd {fd}: {} of {}</title></path>",
            x1 + 60.0,
            PIPE_X - 60.0,
            end.map_or("end", |e| e.name()),
            esc(obj)
        );
    }
    for p in &procs {
        let (x, y, h) = boxes[&p.pid];
        let _ = write!(
            s,
            "<g class=\"proc\"><rect class=\"pbox\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{BOX_W}\" height=\"{h:.1}\" rx=\"4\"/><text class=\"ph\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x + 8.0,
            y + 17.0,
            esc(&clip(&p.title, 52))
        );
        for (i, (fd, obj, end)) in p.pipes.iter().enumerate() {
            let blame = bad.contains(&(p.pid as i64, *fd as i64));
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\"{}>fd {fd}: {} of {}{}</text>",
                x + 16.0,
                y + 26.0 + LINE * i as f64 + 8.0,
                if blame {
                    " fill=\"#c62828\" font-weight=\"700\""
                } else {
                    ""
                },
                end.map_or("end", |e| e.name()),
                esc(obj),
                if blame {
                    " — blamed by a finding"
                } else {
                    ""
                }
            );
        }
        if p.others > 0 {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#666\">+ {} other fd{} (files, terminal, sockets)</text>",
                x + 16.0,
                y + 26.0 + LINE * p.pipes.len() as f64 + 8.0,
                p.others,
                if p.others == 1 { "" } else { "s" }
            );
        }
        s.push_str("</g>");
    }
    for (obj, py) in &pipes {
        let _ = write!(
            s,
            "<g><rect class=\"pipe\" x=\"{PIPE_X}\" y=\"{:.1}\" width=\"{PIPE_W}\" height=\"28\" rx=\"14\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text></g>",
            py - 14.0,
            PIPE_X + PIPE_W / 2.0,
            py + 4.0,
            esc(obj)
        );
    }
    s.push_str("</svg><div class=\"legend\"><span><i style=\"border-top:2px solid #1565c0\"></i>holds the write end</span><span><i style=\"border-top:2px dashed #2e7d32\"></i>holds the read end</span><span><i style=\"border-top:3px solid #c62828\"></i>blamed by a finding (leak, wrong end)</span><span>tables as at the end of the trace, or just before each process ended</span></div>");
    s
}
