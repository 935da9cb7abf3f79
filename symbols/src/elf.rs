//! The ELF facts the symbolizer needs, read once with goblin into owned data.
//!
//! An [`ElfImage`] keeps the whole file in an `Arc<[u8]>` (DWARF readers share
//! it without copying), the `PT_LOAD` segments that turn file offsets into
//! link-time addresses, the section table (to find DWARF sections), the function
//! and data object symbols of `.symtab` and `.dynsym`, the GNU build-id and the
//! `.gnu_debuglink` of a stripped file.

use std::path::Path;
use std::sync::Arc;

use goblin::elf::note::NT_GNU_BUILD_ID;
use goblin::elf::program_header::PT_LOAD;
use goblin::elf::section_header::{SHF_COMPRESSED, SHN_ABS, SHN_UNDEF, SHT_NOBITS};
use goblin::elf::sym::{STT_FUNC, STT_GNU_IFUNC, STT_OBJECT};
use goblin::elf::Elf;

use crate::SymbolError;

/// Page size of x86-64 Linux: the loader maps segments in whole pages.
const PAGE: u64 = 4096;

/// One `PT_LOAD` program header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub offset: u64,
    pub filesz: u64,
    pub vaddr: u64,
    /// Size in memory: past `filesz` comes zero-filled memory (`.bss`).
    pub memsz: u64,
}

/// One section header, with its name resolved.
#[derive(Clone, Debug)]
pub(crate) struct Section {
    pub name: String,
    pub offset: u64,
    pub size: u64,
    pub addr: u64,
    /// `SHF_COMPRESSED` is set (or the name is `.zdebug_*`).
    pub compressed: bool,
    /// `SHT_NOBITS`: occupies no bytes in the file (`.bss`, or any allocated
    /// section of a separate debug file).
    pub nobits: bool,
}

/// A function or data object symbol of `.symtab` or `.dynsym`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawSymbol {
    pub name: String,
    pub start: u64,
    pub size: u64,
    /// `STB_*` binding: 0 local, 1 global, 2 weak.
    pub bind: u8,
    /// End of the section the symbol is in, bounding zero-sized symbols.
    pub section_end: Option<u64>,
}

/// An ELF file, parsed.
pub(crate) struct ElfImage {
    pub bytes: Arc<[u8]>,
    pub little_endian: bool,
    pub segments: Vec<Segment>,
    pub sections: Vec<Section>,
    pub symbols: Vec<RawSymbol>,
    /// Data object (`STT_OBJECT`) symbols: global and static variables.
    pub objects: Vec<RawSymbol>,
    pub build_id: Option<Vec<u8>>,
    /// File name and CRC-32 from `.gnu_debuglink`.
    pub debuglink: Option<(String, u32)>,
}

