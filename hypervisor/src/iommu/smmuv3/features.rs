//! What an SMMUv3 implementation supports, decoded from SMMU_IDR0..5, with a one-line summary
//! for the boot log.

use core::fmt;

use tock_registers::LocalRegisterCopy;

use super::regs::{IDR0, IDR1, IDR3, IDR5};

/// Raw ID register values (IDR0..IDR5), as read from the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdRegs(pub [u32; 6]);

/// Decoded capabilities. Only what xenith looks at, plus what the boot summary reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmuFeatures {
    pub stage1: bool,
    pub stage2: bool,
    /// Translation table formats: AArch32 LPAE and/or AArch64.
    pub ttf_aarch32: bool,
    pub ttf_aarch64: bool,
    /// Table walks and queue accesses snoop the CPU caches.
    pub coherent: bool,
    pub btm: bool,
    pub hyp: bool,
    pub ats: bool,
    pub msi: bool,
    pub pri: bool,
    pub vmid16: bool,
    pub asid16: bool,
    /// 2-level stream tables supported.
    pub two_level_strtab: bool,
    /// Stall model: 0 = stall and terminate, 1 = terminate only, 2 = stall forced.
    pub stall_model: u8,
    /// Stream ID width, bits.
    pub sid_bits: u8,
    /// Substream ID width, bits.
    pub ssid_bits: u8,
    /// log2 of the maximum number of command / event queue entries.
    pub cmdq_log2: u8,
    pub evtq_log2: u8,
    /// Range-based TLB invalidation (SMMUv3.2 RIL).
    pub range_inval: bool,
    /// Output (physical) address size, bits.
    pub oas_bits: u8,
    /// The raw IDR5.OAS encoding (same encoding as VTCR_EL2.PS / STE.S2PS).
    pub oas_field: u8,
    pub gran4k: bool,
    pub gran16k: bool,
    pub gran64k: bool,
    /// Registers reports preset queue/table bases (not programmable).
    pub queues_preset: bool,
    pub tables_preset: bool,
}

/// OAS/PS encoding to bits.
pub fn oas_bits(field: u8) -> u8 {
    match field {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        5 => 48,
        _ => 52,
    }
}

impl SmmuFeatures {
    pub fn decode(idr: IdRegs) -> Self {
        let i0: LocalRegisterCopy<u32, IDR0::Register> = LocalRegisterCopy::new(idr.0[0]);
        let i1: LocalRegisterCopy<u32, IDR1::Register> = LocalRegisterCopy::new(idr.0[1]);
        let i3: LocalRegisterCopy<u32, IDR3::Register> = LocalRegisterCopy::new(idr.0[3]);
        let i5: LocalRegisterCopy<u32, IDR5::Register> = LocalRegisterCopy::new(idr.0[5]);
        let ttf = i0.read(IDR0::TTF);
        let oas_field = i5.read(IDR5::OAS) as u8;
        SmmuFeatures {
            stage1: i0.is_set(IDR0::S1P),
            stage2: i0.is_set(IDR0::S2P),
            ttf_aarch32: ttf & 1 != 0,
            ttf_aarch64: ttf & 2 != 0,
            coherent: i0.is_set(IDR0::COHACC),
            btm: i0.is_set(IDR0::BTM),
            hyp: i0.is_set(IDR0::HYP),
            ats: i0.is_set(IDR0::ATS),
            msi: i0.is_set(IDR0::MSI),
            pri: i0.is_set(IDR0::PRI),
            vmid16: i0.is_set(IDR0::VMID16),
            asid16: i0.is_set(IDR0::ASID16),
            two_level_strtab: i0.read(IDR0::ST_LEVEL) == 1,
            stall_model: i0.read(IDR0::STALL_MODEL) as u8,
            sid_bits: i1.read(IDR1::SIDSIZE).min(32) as u8,
            ssid_bits: i1.read(IDR1::SSIDSIZE) as u8,
            cmdq_log2: i1.read(IDR1::CMDQS).min(19) as u8,
            evtq_log2: i1.read(IDR1::EVENTQS).min(19) as u8,
            range_inval: i3.is_set(IDR3::RIL),
            oas_bits: oas_bits(oas_field),
            oas_field,
            gran4k: i5.is_set(IDR5::GRAN4K),
            gran16k: i5.is_set(IDR5::GRAN16K),
            gran64k: i5.is_set(IDR5::GRAN64K),
            queues_preset: i1.is_set(IDR1::QUEUES_PRESET),
            tables_preset: i1.is_set(IDR1::TABLES_PRESET),
        }
    }

    /// Largest VMID the implementation accepts.
    pub fn max_vmid(&self) -> u16 {
        if self.vmid16 {
            u16::MAX
        } else {
            u8::MAX as u16
        }
    }
}

fn yn(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

impl fmt::Display for SmmuFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S1P={} S2P={} TTF=", yn(self.stage1), yn(self.stage2))?;
        match (self.ttf_aarch32, self.ttf_aarch64) {
            (true, true) => write!(f, "aa32+aa64")?,
            (false, true) => write!(f, "aa64")?,
            (true, false) => write!(f, "aa32")?,
            (false, false) => write!(f, "none")?,
        }
        write!(
            f,
            " COHACC={} BTM={} ST_LEVEL={} SIDSIZE={} SSIDSIZE={} CMDQS=2^{} EVTQS=2^{} OAS={}-bit \
             granules=",
            yn(self.coherent),
            yn(self.btm),
            if self.two_level_strtab { "2lvl" } else { "linear" },
            self.sid_bits,
            self.ssid_bits,
            self.cmdq_log2,
            self.evtq_log2,
            self.oas_bits,
        )?;
        let mut first = true;
        for (has, name) in [
            (self.gran4k, "4K"),
            (self.gran16k, "16K"),
            (self.gran64k, "64K"),
        ] {
            if has {
                if !first {
                    f.write_str("+")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("none")?;
        }
        write!(
            f,
            " VMID16={} ASID16={} RIL={} HYP={} ATS={} MSI={} PRI={}",
            yn(self.vmid16),
            yn(self.asid16),
            yn(self.range_inval),
            yn(self.hyp),
            yn(self.ats),
            yn(self.msi),
            yn(self.pri),
        )
    }
}
