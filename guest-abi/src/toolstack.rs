//! `sysctl` (hypercall 35) and `domctl` (hypercall 36): the toolstack's interface (Xen 4.17:
//! interface version 0x15 for both). Each call passes one fixed-size struct: a header (command,
//! interface version, and for domctl the domain) and a 128-byte union of per-command payloads.
//! The payload structs below are laid out as on arm64 (and arm32: every 64-bit field is
//! 8-aligned there too).

use crate::{DomId, GuestHandle};

/// The interface version every sysctl and domctl carries (Xen 4.17).
pub const XEN_SYSCTL_INTERFACE_VERSION: u32 = 0x15;
/// The interface version every domctl carries (Xen 4.17).
pub const XEN_DOMCTL_INTERFACE_VERSION: u32 = 0x15;

/// sysctl commands.
pub mod sysctl {
    /// Read the hypervisor's console ring.
    pub const READCONSOLE: u32 = 1;
    /// Trace buffers.
    pub const TBUF_OP: u32 = 2;
    /// Host CPUs, memory and capabilities.
    pub const PHYSINFO: u32 = 3;
    /// The scheduler's id.
    pub const SCHED_ID: u32 = 4;
    /// Domain info for a range of domains.
    pub const GETDOMAININFOLIST: u32 = 6;
    /// Idle time per CPU.
    pub const GETCPUINFO: u32 = 8;
    /// Free heap bytes in an address range.
    pub const AVAILHEAP: u32 = 9;
    /// CPU topology.
    pub const CPUTOPOINFO: u32 = 16;
    /// NUMA nodes.
    pub const NUMAINFO: u32 = 17;
    /// CPU pools.
    pub const CPUPOOL_OP: u32 = 18;
    /// Scheduler-wide parameters.
    pub const SCHEDULER_OP: u32 = 19;
}

/// domctl commands.
pub mod domctl {
    /// Create a domain.
    pub const CREATEDOMAIN: u32 = 1;
    /// Destroy a domain.
    pub const DESTROYDOMAIN: u32 = 2;
    /// Pause a domain (the controller's pause count).
    pub const PAUSEDOMAIN: u32 = 3;
    /// Undo a [`PAUSEDOMAIN`].
    pub const UNPAUSEDOMAIN: u32 = 4;
    /// One domain's info (or the next one up).
    pub const GETDOMAININFO: u32 = 5;
    /// Set a vCPU's affinity.
    pub const SETVCPUAFFINITY: u32 = 9;
    /// Set a domain's memory limit.
    pub const MAX_MEM: u32 = 11;
    /// Set a vCPU's register state.
    pub const SETVCPUCONTEXT: u32 = 12;
    /// Read a vCPU's register state.
    pub const GETVCPUCONTEXT: u32 = 13;
    /// One vCPU's state.
    pub const GETVCPUINFO: u32 = 14;
    /// Create the vCPUs.
    pub const MAX_VCPUS: u32 = 15;
    /// Per-domain scheduler parameters.
    pub const SCHEDULER_OP: u32 = 16;
    /// Set the domain handle (UUID).
    pub const SETDOMAINHANDLE: u32 = 17;
    /// Read a vCPU's affinity.
    pub const GETVCPUAFFINITY: u32 = 25;
    /// Set the NUMA node affinity.
    pub const SETNODEAFFINITY: u32 = 68;
    /// Read the NUMA node affinity.
    pub const GETNODEAFFINITY: u32 = 69;
    /// Set the guest's register width (32 or 64) before it has memory.
    pub const SET_ADDRESS_SIZE: u32 = 35;
    /// Read the register width (x86 only: ARM answers -ENOSYS).
    pub const GET_ADDRESS_SIZE: u32 = 36;
    /// Clean and invalidate a range of the guest's memory to the point of coherency.
    pub const CACHEFLUSH: u32 = 71;
    /// Read the size of the domain's stage-2 table pool.
    pub const GET_PAGING_MEMPOOL_SIZE: u32 = 85;
    /// Set the size of the domain's stage-2 table pool.
    pub const SET_PAGING_MEMPOOL_SIZE: u32 = 86;
}

