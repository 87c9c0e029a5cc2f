//! The physical GICv3 ITS, driven by the hypervisor alone: probe (GITS_PIDR2, GITS_TYPER),
//! its tables (GITS_BASER<n>: device and collection tables) and command queue (GITS_CBASER)
//! in hypervisor memory, and the command path (write packets, advance GITS_CWRITER, wait for
//! GITS_CREADR). Registers are reached through [`Mmio`] and memory through [`PhysMem`], so
//! the driver runs against a model in host tests.

use super::cmd::{Command, CMD_SIZE};
use alloc::vec::Vec;
use platform::{Mmio, PhysMem};

/// Register offsets in the ITS control frame (and the translation frame's doorbell).
pub mod gits {
    pub const CTLR: usize = 0x0000;
    pub const IIDR: usize = 0x0004;
    pub const TYPER: usize = 0x0008;
    pub const CBASER: usize = 0x0080;
    pub const CWRITER: usize = 0x0088;
    pub const CREADR: usize = 0x0090;
    pub const BASER: usize = 0x0100;
    pub const PIDR2: usize = 0xffe8;
    /// GITS_TRANSLATER, in the second 64 KiB frame: the doorbell devices write MSIs to.
    pub const TRANSLATER: u64 = 0x1_0040;
}

pub const CTLR_ENABLED: u32 = 1 << 0;
pub const CTLR_QUIESCENT: u32 = 1 << 31;
/// GITS_CREADR.Stalled: a command error stopped the queue.
pub const CREADR_STALLED: u64 = 1 << 0;
/// Valid bit of GITS_BASER<n> and GITS_CBASER.
pub const BASER_VALID: u64 = 1 << 63;
/// GITS_BASER<n>.Type values.
pub const BASER_TYPE_DEVICE: u64 = 1;
pub const BASER_TYPE_COLLECTION: u64 = 4;
/// Inner cacheability "Normal, write-back, read/write-allocate" (InnerCache = 7, bits 61:59).
pub const CACHE_WAWB: u64 = 7 << 59;
/// Shareability "Inner Shareable" (bits 11:10).
pub const SH_INNER: u64 = 1 << 10;
const SH_MASK: u64 = 3 << 10;
/// Physical address bits 47:12 of a table or queue base.
pub const PA_MASK: u64 = ((1 << 48) - 1) & !0xfff;
/// Command queue size: 16 pages of 4 KiB (2048 commands).
const CMDQ_PAGES: u64 = 16;
/// Polls of GITS_CREADR (or Quiescent) before giving up.
pub const POLL_LIMIT: u32 = 1_000_000;
/// ICIDs the collection table is sized for (one per physical CPU is what is used).
const COLLECTIONS: u64 = 256;

/// GITS_TYPER, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Typer(pub u64);

impl Typer {
    /// Physical LPIs supported.
    pub fn physical(&self) -> bool {
        self.0 & 1 != 0
    }
    /// Bytes per ITT entry.
    pub fn itt_entry_size(&self) -> u64 {
        ((self.0 >> 4) & 0xf) + 1
    }
    /// EventID width.
    pub fn event_bits(&self) -> u8 {
        ((self.0 >> 8) & 0x1f) as u8 + 1
    }
    /// DeviceID width.
    pub fn device_bits(&self) -> u8 {
        ((self.0 >> 13) & 0x1f) as u8 + 1
    }
    /// RDbase is the redistributor's physical address (else its processor number).
    pub fn pta(&self) -> bool {
        self.0 & (1 << 19) != 0
    }
}

