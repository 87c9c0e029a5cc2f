//! The CPU features a guest may see, decided in one place.
//!
//! With HCR_EL2.TID3 set, a guest's reads of the feature ID registers (op0 3, op1 0, CRn 0,
//! CRm 1-7) trap, and the hypervisor answers with [`sanitise`]d values: a feature is shown
//! only when the guest can use it as the hardware has it, i.e. it has no state, or its state
//! is the guest's own on the physical CPU its vCPU is pinned to (FP/SIMD, debug, PMU, the
//! EL1 system registers), or the hypervisor context-switches or emulates it (the GIC CPU
//! interface, pointer authentication keys). Everything else is hidden (field 0) and its
//! registers are trapped and answered with UNDEF: SVE, SME, MTE, RAS, MPAM, AMU, SPE, trace,
//! BRBE, TME, LS64, MOPS (needs HCRX_EL2), and every field this table does not know, so a
//! newer CPU's additions stay hidden until someone decides about them.
//!
//! AArch64 registers are filtered field by field against an allow list; the AArch32 ones
//! (which only describe AArch32 EL0 here) pass through minus RAS and AMU, as Xen 4.17 does.
//! Fields that describe the machine's EL2/EL3 (EL2 present, VHE, VMID bits, stage-2 granules)
//! pass through as on Xen; they give an EL1 guest nothing to use and nothing to misuse.
//!
//! Differences from Xen 4.17 (which hides SVE, MTE, PAC, AMU, RAS, MPAM and reads
//! ID_AA64ISAR2/MMFR3/SMFR0 as zero): the physical address range is capped at what the
//! stage 2 translates (`GUEST_IPA_BITS`), pointer authentication is offered (its keys are the
//! guest's, see [`PAUTH_OFFERED`]), ID_AA64ISAR2's stateless instruction features are shown,
//! ID_AA64PFR1's newer fields (SME, NMI, GCS, ...) are hidden, and unknown fields read 0.

/// The guest physical address size of every stage 2 the hypervisor builds.
pub const GUEST_IPA_BITS: u32 = crate::mm::Stage2Config::DOMAIN.ipa_bits as u32;

/// ID_AA64MMFR0_EL1.PARange of `GUEST_IPA_BITS`.
const GUEST_PARANGE: u64 = parange(GUEST_IPA_BITS);

/// Pointer authentication is offered to guests: HCR_EL2.API and APK are set, so the
/// guest's PAC instructions and key registers work without trapping; the keys are per-vCPU
/// state (each vCPU has a physical CPU to itself, so they only need saving where a CPU
/// would change vCPUs, and are reset when a vCPU starts). The hypervisor is built without
/// pointer authentication, so the key registers only ever hold guest keys.
pub const PAUTH_OFFERED: bool = true;

/// An ID register in the space HCR_EL2.TID3 traps: op0 3, op1 0, CRn 0, `crm` 1..=7, `op2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdReg {
    pub crm: u8,
    pub op2: u8,
}

/// Number of registers in the trapped space (CRm 1-7, op2 0-7).
pub const ID_SPACE: usize = 56;

impl IdReg {
    pub const fn new(crm: u8, op2: u8) -> Self {
        Self { crm, op2 }
    }
    pub const ID_PFR0: IdReg = IdReg::new(1, 0);
    pub const ID_DFR0: IdReg = IdReg::new(1, 2);
    pub const ID_PFR2: IdReg = IdReg::new(3, 4);
    pub const AA64PFR0: IdReg = IdReg::new(4, 0);
    pub const AA64PFR1: IdReg = IdReg::new(4, 1);
    pub const AA64ZFR0: IdReg = IdReg::new(4, 4);
    pub const AA64SMFR0: IdReg = IdReg::new(4, 5);
    pub const AA64DFR0: IdReg = IdReg::new(5, 0);
    pub const AA64DFR1: IdReg = IdReg::new(5, 1);
    pub const AA64AFR0: IdReg = IdReg::new(5, 4);
    pub const AA64AFR1: IdReg = IdReg::new(5, 5);
    pub const AA64ISAR0: IdReg = IdReg::new(6, 0);
    pub const AA64ISAR1: IdReg = IdReg::new(6, 1);
    pub const AA64ISAR2: IdReg = IdReg::new(6, 2);
    pub const AA64MMFR0: IdReg = IdReg::new(7, 0);
    pub const AA64MMFR1: IdReg = IdReg::new(7, 1);
    pub const AA64MMFR2: IdReg = IdReg::new(7, 2);

