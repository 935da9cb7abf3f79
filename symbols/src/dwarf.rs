//! Source lines and inlined frames from DWARF, through `addr2line`, and the
//! search for separate debug files.
//!
//! DWARF sections are readers over the module's shared `Arc<[u8]>`: nothing is
//! copied. `addr2line` parses units lazily, so loading a context is cheap and
//! the first lookup in a compilation unit pays for that unit's lines.
//!
//! A stripped module's DWARF may live in a separate file, found by build-id
//! (`<root>/.build-id/xx/yyyy.debug`) or by `.gnu_debuglink` (`<dir>/<name>`,
//! `<dir>/.debug/<name>`, `<root><dir>/<name>`, checked against the CRC-32).
//! Compressed DWARF (`SHF_COMPRESSED`, as Debian's `-dbg` packages ship it) is
//! reported as [`SymbolError::CompressedDwarf`]: there is no decompressor here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gimli::{EndianArcSlice, RunTimeEndian};

use crate::elf::{hex, slice, ElfImage};
use crate::SymbolError;

pub(crate) type Reader = EndianArcSlice<RunTimeEndian>;

/// The sections `addr2line` reads; if one of them is compressed there are no
/// lines to be had.
const NEEDED: [&str; 6] = [
    ".debug_info",
    ".debug_abbrev",
    ".debug_line",
    ".debug_str",
    ".debug_line_str",
    ".debug_rnglists",
];

/// The DWARF of one module, ready for lookups.
pub(crate) struct DwarfInfo {
    ctx: addr2line::Context<Reader>,
    /// The sections `ctx` reads, shared for variable and type lookups.
    pub dwarf: Arc<gimli::Dwarf<Reader>>,
    /// The file the DWARF came from (the module or its debug file).
    pub path: PathBuf,
}

/// One frame as DWARF tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SourceFrame {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub column: Option<u32>,
}

impl DwarfInfo {
    /// The DWARF of `image` (read from `path`): `Ok(None)` when it has none.
    pub fn load(image: &ElfImage, path: &Path) -> Result<Option<Self>, SymbolError> {
        let has_info = |name| image.section(name).is_some_and(|s| !s.nobits && s.size > 0);
        if has_info(".zdebug_info") {
            return Err(compressed(path, ".zdebug_info"));
        }
        if !has_info(".debug_info") {
            return Ok(None);
        }
        if let Some(s) = NEEDED
            .iter()
            .filter_map(|n| image.section(n))
            .find(|s| s.compressed)
        {
            return Err(compressed(path, &s.name));
        }
        let endian = if image.little_endian {
            RunTimeEndian::Little
        } else {
            RunTimeEndian::Big
        };
        let whole = Reader::new(image.bytes.clone(), endian);
        let section = |id: gimli::SectionId| -> Result<Reader, gimli::Error> {
            let found = image
                .section(id.name())
                .filter(|s| !s.nobits && !s.compressed)
                .filter(|s| slice(&image.bytes, s.offset, s.size).is_some());
            Ok(match found {
                // In bounds: checked by `slice` above.
                Some(s) => whole.range(s.offset as usize..(s.offset + s.size) as usize),
                None => whole.range(0..0),
            })
        };
        let dwarf_error = |source| SymbolError::Dwarf {
            path: path.to_owned(),
            source,
        };
        let dwarf = Arc::new(gimli::Dwarf::load(section).map_err(dwarf_error)?);
        let ctx = addr2line::Context::from_arc_dwarf(dwarf.clone()).map_err(dwarf_error)?;
        Ok(Some(DwarfInfo {
            ctx,
            dwarf,
            path: path.to_owned(),
        }))
    }

    /// The frames at link-time address `vaddr`, innermost inlined call first;
    /// empty when no compilation unit covers it.
    pub fn frames(&self, vaddr: u64) -> Result<Vec<SourceFrame>, SymbolError> {
        let err = |source| SymbolError::Dwarf {
            path: self.path.clone(),
            source,
        };
        let mut iter = self.ctx.find_frames(vaddr).skip_all_loads().map_err(err)?;
        let mut frames = Vec::new();
        while let Some(frame) = iter.next().map_err(err)? {
            let function = match &frame.function {
                Some(name) => Some(name.demangle().map_err(err)?.into_owned()),
                None => None,
            };
            let location = frame.location.as_ref();
            frames.push(SourceFrame {
                function,
                file: location.and_then(|l| l.file).map(str::to_owned),
                line: location.and_then(|l| l.line),
                column: location.and_then(|l| l.column),
            });
        }
        Ok(frames)
    }
}

