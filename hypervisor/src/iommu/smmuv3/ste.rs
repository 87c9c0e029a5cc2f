//! In-memory configuration structures: Stream Table Entries (STE, spec 5.2), level-1 stream
//! table descriptors (5.1) and stage-1 Context Descriptors (CD, 5.4). Pure encoding, no I/O.
//!
//! Bit positions in the comments are the spec's, counted over the whole structure; the
//! constants are the same positions within 64-bit words (`dword = bit / 64`).

/// Mask of bits `hi..=lo` in a u64.
const fn mask(hi: u32, lo: u32) -> u64 {
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}

/// Put `value` into bits `hi..=lo` (value is truncated to the field width).
const fn field(value: u64, hi: u32, lo: u32) -> u64 {
    (value << lo) & mask(hi, lo)
}

/// Extract bits `hi..=lo`.
pub(crate) const fn get(word: u64, hi: u32, lo: u32) -> u64 {
    (word & mask(hi, lo)) >> lo
}

/// STE.Config values (bits [3:1]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SteConfig {
    /// Traffic aborted, no event recorded.
    Abort = 0b000,
    /// Stage 1 and stage 2 bypassed.
    Bypass = 0b100,
    /// Stage 1 translates, stage 2 bypassed.
    Stage1 = 0b101,
    /// Stage 1 bypassed, stage 2 translates.
    Stage2 = 0b110,
    /// Both stages translate.
    Nested = 0b111,
}

/// The stage-2 half of an STE, taken from the owning domain's stage-2 registers so the SMMU
/// walks exactly the tables the CPU walks (shared tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S2Config {
    pub vmid: u16,
    /// VTCR_EL2 value; bits [18:0] (T0SZ, SL0, IRGN0, ORGN0, SH0, TG0, PS) have the same
    /// layout as STE.{S2T0SZ, S2SL0, S2IR0, S2OR0, S2SH0, S2TG, S2PS}.
    pub vtcr: u64,
    /// Physical address of the stage-2 root table (VTTBR_EL2.BADDR).
    pub ttb: u64,
}

impl S2Config {
    pub fn t0sz(&self) -> u64 {
        get(self.vtcr, 5, 0)
    }
    pub fn sl0(&self) -> u64 {
        get(self.vtcr, 7, 6)
    }
    /// TG0 encoding: 0 = 4 KiB, 1 = 64 KiB, 2 = 16 KiB.
    pub fn tg(&self) -> u64 {
        get(self.vtcr, 15, 14)
    }
    pub fn ps(&self) -> u64 {
        get(self.vtcr, 18, 16)
    }
    /// log2 of the translation granule, or `None` for a reserved TG encoding.
    pub fn granule_shift(&self) -> Option<u32> {
        match self.tg() {
            0 => Some(12),
            1 => Some(16),
            2 => Some(14),
            _ => None,
        }
    }
}

/// A 64-byte Stream Table Entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ste(pub [u64; 8]);

// Word 0.
const STE_V: u64 = 1 << 0;
const STE_CONFIG_LO: u32 = 1;
const STE_CONFIG_HI: u32 = 3;
const STE_S1FMT_LO: u32 = 4; // [5:4]
const STE_S1CTXPTR: (u32, u32) = (55, 6);
const STE_S1CDMAX: (u32, u32) = (63, 59);
// Word 1 (spec bits 64..127).
const STE_S1CIR: (u32, u32) = (3, 2); // [67:66]
const STE_S1COR: (u32, u32) = (5, 4); // [69:68]
const STE_S1CSH: (u32, u32) = (7, 6); // [71:70]
const STE_STRW: (u32, u32) = (31, 30); // [95:94]
const STE_SHCFG: (u32, u32) = (45, 44); // [109:108]
                                        // Word 2 (spec bits 128..191).
const STE_S2VMID: (u32, u32) = (15, 0); // [143:128]
const STE_S2VTCR: (u32, u32) = (50, 32); // [178:160]: S2T0SZ..S2PS
const STE_S2AA64: u64 = 1 << 51; // [179]
const STE_S2AFFD: u64 = 1 << 53; // [181]
const STE_S2R: u64 = 1 << 58; // [186]
                              // Word 3 (spec bits 192..255).
