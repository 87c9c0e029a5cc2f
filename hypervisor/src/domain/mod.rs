//! Domains: what the hypervisor knows about each guest (its memory, its state), and the dom0
//! builder (`dom0`) that lays out and loads a direct-mapped dom0.
pub mod dom0;
pub mod domu;
pub mod evtchn;
pub mod fault;
pub mod grant;
pub mod image;
pub mod lifecycle;
pub mod mmio;
pub mod registry;
pub mod vuart;

use mmio::MmioBus;

/// A domain identifier (Xen's `domid_t`).
pub type DomId = u16;

/// Why a domain stopped (Xen's `SHUTDOWN_*` reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    PowerOff,
    Reboot,
    Suspend,
    Crash,
    Watchdog,
    SoftReset,
}

impl ShutdownReason {
    /// Xen's reason code, if it is one.
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => Self::PowerOff,
            1 => Self::Reboot,
            2 => Self::Suspend,
            3 => Self::Crash,
            4 => Self::Watchdog,
            5 => Self::SoftReset,
            _ => return None,
        })
    }
}

/// A range of guest RAM: `ipa..ipa + size` backed by `pa..pa + size`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RamBank {
    pub ipa: u64,
    pub pa: u64,
    pub size: u64,
}

/// Most RAM banks a domain has (Xen gives dom0 at most 4 on ARM).
pub const MAX_RAM_BANKS: usize = 4;

/// A domain's RAM banks: a small fixed set, cheap to copy into a hypercall's memory view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RamBanks {
    banks: [RamBank; MAX_RAM_BANKS],
    len: usize,
}

impl RamBanks {
    pub const fn new() -> Self {
        Self { banks: [RamBank { ipa: 0, pa: 0, size: 0 }; MAX_RAM_BANKS], len: 0 }
    }

    /// Add a bank; `false` (and nothing added) when the set is full.
    pub fn push(&mut self, bank: RamBank) -> bool {
        if self.len == MAX_RAM_BANKS {
            return false;
        }
        self.banks[self.len] = bank;
        self.len += 1;
        true
    }
    pub fn as_slice(&self) -> &[RamBank] {
        &self.banks[..self.len]
    }
    /// Host physical range `[pa, pa + len)` lies entirely inside one bank.
    pub fn contains_pa(&self, pa: u64, len: u64) -> bool {
        let Some(end) = pa.checked_add(len) else { return false };
        self.as_slice().iter().any(|b| pa >= b.pa && end <= b.pa + b.size)
    }
    /// Total bytes.
    pub fn total(&self) -> u64 {
        self.as_slice().iter().map(|b| b.size).sum()
    }
}

/// One guest.
#[derive(Debug)]
pub struct Domain {
    /// Devices emulated for this domain (trapped MMIO).
    pub mmio: MmioBus,
    pub id: DomId,
    /// dom0: the hardware domain, direct-mapped, owner of the devices the hypervisor does not keep.
    pub is_hardware: bool,
    /// Guest physical == host physical for RAM.
    pub direct_mapped: bool,
    pub ram: RamBanks,
    /// Set by SCHEDOP_shutdown / PSCI SYSTEM_OFF; the trap layer acts on it.
    pub shutdown: Option<ShutdownReason>,
    /// Guest aborts logged so far (a hostile guest must not flood the console).
    pub faults_logged: u32,
    /// The domain's stage-2 translation (absent only in host tests that do not need one).
    pub p2m: Option<crate::mm::Stage2>,
    /// Grant table (its frames, pins on its grants, its mappings of others' grants).
    pub grants: grant::GrantTable,
    /// Event channels, shared_info and vcpu_info; `evtchn.upcall_pending` is the vGIC's hook.
    pub evtchn: evtchn::EventChannels,
    /// VMASST_TYPE_* bits enabled with `vm_assist`.
    pub vm_assist: u64,
    /// vCPUs the domain has (vCPU ids 0..max_vcpus; the builder sets it, default 1).
    pub max_vcpus: u32,
    /// The vCPU whose trap is being handled: the trap layer sets it under the domain lock
    /// before a hypercall, so handlers know which vCPU is calling.
    pub current_vcpu: u32,
}

impl Domain {
    pub fn new(id: DomId, is_hardware: bool, direct_mapped: bool, ram: RamBanks) -> Self {
        Self { mmio: MmioBus::default(), id, is_hardware, direct_mapped, ram, shutdown: None, faults_logged: 0, p2m: None, grants: Default::default(), evtchn: Default::default(), vm_assist: 0, max_vcpus: 1, current_vcpu: 0 }
    }

    /// Host physical range `[pa, pa + len)` lies entirely inside one of this domain's RAM banks.
    pub fn owns_ram(&self, pa: u64, len: u64) -> bool {
        self.ram.contains_pa(pa, len)
    }

    /// Whether to log one more guest fault (the first 64, then every 1024th).
    pub fn should_log_fault(&mut self) -> bool {
        self.faults_logged = self.faults_logged.saturating_add(1);
        self.faults_logged <= 64 || self.faults_logged % 1024 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owns_ram_is_exact_and_overflow_safe() {
        let mut ram = RamBanks::default();
        assert!(ram.push(RamBank { ipa: 0x4000_0000, pa: 0x4000_0000, size: 0x1000_0000 }));
        let d = Domain::new(0, true, true, ram);
        assert!(d.owns_ram(0x4000_0000, 0x1000));
        assert!(d.owns_ram(0x4fff_f000, 0x1000));
        assert!(!d.owns_ram(0x4fff_f000, 0x1001));
        assert!(!d.owns_ram(0x3fff_ffff, 2));
        assert!(!d.owns_ram(u64::MAX, 2));
    }
}

#[cfg(test)]
mod bank_tests {
    use super::*;
    #[test]
    fn bank_set_is_bounded() {
        let mut r = RamBanks::default();
        for i in 0..MAX_RAM_BANKS as u64 {
            assert!(r.push(RamBank { ipa: i << 30, pa: i << 30, size: 1 << 20 }));
        }
        assert!(!r.push(RamBank::default()));
        assert_eq!(r.total(), (MAX_RAM_BANKS as u64) << 20);
    }
}
