//! Test-only: where the real device trees (and other fetched binaries) live. `$XENITH_FIXTURES`, else
//! `<workspace>/.cache/fixtures/`; `cargo xtask fixtures` creates them, and a test that finds one
//! missing runs it (once per test process), so plain `cargo test` works in a fresh clone.

extern crate std;

use std::path::PathBuf;
use std::vec::Vec;

/// The fixtures directory.
pub fn dir() -> PathBuf {
    match std::env::var_os("XENITH_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(".cache")
            .join("fixtures"),
    }
}

/// Run `cargo xtask fixtures` (QEMU dumps its DTBs; the Snow's comes from Debian's armhf
/// kernel package), once. Its own target directory: the `cargo test` that runs this test may
/// hold the workspace's build lock.
fn make_fixtures() {
    static MADE: std::sync::Once = std::sync::Once::new();
    MADE.call_once(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        std::eprintln!("fixtures missing: running `cargo xtask fixtures`");
        let status = std::process::Command::new(cargo)
            .current_dir(&root)
            .args(["run", "--quiet", "-p", "xtask", "--target-dir"])
            .arg(root.join("target").join("fixtures-xtask"))
            .args(["--", "fixtures"])
            .status();
        if !status.as_ref().is_ok_and(|s| s.success()) {
            std::eprintln!("`cargo xtask fixtures` failed: {status:?}");
        }
    });
}

/// A fixture's bytes, made first if missing; fails the test when it cannot be had.
pub fn load(name: &str) -> Vec<u8> {
    let path = dir().join(name);
    if !path.exists() && std::env::var_os("XENITH_FIXTURES").is_none() {
        make_fixtures();
    }
    match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => panic!(
            "missing fixture {name} ({}: {e}): run `cargo xtask fixtures`",
            path.display()
        ),
    }
}

/// A fixture that only some tests use opportunistically.
pub fn optional(name: &str) -> Option<Vec<u8>> {
    std::fs::read(dir().join(name)).ok()
}

pub const QEMU_VIRT: &str = "qemu-virt-aarch64.dtb";
pub const QEMU_VIRT_DOM0: &str = "qemu-virt-aarch64-dom0.dtb";
/// QEMU virt with `gic-version=2` and a guest-loader dom0 module.
pub const QEMU_VIRT_GICV2_DOM0: &str = "qemu-virt-aarch64-gicv2-dom0.dtb";
pub const SNOW: &str = "exynos5250-snow.dtb";