const STE_S2TTB: (u32, u32) = (55, 4); // [247:196]

/// SHCFG value "use incoming shareability".
const SHCFG_INCOMING: u64 = 0b01;
/// Cacheability "write-back" / shareability "inner" for S1C* (CD fetches).
const CACHE_WB: u64 = 0b01;
const SH_INNER: u64 = 0b11;

impl Ste {
    /// V = 0: the SMMU records C_BAD_STE and aborts.
    pub const fn invalid() -> Self {
        Ste([0; 8])
    }

    /// V = 1, Config = abort: traffic is terminated silently.
    pub const fn abort() -> Self {
        let mut w = [0u64; 8];
        w[0] = STE_V | field(SteConfig::Abort as u64, STE_CONFIG_HI, STE_CONFIG_LO);
        Ste(w)
    }

    /// V = 1, Config = bypass: addresses pass through untranslated.
    pub const fn bypass() -> Self {
        let mut w = [0u64; 8];
        w[0] = STE_V | field(SteConfig::Bypass as u64, STE_CONFIG_HI, STE_CONFIG_LO);
        w[1] = field(SHCFG_INCOMING, STE_SHCFG.0, STE_SHCFG.1);
        Ste(w)
    }

    /// Stage-2-only translation through the domain's p2m (S2AA64, fault recording on).
    pub fn stage2(s2: &S2Config) -> Self {
        let mut w = [0u64; 8];
        w[0] = STE_V | field(SteConfig::Stage2 as u64, STE_CONFIG_HI, STE_CONFIG_LO);
        w[1] = field(SHCFG_INCOMING, STE_SHCFG.0, STE_SHCFG.1);
        Self::put_s2(&mut w, s2);
        Ste(w)
    }

    /// Stage 1 only: `cd` is the physical address of one (64-byte aligned) context descriptor.
    pub fn stage1(cd: u64) -> Self {
        let mut w = [0u64; 8];
        w[0] = STE_V | field(SteConfig::Stage1 as u64, STE_CONFIG_HI, STE_CONFIG_LO);
        Self::put_s1(&mut w, cd);
        Ste(w)
    }

    /// Nested: stage 1 through the CD at `cd`, then stage 2 through the domain's p2m.
    pub fn nested(cd: u64, s2: &S2Config) -> Self {
        let mut w = [0u64; 8];
        w[0] = STE_V | field(SteConfig::Nested as u64, STE_CONFIG_HI, STE_CONFIG_LO);
        Self::put_s1(&mut w, cd);
        Self::put_s2(&mut w, s2);
        Ste(w)
    }

    fn put_s1(w: &mut [u64; 8], cd: u64) {
        // S1Fmt = 0 (linear, a single CD), S1CDMax = 0, S1DSS = 0.
        w[0] |= field(0, STE_S1FMT_LO + 1, STE_S1FMT_LO)
            | (cd & mask(STE_S1CTXPTR.0, STE_S1CTXPTR.1))
            | field(0, STE_S1CDMAX.0, STE_S1CDMAX.1);
        w[1] |= field(CACHE_WB, STE_S1CIR.0, STE_S1CIR.1)
            | field(CACHE_WB, STE_S1COR.0, STE_S1COR.1)
            | field(SH_INNER, STE_S1CSH.0, STE_S1CSH.1)
            | field(0, STE_STRW.0, STE_STRW.1) // NS-EL1
            | field(SHCFG_INCOMING, STE_SHCFG.0, STE_SHCFG.1);
    }

    fn put_s2(w: &mut [u64; 8], s2: &S2Config) {
        w[2] = field(u64::from(s2.vmid), STE_S2VMID.0, STE_S2VMID.1)
            | field(s2.vtcr, STE_S2VTCR.0 - STE_S2VTCR.1, 0) << STE_S2VTCR.1
            | STE_S2AA64
            | STE_S2R;
        w[3] = s2.ttb & mask(STE_S2TTB.0, STE_S2TTB.1);
    }

    /// With S2AFFD set, an access-flag-clear stage-2 entry does not fault.
    pub fn with_s2_affd(mut self) -> Self {
        self.0[2] |= STE_S2AFFD;
        self
    }