/// `XEN_DOMCTL_CDF_*`: createdomain flags.
pub mod cdf {
    /// An HVM guest (required on ARM).
    pub const HVM: u32 = 1 << 0;
    /// Hardware-assisted paging (required on ARM).
    pub const HAP: u32 = 1 << 1;
    /// Memory integrity checked by tboot (x86).
    pub const S3_INTEGRITY: u32 = 1 << 2;
    /// No out-of-sync shadow tables (x86).
    pub const OOS_OFF: u32 = 1 << 3;
    /// A xenstore domain.
    pub const XS_DOMAIN: u32 = 1 << 4;
    /// May use the IOMMU (passed-through devices).
    pub const IOMMU: u32 = 1 << 5;
    /// Nested virtualization.
    pub const NESTED_VIRT: u32 = 1 << 6;
    /// A virtual PMU.
    pub const VPMU: u32 = 1 << 7;
    /// Every flag Xen 4.17 knows.
    pub const ALL: u32 = (1 << 8) - 1;
}

/// `XEN_DOMCTL_IOMMU_no_sharept`: the IOMMU must not share the stage-2 tables.
pub const XEN_DOMCTL_IOMMU_NO_SHAREPT: u32 = 1;
/// `XEN_DOMCTL_GRANT_version_mask`: createdomain's grant_opts bits naming the grant version.
pub const XEN_DOMCTL_GRANT_VERSION_MASK: u32 = 0xf;
/// `XEN_DOMCTL_CONFIG_GIC_NATIVE`: the host's GIC version (filled in by createdomain).
pub const XEN_DOMCTL_CONFIG_GIC_NATIVE: u8 = 0;
/// `XEN_DOMCTL_CONFIG_GIC_V2`.
pub const XEN_DOMCTL_CONFIG_GIC_V2: u8 = 1;
/// `XEN_DOMCTL_CONFIG_GIC_V3`.
pub const XEN_DOMCTL_CONFIG_GIC_V3: u8 = 2;
/// `XEN_DOMCTL_CONFIG_TEE_NONE`.
pub const XEN_DOMCTL_CONFIG_TEE_NONE: u16 = 0;

/// Scheduler ids (`XEN_SCHEDULER_*`).
pub const XEN_SCHEDULER_CREDIT: u32 = 5;
/// credit2.
pub const XEN_SCHEDULER_CREDIT2: u32 = 6;
/// null: one vCPU per physical CPU.
pub const XEN_SCHEDULER_NULL: u32 = 9;

/// `XEN_DOMCTL_SCHEDOP_putinfo`.
pub const SCHEDOP_PUTINFO: u32 = 0;
/// `XEN_DOMCTL_SCHEDOP_getinfo`.
pub const SCHEDOP_GETINFO: u32 = 1;
/// `XEN_DOMCTL_SCHEDOP_putvcpuinfo`.
pub const SCHEDOP_PUTVCPUINFO: u32 = 2;
/// `XEN_DOMCTL_SCHEDOP_getvcpuinfo`.
pub const SCHEDOP_GETVCPUINFO: u32 = 3;

/// cpupool_op sub-ops.
pub const CPUPOOL_OP_CREATE: u32 = 1;
/// Destroy a pool.
pub const CPUPOOL_OP_DESTROY: u32 = 2;
/// The pool with the given id or the next one up.
pub const CPUPOOL_OP_INFO: u32 = 3;
/// Add a CPU to a pool.
pub const CPUPOOL_OP_ADDCPU: u32 = 4;
/// Remove a CPU from a pool.
pub const CPUPOOL_OP_RMCPU: u32 = 5;
/// Move a domain to a pool.
pub const CPUPOOL_OP_MOVEDOMAIN: u32 = 6;
/// CPUs in no pool.
pub const CPUPOOL_OP_FREEINFO: u32 = 7;

