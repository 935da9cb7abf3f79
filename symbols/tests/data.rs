//! Data addresses to variable names: globals and statics of PIE and non-PIE
//! executables and of libc, named from the executable mappings alone (the
//! recorder keeps no others), and never for heap or stack memory; stripped
//! binaries and separate debug files.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use lockstep_symbols::{DataSymbol, Mapping, Symbolizer};

/// Builds `globals.c` at `-O0` with `flags` and runs it once.
fn original(name: &str, flags: &[&str]) -> (PathBuf, PathBuf, Run) {
    let dir = scratch(name);
    let exe = dir.join("globals");
    let mut args = vec!["-g", "-O0", "-pthread", "-I.", "globals.c"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["-o", exe.to_str().unwrap()]);
    gcc(&args);
    let run = run(&exe);
    assert!(
        run.exec_maps
            .iter()
            .any(|m| m.path == exe.to_str().unwrap()),
        "the executable's text is mapped: {:?}",
        run.exec_maps
    );
    // The data are in none of the mappings the lookups get.
    for name in ["A", "counter", "accounts", "heap", "local"] {
        let addr = run.datum(name);
        let mapped = run
            .exec_maps
            .iter()
            .any(|m| m.start <= addr && addr < m.end);
        assert!(!mapped, "{name} is in an executable mapping");
    }
    (dir, exe, run)
}

/// The variable at `addr`, which must be found.
fn named(sym: &mut Symbolizer, maps: &[Mapping], addr: u64) -> DataSymbol {
    sym.data_symbol(maps, addr)
        .unwrap_or_else(|| panic!("no variable at {addr:#x} in {maps:?}"))
}

/// Asserts that `addr` is `name+offset` in `module`.
fn assert_var(
    sym: &mut Symbolizer,
    maps: &[Mapping],
    addr: u64,
    name: &str,
    offset: u64,
    module: &Path,
) {
    let found = named(sym, maps, addr);
    assert_eq!(
        (found.name.as_str(), found.offset),
        (name, offset),
        "at {addr:#x}: {found:?}"
    );
    assert_eq!(found.module, module.to_str().unwrap(), "{found:?}");
}

/// Whether the module has DWARF, which names elements and members.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dwarf {
    Yes,
    No,
}

/// `name[1].field` with DWARF, `name+0xoffset` without.
fn inside(dwarf: Dwarf, name: &str, path: &str, offset: u64) -> String {
    match dwarf {
        Dwarf::Yes => format!("{name}{path}"),
        Dwarf::No => format!("{name}+{offset:#x}"),
    }
}

/// The executable's own variables, named through `maps` (mappings of `exe`).
fn assert_program_variables(
    sym: &mut Symbolizer,
    maps: &[Mapping],
    run: &Run,
    exe: &Path,
    dwarf: Dwarf,
) {
    let a = run.datum("A");
    assert_var(sym, maps, a, "A", 0, exe);
    assert_eq!(named(sym, maps, a).render(), "A");
    assert_eq!(named(sym, maps, a).size, 40, "sizeof(pthread_mutex_t)");
    // pthread_mutex_t is a union: DWARF cannot tell which member is meant.
    assert_eq!(named(sym, maps, a + 3).render(), "A+0x3");
    assert_var(sym, maps, run.datum("B"), "B", 0, exe);
    assert_var(sym, maps, run.datum("counter"), "counter", 0, exe);
    assert_eq!(named(sym, maps, run.datum("counter")).size, 4);

    // Array of structs: element 1 and a field of it are offsets into it.
    let base = run.datum("accounts");
    let second = run.datum("accounts1") - base;
    let lock = run.datum("accounts1.lock") - base;
    assert!(second > 0 && lock > second, "{second:#x} {lock:#x}");
    assert_var(sym, maps, base, "accounts", 0, exe);
    assert_eq!(named(sym, maps, base).size, 2 * second);
    let one = named(sym, maps, base + second);
    assert_eq!((one.name.as_str(), one.offset), ("accounts", second));
    assert_eq!(one.render(), inside(dwarf, "accounts", "[1]", second));
    let field = named(sym, maps, base + lock);
    assert_eq!(field.offset, lock);
    assert_eq!(field.render(), inside(dwarf, "accounts", "[1].lock", lock));
    // Inside a scalar field, the rest stays an offset.
    let balance = run.datum("accounts1.balance") - base + 2;
    let in_balance = named(sym, maps, base + balance).render();
    assert_eq!(
        in_balance,
        inside(dwarf, "accounts", "[1].balance+0x2", balance)
    );
    // The last byte of the array, and the byte after it (another variable or
    // padding, but not `accounts`).
    let last = named(sym, maps, base + 2 * second - 1);
    assert_eq!(last.offset, 2 * second - 1);
    let in_lock = format!("[1].lock+{:#x}", 2 * second - 1 - lock);
    assert_eq!(
        last.render(),
        inside(dwarf, "accounts", &in_lock, last.offset)
    );
    let after = sym.data_symbol(maps, base + 2 * second);
    assert!(
        after.as_ref().is_none_or(|d| d.name != "accounts"),
        "{after:?}"
    );

    // Arrays in structs, arrays of arrays.
    let bank = run.datum("bank");
    let vault = run.datum("bank.vault2.lock") - bank;
    let found = named(sym, maps, bank + vault);
    assert_eq!(
        found.render(),
        inside(dwarf, "bank", ".vault[2].lock", vault)
    );
    let grid = run.datum("grid");
    let cell = run.datum("grid21") - grid;
    assert_eq!(cell, (2 * 4 + 1) * 4, "int grid[3][4]");
    let found = named(sym, maps, grid + cell);
    assert_eq!(found.render(), inside(dwarf, "grid", "[2][1]", cell));
    assert_eq!(found.size, 3 * 4 * 4);
    let wide = named(sym, maps, run.datum("wide1.150"));
    let offset = (200 + 150) * 2;
    assert_eq!(wide.render(), inside(dwarf, "wide", "[1][150]", offset));

    // Read-only data, and a function-local static (GCC calls it `calls.N`).
    assert_var(sym, maps, run.datum("greeting"), "greeting", 0, exe);
    let calls = named(sym, maps, run.datum("calls"));
    assert!(calls.name.starts_with("calls."), "{calls:?}");
}

