//! The policy-free SysMMU register driver: version detection, enable/disable, the block handshake,
//! TLB and FLPD-cache flushes, CFG per version and fault decoding. It does not decide what is
//! mapped or when to flush; `shadow.rs` does.
//!
//! Fail closed: whenever the driver cannot complete an operation that keeps the master confined
//! (unknown VERSION, a block that never completes, a flush that could not run), it leaves CTRL at
//! BLOCK so the master stalls. It never leaves a SysMMU disabled, which would be bypass.

use core::fmt;

use platform::exynos5250::sysmmu_pt::{Flush, PtFormat, SMALL_PAGE_SIZE};
use platform::Mmio;

use super::regs::*;

/// STATUS reads before a block request is declared stuck.
pub const BLOCK_POLL_LIMIT: u32 = 120;
/// Entry flushes above this many pages become one FLUSH-all.
pub const FLUSH_ENTRY_LIMIT: u64 = 256;
/// The v2 TLB has 64 sets: 64 entry flushes cover any range.
pub const V2_FLUSH_ENTRY_MAX: u64 = 64;

/// Why the driver refused or failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysmmuError {
    /// VERSION is not one the driver knows; the SysMMU was left blocked.
    UnknownVersion { raw: u32, version: SysmmuVersion },
    /// A known version this driver does not drive; the SysMMU was left blocked.
    Unsupported { version: SysmmuVersion, why: &'static str },
    /// STATUS.0 did not set within [`BLOCK_POLL_LIMIT`] reads; CTRL stays BLOCK.
    BlockTimeout { polls: u32 },
    /// The page-table base cannot be expressed in PT_BASE.
    BadPageTable { pgd_pa: u64 },
    /// The fault handler ran but INT_STATUS was 0.
    NoFault,
    /// INT_STATUS had bits that mean nothing for this version (cleared, SysMMU left blocked).
    UnknownFault { int_status: u32 },
}

impl fmt::Display for SysmmuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SysmmuError::UnknownVersion { raw, version } => write!(
                f,
                "unknown SysMMU VERSION {raw:#010x} ({version}); device left blocked"
            ),
            SysmmuError::Unsupported { version, why } => {
                write!(f, "SysMMU {version} is not supported ({why}); device left blocked")
            }
            SysmmuError::BlockTimeout { polls } => {
                write!(f, "SysMMU did not block after {polls} STATUS reads; CTRL left at BLOCK")
            }
            SysmmuError::BadPageTable { pgd_pa } => {
                write!(f, "page table at {pgd_pa:#x} cannot be given to this SysMMU")
            }
            SysmmuError::NoFault => write!(f, "SysMMU interrupt with INT_STATUS 0 (spurious)"),
            SysmmuError::UnknownFault { int_status } => {
                write!(f, "SysMMU INT_STATUS {int_status:#x} has unknown bits; device left blocked")
            }
        }
    }
}

/// Whether a version is driven, and with which layout.
pub fn classify(raw: u32) -> Result<(SysmmuVersion, RegLayout), SysmmuError> {
    let version = SysmmuVersion::from_reg(raw);
    match (version.major, version.minor) {
        (1 | 2, _) | (3, 0..=3) => Ok((version, RegLayout::V1)),
        (5 | 6, _) => Ok((version, RegLayout::V5)),
        (7, _) => Err(SysmmuError::Unsupported {
            version,
            why: "v7 needs the VM register set and CAPA probing",
        }),
        _ => Err(SysmmuError::UnknownVersion { raw, version }),
    }
}

/// The MMU_CFG value for a version (what Linux 6.1 programs, facts section 2).
pub fn cfg_for(version: SysmmuVersion) -> u32 {
    let qos = cfg_qos(15);
    let v = (version.major, version.minor);
    let base = if v < (3, 2) {
        CFG_LRU | qos
    } else if v == (3, 2) {
        CFG_LRU | qos | CFG_FLPDCACHE | CFG_SYSSEL
    } else {
        qos | CFG_FLPDCACHE | CFG_ACGEN
    };
    base | CFG_EAP
}

