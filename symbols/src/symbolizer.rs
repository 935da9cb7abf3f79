//! [`Symbolizer`]: the module cache, the per-address memo, and the public
//! entry points that never fail.
//!
//! A module is parsed once per file identity (device, inode, size, mtime): a
//! file rebuilt or replaced at the same path is parsed again. The identity is
//! checked whenever an address misses the memo, and at most every
//! [`REVALIDATE`] otherwise, so a hot loop over known addresses costs a hash
//! lookup and a clone, not a `stat`.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::data::{in_image, load_bias, DataSymbol, DataTable};
use crate::dwarf::{find_debug_file, DwarfInfo};
use crate::elf::{file_offset_to_vaddr, hex, ElfImage, Segment};
use crate::maps::find_mapping;
use crate::symtab::{demangle, SymbolTable};
use crate::variables::Variables;
use crate::{Frame, Mapping, SymbolError};

/// How long a memo hit may go without re-checking the file's identity.
const REVALIDATE: Duration = Duration::from_millis(200);

/// Where distributions install separate debug files.
const DEBUG_ROOT: &str = "/usr/lib/debug";

/// Resolves runtime addresses to frames, caching parsed modules by path and
/// file identity and memoizing each (module, address).
pub struct Symbolizer {
    modules: HashMap<String, Slot>,
    debug_root: PathBuf,
}

/// Identity of a file on disk: if any of it changes, the file was replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Identity {
    fn of(path: &Path) -> Option<Identity> {
        let m = std::fs::metadata(path).ok()?;
        Some(Identity {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        })
    }
}

/// One path's cache entry.
struct Slot {
    identity: Option<Identity>,
    checked: Instant,
    module: Result<Module, SymbolError>,
    memo: HashMap<u64, Vec<Frame>>,
}

/// A parsed module: what every lookup needs.
struct Module {
    segments: Vec<Segment>,
    symbols: SymbolTable,
    /// Global and static variables.
    objects: DataTable,
    dwarf: Option<DwarfInfo>,
    /// The DWARF variables, indexed on the first look inside a variable.
    variables: Option<Variables>,
    /// Why the module gives less than full information.
    problems: Vec<SymbolError>,
}

impl Module {
    fn load(path: &Path, debug_root: &Path) -> Result<Module, SymbolError> {
        let image = ElfImage::read(path)?;
        let mut problems = Vec::new();
        let mut raw_symbols = image.symbols.clone();
        let mut raw_objects = image.objects.clone();
        let mut dwarf = DwarfInfo::load(&image, path).unwrap_or_else(|e| {
            problems.push(e);
            None
        });
        if dwarf.is_none() {
            if let Some((debug_path, debug)) = find_debug_file(path, &image, debug_root) {
                raw_symbols.extend(debug.symbols.iter().cloned());
                raw_objects.extend(debug.objects.iter().cloned());
                dwarf = DwarfInfo::load(&debug, &debug_path).unwrap_or_else(|e| {
                    problems.push(e);
                    None
                });
            }
        }
        Ok(Module {
            segments: image.segments,
            symbols: SymbolTable::new(raw_symbols),
            objects: DataTable::new(raw_objects),
            dwarf,
            variables: None,
            problems,
        })
    }

    /// The DWARF path to `offset` inside the variable starting at `start`.
    fn member_path(&mut self, start: u64, offset: u64) -> Option<String> {
        let dwarf = self.dwarf.as_ref()?;
        let variables = self
            .variables
            .get_or_insert_with(|| Variables::index(dwarf.dwarf.clone()));
        variables.member_path(start, offset)
    }

    /// The frames at link-time address `vaddr` of the module called `module`.
    fn resolve(&self, module: &str, vaddr: u64) -> Vec<Frame> {
        let sourced = match &self.dwarf {
            Some(dwarf) => dwarf.frames(vaddr).unwrap_or_default(),
            None => Vec::new(),
        };
        let symbol = || {
            self.symbols
                .lookup(vaddr)
                .map(|raw| demangle(raw).into_owned())
        };
        if sourced.is_empty() {
            return vec![bare_frame(module, vaddr, symbol())];
        }
        let last = sourced.len() - 1;
        sourced
            .into_iter()
            .enumerate()
            .map(|(i, s)| Frame {
                // A line without a function (assembly, stripped DIEs): the
                // outermost frame still gets the symbol's name.
                function: s
                    .function
                    .or_else(|| if i == last { symbol() } else { None }),
                file: s.file,
                line: s.line,
                column: s.column,
                module: module.to_owned(),
                module_offset: vaddr,
                inlined: i != last,
            })
            .collect()
    }
}

