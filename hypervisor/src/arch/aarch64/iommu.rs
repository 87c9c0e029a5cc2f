//! The IOMMUs the hypervisor drives on this machine (SMMUv3 on QEMU virt), as hardware
//! objects: probing at boot, attaching dom0's streams to its stage 2 (shared tables), TLB
//! maintenance that reaches both the CPU and the SMMUs, and event reporting.

use crate::domain::registry::FRAMES;
use super::mem::DirectMem;
use super::tlb::HwTlb;
use crate::iommu::smmuv3::virt::{GuestMem, PhysSte, PhysTlbi, Vsmmu, VsmmuBackend, VsmmuConfig, VSMMU_SIZE};
use crate::iommu::smmuv3::{self, Command, DmaAlloc, Smmu, SmmuConfig, SmmuError};
use crate::domain::mmio::{MmioAccess, MmioDevice, MmioResult};
use crate::domain::Domain;
use crate::log;
use crate::mm::{FrameAlloc, TlbOps};
use alloc::vec::Vec;
use platform::{Clock, Mmio, RawMmio};
use crate::sync::SpinMutex as Mutex;

/// Nanoseconds from the generic timer's physical counter.
#[derive(Clone, Copy)]
pub struct ArchClock;

impl Clock for ArchClock {
    fn now_ns(&self) -> u64 {
        // Whole seconds and the remainder separately: two hardware divisions, no 128-bit
        // arithmetic (a software routine) on the command-queue polling path.
        let f = super::regs::counter_freq().max(1);
        let t = super::regs::counter();
        (t / f).saturating_mul(1_000_000_000).saturating_add((t % f).saturating_mul(1_000_000_000) / f)
    }
}

/// SMMU structures come from the hypervisor's frame pool.
pub struct PoolDma;

impl DmaAlloc for PoolDma {
    fn alloc(&mut self, size: usize, align: usize) -> Option<u64> {
        let bytes = (size.max(align) as u64).max(4096);
        let count = usize::try_from(bytes.div_ceil(4096).checked_next_power_of_two()?).ok()?;
        let pa = FRAMES.lock().alloc_frames(count)?;
        if pa % (align as u64).max(1) != 0 {
            FRAMES.lock().free_frames(pa, count);
            return None;
        }
        Some(pa)
    }
}

pub type HwSmmu = Smmu<RawMmio, DirectMem, ArchClock, PoolDma>;

/// One hypervisor-driven SMMU and the stage-2 VMIDs it translates for.
pub struct SmmuInstance {
    pub path: alloc::string::String,
    pub smmu: HwSmmu,
    pub vmids: Vec<u16>,
    /// Streams dom0 translates nested through its emulated SMMU (their stage-1 events are
    /// dom0's), with the VMID of their stage 2.
    pub nested: Vec<u32>,
    pub nested_vmid: Option<u16>,
}

/// Every SMMU the hypervisor drives.
pub static SMMUS: Mutex<Vec<SmmuInstance>> = Mutex::new(Vec::new());

/// Probe the SMMUv3 at `base`: its features, or why it cannot be used (no stage 2, ...).
pub fn probe(base: u64) -> Result<smmuv3::SmmuFeatures, SmmuError> {
    // SAFETY: the DT's SMMU register page, Device memory in the EL2 map; nothing else drives it.
    smmuv3::probe(&unsafe { RawMmio::new(base as usize) })
}

/// Take over the SMMUv3 at `base`: stream table, queues, all unknown streams aborted (GBPA).
pub fn take(path: &str, base: u64, max_sid_bits: Option<u8>) -> Result<(), SmmuError> {
    // SAFETY: as in `probe`; from here on only this driver touches the registers.
    let mmio = unsafe { RawMmio::new(base as usize) };
    let config = SmmuConfig { max_sid_bits, enable_irqs: false, ..SmmuConfig::default() };
    let mut smmu = Smmu::new(mmio, DirectMem, ArchClock, PoolDma, config)?;
    smmu.enable()?;
    SMMUS.lock().push(SmmuInstance { path: path.into(), smmu, vmids: Vec::new(), nested: Vec::new(), nested_vmid: None });
    Ok(())
}

