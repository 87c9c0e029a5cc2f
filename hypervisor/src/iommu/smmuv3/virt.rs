//! dom0's emulated SMMUv3 (vSMMU): the register file, command queue and event queue of an
//! SMMUv3 that can only do stage 1, for devices whose physical streams xenith translates
//! nested (dom0's stage 1 over xenith's stage 2 = dom0's p2m).
//!
//! dom0 programs it like any SMMUv3: its stream table, context descriptors and queues live in
//! dom0's RAM and are read here through [`GuestMem`] (dom0's own RAM only: anything else reads
//! as an external abort). What dom0 configures is checked — only the StreamIDs of its nested
//! devices, only stage-1 configuration, table and descriptor addresses inside its RAM — and
//! handed to a [`VsmmuBackend`] as a physical STE (nested, stage 2 only, abort, or invalid)
//! and as physical stage-1 TLB invalidations for dom0's VMID. Nothing dom0 writes reaches the
//! physical SMMU's stage 2: every stage-1 output address still goes through dom0's p2m.
//!
//! Error behaviour is SMMUv3's: a bad command stops the queue with CMDQ_CONS.ERR and
//! GERROR.CMDQ_ERR until dom0 acknowledges it in GERRORN; a bad STE or CD leaves the stream
//! with an invalid physical STE, and the physical SMMU's C_BAD_STE for it is reported to dom0
//! as the event the configuration deserved (C_BAD_STE, C_BAD_CD, F_STE_FETCH, ...).
//!
//! Pure logic: host-tested in `virt_tests.rs`.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::cmd::TlbiRange;
use super::event::EventType;
use super::features::SmmuFeatures;
use super::queue::QueuePtr;
use super::regs::off;
use super::ste::get;

/// dom0's memory by IPA, its own RAM only.
pub trait GuestMem {
    fn read(&self, ipa: u64, buf: &mut [u8]) -> bool;
    fn write(&self, ipa: u64, data: &[u8]) -> bool;
}

/// What the physical STE of a nested stream becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhysSte {
    /// Traffic terminated silently (dom0's abort STE, or GBPA.ABORT while disabled).
    Abort,
    /// Stage 1 bypassed, dom0's stage 2 only (dom0's bypass STE, or GBPA bypass).
    Stage2,
    /// dom0's stage 1 (the CD at `cd`, an IPA in dom0's RAM) over dom0's stage 2.
    Nested { cd: u64 },
    /// dom0's configuration is bad: the physical SMMU aborts and records C_BAD_STE, which
    /// is reported to dom0 as the recorded reason.
    Invalid,
}

/// Physical stage-1 maintenance for dom0's VMID (the backend fills the VMID in).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhysTlbi {
    /// Every stage-1 entry of dom0's VMID.
    All,
    Asid { asid: u16 },
    Va { asid: u16, addr: u64, leaf: bool, ttl: u8, range: Option<TlbiRange> },
}

/// The hardware side: the hypervisor's SMMU driver.
pub trait VsmmuBackend {
    /// Install the physical STE for `sid` (one of the streams the vSMMU was given).
    fn install(&mut self, sid: u32, ste: PhysSte);
    /// Queue a stage-1 invalidation.
    fn tlbi(&mut self, op: PhysTlbi);
    /// Complete everything installed and queued so far (one physical CMD_SYNC).
    fn sync(&mut self);
}

/// What dom0's vSMMU is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VsmmuConfig {
    /// The physical SMMU's features: what can be offered for nesting.
    pub phys: SmmuFeatures,
    /// The raw physical IDR0 (fields passed through: TTENDIAN, TERM_MODEL).
    pub phys_idr0: u32,
    /// dom0's StreamIDs behind this SMMU (the nested devices found at boot).
    pub sids: Vec<u32>,
    /// dom0's RAM, `(ipa, size)` ranges: every table, queue and descriptor must be inside.
    pub ram: Vec<(u64, u64)>,
    /// Bits of dom0's IPA space (its stage-2 input size): the vSMMU's output address size.
    pub ipa_bits: u8,
}

/// CMDQ_CONS.ERR codes.
pub const CERROR_NONE: u32 = 0;
pub const CERROR_ILL: u32 = 1;
pub const CERROR_ABT: u32 = 2;

/// Command queue and event queue sizes the vSMMU offers (log2 entries).
const CMDQS: u32 = 8;
const EVENTQS: u32 = 7;

/// Register offsets the vSMMU emulates beyond `regs::off`.
const GERROR_IRQ_CFG1: u64 = 0x70;
const GERROR_IRQ_CFG2: u64 = 0x74;
const EVENTQ_IRQ_CFG1: u64 = 0xB8;
const EVENTQ_IRQ_CFG2: u64 = 0xBC;
/// Size of the register window (pages 0 and 1).
pub const VSMMU_SIZE: u64 = 0x2_0000;

