//! What the boot path needs from the host DT, read the way Xen reads it: RAM banks, reserved ranges, dom0's
//! boot modules and command lines in `/chosen`, the console UART, PSCI, the GIC, the timer and the CPUs.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::{DtError, HostDt, IrqSpec, NodeId, Region, GIC_COMPATIBLES};

/// Where a reserved range comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReservedSource {
    /// The FDT header's memory reservation block.
    MemReserve,
    /// A child of /reserved-memory (its path).
    Node(String),
}

/// A reserved physical range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemRegion {
    pub region: Region,
    pub source: ReservedSource,
}

/// What a `/chosen` boot module is (Xen's bootmodule kinds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleKind {
    Kernel,
    Ramdisk,
    XsmPolicy,
    DeviceTree,
    Unknown,
}

/// A boot module: a `multiboot,module` node under /chosen, or /chosen's `linux,initrd-start/end`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootModule {
    pub path: String,
    pub kind: ModuleKind,
    pub region: Region,
    pub bootargs: Option<String>,
    /// The module belongs to a dom0less domain (`xen,domain` parent), not to dom0.
    pub for_domu: bool,
}

/// The UART named by `/chosen/stdout-path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StdoutDevice {
    pub path: String,
    pub compatible: Vec<String>,
    /// First `reg` entry, translated.
    pub mmio: Option<Region>,
    pub interrupt: Option<IrqSpec>,
    /// What followed ':' in stdout-path ("115200n8").
    pub options: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciMethod {
    Smc,
    Hvc,
}

/// The physical GIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GicInfo {
    pub path: String,
    pub compatible: Vec<String>,
    /// 2 or 3.
    pub version: u8,
    pub phandle: Option<u32>,
    pub distributor: Region,
    /// GICv3 redistributor regions (empty on v2).
    pub redistributors: Vec<Region>,
    /// GICC (v2; optional legacy interface on v3).
    pub cpu_interface: Option<Region>,
    /// GICH, the virtual interface control block (GICv2 virtualization extensions).
    pub hyp_interface: Option<Region>,
    /// GICV, the virtual CPU interface.
    pub vcpu_interface: Option<Region>,
    pub maintenance_irq: Option<IrqSpec>,
}

/// The architected timer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerInfo {
    pub path: String,
    /// Secure physical, non-secure physical, virtual, hypervisor (as in the binding), when present.
    pub interrupts: Vec<IrqSpec>,
    pub clock_frequency: Option<u32>,
}

impl TimerInfo {
    /// The PPI INTIDs in binding order.
    pub fn ppis(&self) -> Vec<u32> {
        self.interrupts
            .iter()
            .filter_map(|i| i.gic_intid())
            .collect()
    }
}

/// One CPU of /cpus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuInfo {
    pub path: String,
    pub mpidr: u64,
    pub enable_method: Option<String>,
    /// `cpu-release-addr` (with `enable-method = "spin-table"`): where firmware holding the
    /// CPU in a pen waits for its entry point.
    pub release_addr: Option<u64>,
}

/// Everything the boot path reads from the host DT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootInfo {
    /// RAM banks, sorted by base, empty banks dropped.
    pub memory: Vec<Region>,
    pub reserved: Vec<MemRegion>,
    pub modules: Vec<BootModule>,
    /// The hypervisor's own command line, chosen as Xen does (see [`HostDt::boot_info`]).
    pub hypervisor_cmdline: Option<String>,
    /// `/chosen/xen,dom0-bootargs`.
    pub dom0_bootargs: Option<String>,
    /// `/chosen/bootargs`.
    pub chosen_bootargs: Option<String>,
    pub stdout: Option<StdoutDevice>,
    pub psci: Option<PsciMethod>,
    pub gic: GicInfo,
    pub timer: Option<TimerInfo>,
    pub cpus: Vec<CpuInfo>,
    /// Non-fatal problems (a stdout-path to nothing, an unknown PSCI method...), for the boot log.
    pub warnings: Vec<DtError>,
}

impl BootInfo {
    /// dom0's kernel module.
    pub fn kernel(&self) -> Option<&BootModule> {
        self.modules
            .iter()
            .find(|m| !m.for_domu && m.kind == ModuleKind::Kernel)
    }

    /// dom0's initrd module.
    pub fn ramdisk(&self) -> Option<&BootModule> {
        self.modules
            .iter()
            .find(|m| !m.for_domu && m.kind == ModuleKind::Ramdisk)
    }

