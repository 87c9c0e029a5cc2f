//! Command queue entries (spec chapter 4): the commands xenith issues and their 16-byte encoding.

use core::fmt;

use super::ste::get;

/// Command opcodes (byte 0 of every command).
pub mod opcode {
    pub const CFGI_STE: u8 = 0x03;
    pub const CFGI_STE_RANGE: u8 = 0x04;
    pub const CFGI_CD: u8 = 0x05;
    pub const CFGI_CD_ALL: u8 = 0x06;
    pub const TLBI_NH_ALL: u8 = 0x10;
    pub const TLBI_NH_ASID: u8 = 0x11;
    pub const TLBI_NH_VA: u8 = 0x12;
    pub const TLBI_EL2_ALL: u8 = 0x20;
    pub const TLBI_S12_VMALL: u8 = 0x28;
    pub const TLBI_S2_IPA: u8 = 0x2A;
    pub const TLBI_NSNH_ALL: u8 = 0x30;
    pub const CMD_SYNC: u8 = 0x46;
}

/// How a range-based TLBI_S2_IPA is sized: `(num + 1) << scale` granules from `ipa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlbiRange {
    /// Granule: 1 = 4 KiB, 2 = 16 KiB, 3 = 64 KiB (the TG field; 0 means "not a range").
    pub tg: u8,
    /// 0..=31.
    pub num: u8,
    /// 0..=31.
    pub scale: u8,
}

/// A command xenith issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Invalidate cached configuration of one stream; `leaf` = only the STE, not the CDs.
    CfgiSte { sid: u32, leaf: bool },
    /// Invalidate cached configuration of `2^(range+1)` streams starting at `sid` (aligned).
    CfgiSteRange { sid: u32, range: u8 },
    /// Invalidate one context descriptor of a stream.
    CfgiCd { sid: u32, ssid: u32, leaf: bool },
    /// Invalidate all cached configuration (CFGI_STE_RANGE with Range = 31).
    CfgiAll,
    /// Invalidate stage-1 entries of one ASID (within `vmid`).
    TlbiNhAsid { vmid: u16, asid: u16 },
    /// Invalidate every stage-1 (and combined nested) entry of `vmid`.
    TlbiNhAll { vmid: u16 },
    /// Invalidate the stage-1 entries of `asid` in `vmid` covering `addr` (one page, or a
    /// range with RIL). `leaf`: only last-level entries changed; `ttl`: level hint.
    TlbiNhVa {
        vmid: u16,
        asid: u16,
        addr: u64,
        leaf: bool,
        ttl: u8,
        range: Option<TlbiRange>,
    },
    /// Invalidate all stage-1 and stage-2 entries of a VMID.
    TlbiS12Vmall { vmid: u16 },
    /// Invalidate stage-2 entries covering `ipa` (one granule, or a range with RIL).
    /// `leaf`: only last-level entries changed. `ttl`: level hint, 0 = unknown.
    TlbiS2Ipa {
        vmid: u16,
        ipa: u64,
        leaf: bool,
        ttl: u8,
        range: Option<TlbiRange>,
    },
    /// Invalidate all non-secure non-hyp TLB entries.
    TlbiNsnhAll,
    /// Invalidate all EL2 entries.
    TlbiEl2All,
    /// Completion barrier; `CS = 0` (no interrupt, no event): completion is seen by polling CONS.
    Sync,
}

impl Command {
    pub fn opcode(&self) -> u8 {
        use opcode::*;
        match self {
            Command::CfgiSte { .. } => CFGI_STE,
            Command::CfgiSteRange { .. } | Command::CfgiAll => CFGI_STE_RANGE,
            Command::CfgiCd { .. } => CFGI_CD,
            Command::TlbiNhAsid { .. } => TLBI_NH_ASID,
            Command::TlbiNhAll { .. } => TLBI_NH_ALL,
            Command::TlbiNhVa { .. } => TLBI_NH_VA,
            Command::TlbiS12Vmall { .. } => TLBI_S12_VMALL,
            Command::TlbiS2Ipa { .. } => TLBI_S2_IPA,
            Command::TlbiNsnhAll => TLBI_NSNH_ALL,
            Command::TlbiEl2All => TLBI_EL2_ALL,
            Command::Sync => CMD_SYNC,
        }
    }

