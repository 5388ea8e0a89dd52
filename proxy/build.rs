//! Build script of `sluice`.
//!
//! `build_ebpf`: compiles the kernel-side programs (`ebpf/sluice-ebpf`) with
//! the nightly pinned in its `rust-toolchain.toml` and bpf-linker (both
//! installed by `scripts/setup.sh`), and leaves the object in
//! `$OUT_DIR/sluice-ebpf.o`, which `src/bpf.rs` embeds. `AYA_BUILD_SKIP=1`
//! writes an empty object instead: for documentation builds only (the
//! loader then reports that it has no programs); CI builds the real one.

#![expect(
    clippy::expect_used,
    reason = "a build script reports failure by panicking"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    build_ebpf();
}

/// Whether to skip the eBPF build (documentation builds).
fn skip_ebpf() -> bool {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| !v.is_empty() && v != "0")
        || std::env::var_os("DOCS_RS").is_some()
}

fn build_ebpf() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let object = out_dir.join("sluice-ebpf.o");
    let ebpf = manifest.join("../ebpf/sluice-ebpf");
    let common = manifest.join("../ebpf/sluice-ebpf-common");
    for path in [
        ebpf.join("src"),
        ebpf.join("Cargo.toml"),
        ebpf.join("Cargo.lock"),
        ebpf.join("rust-toolchain.toml"),
        ebpf.join(".cargo/config.toml"),
        common.join("src"),
        common.join("Cargo.toml"),
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    if skip_ebpf() {
        std::fs::write(&object, []).expect("write an empty eBPF object");
        return;
    }
    let toolchain = pinned_toolchain(&ebpf.join("rust-toolchain.toml"));
    let target_dir = out_dir.join("ebpf-target");
    let mut cmd = Command::new("rustup");
    cmd.args(["run", &toolchain, "cargo", "build", "--release", "--locked"])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&ebpf);
    // The outer build's settings are for the host and the stable compiler.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTDOC")
            || key == "RUSTFLAGS"
            || key == "RUSTUP_TOOLCHAIN"
        {
            cmd.env_remove(key.as_ref());
        }
    }
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("cannot run rustup to build the eBPF programs ({e}): run scripts/setup.sh")
    });
    assert!(
        status.success(),
        "building ebpf/sluice-ebpf with {toolchain} failed ({status}); scripts/setup.sh \
         installs {toolchain} with rust-src and bpf-linker (AYA_BUILD_SKIP=1 skips this, \
         for documentation builds only)"
    );
    let built = target_dir.join("bpfel-unknown-none/release/sluice-ebpf");
    std::fs::copy(&built, &object)
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", built.display()));
}

/// The `channel` of a `rust-toolchain.toml`.
fn pinned_toolchain(path: &Path) -> String {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("channel"))
        .filter_map(|l| l.trim().strip_prefix('='))
        .map(|l| l.trim().trim_matches('"').to_string())
        .next()
        .unwrap_or_else(|| panic!("no channel in {}", path.display()))
}
