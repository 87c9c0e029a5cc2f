//! SMMUv3 programming-interface registers (Arm IHI 0070, chapter 6), with the datasheet's names.
//!
//! The layout is a `tock-registers` struct, but the driver never dereferences it: it takes the
//! byte offsets of the fields (`offset_of!`) and goes through [`platform::Mmio`], so the same
//! code runs against a host-side double. Field layouts are `register_bitfields!`, used through
//! `LocalRegisterCopy` (decode) and `FieldValue` (encode).

use core::mem::offset_of;

use platform::Mmio;
use tock_registers::fields::FieldValue;
use tock_registers::registers::{ReadOnly, ReadWrite};
use tock_registers::{register_bitfields, register_structs, LocalRegisterCopy, RegisterLongName};

register_bitfields![u32,
    /// SMMU_IDR0: features of the implementation.
    pub IDR0 [
        S2P OFFSET(0) NUMBITS(1) [],
        S1P OFFSET(1) NUMBITS(1) [],
        /// Translation table formats: 1 = AArch32 LPAE, 2 = AArch64, 3 = both.
        TTF OFFSET(2) NUMBITS(2) [],
        COHACC OFFSET(4) NUMBITS(1) [],
        BTM OFFSET(5) NUMBITS(1) [],
        HTTU OFFSET(6) NUMBITS(2) [],
        DORMHINT OFFSET(8) NUMBITS(1) [],
        HYP OFFSET(9) NUMBITS(1) [],
        ATS OFFSET(10) NUMBITS(1) [],
        NS1ATS OFFSET(11) NUMBITS(1) [],
        ASID16 OFFSET(12) NUMBITS(1) [],
        MSI OFFSET(13) NUMBITS(1) [],
        SEV OFFSET(14) NUMBITS(1) [],
        ATOS OFFSET(15) NUMBITS(1) [],
        PRI OFFSET(16) NUMBITS(1) [],
        VMW OFFSET(17) NUMBITS(1) [],
        VMID16 OFFSET(18) NUMBITS(1) [],
        CD2L OFFSET(19) NUMBITS(1) [],
        VATOS OFFSET(20) NUMBITS(1) [],
        TTENDIAN OFFSET(21) NUMBITS(2) [],
        STALL_MODEL OFFSET(24) NUMBITS(2) [],
        TERM_MODEL OFFSET(26) NUMBITS(1) [],
        /// 0 = linear stream table only, 1 = 2-level supported.
        ST_LEVEL OFFSET(27) NUMBITS(2) []
    ],
    /// SMMU_IDR1: table and queue sizes.
    pub IDR1 [
        SIDSIZE OFFSET(0) NUMBITS(6) [],
        SSIDSIZE OFFSET(6) NUMBITS(5) [],
        PRIQS OFFSET(11) NUMBITS(5) [],
        EVENTQS OFFSET(16) NUMBITS(5) [],
        CMDQS OFFSET(21) NUMBITS(5) [],
        ATTR_PERMS_OVR OFFSET(26) NUMBITS(1) [],
        ATTR_TYPES_OVR OFFSET(27) NUMBITS(1) [],
        REL OFFSET(28) NUMBITS(1) [],
        QUEUES_PRESET OFFSET(29) NUMBITS(1) [],
        TABLES_PRESET OFFSET(30) NUMBITS(1) [],
        ECMDQ OFFSET(31) NUMBITS(1) []
    ],
    /// SMMU_IDR2.
    pub IDR2 [
        BA_VATOS OFFSET(0) NUMBITS(10) []
    ],
    /// SMMU_IDR3: SMMUv3.1+ features.
    pub IDR3 [
        HAD OFFSET(2) NUMBITS(1) [],
        PBHA OFFSET(3) NUMBITS(1) [],
        XNX OFFSET(4) NUMBITS(1) [],
        PPS OFFSET(5) NUMBITS(1) [],
        MPAM OFFSET(7) NUMBITS(1) [],
        FWB OFFSET(8) NUMBITS(1) [],
        STT OFFSET(9) NUMBITS(1) [],
        /// Range-based invalidation (TLBI_S2_IPA with NUM/SCALE).
        RIL OFFSET(10) NUMBITS(1) [],
        BBML OFFSET(11) NUMBITS(2) []
    ],
    /// SMMU_IDR4: IMPLEMENTATION DEFINED.
    pub IDR4 [
        IMPDEF OFFSET(0) NUMBITS(32) []
    ],
    /// SMMU_IDR5: output address size and granules.
    pub IDR5 [
        /// 0=32, 1=36, 2=40, 3=42, 4=44, 5=48, 6=52 bits.
        OAS OFFSET(0) NUMBITS(3) [],
        GRAN4K OFFSET(4) NUMBITS(1) [],
        GRAN16K OFFSET(5) NUMBITS(1) [],
        GRAN64K OFFSET(6) NUMBITS(1) [],
        VAX OFFSET(10) NUMBITS(2) [],
        STALL_MAX OFFSET(16) NUMBITS(16) []
    ],
    /// SMMU_CR0 (and SMMU_CR0ACK, same layout).
    pub CR0 [
        SMMUEN OFFSET(0) NUMBITS(1) [],
        PRIQEN OFFSET(1) NUMBITS(1) [],
        EVENTQEN OFFSET(2) NUMBITS(1) [],
        CMDQEN OFFSET(3) NUMBITS(1) [],
        ATSCHK OFFSET(4) NUMBITS(1) [],
        VMW OFFSET(6) NUMBITS(3) []
    ],
    /// SMMU_CR1: memory attributes of table and queue accesses.
    pub CR1 [
        QUEUE_IC OFFSET(0) NUMBITS(2) [NonCacheable = 0, WriteBack = 1, WriteThrough = 2],
        QUEUE_OC OFFSET(2) NUMBITS(2) [NonCacheable = 0, WriteBack = 1, WriteThrough = 2],
        QUEUE_SH OFFSET(4) NUMBITS(2) [NonShareable = 0, Outer = 2, Inner = 3],
        TABLE_IC OFFSET(6) NUMBITS(2) [NonCacheable = 0, WriteBack = 1, WriteThrough = 2],
        TABLE_OC OFFSET(8) NUMBITS(2) [NonCacheable = 0, WriteBack = 1, WriteThrough = 2],
        TABLE_SH OFFSET(10) NUMBITS(2) [NonShareable = 0, Outer = 2, Inner = 3]
    ],
    /// SMMU_CR2.
    pub CR2 [
        E2H OFFSET(0) NUMBITS(1) [],
        /// Record C_BAD_STREAMID for out-of-range stream IDs.
        RECINVSID OFFSET(1) NUMBITS(1) [],
        /// Private TLB maintenance: ignore broadcast TLB invalidations.
        PTM OFFSET(2) NUMBITS(1) []
    ],
    /// SMMU_GBPA: global bypass attributes (what happens to traffic while SMMUEN == 0).
    pub GBPA [
        MEMATTR OFFSET(0) NUMBITS(4) [],
        MTCFG OFFSET(4) NUMBITS(1) [],
        ALLOCCFG OFFSET(8) NUMBITS(4) [],
        SHCFG OFFSET(12) NUMBITS(2) [],
        PRIVCFG OFFSET(16) NUMBITS(2) [],
        INSTCFG OFFSET(18) NUMBITS(2) [],
        ABORT OFFSET(20) NUMBITS(1) [],
        UPDATE OFFSET(31) NUMBITS(1) []
    ],
    /// SMMU_IRQ_CTRL (and SMMU_IRQ_CTRLACK).
    pub IRQ_CTRL [
        GERROR_IRQEN OFFSET(0) NUMBITS(1) [],
        PRIQ_IRQEN OFFSET(1) NUMBITS(1) [],
        EVENTQ_IRQEN OFFSET(2) NUMBITS(1) []
    ],
    /// SMMU_GERROR (and SMMU_GERRORN): an error is active while the bits differ.
    pub GERROR [
        CMDQ_ERR OFFSET(0) NUMBITS(1) [],
        EVENTQ_ABT_ERR OFFSET(2) NUMBITS(1) [],
        PRIQ_ABT_ERR OFFSET(3) NUMBITS(1) [],
        MSI_CMDQ_ABT_ERR OFFSET(4) NUMBITS(1) [],
        MSI_EVENTQ_ABT_ERR OFFSET(5) NUMBITS(1) [],
        MSI_PRIQ_ABT_ERR OFFSET(6) NUMBITS(1) [],
        MSI_GERROR_ABT_ERR OFFSET(7) NUMBITS(1) [],
        SFM_ERR OFFSET(8) NUMBITS(1) [],
        CMDQP_ERR OFFSET(9) NUMBITS(1) []
    ],
    /// SMMU_STRTAB_BASE_CFG.
    pub STRTAB_BASE_CFG [
        LOG2SIZE OFFSET(0) NUMBITS(6) [],
        SPLIT OFFSET(6) NUMBITS(5) [],
        FMT OFFSET(16) NUMBITS(2) [Linear = 0, TwoLevel = 1]
    ],
    /// SMMU_CMDQ_PROD: write index; bit LOG2SIZE is the wrap flag.
    pub CMDQ_PROD [
        WR OFFSET(0) NUMBITS(20) []
    ],
    /// SMMU_CMDQ_CONS: read index, and the error code of a failed command.
    pub CMDQ_CONS [
        RD OFFSET(0) NUMBITS(20) [],
        ERR OFFSET(24) NUMBITS(7) []
    ],
    /// SMMU_EVENTQ_PROD (register page 1).
    pub EVENTQ_PROD [
        WR OFFSET(0) NUMBITS(20) [],
        OVFLG OFFSET(31) NUMBITS(1) []
    ],
    /// SMMU_EVENTQ_CONS (register page 1).
    pub EVENTQ_CONS [
        RD OFFSET(0) NUMBITS(20) [],
        OVACKFLG OFFSET(31) NUMBITS(1) []
    ]
];

