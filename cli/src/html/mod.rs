//! The HTML report: one self-contained page (inline CSS, JS and SVG; no
//! network, no external fonts or scripts) with the findings (source
//! snippets, locks held, hints, the `explain` text) and three pictures
//! drawn here as SVG: the threads' timeline (`timeline`, with the marks of
//! races and inversions from `marks`), the lock-order graph (`graph`) and
//! the process tree with its pipes (`tree`).

mod graph;
mod marks;
mod timeline;
mod tree;

use crate::cmd::explain;
use crate::report::hint::{hint, locks_held};
use crate::report::source::{display_path, Sources};
use crate::report::{severity_word, Report};
use anyhow::Result;
use lockstep_analysis::Finding;
use lockstep_trace::TraceReader;
use std::fmt::Write;

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` cut to `n` characters, with an ellipsis when cut.
pub fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

const CSS: &str = r#"
:root{--err:#c62828;--warn:#8e24aa;--note:#1565c0;--fg:#1d1d1f;--mute:#666;--bg:#fafafa;--card:#fff;--line:#ddd}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{padding:18px 28px;background:#263238;color:#eceff1}
header h1{margin:0 0 4px;font-size:20px}
header code{color:#fff}
main{padding:12px 28px 40px;max-width:1320px}
h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
.counts span{display:inline-block;margin-right:10px;padding:2px 10px;border-radius:10px;font-weight:600;color:#fff}
.c-error{background:var(--err)}.c-warning{background:var(--warn)}.c-note{background:var(--note)}
.finding{background:var(--card);border:1px solid var(--line);border-left:5px solid var(--note);border-radius:4px;margin:10px 0;padding:10px 14px}
.finding.error{border-left-color:var(--err)}.finding.warning{border-left-color:var(--warn)}
.finding.active{box-shadow:0 0 0 2px #ffb300}
.head{cursor:pointer}
.sev{font-weight:700;text-transform:uppercase;font-size:12px;margin-right:6px}
.error .sev{color:var(--err)}.warning .sev{color:var(--warn)}.note .sev{color:var(--note)}
.kind{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;color:var(--mute)}
.loc{margin:8px 0 0 8px}
.role{font-weight:600}
.frames{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;color:#37474f;margin:2px 0 0 12px}
pre.src{margin:4px 0 4px 12px;padding:4px 0;background:#f5f5f5;border:1px solid #e0e0e0;border-radius:3px;font-size:12px;overflow-x:auto}
pre.src span{display:block;padding:0 8px}
pre.src span.hit{background:#fff3c4;font-weight:600}
.hint{margin-top:8px;color:#1b5e20}
.held{margin-top:6px;color:#4e342e}
details.explain{margin-top:6px;color:#444}
svg{background:#fff;border:1px solid var(--line);border-radius:4px;max-width:100%;height:auto}
svg text{font:11px system-ui,sans-serif;fill:#263238}
svg .axis{stroke:#cfd8dc}
svg .run{fill:#c8e6c9}
svg .sys{fill:#ffe082}
svg .held{fill:#64b5f6}
svg .blk{fill:#ef9a9a}
svg .tick{stroke:#455a64;stroke-width:1}
svg .cpu-run{fill:#2e7d32}
svg .cpu-rdy{fill:#fb8c00}
svg .inv{fill:#d32f2f;fill-opacity:.12;stroke:#b71c1c;stroke-dasharray:4 2}
svg .hl{stroke:#b71c1c;stroke-width:2.5}
svg .race{fill:#d32f2f;stroke:#fff;stroke-width:1}
svg .proc text.ph{font-weight:700}
svg .edge{fill:none;stroke:#78909c;stroke-width:1.6}
svg .edge.cycle{stroke:#c62828;stroke-width:2.6}
svg .node{fill:#e3f2fd;stroke:#1565c0;stroke-width:1.5}
svg .node.cycle{fill:#ffebee;stroke:#c62828}
svg .pbox{fill:#eceff1;stroke:#546e7a}
svg .pipe{fill:#fff8e1;stroke:#ff8f00}
svg .wr{stroke:#1565c0;stroke-width:1.8;fill:none}
svg .rd{stroke:#2e7d32;stroke-width:1.8;fill:none;stroke-dasharray:5 3}
svg .leak{stroke:#c62828;stroke-width:3;fill:none}
svg .dim{opacity:.25}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:18px;height:10px;margin-right:4px;vertical-align:middle;border:1px solid #999}
.empty{color:var(--mute);font-style:italic}
"#;

/// Clicking a finding highlights it and dims the timeline rows of threads
/// it does not name; the `data-rendered` marker says the script ran.
const JS: &str = r#"
(function(){
  var cards = document.querySelectorAll('.finding');
  function focus(card){
    var tids = (card.getAttribute('data-tids')||'').split(' ').filter(Boolean);
    var on = !card.classList.contains('active');
    cards.forEach(function(c){ c.classList.remove('active'); });
    document.querySelectorAll('#timeline [data-tid]').forEach(function(row){
      var keep = !on || tids.indexOf(row.getAttribute('data-tid')) >= 0;
      row.classList.toggle('dim', !keep);
    });
    if (on) card.classList.add('active');
  }
  cards.forEach(function(c){
    c.querySelector('.head').addEventListener('click', function(){ focus(c); });
  });
  document.documentElement.setAttribute('data-svgs', String(document.querySelectorAll('svg').length));
  document.documentElement.setAttribute('data-rendered', 'ok');
})();
"#;

/// The whole page.
pub fn page(trace: &TraceReader, rep: &Report<'_>) -> Result<String> {
    let events = crate::cmd::export::timeline_events(trace)?;
    let model = crate::analyze::fd_model(trace)?;
    let mut h = String::new();
    let title = format!("lockstep report: {}", rep.command.join(" "));
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head><body>",
        esc(&title)
    );
    let _ = write!(
        h,
        "<header><h1>lockstep report</h1><div>program <code>{}</code> · trace <code>{}</code></div></header><main>",
        esc(&rep.command.join(" ")),
        esc(&rep.trace.display().to_string())
    );
    let _ = write!(h, "<div class=\"counts\">");
    for (sev, n) in [
        ("error", rep.count(lockstep_analysis::Severity::Error)),
        ("warning", rep.count(lockstep_analysis::Severity::Warning)),
        ("note", rep.count(lockstep_analysis::Severity::Note)),
    ] {
        let _ = write!(
            h,
            "<span class=\"c-{sev}\">{n} {sev}{}</span>",
            if n == 1 { "" } else { "s" }
        );
    }
    let _ = write!(h, "</div>");
    h.push_str("<h2>Findings</h2>");
    if rep.findings.is_empty() {
        h.push_str("<p class=\"empty\">No findings.</p>");
    }
    let mut sources = Sources::default();
    for (i, f) in rep.findings.iter().enumerate() {
        finding(&mut h, i, f, &mut sources);
    }
    h.push_str("<h2>Timeline of the threads</h2>");
    let origin = crate::cmd::export::origin_ns(trace)?;
    h.push_str(&timeline::svg(&events, &rep.findings, origin));
    h.push_str("<h2>Lock-order graph</h2>");
    h.push_str(&graph::svg(&rep.findings));
    h.push_str("<h2>Processes, pipes and who holds which end</h2>");
    h.push_str(&tree::svg(&model, &rep.findings));
    let _ = writeln!(h, "</main><script>{JS}</script></body></html>");
    Ok(h)
}

/// One finding's card.
fn finding(h: &mut String, i: usize, f: &Finding, sources: &mut Sources) {
    let sev = severity_word(f.severity);
    let tids: Vec<String> = f.tids.iter().map(|t| t.to_string()).collect();
    let _ = write!(
        h,
        "<section class=\"finding {sev}\" id=\"f{i}\" data-tids=\"{}\"><div class=\"head\"><span class=\"sev\">{sev}</span>{} <span class=\"kind\">{}</span></div>",
        tids.join(" "),
        esc(&f.summary),
        esc(&f.kind)
    );
    for l in &f.locations {
        let _ = write!(
            h,
            "<div class=\"loc\"><span class=\"role\">{}</span> <span class=\"kind\">pid {} tid {}</span>",
            esc(&crate::report::threadhint::role(f, l)),
            l.pid,
            l.tid
        );
        if let (Some(file), Some(line)) = (&l.file, l.line) {
            let _ = write!(
                h,
                "<div class=\"frames\">#0 {} {}:{line}</div>",
                esc(l.function.as_deref().unwrap_or("??")),
                esc(&display_path(file))
            );
            let snip = sources.snippet(file, line, 2);
            if !snip.is_empty() {
                h.push_str("<pre class=\"src\">");
                for (n, text) in snip {
                    let _ = write!(
                        h,
                        "<span{}>{n:>5} | {}</span>",
                        if n == line { " class=\"hit\"" } else { "" },
                        esc(&text)
                    );
                }
                h.push_str("</pre>");
            }
        }
        if !l.stack.is_empty() {
            let frames: Vec<String> = l
                .stack
                .iter()
                .enumerate()
                .map(|(k, s)| format!("#{} {}", k + 1, esc(s)))
                .collect();
            let _ = write!(h, "<div class=\"frames\">{}</div>", frames.join("<br>"));
        }
        h.push_str("</div>");
    }
    let held = locks_held(f);
    if !held.is_empty() {
        let _ = write!(
            h,
            "<div class=\"held\">locks held: {}</div>",
            esc(&held.join("; "))
        );
    }
    let _ = write!(h, "<div class=\"hint\">hint: {}</div>", esc(&hint(f)));
    if let Some(e) = explain::entry(&f.kind) {
        let _ = write!(
            h,
            "<details class=\"explain\"><summary>What is a {}?</summary><p>{}</p><p>{}</p><p><b>How to fix it:</b> {}</p><pre>{}</pre></details>",
            esc(&f.kind),
            esc(e.what),
            esc(e.why),
            esc(e.fix),
            esc(e.example)
        );
    }
    h.push_str("</section>");
}
