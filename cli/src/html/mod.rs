//! The HTML report (placeholder).
use crate::report::Report;
use lockstep_trace::TraceReader;
pub fn page(_t: &TraceReader, _r: &Report<'_>) -> anyhow::Result<String> {
    Ok(String::new())
}