/// `XEN_DOMINF_*` flags of [`GetDomainInfo::flags`].
pub mod dominf {
    /// Dying.
    pub const DYING: u32 = 1 << 0;
    /// An HVM guest.
    pub const HVM_GUEST: u32 = 1 << 1;
    /// Shut down.
    pub const SHUTDOWN: u32 = 1 << 2;
    /// Paused by the controller.
    pub const PAUSED: u32 = 1 << 3;
    /// Every online vCPU blocked.
    pub const BLOCKED: u32 = 1 << 4;
    /// Some vCPU running.
    pub const RUNNING: u32 = 1 << 5;
    /// Hardware-assisted paging (every ARM domain).
    pub const HAP: u32 = 1 << 8;
    /// Shift of the shutdown code.
    pub const SHUTDOWN_SHIFT: u32 = 16;
}

/// `XEN_VCPUAFFINITY_HARD`.
pub const XEN_VCPUAFFINITY_HARD: u32 = 1;
/// `XEN_VCPUAFFINITY_SOFT`.
pub const XEN_VCPUAFFINITY_SOFT: u32 = 2;
/// `XEN_VCPUAFFINITY_FORCE`.
pub const XEN_VCPUAFFINITY_FORCE: u32 = 4;

/// `XEN_SYSCTL_PHYSCAP_*`.
pub mod physcap {
    /// HVM guests.
    pub const HVM: u32 = 1 << 0;
    /// Device passthrough behind an IOMMU.
    pub const DIRECTIO: u32 = 1 << 2;
    /// Hardware-assisted paging.
    pub const HAP: u32 = 1 << 3;
    /// A virtual PMU for guests.
    pub const VPMU: u32 = 1 << 7;
    /// The IOMMU shares the stage-2 tables.
    pub const IOMMU_HAP_PT_SHARE: u32 = 1 << 5;
    /// Grant table v1.
    pub const GNTTAB_V1: u32 = 1 << 8;
}

/// The sysctl argument: header and a 128-byte payload union.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenSysctl {
    /// `XEN_SYSCTL_*` command.
    pub cmd: u32,
    /// [`XEN_SYSCTL_INTERFACE_VERSION`].
    pub interface_version: u32,
    /// The command's payload.
    pub u: [u64; 16],
}
crate::layout!(XenSysctl, 136; cmd @ 0, interface_version @ 4, u @ 8);

impl Default for XenSysctl {
    fn default() -> Self {
        Self { cmd: 0, interface_version: 0, u: [0; 16] }
    }
}

/// The domctl argument: header and a 128-byte payload union.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenDomctl {
    /// `XEN_DOMCTL_*` command.
    pub cmd: u32,
    /// [`XEN_DOMCTL_INTERFACE_VERSION`].
    pub interface_version: u32,
    /// The domain the command is about.
    pub domain: DomId,
    /// Padding.
    pub pad: [u16; 3],
    /// The command's payload.
    pub u: [u64; 16],
}
crate::layout!(XenDomctl, 144; cmd @ 0, interface_version @ 4, domain @ 8, u @ 16);

impl Default for XenDomctl {
    fn default() -> Self {
        Self { cmd: 0, interface_version: 0, domain: 0, pad: [0; 3], u: [0; 16] }
    }
}

/// A payload struct of the 128-byte union: plain integers, at most 128 bytes.
///
/// # Safety
/// Implementors are `#[repr(C)]` structs of integers (every byte pattern valid) no larger than
/// 128 bytes.
pub unsafe trait Payload: Copy + Default {}

/// Read payload `T` from a union.
pub fn payload<T: Payload>(u: &[u64; 16]) -> T {
    const { assert!(core::mem::size_of::<T>() <= 128) };
    let mut v = T::default();
    // SAFETY: `T: Payload` is plain integers of at most 128 bytes (checked above), so any bytes
    // of the union are a valid `T`; the two regions do not overlap.
    unsafe { core::ptr::copy_nonoverlapping(u.as_ptr() as *const u8, &mut v as *mut T as *mut u8, core::mem::size_of::<T>()) };
    v
}