    /// Position in a table of the whole space (`ID_SPACE` entries); `None` outside it.
    pub fn index(self) -> Option<usize> {
        (1..=7).contains(&self.crm).then_some(())?;
        (self.op2 <= 7).then(|| usize::from(self.crm - 1) * 8 + usize::from(self.op2))
    }

    /// The register at `index` of the table.
    pub fn at(index: usize) -> Self {
        Self::new((index / 8 + 1) as u8, (index % 8) as u8)
    }

    /// Architectural name (`S3_0_C0_C<crm>_<op2>` for unallocated encodings).
    pub fn name(self) -> &'static str {
        const NAMES: [[&str; 8]; 7] = [
            ["ID_PFR0_EL1", "ID_PFR1_EL1", "ID_DFR0_EL1", "ID_AFR0_EL1", "ID_MMFR0_EL1", "ID_MMFR1_EL1", "ID_MMFR2_EL1", "ID_MMFR3_EL1"],
            ["ID_ISAR0_EL1", "ID_ISAR1_EL1", "ID_ISAR2_EL1", "ID_ISAR3_EL1", "ID_ISAR4_EL1", "ID_ISAR5_EL1", "ID_MMFR4_EL1", "ID_ISAR6_EL1"],
            ["MVFR0_EL1", "MVFR1_EL1", "MVFR2_EL1", "S3_0_C0_C3_3", "ID_PFR2_EL1", "ID_DFR1_EL1", "ID_MMFR5_EL1", "S3_0_C0_C3_7"],
            ["ID_AA64PFR0_EL1", "ID_AA64PFR1_EL1", "ID_AA64PFR2_EL1", "S3_0_C0_C4_3", "ID_AA64ZFR0_EL1", "ID_AA64SMFR0_EL1", "S3_0_C0_C4_6", "ID_AA64FPFR0_EL1"],
            ["ID_AA64DFR0_EL1", "ID_AA64DFR1_EL1", "ID_AA64DFR2_EL1", "S3_0_C0_C5_3", "ID_AA64AFR0_EL1", "ID_AA64AFR1_EL1", "S3_0_C0_C5_6", "S3_0_C0_C5_7"],
            ["ID_AA64ISAR0_EL1", "ID_AA64ISAR1_EL1", "ID_AA64ISAR2_EL1", "ID_AA64ISAR3_EL1", "S3_0_C0_C6_4", "S3_0_C0_C6_5", "S3_0_C0_C6_6", "S3_0_C0_C6_7"],
            ["ID_AA64MMFR0_EL1", "ID_AA64MMFR1_EL1", "ID_AA64MMFR2_EL1", "ID_AA64MMFR3_EL1", "ID_AA64MMFR4_EL1", "S3_0_C0_C7_5", "S3_0_C0_C7_6", "S3_0_C0_C7_7"],
        ];
        match self.index() {
            Some(_) => NAMES[usize::from(self.crm - 1)][usize::from(self.op2)],
            None => "?",
        }
    }
}

/// How one 4-bit field of an AArch64 ID register reaches the guest.
#[derive(Clone, Copy)]
enum Show {
    /// The host's value.
    Host,
    /// The host's value, at most this (an unsigned field where lower means less).
    AtMost(u64),
    /// The host's value when pointer authentication is offered, else 0.
    IfPauth,
}