const CR0_SMMUEN: u32 = 1 << 0;
const CR0_EVENTQEN: u32 = 1 << 2;
const CR0_CMDQEN: u32 = 1 << 3;
/// CR0 bits this SMMU implements (SMMUEN, EVENTQEN, CMDQEN: no PRI, no ATS).
const CR0_MASK: u32 = CR0_SMMUEN | CR0_EVENTQEN | CR0_CMDQEN;
const GBPA_ABORT: u32 = 1 << 20;
const GBPA_UPDATE: u32 = 1 << 31;
/// GBPA's fields: MEMATTR, MTCFG, ALLOCCFG, SHCFG, PRIVCFG, INSTCFG, ABORT.
const GBPA_FIELDS: u32 = 0x001f_3f1f;
const GERROR_CMDQ_ERR: u32 = 1 << 0;
const GERROR_EVENTQ_ABT_ERR: u32 = 1 << 2;
const IRQ_GERROR: u32 = 1 << 0;
const IRQ_EVENTQ: u32 = 1 << 2;

/// Why a stream's configuration was refused, and the event dom0 gets for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadConfig {
    pub kind: EventType,
    /// For fetch faults: the address that could not be read.
    pub fetch_addr: u64,
}

/// Counters for log lines and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VsmmuStats {
    pub commands: u64,
    pub command_errors: u64,
    pub ste_installs: u64,
    pub bad_configs: u64,
    pub events_forwarded: u64,
    pub events_lost: u64,
}

/// dom0's emulated SMMUv3.
pub struct Vsmmu {
    cfg: VsmmuConfig,
    idr: [u32; 6],
    cr0: u32,
    cr1: u32,
    cr2: u32,
    gbpa: u32,
    irq_ctrl: u32,
    gerror: u32,
    gerrorn: u32,
    gerror_irq_cfg0: u64,
    gerror_irq_cfg1: u32,
    gerror_irq_cfg2: u32,
    strtab_base: u64,
    strtab_cfg: u32,
    cmdq_base: u64,
    cmdq_prod: u32,
    /// RD with wrap, and ERR in bits [30:24].
    cmdq_cons: u32,
    evtq_base: u64,
    evtq_prod: u32,
    evtq_cons: u32,
    evtq_irq_cfg0: u64,
    evtq_irq_cfg1: u32,
    evtq_irq_cfg2: u32,
    /// The physical STE last installed per stream.
    installed: BTreeMap<u32, PhysSte>,
    /// Streams whose configuration was refused, and why.
    bad: BTreeMap<u32, BadConfig>,
    stats: VsmmuStats,
    /// An interrupt dom0 enabled is due (event queue or global error): the glue injects it.
    irq_due: bool,
}

/// The ID registers a vSMMU offers on top of `phys`: stage 1 only, AArch64 tables, one
/// context descriptor per stream, no stalls, no ATS/PRI/MSI/SEV/HYP, the physical SMMU's
/// granules, ASID width, coherency and range invalidation, linear or 2-level stream tables
/// of the physical StreamID width; output size = dom0's IPA size (what its stage 2 takes).
pub fn vsmmu_idr(phys: &SmmuFeatures, phys_idr0: u32, ipa_bits: u8) -> [u32; 6] {
    let ttendian = get(u64::from(phys_idr0), 22, 21) as u32;
    let term_model = get(u64::from(phys_idr0), 26, 26) as u32;
    let idr0 = (1 << 1) // S1P
        | (2 << 2) // TTF: AArch64
        | (u32::from(phys.coherent) << 4)
        | (u32::from(phys.asid16) << 12)
        | (ttendian << 21)
        | (1 << 24) // STALL_MODEL: no stalls
        | (term_model << 26)
        | (1 << 27); // ST_LEVEL: 2-level supported
    let idr1 = u32::from(phys.sid_bits.min(32)) | (EVENTQS << 16) | (CMDQS << 21);
    let idr3 = u32::from(phys.range_inval) << 10;
    // OAS encodings 0..=6: 32, 36, 40, 42, 44, 48, 52 bits; the largest not above both.
    const OAS: [u8; 7] = [32, 36, 40, 42, 44, 48, 52];
    let limit = ipa_bits.min(phys.oas_bits);
    let oas = OAS.iter().rposition(|&b| b <= limit).unwrap_or(0) as u32;
    let idr5 = oas
        | (u32::from(phys.gran4k) << 4)
        | (u32::from(phys.gran16k) << 5)
        | (u32::from(phys.gran64k) << 6);
    [idr0, idr1, 0, idr3, 0, idr5]
}