/// A frame that knows no more than a function name, if that.
fn bare_frame(module: &str, offset: u64, function: Option<String>) -> Frame {
    Frame {
        function,
        file: None,
        line: None,
        column: None,
        module: module.to_owned(),
        module_offset: offset,
        inlined: false,
    }
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Symbolizer {
    /// An empty cache; separate debug files are looked up under `/usr/lib/debug`.
    pub fn new() -> Self {
        Self::with_debug_root(DEBUG_ROOT)
    }

    /// An empty cache looking for separate debug files under `debug_root`
    /// (`<root>/.build-id/xx/yyyy.debug`, `<root><dir>/<debuglink>`).
    pub fn with_debug_root(debug_root: impl Into<PathBuf>) -> Self {
        Symbolizer {
            modules: HashMap::new(),
            debug_root: debug_root.into(),
        }
    }

    /// Resolves `addr` in a process whose file mappings are `maps`.
    ///
    /// Returns at least one frame when `addr` falls in a mapping: function,
    /// file and line (plus inlined frames, innermost first) where there is
    /// DWARF; the function name from `.symtab`/`.dynsym` otherwise; the module
    /// and offset alone when nothing is known. Empty when `addr` is in no
    /// mapping.
    pub fn symbolize(&mut self, maps: &[Mapping], addr: u64) -> Vec<Frame> {
        let Some(mapping) = find_mapping(maps, addr) else {
            return Vec::new();
        };
        // Wrapping: a nonsensical mapping must not panic, only resolve nowhere.
        let offset = (addr - mapping.start).wrapping_add(mapping.file_offset);
        let path = mapping.path.as_str();
        if let Some(frames) = self.memo_hit(path, offset) {
            return frames;
        }
        let slot = self.slot(path, true);
        let module = match &slot.module {
            Ok(module) => module,
            Err(_) => return vec![bare_frame(path, offset, None)],
        };
        let Some(vaddr) = file_offset_to_vaddr(&module.segments, offset) else {
            return vec![bare_frame(path, offset, None)];
        };
        if let Some(frames) = slot.memo.get(&vaddr) {
            return frames.clone();
        }
        let frames = module.resolve(path, vaddr);
        slot.memo.insert(vaddr, frames.clone());
        frames
    }

    /// For a return address (the instruction after a call): resolves
    /// `ret_addr - 1`, inside the call instruction, so the frames name the
    /// line of the call rather than the line after it.
    pub fn symbolize_return_address(&mut self, maps: &[Mapping], ret_addr: u64) -> Vec<Frame> {
        self.symbolize(maps, ret_addr.saturating_sub(1))
    }

    /// The global or static variable containing `addr` in a process whose
    /// file mappings are `maps`.
    ///
    /// `maps` need not contain the data itself: the executable mappings alone
    /// place each module (its load bias), and the module's `PT_LOAD` segments
    /// (with `.bss`) say whether `addr` is its data. The variable comes from
    /// `.symtab`/`.dynsym`, or the separate debug file's `.symtab` of a
    /// stripped module; with DWARF, an address inside it also gets the path
    /// to the element or member (`accounts[1].lock`). `None` for heap, stack
    /// and other anonymous memory, and for modules without object symbols.
    pub fn data_symbol(&mut self, maps: &[Mapping], addr: u64) -> Option<DataSymbol> {
        let mut tried: Vec<(&str, u64)> = Vec::new();
        for mapping in maps {
            let path = mapping.path.as_str();
            let Ok(module) = &mut self.slot(path, false).module else {
                continue;
            };
            let Some(bias) = load_bias(&module.segments, mapping) else {
                continue;
            };
            if tried.contains(&(path, bias)) {
                continue;
            }
            tried.push((path, bias));
            let vaddr = addr.wrapping_sub(bias);
            if !in_image(&module.segments, vaddr) {
                continue;
            }
            // Modules do not overlap: whatever this one says is the answer.
            let entry = module.objects.lookup(vaddr)?;
            let (start, size) = (entry.start, entry.size);
            let name = demangle(&entry.name).into_owned();
            let offset = vaddr - start;
            let member = module.member_path(start, offset);
            return Some(DataSymbol {
                name,
                offset,
                size,
                module: path.to_owned(),
                member,
            });
        }
        None
    }

    /// `(start, size)` of the function `name` (raw or demangled symbol name) in
    /// the module at `path`, as link-time virtual addresses.
    pub fn function_vaddr(&mut self, path: &str, name: &str) -> Option<(u64, u64)> {
        let module = self.slot(path, true).module.as_ref().ok()?;
        module.symbols.by_name(name)
    }

    /// `(start, size)` of every function named exactly `name` in the module
    /// at `path` (aliases at one start counted once; versioned symbols of
    /// one name may have several starts), as link-time addresses.
    pub fn function_vaddrs(&mut self, path: &str, name: &str) -> Vec<(u64, u64)> {
        match self.slot(path, true).module.as_ref() {
            Ok(module) => module.symbols.all_by_name(name),
            Err(_) => Vec::new(),
        }
    }

    /// The load bias of the module mapped by `mapping` (runtime address =
    /// link-time address + bias); `None` if the file cannot be parsed or the
    /// mapping's offset is in no segment.
    pub fn load_bias(&mut self, mapping: &Mapping) -> Option<u64> {
        let module = self.slot(&mapping.path, true).module.as_ref().ok()?;
        crate::data::load_bias(&module.segments, mapping)
    }

    /// Why the module at `path` gives less than full information (unreadable,
    /// not ELF, malformed or compressed DWARF); empty when all is well.
    pub fn problems(&mut self, path: &str) -> Vec<String> {
        match &self.slot(path, true).module {
            Ok(module) => module.problems.iter().map(|e| e.to_string()).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    /// Forgets every parsed module and memoized address.
    pub fn clear(&mut self) {
        self.modules.clear();
    }

    /// The memoized frames of `offset` in `path`, unless the module must be
    /// re-checked first.
    fn memo_hit(&mut self, path: &str, offset: u64) -> Option<Vec<Frame>> {
        let slot = self.modules.get(path)?;
        if slot.checked.elapsed() > REVALIDATE {
            return None;
        }
        let module = slot.module.as_ref().ok()?;
        let vaddr = file_offset_to_vaddr(&module.segments, offset)?;
        slot.memo.get(&vaddr).cloned()
    }

    /// The cache entry of `path`, loading or reloading the module when the
    /// file's identity changed (checked now if `check`, else when stale).
    fn slot(&mut self, path: &str, check: bool) -> &mut Slot {
        let fresh = !self.modules.contains_key(path);
        if fresh {
            let slot = Slot {
                identity: Identity::of(Path::new(path)),
                checked: Instant::now(),
                module: Module::load(Path::new(path), &self.debug_root),
                memo: HashMap::new(),
            };
            self.modules.insert(path.to_owned(), slot);
        }
        let slot = self.modules.get_mut(path).expect("inserted above");
        if !fresh && (check || slot.checked.elapsed() > REVALIDATE) {
            let now = Identity::of(Path::new(path));
            slot.checked = Instant::now();
            // A file that vanished keeps its last parse: it still describes
            // the processes that mapped it.
            let vanished = now.is_none() && slot.module.is_ok();
            if now != slot.identity && !vanished {
                slot.identity = now;
                slot.module = Module::load(Path::new(path), &self.debug_root);
                slot.memo.clear();
            }
        }
        slot
    }
}

/// The GNU build-id of the ELF file at `path`, in lower-case hex.
pub fn build_id(path: &str) -> Option<String> {
    let image = ElfImage::read(Path::new(path)).ok()?;
    image.build_id.as_deref().map(hex)
}