/// What is not a variable of any module.
fn assert_not_variables(sym: &mut Symbolizer, maps: &[Mapping], run: &Run) {
    assert_eq!(sym.data_symbol(maps, run.datum("heap")), None, "malloc'ed");
    assert_eq!(sym.data_symbol(maps, run.datum("local")), None, "stack");
    assert_eq!(sym.data_symbol(maps, 0), None);
    assert_eq!(sym.data_symbol(&[], run.datum("A")), None, "no mappings");
}

/// libc's own data, named from its `.dynsym` through its text mapping.
fn assert_libc_variables(sym: &mut Symbolizer, maps: &[Mapping], run: &Run) {
    let file = run.datum("stdout-file");
    let libc = named(sym, maps, file);
    assert!(libc.module.contains("libc.so"), "{libc:?}");
    assert_eq!(libc.render(), "_IO_2_1_stdout_");
    assert!(libc.size >= 0xd8, "a whole FILE: {libc:?}");
    let inside = named(sym, maps, file + 0x10);
    assert_eq!(
        (inside.name.as_str(), inside.offset),
        ("_IO_2_1_stdout_", 0x10)
    );
    // `+0x10`, or `.file._IO_read_end` where libc's debug file is installed.
    let member = inside.member.as_deref().unwrap_or("+0x10");
    assert_eq!(inside.render(), format!("_IO_2_1_stdout_{member}"));
}

#[test]
fn pie_variables_are_named_from_executable_mappings_alone() {
    let (_dir, exe, run) = original("data-pie", &["-pie", "-fPIE"]);
    assert_eq!(elf_type(&exe), 3, "PIE");
    let mut sym = Symbolizer::new();
    assert_program_variables(&mut sym, &run.exec_maps, &run, &exe, Dwarf::Yes);
    assert_not_variables(&mut sym, &run.exec_maps, &run);
    assert_libc_variables(&mut sym, &run.exec_maps, &run);
    // The copy-relocated `environ` (whichever module holds it) is named
    // without its `@GLIBC_2.2.5` version, by its plain alias.
    assert_eq!(
        named(&mut sym, &run.exec_maps, run.datum("environ")).render(),
        "environ"
    );
    // All the mappings give the same answers as the executable ones.
    assert_program_variables(&mut Symbolizer::new(), &run.maps, &run, &exe, Dwarf::Yes);
}

#[test]
fn non_pie_variables_are_named() {
    let (_dir, exe, run) = original("data-no-pie", &["-no-pie"]);
    assert_eq!(elf_type(&exe), 2, "not PIE");
    assert!(run.datum("A") < 0x1000_0000, "linked at a fixed address");
    let mut sym = Symbolizer::new();
    assert_program_variables(&mut sym, &run.exec_maps, &run, &exe, Dwarf::Yes);
    assert_not_variables(&mut sym, &run.exec_maps, &run);
    assert_libc_variables(&mut sym, &run.exec_maps, &run);
}

#[test]
fn strip_debug_keeps_the_symbol_table_and_the_names() {
    let (dir, exe, run) = original("data-strip-debug", &[]);
    let stripped = dir.join("stripped");
    let (e, s) = (exe.to_str().unwrap(), stripped.to_str().unwrap());
    tool("strip", &["--strip-debug", e, "-o", s]);
    let maps = retarget(&run.exec_maps, &exe, &stripped);
    let mut sym = Symbolizer::with_debug_root(dir.join("no-debug-root"));
    assert_program_variables(&mut sym, &maps, &run, &stripped, Dwarf::No);
    assert_not_variables(&mut sym, &maps, &run);
}

