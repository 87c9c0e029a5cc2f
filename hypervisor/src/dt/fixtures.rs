//! Test-only: where the real device trees (and other fetched binaries) live. `$XENITH_FIXTURES`, else
//! `<workspace>/.cache/fixtures/`; `cargo xtask fixtures` creates them.

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

/// A fixture's bytes; fails the test when it is missing.
pub fn load(name: &str) -> Vec<u8> {
    let path = dir().join(name);
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
pub const SNOW: &str = "exynos5250-snow.dtb";
