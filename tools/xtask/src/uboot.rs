//! The Snow's stock-firmware route on QEMU: a real U-Boot (Debian's `u-boot-qemu`, qemu_arm)
//! runs `bootm` on a FIT that holds only a kernel image and an fdt, no `loadables`: all an old
//! bootm does is copy the kernel image to its load address and enter it with the DTB in r2.
//! The kernel image is xenith with dom0's Linux and initramfs in its module bundle (as
//! `cargo xtask snow` builds it); the fdt is QEMU virt's own DT with /chosen naming the
//! modules where the bundle moves them. dom0 reaching its marker shows the bundle is all a
//! Snow with its stock firmware needs to load.

use crate::env::{self, Result};
use crate::qemu::{self, Boot};
use platform::bundle::{Kind, Layout};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where QEMU's loader puts the FIT (U-Boot does not touch RAM below its own relocated copy at
/// the top): above the bundle's destination, below the top.
pub const FIT_ADDR: u64 = 0x4800_0000;
/// qemu_arm's environment: the first 256 KiB of the second flash bank (0x04000000).
const ENV_SIZE: u64 = 0x4_0000;
/// QEMU virt's flash banks are 64 MiB each.
const FLASH_SIZE: u64 = 64 << 20;

fn write(p: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(p, bytes).map_err(|e| format!("{}: {e}", p.display()))
}

/// The FIT source: the kernel image (xenith and its module bundle) and the fdt; with
/// `loadables` (their addresses), dom0's kernel and initramfs too as `cargo xtask snow` lists
/// them (placeholders that `snow::share_loadables` points into the bundle).
fn its(bundle: &Path, load: u64, dtb: &Path, loadables: Option<(u64, u64)>) -> String {
    let (images, config) = match loadables {
        Some((k, i)) => (
            format!(
                "\t\tdom0-linux {{\n\t\t\tdata = [00 00 00 00];\n\t\t\ttype = \"kernel\";\n\t\t\tarch = \"arm\";\n\t\t\tos = \"linux\";\n\t\t\tcompression = \"none\";\n\t\t\tload = <{k:#x}>;\n\t\t\tentry = <{k:#x}>;\n\t\t\thash-1 {{ algo = \"sha1\"; }};\n\t\t}};\n\
                 \t\tdom0-initramfs {{\n\t\t\tdata = [00 00 00 00];\n\t\t\ttype = \"ramdisk\";\n\t\t\tarch = \"arm\";\n\t\t\tos = \"linux\";\n\t\t\tcompression = \"none\";\n\t\t\tload = <{i:#x}>;\n\t\t\thash-1 {{ algo = \"sha1\"; }};\n\t\t}};\n"
            ),
            "\t\t\tloadables = \"dom0-linux\", \"dom0-initramfs\";\n",
        ),
        None => (String::new(), ""),
    };
    format!(
        "/dts-v1/;\n\n/ {{\n\tdescription = \"xenith with dom0 in its module bundle, QEMU virt DT\";\n\t#address-cells = <1>;\n\n\
         \timages {{\n\
         \t\txenith {{\n\t\t\tdata = /incbin/(\"{}\");\n\t\t\ttype = \"kernel\";\n\t\t\tarch = \"arm\";\n\t\t\tos = \"linux\";\n\t\t\tcompression = \"none\";\n\
         \t\t\tload = <{load:#x}>;\n\t\t\tentry = <{load:#x}>;\n\t\t\thash-1 {{ algo = \"sha1\"; }};\n\t\t}};\n\
         \t\tfdt {{\n\t\t\tdata = /incbin/(\"{}\");\n\t\t\ttype = \"flat_dt\";\n\t\t\tarch = \"arm\";\n\t\t\tcompression = \"none\";\n\t\t\thash-1 {{ algo = \"sha1\"; }};\n\t\t}};\n\
         {images}\t}};\n\n\tconfigurations {{\n\t\tdefault = \"qemu\";\n\t\tqemu {{\n\t\t\tkernel = \"xenith\";\n\t\t\tfdt = \"fdt\";\n{config}\t\t}};\n\t}};\n}};\n",
        bundle.display(),
        dtb.display()
    )
}

/// What the FIT holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    /// xenith with the module bundle and the fdt: what the Snow's stock firmware can boot.
    Bundle,
    /// xenith alone and the fdt, the DT still naming the modules where the bundle would have
    /// put them: a loader that loaded nothing there.
    NoBundle,
    /// As `cargo xtask snow` builds it: the bundle, and the modules also as `loadables` whose
    /// data lies inside it, for a U-Boot that loads them itself.
    BundleAndLoadables,
}