    /// dom0's command line: the kernel module's `bootargs`, else `xen,dom0-bootargs`, else `/chosen/bootargs`
    /// when the hypervisor did not take it for itself.
    pub fn dom0_cmdline(&self) -> Option<&str> {
        if let Some(a) = self
            .kernel()
            .and_then(|k| k.bootargs.as_deref())
            .filter(|a| !a.is_empty())
        {
            return Some(a);
        }
        if let Some(a) = self.dom0_bootargs.as_deref() {
            return Some(a);
        }
        if self.hypervisor_cmdline.is_some() && self.hypervisor_cmdline == self.chosen_bootargs {
            return None;
        }
        self.chosen_bootargs.as_deref()
    }
}

fn owned_strings(v: Vec<&str>) -> Vec<String> {
    v.into_iter().map(|s| s.to_owned()).collect()
}

impl HostDt {
    /// Reads [`BootInfo`]. Errors for what the hypervisor cannot boot without (a malformed /memory `reg`,
    /// a module without `reg`, no GIC); other problems land in `warnings`.
    ///
    /// Modules are found as Xen's bootfdt does: nodes at depth <= 3 under /chosen compatible with
    /// `multiboot,module` or `xen,multiboot-module`; kind from `multiboot,kernel`/`xen,linux-zimage`,
    /// `multiboot,ramdisk`/`xen,linux-initrd`, `xen,xsm-policy`, `multiboot,device-tree`; the first module
    /// of no specific kind is the kernel, the second the ramdisk. `reg` uses the cells of the module's
    /// parent, inherited from ancestors when absent. The hypervisor's command line is
    /// `xen,xen-bootargs`, else `bootargs` only if dom0 has its own (`xen,dom0-bootargs` or the kernel
    /// module's `bootargs`).
    pub fn boot_info(&self) -> Result<BootInfo, DtError> {
        let mut warnings = Vec::new();
        let root = self.root();

        // RAM.
        let mut memory = Vec::new();
        for &n in self.children(root) {
            let is_mem = self.name(n).split('@').next() == Some("memory")
                || self.prop_str(n, "device_type").ok().flatten() == Some("memory");
            if !is_mem || !self.is_enabled(n) {
                continue;
            }
            for r in self.reg(n)? {
                if r.size != 0 {
                    memory.push(r);
                }
            }
        }
        memory.sort();
        if memory.is_empty() {
            return Err(DtError::MissingNode(
                "/memory (no RAM bank with a non-empty reg)".to_owned(),
            ));
        }

        // Reserved ranges.
        let mut reserved: Vec<MemRegion> = self
            .tree()
            .mem_reserve
            .iter()
            .map(|&(base, size)| MemRegion {
                region: Region { base, size },
                source: ReservedSource::MemReserve,
            })
            .collect();
        if let Some(rm) = self.find_path("/reserved-memory") {
            for &c in self.children(rm) {
                if !self.is_enabled(c) || !self.has_prop(c, "reg") {
                    continue;
                }
                for r in self.reg(c)? {
                    reserved.push(MemRegion {
                        region: r,
                        source: ReservedSource::Node(self.path(c)),
                    });
                }
            }
        }

        // /chosen.
        let chosen = self.find_path("/chosen");
        let chosen_str = |p: &str| -> Result<Option<String>, DtError> {
            match chosen {
                Some(c) => Ok(self.prop_str(c, p)?.map(|s| s.to_owned())),
                None => Ok(None),
            }
        };
        let xen_bootargs = chosen_str("xen,xen-bootargs")?;
        let dom0_bootargs = chosen_str("xen,dom0-bootargs")?;
        let chosen_bootargs = chosen_str("bootargs")?;
        let mut modules = Vec::new();
        if let Some(c) = chosen {
            self.collect_modules(c, &mut modules)?;
            if let Some(initrd) = self.chosen_initrd(c)? {
                modules.push(initrd);
            }
        }
        let kernel_has_args = modules.iter().any(|m| {
            !m.for_domu
                && m.kind == ModuleKind::Kernel
                && m.bootargs.as_deref().is_some_and(|a| !a.is_empty())
        });
        let hypervisor_cmdline = match xen_bootargs {
            Some(a) => Some(a),
            None if dom0_bootargs.is_some() || kernel_has_args => chosen_bootargs.clone(),
            None => None,
        };

        let stdout = match chosen {
            Some(c) => self.stdout_device(c).unwrap_or_else(|e| {
                warnings.push(e);
                None
            }),
            None => None,
        };

        let psci = self.psci_method().unwrap_or_else(|e| {
            warnings.push(e);
            None
        });
        let gic = self.gic_info()?;
        let timer = self.timer_info().unwrap_or_else(|e| {
            warnings.push(e);
            None
        });
        let cpus = self.cpu_list().unwrap_or_else(|e| {
            warnings.push(e);
            Vec::new()
        });

        Ok(BootInfo {
            memory,
            reserved,
            modules,
            hypervisor_cmdline,
            dom0_bootargs,
            chosen_bootargs,
            stdout,
            psci,
            gic,
            timer,
            cpus,
            warnings,
        })
    }

