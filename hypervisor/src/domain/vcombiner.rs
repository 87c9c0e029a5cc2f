//! dom0's view of the Exynos interrupt combiner when the hypervisor keeps some of its inputs (the
//! fault lines of the SysMMUs it drives): dom0's accesses trap here and reach the real combiner
//! with those inputs filtered out, so dom0's combiner driver (which masks every input at boot)
//! can neither mask nor see them, and everything else behaves as the hardware does.

use crate::domain::mmio::{MmioAccess, MmioDevice, MmioResult};
use platform::exynos5250::combiner::{CombinerIrq, COMBINER_GROUPS, ENABLE_CLEAR, ENABLE_SET, INT_STATUS};
use platform::Mmio;

/// The raw (unmasked) status register of each four-group word.
const RAW_STATUS: u64 = 0x8;
/// Four groups share one 16-byte word: eight words.
const WORDS: usize = (COMBINER_GROUPS / 4) as usize;

/// The combiner as dom0 sees it.
pub struct CombinerFilter<M: Mmio> {
    regs: M,
    /// Per word, the input bits the hypervisor keeps.
    kept: [u32; WORDS],
}

impl<M: Mmio> CombinerFilter<M> {
    /// dom0's view of the combiner at `regs`, without the inputs `kept`.
    pub fn new(regs: M, kept: impl IntoIterator<Item = CombinerIrq>) -> Self {
        let mut mask = [0u32; WORDS];
        for irq in kept {
            let (word, bit) = irq.word_and_mask();
            mask[word / 0x10] |= bit;
        }
        CombinerFilter { regs, kept: mask }
    }

    /// One trapped access of dom0's.
    pub fn filter(&mut self, a: MmioAccess) -> MmioResult {
        if a.size != 4 || !a.offset.is_multiple_of(4) {
            return MmioResult::Abort;
        }
        let (word, reg) = ((a.offset / 0x10) as usize, a.offset % 0x10);
        // Beyond the eight words the block has no registers: reads as zero, writes ignored.
        let Some(&kept) = self.kept.get(word) else { return MmioResult::Done(0) };
        let at = word * 0x10 + reg as usize;
        match (reg as usize, a.write) {
            (ENABLE_SET, true) | (ENABLE_CLEAR, true) => {
                let v = a.value as u32 & !kept;
                if v != 0 {
                    self.regs.write32(at, v);
                }
                MmioResult::Done(0)
            }
            (_, true) => MmioResult::Done(0),
            (r, false) if r == ENABLE_SET || r == ENABLE_CLEAR || r as u64 == RAW_STATUS || r == INT_STATUS => {
                MmioResult::Done(u64::from(self.regs.read32(at) & !kept))
            }
            _ => MmioResult::Done(0),
        }
    }
}

impl<M: Mmio + Send> MmioDevice for CombinerFilter<M> {
    fn name(&self) -> &str {
        "interrupt combiner (dom0's inputs)"
    }

    fn access(&mut self, _vcpu: usize, a: MmioAccess) -> MmioResult {
        self.filter(a)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;
    use super::*;
    use platform::exynos5250::combiner::Combiner;
    use std::cell::Cell;
    use sysmmu_model::soc::CombinerModel;

    fn read(f: &mut CombinerFilter<&CombinerModel<'_>>, offset: u64) -> u64 {
        match f.filter(MmioAccess { offset, size: 4, write: false, value: 0 }) {
            MmioResult::Done(v) => v,
            MmioResult::Abort => panic!("abort at {offset:#x}"),
        }
    }

    fn write(f: &mut CombinerFilter<&CombinerModel<'_>>, offset: u64, value: u32) {
        assert_eq!(f.filter(MmioAccess { offset, size: 4, write: true, value: u64::from(value) }), MmioResult::Done(0));
    }

    #[test]
    fn dom0_cannot_mask_or_see_the_hypervisors_inputs() {
        // The mixer SysMMU's fault line is 7/4 (word 0x10, bit 28); a dom0 device sits at 7/0.
        let (mixer_mmu, dom0_dev) = (Cell::new(false), Cell::new(false));
        let mut model = CombinerModel::new();
        model.connect(7, 4, || mixer_mmu.get());
        model.connect(7, 0, || dom0_dev.get());
        let mmu = CombinerIrq::new(7, 4).unwrap();
        Combiner::new(&model).enable(mmu);
        let mut f = CombinerFilter::new(&model, [mmu]);
        // Linux's combiner init: every input of every group masked.
        for w in 0..8 {
            write(&mut f, w * 0x10 + 0x4, u32::MAX);
        }
        mixer_mmu.set(true);
        assert!(model.spi_level(7), "the hypervisor's input is still enabled");
        assert_eq!(read(&mut f, 0x10 + 0xC), 0, "dom0 does not see it pending");
        assert_eq!(read(&mut f, 0x10 + 0x8), 0);
        assert_eq!(read(&mut f, 0x10), 0, "nor enabled");
        // dom0's own input works as on hardware.
        write(&mut f, 0x10, 1 << 24);
        dom0_dev.set(true);
        assert_eq!(read(&mut f, 0x10 + 0xC), 1 << 24);
        assert_eq!(read(&mut f, 0x10), 1 << 24);
        write(&mut f, 0x14, u32::MAX);
        assert_eq!(read(&mut f, 0x10 + 0xC), 0);
        assert!(model.spi_level(7), "dom0's mask-all left the hypervisor's input alone");
        // Bad accesses abort; offsets past the block read as zero.
        assert_eq!(f.filter(MmioAccess { offset: 0x10, size: 1, write: false, value: 0 }), MmioResult::Abort);
        assert_eq!(read(&mut f, 0x100), 0);
    }
}
