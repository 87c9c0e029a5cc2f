//! The physical GICv3 as the hypervisor uses it at EL2: enough of the distributor,
//! this CPU's redistributor and the CPU interface to take the PPIs the hypervisor owns
//! (maintenance 25, hypervisor timer 26, virtual timer 27), and the ICH_* virtual interface
//! (ICH_HCR_EL2, ICH_LR<n>_EL2) behind the vGIC's `ListRegisters` trait, and the
//! redistributors' LPI tables. On a GICv2 host it hands over to `gic_v2`. Decisions about
//! guest interrupts are made in `irq::vgic`, where a taken interrupt goes in `irq.rs`; this
//! file only moves values to and from registers.

use super::percpu::this_cpu;
use super::regs::isb;
use crate::dt::boot_info::GicInfo;
use crate::irq::its::phys::SH_INNER;
use crate::irq::vgic::regs::GICD_SIZE;
use crate::irq::vgic::{HwOp, ListRegisters, HYP_TIMER_PPI, MAINTENANCE_PPI, MAX_LRS, VTIMER_PPI};
use crate::trap_stats::TrapKind;
use crate::{log, sysreg};
use crate::dt::Region;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::sync::Once;

/// INTIDs 1020-1023 are special (1023: nothing pending); LPIs start at 8192.
const SPECIAL_INTID: u32 = 1020;
/// Priority the hypervisor gives its PPIs.
pub(super) const HYP_PRIORITY: u8 = 0x80;
/// The private interrupts the hypervisor takes on every CPU.
pub(super) const HYP_PPIS: [u32; 4] = [KICK_SGI, MAINTENANCE_PPI, HYP_TIMER_PPI, VTIMER_PPI];
/// Polls of a GIC "write pending"/"children asleep" bit before giving up.
const POLL_LIMIT: u32 = 1_000_000;

/// Redistributor regions, for CPUs that come up later.
static REDISTRIBUTORS: Once<Vec<Region>> = Once::new();
/// The SGI one CPU sends another to make it look at its vCPU's interrupts again.
pub(super) const KICK_SGI: u32 = 0;
/// The physical distributor's base (0 until `init`).
static GICD_BASE: AtomicU64 = AtomicU64::new(0);
/// Priority of passed-through SPIs at the physical GIC (below the hypervisor's own PPIs).
const GUEST_SPI_PRIORITY: u8 = 0xa0;

// ICC_* (physical CPU interface at EL2) and ICH_* by encoding: names every assembler knows.
macro_rules! icc_iar1 { () => { sysreg!(read S3_0_C12_C12_0) } }
macro_rules! icc_eoir1 { ($v:expr) => { sysreg!(write S3_0_C12_C12_1, $v) } }
macro_rules! icc_dir { ($v:expr) => { sysreg!(write S3_0_C12_C11_1, $v) } }

fn mmio_read32(pa: u64) -> u32 {
    // SAFETY: `pa` is a GIC register inside a region the host DT names; the boot map covers it
    // as Device memory.
    unsafe { core::ptr::read_volatile(pa as *const u32) }
}

fn mmio_write32(pa: u64, v: u32) {
    // SAFETY: as for `mmio_read32`.
    unsafe { core::ptr::write_volatile(pa as *mut u32, v) }
}

fn mmio_read64(pa: u64) -> u64 {
    // SAFETY: as for `mmio_read32`; GICR_TYPER is a 64-bit register.
    unsafe { core::ptr::read_volatile(pa as *const u64) }
}

fn poll_clear(pa: u64, mask: u32) -> bool {
    (0..POLL_LIMIT).any(|_| mmio_read32(pa) & mask == 0)
}

/// This CPU's redistributor: the frame whose GICR_TYPER affinity matches MPIDR_EL1.
fn find_redistributor(regions: &[Region]) -> Option<u64> {
    redistributor_in(regions, sysreg!(read MPIDR_EL1))
}

