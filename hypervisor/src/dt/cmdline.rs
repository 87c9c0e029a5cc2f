//! The hypervisor's command line (from `/chosen/xen,xen-bootargs` or `bootargs`): the options xenith acts on,
//! with Xen's spelling, and the list of options it ignored (for a boot warning).

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::DtError;
use core::fmt;

/// Who drives an IOMMU (and so who controls its masters' DMA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IommuOwner {
    /// xenith drives it (stage 2 / shadow of the owner domain's p2m); dom0 does not see it.
    Hypervisor,
    /// dom0 drives it: the node stays in dom0's DT and its MMIO is mapped 1:1 into dom0.
    Dom0,
    /// Both: xenith drives the IOMMU and translates the masters' DMA through the owner domain's
    /// stage 2, and dom0 gets an emulated IOMMU at the same address (its node kept, its MMIO
    /// trapped) whose stage-1 configuration xenith installs nested over that stage 2.
    Nested,
    /// Nobody: there is no IOMMU for this master, or (override) the IOMMU is hidden and left alone.
    None,
    /// The DT is inconsistent or the requested owner cannot drive it: the IOMMU is hidden from dom0 and
    /// its masters are disabled in dom0's DT.
    Blocked,
}

impl fmt::Display for IommuOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IommuOwner::Hypervisor => "hypervisor",
            IommuOwner::Dom0 => "dom0",
            IommuOwner::Nested => "nested",
            IommuOwner::None => "none",
            IommuOwner::Blocked => "blocked",
        })
    }
}

/// `iommu-owner=<owner>:<path>`: `path` is a master or an IOMMU; it sets the owner of its whole group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerOverride {
    pub path: String,
    pub owner: IommuOwner,
}

/// `dom0_mem=`: Xen's forms `<size>`, `min:<size>`, `max:<size>`, comma-separated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dom0Mem {
    /// The amount dom0 gets (`dom0_mem=512M`).
    pub amount: Option<u64>,
    pub min: Option<u64>,
    pub max: Option<u64>,
}

impl Dom0Mem {
    /// The amount to give dom0: `amount`, clamped to `min`/`max`; without `amount`, `max` (else `min`).
    pub fn target(&self) -> Option<u64> {
        let mut v = self.amount.or(self.max).or(self.min)?;
        if let Some(max) = self.max {
            v = v.min(max);
        }
        if let Some(min) = self.min {
            v = v.max(min);
        }
        Some(v)
    }
}

/// Xen's `sched=`: which vCPU scheduler runs (`crate::sched` acts on it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SchedPolicy {
    /// `sched=null`: every vCPU pinned to a physical CPU of its own (the default).
    #[default]
    Null,
    /// `sched=credit`: Xen's credit policy: vCPUs may share a CPU, time-sliced by weight.
    Credit,
}

impl SchedPolicy {
    /// The name Xen gives it (`sched=` value, `xl info`'s `xen_scheduler`).
    pub fn name(self) -> &'static str {
        match self {
            SchedPolicy::Null => "null",
            SchedPolicy::Credit => "credit",
        }
    }
}

/// The parsed command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HypervisorCmdline {
    pub dom0_mem: Option<Dom0Mem>,
    /// `console=` (Xen's values: `dtuart`, `none`, ...).
    pub console: Option<String>,
    /// `dtuart=` (a DT path or alias of the console UART, optionally `:options`).
    pub dtuart: Option<String>,
    /// `iommu-owner=dom0:/path,hypervisor:/path,nested:/path,none:/path`.
    pub iommu_owner: Vec<OwnerOverride>,
    /// `noreboot`: a crashed dom0 halts the machine instead of restarting it.
    pub noreboot: bool,
    /// `hypercall_stats`: time every hypercall and print the table when dom0 stops.
    pub hypercall_stats: bool,
    /// Xen's `dom0_max_vcpus=N` (or `=MIN-MAX`: the maximum); a value that is not a number
    /// leaves the default, as Xen does.
    pub dom0_max_vcpus: Option<usize>,
    /// `spectre_entry=all`: every entry barrier runs whatever the CPU needs.
    pub spectre_entry_all: bool,
    /// `its=hide`: the GICv3 ITS is kept from dom0 (no emulated ITS; PCI MSIs fall back to INTx).
    pub its_hide: bool,
    /// `sched=null|credit`; another scheduler Xen knows (credit2, rtds, arinc653) is listed
    /// in `unknown` and the default runs, as Xen falls back to its default for a name it lacks.
    pub sched: SchedPolicy,
    /// Xen's `sched_credit_tslice_ms=` (credit's timeslice; checked against Xen's bounds by
    /// the scheduler).
    pub sched_credit_tslice_ms: Option<u32>,
    /// Xen's `sched_ratelimit_us=` (the least a credit vCPU runs before it is preempted; 0:
    /// none).
    pub sched_ratelimit_us: Option<u32>,
    /// Options xenith does not act on, as written (for a warning).
    pub unknown: Vec<String>,
}