    pub fn valid(&self) -> bool {
        self.0[0] & STE_V != 0
    }

    /// The Config field, if it is one of the defined values.
    pub fn config(&self) -> Option<SteConfig> {
        match get(self.0[0], STE_CONFIG_HI, STE_CONFIG_LO) {
            0b000 => Some(SteConfig::Abort),
            0b100 => Some(SteConfig::Bypass),
            0b101 => Some(SteConfig::Stage1),
            0b110 => Some(SteConfig::Stage2),
            0b111 => Some(SteConfig::Nested),
            _ => None,
        }
    }

    pub fn s2vmid(&self) -> u16 {
        get(self.0[2], STE_S2VMID.0, STE_S2VMID.1) as u16
    }

    pub fn s2ttb(&self) -> u64 {
        self.0[3] & mask(STE_S2TTB.0, STE_S2TTB.1)
    }

    pub fn to_bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        for (i, w) in self.0.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b
    }
}

/// Level-1 stream table descriptor: points at an array of `2^(span-1)` STEs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L1Desc(pub u64);

impl L1Desc {
    pub const INVALID: L1Desc = L1Desc(0);

    /// `split` is the number of stream ID bits resolved by the level-2 array.
    pub fn new(l2_table: u64, split: u32) -> Self {
        L1Desc(field(u64::from(split + 1), 4, 0) | (l2_table & mask(55, 6)))
    }
    pub fn span(&self) -> u32 {
        get(self.0, 4, 0) as u32
    }
    pub fn l2ptr(&self) -> u64 {
        self.0 & mask(55, 6)
    }
}

/// Stage-1 translation granule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granule {
    K4,
    K16,
    K64,
}

impl Granule {
    /// TCR/CD TG0 encoding.
    pub fn tg0(self) -> u64 {
        match self {
            Granule::K4 => 0b00,
            Granule::K64 => 0b01,
            Granule::K16 => 0b10,
        }
    }
    pub fn shift(self) -> u32 {
        match self {
            Granule::K4 => 12,
            Granule::K16 => 14,
            Granule::K64 => 16,
        }
    }
}

/// What a stage-1 context needs (the TTB0 half only; TTB1 walks are disabled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CdConfig {
    pub asid: u16,
    /// Physical address of the stage-1 root table.
    pub ttb0: u64,
    /// Input address size is `64 - t0sz` bits.
    pub t0sz: u8,
    pub granule: Granule,
    /// Intermediate physical address size, IDR5.OAS / TCR.IPS encoding.
    pub ips: u8,
    /// MAIR value the stage-1 descriptors' AttrIndx refer to.
    pub mair: u64,
}

/// A 64-byte stage-1 Context Descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cd(pub [u64; 8]);

const CD_T0SZ: (u32, u32) = (5, 0);
const CD_TG0: (u32, u32) = (7, 6);
const CD_IR0: (u32, u32) = (9, 8);
const CD_OR0: (u32, u32) = (11, 10);
const CD_SH0: (u32, u32) = (13, 12);
const CD_EPD1: u64 = 1 << 30;
const CD_V: u64 = 1 << 31;
const CD_IPS: (u32, u32) = (34, 32);
const CD_AA64: u64 = 1 << 41;
const CD_R: u64 = 1 << 45;
const CD_A: u64 = 1 << 46;
const CD_ASET: u64 = 1 << 47;
const CD_ASID: (u32, u32) = (63, 48);
const CD_TTB: (u32, u32) = (55, 4); // word 1: TTB0 [119:68]

impl Cd {
    pub fn new(c: &CdConfig) -> Self {
        let mut w = [0u64; 8];
        w[0] = field(u64::from(c.t0sz), CD_T0SZ.0, CD_T0SZ.1)
            | field(c.granule.tg0(), CD_TG0.0, CD_TG0.1)
            | field(CACHE_WB, CD_IR0.0, CD_IR0.1)
            | field(CACHE_WB, CD_OR0.0, CD_OR0.1)
            | field(SH_INNER, CD_SH0.0, CD_SH0.1)
            | CD_EPD1
            | CD_V
            | field(u64::from(c.ips), CD_IPS.0, CD_IPS.1)
            | CD_AA64
            | CD_R
            | CD_A
            | CD_ASET
            | field(u64::from(c.asid), CD_ASID.0, CD_ASID.1);
        w[1] = c.ttb0 & mask(CD_TTB.0, CD_TTB.1);
        w[3] = c.mair;
        Cd(w)
    }