impl Vsmmu {
    pub fn new(cfg: VsmmuConfig) -> Self {
        let idr = vsmmu_idr(&cfg.phys, cfg.phys_idr0, cfg.ipa_bits);
        Vsmmu {
            cfg,
            idr,
            cr0: 0,
            cr1: 0,
            cr2: 0,
            // Out of reset traffic bypasses (GBPA.ABORT = 0): dom0's devices then work through
            // its stage 2 alone, as without the vSMMU, until dom0 enables it.
            gbpa: 0,
            irq_ctrl: 0,
            gerror: 0,
            gerrorn: 0,
            gerror_irq_cfg0: 0,
            gerror_irq_cfg1: 0,
            gerror_irq_cfg2: 0,
            strtab_base: 0,
            strtab_cfg: 0,
            cmdq_base: 0,
            cmdq_prod: 0,
            cmdq_cons: 0,
            evtq_base: 0,
            evtq_prod: 0,
            evtq_cons: 0,
            evtq_irq_cfg0: 0,
            evtq_irq_cfg1: 0,
            evtq_irq_cfg2: 0,
            installed: BTreeMap::new(),
            bad: BTreeMap::new(),
            stats: VsmmuStats::default(),
            irq_due: false,
        }
    }

    pub fn idr(&self) -> [u32; 6] {
        self.idr
    }
    pub fn stats(&self) -> VsmmuStats {
        self.stats
    }
    pub fn sids(&self) -> &[u32] {
        &self.cfg.sids
    }
    /// The physical STE last installed for `sid`.
    pub fn installed(&self, sid: u32) -> Option<PhysSte> {
        self.installed.get(&sid).copied()
    }
    /// Why `sid`'s configuration was refused, if it was.
    pub fn bad_config(&self, sid: u32) -> Option<BadConfig> {
        self.bad.get(&sid).copied()
    }
    /// An interrupt is due since the last call (and clears it).
    pub fn take_irq(&mut self) -> bool {
        core::mem::take(&mut self.irq_due)
    }
    pub fn owns_sid(&self, sid: u32) -> bool {
        self.cfg.sids.contains(&sid)
    }

    /// Install the physical STE of every stream as the current state says: out of reset
    /// (and whenever dom0 disables the vSMMU) what GBPA says.
    pub fn install_all(&mut self, mem: &dyn GuestMem, be: &mut dyn VsmmuBackend) {
        let sids = self.cfg.sids.clone();
        for sid in sids {
            self.refresh(sid, mem, be);
        }
        be.sync();
    }

    // ---- registers ----------------------------------------------------------------------

    /// A read of `size` bytes at `offset`. Reserved and unimplemented registers read as zero;
    /// accesses other than 32 bits (or 64 bits on a 64-bit register) too.
    pub fn read(&self, offset: u64, size: u8) -> u64 {
        let o = offset as usize;
        let r64 = |v: u64| match (size, offset & 7) {
            (8, 0) => v,
            (4, 0) => v & 0xffff_ffff,
            (4, 4) => v >> 32,
            _ => 0,
        };
        match o {
            _ if o == off::STRTAB_BASE || o == off::STRTAB_BASE + 4 => r64(self.strtab_base),
            _ if o == off::CMDQ_BASE || o == off::CMDQ_BASE + 4 => r64(self.cmdq_base),
            _ if o == off::EVENTQ_BASE || o == off::EVENTQ_BASE + 4 => r64(self.evtq_base),
            _ if o == off::GERROR_IRQ_CFG0 || o == off::GERROR_IRQ_CFG0 + 4 => r64(self.gerror_irq_cfg0),
            _ if o == off::EVENTQ_IRQ_CFG0 || o == off::EVENTQ_IRQ_CFG0 + 4 => r64(self.evtq_irq_cfg0),
            _ if size != 4 => 0,
            _ if o <= off::IDR5 && o % 4 == 0 => u64::from(self.idr[o / 4]),
            _ => u64::from(match offset {
                x if x == off::CR0 as u64 => self.cr0,
                x if x == off::CR0ACK as u64 => self.cr0,
                x if x == off::CR1 as u64 => self.cr1,
                x if x == off::CR2 as u64 => self.cr2,
                x if x == off::GBPA as u64 => self.gbpa,
                x if x == off::IRQ_CTRL as u64 => self.irq_ctrl,
                x if x == off::IRQ_CTRLACK as u64 => self.irq_ctrl,
                x if x == off::GERROR as u64 => self.gerror,
                x if x == off::GERRORN as u64 => self.gerrorn,
                GERROR_IRQ_CFG1 => self.gerror_irq_cfg1,
                GERROR_IRQ_CFG2 => self.gerror_irq_cfg2,
                x if x == off::STRTAB_BASE_CFG as u64 => self.strtab_cfg,
                x if x == off::CMDQ_PROD as u64 => self.cmdq_prod,
                x if x == off::CMDQ_CONS as u64 => self.cmdq_cons,
                EVENTQ_IRQ_CFG1 => self.evtq_irq_cfg1,
                EVENTQ_IRQ_CFG2 => self.evtq_irq_cfg2,
                // The event queue's indexes are in page 1; page 0's copies alias them.
                x if x == off::EVENTQ_PROD as u64 || x == (off::EVENTQ_PROD - super::regs::PAGE1) as u64 => self.evtq_prod,
                x if x == off::EVENTQ_CONS as u64 || x == (off::EVENTQ_CONS - super::regs::PAGE1) as u64 => self.evtq_cons,
                _ => 0,
            }),
        }
    }

