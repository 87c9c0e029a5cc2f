//! Arm SMMUv3 driver: xenith keeps the SMMU and points each device's stream at its owner
//! domain's stage-2 tables (the p2m the CPU walks, same VMID), so a device reaches only the
//! memory of the domain it belongs to.
//!
//! Pure logic over [`platform::Mmio`] (registers), [`platform::PhysMem`] (stream table, queues),
//! [`platform::Clock`] (bounded polling) and [`DmaAlloc`] (memory for the SMMU's structures), so
//! everything here is tested on the host against a behavioural double (`model.rs`).
//!
//! Usage: [`Smmu::new`] probes (refusing with [`SmmuError::NoStage2`] when the SMMU has no
//! stage 2) and allocates; [`Smmu::enable`] programs and turns it on with every stream blocked;
//! then [`Smmu::attach_stream`] / [`Smmu::bypass_stream`] / [`Smmu::block_stream`] per device,
//! [`Smmu::invalidate_ipa_range`] after every p2m change of a domain that owns devices, and
//! [`Smmu::drain_events`] from the event interrupt (or a periodic poll).

pub mod cmd;
pub mod event;
pub mod features;
pub mod inval;
pub mod queue;
pub mod regs;
pub mod ste;
pub mod tlb;
pub mod virt;

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod virt_tests;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use platform::{Clock, MemError, Mmio, PhysMem};
use tock_registers::LocalRegisterCopy;

pub use cmd::{Command, TlbiRange};
pub use event::{EventType, FaultClass, SmmuEvent};
pub use features::{IdRegs, SmmuFeatures};
pub use inval::{plan_s2_invalidation, InvalidationPolicy};
pub use ste::{Cd, CdConfig, Granule, L1Desc, S2Config, Ste, SteConfig};
pub use tlb::{BothTlb, FrameDma, SmmuTlb};

use queue::QueuePtr;
use regs::{off, CMDQ_BASE, CMDQ_CONS, CR0, CR1, CR2, EVENTQ_BASE, EVENTQ_CONS, EVENTQ_PROD, GBPA};
use regs::{GERROR, IRQ_CTRL, STRTAB_BASE, STRTAB_BASE_CFG};

/// Memory the SMMU reads and writes (stream table, queues): physically contiguous, aligned.
/// Implemented over the frame allocator by the caller.
pub trait DmaAlloc {
    /// `size` bytes at a physical address aligned to `align` (a power of two), or `None`.
    /// Need not be zeroed: the driver clears what it allocates.
    fn alloc(&mut self, size: usize, align: usize) -> Option<u64>;
}

/// Why the driver refused or failed. Every variant has a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmmuError {
    /// IDR0.S2P = 0: the SMMU cannot translate with a domain's p2m. On QEMU: before 8.1, or a
    /// `virt-9.1` (or older) machine without `-global arm-smmuv3.stage=2`; `virt` >= 9.2 forces
    /// `stage=nested` (S1P+S2P) whatever `-global` says. The caller falls back (leave the SMMU
    /// to dom0 or off).
    NoStage2,
    /// IDR0.TTF lacks AArch64 tables.
    NoAArch64Tables,
    /// IDR1.QUEUES_PRESET / TABLES_PRESET: fixed structures, not supported.
    PresetStructures,
    /// The stream table would be too large and 2-level tables are not supported.
    StreamTableTooLarge { sid_bits: u8 },
    /// The allocator had no memory for a structure.
    NoMemory { what: &'static str },
    /// A physical-memory access failed.
    Mem(MemError),
    /// The SMMU did not respond in time.
    Timeout { what: &'static str },
    /// A command was rejected (CMDQ_CONS.ERR): CERROR code and the command's opcode.
    CommandError { cerror: u8, opcode: u8 },
    /// Stream ID beyond what the stream table covers.
    StreamOutOfRange { sid: u32, sid_bits: u8 },
    /// VMID wider than the SMMU supports (8 bits without IDR0.VMID16).
    VmidOutOfRange { vmid: u16 },
    /// The domain's VTCR asks for something this SMMU cannot walk.
    BadVtcr { vtcr: u64, why: &'static str },
    /// VTTBR base address not aligned / beyond the output address size.
    BadTtb { ttb: u64 },
    /// Operation needs [`Smmu::enable`] first.
    NotEnabled,
}

impl From<MemError> for SmmuError {
    fn from(e: MemError) -> Self {
        SmmuError::Mem(e)
    }
}

impl fmt::Display for SmmuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmmuError::NoStage2 => f.write_str(
                "no stage-2 support (IDR0.S2P=0: QEMU < 8.1, or a virt machine <= 9.1 without \
                 -global arm-smmuv3.stage=2)",
            ),
            SmmuError::NoAArch64Tables => f.write_str("no AArch64 translation table support"),
            SmmuError::PresetStructures => f.write_str("preset queues/tables are not supported"),
            SmmuError::StreamTableTooLarge { sid_bits } => {
                write!(
                    f,
                    "linear stream table for {sid_bits}-bit stream IDs is too large"
                )
            }
            SmmuError::NoMemory { what } => write!(f, "out of memory for the {what}"),
            SmmuError::Mem(e) => write!(f, "memory access failed: {e}"),
            SmmuError::Timeout { what } => write!(f, "timed out waiting for {what}"),
            SmmuError::CommandError { cerror, opcode } => write!(
                f,
                "command {} ({opcode:#04x}) failed: {}",
                cmd::opcode_name(*opcode),
                match cerror {
                    0 => "CERROR_NONE",
                    1 => "CERROR_ILL",
                    2 => "CERROR_ABT",
                    3 => "CERROR_ATC_INV_SYNC",
                    _ => "unknown CERROR",
                }
            ),
            SmmuError::StreamOutOfRange { sid, sid_bits } => {
                write!(
                    f,
                    "stream {sid:#x} is beyond the {sid_bits}-bit stream table"
                )
            }
            SmmuError::VmidOutOfRange { vmid } => {
                write!(f, "VMID {vmid} is too wide for this SMMU")
            }
            SmmuError::BadVtcr { vtcr, why } => write!(f, "VTCR {vtcr:#x} unusable: {why}"),
            SmmuError::BadTtb { ttb } => {
                write!(f, "stage-2 root {ttb:#x} misaligned or out of range")
            }
            SmmuError::NotEnabled => f.write_str("SMMU not enabled"),
        }
    }
}

