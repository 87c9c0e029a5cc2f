//! `edu-nested`: dom0 (this guest) drives the emulated SMMUv3 xenith gives it with
//! `iommu-owner=nested:/pcie@10000000`, as a bare-metal SMMU driver would: a linear stream
//! table, one context descriptor and its own stage-1 tables, then edu DMA by IOVA. Checks: the
//! data comes back intact through both stages; a stage-1 mapping of memory dom0 does not own
//! is still blocked (by xenith's stage 2, which logs it); an unmapped IOVA is a stage-1 fault
//! dom0 finds in its own event queue; a malformed STE gets C_BAD_STE and a stage-2 command
//! CERROR_ILL, and xenith carries on.

use crate::edu::{check, pattern, Edu};
use crate::fdt::{Bank, PciHost};
use dom0_dma::iommu::lpae::{CommandQueue, Smmuv3S1Domain};
use dom0_dma::iommu::IommuDma;
use dom0_dma::select::{select, DeviceFacts, DmaEnv, IommuKind, Override};
use dom0_dma::{baremetal::BareMetalArch, DmaKind, RamMap, XenFeatures};
use core::ptr::{read_volatile, write_volatile};

const SMMU: u64 = crate::edu::QEMU_VIRT_SMMU;
const CR0: u64 = 0x20;
const CR0ACK: u64 = 0x24;
const GERROR: u64 = 0x60;
const GERRORN: u64 = 0x64;
const STRTAB_BASE: u64 = 0x80;
const STRTAB_BASE_CFG: u64 = 0x88;
const CMDQ_BASE: u64 = 0x90;
const CMDQ_PROD: u64 = 0x98;
const CMDQ_CONS: u64 = 0x9c;
const EVENTQ_BASE: u64 = 0xa0;
const EVENTQ_PROD: u64 = 0x1_00a8;
const EVENTQ_CONS: u64 = 0x1_00ac;

/// IOVAs the guest's stage 1 maps.
const IOVA_A: u64 = 0x1000_0000;
const IOVA_B: u64 = 0x1000_1000;
/// Mapped by stage 1 to the hypervisor's image (not dom0's): stage 2 must block it.
const IOVA_FOREIGN: u64 = 0x1000_2000;
const FOREIGN_PA: u64 = 0x4008_0000;
/// Not mapped at stage 1.
const IOVA_UNMAPPED: u64 = 0x1000_3000;

#[repr(C, align(16384))]
struct Tables {
    /// Linear stream table, 256 STEs (StreamIDs 0..=255: PCI bus 0).
    strtab: [u64; 256 * 8],
}
#[repr(C, align(4096))]
struct Pages {
    cmdq: [u64; 256 * 2],
    evtq: [u64; 128 * 4],
    cd: [u64; 512],
    l1: [u64; 512],
    l2: [u64; 512],
    l3: [u64; 512],
}
static mut TABLES: Tables = Tables { strtab: [0; 256 * 8] };
static mut PAGES: Pages = Pages { cmdq: [0; 512], evtq: [0; 512], cd: [0; 512], l1: [0; 512], l2: [0; 512], l3: [0; 512] };
#[repr(C, align(4096))]
struct Buf([u8; 4096]);
static mut BUF_A: Buf = Buf([0; 4096]);
static mut BUF_B: Buf = Buf([0; 4096]);

fn r32(off: u64) -> u32 {
    // SAFETY: the SMMU's two register pages are mapped Device at stage 1 (main.rs).
    unsafe { read_volatile((SMMU + off) as *const u32) }
}
fn w32(off: u64, v: u32) {
    // SAFETY: as for `r32`.
    unsafe { write_volatile((SMMU + off) as *mut u32, v) }
}
fn w64(off: u64, v: u64) {
    // SAFETY: as for `r32`.
    unsafe { write_volatile((SMMU + off) as *mut u64, v) }
}

struct Driver {
    prod: u32,
}

impl Driver {
    /// Queue commands and wait until the SMMU consumed them (or stopped on an error).
    fn cmds(&mut self, cmds: &[[u64; 2]]) -> u32 {
        for c in cmds {
            let i = (self.prod & 0xff) as usize;
            // SAFETY: the guest is single-threaded; the SMMU reads the queue only when PROD
            // is written below.
            unsafe {
                let q = &mut (*core::ptr::addr_of_mut!(PAGES)).cmdq;
                write_volatile(&mut q[i * 2], c[0]);
                write_volatile(&mut q[i * 2 + 1], c[1]);
            }
            self.prod = (self.prod + 1) & 0x1ff;
        }
        dsb();
        w32(CMDQ_PROD, self.prod);
        r32(CMDQ_CONS)
    }
}

