//! Less than full information: stripped binaries, separate debug files (found
//! by build-id and by `.gnu_debuglink`, and refused on a CRC mismatch),
//! missing and non-ELF files, and a binary replaced at the same path.
//!
//! `strip` and `objcopy` keep the loadable segments where they are, so the
//! addresses of one run of the unstripped program stay valid for every variant:
//! the tests rewrite the run's mappings to point at the variant's path.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use lockstep_symbols::{Mapping, Symbolizer};

/// A run of the `-O0` PIE, with its executable's path.
fn original(name: &str) -> (PathBuf, PathBuf, Run) {
    let dir = scratch(name);
    let exe = dir.join("callsites");
    gcc(&[
        "-g",
        "-O0",
        "-I.",
        "callsites.c",
        "-o",
        exe.to_str().unwrap(),
    ]);
    let run = run(&exe);
    (dir, exe, run)
}

/// Asserts that the `main` call site resolves with full DWARF information.
fn assert_main_has_lines(sym: &mut Symbolizer, maps: &[Mapping], run: &Run, module: &Path) {
    let src = fixture("callsites.c");
    let frames = sym.symbolize_return_address(maps, run.site("main"));
    assert_eq!(frames.len(), 1, "{}", show(&frames));
    assert_frame(
        &frames[0],
        "main",
        &src,
        marker_line(&src, "CALL-SITE-MAIN"),
        module,
    );
    let inline = sym.symbolize_return_address(maps, run.site("inline"));
    assert_eq!(inline.len(), 2, "{}", show(&inline));
}

/// Asserts that `site` resolves to `function` from the symbol table alone.
fn assert_symbol_only(sym: &mut Symbolizer, maps: &[Mapping], addr: u64, function: &str) {
    let frames = sym.symbolize_return_address(maps, addr);
    assert_eq!(frames.len(), 1, "{}", show(&frames));
    assert_eq!(
        frames[0].function.as_deref(),
        Some(function),
        "{}",
        show(&frames)
    );
    assert_eq!((frames[0].file.as_deref(), frames[0].line), (None, None));
    assert!(!frames[0].inlined);
}

#[test]
fn stripped_of_debug_info_names_functions_from_symtab() {
    let (dir, exe, run) = original("strip-debug");
    let stripped = dir.join("stripped");
    tool(
        "strip",
        &[
            "--strip-debug",
            exe.to_str().unwrap(),
            "-o",
            stripped.to_str().unwrap(),
        ],
    );
    let maps = retarget(&run.maps, &exe, &stripped);
    let mut sym = Symbolizer::with_debug_root(dir.join("no-debug-root"));
    assert_symbol_only(&mut sym, &maps, run.site("main"), "main");
    assert_symbol_only(&mut sym, &maps, run.site("deep"), "deep");
    // The inlined helper has no symbol: only its caller is named.
    assert_symbol_only(&mut sym, &maps, run.site("inline"), "main");
}

#[test]
fn stripped_of_everything_gives_module_and_offset() {
    let (dir, exe, run) = original("strip-all");
    let mut full = Symbolizer::new();
    let known = full.symbolize_return_address(&run.maps, run.site("main"));

    let stripped = dir.join("stripped");
    tool(
        "strip",
        &[
            "--strip-all",
            exe.to_str().unwrap(),
            "-o",
            stripped.to_str().unwrap(),
        ],
    );
    let maps = retarget(&run.maps, &exe, &stripped);
    let mut sym = Symbolizer::with_debug_root(dir.join("no-debug-root"));
    let frames = sym.symbolize_return_address(&maps, run.site("main"));
    assert_eq!(frames.len(), 1, "{}", show(&frames));
    assert_eq!(frames[0].function, None, "{}", show(&frames));
    assert_eq!(frames[0].file, None);
    assert_eq!(frames[0].module, stripped.to_str().unwrap());
    assert_eq!(
        frames[0].module_offset, known[0].module_offset,
        "still the link-time address"
    );
    assert!(frames[0]
        .to_string()
        .starts_with(stripped.to_str().unwrap()));
}

/// `objcopy --only-keep-debug` + `strip --strip-debug`: the program keeps
/// its symbols, the debug file has the DWARF.
fn split_debug(dir: &Path, exe: &Path) -> (PathBuf, PathBuf) {
    let debug = dir.join("callsites.debug");
    let stripped = dir.join("split");
    let (e, d, s) = (
        exe.to_str().unwrap(),
        debug.to_str().unwrap(),
        stripped.to_str().unwrap(),
    );
    tool("objcopy", &["--only-keep-debug", e, d]);
    tool("strip", &["--strip-debug", e, "-o", s]);
    (debug, stripped)
}