/// The redistributor frame (in `regions`) of the CPU with `mpidr`.
pub(super) fn redistributor_in(regions: &[Region], mpidr: u64) -> Option<u64> {
    let aff = ((mpidr >> 32) & 0xff) << 24 | (mpidr & 0xff_ffff);
    for region in regions {
        let mut frame = region.base;
        while frame + 0x2_0000 <= region.base + region.size {
            let typer = mmio_read64(frame + 0x8);
            if typer >> 32 == aff {
                return Some(frame);
            }
            if typer & (1 << 4) != 0 {
                break; // Last
            }
            // Two 64 KiB frames, four with virtual LPIs (VLPIS).
            frame += if typer & (1 << 1) != 0 { 0x4_0000 } else { 0x2_0000 };
        }
    }
    None
}

/// Bring up the physical GIC for the hypervisor's own PPIs on the boot CPU and enable the
/// virtual CPU interface. Returns the distributor's ITLinesNumber (for the vGIC).
pub fn init(info: &GicInfo) -> Result<u32, String> {
    if info.version == 2 {
        GICD_BASE.store(info.distributor.base, Ordering::Relaxed);
        let it_lines = super::gic_v2::init(info, &HYP_PPIS, HYP_PRIORITY)?;
        LR_COUNT.store(super::gic_v2::lr_count(), Ordering::Relaxed);
        return Ok(it_lines);
    }
    if info.version != 3 {
        return Err(alloc::format!("GICv{} at {}: only GICv3 is supported on AArch64", info.version, info.path));
    }
    let gicd = info.distributor.base;
    GICD_BASE.store(gicd, Ordering::Relaxed);
    let it_lines = mmio_read32(gicd + 0x4) & 0x1f;
    // Distributor: affinity routing, both groups on (SPIs stay disabled until routed to a guest).
    mmio_write32(gicd, (1 << 4) | 0b11);
    if !poll_clear(gicd, 1 << 31) {
        return Err("GICD_CTLR.RWP never cleared".into());
    }
    REDISTRIBUTORS.call_once(|| info.redistributors.clone());
    init_this_cpu()?;
    log!(
        "GICv3: distributor {:#x} ({} INTIDs); virtual interface: {} list registers, {} priority bits",
        gicd,
        32 * (it_lines + 1),
        HwLrs::new().count(),
        ((sysreg!(read S3_4_C12_C11_1) >> 29) & 7) + 1
    );
    Ok(it_lines)
}

/// This CPU's part of the GIC: wake its redistributor, enable the hypervisor's PPIs and the
/// kick SGI, the CPU interface at EL2, and the virtual interface.
pub fn init_this_cpu() -> Result<(), String> {
    if super::gic_v2::get().is_some() {
        return super::gic_v2::init_this_cpu(&HYP_PPIS, HYP_PRIORITY);
    }
    let regions = REDISTRIBUTORS.get().map(Vec::as_slice).unwrap_or(&[]);
    let rd = find_redistributor(regions).ok_or("no GICv3 redistributor matches this CPU's MPIDR")?;
    // Wake the redistributor.
    let waker = rd + 0x14;
    mmio_write32(waker, mmio_read32(waker) & !(1 << 1));
    if !poll_clear(waker, 1 << 2) {
        return Err("GICR_WAKER.ChildrenAsleep never cleared".into());
    }
    // LPIs (host LPIs of the ITS), when the hypervisor has an ITS.
    enable_lpis(rd, this_cpu());
    let sgi = rd + 0x1_0000;
    mmio_write32(sgi + 0x180, 0xffff_ffff); // ICENABLER0: everything off
    mmio_write32(sgi + 0x80, 0xffff_ffff); // IGROUPR0: group 1
    for ppi in HYP_PPIS {
        let reg = sgi + 0x400 + u64::from(ppi & !3);
        let shift = 8 * (ppi & 3);
        let v = (mmio_read32(reg) & !(0xff << shift)) | (u32::from(HYP_PRIORITY) << shift);
        mmio_write32(reg, v);
    }
    mmio_write32(sgi + 0x100, (1 << KICK_SGI) | (1 << MAINTENANCE_PPI) | (1 << HYP_TIMER_PPI) | (1 << VTIMER_PPI));
    if !poll_clear(rd, 1 << 3) {
        return Err("GICR_CTLR.RWP never cleared".into());
    }

    // CPU interface: system registers at EL2, and let EL1 use them too (ICC_SRE_EL2.Enable).
    let sre = sysreg!(read S3_4_C12_C9_5);
    sysreg!(write S3_4_C12_C9_5, sre | 0b1001);
    isb();
    sysreg!(write S3_0_C4_C6_0, 0xff); // ICC_PMR_EL1: every priority
    sysreg!(write S3_0_C12_C12_3, 0); // ICC_BPR1_EL1
    // ICC_CTLR_EL1.EOImode 1: EOIR only drops priority, deactivation is separate (ICC_DIR or,
    // for a passed-through SPI, the guest's EOI through a HW list register).
    sysreg!(write S3_0_C12_C12_4, 1 << 1);
    sysreg!(write S3_0_C12_C12_7, 1); // ICC_IGRPEN1_EL1
    isb();

    // Virtual interface: empty list registers and active-priority registers, then enable.
    let vtr = sysreg!(read S3_4_C12_C11_1); // ICH_VTR_EL2
    LR_COUNT.store(((vtr & 0x1f) as u32 + 1).min(MAX_LRS as u32), Ordering::Relaxed);
    let mut l = HwLrs::new();
    for i in 0..l.count() {
        l.write(i, 0);
    }
    sysreg!(write S3_4_C12_C8_0, 0); // ICH_AP0R0_EL2
    sysreg!(write S3_4_C12_C9_0, 0); // ICH_AP1R0_EL2
    sysreg!(write S3_4_C12_C11_7, 0); // ICH_VMCR_EL2
    sysreg!(write S3_4_C12_C11_0, 1); // ICH_HCR_EL2.En
    isb();
    Ok(())
}