register_bitfields![u64,
    /// SMMU_STRTAB_BASE.
    pub STRTAB_BASE [
        ADDR OFFSET(6) NUMBITS(46) [],
        RA OFFSET(62) NUMBITS(1) []
    ],
    /// SMMU_CMDQ_BASE.
    pub CMDQ_BASE [
        LOG2SIZE OFFSET(0) NUMBITS(5) [],
        ADDR OFFSET(5) NUMBITS(47) [],
        RA OFFSET(62) NUMBITS(1) []
    ],
    /// SMMU_EVENTQ_BASE.
    pub EVENTQ_BASE [
        LOG2SIZE OFFSET(0) NUMBITS(5) [],
        ADDR OFFSET(5) NUMBITS(47) [],
        WA OFFSET(62) NUMBITS(1) []
    ]
];

register_structs! {
    /// SMMUv3 register page 0 (the part xenith uses).
    pub SmmuPage0 {
        (0x000 => pub idr0: ReadOnly<u32, IDR0::Register>),
        (0x004 => pub idr1: ReadOnly<u32, IDR1::Register>),
        (0x008 => pub idr2: ReadOnly<u32, IDR2::Register>),
        (0x00C => pub idr3: ReadOnly<u32, IDR3::Register>),
        (0x010 => pub idr4: ReadOnly<u32, IDR4::Register>),
        (0x014 => pub idr5: ReadOnly<u32, IDR5::Register>),
        (0x018 => pub iidr: ReadOnly<u32>),
        (0x01C => pub aidr: ReadOnly<u32>),
        (0x020 => pub cr0: ReadWrite<u32, CR0::Register>),
        (0x024 => pub cr0ack: ReadOnly<u32, CR0::Register>),
        (0x028 => pub cr1: ReadWrite<u32, CR1::Register>),
        (0x02C => pub cr2: ReadWrite<u32, CR2::Register>),
        (0x030 => _reserved0),
        (0x040 => pub statusr: ReadOnly<u32>),
        (0x044 => pub gbpa: ReadWrite<u32, GBPA::Register>),
        (0x048 => pub agbpa: ReadWrite<u32>),
        (0x04C => _reserved1),
        (0x050 => pub irq_ctrl: ReadWrite<u32, IRQ_CTRL::Register>),
        (0x054 => pub irq_ctrlack: ReadOnly<u32, IRQ_CTRL::Register>),
        (0x058 => _reserved2),
        (0x060 => pub gerror: ReadOnly<u32, GERROR::Register>),
        (0x064 => pub gerrorn: ReadWrite<u32, GERROR::Register>),
        (0x068 => pub gerror_irq_cfg0: ReadWrite<u64>),
        (0x070 => pub gerror_irq_cfg1: ReadWrite<u32>),
        (0x074 => pub gerror_irq_cfg2: ReadWrite<u32>),
        (0x078 => _reserved3),
        (0x080 => pub strtab_base: ReadWrite<u64, STRTAB_BASE::Register>),
        (0x088 => pub strtab_base_cfg: ReadWrite<u32, STRTAB_BASE_CFG::Register>),
        (0x08C => _reserved4),
        (0x090 => pub cmdq_base: ReadWrite<u64, CMDQ_BASE::Register>),
        (0x098 => pub cmdq_prod: ReadWrite<u32, CMDQ_PROD::Register>),
        (0x09C => pub cmdq_cons: ReadWrite<u32, CMDQ_CONS::Register>),
        (0x0A0 => pub eventq_base: ReadWrite<u64, EVENTQ_BASE::Register>),
        (0x0A8 => _reserved5),
        (0x0B0 => pub eventq_irq_cfg0: ReadWrite<u64>),
        (0x0B8 => pub eventq_irq_cfg1: ReadWrite<u32>),
        (0x0BC => pub eventq_irq_cfg2: ReadWrite<u32>),
        (0x0C0 => @END),
    },

    /// SMMUv3 register page 1 (64 KiB above page 0): the event queue's index registers.
    pub SmmuPage1 {
        (0x000 => _reserved0),
        (0x0A8 => pub eventq_prod: ReadWrite<u32, EVENTQ_PROD::Register>),
        (0x0AC => pub eventq_cons: ReadWrite<u32, EVENTQ_CONS::Register>),
        (0x0B0 => @END),
    }
}

