//! DMA checks with QEMU's `edu` PCI device (1234:11e8) behind the SMMU: transfers to and from
//! the guest's own RAM must work with the right data; transfers that touch memory the guest
//! does not own must be blocked when the hypervisor owns the SMMU (and are not, when dom0 was
//! handed the SMMU: `edu=unisolated`).
//!
//! The device's DMA engine: source 0x80, destination 0x88, count 0x90, command 0x98 (bit 0
//! start/busy, bit 1 direction: 1 = device buffer -> RAM); its 4 KiB buffer sits at device
//! address 0x40000.

use crate::fdt::PciHost;
use crate::println;
use core::ptr::{read_volatile, write_volatile};

const EDU_ID: u32 = 0x11e8_1234;
const EDU_BUF: u64 = 0x4_0000;
const REG_IDENT: u64 = 0x00;
const REG_LIVENESS: u64 = 0x04;
const REG_IRQ_RAISE: u64 = 0x60;
const REG_IRQ_ACK: u64 = 0x64;
const REG_DMA_SRC: u64 = 0x80;
const REG_DMA_DST: u64 = 0x88;
const REG_DMA_COUNT: u64 = 0x90;
const REG_DMA_CMD: u64 = 0x98;
const CMD_START: u64 = 1;
const CMD_TO_RAM: u64 = 2;
/// Polls before a transfer counts as stuck (edu completes after ~100 ms of virtual time).
const SPINS: u64 = 2_000_000_000;

/// The edu device, with BAR0 assigned and bus mastering on.
pub struct Edu {
    bar: u64,
    ecam: u64,
    devfn: u64,
}

fn cfg_read(ecam: u64, devfn: u64, off: u64) -> u32 {
    // SAFETY: ECAM of bus 0, mapped Device by the guest's stage 1.
    unsafe { read_volatile((ecam + (devfn << 12) + off) as *const u32) }
}

fn cfg_write(ecam: u64, devfn: u64, off: u64, v: u32) {
    // SAFETY: as for `cfg_read`.
    unsafe { write_volatile((ecam + (devfn << 12) + off) as *mut u32, v) }
}

impl Edu {
    /// Find the device on bus 0 and place its 1 MiB BAR0 at the start of the 32-bit window.
    pub fn find(pci: &PciHost) -> Option<Edu> {
        let devfn = (0..256u64).find(|&d| cfg_read(pci.ecam.base, d, 0) == EDU_ID)?;
        let bar = pci.mmio32.base;
        cfg_write(pci.ecam.base, devfn, 0x10, bar as u32);
        let cmd = cfg_read(pci.ecam.base, devfn, 0x04);
        cfg_write(pci.ecam.base, devfn, 0x04, cmd | 0b110); // memory space + bus master
        Some(Edu { bar, ecam: pci.ecam.base, devfn })
    }

    /// The device's requester ID on bus 0 (its StreamID behind QEMU virt's SMMU).
    pub fn rid(&self) -> u32 {
        self.devfn as u32
    }

    /// The device's slot on bus 0 (`pci` is the host it was found on).
    pub fn slot(&self, pci: &PciHost) -> Option<u32> {
        (pci.ecam.base == self.ecam).then_some((self.devfn >> 3) as u32)
    }

    /// Raise the device's interrupt (its "raise" register; INTx while MSI is off).
    pub fn raise_irq(&self) {
        self.write32(REG_IRQ_RAISE, 1);
    }

    /// Acknowledge it: the INTx line drops.
    pub fn ack_irq(&self) {
        self.write32(REG_IRQ_ACK, 1);
    }

    /// Let the device assert INTx (PCI command register bit 10 clear) or not.
    pub fn intx(&self, on: bool) {
        let cmd = cfg_read(self.ecam, self.devfn, 0x04);
        let cmd = if on { cmd & !(1 << 10) } else { cmd | (1 << 10) };
        cfg_write(self.ecam, self.devfn, 0x04, cmd);
    }

    /// The SPI exit bench's two loops, each timed by `window`: the device raising its INTx
    /// with the SPI enabled, `take` acknowledging it and running the given quiesce (the device
    /// lowers the line) before its EOI; then, once `disable` has turned the SPI off, the same
    /// two register writes with INTx off at the device (what the SPI path adds to them).
    /// Returns both loops' ticks; says how many interrupts `take` never saw, if any.
    pub fn spi_loops(&self, window: impl Fn(&mut dyn FnMut()) -> u64, take: impl Fn(&dyn Fn()) -> bool, disable: impl FnOnce()) -> (u64, u64) {
        let mut lost = 0u64;
        let full = window(&mut || {
            self.raise_irq();
            lost += u64::from(!take(&|| self.ack_irq()));
        });
        disable();
        self.intx(false);
        let base = window(&mut || {
            self.raise_irq();
            self.ack_irq();
        });
        self.intx(true);
        if lost != 0 {
            println!("bench exit_spi: {lost} interrupts never arrived (edu in slot {})", self.devfn >> 3);
        }
        (full, base)
    }

