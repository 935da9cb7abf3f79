//! The embedded in-process agent: `liblockstep_agent.so` is built with the
//! binary (see build.rs) and written out once per content hash, so that
//! LD_PRELOAD can name a file.

use anyhow::{Context, Result};
use std::path::PathBuf;

static AGENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/liblockstep_agent.so"));

/// FNV-1a, enough to tell builds apart.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The path of the agent library, extracted if needed; `None` when this
/// build has no agent.
pub fn agent_path() -> Result<Option<PathBuf>> {
    if AGENT.is_empty() {
        return Ok(None);
    }
    // SAFETY: getuid has no failure mode.
    let uid = unsafe { libc::getuid() };
    let dir = std::env::temp_dir().join(format!("lockstep-{uid}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let path = dir.join(format!("liblockstep_agent-{:016x}.so", fnv(AGENT)));
    if std::fs::metadata(&path)
        .map(|m| m.len() == AGENT.len() as u64)
        .unwrap_or(false)
    {
        return Ok(Some(path));
    }
    let tmp = dir.join(format!(".agent.{}", std::process::id()));
    std::fs::write(&tmp, AGENT)
        .with_context(|| format!("{}: cannot write the agent", tmp.display()))?;
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("{}: cannot install the agent", path.display()))?;
    Ok(Some(path))
}