/// Bytes of IOVA a v3.x SysMMU prefetches around a walked level-2 entry (v3.0/v3.1: 128 KiB,
/// v3.2+: 256 KiB); 4 KiB (no prefetch) for other versions. Regions the driver lays out itself are
/// aligned to this and separated by a hole at least this big.
pub fn prefetch_granule(version: SysmmuVersion) -> u64 {
    match (version.major, version.minor) {
        (3, 0..=1) => 128 << 10,
        (3, _) => 256 << 10,
        _ => SMALL_PAGE_SIZE,
    }
}

/// What kind of fault the SysMMU reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// v5: the page-table walk itself failed.
    PageTableWalk,
    /// No valid translation.
    Page,
    /// Several TLB entries matched.
    MultiHit,
    /// The bus returned an error (v1-v3).
    BusError,
    /// TrustZone rejected the access.
    Security,
    /// The mapping does not allow this access.
    AccessProtection,
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::PageTableWalk => "page-table walk",
            FaultKind::Page => "page",
            FaultKind::MultiHit => "TLB multi-hit",
            FaultKind::BusError => "bus error",
            FaultKind::Security => "security",
            FaultKind::AccessProtection => "access protection",
        })
    }
}

/// The direction of the faulting access, when the SysMMU says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAccess {
    Read,
    Write,
    Unknown,
}

/// A decoded fault interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysmmuFault {
    pub kind: FaultKind,
    pub access: FaultAccess,
    /// The IOVA from this fault type's address register.
    pub iova: u32,
    /// The INT_STATUS bit handled.
    pub bit: u8,
    /// INT_STATUS as read (other bits may still be pending).
    pub int_status: u32,
}

impl fmt::Display for SysmmuFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = match self.access {
            FaultAccess::Read => "read ",
            FaultAccess::Write => "write ",
            FaultAccess::Unknown => "",
        };
        write!(
            f,
            "SysMMU {dir}{} fault at IOVA {:#010x} (INT_STATUS {:#x}, bit {})",
            self.kind, self.iova, self.int_status, self.bit
        )
    }
}

/// (kind, access, address register) for an INT_STATUS bit.
fn fault_info(layout: RegLayout, bit: u32) -> Option<(FaultKind, FaultAccess, usize)> {
    use FaultAccess::*;
    use FaultKind::*;
    match layout {
        RegLayout::V1 => Some(match bit {
            0 => (Page, Unknown, v1::MMU_PAGE_FAULT_ADDR),
            1 => (MultiHit, Read, v1::MMU_AR_FAULT_ADDR),
            2 => (MultiHit, Write, v1::MMU_AW_FAULT_ADDR),
            3 => (BusError, Unknown, v1::MMU_DEFAULT_SLAVE_ADDR),
            4 => (Security, Read, v1::MMU_AR_FAULT_ADDR),
            5 => (AccessProtection, Read, v1::MMU_AR_FAULT_ADDR),
            6 => (Security, Write, v1::MMU_AW_FAULT_ADDR),
            7 => (AccessProtection, Write, v1::MMU_AW_FAULT_ADDR),
            _ => return None,
        }),
        RegLayout::V5 => {
            let (access, reg, n) = match bit {
                0..=4 => (Read, v5::MMU_FAULT_AR_VA, bit),
                16..=20 => (Write, v5::MMU_FAULT_AW_VA, bit - 16),
                _ => return None,
            };
            let kind = [PageTableWalk, Page, MultiHit, AccessProtection, Security][n as usize];
            Some((kind, access, reg))
        }
    }
}

/// One SysMMU instance behind its register block.
pub struct Sysmmu<M: Mmio> {
    regs: M,
    version: SysmmuVersion,
    layout: RegLayout,
}

impl<M: Mmio> Sysmmu<M> {
    /// Read VERSION and take the device. An unknown or unsupported version is an error and the
    /// SysMMU is left blocked (CTRL = BLOCK: its master stalls instead of bypassing).
    pub fn probe(regs: M) -> Result<Self, SysmmuError> {
        Self::try_probe(regs).map_err(|(e, _)| e)
    }

    /// [`Sysmmu::probe`], handing the registers back (left blocked) when the SysMMU cannot be
    /// driven, so that it can be probed again later (e.g. once its power domain is on).
    pub fn try_probe(regs: M) -> Result<Self, (SysmmuError, M)> {
        match classify(regs.read32(MMU_VERSION)) {
            Ok((version, layout)) => Ok(Sysmmu { regs, version, layout }),
            Err(e) => {
                regs.write32(MMU_CTRL, CTRL_BLOCK);
                Err((e, regs))
            }
        }
    }