/// Build the FIT and U-Boot's environment flash; returns the U-Boot binary, the FIT and the flash.
fn prepare(b: &Boot, route: Route) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let with_bundle = route != Route::NoBundle;
    let uboot = env::debian_package("u-boot-qemu", "all")?.join("usr/lib/u-boot/qemu_arm/u-boot.bin");
    if !uboot.exists() {
        return Err(format!("{} is missing from Debian's u-boot-qemu", uboot.display()));
    }
    env::ensure_snow_tools()?;
    let images = crate::arm32::build(false)?;
    let image = std::fs::read(&images.hypervisor).map_err(|e| format!("{}: {e}", images.hypervisor.display()))?;
    let elf = std::fs::read(&images.hypervisor_elf).map_err(|e| format!("{}: {e}", images.hypervisor_elf.display()))?;
    let syms = crate::arm32::symbols32(&elf, &["__image_start", "__bss_start", "__image_end"])?;
    let (start, bss, end) = (u64::from(syms[0]), u64::from(syms[1]), u64::from(syms[2]));
    let linux = crate::arm32::linux_fixtures()?;
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let (kernel, initrd) = (read(&linux.kernel)?, read(&linux.initrd)?);
    let layout = Layout::new(start, bss, end, kernel.len() as u64, initrd.len() as u64)?;
    if layout.dest + layout.total_len > FIT_ADDR {
        return Err(format!("the module bundle ({:#x}+{:#x}) reaches the FIT at {FIT_ADDR:#x}", layout.dest, layout.total_len));
    }
    let dir = env::images_dir().join(match route {
        Route::Bundle => "uboot",
        Route::NoBundle => "uboot-no-bundle",
        Route::BundleAndLoadables => "uboot-loadables",
    });
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let bundle = dir.join("xenith-bundle.bin");
    write(&bundle, if with_bundle { crate::snow::make_bundle(&image, &layout, &kernel, &initrd)? } else { image })?;

    // QEMU's DT for this machine, /chosen with xenith's command line and dom0's modules.
    let qemu_dtb = dir.join("qemu-virt-arm32.dtb");
    crate::arm32::dump_dtb("virt,virtualization=on,highmem=off", b, &qemu_dtb, &[])?;
    let dts = env::output(Command::new("dtc").args(["-q", "-I", "dtb", "-O", "dts"]).arg(&qemu_dtb))?;
    let chosen = crate::snow::chosen_modules_dts(
        (layout.module_addr(Kind::Kernel), kernel.len() as u64),
        (layout.module_addr(Kind::Ramdisk), initrd.len() as u64),
        crate::linux::DOM0_ARGS,
    )?;
    let dts_path = dir.join("qemu-virt-arm32-modules.dts");
    write(&dts_path, format!("{dts}{chosen}"))?;
    let dtb = dir.join("qemu-virt-arm32-modules.dtb");
    env::run(Command::new("dtc").args(["-q", "-I", "dts", "-O", "dtb", "-o"]).arg(&dtb).arg(&dts_path))?;

    let its_path = dir.join("xenith-qemu.its");
    let loadables = (route == Route::BundleAndLoadables).then(|| (layout.module_addr(Kind::Kernel), layout.module_addr(Kind::Ramdisk)));
    write(&its_path, its(&bundle, start, &dtb, loadables))?;
    let fit = dir.join("xenith-qemu.itb");
    env::run(Command::new("mkimage").arg("-f").arg(&its_path).arg(&fit).stdout(std::process::Stdio::null()))?;
    if let Some((k, r)) = loadables {
        crate::snow::share_loadables(&fit, &layout, &kernel, &initrd)?;
        // Where U-Boot is to copy them (they follow from the fixtures' sizes), for the check.
        write(&dir.join(LOADABLES_ADDRS), format!("{k:#x} {r:#x}\n"))?;
    }
    let listing = env::output(Command::new("dumpimage").arg("-l").arg(&fit))?;
    let (images, cfg) = crate::snow::parse_fit_listing(&listing)?;
    let want = if loadables.is_some() { 4 } else { 2 };
    if images.len() != want || cfg.loadables.is_empty() == loadables.is_some() {
        return Err(format!("the test FIT does not hold {want} images with{} loadables:\n{listing}", if loadables.is_some() { "" } else { "out" }));
    }

    // U-Boot's environment: boot the FIT at once.
    let env_txt = dir.join("u-boot-env.txt");
    write(&env_txt, format!("bootdelay=0\nbootcmd=bootm {FIT_ADDR:#x}\n"))?;
    let env_bin = dir.join("u-boot-env.bin");
    env::run(Command::new("mkenvimage").args(["-s", &format!("{ENV_SIZE:#x}"), "-o"]).arg(&env_bin).arg(&env_txt))?;
    let mut flash = read(&env_bin)?;
    flash.resize(FLASH_SIZE as usize, 0xff);
    let flash_path = dir.join("flash1.img");
    write(&flash_path, flash)?;
    Ok((uboot, fit, flash_path))
}