/// Translate stream `sid` of the SMMU at `path` with the stage 2 `vttbr`/`vtcr` of `vmid`.
pub fn attach(path: &str, sid: u32, vmid: u16, vttbr: u64, vtcr: u64) -> Result<(), SmmuError> {
    let mut smmus = SMMUS.lock();
    let Some(inst) = smmus.iter_mut().find(|s| s.path == path) else { return Err(SmmuError::NotEnabled) };
    inst.smmu.attach_stream(sid, vmid, vttbr, vtcr)?;
    if !inst.vmids.contains(&vmid) {
        inst.vmids.push(vmid);
    }
    Ok(())
}

/// Log every pending SMMU event (translation faults of blocked DMA, ...). A device retrying
/// word by word raises one event per access: consecutive events of one stream, kind and
/// direction within one page become one line with a count. Events of streams dom0 translates
/// nested go to its emulated SMMU instead, unless they are stage-2 faults (the hypervisor's).
/// Called from the trap path until the SMMU's event interrupt is wired to the GIC.
pub fn report_events() {
    let mut for_dom0: Vec<[u64; 4]> = Vec::new();
    let mut smmus = SMMUS.lock();
    for inst in smmus.iter_mut() {
        let path = inst.path.clone();
        let nested = &inst.nested;
        let mut run: Option<(smmuv3::SmmuEvent, u32)> = None;
        let key = |e: &smmuv3::SmmuEvent| (e.kind.code(), e.sid, e.read, e.input_addr.map(|a| a >> 12));
        let flush = |run: &mut Option<(smmuv3::SmmuEvent, u32)>| {
            if let Some((e, n)) = run.take() {
                if n > 1 {
                    log!("{path}: {e} (and {} more in the same page)", n - 1);
                } else {
                    log!("{path}: {e}");
                }
            }
        };
        let r = inst.smmu.drain_events(|e| {
            if nested.contains(&e.sid) && e.stage2 != Some(true) && for_dom0.len() < 256 {
                for_dom0.push(e.raw);
                return;
            }
            match &mut run {
                Some((first, n)) if key(first) == key(e) => *n += 1,
                _ => {
                    flush(&mut run);
                    run = Some((*e, 1));
                }
            }
        });
        flush(&mut run);
        match r {
            Ok(d) if d.overflowed => log!("{path}: event queue overflowed: events were lost"),
            Ok(_) => {}
            Err(e) => log!("{path}: cannot read events: {e}"),
        }
    }
    drop(smmus);
    if !for_dom0.is_empty() {
        forward_to_vsmmu(&for_dom0);
    }
}

/// dom0's RAM by IPA, for the emulated SMMU: its own RAM only, never a granted or foreign
/// page. Takes the p2m's read lock: never called with `SMMUS` held (a p2m change holds the
/// write lock and then takes `SMMUS` for its invalidations).
struct Dom0Ram<'a>(&'a Domain);

impl Dom0Ram<'_> {
    fn each_page(&self, ipa: u64, len: usize, mut f: impl FnMut(u64, usize, usize)) -> bool {
        let mut done = 0usize;
        while done < len {
            let at = ipa.wrapping_add(done as u64);
            let n = ((4096 - (at & 0xfff)) as usize).min(len - done);
            let Some(pa) = crate::hypercall::guest_phys::own_ram(self.0, at >> 12, &super::mem::DirectMem) else { return false };
            f(pa + (at & 0xfff), done, n);
            done += n;
        }
        true
    }
}

