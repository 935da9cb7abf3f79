//! Where traces go by default: `./lockstep-traces/<program>-<N>.db`, with
//! `./lockstep-traces/latest` pointing at the newest.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub const TRACE_DIR: &str = "lockstep-traces";

/// The trace a command reads when none is named.
pub fn default_trace() -> PathBuf {
    Path::new(TRACE_DIR).join("latest")
}

/// A fresh default path for a recording of `program`.
pub fn new_trace_path(program: &str) -> Result<PathBuf> {
    new_trace_path_in(Path::new(TRACE_DIR), program)
}

/// Where `check` records when no `-o` is given: a fresh trace in the
/// user's temporary directory (`$TMPDIR/lockstep-UID/<program>-<N>.db`),
/// kept so that it can be replayed and inspected.
pub fn temporary_trace_path(program: &str) -> Result<PathBuf> {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let dir = std::env::temp_dir().join(format!("lockstep-{uid}"));
    new_trace_path_in(&dir, program)
}

/// A fresh path `<dir>/<program>-<N>.db`, creating `dir`.
fn new_trace_path_in(dir: &Path, program: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create trace directory", dir.display()))?;
    let base = Path::new(program)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "trace".into());
    let base: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut n = 1u32;
    loop {
        let p = dir.join(format!("{base}-{n}.db"));
        if !p.exists() {
            return Ok(p);
        }
        n += 1;
    }
}

/// Points `lockstep-traces/latest` at `trace` (best effort when the trace
/// lives elsewhere).
pub fn update_latest(trace: &Path) -> Result<()> {
    let dir = Path::new(TRACE_DIR);
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create trace directory", dir.display()))?;
    let link = dir.join("latest");
    let target = match trace.parent() {
        Some(p) if p == dir => PathBuf::from(trace.file_name().expect("trace has a file name")),
        _ => std::fs::canonicalize(trace)
            .with_context(|| format!("{}: cannot resolve", trace.display()))?,
    };
    let tmp = dir.join(format!(".latest.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp)
        .with_context(|| format!("{}: cannot create link", tmp.display()))?;
    std::fs::rename(&tmp, &link).with_context(|| format!("{}: cannot update", link.display()))?;
    Ok(())
}
