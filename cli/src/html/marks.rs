//! Finding marks on the timeline: each access of a data race as a red
//! diamond on its thread's row, and the part each thread plays in a
//! priority inversion (H, L, M) beside its row's label. An access has a
//! sequence number, not a time: it is placed at the time of the last
//! event (syscall or sync op, of any thread) whose seq is not after it,
//! which the recorder drew just before the access's segment ended.

use lockstep_analysis::Finding;
use serde_json::Value;
use std::collections::HashMap;

/// One marked access.
pub struct Mark {
    pub tid: i32,
    /// Microseconds since the timeline's origin.
    pub ts: f64,
    pub title: String,
}

/// (seq, ts) of every event that carries a seq, sorted by seq.
fn seq_times(events: &[Value]) -> Vec<(u64, f64)> {
    let mut v: Vec<(u64, f64)> = events
        .iter()
        .filter_map(|e| Some((e["args"]["seq"].as_u64()?, e["ts"].as_f64()?)))
        .collect();
    v.sort_by_key(|p| p.0);
    v
}

/// The time of `seq`: that of the last event at or before it.
fn time_of(times: &[(u64, f64)], seq: u64) -> Option<f64> {
    let i = times.partition_point(|p| p.0 <= seq);
    times.get(i.checked_sub(1)?).map(|p| p.1)
}

/// The accesses of every data race, placed in time.
pub fn race_marks(events: &[Value], findings: &[&Finding]) -> Vec<Mark> {
    let races: Vec<&&Finding> = findings.iter().filter(|f| f.kind == "data_race").collect();
    if races.is_empty() {
        return Vec::new();
    }
    let times = seq_times(events);
    let mut out = Vec::new();
    for f in races {
        let var = f.details["variable"].as_str().unwrap_or("memory");
        for a in f.details["accesses"].as_array().into_iter().flatten() {
            let (Some(tid), Some(seq)) = (a["tid"].as_i64(), a["seq"].as_u64()) else {
                continue;
            };
            let Some(ts) = time_of(&times, seq) else {
                continue;
            };
            let place = match (a["file"].as_str(), a["line"].as_u64()) {
                (Some(file), Some(line)) => {
                    format!(" at {}:{line}", file.rsplit('/').next().unwrap_or(file))
                }
                _ => String::new(),
            };
            let verb = match (a["via"].as_str(), a["access"].as_str()) {
                (Some("free"), _) => "frees it",
                (_, Some("write")) => "writes",
                _ => "reads",
            };
            out.push(Mark {
                tid: tid as i32,
                ts,
                title: format!("data race on {var}: thread {tid} {verb}{place}"),
            });
        }
    }
    out
}

/// `H`, `L`, `M` per thread of the priority inversions (the first
/// inversion a thread is part of).
pub fn inversion_parts(findings: &[&Finding]) -> HashMap<i32, &'static str> {
    let mut parts = HashMap::new();
    for f in findings.iter().filter(|f| f.kind == "priority_inversion") {
        for (key, letter) in [("high", "H"), ("low", "L"), ("medium", "M")] {
            if let Some(t) = f.details[key]["tid"].as_i64() {
                parts.entry(t as i32).or_insert(letter);
            }
        }
    }
    parts
}

/// A diamond centred on (`x`, `y`).
pub fn diamond(x: f64, y: f64, title: &str) -> String {
    format!(
        "<path class=\"race\" d=\"M{x:.1} {:.1}L{:.1} {y:.1}L{x:.1} {:.1}L{:.1} {y:.1}Z\"><title>{}</title></path>",
        y - 7.0,
        x + 6.0,
        y + 7.0,
        x - 6.0,
        super::esc(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_access_takes_the_time_of_the_last_event_not_after_it() {
        let events = vec![
            json!({"ts": 10.0, "args": {"seq": 5}}),
            json!({"ts": 30.0, "args": {"seq": 20}}),
            json!({"ts": 20.0, "args": {"seq": 9}}),
            json!({"ts": 1.0, "name": "no seq"}),
        ];
        let t = seq_times(&events);
        assert_eq!(time_of(&t, 4), None);
        assert_eq!(time_of(&t, 5), Some(10.0));
        assert_eq!(time_of(&t, 12), Some(20.0));
        assert_eq!(time_of(&t, 99), Some(30.0));
    }
}
