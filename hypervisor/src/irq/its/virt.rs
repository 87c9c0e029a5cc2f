//! The emulated ITS a domain (dom0) programs instead of the physical one: the control
//! frame's registers (GITS_CTLR, IIDR, TYPER, CBASER, CWRITER, CREADR, BASER<n>) and the
//! command queue in the domain's memory. Each command is read through the domain's stage 2
//! (its own RAM only), checked — DeviceIDs the domain's devices use, EventIDs within the ITT
//! size it declared, collections naming one of its vCPUs, LPI INTIDs within the vGIC's range —
//! and carried out on the physical ITS ([`HostItsOps`]) and the vGIC. The mapping state lives
//! in hypervisor memory; the tables the domain gives GITS_BASER<n> and its ITTs stay
//! untouched domain memory.
//!
//! Errors, as the GICv3 architecture lets an ITS choose: a command with a bad parameter is
//! ignored and the queue goes on; a command that cannot be read (not the domain's RAM) or a
//! GITS_CWRITER beyond the queue stalls the queue (GITS_CREADR.Stalled) until the domain
//! writes GITS_CWRITER with Retry or reprograms GITS_CBASER.

use super::cmd::{Command, CMD_SIZE};
use super::host::HostItsOps;
use super::lpi::LpiTarget;
use crate::domain::mmio::{MmioAccess, MmioResult};
use crate::irq::vgic::Vgic;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// Size of the control frame (the translation frame follows it).
pub const CONTROL_FRAME: u64 = 0x1_0000;
/// Both frames.
pub const ITS_SIZE: u64 = 0x2_0000;

const CTLR: u64 = 0x0000;
const IIDR: u64 = 0x0004;
const TYPER: u64 = 0x0008;
const CBASER: u64 = 0x0080;
const CWRITER: u64 = 0x0088;
const CREADR: u64 = 0x0090;
const BASER: u64 = 0x0100;
const BASER_END: u64 = 0x0140;
const PIDR2: u64 = 0xffe8;
const ID_CIDR: [(u64, u32); 4] = [(0xfff0, 0x0d), (0xfff4, 0xf0), (0xfff8, 0x05), (0xfffc, 0xb1)];

const CTLR_ENABLED: u32 = 1 << 0;
const CTLR_QUIESCENT: u32 = 1 << 31;
const VALID: u64 = 1 << 63;
/// GITS_CBASER fields kept: Valid, InnerCache 61:59, OuterCache 55:53, PA 51:12,
/// Shareability 11:10, Size 7:0.
const CBASER_MASK: u64 = VALID | (7 << 59) | (7 << 53) | (((1 << 52) - 1) & !0xfff) | (3 << 10) | 0xff;
const CBASER_PA: u64 = ((1 << 52) - 1) & !0xfff;
/// GITS_BASER<n> fields the guest writes: Valid, InnerCache, OuterCache, PA 47:12,
/// Shareability, PageSize 9:8, Size 7:0 (Indirect reads as zero: flat tables only).
const BASER_RW: u64 = VALID | (7 << 59) | (7 << 53) | (((1 << 48) - 1) & !0xfff) | (3 << 10) | (3 << 8) | 0xff;
/// Offset field of GITS_CWRITER/CREADR (bits 19:5).
const OFFSET_MASK: u64 = 0xf_ffe0;
/// GITS_CWRITER.Retry / GITS_CREADR.Stalled.
const RETRY: u64 = 1;
/// GITS_IIDR: Arm's JEP106 code, product 'X' (this emulation).
const IIDR_VALUE: u32 = (0x58 << 24) | 0x43b;
/// ITT entry size the domain is told to allocate (its ITTs are never read).
const ITT_ENTRY_SIZE: u64 = 8;
/// EventIDs a mapped device is charged at least against the budget: its physical ITT takes a
/// whole page however few events it holds.
pub const MIN_EVENT_CHARGE: u64 = 256;
/// GITS_BASER<n> entry sizes advertised (device and collection tables).
const TABLE_ENTRY_SIZE: u64 = 8;

/// Reads of the domain's memory by guest-physical address; false unless the whole range is
/// the domain's own RAM.
pub trait GuestMem {
    fn read(&self, ipa: u64, buf: &mut [u8]) -> bool;
}