/// Write payload `T` into a union (the bytes past it stay as they are).
pub fn set_payload<T: Payload>(u: &mut [u64; 16], v: &T) {
    const { assert!(core::mem::size_of::<T>() <= 128) };
    // SAFETY: as in `payload`: at most 128 bytes from a plain-integer struct into the union.
    unsafe { core::ptr::copy_nonoverlapping(v as *const T as *const u8, u.as_mut_ptr() as *mut u8, core::mem::size_of::<T>()) };
}

macro_rules! payloads {
    ($($t:ty),*) => { $(
        // SAFETY: a `#[repr(C)]` struct of integers below, sized by its `layout!` check.
        unsafe impl Payload for $t {}
    )* };
}

/// A bitmap in guest memory (`struct xenctl_bitmap`): bit n is byte n / 8, bit n % 8.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenctlBitmap {
    /// The bytes.
    pub bitmap: GuestHandle,
    /// Bits the guest's buffer holds.
    pub nr_bits: u32,
    /// Padding.
    pub pad: u32,
}
crate::layout!(XenctlBitmap, 16; bitmap @ 0, nr_bits @ 8);

/// `XEN_SYSCTL_physinfo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Physinfo {
    /// Threads per core.
    pub threads_per_core: u32,
    /// Cores per socket.
    pub cores_per_socket: u32,
    /// CPUs online.
    pub nr_cpus: u32,
    /// Largest possible CPU id.
    pub max_cpu_id: u32,
    /// NUMA nodes online.
    pub nr_nodes: u32,
    /// Largest possible node id.
    pub max_node_id: u32,
    /// CPU (on ARM: system counter) frequency in kHz.
    pub cpu_khz: u32,
    /// `XEN_SYSCTL_PHYSCAP_*`.
    pub capabilities: u32,
    /// Architecture-specific capabilities.
    pub arch_capabilities: u32,
    /// Padding.
    pub pad: u32,
    /// Pages of RAM.
    pub total_pages: u64,
    /// Pages free.
    pub free_pages: u64,
    /// Pages waiting to be scrubbed.
    pub scrub_pages: u64,
    /// Pages claimed and not yet allocated.
    pub outstanding_pages: u64,
    /// Largest possible machine frame.
    pub max_mfn: u64,
    /// CPU feature words (x86 only).
    pub hw_cap: [u32; 8],
}
crate::layout!(Physinfo, 112; capabilities @ 28, arch_capabilities @ 32, total_pages @ 40, free_pages @ 48, scrub_pages @ 56, outstanding_pages @ 64, max_mfn @ 72, hw_cap @ 80);

/// `XEN_SYSCTL_sched_id`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedId {
    /// `XEN_SCHEDULER_*`.
    pub sched_id: u32,
}
crate::layout!(SchedId, 4);

/// `XEN_SYSCTL_getdomaininfolist`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GetDomainInfoList {
    /// Lowest domain id to report.
    pub first_domain: DomId,
    /// Padding.
    pub pad: u16,
    /// Entries the buffer holds.
    pub max_domains: u32,
    /// Array of [`GetDomainInfo`].
    pub buffer: GuestHandle,
    /// Entries written.
    pub num_domains: u32,
    /// Padding.
    pub pad2: u32,
}
crate::layout!(GetDomainInfoList, 24; first_domain @ 0, max_domains @ 4, buffer @ 8, num_domains @ 16);

/// `XEN_SYSCTL_readconsole`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadConsole {
    /// Non-zero: consume what is read.
    pub clear: u8,
    /// Non-zero: start at `index`.
    pub incremental: u8,
    /// Padding.
    pub pad: [u8; 2],
    /// In: where to start (with `incremental`); out: where reading stopped.
    pub index: u32,
    /// Where to write.
    pub buffer: GuestHandle,
    /// In: buffer size; out: bytes written.
    pub count: u32,
    /// Padding.
    pub pad2: u32,
}
crate::layout!(ReadConsole, 24; clear @ 0, incremental @ 1, index @ 4, buffer @ 8, count @ 16);