/// Tunables; [`SmmuConfig::default`] suits QEMU virt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmuConfig {
    /// Stream IDs in use are below `2^max_sid_bits` (from the DT's highest stream ID);
    /// `None` = the SMMU's full SIDSIZE.
    pub max_sid_bits: Option<u8>,
    /// A linear stream table larger than this uses the 2-level format (when supported).
    pub linear_max_bytes: usize,
    /// Wanted log2 entries of the command and event queues (capped by IDR1).
    pub cmdq_log2: u8,
    pub evtq_log2: u8,
    /// Bound on every poll (CR0ACK, GBPA.UPDATE, CMD_SYNC).
    pub timeout_ns: u64,
    /// Without range invalidation, unmaps of more pages than this invalidate the whole VMID.
    pub vmall_threshold_pages: u64,
    /// Enable the GERROR and event-queue interrupts in IRQ_CTRL.
    pub enable_irqs: bool,
}

impl Default for SmmuConfig {
    fn default() -> Self {
        SmmuConfig {
            max_sid_bits: None,
            linear_max_bytes: 64 * 1024,
            cmdq_log2: 8,
            evtq_log2: 7,
            timeout_ns: 100_000_000,
            vmall_threshold_pages: 256,
            enable_irqs: true,
        }
    }
}

/// Commands issued since [`Smmu::new`], for benches and tests ("one CMD_SYNC per batch").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CmdStats {
    pub total: u64,
    pub syncs: u64,
    pub cfgi: u64,
    pub tlbi_s2_ipa: u64,
    pub tlbi_vmall: u64,
    pub tlbi_all: u64,
    /// Invalidation batches completed (each ends with exactly one CMD_SYNC).
    pub batches: u64,
    /// Commands the SMMU rejected (CERROR).
    pub errors: u64,
}

/// Global errors that were active (GERROR != GERRORN) and have been acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalErrors(pub u32);

impl GlobalErrors {
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for GlobalErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(u32, &str); 9] = [
            (0, "CMDQ_ERR"),
            (2, "EVENTQ_ABT_ERR"),
            (3, "PRIQ_ABT_ERR"),
            (4, "MSI_CMDQ_ABT_ERR"),
            (5, "MSI_EVENTQ_ABT_ERR"),
            (6, "MSI_PRIQ_ABT_ERR"),
            (7, "MSI_GERROR_ABT_ERR"),
            (8, "SFM_ERR"),
            (9, "CMDQP_ERR"),
        ];
        if self.0 == 0 {
            return f.write_str("none");
        }
        let mut first = true;
        for (bit, name) in NAMES {
            if self.0 & (1 << bit) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            write!(f, "{:#x}", self.0)?;
        }
        Ok(())
    }
}

/// Result of one event-queue drain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventDrain {
    pub count: usize,
    /// The queue overflowed since the last drain: events were lost.
    pub overflowed: bool,
}

/// Stream table layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamTable {
    /// `2^sid_bits` STEs at `base`.
    Linear { base: u64, sid_bits: u8 },
    /// `2^(sid_bits - split)` level-1 descriptors at `l1`; level-2 arrays of `2^split` STEs
    /// allocated when a stream in their span is first configured.
    TwoLevel {
        l1: u64,
        sid_bits: u8,
        split: u8,
        l2: Vec<Option<u64>>,
    },
}

impl StreamTable {
    pub fn sid_bits(&self) -> u8 {
        match self {
            StreamTable::Linear { sid_bits, .. } | StreamTable::TwoLevel { sid_bits, .. } => {
                *sid_bits
            }
        }
    }
    pub fn is_two_level(&self) -> bool {
        matches!(self, StreamTable::TwoLevel { .. })
    }
}

/// Size of one STE / CD, L1 descriptor, command, event record.
const STE_BYTES: u64 = 64;
const L1_DESC_BYTES: u64 = 8;
const CMD_BYTES: u64 = 16;
const EVT_BYTES: u64 = 32;
/// Level-2 arrays resolve 8 stream-ID bits (256 STEs, 16 KiB).
const STRTAB_SPLIT: u8 = 8;
/// Largest linear stream table accepted when 2-level is not supported.
const LINEAR_HARD_MAX: u64 = 16 << 20;

struct CmdQueue {
    base: u64,
    log2: u8,
    /// Where the next command goes (published to CMDQ_PROD by `publish`).
    prod: QueuePtr,
    /// Last CMDQ_CONS seen.
    cons: QueuePtr,
}

struct EvtQueue {
    base: u64,
    log2: u8,
}

/// One SMMUv3 instance.
pub struct Smmu<M: Mmio, P: PhysMem, C: Clock, A: DmaAlloc> {
    mmio: M,
    mem: P,
    clock: C,
    alloc: A,
    features: SmmuFeatures,
    config: SmmuConfig,
    strtab: StreamTable,
    cmdq: CmdQueue,
    evtq: EvtQueue,
    enabled: bool,
    stats: CmdStats,
    /// Stage-2 granule (log2) of each attached VMID, for invalidation by IPA.
    vmid_granule: BTreeMap<u16, u32>,
    /// Commands were queued since the last CMD_SYNC ([`Smmu::sync_queued`] completes them).
    unsynced: bool,
}

