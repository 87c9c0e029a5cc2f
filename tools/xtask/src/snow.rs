//! `cargo xtask snow`: an SD card image for the Chromebook Snow, from Debian parts only.
//!
//! A FIT (u-boot-tools' `mkimage -f`) holds the arm32 xenith image, Debian's armmp-lpae zImage
//! and the busybox initramfs of the arm32 Linux dom0 run (`arm32::linux_fixtures`), and Debian's
//! exynos5250-snow.dtb with dom0's `multiboot,module` nodes added under /chosen. The FIT is
//! signed as a Chrome OS kernel partition with the developer keys (vboot-kernel-utils'
//! `vbutil_kernel`), whose config is xenith's command line (the firmware passes it as
//! /chosen/bootargs), and written into a GPT disk image (`cgpt`) as KERN-A, beside an ext4
//! partition that holds the same FIT and a U-Boot boot script for the chained-U-Boot route.
//! [`check`] reads the image back with the same tools (`cargo xtask test` runs it).

use crate::env::{self, Result};
use platform::bundle::{self, Kind, Layout};
use std::path::{Path, PathBuf};
use std::process::Command;

const DEVKEYS: &str = "/usr/share/vboot/devkeys";
const SECTOR: u64 = 512;
/// KERN-A: 16 MiB from 1 MiB on (Chrome OS's own kernel partitions are 16 MiB).
const KERN_START: u64 = 2048;
const KERN_SECTORS: u64 = 32768;
/// The root filesystem partition (ext4, 32 MiB) right after it.
const ROOT_START: u64 = KERN_START + KERN_SECTORS;
const ROOT_SECTORS: u64 = 65536;
/// The disk: both partitions and 1 MiB at the end for the backup GPT.
const DISK_SECTORS: u64 = ROOT_START + ROOT_SECTORS + 2048;
/// KERN-A's Chrome OS attributes: the firmware boots the kernel partition of highest priority
/// that is marked successful or has tries left.
const KERN_PRIORITY: u64 = 10;
const KERN_TRIES: u64 = 5;
const KERN_SUCCESSFUL: u64 = 1;
/// The stock firmware's kernel buffer: vboot loads KERN-A's body (the FIT, then
/// vbutil_kernel's config and bootloader pages) to 0x42000000 and it may be at most 8 MiB
/// (Chromium OS U-Boot's `chromeos-config` for Exynos: `kernel = <0x42000000 0x00800000>`).
pub const KERNEL_BUFFER: u64 = 8 << 20;
/// vbutil_kernel's keyblock and preamble before the body (its default padding).
const KPART_HEADER: u64 = 0x1_0000;
/// xenith's command line: the kernel partition's config.
pub const XENITH_CMDLINE: &str = "dom0_max_vcpus=2";
/// Where the chained-U-Boot boot script loads the FIT: above every load address inside it and
/// below the RAM log (the last MiB of the Snow's 2 GiB); the stock firmware's is 0x42000000.
const FIT_ADDR: u64 = 0x6000_0000;
/// The FIT's image names, also the names `check` looks for.
const IMG_XENITH: &str = "xenith";
const IMG_KERNEL: &str = "dom0-linux";
const IMG_INITRD: &str = "dom0-initramfs";
const IMG_FDT: &str = "fdt-snow";

/// dom0's command line on the Snow: the arm32 run's, plus the screen as the last console,
/// the clocks Linux would gate without the hypervisor knowing, and /init staying up after its
/// report (`xenith-stay`) instead of powering the machine off.
pub fn dom0_args() -> String {
    format!("{} console=tty1 clk_ignore_unused xenith-stay", crate::linux::DOM0_ARGS)
}

/// The files `build` wrote and the inputs it put in them.
pub struct Image {
    pub dir: PathBuf,
    pub hypervisor: PathBuf,
    /// Where the hypervisor is linked (the zImage header's start word).
    pub hypervisor_addr: u64,
    /// The hypervisor with dom0's modules appended (`platform::bundle`): the FIT's kernel.
    pub bundle: PathBuf,
    pub layout: Layout,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Debian's Snow DTB with dom0's module nodes.
    pub dtb: PathBuf,
    pub fit: PathBuf,
    pub kpart: PathBuf,
    pub disk: PathBuf,
}

fn size_of(p: &Path) -> Result<u64> {
    std::fs::metadata(p).map(|m| m.len()).map_err(|e| format!("{}: {e}", p.display()))
}

fn write(p: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(p, bytes).map_err(|e| format!("{}: {e}", p.display()))
}

