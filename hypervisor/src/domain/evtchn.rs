//! A domain's event channels (Xen's 2-level ABI, or the FIFO ABI of `evtchn_fifo` once the
//! domain switched with EVTCHNOP_init_control) and the pages they are delivered through:
//! the hypervisor-owned shared_info frame (pending and mask bitmaps, vcpu_info[0]) and the
//! vcpu_info a guest may register elsewhere in its RAM. Pure state plus the set-pending /
//! unmask rules; the hypercall layer (`hypercall::event_channel`) validates arguments.
//!
//! Each port notifies one vCPU (vCPU 0 unless EVTCHNOP_bind_vcpu moved it): its selector and
//! upcall flag are set in that vCPU's vcpu_info. Other vCPUs of the guest run while the
//! hypervisor sets bits in the shared bitmaps, so bits are set and cleared with atomic
//! read-modify-writes (`PhysMem::fetch_or_u64`).

use super::DomId;
use alloc::vec::Vec;
use guest_abi::event_channel::NR_VIRQS;
use platform::PhysMem;
use super::vcpu::MAX_VCPUS;

/// Ports in the 2-level ABI: 64 words of 64 bits.
pub const NR_PORTS: u32 = 4096;


/// Byte offsets inside shared_info and vcpu_info (Xen's arm64 layout, guest-abi asserts them).
const SHINFO_PENDING: u64 = 48;
const SHINFO_MASK: u64 = 560;
const VCPU_UPCALL_PENDING: u64 = 0;
const VCPU_UPCALL_MASK: u64 = 1;
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
    /// An IPI between the domain's vCPUs: a send marks this very port pending.
    Ipi,
}

/// Ports come in buckets of this many (Xen's struct evtchn is 64 bytes, a page holds 64):
/// a port of an allocated bucket exists even while it is free.
pub const PORTS_PER_BUCKET: u32 = 64;

/// The port table and where events land.
#[derive(Debug)]
pub struct EventChannels {
    ports: Vec<PortState>,
    /// The vCPU each port notifies (same indices as `ports`).
    port_vcpu: Vec<u8>,
    /// Per vCPU, the port bound to each virtual IRQ (global VIRQs only on vCPU 0).
    virq_port: [[u32; NR_VIRQS as usize]; MAX_VCPUS],
    /// Host PA of the domain's shared_info frame (allocated on first use).
    pub shared_info: Option<u64>,
    /// Where shared_info is mapped in the domain's stage 2, if it is.
    pub shared_info_gfn: Option<u64>,
    /// Host PA of each vCPU's registered vcpu_info (vCPU 0 without one uses vcpu_info[0] of
    /// shared_info; other vCPUs get no events until they register one, as on Xen/ARM).
    pub vcpu_info: [Option<u64>; MAX_VCPUS],
    /// Guest VA of each vCPU's registered runstate area.
    pub runstate_gva: [Option<u64>; MAX_VCPUS],
    /// Bit n set when an event made vCPU n's `evtchn_upcall_pending` 1: `Domain::with_evtchn`
    /// moves it to the domain's upcall bits, which the vGIC injects.
    pub upcall_pending: u32,
    /// HVM parameters set with `hvm_op` (xenstore page and port for domUs, ...).
    pub hvm_params: [u64; HVM_NR_PARAMS],
    /// The FIFO ABI's state once the domain switched to it (pending/mask then live in its
    /// event words, not in shared_info's bitmaps).
    pub fifo: Option<super::evtchn_fifo::Fifo>,
}

/// HVM parameters Xen 4.17 knows.
pub const HVM_NR_PARAMS: usize = 39;

