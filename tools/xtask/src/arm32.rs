//! ARMv7-A: xenith in HYP mode on `qemu-system-arm -M virt,virtualization=on,highmem=off -cpu
//! cortex-a15` (GICv2). Builds the hypervisor for `armv7a-none-eabi` as a raw image with a
//! zImage header, and boots it (`cargo xtask run --arch arm32`).
//!
//! highmem=off: with QEMU's default 32-bit Xen and Linux spin on PCIe config space above 4 GiB;
//! off, the machine has the Snow's layout (everything below 4 GiB).

use crate::env::{self, Result};
use crate::qemu::{self, Boot};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "armv7a-none-eabi";

/// Where `-device guest-loader` puts dom0's kernel and initrd on the 32-bit machine (QEMU puts
/// its DTB at RAM base + 128 MiB = 0x48000000, below both).
pub const DOM0_KERNEL_ADDR: u64 = 0x4900_0000;
pub const DOM0_INITRD_ADDR: u64 = 0x4b20_0000;

pub struct Images {
    /// Raw image (zImage header) of the hypervisor.
    pub hypervisor: PathBuf,
    /// The arm32 test guest (a zImage), when it builds for this target.
    pub test_guest: Option<PathBuf>,
}

fn cargo_build(package: &str, bin: &str) -> Result<PathBuf> {
    env::run(
        Command::new("cargo")
            .args(["build", "--release", "-p", package, "--bin", bin, "--target", TARGET])
            .current_dir(env::root()),
    )?;
    Ok(env::target_dir().join(TARGET).join("release").join(bin))
}

/// The hypervisor (and the test guest, if `with_guest`) for ARMv7-A, flattened under
/// target/xenith/.
pub fn build(with_guest: bool) -> Result<Images> {
    let hyp_elf = cargo_build("xenith-hypervisor", "xenith")?;
    let dir = env::images_dir();
    let hypervisor = flatten_to(&hyp_elf, &dir.join("xenith-arm32.zImage"))?;
    let test_guest = if with_guest {
        let elf = cargo_build("test-guest", "test-guest")?;
        let bytes = std::fs::read(&elf).map_err(|e| format!("{}: {e}", elf.display()))?;
        let image = relocatable_zimage(&bytes).map_err(|e| format!("{}: {e}", elf.display()))?;
        let out = dir.join("test-guest-arm32.zImage");
        std::fs::write(&out, image).map_err(|e| format!("{}: {e}", out.display()))?;
        Some(out)
    } else {
        None
    };
    Ok(Images { hypervisor, test_guest })
}

fn flatten_to(elf_path: &Path, out: &Path) -> Result<PathBuf> {
    let bytes = std::fs::read(elf_path).map_err(|e| format!("{}: {e}", elf_path.display()))?;
    let (_, image) = flatten32(&bytes).map_err(|e| format!("{}: {e}", elf_path.display()))?;
    std::fs::create_dir_all(env::images_dir()).map_err(|e| e.to_string())?;
    std::fs::write(out, image).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(out.to_path_buf())
}

fn u16_at(b: &[u8], o: usize) -> std::result::Result<u16, String> {
    b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]])).ok_or_else(|| format!("truncated at {o:#x}"))
}
fn u32_at(b: &[u8], o: usize) -> std::result::Result<u32, String> {
    b.get(o..o + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]])).ok_or_else(|| format!("truncated at {o:#x}"))
}

/// A little-endian ELF32 as the raw image a loader copies: every PT_LOAD segment's file bytes
/// laid out from the lowest physical address (BSS is the image's own to clear). Returns that
/// address and the bytes.
pub fn flatten32(elf: &[u8]) -> std::result::Result<(u32, Vec<u8>), String> {
    if elf.get(0..4) != Some(b"\x7fELF") || elf.get(4) != Some(&1) || elf.get(5) != Some(&1) {
        return Err("not a little-endian ELF32 file".into());
    }
    let phoff = u32_at(elf, 0x1c)? as usize;
    let phentsize = u16_at(elf, 0x2a)? as usize;
    let phnum = u16_at(elf, 0x2c)? as usize;
    let mut segs = Vec::new();
    for i in 0..phnum {
        let p = phoff + i * phentsize;
        if u32_at(elf, p)? != 1 {
            continue; // not PT_LOAD
        }
        let offset = u32_at(elf, p + 0x04)? as usize;
        let paddr = u32_at(elf, p + 0x0c)?;
        let filesz = u32_at(elf, p + 0x10)? as usize;
        if filesz == 0 {
            continue;
        }
        let data = elf.get(offset..offset + filesz).ok_or_else(|| format!("segment {i} runs past the file"))?;
        segs.push((paddr, data));
    }
    let base = segs.iter().map(|s| s.0).min().ok_or("no loadable segment")?;
    let end = segs.iter().map(|s| s.0 as u64 + s.1.len() as u64).max().unwrap_or(u64::from(base));
    let mut out = vec![0u8; (end - u64::from(base)) as usize];
    for (pa, data) in segs {
        let at = (pa - base) as usize;
        out[at..at + data.len()].copy_from_slice(data);
    }
    Ok((base, out))
}

