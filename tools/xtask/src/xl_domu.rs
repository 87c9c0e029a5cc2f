//! The domU that Xen's toolstack creates in Linux dom0 (`xl create`), and what dom0 needs to
//! serve it, all packed into the toolstack's cpio archive (toolstack.rs):
//!
//! - /var/lib/xenith/Image: Debian's arm64 kernel (the one dom0 runs) and
//!   /var/lib/xenith/domu.cpio: the domU's busybox initramfs, whose /init prints
//!   [`MARKER`], loads xen-blkfront, xen-netfront and ext4, mounts the disk (xvda) and prints
//!   the SHA-256 of the file on it, gives eth0 10.0.0.2/24, pings dom0 (10.0.0.1), prints
//!   [`DONE`], keeps vCPU 0 busy for [`BUSY_S`] and stays up until dom0 destroys it.
//! - /var/lib/xenith/disk.img: an ext2 image (host `mke2fs -d`) holding [`PAYLOAD_NAME`],
//!   whose checksum the system test checks against [`payload_sha256`].
//! - /etc/xenith/domu.cfg: the xl configuration: 2 vCPUs, 128 MiB, the disk as a raw file
//!   through blkback (`backendtype=phy`), one vif through netback, routed.
//! - dom0's backend modules (loop, xen-blkback, xen-netback) in /lib/modules/xl, listed in
//!   load order in /etc/xenith/xl-modules.
//! - libxl's hotplug scripts, written here for busybox sh rather than Debian's (which need
//!   bash and xen-utils-common's helpers): /etc/xen/scripts/block attaches the file to a free
//!   loop device and writes blkback's `physical-device` (hex major:minor),
//!   `physical-device-path` and `hotplug-status`; on remove it detaches the loop device.
//!   /etc/xen/scripts/vif-route does the job of Xen's vif-route: brings the vif up with dom0's
//!   address [`DOM0_IP`]/32, routes the domU's address (the vif's `ip` in xenstore) through it
//!   and writes `hotplug-status connected` (netback waits for it). Both log to
//!   /var/log/xen/hotplug.log, which the toolstack script prints.

use crate::env::{self, Result};
use crate::linux::Cpio;
use std::path::Path;
use std::process::Command;

/// Printed by the domU's /init once its userspace runs (seen through `xl console`).
pub const MARKER: &str = "XENITH-XL-DOMU-USERSPACE-OK";
/// Printed by the domU's /init after its disk and network checks.
pub const DONE: &str = "XENITH-XL-DOMU-DONE";
/// The domain's name in the xl configuration.
pub const NAME: &str = "xenith-domu";
/// How long the domU keeps its vCPU 0 busy after [`DONE`] (s): dom0 measures the CPU share a
/// cap leaves it meanwhile.
pub const BUSY_S: u32 = 40;
/// The domU's vCPUs and memory (MiB).
pub const VCPUS: u32 = 2;
pub const MEMORY_MIB: u32 = 128;
/// dom0's address on the vif and the domU's.
pub const DOM0_IP: &str = "10.0.0.1";
pub const DOMU_IP: &str = "10.0.0.2";
/// Pings the domU sends to dom0.
pub const PINGS: u32 = 3;
/// The file on the domU's disk.
pub const PAYLOAD_NAME: &str = "payload.bin";
const PAYLOAD_LEN: usize = 1 << 20;

/// Where dom0 keeps the domU's files.
const DIR: &str = "var/lib/xenith";
/// Modules dom0 loads for the backends, and the domU for its frontends and file system.
const DOM0_MODULES: &[&str] = &["loop", "xen-blkback", "xen-netback"];
/// (ext4 asks the crypto API for crc32c at mount time, which no `depends=` names.)
const DOMU_MODULES: &[&str] = &["xen-blkfront", "xen-netfront", "crc32c_generic", "ext4"];

/// The payload: 1 MiB from a fixed-seed xorshift generator (not compressible, not all zeros).
fn payload() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut v = Vec::with_capacity(PAYLOAD_LEN);
    while v.len() < PAYLOAD_LEN {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(PAYLOAD_LEN);
    v
}