/// The fields of an AArch64 ID register a guest may see, by shift; all others read 0.
fn allowed(reg: IdReg) -> &'static [(u32, Show)] {
    use Show::*;
    match reg {
        // EL0 EL1 EL2 EL3 FP AdvSIMD GIC | SEL2 DIT CSV2 CSV3. Hidden: RAS 28, SVE 32,
        // MPAM 40, AMU 44, RME 52.
        IdReg::AA64PFR0 => &[(0, Host), (4, Host), (8, Host), (12, Host), (16, Host), (20, Host), (24, Host), (36, Host), (48, Host), (56, Host), (60, Host)],
        // BT SSBS CSV2_frac. Hidden: MTE 8, RAS_frac 12, MPAM_frac 16, SME 24, RNDR_trap 28,
        // NMI 36, MTE_frac 40, GCS 44, THE 48, MTEX 52, DF2 56, PFAR 60.
        IdReg::AA64PFR1 => &[(0, Host), (4, Host), (32, Host)],
        // DebugVer PMUVer BRPs WRPs CTX_CMPs DoubleLock MTPMU HPMN0: the debug and PMU
        // registers are the guest's. Hidden: TraceVer 4, PMSS 16, SEBEP 24, PMSVer (SPE) 32,
        // TraceFilt 40, TraceBuffer 44, BRBE 52, ExtTrcBuff 56.
        IdReg::AA64DFR0 => &[(0, Host), (8, Host), (12, Host), (20, Host), (28, Host), (36, Host), (48, Host), (60, Host)],
        // Instructions without state. Hidden: TME 24.
        IdReg::AA64ISAR0 => &[(4, Host), (8, Host), (12, Host), (16, Host), (20, Host), (28, Host), (32, Host), (36, Host), (40, Host), (44, Host), (48, Host), (52, Host), (56, Host), (60, Host)],
        // DPB APA API JSCVT FCMA LRCPC GPA GPI FRINTTS SB SPECRES BF16 DGH I8MM XS.
        // Hidden: LS64 60 (needs HCRX_EL2).
        IdReg::AA64ISAR1 => &[
            (0, Host), (4, IfPauth), (8, IfPauth), (12, Host), (16, Host), (20, Host), (24, IfPauth), (28, IfPauth),
            (32, Host), (36, Host), (40, Host), (44, Host), (48, Host), (52, Host), (56, Host),
        ],
        // WFxT RPRES GPA3 APA3 BC PAC_frac CLRBHB PRFMSLC RPRFM CSSC. Hidden: MOPS 16 (needs
        // HCRX_EL2.MSCEn), SYSREG_128 32, SYSINSTR_128 36, LUT 56, ATS1A 60.
        IdReg::AA64ISAR2 => &[(0, Host), (4, Host), (8, IfPauth), (12, IfPauth), (20, Host), (24, IfPauth), (28, Host), (40, Host), (48, Host), (52, Host)],
        // PARange at most the stage 2's IPA size; ASIDBits BigEnd SNSMem BigEndEL0 TGran16
        // TGran64 TGran4 TGran16_2 TGran64_2 TGran4_2 ExS FGT ECV.
        IdReg::AA64MMFR0 => &[
            (0, AtMost(GUEST_PARANGE)), (4, Host), (8, Host), (12, Host), (16, Host), (20, Host), (24, Host), (28, Host),
            (32, Host), (36, Host), (40, Host), (44, Host), (56, Host), (60, Host),
        ],
        // HAFDBS VMIDBits VH HPDS LO PAN SpecSEI XNX TWED ETS HCX AFP nTLBPA TIDCP1 CMOW ECBHB.
        IdReg::AA64MMFR1 => &[
            (0, Host), (4, Host), (8, Host), (12, Host), (16, Host), (20, Host), (24, Host), (28, Host),
            (32, Host), (36, Host), (40, Host), (44, Host), (48, Host), (52, Host), (56, Host), (60, Host),
        ],
        // CnP UAO LSM IESB VARange CCIDX NV ST AT IDS FWB TTL BBM EVT E0PD.
        IdReg::AA64MMFR2 => &[
            (0, Host), (4, Host), (8, Host), (12, Host), (16, Host), (20, Host), (24, Host), (28, Host),
            (32, Host), (36, Host), (40, Host), (48, Host), (52, Host), (56, Host), (60, Host),
        ],
        _ => &[],
    }
}

