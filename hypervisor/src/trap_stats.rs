//! Traps from guests into the hypervisor, counted per physical CPU and by kind: what the guest
//! asked for (hypercall, SMCCC, WFI, a trapped system register, an emulated device access) or
//! which physical interrupt took it out (its timer, a kick from another CPU, a device). Printed
//! when dom0 stops, so a user sees what the hypervisor cost the guest and where.

use alloc::string::ToString;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Why a guest left for the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TrapKind {
    /// A Xen hypercall (`HVC #0xEA1`).
    Hypercall,
    /// An SMCCC/PSCI call (`HVC #0`, `SMC #0`).
    Smccc,
    Wfi,
    Wfe,
    /// A write to ICC_SGI1R_EL1: the guest sends an SGI (an IPI).
    Sgi,
    /// An access to the emulated EL1 physical timer (CNTP_*).
    PhysTimer,
    /// Another trapped system register or an unknown instruction (UNDEF injected).
    Sysreg,
    /// An access to the emulated GIC distributor.
    Gicd,
    /// An access to the emulated GIC redistributors.
    Gicr,
    /// An access to another emulated device.
    Mmio,
    /// A stage-2 fault nothing emulates (abort injected).
    Abort,
    /// Any other synchronous exception (bad HVC/SMC immediate, unhandled class, SError).
    OtherSync,
    /// IRQ exits, by the first physical INTID acknowledged: the guest's virtual timer,
    IrqVtimer,
    /// the hypervisor timer (the end of the vCPU's slice, or the guest's physical timer),
    IrqHypTimer,
    /// the GIC maintenance interrupt,
    IrqMaintenance,
    /// the SGI another CPU sends to make this one look at its vCPU's interrupts,
    IrqKick,
    /// a passed-through device SPI,
    IrqSpi,
    /// or none (spurious, or another INTID).
    IrqOther,
}

/// Number of kinds.
pub const KINDS: usize = TrapKind::IrqOther as usize + 1;

impl TrapKind {
    pub const ALL: [TrapKind; KINDS] = [
        Self::Hypercall,
        Self::Smccc,
        Self::Wfi,
        Self::Wfe,
        Self::Sgi,
        Self::PhysTimer,
        Self::Sysreg,
        Self::Gicd,
        Self::Gicr,
        Self::Mmio,
        Self::Abort,
        Self::OtherSync,
        Self::IrqVtimer,
        Self::IrqHypTimer,
        Self::IrqMaintenance,
        Self::IrqKick,
        Self::IrqSpi,
        Self::IrqOther,
    ];

    /// The short name printed in the breakdown.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hypercall => "hypercall",
            Self::Smccc => "smccc",
            Self::Wfi => "wfi",
            Self::Wfe => "wfe",
            Self::Sgi => "sgi-send",
            Self::PhysTimer => "cntp",
            Self::Sysreg => "sysreg",
            Self::Gicd => "gicd",
            Self::Gicr => "gicr",
            Self::Mmio => "mmio",
            Self::Abort => "abort",
            Self::OtherSync => "other",
            Self::IrqVtimer => "irq:vtimer",
            Self::IrqHypTimer => "irq:hyptimer",
            Self::IrqMaintenance => "irq:maint",
            Self::IrqKick => "irq:kick",
            Self::IrqSpi => "irq:spi",
            Self::IrqOther => "irq:other",
        }
    }

    /// An IRQ exit whose first acknowledged INTID is `intid` (`None`: nothing was pending).
    /// `kick` is the SGI CPUs send each other; the PPIs are the vGIC's (Arm's recommended ones).
    pub fn of_irq(intid: Option<u32>, kick: u32) -> Self {
        use crate::irq::vgic::{HYP_TIMER_PPI, MAINTENANCE_PPI, PRIVATE_IRQS, VTIMER_PPI};
        match intid {
            Some(VTIMER_PPI) => Self::IrqVtimer,
            Some(HYP_TIMER_PPI) => Self::IrqHypTimer,
            Some(MAINTENANCE_PPI) => Self::IrqMaintenance,
            Some(i) if i == kick => Self::IrqKick,
            Some(i) if (PRIVATE_IRQS..crate::irq::vgic::MAX_INTID).contains(&i) => Self::IrqSpi,
            _ => Self::IrqOther,
        }
    }

    /// A synchronous exception by its ESR_EL2, as far as the syndrome tells; a data abort is
    /// `Abort` until the emulated device it hit (if any) is known. (Not inlined: the hypercall
    /// path, which knows its kind, should not pay for these tests.)
    #[inline(never)]
    pub fn of_sync(esr: u64) -> Self {
        let iss = esr & 0x1ff_ffff;
        match esr >> 26 {
            0x16 if iss & 0xffff == 0xea1 => Self::Hypercall,
            0x16 | 0x17 if iss & 0xffff == 0 => Self::Smccc,
            0x01 if iss & 1 == 0 => Self::Wfi,
            0x01 => Self::Wfe,
            0x18 => {
                // Op0, Op1, CRn, CRm (Op2 and direction aside).
                let key = iss & 0x31_fc1e;
                if key == (3 << 20) | (3 << 14) | (14 << 10) | (2 << 1) {
                    Self::PhysTimer
                } else if iss & 0x3f_fc1e == (3 << 20) | (5 << 17) | (12 << 10) | (11 << 1) {
                    Self::Sgi
                } else {
                    Self::Sysreg
                }
            }
            0x00 => Self::Sysreg,
            0x20 | 0x24 => Self::Abort,
            _ => Self::OtherSync,
        }
    }
}