fn dsb() {
    // SAFETY: a barrier.
    unsafe { core::arch::asm!("dsb sy", options(nostack)) };
}

fn ste_slot(sid: u32) -> *mut u64 {
    // SAFETY: index within the 256-entry table (sid < 256, checked by the caller).
    unsafe { core::ptr::addr_of_mut!((*core::ptr::addr_of_mut!(TABLES)).strtab[sid as usize * 8]) }
}

fn write_ste(sid: u32, words: [u64; 8]) {
    let p = ste_slot(sid);
    for (i, w) in words.iter().enumerate().rev() {
        // SAFETY: inside the STE (8 words).
        unsafe { write_volatile(p.add(i), *w) };
    }
    dsb();
}

const SYNC: [u64; 2] = [0x46, 0];
fn cfgi_ste(sid: u32) -> [u64; 2] {
    [0x03 | (u64::from(sid) << 32), 1]
}

/// The next event in the guest's event queue, waiting (with hypercalls, on whose way xenith
/// collects the physical SMMU's events) for one to arrive.
fn next_event(cons: &mut u32) -> Option<[u64; 4]> {
    for _ in 0..200 {
        let prod = r32(EVENTQ_PROD) & 0xff;
        if prod != *cons & 0xff {
            let i = (*cons & 0x7f) as usize;
            // SAFETY: the SMMU wrote entry `i` before moving PROD past it.
            let e = unsafe {
                let q = &(*core::ptr::addr_of!(PAGES)).evtq;
                [read_volatile(&q[i * 4]), read_volatile(&q[i * 4 + 1]), read_volatile(&q[i * 4 + 2]), read_volatile(&q[i * 4 + 3])]
            };
            *cons = (*cons + 1) & 0xff;
            w32(EVENTQ_CONS, *cons);
            return Some(e);
        }
        let _ = guest_abi::guest::version();
    }
    None
}

