//! Data addresses → the global or static variable that contains them.
//!
//! Reports show addresses of locks and shared data (`&A`, `&accounts[1]`); a
//! [`DataSymbol`] names them from the `STT_OBJECT` symbols of `.symtab` and
//! `.dynsym` (or a separate debug file's `.symtab`).
//!
//! The recorder keeps only the executable file mappings of a process, never its
//! writable data or its anonymous `.bss`, so a data address usually lies in no
//! mapping at all. Instead each module's load bias comes from any mapping of
//! it: `bias = start - vaddr(file_offset)` (through the `PT_LOAD` segments, as
//! for code). An address `addr` belongs to the module when `addr - bias` is
//! inside one of its `PT_LOAD` segments, counting `p_memsz` so that `.bss`
//! does. Heap, stack and anonymous memory belong to no module: no name.

use std::fmt;

use crate::elf::{file_offset_to_vaddr, RawSymbol, Segment};
use crate::symtab::rank;
use crate::Mapping;

/// How far back a lookup walks past objects that end before the address
/// (zero-sized markers, objects nested in a bigger one).
const MAX_BACKTRACK: usize = 64;

/// A global or static variable that contains an address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DataSymbol {
    /// Name of the variable; C++ and Rust names demangled. GCC names
    /// function-local statics `name.N`.
    pub name: String,
    /// The address minus the variable's start.
    pub offset: u64,
    /// Size of the variable in bytes (0 when the symbol table gives none).
    pub size: u64,
    /// Path of the module that defines the variable (as the mapping names it).
    pub module: String,
    /// Where `offset` is inside the variable, from its DWARF type: `[1]`,
    /// `[1].lock`, `.balance+0x4`; at offset 0 only the union a struct starts
    /// with (`.lock` of `struct account { pthread_mutex_t lock; ... } x`).
    /// `None` without DWARF, or when the type says no more than the offset (a
    /// union, a scalar, a struct at its start).
    pub member: Option<String>,
}

impl DataSymbol {
    /// `name` and the [`member`](Self::member) path when DWARF gives one
    /// (`accounts[1].lock`, `x.lock`); else `name` at the start of the
    /// variable and `name+0xoffset` inside it (`accounts+0x48`).
    pub fn render(&self) -> String {
        match (&self.member, self.offset) {
            (Some(member), _) => format!("{}{member}", self.name),
            (None, 0) => self.name.clone(),
            (None, offset) => format!("{}+{offset:#x}", self.name),
        }
    }
}

impl fmt::Display for DataSymbol {
    /// Same as [`DataSymbol::render`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// Data object symbols sorted by start address, best alias first.
#[derive(Debug, Default)]
pub(crate) struct DataTable {
    entries: Vec<DataEntry>,
}

/// One object: `[start, start + size)`, or exactly `start` when `size` is 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DataEntry {
    pub start: u64,
    pub size: u64,
    /// Raw (mangled) name.
    pub name: Box<str>,
}

impl DataEntry {
    fn contains(&self, vaddr: u64) -> bool {
        if self.size == 0 {
            vaddr == self.start
        } else {
            self.start <= vaddr && vaddr - self.start < self.size
        }
    }
}

impl DataTable {
    /// Builds the table; duplicates (same name, same address) collapse. At one
    /// address a sized object comes before a zero-sized marker, then the name
    /// a user would write (see [`rank`]). A symbol version is dropped: GNU ld
    /// names a copy-relocated `environ` in `.symtab` `environ@GLIBC_2.2.5`.
    pub fn new(mut raws: Vec<RawSymbol>) -> Self {
        for raw in &mut raws {
            if let Some(at) = raw.name.find('@').filter(|&at| at > 0) {
                raw.name.truncate(at);
            }
        }
        raws.sort_by(|a, b| {
            a.start
                .cmp(&b.start)
                .then_with(|| (a.size == 0).cmp(&(b.size == 0)))
                .then_with(|| rank(a).cmp(&rank(b)))
        });
        raws.dedup_by(|later, earlier| later.start == earlier.start && later.name == earlier.name);
        let entries = raws
            .into_iter()
            .map(|raw| DataEntry {
                start: raw.start,
                size: raw.size,
                name: raw.name.into(),
            })
            .collect();
        DataTable { entries }
    }

    /// Number of objects (aliases counted).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The innermost object containing `vaddr` (the one starting last), and
    /// among aliases at that start the best-ranked one.
    pub fn lookup(&self, vaddr: u64) -> Option<&DataEntry> {
        let below = self.entries.partition_point(|e| e.start <= vaddr);
        let lowest = below.saturating_sub(MAX_BACKTRACK);
        let hit = (lowest..below)
            .rev()
            .find(|&i| self.entries[i].contains(vaddr))?;
        let start = self.entries[hit].start;
        (lowest..=hit)
            .rev()
            .take_while(|&i| self.entries[i].start == start)
            .filter(|&i| self.entries[i].contains(vaddr))
            .last()
            .map(|i| &self.entries[i])
    }
}

/// The load bias of a module one of whose mappings is `mapping`: runtime
/// address minus link-time address (0 for a non-PIE executable).
pub(crate) fn load_bias(segments: &[Segment], mapping: &Mapping) -> Option<u64> {
    let vaddr = file_offset_to_vaddr(segments, mapping.file_offset)?;
    Some(mapping.start.wrapping_sub(vaddr))
}

/// Whether link-time address `vaddr` is inside the loaded image: some
/// `PT_LOAD` segment's `[p_vaddr, p_vaddr + p_memsz)`.
pub(crate) fn in_image(segments: &[Segment], vaddr: u64) -> bool {
    segments
        .iter()
        .any(|s| s.vaddr <= vaddr && vaddr - s.vaddr < s.memsz)
}