/// Why the physical ITS cannot be used, or a command failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItsError {
    /// GITS_PIDR2 names no GICv3/v4 ITS.
    NotAnIts { pidr2: u32 },
    /// GITS_TYPER.Physical is 0.
    NoPhysicalLpis,
    /// No memory for a table or the command queue.
    NoMemory { what: &'static str, size: u64 },
    /// A GITS_BASER<n> did not keep the value written (page size or address not supported).
    BaserRejected { n: usize, wrote: u64, read: u64 },
    /// The ITS never became quiescent, or never consumed the commands.
    Timeout { what: &'static str },
    /// The queue stalled on a command (GITS_CREADR.Stalled).
    Stalled { creadr: u64 },
    /// More commands in one batch than the queue holds.
    TooManyCommands { n: usize },
}

impl core::fmt::Display for ItsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotAnIts { pidr2 } => write!(f, "GITS_PIDR2 {pidr2:#x} is not a GICv3/v4 ITS"),
            Self::NoPhysicalLpis => write!(f, "GITS_TYPER.Physical is 0"),
            Self::NoMemory { what, size } => write!(f, "no {size} bytes for the {what}"),
            Self::BaserRejected { n, wrote, read } => write!(f, "GITS_BASER{n}: wrote {wrote:#x}, read back {read:#x}"),
            Self::Timeout { what } => write!(f, "timed out waiting for {what}"),
            Self::Stalled { creadr } => write!(f, "command queue stalled at GITS_CREADR {creadr:#x}"),
            Self::TooManyCommands { n } => write!(f, "{n} commands do not fit in the command queue"),
        }
    }
}

/// A table the driver gave the ITS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItsTable {
    pub n: usize,
    pub kind: u64,
    pub pa: u64,
    pub size: u64,
}

/// The physical ITS, enabled, with its tables and command queue in hypervisor memory.
pub struct PhysIts<R: Mmio> {
    regs: R,
    /// Physical base of the control frame.
    base: u64,
    typer: Typer,
    cmdq: u64,
    cmdq_size: u64,
    /// Offset of the next command to write.
    write: u64,
    tables: Vec<ItsTable>,
    /// Commands sent since the probe (for the log and the tests).
    sent: u64,
}

/// Zero `size` bytes of fresh memory at `pa`.
fn zero(mem: &dyn PhysMem, pa: u64, size: u64) -> Result<(), ItsError> {
    mem.zero(pa, size).map_err(|_| ItsError::NoMemory { what: "table (not memory)", size })
}