/// Where register page 1 starts, relative to page 0.
pub const PAGE1: usize = 0x1_0000;
/// Size of the MMIO window the driver touches (pages 0 and 1).
pub const MMIO_SIZE: usize = 0x2_0000;

/// Byte offsets of the registers, from the base of page 0.
pub mod off {
    use super::*;
    pub const IDR0: usize = offset_of!(SmmuPage0, idr0);
    pub const IDR1: usize = offset_of!(SmmuPage0, idr1);
    pub const IDR2: usize = offset_of!(SmmuPage0, idr2);
    pub const IDR3: usize = offset_of!(SmmuPage0, idr3);
    pub const IDR4: usize = offset_of!(SmmuPage0, idr4);
    pub const IDR5: usize = offset_of!(SmmuPage0, idr5);
    pub const IIDR: usize = offset_of!(SmmuPage0, iidr);
    pub const AIDR: usize = offset_of!(SmmuPage0, aidr);
    pub const CR0: usize = offset_of!(SmmuPage0, cr0);
    pub const CR0ACK: usize = offset_of!(SmmuPage0, cr0ack);
    pub const CR1: usize = offset_of!(SmmuPage0, cr1);
    pub const CR2: usize = offset_of!(SmmuPage0, cr2);
    pub const STATUSR: usize = offset_of!(SmmuPage0, statusr);
    pub const GBPA: usize = offset_of!(SmmuPage0, gbpa);
    pub const IRQ_CTRL: usize = offset_of!(SmmuPage0, irq_ctrl);
    pub const IRQ_CTRLACK: usize = offset_of!(SmmuPage0, irq_ctrlack);
    pub const GERROR: usize = offset_of!(SmmuPage0, gerror);
    pub const GERRORN: usize = offset_of!(SmmuPage0, gerrorn);
    pub const GERROR_IRQ_CFG0: usize = offset_of!(SmmuPage0, gerror_irq_cfg0);
    pub const STRTAB_BASE: usize = offset_of!(SmmuPage0, strtab_base);
    pub const STRTAB_BASE_CFG: usize = offset_of!(SmmuPage0, strtab_base_cfg);
    pub const CMDQ_BASE: usize = offset_of!(SmmuPage0, cmdq_base);
    pub const CMDQ_PROD: usize = offset_of!(SmmuPage0, cmdq_prod);
    pub const CMDQ_CONS: usize = offset_of!(SmmuPage0, cmdq_cons);
    pub const EVENTQ_BASE: usize = offset_of!(SmmuPage0, eventq_base);
    pub const EVENTQ_IRQ_CFG0: usize = offset_of!(SmmuPage0, eventq_irq_cfg0);
    pub const EVENTQ_PROD: usize = PAGE1 + offset_of!(SmmuPage1, eventq_prod);
    pub const EVENTQ_CONS: usize = PAGE1 + offset_of!(SmmuPage1, eventq_cons);
}