impl Default for EventChannels {
    fn default() -> Self {
        Self {
            ports: Vec::new(),
            port_vcpu: Vec::new(),
            virq_port: [[0; NR_VIRQS as usize]; MAX_VCPUS],
            shared_info: None,
            shared_info_gfn: None,
            vcpu_info: [None; MAX_VCPUS],
            runstate_gva: [None; MAX_VCPUS],
            upcall_pending: 0,
            hvm_params: [0; HVM_NR_PARAMS],
            fifo: None,
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

    /// A port in a bucket the domain has (the first bucket always; others once a port in
    /// them was allocated): calls on a free port there are answered as for a closed port, on
    /// any other port as for a port that does not exist.
    pub fn is_valid(&self, port: u32) -> bool {
        let buckets = (self.ports.len() as u32).div_ceil(PORTS_PER_BUCKET).max(1);
        port < buckets * PORTS_PER_BUCKET
    }

    /// The live ports, lowest first.
    pub fn live_ports(&self) -> impl Iterator<Item = u32> + '_ {
        self.ports.iter().enumerate().skip(1).filter(|(_, p)| **p != PortState::Free).map(|(i, _)| i as u32)
    }

    /// A port that exists and is bound to something.
    pub fn is_live(&self, port: u32) -> bool {
        self.state(port) != PortState::Free
    }

    /// Lowest free port (port 0 is reserved), or `None` when all are in use; it notifies vCPU 0.
    pub fn alloc(&mut self, state: PortState) -> Option<u32> {
        self.alloc_on(state, 0)
    }

    /// Lowest free port, notifying `vcpu` (< `MAX_VCPUS`, else vCPU 0).
    pub fn alloc_on(&mut self, state: PortState, vcpu: u32) -> Option<u32> {
        let vcpu = if (vcpu as usize) < MAX_VCPUS { vcpu } else { 0 };
        if self.ports.is_empty() {
            self.ports.push(PortState::Free); // port 0, never handed out
            self.port_vcpu.push(0);
        }
        let port = match self.ports.iter().skip(1).position(|p| *p == PortState::Free) {
            Some(i) => i + 1,
            None if self.ports.len() < NR_PORTS as usize => {
                self.ports.push(PortState::Free);
                self.port_vcpu.push(0);
                self.ports.len() - 1
            }
            None => return None,
        };
        self.ports[port] = state;
        if let Some(f) = &mut self.fifo {
            f.init_port(port as u32);
        }
        if let Some(pv) = self.port_vcpu.get_mut(port) {
            *pv = vcpu as u8;
        }
        if let PortState::Virq(v) = state {
            if let Some(slot) = self.virq_port[vcpu as usize].get_mut(v as usize) {
                *slot = port as u32;
            }
        }
        Some(port as u32)
    }

    /// The vCPU `port` notifies.
    pub fn port_vcpu(&self, port: u32) -> u32 {
        self.port_vcpu.get(port as usize).map_or(0, |&v| u32::from(v))
    }

    /// Make live `port` notify `vcpu` (EVTCHNOP_bind_vcpu; the caller checked both).
    pub fn bind_vcpu(&mut self, port: u32, vcpu: u32) {
        if (vcpu as usize) < MAX_VCPUS && self.is_live(port) {
            if let Some(pv) = self.port_vcpu.get_mut(port as usize) {
                *pv = vcpu as u8;
            }
        }
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
            let vcpu = self.port_vcpu(port) as usize;
            if let Some(slot) = self.virq_port.get_mut(vcpu).and_then(|s| s.get_mut(v as usize)) {
                if *slot == port {
                    *slot = 0;
                }
            }
        }
        self.set(port, PortState::Free);
        if let Some(pv) = self.port_vcpu.get_mut(port as usize) {
            *pv = 0;
        }
        old
    }

    /// The port bound to `virq` on vCPU 0, if any.
    pub fn virq_port(&self, virq: u32) -> Option<u32> {
        self.virq_port_on(virq, 0)
    }

    /// The port bound to `virq` on `vcpu`, if any.
    pub fn virq_port_on(&self, virq: u32, vcpu: u32) -> Option<u32> {
        self.virq_port.get(vcpu as usize)?.get(virq as usize).copied().filter(|p| *p != 0)
    }

    /// PA of the vcpu_info `vcpu`'s events are signalled through.
    pub fn vcpu_info_pa(&self, vcpu: u32) -> Option<u64> {
        match self.vcpu_info.get(vcpu as usize).copied().flatten() {
            Some(pa) => Some(pa),
            None if vcpu == 0 => self.shared_info,
            None => None,
        }
    }

    /// Whether `port`'s bit in evtchn_pending is set (false before shared_info exists).
    pub fn is_pending(&self, port: u32, mem: &dyn PhysMem) -> bool {
        if let Some(f) = &self.fifo {
            return f.is_pending(port, mem);
        }
        let Some(shinfo) = self.shared_info else { return false };
        if port >= NR_PORTS {
            return false;
        }
        let pa = shinfo + SHINFO_PENDING + u64::from(port / 64) * 8;
        mem.read_u64(pa).is_ok_and(|w| w & (1 << (port % 64)) != 0)
    }

    /// Clear `vcpu`'s evtchn_upcall_mask (SCHEDOP_block enables event delivery).
    pub fn enable_upcalls(&self, vcpu: u32, mem: &dyn PhysMem) {
        if let Some(pa) = self.vcpu_info_pa(vcpu) {
            let _ = mem.write(pa + VCPU_UPCALL_MASK, &[0]);
        }
    }

    /// Whether `vcpu`'s evtchn_upcall_pending is set in the vcpu_info it uses.
    pub fn upcall_pending(&self, vcpu: u32, mem: &dyn PhysMem) -> bool {
        let Some(pa) = self.vcpu_info_pa(vcpu) else { return false };
        let mut b = [0u8; 1];
        mem.read(pa + VCPU_UPCALL_PENDING, &mut b).is_ok() && b[0] != 0
    }

