//! A domain's event channels (Xen's 2-level ABI) and the pages they are delivered through:
//! the hypervisor-owned shared_info frame (pending and mask bitmaps, vcpu_info[0]) and the
//! vcpu_info a guest may register elsewhere in its RAM. Pure state plus the set-pending /
//! unmask rules; the hypercall layer (`hypercall::event_channel`) validates arguments.
//!
//! One vCPU per domain for now: the hypervisor only touches these pages while the guest is
//! stopped in a trap, so plain read-modify-write is enough. SMP needs atomic bit operations.

use super::DomId;
use alloc::vec::Vec;
use guest_abi::event_channel::NR_VIRQS;
use platform::PhysMem;

/// Ports in the 2-level ABI: 64 words of 64 bits.
pub const NR_PORTS: u32 = 4096;

/// Byte offsets inside shared_info and vcpu_info (Xen's arm64 layout, guest-abi asserts them).
const SHINFO_PENDING: u64 = 48;
const SHINFO_MASK: u64 = 560;
const VCPU_UPCALL_PENDING: u64 = 0;
const VCPU_PENDING_SEL: u64 = 8;

/// What a port is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortState {
    Free,
    /// Allocated, waiting for `remote` to bind to it.
    Unbound { remote: DomId },
    /// Connected to `port` of domain `dom`.
    Interdomain { dom: DomId, port: u32 },
    /// Delivers virtual IRQ `virq`.
    Virq(u32),
}

/// The port table and where events land.
#[derive(Debug)]
pub struct EventChannels {
    ports: Vec<PortState>,
    virq_port: [u32; NR_VIRQS as usize],
    /// Host PA of the domain's shared_info frame (allocated on first use).
    pub shared_info: Option<u64>,
    /// Where shared_info is mapped in the domain's stage 2, if it is.
    pub shared_info_gfn: Option<u64>,
    /// Host PA of vCPU 0's registered vcpu_info (else it is vcpu_info[0] of shared_info).
    pub vcpu_info: Option<u64>,
    /// Guest VA of vCPU 0's registered runstate area.
    pub runstate_gva: Option<u64>,
    /// Set when an event made `evtchn_upcall_pending` 1: the hook for the vGIC, which injects
    /// the domain's event-channel PPI and clears this (level: keep injecting while the guest's
    /// vcpu_info still says pending).
    pub upcall_pending: bool,
    /// The event-channel PPI as `hvm_op` reports it (HVM_PARAM_CALLBACK_IRQ); the domain
    /// builder sets it (dom0: 16, as Xen 4.17 on QEMU virt).
    pub callback_ppi: u32,
    /// HVM parameters set with `hvm_op` (xenstore page and port for domUs, ...).
    pub hvm_params: [u64; HVM_NR_PARAMS],
}

/// HVM parameters Xen 4.17 knows.
pub const HVM_NR_PARAMS: usize = 39;

impl Default for EventChannels {
    fn default() -> Self {
        Self {
            ports: Vec::new(),
            virq_port: [0; NR_VIRQS as usize],
            shared_info: None,
            shared_info_gfn: None,
            vcpu_info: None,
            runstate_gva: None,
            upcall_pending: false,
            callback_ppi: 16,
            hvm_params: [0; HVM_NR_PARAMS],
        }
    }
}

impl EventChannels {
    /// The state of `port` (`Free` for anything never allocated, 0 included).
    pub fn state(&self, port: u32) -> PortState {
        if port == 0 {
            return PortState::Free;
        }
        self.ports.get(port as usize).copied().unwrap_or(PortState::Free)
    }

    /// A port that exists and is bound to something.
    pub fn is_live(&self, port: u32) -> bool {
        self.state(port) != PortState::Free
    }

    /// Lowest free port (port 0 is reserved), or `None` when all are in use.
    pub fn alloc(&mut self, state: PortState) -> Option<u32> {
        if self.ports.is_empty() {
            self.ports.push(PortState::Free); // port 0, never handed out
        }
        let port = match self.ports.iter().skip(1).position(|p| *p == PortState::Free) {
            Some(i) => i + 1,
            None if self.ports.len() < NR_PORTS as usize => {
                self.ports.push(PortState::Free);
                self.ports.len() - 1
            }
            None => return None,
        };
        self.ports[port] = state;
        if let PortState::Virq(v) = state {
            if let Some(slot) = self.virq_port.get_mut(v as usize) {
                *slot = port as u32;
            }
        }
        Some(port as u32)
    }

    /// Rebind a live port (used when the remote end connects or goes away).
    pub fn set(&mut self, port: u32, state: PortState) {
        if let Some(p) = self.ports.get_mut(port as usize) {
            if port != 0 {
                *p = state;
            }
        }
    }

    /// Free `port`; returns what it was.
    pub fn free(&mut self, port: u32) -> PortState {
        let old = self.state(port);
        if let PortState::Virq(v) = old {
            if let Some(slot) = self.virq_port.get_mut(v as usize) {
                *slot = 0;
            }
        }
        self.set(port, PortState::Free);
        old
    }

    /// The port bound to `virq`, if any.
    pub fn virq_port(&self, virq: u32) -> Option<u32> {
        self.virq_port.get(virq as usize).copied().filter(|p| *p != 0)
    }

    /// PA of the vcpu_info events are signalled through.
    fn vcpu_info_pa(&self) -> Option<u64> {
        self.vcpu_info.or(self.shared_info)
    }