/// The `/chosen` additions (dtc source, merged into the decompiled Snow DT): xenith's command
/// line as `bootargs` (in place of Debian's `console=tty1`; a loader that sets its own replaces
/// it), dom0's kernel and initramfs as Xen's boot modules at the addresses the FIT loads them to.
pub fn chosen_modules_dts(kernel: (u64, u64), initrd: (u64, u64), dom0_args: &str) -> Result<String> {
    if dom0_args.contains(['"', '\\']) {
        return Err(format!("dom0's command line `{dom0_args}` holds a quote or backslash"));
    }
    Ok(format!(
        "\n/ {{\n\tchosen {{\n\t\tbootargs = \"{XENITH_CMDLINE}\";\n\t\t#address-cells = <1>;\n\t\t#size-cells = <1>;\n\
         \t\tmodule@{:x} {{\n\t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";\n\t\t\treg = <{:#x} {:#x}>;\n\t\t\tbootargs = \"{dom0_args}\";\n\t\t}};\n\
         \t\tmodule@{:x} {{\n\t\t\tcompatible = \"multiboot,ramdisk\", \"multiboot,module\";\n\t\t\treg = <{:#x} {:#x}>;\n\t\t}};\n\t}};\n}};\n",
        kernel.0, kernel.0, kernel.1, initrd.0, initrd.0, initrd.1
    ))
}

/// The FIT source: xenith with dom0's modules appended (the module bundle) is the
/// configuration's kernel, copied to xenith's link address and entered with the DTB: all an
/// old `bootm` does. dom0's kernel and initramfs are also listed as `loadables` at the
/// addresses the bundle moves them to, for a U-Boot that loads them itself; their data is a
/// 4-byte placeholder here, which [`share_loadables`] replaces by a `data-position` into the
/// bundle's bytes (no second copy: the firmware's kernel buffer holds 8 MiB). The DTB is its
/// `fdt`.
fn its(img: &Image) -> String {
    let q = |p: &Path| p.display().to_string();
    let (kernel_addr, initrd_addr) = (img.layout.module_addr(Kind::Kernel), img.layout.module_addr(Kind::Ramdisk));
    format!(
        "/dts-v1/;\n\n/ {{\n\
         \tdescription = \"xenith for the Chromebook Snow: hypervisor with dom0 Linux and initramfs, exynos5250-snow DTB\";\n\
         \t#address-cells = <1>;\n\n\
         \timages {{\n\
         \t\t{IMG_XENITH} {{\n\t\t\tdescription = \"xenith (ARMv7-A HYP mode) and its module bundle\";\n\t\t\tdata = /incbin/(\"{}\");\n\
         \t\t\ttype = \"kernel\";\n\t\t\tarch = \"arm\";\n\t\t\tos = \"linux\";\n\t\t\tcompression = \"none\";\n\
         \t\t\tload = <{:#x}>;\n\t\t\tentry = <{:#x}>;\n\t\t\thash-1 {{ algo = \"sha1\"; }};\n\t\t}};\n\
         \t\t{IMG_KERNEL} {{\n\t\t\tdescription = \"dom0: Debian linux-image-armmp-lpae zImage (inside the xenith image)\";\n\t\t\tdata = [00 00 00 00];\n\
         \t\t\ttype = \"kernel\";\n\t\t\tarch = \"arm\";\n\t\t\tos = \"linux\";\n\t\t\tcompression = \"none\";\n\
         \t\t\tload = <{kernel_addr:#x}>;\n\t\t\tentry = <{kernel_addr:#x}>;\n\t\t\thash-1 {{ algo = \"sha1\"; }};\n\t\t}};\n\
         \t\t{IMG_INITRD} {{\n\t\t\tdescription = \"dom0: busybox initramfs (inside the xenith image)\";\n\t\t\tdata = [00 00 00 00];\n\
         \t\t\ttype = \"ramdisk\";\n\t\t\tarch = \"arm\";\n\t\t\tos = \"linux\";\n\t\t\tcompression = \"none\";\n\
         \t\t\tload = <{initrd_addr:#x}>;\n\t\t\thash-1 {{ algo = \"sha1\"; }};\n\t\t}};\n\
         \t\t{IMG_FDT} {{\n\t\t\tdescription = \"exynos5250-snow.dtb (Debian) with dom0's boot modules\";\n\t\t\tdata = /incbin/(\"{}\");\n\
         \t\t\ttype = \"flat_dt\";\n\t\t\tarch = \"arm\";\n\t\t\tcompression = \"none\";\n\t\t\thash-1 {{ algo = \"sha1\"; }};\n\t\t}};\n\
         \t}};\n\n\
         \tconfigurations {{\n\t\tdefault = \"snow\";\n\t\tsnow {{\n\t\t\tdescription = \"xenith + Linux dom0 on the Snow\";\n\
         \t\t\tkernel = \"{IMG_XENITH}\";\n\t\t\tfdt = \"{IMG_FDT}\";\n\t\t\tloadables = \"{IMG_KERNEL}\", \"{IMG_INITRD}\";\n\t\t}};\n\t}};\n}};\n",
        q(&img.bundle),
        img.hypervisor_addr,
        img.hypervisor_addr,
        q(&img.dtb),
    )
}

/// xenith's image with dom0's modules appended at its BSS start: the loaded bytes, zeros up
/// to the BSS start, the bundle header, each module at its offset, zeros to the total length.
pub fn make_bundle(image: &[u8], layout: &Layout, kernel: &[u8], initrd: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let at = layout.header_offset as usize;
    if image.len() > at {
        return Err(format!("xenith's loaded bytes ({}) run past its BSS start ({at})", image.len()));
    }
    let mut out = image.to_vec();
    out.resize(at + layout.total_len as usize, 0);
    let mut mods = Vec::new();
    for (&(kind, off, size), data) in layout.modules.iter().zip([kernel, initrd]) {
        if data.len() as u64 != size {
            return Err(format!("{} is {} bytes, the layout says {size}", kind.name(), data.len()));
        }
        out[at + off as usize..at + (off + size) as usize].copy_from_slice(data);
        mods.push(bundle::Module { kind, offset: off as u32, size: size as u32, crc: bundle::crc32(data) });
    }
    out[at..at + bundle::HEADER_LEN].copy_from_slice(&bundle::Header::encode(layout.dest as u32, layout.total_len as u32, &mods));
    Ok(out)
}

fn be32(b: &[u8], o: usize) -> Option<u32> {
    b.get(o..o + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Where the value of property `prop` of the node at `path` lies in the flattened device tree
/// `blob`: (offset, length).
pub fn fdt_prop(blob: &[u8], path: &str, prop: &str) -> Option<(usize, usize)> {
    if be32(blob, 0)? != 0xd00d_feed {
        return None;
    }
    let (structs, strings) = (be32(blob, 8)? as usize, be32(blob, 12)? as usize);
    let want: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let mut at = structs;
    let mut stack: Vec<String> = Vec::new();
    loop {
        match be32(blob, at)? {
            1 => {
                let name = blob.get(at + 4..)?.split(|&c| c == 0).next()?;
                stack.push(String::from_utf8_lossy(name).into_owned());
                at += 4 + (name.len() + 1).div_ceil(4) * 4;
            }
            2 => {
                stack.pop();
                at += 4;
            }
            3 => {
                let (len, nameoff) = (be32(blob, at + 4)? as usize, be32(blob, at + 8)? as usize);
                let name = blob.get(strings + nameoff..)?.split(|&c| c == 0).next()?;
                // stack[0] is the root's empty name.
                if name == prop.as_bytes() && stack.len() == want.len() + 1 && stack[1..].iter().zip(&want).all(|(a, b)| a == b) {
                    return Some((at + 12, len));
                }
                at += 12 + len.div_ceil(4) * 4;
            }
            4 => at += 4,
            _ => return None,
        }
    }
}

/// Make the FIT's loadables (`dom0-linux`, `dom0-initramfs`) point into the `xenith` image's
/// data (the module bundle) instead of carrying their bytes: each one's placeholder `data` becomes `data-position` (from the FIT's
/// start) and `data-size`, and its SHA-1 is its real bytes' (`sha1sum`).
pub fn share_loadables(fit: &Path, layout: &Layout, kernel: &[u8], initrd: &[u8]) -> Result<()> {
    let fdtput = |args: &[&str]| env::run(Command::new("fdtput").arg(fit).args(args));
    for (name, data) in [(IMG_KERNEL, kernel), (IMG_INITRD, initrd)] {
        let node = format!("/images/{name}");
        fdtput(&["-d", &node, "data"])?;
        fdtput(&["-t", "x", &node, "data-size", &format!("{:x}", data.len())])?;
        fdtput(&["-t", "x", &node, "data-position", "0"])?;
    }
    // Those edits moved the data; now patch values of fixed size in place.
    let mut blob = std::fs::read(fit).map_err(|e| format!("{}: {e}", fit.display()))?;
    let (xenith_data, _) = fdt_prop(&blob, &format!("/images/{IMG_XENITH}"), "data").ok_or("the FIT has no xenith data")?;
    for ((name, data), kind) in [(IMG_KERNEL, kernel), (IMG_INITRD, initrd)].into_iter().zip([Kind::Kernel, Kind::Ramdisk]) {
        let node = format!("/images/{name}");
        let off = layout.modules.iter().find(|m| m.0 == kind).map(|m| m.1).unwrap_or(0);
        let position = xenith_data as u64 + layout.header_offset + off;
        let (at, len) = fdt_prop(&blob, &node, "data-position").ok_or_else(|| format!("{node}: no data-position"))?;
        if len != 4 {
            return Err(format!("{node}: data-position is {len} bytes"));
        }
        blob[at..at + 4].copy_from_slice(&(position as u32).to_be_bytes());
        let (at, len) = fdt_prop(&blob, &format!("{node}/hash-1"), "value").ok_or_else(|| format!("{node}: no hash value"))?;
        let sha = sha1(data)?;
        if len != sha.len() {
            return Err(format!("{node}: hash value is {len} bytes"));
        }
        blob[at..at + len].copy_from_slice(&sha);
    }
    write(fit, blob)
}

/// SHA-1 of `data` by the host's `sha1sum`.
fn sha1(data: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut child = Command::new("sha1sum").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().map_err(|e| format!("sha1sum: {e}"))?;
    child.stdin.take().ok_or("sha1sum: no stdin")?.write_all(data).map_err(|e| format!("sha1sum: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("sha1sum: {e}"))?;
    let hex = String::from_utf8_lossy(&out.stdout);
    let hex = hex.split_whitespace().next().unwrap_or("");
    (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| format!("sha1sum printed `{hex}`: {e}"))).collect()
}

/// The chained-U-Boot route's boot script (`boot.cmd`, made `boot.scr` with mkimage): U-Boot's
/// distro boot runs /boot/boot.scr from the partition marked bootable (ROOT here).
fn boot_cmd() -> String {
    format!(
        "# xenith on the Chromebook Snow, for a U-Boot that runs after the firmware (the chained route).\n\
         setenv bootargs \"{XENITH_CMDLINE}\"\n\
         load ${{devtype}} ${{devnum}}:${{distro_bootpart}} {FIT_ADDR:#x} /boot/xenith-snow.itb\n\
         bootm {FIT_ADDR:#x}\n"
    )
}

/// Build the SD card image under `target/xenith/snow/`.
pub fn build() -> Result<Image> {
    env::ensure_snow_tools()?;
    for key in ["kernel.keyblock", "kernel_data_key.vbprivk", "kernel_subkey.vbpubk"] {
        if !Path::new(DEVKEYS).join(key).exists() {
            return Err(format!("{DEVKEYS}/{key} is missing (vboot-kernel-utils ships the developer keys)"));
        }
    }
    let images = crate::arm32::build(false)?;
    let hypervisor = images.hypervisor;
    let head = std::fs::read(&hypervisor).map_err(|e| format!("{}: {e}", hypervisor.display()))?;
    let word = |o: usize| head.get(o..o + 4).map(|b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])));
    let (Some(0x016f_2818), Some(start), Some(end)) = (word(0x24), word(0x28), word(0x2c)) else {
        return Err(format!("{} has no zImage header", hypervisor.display()));
    };
    // The bundle goes at the BSS start and moves past the image's end: both from the ELF.
    let elf = std::fs::read(&images.hypervisor_elf).map_err(|e| format!("{}: {e}", images.hypervisor_elf.display()))?;
    let syms = crate::arm32::symbols32(&elf, &["__image_start", "__bss_start", "__image_end"]).map_err(|e| format!("{}: {e}", images.hypervisor_elf.display()))?;
    let (sym_start, bss_start, image_end) = (u64::from(syms[0]), u64::from(syms[1]), u64::from(syms[2]));
    if (sym_start, image_end) != (start, end) {
        return Err(format!("{}'s zImage header says {start:#x}..{end:#x}, its ELF {sym_start:#x}..{image_end:#x}", hypervisor.display()));
    }
    let linux = crate::arm32::linux_fixtures()?;
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let (kernel_bytes, initrd_bytes) = (read(&linux.kernel)?, read(&linux.initrd)?);
    let layout = Layout::new(start, bss_start, image_end, kernel_bytes.len() as u64, initrd_bytes.len() as u64)?;
    let (kernel_addr, initrd_addr) = (layout.module_addr(Kind::Kernel), layout.module_addr(Kind::Ramdisk));
    let (kernel_size, initrd_size) = (kernel_bytes.len() as u64, initrd_bytes.len() as u64);
    // The chained route's FIT at FIT_ADDR must lie clear of the modules' destination.
    if layout.dest + layout.total_len > FIT_ADDR {
        return Err(format!("the module bundle ({:#x}+{:#x}) reaches the chained route's FIT at {FIT_ADDR:#x}", layout.dest, layout.total_len));
    }
    let dir = env::images_dir().join("snow");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("root/boot")).map_err(|e| e.to_string())?;
    let bundle_path = dir.join("xenith-bundle.bin");
    write(&bundle_path, make_bundle(&head, &layout, &kernel_bytes, &initrd_bytes)?)?;

    // Debian's Snow DTB with dom0's boot modules under /chosen, where the bundle moves them.
    let dts = env::output(Command::new("dtc").args(["-q", "-I", "dtb", "-O", "dts"]).arg(crate::fixtures::snow()?))?;
    let extra = chosen_modules_dts((kernel_addr, kernel_size), (initrd_addr, initrd_size), &dom0_args())?;
    let dts_path = dir.join("exynos5250-snow-xenith.dts");
    write(&dts_path, format!("{dts}{extra}"))?;
    let dtb = dir.join("exynos5250-snow-xenith.dtb");
    env::run(Command::new("dtc").args(["-q", "-I", "dts", "-O", "dtb", "-o"]).arg(&dtb).arg(&dts_path))?;

    let img = Image {
        hypervisor,
        hypervisor_addr: start,
        bundle: bundle_path,
        layout,
        kernel: linux.kernel,
        initrd: linux.initrd,
        dtb,
        fit: dir.join("xenith-snow.itb"),
        kpart: dir.join("xenith-snow.kpart"),
        disk: dir.join("xenith-snow-sd.img"),
        dir: dir.clone(),
    };
    let its_path = dir.join("xenith-snow.its");
    write(&its_path, its(&img))?;
    env::run(Command::new("mkimage").arg("-f").arg(&its_path).arg(&img.fit).stdout(std::process::Stdio::null()))?;
    share_loadables(&img.fit, &img.layout, &kernel_bytes, &initrd_bytes)?;

    // The signed kernel partition: config = xenith's command line, a dummy bootloader stub
    // (the ARM firmware does not run it; vbutil_kernel requires one).
    let cmdline = dir.join("cmdline.txt");
    write(&cmdline, XENITH_CMDLINE)?;
    let stub = dir.join("bootloader.bin");
    write(&stub, vec![0u8; 512])?;
    env::run(
        Command::new("vbutil_kernel")
            .arg("--pack")
            .arg(&img.kpart)
            .args(["--version", "1", "--arch", "arm"])
            .arg("--keyblock")
            .arg(Path::new(DEVKEYS).join("kernel.keyblock"))
            .arg("--signprivate")
            .arg(Path::new(DEVKEYS).join("kernel_data_key.vbprivk"))
            .arg("--config")
            .arg(&cmdline)
            .arg("--bootloader")
            .arg(&stub)
            .arg("--vmlinuz")
            .arg(&img.fit),
    )?;
    let kpart_size = size_of(&img.kpart)?;
    if kpart_size > KERN_SECTORS * SECTOR {
        return Err(format!("the kernel partition's payload is {kpart_size} bytes, more than KERN-A's {} MiB", (KERN_SECTORS * SECTOR) >> 20));
    }
    if kpart_size - KPART_HEADER > KERNEL_BUFFER {
        return Err(format!("KERN-A's body is {} bytes, more than the stock firmware's {KERNEL_BUFFER}-byte kernel buffer", kpart_size - KPART_HEADER));
    }

    // The root partition: ext4 with the FIT and the chained route's boot script.
    std::fs::copy(&img.fit, dir.join("root/boot/xenith-snow.itb")).map_err(|e| e.to_string())?;
    write(&dir.join("root/boot/boot.cmd"), boot_cmd())?;
    env::run(
        Command::new("mkimage")
            .args(["-A", "arm", "-O", "linux", "-T", "script", "-C", "none", "-n", "xenith on the Snow", "-d"])
            .arg(dir.join("root/boot/boot.cmd"))
            .arg(dir.join("root/boot/boot.scr"))
            .stdout(std::process::Stdio::null()),
    )?;
    let root = dir.join("root.ext4");
    env::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "xenith-root", "-d"])
            .arg(dir.join("root"))
            .arg(&root)
            .arg(format!("{}k", ROOT_SECTORS * SECTOR / 1024))
            .stdout(std::process::Stdio::null()),
    )?;

    // The GPT disk: KERN-A (Chrome OS kernel) and ROOT (Linux data, legacy-bootable so a
    // chained U-Boot's distro boot scans it), a protective MBR.
    let disk = &img.disk;
    let f = std::fs::File::create(disk).map_err(|e| format!("{}: {e}", disk.display()))?;
    f.set_len(DISK_SECTORS * SECTOR).map_err(|e| e.to_string())?;
    drop(f);
    let cgpt = |args: &[String]| env::run(Command::new("cgpt").args(args).arg(disk).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()));
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    cgpt(&s(&["create"]))?;
    cgpt(&[
        s(&["add", "-i", "1", "-t", "kernel", "-l", "KERN-A"]),
        vec!["-b".into(), KERN_START.to_string(), "-s".into(), KERN_SECTORS.to_string()],
        vec!["-S".into(), KERN_SUCCESSFUL.to_string(), "-T".into(), KERN_TRIES.to_string(), "-P".into(), KERN_PRIORITY.to_string()],
    ]
    .concat())?;
    cgpt(&[s(&["add", "-i", "2", "-t", "data", "-l", "ROOT", "-B", "1"]), vec!["-b".into(), ROOT_START.to_string(), "-s".into(), ROOT_SECTORS.to_string()]].concat())?;
    cgpt(&s(&["boot", "-p"]))?;
    write_at(disk, KERN_START * SECTOR, &std::fs::read(&img.kpart).map_err(|e| e.to_string())?)?;
    write_at(disk, ROOT_START * SECTOR, &std::fs::read(&root).map_err(|e| e.to_string())?)?;
    Ok(img)
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) -> Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.seek(SeekFrom::Start(offset)).and_then(|_| f.write_all(bytes)).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_at(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = vec![0u8; len as usize];
    f.seek(SeekFrom::Start(offset)).and_then(|_| f.read_exact(&mut buf)).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(buf)
}