    /// Mark `port` pending (Xen's 2-level rule): set its bit in evtchn_pending; if it was not
    /// already pending and is not masked, set its selector bit, and if that was newly set,
    /// raise evtchn_upcall_pending. Nothing happens before shared_info exists.
    pub fn set_pending(&mut self, port: u32, mem: &dyn PhysMem) {
        if port >= NR_PORTS {
            return;
        }
        let vcpu = self.port_vcpu(port);
        if let Some(f) = &mut self.fifo {
            if f.set_pending(port, vcpu, mem) {
                self.mark_upcall(vcpu, mem);
            }
            return;
        }
        let Some(shinfo) = self.shared_info else { return };
        if port >= NR_PORTS {
            return;
        }
        let (word, bit) = (u64::from(port / 64), 1u64 << (port % 64));
        let pending_pa = shinfo + SHINFO_PENDING + word * 8;
        let Ok(pending) = mem.fetch_or_u64(pending_pa, bit) else { return };
        if pending & bit != 0 {
            return;
        }
        let masked = mem.read_u64(shinfo + SHINFO_MASK + word * 8).map_or(true, |m| m & bit != 0);
        if !masked {
            self.raise_selector(word, self.port_vcpu(port), mem);
        }
    }

    /// EVTCHNOP_unmask: clear the mask bit; if the port was masked and is pending, deliver it.
    /// Clear `port`'s bit in evtchn_pending: a port is freed without an event left over for
    /// whatever binds it next (as Xen frees ports).
    pub fn clear_pending(&mut self, port: u32, mem: &dyn PhysMem) {
        if let Some(f) = &self.fifo {
            f.clear_pending(port, mem);
            return;
        }
        let Some(shinfo) = self.shared_info else { return };
        if port >= NR_PORTS {
            return;
        }
        let _ = mem.fetch_and_u64(shinfo + SHINFO_PENDING + u64::from(port / 64) * 8, !(1u64 << (port % 64)));
    }

    pub fn unmask(&mut self, port: u32, mem: &dyn PhysMem) {
        if port >= NR_PORTS {
            return;
        }
        let vcpu = self.port_vcpu(port);
        if let Some(f) = &mut self.fifo {
            if f.unmask(port, vcpu, mem) {
                self.mark_upcall(vcpu, mem);
            }
            return;
        }
        let Some(shinfo) = self.shared_info else { return };
        if port >= NR_PORTS {
            return;
        }
        let (word, bit) = (u64::from(port / 64), 1u64 << (port % 64));
        let mask_pa = shinfo + SHINFO_MASK + word * 8;
        let Ok(mask) = mem.fetch_and_u64(mask_pa, !bit) else { return };
        if mask & bit == 0 {
            return;
        }
        if mem.read_u64(shinfo + SHINFO_PENDING + word * 8).is_ok_and(|p| p & bit != 0) {
            self.raise_selector(word, self.port_vcpu(port), mem);
        }
    }

    fn raise_selector(&mut self, word: u64, vcpu: u32, mem: &dyn PhysMem) {
        let Some(vi) = self.vcpu_info_pa(vcpu) else { return };
        let Ok(sel) = mem.fetch_or_u64(vi + VCPU_PENDING_SEL, 1 << word) else { return };
        if sel & (1 << word) != 0 {
            return;
        }
        self.mark_upcall(vcpu, mem);
    }

    /// Set `vcpu`'s evtchn_upcall_pending and, if it was clear, flag the upcall for the vGIC.
    /// As Xen's test_and_set_bit on bit 0 of the byte (other bits the guest keeps there stay):
    /// an upcall already pending is not raised again, since the guest clears the flag before
    /// it scans its events and so finds this one too. Only the hypervisor sets the flag, so
    /// between the read and the write it can only have been cleared, which the write undoes
    /// as the atomic operation would.
    fn mark_upcall(&mut self, vcpu: u32, mem: &dyn PhysMem) {
        let Some(vi) = self.vcpu_info_pa(vcpu) else { return };
        let mut b = [0u8];
        if mem.read(vi + VCPU_UPCALL_PENDING, &mut b).is_ok() && b[0] & 1 == 0 && mem.write(vi + VCPU_UPCALL_PENDING, &[b[0] | 1]).is_ok() {
            self.upcall_pending |= 1 << vcpu;
        }
    }

    /// Switch to the FIFO ABI (EVTCHNOP_init_control's first call): every live port that is
    /// pending in the 2-level bitmap stays pending (raised once its event word exists).
    pub fn switch_to_fifo(&mut self, mem: &dyn PhysMem) {
        if self.fifo.is_some() {
            return;
        }
        let mut f = super::evtchn_fifo::Fifo::default();
        for port in self.live_ports().collect::<Vec<_>>() {
            f.init_port(port);
            if self.is_pending(port, mem) {
                f.save_pending(port);
            }
        }
        self.fifo = Some(f);
    }