/// Read IDR0..5 and decode them. Refuses an SMMU without stage 2 with [`SmmuError::NoStage2`];
/// the caller logs the error and falls back. Touches nothing but the ID registers.
pub fn probe(mmio: &impl Mmio) -> Result<SmmuFeatures, SmmuError> {
    let idr = IdRegs([
        mmio.read32(off::IDR0),
        mmio.read32(off::IDR1),
        mmio.read32(off::IDR2),
        mmio.read32(off::IDR3),
        mmio.read32(off::IDR4),
        mmio.read32(off::IDR5),
    ]);
    let f = SmmuFeatures::decode(idr);
    if !f.stage2 {
        return Err(SmmuError::NoStage2);
    }
    if !f.ttf_aarch64 {
        return Err(SmmuError::NoAArch64Tables);
    }
    if f.queues_preset || f.tables_preset {
        return Err(SmmuError::PresetStructures);
    }
    Ok(f)
}

/// Write barrier: memory writes (queue entries, STEs) before the MMIO write that publishes them.
/// (SMMUv3 only exists on AArch64 systems; elsewhere this is a no-op.)
fn wmb() {
    #[cfg(target_arch = "aarch64")]
    aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ST);
}

/// Read barrier: the MMIO read of a producer index before reading the entries it covers.
fn rmb() {
    #[cfg(target_arch = "aarch64")]
    aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::LD);
}

impl<M: Mmio, P: PhysMem, C: Clock, A: DmaAlloc> Smmu<M, P, C, A> {
    /// Probe and allocate the stream table and queues. Nothing is programmed until
    /// [`Smmu::enable`].
    pub fn new(
        mmio: M,
        mem: P,
        clock: C,
        mut alloc: A,
        config: SmmuConfig,
    ) -> Result<Self, SmmuError> {
        let features = probe(&mmio)?;

        let sid_bits = config
            .max_sid_bits
            .unwrap_or(features.sid_bits)
            .min(features.sid_bits);
        let linear_bytes = STE_BYTES << sid_bits;
        let linear = linear_bytes <= config.linear_max_bytes as u64
            || !features.two_level_strtab
            || sid_bits <= STRTAB_SPLIT;
        let strtab = if linear {
            if linear_bytes > LINEAR_HARD_MAX {
                return Err(SmmuError::StreamTableTooLarge { sid_bits });
            }
            // Zeroed = V=0 everywhere: unknown streams abort and are logged as C_BAD_STE.
            let base = Self::alloc_zeroed(
                &mem,
                &mut alloc,
                linear_bytes,
                linear_bytes.max(64),
                "stream table",
            )?;
            StreamTable::Linear { base, sid_bits }
        } else {
            let split = STRTAB_SPLIT.min(sid_bits);
            let l1_entries = 1u64 << (sid_bits - split);
            let l1_bytes = l1_entries * L1_DESC_BYTES;
            let l1 = Self::alloc_zeroed(
                &mem,
                &mut alloc,
                l1_bytes,
                l1_bytes.max(64),
                "level-1 stream table",
            )?;
            StreamTable::TwoLevel {
                l1,
                sid_bits,
                split,
                l2: alloc::vec![None; l1_entries as usize],
            }
        };

        let cmdq_log2 = config.cmdq_log2.min(features.cmdq_log2).max(1);
        let cmdq_bytes = CMD_BYTES << cmdq_log2;
        let cmdq_base = Self::alloc_zeroed(
            &mem,
            &mut alloc,
            cmdq_bytes,
            cmdq_bytes.max(32),
            "command queue",
        )?;
        let evtq_log2 = config.evtq_log2.min(features.evtq_log2).max(1);
        let evtq_bytes = EVT_BYTES << evtq_log2;
        let evtq_base = Self::alloc_zeroed(
            &mem,
            &mut alloc,
            evtq_bytes,
            evtq_bytes.max(32),
            "event queue",
        )?;

        Ok(Smmu {
            mmio,
            mem,
            clock,
            alloc,
            features,
            config,
            strtab,
            cmdq: CmdQueue {
                base: cmdq_base,
                log2: cmdq_log2,
                prod: QueuePtr::new(cmdq_log2, 0),
                cons: QueuePtr::new(cmdq_log2, 0),
            },
            evtq: EvtQueue {
                base: evtq_base,
                log2: evtq_log2,
            },
            enabled: false,
            stats: CmdStats::default(),
            vmid_granule: BTreeMap::new(),
            unsynced: false,
        })
    }

    fn alloc_zeroed(
        mem: &P,
        alloc: &mut A,
        size: u64,
        align: u64,
        what: &'static str,
    ) -> Result<u64, SmmuError> {
        let pa = alloc
            .alloc(size as usize, align as usize)
            .ok_or(SmmuError::NoMemory { what })?;
        if pa % align != 0 {
            return Err(SmmuError::NoMemory { what });
        }
        // Zeroed to the point of coherency (a non-coherent SMMU reads it).
        mem.zero(pa, size)?;
        Ok(pa)
    }

