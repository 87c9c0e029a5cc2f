//! Event queue records (spec 7.3): decode the 32-byte records the SMMU writes when a
//! transaction faults or a configuration is bad, into something a log line can show.
//! Records come from the device and are untrusted: every field is decoded, none is assumed.

use core::fmt;

use super::ste::get;

/// Event types, by their spec names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    FUut,
    CBadStreamid,
    FSteFetch,
    CBadSte,
    FBadAtsTreq,
    FStreamDisabled,
    FTranslForbidden,
    CBadSubstreamid,
    FCdFetch,
    CBadCd,
    FWalkEabt,
    FTranslation,
    FAddrSize,
    FAccess,
    FPermission,
    FTlbConflict,
    FCfgConflict,
    EPageRequest,
    FVmsFetch,
    /// An IMPLEMENTATION DEFINED or unknown code.
    Other(u8),
}

impl EventType {
    pub fn from_code(code: u8) -> Self {
        match code {
            0x01 => EventType::FUut,
            0x02 => EventType::CBadStreamid,
            0x03 => EventType::FSteFetch,
            0x04 => EventType::CBadSte,
            0x05 => EventType::FBadAtsTreq,
            0x06 => EventType::FStreamDisabled,
            0x07 => EventType::FTranslForbidden,
            0x08 => EventType::CBadSubstreamid,
            0x09 => EventType::FCdFetch,
            0x0A => EventType::CBadCd,
            0x0B => EventType::FWalkEabt,
            0x10 => EventType::FTranslation,
            0x11 => EventType::FAddrSize,
            0x12 => EventType::FAccess,
            0x13 => EventType::FPermission,
            0x20 => EventType::FTlbConflict,
            0x21 => EventType::FCfgConflict,
            0x24 => EventType::EPageRequest,
            0x25 => EventType::FVmsFetch,
            other => EventType::Other(other),
        }
    }

    pub fn code(&self) -> u8 {
        match self {
            EventType::FUut => 0x01,
            EventType::CBadStreamid => 0x02,
            EventType::FSteFetch => 0x03,
            EventType::CBadSte => 0x04,
            EventType::FBadAtsTreq => 0x05,
            EventType::FStreamDisabled => 0x06,
            EventType::FTranslForbidden => 0x07,
            EventType::CBadSubstreamid => 0x08,
            EventType::FCdFetch => 0x09,
            EventType::CBadCd => 0x0A,
            EventType::FWalkEabt => 0x0B,
            EventType::FTranslation => 0x10,
            EventType::FAddrSize => 0x11,
            EventType::FAccess => 0x12,
            EventType::FPermission => 0x13,
            EventType::FTlbConflict => 0x20,
            EventType::FCfgConflict => 0x21,
            EventType::EPageRequest => 0x24,
            EventType::FVmsFetch => 0x25,
            EventType::Other(c) => *c,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            EventType::FUut => "F_UUT",
            EventType::CBadStreamid => "C_BAD_STREAMID",
            EventType::FSteFetch => "F_STE_FETCH",
            EventType::CBadSte => "C_BAD_STE",
            EventType::FBadAtsTreq => "F_BAD_ATS_TREQ",
            EventType::FStreamDisabled => "F_STREAM_DISABLED",
            EventType::FTranslForbidden => "F_TRANSL_FORBIDDEN",
            EventType::CBadSubstreamid => "C_BAD_SUBSTREAMID",
            EventType::FCdFetch => "F_CD_FETCH",
            EventType::CBadCd => "C_BAD_CD",
            EventType::FWalkEabt => "F_WALK_EABT",
            EventType::FTranslation => "F_TRANSLATION",
            EventType::FAddrSize => "F_ADDR_SIZE",
            EventType::FAccess => "F_ACCESS",
            EventType::FPermission => "F_PERMISSION",
            EventType::FTlbConflict => "F_TLB_CONFLICT",
            EventType::FCfgConflict => "F_CFG_CONFLICT",
            EventType::EPageRequest => "E_PAGE_REQUEST",
            EventType::FVmsFetch => "F_VMS_FETCH",
            EventType::Other(_) => "IMPDEF/unknown",
        }
    }