/// ELF relocation types the test guest's image can hold (ARM ELF ABI numbers).
const R_ARM_NONE: u32 = 0;
const R_ARM_ABS32: u32 = 2;
const R_ARM_REL32: u32 = 3;
const R_ARM_CALL: u32 = 28;
const R_ARM_JUMP24: u32 = 29;
const R_ARM_TARGET1: u32 = 38;
const R_ARM_PREL31: u32 = 42;
const R_ARM_MOVW_ABS_NC: u32 = 43;
const R_ARM_MOVT_ABS: u32 = 44;
const R_ARM_ALU_PC_G0_NC: u32 = 57;
const R_ARM_ALU_PC_G0: u32 = 58;

/// The test guest as a zImage a loader may put anywhere 64 KiB-aligned (Xen and xenith align
/// a zImage to 2 MiB): the guest is linked at 0 with its static relocations kept
/// (`--emit-relocs`), and this turns those of the loaded sections into a table the entry code
/// applies: the words holding an absolute address (R_ARM_ABS32) get the load address added,
/// the MOVT instructions (R_ARM_MOVT_ABS) its upper half; their MOVW partners hold the lower
/// half, which a 64 KiB-aligned slide leaves alone; PC-relative ones need nothing. The image
/// is the loaded bytes, zeros up to the header's end word (the BSS), then the table
/// (`[n_abs, n_movt, abs offsets.., movt offsets..]`, u32 each), and the end word is
/// rewritten to cover it.
pub fn relocatable_zimage(elf: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let (base, mut image) = flatten32(elf)?;
    if base != 0 {
        return Err(format!("the test guest must be linked at 0, not {base:#x}"));
    }
    if image.len() < 0x30 || u32_at(&image, 0x24)? != 0x016f_2818 {
        return Err("no zImage header at the start of the image".into());
    }
    let end = u32_at(&image, 0x2c)? as usize;
    if end < image.len() || end % 4 != 0 {
        return Err(format!("zImage end word {end:#x} is below the loaded bytes ({:#x}) or unaligned", image.len()));
    }
    image.resize(end, 0);
    let shoff = u32_at(elf, 0x20)? as usize;
    let shentsize = u16_at(elf, 0x2e)? as usize;
    let shnum = u16_at(elf, 0x30)? as usize;
    let section = |i: usize| -> std::result::Result<[u32; 10], String> {
        let o = shoff + i * shentsize;
        let mut f = [0u32; 10];
        for (k, v) in f.iter_mut().enumerate() {
            *v = u32_at(elf, o + 4 * k)?;
        }
        Ok(f)
    };
    let (mut abs, mut movt) = (Vec::new(), Vec::new());
    for i in 0..shnum {
        let sh = section(i)?;
        const SHT_REL: u32 = 9;
        const SHF_ALLOC: u32 = 2;
        if sh[1] != SHT_REL {
            continue;
        }
        let target = section(sh[7] as usize)?;
        if target[2] & SHF_ALLOC == 0 {
            continue; // debug information: not loaded
        }
        let (off, size) = (sh[4] as usize, sh[5] as usize);
        for r in (off..off + size).step_by(8) {
            let (at, info) = (u32_at(elf, r)?, u32_at(elf, r + 4)?);
            match info & 0xff {
                R_ARM_ABS32 | R_ARM_TARGET1 => abs.push(at),
                R_ARM_MOVT_ABS => movt.push(at),
                R_ARM_NONE | R_ARM_MOVW_ABS_NC | R_ARM_REL32 | R_ARM_CALL | R_ARM_JUMP24 | R_ARM_PREL31 | R_ARM_ALU_PC_G0_NC | R_ARM_ALU_PC_G0 => {}
                t => return Err(format!("relocation type {t} at {at:#x}: the entry code cannot apply it")),
            }
        }
    }
    if let Some(bad) = abs.iter().chain(&movt).find(|&&a| a as usize + 4 > end || a % 4 != 0) {
        return Err(format!("a relocation at {bad:#x} lies outside the image"));
    }
    image.extend_from_slice(&(abs.len() as u32).to_le_bytes());
    image.extend_from_slice(&(movt.len() as u32).to_le_bytes());
    for a in abs.iter().chain(&movt) {
        image.extend_from_slice(&a.to_le_bytes());
    }
    let total = image.len() as u32;
    image[0x2c..0x30].copy_from_slice(&total.to_le_bytes());
    Ok(image)
}

