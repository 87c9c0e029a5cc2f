//! Paths and external tools: the workspace, the target dir, rustup targets, QEMU, Debian
//! packages. Everything `cargo xtask` needs on a fresh Debian machine is installed from here.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub type Result<T> = std::result::Result<T, String>;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// Where built images go.
pub fn images_dir() -> PathBuf {
    target_dir().join("xenith")
}

/// Fetched fixtures (Debian packages, dumped DTBs): never committed.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XENITH_CACHE").map(PathBuf::from).unwrap_or_else(|| root().join(".cache"))
}

pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("XENITH_FIXTURES").map(PathBuf::from).unwrap_or_else(|| cache_dir().join("fixtures"))
}

/// Run a command to completion, failing with its name if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed: {status}"))
    }
}

/// Run a command and return its stdout.
pub fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.stderr(Stdio::inherit()).output().map_err(|e| format!("cannot run {shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{shown} failed: {}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false)
}

/// The bare-metal targets from rust-toolchain.toml, installed if missing.
pub fn ensure_rust_targets() -> Result<()> {
    let toml = std::fs::read_to_string(root().join("rust-toolchain.toml")).map_err(|e| e.to_string())?;
    let targets: Vec<String> = toml
        .lines()
        .find(|l| l.trim_start().starts_with("targets"))
        .map(|l| l.split('"').skip(1).step_by(2).map(String::from).collect())
        .unwrap_or_default();
    let sysroot = output(Command::new("rustc").arg("--print").arg("sysroot").current_dir(root()))?;
    let missing: Vec<&String> =
        targets.iter().filter(|t| !Path::new(sysroot.trim()).join("lib/rustlib").join(t).exists()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Rust targets {missing:?}");
    run(Command::new("rustup").arg("target").arg("add").args(&missing).current_dir(root()))
}

/// `(major, minor)` of the installed qemu-system-aarch64, if any.
pub fn qemu_version() -> Option<(u32, u32)> {
    let out = Command::new("qemu-system-aarch64").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split("version ").nth(1)?.split_whitespace().next()?;
    let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((it.next()??, it.next()??))
}

static APT_UPDATED: std::sync::Once = std::sync::Once::new();

fn apt_update() {
    APT_UPDATED.call_once(|| {
        // A partial failure (a mirror mid-sync for one architecture) is not fatal: what we
        // need usually resolved; a real miss shows up in the install/download that follows.
        let _ = Command::new("apt-get").args(["update", "-q"]).stdout(Stdio::null()).status();
    });
}

/// QEMU >= 9.2 (SMMUv3 stage 2); installs 10.x from bookworm-backports when run as root.
pub fn ensure_qemu() -> Result<()> {
    if let Some(v) = qemu_version() {
        if v >= (9, 2) {
            return Ok(());
        }
        eprintln!("xtask: qemu-system-aarch64 {}.{} has no SMMUv3 stage 2; need >= 9.2", v.0, v.1);
    }
    if !is_root() {
        return Err("qemu-system-aarch64 >= 9.2 is needed: as root, `cargo xtask setup` installs it from bookworm-backports".into());
    }
    ensure_backports_source()?;
    apt_update();
    eprintln!("xtask: installing qemu-system-arm from bookworm-backports");
    run(Command::new("apt-get").args(["install", "-y", "-q", "-t", "bookworm-backports", "qemu-system-arm"]).env("DEBIAN_FRONTEND", "noninteractive"))?;
    match qemu_version() {
        Some(v) if v >= (9, 2) => Ok(()),
        v => Err(format!("after installing, qemu-system-aarch64 is {v:?}, still < 9.2")),
    }
}

/// A Debian tool a test uses (e.g. `dtc` from device-tree-compiler), installed when missing
/// (as root).
pub fn ensure_tool(binary: &str, package: &str) -> Result<()> {
    if Command::new(binary).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok() {
        return Ok(());
    }
    if !is_root() {
        return Err(format!("`{binary}` is needed: as root, `apt-get install {package}`"));
    }
    apt_update();
    eprintln!("xtask: installing {package}");
    run(Command::new("apt-get").args(["install", "-y", "-q", package]).env("DEBIAN_FRONTEND", "noninteractive"))
}

/// The Debian tools `cargo xtask snow` builds and checks the Snow's SD card image with:
/// `(binary, package)`. vboot-kernel-utils also brings the developer keys (/usr/share/vboot/devkeys).
pub const SNOW_TOOLS: &[(&str, &str)] = &[
    ("mkimage", "u-boot-tools"),
    ("dumpimage", "u-boot-tools"),
    ("vbutil_kernel", "vboot-kernel-utils"),
    ("cgpt", "cgpt"),
    ("dtc", "device-tree-compiler"),
    ("fdtget", "device-tree-compiler"),
    ("mkfs.ext4", "e2fsprogs"),
];

/// Every tool of [`SNOW_TOOLS`], installed when missing (as root).
pub fn ensure_snow_tools() -> Result<()> {
    for (binary, package) in SNOW_TOOLS {
        ensure_tool(binary, package)?;
    }
    Ok(())
}

/// Download a Debian package (`name:arch`) and unpack it under the cache; returns the
/// unpacked root. Cached: a second call does nothing.
pub fn debian_package(name: &str, arch: &str) -> Result<PathBuf> {
    let dir = cache_dir().join("debs").join(format!("{name}_{arch}"));
    if dir.join(".unpacked").exists() {
        return Ok(dir);
    }
    ensure_architecture(arch)?;
    apt_update();
    let dl = cache_dir().join("debs/download");
    std::fs::create_dir_all(&dl).map_err(|e| e.to_string())?;
    let spec = format!("{name}:{arch}");
    eprintln!("xtask: fetching Debian package {spec}");
    run(Command::new("apt-get").arg("download").arg(&spec).current_dir(&dl))?;
    let deb = std::fs::read_dir(&dl)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            n.starts_with(&format!("{name}_")) && (n.ends_with(&format!("_{arch}.deb")) || n.ends_with("_all.deb"))
        })
        .ok_or_else(|| format!("apt-get download {spec} left no .deb in {}", dl.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir))?;
    std::fs::write(dir.join(".unpacked"), deb.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// Packages of `arch` can be looked up and downloaded: a foreign architecture is added to
/// dpkg (as root) and apt's lists are fetched again, so that they include it.
fn ensure_architecture(arch: &str) -> Result<()> {
    let native = output(Command::new("dpkg").arg("--print-architecture")).unwrap_or_default();
    if native.trim() == arch || arch == "all" {
        return Ok(());
    }
    let foreign = output(Command::new("dpkg").arg("--print-foreign-architectures")).unwrap_or_default();
    if foreign.lines().any(|l| l.trim() == arch) {
        return Ok(());
    }
    if !is_root() {
        return Err(format!("Debian architecture {arch} is not enabled: as root, run `dpkg --add-architecture {arch} && apt-get update`"));
    }
    eprintln!("xtask: adding the Debian architecture {arch} (dpkg --add-architecture) and updating apt's lists");
    run(Command::new("dpkg").args(["--add-architecture", arch]))?;
    // Not `apt_update`: that may have run already, before this architecture was known.
    let _ = Command::new("apt-get").args(["update", "-q"]).stdout(Stdio::null()).status();
    Ok(())
}

/// The package a Debian metapackage depends on first (e.g. `linux-image-arm64` -> `linux-image-6.1.0-NN-arm64`).
pub fn debian_depends(meta: &str, arch: &str) -> Result<String> {
    debian_depends_in(meta, arch, Suite::Stable)
}

/// Which release a package is taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// The version apt would install: Debian stable's (bookworm).
    Stable,
    /// bookworm-backports' (added to apt's sources as root when missing).
    Backports,
}

/// The `Suite::Backports` version of `pkg` in `apt-cache policy`'s version table.
fn backports_version(policy: &str) -> Option<String> {
    let mut version = None;
    for line in policy.lines() {
        let t = line.trim_start_matches([' ', '*']).trim();
        // A version line is "<version> <priority>"; the source lines under it start with the priority.
        let mut words = t.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some(v), Some(p), None) if p.parse::<i32>().is_ok() && v.chars().next().is_some_and(|c| c.is_ascii_digit()) => {
                version = Some(v.to_string())
            }
            (Some(p), Some(_url), Some(suite)) if p.parse::<i32>().is_ok() && suite.contains("-backports") => return version,
            _ => {}
        }
    }
    None
}

