//! Every domain the hypervisor runs, by id, and the machine services (physical memory, table
//! frames, TLB maintenance) that operations on them need. Hypercalls that touch two domains
//! (grant map, interdomain event channels) borrow both through [`Domains::pair_mut`].

use super::{DomId, Domain};
use crate::mm::{FrameAlloc, TlbOps};
use alloc::vec::Vec;
use platform::PhysMem;

/// The live domains.
#[derive(Debug, Default)]
pub struct Domains {
    slots: Vec<Domain>,
}

impl Domains {
    pub const fn new() -> Self {
        Self { slots: Vec::new() }
    }

    /// Add a domain; refused (returned back) if its id is taken.
    pub fn insert(&mut self, d: Domain) -> Result<(), Domain> {
        if self.get(d.id).is_some() {
            return Err(d);
        }
        self.slots.push(d);
        Ok(())
    }

    pub fn get(&self, id: DomId) -> Option<&Domain> {
        self.slots.iter().find(|d| d.id == id)
    }

    pub fn get_mut(&mut self, id: DomId) -> Option<&mut Domain> {
        self.slots.iter_mut().find(|d| d.id == id)
    }

    /// Two different domains at once; `None` if either is missing or `a == b`.
    pub fn pair_mut(&mut self, a: DomId, b: DomId) -> Option<(&mut Domain, &mut Domain)> {
        if a == b {
            return None;
        }
        let ia = self.slots.iter().position(|d| d.id == a)?;
        let ib = self.slots.iter().position(|d| d.id == b)?;
        if ia < ib {
            let (lo, hi) = self.slots.split_at_mut(ib);
            Some((&mut lo[ia], &mut hi[0]))
        } else {
            let (lo, hi) = self.slots.split_at_mut(ia);
            Some((&mut hi[0], &mut lo[ib]))
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Domain> {
        self.slots.iter()
    }

    pub fn remove(&mut self, id: DomId) -> Option<Domain> {
        let i = self.slots.iter().position(|d| d.id == id)?;
        Some(self.slots.remove(i))
    }
}

/// Machine services for changing a domain's stage 2 (add_to_physmap, grant mapping, ...).
pub struct Machine<'a> {
    pub mem: &'a dyn PhysMem,
    pub frames: &'a mut dyn FrameAlloc,
    pub tlb: &'a mut dyn TlbOps,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RamBanks;

    #[test]
    fn ids_are_unique_and_pairs_are_distinct() {
        let mut ds = Domains::new();
        assert!(ds.insert(Domain::new(0, true, true, RamBanks::default())).is_ok());
        assert!(ds.insert(Domain::new(1, false, false, RamBanks::default())).is_ok());
        assert!(ds.insert(Domain::new(1, false, false, RamBanks::default())).is_err());
        let (a, b) = ds.pair_mut(1, 0).unwrap();
        assert_eq!((a.id, b.id), (1, 0));
        assert!(ds.pair_mut(0, 0).is_none());
        assert!(ds.pair_mut(0, 7).is_none());
        assert_eq!(ds.remove(1).map(|d| d.id), Some(1));
        assert!(ds.get(1).is_none());
    }
}