/// Make physical CPU `cpu` re-examine its vCPU's interrupts (it may be running the guest or
/// waiting in the guest's WFI): a physical SGI, unless that CPU is this one.
pub fn kick(cpu: usize) {
    if cpu == this_cpu() {
        return;
    }
    if let Some(g) = super::gic_v2::get() {
        super::regs::dsb_ish();
        g.send_sgi(KICK_SGI, super::gic_v2::cpu_mask(cpu));
        return;
    }
    let mpidr = super::percpu::host_mpidr(cpu);
    let aff0 = mpidr & 0xf;
    let value = ((mpidr >> 8) & 0xff) << 16 | ((mpidr >> 16) & 0xff) << 32 | ((mpidr >> 32) & 0xff) << 48
        | ((mpidr & 0xf0) >> 4) << 44
        | u64::from(KICK_SGI) << 24
        | 1 << aff0;
    super::regs::dsb_ish();
    sysreg!(write S3_0_C12_C11_5, value); // ICC_SGI1R_EL1
    isb();
}

/// The virtual CPU interface's list registers.
#[derive(Clone, Copy)]
pub struct HwLrs {
    count: usize,
    /// GICH list registers (GICv2) instead of ICH_LR<n>_EL2.
    v2: bool,
}

/// ICH_VTR_EL2.ListRegs + 1, read once by `init` (every guest exit and entry needs it).
static LR_COUNT: AtomicU32 = AtomicU32::new(0);

impl HwLrs {
    pub fn new() -> Self {
        Self { count: LR_COUNT.load(Ordering::Relaxed) as usize, v2: super::gic_v2::get().is_some() }
    }
}

impl Default for HwLrs {
    fn default() -> Self {
        Self::new()
    }
}