#[test]
fn separate_debug_file_by_debuglink() {
    let (dir, exe, run) = original("debuglink");
    let (debug, stripped) = split_debug(&dir, &exe);
    let linked = dir.join("linked");
    let link_arg = format!("--add-gnu-debuglink={}", debug.display());
    tool(
        "objcopy",
        &[
            &link_arg,
            stripped.to_str().unwrap(),
            linked.to_str().unwrap(),
        ],
    );
    let maps = retarget(&run.maps, &exe, &linked);
    let mut sym = Symbolizer::with_debug_root(dir.join("no-debug-root"));
    assert_main_has_lines(&mut sym, &maps, &run, &linked);

    // A debug file that changed after linking fails the CRC and is ignored.
    let mut bytes = std::fs::read(&debug).unwrap();
    bytes.push(0);
    std::fs::write(&debug, bytes).unwrap();
    let mut sym = Symbolizer::with_debug_root(dir.join("no-debug-root"));
    assert_symbol_only(&mut sym, &maps, run.site("main"), "main");
}

#[test]
fn separate_debug_file_by_build_id() {
    let (dir, exe, run) = original("by-build-id");
    let (debug, stripped) = split_debug(&dir, &exe);
    let id = lockstep_symbols::build_id(stripped.to_str().unwrap()).expect("gcc adds a build-id");
    let root = dir.join("debug-root");
    let slot = root.join(".build-id").join(&id[..2]);
    std::fs::create_dir_all(&slot).unwrap();
    std::fs::rename(&debug, slot.join(format!("{}.debug", &id[2..]))).unwrap();
    let maps = retarget(&run.maps, &exe, &stripped);
    assert_main_has_lines(
        &mut Symbolizer::with_debug_root(&root),
        &maps,
        &run,
        &stripped,
    );
    // Without the root, the same binary only has its symbols.
    let mut without = Symbolizer::with_debug_root(dir.join("elsewhere"));
    assert_symbol_only(&mut without, &maps, run.site("main"), "main");
}

#[test]
fn missing_and_non_elf_files_give_module_and_file_offset() {
    let (dir, exe, run) = original("missing");
    let gone = dir.join("gone");
    let maps = retarget(&run.maps, &exe, &gone);
    let mut sym = Symbolizer::new();
    let addr = run.site("main");
    let mapping = maps
        .iter()
        .find(|m| m.start <= addr && addr < m.end)
        .unwrap()
        .clone();
    let frames = sym.symbolize(&maps, addr);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].function, None);
    assert_eq!(frames[0].module, gone.to_str().unwrap());
    assert_eq!(
        frames[0].module_offset,
        addr - mapping.start + mapping.file_offset
    );
    assert!(!sym.problems(gone.to_str().unwrap()).is_empty());
    assert_eq!(sym.function_vaddr(gone.to_str().unwrap(), "main"), None);

    let text = fixture("callsites.c");
    let maps = retarget(&run.maps, &exe, &text);
    let frames = sym.symbolize(&maps, addr);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        (frames[0].function.as_deref(), frames[0].line),
        (None, None)
    );
    let problems = sym.problems(text.to_str().unwrap());
    assert!(
        problems.iter().any(|p| p.contains("not a readable ELF")),
        "{problems:?}"
    );
}

#[test]
fn a_binary_replaced_at_the_same_path_is_parsed_again() {
    let (dir, exe, run) = original("replaced");
    let stripped = dir.join("stripped");
    tool(
        "strip",
        &[
            "--strip-all",
            exe.to_str().unwrap(),
            "-o",
            stripped.to_str().unwrap(),
        ],
    );
    let target = dir.join("current");
    let replace_with = |from: &Path| {
        let tmp = dir.join("tmp");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, &target).unwrap();
    };
    replace_with(&exe);
    let maps = retarget(&run.maps, &exe, &target);
    let path = target.to_str().unwrap();
    let mut sym = Symbolizer::new();
    assert_main_has_lines(&mut sym, &maps, &run, &target);

    // Explicit queries re-check the file at once.
    replace_with(&stripped);
    assert_eq!(sym.function_vaddr(path, "main"), None);
    let frames = sym.symbolize_return_address(&maps, run.site("main"));
    assert_eq!(frames[0].function, None, "{}", show(&frames));

    // Memoized addresses are re-checked after a short while.
    replace_with(&exe);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_main_has_lines(&mut sym, &maps, &run, &target);

    // A file that vanishes keeps its last parse.
    std::fs::remove_file(&target).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_main_has_lines(&mut sym, &maps, &run, &target);
    sym.clear();
    let frames = sym.symbolize_return_address(&maps, run.site("main"));
    assert_eq!(frames[0].function, None, "after clear() the file is gone");
}
