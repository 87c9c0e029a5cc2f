//! Circular-queue index arithmetic shared by the command and event queues (spec 3.5).
//!
//! A queue of `2^log2` entries is indexed by PROD/CONS values whose low `log2` bits are the
//! slot and whose bit `log2` is the wrap flag, toggled on every pass. Equal index and equal
//! wrap = empty; equal index and different wrap = full. Values read from the device are
//! untrusted: they are masked to `log2 + 1` bits before use.

/// One queue pointer: slot index plus wrap flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuePtr {
    log2: u8,
    /// The raw value, `log2 + 1` significant bits.
    raw: u32,
}

impl QueuePtr {
    pub fn new(log2: u8, raw: u32) -> Self {
        let log2 = log2.min(19);
        QueuePtr {
            log2,
            raw: raw & Self::mask_for(log2),
        }
    }

    fn mask_for(log2: u8) -> u32 {
        (2u32 << log2) - 1
    }

    pub fn raw(&self) -> u32 {
        self.raw
    }
    pub fn index(&self) -> u32 {
        self.raw & ((1 << self.log2) - 1)
    }
    pub fn wrap(&self) -> bool {
        self.raw & (1 << self.log2) != 0
    }
    pub fn capacity(&self) -> u32 {
        1 << self.log2
    }

    /// The pointer `n` entries further on (wrap flag toggles each time the index wraps).
    pub fn advance(&self, n: u32) -> Self {
        QueuePtr::new(self.log2, self.raw.wrapping_add(n))
    }

    /// Entries between `cons` (self) and `prod`: how many are queued.
    pub fn used_until(&self, prod: QueuePtr) -> u32 {
        prod.raw.wrapping_sub(self.raw) & Self::mask_for(self.log2)
    }

    pub fn is_empty(prod: QueuePtr, cons: QueuePtr) -> bool {
        prod.raw == cons.raw
    }

    pub fn is_full(prod: QueuePtr, cons: QueuePtr) -> bool {
        prod.index() == cons.index() && prod.wrap() != cons.wrap()
    }

    /// Free slots for the producer.
    pub fn free(prod: QueuePtr, cons: QueuePtr) -> u32 {
        prod.capacity() - cons.used_until(prod).min(prod.capacity())
    }

    /// Has the consumer moved past the entry at `target` (i.e. consumed it), given that
    /// `target` was produced before `prod`? Works across wraps because the distance from
    /// `cons` to `prod` never exceeds the capacity.
    pub fn consumed(cons: QueuePtr, target: QueuePtr, prod: QueuePtr) -> bool {
        // Entries still pending = used(cons..prod); target is pending iff it lies in
        // [cons, prod), i.e. its distance from cons is below that.
        // A CONS that is further from PROD than the queue is long is nonsense from the
        // device: never treat it as progress (the caller's timeout reports it).
        let pending = cons.used_until(prod);
        let dist = cons.used_until(target);
        pending <= cons.capacity() && dist >= pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_and_toggles() {
        let p = QueuePtr::new(2, 0); // 4 entries
        let p3 = p.advance(3);
        assert_eq!((p3.index(), p3.wrap()), (3, false));
        let p4 = p.advance(4);
        assert_eq!((p4.index(), p4.wrap()), (0, true));
        let p9 = p.advance(9);
        assert_eq!(
            (p9.index(), p9.wrap()),
            (1, false),
            "two wraps: flag back to 0"
        );
        assert_eq!(p.advance(8), p);
    }

    #[test]
    fn full_and_empty() {
        let cons = QueuePtr::new(3, 0);
        assert!(QueuePtr::is_empty(cons, cons));
        assert_eq!(QueuePtr::free(cons, cons), 8);
        let prod = cons.advance(8);
        assert!(QueuePtr::is_full(prod, cons));
        assert!(!QueuePtr::is_empty(prod, cons));
        assert_eq!(QueuePtr::free(prod, cons), 0);
        let cons2 = cons.advance(5);
        assert_eq!(QueuePtr::free(prod, cons2), 5);
        assert_eq!(cons2.used_until(prod), 3);
    }

    #[test]
    fn untrusted_values_are_masked() {
        let p = QueuePtr::new(2, 0xffff_ffff);
        assert_eq!(p.raw(), 0b111);
        assert_eq!(p.index(), 3);
        assert!(p.wrap());
        let q = QueuePtr::new(40, 0); // absurd size from a broken IDR
        assert_eq!(q.capacity(), 1 << 19);
    }

    #[test]
    fn consumed_across_wrap() {
        // 4 entries; producer wrote entries at raw 6 and 7 (slots 2, 3 on wrap=1) then 8
        // (slot 0, wrap=0). Target = raw 7.
        let target = QueuePtr::new(2, 7);
        let prod = QueuePtr::new(2, 8 & 7);
        assert!(!QueuePtr::consumed(QueuePtr::new(2, 6), target, prod));
        assert!(!QueuePtr::consumed(QueuePtr::new(2, 7), target, prod));
        assert!(
            QueuePtr::consumed(QueuePtr::new(2, 0), target, prod),
            "cons wrapped past"
        );
    }
}