    /// Mark `port` pending (Xen's 2-level rule): set its bit in evtchn_pending; if it was not
    /// already pending and is not masked, set its selector bit, and if that was newly set,
    /// raise evtchn_upcall_pending. Nothing happens before shared_info exists.
    pub fn set_pending(&mut self, port: u32, mem: &dyn PhysMem) {
        let Some(shinfo) = self.shared_info else { return };
        if port >= NR_PORTS {
            return;
        }
        let (word, bit) = (u64::from(port / 64), 1u64 << (port % 64));
        let pending_pa = shinfo + SHINFO_PENDING + word * 8;
        let Ok(pending) = mem.read_u64(pending_pa) else { return };
        if pending & bit != 0 || mem.write_u64(pending_pa, pending | bit).is_err() {
            return;
        }
        let masked = mem.read_u64(shinfo + SHINFO_MASK + word * 8).map_or(true, |m| m & bit != 0);
        if !masked {
            self.raise_selector(word, mem);
        }
    }

    /// EVTCHNOP_unmask: clear the mask bit; if the port was masked and is pending, deliver it.
    pub fn unmask(&mut self, port: u32, mem: &dyn PhysMem) {
        let Some(shinfo) = self.shared_info else { return };
        if port >= NR_PORTS {
            return;
        }
        let (word, bit) = (u64::from(port / 64), 1u64 << (port % 64));
        let mask_pa = shinfo + SHINFO_MASK + word * 8;
        let Ok(mask) = mem.read_u64(mask_pa) else { return };
        if mask & bit == 0 || mem.write_u64(mask_pa, mask & !bit).is_err() {
            return;
        }
        if mem.read_u64(shinfo + SHINFO_PENDING + word * 8).is_ok_and(|p| p & bit != 0) {
            self.raise_selector(word, mem);
        }
    }

    fn raise_selector(&mut self, word: u64, mem: &dyn PhysMem) {
        let Some(vi) = self.vcpu_info_pa() else { return };
        let Ok(sel) = mem.read_u64(vi + VCPU_PENDING_SEL) else { return };
        if sel & (1 << word) != 0 {
            return;
        }
        if mem.write_u64(vi + VCPU_PENDING_SEL, sel | (1 << word)).is_ok() && mem.write(vi + VCPU_UPCALL_PENDING, &[1]).is_ok() {
            self.upcall_pending = true;
        }
    }

    /// Record a registered vcpu_info at `pa` (already filled by the caller) and flag an upcall.
    pub fn set_vcpu_info(&mut self, pa: u64) {
        self.vcpu_info = Some(pa);
        self.upcall_pending = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::testmem::TestMem;

    fn with_shinfo() -> (EventChannels, TestMem) {
        let mem = TestMem::new(0x8000_0000, 0x4000);
        mem.write(0x8000_0000, &[0; 0x4000]).unwrap();
        let e = EventChannels { shared_info: Some(0x8000_0000), ..Default::default() };
        (e, mem)
    }

    #[test]
    fn ports_are_lowest_free_and_zero_is_never_used() {
        let mut e = EventChannels::default();
        assert_eq!(e.alloc(PortState::Unbound { remote: 0 }), Some(1));
        assert_eq!(e.alloc(PortState::Virq(2)), Some(2));
        assert_eq!(e.virq_port(2), Some(2));
        assert_eq!(e.free(1), PortState::Unbound { remote: 0 });
        assert_eq!(e.alloc(PortState::Unbound { remote: 0 }), Some(1));
        assert_eq!(e.free(2), PortState::Virq(2));
        assert_eq!(e.virq_port(2), None);
        assert!(!e.is_live(0) && !e.is_live(4095) && !e.is_live(u32::MAX));
        e.set(0, PortState::Virq(1));
        assert_eq!(e.state(0), PortState::Free);
    }

    #[test]
    fn table_is_bounded() {
        let mut e = EventChannels::default();
        for i in 1..NR_PORTS {
            assert_eq!(e.alloc(PortState::Unbound { remote: 0 }), Some(i));
        }
        assert_eq!(e.alloc(PortState::Unbound { remote: 0 }), None);
    }

    #[test]
    fn pending_follows_the_two_level_rules() {
        let (mut e, mem) = with_shinfo();
        e.set_pending(70, &mem);
        assert_eq!(mem.read_u64(0x8000_0000 + SHINFO_PENDING + 8).unwrap(), 1 << 6);
        assert_eq!(mem.read_u64(0x8000_0000 + VCPU_PENDING_SEL).unwrap(), 1 << 1);
        assert!(e.upcall_pending);
        // masked: pending but no upcall; unmask delivers it
        e.upcall_pending = false;
        mem.write_u64(0x8000_0000 + VCPU_PENDING_SEL, 0).unwrap();
        mem.write_u64(0x8000_0000 + SHINFO_MASK, 1 << 3).unwrap();
        e.set_pending(3, &mem);
        assert!(!e.upcall_pending);
        e.unmask(3, &mem);
        assert!(e.upcall_pending);
        assert_eq!(mem.read_u64(0x8000_0000 + SHINFO_MASK).unwrap(), 0);
        // out of range ports are ignored
        e.set_pending(NR_PORTS, &mem);
        e.unmask(u32::MAX, &mem);
    }

    #[test]
    fn nothing_happens_without_shared_info() {
        let mem = TestMem::new(0x8000_0000, 0x1000);
        let mut e = EventChannels::default();
        e.set_pending(1, &mem);
        e.unmask(1, &mem);
        assert!(!e.upcall_pending);
    }
}