#[test]
fn strip_all_leaves_only_dynamic_symbols() {
    let (dir, exe, run) = original("data-strip-all", &[]);
    let stripped = dir.join("stripped");
    let (e, s) = (exe.to_str().unwrap(), stripped.to_str().unwrap());
    tool("strip", &["--strip-all", e, "-o", s]);
    let maps = retarget(&run.exec_maps, &exe, &stripped);
    let mut sym = Symbolizer::with_debug_root(dir.join("no-debug-root"));
    let all = [
        "A",
        "B",
        "counter",
        "accounts",
        "accounts1",
        "bank",
        "grid",
        "greeting",
        "calls",
    ];
    for name in all {
        let found = sym.data_symbol(&maps, run.datum(name));
        assert_eq!(found, None, "{name} has no symbol left");
    }
    assert_not_variables(&mut sym, &maps, &run);
    // libc is untouched, and `.dynsym` survives stripping.
    assert_libc_variables(&mut sym, &maps, &run);
}

#[test]
fn a_stripped_program_uses_the_symbols_of_its_debug_file() {
    let (dir, exe, run) = original("data-debuglink", &[]);
    let debug = dir.join("globals.debug");
    let stripped = dir.join("stripped");
    let linked = dir.join("linked");
    let (e, d, s) = (
        exe.to_str().unwrap(),
        debug.to_str().unwrap(),
        stripped.to_str().unwrap(),
    );
    tool("objcopy", &["--only-keep-debug", e, d]);
    tool("strip", &["--strip-all", e, "-o", s]);
    let link_arg = format!("--add-gnu-debuglink={d}");
    tool("objcopy", &[&link_arg, s, linked.to_str().unwrap()]);
    let maps = retarget(&run.exec_maps, &exe, &linked);
    let mut sym = Symbolizer::with_debug_root(dir.join("no-debug-root"));
    assert_program_variables(&mut sym, &maps, &run, &linked, Dwarf::Yes);
    assert_not_variables(&mut sym, &maps, &run);
}

#[test]
fn unreadable_modules_are_skipped() {
    let (dir, exe, run) = original("data-missing", &[]);
    let mut sym = Symbolizer::new();
    let gone = retarget(&run.exec_maps, &exe, &dir.join("gone"));
    assert_eq!(sym.data_symbol(&gone, run.datum("A")), None);
    // libc, still readable, still names its data.
    assert_libc_variables(&mut sym, &gone, &run);
    let text = retarget(&run.exec_maps, &exe, &fixture("globals.c"));
    assert_eq!(sym.data_symbol(&text, run.datum("A")), None, "not ELF");
}

#[test]
fn dwarf_4_names_members_too() {
    let (_dir, exe, run) = original("data-dwarf4", &["-gdwarf-4"]);
    let mut sym = Symbolizer::new();
    assert_program_variables(&mut sym, &run.exec_maps, &run, &exe, Dwarf::Yes);
}

/// Builds `monitors.c` with `flags` and runs it once.
fn monitors(name: &str, flags: &[&str]) -> (PathBuf, Run) {
    let dir = scratch(name);
    let exe = dir.join("monitors");
    let mut args = vec!["-g", "-O0", "-pthread", "-I.", "monitors.c"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["-o", exe.to_str().unwrap()]);
    gcc(&args);
    let run = run(&exe);
    (exe, run)
}

/// Locks embedded in structs, as in the bank-transfer and nested-monitor
/// fixtures, are named by variable and member path, also where the lock is
/// the first member and its address the struct's (`p.lock`, `mon.mutex_m`,
/// `mon.n.mutex_n`). Names are never demangled: C's `x`, `y` and `m` are not
/// the C++ type encodings of `long long`, `unsigned long long` and `unsigned
/// long`.
fn assert_embedded_locks(sym: &mut Symbolizer, run: &Run, exe: &Path) {
    let locks = [
        "x.lock",
        "y.lock",
        "p.lock",
        "q.lock",
        "mon.mutex_m",
        "mon.n.mutex_n",
        "mon.n.cond_n",
    ];
    for lock in locks {
        let found = named(sym, &run.exec_maps, run.datum(lock));
        assert_eq!(found.module, exe.to_str().unwrap(), "{found:?}");
        assert_eq!(found.render(), lock, "{found:?}");
    }
    // The variable names come from the symbol table, the members from DWARF.
    let x = named(sym, &run.exec_maps, run.datum("x.lock"));
    assert_eq!((x.name.as_str(), x.offset), ("x", 8), "{x:?}");
    let mon = named(sym, &run.exec_maps, run.datum("mon"));
    assert_eq!((mon.name.as_str(), mon.offset), ("mon", 0), "{mon:?}");
    assert_eq!(mon.member.as_deref(), Some(".mutex_m"));
    // A scalar first member adds nothing at the start of a struct.
    assert_eq!(named(sym, &run.exec_maps, run.datum("x")).render(), "x");
    assert_eq!(
        named(sym, &run.exec_maps, run.datum("q.balance")).render(),
        "q.balance"
    );
}

#[test]
fn static_embedded_locks_are_named_by_member() {
    let (exe, run) = monitors("data-monitors-static", &["-DSTORAGE=static"]);
    assert_embedded_locks(&mut Symbolizer::new(), &run, &exe);
}

#[test]
fn global_embedded_locks_are_named_by_member() {
    let (exe, run) = monitors("data-monitors-global", &["-DSTORAGE="]);
    assert_embedded_locks(&mut Symbolizer::new(), &run, &exe);
}