/// One image of a `dumpimage -l` listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FitImage {
    pub index: usize,
    pub name: String,
    pub kind: String,
    pub size: u64,
    pub load: Option<u64>,
}

/// The default configuration of a `dumpimage -l` listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FitConfig {
    pub kernel: String,
    pub fdt: String,
    pub loadables: Vec<String>,
}

/// Parse `dumpimage -l`: its images, and the default configuration's kernel, fdt and loadables.
pub fn parse_fit_listing(text: &str) -> std::result::Result<(Vec<FitImage>, FitConfig), String> {
    let mut images: Vec<FitImage> = Vec::new();
    let mut default = None;
    let mut configs: Vec<(String, FitConfig)> = Vec::new();
    let mut in_config = false;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("Image ") {
            // "Image 0 (xenith)"
            let (idx, name) = rest.split_once(' ').ok_or_else(|| format!("bad image line `{t}`"))?;
            let name = name.trim_start_matches('(').trim_end_matches(')').to_string();
            images.push(FitImage { index: idx.parse().map_err(|_| format!("bad image index in `{t}`"))?, name, ..Default::default() });
            in_config = false;
        } else if let Some(rest) = t.strip_prefix("Default Configuration:") {
            default = Some(rest.trim().trim_matches('\'').to_string());
        } else if let Some(rest) = t.strip_prefix("Configuration ") {
            let name = rest.split_once(' ').map(|x| x.1).unwrap_or("").trim_start_matches('(').trim_end_matches(')');
            configs.push((name.to_string(), FitConfig::default()));
            in_config = true;
        } else if let Some((key, value)) = t.split_once(':') {
            let value = value.trim();
            if in_config {
                let Some((_, c)) = configs.last_mut() else { continue };
                match key {
                    "Kernel" => c.kernel = value.to_string(),
                    "FDT" => c.fdt = value.to_string(),
                    "Loadables" => c.loadables.extend(value.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty())),
                    _ => {}
                }
            } else if let Some(i) = images.last_mut() {
                match key {
                    "Type" => i.kind = value.to_string(),
                    "Data Size" => i.size = value.split_whitespace().next().and_then(|n| n.parse().ok()).ok_or_else(|| format!("bad size `{t}`"))?,
                    "Load Address" => i.load = u64::from_str_radix(value.trim_start_matches("0x"), 16).ok(),
                    _ => {}
                }
            }
        } else if in_config && !t.is_empty() && !t.contains(':') {
            // A loadables list continues on the next lines, one name each.
            if let Some((_, c)) = configs.last_mut() {
                if !c.loadables.is_empty() {
                    c.loadables.push(t.to_string());
                }
            }
        }
    }
    let default = default.ok_or("no default configuration")?;
    let config = configs.into_iter().find(|(n, _)| *n == default).map(|(_, c)| c).ok_or_else(|| format!("default configuration `{default}` is not listed"))?;
    Ok((images, config))
}

