//! Build script: warns when the agent is built without frame pointers,
//! which its stack walk needs (`stack[0]` would be wrong, never unsafe).

fn main() {
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let with_fp = flags
        .split('\u{1f}')
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| w[0] == "-C" && w[1] == "force-frame-pointers=yes")
        || flags
            .split('\u{1f}')
            .any(|f| f == "-Cforce-frame-pointers=yes");
    if !with_fp {
        println!(
            "cargo:warning=lockstep-agent built without RUSTFLAGS=\"-C force-frame-pointers=yes\": \
             recorded call stacks will be wrong"
        );
    }
}