    fn read(&self, off: u64) -> u64 {
        // SAFETY: BAR0 (1 MiB) is mapped Device by the guest's stage 1.
        unsafe { read_volatile((self.bar + off) as *const u64) }
    }
    fn read32(&self, off: u64) -> u32 {
        // SAFETY: as for `read`.
        unsafe { read_volatile((self.bar + off) as *const u32) }
    }
    fn write(&self, off: u64, v: u64) {
        // SAFETY: as for `read`.
        unsafe { write_volatile((self.bar + off) as *mut u64, v) }
    }
    fn write32(&self, off: u64, v: u32) {
        // SAFETY: as for `read`.
        unsafe { write_volatile((self.bar + off) as *mut u32, v) }
    }

    /// The identification register answers and the liveness register inverts.
    pub fn alive(&self) -> bool {
        self.write32(REG_LIVENESS, 0x1234_5678);
        self.read32(REG_IDENT) & 0xff == 0xed && self.read32(REG_LIVENESS) == !0x1234_5678
    }

    /// One DMA: `to_ram` copies the device buffer to `dma_addr`, else `dma_addr` to the buffer.
    /// False if the engine never finished.
    pub fn dma(&self, dma_addr: u64, len: u64, to_ram: bool) -> bool {
        let (src, dst) = if to_ram { (EDU_BUF, dma_addr) } else { (dma_addr, EDU_BUF) };
        self.write(REG_DMA_SRC, src);
        self.write(REG_DMA_DST, dst);
        self.write(REG_DMA_COUNT, len);
        self.write(REG_DMA_CMD, CMD_START | if to_ram { CMD_TO_RAM } else { 0 });
        for _ in 0..SPINS {
            if self.read(REG_DMA_CMD) & CMD_START == 0 {
                return true;
            }
            core::hint::spin_loop();
        }
        false
    }
}

/// The SPI exit bench's device: runs `bench` with bus 0's edu device, or says there is none
/// (the `exit_spi` line without a figure).
pub fn with_spi_source(pci: Option<PciHost>, bench: impl FnOnce(&PciHost, &Edu)) {
    match pci.and_then(|p| Edu::find(&p).map(|e| (p, e))) {
        Some((p, edu)) => bench(&p, &edu),
        None => println!("bench exit_spi: no edu device on bus 0 (QEMU -device edu)"),
    }
}

/// Fill `buf` with a pattern derived from `seed`.
pub fn pattern(buf: &mut [u8], seed: u8) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
    }
}

/// Print a check line and count it.
pub fn check(name: &str, ok: bool, observed: &str, passed: &mut u32, failed: &mut u32) {
    println!("case {name}: {observed}");
    if ok {
        *passed += 1;
    } else {
        *failed += 1;
        println!("fail {name}");
    }
}

#[repr(C, align(4096))]
struct Page([u8; 4096]);
static mut BUF_A: Page = Page([0; 4096]);
static mut BUF_B: Page = Page([0; 4096]);

/// The two page buffers' addresses (identity-mapped: physical == virtual).
pub fn pages() -> (u64, u64) {
    (core::ptr::addr_of!(BUF_A) as u64, core::ptr::addr_of!(BUF_B) as u64)
}

/// Addresses the guest does not own: the start of QEMU virt's RAM, where xenith lives, and a
/// page high in RAM that no domain is given (2 GiB machine, dom0 at most 512 MiB below it).
const NOT_OWNED_READ: u64 = 0x4008_0000;
const NOT_OWNED_WRITE: u64 = 0xbff0_0000;

/// Where QEMU virt puts its SMMUv3 (dom0 may not be told: the node is gone when the
/// hypervisor keeps the SMMU).
pub const QEMU_VIRT_SMMU: u64 = 0x0905_0000;

#[cfg(target_arch = "aarch64")]
/// Read the SMMU's IDR0: `Some(value)`, or `None` if the access faulted (not in dom0's stage 2).
fn read_smmu_idr0() -> Option<u32> {
    crate::exceptions::clear();
    let v: u32;
    // SAFETY: QEMU_VIRT_SMMU is mapped Device at stage 1 (main.rs); the load either completes
    // or the injected abort is recorded and execution resumes after it (the nop).
    unsafe {
        core::arch::asm!("ldr {v:w}, [{p}]", "nop", v = out(reg) v, p = in(reg) QEMU_VIRT_SMMU, options(nostack));
    }
    match crate::exceptions::last() {
        (_, Some(_)) => None,
        (_, None) => Some(v),
    }
}

