//! Where the scheduler tracepoints are and how their records are laid
//! out: the ids and field offsets come from tracefs
//! (`events/sched/<name>/{id,format}`), not from a kernel version's
//! headers. tracefs is looked for at /sys/kernel/tracing and
//! /sys/kernel/debug/tracing, and mounted at /sys/kernel/tracing when it
//! is not (root only; a mount failure just means no tracepoints).

use std::path::{Path, PathBuf};

/// An integer field of a tracepoint record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Field {
    pub offset: usize,
    pub size: usize,
}

/// The two tracepoints' ids and the fields the recorder reads.
#[derive(Clone, Debug, Default)]
pub struct Formats {
    pub switch_id: u64,
    pub wakeup_id: u64,
    pub prev_pid: Field,
    pub prev_prio: Field,
    pub prev_state: Field,
    pub next_pid: Field,
    pub next_prio: Field,
    pub wakeup_pid: Field,
    pub wakeup_prio: Field,
    pub wakeup_target_cpu: Field,
    /// `common_type` (the tracepoint id) at the start of every record.
    pub common_type: Field,
}

/// Why the formats could not be read.
#[derive(Debug)]
pub struct NoTracefs(pub String);

const ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

fn sched_dir() -> Option<PathBuf> {
    ROOTS
        .iter()
        .map(|r| Path::new(r).join("events/sched"))
        .find(|d| d.join("sched_switch/id").exists())
}

/// Mounts tracefs at /sys/kernel/tracing (an existing, empty directory).
fn mount_tracefs() -> bool {
    let target = c"/sys/kernel/tracing";
    // SAFETY: mount(2) with NUL-terminated strings and no data.
    unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        ) == 0
    }
}

impl Formats {
    /// Reads ids and layouts from tracefs, mounting it if needed.
    pub fn load() -> Result<Formats, NoTracefs> {
        let dir = match sched_dir() {
            Some(d) => d,
            None if mount_tracefs() => {
                sched_dir().ok_or_else(|| NoTracefs("tracefs has no sched events".into()))?
            }
            None => {
                return Err(NoTracefs(format!(
                    "tracefs not mounted at {} and cannot be mounted: {}",
                    ROOTS[0],
                    std::io::Error::last_os_error()
                )))
            }
        };
        let read = |name: &str, file: &str| {
            std::fs::read_to_string(dir.join(name).join(file))
                .map_err(|e| NoTracefs(format!("{}/{name}/{file}: {e}", dir.display())))
        };
        let id = |name: &str| -> Result<u64, NoTracefs> {
            read(name, "id")?
                .trim()
                .parse()
                .map_err(|_| NoTracefs(format!("{name}/id is not a number")))
        };
        let sw = parse_format(&read("sched_switch", "format")?);
        let wk = parse_format(&read("sched_wakeup", "format")?);
        let get = |fields: &[(String, Field)], name: &str| -> Result<Field, NoTracefs> {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, f)| *f)
                .ok_or_else(|| NoTracefs(format!("tracepoint field {name} not found")))
        };
        Ok(Formats {
            switch_id: id("sched_switch")?,
            wakeup_id: id("sched_wakeup")?,
            prev_pid: get(&sw, "prev_pid")?,
            prev_prio: get(&sw, "prev_prio")?,
            prev_state: get(&sw, "prev_state")?,
            next_pid: get(&sw, "next_pid")?,
            next_prio: get(&sw, "next_prio")?,
            wakeup_pid: get(&wk, "pid")?,
            wakeup_prio: get(&wk, "prio")?,
            // Older kernels have no target_cpu: reads as 0 then.
            wakeup_target_cpu: get(&wk, "target_cpu").unwrap_or_default(),
            common_type: get(&sw, "common_type")?,
        })
    }
}

/// The fields of a tracefs `format` file: lines like
/// `field:pid_t prev_pid; offset:24; size:4; signed:1;`.
pub fn parse_format(text: &str) -> Vec<(String, Field)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut parts = rest.split(';').map(str::trim);
        let Some(decl) = parts.next() else { continue };
        let name = decl
            .rsplit(' ')
            .next()
            .unwrap_or("")
            .split('[')
            .next()
            .unwrap_or("")
            .to_string();
        let mut f = Field::default();
        for p in parts {
            if let Some(v) = p.strip_prefix("offset:") {
                f.offset = v.parse().unwrap_or(0);
            } else if let Some(v) = p.strip_prefix("size:") {
                f.size = v.parse().unwrap_or(0);
            }
        }
        out.push((name, f));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_format_file() {
        let text = "name: sched_switch\nID: 372\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
                    \tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
                    \tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;\n";
        let f = parse_format(text);
        assert_eq!(f[0], ("common_type".into(), Field { offset: 0, size: 2 }));
        assert_eq!(f[1].0, "prev_comm");
        assert_eq!(
            f[2],
            (
                "prev_state".into(),
                Field {
                    offset: 32,
                    size: 8
                }
            )
        );
    }
}