pub fn run(pci: Option<PciHost>, banks: &[Bank], passed: &mut u32, failed: &mut u32) {
    // XENFEAT_not_direct_mapped (16) instead of direct_mapped (17): a Linux dom0 then keeps
    // its IOMMU DMA ops rather than swiotlb-xen's.
    let f = match crate::cases::features(0) {
        crate::cases::Observed::Hex(v) => v,
        _ => 0,
    };
    check("edu_nested.features", f & (1 << 16) != 0 && f & (1 << 17) == 0, &alloc::format!("{f:#x}: not direct-mapped"), passed, failed);
    let Some(edu) = pci.and_then(|p| Edu::find(&p)) else {
        check("edu_nested.present", false, "no 1234:11e8 device on bus 0", passed, failed);
        return;
    };
    let sid = edu.rid();
    let idr0 = r32(0);
    check("edu_nested.idr0", idr0 & 3 == 2, &alloc::format!("IDR0 {idr0:#x}: stage 1 only"), passed, failed);

    // SAFETY: single-threaded; the SMMU reads these only once enabled below.
    let (strtab, p) = unsafe { (core::ptr::addr_of!(TABLES) as u64, &mut *core::ptr::addr_of_mut!(PAGES)) };
    let (pa_a, pa_b) = (core::ptr::addr_of!(BUF_A) as u64, core::ptr::addr_of!(BUF_B) as u64);
    // Stage 1: 39-bit IOVAs, 4K pages, walk starting at level 1. Descriptors: table 0b11,
    // page 0b11 with AF, inner shareable, AttrIndx 0 (normal write-back in MAIR below).
    let page = |pa: u64| pa | 0b11 | (1 << 10) | (3 << 8);
    p.l1[(IOVA_A >> 30) as usize & 511] = p.l2.as_ptr() as u64 | 0b11;
    p.l2[(IOVA_A >> 21) as usize & 511] = p.l3.as_ptr() as u64 | 0b11;
    p.l3[(IOVA_A >> 12) as usize & 511] = page(pa_a);
    p.l3[(IOVA_B >> 12) as usize & 511] = page(pa_b);
    p.l3[(IOVA_FOREIGN >> 12) as usize & 511] = page(FOREIGN_PA);
    // CD: T0SZ 25, TG0 4K, WB cacheable inner shareable walks, EPD1, V, IPS 40 bits, AA64,
    // R, A, ASET, ASID 1; TTB0; MAIR0 = 0xff (write-back).
    p.cd[0] = 25 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 30) | (1 << 31) | (2 << 32) | (1 << 41) | (1 << 45) | (1 << 46) | (1 << 47) | (1 << 48);
    p.cd[1] = p.l1.as_ptr() as u64;
    p.cd[3] = 0xff;
    let cd = p.cd.as_ptr() as u64;
    for s in 0..256 {
        write_ste(s, [1, 0, 0, 0, 0, 0, 0, 0]); // abort
    }
    write_ste(sid, [1 | (0b101 << 1) | cd, (1 << 2) | (1 << 4) | (3 << 6), 0, 0, 0, 0, 0, 0]);

    w32(CR0, 0);
    w64(STRTAB_BASE, strtab);
    w32(STRTAB_BASE_CFG, 8); // linear, 256 StreamIDs
    w64(CMDQ_BASE, p.cmdq.as_ptr() as u64 | 8);
    w32(CMDQ_PROD, 0);
    w32(CMDQ_CONS, 0);
    w64(EVENTQ_BASE, p.evtq.as_ptr() as u64 | 7);
    w32(EVENTQ_PROD, 0);
    w32(EVENTQ_CONS, 0);
    w32(CR0, 0b1100);
    let mut d = Driver { prod: 0 };
    d.cmds(&[[0x04, 31], SYNC, [0x30, 0], SYNC]);
    w32(CR0, 0b1101);
    let on = r32(CR0ACK) == 0b1101;
    check("edu_nested.enabled", on, "CR0ACK follows CR0", passed, failed);

    // DMA by IOVA: RAM -> device -> RAM, through dom0's stage 1 and xenith's stage 2.
    // SAFETY: single-threaded; the device writes BUF_B only while we poll.
    unsafe {
        pattern(&mut (*core::ptr::addr_of_mut!(BUF_A)).0, 11);
        (*core::ptr::addr_of_mut!(BUF_B)).0.fill(0);
    }
    let done = edu.dma(IOVA_A, 4096, false) && edu.dma(IOVA_B, 4096, true);
    let same = done && unsafe { read_volatile(core::ptr::addr_of!(BUF_B)).0 == read_volatile(core::ptr::addr_of!(BUF_A)).0 };
    check("edu_nested.dma_round_trip", same, if same { "4096 bytes back intact through both stages" } else { "data differs" }, passed, failed);

    // Stage 1 says the hypervisor's image; stage 2 (dom0's p2m) does not map it.
    let leaked = edu.dma(IOVA_FOREIGN, 4096, false) && edu.dma(IOVA_B, 4096, true) && {
        let got = unsafe { read_volatile(core::ptr::addr_of!(BUF_B)) }.0;
        got != unsafe { read_volatile(core::ptr::addr_of!(BUF_A)) }.0 && got.iter().any(|&x| x != 0)
    };
    check(
        "edu_nested.stage1_to_foreign_memory",
        !leaked,
        if leaked { "device read memory dom0 does not own" } else { "blocked by stage 2" },
        passed,
        failed,
    );

    // An IOVA stage 1 does not map: a stage-1 F_TRANSLATION in dom0's own event queue. (The
    // stage-2 fault above is the hypervisor's and never shows up here.)
    let mut cons = 0u32;
    let _ = edu.dma(IOVA_UNMAPPED, 4096, false);
    let ev = next_event(&mut cons);
    let ok = ev.is_some_and(|e| e[0] & 0xff == 0x10 && (e[0] >> 32) as u32 == sid && e[2] == IOVA_UNMAPPED && e[1] & (1 << 39) == 0);
    check("edu_nested.stage1_fault_to_dom0", ok, &alloc::format!("event {ev:x?}"), passed, failed);

    // A stage-2 command: CERROR_ILL at its slot, GERROR.CMDQ_ERR; acknowledged, the queue
    // goes on.
    let cons_reg = d.cmds(&[[0x28 | (1 << 32), 0]]);
    let gerror = r32(GERROR);
    let ill = (cons_reg >> 24) & 0x7f == 1 && gerror & 1 == 1;
    check("edu_nested.bad_command", ill, &alloc::format!("CMDQ_CONS {cons_reg:#x}, GERROR {gerror:#x}"), passed, failed);
    let at = (cons_reg & 0xff) as usize;
    // SAFETY: as in `cmds`: replace the failed command with a CMD_SYNC, then acknowledge.
    unsafe {
        let q = &mut (*core::ptr::addr_of_mut!(PAGES)).cmdq;
        write_volatile(&mut q[at * 2], SYNC[0]);
        write_volatile(&mut q[at * 2 + 1], SYNC[1]);
    }
    dsb();
    w32(GERRORN, gerror);
    let resumed = r32(CMDQ_CONS) == d.prod;
    check("edu_nested.command_error_acknowledged", resumed, "queue resumed", passed, failed);

    // Consume what the faults above left (the device retries word by word), so the queue
    // has room for what comes next.
    for _ in 0..4096 {
        if next_event(&mut cons).is_none() {
            break;
        }
    }
    dma_layer(&edu, sid, &mut d, banks, &mut cons, passed, failed);
    for _ in 0..4096 {
        if next_event(&mut cons).is_none() {
            break;
        }
    }

    // A malformed STE (stage 2 asked for): the device's DMA aborts with C_BAD_STE for dom0.
    write_ste(sid, [1 | (0b110 << 1), 0, 0, 0, 0, 0, 0, 0]);
    d.cmds(&[cfgi_ste(sid), SYNC]);
    let _ = edu.dma(IOVA_A, 4096, false);
    // Behind the device's earlier faults (one per word it tried) in the queue.
    let mut ev = None;
    for _ in 0..1024 {
        ev = next_event(&mut cons);
        if ev.is_none_or(|e| e[0] & 0xff == 0x04) {
            break;
        }
    }
    let ok = ev.is_some_and(|e| e[0] & 0xff == 0x04 && (e[0] >> 32) as u32 == sid);
    check("edu_nested.bad_ste", ok, &alloc::format!("event {ev:x?}"), passed, failed);
    let alive = guest_abi::guest::version().is_ok();
    check("edu_nested.hypervisor_alive", alive, "xen_version answers", passed, failed);
}