/// ID_AA64MMFR0_EL1.PARange's encoding of an address size (the largest not above `bits`).
pub const fn parange(bits: u32) -> u64 {
    match bits {
        52.. => 6,
        48..=51 => 5,
        44..=47 => 4,
        42..=43 => 3,
        40..=41 => 2,
        36..=39 => 1,
        _ => 0,
    }
}

const fn field(v: u64, shift: u32) -> u64 {
    (v >> shift) & 0xf
}

/// What a guest reads from ID register `reg` on a CPU where it holds `host`.
pub fn sanitise(reg: IdReg, host: u64) -> u64 {
    match (reg.crm, reg.op2) {
        // AArch32 (EL0 only here): the host's, minus RAS and AMU (ID_PFR0 RAS 28, AMU 20;
        // ID_PFR2 RAS_frac 8). Unallocated encodings read 0.
        (1, 0) => host & !(0xf << 28 | 0xf << 20) & 0xffff_ffff,
        (3, 4) => host & !(0xf << 8) & 0xffff_ffff,
        (3, 3) | (3, 7) => 0,
        (1..=3, _) => host & 0xffff_ffff,
        _ => allowed(reg).iter().fold(0, |acc, &(shift, show)| {
            let h = field(host, shift);
            let v = match show {
                Show::Host => h,
                Show::AtMost(max) => h.min(max),
                Show::IfPauth => {
                    if PAUTH_OFFERED {
                        h
                    } else {
                        0
                    }
                }
            };
            acc | v << shift
        }),
    }
}

/// Whether the host implements pointer authentication (any algorithm, either key kind),
/// from its ID_AA64ISAR1 and ID_AA64ISAR2.
pub fn host_has_pauth(isar1: u64, isar2: u64) -> bool {
    [field(isar1, 4), field(isar1, 8), field(isar1, 24), field(isar1, 28), field(isar2, 8), field(isar2, 12)].iter().any(|&f| f != 0)
}

/// HCR_EL2 bits beyond the hypervisor's base set that the CPU features call for: API and
/// APK (pointer authentication instructions and key registers not trapped) when it is offered
/// and the host has it; TERR (RAS error record registers trapped: RAS is hidden) when the
/// host has RAS.
pub fn hcr_bits(pfr0: u64, isar1: u64, isar2: u64) -> u64 {
    const API: u64 = 1 << 41;
    const APK: u64 = 1 << 40;
    const TERR: u64 = 1 << 36;
    let mut bits = 0;
    if PAUTH_OFFERED && host_has_pauth(isar1, isar2) {
        bits |= API | APK;
    }
    if field(pfr0, 28) != 0 {
        bits |= TERR;
    }
    bits
}

/// CPTR_EL2 (HCR_EL2.E2H = 0 layout) while a guest runs: FP/SIMD not trapped (the guest's;
/// the hypervisor uses none), SVE (TZ) and SME (TSM) trapped, trace (TTA) and activity
/// monitors (TAM) trapped, RES1 bits set.
pub fn cptr_el2() -> u64 {
    const RES1: u64 = 0x33ff & !(1 << 8 | 1 << 12);
    const TZ: u64 = 1 << 8;
    const TSM: u64 = 1 << 12;
    const TTA: u64 = 1 << 20;
    const TAM: u64 = 1 << 30;
    RES1 | TZ | TSM | TTA | TAM
}

/// MDCR_EL2 while a guest runs: `pmcr_n` counters for EL1/EL0 (the PMU is the guest's),
/// the statistical profiling (SPE) registers trapped when the host has SPE (TPMS; E2PB 0
/// keeps its buffer at EL2), the trace buffer (E2TB 0) and trace filter (TTRF) registers
/// trapped when the host has them.
pub fn mdcr_el2(dfr0: u64, pmcr_n: u64) -> u64 {
    const TPMS: u64 = 1 << 14;
    const TTRF: u64 = 1 << 19;
    let mut v = pmcr_n & 0x1f;
    if field(dfr0, 32) != 0 {
        v |= TPMS;
    }
    if field(dfr0, 40) != 0 {
        v |= TTRF;
    }
    v
}

