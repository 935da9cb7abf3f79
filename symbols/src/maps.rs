//! Parsing the text of `/proc/PID/maps`.
//!
//! Each line is `start-end perms offset dev inode [path]`, with hexadecimal
//! numbers and a path that may contain spaces (it runs to the end of the line).
//! Only file-backed mappings (paths starting with `/`) are kept: anonymous
//! memory, `[heap]`, `[stack]`, `[vdso]` and the like have no file to read
//! symbols from. Lines that do not parse are skipped rather than failing the
//! whole text, so a truncated read still gives the mappings it has.

use crate::Mapping;

/// Parses the text of `/proc/PID/maps` into [`Mapping`]s (file-backed ones only,
/// in the order of the text).
pub fn parse_proc_maps(text: &str) -> Vec<Mapping> {
    parse_proc_maps_with_perms(text).map(|(m, _)| m).collect()
}

/// The file-backed mappings of a /proc/PID/maps text with their
/// permissions (`r-xp`...), for callers that keep only some of them.
pub fn parse_proc_maps_with_perms(text: &str) -> impl Iterator<Item = (Mapping, &str)> {
    text.lines().filter_map(parse_line)
}

/// One line, or `None` when it is not a well-formed file-backed mapping.
fn parse_line(line: &str) -> Option<(Mapping, &str)> {
    let (range, rest) = next_field(line)?;
    let (perms, rest) = next_field(rest)?;
    let (offset, rest) = next_field(rest)?;
    let (_dev, rest) = next_field(rest)?;
    let (_inode, rest) = next_field(rest)?;
    let path = rest.trim_start();
    if !path.starts_with('/') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    if end <= start {
        return None;
    }
    let m = Mapping {
        start,
        end,
        file_offset: u64::from_str_radix(offset, 16).ok()?,
        path: path.to_owned(),
    };
    Some((m, perms))
}

/// Splits the first whitespace-separated field off `s`.
fn next_field(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    Some(match s.find(char::is_whitespace) {
        Some(at) => (&s[..at], &s[at..]),
        None => (s, ""),
    })
}

/// The mapping of `maps` that contains `addr`, if any.
pub(crate) fn find_mapping(maps: &[Mapping], addr: u64) -> Option<&Mapping> {
    maps.iter().find(|m| m.start <= addr && addr < m.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
55d4c8a00000-55d4c8a01000 r--p 00000000 08:01 1311 /work/fixtures/prog
55d4c8a01000-55d4c8a02000 r-xp 00001000 08:01 1311 /work/fixtures/prog
55d4c8a02000-55d4c8a03000 r--p 00002000 08:01 1311 /work/fixtures/prog
55d4c9b7e000-55d4c9b9f000 rw-p 00000000 00:00 0                          [heap]
7f1e2c028000-7f1e2c1bd000 r-xp 00028000 08:01 2490                       /usr/lib/x86_64-linux-gnu/libc.so.6
7f1e2c1bd000-7f1e2c215000 r--p 001bd000 08:01 2490                       /usr/lib/x86_64-linux-gnu/libc.so.6
7f1e2c21a000-7f1e2c227000 rw-p 00000000 00:00 0 
7f1e2c300000-7f1e2c301000 r-xp 00000000 08:01 77 /tmp/my dir/lib odd.so (deleted)
7ffd1d7e1000-7ffd1d802000 rw-p 00000000 00:00 0                          [stack]
7ffd1d9d0000-7ffd1d9d2000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    #[test]
    fn keeps_file_backed_mappings_in_order() {
        let maps = parse_proc_maps(SAMPLE);
        let paths: Vec<&str> = maps.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/work/fixtures/prog",
                "/work/fixtures/prog",
                "/work/fixtures/prog",
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                "/tmp/my dir/lib odd.so (deleted)",
            ]
        );
    }

    #[test]
    fn parses_numbers_as_hex() {
        let maps = parse_proc_maps(SAMPLE);
        assert_eq!(
            maps[1],
            Mapping {
                start: 0x55d4c8a01000,
                end: 0x55d4c8a02000,
                file_offset: 0x1000,
                path: "/work/fixtures/prog".to_owned(),
            }
        );
        assert_eq!(maps[3].start, 0x7f1e2c028000);
        assert_eq!(maps[3].end, 0x7f1e2c1bd000);
        assert_eq!(maps[3].file_offset, 0x28000);
    }

    #[test]
    fn skips_malformed_lines() {
        let text = "zzzz-1000 r-xp 00000000 08:01 1 /a\n\
                    2000-1000 r-xp 00000000 08:01 1 /backwards\n\
                    1000-2000 r-xp 0000zz00 08:01 1 /bad-offset\n\
                    1000-2000 r-xp\n\
                    \n\
                    1000-2000 r-xp 00000000 08:01 1 /good\n";
        let maps = parse_proc_maps(text);
        assert_eq!(maps.len(), 1);
        assert_eq!(maps[0].path, "/good");
        assert!(parse_proc_maps("").is_empty());
    }

    #[test]
    fn find_mapping_uses_half_open_ranges() {
        let maps = parse_proc_maps(SAMPLE);
        assert_eq!(
            find_mapping(&maps, 0x55d4c8a01000).unwrap().file_offset,
            0x1000
        );
        assert_eq!(
            find_mapping(&maps, 0x55d4c8a01fff).unwrap().file_offset,
            0x1000
        );
        assert_eq!(
            find_mapping(&maps, 0x55d4c8a02000).unwrap().file_offset,
            0x2000
        );
        assert!(find_mapping(&maps, 0x55d4c8a03000).is_none());
        assert!(
            find_mapping(&maps, 0x7ffd1d9d0000).is_none(),
            "[vdso] is not file-backed"
        );
        assert!(find_mapping(&maps, 0).is_none());
    }

    #[test]
    fn reads_its_own_maps() {
        let text = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
        let maps = parse_proc_maps(&text);
        let exe = std::fs::read_link("/proc/self/exe").expect("read /proc/self/exe");
        let exe = exe.to_str().expect("utf-8 exe path");
        assert!(maps.iter().any(|m| m.path == exe), "{exe} not in {maps:?}");
        let here = parse_proc_maps as fn(&str) -> Vec<Mapping> as usize as u64;
        assert_eq!(
            find_mapping(&maps, here).map(|m| m.path.as_str()),
            Some(exe)
        );
    }
}