    pub fn valid(&self) -> bool {
        self.0[0] & CD_V != 0
    }
    pub fn asid(&self) -> u16 {
        get(self.0[0], CD_ASID.0, CD_ASID.1) as u16
    }

    pub fn to_bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        for (i, w) in self.0.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read the spec's bit range [hi:lo] (counted over the whole structure).
    fn spec_bits(words: &[u64], hi: u32, lo: u32) -> u64 {
        assert_eq!(hi / 64, lo / 64, "field must not straddle words");
        get(words[(lo / 64) as usize], hi % 64, lo % 64)
    }

    // A typical QEMU-virt domain: 40-bit IPA, 4K granule, SL0=1 (level 1), WB/WB inner
    // shareable, PS=40 bits.
    const VTCR: u64 = 24 | (1 << 6) | (1 << 8) | (1 << 10) | (3 << 12) | (2 << 16);

    #[test]
    fn abort_and_bypass() {
        let a = Ste::abort();
        assert_eq!(spec_bits(&a.0, 0, 0), 1);
        assert_eq!(spec_bits(&a.0, 3, 1), 0b000);
        assert_eq!(a.config(), Some(SteConfig::Abort));
        let b = Ste::bypass();
        assert_eq!(spec_bits(&b.0, 3, 1), 0b100);
        assert_eq!(spec_bits(&b.0, 109, 108), 0b01, "SHCFG = incoming");
        assert!(!Ste::invalid().valid());
    }

    #[test]
    fn stage2_fields_at_spec_positions() {
        let s2 = S2Config {
            vmid: 0x1234,
            vtcr: VTCR,
            ttb: 0x4_1234_5000,
        };
        let ste = Ste::stage2(&s2);
        assert_eq!(spec_bits(&ste.0, 0, 0), 1, "V");
        assert_eq!(spec_bits(&ste.0, 3, 1), 0b110, "Config");
        assert_eq!(spec_bits(&ste.0, 143, 128), 0x1234, "S2VMID");
        assert_eq!(spec_bits(&ste.0, 165, 160), 24, "S2T0SZ");
        assert_eq!(spec_bits(&ste.0, 167, 166), 1, "S2SL0");
        assert_eq!(spec_bits(&ste.0, 169, 168), 1, "S2IR0");
        assert_eq!(spec_bits(&ste.0, 171, 170), 1, "S2OR0");
        assert_eq!(spec_bits(&ste.0, 173, 172), 3, "S2SH0");
        assert_eq!(spec_bits(&ste.0, 175, 174), 0, "S2TG");
        assert_eq!(spec_bits(&ste.0, 178, 176), 2, "S2PS");
        assert_eq!(spec_bits(&ste.0, 179, 179), 1, "S2AA64");
        assert_eq!(spec_bits(&ste.0, 180, 180), 0, "S2ENDI");
        assert_eq!(spec_bits(&ste.0, 185, 185), 0, "S2S");
        assert_eq!(spec_bits(&ste.0, 186, 186), 1, "S2R");
        assert_eq!(spec_bits(&ste.0, 247, 196) << 4, 0x4_1234_5000, "S2TTB");
        assert_eq!(ste.s2vmid(), 0x1234);
        assert_eq!(ste.s2ttb(), 0x4_1234_5000);
        // Nothing of stage 1.
        assert_eq!(spec_bits(&ste.0, 55, 4), 0);
        // Other VTCR bits (e.g. VS at bit 19, HA at 21) must not leak into S2AA64 and up.
        let noisy = S2Config {
            vtcr: VTCR | (1 << 19) | (1 << 21),
            ..s2
        };
        assert_eq!(Ste::stage2(&noisy), ste);
        assert_eq!(s2.granule_shift(), Some(12));
        assert!(Ste::stage2(&s2).with_s2_affd().0[2] & (1 << 53) != 0);
    }