    /// EVTCHNOP_expand_array's work after the page was added: raise the ports of `range`
    /// that became pending while they had no event word.
    pub fn raise_saved(&mut self, range: core::ops::Range<u32>, mem: &dyn PhysMem) {
        let end = range.end.min((self.ports.len() as u32).div_ceil(PORTS_PER_BUCKET).max(1) * PORTS_PER_BUCKET);
        for port in range.start..end.max(range.start) {
            let saved = self.fifo.as_mut().is_some_and(|f| f.take_saved_pending(port));
            if saved && self.is_live(port) {
                self.set_pending(port, mem);
            }
        }
    }

    /// Record `vcpu`'s registered vcpu_info at `pa` (already filled by the caller) and flag an
    /// upcall for it.
    pub fn set_vcpu_info(&mut self, vcpu: u32, pa: u64) {
        if let Some(slot) = self.vcpu_info.get_mut(vcpu as usize) {
            *slot = Some(pa);
            self.upcall_pending |= 1 << vcpu;
        }
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
        assert_eq!(e.upcall_pending, 1);
        // While the vCPU's upcall is pending, another event's selector bit is set but the
        // upcall is not raised again (the guest clears the flag before it scans).
        e.upcall_pending = 0;
        e.set_pending(200, &mem);
        assert_eq!(mem.read_u64(0x8000_0000 + VCPU_PENDING_SEL).unwrap(), (1 << 1) | (1 << 3));
        assert_eq!(e.upcall_pending, 0);
        // The guest took its events (flag and selector cleared)...
        mem.write_u64(0x8000_0000 + VCPU_UPCALL_PENDING, 0).unwrap();
        mem.write_u64(0x8000_0000 + VCPU_PENDING_SEL, 0).unwrap();
        // ...then masked: pending but no upcall; unmask delivers it
        mem.write_u64(0x8000_0000 + SHINFO_MASK, 1 << 3).unwrap();
        e.set_pending(3, &mem);
        assert_eq!(e.upcall_pending, 0);
        e.unmask(3, &mem);
        assert_eq!(e.upcall_pending, 1);
        assert_eq!(mem.read_u64(0x8000_0000 + SHINFO_MASK).unwrap(), 0);
        // out of range ports are ignored
        e.set_pending(NR_PORTS, &mem);
        e.unmask(u32::MAX, &mem);
    }

    #[test]
    fn events_go_to_the_vcpu_the_port_is_bound_to() {
        let (mut e, mem) = with_shinfo();
        let vi1 = 0x8000_0000 + 0x1000 + 64;
        let p = e.alloc(PortState::Unbound { remote: 0 }).unwrap();
        e.bind_vcpu(p, 1);
        assert_eq!(e.port_vcpu(p), 1);
        // vCPU 1 has no vcpu_info yet: the bit is pending, nobody is told.
        e.set_pending(p, &mem);
        assert_eq!(e.upcall_pending, 0);
        e.set_vcpu_info(1, vi1);
        assert_eq!(e.upcall_pending, 1 << 1);
        e.upcall_pending = 0;
        mem.write_u64(0x8000_0000 + SHINFO_PENDING, 0).unwrap();
        e.set_pending(p, &mem);
        assert_eq!(e.upcall_pending, 1 << 1);
        assert_eq!(mem.read_u64(vi1 + VCPU_PENDING_SEL).unwrap(), 1);
        assert_eq!(mem.read_u64(0x8000_0000 + VCPU_PENDING_SEL).unwrap(), 0, "not vCPU 0's");
        // Per-vCPU VIRQs: one port per vCPU; freeing the port resets its vCPU.
        let t0 = e.alloc_on(PortState::Virq(0), 0).unwrap();
        let t1 = e.alloc_on(PortState::Virq(0), 1).unwrap();
        assert_eq!((e.virq_port_on(0, 0), e.virq_port_on(0, 1)), (Some(t0), Some(t1)));
        e.free(t1);
        assert_eq!((e.virq_port_on(0, 0), e.virq_port_on(0, 1)), (Some(t0), None));
        assert_eq!(e.port_vcpu(t1), 0);
        e.bind_vcpu(p, MAX_VCPUS as u32);
        assert_eq!(e.port_vcpu(p), 1, "out of range: unchanged");
    }

    #[test]
    fn nothing_happens_without_shared_info() {
        let mem = TestMem::new(0x8000_0000, 0x1000);
        let mut e = EventChannels::default();
        e.set_pending(1, &mem);
        e.unmask(1, &mem);
        assert_eq!(e.upcall_pending, 0);
    }
}