    /// A write. Read-only, reserved and unimplemented registers ignore writes.
    pub fn write(&mut self, offset: u64, size: u8, value: u64, mem: &dyn GuestMem, be: &mut dyn VsmmuBackend) {
        let o = offset as usize;
        let w64 = |old: u64| match (size, offset & 7) {
            (8, 0) => Some(value),
            (4, 0) => Some((old & !0xffff_ffff) | (value & 0xffff_ffff)),
            (4, 4) => Some((old & 0xffff_ffff) | (value << 32)),
            _ => None,
        };
        // Address fields [51:x] and the RA/WA hint bit 62 of the base registers.
        const BASE_MASK: u64 = (1 << 62) | 0x000f_ffff_ffff_ffff;
        match o {
            _ if o == off::STRTAB_BASE || o == off::STRTAB_BASE + 4 => {
                if let Some(v) = w64(self.strtab_base) {
                    self.strtab_base = v & BASE_MASK & !0x3f;
                }
                return;
            }
            _ if o == off::CMDQ_BASE || o == off::CMDQ_BASE + 4 => {
                if let Some(v) = w64(self.cmdq_base) {
                    self.cmdq_base = v & BASE_MASK;
                }
                return;
            }
            _ if o == off::EVENTQ_BASE || o == off::EVENTQ_BASE + 4 => {
                if let Some(v) = w64(self.evtq_base) {
                    self.evtq_base = v & BASE_MASK;
                }
                return;
            }
            _ if o == off::GERROR_IRQ_CFG0 || o == off::GERROR_IRQ_CFG0 + 4 => {
                if let Some(v) = w64(self.gerror_irq_cfg0) {
                    self.gerror_irq_cfg0 = v & 0x000f_ffff_ffff_fffc;
                }
                return;
            }
            _ if o == off::EVENTQ_IRQ_CFG0 || o == off::EVENTQ_IRQ_CFG0 + 4 => {
                if let Some(v) = w64(self.evtq_irq_cfg0) {
                    self.evtq_irq_cfg0 = v & 0x000f_ffff_ffff_fffc;
                }
                return;
            }
            _ if size != 4 => return,
            _ => {}
        }
        let v = value as u32;
        match offset {
            x if x == off::CR0 as u64 => self.write_cr0(v, mem, be),
            x if x == off::CR1 as u64 => self.cr1 = v & 0xfff,
            x if x == off::CR2 as u64 => self.cr2 = v & 0x7,
            x if x == off::GBPA as u64 => {
                if v & GBPA_UPDATE != 0 {
                    // The update completes at once (UPDATE reads back as 0).
                    self.gbpa = v & GBPA_FIELDS;
                    if self.cr0 & CR0_SMMUEN == 0 {
                        self.install_all(mem, be);
                    }
                }
            }
            x if x == off::IRQ_CTRL as u64 => self.irq_ctrl = v & (IRQ_GERROR | IRQ_EVENTQ),
            x if x == off::GERRORN as u64 => {
                self.gerrorn = v & 0x1fd;
                // A command error acknowledged: the queue resumes at the failed command.
                if !self.cmdq_error_active() {
                    self.cmdq_cons &= !(0x7f << 24);
                    self.process_cmdq(mem, be);
                }
            }
            GERROR_IRQ_CFG1 => self.gerror_irq_cfg1 = v,
            GERROR_IRQ_CFG2 => self.gerror_irq_cfg2 = v & 0x3f,
            x if x == off::STRTAB_BASE_CFG as u64 => self.strtab_cfg = v & 0x3_07ff,
            x if x == off::CMDQ_PROD as u64 => {
                self.cmdq_prod = v & self.cmdq_index_mask();
                self.process_cmdq(mem, be);
            }
            x if x == off::CMDQ_CONS as u64 => {
                // Software sets CONS only while the queue is off.
                if self.cr0 & CR0_CMDQEN == 0 {
                    self.cmdq_cons = v & self.cmdq_index_mask();
                }
            }
            EVENTQ_IRQ_CFG1 => self.evtq_irq_cfg1 = v,
            EVENTQ_IRQ_CFG2 => self.evtq_irq_cfg2 = v & 0x3f,
            x if x == off::EVENTQ_PROD as u64 || x == (off::EVENTQ_PROD - super::regs::PAGE1) as u64 => {
                if self.cr0 & CR0_EVENTQEN == 0 {
                    self.evtq_prod = v & (self.evtq_index_mask() | (1 << 31));
                }
            }
            x if x == off::EVENTQ_CONS as u64 || x == (off::EVENTQ_CONS - super::regs::PAGE1) as u64 => {
                self.evtq_cons = v & (self.evtq_index_mask() | (1 << 31));
            }
            _ => {}
        }
    }

