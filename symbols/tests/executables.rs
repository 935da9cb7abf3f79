//! Executables built from `tests/fixtures/callsites.c`: a PIE and a non-PIE at
//! `-O0`, and a PIE at `-O2`. Each run prints the return addresses of its call
//! sites and its maps; the symbolizer must name the function, the fixture file
//! and the exact line of each call, including the inlined `inlined_helper`
//! frame over `main`. Then C++ (`methods.cpp`): names come out demangled, from
//! DWARF and from the symbol table alike.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use lockstep_symbols::{build_id, Mapping, Symbolizer};

/// Builds `callsites.c` with `flags` into a fresh directory and runs it once.
fn build_and_run(name: &str, flags: &[&str]) -> (PathBuf, Run) {
    let exe = scratch(name).join("callsites");
    let mut args = vec!["-g", "-I."];
    args.extend_from_slice(flags);
    // Relative source: DWARF then names it relative to the compilation
    // directory, which the symbolizer must join.
    args.extend_from_slice(&["callsites.c", "-o", exe.to_str().unwrap()]);
    gcc(&args);
    let run = run(&exe);
    (exe, run)
}

/// What every build of `callsites.c` must resolve to.
fn check_call_sites(exe: &Path, run: &Run) {
    let src = fixture("callsites.c");
    let mut sym = Symbolizer::new();

    let main = sym.symbolize_return_address(&run.maps, run.site("main"));
    assert_eq!(main.len(), 1, "{}", show(&main));
    assert_frame(
        &main[0],
        "main",
        &src,
        marker_line(&src, "CALL-SITE-MAIN"),
        exe,
    );
    assert!(!main[0].inlined);

    let deep = sym.symbolize_return_address(&run.maps, run.site("deep"));
    assert_eq!(deep.len(), 1, "{}", show(&deep));
    assert_frame(
        &deep[0],
        "deep",
        &src,
        marker_line(&src, "CALL-SITE-DEEP"),
        exe,
    );

    let inline = sym.symbolize_return_address(&run.maps, run.site("inline"));
    assert_eq!(
        inline.len(),
        2,
        "inlined frame then main: {}",
        show(&inline)
    );
    let helper_line = marker_line(&src, "CALL-SITE-IN-HELPER");
    assert_frame(&inline[0], "inlined_helper", &src, helper_line, exe);
    assert!(inline[0].inlined, "{}", show(&inline));
    let caller_line = marker_line(&src, "CALL-SITE-INLINED-INTO-MAIN");
    assert_frame(&inline[1], "main", &src, caller_line, exe);
    assert!(!inline[1].inlined, "{}", show(&inline));
    assert_eq!(inline[0].module_offset, inline[1].module_offset);

    // A return address resolves one byte earlier than the address itself.
    let at_ret = sym.symbolize(&run.maps, run.site("main"));
    assert_eq!(at_ret[0].module_offset, main[0].module_offset + 1);

    // A function's address is the start of its symbol.
    let exe_path = exe.to_str().unwrap();
    let (start, size) = sym
        .function_vaddr(exe_path, "deep")
        .expect("deep has a symbol");
    assert!(size > 0);
    let at_deep = sym.symbolize(&run.maps, run.func("deep"));
    assert_eq!(
        at_deep[0].function.as_deref(),
        Some("deep"),
        "{}",
        show(&at_deep)
    );
    assert_eq!(at_deep[0].module_offset, start);
    assert!((start..start + size).contains(&deep[0].module_offset));
    let (main_start, main_size) = sym.function_vaddr(exe_path, "main").expect("main");
    assert!((main_start..main_start + main_size).contains(&main[0].module_offset));
    assert_eq!(sym.function_vaddr(exe_path, "no_such_function"), None);
    assert!(
        sym.problems(exe_path).is_empty(),
        "{:?}",
        sym.problems(exe_path)
    );
}

#[test]
fn pie_at_o0() {
    let (exe, run) = build_and_run("pie-o0", &["-O0"]);
    assert_eq!(elf_type(&exe), 3, "a PIE is ET_DYN");
    assert_ne!(run.mapping_of(&exe).start, 0x400000);
    check_call_sites(&exe, &run);
    // The PIE's link-time addresses are small; the runtime ones are not.
    let mut sym = Symbolizer::new();
    let main = sym.symbolize_return_address(&run.maps, run.site("main"));
    assert!(main[0].module_offset < 0x10_0000);
    assert!(run.site("main") > 0x10_0000);
}

