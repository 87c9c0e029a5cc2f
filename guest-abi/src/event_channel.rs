//! `event_channel_op` (hypercall 32): ports, VIRQs and op structs.

use crate::DomId;

/// An event-channel port number.
pub type EvtchnPort = u32;

/// Op: connect to a port another domain left unbound ([`EvtchnBindInterdomain`]).
pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
/// Op: bind a virtual IRQ ([`EvtchnBindVirq`]).
pub const EVTCHNOP_BIND_VIRQ: u32 = 1;
/// Op: bind a physical IRQ (x86).
pub const EVTCHNOP_BIND_PIRQ: u32 = 2;
/// Op: close a port ([`EvtchnClose`]).
pub const EVTCHNOP_CLOSE: u32 = 3;
/// Op: notify the remote end ([`EvtchnSend`]).
pub const EVTCHNOP_SEND: u32 = 4;
/// Op: query a port's state.
pub const EVTCHNOP_STATUS: u32 = 5;
/// Op: allocate a port for a remote domain to bind ([`EvtchnAllocUnbound`]).
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
/// Op: bind an inter-vCPU IPI port.
pub const EVTCHNOP_BIND_IPI: u32 = 7;
/// Op: deliver a port to another vCPU ([`EvtchnBindVcpu`]).
pub const EVTCHNOP_BIND_VCPU: u32 = 8;
/// Op: unmask a port, re-raising it if pending ([`EvtchnUnmask`]).
pub const EVTCHNOP_UNMASK: u32 = 9;
/// Op: close all ports of a domain.
pub const EVTCHNOP_RESET: u32 = 10;
/// Op: switch to the FIFO ABI with a control block ([`EvtchnInitControl`]).
pub const EVTCHNOP_INIT_CONTROL: u32 = 11;
/// Op: add an event-array page (FIFO ABI) ([`EvtchnExpandArray`]).
pub const EVTCHNOP_EXPAND_ARRAY: u32 = 12;
/// Op: set a port's FIFO priority.
pub const EVTCHNOP_SET_PRIORITY: u32 = 13;
/// Op: continuation of reset.
pub const EVTCHNOP_RESET_CONT: u32 = 14;

/// VIRQ: per-vCPU timer.
pub const VIRQ_TIMER: u32 = 0;
/// VIRQ: debug request from the hypervisor console.
pub const VIRQ_DEBUG: u32 = 1;
/// VIRQ: hypervisor console input (dom0).
pub const VIRQ_CONSOLE: u32 = 2;
/// VIRQ: a domain exited (dom0).
pub const VIRQ_DOM_EXC: u32 = 3;
/// VIRQ: trace buffer data.
pub const VIRQ_TBUF: u32 = 4;
/// VIRQ: debugger attention.
pub const VIRQ_DEBUGGER: u32 = 6;
/// VIRQ: oprofile.
pub const VIRQ_XENOPROF: u32 = 7;
/// VIRQ: hypervisor console ring has data.
pub const VIRQ_CON_RING: u32 = 8;
/// VIRQ: physical CPU state change.
pub const VIRQ_PCPU_STATE: u32 = 9;
/// VIRQ: memory event.
pub const VIRQ_MEM_EVENT: u32 = 10;
/// VIRQ: Argo.
pub const VIRQ_ARGO: u32 = 11;
/// VIRQ: hypervisor low on memory.
pub const VIRQ_ENOMEM: u32 = 12;
/// VIRQ: PMU.
pub const VIRQ_XENPMU: u32 = 13;
/// Number of VIRQs; larger numbers are -EINVAL.
pub const NR_VIRQS: u32 = 24;

/// Argument of `EVTCHNOP_alloc_unbound`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnAllocUnbound {
    /// In: domain that owns the new port.
    pub dom: DomId,
    /// In: domain allowed to bind to it.
    pub remote_dom: DomId,
    /// Out: the new port.
    pub port: EvtchnPort,
}
crate::layout!(EvtchnAllocUnbound, 8; dom @ 0, remote_dom @ 2, port @ 4);

/// Argument of `EVTCHNOP_bind_interdomain`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindInterdomain {
    /// In: remote domain.
    pub remote_dom: DomId,
    /// In: the remote domain's unbound port.
    pub remote_port: EvtchnPort,
    /// Out: the caller's new port.
    pub local_port: EvtchnPort,
}
crate::layout!(EvtchnBindInterdomain, 12; remote_dom @ 0, remote_port @ 4, local_port @ 8);

/// Argument of `EVTCHNOP_bind_virq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindVirq {
    /// In: VIRQ_* number.
    pub virq: u32,
    /// In: vCPU to deliver to.
    pub vcpu: u32,
    /// Out: the new port.
    pub port: EvtchnPort,
}
crate::layout!(EvtchnBindVirq, 12; virq @ 0, vcpu @ 4, port @ 8);

/// Argument of `EVTCHNOP_close`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnClose {
    /// In: port to close.
    pub port: EvtchnPort,
}
crate::layout!(EvtchnClose, 4; port @ 0);

/// Argument of `EVTCHNOP_send`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnSend {
    /// In: local port whose remote end is notified.
    pub port: EvtchnPort,
}
crate::layout!(EvtchnSend, 4; port @ 0);