/// A trapped system-register access (ESR_EL2.EC 0x18), decoded from its ISS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysregAccess {
    pub op0: u8,
    pub op1: u8,
    pub crn: u8,
    pub crm: u8,
    pub op2: u8,
    pub rt: usize,
    pub read: bool,
}

impl SysregAccess {
    pub fn decode(iss: u64) -> Self {
        Self {
            op0: ((iss >> 20) & 3) as u8,
            op2: ((iss >> 17) & 7) as u8,
            op1: ((iss >> 14) & 7) as u8,
            crn: ((iss >> 10) & 0xf) as u8,
            rt: ((iss >> 5) & 0x1f) as usize,
            crm: ((iss >> 1) & 0xf) as u8,
            read: iss & 1 != 0,
        }
    }

    /// The ID register accessed, if the access is in the space HCR_EL2.TID3 traps.
    pub fn id_reg(&self) -> Option<IdReg> {
        let r = IdReg::new(self.crm, self.op2);
        (self.op0 == 3 && self.op1 == 0 && self.crn == 0 && r.index().is_some()).then_some(r)
    }
}

/// How a trapped access in the ID space is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdAnswer {
    /// Write this value to the guest's register `rt` (none for XZR) and step over the MRS.
    Read { rt: usize, value: u64 },
    /// The registers are read-only: a write is UNDEFINED.
    Undef,
}

/// Answer a trapped access to ID register `reg` from the table of guest values.
pub fn answer(access: &SysregAccess, guest: &[u64; ID_SPACE]) -> Option<IdAnswer> {
    let i = access.id_reg()?.index()?;
    Some(if access.read { IdAnswer::Read { rt: access.rt, value: guest[i] } } else { IdAnswer::Undef })
}