#[test]
fn non_pie_at_o0() {
    let (exe, run) = build_and_run("nopie-o0", &["-O0", "-no-pie"]);
    assert_eq!(elf_type(&exe), 2, "-no-pie gives ET_EXEC");
    assert_eq!(run.mapping_of(&exe).start, 0x400000);
    check_call_sites(&exe, &run);
    // Non-PIE: the link-time address is the runtime address.
    let mut sym = Symbolizer::new();
    let main = sym.symbolize_return_address(&run.maps, run.site("main"));
    assert_eq!(main[0].module_offset, run.site("main") - 1);
}

#[test]
fn pie_at_o2_keeps_inlined_frames() {
    let (exe, run) = build_and_run("pie-o2", &["-O2"]);
    check_call_sites(&exe, &run);
}

#[test]
fn build_ids_are_read_from_the_note() {
    let id = "0123456789abcdef00112233445566778899aabb";
    let dir = scratch("build-id");
    let with = dir.join("with-id");
    let flag = format!("-Wl,--build-id=0x{id}");
    gcc(&[
        "-g",
        "-I.",
        &flag,
        "callsites.c",
        "-o",
        with.to_str().unwrap(),
    ]);
    assert_eq!(build_id(with.to_str().unwrap()).as_deref(), Some(id));

    let without = dir.join("without-id");
    gcc(&[
        "-I.",
        "-Wl,--build-id=none",
        "callsites.c",
        "-o",
        without.to_str().unwrap(),
    ]);
    assert_eq!(build_id(without.to_str().unwrap()), None);

    assert_eq!(build_id("/nonexistent/file"), None);
    assert_eq!(
        build_id(fixture("callsites.c").to_str().unwrap()),
        None,
        "not ELF"
    );
    let libc = "/lib/x86_64-linux-gnu/libc.so.6";
    if Path::new(libc).exists() {
        let libc_id = build_id(libc).expect("Debian's libc has a build-id");
        assert_eq!(libc_id.len(), 40);
        assert!(libc_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
}

#[test]
fn addresses_outside_every_mapping_give_nothing() {
    let (exe, run) = build_and_run("unmapped", &["-O0"]);
    let mut sym = Symbolizer::new();
    assert!(sym.symbolize(&run.maps, 0x10).is_empty());
    assert!(sym.symbolize(&run.maps, u64::MAX).is_empty());
    assert!(sym.symbolize_return_address(&run.maps, 0).is_empty());
    assert!(sym.symbolize(&[], run.site("main")).is_empty());
    // One past the end of the executable's last mapping.
    let exe = exe.to_str().unwrap();
    let end = run
        .maps
        .iter()
        .filter(|m| m.path == exe)
        .map(|m| m.end)
        .max()
        .unwrap();
    if !run.maps.iter().any(|m| m.start == end) {
        assert!(sym.symbolize(&run.maps, end).is_empty());
    }
    let only = [Mapping {
        start: 0x1000,
        end: 0x2000,
        file_offset: 0,
        path: exe.to_owned(),
    }];
    assert!(sym.symbolize(&only, 0x2000).is_empty());
    assert_eq!(sym.symbolize(&only, 0x1fff).len(), 1);
}

#[test]
fn cpp_names_are_demangled_from_dwarf_and_symtab() {
    let dir = scratch("cpp");
    let exe = dir.join("methods");
    let out = std::process::Command::new("g++")
        .args([
            "-g",
            "-O0",
            "-I.",
            "methods.cpp",
            "-o",
            exe.to_str().unwrap(),
        ])
        .current_dir(fixtures())
        .output()
        .expect("run g++");
    assert!(
        out.status.success(),
        "g++: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = run(&exe);
    let src = fixture("methods.cpp");
    let line = marker_line(&src, "CPP-CALL-SITE");
    let name = "shapes::Circle::area(int) const";

    let mut sym = Symbolizer::new();
    let frames = sym.symbolize_return_address(&run.maps, run.site("method"));
    assert_eq!(frames.len(), 1, "{}", show(&frames));
    assert_frame(&frames[0], name, &src, line, &exe);

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
    let frames = sym.symbolize_return_address(&maps, run.site("method"));
    assert_eq!(
        frames[0].function.as_deref(),
        Some(name),
        "{}",
        show(&frames)
    );
    assert_eq!(frames[0].line, None);
    let by_demangled = sym.function_vaddr(stripped.to_str().unwrap(), name);
    let by_mangled = sym.function_vaddr(stripped.to_str().unwrap(), "_ZNK6shapes6Circle4areaEi");
    assert!(by_demangled.is_some());
    assert_eq!(by_demangled, by_mangled);
}