    fn write_cr0(&mut self, v: u32, mem: &dyn GuestMem, be: &mut dyn VsmmuBackend) {
        let old = self.cr0;
        self.cr0 = v & CR0_MASK;
        if (old ^ self.cr0) & CR0_SMMUEN != 0 {
            // Translation on: every stream's STE from dom0's table; off: GBPA for all.
            self.install_all(mem, be);
        }
        if old & CR0_CMDQEN == 0 && self.cr0 & CR0_CMDQEN != 0 {
            self.process_cmdq(mem, be);
        }
    }

    fn cmdq_log2(&self) -> u8 {
        (self.cmdq_base & 0x1f).min(u64::from(CMDQS)) as u8
    }
    fn cmdq_index_mask(&self) -> u32 {
        (2u32 << self.cmdq_log2()) - 1
    }
    fn evtq_log2(&self) -> u8 {
        (self.evtq_base & 0x1f).min(u64::from(EVENTQS)) as u8
    }
    fn evtq_index_mask(&self) -> u32 {
        (2u32 << self.evtq_log2()) - 1
    }
    fn cmdq_error_active(&self) -> bool {
        (self.gerror ^ self.gerrorn) & GERROR_CMDQ_ERR != 0
    }

    fn raise_gerror(&mut self, bit: u32) {
        // Only a bit that is not already active toggles.
        if (self.gerror ^ self.gerrorn) & bit == 0 {
            self.gerror ^= bit;
            if self.irq_ctrl & IRQ_GERROR != 0 {
                self.irq_due = true;
            }
        }
    }

    // ---- command queue ------------------------------------------------------------------