/// The guest's view of the whole ID space from the host's.
pub fn guest_view(host: &[u64; ID_SPACE]) -> [u64; ID_SPACE] {
    core::array::from_fn(|i| sanitise(IdReg::at(i), host[i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU 10's `-cpu cortex-a57` as xenith reads it at EL2 (ID_AA64*: PFR0, PFR1, DFR0,
    /// ISAR0, ISAR1, ISAR2, MMFR0, MMFR1, MMFR2).
    const A57: [(IdReg, u64); 9] = [
        (IdReg::AA64PFR0, 0x0100_0222),
        (IdReg::AA64PFR1, 0),
        (IdReg::AA64DFR0, 0x1030_5106),
        (IdReg::AA64ISAR0, 0x1_1120),
        (IdReg::AA64ISAR1, 0),
        (IdReg::AA64ISAR2, 0),
        (IdReg::AA64MMFR0, 0x1124),
        (IdReg::AA64MMFR1, 0),
        (IdReg::AA64MMFR2, 0),
    ];

    #[test]
    fn cortex_a57_is_shown_as_is_except_the_address_range() {
        for (reg, host) in A57 {
            let want = if reg == IdReg::AA64MMFR0 { 0x1122 } else { host };
            assert_eq!(sanitise(reg, host), want, "{}", reg.name());
        }
    }

    /// QEMU 10's `-cpu max` as xenith reads it at EL2 (virt machine, EL2 on, no EL3, no
    /// tag memory), and what guests are shown.
    const MAX: [(IdReg, u64, u64); 13] = [
        // SVE (32) and RAS (28) hidden.
        (IdReg::AA64PFR0, 0x1301_0011_2111_0222, 0x1301_0010_0111_0222),
        // MTE (8), SME (24), NMI (36) hidden; BT and SSBS shown.
        (IdReg::AA64PFR1, 0x10_0100_0121, 0x21),
        (IdReg::AA64ZFR0, 0x0110_1101_0021_0021, 0),
        (IdReg::AA64SMFR0, 0x80f1_00fd_0000_0000, 0),
        (IdReg::AA64DFR0, 0x1000_0000_1030_560a, 0x1000_0000_1030_560a),
        (IdReg::AA64ISAR0, 0x1221_1111_1021_2120, 0x1221_1111_1021_2120),
        // Pointer authentication (API 5, GPI 1: QEMU's IMPLEMENTATION DEFINED algorithm) shown.
        (IdReg::AA64ISAR1, 0x0111_2111_1021_1502, 0x0111_2111_1021_1502),
        // MOPS (16) hidden: it needs HCRX_EL2.MSCEn.
        (IdReg::AA64ISAR2, 0x11_0012, 0x10_0012),
        // PARange 52 bits -> 40.
        (IdReg::AA64MMFR0, 0x2100_0323_1020_1126, 0x2100_0323_1020_1122),
        (IdReg::AA64MMFR1, 0x0110_1120_1031_2122, 0x0110_1120_1031_2122),
        (IdReg::AA64MMFR2, 0x1221_0111_1201_1011, 0x1221_0111_1201_1011),
        (IdReg::new(7, 3), 0x1000_0000_0000_0000, 0), // ID_AA64MMFR3: unknown here
        (IdReg::ID_PFR0, 0x1102_0131, 0x0102_0131),   // RAS hidden
    ];

    #[test]
    fn cortex_max_loses_sve_sme_mte_ras_mops_and_keeps_pauth() {
        for (reg, host, guest) in MAX {
            let want = if reg == IdReg::AA64ISAR1 && !PAUTH_OFFERED { host & !(0xff << 24 | 0xff << 4) } else { guest };
            assert_eq!(sanitise(reg, host), want, "{}: host {host:#x}", reg.name());
        }
        let isar1 = MAX[6].1;
        assert!(host_has_pauth(isar1, MAX[7].1));
        // TERR for the hidden RAS; API and APK for the offered pointer authentication.
        assert_eq!(hcr_bits(MAX[0].1, isar1, MAX[7].1), 1 << 36 | if PAUTH_OFFERED { 3 << 40 } else { 0 });
    }

    #[test]
    fn address_range_is_capped_at_the_stage_2_size() {
        assert_eq!(parange(40), 2);
        assert_eq!(parange(48), 5);
        assert_eq!(parange(39), 1);
        // A 32-bit host keeps its smaller range.
        assert_eq!(sanitise(IdReg::AA64MMFR0, 0x1120), 0x1120);
        assert_eq!(sanitise(IdReg::AA64MMFR0, 0x1126) & 0xf, 2);
    }

    #[test]
    fn sve_sme_mte_ras_amu_mpam_are_hidden() {
        // Every field of PFR0 set to 1: SVE (32), RAS (28), MPAM (40), AMU (44), RME (52) go.
        let ones = 0x1111_1111_1111_1111u64;
        let g = sanitise(IdReg::AA64PFR0, ones);
        for shift in [28, 32, 40, 44, 52] {
            assert_eq!(field(g, shift), 0, "PFR0 field at {shift}");
        }
        for shift in [0, 4, 8, 12, 16, 20, 24, 36, 48, 56, 60] {
            assert_eq!(field(g, shift), 1, "PFR0 field at {shift}");
        }
        // PFR1: only BT, SSBS and CSV2_frac survive (MTE 8, SME 24, NMI 36, GCS 44, ...).
        assert_eq!(sanitise(IdReg::AA64PFR1, ones), 0x1_0000_0011);
        for reg in [IdReg::AA64ZFR0, IdReg::AA64SMFR0, IdReg::AA64DFR1, IdReg::AA64AFR0, IdReg::AA64AFR1] {
            assert_eq!(sanitise(reg, u64::MAX), 0, "{}", reg.name());
        }
    }

    #[test]
    fn spe_trace_brbe_are_hidden_debug_and_pmu_shown() {
        let g = sanitise(IdReg::AA64DFR0, 0x1111_1111_1111_1111);
        assert_eq!(g, 0x1001_0010_1010_1101);
        assert_eq!(field(g, 32), 0, "PMSVer");
        assert_eq!(field(g, 52), 0, "BRBE");
        assert_eq!(field(g, 8), 1, "PMUVer");
    }

    #[test]
    fn pointer_authentication_follows_the_policy() {
        let isar1 = 0x0000_0000_1100_0110; // GPI=1, GPA=1, API=1, APA=1
        let g = sanitise(IdReg::AA64ISAR1, isar1);
        assert_eq!(g == isar1, PAUTH_OFFERED);
        assert!(host_has_pauth(isar1, 0));
        assert!(host_has_pauth(0, 1 << 12)); // APA3 (QARMA3)
        assert!(!host_has_pauth(0x10_0000, 0)); // LRCPC only
        let hcr = hcr_bits(0, isar1, 0);
        assert_eq!(hcr & (3 << 40) == 3 << 40, PAUTH_OFFERED);
        assert_eq!(hcr_bits(0, 0, 0), 0);
    }

    #[test]
    fn isar2_shows_stateless_instructions_only() {
        // MOPS (16) needs HCRX_EL2; LUT (56), ATS1A (60), SYSREG_128 (32) are unknown here.
        let g = sanitise(IdReg::AA64ISAR2, 0x1111_1111_1111_1111);
        for shift in [16, 32, 36, 44, 56, 60] {
            assert_eq!(field(g, shift), 0, "ISAR2 field at {shift}");
        }
        assert_eq!(field(g, 0), 1, "WFxT");
        assert_eq!(field(g, 28), 1, "CLRBHB");
    }

    #[test]
    fn aarch32_registers_pass_minus_ras_and_amu() {
        assert_eq!(sanitise(IdReg::ID_PFR0, 0x1111_1131), 0x0101_1131);
        assert_eq!(sanitise(IdReg::ID_PFR2, 0x111), 0x011);
        assert_eq!(sanitise(IdReg::ID_DFR0, 0xffff_ffff_0301_0066), 0x0301_0066);
        assert_eq!(sanitise(IdReg::new(3, 3), 5), 0);
    }

    #[test]
    fn unknown_registers_of_the_space_read_zero() {
        for i in 0..ID_SPACE {
            let r = IdReg::at(i);
            assert_eq!(r.index(), Some(i));
            if r.name().starts_with("S3_0_C0_") {
                assert_eq!(sanitise(r, u64::MAX), 0, "{}", r.name());
            }
        }
        assert_eq!(IdReg::new(0, 0).index(), None);
        assert_eq!(IdReg::new(8, 0).index(), None);
    }

    #[test]
    fn trapped_accesses_decode_and_answer() {
        // mrs x3, ID_AA64PFR0_EL1: op0 3, op1 0, CRn 0, CRm 4, op2 0, read.
        let iss = 3 << 20 | 0 << 17 | 0 << 14 | 0 << 10 | 3 << 5 | 4 << 1 | 1;
        let a = SysregAccess::decode(iss);
        assert_eq!(a.id_reg(), Some(IdReg::AA64PFR0));
        let mut host = [0u64; ID_SPACE];
        host[IdReg::AA64PFR0.index().unwrap()] = 0x1_0000_2222; // SVE
        let guest = guest_view(&host);
        assert_eq!(answer(&a, &guest), Some(IdAnswer::Read { rt: 3, value: 0x2222 }));
        // msr ID_AA64PFR0_EL1, x3: UNDEF.
        assert_eq!(answer(&SysregAccess::decode(iss & !1), &guest), Some(IdAnswer::Undef));
        // MIDR_EL1 (CRm 0) and SCTLR_EL1 (CRn 1) are not ID-space registers.
        assert_eq!(SysregAccess::decode(3 << 20 | 1).id_reg(), None);
        assert_eq!(SysregAccess::decode(3 << 20 | 1 << 10 | 1).id_reg(), None);
    }

    #[test]
    fn cptr_traps_sve_sme_trace_amu_not_fp() {
        let c = cptr_el2();
        assert_eq!(c & (1 << 10), 0, "TFP");
        for bit in [8, 12, 20, 30] {
            assert_ne!(c & (1 << bit), 0, "bit {bit}");
        }
        assert_eq!(c & 0x33ff, 0x33ff);
    }

    #[test]
    fn mdcr_traps_spe_and_trace_filter_only_when_present() {
        assert_eq!(mdcr_el2(0x1030_5106, 6), 6);
        assert_eq!(mdcr_el2(1 << 32 | 1 << 40, 6), 6 | 1 << 14 | 1 << 19);
    }
}
