//! The executable mappings of a tracee, read from /proc/PID/maps, so that
//! the return addresses of sync events can be symbolized after the fact.

use lockstep_trace::{Mapping, Pid};

/// Parses the file-backed, executable lines of a /proc/PID/maps text.
pub fn parse_exec_mappings(text: &str) -> Vec<Mapping> {
    lockstep_symbols::parse_proc_maps_with_perms(text)
        .filter(|(_, perms)| perms.contains('x'))
        .map(|(m, perms)| Mapping {
            start: m.start,
            end: m.end,
            file_offset: m.file_offset,
            perms: perms.to_string(),
            path: m.path,
        })
        .collect()
}

/// The executable mappings of `pid` now (empty if the process is gone).
pub fn exec_mappings(pid: Pid) -> Vec<Mapping> {
    std::fs::read_to_string(format!("/proc/{}/maps", pid.0))
        .map(|t| parse_exec_mappings(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_executable_file_mappings_only() {
        let text = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234 /tmp/prog
55d0c0a01000-55d0c0a02000 r-xp 00001000 08:01 1234 /tmp/prog
7f00aa000000-7f00aa100000 r-xp 00028000 08:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
7ffd00100000-7ffd00102000 r-xp 00000000 00:00 0 [vdso]
";
        let m = parse_exec_mappings(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].start, 0x55d0c0a01000);
        assert_eq!(m[0].file_offset, 0x1000);
        assert_eq!(m[1].path, "/usr/lib/x86_64-linux-gnu/libc.so.6");
    }
}
