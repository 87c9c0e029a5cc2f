//! A behavioural double of an SMMUv3's register interface, for host tests: it acknowledges
//! CR0/GBPA/IRQ_CTRL writes, consumes the command queue from memory when CMDQ_PROD is written
//! (recording the commands), raises CERROR_ILL on opcodes it is told to reject, walks the
//! stream table like the hardware does, and writes event records into the event queue.
//! Knobs make it misbehave (stuck CR0ACK, a command queue that never advances) to test the
//! driver's timeouts.

use core::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::vec::Vec;

use platform::{Clock, MemError, Mmio, PhysMem};

use super::cmd::Command;
use super::queue::QueuePtr;
use super::regs::off;
use super::ste::{L1Desc, Ste};
use super::DmaAlloc;

/// Plain RAM at `[base, base + size)`.
pub struct Ram {
    base: u64,
    data: RefCell<Vec<u8>>,
    pub cleans: Cell<u64>,
}

impl Ram {
    pub fn new(base: u64, size: usize) -> Self {
        Ram {
            base,
            data: RefCell::new(std::vec![0u8; size]),
            cleans: Cell::new(0),
        }
    }
    fn range(&self, pa: u64, len: usize) -> Result<core::ops::Range<usize>, MemError> {
        let size = self.data.borrow().len() as u64;
        if pa < self.base || pa - self.base + len as u64 > size {
            return Err(MemError::NotMemory { pa });
        }
        let start = (pa - self.base) as usize;
        Ok(start..start + len)
    }
}

impl PhysMem for &Ram {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let r = self.range(pa, buf.len())?;
        buf.copy_from_slice(&self.data.borrow()[r]);
        Ok(())
    }
    fn write(&self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        let r = self.range(pa, data.len())?;
        self.data.borrow_mut()[r].copy_from_slice(data);
        Ok(())
    }
    fn clean_dcache(&self, _pa: u64, _len: usize) {
        self.cleans.set(self.cleans.get() + 1);
    }
}

/// A clock that moves forward by `step` ns every time it is read.
pub struct TestClock {
    now: Cell<u64>,
    step: u64,
}

impl TestClock {
    pub fn new(step: u64) -> Self {
        TestClock {
            now: Cell::new(0),
            step,
        }
    }
}

impl Clock for &TestClock {
    fn now_ns(&self) -> u64 {
        let t = self.now.get();
        self.now.set(t + self.step);
        t
    }
}

/// Bump allocator over a window of the RAM.
pub struct Bump {
    pub next: u64,
    pub end: u64,
    pub allocations: usize,
}

impl Bump {
    pub fn new(start: u64, end: u64) -> Self {
        Bump {
            next: start,
            end,
            allocations: 0,
        }
    }
}

impl DmaAlloc for Bump {
    fn alloc(&mut self, size: usize, align: usize) -> Option<u64> {
        let align = align as u64;
        let pa = self.next.div_ceil(align) * align;
        let end = pa.checked_add(size as u64)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        self.allocations += 1;
        Some(pa)
    }
}

/// IDR values of QEMU 10's SMMUv3 with `stage=2`: S2P, AArch64 tables, coherent, HYP, VMID16,
/// 2-level stream table, SIDSIZE 16, CMDQS/EVENTQS 19, OAS 44 bits, 4K+64K granules, RIL.
pub fn qemu_stage2_idr() -> [u32; 6] {
    let idr0 = 1
        | (2 << 2)
        | (1 << 4)
        | (1 << 9)
        | (1 << 12)
        | (1 << 18)
        | (2 << 21)
        | (1 << 24)
        | (1 << 27);
    let idr1 = 16 | (19 << 16) | (19 << 21);
    let idr3 = 1 << 10;
    let idr5 = 4 | (1 << 4) | (1 << 6);
    [idr0, idr1, 0, idr3, 0, idr5]
}

pub struct Model<'a> {
    ram: &'a Ram,
    pub idr: Cell<[u32; 6]>,
    regs: RefCell<HashMap<usize, u32>>,
    /// Every command the double executed, in order.
    pub commands: RefCell<Vec<Command>>,
    /// CMDQ_CONS never advances (a hung SMMU).
    pub stall_cmdq: Cell<bool>,
    /// CR0ACK never follows CR0.
    pub freeze_cr0ack: Cell<bool>,
    /// Commands with this opcode are rejected with CERROR_ILL.
    pub reject_opcode: Cell<Option<u8>>,
    /// Model-owned registers.
    cmdq_cons: Cell<u32>,
    gerror: Cell<u32>,
    evtq_prod: Cell<u32>,
}

impl<'a> Model<'a> {
    pub fn new(ram: &'a Ram, idr: [u32; 6]) -> Self {
        Model {
            ram,
            idr: Cell::new(idr),
            regs: RefCell::new(HashMap::new()),
            commands: RefCell::new(Vec::new()),
            stall_cmdq: Cell::new(false),
            freeze_cr0ack: Cell::new(false),
            reject_opcode: Cell::new(None),
            cmdq_cons: Cell::new(0),
            gerror: Cell::new(0),
            evtq_prod: Cell::new(0),
        }
    }

    pub fn reg(&self, offset: usize) -> u32 {
        self.regs.borrow().get(&offset).copied().unwrap_or(0)
    }
    fn reg64(&self, offset: usize) -> u64 {
        u64::from(self.reg(offset)) | (u64::from(self.reg(offset + 4)) << 32)
    }

    pub fn cmdq_cons(&self) -> u32 {
        self.cmdq_cons.get()
    }