/// `XEN_SYSCTL_getcpuinfo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GetCpuInfo {
    /// Entries the buffer holds.
    pub max_cpus: u32,
    /// Padding.
    pub pad: u32,
    /// Array of u64 idle times (ns).
    pub info: GuestHandle,
    /// Entries written.
    pub nr_cpus: u32,
    /// Padding.
    pub pad2: u32,
}
crate::layout!(GetCpuInfo, 24; max_cpus @ 0, info @ 8, nr_cpus @ 16);

/// `XEN_SYSCTL_cputopoinfo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTopoInfo {
    /// In: entries the buffer holds; out: CPUs reported (or that there are, with no buffer).
    pub num_cpus: u32,
    /// Padding.
    pub pad: u32,
    /// Array of [`CpuTopo`].
    pub cputopo: GuestHandle,
}
crate::layout!(CpuTopoInfo, 16; num_cpus @ 0, cputopo @ 8);

/// One CPU of [`CpuTopoInfo`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTopo {
    /// Core id.
    pub core: u32,
    /// Socket id.
    pub socket: u32,
    /// NUMA node.
    pub node: u32,
}
crate::layout!(CpuTopo, 12);

/// `XEN_SYSCTL_numainfo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NumaInfo {
    /// In: entries the buffers hold; out: nodes reported (or that there are).
    pub num_nodes: u32,
    /// Padding.
    pub pad: u32,
    /// Array of [`MemInfo`].
    pub meminfo: GuestHandle,
    /// num_nodes x num_nodes u32 distances.
    pub distance: GuestHandle,
}
crate::layout!(NumaInfo, 24; num_nodes @ 0, meminfo @ 8, distance @ 16);

/// One node of [`NumaInfo`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// Bytes of RAM.
    pub memsize: u64,
    /// Bytes free.
    pub memfree: u64,
}
crate::layout!(MemInfo, 16);

/// `XEN_SYSCTL_cpupool_op`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpupoolOp {
    /// `CPUPOOL_OP_*`.
    pub op: u32,
    /// Pool id.
    pub cpupool_id: u32,
    /// Scheduler id.
    pub sched_id: u32,
    /// Domain (MOVEDOMAIN).
    pub domid: u32,
    /// CPU (ADDCPU, RMCPU).
    pub cpu: u32,
    /// Out: domains in the pool.
    pub n_dom: u32,
    /// Out: the pool's CPUs.
    pub cpumap: XenctlBitmap,
}
crate::layout!(CpupoolOp, 40; cpumap @ 24);

/// `XEN_DOMCTL_getdomaininfo` (and the entries of getdomaininfolist).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GetDomainInfo {
    /// The domain.
    pub domain: DomId,
    /// Padding.
    pub pad1: u16,
    /// `XEN_DOMINF_*` and the shutdown code.
    pub flags: u32,
    /// Pages held.
    pub tot_pages: u64,
    /// Pages allowed.
    pub max_pages: u64,
    /// Pages claimed.
    pub outstanding_pages: u64,
    /// Pages shared.
    pub shr_pages: u64,
    /// Pages paged out.
    pub paged_pages: u64,
    /// Frame of its shared_info page.
    pub shared_info_frame: u64,
    /// ns its vCPUs ran.
    pub cpu_time: u64,
    /// vCPUs online.
    pub nr_online_vcpus: u32,
    /// Highest vCPU id (`!0` for none).
    pub max_vcpu_id: u32,
    /// Security label.
    pub ssidref: u32,
    /// The domain's handle (UUID).
    pub handle: [u8; 16],
    /// Its CPU pool.
    pub cpupool: u32,
    /// Guest physical address bits.
    pub gpaddr_bits: u8,
    /// Padding.
    pub pad2: [u8; 7],
    /// ARM domain configuration: gic_version u8, tee_type u16 @2, nr_spis u32 @4,
    /// clock_frequency u32 @8.
    pub arch_config: [u32; 3],
    /// Padding to the struct's 8-byte alignment.
    pub pad3: u32,
}
crate::layout!(GetDomainInfo, 120; flags @ 4, tot_pages @ 8, max_pages @ 16, shared_info_frame @ 48, cpu_time @ 56, nr_online_vcpus @ 64, max_vcpu_id @ 68, ssidref @ 72, handle @ 76, cpupool @ 92, gpaddr_bits @ 96, arch_config @ 104);