    /// Translation faults carry InputAddr, IPA, RnW, S2 and CLASS.
    fn is_translation_fault(&self) -> bool {
        matches!(
            self,
            EventType::FTranslation
                | EventType::FAddrSize
                | EventType::FAccess
                | EventType::FPermission
        )
    }
}

/// Which access a fault was on (the CLASS field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultClass {
    /// Fetching a CD.
    Cd,
    /// A stage-1 translation table walk.
    TableWalk,
    /// The input address of the transaction.
    Input,
    Reserved,
}

/// A decoded event record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmuEvent {
    pub kind: EventType,
    pub sid: u32,
    /// Substream ID, when the transaction had one (SSV).
    pub ssid: Option<u32>,
    /// The device's address (an IPA for stage-2-only streams).
    pub input_addr: Option<u64>,
    /// For faults at stage 2: the IPA that faulted.
    pub ipa: Option<u64>,
    /// For fetch faults: the physical address of the structure being fetched.
    pub fetch_addr: Option<u64>,
    /// `Some(true)` = read, `Some(false)` = write.
    pub read: Option<bool>,
    /// The fault was at stage 2.
    pub stage2: Option<bool>,
    pub class: Option<FaultClass>,
    /// The raw record, for anything not decoded.
    pub raw: [u64; 4],
}

impl SmmuEvent {
    pub fn decode(raw: [u64; 4]) -> Self {
        let kind = EventType::from_code((raw[0] & 0xff) as u8);
        let sid = (raw[0] >> 32) as u32;
        let ssid = (raw[0] & (1 << 11) != 0).then(|| get(raw[0], 31, 12) as u32);
        let mut ev = SmmuEvent {
            kind,
            sid,
            ssid,
            input_addr: None,
            ipa: None,
            fetch_addr: None,
            read: None,
            stage2: None,
            class: None,
            raw,
        };
        let rnw = raw[1] & (1 << 35) != 0;
        let s2 = raw[1] & (1 << 39) != 0;
        let class = match get(raw[1], 41, 40) {
            0 => FaultClass::Cd,
            1 => FaultClass::TableWalk,
            2 => FaultClass::Input,
            _ => FaultClass::Reserved,
        };
        match kind {
            k if k.is_translation_fault() => {
                ev.input_addr = Some(raw[2]);
                ev.ipa = Some(raw[3] & 0x00ff_ffff_ffff_f000);
                ev.read = Some(rnw);
                ev.stage2 = Some(s2);
                ev.class = Some(class);
            }
            EventType::FWalkEabt => {
                ev.input_addr = Some(raw[2]);
                ev.fetch_addr = Some(raw[3] & 0x00ff_ffff_ffff_fff8);
                ev.read = Some(rnw);
                ev.stage2 = Some(s2);
                ev.class = Some(class);
            }
            EventType::FSteFetch | EventType::FCdFetch | EventType::FVmsFetch => {
                ev.fetch_addr = Some(raw[3] & 0x00ff_ffff_ffff_fff8);
            }
            EventType::FUut
            | EventType::FBadAtsTreq
            | EventType::FTranslForbidden
            | EventType::FTlbConflict => {
                ev.input_addr = Some(raw[2]);
                ev.read = Some(rnw);
            }
            _ => {}
        }
        ev
    }

    pub fn from_bytes(b: &[u8; 32]) -> Self {
        let mut raw = [0u64; 4];
        for (i, w) in raw.iter_mut().enumerate() {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i * 8..i * 8 + 8]);
            *w = u64::from_le_bytes(x);
        }
        Self::decode(raw)
    }
}