    /// Raise a global error (as the device would).
    pub fn raise_gerror(&self, bits: u32) {
        self.gerror.set(self.gerror.get() ^ bits);
    }

    fn cmdq_error_active(&self) -> bool {
        (self.gerror.get() ^ self.reg(off::GERRORN)) & 1 != 0
    }

    /// Consume commands from CONS to PROD, as an SMMU with CMDQEN set does.
    fn process(&self) {
        if self.stall_cmdq.get() || self.cmdq_error_active() || self.reg(off::CR0) & (1 << 3) == 0 {
            return;
        }
        let base_reg = self.reg64(off::CMDQ_BASE);
        let log2 = (base_reg & 0x1f) as u8;
        let base = base_reg & 0x000f_ffff_ffff_ffe0;
        let prod = QueuePtr::new(log2, self.reg(off::CMDQ_PROD));
        let mut cons = QueuePtr::new(log2, self.cmdq_cons.get() & 0xf_ffff);
        while cons != prod {
            let mut b = [0u8; 16];
            if (&self.ram)
                .read(base + u64::from(cons.index()) * 16, &mut b)
                .is_err()
            {
                self.fail(cons, 2); // CERROR_ABT
                return;
            }
            let w = [
                u64::from_le_bytes(b[..8].try_into().unwrap()),
                u64::from_le_bytes(b[8..].try_into().unwrap()),
            ];
            let op = b[0];
            match Command::decode(w) {
                Some(c) if self.reject_opcode.get() != Some(op) => {
                    self.commands.borrow_mut().push(c)
                }
                _ => {
                    self.fail(cons, 1); // CERROR_ILL
                    return;
                }
            }
            cons = cons.advance(1);
            self.cmdq_cons.set(cons.raw());
        }
    }

    fn fail(&self, at: QueuePtr, cerror: u32) {
        self.cmdq_cons.set(at.raw() | (cerror << 24));
        self.raise_gerror(1);
    }

    /// The STE the hardware would use for `sid`, walking the stream table from the registers.
    pub fn lookup_ste(&self, sid: u32) -> Option<Ste> {
        let base = self.reg64(off::STRTAB_BASE) & 0x000f_ffff_ffff_ffc0;
        let cfg = self.reg(off::STRTAB_BASE_CFG);
        let log2size = cfg & 0x3f;
        let split = (cfg >> 6) & 0x1f;
        let fmt = (cfg >> 16) & 3;
        if u64::from(sid) >> log2size != 0 {
            return None; // C_BAD_STREAMID
        }
        let ste_pa = if fmt == 0 {
            base + u64::from(sid) * 64
        } else {
            let desc = L1Desc(
                (&self.ram)
                    .read_u64(base + u64::from(sid >> split) * 8)
                    .ok()?,
            );
            let span = desc.span();
            if span == 0 || span > 12 {
                return None;
            }
            let idx = u64::from(sid & ((1 << split) - 1));
            if idx >= 1 << (span - 1) {
                return None;
            }
            desc.l2ptr() + idx * 64
        };
        let mut w = [0u64; 8];
        for (i, word) in w.iter_mut().enumerate() {
            *word = (&self.ram).read_u64(ste_pa + i as u64 * 8).ok()?;
        }
        Some(Ste(w))
    }

    /// Write an event record into the event queue (setting the overflow flag if it is full).
    pub fn inject_event(&self, rec: [u64; 4]) {
        let base_reg = self.reg64(off::EVENTQ_BASE);
        let log2 = (base_reg & 0x1f) as u8;
        let base = base_reg & 0x000f_ffff_ffff_ffe0;
        let prod = QueuePtr::new(log2, self.evtq_prod.get() & 0xf_ffff);
        let cons = QueuePtr::new(log2, self.reg(off::EVENTQ_CONS) & 0xf_ffff);
        if QueuePtr::is_full(prod, cons) {
            self.evtq_prod.set(self.evtq_prod.get() ^ (1 << 31));
            return;
        }
        let mut bytes = [0u8; 32];
        for (i, w) in rec.iter().enumerate() {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        (&self.ram)
            .write(base + u64::from(prod.index()) * 32, &bytes)
            .unwrap();
        let next = prod.advance(1).raw() | (self.evtq_prod.get() & (1 << 31));
        self.evtq_prod.set(next);
    }
}

impl Mmio for &Model<'_> {
    fn read32(&self, offset: usize) -> u32 {
        match offset {
            o if o <= off::IDR5 && o % 4 == 0 => self.idr.get()[o / 4],
            o if o == off::CR0ACK => {
                if self.freeze_cr0ack.get() {
                    0
                } else {
                    self.reg(off::CR0)
                }
            }
            o if o == off::IRQ_CTRLACK => self.reg(off::IRQ_CTRL),
            o if o == off::CMDQ_CONS => self.cmdq_cons.get(),
            o if o == off::GERROR => self.gerror.get(),
            o if o == off::EVENTQ_PROD => self.evtq_prod.get(),
            o => self.reg(o),
        }
    }

    fn write32(&self, offset: usize, value: u32) {
        match offset {
            o if o == off::GBPA => {
                // The update completes at once.
                self.regs.borrow_mut().insert(o, value & !(1 << 31));
            }
            o if o == off::CMDQ_CONS => self.cmdq_cons.set(value),
            o if o == off::EVENTQ_PROD => self.evtq_prod.set(value),
            o => {
                self.regs.borrow_mut().insert(o, value);
                if o == off::CMDQ_PROD || o == off::GERRORN || o == off::CR0 {
                    self.process();
                }
            }
        }
    }
}
