//! Host-test fixtures: real device trees, produced by QEMU or taken from Debian packages.
//! Cached under .cache/fixtures (never committed).

use crate::env::{self, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// QEMU virt (AArch64) as xenith runs on it; `with_module` adds a guest-loader module node.
fn dump_qemu_virt(out: &Path, with_module: bool) -> Result<()> {
    dump_qemu_virt_gic(out, with_module, 3)
}

/// The same with GIC version `gic` (`gic-version=`).
fn dump_qemu_virt_gic(out: &Path, with_module: bool, gic: u8) -> Result<()> {
    let mut c = Command::new("qemu-system-aarch64");
    c.args(["-M", &format!("virt,virtualization=on,gic-version={gic},iommu=smmuv3,dumpdtb={}", out.display())])
        .args(["-cpu", "cortex-a57", "-smp", "2", "-m", "2G", "-nographic"]);
    if with_module {
        // Any existing file will do: only the module node's reg/bootargs matter.
        let any = env::root().join("rust-toolchain.toml");
        c.args(["-device", &format!("guest-loader,addr=0x49000000,kernel={},bootargs=console=hvc0", any.display())]);
    }
    env::run(c.stdout(std::process::Stdio::null()))
}

fn ensure(path: PathBuf, make: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    if !path.exists() {
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new("."))).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("partial");
        make(&tmp)?;
        std::fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
        eprintln!("xtask: fixture {}", path.display());
    }
    Ok(path)
}

/// The Chromebook Snow's DTB from Debian's armhf LPAE kernel package.
fn snow_dtb(out: &Path) -> Result<()> {
    let kernel_pkg = env::debian_depends("linux-image-armmp-lpae", "armhf")?;
    let root = env::debian_package(&kernel_pkg, "armhf")?;
    let lib = root.join("usr/lib");
    let dir = std::fs::read_dir(&lib)
        .map_err(|e| format!("{}: {e}", lib.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("linux-image-")))
        .ok_or_else(|| format!("{kernel_pkg} has no usr/lib/linux-image-*"))?;
    let dtb = dir.join("exynos5250-snow.dtb");
    std::fs::copy(&dtb, out).map_err(|e| format!("{}: {e}", dtb.display()))?;
    Ok(())
}

/// QEMU virt's DTB with the GIC's `reg` cut to 5 cells (not a whole number of entries): a
/// malformed DTB that QEMU still loads with `-dtb`.
fn malformed_qemu_virt(out: &Path) -> Result<()> {
    env::ensure_tool("dtc", "device-tree-compiler")?;
    let good = env::fixtures_dir().join("qemu-virt-aarch64.dtb");
    let dts = env::output(Command::new("dtc").args(["-q", "-I", "dtb", "-O", "dts"]).arg(&good))?;
    let start = dts.find("intc@8000000 {").ok_or("no intc@8000000 node in QEMU virt's DT")?;
    let reg = start + dts[start..].find("reg = <").ok_or("the GIC node has no reg")?;
    let end = reg + dts[reg..].find(">;").ok_or("unterminated reg")?;
    let cells: Vec<&str> = dts[reg + "reg = <".len()..end].split_whitespace().collect();
    let bad = format!("{}reg = <{}>;{}", &dts[..reg], cells[..5.min(cells.len())].join(" "), &dts[end + 2..]);
    let src = out.with_extension("dts");
    std::fs::write(&src, bad).map_err(|e| e.to_string())?;
    env::run(Command::new("dtc").args(["-q", "-I", "dts", "-O", "dtb", "-o"]).arg(out).arg(&src))
}

pub fn all() -> Result<()> {
    let dir = env::fixtures_dir();
    ensure(dir.join("qemu-virt-aarch64.dtb"), |p| dump_qemu_virt(p, false))?;
    ensure(dir.join("qemu-virt-aarch64-bad-gic-reg.dtb"), malformed_qemu_virt)?;
    ensure(dir.join("qemu-virt-aarch64-dom0.dtb"), |p| dump_qemu_virt(p, true))?;
    ensure(dir.join("qemu-virt-aarch64-gicv2-dom0.dtb"), |p| dump_qemu_virt_gic(p, true, 2))?;
    snow()?;
    Ok(())
}

/// The Snow's DTB from Debian (`fixtures_dir()/exynos5250-snow.dtb`), fetched when missing.
pub fn snow() -> Result<PathBuf> {
    ensure(env::fixtures_dir().join("exynos5250-snow.dtb"), snow_dtb)
}

/// Debian's Xen 4.17 for arm64 (the reference hypervisor), as a raw Image.
#[allow(dead_code)]
pub fn xen_4_17() -> Result<PathBuf> {
    ensure(env::fixtures_dir().join("xen-4.17-arm64"), |p| {
        let root = env::debian_package("xen-hypervisor-4.17-arm64", "arm64")?;
        std::fs::copy(root.join("boot/xen-4.17-arm64"), p).map(|_| ()).map_err(|e| e.to_string())
    })
}
