//! Building the bare-metal images: the hypervisor for `aarch64-unknown-none-softfloat` (no
//! FP/SIMD at EL2), the test guest for `aarch64-unknown-none`, both flattened to raw Images.

use crate::env::{self, Result};
use crate::elf;
use std::path::PathBuf;
use std::process::Command;

pub const HYP_TARGET: &str = "aarch64-unknown-none-softfloat";
pub const GUEST_TARGET: &str = "aarch64-unknown-none";

pub struct Images {
    /// Raw arm64 Image of the hypervisor.
    pub hypervisor: PathBuf,
    /// The hypervisor's ELF (QEMU boots an ELF with x0 = 0: the "no DTB" test).
    pub hypervisor_elf: PathBuf,
    pub test_guest: PathBuf,
    pub test_guest_elf: PathBuf,
}

fn cargo_build(package: &str, bin: &str, target: &str) -> Result<PathBuf> {
    env::run(
        Command::new("cargo")
            .args(["build", "--release", "-p", package, "--bin", bin, "--target", target])
            .current_dir(env::root()),
    )?;
    Ok(env::target_dir().join(target).join("release").join(bin))
}

fn flatten(elf_path: &PathBuf, out: PathBuf) -> Result<PathBuf> {
    let bytes = std::fs::read(elf_path).map_err(|e| format!("{}: {e}", elf_path.display()))?;
    let (_, image) = elf::flatten(&bytes).map_err(|e| format!("{}: {e}", elf_path.display()))?;
    std::fs::create_dir_all(env::images_dir()).map_err(|e| e.to_string())?;
    std::fs::write(&out, image).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(out)
}

pub fn all() -> Result<Images> {
    let hyp_elf = cargo_build("xenith-hypervisor", "xenith", HYP_TARGET)?;
    let guest_elf = cargo_build("test-guest", "test-guest", GUEST_TARGET)?;
    let dir = env::images_dir();
    Ok(Images {
        hypervisor: flatten(&hyp_elf, dir.join("xenith.Image"))?,
        hypervisor_elf: hyp_elf,
        test_guest: flatten(&guest_elf, dir.join("test-guest.Image"))?,
        test_guest_elf: guest_elf,
    })
}
