//! Stage-2 TLB maintenance of the hardware, and the hook that keeps the Exynos SysMMUs' shadow
//! of dom0's stage 2 in step with it (the board code, which itself builds on `mem`).

use super::regs::{self, Vttbr};

/// Stage-2 TLB maintenance for a VMID (the `mm::TlbOps` of the hardware).
pub struct HwTlb;

impl HwTlb {
    /// Run `f` with VTTBR holding `vmid`: the stage-2 TLB operations issued in HYP mode act on
    /// the VMID in VTTBR.
    fn with_vmid(vmid: u16, f: impl FnOnce()) {
        let saved = Vttbr::read();
        Vttbr::write(u64::from(vmid & 0xff) << 48);
        regs::isb();
        f();
        Vttbr::write(saved);
        regs::isb();
    }
}

impl crate::mm::TlbOps for HwTlb {
    /// ARMv7 has no invalidation by IPA (TLBIIPAS2 came with ARMv8): the VMID's whole
    /// non-HYP TLB goes (TLBIALLIS issued in HYP mode acts on the VMID in VTTBR), as Xen
    /// does on a Cortex-A15.
    fn invalidate_ipa(&mut self, vmid: u16, _ipa: u64) {
        self.invalidate_vmid(vmid);
    }
    fn invalidate_vmid(&mut self, vmid: u16) {
        Self::with_vmid(vmid, || {
            // SAFETY: TLB maintenance only (TLBIALLIS for the VMID in VTTBR).
            unsafe { core::arch::asm!("dsb ishst", "mcr p15, 0, {z}, c8, c3, 0", z = in(reg) 0u32) };
        });
    }
    fn sync(&mut self) {
        // SAFETY: barriers only.
        unsafe { core::arch::asm!("dsb ish", "isb") };
    }
    /// dom0's p2m changed: the Exynos SysMMUs the hypervisor drives walk a shadow of it.
    fn p2m_changed(&mut self, vmid: u16, ipa: u64, size: u64, now: Option<(u64, bool)>) {
        if vmid == crate::boot::DOM0_VMID {
            super::board::mirror(ipa, size, now);
        }
    }
}