impl GuestMem for Dom0Ram<'_> {
    fn read(&self, ipa: u64, buf: &mut [u8]) -> bool {
        let len = buf.len();
        let mut ok = true;
        // Check every page first: a read either completes or leaves `buf` alone.
        ok &= self.each_page(ipa, len, |_, _, _| {});
        if !ok {
            return false;
        }
        self.each_page(ipa, len, |pa, at, n| {
            // SAFETY: a page of dom0's own RAM, identity-mapped as Normal memory at EL2.
            unsafe { core::ptr::copy_nonoverlapping(pa as *const u8, buf[at..].as_mut_ptr(), n) };
        })
    }
    fn write(&self, ipa: u64, data: &[u8]) -> bool {
        if !self.each_page(ipa, data.len(), |_, _, _| {}) {
            return false;
        }
        self.each_page(ipa, data.len(), |pa, at, n| {
            // SAFETY: as in `read`; dom0 reads its event queue through the same cacheable
            // mapping (the SMMU is coherent on this platform).
            unsafe { core::ptr::copy_nonoverlapping(data[at..].as_ptr(), pa as *mut u8, n) };
        })
    }
}

/// Physical work the emulated SMMU asked for, carried out once its register write is done
/// (with `SMMUS` held, and no guest memory touched meanwhile).
#[derive(Default)]
struct PendingOps(Vec<PhysOp>);

enum PhysOp {
    Install(u32, PhysSte),
    Tlbi(PhysTlbi),
    Sync,
}

impl VsmmuBackend for PendingOps {
    fn install(&mut self, sid: u32, ste: PhysSte) {
        self.0.push(PhysOp::Install(sid, ste));
    }
    fn tlbi(&mut self, op: PhysTlbi) {
        self.0.push(PhysOp::Tlbi(op));
    }
    fn sync(&mut self) {
        self.0.push(PhysOp::Sync);
    }
}

/// dom0's emulated SMMU and the physical one under it.
struct VsmmuState {
    /// The physical SMMU's path (in `SMMUS`).
    path: alloc::string::String,
    vsmmu: Vsmmu,
    vmid: u16,
    vttbr: u64,
    vtcr: u64,
    /// The SPIs dom0's SMMU node names for events and global errors (injected, not the
    /// physical lines: the hypervisor's SMMU interrupts stay off).
    event_spi: Option<u32>,
    gerror_spi: Option<u32>,
}

static VSMMU: Mutex<Option<VsmmuState>> = Mutex::new(None);

fn apply(st: &VsmmuState, ops: PendingOps) {
    if ops.0.is_empty() {
        return;
    }
    let mut smmus = SMMUS.lock();
    let Some(inst) = smmus.iter_mut().find(|i| i.path == st.path) else { return };
    let (vmid, vttbr, vtcr) = (st.vmid, st.vttbr, st.vtcr);
    for op in ops.0 {
        let op_log = match op {
            PhysOp::Install(sid, ste) => Some((sid, ste)),
            _ => None,
        };
        let r = match op {
            PhysOp::Install(sid, PhysSte::Abort) => inst.smmu.block_stream(sid),
            PhysOp::Install(sid, PhysSte::Stage2) => inst.smmu.attach_stream(sid, vmid, vttbr, vtcr),
            PhysOp::Install(sid, PhysSte::Nested { cd }) => inst
                .smmu
                .attach_stream_nested(sid, cd, vmid, vttbr, vtcr)
                // The SMMU caches the CD too: a changed CD behind the same pointer.
                .and_then(|()| inst.smmu.submit(&[Command::CfgiCd { sid, ssid: 0, leaf: false }])),
            PhysOp::Install(sid, PhysSte::Invalid) => inst.smmu.detach_stream(sid),
            PhysOp::Tlbi(t) => inst.smmu.queue_command(match t {
                PhysTlbi::All => Command::TlbiNhAll { vmid },
                PhysTlbi::Asid { asid } => Command::TlbiNhAsid { vmid, asid },
                PhysTlbi::Va { asid, addr, leaf, ttl, range } => Command::TlbiNhVa { vmid, asid, addr, leaf, ttl, range },
            }),
            PhysOp::Sync => inst.smmu.sync_queued(),
        };
        match (r, op_log) {
            (Err(e), _) => log!("{}: dom0's vSMMU: physical SMMU command failed: {e}", st.path),
            (Ok(()), Some((sid, PhysSte::Nested { cd }))) => {
                log!("{}: stream {sid:#x} translates nested: dom0's stage 1 (CD at IPA {cd:#x}) over its stage 2", st.path)
            }
            (Ok(()), Some((sid, PhysSte::Invalid))) => {
                let kind = st.vsmmu.bad_config(sid).map(|b| b.kind);
                match kind {
                    // No level-2 table for it yet: dom0 has not configured the stream.
                    Some(smmuv3::EventType::CBadStreamid) | None => {}
                    Some(k) => log!("{}: stream {sid:#x}: dom0's configuration refused ({}): its DMA aborts", st.path, k.name()),
                }
            }
            _ => {}
        }
    }
}

