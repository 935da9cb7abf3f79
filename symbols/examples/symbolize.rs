//! `symbolize PID ADDR...`: resolves addresses of a live process, like
//! `addr2line -f -i` but from runtime addresses. `PID` may be `self`.
//! Prefix an address with `r` (`r0x5555...`) to resolve it as a return address.

use lockstep_symbols::{parse_proc_maps, Symbolizer};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((pid, addrs)) = args.split_first() else {
        eprintln!("usage: symbolize PID|self ADDR...");
        std::process::exit(2);
    };
    let maps = match std::fs::read_to_string(format!("/proc/{pid}/maps")) {
        Ok(text) => parse_proc_maps(&text),
        Err(e) => {
            eprintln!("symbolize: /proc/{pid}/maps: {e}");
            std::process::exit(1);
        }
    };
    let mut symbolizer = Symbolizer::new();
    for arg in addrs {
        let (is_return, hex) = match arg.strip_prefix('r') {
            Some(rest) => (true, rest),
            None => (false, arg.as_str()),
        };
        let Ok(addr) = u64::from_str_radix(hex.trim_start_matches("0x"), 16) else {
            eprintln!("symbolize: not a hex address: {arg}");
            continue;
        };
        let frames = if is_return {
            symbolizer.symbolize_return_address(&maps, addr)
        } else {
            symbolizer.symbolize(&maps, addr)
        };
        if frames.is_empty() {
            println!("{addr:#x}: not in any file mapping");
        }
        for frame in frames {
            println!("{addr:#x}: {frame}  [{}+{:#x}]", frame.module, frame.module_offset);
        }
    }
}
