//! The lock-order graph picture: locks as nodes on a circle, an arrow
//! from lock X to lock Y for "a thread took Y while holding X", labelled
//! with the thread and the source line. The edges come from the
//! `lock_order_inversion` findings (their `edges`) and the lock deadlocks
//! (each thread's held lock → the lock it waits for); every such edge is
//! part of a cycle, drawn in red.

use super::{clip, esc};
use crate::report::hint::between;
use lockstep_analysis::Finding;
use std::fmt::Write;

struct Edge {
    from: String,
    to: String,
    label: String,
}

/// The cycle edges of the findings.
fn edges(findings: &[&Finding]) -> Vec<Edge> {
    let mut out: Vec<Edge> = Vec::new();
    for f in findings {
        let d = &f.details;
        match f.kind.as_str() {
            "lock_order_inversion" => {
                for e in d["edges"].as_array().into_iter().flatten() {
                    let (Some(a), Some(b)) = (e["holds"].as_str(), e["acquires"].as_str()) else {
                        continue;
                    };
                    let at = e["acquired_at"].as_str().unwrap_or("");
                    let file = at.rsplit('/').next().unwrap_or(at);
                    out.push(Edge {
                        from: a.into(),
                        to: b.into(),
                        label: format!("T{} {file}", e["tid"]),
                    });
                }
            }
            "deadlock" if d.get("objects").is_none() => {
                for t in d["threads"].as_array().into_iter().flatten() {
                    let held = t["holds"].as_array().and_then(|h| h.first()?.as_str());
                    let waits = t["waits_for"]
                        .as_str()
                        .and_then(|w| between(w, "waits for ", " held by"));
                    if let (Some(a), Some(b)) = (held, waits) {
                        out.push(Edge {
                            from: a.into(),
                            to: b.into(),
                            label: format!("T{} (deadlocked)", t["tid"]),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    // One arrow per ordered pair.
    let mut seen = std::collections::HashSet::new();
    out.retain(|e| seen.insert((e.from.clone(), e.to.clone())));
    out
}

/// The graph as an SVG element (or a note when there is no cycle).
pub fn svg(findings: &[&Finding]) -> String {
    let edges = edges(findings);
    if edges.is_empty() {
        return "<p class=\"empty\">No lock-order cycle: every pair of locks was taken in one order.</p>".to_string();
    }
    let mut nodes: Vec<&str> = Vec::new();
    for e in &edges {
        for n in [&e.from, &e.to] {
            if !nodes.contains(&n.as_str()) {
                nodes.push(n);
            }
        }
    }
    let (w, h) = (760.0f64, if nodes.len() <= 2 { 200.0 } else { 420.0f64 });
    let (cx, cy) = (w / 2.0, h / 2.0);
    let r = if nodes.len() <= 2 { 150.0 } else { 160.0 };
    let pos: Vec<(f64, f64)> = (0..nodes.len())
        .map(|i| {
            let a = std::f64::consts::PI * (1.0 + 2.0 * i as f64 / nodes.len() as f64);
            (cx + r * a.cos(), cy + r * 0.85 * a.sin())
        })
        .collect();
    let at = |n: &str| pos[nodes.iter().position(|x| *x == n).unwrap_or(0)];
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg id=\"lockgraph\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"lock-order graph\"><defs><marker id=\"arr\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#c62828\"/></marker></defs>"
    );
    let (nw, nh) = (120.0, 34.0);
    for e in &edges {
        let ((x1, y1), (x2, y2)) = (at(&e.from), at(&e.to));
        let (dx, dy) = (x2 - x1, y2 - y1);
        let len = (dx * dx + dy * dy).sqrt().max(1.0);
        // Curve to the left of the direction, so A→B and B→A stay apart.
        let (nx, ny) = (-dy / len, dx / len);
        let (mx, my) = ((x1 + x2) / 2.0 + nx * 50.0, (y1 + y2) / 2.0 + ny * 50.0);
        // Start and end at the node boxes' edges (approximately).
        let trim = |x: f64, y: f64, tx: f64, ty: f64| {
            let (ddx, ddy) = (tx - x, ty - y);
            let l = (ddx * ddx + ddy * ddy).sqrt().max(1.0);
            let k = ((nw / 2.0) / ddx.abs().max(1e-6)).min((nh / 2.0) / ddy.abs().max(1e-6)) * l;
            let k = k.min(l / 2.0);
            (x + ddx / l * k, y + ddy / l * k)
        };
        let (sx, sy) = trim(x1, y1, mx, my);
        let (ex, ey) = trim(x2, y2, mx, my);
        let _ = write!(
            s,
            "<path class=\"edge cycle\" marker-end=\"url(#arr)\" d=\"M{sx:.1},{sy:.1} Q{mx:.1},{my:.1} {ex:.1},{ey:.1}\"><title>took {} while holding {}: {}</title></path><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            esc(&e.to),
            esc(&e.from),
            esc(&e.label),
            (sx + 2.0 * mx + ex) / 4.0 + nx * 12.0,
            (sy + 2.0 * my + ey) / 4.0 + ny * 12.0,
            esc(&clip(&e.label, 34))
        );
    }
    for (i, n) in nodes.iter().enumerate() {
        let (x, y) = pos[i];
        let _ = write!(
            s,
            "<g><rect class=\"node cycle\" x=\"{:.1}\" y=\"{:.1}\" width=\"{nw}\" height=\"{nh}\" rx=\"8\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\"><title>{}</title>{}</text></g>",
            x - nw / 2.0,
            y - nh / 2.0,
            y + 4.0,
            esc(n),
            esc(&clip(n, 20))
        );
    }
    s.push_str("</svg><div class=\"legend\"><span>arrow X → Y: a thread took Y while holding X; red: part of a cycle (a deadlock, or one waiting to happen)</span></div>");
    s
}