/// The payload's SHA-256 in hex, computed by the host's `sha256sum` (fed on its stdin).
pub fn payload_sha256() -> Result<String> {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run sha256sum: {e}"))?;
    child.stdin.take().ok_or("no stdin")?.write_all(&payload()).map_err(|e| format!("sha256sum: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("sha256sum: {e}"))?;
    let out = String::from_utf8_lossy(&out.stdout);
    out.split_whitespace().next().map(str::to_string).filter(|h| h.len() == 64).ok_or_else(|| format!("sha256sum printed {out:?}"))
}

/// The domU's disk: an 8 MiB ext2 image holding the payload (`mke2fs -d`, e2fsprogs).
fn disk_image() -> Result<Vec<u8>> {
    env::ensure_tool("mke2fs", "e2fsprogs")?;
    let dir = env::cache_dir().join("linux").join("xl-disk");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(dir.join(PAYLOAD_NAME), payload()).map_err(|e| e.to_string())?;
    let img = env::cache_dir().join("linux").join("xl-disk.img");
    let _ = std::fs::remove_file(&img);
    env::output(Command::new("mke2fs").args(["-q", "-F", "-t", "ext2", "-E", "root_owner=0:0", "-d"]).arg(&dir).arg(&img).arg("8M"))?;
    std::fs::read(&img).map_err(|e| format!("{}: {e}", img.display()))
}

/// The domU's /init (see the module documentation).
fn domu_init(modules: &[(String, Vec<u8>)]) -> String {
    let mut s = format!(
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s /bin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\n\
         echo \"{MARKER} uptime $(cut -d' ' -f1 /proc/uptime) cpus $(cat /sys/devices/system/cpu/online)\"\n"
    );
    for (name, _) in modules {
        s.push_str(&format!("insmod /lib/modules/{name} || echo \"domu: insmod {name} failed\"\n"));
    }
    s.push_str(&format!(
        "i=0; until [ -b /dev/xvda ] || [ $i -ge 100 ]; do sleep 0.1; i=$((i+1)); done\n\
         mkdir -p /mnt\n\
         if mount -t ext4 -o ro /dev/xvda /mnt; then echo \"domu-disk: sha256 $(sha256sum /mnt/{PAYLOAD_NAME} | cut -d' ' -f1)\"; umount /mnt; else echo \"domu-disk: mount /dev/xvda failed\"; fi\n\
         i=0; until [ -e /sys/class/net/eth0 ] || [ $i -ge 100 ]; do sleep 0.1; i=$((i+1)); done\n\
         ip addr add {DOMU_IP}/24 dev eth0 && ip link set eth0 up || echo \"domu-net: eth0 not configured\"\n\
         echo \"domu-net: $(ping -c {PINGS} -W 5 {DOM0_IP} 2>&1 | grep 'packets transmitted')\"\n\
         echo \"domu: vcpus $(grep -c ^processor /proc/cpuinfo)\"\n\
         echo {DONE}\n\
         read u _ < /proc/uptime; end=$(( ${{u%.*}} + {BUSY_S} ))\n\
         (while read u _ < /proc/uptime && [ ${{u%.*}} -lt $end ]; do :; done) & taskset -p 1 $! > /dev/null\n\
         while true; do sleep 3600; done\n"
    ));
    s
}

/// The domU's initramfs: busybox, its modules, /init.
fn domu_initramfs(busybox: &[u8], modules: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut c = crate::linux::busybox_archive(busybox, modules);
    c.file("init", 0o755, domu_init(modules).as_bytes());
    c.finish()
}

/// The xl configuration.
fn config() -> String {
    format!(
        "name = \"{NAME}\"\n\
         type = \"pvh\"\n\
         kernel = \"/{DIR}/Image\"\n\
         ramdisk = \"/{DIR}/domu.cpio\"\n\
         extra = \"console=hvc0 rdinit=/init cma=0\"\n\
         memory = {MEMORY_MIB}\n\
         vcpus = {VCPUS}\n\
         disk = [ \"format=raw,vdev=xvda,access=rw,backendtype=phy,target=/{DIR}/disk.img\" ]\n\
         vif = [ \"mac=00:16:3e:00:00:02,ip={DOMU_IP},script=vif-route\" ]\n"
    )
}

/// libxl's `block` hotplug script (see the module documentation).
const BLOCK_SCRIPT: &str = r#"#!/bin/sh
# libxl runs this with "add" or "remove" and XENBUS_PATH=backend/vbd/DOMID/DEVID: serve the
# file in the backend's params through a loop device as blkback's physical device.
exec >>/var/log/xen/hotplug.log 2>&1
echo "block $1 $XENBUS_PATH"
fail() { echo "block: $1"; xenstore-write "$XENBUS_PATH/hotplug-error" "$1" "$XENBUS_PATH/hotplug-status" error; exit 1; }
case "$1" in
add)
    file=$(xenstore-read "$XENBUS_PATH/params") || fail "no params"
    ro=; [ "$(xenstore-read "$XENBUS_PATH/mode")" = r ] && ro=-r
    dev=$(losetup -f) || fail "no free loop device"
    losetup $ro "$dev" "$file" || fail "losetup $dev $file failed"
    mm=$(cat "/sys/block/${dev#/dev/}/dev") || fail "no sysfs node for $dev"
    xenstore-write "$XENBUS_PATH/physical-device" "$(printf '%x:%x' "${mm%:*}" "${mm#*:}")" \
        "$XENBUS_PATH/physical-device-path" "$dev" "$XENBUS_PATH/hotplug-status" connected || fail "xenstore-write failed"
    echo "block: $file on $dev ($mm)"
    ;;
remove)
    dev=$(xenstore-read "$XENBUS_PATH/physical-device-path") && losetup -d "$dev" && echo "block: $dev detached"
    ;;
esac
exit 0
"#;

/// libxl's vif hotplug script for routed vifs (see the module documentation).
fn vif_route_script() -> String {
    format!(
        r#"#!/bin/sh
# libxl runs this with "online" or "offline" (and type_if=vif), vif=vifDOMID.DEVID and
# XENBUS_PATH=backend/vif/DOMID/DEVID: route the domU's address through the vif.
exec >>/var/log/xen/hotplug.log 2>&1
echo "vif-route $1 $vif $XENBUS_PATH"
[ -n "$vif" ] || vif="vif$(basename "$(dirname "$XENBUS_PATH")").$(basename "$XENBUS_PATH")"
fail() {{ echo "vif-route: $1"; xenstore-write "$XENBUS_PATH/hotplug-error" "$1" "$XENBUS_PATH/hotplug-status" error; exit 1; }}
case "$1" in
online)
    ip link set "$vif" up || fail "ip link set $vif up failed"
    ip addr add {DOM0_IP}/32 dev "$vif" || fail "ip addr add on $vif failed"
    for a in $(xenstore-read "$XENBUS_PATH/ip" 2>/dev/null); do ip route add "$a/32" dev "$vif" src {DOM0_IP} || fail "route to $a failed"; done
    xenstore-write "$XENBUS_PATH/hotplug-status" connected || fail "xenstore-write failed"
    echo "vif-route: $vif up"
    ;;
offline)
    ip link set "$vif" down 2>/dev/null
    ;;
esac
exit 0
"#
    )
}