impl<R: Mmio> PhysIts<R> {
    /// Probe the ITS whose control frame is `regs` (at physical `base`), give it a device
    /// table for every DeviceID, a collection table and a command queue from `alloc(size,
    /// align)`, and enable it.
    pub fn probe(regs: R, base: u64, mem: &dyn PhysMem, alloc: &mut dyn FnMut(u64, u64) -> Option<u64>) -> Result<Self, ItsError> {
        let pidr2 = regs.read32(gits::PIDR2);
        if !matches!((pidr2 >> 4) & 0xf, 3 | 4) {
            return Err(ItsError::NotAnIts { pidr2 });
        }
        let typer = Typer(regs.read64(gits::TYPER));
        if !typer.physical() {
            return Err(ItsError::NoPhysicalLpis);
        }
        // Off and quiescent before the tables change.
        regs.write32(gits::CTLR, regs.read32(gits::CTLR) & !CTLR_ENABLED);
        if !(0..POLL_LIMIT).any(|_| regs.read32(gits::CTLR) & CTLR_QUIESCENT != 0) {
            return Err(ItsError::Timeout { what: "GITS_CTLR.Quiescent" });
        }
        let mut tables = Vec::new();
        for n in 0..8 {
            let off = gits::BASER + 8 * n;
            let baser = regs.read64(off);
            let kind = (baser >> 56) & 7;
            let entry = ((baser >> 48) & 0x1f) + 1;
            let want = match kind {
                BASER_TYPE_DEVICE => entry << typer.device_bits(),
                BASER_TYPE_COLLECTION => entry * COLLECTIONS,
                // Nothing else (vPE tables) is used: left invalid.
                _ => continue,
            };
            // The smallest page size that covers the table in at most 256 pages.
            let (psz_code, psz) = [(0u64, 4096u64), (1, 16384), (2, 65536)]
                .into_iter()
                .find(|&(_, p)| want.div_ceil(p) <= 256)
                .ok_or(ItsError::NoMemory { what: "flat device table", size: want })?;
            let pages = want.div_ceil(psz).max(1);
            let size = pages * psz;
            let pa = alloc(size, psz).ok_or(ItsError::NoMemory { what: "ITS table", size })?;
            zero(mem, pa, size)?;
            let keep = baser & ((7 << 56) | (0x1f << 48));
            let value = BASER_VALID | keep | CACHE_WAWB | (pa & PA_MASK) | SH_INNER | (psz_code << 8) | (pages - 1);
            regs.write64(off, value);
            let back = regs.read64(off);
            // Shareability and cacheability may be downgraded (then the tables are cleaned to
            // memory after each write); the address, page size and size must stay.
            let must = BASER_VALID | PA_MASK | (3 << 8) | 0xff;
            if back & must != value & must {
                return Err(ItsError::BaserRejected { n, wrote: value, read: back });
            }
            tables.push(ItsTable { n, kind, pa, size });
        }
        let cmdq_size = CMDQ_PAGES * 4096;
        let cmdq = alloc(cmdq_size, 65536).ok_or(ItsError::NoMemory { what: "ITS command queue", size: cmdq_size })?;
        zero(mem, cmdq, cmdq_size)?;
        let cbaser = BASER_VALID | CACHE_WAWB | SH_INNER | (cmdq & PA_MASK) | (CMDQ_PAGES - 1);
        regs.write64(gits::CBASER, cbaser);
        let _ = regs.read64(gits::CBASER) & SH_MASK;
        regs.write64(gits::CWRITER, 0);
        regs.write32(gits::CTLR, CTLR_ENABLED);
        Ok(Self { regs, base, typer, cmdq, cmdq_size, write: 0, tables, sent: 0 })
    }

    pub fn typer(&self) -> Typer {
        self.typer
    }

    pub fn tables(&self) -> &[ItsTable] {
        &self.tables
    }

    pub fn commands_sent(&self) -> u64 {
        self.sent
    }

    /// Physical address of GITS_TRANSLATER.
    pub fn doorbell(&self) -> u64 {
        self.base + gits::TRANSLATER
    }

    /// Bytes of an ITT for EventIDs of `bits` bits (ITT_addr is 256-byte aligned).
    pub fn itt_size(&self, bits: u8) -> u64 {
        (self.typer.itt_entry_size() << bits.min(32)).max(256)
    }

    /// Queue `cmds`, let the ITS run them, and wait until it has read them all.
    pub fn send(&mut self, cmds: &[Command], mem: &dyn PhysMem) -> Result<(), ItsError> {
        if cmds.is_empty() {
            return Ok(());
        }
        let slots = (self.cmdq_size / CMD_SIZE) as usize;
        if cmds.len() >= slots {
            return Err(ItsError::TooManyCommands { n: cmds.len() });
        }
        // The queue is empty here: every batch is waited for.
        for c in cmds {
            let pa = self.cmdq + self.write;
            mem.write(pa, &c.to_bytes()).map_err(|_| ItsError::NoMemory { what: "command queue (not memory)", size: CMD_SIZE })?;
            mem.clean_dcache(pa, CMD_SIZE as usize);
            self.write = (self.write + CMD_SIZE) % self.cmdq_size;
        }
        self.sent += cmds.len() as u64;
        self.regs.write64(gits::CWRITER, self.write);
        for _ in 0..POLL_LIMIT {
            let creadr = self.regs.read64(gits::CREADR);
            if creadr & CREADR_STALLED != 0 {
                return Err(ItsError::Stalled { creadr });
            }
            if creadr & !0x1f == self.write {
                return Ok(());
            }
        }
        Err(ItsError::Timeout { what: "GITS_CREADR to reach GITS_CWRITER" })
    }
}
