//! Extended regions in use: bookworm-backports' kernel (built with CONFIG_XEN_UNPOPULATED_ALLOC)
//! as dom0 takes its grant mappings from the regions xenith lists in /hypervisor's reg.

use crate::env;
use crate::qemu::{Boot, Outcome};
use std::path::PathBuf;
use std::time::Duration;

/// The extended-regions system test's boot: bookworm-backports' kernel (built with
/// CONFIG_XEN_UNPOPULATED_ALLOC) as dom0 on 2 vCPUs runs the stress suite's grant workload for a
/// few seconds (gntdev mappings of gntalloc'd pages), then /init prints the Xen lines of
/// /proc/iomem (`xenith-iomem`).
pub fn systest_boot(hypervisor: PathBuf) -> Boot {
    let mut b = Boot::new(hypervisor);
    b.timeout = Duration::from_secs(150);
    b.cmdline = format!("dom0_max_vcpus={}", crate::linux::SYSTEST_VCPUS);
    if let Err(e) = crate::linux::use_kernel_from(&mut b, env::Suite::Backports) {
        eprintln!("xtask: Linux dom0 fixtures (bookworm-backports kernel): {e}");
        b.dom0 = Some(PathBuf::from("/nonexistent/linux-dom0-fixtures-unavailable"));
    }
    b.dom0_args = format!("{} xenith-stress=4 xenith-stress-only=grant xenith-iomem", crate::linux::DOM0_ARGS);
    b
}

/// `(start, end)` of a `/proc/iomem` line (`  start-end : name`, hex, end inclusive).
fn iomem_range(line: &str) -> Option<(u64, u64)> {
    let (range, _) = line.split_once(" : ")?;
    let (a, b) = range.trim().split_once('-')?;
    Some((u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?))
}

/// `(base, end)` (end exclusive) of the `dom0: extended region N: base-end (M MiB)` lines.
fn extended_regions(output: &str) -> Vec<(u64, u64)> {
    output
        .lines()
        .filter_map(|l| l.split_once("dom0: extended region ")?.1.split_once(": ").map(|(_, r)| r))
        .filter_map(|r| {
            let (a, b) = r.split_whitespace().next()?.split_once('-')?;
            let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
            Some((hex(a)?, hex(b)?))
        })
        .collect()
}

/// dom0 took its grant mappings from the extended regions xenith gave it: each "Xen scratch"
/// range Linux's unpopulated-page allocator took for gntdev (it takes them from the regions in
/// /hypervisor's reg, its "Xen unused space", which /proc/iomem does not list) lies inside a
/// region the hypervisor listed at boot, and the grant workload ran without errors.
pub fn systest_check(o: &Outcome) -> std::result::Result<(), String> {
    if o.has("/nonexistent/linux-dom0-fixtures-unavailable") {
        return Err("the bookworm-backports kernel could not be fetched or unpacked (the xtask line before the tests says why)".into());
    }
    let regions = extended_regions(&o.output);
    if regions.is_empty() {
        return Err("the hypervisor listed no extended region for dom0".into());
    }
    let r = crate::stress::parse(&o.output);
    let why = crate::stress::verdict(&r, &["grant"]);
    if !why.is_empty() {
        return Err(format!("grant workload: {}", why.join("; ")));
    }
    let inside = |(a, b): (u64, u64)| regions.iter().any(|&(base, end)| a >= base && b < end);
    let lines: Vec<&str> = o.output.lines().filter_map(|l| l.split_once("iomem: ").map(|(_, r)| r)).collect();
    let named = |name: &str| lines.iter().filter(|l| l.ends_with(name)).filter_map(|l| iomem_range(l)).collect::<Vec<_>>();
    let scratch = named("Xen scratch");
    if scratch.is_empty() {
        return Err(format!("/proc/iomem has no `Xen scratch` range (no grant mapping came from the regions); its Xen lines: {lines:?}"));
    }
    if let Some(bad) = scratch.iter().find(|s| !inside(**s)) {
        return Err(format!("`Xen scratch` {:#x}-{:#x} is outside every extended region {regions:x?}", bad.0, bad.1));
    }
    if !o.has(crate::linux::MARKER) || !o.has("hardware domain powered off") {
        return Err("dom0 did not reach its marker and power off".into());
    }
    if o.timed_out {
        return Err("QEMU did not end after poweroff -f".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{extended_regions, iomem_range};

    #[test]
    fn regions_and_iomem_ranges_are_read_from_the_logs() {
        let log = "(xenith) dom0: extended region 0: 0xa200000-0x10000000 (94 MiB)\n(xenith) dom0: extended region 1: 0xc0000000-0x4010000000 (259328 MiB)\n";
        assert_eq!(extended_regions(log), vec![(0xa200000, 0x10000000), (0xc0000000, 0x40_1000_0000)]);
        assert_eq!(iomem_range("c0000000-c7ffffff : Xen scratch"), Some((0xc000_0000, 0xc7ff_ffff)));
        assert_eq!(iomem_range("  40000000-bfffffff : System RAM"), Some((0x4000_0000, 0xbfff_ffff)));
        assert_eq!(iomem_range("garbage"), None);
    }
}
