//! A register-block double for host tests: registers hold what was written (or what the test
//! set), every write is logged.

use crate::hal::Mmio;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::vec::Vec;

#[derive(Default)]
pub struct Regs {
    values: RefCell<BTreeMap<usize, u32>>,
    log: RefCell<Vec<(usize, u32)>>,
}

// SAFETY: test-only double, used from one thread.
unsafe impl Sync for Regs {}
unsafe impl Send for Regs {}

impl Regs {
    pub fn set(&self, off: usize, v: u32) {
        self.values.borrow_mut().insert(off, v);
    }
    pub fn get(&self, off: usize) -> u32 {
        self.values.borrow().get(&off).copied().unwrap_or(0)
    }
    pub fn writes_to(&self, off: usize) -> Vec<u32> {
        self.log.borrow().iter().filter(|(o, _)| *o == off).map(|(_, v)| *v).collect()
    }
    pub fn log(&self) -> Vec<(usize, u32)> {
        self.log.borrow().clone()
    }
}

impl Mmio for &Regs {
    fn read32(&self, off: usize) -> u32 {
        self.get(off)
    }
    fn write32(&self, off: usize, v: u32) {
        self.log.borrow_mut().push((off, v));
        self.set(off, v);
    }
}