/// The system test's boot: U-Boot from flash, the FIT in RAM, `bootm` from the environment.
pub fn systest_boot() -> Boot {
    boot(Route::Bundle)
}

/// The same boot with xenith alone as the FIT's kernel image: nothing puts dom0's modules
/// where the DT names them.
pub fn no_bundle_systest_boot() -> Boot {
    boot(Route::NoBundle)
}

/// The same boot with the modules also as `loadables` sharing the bundle's bytes, as on the
/// Snow's card: a U-Boot that honours them copies them, then xenith's entry moves the bundle.
pub fn loadables_systest_boot() -> Boot {
    boot(Route::BundleAndLoadables)
}

fn boot(route: Route) -> Boot {
    let mut b = Boot::new(PathBuf::from("/nonexistent/xenith-arm32-unavailable"));
    b.cpu = crate::arm32::CPU.into();
    b.timeout = std::time::Duration::from_secs(150);
    match prepare(&b, route) {
        Ok((uboot, fit, flash)) => {
            b.hypervisor = uboot;
            b.extra = vec![
                "-drive".into(),
                format!("if=pflash,unit=1,format=raw,file={}", flash.display()),
                "-device".into(),
                format!("loader,file={},addr={FIT_ADDR:#x},force-raw=on", fit.display()),
            ];
        }
        Err(e) => eprintln!("xtask: U-Boot bootm route: {e}"),
    }
    b.bios = true;
    b
}

/// U-Boot booted the FIT's kernel image with its fdt, xenith moved the bundle and found the
/// modules where the DT names them, and dom0 reached its marker with both vCPUs and powered off.
pub fn systest_check(o: &qemu::Outcome) -> std::result::Result<(), String> {
    for needle in ["Trying 'xenith' kernel subimage", "Starting kernel", "module bundle: moved past xenith's memory to 0x40a00000, CRC-32 checked"] {
        if !o.has(needle) {
            return Err(format!("expected output containing `{needle}`"));
        }
    }
    if o.has("Loading loadables") {
        return Err("U-Boot loaded loadables: the FIT was to have none".into());
    }
    crate::arm32::linux_systest_check(o)
}

/// In the loadables route's directory: the addresses the FIT names for dom0's kernel and
/// initramfs loadables.
const LOADABLES_ADDRS: &str = "loadables.addrs";

/// U-Boot loaded both loadables from inside the bundle (their SHA-1s checked) to the addresses
/// the FIT names, and the boot went on as without them.
pub fn loadables_systest_check(o: &qemu::Outcome) -> std::result::Result<(), String> {
    let path = env::images_dir().join("uboot-loadables").join(LOADABLES_ADDRS);
    let addrs = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let to: Vec<String> = addrs.split_whitespace().map(|a| format!("to {a}")).collect();
    if to.len() != 2 {
        return Err(format!("{}: not two addresses: {addrs:?}", path.display()));
    }
    for needle in ["Trying 'dom0-linux' loadables subimage", "Trying 'dom0-initramfs' loadables subimage", to[0].as_str(), to[1].as_str()] {
        if !o.has(needle) {
            return Err(format!("expected output containing `{needle}`"));
        }
    }
    for needle in ["Trying 'xenith' kernel subimage", "module bundle: moved past xenith's memory to 0x40a00000, CRC-32 checked"] {
        if !o.has(needle) {
            return Err(format!("expected output containing `{needle}`"));
        }
    }
    crate::arm32::linux_systest_check(o)
}

/// Without the bundle xenith finds no zImage where the DT names dom0's kernel, says why
/// (the message a Snow owner reads in the RAM log) and powers the machine off.
pub fn no_bundle_systest_check(o: &qemu::Outcome) -> std::result::Result<(), String> {
    for needle in ["Trying 'xenith' kernel subimage", "dom0's kernel module at 0x40a01000", "not a zImage: the word at 0x24 is", "nothing was loaded there", "ignores FIT `loadables`", "xenith: cannot continue"] {
        if !o.has(needle) {
            return Err(format!("expected output containing `{needle}`"));
        }
    }
    if o.has("module bundle: moved") || o.has("starting dom0") {
        return Err("xenith went on without dom0's modules".into());
    }
    if o.timed_out {
        return Err("xenith did not power the machine off".into());
    }
    Ok(())
}