/// `XEN_DOMCTL_max_mem`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaxMem {
    /// KiB.
    pub max_memkb: u64,
}
crate::layout!(MaxMem, 8);

/// `XEN_DOMCTL_getvcpuinfo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GetVcpuInfo {
    /// The vCPU.
    pub vcpu: u32,
    /// Online.
    pub online: u8,
    /// Blocked on an event.
    pub blocked: u8,
    /// Running on its CPU now.
    pub running: u8,
    /// Padding.
    pub pad: u8,
    /// ns it ran.
    pub cpu_time: u64,
    /// The physical CPU it is on.
    pub cpu: u32,
    /// Padding.
    pub pad2: u32,
}
crate::layout!(GetVcpuInfo, 24; vcpu @ 0, online @ 4, blocked @ 5, running @ 6, cpu_time @ 8, cpu @ 16);

/// `XEN_DOMCTL_setvcpuaffinity` / `getvcpuaffinity`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuAffinity {
    /// The vCPU.
    pub vcpu: u32,
    /// `XEN_VCPUAFFINITY_*`.
    pub flags: u32,
    /// Hard affinity.
    pub cpumap_hard: XenctlBitmap,
    /// Soft affinity.
    pub cpumap_soft: XenctlBitmap,
}
crate::layout!(VcpuAffinity, 40; flags @ 4, cpumap_hard @ 8, cpumap_soft @ 24);

/// `XEN_DOMCTL_scheduler_op` (the credit/credit2 form of its union).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedulerOp {
    /// `XEN_SCHEDULER_*`.
    pub sched_id: u32,
    /// `SCHEDOP_*`.
    pub cmd: u32,
    /// The scheduler's parameters (credit: weight u16, cap u16).
    pub u: [u64; 2],
}
crate::layout!(SchedulerOp, 24; sched_id @ 0, cmd @ 4, u @ 8);

/// `XEN_DOMCTL_setnodeaffinity` / `getnodeaffinity`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeAffinity {
    /// The node map.
    pub nodemap: XenctlBitmap,
}
crate::layout!(NodeAffinity, 16);

/// `XEN_DOMCTL_createdomain`: the new domain's configuration (ARM's arch part at the end).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CreateDomain {
    /// Security label (XSM).
    pub ssidref: u32,
    /// The domain's handle (UUID).
    pub handle: [u8; 16],
    /// [`cdf`] flags.
    pub flags: u32,
    /// IOMMU options ([`XEN_DOMCTL_IOMMU_NO_SHAREPT`]).
    pub iommu_opts: u32,
    /// vCPUs the domain may have.
    pub max_vcpus: u32,
    /// Highest event-channel port.
    pub max_evtchn_port: u32,
    /// Grant-table frames (negative: the hypervisor's default).
    pub max_grant_frames: i32,
    /// Maptrack frames (negative: the hypervisor's default).
    pub max_maptrack_frames: i32,
    /// Highest grant-table version in the low 4 bits.
    pub grant_opts: u32,
    /// Per-vCPU trace buffer bytes (0: none).
    pub vmtrace_size: u32,
    /// CPU pool.
    pub cpupool_id: u32,
    /// `XEN_DOMCTL_CONFIG_GIC_*` (native is replaced by the host's).
    pub gic_version: u8,
    /// Padding.
    pub pad: u8,
    /// `XEN_DOMCTL_CONFIG_TEE_*`.
    pub tee_type: u16,
    /// SPIs the domain's vGIC has (rounded up to 32).
    pub nr_spis: u32,
    /// Counter frequency to show the guest (0: the host's).
    pub clock_frequency: u32,
}
crate::layout!(CreateDomain, 68; handle @ 4, flags @ 20, max_vcpus @ 28, grant_opts @ 44, cpupool_id @ 52, gic_version @ 56, tee_type @ 58, nr_spis @ 60, clock_frequency @ 64);