/// What the emulated ITS lets the domain do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VitsConfig {
    /// DeviceIDs the domain's devices use: (first, count) ranges (the msi-map outputs of its
    /// PCI host bridges).
    pub devices: Vec<(u32, u32)>,
    /// EventID width offered (at most the physical ITS's).
    pub event_bits: u8,
    /// DeviceID width offered.
    pub device_bits: u8,
    /// The domain's vCPU count (a collection's target is a vCPU number: GITS_TYPER.PTA = 0).
    pub vcpus: usize,
    /// EventIDs all mapped devices' ITTs may hold together, each device counted as at least
    /// [`MIN_EVENT_CHARGE`] (the physical ITTs are hypervisor memory: this bounds it).
    pub event_budget: u64,
}

/// Why a command was ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdError {
    DeviceNotOwned(u32),
    DeviceUnmapped(u32),
    IttTooLarge { device: u32, bits: u8 },
    EventOutOfRange { device: u32, event: u32 },
    EventUnmapped { device: u32, event: u32 },
    EventMapped { device: u32, event: u32 },
    CollectionUnmapped(u16),
    BadTarget(u64),
    BadLpi(u32),
    LpiInUse(u32),
    /// The physical ITS refused, or no host LPI or ITT memory was left.
    Host,
    Unknown(u8),
}

#[derive(Clone, Copy, Debug)]
struct Ite {
    vlpi: u32,
    icid: u16,
    host_lpi: u32,
}

#[derive(Clone, Debug)]
struct VDevice {
    bits: u8,
    events: BTreeMap<u32, Ite>,
}

/// One domain's emulated ITS.
#[derive(Clone, Debug)]
pub struct Vits {
    cfg: VitsConfig,
    enabled: bool,
    cbaser: u64,
    cwriter: u64,
    creadr: u64,
    stalled: bool,
    baser: [u64; 8],
    devices: BTreeMap<u32, VDevice>,
    /// ICID -> vCPU.
    collections: BTreeMap<u16, usize>,
    events_in_use: u64,
    /// Commands carried out, and ignored for an error.
    pub executed: u64,
    pub refused: u64,
    pub last_error: Option<CmdError>,
}

fn word(a: &MmioAccess) -> bool {
    a.size == 4 && a.offset % 4 == 0
}

fn word_or_dword(a: &MmioAccess) -> bool {
    (a.size == 4 || a.size == 8) && a.offset % u64::from(a.size) == 0
}

fn half(a: &MmioAccess, reg: u64, value: u64) -> u64 {
    if a.size == 8 {
        value
    } else if a.offset - reg == 4 {
        value >> 32
    } else {
        value & 0xffff_ffff
    }
}

fn merge(a: &MmioAccess, reg: u64, old: u64) -> u64 {
    if a.size == 8 {
        a.value
    } else if a.offset - reg == 4 {
        (old & 0xffff_ffff) | (a.value << 32)
    } else {
        (old & !0xffff_ffff) | (a.value & 0xffff_ffff)
    }
}

impl Vits {
    pub fn new(cfg: VitsConfig) -> Self {
        let mut baser = [0u64; 8];
        baser[0] = (super::phys::BASER_TYPE_DEVICE << 56) | ((TABLE_ENTRY_SIZE - 1) << 48);
        baser[1] = (super::phys::BASER_TYPE_COLLECTION << 56) | ((TABLE_ENTRY_SIZE - 1) << 48);
        Self {
            cfg,
            enabled: false,
            cbaser: 0,
            cwriter: 0,
            creadr: 0,
            stalled: false,
            baser,
            devices: BTreeMap::new(),
            collections: BTreeMap::new(),
            events_in_use: 0,
            executed: 0,
            refused: 0,
            last_error: None,
        }
    }

    pub fn config(&self) -> &VitsConfig {
        &self.cfg
    }

    /// GITS_TYPER: physical LPIs, ITT entry size, EventID and DeviceID widths; PTA 0 (RDbase
    /// is a vCPU number), no collections held in the ITS, 16-bit ICIDs.
    pub fn typer(&self) -> u64 {
        1 | ((ITT_ENTRY_SIZE - 1) << 4)
            | (u64::from(self.cfg.event_bits.clamp(1, 32) - 1) << 8)
            | (u64::from(self.cfg.device_bits.clamp(1, 32) - 1) << 13)
    }

    pub fn is_stalled(&self) -> bool {
        self.stalled
    }

    pub fn mapped_events(&self) -> usize {
        self.devices.values().map(|d| d.events.len()).sum()
    }

    fn owns_device(&self, device: u32) -> bool {
        self.cfg.devices.iter().any(|&(first, n)| device >= first && u64::from(device) < u64::from(first) + u64::from(n))
    }

