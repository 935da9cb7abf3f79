//! Shared libraries: a fixture library (`gcc -shared -fPIC -g`) loaded at a
//! random base by a PIE that links against it, and the system libc, which has
//! no DWARF of its own (at best a separate, compressed debug file) and must
//! still give function names from its symbol tables. Last, throughput: a
//! report symbolizes the same few thousand addresses over and over (every lock
//! acquisition of a hot loop); 1,000,000 lookups of 4,000 distinct addresses,
//! in the fixture and in libc, must stay fast: each module is parsed once and
//! each (module, address) resolved once.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use lockstep_symbols::{Frame, Mapping, Symbolizer};

/// Builds `libsites.so` and `uselib` (linked against it, with an rpath) and
/// runs the program once.
fn build_library_and_program(name: &str) -> (PathBuf, PathBuf, Run) {
    let dir = scratch(name);
    let lib = dir.join("libsites.so");
    let exe = dir.join("uselib");
    gcc(&[
        "-shared",
        "-fPIC",
        "-g",
        "-O0",
        "-I.",
        "libsites.c",
        "-o",
        lib.to_str().unwrap(),
    ]);
    let libdir = format!("-L{}", dir.display());
    let rpath = format!("-Wl,-rpath,{}", dir.display());
    let out = exe.to_str().unwrap();
    gcc(&[
        "-g", "-O0", "-I.", "uselib.c", "-o", out, &libdir, "-lsites", &rpath,
    ]);
    let run = run(&exe);
    (lib, exe, run)
}

#[test]
fn call_sites_in_a_shared_library_and_its_caller() {
    let (lib, exe, run) = build_library_and_program("shared");
    let mut sym = Symbolizer::new();

    let src = fixture("libsites.c");
    let in_lib = sym.symbolize_return_address(&run.maps, run.site("lib"));
    assert_eq!(in_lib.len(), 1, "{}", show(&in_lib));
    assert_frame(
        &in_lib[0],
        "lib_entry",
        &src,
        marker_line(&src, "LIB-CALL-SITE"),
        &lib,
    );

    let caller = fixture("uselib.c");
    let in_exe = sym.symbolize_return_address(&run.maps, run.site("exe"));
    assert_eq!(in_exe.len(), 1, "{}", show(&in_exe));
    assert_frame(
        &in_exe[0],
        "main",
        &caller,
        marker_line(&caller, "USELIB-CALL-SITE"),
        &exe,
    );

    // The library sits at a random base: module offsets are link-time
    // addresses, far from the runtime ones, and match the symbol table.
    let base = run.mapping_of(&lib).start;
    assert!(base > 0x10_0000, "library mapped at {base:#x}");
    let (start, size) = sym
        .function_vaddr(lib.to_str().unwrap(), "lib_entry")
        .expect("lib_entry symbol");
    assert!(start < 0x10_0000, "link-time address {start:#x}");
    assert!((start..start + size).contains(&in_lib[0].module_offset));
    let at_entry = sym.symbolize(&run.maps, run.func("lib_entry"));
    assert_eq!(
        at_entry[0].function.as_deref(),
        Some("lib_entry"),
        "{}",
        show(&at_entry)
    );
    assert_eq!(at_entry[0].module_offset, start);
    assert_eq!(at_entry[0].module, lib.to_str().unwrap());
    assert_eq!(at_entry[0].file.as_deref(), Some(src.to_str().unwrap()));
}

#[test]
fn library_functions_resolve_by_dwarf_name_not_just_symbol() {
    let (lib, _exe, run) = build_library_and_program("shared-record");
    let mut sym = Symbolizer::new();
    // Inside lib_record, a few bytes past its start: still lib_record, on
    // one of its own lines.
    let lib_path = lib.to_str().unwrap();
    let (start, size) = sym
        .function_vaddr(lib_path, "lib_record")
        .expect("lib_record");
    let (entry, _) = sym
        .function_vaddr(lib_path, "lib_entry")
        .expect("lib_entry");
    let runtime_entry = run.func("lib_entry");
    let runtime_record = runtime_entry - entry + start + size / 2;
    let frames = sym.symbolize(&run.maps, runtime_record);
    assert_eq!(frames.len(), 1, "{}", show(&frames));
    assert_eq!(frames[0].function.as_deref(), Some("lib_record"));
    let src = fixture("libsites.c");
    assert_eq!(frames[0].file.as_deref(), Some(src.to_str().unwrap()));
    let define = marker_line(&src, "DEFINE_RECORD_SITE(lib_record)");
    assert_eq!(
        frames[0].line,
        Some(define),
        "the macro expands on its line"
    );
}

