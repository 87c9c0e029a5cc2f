//! Host LPIs: the physical LPI numbers the hypervisor hands out for the event mappings it
//! makes at the physical ITS, what each one stands for (a virtual LPI of a vCPU), and the
//! redistributor's LPI tables (configuration and pending) as the hypervisor sizes them.

use alloc::vec;
use alloc::vec::Vec;

/// The first LPI INTID (GICv3: LPIs start at 8192).
pub const LPI_BASE: u32 = 8192;
/// Configuration-table byte: bit 0 enables the LPI, bit 1 is RES1, bits 7:2 the priority.
pub const PROP_ENABLE: u8 = 1 << 0;
pub const PROP_RES1: u8 = 1 << 1;
pub const PROP_PRIORITY_MASK: u8 = 0xfc;

/// The configuration byte of an LPI with `priority` (its two low bits dropped), enabled or not.
pub fn prop_byte(priority: u8, enabled: bool) -> u8 {
    (priority & PROP_PRIORITY_MASK) | PROP_RES1 | if enabled { PROP_ENABLE } else { 0 }
}

/// Bytes of an LPI configuration table for INTIDs of `id_bits` bits (one byte per LPI, none
/// for the INTIDs below 8192). Zero when `id_bits` leaves no room for LPIs.
pub fn prop_table_size(id_bits: u8) -> u64 {
    (1u64 << id_bits.min(32)).saturating_sub(u64::from(LPI_BASE))
}

/// Bytes of an LPI pending table for INTIDs of `id_bits` bits (one bit per INTID, the first
/// 1 KiB covering INTIDs below 8192 included).
pub fn pend_table_size(id_bits: u8) -> u64 {
    (1u64 << id_bits.min(32)) / 8
}

/// What a host LPI delivers: virtual LPI `vlpi` of vCPU `vcpu` of the domain owning the vITS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LpiTarget {
    pub vcpu: u16,
    pub vlpi: u32,
}

/// The host LPIs: INTIDs `LPI_BASE .. LPI_BASE + count`, each free or standing for a target.
#[derive(Clone, Debug)]
pub struct HostLpis {
    targets: Vec<Option<LpiTarget>>,
    /// Where the next search for a free LPI starts (allocation goes round the table).
    next: usize,
    used: usize,
}

impl HostLpis {
    /// Host LPIs for INTIDs of `id_bits` bits (the redistributors' configuration table size).
    pub fn new(id_bits: u8) -> Self {
        let n = prop_table_size(id_bits).min(1 << 20) as usize;
        Self { targets: vec![None; n], next: 0, used: 0 }
    }

    pub fn capacity(&self) -> usize {
        self.targets.len()
    }

    pub fn used(&self) -> usize {
        self.used
    }

    /// A free host LPI, now standing for `target`; `None` when all are taken.
    pub fn alloc(&mut self, target: LpiTarget) -> Option<u32> {
        let n = self.targets.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if self.targets[i].is_none() {
                self.targets[i] = Some(target);
                self.next = (i + 1) % n;
                self.used += 1;
                return Some(LPI_BASE + i as u32);
            }
        }
        None
    }

    fn slot(&self, lpi: u32) -> Option<usize> {
        let i = lpi.checked_sub(LPI_BASE)? as usize;
        (i < self.targets.len()).then_some(i)
    }

    /// Give `lpi` back. An LPI that is not allocated is left alone.
    pub fn free(&mut self, lpi: u32) {
        if let Some(i) = self.slot(lpi) {
            if self.targets[i].take().is_some() {
                self.used -= 1;
            }
        }
    }

    /// What `lpi` delivers, if it is allocated.
    pub fn target(&self, lpi: u32) -> Option<LpiTarget> {
        self.targets.get(self.slot(lpi)?).copied().flatten()
    }

    /// Point an allocated `lpi` at another vCPU (the event moved); false if it is free.
    pub fn retarget(&mut self, lpi: u32, vcpu: u16) -> bool {
        match self.slot(lpi).and_then(|i| self.targets[i].as_mut()) {
            Some(t) => {
                t.vcpu = vcpu;
                true
            }
            None => false,
        }
    }
}