    /// The two little-endian 64-bit words of the command.
    pub fn encode(&self) -> [u64; 2] {
        let op = u64::from(self.opcode());
        match *self {
            Command::CfgiSte { sid, leaf } => [op | (u64::from(sid) << 32), u64::from(leaf)],
            Command::CfgiSteRange { sid, range } => {
                [op | (u64::from(sid) << 32), u64::from(range & 0x1f)]
            }
            Command::CfgiAll => [op, 31],
            Command::CfgiCd { sid, ssid, leaf } => [
                op | (u64::from(ssid & 0xf_ffff) << 12) | (u64::from(sid) << 32),
                u64::from(leaf),
            ],
            Command::TlbiNhAsid { vmid, asid } => {
                [op | (u64::from(vmid) << 32) | (u64::from(asid) << 48), 0]
            }
            Command::TlbiS12Vmall { vmid } | Command::TlbiNhAll { vmid } => {
                [op | (u64::from(vmid) << 32), 0]
            }
            Command::TlbiNhVa { vmid, asid, addr, leaf, ttl, range } => {
                let (num, scale, tg) = match range {
                    Some(r) => (r.num & 0x1f, r.scale & 0x1f, r.tg & 3),
                    None => (0, 0, 0),
                };
                [
                    op | (u64::from(num) << 12)
                        | (u64::from(scale) << 20)
                        | (u64::from(vmid) << 32)
                        | (u64::from(asid) << 48),
                    u64::from(leaf)
                        | (u64::from(ttl & 3) << 8)
                        | (u64::from(tg) << 10)
                        | (addr & 0x000f_ffff_ffff_f000),
                ]
            }
            Command::TlbiS2Ipa {
                vmid,
                ipa,
                leaf,
                ttl,
                range,
            } => {
                let (num, scale, tg) = match range {
                    Some(r) => (r.num & 0x1f, r.scale & 0x1f, r.tg & 3),
                    None => (0, 0, 0),
                };
                [
                    op | (u64::from(num) << 12)
                        | (u64::from(scale) << 20)
                        | (u64::from(vmid) << 32),
                    u64::from(leaf)
                        | (u64::from(ttl & 3) << 8)
                        | (u64::from(tg) << 10)
                        | (ipa & 0x000f_ffff_ffff_f000),
                ]
            }
            Command::TlbiNsnhAll | Command::TlbiEl2All | Command::Sync => [op, 0],
        }
    }

    pub fn to_bytes(&self) -> [u8; 16] {
        let [a, b] = self.encode();
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&a.to_le_bytes());
        out[8..].copy_from_slice(&b.to_le_bytes());
        out
    }

    /// Decode the commands this module encodes (for the test double and for error reports).
    pub fn decode(w: [u64; 2]) -> Option<Command> {
        use opcode::*;
        let op = (w[0] & 0xff) as u8;
        let sid = (w[0] >> 32) as u32;
        let vmid = get(w[0], 47, 32) as u16;
        Some(match op {
            CFGI_STE => Command::CfgiSte {
                sid,
                leaf: w[1] & 1 != 0,
            },
            CFGI_STE_RANGE if w[1] & 0x1f == 31 => Command::CfgiAll,
            CFGI_STE_RANGE => Command::CfgiSteRange {
                sid,
                range: (w[1] & 0x1f) as u8,
            },
            CFGI_CD => Command::CfgiCd {
                sid,
                ssid: get(w[0], 31, 12) as u32,
                leaf: w[1] & 1 != 0,
            },
            TLBI_NH_ASID => Command::TlbiNhAsid {
                vmid,
                asid: get(w[0], 63, 48) as u16,
            },
            TLBI_S12_VMALL => Command::TlbiS12Vmall { vmid },
            TLBI_NH_ALL => Command::TlbiNhAll { vmid },
            TLBI_NH_VA => {
                let tg = get(w[1], 11, 10) as u8;
                Command::TlbiNhVa {
                    vmid,
                    asid: get(w[0], 63, 48) as u16,
                    addr: w[1] & 0x000f_ffff_ffff_f000,
                    leaf: w[1] & 1 != 0,
                    ttl: get(w[1], 9, 8) as u8,
                    range: (tg != 0).then(|| TlbiRange {
                        tg,
                        num: get(w[0], 16, 12) as u8,
                        scale: get(w[0], 24, 20) as u8,
                    }),
                }
            }
            TLBI_S2_IPA => {
                let tg = get(w[1], 11, 10) as u8;
                Command::TlbiS2Ipa {
                    vmid,
                    ipa: w[1] & 0x000f_ffff_ffff_f000,
                    leaf: w[1] & 1 != 0,
                    ttl: get(w[1], 9, 8) as u8,
                    range: (tg != 0).then(|| TlbiRange {
                        tg,
                        num: get(w[0], 16, 12) as u8,
                        scale: get(w[0], 24, 20) as u8,
                    }),
                }
            }
            TLBI_NSNH_ALL => Command::TlbiNsnhAll,
            TLBI_EL2_ALL => Command::TlbiEl2All,
            CMD_SYNC => Command::Sync,
            _ => return None,
        })
    }
}