/// Add the domU's files, dom0's backend modules and the hotplug scripts to the toolstack's
/// archive.
pub fn add_to(c: &mut Cpio) -> Result<()> {
    let (kdir, kernel, version) = crate::linux::stable_kernel()?;
    let moddir = kdir.join("lib/modules").join(&version);
    let bb = env::debian_package("busybox-static", "arm64")?.join("bin/busybox");
    let busybox = std::fs::read(&bb).map_err(|e| format!("{}: {e}", bb.display()))?;
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    for d in ["var", "var/lib", DIR, "etc/xen", "etc/xen/scripts", "lib/modules", "lib/modules/xl"] {
        c.dir(d);
    }
    c.file(&format!("{DIR}/Image"), 0o644, &read(&kernel)?);
    let domu_modules = crate::linux::modules_named(&moddir, DOMU_MODULES)?;
    c.file(&format!("{DIR}/domu.cpio"), 0o644, &domu_initramfs(&busybox, &domu_modules));
    c.file(&format!("{DIR}/disk.img"), 0o644, &disk_image()?);
    c.file("etc/xenith/domu.cfg", 0o644, config().as_bytes());
    let dom0_modules = crate::linux::modules_named(&moddir, DOM0_MODULES)?;
    let mut list = String::new();
    for (name, bytes) in &dom0_modules {
        c.file(&format!("lib/modules/xl/{name}"), 0o644, bytes);
        list.push_str(name);
        list.push('\n');
    }
    c.file("etc/xenith/xl-modules", 0o644, list.as_bytes());
    c.file("etc/xen/scripts/block", 0o755, BLOCK_SCRIPT.as_bytes());
    c.file("etc/xen/scripts/vif-route", 0o755, vif_route_script().as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_fixed_and_varied() {
        let (a, b) = (payload(), payload());
        assert_eq!(a, b);
        assert_eq!(a.len(), PAYLOAD_LEN);
        let zeros = a.iter().filter(|&&x| x == 0).count();
        assert!(zeros < PAYLOAD_LEN / 64, "{zeros} zero bytes");
    }

    #[test]
    fn config_names_the_files_the_archive_holds() {
        let c = config();
        for f in ["/var/lib/xenith/Image", "/var/lib/xenith/domu.cpio", "/var/lib/xenith/disk.img", "vcpus = 2", "script=vif-route"] {
            assert!(c.contains(f), "{f} not in {c}");
        }
    }
}