/// The QEMU command line for one arm32 boot described by `b` (its cpu field is ignored: the
/// machine is a Cortex-A15).
pub fn command(b: &Boot) -> Command {
    let mut c = Command::new("qemu-system-arm");
    c.args(["-M", "virt,virtualization=on,highmem=off", "-cpu", "cortex-a15"])
        .args(["-smp", &b.smp.to_string(), "-m", &b.mem])
        .args(["-nographic", "-no-reboot", "-monitor", "none", "-serial", "stdio"])
        .arg("-kernel")
        .arg(&b.hypervisor);
    if let Some(d) = &b.dtb {
        c.arg("-dtb").arg(d);
    }
    if !b.cmdline.is_empty() {
        c.args(["-append", &b.cmdline]);
    }
    if let Some(k) = &b.dom0 {
        c.args(["-device", &format!("guest-loader,addr={DOM0_KERNEL_ADDR:#x},kernel={},bootargs={}", k.display(), b.dom0_args.replace(',', ",,"))]);
    }
    if let Some(i) = &b.initrd {
        c.args(["-device", &format!("guest-loader,addr={DOM0_INITRD_ADDR:#x},initrd={}", i.display())]);
    }
    if b.icount {
        c.args(["-icount", "shift=0,sleep=off"]);
    }
    c.args(&b.extra);
    c
}

/// Boot `b` on the arm32 machine.
pub fn boot(b: &Boot) -> Result<qemu::Outcome> {
    b.run_command(command(b))
}

/// `cargo xtask run --arch arm32 [--dom0 PATH|none] [--dom0-args A] [--initrd P] [--append A] [-- QEMU-ARGS]`.
pub fn run(args: &[String]) -> Result<()> {
    let mut dom0: Option<Option<PathBuf>> = None;
    let mut b = Boot::new(PathBuf::new());
    b.echo = true;
    b.timeout = std::time::Duration::from_secs(24 * 3600);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--dom0" => {
                dom0 = Some(match value()?.as_str() {
                    "none" => None,
                    p => Some(PathBuf::from(p)),
                })
            }
            "--dom0-args" => b.dom0_args = value()?,
            "--initrd" => b.initrd = Some(PathBuf::from(value()?)),
            "--append" => b.cmdline = value()?,
            "--" => {
                b.extra.extend(it.by_ref().cloned());
                break;
            }
            other => return Err(format!("unknown option `{other}` for run --arch arm32")),
        }
    }
    let images = build(dom0.is_none())?;
    b.hypervisor = images.hypervisor;
    b.dom0 = match dom0 {
        Some(d) => d,
        None => images.test_guest,
    };
    if let Some(d) = &b.dom0 {
        if !d.exists() {
            return Err(format!("dom0 kernel {} does not exist", d.display()));
        }
    }
    let out = boot(&b)?;
    if let Some(lines) = out.trouble() {
        return Err(format!("the console reports trouble:\n{}", lines.join("\n")));
    }
    match out.exit_code {
        Some(0) => Ok(()),
        other => Err(format!("QEMU ended with {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF32 with two PT_LOAD segments (one of them BSS-only).
    fn elf32(segs: &[(u32, &[u8], u32)]) -> Vec<u8> {
        let phoff = 52usize;
        let data_at = phoff + 32 * segs.len();
        let mut e = vec![0u8; data_at];
        e[0..4].copy_from_slice(b"\x7fELF");
        e[4] = 1;
        e[5] = 1;
        e[0x1c..0x20].copy_from_slice(&(phoff as u32).to_le_bytes());
        e[0x2a..0x2c].copy_from_slice(&32u16.to_le_bytes());
        e[0x2c..0x2e].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        for (i, (pa, bytes, memsz)) in segs.iter().enumerate() {
            let off = e.len() as u32;
            let p = phoff + 32 * i;
            e[p..p + 4].copy_from_slice(&1u32.to_le_bytes());
            e[p + 4..p + 8].copy_from_slice(&off.to_le_bytes());
            e[p + 0xc..p + 0x10].copy_from_slice(&pa.to_le_bytes());
            e[p + 0x10..p + 0x14].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
            e[p + 0x14..p + 0x18].copy_from_slice(&memsz.to_le_bytes());
            e.extend_from_slice(bytes);
        }
        e
    }

    #[test]
    fn segments_are_laid_out_from_the_lowest_address() {
        let e = elf32(&[(0x4001_0004, b"cd", 2), (0x4001_0000, b"ab", 2), (0x4002_0000, b"", 0x1000)]);
        let (base, img) = flatten32(&e).unwrap();
        assert_eq!(base, 0x4001_0000);
        assert_eq!(img, b"ab\0\0cd");
    }

    #[test]
    fn elf64_is_refused() {
        let mut e = elf32(&[(0, b"x", 1)]);
        e[4] = 2;
        assert!(flatten32(&e).is_err());
    }
}