    pub fn features(&self) -> &SmmuFeatures {
        &self.features
    }
    pub fn stream_table(&self) -> &StreamTable {
        &self.strtab
    }
    pub fn stats(&self) -> CmdStats {
        self.stats
    }
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }
    /// The register interface, e.g. for a test to inspect its double.
    pub fn mmio(&self) -> &M {
        &self.mmio
    }

    // ---- bounded polling ----------------------------------------------------------------

    fn poll(&self, what: &'static str, mut done: impl FnMut(&M) -> bool) -> Result<(), SmmuError> {
        let deadline = self.clock.now_ns().saturating_add(self.config.timeout_ns);
        loop {
            if done(&self.mmio) {
                return Ok(());
            }
            if self.clock.now_ns() > deadline {
                return Err(SmmuError::Timeout { what });
            }
            core::hint::spin_loop();
        }
    }

    /// Write CR0 and wait until CR0ACK shows the same enables.
    fn write_cr0(&self, value: u32) -> Result<(), SmmuError> {
        const ENABLES: u32 = 0x1f; // SMMUEN, PRIQEN, EVENTQEN, CMDQEN, ATSCHK
        self.mmio.write32(off::CR0, value);
        self.poll("CR0ACK", |m| {
            m.read32(off::CR0ACK) & ENABLES == value & ENABLES
        })
    }

    /// GBPA.ABORT = 1 through the UPDATE handshake: while SMMUEN = 0, all traffic aborts.
    fn set_gbpa_abort(&self) -> Result<(), SmmuError> {
        let gbpa: LocalRegisterCopy<u32, GBPA::Register> = regs::read32(&self.mmio, off::GBPA);
        let mut v = gbpa;
        v.modify(GBPA::ABORT::SET + GBPA::UPDATE::SET);
        self.mmio.write32(off::GBPA, v.get());
        self.poll("GBPA.UPDATE", |m| m.read32(off::GBPA) & (1 << 31) == 0)
    }

    // ---- enable / disable -----------------------------------------------------------------

    /// Program and turn on the SMMU: unknown streams are blocked throughout (GBPA.ABORT while
    /// disabled; invalid STEs once enabled), all cached configuration and TLB entries are
    /// invalidated before translation starts.
    pub fn enable(&mut self) -> Result<(), SmmuError> {
        self.enabled = false;
        self.set_gbpa_abort()?;
        self.write_cr0(0)?;

        let coherent = self.features.coherent;
        let cr1 = if coherent {
            CR1::QUEUE_IC::WriteBack
                + CR1::QUEUE_OC::WriteBack
                + CR1::QUEUE_SH::Inner
                + CR1::TABLE_IC::WriteBack
                + CR1::TABLE_OC::WriteBack
                + CR1::TABLE_SH::Inner
        } else {
            CR1::QUEUE_IC::NonCacheable
                + CR1::QUEUE_OC::NonCacheable
                + CR1::QUEUE_SH::Outer
                + CR1::TABLE_IC::NonCacheable
                + CR1::TABLE_OC::NonCacheable
                + CR1::TABLE_SH::Outer
        };
        regs::write32(&self.mmio, off::CR1, cr1);
        // Record bad stream IDs; TLB maintenance is explicit (our commands), not broadcast.
        regs::write32(&self.mmio, off::CR2, CR2::RECINVSID::SET + CR2::PTM::SET);

        match &self.strtab {
            StreamTable::Linear { base, sid_bits } => {
                regs::write64(
                    &self.mmio,
                    off::STRTAB_BASE,
                    STRTAB_BASE::ADDR.val(base >> 6) + STRTAB_BASE::RA::SET,
                );
                regs::write32(
                    &self.mmio,
                    off::STRTAB_BASE_CFG,
                    STRTAB_BASE_CFG::FMT::Linear
                        + STRTAB_BASE_CFG::LOG2SIZE.val(u32::from(*sid_bits)),
                );
            }
            StreamTable::TwoLevel {
                l1,
                sid_bits,
                split,
                ..
            } => {
                regs::write64(
                    &self.mmio,
                    off::STRTAB_BASE,
                    STRTAB_BASE::ADDR.val(l1 >> 6) + STRTAB_BASE::RA::SET,
                );
                regs::write32(
                    &self.mmio,
                    off::STRTAB_BASE_CFG,
                    STRTAB_BASE_CFG::FMT::TwoLevel
                        + STRTAB_BASE_CFG::LOG2SIZE.val(u32::from(*sid_bits))
                        + STRTAB_BASE_CFG::SPLIT.val(u32::from(*split)),
                );
            }
        }

        regs::write64(
            &self.mmio,
            off::CMDQ_BASE,
            CMDQ_BASE::ADDR.val(self.cmdq.base >> 5)
                + CMDQ_BASE::LOG2SIZE.val(u64::from(self.cmdq.log2))
                + CMDQ_BASE::RA::SET,
        );
        self.mmio.write32(off::CMDQ_PROD, 0);
        self.mmio.write32(off::CMDQ_CONS, 0);
        self.cmdq.prod = QueuePtr::new(self.cmdq.log2, 0);
        self.cmdq.cons = QueuePtr::new(self.cmdq.log2, 0);

        regs::write64(
            &self.mmio,
            off::EVENTQ_BASE,
            EVENTQ_BASE::ADDR.val(self.evtq.base >> 5)
                + EVENTQ_BASE::LOG2SIZE.val(u64::from(self.evtq.log2))
                + EVENTQ_BASE::WA::SET,
        );
        self.mmio.write32(off::EVENTQ_PROD, 0);
        self.mmio.write32(off::EVENTQ_CONS, 0);

        // Command queue on; forget anything cached from before (firmware, a previous run).
        self.write_cr0(CR0::CMDQEN::SET.value)?;
        self.enabled = true; // the command path checks this
        let invalidated = self.invalidate_all();
        self.enabled = false;
        invalidated?;

        self.write_cr0((CR0::CMDQEN::SET + CR0::EVENTQEN::SET).value)?;

        let irqs = if self.config.enable_irqs {
            (IRQ_CTRL::GERROR_IRQEN::SET + IRQ_CTRL::EVENTQ_IRQEN::SET).value
        } else {
            0
        };
        self.mmio.write32(off::IRQ_CTRL, irqs);
        self.poll("IRQ_CTRLACK", |m| m.read32(off::IRQ_CTRLACK) & 0x7 == irqs)?;

        self.write_cr0((CR0::CMDQEN::SET + CR0::EVENTQEN::SET + CR0::SMMUEN::SET).value)?;
        self.enabled = true;
        Ok(())
    }

    /// Turn translation and the queues off; with GBPA.ABORT set, all DMA is then blocked.
    pub fn disable(&mut self) -> Result<(), SmmuError> {
        self.enabled = false;
        self.set_gbpa_abort()?;
        self.mmio.write32(off::IRQ_CTRL, 0);
        self.write_cr0(0)
    }

    // ---- command queue --------------------------------------------------------------------

    fn refresh_cons(&mut self) {
        let raw = self.mmio.read32(off::CMDQ_CONS);
        let cons: LocalRegisterCopy<u32, CMDQ_CONS::Register> = LocalRegisterCopy::new(raw);
        self.cmdq.cons = QueuePtr::new(self.cmdq.log2, cons.read(CMDQ_CONS::RD));
    }

    /// Make written commands visible to the SMMU.
    fn publish(&mut self) {
        wmb();
        self.mmio.write32(off::CMDQ_PROD, self.cmdq.prod.raw());
    }

    /// Put one command in the queue (not yet published unless the queue was full).
    fn queue_cmd(&mut self, c: Command) -> Result<QueuePtr, SmmuError> {
        if !self.enabled {
            return Err(SmmuError::NotEnabled);
        }
        if QueuePtr::free(self.cmdq.prod, self.cmdq.cons) == 0 {
            self.refresh_cons();
            if QueuePtr::free(self.cmdq.prod, self.cmdq.cons) == 0 {
                // Full: hand what we have to the SMMU and wait for room.
                self.publish();
                self.wait_for(
                    |s| QueuePtr::free(s.cmdq.prod, s.cmdq.cons) > 0,
                    "command queue space",
                )?;
            }
        }
        let at = self.cmdq.prod;
        let pa = self.cmdq.base + u64::from(at.index()) * CMD_BYTES;
        // Two 64-bit stores (the command's little-endian words), no byte buffer.
        let [w0, w1] = c.encode();
        self.mem.write_u64(pa, w0)?;
        self.mem.write_u64(pa + 8, w1)?;
        self.mem.clean_dcache(pa, CMD_BYTES as usize);
        self.cmdq.prod = at.advance(1);
        self.count(&c);
        // A CMD_SYNC completes everything queued before it (its wait reports failures).
        self.unsynced = !matches!(c, Command::Sync);
        Ok(at)
    }

    fn count(&mut self, c: &Command) {
        self.stats.total += 1;
        match c {
            Command::Sync => self.stats.syncs += 1,
            Command::CfgiSte { .. }
            | Command::CfgiSteRange { .. }
            | Command::CfgiAll
            | Command::CfgiCd { .. } => self.stats.cfgi += 1,
            Command::TlbiS2Ipa { .. } => self.stats.tlbi_s2_ipa += 1,
            Command::TlbiS12Vmall { .. }
            | Command::TlbiNhAsid { .. }
            | Command::TlbiNhAll { .. }
            | Command::TlbiNhVa { .. } => self.stats.tlbi_vmall += 1,
            Command::TlbiNsnhAll | Command::TlbiEl2All => self.stats.tlbi_all += 1,
        }
    }

    /// Poll CMDQ_CONS until `done`, recovering from command errors on the way. The first
    /// command error seen is returned once `done` holds.
    fn wait_for(
        &mut self,
        done: impl Fn(&Self) -> bool,
        what: &'static str,
    ) -> Result<(), SmmuError> {
        // The clock is read only once the first poll did not find it done (the usual case
        // on a CMD_SYNC for a few invalidations).
        let mut deadline = None;
        let mut first_err = None;
        loop {
            self.refresh_cons();
            if done(self) {
                return match first_err {
                    Some(e) => Err(e),
                    None => Ok(()),
                };
            }
            if let Some(e) = self.recover_cmdq_error()? {
                first_err.get_or_insert(e);
                continue;
            }
            let now = self.clock.now_ns();
            if now > *deadline.get_or_insert_with(|| now.saturating_add(self.config.timeout_ns)) {
                return Err(SmmuError::Timeout { what });
            }
            core::hint::spin_loop();
        }
    }

    /// If GERROR.CMDQ_ERR is active: the command at CMDQ_CONS was rejected. Replace it with a
    /// CMD_SYNC (harmless), acknowledge, and report what failed; the SMMU then resumes.
    fn recover_cmdq_error(&mut self) -> Result<Option<SmmuError>, SmmuError> {
        let gerror = self.mmio.read32(off::GERROR);
        let gerrorn = self.mmio.read32(off::GERRORN);
        let cmdq_err = GERROR::CMDQ_ERR::SET.value;
        if (gerror ^ gerrorn) & cmdq_err == 0 {
            return Ok(None);
        }
        let cons_raw = self.mmio.read32(off::CMDQ_CONS);
        let cons: LocalRegisterCopy<u32, CMDQ_CONS::Register> = LocalRegisterCopy::new(cons_raw);
        let cerror = cons.read(CMDQ_CONS::ERR) as u8;
        let at = QueuePtr::new(self.cmdq.log2, cons.read(CMDQ_CONS::RD));
        let pa = self.cmdq.base + u64::from(at.index()) * CMD_BYTES;
        let mut bad = [0u8; 16];
        self.mem.read(pa, &mut bad)?;
        self.mem.write(pa, &Command::Sync.to_bytes())?;
        self.mem.clean_dcache(pa, CMD_BYTES as usize);
        wmb();
        self.mmio
            .write32(off::GERRORN, (gerrorn & !cmdq_err) | (gerror & cmdq_err));
        self.stats.errors += 1;
        Ok(Some(SmmuError::CommandError {
            cerror,
            opcode: bad[0],
        }))
    }

    /// Queue `c` and a CMD_SYNC, publish, and wait until the SMMU has completed both.
    fn issue_sync(&mut self) -> Result<(), SmmuError> {
        let at = self.queue_cmd(Command::Sync)?;
        self.publish();
        let prod = self.cmdq.prod;
        self.wait_for(
            move |s| QueuePtr::consumed(s.cmdq.cons, at, prod),
            "CMD_SYNC",
        )
    }

    /// Issue commands followed by exactly one CMD_SYNC, and wait for completion.
    pub fn submit(&mut self, cmds: &[Command]) -> Result<(), SmmuError> {
        for c in cmds {
            self.queue_cmd(*c)?;
        }
        self.issue_sync()
    }

    /// Invalidate all cached configuration and all (non-secure) TLB entries.
    pub fn invalidate_all(&mut self) -> Result<(), SmmuError> {
        self.queue_cmd(Command::CfgiAll)?;
        self.queue_cmd(Command::TlbiNsnhAll)?;
        if self.features.hyp {
            self.queue_cmd(Command::TlbiEl2All)?;
        }
        self.issue_sync()
    }

    /// Invalidate every TLB entry of a VMID (e.g. when a domain is destroyed).
    pub fn invalidate_vmid(&mut self, vmid: u16) -> Result<(), SmmuError> {
        self.submit(&[Command::TlbiS12Vmall { vmid }])?;
        self.stats.batches += 1;
        Ok(())
    }

    /// After unmapping `[ipa, ipa + size)` from a domain's p2m: drop the SMMU's cached
    /// translations for it. One CMD_SYNC.
    pub fn invalidate_ipa_range(
        &mut self,
        vmid: u16,
        ipa: u64,
        size: u64,
    ) -> Result<(), SmmuError> {
        self.invalidate_ipa_ranges(vmid, &[(ipa, size)], false)
    }

    /// Batched invalidation of several unmapped IPA ranges of one VMID, ending in exactly one
    /// CMD_SYNC. Per granule TLBI_S2_IPA, or range commands when the SMMU has RIL, or one
    /// TLBI_S12_VMALL when the batch is larger than `vmall_threshold_pages` (without RIL).
    /// `leaf`: only last-level entries changed (no table was freed).
    pub fn invalidate_ipa_ranges(
        &mut self,
        vmid: u16,
        ranges: &[(u64, u64)],
        leaf: bool,
    ) -> Result<(), SmmuError> {
        let n = self.queue_invalidation(vmid, ranges, leaf)?;
        self.finish_batch(n)
    }

    /// Like [`Smmu::invalidate_ipa_ranges`] for several VMIDs at once: still one CMD_SYNC.
    pub fn invalidate_grouped(
        &mut self,
        groups: &[(u16, Vec<(u64, u64)>)],
        leaf: bool,
    ) -> Result<(), SmmuError> {
        let mut n = 0;
        for (vmid, ranges) in groups {
            n += self.queue_invalidation(*vmid, ranges, leaf)?;
        }
        self.finish_batch(n)
    }

    /// Queue, without a CMD_SYNC, the invalidation of whatever `vmid`'s stage 2 cached for
    /// `ipa` at any level (leaf and walk cache: the p2m may have removed a table descriptor).
    /// Nothing allocates: this is on the hypercall path of every stage-2 unmap. Complete it
    /// (and the rest of the batch) with [`Smmu::sync_queued`].
    pub fn queue_s2_ipa(&mut self, vmid: u16, ipa: u64) -> Result<(), SmmuError> {
        // One address: a plain (non-range) TLBI_S2_IPA covers whatever entry, of any granule
        // or block size, translates it.
        let c = Command::TlbiS2Ipa { vmid, ipa: ipa & !0xfff, leaf: false, ttl: 0, range: None };
        self.queue_cmd(c).map(|_| ())
    }

    /// Queue any command without a CMD_SYNC; [`Smmu::sync_queued`] completes it.
    pub fn queue_command(&mut self, c: Command) -> Result<(), SmmuError> {
        self.queue_cmd(c).map(|_| ())
    }

    /// Queue, without a CMD_SYNC, the invalidation of every TLB entry of `vmid`.
    pub fn queue_vmid(&mut self, vmid: u16) -> Result<(), SmmuError> {
        self.queue_cmd(Command::TlbiS12Vmall { vmid }).map(|_| ())
    }

    /// If commands were queued since the last CMD_SYNC, issue one and wait for it: the end of
    /// a batch of [`queue_s2_ipa`](Self::queue_s2_ipa) / [`queue_vmid`](Self::queue_vmid).
    pub fn sync_queued(&mut self) -> Result<(), SmmuError> {
        if !self.unsynced {
            return Ok(());
        }
        self.finish_batch(1)
    }

    /// Queue (not sync) the invalidation commands for `ranges` of `vmid`.
    fn queue_invalidation(
        &mut self,
        vmid: u16,
        ranges: &[(u64, u64)],
        leaf: bool,
    ) -> Result<usize, SmmuError> {
        let policy = InvalidationPolicy {
            range_inval: self.features.range_inval,
            vmall_threshold_pages: self.config.vmall_threshold_pages,
            granule_shift: self.vmid_granule.get(&vmid).copied().unwrap_or(12),
        };
        plan_s2_invalidation(&policy, vmid, ranges, leaf, |c| {
            self.queue_cmd(c).map(|_| ())
        })
    }

    /// End a batch of `n` queued invalidations with its one CMD_SYNC (none if `n == 0`).
    fn finish_batch(&mut self, n: usize) -> Result<(), SmmuError> {
        if n == 0 {
            return Ok(());
        }
        self.issue_sync()?;
        self.stats.batches += 1;
        Ok(())
    }

    // ---- stream table ---------------------------------------------------------------------

    /// Physical address of the STE for `sid`, allocating its level-2 array if needed.
    fn ste_addr(&mut self, sid: u32) -> Result<u64, SmmuError> {
        let sid_bits = self.strtab.sid_bits();
        if sid_bits < 32 && u64::from(sid) >> sid_bits != 0 {
            return Err(SmmuError::StreamOutOfRange { sid, sid_bits });
        }
        match &mut self.strtab {
            StreamTable::Linear { base, .. } => Ok(*base + u64::from(sid) * STE_BYTES),
            StreamTable::TwoLevel { l1, split, l2, .. } => {
                let split = *split;
                let l1_index = (sid >> split) as usize;
                let l2_index = u64::from(sid & ((1 << split) - 1));
                let l1_base = *l1;
                let slot = l2
                    .get_mut(l1_index)
                    .ok_or(SmmuError::StreamOutOfRange { sid, sid_bits })?;
                if let Some(table) = *slot {
                    return Ok(table + l2_index * STE_BYTES);
                }
                let bytes = STE_BYTES << split;
                let table = Self::alloc_zeroed(
                    &self.mem,
                    &mut self.alloc,
                    bytes,
                    bytes,
                    "level-2 stream table",
                )?;
                *slot = Some(table);
                let desc_pa = l1_base + l1_index as u64 * L1_DESC_BYTES;
                self.mem
                    .write_u64(desc_pa, L1Desc::new(table, u32::from(split)).0)?;
                self.mem.clean_dcache(desc_pa, L1_DESC_BYTES as usize);
                if self.enabled {
                    // The whole span's configuration may have been looked up as invalid.
                    let first = sid & !((1 << split) - 1);
                    self.submit(&[Command::CfgiSteRange {
                        sid: first,
                        range: split.saturating_sub(1),
                    }])?;
                }
                Ok(table + l2_index * STE_BYTES)
            }
        }
    }

    /// The STE currently installed for `sid` (as the driver wrote it).
    pub fn read_ste(&mut self, sid: u32) -> Result<Ste, SmmuError> {
        let pa = self.ste_addr(sid)?;
        let mut w = [0u64; 8];
        for (i, word) in w.iter_mut().enumerate() {
            *word = self.mem.read_u64(pa + i as u64 * 8)?;
        }
        Ok(Ste(w))
    }

    /// Install `ste` for `sid` without a window where the SMMU could see a torn entry: a
    /// valid entry is first made invalid (and the SMMU told), then the new entry is written
    /// with dword 0 (holding V) last, and the SMMU told again.
    pub fn write_ste(&mut self, sid: u32, ste: &Ste) -> Result<(), SmmuError> {
        let pa = self.ste_addr(sid)?;
        let old0 = self.mem.read_u64(pa)?;
        if old0 & 1 != 0 && self.enabled {
            self.mem.write_u64(pa, 0)?;
            self.mem.clean_dcache(pa, 8);
            self.submit(&[Command::CfgiSte { sid, leaf: true }])?;
        }
        for i in 1..8 {
            self.mem.write_u64(pa + i * 8, ste.0[i as usize])?;
        }
        wmb();
        self.mem.write_u64(pa, ste.0[0])?;
        self.mem.clean_dcache(pa, STE_BYTES as usize);
        if self.enabled {
            self.submit(&[Command::CfgiSte { sid, leaf: true }])?;
        }
        Ok(())
    }

    /// Build the stage-2 half of an STE from a domain's VTTBR/VTCR, checking it against what
    /// this SMMU supports.
    pub fn s2_config(&self, vmid: u16, vttbr: u64, vtcr: u64) -> Result<S2Config, SmmuError> {
        if vmid > self.features.max_vmid() {
            return Err(SmmuError::VmidOutOfRange { vmid });
        }
        // VTTBR_EL2: VMID [63:48], BADDR [47:1], CnP [0].
        let ttb = vttbr & 0x0000_ffff_ffff_fffe;
        let mut s2 = S2Config {
            vmid,
            vtcr: vtcr & 0x7_ffff,
            ttb,
        };
        let ok_granule = match s2.tg() {
            0 => self.features.gran4k,
            1 => self.features.gran64k,
            2 => self.features.gran16k,
            _ => false,
        };
        if !ok_granule {
            return Err(SmmuError::BadVtcr {
                vtcr,
                why: "granule not supported by the SMMU",
            });
        }
        if s2.sl0() == 3 {
            return Err(SmmuError::BadVtcr {
                vtcr,
                why: "reserved SL0",
            });
        }
        let t0sz = s2.t0sz();
        let t0sz_ok = (16..=39).contains(&t0sz) || (t0sz >= 12 && s2.tg() == 1);
        if !t0sz_ok {
            return Err(SmmuError::BadVtcr {
                vtcr,
                why: "T0SZ out of range",
            });
        }
        // An S2PS beyond the SMMU's output size is capped to it (as the SMMU would).
        if s2.ps() > u64::from(self.features.oas_field) {
            s2.vtcr = (s2.vtcr & !(0x7 << 16)) | (u64::from(self.features.oas_field) << 16);
        }
        let oas = u32::from(self.features.oas_bits);
        if ttb & 0xf != 0 || (oas < 64 && ttb >> oas != 0) {
            return Err(SmmuError::BadTtb { ttb });
        }
        Ok(s2)
    }

    /// Translate `sid`'s DMA through a domain's stage 2: `vttbr`/`vtcr` are the values the CPU
    /// uses for that domain (`Stage2::vttbr()/vtcr()`), so the tables are shared. `vmid` is
    /// used for the SMMU's TLB tags (VTTBR's own VMID bits are ignored).
    pub fn attach_stream(
        &mut self,
        sid: u32,
        vmid: u16,
        vttbr: u64,
        vtcr: u64,
    ) -> Result<(), SmmuError> {
        let s2 = self.s2_config(vmid, vttbr, vtcr)?;
        if let Some(shift) = s2.granule_shift() {
            self.vmid_granule.insert(vmid, shift);
        }
        self.write_ste(sid, &Ste::stage2(&s2))?;
        // The VMID may carry stale entries from an earlier owner of the same tag.
        if self.enabled {
            self.invalidate_vmid(vmid)?;
        }
        Ok(())
    }

    /// Nested: stage 1 through the CD at `cd` (e.g. dom0's own tables), then the domain's
    /// stage 2.
    pub fn attach_stream_nested(
        &mut self,
        sid: u32,
        cd: u64,
        vmid: u16,
        vttbr: u64,
        vtcr: u64,
    ) -> Result<(), SmmuError> {
        if !self.features.stage1 {
            return Err(SmmuError::BadVtcr {
                vtcr,
                why: "nested needs stage 1 (IDR0.S1P)",
            });
        }
        let s2 = self.s2_config(vmid, vttbr, vtcr)?;
        if let Some(shift) = s2.granule_shift() {
            self.vmid_granule.insert(vmid, shift);
        }
        self.write_ste(sid, &Ste::nested(cd, &s2))?;
        if self.enabled {
            self.invalidate_vmid(vmid)?;
        }
        Ok(())
    }

    /// Block a stream: its DMA is aborted silently (no events).
    pub fn block_stream(&mut self, sid: u32) -> Result<(), SmmuError> {
        self.write_ste(sid, &Ste::abort())
    }

    /// Let a stream's DMA through untranslated (only for devices the policy trusts).
    pub fn bypass_stream(&mut self, sid: u32) -> Result<(), SmmuError> {
        self.write_ste(sid, &Ste::bypass())
    }

    /// Forget a stream: invalid STE, so its DMA aborts and is logged as C_BAD_STE.
    pub fn detach_stream(&mut self, sid: u32) -> Result<(), SmmuError> {
        self.write_ste(sid, &Ste::invalid())
    }

    /// Write a stage-1 context descriptor at `pa` (64-byte aligned, from [`DmaAlloc`]).
    pub fn write_cd(&mut self, pa: u64, cd: &Cd) -> Result<(), SmmuError> {
        self.mem.write(pa, &cd.to_bytes())?;
        self.mem.clean_dcache(pa, STE_BYTES as usize);
        Ok(())
    }

    /// Allocate and write a context descriptor, returning its address.
    pub fn alloc_cd(&mut self, cd: &Cd) -> Result<u64, SmmuError> {
        let pa = Self::alloc_zeroed(
            &self.mem,
            &mut self.alloc,
            STE_BYTES,
            STE_BYTES,
            "context descriptor",
        )?;
        self.write_cd(pa, cd)?;
        Ok(pa)
    }

    // ---- events and global errors ---------------------------------------------------------

    /// Decode every pending event record and hand it to `sink` (e.g. the log).
    pub fn drain_events(
        &mut self,
        mut sink: impl FnMut(&SmmuEvent),
    ) -> Result<EventDrain, SmmuError> {
        let prod_raw: LocalRegisterCopy<u32, EVENTQ_PROD::Register> =
            regs::read32(&self.mmio, off::EVENTQ_PROD);
        let cons_raw: LocalRegisterCopy<u32, EVENTQ_CONS::Register> =
            regs::read32(&self.mmio, off::EVENTQ_CONS);
        let prod = QueuePtr::new(self.evtq.log2, prod_raw.read(EVENTQ_PROD::WR));
        let mut cons = QueuePtr::new(self.evtq.log2, cons_raw.read(EVENTQ_CONS::RD));
        let overflow = prod_raw.read(EVENTQ_PROD::OVFLG);
        let overflowed = overflow != cons_raw.read(EVENTQ_CONS::OVACKFLG);
        rmb();
        let mut count = 0;
        // At most one queue's worth, whatever the device claims.
        while cons != prod && count < cons.capacity() as usize {
            let pa = self.evtq.base + u64::from(cons.index()) * EVT_BYTES;
            let mut rec = [0u8; 32];
            self.mem.read(pa, &mut rec)?;
            sink(&SmmuEvent::from_bytes(&rec));
            count += 1;
            cons = cons.advance(1);
        }
        self.mmio.write32(
            off::EVENTQ_CONS,
            (EVENTQ_CONS::RD.val(cons.raw()) + EVENTQ_CONS::OVACKFLG.val(overflow)).value,
        );
        Ok(EventDrain { count, overflowed })
    }

    /// Interrupt (or periodic) service: acknowledge global errors, then drain and hand every
    /// event to `on_event`. For the eventq and gerror interrupt lines alike.
    pub fn service(
        &mut self,
        on_event: impl FnMut(&SmmuEvent),
    ) -> Result<(GlobalErrors, EventDrain), SmmuError> {
        let g = self.handle_gerror()?;
        let d = self.drain_events(on_event)?;
        Ok((g, d))
    }

    /// Read and acknowledge active global errors (GERROR ^ GERRORN). A command-queue error
    /// is recovered (the failed command skipped) as in the CMD_SYNC path.
    pub fn handle_gerror(&mut self) -> Result<GlobalErrors, SmmuError> {
        let gerror = self.mmio.read32(off::GERROR);
        let gerrorn = self.mmio.read32(off::GERRORN);
        let active = (gerror ^ gerrorn) & 0x3fd;
        if active & GERROR::CMDQ_ERR::SET.value != 0 {
            let _ = self.recover_cmdq_error()?;
        }
        let others = active & !GERROR::CMDQ_ERR::SET.value;
        if others != 0 {
            let now_n = self.mmio.read32(off::GERRORN);
            self.mmio.write32(off::GERRORN, now_n ^ others);
        }
        Ok(GlobalErrors(active))
    }
}