    /// Whether `id` is a boot module node.
    pub fn is_boot_module(&self, id: NodeId) -> bool {
        self.is_compatible(id, "multiboot,module") || self.is_compatible(id, "xen,multiboot-module")
    }

    fn collect_modules(&self, chosen: NodeId, out: &mut Vec<BootModule>) -> Result<(), DtError> {
        let mut guess = 0u32;
        // Document order, depth-first, as Xen's scan.
        let mut stack: Vec<NodeId> = self.children(chosen).iter().rev().copied().collect();
        while let Some(n) = stack.pop() {
            if self.depth(n) <= 3 && self.is_boot_module(n) {
                out.push(self.boot_module(n, &mut guess)?);
            }
            stack.extend(self.children(n).iter().rev().copied());
        }
        Ok(())
    }

    fn boot_module(&self, n: NodeId, guess: &mut u32) -> Result<BootModule, DtError> {
        let raw = self.raw_reg(n)?;
        let &(_, base, size) = raw.first().ok_or_else(|| {
            self.bad_prop(n, "reg", "empty: a boot module needs its address and size")
        })?;
        let is = |c: &str| self.is_compatible(n, c);
        let mut kind = if is("xen,linux-zimage") || is("multiboot,kernel") {
            ModuleKind::Kernel
        } else if is("xen,linux-initrd") || is("multiboot,ramdisk") {
            ModuleKind::Ramdisk
        } else if is("xen,xsm-policy") {
            ModuleKind::XsmPolicy
        } else if is("multiboot,device-tree") {
            ModuleKind::DeviceTree
        } else {
            ModuleKind::Unknown
        };
        if kind == ModuleKind::Unknown {
            kind = match *guess {
                0 => ModuleKind::Kernel,
                1 => ModuleKind::Ramdisk,
                _ => ModuleKind::Unknown,
            };
            *guess += 1;
        }
        let for_domu = self
            .parent(n)
            .is_some_and(|p| self.is_compatible(p, "xen,domain"));
        Ok(BootModule {
            path: self.path(n),
            kind,
            region: Region { base, size },
            bootargs: self.prop_str(n, "bootargs")?.map(|s| s.to_owned()),
            for_domu,
        })
    }

    fn chosen_initrd(&self, chosen: NodeId) -> Result<Option<BootModule>, DtError> {
        let read = |p: &str| -> Result<Option<u64>, DtError> {
            match self.prop_cells(chosen, p)? {
                None => Ok(None),
                Some(c) if c.len() == 1 || c.len() == 2 => Ok(Some(super::cells_to_u64(&c))),
                Some(c) => {
                    Err(self.bad_prop(chosen, p, format!("{} cells, expected 1 or 2", c.len())))
                }
            }
        };
        let Some(start) = read("linux,initrd-start")? else {
            return Ok(None);
        };
        let end = read("linux,initrd-end")?.ok_or_else(|| DtError::MissingProperty {
            node: "/chosen".to_owned(),
            prop: "linux,initrd-end".to_owned(),
        })?;
        if end <= start {
            return Err(self.bad_prop(
                chosen,
                "linux,initrd-end",
                format!("{end:#x} is not above start {start:#x}"),
            ));
        }
        Ok(Some(BootModule {
            path: "/chosen".to_owned(),
            kind: ModuleKind::Ramdisk,
            region: Region {
                base: start,
                size: end - start,
            },
            bootargs: None,
            for_domu: false,
        }))
    }

    fn stdout_device(&self, chosen: NodeId) -> Result<Option<StdoutDevice>, DtError> {
        let (prop, path) = match self.prop_str(chosen, "stdout-path")? {
            Some(p) => ("stdout-path", p),
            None => match self.prop_str(chosen, "linux,stdout-path")? {
                Some(p) => ("linux,stdout-path", p),
                None => return Ok(None),
            },
        };
        let (node_path, options) = match path.split_once(':') {
            Some((p, o)) => (p, Some(o.to_owned())),
            None => (path, None),
        };
        let uart = self.find_path(node_path).ok_or_else(|| {
            self.bad_prop(
                chosen,
                prop,
                format!("\"{node_path}\" names no node (nor alias)"),
            )
        })?;
        let mmio = if self.has_prop(uart, "reg") {
            self.reg(uart)?.first().copied()
        } else {
            None
        };
        let interrupt = self.interrupts(uart)?.into_iter().next();
        Ok(Some(StdoutDevice {
            path: self.path(uart),
            compatible: owned_strings(self.compatible(uart)),
            mmio,
            interrupt,
            options,
        }))
    }