    fn queue_size(&self) -> u64 {
        ((self.cbaser & 0xff) + 1) * 4096
    }

    /// A register access in the control frame. Returns the result and whether commands may
    /// now be waiting ([`process`](Self::process) must run).
    pub fn access(&mut self, a: &MmioAccess) -> (MmioResult, bool) {
        let off = a.offset;
        let done = |v: u64| (MmioResult::Done(v), false);
        match off {
            CTLR => {
                if !word(a) {
                    return (MmioResult::Abort, false);
                }
                let mut kick = false;
                if a.write {
                    let on = a.value as u32 & CTLR_ENABLED != 0;
                    kick = on && !self.enabled;
                    self.enabled = on;
                }
                // Commands run to completion within the access that queued them: the ITS is
                // quiescent whenever it is disabled.
                let v = if self.enabled { CTLR_ENABLED } else { CTLR_QUIESCENT };
                (MmioResult::Done(u64::from(v)), kick)
            }
            IIDR => if word(a) { done(u64::from(IIDR_VALUE)) } else { (MmioResult::Abort, false) },
            TYPER | 0x000c => {
                if !word_or_dword(a) || (a.size == 8 && off != TYPER) {
                    return (MmioResult::Abort, false);
                }
                done(half(a, TYPER, self.typer()))
            }
            CBASER..=0x0087 => {
                if !word_or_dword(a) {
                    return (MmioResult::Abort, false);
                }
                // Reprogramming the queue of an enabled ITS is UNPREDICTABLE: ignored here.
                if a.write && !self.enabled {
                    self.cbaser = merge(a, CBASER, self.cbaser) & CBASER_MASK;
                    self.creadr = 0;
                    self.stalled = false;
                }
                done(half(a, CBASER, self.cbaser))
            }
            CWRITER..=0x008f => {
                if !word_or_dword(a) {
                    return (MmioResult::Abort, false);
                }
                if a.write {
                    let v = merge(a, CWRITER, self.cwriter);
                    self.cwriter = v & OFFSET_MASK;
                    if v & RETRY != 0 {
                        self.stalled = false;
                    }
                    return (MmioResult::Done(0), true);
                }
                done(half(a, CWRITER, self.cwriter))
            }
            CREADR..=0x0097 => {
                if !word_or_dword(a) {
                    return (MmioResult::Abort, false);
                }
                let v = self.creadr | if self.stalled { RETRY } else { 0 };
                done(half(a, CREADR, v))
            }
            BASER..BASER_END => {
                if !word_or_dword(a) {
                    return (MmioResult::Abort, false);
                }
                let reg = off & !7;
                let n = ((reg - BASER) / 8) as usize;
                let cur = self.baser[n];
                if a.write && !self.enabled && cur != 0 {
                    let fixed = cur & !BASER_RW;
                    self.baser[n] = fixed | (merge(a, reg, cur) & BASER_RW);
                }
                done(half(a, reg, self.baser[n]))
            }
            PIDR2 => if word(a) { done(0x3b) } else { (MmioResult::Abort, false) },
            _ => {
                if let Some(&(_, v)) = ID_CIDR.iter().find(|(o, _)| *o == off) {
                    return if word(a) { done(u64::from(v)) } else { (MmioResult::Abort, false) };
                }
                // Reserved and unimplemented (GITS_MPIDR, GITS_UMSIR, ...): RAZ/WI.
                if word_or_dword(a) { done(0) } else { (MmioResult::Abort, false) }
            }
        }
    }

    /// Run the commands between GITS_CREADR and GITS_CWRITER. Returns the vCPUs whose
    /// interrupts changed (bit n for vCPU n) to be kicked.
    pub fn process(&mut self, vgic: &mut Vgic, mem: &dyn GuestMem, host: &mut dyn HostItsOps) -> u64 {
        let mut kick = 0u64;
        if !self.enabled || self.stalled || self.cbaser & VALID == 0 {
            return 0;
        }
        let size = self.queue_size();
        if self.cwriter >= size {
            self.stalled = true;
            return 0;
        }
        let base = self.cbaser & CBASER_PA;
        let mut budget = size / CMD_SIZE;
        while self.creadr != self.cwriter && budget > 0 {
            budget -= 1;
            let mut b = [0u8; CMD_SIZE as usize];
            if !mem.read(base + self.creadr, &mut b) {
                self.stalled = true;
                break;
            }
            match self.execute(Command::from_bytes(&b), vgic, mem, host) {
                Ok(k) => {
                    kick |= k;
                    self.executed += 1;
                }
                Err(e) => {
                    self.refused += 1;
                    if self.refused <= 8 {
                        crate::log!("vITS: command ignored: {e:?}");
                    }
                    self.last_error = Some(e);
                }
            }
            self.creadr = (self.creadr + CMD_SIZE) % size;
        }
        kick
    }