/// One partition of `cgpt show`: label, type and attribute line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GptEntry {
    pub index: u32,
    pub start: u64,
    pub size: u64,
    pub label: String,
    pub kind: String,
    pub attr: String,
}

/// Parse `cgpt show DRIVE`.
pub fn parse_cgpt_show(text: &str) -> Vec<GptEntry> {
    let mut out: Vec<GptEntry> = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() >= 4 && words[3] == "Label:" {
            if let (Ok(start), Ok(size), Ok(index)) = (words[0].parse(), words[1].parse(), words[2].parse()) {
                let label = line.split_once("Label:").map(|x| x.1.trim().trim_matches('"').to_string()).unwrap_or_default();
                out.push(GptEntry { index, start, size, label, ..Default::default() });
            }
            continue;
        }
        let t = line.trim();
        let Some(e) = out.last_mut() else { continue };
        if let Some(v) = t.strip_prefix("Type:") {
            e.kind = v.trim().to_string();
        } else if let Some(v) = t.strip_prefix("Attr:") {
            e.attr = v.trim().to_string();
        }
    }
    out
}

/// Read the disk image back with the real tools: the GPT and KERN-A's attributes (`cgpt
/// show`), KERN-A's signature against the developer kernel subkey (`vbutil_kernel --verify`),
/// the FIT at the start of its body (`vbutil_kernel --get-vmlinuz`, `dumpimage -l`): every image there,
/// byte-identical to its input, at the load addresses the DTB's module nodes name, and the
/// ROOT partition's ext4 holding the same FIT (`debugfs`). Returns the lines to print.
pub fn check(img: &Image) -> Result<Vec<String>> {
    let mut report = Vec::new();
    let disk = &img.disk;
    let work = img.dir.join("check");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;

    // 1. The GPT.
    let show = env::output(Command::new("cgpt").arg("show").arg(disk))?;
    let parts = parse_cgpt_show(&show);
    let kern = parts.iter().find(|p| p.index == 1).ok_or_else(|| format!("cgpt show lists no partition 1:\n{show}"))?;
    let want_attr = format!("priority={KERN_PRIORITY} tries={KERN_TRIES} successful={KERN_SUCCESSFUL}");
    if kern.label != "KERN-A" || kern.kind != "ChromeOS kernel" || kern.attr != want_attr {
        return Err(format!("partition 1 is `{}` ({}), attributes `{}`; wanted KERN-A (ChromeOS kernel), `{want_attr}`", kern.label, kern.kind, kern.attr));
    }
    report.push(format!("cgpt show: partition 1 `{}` ({}) at sector {}, {} sectors, {}", kern.label, kern.kind, kern.start, kern.size, kern.attr));
    let root = parts.iter().find(|p| p.index == 2).ok_or_else(|| format!("cgpt show lists no partition 2:\n{show}"))?;
    report.push(format!("cgpt show: partition 2 `{}` ({}) at sector {}, {} sectors, {}", root.label, root.kind, root.start, root.size, root.attr));
    for (flag, want) in [("-P", KERN_PRIORITY), ("-T", KERN_TRIES), ("-S", KERN_SUCCESSFUL)] {
        let got = env::output(Command::new("cgpt").args(["show", "-i", "1", flag]).arg(disk))?;
        if got.trim().parse::<u64>().ok() != Some(want) {
            return Err(format!("cgpt show -i 1 {flag}: `{}`, wanted {want}", got.trim()));
        }
    }

    // 2. KERN-A's bytes, as the firmware reads them, verified against the developer subkey.
    let part = work.join("kern-a.bin");
    write(&part, read_at(disk, kern.start * SECTOR, kern.size * SECTOR)?)?;
    let subkey = Path::new(DEVKEYS).join("kernel_subkey.vbpubk");
    let verify = env::output(Command::new("vbutil_kernel").arg("--verify").arg(&part).arg("--signpubkey").arg(&subkey).arg("--verbose"))
        .map_err(|e| format!("KERN-A does not verify with {}: {e}", subkey.display()))?;
    let squashed: Vec<String> = verify.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    for needle in ["Signature: valid", "Body verification succeeded."] {
        if !squashed.iter().any(|l| l == needle) {
            return Err(format!("vbutil_kernel --verify printed no `{needle}`:\n{verify}"));
        }
    }
    let config = verify.split_once("Config:").map(|x| x.1.trim()).unwrap_or("");
    if config != XENITH_CMDLINE {
        return Err(format!("KERN-A's config is `{config}`, wanted `{XENITH_CMDLINE}`"));
    }
    report.push(format!("vbutil_kernel --verify (signpubkey {}): keyblock signature valid, body verification succeeded, config `{config}`", subkey.display()));

    // 3. The FIT inside it: what the firmware hands to U-Boot's bootm.
    let fit = work.join("fit.itb");
    env::run(Command::new("vbutil_kernel").arg("--get-vmlinuz").arg(&part).arg("--vmlinuz-out").arg(&fit).stdout(std::process::Stdio::null()))?;
    let built = std::fs::read(&img.fit).map_err(|e| e.to_string())?;
    let got = std::fs::read(&fit).map_err(|e| e.to_string())?;
    // The body is the FIT, then vbutil_kernel's own config and bootloader pages.
    if got.len() < built.len() || got[..built.len()] != built[..] {
        return Err(format!("KERN-A's body ({} bytes) does not start with the FIT built ({} bytes)", got.len(), built.len()));
    }
    if got.len() as u64 > KERNEL_BUFFER {
        return Err(format!("KERN-A's body is {} bytes, more than the stock firmware's kernel buffer ({KERNEL_BUFFER} bytes at 0x42000000)", got.len()));
    }
    report.push(format!(
        "KERN-A's body: {} bytes ({:.2} MiB), within the stock firmware's {} MiB kernel buffer; the FIT {} bytes",
        got.len(),
        got.len() as f64 / (1 << 20) as f64,
        KERNEL_BUFFER >> 20,
        built.len()
    ));
    let listing = env::output(Command::new("dumpimage").arg("-l").arg(&fit))?;
    let (images, cfg) = parse_fit_listing(&listing)?;
    let find = |name: &str| images.iter().find(|i| i.name == name).ok_or_else(|| format!("dumpimage -l lists no image `{name}`:\n{listing}"));
    let kernel_addr = img.layout.module_addr(Kind::Kernel);
    let initrd_addr = img.layout.module_addr(Kind::Ramdisk);
    let wanted: [(&str, &str, Option<u64>, &Path); 4] = [
        (IMG_XENITH, "Kernel Image", Some(img.hypervisor_addr), &img.bundle),
        (IMG_KERNEL, "Kernel Image", Some(kernel_addr), &img.kernel),
        (IMG_INITRD, "RAMDisk Image", Some(initrd_addr), &img.initrd),
        (IMG_FDT, "Flat Device Tree", None, &img.dtb),
    ];
    for (name, kind, load, source) in wanted {
        let i = find(name)?;
        if i.kind != kind || i.load != load {
            return Err(format!("FIT image `{name}`: {} at {:?}, wanted {kind} at {load:?}", i.kind, i.load));
        }
        let out = work.join(format!("{name}.bin"));
        env::run(Command::new("dumpimage").args(["-T", "flat_dt", "-p", &i.index.to_string(), "-o"]).arg(&out).arg(&fit).stdout(std::process::Stdio::null()))?;
        let (a, b) = (std::fs::read(&out).map_err(|e| e.to_string())?, std::fs::read(source).map_err(|e| e.to_string())?);
        if a != b || i.size != b.len() as u64 {
            return Err(format!("FIT image `{name}` ({} bytes) differs from {} ({} bytes)", a.len(), source.display(), b.len()));
        }
        report.push(format!(
            "dumpimage -l: image {} `{name}`: {kind}, {} bytes{}, identical to {}",
            i.index,
            i.size,
            load.map(|l| format!(" at {l:#x}")).unwrap_or_default(),
            source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        ));
    }
    if cfg.kernel != IMG_XENITH || cfg.fdt != IMG_FDT || cfg.loadables != [IMG_KERNEL, IMG_INITRD] {
        return Err(format!("the default configuration is kernel `{}`, fdt `{}`, loadables {:?}", cfg.kernel, cfg.fdt, cfg.loadables));
    }
    report.push(format!("dumpimage -l: default configuration: kernel {}, fdt {}, loadables {}", cfg.kernel, cfg.fdt, cfg.loadables.join(", ")));

    // The kernel image an old bootm copies: xenith, then at its BSS start the module bundle,
    // whose modules are the loadables' bytes and go where the loadables load (no second copy).
    let xenith = std::fs::read(work.join(format!("{IMG_XENITH}.bin"))).map_err(|e| e.to_string())?;
    let plain = std::fs::read(&img.hypervisor).map_err(|e| e.to_string())?;
    if xenith.get(..plain.len()) != Some(&plain[..]) {
        return Err(format!("the FIT's `{IMG_XENITH}` does not start with {}", img.hypervisor.display()));
    }
    let at = img.layout.header_offset as usize;
    let header = bundle::Header::parse(xenith.get(at..).unwrap_or(&[])).map_err(|e| format!("the FIT's `{IMG_XENITH}` at its BSS start (+{at:#x}): {e}"))?;
    header.verify(&xenith[at..]).map_err(|e| e.to_string())?;
    let placed: Vec<(u64, u64)> = header.placed().map(|(m, a)| (a, u64::from(m.size))).collect();
    let want = [(kernel_addr, size_of(&img.kernel)?), (initrd_addr, size_of(&img.initrd)?)];
    if u64::from(header.dest) != img.layout.dest || placed != want || u64::from(header.dest) < img.layout.dest {
        return Err(format!("the module bundle moves to {:#x} and places {placed:x?}; the loadables say {want:x?}", header.dest));
    }
    if built.len() as u64 >= size_of(&img.bundle)? + size_of(&img.kernel)? {
        return Err(format!("the FIT ({} bytes) carries dom0's kernel twice", built.len()));
    }
    report.push(format!(
        "module bundle in `{IMG_XENITH}` at +{at:#x} (xenith's BSS start): moves to {:#x} (past xenith's end), dom0 kernel at {kernel_addr:#x}, initramfs at {initrd_addr:#x}, CRC-32s match; the loadables' data lies inside it",
        header.dest
    ));

    // 4. The DTB is the Snow's and names the loadables' addresses and sizes as dom0's modules.
    let fdt = work.join(format!("{IMG_FDT}.bin"));
    let fdtget = |args: &[&str]| env::output(Command::new("fdtget").args(args.iter().take(1)).arg(&fdt).args(args.iter().skip(1)));
    let compatible = fdtget(&["-ts", "/", "compatible"])?;
    if !compatible.split_whitespace().any(|c| c == "google,snow") {
        return Err(format!("the FIT's DTB is not the Snow's: compatible `{}`", compatible.trim()));
    }
    let bootargs = fdtget(&["-ts", "/chosen", "bootargs"])?;
    if bootargs.trim() != XENITH_CMDLINE {
        return Err(format!("the DTB's /chosen/bootargs is `{}`, wanted `{XENITH_CMDLINE}`", bootargs.trim()));
    }
    for (name, kind) in [(IMG_KERNEL, "multiboot,kernel"), (IMG_INITRD, "multiboot,ramdisk")] {
        let i = find(name)?;
        let node = format!("/chosen/module@{:x}", i.load.unwrap_or(0));
        let reg = fdtget(&["-tx", &node, "reg"])?;
        let compat = fdtget(&["-ts", &node, "compatible"])?;
        let want = format!("{:x} {:x}", i.load.unwrap_or(0), i.size);
        if reg.trim() != want || compat.split_whitespace().collect::<Vec<_>>() != [kind, "multiboot,module"] {
            return Err(format!("{node}: reg `{}`, compatible `{}`; wanted `{want}` and `{kind} multiboot,module`", reg.trim(), compat.trim()));
        }
    }
    report.push(format!(
        "DTB (fdtget): compatible {}; /chosen/bootargs `{XENITH_CMDLINE}`; module@{kernel_addr:x} (multiboot,kernel) and module@{initrd_addr:x} (multiboot,ramdisk) at the loadables' addresses and sizes",
        compatible.trim()
    ));

    // 5. ROOT's ext4 holds the same FIT and the boot script.
    env::ensure_tool("debugfs", "e2fsprogs")?;
    let root_img = work.join("root.ext4");
    write(&root_img, read_at(disk, root.start * SECTOR, root.size * SECTOR)?)?;
    let copy = work.join("root-fit.itb");
    env::run(Command::new("debugfs").arg("-R").arg(format!("dump /boot/xenith-snow.itb {}", copy.display())).arg(&root_img).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()))?;
    if std::fs::read(&copy).ok().as_deref() != Some(&built[..]) {
        return Err("ROOT's /boot/xenith-snow.itb is not the FIT built".into());
    }
    // debugfs prints its banner on stderr.
    let ls = Command::new("debugfs").args(["-R", "ls /boot"]).arg(&root_img).output().map_err(|e| format!("debugfs: {e}"))?;
    let ls = String::from_utf8_lossy(&ls.stdout);
    if !ls.contains("boot.scr") {
        return Err(format!("ROOT's /boot has no boot.scr: {ls}"));
    }
    report.push("ROOT (ext4): /boot/xenith-snow.itb identical to the FIT, /boot/boot.scr".into());
    Ok(report)
}

