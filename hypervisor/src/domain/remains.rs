//! What is left of a destroyed domain while other domains still map its frames (Xen's dying
//! domain after `domain_kill`): the references that keep frames alive, and which frames go
//! back to the pool once those references are gone. Xen keeps a page while a grant mapping
//! (the mapper's maptrack entry) or a foreign mapping (the mapper's p2m entry) references it;
//! the domain itself lingers, its id taken, until its last page is freed. Pure bookkeeping:
//! `hypercall::teardown` finds the references and asks, each time it looks again, whether
//! each one still holds.

use super::DomId;
use alloc::vec::Vec;

/// Who keeps a frame alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// A grant mapping: handle `handle` of `mapper`'s maptrack.
    Grant { mapper: DomId, handle: u32 },
    /// A stage-2 entry of `mapper` at `ipa` (a foreign map, a grant's page or its bus alias,
    /// a grant-table frame acquired as a resource).
    Leaf { mapper: DomId, ipa: u64 },
}

/// One reference to frame `pa` of the dying domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ref {
    pub holder: Holder,
    pub pa: u64,
}

/// The references still holding a dying domain's frames, and those frames.
#[derive(Debug, Default)]
pub struct Remains {
    refs: Vec<Ref>,
}

impl Remains {
    pub fn new(refs: Vec<Ref>) -> Self {
        Self { refs }
    }

    /// Distinct frames some reference holds, in ascending order.
    pub fn frames(&self) -> Vec<u64> {
        let mut f: Vec<u64> = self.refs.iter().map(|r| r.pa).collect();
        f.sort_unstable();
        f.dedup();
        f
    }

    /// Whether `pa` is held.
    pub fn holds(&self, pa: u64) -> bool {
        self.refs.iter().any(|r| r.pa == pa)
    }

    /// No reference is left: the domain can go.
    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    /// Drop every reference `still` says no longer holds its frame; the frames no reference
    /// holds any more (each once), now free to go back to the pool.
    pub fn release(&mut self, mut still: impl FnMut(&Holder, u64) -> bool) -> Vec<u64> {
        let before = self.frames();
        self.refs.retain(|r| still(&r.holder, r.pa));
        before.into_iter().filter(|&pa| !self.holds(pa)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(mapper: DomId, handle: u32, pa: u64) -> Ref {
        Ref { holder: Holder::Grant { mapper, handle }, pa }
    }
    fn leaf(mapper: DomId, ipa: u64, pa: u64) -> Ref {
        Ref { holder: Holder::Leaf { mapper, ipa }, pa }
    }

    #[test]
    fn a_frame_goes_only_when_its_last_reference_does() {
        // Frame 0x5000: dom0's grant handle 3, its stage-2 page and its bus alias; 0x6000: a
        // foreign map.
        let mut r = Remains::new(alloc::vec![grant(0, 3, 0x5000), leaf(0, 0x9_0000, 0x5000), leaf(0, 0x5000, 0x5000), leaf(0, 0x9_1000, 0x6000)]);
        assert_eq!(r.frames(), [0x5000, 0x6000]);
        // Nothing changed: nothing is freed.
        assert!(r.release(|_, _| true).is_empty());
        // The grant is unmapped (handle and page gone), the alias not yet.
        let alias = Holder::Leaf { mapper: 0, ipa: 0x5000 };
        assert!(r.release(|h, _| *h == alias || matches!(h, Holder::Leaf { ipa: 0x9_1000, .. })).is_empty());
        assert!(r.holds(0x5000) && !r.is_empty());
        // The alias goes: 0x5000 is free; the foreign map still holds 0x6000.
        assert_eq!(r.release(|h, _| *h != alias), [0x5000]);
        assert_eq!(r.frames(), [0x6000]);
        assert_eq!(r.release(|_, _| false), [0x6000]);
        assert!(r.is_empty());
        assert!(r.release(|_, _| false).is_empty(), "freed once");
    }

    #[test]
    fn frames_are_counted_once_however_many_hold_them() {
        let r = Remains::new(alloc::vec![grant(0, 1, 0x7000), grant(0, 2, 0x7000), grant(2, 1, 0x7000), leaf(0, 0x1000, 0x3000)]);
        assert_eq!(r.frames(), [0x3000, 0x7000]);
    }
}
