//! ITS commands: the 32-byte packets of a GICv3 ITS command queue, decoded into [`Command`]
//! and encoded back. Field positions (GICv3 architecture, "ITS commands"): DW0 bits 7:0 the
//! command number and 63:32 the DeviceID; DW1 bits 31:0 the EventID (63:32 the pINTID of
//! MAPTI, 4:0 the EventID width of MAPD); DW2 the ICID (15:0), RDbase (51:16), ITT address
//! (51:8) and Valid (63); DW3 a second RDbase (MOVALL).

/// Bytes per command.
pub const CMD_SIZE: u64 = 32;

pub const MOVI: u8 = 0x01;
pub const INT: u8 = 0x03;
pub const CLEAR: u8 = 0x04;
pub const SYNC: u8 = 0x05;
pub const MAPD: u8 = 0x08;
pub const MAPC: u8 = 0x09;
pub const MAPTI: u8 = 0x0a;
pub const MAPI: u8 = 0x0b;
pub const INV: u8 = 0x0c;
pub const INVALL: u8 = 0x0d;
pub const MOVALL: u8 = 0x0e;
pub const DISCARD: u8 = 0x0f;

const VALID: u64 = 1 << 63;
/// RDbase field: bits 51:16.
const RDBASE_MASK: u64 = ((1 << 52) - 1) & !0xffff;
/// ITT_addr field of MAPD: bits 51:8.
const ITT_MASK: u64 = ((1 << 52) - 1) & !0xff;

/// One ITS command. `rdbase` values are the RDbase field shifted down (a processor number
/// when GITS_TYPER.PTA is 0, the redistributor's physical address >> 16 when it is 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Movi { device: u32, event: u32, icid: u16 },
    Int { device: u32, event: u32 },
    Clear { device: u32, event: u32 },
    Sync { rdbase: u64 },
    /// `bits`: EventIDs the ITT holds, as a width (the command's Size field + 1).
    Mapd { device: u32, bits: u8, itt: u64, valid: bool },
    Mapc { icid: u16, rdbase: u64, valid: bool },
    Mapti { device: u32, event: u32, intid: u32, icid: u16 },
    Mapi { device: u32, event: u32, icid: u16 },
    Inv { device: u32, event: u32 },
    Invall { icid: u16 },
    Movall { from: u64, to: u64 },
    Discard { device: u32, event: u32 },
    /// A command number this ITS does not implement (GICv4 virtual-LPI commands included).
    Unknown(u8),
}

impl Command {
    pub fn decode(dw: [u64; 4]) -> Command {
        let device = (dw[0] >> 32) as u32;
        let event = dw[1] as u32;
        let icid = dw[2] as u16;
        let rdbase = (dw[2] & RDBASE_MASK) >> 16;
        match dw[0] as u8 {
            MOVI => Command::Movi { device, event, icid },
            INT => Command::Int { device, event },
            CLEAR => Command::Clear { device, event },
            SYNC => Command::Sync { rdbase },
            MAPD => Command::Mapd { device, bits: (dw[1] & 0x1f) as u8 + 1, itt: dw[2] & ITT_MASK, valid: dw[2] & VALID != 0 },
            MAPC => Command::Mapc { icid, rdbase, valid: dw[2] & VALID != 0 },
            MAPTI => Command::Mapti { device, event, intid: (dw[1] >> 32) as u32, icid },
            MAPI => Command::Mapi { device, event, icid },
            INV => Command::Inv { device, event },
            INVALL => Command::Invall { icid },
            MOVALL => Command::Movall { from: rdbase, to: (dw[3] & RDBASE_MASK) >> 16 },
            DISCARD => Command::Discard { device, event },
            other => Command::Unknown(other),
        }
    }

    pub fn encode(&self) -> [u64; 4] {
        let head = |op: u8, device: u32| u64::from(op) | (u64::from(device) << 32);
        let rd = |r: u64| (r << 16) & RDBASE_MASK;
        let v = |valid: bool| if valid { VALID } else { 0 };
        match *self {
            Command::Movi { device, event, icid } => [head(MOVI, device), u64::from(event), u64::from(icid), 0],
            Command::Int { device, event } => [head(INT, device), u64::from(event), 0, 0],
            Command::Clear { device, event } => [head(CLEAR, device), u64::from(event), 0, 0],
            Command::Sync { rdbase } => [u64::from(SYNC), 0, rd(rdbase), 0],
            Command::Mapd { device, bits, itt, valid } => {
                [head(MAPD, device), u64::from(bits.clamp(1, 32) - 1), (itt & ITT_MASK) | v(valid), 0]
            }
            Command::Mapc { icid, rdbase, valid } => [u64::from(MAPC), 0, u64::from(icid) | rd(rdbase) | v(valid), 0],
            Command::Mapti { device, event, intid, icid } => {
                [head(MAPTI, device), u64::from(event) | (u64::from(intid) << 32), u64::from(icid), 0]
            }
            Command::Mapi { device, event, icid } => [head(MAPI, device), u64::from(event), u64::from(icid), 0],
            Command::Inv { device, event } => [head(INV, device), u64::from(event), 0, 0],
            Command::Invall { icid } => [u64::from(INVALL), 0, u64::from(icid), 0],
            Command::Movall { from, to } => [u64::from(MOVALL), 0, rd(from), rd(to)],
            Command::Discard { device, event } => [head(DISCARD, device), u64::from(event), 0, 0],
            Command::Unknown(op) => [u64::from(op), 0, 0, 0],
        }
    }

    /// The command as bytes in queue order (little-endian double words).
    pub fn to_bytes(&self) -> [u8; CMD_SIZE as usize] {
        let mut out = [0u8; CMD_SIZE as usize];
        for (i, w) in self.encode().iter().enumerate() {
            out[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(b: &[u8; CMD_SIZE as usize]) -> Command {
        let mut dw = [0u64; 4];
        for (i, w) in dw.iter_mut().enumerate() {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[8 * i..8 * i + 8]);
            *w = u64::from_le_bytes(x);
        }
        Command::decode(dw)
    }
}
