//! Runtime code addresses to `function file:line`, with inlined frames.
//!
//! lockstep records addresses (call sites, lock acquisitions, return addresses)
//! from live processes; reports want source lines. This crate turns an address
//! plus the process's file mappings (as `/proc/PID/maps` shows them) into
//! [`Frame`]s, for PIE and non-PIE executables and shared libraries alike.
//!
//! The path from an address to a line:
//!
//! 1. find the [`Mapping`] that contains the address;
//! 2. file offset = `addr - start + file_offset`;
//! 3. link-time virtual address = the `PT_LOAD` segment holding that file offset,
//!    `p_vaddr + (offset - p_offset)` — the address DWARF and symbol tables use,
//!    whatever base the loader picked;
//! 4. DWARF (through `addr2line`) gives the frames, innermost inlined call first;
//!    without DWARF the ELF `.symtab`/`.dynsym` gives at least a function name;
//!    without either, a frame still names the module and the offset.
//!
//! Data addresses (locks, shared variables) go the other way round:
//! [`Symbolizer::data_symbol`] places each module by the load bias of any of
//! its mappings (the executable ones suffice), keeps the module whose
//! `PT_LOAD` segments, `.bss` included, hold the address, and names the
//! `STT_OBJECT` symbol there as a [`DataSymbol`] (`A`, `accounts+0x48`, or with
//! DWARF `accounts[1].lock`). Heap and stack addresses have no name.
//!
//! Separate debug files are found through the build-id
//! (`/usr/lib/debug/.build-id/xx/yyyy.debug`) or `.gnu_debuglink`.
//!
//! Everything is plain data in and plain data out: no ptrace, no pids. The
//! caller reads `/proc/PID/maps` (or a trace) and hands the text or the
//! mappings over. The public API never fails; it degrades to less information.
//! [`SymbolError`] is what the internals report, and what
//! [`Symbolizer::problems`] shows.
//!
//! ```no_run
//! use lockstep_symbols::{parse_proc_maps, Symbolizer};
//! let maps = parse_proc_maps(&std::fs::read_to_string("/proc/self/maps").unwrap());
//! let mut symbolizer = Symbolizer::new();
//! for frame in symbolizer.symbolize(&maps, 0x5555_5555_5189) {
//!     println!("{frame}");
//! }
//! ```

#![forbid(unsafe_code)]

mod data;
mod dwarf;
mod elf;
mod maps;
mod symbolizer;
mod symtab;
mod variables;

use std::fmt;
use std::path::PathBuf;

pub use data::DataSymbol;
pub use maps::{parse_proc_maps, parse_proc_maps_with_perms};
pub use symbolizer::{build_id, Symbolizer};

/// One mapping of a file into a process, as `/proc/PID/maps` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mapping {
    /// First address of the mapping.
    pub start: u64,
    /// One past the last address of the mapping.
    pub end: u64,
    /// Offset in the file of the byte mapped at `start`.
    pub file_offset: u64,
    /// Path of the mapped file, exactly as the kernel shows it (a replaced or
    /// removed file keeps its ` (deleted)` suffix and so is not opened).
    pub path: String,
}

/// A resolved frame; several for one address when calls were inlined
/// (innermost first, the real function last).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Function name: from DWARF (the inlined callee for inlined frames), else
    /// from `.symtab`/`.dynsym`; Rust and C++ names are demangled.
    pub function: Option<String>,
    /// Source file as DWARF names it, joined with the compilation directory
    /// when relative.
    pub file: Option<String>,
    /// Source line (1-based).
    pub line: Option<u32>,
    /// Source column when DWARF has one (`Some(0)` is the left edge).
    pub column: Option<u32>,
    /// Path of the module (the mapping's path).
    pub module: String,
    /// The address inside the module as its symbol tables and DWARF see it
    /// (link-time virtual address; what `addr2line -e module` takes). When the
    /// module could not be read this is the file offset instead.
    pub module_offset: u64,
    /// True when this frame is a call that was inlined into the next frame.
    pub inlined: bool,
}

impl fmt::Display for Frame {
    /// `function file:line` when known, `module+0xoffset` otherwise, with
    /// `(inlined)` after inlined frames.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.function {
            Some(function) => write!(f, "{function}")?,
            None => write!(f, "{}+{:#x}", self.module, self.module_offset)?,
        }
        if let Some(file) = &self.file {
            write!(f, " {file}")?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
        }
        if self.inlined {
            write!(f, " (inlined)")?;
        }
        Ok(())
    }
}

/// Why a module gave less information than it could have.
#[derive(Debug, thiserror::Error)]
pub enum SymbolError {
    /// The file could not be read (missing, unreadable).
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not an ELF file goblin can parse.
    #[error("{path} is not a readable ELF file: {message}")]
    Elf { path: PathBuf, message: String },
    /// The DWARF of the file is malformed or uses something unsupported.
    #[error("bad DWARF in {path}: {source}")]
    Dwarf {
        path: PathBuf,
        #[source]
        source: gimli::Error,
    },
    /// The DWARF is compressed (`SHF_COMPRESSED` or `.zdebug_*`), which this
    /// crate does not decompress; only symbol names are available.
    #[error("{path} has compressed debug sections ({section}); line information is unavailable")]
    CompressedDwarf { path: PathBuf, section: String },
    /// A file offset lies in no `PT_LOAD` segment of the module.
    #[error("file offset {offset:#x} is in no loadable segment of {path}")]
    NoSegment { path: PathBuf, offset: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: Option<&str>, file: Option<&str>, inlined: bool) -> Frame {
        Frame {
            function: function.map(str::to_owned),
            file: file.map(str::to_owned),
            line: file.map(|_| 12),
            column: None,
            module: "/bin/prog".to_owned(),
            module_offset: 0x1139,
            inlined,
        }
    }

    #[test]
    fn display_names_what_is_known() {
        let full = frame(Some("main"), Some("/src/a.c"), false);
        assert_eq!(full.to_string(), "main /src/a.c:12");
        let inlined = frame(Some("helper"), Some("/src/a.c"), true);
        assert_eq!(inlined.to_string(), "helper /src/a.c:12 (inlined)");
        assert_eq!(frame(Some("printf"), None, false).to_string(), "printf");
        assert_eq!(frame(None, None, false).to_string(), "/bin/prog+0x1139");
    }

    #[test]
    fn symbolizer_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<Symbolizer>();
        assert_send::<Frame>();
        assert_send::<SymbolError>();
        assert_send::<DataSymbol>();
    }
}