#[cfg(test)]
mod tests {
    use goblin::elf::sym::{STB_GLOBAL, STB_LOCAL, STB_WEAK};

    use super::*;

    fn obj(name: &str, start: u64, size: u64, bind: u8) -> RawSymbol {
        RawSymbol {
            name: name.to_owned(),
            start,
            size,
            bind,
            section_end: None,
        }
    }

    fn table() -> DataTable {
        DataTable::new(vec![
            obj("accounts", 0x4060, 0x60, STB_GLOBAL),
            obj("A", 0x4020, 0x28, STB_GLOBAL),
            obj("A", 0x4020, 0x28, STB_GLOBAL),
            obj("counter", 0x40c0, 4, STB_LOCAL),
            obj("__TMC_END__", 0x4010, 0, STB_GLOBAL),
            obj("__environ", 0x40d0, 8, STB_GLOBAL),
            obj("environ", 0x40d0, 8, STB_WEAK),
            obj("_environ", 0x40d0, 8, STB_WEAK),
            obj("environ@GLIBC_2.2.5", 0x40d0, 8, STB_WEAK),
            obj("stdout@GLIBC_2.2.5", 0x40e0, 8, STB_GLOBAL),
            obj("marker", 0x40c0, 0, STB_GLOBAL),
            obj("outer", 0x5000, 0x100, STB_GLOBAL),
            obj("inner", 0x5010, 0x10, STB_LOCAL),
        ])
    }

    fn name(t: &DataTable, vaddr: u64) -> Option<(&str, u64)> {
        t.lookup(vaddr).map(|e| (&*e.name, vaddr - e.start))
    }

    #[test]
    fn finds_the_object_containing_an_address() {
        let t = table();
        assert_eq!(name(&t, 0x4020), Some(("A", 0)));
        assert_eq!(name(&t, 0x4047), Some(("A", 0x27)));
        assert_eq!(name(&t, 0x4048), None, "past the end of A");
        assert_eq!(name(&t, 0x4088), Some(("accounts", 0x28)));
        assert_eq!(name(&t, 0x40c3), Some(("counter", 3)));
        assert_eq!(name(&t, 0x401f), None);
        assert_eq!(t.len(), 11, "the duplicates A and environ collapsed");
    }

    #[test]
    fn zero_sized_symbols_match_their_address_only() {
        let t = table();
        assert_eq!(name(&t, 0x4010), Some(("__TMC_END__", 0)));
        assert_eq!(name(&t, 0x4011), None);
        assert_eq!(
            name(&t, 0x40c0),
            Some(("counter", 0)),
            "a sized object beats a marker at its address"
        );
    }

    #[test]
    fn prefers_the_plain_alias_and_the_innermost_object() {
        let t = table();
        assert_eq!(name(&t, 0x40d4), Some(("environ", 4)));
        assert_eq!(name(&t, 0x40e0), Some(("stdout", 0)), "version dropped");
        assert_eq!(name(&t, 0x5018), Some(("inner", 8)));
        assert_eq!(name(&t, 0x5020), Some(("outer", 0x20)));
        assert_eq!(name(&t, 0x5100), None);
        assert_eq!(DataTable::default().lookup(0x4020), None);
    }

    #[test]
    fn render_adds_the_offset_in_hex() {
        let mut s = DataSymbol {
            name: "A".to_owned(),
            offset: 0,
            size: 40,
            module: "/bin/prog".to_owned(),
            member: None,
        };
        assert_eq!(s.render(), "A");
        s.name = "accounts".to_owned();
        s.offset = 0x28;
        assert_eq!(s.render(), "accounts+0x28");
        assert_eq!(s.to_string(), "accounts+0x28");
        s.member = Some("[1].lock".to_owned());
        assert_eq!(s.render(), "accounts[1].lock");
        s.name = "x".to_owned();
        s.offset = 0;
        s.member = Some(".lock".to_owned());
        assert_eq!(s.render(), "x.lock", "a lock at the start of a struct");
    }

    /// A non-PIE executable with text at 0x401000 and data plus `.bss` at
    /// 0x403e10.
    fn nopie() -> Vec<Segment> {
        let seg = |offset, filesz, vaddr, memsz| Segment {
            offset,
            filesz,
            vaddr,
            memsz,
        };
        vec![
            seg(0, 0x5a0, 0x400000, 0x5a0),
            seg(0x1000, 0x1f5, 0x401000, 0x1f5),
            seg(0x2e10, 0x240, 0x403e10, 0x2b0),
        ]
    }

    #[test]
    fn bias_comes_from_any_mapping_and_bss_is_in_the_image() {
        let segs = nopie();
        let text = Mapping {
            start: 0x401000,
            end: 0x402000,
            file_offset: 0x1000,
            path: "/bin/prog".to_owned(),
        };
        assert_eq!(load_bias(&segs, &text), Some(0));
        let pie_data = Mapping {
            start: 0x5555_5555_7000,
            file_offset: 0x2000,
            ..text.clone()
        };
        // The data mapping starts at the page holding p_offset 0x2e10.
        assert_eq!(load_bias(&segs, &pie_data), Some(0x5555_5515_4000));
        let far = Mapping {
            file_offset: 0x9000,
            ..text
        };
        assert_eq!(load_bias(&segs, &far), None);
        assert!(in_image(&segs, 0x404050), "file-backed data");
        assert!(in_image(&segs, 0x4040bf), "last byte of .bss");
        assert!(!in_image(&segs, 0x4040c0));
        assert!(!in_image(&segs, 0x3fffff));
        assert!(!in_image(&[], 0x401000));
    }
}
