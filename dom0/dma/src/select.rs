//! Which DMA implementation each device gets — decided per device, at runtime, from what
//! dom0's device tree and the hypervisor say, never by a global switch — and the check that
//! devices which must share one DMA domain (a display pipeline: FIMD + mixer) agree.
//!
//! The rules, first match wins:
//! 1. a per-device override, if it is possible for the device;
//! 2. a "xen,grant-dma" binding -> GrantDma to the backend domain;
//! 3. `iommus` present in dom0's DT (dom0 drives the IOMMU) -> IommuDma — never replaced
//!    by swiotlb-xen (the Snow mixer bug);
//! 4. the device's mask cannot reach all of dom0's RAM -> XenSwiotlb (it can bounce);
//! 5. not on Xen -> Direct;
//! 6. behind an IOMMU the hypervisor drives -> Direct (its stage 2 is dom0's p2m);
//! 7. direct-mapped dom0, no IOMMU -> XenSwiotlb (foreign frames need machine addresses);
//! 8. otherwise no safe path: an error.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::hv::XenFeatures;
use crate::ops::DmaKind;
use crate::types::DomId;

/// The IOMMU driver a dom0-owned IOMMU needs (devices can share a domain only within one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IommuKind {
    /// Samsung Exynos SysMMU ("samsung,exynos-sysmmu").
    ExynosSysmmu,
    /// Arm SMMUv3 ("arm,smmu-v3"), stage 1 driven by dom0 (nested on a stage 2 the
    /// hypervisor owns).
    Smmuv3,
}

/// What dom0's DT (as the hypervisor wrote it) says about one DMA master.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceFacts<'a> {
    /// The node's name, e.g. "14450000.mixer".
    pub name: &'a str,
    /// `iommus` in dom0's DT points at an IOMMU dom0 drives (the hypervisor strips it where
    /// it keeps the IOMMU).
    pub iommus: Option<IommuKind>,
    /// `iommus` points at a "xen,grant-dma" node: the backend's domain id.
    pub grant_dma_backend: Option<DomId>,
    /// The hypervisor keeps an IOMMU in front of this device (xenith marks such nodes).
    pub hypervisor_iommu: bool,
    /// `dma-coherent`.
    pub coherent: bool,
    /// The DMA mask the driver set (inclusive limit).
    pub dma_mask: u64,
}

impl<'a> DeviceFacts<'a> {
    /// A non-coherent device with a 32-bit mask and no IOMMU.
    pub fn new(name: &'a str) -> DeviceFacts<'a> {
        DeviceFacts { name, iommus: None, grant_dma_backend: None, hypervisor_iommu: false, coherent: false, dma_mask: u32::MAX as u64 }
    }
}

/// What the hypervisor says about dom0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaEnv {
    /// XENVER_get_features submap 0 (zero when not on Xen).
    pub features: XenFeatures,
    /// One past dom0's highest RAM address.
    pub ram_top: u64,
}

impl DmaEnv {
    fn on_xen(&self) -> bool {
        self.features != XenFeatures::NONE
    }
}

/// A per-device override (from the kernel command line or a driver quirk).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Override {
    /// Use the rules.
    #[default]
    Auto,
    /// Use this implementation if it is possible for the device.
    Force(DmaKind),
}

/// Why a device got its implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Override,
    GrantDmaBinding,
    Dom0DrivesIommu,
    MaskBelowRam,
    NotOnXen,
    HypervisorOwnsIommu,
    DirectMappedNoIommu,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Override => "per-device override",
            Reason::GrantDmaBinding => "xen,grant-dma binding: the backend is another domain",
            Reason::Dom0DrivesIommu => "iommus in dom0's DT: dom0 drives its IOMMU",
            Reason::MaskBelowRam => "its DMA mask does not reach all of dom0's RAM: bounce when needed",
            Reason::NotOnXen => "not running on a hypervisor",
            Reason::HypervisorOwnsIommu => "the hypervisor owns its IOMMU: guest-physical is what it sees",
            Reason::DirectMappedNoIommu => "no IOMMU in a direct-mapped dom0: foreign frames need machine addresses",
        })
    }
}

/// The decision for one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    pub kind: DmaKind,
    pub reason: Reason,
    /// For IommuDma: the IOMMU driver.
    pub iommu: Option<IommuKind>,
    /// For GrantDma: the backend.
    pub backend: Option<DomId>,
}

impl Choice {
    fn new(kind: DmaKind, reason: Reason) -> Choice {
        Choice { kind, reason, iommu: None, backend: None }
    }
    /// Can devices with these two choices share one DMA domain?
    pub fn compatible(&self, other: &Choice) -> bool {
        self.kind == other.kind && self.iommu == other.iommu && self.backend == other.backend
    }
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(k) = self.iommu {
            write!(f, " ({k:?})")?;
        }
        if let Some(b) = self.backend {
            write!(f, " (backend dom{b})")?;
        }
        write!(f, " because {}", self.reason)
    }
}

