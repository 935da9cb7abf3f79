//! The executable as loaded: its load bias and code range (from
//! `dl_iterate_phdr`, whose first object is the program itself), and its
//! functions and imports (from its symbol table, read from
//! `/proc/self/exe` with goblin).

use goblin::elf::{sym, Elf};

use super::rewrite::Function;

/// What the instrumentation needs of the executable.
pub struct Exe {
    /// Load bias (0 for a non-PIE executable).
    pub bias: u64,
    /// The executable PT_LOAD segment, as loaded: `[lo, hi)`.
    pub text: (u64, u64),
    pub functions: Vec<Function>,
    /// It calls pthread_create or thrd_create (it can have threads).
    pub threaded: bool,
    /// It has C++ exception tables (the copies would break unwinding).
    pub cxx_exceptions: bool,
}

/// Reads the running executable; `None` if it cannot be read or parsed,
/// or has no symbol table.
pub fn read() -> Option<Exe> {
    let (bias, text) = first_object()?;
    let bytes = std::fs::read("/proc/self/exe").ok()?;
    let elf = Elf::parse(&bytes).ok()?;
    let threaded = elf.dynsyms.iter().any(|s| {
        s.st_shndx == 0
            && matches!(
                elf.dynstrtab.get_at(s.st_name),
                Some(n) if n.starts_with("pthread_create") || n.starts_with("thrd_create")
            )
    });
    let cxx_exceptions = elf
        .section_headers
        .iter()
        .any(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(".gcc_except_table"));
    let mut functions: Vec<Function> = Vec::new();
    for s in elf.syms.iter() {
        if s.st_type() != sym::STT_FUNC || s.st_shndx == 0 || s.st_size < 5 {
            continue;
        }
        let name = elf.strtab.get_at(s.st_name).unwrap_or("");
        if is_runtime(name) {
            continue;
        }
        let addr = bias + s.st_value;
        if addr < text.0 || addr + s.st_size > text.1 {
            continue;
        }
        functions.push(Function {
            addr,
            size: s.st_size,
        });
    }
    functions.sort_by_key(|f| f.addr);
    functions.dedup_by_key(|f| f.addr);
    Some(Exe {
        bias,
        text,
        functions,
        threaded,
        cxx_exceptions,
    })
}

/// The C runtime's start-up and tear-down code, which runs before the
/// agent's constructor or after everything else.
fn is_runtime(name: &str) -> bool {
    matches!(
        name,
        "_start"
            | "_init"
            | "_fini"
            | "deregister_tm_clones"
            | "register_tm_clones"
            | "__do_global_dtors_aux"
            | "frame_dummy"
            | "__libc_csu_init"
            | "__libc_csu_fini"
            | "_dl_relocate_static_pie"
    )
}

/// The load bias and executable segment of the first loaded object (the
/// program).
fn first_object() -> Option<(u64, (u64, u64))> {
    struct Found {
        bias: u64,
        text: (u64, u64),
        done: bool,
    }
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `Found` passed below; `info` is valid for
        // the duration of the callback.
        let (found, info) = unsafe { (&mut *data.cast::<Found>(), &*info) };
        found.bias = info.dlpi_addr;
        for i in 0..info.dlpi_phnum as usize {
            // SAFETY: dlpi_phdr has dlpi_phnum entries.
            let ph = unsafe { &*info.dlpi_phdr.add(i) };
            if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
                let lo = info.dlpi_addr + ph.p_vaddr;
                found.text = (lo, lo + ph.p_memsz);
            }
        }
        found.done = true;
        1 // the first object is the program: stop
    }
    let mut found = Found {
        bias: 0,
        text: (0, 0),
        done: false,
    };
    // SAFETY: `each` only touches `found` through `data`.
    unsafe { libc::dl_iterate_phdr(Some(each), (&mut found as *mut Found).cast()) };
    (found.done && found.text.1 > found.text.0).then_some((found.bias, found.text))
}