impl fmt::Display for SmmuEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "smmu: {} ({:#04x}) sid={:#x}",
            self.kind.name(),
            self.kind.code(),
            self.sid
        )?;
        if let Some(ssid) = self.ssid {
            write!(f, " ssid={ssid:#x}")?;
        }
        if let Some(read) = self.read {
            f.write_str(if read { " read" } else { " write" })?;
        }
        if let Some(a) = self.input_addr {
            write!(f, " addr={a:#x}")?;
        }
        if let Some(s2) = self.stage2 {
            write!(f, " stage={}", if s2 { 2 } else { 1 })?;
        }
        if let (Some(ipa), Some(true)) = (self.ipa, self.stage2) {
            write!(f, " ipa={ipa:#x}")?;
        }
        if let Some(c) = self.class {
            let name = match c {
                FaultClass::Cd => "CD",
                FaultClass::TableWalk => "TT",
                FaultClass::Input => "IN",
                FaultClass::Reserved => "?",
            };
            write!(f, " class={name}")?;
        }
        if let Some(fa) = self.fetch_addr {
            write!(f, " fetch={fa:#x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn translation_fault() {
        // F_TRANSLATION, sid 0x10, write, stage 2, class IN, input 0x8000_0000.
        let raw = [
            0x10 | (0x10u64 << 32),
            (1 << 39) | (2 << 40),
            0x8000_0123,
            0x8000_0000,
        ];
        let ev = SmmuEvent::decode(raw);
        assert_eq!(ev.kind, EventType::FTranslation);
        assert_eq!(ev.sid, 0x10);
        assert_eq!(ev.ssid, None);
        assert_eq!(ev.read, Some(false));
        assert_eq!(ev.stage2, Some(true));
        assert_eq!(ev.class, Some(FaultClass::Input));
        assert_eq!(ev.input_addr, Some(0x8000_0123));
        assert_eq!(ev.ipa, Some(0x8000_0000));
        assert_eq!(
            format!("{ev}"),
            "smmu: F_TRANSLATION (0x10) sid=0x10 write addr=0x80000123 stage=2 ipa=0x80000000 class=IN"
        );
    }

    #[test]
    fn read_permission_fault_with_ssid() {
        let raw = [
            0x13 | (1 << 11) | (0x42 << 12) | (7u64 << 32),
            1 << 35,
            0x1000,
            0,
        ];
        let ev = SmmuEvent::decode(raw);
        assert_eq!(ev.kind, EventType::FPermission);
        assert_eq!(ev.ssid, Some(0x42));
        assert_eq!(ev.read, Some(true));
        assert_eq!(ev.stage2, Some(false));
        assert!(format!("{ev}").contains("F_PERMISSION (0x13) sid=0x7 ssid=0x42 read"));
    }

    #[test]
    fn config_and_fetch_events() {
        let ev = SmmuEvent::decode([0x02 | (0xffffu64 << 32), 0, 0, 0]);
        assert_eq!(ev.kind, EventType::CBadStreamid);
        assert_eq!(format!("{ev}"), "smmu: C_BAD_STREAMID (0x02) sid=0xffff");
        let ev = SmmuEvent::decode([0x04 | (3u64 << 32), 0, 0, 0]);
        assert_eq!(ev.kind.name(), "C_BAD_STE");
        let ev = SmmuEvent::decode([0x03, 0, 0, 0x4000_0047]);
        assert_eq!(ev.kind, EventType::FSteFetch);
        assert_eq!(ev.fetch_addr, Some(0x4000_0040));
        for code in [0x11u8, 0x12, 0x0b, 0x06, 0x0a] {
            assert_eq!(EventType::from_code(code).code(), code);
        }
        assert_eq!(EventType::from_code(0xe0), EventType::Other(0xe0));
        assert_eq!(EventType::from_code(0x11).name(), "F_ADDR_SIZE");
        assert_eq!(EventType::from_code(0x12).name(), "F_ACCESS");
        let mut bytes = [0u8; 32];
        bytes[0] = 0x10;
        bytes[4] = 9;
        assert_eq!(SmmuEvent::from_bytes(&bytes).sid, 9);
    }
}