impl ListRegisters for HwLrs {
    fn count(&self) -> usize {
        self.count
    }
    fn read(&self, index: usize) -> u64 {
        if self.v2 {
            return super::gic_v2::read_lr(index);
        }
        match index {
            0 => sysreg!(read S3_4_C12_C12_0),
            1 => sysreg!(read S3_4_C12_C12_1),
            2 => sysreg!(read S3_4_C12_C12_2),
            3 => sysreg!(read S3_4_C12_C12_3),
            4 => sysreg!(read S3_4_C12_C12_4),
            5 => sysreg!(read S3_4_C12_C12_5),
            6 => sysreg!(read S3_4_C12_C12_6),
            7 => sysreg!(read S3_4_C12_C12_7),
            8 => sysreg!(read S3_4_C12_C13_0),
            9 => sysreg!(read S3_4_C12_C13_1),
            10 => sysreg!(read S3_4_C12_C13_2),
            11 => sysreg!(read S3_4_C12_C13_3),
            12 => sysreg!(read S3_4_C12_C13_4),
            13 => sysreg!(read S3_4_C12_C13_5),
            14 => sysreg!(read S3_4_C12_C13_6),
            15 => sysreg!(read S3_4_C12_C13_7),
            _ => 0,
        }
    }
    fn write(&mut self, index: usize, v: u64) {
        if self.v2 {
            return super::gic_v2::write_lr(index, v);
        }
        match index {
            0 => sysreg!(write S3_4_C12_C12_0, v),
            1 => sysreg!(write S3_4_C12_C12_1, v),
            2 => sysreg!(write S3_4_C12_C12_2, v),
            3 => sysreg!(write S3_4_C12_C12_3, v),
            4 => sysreg!(write S3_4_C12_C12_4, v),
            5 => sysreg!(write S3_4_C12_C12_5, v),
            6 => sysreg!(write S3_4_C12_C12_6, v),
            7 => sysreg!(write S3_4_C12_C12_7, v),
            8 => sysreg!(write S3_4_C12_C13_0, v),
            9 => sysreg!(write S3_4_C12_C13_1, v),
            10 => sysreg!(write S3_4_C12_C13_2, v),
            11 => sysreg!(write S3_4_C12_C13_3, v),
            12 => sysreg!(write S3_4_C12_C13_4, v),
            13 => sysreg!(write S3_4_C12_C13_5, v),
            14 => sysreg!(write S3_4_C12_C13_6, v),
            15 => sysreg!(write S3_4_C12_C13_7, v),
            _ => {}
        }
    }
    fn set_underflow_irq(&mut self, on: bool) {
        if self.v2 {
            if let Some(g) = super::gic_v2::get() {
                return g.set_underflow_irq(on);
            }
        }
        let hcr = sysreg!(read S3_4_C12_C11_0); // ICH_HCR_EL2
        let want = if on { hcr | (1 << 1) } else { hcr & !(1 << 1) };
        if want != hcr {
            sysreg!(write S3_4_C12_C11_0, want);
        }
    }
}

/// Acknowledge every pending physical interrupt (Group 1), drop its priority and hand it to
/// `dispatch`, which says whether to deactivate it now (false: the guest does, through a HW
/// list register, or it has no active state, an LPI). Returns the first INTID taken, if any.
#[inline]
pub fn take_physical_irqs(mut dispatch: impl FnMut(u32) -> bool) -> Option<u32> {
    let mut first = None;
    let v2 = super::gic_v2::get();
    for _ in 0..64 {
        // GICv2: GICC_IAR (an SGI's source CPU in bits 12:10); GICv3: ICC_IAR1_EL1.
        let (iar, intid) = match v2 {
            Some(g) => {
                let iar = g.acknowledge();
                (u64::from(iar), iar & 0x3ff)
            }
            None => {
                let iar = icc_iar1!();
                (iar, (iar & 0xff_ffff) as u32)
            }
        };
        if (SPECIAL_INTID..crate::irq::its::lpi::LPI_BASE).contains(&intid) {
            return first;
        }
        first = first.or(Some(intid));
        // Priority drop; deactivation below or by the guest.
        match v2 {
            Some(g) => g.end_of_interrupt(iar as u32),
            None => icc_eoir1!(iar),
        }
        if dispatch(intid) {
            deactivate(iar);
        }
    }
    first
}

/// Deactivate a physical interrupt whose priority was dropped (`iar` as acknowledged).
fn deactivate(iar: u64) {
    match super::gic_v2::get() {
        Some(g) => g.deactivate(iar as u32),
        None => icc_dir!(iar),
    }
}

