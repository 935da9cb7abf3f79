//! Helpers shared by the integration tests: compiling the C fixtures of
//! `tests/fixtures/` with gcc, running them, parsing what they print (call-site,
//! function and data addresses and their own `/proc/self/maps`), finding the
//! line of a marker comment, and asserting on frames.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use lockstep_symbols::{parse_proc_maps, Frame, Mapping};

/// The canonical directory of the C fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .canonicalize()
        .expect("tests/fixtures exists")
}

/// The canonical path of one fixture source.
pub fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

/// A fresh, empty scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("symbols-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir.canonicalize().expect("canonical scratch dir")
}

/// Runs gcc in the fixtures directory (so sources can be named relatively and
/// DWARF records them relative to the compilation directory).
pub fn gcc(args: &[&str]) {
    let out = Command::new("gcc")
        .args(args)
        .current_dir(fixtures())
        .output()
        .expect("run gcc");
    assert!(
        out.status.success(),
        "gcc {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a tool (strip, objcopy) and insists on success.
pub fn tool(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().expect("run tool");
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What one run of a fixture printed.
#[derive(Debug)]
pub struct Run {
    /// `SITE <name> <addr>`: return addresses of call sites.
    pub sites: HashMap<String, u64>,
    /// `FUNC <name> <addr>`: function addresses.
    pub funcs: HashMap<String, u64>,
    /// `DATA`, `HEAP` and `STACK <name> <addr>`: addresses of variables,
    /// heap blocks and stack slots.
    pub data: HashMap<String, u64>,
    /// The process's file mappings.
    pub maps: Vec<Mapping>,
    /// Only the executable file mappings (perms with `x`), as the recorder
    /// keeps them.
    pub exec_maps: Vec<Mapping>,
}

impl Run {
    pub fn site(&self, name: &str) -> u64 {
        *self
            .sites
            .get(name)
            .unwrap_or_else(|| panic!("no SITE {name} in {self:?}"))
    }

    pub fn func(&self, name: &str) -> u64 {
        *self
            .funcs
            .get(name)
            .unwrap_or_else(|| panic!("no FUNC {name} in {self:?}"))
    }

    pub fn datum(&self, name: &str) -> u64 {
        *self
            .data
            .get(name)
            .unwrap_or_else(|| panic!("no DATA {name} in {self:?}"))
    }

    /// The first mapping of the file at `path`.
    pub fn mapping_of(&self, path: &Path) -> &Mapping {
        let path = path.to_str().unwrap();
        self.maps
            .iter()
            .find(|m| m.path == path)
            .unwrap_or_else(|| panic!("{path} not mapped: {:?}", self.maps))
    }
}

/// Runs `exe` to completion and parses its report.
pub fn run(exe: &Path) -> Run {
    let out = Command::new(exe).output().expect("run fixture");
    assert!(out.status.success(), "{} failed: {out:?}", exe.display());
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    let (report, maps) = stdout.split_once("MAPS-BEGIN\n").expect("MAPS-BEGIN");
    let (maps, _) = maps.split_once("MAPS-END").expect("MAPS-END");
    let mut sites = HashMap::new();
    let mut funcs = HashMap::new();
    let mut data = HashMap::new();
    for line in report.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let table = match fields.first() {
            Some(&"SITE") => &mut sites,
            Some(&"FUNC") => &mut funcs,
            Some(&"DATA" | &"HEAP" | &"STACK") => &mut data,
            _ => continue,
        };
        let addr = fields[2].trim_start_matches("0x");
        let addr = u64::from_str_radix(addr, 16).unwrap_or_else(|_| panic!("bad address: {line}"));
        table.insert(fields[1].to_owned(), addr);
    }
    let executable: String = maps
        .lines()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|p| p.contains('x')))
        .flat_map(|l| [l, "\n"])
        .collect();
    Run {
        sites,
        funcs,
        data,
        maps: parse_proc_maps(maps),
        exec_maps: parse_proc_maps(&executable),
    }
}

/// The 1-based line of `source` that contains `marker`; there must be exactly one.
pub fn marker_line(source: &Path, marker: &str) -> u32 {
    let text = std::fs::read_to_string(source).expect("read fixture source");
    let hits: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(marker))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "{marker} must be on exactly one line of {}",
        source.display()
    );
    hits[0] as u32
}

/// The ELF type (`e_type`: 2 executable, 3 shared object/PIE) of `path`.
pub fn elf_type(path: &Path) -> u16 {
    let bytes = std::fs::read(path).expect("read ELF");
    u16::from_le_bytes([bytes[16], bytes[17]])
}

/// Asserts that `frame` is `function` at `source:line`, located in `module`.
pub fn assert_frame(frame: &Frame, function: &str, source: &Path, line: u32, module: &Path) {
    let want_file = source.to_str().unwrap();
    assert_eq!(
        frame.function.as_deref(),
        Some(function),
        "function of {frame}"
    );
    assert_eq!(frame.file.as_deref(), Some(want_file), "file of {frame}");
    assert_eq!(frame.line, Some(line), "line of {frame}");
    assert_eq!(frame.module, module.to_str().unwrap(), "module of {frame}");
}

/// `maps` with every mapping of `from` pointing at `to` instead (`strip` and
/// `objcopy` keep loadable segments in place, so one run's addresses stay
/// valid for every stripped or split variant of its executable).
pub fn retarget(maps: &[Mapping], from: &Path, to: &Path) -> Vec<Mapping> {
    let (from, to) = (from.to_str().unwrap(), to.to_str().unwrap());
    maps.iter()
        .map(|m| Mapping {
            path: if m.path == from {
                to.to_owned()
            } else {
                m.path.clone()
            },
            ..m.clone()
        })
        .collect()
}

/// Renders frames one per line for assertion messages.
pub fn show(frames: &[Frame]) -> String {
    frames
        .iter()
        .map(|f| format!("\n  {f} [{:#x}]", f.module_offset))
        .collect()
}