/// `XEN_DOMCTL_max_vcpus`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaxVcpus {
    /// Must be the count createdomain was given.
    pub max: u32,
}
crate::layout!(MaxVcpus, 4);

/// `XEN_DOMCTL_set_address_size`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddressSize {
    /// 32 or 64.
    pub size: u32,
}
crate::layout!(AddressSize, 4);

/// `XEN_DOMCTL_cacheflush`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheFlush {
    /// First guest frame.
    pub start_pfn: u64,
    /// Frames.
    pub nr_pfns: u64,
}
crate::layout!(CacheFlush, 16; nr_pfns @ 8);

/// `XEN_DOMCTL_{get,set}_paging_mempool_size`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PagingMempool {
    /// Bytes.
    pub size: u64,
}
crate::layout!(PagingMempool, 8);

/// `VGCF_online`: the vCPU comes up when its domain is unpaused.
pub const VGCF_ONLINE: u32 = 1;

/// `struct vcpu_guest_context` (arm64): what XEN_DOMCTL_setvcpucontext gives a vCPU to start
/// with and getvcpucontext reads back.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuGuestContext {
    /// [`VGCF_ONLINE`].
    pub flags: u32,
    /// Padding.
    pub pad: u32,
    /// x0..x30 (AArch32: the banked registers in Xen's order).
    pub x: [u64; 31],
    /// ELR_EL2: where the vCPU starts.
    pub pc: u64,
    /// SPSR_EL2: the mode and masks it starts in.
    pub cpsr: u64,
    /// SPSR_EL1 (AArch32: SPSR_svc in the low half).
    pub spsr_el1: u64,
    /// AArch32 SPSR_fiq, _irq, _und, _abt.
    pub spsr_banked: [u32; 4],
    /// SP_EL0.
    pub sp_el0: u64,
    /// SP_EL1.
    pub sp_el1: u64,
    /// ELR_EL1.
    pub elr_el1: u64,
    /// SCTLR_EL1.
    pub sctlr: u64,
    /// TCR_EL1.
    pub ttbcr: u64,
    /// TTBR0_EL1.
    pub ttbr0: u64,
    /// TTBR1_EL1.
    pub ttbr1: u64,
}
crate::layout!(VcpuGuestContext, 352; x @ 8, pc @ 256, cpsr @ 264, spsr_el1 @ 272, sp_el0 @ 296, elr_el1 @ 312, sctlr @ 320, ttbr1 @ 344);

impl Default for VcpuGuestContext {
    fn default() -> Self {
        Self { flags: 0, pad: 0, x: [0; 31], pc: 0, cpsr: 0, spsr_el1: 0, spsr_banked: [0; 4], sp_el0: 0, sp_el1: 0, elr_el1: 0, sctlr: 0, ttbcr: 0, ttbr0: 0, ttbr1: 0 }
    }
}

/// `XEN_DOMCTL_setvcpucontext` / `getvcpucontext`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuContext {
    /// The vCPU.
    pub vcpu: u32,
    /// Padding.
    pub pad: u32,
    /// Its [`VcpuGuestContext`] (0 on set: reset the vCPU).
    pub ctxt: GuestHandle,
}
crate::layout!(VcpuContext, 16; ctxt @ 8);

payloads!(VcpuContext);
payloads!(CreateDomain, MaxVcpus, AddressSize, CacheFlush, PagingMempool);
payloads!(Physinfo, SchedId, GetDomainInfoList, ReadConsole, GetCpuInfo, CpuTopoInfo, NumaInfo, CpupoolOp, GetDomainInfo, MaxMem, GetVcpuInfo, VcpuAffinity, SchedulerOp, NodeAffinity);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_through_the_union() {
        let mut u = [0u64; 16];
        let p = Physinfo { nr_cpus: 3, total_pages: 0x8_0000, hw_cap: [7; 8], ..Default::default() };
        set_payload(&mut u, &p);
        assert_eq!(payload::<Physinfo>(&u), p);
        assert_eq!(u[5], 0x8_0000);
    }
}