/// Why selection failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectError {
    /// The override asks for something this device cannot use.
    OverrideImpossible { device: String, wanted: DmaKind, why: &'static str },
    /// No implementation is safe for this device.
    NoDmaPath { device: String, why: &'static str },
    /// A group member's choice differs from the group's.
    GroupMismatch { group: String, device: String, choice: Choice, reference: String, reference_choice: Choice },
    /// A group with no members.
    EmptyGroup { group: String },
}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectError::OverrideImpossible { device, wanted, why } => {
                write!(f, "{device}: cannot use {wanted}: {why}")
            }
            SelectError::NoDmaPath { device, why } => write!(f, "{device}: no safe DMA path: {why}"),
            SelectError::GroupMismatch { group, device, choice, reference, reference_choice } => write!(
                f,
                "DMA group '{group}': {device} differs: it would use {choice}, but {reference} uses {reference_choice}; \
                 the devices of a group must share one DMA domain"
            ),
            SelectError::EmptyGroup { group } => write!(f, "DMA group '{group}' has no members"),
        }
    }
}

/// Choose the DMA implementation for one device.
pub fn select(dev: &DeviceFacts<'_>, env: &DmaEnv, ovr: Override) -> Result<Choice, SelectError> {
    if let Override::Force(kind) = ovr {
        return forced(dev, env, kind);
    }
    if let Some(b) = dev.grant_dma_backend {
        return Ok(Choice { backend: Some(b), ..Choice::new(DmaKind::GrantDma, Reason::GrantDmaBinding) });
    }
    if let Some(k) = dev.iommus {
        return Ok(Choice { iommu: Some(k), ..Choice::new(DmaKind::IommuDma, Reason::Dom0DrivesIommu) });
    }
    let reaches_ram = env.ram_top == 0 || dev.dma_mask >= env.ram_top - 1;
    if !reaches_ram && (!env.on_xen() || env.features.direct_mapped() || dev.hypervisor_iommu) {
        return Ok(Choice::new(DmaKind::XenSwiotlb, Reason::MaskBelowRam));
    }
    if !env.on_xen() {
        return Ok(Choice::new(DmaKind::Direct, Reason::NotOnXen));
    }
    if dev.hypervisor_iommu {
        return Ok(Choice::new(DmaKind::Direct, Reason::HypervisorOwnsIommu));
    }
    if env.features.direct_mapped() {
        return Ok(Choice::new(DmaKind::XenSwiotlb, Reason::DirectMappedNoIommu));
    }
    Err(SelectError::NoDmaPath {
        device: dev.name.to_string(),
        why: "dom0 is not direct-mapped and no IOMMU translates for the device",
    })
}

fn forced(dev: &DeviceFacts<'_>, env: &DmaEnv, kind: DmaKind) -> Result<Choice, SelectError> {
    let refuse = |why| Err(SelectError::OverrideImpossible { device: dev.name.to_string(), wanted: kind, why });
    match kind {
        DmaKind::IommuDma => match dev.iommus {
            Some(k) => Ok(Choice { iommu: Some(k), ..Choice::new(kind, Reason::Override) }),
            None => refuse("no iommus in dom0's DT: dom0 does not drive an IOMMU for it"),
        },
        DmaKind::GrantDma => match dev.grant_dma_backend {
            Some(b) => Ok(Choice { backend: Some(b), ..Choice::new(kind, Reason::Override) }),
            None => refuse("no xen,grant-dma binding: there is no backend domain to grant to"),
        },
        DmaKind::Direct | DmaKind::XenSwiotlb if dev.iommus.is_some() => {
            refuse("dom0 drives its IOMMU: bypassing the IOMMU's DMA ops would leave it untranslated")
        }
        DmaKind::XenSwiotlb if env.on_xen() && !env.features.direct_mapped() && !dev.hypervisor_iommu => {
            refuse("dom0 is not direct-mapped: swiotlb-xen's machine addresses are meaningless")
        }
        DmaKind::Direct if env.on_xen() && !env.features.direct_mapped() && !dev.hypervisor_iommu => {
            refuse("dom0 is not direct-mapped and no IOMMU translates for the device")
        }
        _ => Ok(Choice::new(kind, Reason::Override)),
    }
}

/// Devices that must share one DMA domain.
#[derive(Clone, Debug)]
pub struct DmaGroup<'a> {
    pub name: &'a str,
    pub members: Vec<(DeviceFacts<'a>, Override)>,
}

/// The decision for a group: one choice for all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupChoice {
    pub choice: Choice,
    /// Each member's own choice (same kind; reasons may differ).
    pub members: Vec<(String, Choice)>,
}

/// Choose for every member; fail, naming the first member that differs from the first one,
/// unless all can share one DMA domain.
pub fn select_group(group: &DmaGroup<'_>, env: &DmaEnv) -> Result<GroupChoice, SelectError> {
    let Some((first, first_ovr)) = group.members.first() else {
        return Err(SelectError::EmptyGroup { group: group.name.to_string() });
    };
    let reference = select(first, env, *first_ovr)?;
    let mut members = Vec::with_capacity(group.members.len());
    members.push((first.name.to_string(), reference));
    for (dev, ovr) in &group.members[1..] {
        let c = select(dev, env, *ovr)?;
        if !c.compatible(&reference) {
            return Err(SelectError::GroupMismatch {
                group: group.name.to_string(),
                device: dev.name.to_string(),
                choice: c,
                reference: first.name.to_string(),
                reference_choice: reference,
            });
        }
        members.push((dev.name.to_string(), c));
    }
    Ok(GroupChoice { choice: reference, members })
}