    /// Give the registers up (nothing is written).
    pub fn into_regs(self) -> M {
        self.regs
    }

    pub fn version(&self) -> SysmmuVersion {
        self.version
    }

    pub fn layout(&self) -> RegLayout {
        self.layout
    }

    /// The register block (for tests and the interrupt path).
    pub fn regs(&self) -> &M {
        &self.regs
    }

    /// The entry format of this SysMMU's page tables.
    pub fn pt_format(&self) -> PtFormat {
        match self.layout {
            RegLayout::V1 => PtFormat::V1,
            RegLayout::V5 => PtFormat::V5,
        }
    }

    /// v3.x fetches and caches neighbouring level-2 entries, fault entries included.
    pub fn has_prefetch_quirk(&self) -> bool {
        self.version.major == 3
    }

    /// The version has an FLPD (level-1) cache.
    pub fn has_flpd_cache(&self) -> bool {
        (self.version.major, self.version.minor) >= (3, 2)
    }

    /// Request a block and wait (bounded) for STATUS.0. On timeout CTRL stays BLOCK.
    pub fn block(&self) -> Result<(), SysmmuError> {
        self.regs.write32(MMU_CTRL, CTRL_BLOCK);
        for _ in 0..BLOCK_POLL_LIMIT {
            if self.regs.read32(MMU_STATUS) & STATUS_BLOCKED != 0 {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(SysmmuError::BlockTimeout { polls: BLOCK_POLL_LIMIT })
    }

    /// Let translation resume.
    pub fn unblock(&self) {
        self.regs.write32(MMU_CTRL, CTRL_ENABLE);
    }

    /// Stop the master without waiting: CTRL = BLOCK. The fail-closed state.
    pub fn isolate(&self) {
        self.regs.write32(MMU_CTRL, CTRL_BLOCK);
    }

    /// Turn translation on with the level-1 table at `pgd_pa`: block, CFG, PT_BASE, flush all,
    /// enable. On error the SysMMU stays blocked.
    pub fn enable(&self, pgd_pa: u64) -> Result<(), SysmmuError> {
        let pt_base = match self.layout {
            RegLayout::V1 if pgd_pa < 1 << 32 && pgd_pa.is_multiple_of(0x4000) => pgd_pa as u32,
            RegLayout::V5 if pgd_pa < 1 << 44 && pgd_pa.is_multiple_of(0x4000) => (pgd_pa >> 12) as u32,
            _ => {
                self.isolate();
                return Err(SysmmuError::BadPageTable { pgd_pa });
            }
        };
        self.block()?;
        self.regs.write32(MMU_CFG, cfg_for(self.version));
        match self.layout {
            RegLayout::V1 => {
                self.regs.write32(v1::MMU_PT_BASE, pt_base);
                self.regs.write32(v1::MMU_FLUSH, FLUSH_GO);
            }
            RegLayout::V5 => {
                self.regs.write32(v5::MMU_PT_BASE, pt_base);
                self.regs.write32(v5::MMU_FLUSH_ALL, FLUSH_GO);
            }
        }
        self.unblock();
        Ok(())
    }

    /// The datasheet's disable: CTRL = 0, CFG = 0. The SysMMU then *bypasses* (the master reaches
    /// any physical address): use only when the master is powered down or handed over. Prefer
    /// [`Sysmmu::isolate`].
    pub fn disable(&self) {
        self.regs.write32(MMU_CTRL, CTRL_DISABLE);
        self.regs.write32(MMU_CFG, 0);
    }

    fn write_flush_all(&self) {
        match self.layout {
            RegLayout::V1 => self.regs.write32(v1::MMU_FLUSH, FLUSH_GO),
            RegLayout::V5 => self.regs.write32(v5::MMU_FLUSH_ALL, FLUSH_GO),
        }
    }

    /// Invalidate the whole TLB (and the prefetch buffer and FLPD cache).
    pub fn flush_all(&self) -> Result<(), SysmmuError> {
        match self.layout {
            RegLayout::V1 => {
                self.block()?;
                self.write_flush_all();
                self.unblock();
            }
            RegLayout::V5 => self.write_flush_all(),
        }
        Ok(())
    }

    /// Invalidate the TLB entries of every 4 KiB page in `[iova, iova + len)`.
    pub fn flush_entries(&self, iova: u64, len: u64) -> Result<(), SysmmuError> {
        if len == 0 {
            return Ok(());
        }
        let first = iova & !(SMALL_PAGE_SIZE - 1);
        let pages = (iova + len - first).div_ceil(SMALL_PAGE_SIZE);
        match self.layout {
            RegLayout::V1 => {
                let n = if self.version.major == 2 { pages.min(V2_FLUSH_ENTRY_MAX) } else { pages };
                self.block()?;
                if n > FLUSH_ENTRY_LIMIT {
                    self.write_flush_all();
                } else {
                    for i in 0..n {
                        let va = (first + i * SMALL_PAGE_SIZE) as u32;
                        self.regs.write32(v1::MMU_FLUSH_ENTRY, va | FLUSH_GO);
                    }
                }
                self.unblock();
            }
            RegLayout::V5 => {
                if pages == 1 {
                    self.regs.write32(v5::MMU_FLUSH_ENTRY, first as u32 | FLUSH_GO);
                } else {
                    let last = first + (pages - 1) * SMALL_PAGE_SIZE;
                    self.regs.write32(v5::MMU_FLUSH_START, first as u32);
                    self.regs.write32(v5::MMU_FLUSH_END, last as u32);
                    self.regs.write32(v5::MMU_FLUSH_RANGE, FLUSH_GO);
                }
            }
        }
        Ok(())
    }

    /// Drop the FLPD-cache entry of the 1 MiB holding `iova`, after its level-1 entry changed
    /// (v3.2/v3.3: FLUSH_ENTRY without blocking; v5+: flush all; no-op without an FLPD cache).
    pub fn flush_flpd(&self, iova: u32) {
        match self.layout {
            RegLayout::V1 if self.has_flpd_cache() => {
                self.regs.write32(v1::MMU_FLUSH_ENTRY, (iova & !0xFFF) | FLUSH_GO)
            }
            RegLayout::V1 => {}
            RegLayout::V5 => self.regs.write32(v5::MMU_FLUSH_ALL, FLUSH_GO),
        }
    }

    /// The level-1 part of a table editor's flush request: drop the FLPD-cache entries of the range
    /// if level-1 entries changed (no-op without an FLPD cache).
    pub fn apply_flpd(&self, flush: Flush) {
        if flush.len == 0 || !flush.flpd || !self.has_flpd_cache() {
            return;
        }
        if self.layout == RegLayout::V5 {
            self.flush_flpd(flush.iova as u32);
            return;
        }
        let mut mib = flush.iova & !0xF_FFFF;
        while mib < flush.iova + flush.len {
            self.flush_flpd(mib as u32);
            mib += 1 << 20;
        }
    }

    /// Carry out a table editor's flush request in full: the FLPD entries (if level-1 entries
    /// changed), then the TLB entries of the range.
    pub fn apply(&self, flush: Flush) -> Result<(), SysmmuError> {
        self.apply_flpd(flush);
        self.flush_entries(flush.iova, flush.len)
    }

    /// Handle the fault interrupt: decode the lowest pending INT_STATUS bit with its address
    /// register, clear it, and (when `resume`) unblock. With `resume == false` the SysMMU stays
    /// blocked (the policy wants the master stopped).
    pub fn handle_fault(&self, resume: bool) -> Result<SysmmuFault, SysmmuError> {
        let (status_reg, clear_reg) = match self.layout {
            RegLayout::V1 => (v1::MMU_INT_STATUS, v1::MMU_INT_CLEAR),
            RegLayout::V5 => (v5::MMU_INT_STATUS, v5::MMU_INT_CLEAR),
        };
        let int_status = self.regs.read32(status_reg);
        if int_status == 0 {
            return Err(SysmmuError::NoFault);
        }
        let bit = int_status.trailing_zeros();
        let Some((kind, access, addr_reg)) = fault_info(self.layout, bit) else {
            self.regs.write32(clear_reg, int_status);
            self.isolate();
            return Err(SysmmuError::UnknownFault { int_status });
        };
        let iova = self.regs.read32(addr_reg);
        self.regs.write32(clear_reg, 1 << bit);
        if resume {
            self.unblock();
        }
        Ok(SysmmuFault { kind, access, iova, bit: bit as u8, int_status })
    }
}