    /// Consume commands from CONS to PROD while the queue is enabled and no error is pending.
    fn process_cmdq(&mut self, mem: &dyn GuestMem, be: &mut dyn VsmmuBackend) {
        if self.cr0 & CR0_CMDQEN == 0 || self.cmdq_error_active() {
            return;
        }
        let log2 = self.cmdq_log2();
        // The queue is aligned to its size: low address bits below it are ignored.
        let base = self.cmdq_base & 0x000f_ffff_ffff_ffe0 & !((16u64 << log2) - 1);
        let prod = QueuePtr::new(log2, self.cmdq_prod);
        let mut cons = QueuePtr::new(log2, self.cmdq_cons & 0xf_ffff);
        let mut pending_sync = false;
        // At most one queue's worth per write, whatever PROD says.
        let mut budget = cons.capacity();
        while cons != prod && budget > 0 {
            budget -= 1;
            let mut b = [0u8; 16];
            let at = base + u64::from(cons.index()) * 16;
            let err = if !mem.read(at, &mut b) {
                CERROR_ABT
            } else {
                let w = [
                    u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8])),
                    u64::from_le_bytes(b[8..].try_into().unwrap_or([0; 8])),
                ];
                self.stats.commands += 1;
                self.execute(w, mem, be, &mut pending_sync)
            };
            if err != CERROR_NONE {
                self.stats.command_errors += 1;
                if pending_sync {
                    be.sync();
                }
                self.cmdq_cons = cons.raw() | (err << 24);
                self.raise_gerror(GERROR_CMDQ_ERR);
                return;
            }
            cons = cons.advance(1);
            self.cmdq_cons = cons.raw();
        }
        if pending_sync {
            be.sync();
        }
    }

    /// Carry out one command; CERROR_NONE or the error code. `pending` records physical work
    /// queued and not yet synchronised.
    fn execute(&mut self, w: [u64; 2], mem: &dyn GuestMem, be: &mut dyn VsmmuBackend, pending: &mut bool) -> u32 {
        let op = (w[0] & 0xff) as u8;
        let sid = (w[0] >> 32) as u32;
        let sid_ok = |s: u32| self.cfg.phys.sid_bits >= 32 || u64::from(s) >> self.cfg.phys.sid_bits == 0;
        match op {
            // PREFETCH_CONFIG, PREFETCH_ADDR: hints.
            0x01 | 0x02 => {}
            // CFGI_STE, CFGI_CD, CFGI_CD_ALL: this stream's configuration is read again.
            0x03 | 0x05 | 0x06 => {
                if !sid_ok(sid) {
                    return CERROR_ILL;
                }
                if op == 0x05 && get(w[0], 31, 12) != 0 {
                    // SubstreamID beyond SSIDSIZE = 0.
                    return CERROR_ILL;
                }
                if self.owns_sid(sid) {
                    self.refresh(sid, mem, be);
                    *pending = true;
                }
            }
            // CFGI_STE_RANGE (Range 31: CFGI_ALL).
            0x04 => {
                let range = (w[1] & 0x1f) as u32;
                let span = 1u64 << (range + 1);
                let first = u64::from(sid) & !(span - 1);
                let sids: Vec<u32> =
                    self.cfg.sids.iter().copied().filter(|&s| range == 31 || (u64::from(s) >= first && u64::from(s) < first + span)).collect();
                for s in sids {
                    self.refresh(s, mem, be);
                }
                *pending = true;
            }
            // TLBI_NH_ALL, TLBI_NSNH_ALL: all of dom0's stage-1 entries (it has nothing else).
            0x10 | 0x30 => {
                be.tlbi(PhysTlbi::All);
                *pending = true;
            }
            0x11 => {
                be.tlbi(PhysTlbi::Asid { asid: get(w[0], 63, 48) as u16 });
                *pending = true;
            }
            // TLBI_NH_VA; TLBI_NH_VAA (any ASID) as all of the VMID's stage-1 entries.
            0x12 => {
                let tg = get(w[1], 11, 10) as u8;
                let range = (tg != 0 && self.cfg.phys.range_inval)
                    .then(|| TlbiRange { tg, num: get(w[0], 16, 12) as u8, scale: get(w[0], 24, 20) as u8 });
                if tg != 0 && !self.cfg.phys.range_inval {
                    be.tlbi(PhysTlbi::Asid { asid: get(w[0], 63, 48) as u16 });
                } else {
                    be.tlbi(PhysTlbi::Va {
                        asid: get(w[0], 63, 48) as u16,
                        addr: w[1] & 0x000f_ffff_ffff_f000,
                        leaf: w[1] & 1 != 0,
                        ttl: get(w[1], 9, 8) as u8,
                        range,
                    });
                }
                *pending = true;
            }
            0x13 => {
                be.tlbi(PhysTlbi::All);
                *pending = true;
            }
            // CMD_SYNC: everything before it completes. CS = 0b11 is reserved; a CS asking
            // for an MSI or SEV has nothing to signal with (no MSI, no SEV offered).
            0x46 => {
                if get(w[0], 13, 12) == 0b11 {
                    return CERROR_ILL;
                }
                be.sync();
                *pending = false;
            }
            // Stage-2, EL2 and EL3 TLB maintenance, ATS, PRI, stalls: not offered.
            _ => return CERROR_ILL,
        }
        CERROR_NONE
    }

    // ---- stream table -------------------------------------------------------------------

    fn in_ram(&self, ipa: u64, len: u64) -> bool {
        self.cfg.ram.iter().any(|&(b, s)| ipa >= b && ipa.checked_add(len).is_some_and(|e| e <= b + s))
    }

    fn read_words<const N: usize>(mem: &dyn GuestMem, ipa: u64) -> Option<[u64; N]> {
        let mut b = [0u8; 64];
        let buf = b.get_mut(..N * 8)?;
        if !mem.read(ipa, buf) {
            return None;
        }
        let mut w = [0u64; N];
        for (i, word) in w.iter_mut().enumerate() {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i * 8..i * 8 + 8]);
            *word = u64::from_le_bytes(x);
        }
        Some(w)
    }

    /// Read and check `sid`'s configuration and install the physical STE it calls for.
    fn refresh(&mut self, sid: u32, mem: &dyn GuestMem, be: &mut dyn VsmmuBackend) {
        let ste = if self.cr0 & CR0_SMMUEN == 0 {
            self.bad.remove(&sid);
            if self.gbpa & GBPA_ABORT != 0 { PhysSte::Abort } else { PhysSte::Stage2 }
        } else {
            match self.decode(sid, mem) {
                Ok(s) => {
                    self.bad.remove(&sid);
                    s
                }
                Err(why) => {
                    self.stats.bad_configs += 1;
                    self.bad.insert(sid, why);
                    PhysSte::Invalid
                }
            }
        };
        self.stats.ste_installs += 1;
        self.installed.insert(sid, ste);
        be.install(sid, ste);
    }

    fn bad(kind: EventType) -> BadConfig {
        BadConfig { kind, fetch_addr: 0 }
    }

    /// dom0's STE for `sid` (and its CD), checked.
    fn decode(&self, sid: u32, mem: &dyn GuestMem) -> Result<PhysSte, BadConfig> {
        let log2size = get(u64::from(self.strtab_cfg), 5, 0) as u32;
        let split = get(u64::from(self.strtab_cfg), 10, 6) as u32;
        let two_level = get(u64::from(self.strtab_cfg), 17, 16) == 1;
        let max_bits = u32::from(self.cfg.phys.sid_bits).min(log2size);
        if max_bits < 32 && u64::from(sid) >> max_bits != 0 {
            return Err(Self::bad(EventType::CBadStreamid));
        }
        let base = self.strtab_base & 0x000f_ffff_ffff_ffc0;
        let ste_addr = if two_level {
            // SPLIT is 6, 8 or 10; anything else is treated as 6 (the smallest).
            let split = if matches!(split, 6 | 8 | 10) { split } else { 6 };
            let l1 = base + (u64::from(sid) >> split) * 8;
            let [desc] = Self::read_words::<1>(mem, l1).ok_or(BadConfig { kind: EventType::FSteFetch, fetch_addr: l1 })?;
            let span = (desc & 0x1f) as u32;
            if span == 0 || span > 12 {
                return Err(Self::bad(EventType::CBadStreamid));
            }
            let idx = u64::from(sid) & ((1 << split) - 1);
            if idx >= 1 << (span - 1) {
                return Err(Self::bad(EventType::CBadSte));
            }
            (desc & 0x000f_ffff_ffff_ffc0) + idx * 64
        } else {
            base + u64::from(sid) * 64
        };
        let ste = Self::read_words::<8>(mem, ste_addr).ok_or(BadConfig { kind: EventType::FSteFetch, fetch_addr: ste_addr })?;
        if ste[0] & 1 == 0 {
            return Err(Self::bad(EventType::CBadSte));
        }
        match get(ste[0], 3, 1) {
            0b000 => Ok(PhysSte::Abort),
            0b100 => Ok(PhysSte::Stage2),
            0b101 => {
                // One CD (SSIDSIZE = 0): S1Fmt and S1CDMax must say so.
                if get(ste[0], 5, 4) != 0 || get(ste[0], 63, 59) != 0 {
                    return Err(Self::bad(EventType::CBadSte));
                }
                // STRW other than NS-EL1 needs HYP/E2H, not offered.
                if get(ste[1], 31, 30) != 0 {
                    return Err(Self::bad(EventType::CBadSte));
                }
                let cd = ste[0] & 0x00ff_ffff_ffff_ffc0;
                if !self.in_ram(cd, 64) {
                    return Err(BadConfig { kind: EventType::FCdFetch, fetch_addr: cd });
                }
                let words = Self::read_words::<8>(mem, cd).ok_or(BadConfig { kind: EventType::FCdFetch, fetch_addr: cd })?;
                self.check_cd(&words)?;
                Ok(PhysSte::Nested { cd })
            }
            // Stage 2 (0b110, 0b111) is not offered; the rest is reserved.
            _ => Err(Self::bad(EventType::CBadSte)),
        }
    }

    /// A context descriptor the vSMMU accepts: valid, AArch64, little-endian tables, a TTB0
    /// walk inside dom0's RAM with a granule and size the physical SMMU has, TTB1 off or
    /// inside RAM too, no stall, no hardware access/dirty flag updates, an ASID of the width
    /// offered.
    fn check_cd(&self, cd: &[u64; 8]) -> Result<(), BadConfig> {
        let bad = Err(Self::bad(EventType::CBadCd));
        let w0 = cd[0];
        let v = w0 & (1 << 31) != 0;
        let aa64 = w0 & (1 << 41) != 0;
        let endi = w0 & (1 << 15) != 0;
        let stall = w0 & (1 << 44) != 0;
        // HD [42], HA [43]: hardware flag updates (HTTU) are not offered.
        let ha_hd = w0 & (3 << 42) != 0;
        if !v || !aa64 || endi || stall || ha_hd {
            return bad;
        }
        if !self.cfg.phys.asid16 && get(w0, 63, 56) != 0 {
            return bad;
        }
        // IPS beyond the offered output size is capped to it, as an SMMU does: not an error.
        // (T0SZ, TG0, EPD0, TTB0) and (T1SZ, TG1, EPD1, TTB1).
        let halves = [
            (get(w0, 5, 0), get(w0, 7, 6), w0 & (1 << 14) != 0, cd[1] & 0x000f_ffff_ffff_fff0, false),
            (get(w0, 21, 16), get(w0, 23, 22), w0 & (1 << 30) != 0, cd[2] & 0x000f_ffff_ffff_fff0, true),
        ];
        for (tsz, tg, epd, ttb, upper) in halves {
            if epd {
                continue;
            }
            // TG0: 0 = 4K, 1 = 64K, 2 = 16K; TG1: 1 = 16K, 2 = 4K, 3 = 64K.
            let shift = match (upper, tg) {
                (false, 0) | (true, 2) => 12,
                (false, 1) | (true, 3) => 16,
                (false, 2) | (true, 1) => 14,
                _ => return bad,
            };
            let granule_ok = match shift {
                12 => self.cfg.phys.gran4k,
                14 => self.cfg.phys.gran16k,
                _ => self.cfg.phys.gran64k,
            };
            if !granule_ok || !(16..=39).contains(&tsz) {
                return bad;
            }
            if !self.in_ram(ttb, 8) {
                return bad;
            }
        }
        Ok(())
    }

    // ---- event queue --------------------------------------------------------------------

    /// A physical event for one of dom0's streams (`raw`, the physical record). Stage-1 events
    /// go to dom0's event queue; a C_BAD_STE on a stream whose configuration xenith refused
    /// becomes the event that configuration deserved. Stage-2 faults are the hypervisor's:
    /// false (not forwarded).
    pub fn forward_event(&mut self, raw: [u64; 4], mem: &dyn GuestMem) -> bool {
        let kind = EventType::from_code((raw[0] & 0xff) as u8);
        let sid = (raw[0] >> 32) as u32;
        if !self.owns_sid(sid) {
            return false;
        }
        let s2 = raw[1] & (1 << 39) != 0;
        let mut rec = raw;
        match kind {
            EventType::FTranslation | EventType::FAddrSize | EventType::FAccess | EventType::FPermission | EventType::FWalkEabt if s2 => {
                return false
            }
            EventType::CBadSte => match self.bad.get(&sid) {
                Some(b) => {
                    rec = [u64::from(b.kind.code()) | (u64::from(sid) << 32), 0, 0, 0];
                    match b.kind {
                        EventType::FSteFetch => rec[3] = b.fetch_addr & 0x000f_ffff_ffff_fff8,
                        EventType::FCdFetch => rec[2] = b.fetch_addr,
                        _ => {}
                    }
                }
                None => {}
            },
            // Anything about the physical stream table or stage 2 itself is the hypervisor's.
            EventType::FSteFetch | EventType::CBadStreamid | EventType::FVmsFetch => return false,
            _ => {}
        }
        self.record(rec, mem);
        true
    }

    /// Write a record into dom0's event queue, as an SMMU does: nothing while EVENTQEN is
    /// off, the overflow flag when it is full, EVENTQ_ABT_ERR when it cannot be written.
    pub fn record(&mut self, rec: [u64; 4], mem: &dyn GuestMem) {
        if self.cr0 & CR0_EVENTQEN == 0 {
            self.stats.events_lost += 1;
            return;
        }
        let log2 = self.evtq_log2();
        let base = self.evtq_base & 0x000f_ffff_ffff_ffe0;
        let prod = QueuePtr::new(log2, self.evtq_prod & 0xf_ffff);
        let cons = QueuePtr::new(log2, self.evtq_cons & 0xf_ffff);
        if QueuePtr::is_full(prod, cons) {
            // Overflow: OVFLG toggles to differ from CONS.OVACKFLG.
            if (self.evtq_prod ^ self.evtq_cons) & (1 << 31) == 0 {
                self.evtq_prod ^= 1 << 31;
            }
            self.stats.events_lost += 1;
            return;
        }
        let mut bytes = [0u8; 32];
        for (i, w) in rec.iter().enumerate() {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        if !mem.write(base + u64::from(prod.index()) * 32, &bytes) {
            self.raise_gerror(GERROR_EVENTQ_ABT_ERR);
            self.stats.events_lost += 1;
            return;
        }
        self.evtq_prod = prod.advance(1).raw() | (self.evtq_prod & (1 << 31));
        self.stats.events_forwarded += 1;
        if self.irq_ctrl & IRQ_EVENTQ != 0 {
            self.irq_due = true;
        }
    }
}
