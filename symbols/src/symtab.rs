//! Address → function name from ELF symbol tables, the fallback without DWARF.
//!
//! The function symbols of `.symtab`, `.dynsym` and a separate debug file's
//! `.symtab` go into one table sorted by address. Aliases (several names at one
//! address, like glibc's `printf` and `_IO_printf`) are ordered so that the
//! name a user would write comes first: fewer leading underscores, then global
//! before weak before local binding, then the shorter name. Symbols without a
//! size (hand-written assembly) extend to the next symbol or the end of their
//! section.

use std::borrow::Cow;

use goblin::elf::sym::{STB_GLOBAL, STB_LOCAL, STB_WEAK};

use crate::elf::RawSymbol;

/// How far back a lookup walks to find an enclosing symbol when the nearest
/// one below the address ends before it (nested or overlapping symbols).
const MAX_BACKTRACK: usize = 64;

/// Function symbols sorted by start address, best alias first.
#[derive(Debug, Default)]
pub(crate) struct SymbolTable {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    start: u64,
    end: u64,
    name: Box<str>,
}

impl SymbolTable {
    /// Builds the table; duplicates (same name, same address) collapse.
    pub fn new(mut raws: Vec<RawSymbol>) -> Self {
        raws.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| rank(a).cmp(&rank(b))));
        raws.dedup_by(|later, earlier| later.start == earlier.start && later.name == earlier.name);
        let mut entries = Vec::with_capacity(raws.len());
        for (i, raw) in raws.iter().enumerate() {
            let end = if raw.size > 0 {
                raw.start.saturating_add(raw.size)
            } else {
                let next = raws[i..].iter().map(|r| r.start).find(|&s| s > raw.start);
                match (next, raw.section_end) {
                    (Some(n), Some(e)) => n.min(e),
                    (Some(n), None) => n,
                    (None, Some(e)) => e,
                    (None, None) => raw.start + 1,
                }
                .max(raw.start + 1)
            };
            entries.push(Entry {
                start: raw.start,
                end,
                name: raw.name.as_str().into(),
            });
        }
        SymbolTable { entries }
    }

    /// Number of symbols (aliases counted).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The raw (mangled) name of the function containing `vaddr`.
    pub fn lookup(&self, vaddr: u64) -> Option<&str> {
        let below = self.entries.partition_point(|e| e.start <= vaddr);
        let lowest = below.saturating_sub(MAX_BACKTRACK);
        let hit = (lowest..below)
            .rev()
            .find(|&i| vaddr < self.entries[i].end)?;
        let start = self.entries[hit].start;
        // The best-ranked alias at that start that also contains `vaddr`.
        (lowest..=hit)
            .rev()
            .take_while(|&i| self.entries[i].start == start)
            .filter(|&i| vaddr < self.entries[i].end)
            .last()
            .map(|i| &*self.entries[i].name)
    }

    /// `(start, size)` of every function called exactly `name` (versioned
    /// `.dynsym` entries of one name can have distinct starts), deduplicated.
    pub fn all_by_name(&self, name: &str) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self
            .entries
            .iter()
            .filter(|e| &*e.name == name)
            .map(|e| (e.start, e.end - e.start))
            .collect();
        v.sort_unstable();
        v.dedup_by_key(|e| e.0);
        v
    }

    /// `(start, size)` of the function called `name`, raw or demangled.
    pub fn by_name(&self, name: &str) -> Option<(u64, u64)> {
        let found = self.entries.iter().find(|e| &*e.name == name).or_else(|| {
            self.entries
                .iter()
                .find(|e| e.name.starts_with("_") && demangle(&e.name) == name)
        })?;
        Some((found.start, found.end - found.start))
    }
}

/// Sort key among aliases: lower is the better name to show.
pub(crate) fn rank(sym: &RawSymbol) -> (usize, u8, usize) {
    let underscores = sym.name.bytes().take_while(|&b| b == b'_').count();
    let binding = match sym.bind {
        STB_GLOBAL => 0,
        STB_WEAK => 1,
        STB_LOCAL => 2,
        _ => 3,
    };
    (underscores, binding, sym.name.len())
}

/// Prefixes of the mangled names worth demangling: Itanium C++ and Rust
/// legacy (`_Z`), Rust v0 (`_R`), both with the extra `_` some platforms add,
/// and GCC's static constructors and destructors (`_GLOBAL__sub_I_...`).
const MANGLED_PREFIXES: [&str; 5] = ["_Z", "__Z", "_R", "__R", "_GLOBAL_"];

