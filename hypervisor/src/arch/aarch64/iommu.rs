//! The IOMMUs the hypervisor drives on this machine (SMMUv3 on QEMU virt), as hardware
//! objects: probing at boot, attaching dom0's streams to its stage 2 (shared tables), TLB
//! maintenance that reaches both the CPU and the SMMUs, and event reporting.

use super::trap::FRAMES;
use super::{DirectMem, HwTlb};
use crate::iommu::smmuv3::{self, DmaAlloc, Smmu, SmmuConfig, SmmuError};
use crate::log;
use crate::mm::{FrameAlloc, TlbOps};
use alloc::vec::Vec;
use platform::{Clock, RawMmio};
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
    SMMUS.lock().push(SmmuInstance { path: path.into(), smmu, vmids: Vec::new() });
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
/// direction within one page become one line with a count. Called from the trap path until
/// the SMMU's event interrupt is wired to the GIC.
pub fn report_events() {
    let mut smmus = SMMUS.lock();
    for inst in smmus.iter_mut() {
        let path = inst.path.clone();
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