    fn psci_method(&self) -> Result<Option<PsciMethod>, DtError> {
        let node = self.children(self.root()).iter().copied().find(|&n| {
            self.name(n).split('@').next() == Some("psci")
                || self.compatible(n).iter().any(|c| c.starts_with("arm,psci"))
        });
        let Some(n) = node else { return Ok(None) };
        match self.prop_str(n, "method")? {
            Some("smc") => Ok(Some(PsciMethod::Smc)),
            Some("hvc") => Ok(Some(PsciMethod::Hvc)),
            Some(other) => Err(self.bad_prop(
                n,
                "method",
                format!("\"{other}\" is neither \"smc\" nor \"hvc\""),
            )),
            None => Err(DtError::MissingProperty {
                node: self.path(n),
                prop: "method".to_owned(),
            }),
        }
    }

    /// The GIC node: the first interrupt controller with a GIC compatible.
    pub fn gic_node(&self) -> Option<NodeId> {
        self.nodes().find(|&n| {
            self.has_prop(n, "interrupt-controller")
                && GIC_COMPATIBLES.iter().any(|c| self.is_compatible(n, c))
        })
    }

    fn gic_info(&self) -> Result<GicInfo, DtError> {
        let n = self
            .gic_node()
            .ok_or_else(|| DtError::MissingNode("interrupt controller (Arm GIC)".to_owned()))?;
        let version = if self.is_compatible(n, "arm,gic-v3") {
            3
        } else {
            2
        };
        let regs = self.reg(n)?;
        let distributor = *regs
            .first()
            .ok_or_else(|| self.bad_prop(n, "reg", "empty: no distributor region"))?;
        let mut rest = &regs[1..];
        let mut redistributors = Vec::new();
        if version == 3 {
            let count = self.prop_u32(n, "#redistributor-regions")?.unwrap_or(1) as usize;
            if count == 0 || count > rest.len() {
                return Err(self.bad_prop(
                    n,
                    "reg",
                    format!(
                        "{} regions after GICD, #redistributor-regions says {count}",
                        rest.len()
                    ),
                ));
            }
            redistributors = rest[..count].to_vec();
            rest = &rest[count..];
        }
        let maintenance_irq = self.interrupts(n)?.into_iter().next();
        Ok(GicInfo {
            path: self.path(n),
            compatible: owned_strings(self.compatible(n)),
            version,
            phandle: self.phandle(n),
            distributor,
            redistributors,
            cpu_interface: rest.first().copied(),
            hyp_interface: rest.get(1).copied(),
            vcpu_interface: rest.get(2).copied(),
            maintenance_irq,
        })
    }

    fn timer_info(&self) -> Result<Option<TimerInfo>, DtError> {
        let Some(n) = self.nodes().find(|&n| {
            self.is_compatible(n, "arm,armv8-timer") || self.is_compatible(n, "arm,armv7-timer")
        }) else {
            return Ok(None);
        };
        Ok(Some(TimerInfo {
            path: self.path(n),
            interrupts: self.interrupts(n)?,
            clock_frequency: self.prop_u32(n, "clock-frequency")?,
        }))
    }

    fn cpu_list(&self) -> Result<Vec<CpuInfo>, DtError> {
        let Some(cpus) = self.find_path("/cpus") else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for &c in self.children(cpus) {
            if self.prop_str(c, "device_type")? != Some("cpu") || !self.is_enabled(c) {
                continue;
            }
            let reg = self.raw_reg(c)?;
            let &(_, mpidr, _) = reg
                .first()
                .ok_or_else(|| self.bad_prop(c, "reg", "empty"))?;
            out.push(CpuInfo {
                path: self.path(c),
                mpidr,
                enable_method: self.prop_str(c, "enable-method")?.map(|s| s.to_owned()),
                release_addr: match self.prop_cells(c, "cpu-release-addr")?.as_deref() {
                    None => None,
                    Some(&[lo]) => Some(u64::from(lo)),
                    Some(&[hi, lo]) => Some(u64::from(hi) << 32 | u64::from(lo)),
                    Some(_) => return Err(self.bad_prop(c, "cpu-release-addr", "not 1 or 2 cells")),
                },
            });
        }
        Ok(out)
    }
}