    #[test]
    fn nested_and_stage1() {
        let s2 = S2Config {
            vmid: 7,
            vtcr: VTCR,
            ttb: 0x8000_0000,
        };
        let ste = Ste::nested(0x4567_8040, &s2);
        assert_eq!(spec_bits(&ste.0, 3, 1), 0b111);
        assert_eq!(spec_bits(&ste.0, 5, 4), 0, "S1Fmt linear");
        assert_eq!(spec_bits(&ste.0, 55, 6) << 6, 0x4567_8040, "S1ContextPtr");
        assert_eq!(spec_bits(&ste.0, 63, 59), 0, "S1CDMax");
        assert_eq!(spec_bits(&ste.0, 67, 66), 1, "S1CIR");
        assert_eq!(spec_bits(&ste.0, 69, 68), 1, "S1COR");
        assert_eq!(spec_bits(&ste.0, 71, 70), 3, "S1CSH");
        assert_eq!(spec_bits(&ste.0, 95, 94), 0, "STRW NS-EL1");
        assert_eq!(spec_bits(&ste.0, 143, 128), 7);
        assert_eq!(spec_bits(&ste.0, 247, 196) << 4, 0x8000_0000);
        let s1 = Ste::stage1(0x1000);
        assert_eq!(s1.config(), Some(SteConfig::Stage1));
        assert_eq!(spec_bits(&s1.0, 191, 128), 0, "no stage 2");
    }

    #[test]
    fn l1_descriptor() {
        let d = L1Desc::new(0x4010_0000, 8);
        assert_eq!(get(d.0, 4, 0), 9, "Span = split + 1");
        assert_eq!(d.l2ptr(), 0x4010_0000);
        assert_eq!(d.span(), 9);
        assert_eq!(L1Desc::INVALID.span(), 0);
    }

    #[test]
    fn cd_fields_at_spec_positions() {
        let cd = Cd::new(&CdConfig {
            asid: 0xbeef,
            ttb0: 0x4_4000_1000,
            t0sz: 16,
            granule: Granule::K4,
            ips: 5,
            mair: 0x0044_ff04,
        });
        assert_eq!(spec_bits(&cd.0, 5, 0), 16, "T0SZ");
        assert_eq!(spec_bits(&cd.0, 7, 6), 0, "TG0 4K");
        assert_eq!(spec_bits(&cd.0, 9, 8), 1, "IR0");
        assert_eq!(spec_bits(&cd.0, 11, 10), 1, "OR0");
        assert_eq!(spec_bits(&cd.0, 13, 12), 3, "SH0");
        assert_eq!(spec_bits(&cd.0, 14, 14), 0, "EPD0");
        assert_eq!(spec_bits(&cd.0, 30, 30), 1, "EPD1");
        assert_eq!(spec_bits(&cd.0, 31, 31), 1, "V");
        assert_eq!(spec_bits(&cd.0, 34, 32), 5, "IPS");
        assert_eq!(spec_bits(&cd.0, 41, 41), 1, "AA64");
        assert_eq!(spec_bits(&cd.0, 44, 44), 0, "S (no stall)");
        assert_eq!(spec_bits(&cd.0, 45, 45), 1, "R");
        assert_eq!(spec_bits(&cd.0, 46, 46), 1, "A");
        assert_eq!(spec_bits(&cd.0, 63, 48), 0xbeef, "ASID");
        assert_eq!(spec_bits(&cd.0, 119, 68) << 4, 0x4_4000_1000, "TTB0");
        assert_eq!(spec_bits(&cd.0, 223, 192), 0x0044_ff04, "MAIR0");
        assert!(cd.valid());
        assert_eq!(cd.asid(), 0xbeef);
        let cd64 = Cd::new(&CdConfig {
            granule: Granule::K64,
            ..CdConfig {
                asid: 1,
                ttb0: 0,
                t0sz: 25,
                granule: Granule::K4,
                ips: 2,
                mair: 0,
            }
        });
        assert_eq!(spec_bits(&cd64.0, 7, 6), 0b01);
        assert_eq!(Granule::K16.tg0(), 0b10);
    }

    #[test]
    fn bytes_are_little_endian() {
        let b = Ste::abort().to_bytes();
        assert_eq!(b[0], 1);
        assert!(b[1..].iter().all(|&x| x == 0));
    }
}