/// Read a 32-bit register as a typed local copy.
pub fn read32<R: RegisterLongName>(mmio: &impl Mmio, offset: usize) -> LocalRegisterCopy<u32, R> {
    LocalRegisterCopy::new(mmio.read32(offset))
}

/// Write a 32-bit register from field values.
pub fn write32<R: RegisterLongName>(mmio: &impl Mmio, offset: usize, value: FieldValue<u32, R>) {
    mmio.write32(offset, value.value);
}

/// Write a 64-bit register from field values.
pub fn write64<R: RegisterLongName>(mmio: &impl Mmio, offset: usize, value: FieldValue<u64, R>) {
    mmio.write64(offset, value.value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_match_the_spec() {
        assert_eq!(off::IDR0, 0x00);
        assert_eq!(off::IDR5, 0x14);
        assert_eq!(off::CR0, 0x20);
        assert_eq!(off::CR0ACK, 0x24);
        assert_eq!(off::CR1, 0x28);
        assert_eq!(off::CR2, 0x2C);
        assert_eq!(off::GBPA, 0x44);
        assert_eq!(off::IRQ_CTRL, 0x50);
        assert_eq!(off::IRQ_CTRLACK, 0x54);
        assert_eq!(off::GERROR, 0x60);
        assert_eq!(off::GERRORN, 0x64);
        assert_eq!(off::STRTAB_BASE, 0x80);
        assert_eq!(off::STRTAB_BASE_CFG, 0x88);
        assert_eq!(off::CMDQ_BASE, 0x90);
        assert_eq!(off::CMDQ_PROD, 0x98);
        assert_eq!(off::CMDQ_CONS, 0x9C);
        assert_eq!(off::EVENTQ_BASE, 0xA0);
        assert_eq!(off::EVENTQ_PROD, 0x100A8);
        assert_eq!(off::EVENTQ_CONS, 0x100AC);
    }

    #[test]
    fn field_positions() {
        let idr0: LocalRegisterCopy<u32, IDR0::Register> =
            LocalRegisterCopy::new(0x0800_0001 | (2 << 2));
        assert!(idr0.is_set(IDR0::S2P));
        assert!(!idr0.is_set(IDR0::S1P));
        assert_eq!(idr0.read(IDR0::TTF), 2);
        assert_eq!(idr0.read(IDR0::ST_LEVEL), 1);
        assert_eq!((GBPA::ABORT::SET + GBPA::UPDATE::SET).value, 0x8010_0000);
        assert_eq!(
            (STRTAB_BASE_CFG::FMT::TwoLevel + STRTAB_BASE_CFG::SPLIT.val(8)).value,
            0x1_0200
        );
        assert_eq!(CMDQ_BASE::ADDR.val(0x4000_1000 >> 5).value, 0x4000_1000);
    }
}