/// The PIE fixture prints `(void *)printf`, which is libc's own printf.
#[test]
fn libc_functions_resolve_to_their_names() {
    let exe = scratch("libc").join("callsites");
    gcc(&[
        "-g",
        "-O0",
        "-I.",
        "callsites.c",
        "-o",
        exe.to_str().unwrap(),
    ]);
    let run = run(&exe);
    let mut sym = Symbolizer::new();
    let printf = run.func("printf");
    let frames = sym.symbolize(&run.maps, printf);
    assert!(!frames.is_empty(), "printf at {printf:#x} is mapped");
    let libc = &frames.last().unwrap().module;
    assert!(
        libc.contains("libc.so") || libc.contains("libc-"),
        "module {libc}"
    );
    assert_eq!(
        frames.last().unwrap().function.as_deref(),
        Some("printf"),
        "{}",
        show(&frames)
    );

    // Inside printf, not at its start: still printf.
    let inside = sym.symbolize(&run.maps, printf + 8);
    assert_eq!(
        inside.last().unwrap().function.as_deref(),
        Some("printf"),
        "{}",
        show(&inside)
    );

    // The symbol table agrees with the mapping arithmetic.
    let (start, size) = sym.function_vaddr(libc, "printf").expect("printf in libc");
    assert_eq!(frames.last().unwrap().module_offset, start);
    assert!(size > 0);
    for problem in sym.problems(libc) {
        eprintln!("libc: {problem}");
    }
}

/// An address somewhere in libc's code: a name, a module and an offset,
/// never an empty answer.
#[test]
fn every_address_of_libc_code_gives_a_frame() {
    let text = std::fs::read_to_string("/proc/self/maps").unwrap();
    let maps = lockstep_symbols::parse_proc_maps(&text);
    let libc_text = maps
        .iter()
        .find(|m| m.path.contains("/libc.so") && m.file_offset > 0)
        .expect("this test process maps libc code");
    let mut sym = Symbolizer::new();
    let mut named = 0;
    let step = ((libc_text.end - libc_text.start) / 997).max(1);
    for addr in (libc_text.start..libc_text.end).step_by(step as usize) {
        let frames = sym.symbolize(&maps, addr);
        assert!(!frames.is_empty(), "{addr:#x}");
        assert!(Path::new(&frames[0].module).ends_with(Path::new(&libc_text.path)));
        named += frames.iter().any(|f| f.function.is_some()) as usize;
    }
    assert!(named > 900, "only {named} of ~997 libc addresses named");
}

const LOOKUPS: usize = 1_000_000;

/// Up to `n` addresses spread over the code mapping of `path`.
fn code_addresses(maps: &[Mapping], path_contains: &str, n: u64) -> Vec<u64> {
    // The code mapping is the one that holds the module's entry code: the
    // second mapping of a file built by GNU ld (headers, code, rodata, data).
    let mapping = maps
        .iter()
        .filter(|m| m.path.contains(path_contains))
        .nth(1)
        .unwrap_or_else(|| panic!("{path_contains} has a code mapping: {maps:?}"));
    let len = mapping.end - mapping.start;
    let step = (len / n).max(1);
    (0..n).map(|i| mapping.start + (i * step) % len).collect()
}

#[test]
fn a_million_lookups_of_a_few_thousand_addresses() {
    let exe = scratch("throughput").join("callsites");
    gcc(&[
        "-g",
        "-O0",
        "-I.",
        "callsites.c",
        "-o",
        exe.to_str().unwrap(),
    ]);
    let run = run(&exe);
    let mut addrs = code_addresses(&run.maps, exe.to_str().unwrap(), 2000);
    addrs.extend(code_addresses(&run.maps, "/libc.so", 2000));
    addrs.sort_unstable();
    addrs.dedup();
    assert!(addrs.len() > 2000, "{} distinct addresses", addrs.len());

    let mut sym = Symbolizer::new();
    let first: Vec<Vec<Frame>> = addrs.iter().map(|&a| sym.symbolize(&run.maps, a)).collect();
    assert!(
        first.iter().all(|f| !f.is_empty()),
        "every address is mapped"
    );

    let started = Instant::now();
    let mut frames = 0usize;
    for i in 0..LOOKUPS {
        let at = (i * 7919) % addrs.len();
        let result = sym.symbolize(&run.maps, addrs[at]);
        if i % 4096 == 0 {
            assert_eq!(result, first[at], "memoized answers do not drift");
        }
        frames += result.len();
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{LOOKUPS} lookups of {} addresses: {elapsed:?} ({:.0} ns each, {frames} frames)",
        addrs.len(),
        elapsed.as_nanos() as f64 / LOOKUPS as f64
    );
    // Generous for an unoptimized test build on a loaded machine; a release
    // build does it in a fraction of a second.
    let limit = if cfg!(debug_assertions) { 20 } else { 3 };
    assert!(elapsed < Duration::from_secs(limit), "{elapsed:?}");

    // The fixture's own lines are among the answers.
    let src = fixture("callsites.c");
    let with_lines = first
        .iter()
        .flatten()
        .filter(|f| f.file.as_deref() == Some(src.to_str().unwrap()))
        .count();
    assert!(
        with_lines > 0,
        "some addresses fall in callsites.c functions"
    );
}