fn vsmmu_irqs(st: &mut VsmmuState) {
    if st.vsmmu.take_irq() {
        // Both lines are edge-triggered; a gerror or an event, dom0 reads the registers.
        for spi in [st.event_spi, st.gerror_spi].into_iter().flatten() {
            super::vgic_glue::inject_edge(0, 0, spi);
        }
    }
}

fn forward_to_vsmmu(events: &[[u64; 4]]) {
    let Some(dom) = crate::domain::registry::DOMAINS.get(0) else { return };
    let mut v = VSMMU.lock();
    let Some(st) = v.as_mut() else { return };
    for raw in events {
        st.vsmmu.forward_event(*raw, &Dom0Ram(dom));
    }
    vsmmu_irqs(st);
}

/// dom0's emulated SMMUv3's registers (page 0 and 1).
struct VsmmuDevice;

impl MmioDevice for VsmmuDevice {
    fn name(&self) -> &str {
        "vSMMU"
    }
    fn access(&mut self, _vcpu: usize, a: MmioAccess) -> MmioResult {
        // dom0 looking at its event queue's producer index sees what the physical SMMU has
        // recorded so far (events are otherwise collected on the console path).
        if !a.write && a.offset & 0xffff == 0xa8 {
            report_events();
        }
        let mut v = VSMMU.lock();
        let Some(st) = v.as_mut() else { return MmioResult::Done(0) };
        if !a.write {
            return MmioResult::Done(st.vsmmu.read(a.offset, a.size));
        }
        let Some(dom) = crate::domain::registry::DOMAINS.get(0) else { return MmioResult::Done(0) };
        let mut ops = PendingOps::default();
        st.vsmmu.write(a.offset, a.size, a.value, &Dom0Ram(dom), &mut ops);
        apply(st, ops);
        vsmmu_irqs(st);
        MmioResult::Done(0)
    }
}

/// Give dom0 an emulated SMMUv3 at `base` (the physical SMMU's address, its node kept in
/// dom0's DT) for the streams `sids` of the physical SMMU at `path`, nested over the stage 2
/// `vttbr`/`vtcr` of `vmid`. The streams already translate through that stage 2 (what an
/// SMMU out of reset with GBPA bypass gives dom0).
#[allow(clippy::too_many_arguments)]
pub fn attach_vsmmu(
    dom: &mut Domain,
    path: &str,
    base: u64,
    sids: Vec<u32>,
    (vmid, vttbr, vtcr): (u16, u64, u64),
    ipa_bits: u8,
    event_spi: Option<u32>,
    gerror_spi: Option<u32>,
) -> Result<(), alloc::string::String> {
    let (phys, phys_idr0) = {
        let mut smmus = SMMUS.lock();
        let inst = smmus.iter_mut().find(|i| i.path == path).ok_or("the SMMU is not the hypervisor's")?;
        if !inst.smmu.features().stage1 {
            return Err("the physical SMMU has no stage 1 (IDR0.S1P = 0): no nesting".into());
        }
        inst.nested = sids.clone();
        inst.nested_vmid = Some(vmid);
        (*inst.smmu.features(), inst.smmu.mmio().read32(smmuv3::regs::off::IDR0))
    };
    let ram = dom.ram().as_slice().iter().map(|b| (b.ipa, b.size)).collect();
    let vsmmu = Vsmmu::new(VsmmuConfig { phys, phys_idr0, sids, ram, ipa_bits });
    if let Some(v) = super::vgic_glue::dom0_vgic() {
        let mut g = v.lock();
        for spi in [event_spi, gerror_spi].into_iter().flatten() {
            // Injected by the emulation, not the physical line.
            let _ = g.set_hw(spi, false);
        }
    }
    *VSMMU.lock() = Some(VsmmuState { path: path.into(), vsmmu, vmid, vttbr, vtcr, event_spi, gerror_spi });
    if !dom.mmio.add(base, VSMMU_SIZE, alloc::boxed::Box::new(VsmmuDevice)) {
        *VSMMU.lock() = None;
        return Err("its registers overlap another emulated device".into());
    }
    Ok(())
}