fn compressed(path: &Path, section: &str) -> SymbolError {
    SymbolError::CompressedDwarf {
        path: path.to_owned(),
        section: section.to_owned(),
    }
}

/// The separate debug file of the module `image` read from `path`, if one is
/// installed: by build-id under `debug_root`, else by `.gnu_debuglink`.
pub(crate) fn find_debug_file(
    path: &Path,
    image: &ElfImage,
    debug_root: &Path,
) -> Option<(PathBuf, ElfImage)> {
    if let Some(id) = image.build_id.as_deref().filter(|id| id.len() >= 2) {
        let hex = hex(id);
        let candidate = debug_root
            .join(".build-id")
            .join(&hex[..2])
            .join(format!("{}.debug", &hex[2..]));
        if let Ok(debug) = ElfImage::read(&candidate) {
            if debug.build_id.as_deref() == Some(id) {
                return Some((candidate, debug));
            }
        }
    }
    let (name, crc) = image.debuglink.as_ref()?;
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    for candidate in debuglink_candidates(&real, name, debug_root) {
        if candidate == real {
            continue;
        }
        let Ok(bytes) = std::fs::read(&candidate) else {
            continue;
        };
        if crc32(&bytes) != *crc {
            continue;
        }
        if let Ok(debug) = ElfImage::parse(bytes.into(), &candidate) {
            return Some((candidate, debug));
        }
    }
    None
}

/// Where GDB looks for a `.gnu_debuglink` target of the module at `path`.
fn debuglink_candidates(path: &Path, name: &str, debug_root: &Path) -> Vec<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let under_root = debug_root
        .join(dir.strip_prefix("/").unwrap_or(dir))
        .join(name);
    vec![dir.join(name), dir.join(".debug").join(name), under_root]
}

/// CRC-32 (IEEE 802.3, reflected), as `.gnu_debuglink` records it.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc = CRC_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

static CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::file_offset_to_vaddr;
    use crate::symtab::{demangle, SymbolTable};

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn debuglink_candidates_follow_gdb() {
        let c = debuglink_candidates(
            Path::new("/opt/app/bin/prog"),
            "prog.debug",
            Path::new("/usr/lib/debug"),
        );
        let c: Vec<&str> = c.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            c,
            [
                "/opt/app/bin/prog.debug",
                "/opt/app/bin/.debug/prog.debug",
                "/usr/lib/debug/opt/app/bin/prog.debug",
            ]
        );
    }

    /// A function that exists in every build profile of the test binary.
    #[inline(never)]
    pub fn lockstep_symbols_dwarf_probe(x: u32) -> u32 {
        std::hint::black_box(x.wrapping_mul(31))
    }

    /// This test binary is built with DWARF: the probe function must resolve
    /// to this very file.
    #[test]
    fn resolves_a_function_of_this_test_binary() {
        assert_eq!(std::hint::black_box(lockstep_symbols_dwarf_probe)(1), 31);
        let exe = std::env::current_exe().unwrap();
        let image = ElfImage::read(&exe).unwrap();
        let dwarf = DwarfInfo::load(&image, &exe)
            .unwrap()
            .expect("test binary has DWARF");
        let crc = image
            .symbols
            .iter()
            .find(|s| demangle(&s.name).ends_with("lockstep_symbols_dwarf_probe"))
            .expect("probe symbol");
        let frames = dwarf.frames(crc.start).unwrap();
        let outer = frames.last().expect("a frame");
        assert!(
            outer
                .function
                .as_deref()
                .is_some_and(|f| f.ends_with("lockstep_symbols_dwarf_probe")),
            "{frames:?}"
        );
        assert!(
            outer.file.as_deref().unwrap().ends_with("src/dwarf.rs"),
            "{frames:?}"
        );
        assert!(outer.line.is_some());
        assert!(
            dwarf.frames(u64::MAX - 16).unwrap().is_empty(),
            "nothing up there"
        );
        let table = SymbolTable::new(image.symbols.clone());
        assert!(table.len() > 0);
        assert!(file_offset_to_vaddr(&image.segments, 0).is_some());
    }

    #[test]
    fn no_debug_info_is_none_and_compressed_is_an_error() {
        let exe = std::env::current_exe().unwrap();
        let mut image = ElfImage::read(&exe).unwrap();
        for s in &mut image.sections {
            if s.name == ".debug_line" {
                s.compressed = true;
            }
        }
        let err = DwarfInfo::load(&image, &exe).err().expect("compressed");
        assert!(
            matches!(err, SymbolError::CompressedDwarf { ref section, .. } if section == ".debug_line")
        );
        image.sections.retain(|s| s.name != ".debug_info");
        assert!(DwarfInfo::load(&image, &exe).unwrap().is_none());
    }
}