/// Argument of `EVTCHNOP_bind_vcpu`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindVcpu {
    /// In: port to move.
    pub port: EvtchnPort,
    /// In: vCPU that receives it from now on.
    pub vcpu: u32,
}
crate::layout!(EvtchnBindVcpu, 8; port @ 0, vcpu @ 4);

/// Argument of `EVTCHNOP_unmask`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnUnmask {
    /// In: port to unmask.
    pub port: EvtchnPort,
}
crate::layout!(EvtchnUnmask, 4; port @ 0);

/// Argument of `EVTCHNOP_init_control` (FIFO ABI).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnInitControl {
    /// In: guest frame holding the vCPU's control block.
    pub control_gfn: u64,
    /// In: offset of the control block in that frame (8-aligned, block within the page).
    pub offset: u32,
    /// In: vCPU the block belongs to.
    pub vcpu: u32,
    /// Out: bits of the LINK field in an event word.
    pub link_bits: u8,
    /// Padding; zero.
    pub _pad: [u8; 7],
}
crate::layout!(EvtchnInitControl, 24; control_gfn @ 0, offset @ 8, vcpu @ 12, link_bits @ 16, _pad @ 17);

/// Size of the FIFO control block at `EvtchnInitControl::offset`.
pub const EVTCHN_FIFO_CONTROL_BLOCK_SIZE: usize = 72;
/// Byte offset of `head[0]` in the FIFO control block (after `ready` and a reserved word).
pub const EVTCHN_FIFO_CONTROL_HEAD: u64 = 8;
/// FIFO event word: the event is pending.
pub const EVTCHN_FIFO_PENDING: u32 = 1 << 31;
/// FIFO event word: the event is masked.
pub const EVTCHN_FIFO_MASKED: u32 = 1 << 30;
/// FIFO event word: the event is on a queue.
pub const EVTCHN_FIFO_LINKED: u32 = 1 << 29;
/// FIFO event word: the hypervisor is changing LINK (the guest must not unmask meanwhile).
pub const EVTCHN_FIFO_BUSY: u32 = 1 << 28;
/// Width of the LINK field (`EvtchnInitControl::link_bits`).
pub const EVTCHN_FIFO_LINK_BITS: u8 = 17;
/// The LINK field: the next port on the queue.
pub const EVTCHN_FIFO_LINK_MASK: u32 = (1 << EVTCHN_FIFO_LINK_BITS) - 1;
/// Queues per vCPU, one per priority (0 highest).
pub const EVTCHN_FIFO_MAX_QUEUES: usize = 16;
/// Priority of a newly bound port.
pub const EVTCHN_FIFO_PRIORITY_DEFAULT: u8 = 7;
/// The lowest priority a port can have.
pub const EVTCHN_FIFO_PRIORITY_MIN: u32 = 15;
/// Event words in one event-array page.
pub const EVTCHN_FIFO_WORDS_PER_PAGE: u32 = 1024;

/// Argument of `EVTCHNOP_expand_array` (FIFO ABI).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnExpandArray {
    /// In: guest frame to add as the next event-array page.
    pub array_gfn: u64,
}
crate::layout!(EvtchnExpandArray, 8; array_gfn @ 0);

/// `EvtchnStatus::status`: port free or reserved.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
/// Port waiting for a remote domain.
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
/// Port connected to another domain's.
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
/// Port bound to a physical IRQ.
pub const EVTCHNSTAT_PIRQ: u32 = 3;
/// Port bound to a virtual IRQ.
pub const EVTCHNSTAT_VIRQ: u32 = 4;
/// Port for IPIs between the domain's vCPUs.
pub const EVTCHNSTAT_IPI: u32 = 5;

/// Argument of `EVTCHNOP_status`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnStatus {
    /// In: the domain asked about.
    pub dom: DomId,
    /// In: the port asked about.
    pub port: EvtchnPort,
    /// Out: EVTCHNSTAT_*.
    pub status: u32,
    /// Out: the vCPU the port notifies.
    pub vcpu: u32,
    /// Out: per status: unbound (remote domain in the low 16 bits), interdomain (domain,
    /// then port at +4), pirq or virq (the number).
    pub u: [u32; 2],
}
crate::layout!(EvtchnStatus, 24; dom @ 0, port @ 4, status @ 8, vcpu @ 12, u @ 16);

/// Argument of `EVTCHNOP_bind_ipi`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindIpi {
    /// In: the vCPU to notify.
    pub vcpu: u32,
    /// Out: the new port.
    pub port: EvtchnPort,
}
crate::layout!(EvtchnBindIpi, 8; vcpu @ 0, port @ 4);

/// Argument of `EVTCHNOP_bind_pirq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindPirq {
    /// In: the physical IRQ number.
    pub pirq: u32,
    /// In: BIND_PIRQ__* flags.
    pub flags: u32,
    /// Out: the new port.
    pub port: EvtchnPort,
}
crate::layout!(EvtchnBindPirq, 12; pirq @ 0, flags @ 4, port @ 8);

/// Argument of `EVTCHNOP_reset`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnReset {
    /// In: the domain whose ports are all closed.
    pub dom: DomId,
}
crate::layout!(EvtchnReset, 2; dom @ 0);

/// Argument of `EVTCHNOP_set_priority` (FIFO ABI only).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnSetPriority {
    /// In: the port.
    pub port: EvtchnPort,
    /// In: its new priority.
    pub priority: u32,
}
crate::layout!(EvtchnSetPriority, 8; port @ 0, priority @ 4);