/// Stage-2 TLB maintenance for the whole machine: the CPU's TLBs and, for VMIDs an SMMU
/// translates for, the SMMU's. SMMU invalidations are queued at once (by IPA) on those SMMUs
/// (no allocation, no buffer: this is on the hypercall path of every unmap); the CPU's are
/// gathered per VMID and issued at `sync` as one `TLBI VMALLS12E1IS` (stage 1 and 2 of that
/// VMID, as Xen flushes a p2m change), then waited for; each SMMU's batch ends with one
/// CMD_SYNC. One broadcast invalidation instead of two per page (IPAS2E1IS, then VMALLE1IS
/// for the combined entries): every broadcast TLBI stops all CPUs' translation (and, under
/// QEMU's round-robin TCG, ends this vCPU's turn).
#[derive(Default)]
pub struct SystemTlb {
    /// SMMU commands were queued since the last `sync`.
    queued: bool,
    /// VMIDs whose CPU TLB entries are to be invalidated at the next `sync`.
    cpu: [Option<u16>; 2],
}

impl SystemTlb {
    /// Queue `cmd` on every SMMU that translates for `vmid`.
    fn on_smmus(&mut self, vmid: u16, cmd: impl Fn(&mut HwSmmu) -> Result<(), SmmuError>) {
        let mut smmus = SMMUS.lock();
        for inst in smmus.iter_mut().filter(|i| i.vmids.contains(&vmid)) {
            self.queued = true;
            if let Err(e) = cmd(&mut inst.smmu) {
                log!("{}: TLB invalidation for VMID {vmid} failed: {e}", inst.path);
            }
        }
    }

    /// Remember that `vmid`'s CPU TLB entries must go at the next `sync` (with more VMIDs
    /// than slots, the oldest is invalidated now).
    fn note_cpu(&mut self, vmid: u16) {
        if self.cpu.contains(&Some(vmid)) {
            return;
        }
        if let Some(slot) = self.cpu.iter_mut().find(|s| s.is_none()) {
            *slot = Some(vmid);
            return;
        }
        if let Some(old) = self.cpu[0].replace(vmid) {
            HwTlb.invalidate_vmid(old);
        }
    }
}

impl TlbOps for SystemTlb {
    fn invalidate_ipa(&mut self, vmid: u16, ipa: u64) {
        self.note_cpu(vmid);
        self.on_smmus(vmid, |s| s.queue_s2_ipa(vmid, ipa));
    }
    fn invalidate_vmid(&mut self, vmid: u16) {
        self.note_cpu(vmid);
        self.on_smmus(vmid, |s| s.queue_vmid(vmid));
    }
    fn sync(&mut self) {
        for vmid in self.cpu.iter_mut().filter_map(Option::take) {
            HwTlb.invalidate_vmid(vmid);
        }
        HwTlb.sync();
        if !core::mem::take(&mut self.queued) {
            return;
        }
        let mut smmus = SMMUS.lock();
        for inst in smmus.iter_mut() {
            // Nested streams cache stage 1 combined with stage 2: a stage-2 change of their
            // VMID also drops those (TLBI_S2_IPA need not reach combined entries).
            if let Some(vmid) = inst.nested_vmid {
                if inst.vmids.contains(&vmid) {
                    let _ = inst.smmu.queue_command(Command::TlbiNhAll { vmid });
                }
            }
            if let Err(e) = inst.smmu.sync_queued() {
                log!("{}: TLB invalidation failed: {e}", inst.path);
            }
        }
    }
}

impl Drop for SystemTlb {
    fn drop(&mut self) {
        if self.queued || self.cpu.iter().any(Option::is_some) {
            self.sync();
        }
    }
}