/// Name of a command opcode, for log lines.
pub fn opcode_name(op: u8) -> &'static str {
    use opcode::*;
    match op {
        CFGI_STE => "CFGI_STE",
        CFGI_STE_RANGE => "CFGI_STE_RANGE",
        CFGI_CD => "CFGI_CD",
        CFGI_CD_ALL => "CFGI_CD_ALL",
        TLBI_NH_ALL => "TLBI_NH_ALL",
        TLBI_NH_ASID => "TLBI_NH_ASID",
        TLBI_NH_VA => "TLBI_NH_VA",
        TLBI_EL2_ALL => "TLBI_EL2_ALL",
        TLBI_S12_VMALL => "TLBI_S12_VMALL",
        TLBI_S2_IPA => "TLBI_S2_IPA",
        TLBI_NSNH_ALL => "TLBI_NSNH_ALL",
        CMD_SYNC => "CMD_SYNC",
        _ => "unknown",
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(opcode_name(self.opcode()))?;
        match *self {
            Command::CfgiSte { sid, .. } | Command::CfgiSteRange { sid, .. } => {
                write!(f, " sid={sid:#x}")
            }
            Command::CfgiCd { sid, ssid, .. } => write!(f, " sid={sid:#x} ssid={ssid:#x}"),
            Command::TlbiS12Vmall { vmid } => write!(f, " vmid={vmid}"),
            Command::TlbiNhAsid { vmid, asid } => write!(f, " vmid={vmid} asid={asid}"),
            Command::TlbiNhAll { vmid } => write!(f, " vmid={vmid}"),
            Command::TlbiNhVa { vmid, asid, addr, .. } => {
                write!(f, " vmid={vmid} asid={asid} addr={addr:#x}")
            }
            Command::TlbiS2Ipa {
                vmid, ipa, range, ..
            } => {
                write!(f, " vmid={vmid} ipa={ipa:#x}")?;
                match range {
                    Some(r) => write!(f, " pages={}", (u64::from(r.num) + 1) << r.scale),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

/// Split `pages` granules into range-invalidation commands (SMMUv3.2 RIL): each covers
/// `(num + 1) << scale` granules. Greedy from the largest chunk, so at most a handful of
/// commands for any size. Calls `emit(first_page_offset, range)` for each, in order.
pub fn split_range<E>(
    pages: u64,
    tg: u8,
    mut emit: impl FnMut(u64, TlbiRange) -> Result<(), E>,
) -> Result<(), E> {
    let mut done = 0u64;
    while done < pages {
        let left = pages - done;
        // floor(log2(left)); left >= 1.
        let log = 63 - left.leading_zeros();
        // Choose scale so that left >> scale fits NUM+1 (1..=32): at most 5 significant bits.
        let scale = log.saturating_sub(4).min(31);
        let count = (left >> scale).min(32);
        let num = (count - 1) as u8;
        emit(
            done,
            TlbiRange {
                tg,
                num,
                scale: scale as u8,
            },
        )?;
        done += count << scale;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_at_spec_positions() {
        let [a, b] = Command::CfgiSte {
            sid: 0x1_0008,
            leaf: true,
        }
        .encode();
        assert_eq!(a & 0xff, 0x03);
        assert_eq!(a >> 32, 0x1_0008);
        assert_eq!(b, 1);

        let [a, b] = Command::CfgiAll.encode();
        assert_eq!(a, 0x04);
        assert_eq!(b & 0x1f, 31);

        let [a, _] = Command::TlbiS12Vmall { vmid: 0xabcd }.encode();
        assert_eq!(a, 0x28 | (0xabcd << 32));

        let cmd = Command::TlbiS2Ipa {
            vmid: 3,
            ipa: 0x8_1234_5000,
            leaf: true,
            ttl: 3,
            range: Some(TlbiRange {
                tg: 1,
                num: 31,
                scale: 2,
            }),
        };
        let [a, b] = cmd.encode();
        assert_eq!(a & 0xff, 0x2a);
        assert_eq!(get(a, 16, 12), 31, "NUM");
        assert_eq!(get(a, 24, 20), 2, "SCALE");
        assert_eq!(get(a, 47, 32), 3, "VMID");
        assert_eq!(b & 1, 1, "Leaf");
        assert_eq!(get(b, 9, 8), 3, "TTL");
        assert_eq!(get(b, 11, 10), 1, "TG");
        assert_eq!(b & !0xfff, 0x8_1234_5000, "IPA[51:12]");
        assert_eq!(Command::decode(cmd.encode()), Some(cmd));

        let [a, b] = Command::Sync.encode();
        assert_eq!(a, 0x46, "CS = none, no MSI");
        assert_eq!(b, 0);
        assert_eq!(Command::TlbiNsnhAll.encode(), [0x30, 0]);
        assert_eq!(Command::TlbiEl2All.encode(), [0x20, 0]);

        let [a, b] = Command::CfgiCd {
            sid: 9,
            ssid: 0x12345,
            leaf: false,
        }
        .encode();
        assert_eq!(a, 0x05 | (0x12345 << 12) | (9 << 32));
        assert_eq!(b, 0);
        let [a, _] = Command::TlbiNhAsid {
            vmid: 2,
            asid: 0x55,
        }
        .encode();
        assert_eq!(a, 0x11 | (2 << 32) | (0x55 << 48));
    }

    #[test]
    fn decode_round_trips() {
        for c in [
            Command::CfgiSte {
                sid: 5,
                leaf: false,
            },
            Command::CfgiSteRange {
                sid: 0x100,
                range: 7,
            },
            Command::CfgiAll,
            Command::TlbiS12Vmall { vmid: 1 },
            Command::TlbiS2Ipa {
                vmid: 1,
                ipa: 0x1000,
                leaf: false,
                ttl: 0,
                range: None,
            },
            Command::TlbiNsnhAll,
            Command::Sync,
            Command::TlbiNhAll { vmid: 9 },
            Command::TlbiNhVa {
                vmid: 1,
                asid: 0xbeef,
                addr: 0x12_3456_7000,
                leaf: true,
                ttl: 3,
                range: Some(TlbiRange { tg: 1, num: 4, scale: 1 }),
            },
        ] {
            assert_eq!(Command::decode(c.encode()), Some(c));
        }
        assert_eq!(Command::decode([0xff, 0]), None);
        let b = Command::Sync.to_bytes();
        assert_eq!(b[0], 0x46);
    }

    #[test]
    fn range_split_covers_exactly() {
        for pages in [1u64, 2, 31, 32, 33, 100, 1000, 4096, 123_457, 1 << 30] {
            let mut covered = 0u64;
            let mut cmds = 0;
            split_range::<()>(pages, 1, |off, r| {
                assert_eq!(off, covered, "contiguous");
                assert!(r.num <= 31 && r.scale <= 31);
                covered += (u64::from(r.num) + 1) << r.scale;
                cmds += 1;
                Ok(())
            })
            .unwrap();
            assert_eq!(covered, pages, "{pages} pages");
            assert!(cmds <= 7, "{pages} pages took {cmds} commands");
        }
    }
}
