//! Register-level model of the Exynos multi-core timer's global part (samsung,exynos4210-mct), for
//! the board code's host tests, and of its tie to the arch timer: on the Exynos5250 the arch
//! timer's counter is the MCT's global free-running counter, so it stands still until G_TCON's
//! START bit is set.
//!
//! Modelled behaviour:
//! - G_CNT_L/G_CNT_U (0x100/0x104): the 64-bit global counter; it counts one per tick while
//!   running. Writing them sets it (G_CNT_WSTAT bit 0/1 when the write lands).
//! - G_TCON (0x240), G_COMP0_L/U (0x200/0x204), G_COMP0_ADD_INCR (0x208): writes land
//!   `sync_ticks` ticks later (the timer's clock domain); until then reads return the old value.
//!   When a write lands its bit in G_WSTAT (0x24C) sets: G_TCON 16, COMP0_L 0, COMP0_U 1,
//!   ADD_INCR 2. Software clears a status bit by writing 1 to it.
//! - Time passes with bus accesses (one tick each) and with [`MctModel::advance`]. A model built
//!   with [`MctModel::unresponsive`] never lands a write (a clock that is gated off).

use platform::Mmio;
use std::cell::RefCell;

pub const G_CNT_L: usize = 0x100;
pub const G_CNT_U: usize = 0x104;
pub const G_CNT_WSTAT: usize = 0x110;
pub const G_COMP0_L: usize = 0x200;
pub const G_COMP0_U: usize = 0x204;
pub const G_COMP0_ADD_INCR: usize = 0x208;
pub const G_TCON: usize = 0x240;
pub const G_INT_CSTAT: usize = 0x244;
pub const G_INT_ENB: usize = 0x248;
pub const G_WSTAT: usize = 0x24C;
pub const G_TCON_START: u32 = 1 << 8;

#[derive(Default)]
struct State {
    counter: u64,
    tcon: u32,
    comp0: [u32; 2],
    add_incr: u32,
    int_enb: u32,
    wstat: u32,
    cnt_wstat: u32,
    /// Writes on their way into the timer's clock domain: (ticks left, offset, value).
    pending: Vec<(u32, usize, u32)>,
    accesses: u64,
}

pub struct MctModel {
    sync_ticks: Option<u32>,
    st: RefCell<State>,
}

impl MctModel {
    /// At reset: counter 0 and stopped; writes land 3 ticks after they are made.
    pub fn new() -> Self {
        MctModel { sync_ticks: Some(3), st: RefCell::new(State::default()) }
    }

    /// An MCT whose clock never runs: no write ever lands.
    pub fn unresponsive() -> Self {
        MctModel { sync_ticks: None, st: RefCell::new(State::default()) }
    }

    /// Let `ticks` timer cycles pass without a bus access.
    pub fn advance(&self, ticks: u32) {
        let mut st = self.st.borrow_mut();
        for _ in 0..ticks {
            Self::tick(&mut st);
        }
    }

    /// The arch timer's counter (CNTPCT) as the CPU would read it.
    pub fn arch_counter(&self) -> u64 {
        self.st.borrow().counter
    }

    pub fn running(&self) -> bool {
        self.st.borrow().tcon & G_TCON_START != 0
    }

    /// G_WSTAT's current value (bits software has not cleared yet).
    pub fn wstat(&self) -> u32 {
        self.st.borrow().wstat
    }

    /// Register accesses made so far.
    pub fn accesses(&self) -> u64 {
        self.st.borrow().accesses
    }

    fn tick(st: &mut State) {
        if st.tcon & G_TCON_START != 0 {
            st.counter = st.counter.wrapping_add(1);
        }
        let mut landed = Vec::new();
        st.pending.retain_mut(|(left, off, v)| {
            *left -= 1;
            if *left == 0 {
                landed.push((*off, *v));
                false
            } else {
                true
            }
        });
        for (off, v) in landed {
            match off {
                G_TCON => {
                    st.tcon = v;
                    st.wstat |= 1 << 16;
                }
                G_COMP0_L => {
                    st.comp0[0] = v;
                    st.wstat |= 1;
                }
                G_COMP0_U => {
                    st.comp0[1] = v;
                    st.wstat |= 2;
                }
                G_COMP0_ADD_INCR => {
                    st.add_incr = v;
                    st.wstat |= 4;
                }
                G_CNT_L => {
                    st.counter = (st.counter & !0xffff_ffff) | u64::from(v);
                    st.cnt_wstat |= 1;
                }
                G_CNT_U => {
                    st.counter = (st.counter & 0xffff_ffff) | (u64::from(v) << 32);
                    st.cnt_wstat |= 2;
                }
                _ => {}
            }
        }
    }
}

impl Default for MctModel {
    fn default() -> Self {
        Self::new()
    }
}

impl Mmio for &MctModel {
    fn read32(&self, off: usize) -> u32 {
        let mut st = self.st.borrow_mut();
        st.accesses += 1;
        MctModel::tick(&mut st);
        match off {
            G_CNT_L => st.counter as u32,
            G_CNT_U => (st.counter >> 32) as u32,
            G_CNT_WSTAT => st.cnt_wstat,
            G_COMP0_L => st.comp0[0],
            G_COMP0_U => st.comp0[1],
            G_COMP0_ADD_INCR => st.add_incr,
            G_TCON => st.tcon,
            G_INT_ENB => st.int_enb,
            G_WSTAT => st.wstat,
            _ => 0,
        }
    }

    fn write32(&self, off: usize, v: u32) {
        let mut st = self.st.borrow_mut();
        st.accesses += 1;
        MctModel::tick(&mut st);
        match off {
            G_WSTAT => st.wstat &= !v,
            G_CNT_WSTAT => st.cnt_wstat &= !v,
            G_INT_ENB => st.int_enb = v,
            G_TCON | G_COMP0_L | G_COMP0_U | G_COMP0_ADD_INCR | G_CNT_L | G_CNT_U => {
                if let Some(t) = self.sync_ticks {
                    st.pending.push((t, off, v));
                }
            }
            _ => {}
        }
    }
}