/// Per-CPU trap counters, `CPUS` physical CPUs. Each CPU counts in its own row only, so a
/// count is a plain load and store (no atomic read-modify-write on the trap path); readers on
/// other CPUs may see a count a few traps old.
pub struct TrapStats<const CPUS: usize> {
    counts: [[AtomicU32; ROW]; CPUS],
}

/// Counters per CPU row: `KINDS` rounded up to a power of two (a row is found with a shift).
const ROW: usize = KINDS.next_power_of_two();

impl<const CPUS: usize> TrapStats<CPUS> {
    pub const fn new() -> Self {
        Self { counts: [const { [const { AtomicU32::new(0) }; ROW] }; CPUS] }
    }

    /// One trap of `kind` on `cpu`, called on `cpu` itself. CPU numbers are taken modulo
    /// `CPUS` (a power of two: no bounds test on the trap path); guests run on CPUs below it.
    pub fn count(&self, cpu: usize, kind: TrapKind) {
        const { assert!(CPUS.is_power_of_two()) };
        let c = &self.counts[cpu & (CPUS - 1)][kind as usize];
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// The counts so far, `[cpu][kind]`.
    pub fn snapshot(&self) -> [[u32; KINDS]; CPUS] {
        core::array::from_fn(|c| core::array::from_fn(|k| self.counts[c][k].load(Ordering::Relaxed)))
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().map(|c| u64::from(c.load(Ordering::Relaxed))).sum()
    }
}

impl<const CPUS: usize> Default for TrapStats<CPUS> {
    fn default() -> Self {
        Self::new()
    }
}

/// The breakdown of `counts` (`[cpu][kind]`) for the first `cpus` CPUs, as text lines of at
/// most about `width` characters: the total with each CPU's share, then every kind that
/// occurred, most frequent first, with its per-CPU counts when there are several CPUs:
///
/// ```text
/// traps by CPU: 4160 = 2100 + 2060
/// traps by kind (CPU 0/1): hypercall 664/332, wfi 509/480, ...
/// ```
pub fn breakdown<const CPUS: usize>(counts: &[[u32; KINDS]; CPUS], cpus: usize, width: usize) -> alloc::vec::Vec<alloc::string::String> {
    use alloc::format;
    use alloc::string::String;
    let cpus = cpus.clamp(1, CPUS);
    let rows = &counts[..cpus];
    let per_cpu: alloc::vec::Vec<u64> = rows.iter().map(|r| r.iter().map(|&n| u64::from(n)).sum()).collect();
    let total: u64 = per_cpu.iter().sum();
    let mut lines = alloc::vec::Vec::new();
    let shares: alloc::vec::Vec<String> = per_cpu.iter().map(u64::to_string).collect();
    lines.push(if cpus > 1 { format!("traps by CPU: {total} = {}", shares.join(" + ")) } else { format!("traps: {total}") });
    let mut kinds: alloc::vec::Vec<(u64, TrapKind)> = TrapKind::ALL
        .iter()
        .map(|&k| (rows.iter().map(|r| u64::from(r[k as usize])).sum::<u64>(), k))
        .filter(|&(n, _)| n > 0)
        .collect();
    // Most frequent first; ties in the fixed kind order.
    kinds.sort_by(|a, b| b.0.cmp(&a.0).then((a.1 as u8).cmp(&(b.1 as u8))));
    let head = if cpus > 1 {
        let ids: alloc::vec::Vec<String> = (0..cpus).map(|c| c.to_string()).collect();
        format!("traps by kind (CPU {}):", ids.join("/"))
    } else {
        String::from("traps by kind:")
    };
    let mut line = head;
    let mut first = true;
    for (n, k) in kinds {
        let value = if cpus > 1 {
            let parts: alloc::vec::Vec<String> = rows.iter().map(|r| r[k as usize].to_string()).collect();
            parts.join("/")
        } else {
            n.to_string()
        };
        let item = format!("{} {value}", k.name());
        if !first && line.len() + item.len() + 3 > width {
            line.push(',');
            lines.push(core::mem::replace(&mut line, String::from(" ")));
        } else if !first {
            line.push(',');
        }
        line.push(' ');
        line.push_str(&item);
        first = false;
    }
    if !first {
        lines.push(line);
    }
    lines
}

/// Time spent in the hypervisor per hypercall, by hypercall number and (for the multiplexed
/// ones) the sub-op in the first argument: calls and counter ticks, so a user sees which
/// calls cost the guest what. Continuation steps count as calls.
pub struct HypercallTime {
    /// `[slot] = (calls, ticks)`; slot = `nr * SUBOPS + min(sub-op, SUBOPS - 1)`.
    cells: [(AtomicU32, AtomicU64); HCALL_SLOTS],
}

/// Hypercall numbers tracked (Xen's are below 64) and sub-ops per number.
const HCALL_NRS: usize = 64;
const SUBOPS: usize = 32;
const HCALL_SLOTS: usize = HCALL_NRS * SUBOPS;

/// The hypercalls whose first argument is a sub-op worth telling apart.
fn has_subops(nr: u64) -> bool {
    // memory_op, xen_version, grant_table_op, vcpu_op, sched_op, event_channel_op, hvm_op
    matches!(nr, 12 | 17 | 20 | 24 | 29 | 32 | 34)
}

impl HypercallTime {
    pub const fn new() -> Self {
        Self { cells: [const { (AtomicU32::new(0), AtomicU64::new(0)) }; HCALL_SLOTS] }
    }