/// Parses a size with Xen's suffixes (`K`, `M`, `G`, `T`, optional trailing `B`, case-insensitive; no
/// suffix means KiB, as Xen's `parse_size_and_unit`). Decimal or 0x-hex.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (s, 10),
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    let n = u64::from_str_radix(&digits[..end], radix).ok()?;
    let suffix = &digits[end..];
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" => 10,
        "B" => 0,
        "K" | "KB" => 10,
        "M" | "MB" => 20,
        "G" | "GB" => 30,
        "T" | "TB" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

fn parse_dom0_mem(v: &str) -> Result<Dom0Mem, DtError> {
    let bad = |reason: String| DtError::BadCmdline {
        option: format!("dom0_mem={v}"),
        reason,
    };
    let mut out = Dom0Mem::default();
    if v.is_empty() {
        return Err(bad("empty value".to_owned()));
    }
    for part in v.split(',') {
        let (slot, size) = if let Some(s) = part.strip_prefix("min:") {
            (&mut out.min, s)
        } else if let Some(s) = part.strip_prefix("max:") {
            (&mut out.max, s)
        } else {
            (&mut out.amount, part)
        };
        if size.starts_with('-') {
            return Err(bad(format!(
                "\"{part}\": negative sizes (all memory but N) are not supported on Arm"
            )));
        }
        let n = parse_size(size)
            .ok_or_else(|| bad(format!("\"{part}\" is not a size (e.g. 512M, 1G)")))?;
        if n == 0 {
            return Err(bad(format!("\"{part}\" is zero")));
        }
        *slot = Some(n);
    }
    if let (Some(min), Some(max)) = (out.min, out.max) {
        if min > max {
            return Err(bad(format!("min {min:#x} is above max {max:#x}")));
        }
    }
    Ok(out)
}

fn parse_iommu_owner(v: &str) -> Result<Vec<OwnerOverride>, DtError> {
    let mut out = Vec::new();
    for part in v.split(',').filter(|p| !p.is_empty()) {
        let bad = |reason: String| DtError::BadCmdline {
            option: format!("iommu-owner={v}"),
            reason,
        };
        let (who, path) = part
            .split_once(':')
            .ok_or_else(|| bad(format!("\"{part}\" is not <owner>:<dt path>")))?;
        let owner = match who {
            "dom0" => IommuOwner::Dom0,
            "hypervisor" | "xen" => IommuOwner::Hypervisor,
            "none" => IommuOwner::None,
            "nested" => IommuOwner::Nested,
            other => {
                return Err(bad(format!(
                    "owner \"{other}\" is not dom0, hypervisor, nested or none"
                )))
            }
        };
        if !path.starts_with('/') {
            return Err(bad(format!("\"{path}\" is not an absolute DT path")));
        }
        out.push(OwnerOverride {
            path: path.to_owned(),
            owner,
        });
    }
    Ok(out)
}

/// A boolean option as Xen spells it: bare (`opt`) is true, else `1/0`, `yes/no`, `true/false`,
/// `on/off`, `enable/disable`.
fn parse_bool(key: &str, value: Option<&str>) -> Result<bool, DtError> {
    match value {
        None | Some("1" | "yes" | "true" | "on" | "enable") => Ok(true),
        Some("0" | "no" | "false" | "off" | "disable") => Ok(false),
        Some(v) => Err(DtError::BadCmdline { option: format!("{key}={v}"), reason: "not a boolean (yes/no, on/off, 1/0, true/false)".to_owned() }),
    }
}