    /// What a device with `bits`-bit EventIDs costs against the event budget.
    fn charge(bits: u8) -> u64 {
        (1u64 << bits.min(32)).max(MIN_EVENT_CHARGE)
    }

    fn vcpu_bit(vcpu: usize) -> u64 {
        if vcpu < 64 { 1 << vcpu } else { 0 }
    }

    /// The configuration byte of `vlpi` from the table `vcpu`'s redistributor was given
    /// (disabled when the table does not cover it or is not the domain's RAM).
    fn read_prop(vgic: &Vgic, mem: &dyn GuestMem, vcpu: usize, vlpi: u32) -> u8 {
        let mut b = [0u8];
        match vgic.lpi_prop_addr(vcpu, vlpi) {
            Some(ipa) if mem.read(ipa, &mut b) => b[0],
            _ => 0,
        }
    }

    fn ite(&self, device: u32, event: u32) -> Result<Ite, CmdError> {
        let d = self.devices.get(&device).ok_or(CmdError::DeviceUnmapped(device))?;
        d.events.get(&event).copied().ok_or(CmdError::EventUnmapped { device, event })
    }

    fn collection(&self, icid: u16) -> Result<usize, CmdError> {
        self.collections.get(&icid).copied().ok_or(CmdError::CollectionUnmapped(icid))
    }

    /// Drop every event of `device` (physical and virtual).
    fn drop_events(&mut self, device: u32, vgic: &mut Vgic, host: &mut dyn HostItsOps) {
        let Some(d) = self.devices.get_mut(&device) else { return };
        let events = core::mem::take(&mut d.events);
        for (event, ite) in events {
            host.unmap_event(device, event, ite.host_lpi);
            vgic.lpi_unmap(ite.vlpi);
        }
    }

    fn unmap_device(&mut self, device: u32, vgic: &mut Vgic, host: &mut dyn HostItsOps) {
        if self.devices.contains_key(&device) {
            self.drop_events(device, vgic, host);
            host.unmap_device(device);
            if let Some(d) = self.devices.remove(&device) {
                self.events_in_use -= Self::charge(d.bits);
            }
        }
    }