/// `cargo xtask snow`: build the image and check it; the number of checks that passed.
pub fn main(args: &[String]) -> Result<usize> {
    if !args.is_empty() {
        return Err(format!("snow: unknown options {args:?}"));
    }
    let img = build()?;
    let lines = check(&img)?;
    for l in &lines {
        println!("  {l}");
    }
    println!("snow: {} ({} MiB): KERN-A holds the signed FIT; {} checks passed", img.disk.display(), (DISK_SECTORS * SECTOR) >> 20, lines.len());
    println!("snow: write it to an SD card with `dd if={} of=/dev/sdX bs=4M conv=fsync` (README: Booting on the Snow)", img.disk.display());
    Ok(lines.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "FIT description: test
Created:         Thu Dec  3 19:25:30 2026
 Image 0 (xenith)
  Description:  xenith
  Type:         Kernel Image
  Compression:  uncompressed
  Data Size:    100000 Bytes = 97.66 KiB = 0.10 MiB
  Architecture: ARM
  OS:           Linux
  Load Address: 0x40010000
  Entry Point:  0x40010000
 Image 1 (dom0-initramfs)
  Type:         RAMDisk Image
  Data Size:    5000 Bytes = 4.88 KiB = 0.00 MiB
  Load Address: 0x4b200000
  Entry Point:  unavailable
 Image 2 (fdt-snow)
  Type:         Flat Device Tree
  Data Size:    48265 Bytes = 47.13 KiB = 0.05 MiB
  Architecture: ARM
 Default Configuration: 'snow'
 Configuration 0 (snow)
  Description:  c
  Kernel:       xenith
  FDT:          fdt-snow
  Loadables:    dom0-linux
                dom0-initramfs
";

    #[test]
    fn dumpimage_listing_gives_images_and_the_default_configuration() {
        let (images, cfg) = parse_fit_listing(LISTING).unwrap();
        assert_eq!(images.len(), 3);
        assert_eq!(images[0], FitImage { index: 0, name: "xenith".into(), kind: "Kernel Image".into(), size: 100000, load: Some(0x4001_0000) });
        assert_eq!(images[1].load, Some(0x4b20_0000));
        assert_eq!(images[2].load, None);
        assert_eq!(cfg.kernel, "xenith");
        assert_eq!(cfg.fdt, "fdt-snow");
        assert_eq!(cfg.loadables, ["dom0-linux", "dom0-initramfs"]);
        assert!(parse_fit_listing(&LISTING.replace("Default Configuration: 'snow'", "Default Configuration: 'other'")).is_err());
    }

    #[test]
    fn cgpt_show_gives_labels_types_and_attributes() {
        let show = "       start        size    part  contents
           0           1          PMBR
        2048       32768       1  Label: \"KERN-A\"
                                  Type: ChromeOS kernel
                                  UUID: 9F07F2A4-87A8-9244-A574-CB37DA1FC3BA
                                  Attr: priority=10 tries=5 successful=1 
       34816       65536       2  Label: \"ROOT\"
                                  Type: Linux data
                                  Attr: legacy_boot=1 
      102367          32          Sec GPT table
";
        let p = parse_cgpt_show(show);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0], GptEntry { index: 1, start: 2048, size: 32768, label: "KERN-A".into(), kind: "ChromeOS kernel".into(), attr: "priority=10 tries=5 successful=1".into() });
        assert_eq!((p[1].label.as_str(), p[1].attr.as_str()), ("ROOT", "legacy_boot=1"));
    }

    #[test]
    fn chosen_modules_name_both_modules_and_refuse_quotes() {
        let s = chosen_modules_dts((0x4900_0000, 0x51_0000), (0x4b20_0000, 0x18_0000), "console=tty1").unwrap();
        assert!(s.contains("module@49000000 {") && s.contains("reg = <0x49000000 0x510000>;") && s.contains("bootargs = \"console=tty1\";"));
        assert!(s.contains("module@4b200000 {") && s.contains("\"multiboot,ramdisk\", \"multiboot,module\""));
        assert!(chosen_modules_dts((0, 1), (2, 3), "a\"b").is_err());
    }

    #[test]
    fn the_bundle_follows_the_image_at_its_bss_start_and_round_trips() {
        let image = vec![0xaau8; 0x6_c2b0];
        let (kernel, initrd) = (vec![1u8; 5000], vec![2u8; 3000]);
        let layout = Layout::new(0x4001_0000, 0x4008_e000, 0x408d_4000, 5000, 3000).unwrap();
        let b = make_bundle(&image, &layout, &kernel, &initrd).unwrap();
        assert_eq!(b.len() as u64, 0x7_e000 + layout.total_len);
        assert_eq!(&b[..image.len()], &image[..]);
        assert!(b[image.len()..0x7_e000].iter().all(|&x| x == 0), "zeros up to the BSS start");
        let h = bundle::Header::parse(&b[0x7_e000..]).unwrap();
        assert_eq!(u64::from(h.dest), 0x40a0_0000);
        h.verify(&b[0x7_e000..]).unwrap();
        let placed: Vec<u64> = h.placed().map(|(_, a)| a).collect();
        assert_eq!(placed, [layout.module_addr(Kind::Kernel), layout.module_addr(Kind::Ramdisk)]);
        let k = (0x7_e000 + layout.modules[0].1) as usize;
        assert_eq!(&b[k..k + 5000], &kernel[..]);
        // An image longer than its BSS start, or a module of another size, is refused.
        assert!(make_bundle(&vec![0; 0x7_e001], &layout, &kernel, &initrd).is_err());
        assert!(make_bundle(&image, &layout, &kernel[..10], &initrd).is_err());
    }

    #[test]
    fn fdt_prop_finds_a_property_by_node_path() {
        let dir = std::env::temp_dir().join(format!("xenith-fdt-prop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dts = dir.join("t.dts");
        std::fs::write(&dts, "/dts-v1/;\n/ { a = <1>; images { x { data = [01 02 03]; }; y { data = <0xdeadbeef>; h { value = <5>; }; }; }; };\n").unwrap();
        let dtb = dir.join("t.dtb");
        // dtc: device-tree-compiler, one of the Snow image tools `cargo xtask setup` installs.
        assert!(Command::new("dtc").args(["-q", "-I", "dts", "-O", "dtb", "-o"]).arg(&dtb).arg(&dts).status().is_ok_and(|s| s.success()), "dtc");
        let blob = std::fs::read(&dtb).unwrap();
        let (at, len) = fdt_prop(&blob, "/images/y", "data").unwrap();
        assert_eq!((len, &blob[at..at + 4]), (4, &[0xde, 0xad, 0xbe, 0xef][..]));
        let (at, len) = fdt_prop(&blob, "/images/x", "data").unwrap();
        assert_eq!(&blob[at..at + len], &[1, 2, 3]);
        assert!(fdt_prop(&blob, "/images/y/h", "value").is_some());
        assert!(fdt_prop(&blob, "/images", "data").is_none());
        assert!(fdt_prop(&blob, "/", "a").is_some());
        assert!(fdt_prop(&blob[4..], "/", "a").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