/// The command queue the DMA layer's stage-1 domain sends its invalidations to.
struct GuestCmdq(Driver);

impl CommandQueue for GuestCmdq {
    fn submit(&mut self, c: [u64; 2]) {
        self.0.cmds(&[c]);
    }
}

/// dom0's DMA layer on the emulated SMMU: `select` picks IOMMU DMA for a device behind an
/// SMMUv3 dom0 drives; its stage-1 domain (`dom0_dma::iommu::lpae`) builds the tables and the
/// CD, invalidates through the command queue; edu DMA by the IOVAs it hands out, data checked.
fn dma_layer(edu: &Edu, sid: u32, d: &mut Driver, banks: &[Bank], cons: &mut u32, passed: &mut u32, failed: &mut u32) {
    let ram: alloc::vec::Vec<(u64, u64)> = banks.iter().map(|b| (b.base, b.size)).collect();
    let map = RamMap::new(&ram);
    let features = guest_abi::guest::get_features(0).unwrap_or(0);
    let env = DmaEnv { features: XenFeatures(features), ram_top: map.top() };
    let mut facts = DeviceFacts::new("edu");
    facts.iommus = Some(IommuKind::Smmuv3);
    facts.hypervisor_iommu = true;
    facts.coherent = true;
    facts.dma_mask = u64::MAX;
    let kind = select(&facts, &env, Override::Auto).map(|c| c.kind);
    check("edu_nested.dma_layer.select", kind == Ok(DmaKind::IommuDma), &alloc::format!("{kind:?}"), passed, failed);
    // SAFETY: the guest identity-maps all its RAM (mmu.rs); the heap lies in it.
    let arch = unsafe { BareMetalArch::new(map.clone(), true) };
    // Its commands go after the CFGI_CD + CMD_SYNC issued below through `d`.
    let domain = match Smmuv3S1Domain::new(arch.clone(), GuestCmdq(Driver { prod: (d.prod + 2) & 0x1ff }), 2) {
        Ok(dom) => dom,
        Err(e) => {
            check("edu_nested.dma_layer.round_trip", false, &alloc::format!("no stage-1 domain: {e:?}"), passed, failed);
            return;
        }
    };
    // Point the stream's CD at the layer's context.
    let cd = domain.context_descriptor();
    // SAFETY: single-threaded; the SMMU reads the CD again on the CFGI below.
    unsafe {
        let p = &mut (*core::ptr::addr_of_mut!(PAGES)).cd;
        for (i, w) in cd.iter().enumerate() {
            write_volatile(&mut p[i], *w);
        }
    }
    dsb();
    d.cmds(&[[0x05 | (u64::from(sid) << 32), 1], SYNC]);
    let mut ops = IommuDma::new(arch, domain, u64::MAX, map);
    let (pa_a, pa_b) = crate::edu::pages();
    crate::dma_layer::fill(pa_a, 29);
    crate::dma_layer::fill(pa_b, 0);
    let r = crate::dma_layer::round_trip(edu, &mut ops, pa_a, pa_b);
    let intact = crate::dma_layer::same(pa_a, pa_b);
    // A fault on the way shows up in the event queue.
    let fault = next_event(cons);
    // The IOVAs are not the buffers' addresses: the DMA went through dom0's own stage 1.
    let ok = matches!(r, Ok((to, from)) if to != pa_a && from != pa_b) && intact;
    check(
        "edu_nested.dma_layer.round_trip",
        ok,
        &alloc::format!("IOVAs {r:x?}, data {}, first event after: {fault:x?}", if intact { "intact" } else { "differs" }),
        passed,
        failed,
    );
    d.prod = ops.domain().cmdq().0.prod;
}