impl ElfImage {
    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<Self, SymbolError> {
        let bytes = std::fs::read(path).map_err(|source| SymbolError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(bytes.into(), path)
    }

    /// Parses `bytes`; `path` only names the file in errors.
    pub fn parse(bytes: Arc<[u8]>, path: &Path) -> Result<Self, SymbolError> {
        let elf = Elf::parse(&bytes).map_err(|e| SymbolError::Elf {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let segments = elf
            .program_headers
            .iter()
            .filter(|ph| ph.p_type == PT_LOAD)
            .map(|ph| Segment {
                offset: ph.p_offset,
                filesz: ph.p_filesz,
                vaddr: ph.p_vaddr,
                memsz: ph.p_memsz,
            })
            .collect();
        let sections: Vec<Section> = elf
            .section_headers
            .iter()
            .map(|sh| {
                let name = elf.shdr_strtab.get_at(sh.sh_name).unwrap_or("").to_owned();
                Section {
                    compressed: sh.sh_flags & u64::from(SHF_COMPRESSED) != 0
                        || name.starts_with(".zdebug"),
                    name,
                    offset: sh.sh_offset,
                    size: sh.sh_size,
                    addr: sh.sh_addr,
                    nobits: sh.sh_type == SHT_NOBITS,
                }
            })
            .collect();
        let (mut symbols, mut objects) = (Vec::new(), Vec::new());
        for (syms, strtab) in [(&elf.syms, &elf.strtab), (&elf.dynsyms, &elf.dynstrtab)] {
            let is_function = |kind| kind == STT_FUNC || kind == STT_GNU_IFUNC;
            collect(syms, strtab, &sections, is_function, &mut symbols);
            collect(
                syms,
                strtab,
                &sections,
                |kind| kind == STT_OBJECT,
                &mut objects,
            );
        }
        let debuglink = sections
            .iter()
            .find(|s| s.name == ".gnu_debuglink" && !s.nobits)
            .and_then(|s| slice(&bytes, s.offset, s.size))
            .and_then(parse_debuglink);
        Ok(ElfImage {
            build_id: find_build_id(&elf, &bytes),
            little_endian: elf.little_endian,
            segments,
            sections,
            symbols,
            objects,
            debuglink,
            bytes,
        })
    }

    /// The first section called `name`.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }
}

/// Appends the defined symbols of one symbol table whose `STT_*` type `wanted`.
fn collect(
    syms: &goblin::elf::Symtab<'_>,
    strtab: &goblin::strtab::Strtab<'_>,
    sections: &[Section],
    wanted: impl Fn(u8) -> bool,
    out: &mut Vec<RawSymbol>,
) {
    for sym in syms.iter() {
        let defined = sym.st_shndx != SHN_UNDEF as usize && sym.st_shndx != SHN_ABS as usize;
        if !wanted(sym.st_type()) || !defined || sym.st_value == 0 {
            continue;
        }
        let Some(name) = strtab.get_at(sym.st_name).filter(|n| !n.is_empty()) else {
            continue;
        };
        out.push(RawSymbol {
            name: name.to_owned(),
            start: sym.st_value,
            size: sym.st_size,
            bind: sym.st_bind(),
            section_end: sections.get(sym.st_shndx).map(|s| s.addr + s.size),
        });
    }
}

/// The `NT_GNU_BUILD_ID` note, from `PT_NOTE` segments or else note sections
/// (separate debug files keep the section).
fn find_build_id(elf: &Elf<'_>, bytes: &[u8]) -> Option<Vec<u8>> {
    let from = |notes: Option<goblin::elf::note::NoteIterator<'_>>| {
        notes?
            .filter_map(Result::ok)
            .find(|n| n.n_type == NT_GNU_BUILD_ID && n.name == "GNU" && !n.desc.is_empty())
            .map(|n| n.desc.to_vec())
    };
    from(elf.iter_note_headers(bytes)).or_else(|| from(elf.iter_note_sections(bytes, None)))
}

/// `.gnu_debuglink`: a NUL-terminated file name, padding to 4 bytes, then the
/// CRC-32 of the debug file, in the file's byte order (little-endian here).
fn parse_debuglink(data: &[u8]) -> Option<(String, u32)> {
    let nul = data.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&data[..nul]).ok()?;
    let crc_at = (nul + 1).next_multiple_of(4);
    let crc = data.get(crc_at..crc_at + 4)?;
    let crc = u32::from_le_bytes(crc.try_into().ok()?);
    (!name.is_empty()).then(|| (name.to_owned(), crc))
}

/// `bytes[offset..offset + size]`, if it is inside the file.
pub(crate) fn slice(bytes: &[u8], offset: u64, size: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    bytes.get(start..end)
}

/// The link-time virtual address of file offset `offset`: through the
/// `PT_LOAD` segment whose file bytes contain it, or else the segment whose
/// page-rounded mapping contains it (the loader maps whole pages, so the head
/// and tail of a mapping can lie outside `[p_offset, p_offset + p_filesz)`).
pub(crate) fn file_offset_to_vaddr(segments: &[Segment], offset: u64) -> Option<u64> {
    let exact = segments
        .iter()
        .find(|s| s.offset <= offset && offset < s.offset.saturating_add(s.filesz));
    let seg = exact.or_else(|| {
        segments.iter().find(|s| {
            let first = s.offset & !(PAGE - 1);
            let last = s.offset.saturating_add(s.filesz).next_multiple_of(PAGE);
            first <= offset && offset < last
        })
    })?;
    // Wrapping: the page-rounded case may sit below `p_offset`.
    Some(seg.vaddr.wrapping_add(offset.wrapping_sub(seg.offset)))
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The segments of a typical PIE built by GNU ld.
    fn pie() -> Vec<Segment> {
        vec![
            Segment {
                offset: 0,
                filesz: 0x628,
                vaddr: 0,
                memsz: 0x628,
            },
            Segment {
                offset: 0x1000,
                filesz: 0x1c5,
                vaddr: 0x1000,
                memsz: 0x1c5,
            },
            Segment {
                offset: 0x2000,
                filesz: 0x10c,
                vaddr: 0x2000,
                memsz: 0x10c,
            },
            Segment {
                offset: 0x2db8,
                filesz: 0x260,
                vaddr: 0x3db8,
                memsz: 0x268,
            },
        ]
    }

    #[test]
    fn offsets_map_through_their_segment() {
        let segs = pie();
        assert_eq!(file_offset_to_vaddr(&segs, 0x1139), Some(0x1139));
        assert_eq!(file_offset_to_vaddr(&segs, 0x2dc0), Some(0x3dc0));
        let nopie = [Segment {
            offset: 0x1000,
            filesz: 0x200,
            vaddr: 0x401000,
            memsz: 0x200,
        }];
        assert_eq!(file_offset_to_vaddr(&nopie, 0x1010), Some(0x401010));
    }

    #[test]
    fn page_tails_map_through_the_page_rounded_segment() {
        let segs = pie();
        // Past p_filesz of the text segment but in its last page.
        assert_eq!(file_offset_to_vaddr(&segs, 0x1f00), Some(0x1f00));
        // Before p_offset of a segment but in its first page.
        let head = [Segment {
            offset: 0x1100,
            filesz: 0x100,
            vaddr: 0x401100,
            memsz: 0x100,
        }];
        assert_eq!(file_offset_to_vaddr(&head, 0x1010), Some(0x401010));
        assert_eq!(file_offset_to_vaddr(&segs, 0x9000), None);
        assert_eq!(file_offset_to_vaddr(&[], 0), None);
    }

    #[test]
    fn debuglink_has_name_and_crc() {
        let mut data = b"prog.debug\0\0".to_vec();
        data.extend_from_slice(&0xdead_beef_u32.to_le_bytes());
        assert_eq!(
            parse_debuglink(&data),
            Some(("prog.debug".to_owned(), 0xdead_beef))
        );
        assert_eq!(parse_debuglink(b"abc\0"), None, "no CRC");
        assert_eq!(
            parse_debuglink(b"\0\0\0\0\x01\x02\x03\x04"),
            None,
            "no name"
        );
    }

    #[test]
    fn hex_is_lower_case_and_padded() {
        assert_eq!(hex(&[0x00, 0x0a, 0xff]), "000aff");
    }

    #[test]
    fn reads_this_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let image = ElfImage::read(&exe).unwrap();
        assert!(image.little_endian);
        assert!(!image.segments.is_empty());
        assert!(image.section(".text").is_some());
        assert!(image.symbols.iter().any(|s| s.name == "main"));
        assert!(image.segments.iter().all(|s| s.memsz >= s.filesz));
        let missing = ElfImage::read(Path::new("/nonexistent/binary"));
        assert!(matches!(missing, Err(SymbolError::Io { .. })));
        let not_elf = ElfImage::parse(Arc::from(&b"#!/bin/sh\n"[..]), Path::new("x"));
        assert!(matches!(not_elf, Err(SymbolError::Elf { .. })));
    }
}
