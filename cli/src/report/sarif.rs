//! SARIF 2.1.0 (the OASIS static-analysis interchange format that GitHub
//! code scanning and SARIF viewers read): one rule per finding kind, with
//! the `lockstep explain` texts; one result per finding with its level,
//! message, primary physical location (the first side with a source file),
//! related locations (the other sides) and one stack per side.

use super::source::relative_to;
use super::{severity_word, Report};
use crate::cmd::explain;
use lockstep_analysis::{Finding, Location};
use serde_json::{json, Value};
use std::path::Path;

/// The `uriBaseId` of paths relative to the source root.
const SRCROOT: &str = "SRCROOT";

/// The SARIF log of `report`; paths below `root` are given relative to it.
pub fn sarif(report: &Report<'_>, root: &Path) -> Value {
    let kinds = report.kinds();
    let rules: Vec<Value> = kinds.iter().map(|k| rule(k)).collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| result(f, kinds.iter().position(|k| *k == f.kind), root))
        .collect();
    let root_uri = format!(
        "file://{}/",
        root.display().to_string().trim_end_matches('/')
    );
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "lockstep",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "originalUriBaseIds": {SRCROOT: {"uri": root_uri}},
            "invocations": [{
                "executionSuccessful": true,
                "commandLine": report.command.join(" "),
                "properties": {"trace": report.trace.display().to_string()},
            }],
            "results": results,
        }]
    })
}

/// `lock_order_inversion` → `LockOrderInversion`.
fn camel(kind: &str) -> String {
    kind.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

fn rule(kind: &str) -> Value {
    let (short, full, help, md) = match explain::entry(kind) {
        Some(e) => (
            e.short().to_string(),
            e.what.to_string(),
            format!(
                "{}\n\nHow to fix it: {}\n\nExample:\n{}",
                e.why, e.fix, e.example
            ),
            format!(
                "{}\n\n**How to fix it:** {}\n\n```c\n{}\n```",
                e.why, e.fix, e.example
            ),
        ),
        None => (
            kind.to_string(),
            kind.to_string(),
            kind.to_string(),
            kind.to_string(),
        ),
    };
    json!({
        "id": kind,
        "name": camel(kind),
        "shortDescription": {"text": short},
        "fullDescription": {"text": full},
        "help": {"text": help, "markdown": md},
    })
}

/// The physical location of `l`, if it has a source file and line.
fn physical(l: &Location, root: &Path) -> Option<Value> {
    let (file, line) = (l.file.as_ref()?, l.line?);
    let artifact = match relative_to(file, root) {
        Some(rel) => json!({"uri": rel, "uriBaseId": SRCROOT}),
        None if file.starts_with('/') => json!({"uri": format!("file://{file}")}),
        None => json!({"uri": file}),
    };
    Some(json!({
        "artifactLocation": artifact,
        "region": {"startLine": line.max(1)},
    }))
}

/// A SARIF location for `l` (physical when known, with its role and
/// function as message and logical location).
fn location(f: &Finding, l: &Location, root: &Path, id: Option<usize>) -> Value {
    let role = super::threadhint::role(f, l);
    let mut v = json!({"message": {"text": format!("{role} [pid {} tid {}]", l.pid, l.tid)}});
    if let Some(id) = id {
        v["id"] = json!(id);
    }
    if let Some(p) = physical(l, root) {
        v["physicalLocation"] = p;
    }
    if let Some(f) = &l.function {
        v["logicalLocations"] = json!([{"name": f, "kind": "function"}]);
    }
    v
}

/// `function file:line` (or `function 0xADDR`) as a stack frame.
fn frame(text: &str) -> Value {
    let (func, place) = text.rsplit_once(' ').unwrap_or((text, ""));
    let mut loc = json!({"logicalLocations": [{"name": func, "kind": "function"}]});
    if let Some((file, line)) = place.rsplit_once(':') {
        if let Ok(line) = line.parse::<u32>() {
            loc["physicalLocation"] = json!({
                "artifactLocation": {"uri": file},
                "region": {"startLine": line.max(1)},
            });
        }
    }
    json!({"location": loc})
}

fn result(f: &Finding, rule_index: Option<usize>, root: &Path) -> Value {
    let primary = f
        .locations
        .iter()
        .position(|l| l.file.is_some() && l.line.is_some());
    let mut v = json!({
        "ruleId": f.kind,
        "level": severity_word(f.severity),
        "message": {"text": format!("{} (hint: {})", f.summary, super::hint::hint(f))},
        "properties": {"pids": f.pids, "tids": f.tids, "details": f.details},
    });
    if let Some(i) = rule_index {
        v["ruleIndex"] = json!(i);
    }
    if let Some(p) = primary {
        v["locations"] = json!([location(f, &f.locations[p], root, None)]);
    }
    let related: Vec<Value> = f
        .locations
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != primary)
        .map(|(i, l)| location(f, l, root, Some(i)))
        .collect();
    if !related.is_empty() {
        v["relatedLocations"] = json!(related);
    }
    let stacks: Vec<Value> = f
        .locations
        .iter()
        .filter(|l| l.file.is_some() || !l.stack.is_empty())
        .map(|l| {
            let mut frames = vec![json!({"location": location(f, l, root, None)})];
            frames.extend(l.stack.iter().map(|s| frame(s)));
            json!({"message": {"text": super::threadhint::role(f, l)}, "frames": frames})
        })
        .collect();
    if !stacks.is_empty() {
        v["stacks"] = json!(stacks);
    }
    v
}
