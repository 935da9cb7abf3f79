//! Builds the in-process agent (`agent/`, its own cargo workspace, always in
//! release mode with frame pointers) and places `liblockstep_agent.so` in
//! OUT_DIR, from where the binary embeds it. One `lockstep` binary thus
//! carries its agent and extracts it on first use.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let agent_dir = root.join("agent");
    let dest = out.join("liblockstep_agent.so");
    for p in [
        "agent/src",
        "agent/Cargo.toml",
        "agent/Cargo.lock",
        "agent-abi/src",
        "agent-abi/Cargo.toml",
        "unwind/src",
        "unwind/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    if !agent_dir.join("Cargo.toml").exists() {
        println!("cargo:warning=agent/ is missing: lockstep will record without sync events");
        std::fs::write(&dest, b"").unwrap();
        return;
    }
    let target_dir = out.join("agent-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--manifest-path"])
        .arg(agent_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // The outer build's flags are for the outer build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("MAKEFLAGS")
        .env("RUSTFLAGS", "-C force-frame-pointers=yes")
        .status()
        .expect("run cargo for the agent");
    // A broken agent must not stop lockstep from building: it then records
    // without sync events, and the tests that need them fail loudly.
    if !status.success() {
        println!(
            "cargo:warning=building the agent failed: lockstep will record without sync events"
        );
        std::fs::write(&dest, b"").unwrap();
        return;
    }
    std::fs::copy(target_dir.join("release/liblockstep_agent.so"), &dest).expect("copy the agent");
}