/// bookworm-backports in apt's sources (as root), so backports can be looked up.
fn ensure_backports_source() -> Result<()> {
    let src = Path::new("/etc/apt/sources.list.d/xenith-backports.sources");
    let listed = src.exists()
        || output(Command::new("apt-cache").arg("policy")).is_ok_and(|p| p.contains("bookworm-backports"));
    if listed {
        return Ok(());
    }
    if !is_root() {
        return Err("bookworm-backports is not in apt's sources: as root, `cargo xtask setup` adds it".into());
    }
    eprintln!("xtask: adding bookworm-backports ({})", src.display());
    std::fs::write(
        src,
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
    )
    .map_err(|e| format!("cannot write {}: {e}", src.display()))?;
    let _ = Command::new("apt-get").args(["update", "-q"]).stdout(Stdio::null()).status();
    Ok(())
}

/// As [`debian_depends`], from `suite`.
pub fn debian_depends_in(meta: &str, arch: &str, suite: Suite) -> Result<String> {
    ensure_architecture(arch)?;
    if suite == Suite::Backports {
        ensure_backports_source()?;
    }
    apt_update();
    let policy = output(Command::new("apt-cache").arg("policy").arg(format!("{meta}:{arch}")))?;
    let version = match suite {
        // The version apt would install (Debian stable's, not a backport listed first by
        // `apt-cache show`): the kernel the Xen reference figures were taken with.
        Suite::Stable => policy.lines().find_map(|l| l.trim().strip_prefix("Candidate: ")).map(str::trim).filter(|v| *v != "(none)").map(str::to_string),
        Suite::Backports => {
            Some(backports_version(&policy).ok_or_else(|| format!("{meta}:{arch} has no bookworm-backports version in `apt-cache policy`"))?)
        }
    };
    let spec = match version {
        Some(v) => format!("{meta}:{arch}={v}"),
        None => format!("{meta}:{arch}"),
    };
    let show = output(Command::new("apt-cache").arg("show").arg(&spec))?;
    let deps = show
        .lines()
        .find(|l| l.starts_with("Depends:"))
        .ok_or_else(|| format!("{meta}:{arch} has no Depends"))?;
    let first = deps["Depends:".len()..].split(',').next().unwrap_or("").trim();
    let name = first.split_whitespace().next().unwrap_or("").split(':').next().unwrap_or("");
    if name.is_empty() {
        return Err(format!("cannot read {meta}'s dependency from `{deps}`"));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod suite_tests {
    use super::backports_version;

    #[test]
    fn the_backports_version_is_read_from_apt_cache_policy() {
        let policy = "linux-image-arm64:\n  Installed: (none)\n  Candidate: 6.1.158-1\n  Version table:\n     6.12.57-1~bpo12+1 100\n        100 http://deb.debian.org/debian bookworm-backports/main arm64 Packages\n     6.1.158-1 500\n        500 http://deb.debian.org/debian bookworm/main arm64 Packages\n";
        assert_eq!(backports_version(policy).as_deref(), Some("6.12.57-1~bpo12+1"));
        let stable_only = "x:\n  Candidate: 1.0\n  Version table:\n *** 1.0 500\n        500 http://deb.debian.org/debian bookworm/main arm64 Packages\n        100 /var/lib/dpkg/status\n";
        assert_eq!(backports_version(stable_only), None);
    }
}