impl HypervisorCmdline {
    /// Parses a whitespace-separated command line. A malformed value of a known option is an error naming
    /// it; unknown options are collected in `unknown`.
    pub fn parse(line: &str) -> Result<HypervisorCmdline, DtError> {
        let mut out = HypervisorCmdline::default();
        for word in line.split_ascii_whitespace() {
            let (key, value) = match word.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (word, None),
            };
            let need = |v: Option<&str>| {
                v.map(|s| s.to_owned()).ok_or_else(|| DtError::BadCmdline {
                    option: key.to_owned(),
                    reason: "needs a value (option=value)".to_owned(),
                })
            };
            match key {
                "dom0_mem" => out.dom0_mem = Some(parse_dom0_mem(&need(value)?)?),
                "console" => out.console = Some(need(value)?),
                "dtuart" => out.dtuart = Some(need(value)?),
                "iommu-owner" => out.iommu_owner.extend(parse_iommu_owner(&need(value)?)?),
                "noreboot" => out.noreboot = parse_bool(key, value)?,
                "no-noreboot" if value.is_none() => out.noreboot = false,
                "hypercall_stats" => out.hypercall_stats = parse_bool(key, value)?,
                "dom0_max_vcpus" => out.dom0_max_vcpus = value.and_then(|v| v.rsplit('-').next()?.parse().ok()),
                "spectre_entry" if value == Some("all") => out.spectre_entry_all = true,
                "its" if value.is_some() => out.its_hide = value == Some("hide"),
                "sched" if value == Some("null") => out.sched = SchedPolicy::Null,
                "sched" if value == Some("credit") => out.sched = SchedPolicy::Credit,
                "sched_credit_tslice_ms" if value.and_then(|v| v.parse::<u32>().ok()).is_some() => out.sched_credit_tslice_ms = value.and_then(|v| v.parse().ok()),
                "sched_ratelimit_us" if value.and_then(|v| v.parse::<u32>().ok()).is_some() => out.sched_ratelimit_us = value.and_then(|v| v.parse().ok()),
                _ => out.unknown.push(word.to_owned()),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dom0_vcpus_spectre_and_its_options() {
        let c = HypervisorCmdline::parse("dom0_max_vcpus=1-2 spectre_entry=all its=hide sched=credit2").unwrap();
        assert_eq!((c.dom0_max_vcpus, c.spectre_entry_all, c.its_hide), (Some(2), true, true));
        assert_eq!(c.unknown, ["sched=credit2"]);
        // The last one given wins; a value that is not a number leaves the default.
        let c = HypervisorCmdline::parse("dom0_max_vcpus=3 dom0_max_vcpus=4 its=hide its=on").unwrap();
        assert_eq!((c.dom0_max_vcpus, c.its_hide), (Some(4), false));
        let c = HypervisorCmdline::parse("dom0_max_vcpus=x spectre_entry=auto").unwrap();
        assert_eq!((c.dom0_max_vcpus, c.spectre_entry_all), (None, false));
        assert_eq!(c.unknown, ["spectre_entry=auto"]);
        assert_eq!(HypervisorCmdline::parse("").unwrap().dom0_max_vcpus, None);
    }

    #[test]
    fn sched_selects_null_or_credit_and_lists_other_schedulers() {
        assert_eq!(HypervisorCmdline::parse("").unwrap().sched, SchedPolicy::Null);
        let c = HypervisorCmdline::parse("sched=credit").unwrap();
        assert_eq!((c.sched, c.sched.name()), (SchedPolicy::Credit, "credit"));
        let c = HypervisorCmdline::parse("sched=credit sched=null").unwrap();
        assert_eq!((c.sched, c.unknown.len()), (SchedPolicy::Null, 0));
        // Xen's other schedulers (and a bare `sched`): the default, and a warning.
        let c = HypervisorCmdline::parse("sched=credit sched=rtds sched").unwrap();
        assert_eq!(c.sched, SchedPolicy::Credit);
        assert_eq!(c.unknown, ["sched=rtds", "sched"]);
        let c = HypervisorCmdline::parse("sched_credit_tslice_ms=5 sched_ratelimit_us=0 sched_ratelimit_us=x").unwrap();
        assert_eq!((c.sched_credit_tslice_ms, c.sched_ratelimit_us), (Some(5), Some(0)));
        assert_eq!(c.unknown, ["sched_ratelimit_us=x"]);
        assert_eq!(HypervisorCmdline::parse("").unwrap().sched_ratelimit_us, None);
    }
}
