//! The Exynos interrupt combiner (samsung,exynos4210-combiner): 32 groups of up to 8 sources, each
//! group ORed onto one GIC SPI (group g -> SPI g). Register block: for group g, the word at
//! `(g / 4) * 0x10` holds four groups, bit `(g % 4) * 8 + b` for source b; ENABLE_SET +0x0,
//! ENABLE_CLEAR +0x4, INT_STATUS +0xC (masked status).

use crate::hal::Mmio;

pub const COMBINER_GROUPS: u32 = 32;
pub const COMBINER_SOURCES: u32 = 8;
pub const ENABLE_SET: usize = 0x0;
pub const ENABLE_CLEAR: usize = 0x4;
pub const INT_STATUS: usize = 0xC;

/// A combiner input, as written in a DT `interrupts` cell pair under the combiner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CombinerIrq {
    pub group: u32,
    pub bit: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CombinerError {
    NoSuchInput { group: u32, bit: u32 },
}

impl core::fmt::Display for CombinerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CombinerError::NoSuchInput { group, bit } => {
                write!(f, "combiner has no input {group}/{bit} (32 groups x 8 bits)")
            }
        }
    }
}

impl CombinerIrq {
    pub fn new(group: u32, bit: u32) -> Result<Self, CombinerError> {
        if group >= COMBINER_GROUPS || bit >= COMBINER_SOURCES {
            return Err(CombinerError::NoSuchInput { group, bit });
        }
        Ok(CombinerIrq { group, bit })
    }

    /// The GIC SPI number (not INTID: add 32) the group is wired to.
    pub fn spi(self) -> u32 {
        self.group
    }

    /// Offset of this input's register word (ENABLE_SET) and its bit mask there.
    pub fn word_and_mask(self) -> (usize, u32) {
        (((self.group / 4) * 0x10) as usize, 1 << ((self.group % 4) * 8 + self.bit))
    }
}

/// The combiner register block.
pub struct Combiner<M: Mmio> {
    regs: M,
}

impl<M: Mmio> Combiner<M> {
    pub fn new(regs: M) -> Self {
        Combiner { regs }
    }

    /// Mask every source of every group (the state xenith starts from).
    pub fn disable_all(&self) {
        for word in 0..(COMBINER_GROUPS / 4) as usize {
            self.regs.write32(word * 0x10 + ENABLE_CLEAR, u32::MAX);
        }
    }

    pub fn enable(&self, irq: CombinerIrq) {
        let (word, mask) = irq.word_and_mask();
        self.regs.write32(word + ENABLE_SET, mask);
    }

    pub fn disable(&self, irq: CombinerIrq) {
        let (word, mask) = irq.word_and_mask();
        self.regs.write32(word + ENABLE_CLEAR, mask);
    }

    /// The pending (enabled and asserted) sources of `group`, as an 8-bit mask.
    pub fn pending(&self, group: u32) -> u8 {
        if group >= COMBINER_GROUPS {
            return 0;
        }
        let word = ((group / 4) * 0x10) as usize;
        (self.regs.read32(word + INT_STATUS) >> ((group % 4) * 8)) as u8
    }

    /// The combiner inputs behind a taken SPI, lowest bit first.
    pub fn pending_for_spi(&self, spi: u32) -> impl Iterator<Item = CombinerIrq> {
        let bits = self.pending(spi);
        (0..COMBINER_SOURCES).filter(move |b| bits & (1 << b) != 0).map(move |bit| CombinerIrq { group: spi, bit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exynos5250::testregs::Regs;

    #[test]
    fn group_bit_to_register_and_spi() {
        // sysmmu_g2d: combiner 24/5 -> SPI 24, word 0x60, bit 5.
        let g2d = CombinerIrq::new(24, 5).unwrap();
        assert_eq!(g2d.spi(), 24);
        assert_eq!(g2d.word_and_mask(), (0x60, 1 << 5));
        // MCT 23/4: word 0x50, bit 3*8+4.
        assert_eq!(CombinerIrq::new(23, 4).unwrap().word_and_mask(), (0x50, 1 << 28));
        assert_eq!(CombinerIrq::new(32, 0), Err(CombinerError::NoSuchInput { group: 32, bit: 0 }));
        assert!(CombinerIrq::new(0, 8).is_err());
    }

    #[test]
    fn enable_disable_and_decode() {
        let regs = Regs::default();
        let c = Combiner::new(&regs);
        c.disable_all();
        assert_eq!(regs.writes_to(0x4).len(), 1);
        assert_eq!(regs.log().len(), 8);
        let fimd = CombinerIrq::new(3, 2).unwrap();
        c.enable(fimd);
        assert_eq!(regs.writes_to(ENABLE_SET), std::vec![0x0400_0000]);
        c.disable(fimd);
        assert_eq!(regs.get(ENABLE_CLEAR), 0x0400_0000);
        regs.set(INT_STATUS, 0x0500_0000); // group 3, bits 0 and 2
        let p: std::vec::Vec<_> = c.pending_for_spi(3).collect();
        assert_eq!(p, std::vec![CombinerIrq { group: 3, bit: 0 }, fimd]);
        assert_eq!(c.pending(40), 0);
    }
}
