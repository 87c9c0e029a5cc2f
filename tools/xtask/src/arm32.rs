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
/// The CPU of the ARMv7 machine; a `Boot` with it runs on `qemu-system-arm` (`command`).
pub const CPU: &str = "cortex-a15";
/// dom0's vCPUs in the Linux dom0 run and system test (one per QEMU CPU).
pub const LINUX_VCPUS: usize = 2;

/// Where `-device guest-loader` puts dom0's kernel and initrd on the 32-bit machine (QEMU puts
/// its DTB at RAM base + 128 MiB = 0x48000000, below both).
pub const DOM0_KERNEL_ADDR: u64 = 0x4900_0000;
pub const DOM0_INITRD_ADDR: u64 = 0x4b20_0000;

pub struct Images {
    /// Raw image (zImage header) of the hypervisor.
    pub hypervisor: PathBuf,
    /// The hypervisor's ELF (its symbols place the module bundle: `snow.rs`).
    pub hypervisor_elf: PathBuf,
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
    Ok(Images { hypervisor, hypervisor_elf: hyp_elf, test_guest })
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

/// The values of the named symbols of a little-endian ELF32's symbol table.
pub fn symbols32(elf: &[u8], names: &[&str]) -> std::result::Result<Vec<u32>, String> {
    if elf.get(0..4) != Some(b"\x7fELF") || elf.get(4) != Some(&1) || elf.get(5) != Some(&1) {
        return Err("not a little-endian ELF32 file".into());
    }
    let shoff = u32_at(elf, 0x20)? as usize;
    let shentsize = u16_at(elf, 0x2e)? as usize;
    let shnum = u16_at(elf, 0x30)? as usize;
    let section = |i: usize| shoff + i * shentsize;
    let symtab = (0..shnum).find(|&i| u32_at(elf, section(i) + 4) == Ok(2)).ok_or("no symbol table")?;
    let (off, size) = (u32_at(elf, section(symtab) + 16)? as usize, u32_at(elf, section(symtab) + 20)? as usize);
    let strtab = u32_at(elf, section(symtab) + 24)? as usize;
    let stroff = u32_at(elf, section(strtab) + 16)? as usize;
    let mut out = vec![None; names.len()];
    for sym in (off..off + size).step_by(16) {
        let name_at = stroff + u32_at(elf, sym)? as usize;
        let name = elf.get(name_at..).and_then(|b| b.split(|&c| c == 0).next()).ok_or("symbol name outside the file")?;
        if let Some(i) = names.iter().position(|n| n.as_bytes() == name) {
            out[i] = Some(u32_at(elf, sym + 4)?);
        }
    }
    names.iter().zip(out).map(|(n, v)| v.ok_or_else(|| format!("no symbol `{n}`"))).collect()
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
    c.args(["-M", if b.secure { "virt,secure=on,virtualization=on,highmem=off" } else { "virt,virtualization=on,highmem=off" }, "-cpu", CPU])
        .args(["-smp", &b.smp.to_string(), "-m", &b.mem])
        .args(["-nographic", "-no-reboot", "-monitor", "none", "-serial", "stdio"]);
    if b.secure && b.bios {
        // Firmware in flash (`secure_pen`): every CPU starts there in Secure SVC; QEMU has no
        // PSCI then. CPU 0 enters the hypervisor, the others wait in its pen.
        let link = link_address(&b.hypervisor).unwrap_or(0);
        c.args(["-device", &format!("loader,file={},addr={link:#x},force-raw=on", b.hypervisor.display())])
            .arg("-bios")
            .arg(secure_pen_path(&b.hypervisor));
    } else if b.secure {
        // No -kernel: QEMU leaves the CPU in its reset state (Secure SVC) and starts it at
        // the stub, which enters the hypervisor as a firmware would (`secure_stub`).
        let link = link_address(&b.hypervisor).unwrap_or(0);
        c.args(["-device", &format!("loader,file={},addr={link:#x},force-raw=on", b.hypervisor.display())])
            .args(["-device", &format!("loader,file={},addr={SECURE_STUB_ADDR:#x},force-raw=on", secure_stub_path(&b.hypervisor).display())])
            .args(["-device", &format!("loader,addr={SECURE_STUB_ADDR:#x},cpu-num=0")]);
    } else if b.bios {
        c.arg("-bios").arg(&b.hypervisor);
    } else {
        c.arg("-kernel").arg(&b.hypervisor);
    }
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

/// Where the Secure-entry boot's firmware stub runs: below the hypervisor (0x40010000), above
/// the DTB QEMU puts at RAM base for a bare boot (which must end below it).
pub const SECURE_STUB_ADDR: u64 = 0x4000_f000;
/// QEMU puts `-dtb` at RAM base for a boot without `-kernel`.
const RAM_BASE: u64 = 0x4000_0000;

/// The hypervisor image's link address: its zImage header's start word.
fn link_address(image: &Path) -> Option<u64> {
    let head = std::fs::read(image).ok()?;
    (u32_at(&head, 0x24).ok()? == 0x016f_2818).then_some(())?;
    u32_at(&head, 0x28).ok().map(u64::from)
}

fn secure_stub_path(hypervisor: &Path) -> PathBuf {
    hypervisor.with_file_name("secure-entry-stub.bin")
}

/// The firmware stub of the Secure-entry boot, as ARM instructions: r0 = 0, r1 = ~0 (no
/// machine type), r2 = the DTB at RAM base, then a jump to the hypervisor's entry, all in the
/// mode the CPU resets in (Secure SVC, MMU off) — what the Snow's firmware does.
pub fn secure_stub(entry: u32, dtb: u32) -> Vec<u8> {
    let words = [
        0xe3a0_0000, // mov r0, #0
        0xe3e0_1000, // mvn r1, #0
        0xe59f_2004, // ldr r2, [pc, #4]  (the word at +0x14)
        0xe59f_f004, // ldr pc, [pc, #4]  (the word at +0x18)
        0xeaff_fffe, // b .
        dtb,
        entry,
    ];
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// QEMU's DT for the arm32 `machine` (`-M` options) with `b`'s CPUs and memory and the
/// `extra` arguments (devices that add DT nodes, firmware), written to `out`.
pub fn dump_dtb(machine: &str, b: &Boot, out: &Path, extra: &[&str]) -> Result<()> {
    env::run(
        Command::new("qemu-system-arm")
            .args(["-M", &format!("{machine},dumpdtb={}", out.display()), "-cpu", CPU])
            .args(["-smp", &b.smp.to_string(), "-m", &b.mem, "-nographic"])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )
}

fn secure_pen_path(hypervisor: &Path) -> PathBuf {
    hypervisor.with_file_name("secure-smp-pen.bin")
}

/// Where the pen's secondaries wait for their entry point (the DT's `cpu-release-addr`): RAM
/// below the hypervisor, above the DTB QEMU puts at RAM base.
pub const PEN_MAILBOX: u64 = 0x4000_f000;

/// Firmware for flash at 0, as ARM instructions, that leaves every CPU in Secure SVC mode (as
/// the Snow's firmware leaves both cores): CPU 0 (MPIDR.Aff0 = 0) gets r0 = 0, r1 = ~0, r2 =
/// the DTB and jumps to the hypervisor's entry; the others wait (WFE) until the word at
/// `mailbox` is non-zero and jump there, a spin-table pen.
pub fn secure_pen(entry: u32, dtb: u32, mailbox: u32) -> Vec<u8> {
    let words = [
        0xee10_3fb0, // 0x00 mrc p15, 0, r3, c0, c0, 5  (MPIDR)
        0xe213_30ff, // 0x04 ands r3, r3, #0xff
        0x1a00_0003, // 0x08 bne 0x1c
        0xe3a0_0000, // 0x0c mov r0, #0
        0xe3e0_1000, // 0x10 mvn r1, #0
        0xe59f_2018, // 0x14 ldr r2, [pc, #0x18]  (0x34: dtb)
        0xe59f_f018, // 0x18 ldr pc, [pc, #0x18]  (0x38: entry)
        0xe59f_4018, // 0x1c ldr r4, [pc, #0x18]  (0x3c: mailbox)
        0xe320_f002, // 0x20 wfe
        0xe594_0000, // 0x24 ldr r0, [r4]
        0xe350_0000, // 0x28 cmp r0, #0
        0x0aff_fffb, // 0x2c beq 0x20
        0xe12f_ff10, // 0x30 bx r0
        dtb,
        entry,
        mailbox,
    ];
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// The Secure-entry SMP system test: firmware in flash keeps both CPUs in Secure SVC mode
/// (`secure_pen`), QEMU virt `secure=on` (no PSCI), the DT names CPU 1 a spin-table CPU whose
/// pen waits at [`PEN_MAILBOX`]; Debian's armhf Linux as a 2-vCPU dom0. CPU 1, released into
/// `xenith_sysram_secondary_entry` still in Secure SVC mode, must switch itself to non-secure
/// HYP mode as the boot CPU did.
pub fn secure_smp_systest_boot() -> Boot {
    let mut b = Boot::new(PathBuf::from("/nonexistent/xenith-arm32-unavailable"));
    b.cpu = CPU.into();
    b.secure = true;
    b.bios = true;
    b.smp = 2;
    b.stop_at = Some(SECURE_PARKED.into());
    b.timeout = std::time::Duration::from_secs(150);
    b.dom0_args = crate::linux::DOM0_ARGS.into();
    let prepared = (|| -> Result<()> {
        let images = build(false)?;
        let linux = linux_fixtures()?;
        let entry = link_address(&images.hypervisor).ok_or("the arm32 hypervisor has no zImage header")?;
        std::fs::write(secure_pen_path(&images.hypervisor), secure_pen(entry as u32, RAM_BASE as u32, PEN_MAILBOX as u32)).map_err(|e| e.to_string())?;
        let dir = env::images_dir();
        let (full, edited) = (dir.join("qemu-virt-arm32-secure-smp.dtb"), dir.join("qemu-virt-arm32-secure-smp-pen.dtb"));
        // The same machine (firmware in flash: no PSCI node) and dom0 modules as the boot.
        let pen = secure_pen_path(&images.hypervisor).display().to_string();
        let kernel = format!("guest-loader,addr={DOM0_KERNEL_ADDR:#x},kernel={},bootargs={}", linux.kernel.display(), b.dom0_args.replace(',', ",,"));
        let initrd = format!("guest-loader,addr={DOM0_INITRD_ADDR:#x},initrd={}", linux.initrd.display());
        dump_dtb("virt,secure=on,virtualization=on,highmem=off", &b, &full, &["-bios", &pen, "-device", &kernel, "-device", &initrd])?;
        env::ensure_tool("dtc", "device-tree-compiler")?;
        let dts = env::output(Command::new("dtc").args(["-q", "-I", "dtb", "-O", "dts"]).arg(&full))?;
        if dts.contains("psci") {
            return Err("QEMU's DT for the machine with firmware still has a PSCI node".into());
        }
        // QEMU takes no -append without -kernel: xenith's command line goes in /chosen.
        let pen = format!(
            "\n&{{/cpus/cpu@1}} {{\n\tenable-method = \"spin-table\";\n\tcpu-release-addr = <0x0 {PEN_MAILBOX:#x}>;\n}};\n&{{/chosen}} {{\n\tbootargs = \"dom0_max_vcpus={LINUX_VCPUS}\";\n}};\n"
        );
        let dts_path = dir.join("qemu-virt-arm32-secure-smp-pen.dts");
        std::fs::write(&dts_path, format!("{dts}{pen}")).map_err(|e| e.to_string())?;
        env::run(Command::new("dtc").args(["-q", "-I", "dts", "-O", "dtb", "-o"]).arg(&edited).arg(&dts_path))?;
        let size = std::fs::metadata(&edited).map_err(|e| e.to_string())?.len();
        if RAM_BASE + size + 10_000 > PEN_MAILBOX {
            return Err(format!("QEMU's DT ({size} bytes) does not fit below the pen's mailbox at {PEN_MAILBOX:#x}"));
        }
        b.hypervisor = images.hypervisor;
        b.dom0 = Some(linux.kernel);
        b.initrd = Some(linux.initrd);
        b.dtb = Some(edited);
        Ok(())
    })();
    if let Err(e) = prepared {
        eprintln!("xtask: arm32 Secure-entry SMP boot: {e}");
    }
    b
}

/// Both CPUs came through Secure SVC mode: the boot CPU and CPU 1 (released from the pen) each
/// switched to non-secure HYP mode; Linux dom0 ran on both and powered off.
pub fn secure_smp_systest_check(o: &qemu::Outcome) -> std::result::Result<(), String> {
    for needle in ["entered in Secure SVC mode: now non-secure HYP mode, xenith's monitor at MVBAR", "CPU 1: entered in Secure SVC mode: now non-secure HYP mode", "d0: vCPU 1 up on CPU 1", SECURE_PARKED] {
        if !o.has(needle) {
            return Err(format!("expected output containing `{needle}`"));
        }
    }
    linux_systest_check(o)
}

/// The Secure-entry system test: QEMU virt with `secure=on` (a GIC with the Security
/// Extensions, QEMU's PSCI still answering SMC), the arm32 test guest as dom0 on one CPU. QEMU's
/// DT for this machine (dumped with the dom0 module node, recompiled by dtc to its packed size so
/// that it fits below the stub) goes to RAM base.
pub fn secure_systest_boot() -> Boot {
    let mut b = Boot::new(PathBuf::from("/nonexistent/xenith-arm32-unavailable"));
    b.cpu = CPU.into();
    b.secure = true;
    b.smp = 1;
    // QEMU's virt machine with secure=on has no PSCI (its DT has no psci node): xenith's power
    // off reaches its own monitor, which answers NOT_SUPPORTED, and the CPU parks.
    b.stop_at = Some(SECURE_PARKED.into());
    b.timeout = std::time::Duration::from_secs(90);
    let prepared = (|| -> Result<()> {
        let images = build(true)?;
        let guest = images.test_guest.ok_or("the arm32 test guest was not built")?;
        let entry = link_address(&images.hypervisor).ok_or("the arm32 hypervisor has no zImage header")?;
        std::fs::write(secure_stub_path(&images.hypervisor), secure_stub(entry as u32, RAM_BASE as u32)).map_err(|e| e.to_string())?;
        let dir = env::images_dir();
        let (full, packed) = (dir.join("qemu-virt-arm32-secure.dtb"), dir.join("qemu-virt-arm32-secure-packed.dtb"));
        // The same machine and dom0 module as the boot, stopped once it has written its DT.
        let kernel = format!("guest-loader,addr={DOM0_KERNEL_ADDR:#x},kernel={},bootargs={}", guest.display(), b.dom0_args.replace(',', ",,"));
        dump_dtb("virt,secure=on,virtualization=on,highmem=off", &b, &full, &["-device", &kernel])?;
        env::ensure_tool("dtc", "device-tree-compiler")?;
        env::run(Command::new("dtc").args(["-q", "-I", "dtb", "-O", "dtb", "-o"]).arg(&packed).arg(&full))?;
        let size = std::fs::metadata(&packed).map_err(|e| e.to_string())?.len();
        // QEMU grows a loaded DTB by 10000 bytes for its own edits.
        if RAM_BASE + size + 10_000 > SECURE_STUB_ADDR {
            return Err(format!("QEMU's packed DT ({size} bytes) does not fit below the stub at {SECURE_STUB_ADDR:#x}"));
        }
        b.hypervisor = images.hypervisor;
        b.dom0 = Some(guest);
        b.dtb = Some(packed);
        Ok(())
    })();
    if let Err(e) = prepared {
        eprintln!("xtask: arm32 Secure-entry boot: {e}");
    }
    b
}

/// What xenith prints when the firmware (here its own monitor) does not power the machine off.
const SECURE_PARKED: &str = "PSCI SYSTEM_OFF returned 0xffffffff): parking the CPU";

/// xenith switched itself from Secure SVC to non-secure HYP mode, and the arm32 test guest,
/// as its dom0, saw what it sees on the HYP-mode boot: every `case` value Xen 4.17 armhf's
/// (`expected-xen-4.17-armhf.txt`) or a listed deviation, as `cargo xtask conformance --arch
/// arm32` checks; then dom0's power off reached the monitor, which has no PSCI.
pub fn secure_systest_check(o: &qemu::Outcome) -> std::result::Result<(), String> {
    for needle in ["entered in Secure SVC mode: now non-secure HYP mode, xenith's monitor at MVBAR", "starting dom0", "hardware domain powered off", SECURE_PARKED] {
        if !o.has(needle) {
            return Err(format!("expected output containing `{needle}`"));
        }
    }
    if crate::systest::guest_summary(o).is_none() {
        return Err("the arm32 test guest did not reach its summary line".into());
    }
    let text = std::fs::read_to_string(expected_path()).map_err(|e| format!("{}: {e}", expected_path().display()))?;
    let expected = crate::conformance::parse_cases(&text);
    let devs = match std::fs::read_to_string(deviations_path()) {
        Ok(t) => crate::conformance::parse_deviations(&t)?,
        Err(_) => Default::default(),
    };
    let got = crate::conformance::parse_cases(&o.output);
    let (lines, verdicts) = crate::conformance::compare(&expected, &got, &devs);
    use crate::conformance::Verdict;
    let bad: Vec<&String> = lines.iter().zip(&verdicts).filter(|(_, v)| !matches!(v, Verdict::Match | Verdict::Deviation)).map(|(l, _)| l).collect();
    if !bad.is_empty() {
        return Err(format!("{} case(s) differ from Xen 4.17 armhf's after the Secure entry:\n{}", bad.len(), bad.iter().map(|l| l.as_str()).collect::<Vec<_>>().join("\n")));
    }
    if o.timed_out {
        return Err("xenith never parked after dom0 powered off".into());
    }
    Ok(())
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
                    "linux" => {
                        let l = linux_fixtures()?;
                        b.initrd = Some(l.initrd);
                        b.dom0_args = crate::linux::DOM0_ARGS.into();
                        if b.cmdline.is_empty() {
                            b.cmdline = format!("dom0_max_vcpus={LINUX_VCPUS}");
                        }
                        Some(l.kernel)
                    }
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

/// Debian's armhf kernel for LPAE machines (`linux-image-armmp-lpae`, a zImage: what a Snow
/// runs) and an initramfs of busybox-static:armhf with that kernel's Xen modules and the same
/// /init as the AArch64 dom0 (marker, /sys/hypervisor, /dev/xen, `poweroff -f`). Fetched and
/// cached on first use.
pub fn linux_fixtures() -> Result<crate::linux::Dom0Linux> {
    let kpkg = env::debian_depends("linux-image-armmp-lpae", "armhf")?;
    let kdir = env::debian_package(&kpkg, "armhf")?;
    let (kernel, version) = crate::linux::vmlinuz(&kdir, &kpkg)?;
    let head = std::fs::read(&kernel).map_err(|e| format!("{}: {e}", kernel.display()))?;
    if u32_at(&head, 0x24).ok() != Some(0x016f_2818) {
        return Err(format!("{} is not a zImage (no magic at 0x24)", kernel.display()));
    }
    let bb = env::debian_package("busybox-static", "armhf")?.join("bin/busybox");
    let busybox = std::fs::read(&bb).map_err(|e| format!("{}: {e}", bb.display()))?;
    let modules = crate::linux::modules(&kdir.join("lib/modules").join(&version))?;
    let out = env::cache_dir().join("linux");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let initrd = out.join(format!("initramfs-armhf-{version}.cpio"));
    let cpio = crate::linux::initramfs(&busybox, &modules, &crate::linux::Programs::default());
    std::fs::write(&initrd, cpio).map_err(|e| format!("{}: {e}", initrd.display()))?;
    Ok(crate::linux::Dom0Linux { kernel, initrd })
}

/// The system test's boot: Debian's armhf Linux as dom0 of xenith in HYP mode with 2 vCPUs.
pub fn linux_systest_boot() -> Boot {
    let mut b = Boot::new(PathBuf::from("/nonexistent/xenith-arm32-unavailable"));
    b.cpu = CPU.into();
    b.timeout = std::time::Duration::from_secs(120);
    b.cmdline = format!("dom0_max_vcpus={LINUX_VCPUS}");
    b.dom0_args = crate::linux::DOM0_ARGS.into();
    match build(false) {
        Ok(i) => b.hypervisor = i.hypervisor,
        Err(e) => eprintln!("xtask: arm32 hypervisor: {e}"),
    }
    match linux_fixtures() {
        Ok(l) => {
            b.dom0 = Some(l.kernel);
            b.initrd = Some(l.initrd);
        }
        Err(e) => {
            eprintln!("xtask: arm32 Linux dom0 fixtures: {e}");
            b.dom0 = Some(PathBuf::from("/nonexistent/linux-armhf-fixtures-unavailable"));
        }
    }
    b
}

/// dom0 reached its marker with both vCPUs online, saw Xen (/sys/hypervisor, /dev/xen's
/// evtchn, gntdev and privcmd), and its `poweroff -f` ended QEMU.
pub fn linux_systest_check(o: &qemu::Outcome) -> std::result::Result<(), String> {
    if !o.has(crate::linux::MARKER) {
        let last = o.output.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!("dom0 never printed {} (timed out: {}); last line: {last}", crate::linux::MARKER, o.timed_out));
    }
    let online = format!("cpus online: 0-{}", LINUX_VCPUS - 1);
    for needle in ["hypervisor type: xen", "evtchn", "gntdev", "privcmd", online.as_str(), "hardware domain powered off"] {
        if !o.has(needle) {
            return Err(format!("expected output containing `{needle}`"));
        }
    }
    if o.timed_out {
        return Err("QEMU did not end after poweroff -f".into());
    }
    Ok(())
}

/// Set/way operations each of the test guest's three `cache.dc_*` rows issues at least (one
/// per set of a 256-set level-1 cache, of at least one way).
const SETWAY_OPS_PER_ROW: u64 = 256;

/// The set/way system test's boot: the arm32 test guest as dom0 on QEMU's `-cpu max` (an
/// AArch32 ARMv8 CPU, whose set/way operations honour HCR.TSW; QEMU's Cortex-A15 executes
/// them untrapped, so the conformance run alone never reaches the trap handler).
pub fn setway_systest_boot() -> Boot {
    let mut b = Boot::new(PathBuf::from("/nonexistent/xenith-arm32-unavailable"));
    b.cpu = CPU.into();
    b.timeout = std::time::Duration::from_secs(180);
    // Later on QEMU's command line than `-cpu cortex-a15`, so it wins.
    b.extra = vec!["-cpu".into(), "max".into()];
    match build(true) {
        Ok(i) => {
            b.hypervisor = i.hypervisor;
            b.dom0 = i.test_guest;
        }
        Err(e) => eprintln!("xtask: arm32 hypervisor and test guest: {e}"),
    }
    b
}

/// Every set/way row completed with its data intact, and the hypervisor took the operations
/// as traps (its count of traps other than hypercalls covers them).
pub fn setway_systest_check(o: &qemu::Outcome) -> std::result::Result<(), String> {
    for op in ["isw", "csw", "cisw"] {
        let needle = format!("case cache.dc_{op}: no exception, x0=1");
        if !o.has(&needle) {
            return Err(format!("expected `{needle}`"));
        }
    }
    let (traps, hypercalls) = trap_counts(&o.output).ok_or("no `traps from guests` line at shutdown")?;
    let other = traps.saturating_sub(hypercalls);
    if other < 3 * SETWAY_OPS_PER_ROW {
        return Err(format!("only {other} traps other than hypercalls: the set/way operations were not trapped"));
    }
    Ok(())
}

/// `(traps, hypercalls)` from the hypervisor's shutdown line `traps from guests: N (M hypercalls)`.
fn trap_counts(out: &str) -> Option<(u64, u64)> {
    let l = out.lines().find(|l| l.contains("traps from guests: "))?;
    let rest = &l[l.find("traps from guests: ")? + "traps from guests: ".len()..];
    let traps = rest.split_whitespace().next()?.parse().ok()?;
    let hypercalls = rest.split('(').nth(1)?.split_whitespace().next()?.parse().ok()?;
    Some((traps, hypercalls))
}

/// Xen 4.17 armhf's command line for the conformance run: the one the AArch64 run uses.
const XEN_CMDLINE: &str = "dom0_mem=512M console=dtuart dtuart=/pl011@9000000 bootscrub=0 dom0_max_vcpus=1";

fn expected_path() -> PathBuf {
    env::root().join("tests/conformance/expected-xen-4.17-armhf.txt")
}
fn deviations_path() -> PathBuf {
    env::root().join("tests/conformance/deviations-armhf.txt")
}

/// Debian's Xen 4.17 for armhf (a zImage QEMU boots in HYP mode), fetched and cached.
pub fn xen_4_17_armhf() -> Result<PathBuf> {
    let p = env::fixtures_dir().join("xen-4.17-armhf");
    if !p.exists() {
        let root = env::debian_package("xen-hypervisor-4.17-armhf", "armhf")?;
        std::fs::create_dir_all(env::fixtures_dir()).map_err(|e| e.to_string())?;
        std::fs::copy(root.join("boot/xen-4.17-armhf"), &p).map_err(|e| format!("xen-4.17-armhf: {e}"))?;
    }
    Ok(p)
}

/// One conformance boot of the arm32 test guest as dom0 on `hypervisor`.
fn conformance_boot(hypervisor: PathBuf, cmdline: &str, guest: PathBuf) -> Result<qemu::Outcome> {
    let mut b = Boot::new(hypervisor);
    b.cmdline = cmdline.into();
    b.dom0 = Some(guest);
    b.timeout = std::time::Duration::from_secs(180);
    let out = boot(&b)?;
    if out.timed_out {
        return Err("QEMU did not end in time (arm32 conformance run)".into());
    }
    if crate::systest::guest_summary(&out).is_none() {
        let tail: Vec<&str> = out.output.lines().rev().take(20).collect();
        return Err(format!("the arm32 guest did not reach its summary line; last lines:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n")));
    }
    Ok(out)
}

/// `cargo xtask conformance --arch arm32 [--against xen]`: record Xen 4.17 armhf's values, or
/// diff xenith's with them; the number of cases that matched (or are listed deviations).
pub fn conformance(args: &[String]) -> Result<usize> {
    let against_xen = match args {
        [] => false,
        [a, x] if a == "--against" && x == "xen" => true,
        other => return Err(format!("conformance --arch arm32: unknown options {other:?} (only --against xen)")),
    };
    let images = build(true)?;
    let guest = images.test_guest.ok_or("the arm32 test guest was not built")?;
    if against_xen {
        let out = conformance_boot(xen_4_17_armhf()?, XEN_CMDLINE, guest)?;
        let _ = std::fs::write(env::target_dir().join("conformance-xen-4.17-armhf.log"), &out.output);
        let cases = crate::conformance::parse_cases(&out.output);
        let mut text = String::new();
        text.push_str("# The arm32 test guest's observed values on real Xen 4.17 (Debian xen-hypervisor-4.17-armhf) as dom0\n");
        text.push_str("# under qemu-system-arm -M virt,virtualization=on,highmem=off -cpu cortex-a15 -smp 2 -m 2G (GICv2).\n");
        text.push_str("# Written by `cargo xtask conformance --arch arm32 --against xen`;\n");
        text.push_str(&format!("# Xen command line: {XEN_CMDLINE}\n"));
        for (name, value) in &cases {
            text.push_str(&format!("case {name}: {value}\n"));
        }
        std::fs::write(expected_path(), text).map_err(|e| e.to_string())?;
        let (p, f) = crate::systest::guest_summary(&out).unwrap_or((0, 0));
        println!("conformance (arm32): recorded {} cases from Xen 4.17 armhf into {} (guest's own table: {p} passed, {f} failed)", cases.len(), expected_path().display());
        return Ok(cases.len());
    }
    let text = std::fs::read_to_string(expected_path())
        .map_err(|e| format!("{}: {e} (run `cargo xtask conformance --arch arm32 --against xen`)", expected_path().display()))?;
    let expected = crate::conformance::parse_cases(&text);
    let devs = match std::fs::read_to_string(deviations_path()) {
        Ok(t) => crate::conformance::parse_deviations(&t)?,
        Err(_) => Default::default(),
    };
    let out = conformance_boot(images.hypervisor, "", guest)?;
    let _ = std::fs::write(env::target_dir().join("conformance-xenith-arm32.log"), &out.output);
    let got = crate::conformance::parse_cases(&out.output);
    let (lines, verdicts) = crate::conformance::compare(&expected, &got, &devs);
    for l in &lines {
        println!("{l}");
    }
    use crate::conformance::Verdict;
    let count = |v: Verdict| verdicts.iter().filter(|x| **x == v).count();
    let (ok, dev, diff, missing, new) = (count(Verdict::Match), count(Verdict::Deviation), count(Verdict::Differs), count(Verdict::MissingOnXenith), count(Verdict::NotInExpected));
    println!("conformance (arm32, cortex-a15): {} cases: {ok} match Xen 4.17 armhf, {dev} listed deviations, {diff} differ, {missing} missing, {new} not in the expected file", expected.len());
    if diff + missing + new > 0 {
        Err(format!("{} arm32 conformance difference(s) not listed in {}", diff + missing + new, deviations_path().display()))
    } else {
        Ok(ok + dev)
    }
}

/// The null hypercall's target: at most this fraction of Xen 4.17 armhf's instructions.
pub const NULL_HYPERCALL_TARGET: f64 = 0.5;
/// Timed Linux dom0 boots per hypervisor (the median is compared).
const LINUX_RUNS: usize = 3;

/// The test guest's `bench` mode as dom0 of `hypervisor` under `-icount shift=0`: its
/// `bench <key>: <number>` values.
fn guest_bench(hypervisor: PathBuf, cmdline: &str, guest: PathBuf) -> Result<std::collections::BTreeMap<String, f64>> {
    let mut b = Boot::new(hypervisor);
    b.cmdline = cmdline.into();
    b.dom0 = Some(guest);
    b.dom0_args = "console=hvc0 bench".into();
    b.icount = true;
    // The per-exit SPI bench raises edu's INTx (a physical SPI dom0 owns on both hypervisors).
    b.extra = crate::systest::edu_device();
    b.timeout = std::time::Duration::from_secs(300);
    let out = boot(&b)?;
    let v = crate::conformance::bench_values(&out.output);
    if !v.contains_key("null_hypercall_ns") || out.timed_out {
        let tail: Vec<&str> = out.output.lines().rev().take(20).collect();
        return Err(format!(
            "the arm32 guest printed no null_hypercall_ns line (timed out: {}); last lines:\n{}",
            out.timed_out,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    Ok(v)
}

/// Prints and returns the null hypercall per call in instructions: the guest converts counter
/// ticks to ns with CNTFRQ, and under `-icount shift=0` one ns is one instruction.
fn null_line(name: &str, v: &std::collections::BTreeMap<String, f64>) -> Option<f64> {
    let ns = v.get("null_hypercall_ns").copied();
    println!(
        "  {name:<10} null hypercall (xen_version, hvc #0xEA1): {} instructions per call (loop with the call: {} ticks)",
        ns.map_or("-".into(), |x| format!("{x:.1}")),
        v.get("null_hypercall_ticks").map_or("-".into(), |x| format!("{x}")),
    );
    ns
}

/// The per-exit keys the arm32 guest's `bench` mode prints (the AArch64 guest's kinds that a
/// GICv2 has: no redistributor).
const EXIT_KEYS: [&str; 5] = ["exit_gicd_read_ns", "exit_gicd_write_ns", "exit_sgi_self_ns", "exit_vtimer_tick_ns", "exit_spi_ns"];

/// Prints the per-exit table of xenith's and Xen's figures; the kinds over Xen's (or missing
/// on either side).
fn exit_rows(ours: &std::collections::BTreeMap<String, f64>, xen: &std::collections::BTreeMap<String, f64>) -> Vec<&'static str> {
    println!("  per-exit costs, instructions per exit:");
    println!("  {:<28} {:>12} {:>12} {:>8}", "", "xenith", "Xen 4.17", "ratio");
    let mut missed = Vec::new();
    for key in EXIT_KEYS {
        match crate::conformance::print_row(key, ours, xen) {
            Some(r) if r <= 1.0 => {}
            _ => missed.push(key),
        }
        // `exit_<kind>: <n> ... never arrived`: the loop timed fewer exits than it counts.
        let lost = key.trim_end_matches("_ns");
        for (name, v) in [("xenith", ours), ("Xen 4.17", xen)] {
            if let Some(n) = v.get(lost) {
                println!("  {name}: {n} of the {lost} interrupts never arrived");
                missed.push(key);
            }
        }
    }
    println!("  (target: each exit_* at most Xen's, ratio <= 1)");
    missed
}

/// A figure for each hypervisor: (xenith, Xen 4.17 armhf).
type Both<T> = (T, T);

/// The two Linux dom0 boots the bench compares (xenith, then Debian's Xen 4.17 armhf): same
/// kernel, initramfs and QEMU, 2 vCPUs each.
fn linux_boots(xenith: PathBuf, xen: PathBuf) -> Result<Vec<(&'static str, Boot)>> {
    let l = linux_fixtures()?;
    let xenith_cmdline = format!("dom0_max_vcpus={LINUX_VCPUS}");
    let xen_cmdline = format!("{} dom0_max_vcpus={LINUX_VCPUS}", crate::linux::XEN_CMDLINE);
    let mut boots = Vec::new();
    for (name, hyp, cmdline) in [("xenith", xenith, xenith_cmdline), ("Xen 4.17", xen, xen_cmdline)] {
        let mut b = Boot::new(hyp);
        b.cpu = CPU.into();
        b.cmdline = cmdline;
        b.dom0 = Some(l.kernel.clone());
        b.initrd = Some(l.initrd.clone());
        b.dom0_args = crate::linux::DOM0_ARGS.into();
        b.timeout = std::time::Duration::from_secs(240);
        boots.push((name, b));
    }
    Ok(boots)
}

/// One Linux dom0 boot to its marker: wall seconds from QEMU's start, and dom0's own uptime
/// when /init got there (its clock: guest seconds under `-icount`). A stalled dom0 still
/// reaches its marker, late: its RCU-stall lines are printed beside the time.
fn marker(name: &str, b: &Boot) -> Result<(f64, Option<f64>)> {
    let (t, out) = crate::linux::marker_boot(b)?;
    for l in out.lines().filter(|l| l.contains("rcu: INFO") || l.contains("wakeup didn't happen")) {
        println!("  {name}: dom0 reported: {}", l.trim());
    }
    let uptime = crate::linux::uptime_at_marker(&out);
    let t = t.ok_or_else(|| {
        let tail: Vec<&str> = out.lines().rev().take(20).collect();
        format!("{name}: dom0 never printed {}; last lines:\n{}", crate::linux::MARKER, tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
    })?;
    Ok((t, uptime))
}

fn seconds(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2} s"))
}

/// One boot each under `-icount shift=0,sleep=off`, where executed instructions drive the
/// guest clock and idle waits are skipped: dom0's uptime at its marker is guest seconds.
/// Returns those uptimes (xenith, Xen).
fn linux_marker_icount(boots: &[(&str, Boot)]) -> Result<Both<Option<f64>>> {
    let mut up = Vec::new();
    for (name, b) in boots {
        let (t, uptime) = marker(name, &Boot { icount: true, ..b.clone() })?;
        println!("  {name}: -icount shift=0,sleep=off: marker at {t:.2} s wall, dom0 uptime {}", seconds(uptime));
        up.push(uptime);
    }
    let (a, b) = (up.first().copied().flatten(), up.get(1).copied().flatten());
    if let (Some(a), Some(b)) = (a, b) {
        println!("  Linux dom0 (2 vCPUs) under -icount: dom0 uptime at {}: xenith {a:.2} s, Xen 4.17 armhf {b:.2} s; ratio {:.3}", crate::linux::MARKER, a / b);
    }
    Ok((a, b))
}

/// Linux dom0 (Debian armmp-lpae, 2 vCPUs) to the /init marker on each hypervisor: wall
/// seconds from QEMU's start, [`LINUX_RUNS`] boots each alternating between the hypervisors
/// (so a change in the shared host's load falls on both), then the `-icount` boots
/// ([`linux_marker_icount`]). Returns the two wall-clock medians and the two `-icount` uptimes.
fn linux_marker(xenith: PathBuf, xen: PathBuf) -> Result<(Both<f64>, Both<Option<f64>>)> {
    let boots = linux_boots(xenith, xen)?;
    let mut times = vec![Vec::new(); boots.len()];
    for i in 0..LINUX_RUNS {
        for ((name, b), times) in boots.iter().zip(times.iter_mut()) {
            let (t, uptime) = marker(name, b)?;
            println!("  {name}: run {}: marker at {t:.2} s (dom0 uptime {})", i + 1, seconds(uptime));
            times.push(t);
        }
    }
    let med: Vec<f64> = times.into_iter().map(|t| crate::linux::median(t).unwrap_or(f64::NAN)).collect();
    println!("  Linux dom0 (2 vCPUs) to {}: xenith {:.2} s, Xen 4.17 armhf {:.2} s (median of {LINUX_RUNS}); ratio {:.3}",
        crate::linux::MARKER, med[0], med[1], med[0] / med[1]);
    let icount = linux_marker_icount(&boots)?;
    Ok(((med[0], med[1]), icount))
}

/// `cargo xtask bench --arch arm32 [--against xen | --only icount | --only exits [--against
/// xen]]`: the arm32 test guest's null hypercall on xenith in HYP mode; with `--against xen`
/// the same and the per-exit costs on Debian's Xen 4.17 armhf and Linux dom0's time to its
/// marker on both, each with its verdict. `--only icount` runs only the two Linux dom0 boots
/// under `-icount` (guest seconds to the marker, the verdict on them); `--only exits` only the
/// test guest's boots ([`bench_exits`]). Errors if a target is not met.
pub fn bench(args: &[String]) -> Result<()> {
    let against_xen = match args {
        [] => false,
        [a, x] if a == "--against" && x == "xen" => true,
        [a, x] if a == "--only" && x == "icount" => {
            let images = build(false)?;
            let boots = linux_boots(images.hypervisor, xen_4_17_armhf()?)?;
            let (a, b) = linux_marker_icount(&boots)?;
            let (Some(a), Some(b)) = (a, b) else { return Err("a dom0 did not report its uptime at the marker".into()) };
            let met = a <= b;
            println!("  Linux dom0 guest time to marker xenith/Xen: {:.3} (target <= 1: {})", a / b, if met { "met" } else { "NOT met" });
            return if met { Ok(()) } else { Err("arm32 bench target not met: Linux dom0 guest time to marker".into()) };
        }
        [a, x, rest @ ..] if a == "--only" && x == "exits" => {
            let against_xen = match rest {
                [] => false,
                [a, x] if a == "--against" && x == "xen" => true,
                other => return Err(format!("bench --arch arm32 --only exits: unknown options {other:?} (only --against xen)")),
            };
            return bench_exits(against_xen);
        }
        other => return Err(format!("bench --arch arm32: unknown options {other:?} (--against xen, --only icount or --only exits [--against xen])")),
    };
    let images = build(true)?;
    let guest = images.test_guest.clone().ok_or("the arm32 test guest was not built")?;
    println!("arm32 (qemu-system-arm virt, cortex-a15, GICv2), test guest as dom0, -icount shift=0 (1 instruction = 1 ns):");
    let ours = guest_bench(images.hypervisor.clone(), "", guest.clone())?;
    let a = null_line("xenith", &ours);
    if !against_xen {
        return Ok(());
    }
    let xen = guest_bench(xen_4_17_armhf()?, XEN_CMDLINE, guest)?;
    let b = null_line("Xen 4.17", &xen);
    let mut missed: Vec<&str> = exit_rows(&ours, &xen);
    if let (Some(a), Some(b)) = (a, b) {
        let ratio = a / b;
        let met = ratio <= NULL_HYPERCALL_TARGET;
        println!("  null hypercall xenith/Xen: {ratio:.3} (target <= {NULL_HYPERCALL_TARGET}: {})", if met { "met" } else { "NOT met" });
        if !met {
            missed.push("null hypercall");
        }
    }
    let ((t_ours, t_xen), icount) = linux_marker(images.hypervisor, xen_4_17_armhf()?)?;
    let met = t_ours <= t_xen;
    println!("  Linux dom0 time to marker xenith/Xen: {:.3} (target <= 1: {})", t_ours / t_xen, if met { "met" } else { "NOT met" });
    if !met {
        missed.push("Linux dom0 time to marker");
    }
    if let (Some(a), Some(b)) = icount {
        let met = a <= b;
        println!("  Linux dom0 guest time to marker under -icount xenith/Xen: {:.3} (target <= 1: {})", a / b, if met { "met" } else { "NOT met" });
        if !met {
            missed.push("Linux dom0 guest time to marker under -icount");
        }
    }
    if missed.is_empty() {
        Ok(())
    } else {
        Err(format!("arm32 bench targets not met: {}", missed.join(", ")))
    }
}

/// `cargo xtask bench --arch arm32 --only exits [--against xen]`: the null hypercall and the
/// per-exit costs of the arm32 test guest on xenith; with `--against xen` beside Debian's Xen
/// 4.17 armhf's, an error when a kind is over Xen's.
fn bench_exits(against_xen: bool) -> Result<()> {
    let images = build(true)?;
    let guest = images.test_guest.clone().ok_or("the arm32 test guest was not built")?;
    println!("arm32 (qemu-system-arm virt, cortex-a15, GICv2), test guest as dom0, -icount shift=0 (1 instruction = 1 ns):");
    let ours = guest_bench(images.hypervisor, "", guest.clone())?;
    null_line("xenith", &ours);
    let xen = if against_xen {
        let xen = guest_bench(xen_4_17_armhf()?, XEN_CMDLINE, guest)?;
        null_line("Xen 4.17", &xen);
        xen
    } else {
        Default::default()
    };
    let over = exit_rows(&ours, &xen);
    if let Some(missing) = EXIT_KEYS.iter().find(|k| !ours.contains_key(**k)) {
        return Err(format!("xenith's arm32 boot printed no {missing}"));
    }
    if !against_xen || over.is_empty() {
        Ok(())
    } else {
        Err(format!("arm32 exits over Xen 4.17 armhf's: {over:?}"))
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
    fn trap_counts_read_the_shutdown_line() {
        let out = "x\n(xenith) traps from guests: 98708 (97144 hypercalls); stage-2 faults resolved by a retry: 0\n";
        assert_eq!(trap_counts(out), Some((98708, 97144)));
        assert_eq!(trap_counts("nothing"), None);
    }

    #[test]
    fn elf64_is_refused() {
        let mut e = elf32(&[(0, b"x", 1)]);
        e[4] = 2;
        assert!(flatten32(&e).is_err());
    }
}