/// Demangles Rust (without the hash) and C++ names; other names unchanged.
///
/// Only names that start like a mangled name are tried: the C++ demangler
/// also accepts a bare type encoding, so a C variable or function called `x`,
/// `y`, `m` or `i` would otherwise come out as `long long`, `unsigned long
/// long`, `unsigned long` or `int`.
pub(crate) fn demangle(raw: &str) -> Cow<'_, str> {
    if !MANGLED_PREFIXES.iter().any(|p| raw.starts_with(p)) {
        return Cow::Borrowed(raw);
    }
    addr2line::demangle_auto(Cow::Borrowed(raw), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(name: &str, start: u64, size: u64, bind: u8) -> RawSymbol {
        RawSymbol {
            name: name.to_owned(),
            start,
            size,
            bind,
            section_end: Some(0x2000),
        }
    }

    fn table() -> SymbolTable {
        SymbolTable::new(vec![
            sym("_IO_printf", 0x1100, 0x40, STB_GLOBAL),
            sym("printf", 0x1100, 0x40, STB_GLOBAL),
            sym("__GI_printf", 0x1100, 0x40, STB_LOCAL),
            sym("main", 0x1000, 0x80, STB_GLOBAL),
            sym("main", 0x1000, 0x80, STB_GLOBAL),
            sym("asm_entry", 0x1200, 0, STB_GLOBAL),
            sym("asm_tail", 0x1300, 0, STB_LOCAL),
            sym("outer", 0x1400, 0x100, STB_GLOBAL),
            sym("inner", 0x1420, 0x10, STB_LOCAL),
        ])
    }

    #[test]
    fn finds_the_function_containing_an_address() {
        let t = table();
        assert_eq!(t.lookup(0x1000), Some("main"));
        assert_eq!(t.lookup(0x107f), Some("main"));
        assert_eq!(t.lookup(0x1080), None, "gap between main and printf");
        assert_eq!(t.lookup(0xfff), None);
        assert_eq!(t.len(), 8, "the duplicate main collapsed");
    }

    #[test]
    fn prefers_the_plain_global_alias() {
        assert_eq!(table().lookup(0x1120), Some("printf"));
    }

    #[test]
    fn sizeless_symbols_reach_the_next_symbol_or_section_end() {
        let t = table();
        assert_eq!(t.lookup(0x12ff), Some("asm_entry"));
        assert_eq!(t.lookup(0x1300), Some("asm_tail"));
        assert_eq!(
            t.lookup(0x13ff),
            Some("asm_tail"),
            "stops at the next symbol"
        );
        let t = SymbolTable::new(vec![sym("last", 0x1f00, 0, STB_GLOBAL)]);
        assert_eq!(t.lookup(0x1fff), Some("last"));
        assert_eq!(t.lookup(0x2000), None, "stops at the section end");
    }

    #[test]
    fn nested_symbols_resolve_to_the_innermost_then_the_outer() {
        let t = table();
        assert_eq!(t.lookup(0x1425), Some("inner"));
        assert_eq!(
            t.lookup(0x1430),
            Some("outer"),
            "past inner, still in outer"
        );
        assert_eq!(t.lookup(0x1500), None);
    }

    #[test]
    fn by_name_matches_raw_and_demangled_names() {
        let t = SymbolTable::new(vec![
            sym("main", 0x1000, 0x80, STB_GLOBAL),
            sym("_ZN3foo3barEv", 0x1100, 0x20, STB_GLOBAL),
            sym(
                "_ZN5crate4step17h0123456789abcdefE",
                0x1200,
                0x30,
                STB_GLOBAL,
            ),
        ]);
        assert_eq!(t.by_name("main"), Some((0x1000, 0x80)));
        assert_eq!(t.by_name("foo::bar()"), Some((0x1100, 0x20)));
        assert_eq!(t.by_name("_ZN3foo3barEv"), Some((0x1100, 0x20)));
        assert_eq!(t.by_name("crate::step"), Some((0x1200, 0x30)));
        assert_eq!(t.by_name("nope"), None);
    }

    #[test]
    fn demangles_rust_and_cpp_and_leaves_c_alone() {
        assert_eq!(demangle("_ZN3foo3barEv"), "foo::bar()");
        assert_eq!(
            demangle("_ZN5crate4step17h0123456789abcdefE"),
            "crate::step"
        );
        assert_eq!(demangle("pthread_mutex_lock"), "pthread_mutex_lock");
        assert_eq!(demangle("_R"), "_R", "not a whole mangled name");
    }

    #[test]
    fn c_names_that_look_like_type_encodings_stay_as_they_are() {
        // Itanium builtin type codes: `x` long long, `y` unsigned long long,
        // `m` unsigned long, `i` int, `v` void; `S_` a substitution.
        for name in [
            "x", "y", "m", "i", "v", "b", "c", "d", "f", "S_", "Pi", "mon",
        ] {
            assert_eq!(demangle(name), name);
        }
    }

    #[test]
    fn empty_table_finds_nothing() {
        let t = SymbolTable::default();
        assert_eq!(t.lookup(0x1000), None);
        assert_eq!(t.by_name("main"), None);
    }
}