#[cfg(target_arch = "aarch64")]
/// Whether dom0 sees the SMMU: its DT node, and its registers in dom0's stage 2. The
/// hypervisor hides both when it keeps the SMMU, and gives both when dom0 owns it.
pub fn smmu_visibility(node: Option<crate::fdt::Bank>, isolated: bool, passed: &mut u32, failed: &mut u32) {
    let idr0 = read_smmu_idr0();
    let seen = alloc::format!(
        "node {}, IDR0 {}",
        if node.is_some() { "present" } else { "absent" },
        idr0.map(|v| alloc::format!("{v:#x}")).unwrap_or_else(|| "abort".into())
    );
    let ok = if isolated { node.is_none() && idr0.is_none() } else { node.is_some() && idr0.is_some() };
    check("edu.smmu_visible_to_dom0", ok, &seen, passed, failed);
}

#[cfg(target_arch = "aarch64")]
/// Run the edu checks; `isolated`: the hypervisor owns the SMMU, so DMA outside the guest's
/// memory must be blocked. Adds to the pass/fail counts.
pub fn run(pci: Option<PciHost>, isolated: bool, passed: &mut u32, failed: &mut u32) {
    let Some(edu) = pci.and_then(|p| Edu::find(&p)) else {
        check("edu.present", false, "no 1234:11e8 device on bus 0", passed, failed);
        return;
    };
    check("edu.present", edu.alive(), "ident/liveness ok", passed, failed);
    // SAFETY: the guest is single-threaded; the buffers are only used here, and the device
    // writes them only while we poll for completion.
    let (a, b) = unsafe { (&mut (*core::ptr::addr_of_mut!(BUF_A)).0, &mut (*core::ptr::addr_of_mut!(BUF_B)).0) };
    pattern(a, 7);
    b.fill(0);
    let pa_a = a.as_ptr() as u64;
    let pa_b = b.as_ptr() as u64;
    let done = edu.dma(pa_a, 4096, false) && edu.dma(pa_b, 4096, true);
    // The device wrote `b` behind the CPU's back: read it as memory, not from stale registers.
    let same = done && unsafe { read_volatile(core::ptr::addr_of!(BUF_B)) }.0 == unsafe { read_volatile(core::ptr::addr_of!(BUF_A)) }.0;
    check("edu.dma_round_trip", same, if same { "4096 bytes back intact" } else { "data differs" }, passed, failed);

    // Read from memory the guest does not own into the device buffer, then look at the buffer:
    // a blocked read leaves it as it was or (QEMU) fills it with zeros; anything else is the
    // other memory's content.
    let leaked = edu.dma(NOT_OWNED_READ, 4096, false) && edu.dma(pa_b, 4096, true) && {
        let got = unsafe { read_volatile(core::ptr::addr_of!(BUF_B)) }.0;
        got != unsafe { read_volatile(core::ptr::addr_of!(BUF_A)) }.0 && got.iter().any(|&x| x != 0)
    };
    let want_leak = !isolated;
    check(
        "edu.dma_read_not_owned",
        leaked == want_leak,
        if leaked { "device read memory the guest does not own" } else { "blocked: device buffer unchanged" },
        passed,
        failed,
    );
    // Write to memory no domain owns; only the hypervisor's SMMU event log can tell.
    let finished = edu.dma(NOT_OWNED_WRITE, 4096, true);
    check("edu.dma_write_not_owned", finished, "issued (the hypervisor logs the fault)", passed, failed);
    // The guest and the hypervisor carry on.
    let alive = guest_abi::guest::version().is_ok();
    check("edu.hypervisor_alive", alive, "xen_version answers", passed, failed);
}

/// Transfers per timed window of the DMA benchmark.
const BENCH_TRANSFERS: u64 = 8;

#[cfg(target_arch = "aarch64")]
/// `edu-bench`: time 4 KiB RAM -> device transfers (guest counter; deterministic under
/// `-icount shift=0`) and print `bench edu_dma_4k_ns: <ns per transfer>`.
pub fn bench(pci: Option<PciHost>) {
    let Some(edu) = pci.and_then(|p| Edu::find(&p)) else {
        println!("bench edu: no 1234:11e8 device on bus 0");
        return;
    };
    // SAFETY: as in `run`.
    let a = unsafe { &mut (*core::ptr::addr_of_mut!(BUF_A)).0 };
    pattern(a, 3);
    let start = crate::bench::edge();
    let mut ok = 0;
    for _ in 0..BENCH_TRANSFERS {
        ok += u64::from(edu.dma(a.as_ptr() as u64, 4096, false));
    }
    let ticks = crate::bench::counter() - start;
    let freq = crate::bench::frequency().max(1);
    let ns = u128::from(ticks) * 1_000_000_000 / (u128::from(freq) * u128::from(BENCH_TRANSFERS));
    println!("bench edu_dma_4k_ns: {ns} transfers: {BENCH_TRANSFERS} completed: {ok}");
}