/// Carry out on the physical distributor what the guest's writes to passed-through SPIs
/// asked for: enable (routed to this CPU, group 1), disable, trigger, deactivate.
pub(super) fn apply_hw_ops(ops: &[HwOp]) {
    if super::gic_v2::get().is_some() {
        for &op in ops {
            super::gic_v2::apply_hw_op(op, GUEST_SPI_PRIORITY);
        }
        return;
    }
    let gicd = GICD_BASE.load(Ordering::Relaxed);
    if gicd == 0 {
        return;
    }
    let word = |base: u64, intid: u32| gicd + base + 4 * u64::from(intid / 32);
    let bit = |intid: u32| 1u32 << (intid % 32);
    for &op in ops {
        match op {
            HwOp::Enable(intid, true) => {
                // To the CPU of vCPU 0, where Linux routes SPIs (GICD_IROUTER) unless told
                // otherwise, whichever vCPU enabled it: the guest's EOI through a HW list
                // register then deactivates it on the CPU that acknowledged it.
                let route = super::percpu::host_mpidr(0) & 0xff_00ff_ffff;
                // SAFETY: IROUTER<n> of an implemented SPI (the vGIC only names those).
                unsafe { core::ptr::write_volatile((gicd + 0x6000 + 8 * u64::from(intid)) as *mut u64, route) };
                let g = word(0x80, intid);
                mmio_write32(g, mmio_read32(g) | bit(intid));
                let p = gicd + 0x400 + u64::from(intid & !3);
                let shift = 8 * (intid & 3);
                mmio_write32(p, (mmio_read32(p) & !(0xff << shift)) | (u32::from(GUEST_SPI_PRIORITY) << shift));
                mmio_write32(word(0x100, intid), bit(intid));
            }
            HwOp::Enable(intid, false) => mmio_write32(word(0x180, intid), bit(intid)),
            HwOp::Configure(intid, edge) => {
                let c = gicd + 0xc00 + 4 * u64::from(intid / 16);
                let b = 2 * (intid % 16) + 1;
                let v = mmio_read32(c);
                mmio_write32(c, if edge { v | (1 << b) } else { v & !(1 << b) });
            }
            HwOp::Deactivate(intid) => icc_dir!(u64::from(intid)),
        }
    }
}

/// Which emulated GIC part a trapped access at `ipa` hit (for the trap counters).
pub fn mmio_kind(ipa: u64) -> TrapKind {
    let gicd = GICD_BASE.load(Ordering::Relaxed);
    if gicd != 0 && ipa.wrapping_sub(gicd) < GICD_SIZE {
        return TrapKind::Gicd;
    }
    let regions = REDISTRIBUTORS.get().map(Vec::as_slice).unwrap_or(&[]);
    if regions.iter().any(|r| ipa.wrapping_sub(r.base) < r.size) {
        return TrapKind::Gicr;
    }
    TrapKind::Mmio
}

/// The redistributors' LPI tables (the ITS's host LPIs): configuration (shared), one pending
/// table per CPU, and the INTID bits PROPBASER declares.
pub struct LpiTables {
    pub prop: u64,
    pub pend: Vec<u64>,
    pub id_bits: u8,
}

static LPI_TABLES: Once<LpiTables> = Once::new();

/// The LPI tables every CPU's redistributor gets (`init_this_cpu`), once the ITS has them.
pub fn set_lpi_tables(t: LpiTables) {
    LPI_TABLES.call_once(|| t);
}

/// Enable LPIs on the redistributor at `rd` (this CPU's, awake), vCPU `vcpu`'s CPU, with the
/// hypervisor's tables. Nothing to do before `init` or without an ITS.
fn enable_lpis(rd: u64, vcpu: usize) {
    let Some(t) = LPI_TABLES.get() else { return };
    let Some(&pend) = t.pend.get(vcpu) else { return };
    let ctlr = rd as *mut u32;
    // SAFETY: GICR_CTLR/PROPBASER/PENDBASER of this CPU's redistributor (Device map).
    unsafe {
        if core::ptr::read_volatile(ctlr) & 1 != 0 {
            return; // already on (its tables cannot change any more)
        }
        let id_bits = u64::from(t.id_bits - 1);
        // InnerCache (bits 9:7) write-back read/write-allocate, Inner Shareable.
        const CACHE_WAWB: u64 = 7 << 7;
        core::ptr::write_volatile((rd + 0x70) as *mut u64, t.prop | CACHE_WAWB | SH_INNER | id_bits);
        // PTZ: the pending table is zero.
        core::ptr::write_volatile((rd + 0x78) as *mut u64, pend | CACHE_WAWB | SH_INNER | (1 << 62));
        super::regs::dsb_ish();
        core::ptr::write_volatile(ctlr, core::ptr::read_volatile(ctlr) | 1);
    }
    super::regs::dsb_ish();
}

