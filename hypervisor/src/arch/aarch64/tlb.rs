//! Stage-2 TLB maintenance of the hardware (`mm::TlbOps`).

use super::regs;
use crate::sysreg;

/// Stage-2 TLB maintenance for a VMID (the `mm::TlbOps` of the hardware).
pub struct HwTlb;

impl HwTlb {
    /// Run `f` with VTTBR_EL2 holding `vmid` (TLBIs by IPA/VMALL act on the current VMID).
    fn with_vmid(vmid: u16, f: impl FnOnce()) {
        let saved = sysreg!(read VTTBR_EL2);
        sysreg!(write VTTBR_EL2, u64::from(vmid) << 48);
        regs::isb();
        f();
        sysreg!(write VTTBR_EL2, saved);
        regs::isb();
    }
}

impl crate::mm::TlbOps for HwTlb {
    fn invalidate_ipa(&mut self, vmid: u16, ipa: u64) {
        Self::with_vmid(vmid, || {
            // SAFETY: TLB maintenance only.
            unsafe { core::arch::asm!("dsb ishst", "tlbi ipas2e1is, {}", "dsb ish", "tlbi vmalle1is", in(reg) ipa >> 12) };
        });
    }
    fn invalidate_vmid(&mut self, vmid: u16) {
        Self::with_vmid(vmid, || {
            // SAFETY: TLB maintenance only.
            unsafe { core::arch::asm!("dsb ishst", "tlbi vmalls12e1is") };
        });
    }
    fn sync(&mut self) {
        // SAFETY: barriers only.
        unsafe { core::arch::asm!("dsb ish", "isb") };
    }
}