    fn slot(nr: u64, arg0: u64) -> Option<usize> {
        if nr as usize >= HCALL_NRS {
            return None;
        }
        // memory_op keeps its continuation in the bits above the sub-op.
        let sub = if has_subops(nr) { (if nr == 12 { arg0 & 0x3f } else { arg0 }).min(SUBOPS as u64 - 1) } else { 0 };
        Some(nr as usize * SUBOPS + sub as usize)
    }

    /// One call (or continuation step) of `nr` with first argument `arg0` that took `ticks`.
    /// Racing CPUs may lose an update: these are statistics, not accounts.
    pub fn add(&self, nr: u64, arg0: u64, ticks: u64) {
        if let Some(i) = Self::slot(nr, arg0) {
            let (n, t) = &self.cells[i];
            n.store(n.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
            t.store(t.load(Ordering::Relaxed).wrapping_add(ticks), Ordering::Relaxed);
        }
    }

    /// Lines of at most about `width` characters: every (hypercall, sub-op) seen, most total
    /// time first, as `nr/sub calls×avg`, with `ticks_per_unit` counter ticks making the
    /// printed unit (e.g. 1 µs).
    pub fn lines(&self, width: usize) -> alloc::vec::Vec<alloc::string::String> {
        use alloc::format;
        let mut seen: alloc::vec::Vec<(u64, usize, u32)> = (0..HCALL_SLOTS)
            .filter_map(|i| {
                let n = self.cells[i].0.load(Ordering::Relaxed);
                (n > 0).then(|| (self.cells[i].1.load(Ordering::Relaxed), i, n))
            })
            .collect();
        seen.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let items: alloc::vec::Vec<alloc::string::String> = seen
            .iter()
            .map(|&(ticks, i, n)| {
                let (nr, sub) = (i / SUBOPS, i % SUBOPS);
                let name = if has_subops(nr as u64) { format!("{nr}/{sub}") } else { format!("{nr}") };
                format!("{name} {n}x{}", ticks / u64::from(n).max(1))
            })
            .collect();
        wrap("hypercall ticks (nr/sub-op calls x average ticks, most total first):", &items, width)
    }
}

impl Default for HypercallTime {
    fn default() -> Self {
        Self::new()
    }
}

/// `head` then `items` separated by ", ", broken into lines of about `width` characters.
fn wrap(head: &str, items: &[alloc::string::String], width: usize) -> alloc::vec::Vec<alloc::string::String> {
    let mut lines = alloc::vec::Vec::new();
    let mut line = alloc::string::String::from(head);
    for (k, it) in items.iter().enumerate() {
        let sep = if k + 1 < items.len() { "," } else { "" };
        if line.len() + 1 + it.len() + sep.len() > width && line.len() > 2 {
            lines.push(core::mem::take(&mut line));
            line.push(' ');
        }
        line.push(' ');
        line.push_str(it);
        line.push_str(sep);
    }
    lines.push(line);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_kinds_from_the_syndrome() {
        let esr = |ec: u64, iss: u64| (ec << 26) | (1 << 25) | iss;
        assert_eq!(TrapKind::of_sync(esr(0x16, 0xea1)), TrapKind::Hypercall);
        assert_eq!(TrapKind::of_sync(esr(0x16, 0)), TrapKind::Smccc);
        assert_eq!(TrapKind::of_sync(esr(0x17, 0)), TrapKind::Smccc);
        assert_eq!(TrapKind::of_sync(esr(0x16, 0x1234)), TrapKind::OtherSync);
        assert_eq!(TrapKind::of_sync(esr(0x01, 0x1e0_0000)), TrapKind::Wfi);
        assert_eq!(TrapKind::of_sync(esr(0x01, 0x1e0_0001)), TrapKind::Wfe);
        // MSR ICC_SGI1R_EL1, x1 (Op0 3, Op1 0, CRn 12, CRm 11, Op2 5, Rt 1, write).
        let sgi = (3 << 20) | (5 << 17) | (12 << 10) | (1 << 5) | (11 << 1);
        assert_eq!(TrapKind::of_sync(esr(0x18, sgi)), TrapKind::Sgi);
        // MRS x0, CNTP_CTL_EL0 (Op0 3, Op1 3, CRn 14, CRm 2, Op2 1, read).
        let cntp = (3 << 20) | (1 << 17) | (3 << 14) | (14 << 10) | (2 << 1) | 1;
        assert_eq!(TrapKind::of_sync(esr(0x18, cntp)), TrapKind::PhysTimer);
        // ICC_SGI0R_EL1 (Op2 7) is another register.
        let sgi0 = (3 << 20) | (7 << 17) | (12 << 10) | (11 << 1);
        assert_eq!(TrapKind::of_sync(esr(0x18, sgi0)), TrapKind::Sysreg);
        assert_eq!(TrapKind::of_sync(esr(0x00, 0)), TrapKind::Sysreg);
        assert_eq!(TrapKind::of_sync(esr(0x24, 0x93_0007)), TrapKind::Abort);
        assert_eq!(TrapKind::of_sync(esr(0x20, 0x7)), TrapKind::Abort);
        assert_eq!(TrapKind::of_sync(esr(0x2f, 0)), TrapKind::OtherSync);
    }

    #[test]
    fn irq_kinds_from_the_intid() {
        assert_eq!(TrapKind::of_irq(Some(27), 0), TrapKind::IrqVtimer);
        assert_eq!(TrapKind::of_irq(Some(26), 0), TrapKind::IrqHypTimer);
        assert_eq!(TrapKind::of_irq(Some(25), 0), TrapKind::IrqMaintenance);
        assert_eq!(TrapKind::of_irq(Some(0), 0), TrapKind::IrqKick);
        assert_eq!(TrapKind::of_irq(Some(1), 0), TrapKind::IrqOther);
        assert_eq!(TrapKind::of_irq(Some(33), 0), TrapKind::IrqSpi);
        assert_eq!(TrapKind::of_irq(Some(1023), 0), TrapKind::IrqOther);
        assert_eq!(TrapKind::of_irq(None, 0), TrapKind::IrqOther);
    }

    #[test]
    fn names_are_distinct() {
        for (i, a) in TrapKind::ALL.iter().enumerate() {
            assert_eq!(*a as usize, i);
            for b in &TrapKind::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
    }

    #[test]
    fn counts_per_cpu_and_kind() {
        let s = TrapStats::<2>::new();
        s.count(0, TrapKind::Wfi);
        s.count(1, TrapKind::Wfi);
        s.count(1, TrapKind::Hypercall);
        s.count(7, TrapKind::Gicd); // modulo CPUS: CPU 1's row
        let snap = s.snapshot();
        assert_eq!(snap[0][TrapKind::Wfi as usize], 1);
        assert_eq!(snap[1][TrapKind::Wfi as usize], 1);
        assert_eq!(snap[1][TrapKind::Hypercall as usize], 1);
        assert_eq!(snap[1][TrapKind::Gicd as usize], 1);
        assert_eq!(s.total(), 4);
    }

    #[test]
    fn breakdown_two_cpus_most_frequent_first() {
        let s = TrapStats::<4>::new();
        for _ in 0..3 {
            s.count(0, TrapKind::Hypercall);
        }
        for _ in 0..5 {
            s.count(1, TrapKind::Wfi);
        }
        s.count(0, TrapKind::IrqVtimer);
        s.count(1, TrapKind::Gicr);
        let lines = breakdown(&s.snapshot(), 2, 200);
        assert_eq!(
            lines,
            ["traps by CPU: 10 = 4 + 6", "traps by kind (CPU 0/1): wfi 0/5, hypercall 3/0, gicr 0/1, irq:vtimer 1/0"]
        );
    }

    #[test]
    fn breakdown_one_cpu_wraps_long_lines() {
        let s = TrapStats::<1>::new();
        for (i, k) in TrapKind::ALL.iter().enumerate() {
            for _ in 0..=i {
                s.count(0, *k);
            }
        }
        let lines = breakdown(&s.snapshot(), 1, 60);
        assert_eq!(lines[0], "traps: 171");
        assert!(lines[1].starts_with("traps by kind: irq:other 18, irq:spi 17,"));
        assert!(lines.len() > 3);
        for l in &lines {
            assert!(l.len() <= 60, "{l}");
        }
        // Every kind appears once.
        let all = lines[1..].join(" ");
        for k in TrapKind::ALL {
            assert_eq!(all.matches(&format!(" {} ", k.name())).count(), 1, "{}", k.name());
        }
        assert!(all.ends_with("hypercall 1"));
    }

    #[test]
    fn breakdown_of_nothing() {
        let s = TrapStats::<2>::new();
        assert_eq!(breakdown(&s.snapshot(), 2, 80), ["traps by CPU: 0 = 0 + 0"]);
        assert_eq!(breakdown(&s.snapshot(), 9, 80).len(), 1);
    }

    #[test]
    fn hypercall_time_by_sub_op_most_total_first() {
        let t = HypercallTime::new();
        t.add(17, 0, 10);
        t.add(17, 0, 30);
        t.add(12, 1 | (256 << 6), 500); // memory_op decrease, a continuation step
        t.add(12, 1, 100);
        t.add(99, 0, 1_000_000); // out of range: ignored
        t.add(29, 7, 5);
        let lines = t.lines(200);
        assert_eq!(lines, ["hypercall ticks (nr/sub-op calls x average ticks, most total first): 12/1 2x300, 17/0 2x20, 29/7 1x5"]);
        let narrow = t.lines(40);
        assert!(narrow.len() > 1 && narrow.iter().all(|l| l.len() <= 80));
    }
}