    fn execute(&mut self, cmd: Command, vgic: &mut Vgic, mem: &dyn GuestMem, host: &mut dyn HostItsOps) -> Result<u64, CmdError> {
        match cmd {
            Command::Mapd { device, bits, itt: _, valid } => {
                if !self.owns_device(device) {
                    return Err(CmdError::DeviceNotOwned(device));
                }
                self.unmap_device(device, vgic, host);
                if !valid {
                    return Ok(0);
                }
                let events = Self::charge(bits);
                if bits > self.cfg.event_bits || self.events_in_use + events > self.cfg.event_budget {
                    return Err(CmdError::IttTooLarge { device, bits });
                }
                if !host.map_device(device, bits) {
                    return Err(CmdError::Host);
                }
                self.events_in_use += events;
                self.devices.insert(device, VDevice { bits, events: BTreeMap::new() });
                Ok(0)
            }
            Command::Mapc { icid, rdbase, valid } => {
                if !valid {
                    self.collections.remove(&icid);
                    return Ok(0);
                }
                let vcpu = usize::try_from(rdbase).ok().filter(|&v| v < self.cfg.vcpus).ok_or(CmdError::BadTarget(rdbase))?;
                let old = self.collections.insert(icid, vcpu);
                let mut kick = 0;
                if old.is_some_and(|o| o != vcpu) {
                    // The collection moved: its events follow it.
                    let mut moves = Vec::new();
                    for (&device, d) in &self.devices {
                        for (&event, ite) in &d.events {
                            if ite.icid == icid {
                                moves.push((device, event, *ite));
                            }
                        }
                    }
                    for (device, event, ite) in moves {
                        host.move_event(device, event, ite.host_lpi, vcpu as u16);
                        let _ = vgic.lpi_move(ite.vlpi, vcpu);
                    }
                    kick |= Self::vcpu_bit(vcpu);
                }
                Ok(kick)
            }
            Command::Mapti { device, event, intid, icid } => self.map_event(device, event, intid, icid, vgic, mem, host),
            Command::Mapi { device, event, icid } => self.map_event(device, event, event, icid, vgic, mem, host),
            Command::Movi { device, event, icid } => {
                let ite = self.ite(device, event)?;
                let vcpu = self.collection(icid)?;
                if !host.move_event(device, event, ite.host_lpi, vcpu as u16) {
                    return Err(CmdError::Host);
                }
                let _ = vgic.lpi_move(ite.vlpi, vcpu);
                if let Some(e) = self.devices.get_mut(&device).and_then(|d| d.events.get_mut(&event)) {
                    e.icid = icid;
                }
                Ok(Self::vcpu_bit(vcpu))
            }
            Command::Discard { device, event } => {
                let ite = self.ite(device, event)?;
                host.unmap_event(device, event, ite.host_lpi);
                vgic.lpi_unmap(ite.vlpi);
                if let Some(d) = self.devices.get_mut(&device) {
                    d.events.remove(&event);
                }
                Ok(0)
            }
            Command::Inv { device, event } => {
                let ite = self.ite(device, event)?;
                let vcpu = vgic.lpi_target(ite.vlpi).unwrap_or(0);
                let prop = Self::read_prop(vgic, mem, vcpu, ite.vlpi);
                vgic.lpi_configure(ite.vlpi, prop);
                Ok(Self::vcpu_bit(vcpu))
            }
            Command::Invall { icid } => {
                let vcpu = self.collection(icid)?;
                for vlpi in vgic.lpis_of(vcpu) {
                    let prop = Self::read_prop(vgic, mem, vcpu, vlpi);
                    vgic.lpi_configure(vlpi, prop);
                }
                Ok(Self::vcpu_bit(vcpu))
            }
            Command::Int { device, event } => {
                let ite = self.ite(device, event)?;
                Ok(vgic.lpi_set_pending(ite.vlpi, true).map(Self::vcpu_bit).unwrap_or(0))
            }
            Command::Clear { device, event } => {
                let ite = self.ite(device, event)?;
                vgic.lpi_set_pending(ite.vlpi, false);
                Ok(0)
            }
            Command::Sync { rdbase } => {
                if rdbase >= self.cfg.vcpus as u64 {
                    return Err(CmdError::BadTarget(rdbase));
                }
                // Every command completed when it was read.
                Ok(0)
            }
            Command::Movall { from, to } => {
                if from >= self.cfg.vcpus as u64 || to >= self.cfg.vcpus as u64 {
                    return Err(CmdError::BadTarget(from.max(to)));
                }
                // Pending state lives with each LPI, which follows its collection: nothing
                // is left behind on the old redistributor.
                Ok(0)
            }
            Command::Unknown(op) => Err(CmdError::Unknown(op)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn map_event(
        &mut self,
        device: u32,
        event: u32,
        vlpi: u32,
        icid: u16,
        vgic: &mut Vgic,
        mem: &dyn GuestMem,
        host: &mut dyn HostItsOps,
    ) -> Result<u64, CmdError> {
        let d = self.devices.get(&device).ok_or(CmdError::DeviceUnmapped(device))?;
        if u64::from(event) >= 1u64 << d.bits {
            return Err(CmdError::EventOutOfRange { device, event });
        }
        if d.events.contains_key(&event) {
            return Err(CmdError::EventMapped { device, event });
        }
        let vcpu = self.collection(icid)?;
        if !vgic.lpi_in_range(vlpi) {
            return Err(CmdError::BadLpi(vlpi));
        }
        if vgic.lpi_target(vlpi).is_some() {
            return Err(CmdError::LpiInUse(vlpi));
        }
        let host_lpi = host.map_event(device, event, LpiTarget { vcpu: vcpu as u16, vlpi }).ok_or(CmdError::Host)?;
        let prop = Self::read_prop(vgic, mem, vcpu, vlpi);
        if vgic.lpi_map(vlpi, vcpu, prop).is_err() {
            host.unmap_event(device, event, host_lpi);
            return Err(CmdError::BadLpi(vlpi));
        }
        if let Some(d) = self.devices.get_mut(&device) {
            d.events.insert(event, Ite { vlpi, icid, host_lpi });
        }
        Ok(Self::vcpu_bit(vcpu))
    }

    /// Deliver virtual LPI `vlpi` (its host LPI fired): pend it in the vGIC. Returns the vCPU
    /// to kick, `None` if it is no longer mapped.
    pub fn deliver(vgic: &mut Vgic, vlpi: u32) -> Option<usize> {
        vgic.lpi_set_pending(vlpi, true)
    }
}
