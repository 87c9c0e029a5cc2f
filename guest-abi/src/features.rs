//! `XENFEAT_*`: bit numbers in the feature submaps returned by `XENVER_get_features`.

/// Number of 32-bit feature submaps Xen defines; `submap_idx` at or above this is -EINVAL.
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

/// Guest may write its own page tables (x86 PV).
pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
/// Guest may write its descriptor tables (x86 PV).
pub const XENFEAT_WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
/// The hypervisor translates guest physical addresses (always set on ARM).
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// Guest kernel runs in ring 0 (x86 PV).
pub const XENFEAT_SUPERVISOR_MODE_KERNEL: u32 = 3;
/// PAE page directory may sit above 4 GiB (x86 PV).
pub const XENFEAT_PAE_PGDIR_ABOVE_4GB: u32 = 4;
/// MMU_PT_UPDATE_PRESERVE_AD is supported (x86 PV).
pub const XENFEAT_MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
/// Highmem assist (x86 PV).
pub const XENFEAT_HIGHMEM_ASSIST: u32 = 6;
/// Grant mappings may use the PTE's available bits (x86 PV).
pub const XENFEAT_GNTTAB_MAP_AVAIL_BITS: u32 = 7;
/// Event delivery through a callback vector (x86 HVM).
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
/// Safe pvclock for HVM (x86).
pub const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 9;
/// PIRQs for HVM (x86).
pub const XENFEAT_HVM_PIRQS: u32 = 10;
/// The caller is the control/hardware domain.
pub const XENFEAT_DOM0: u32 = 11;
/// Grant maps use identity addresses (obsolete).
pub const XENFEAT_GRANT_MAP_IDENTITY: u32 = 12;
/// XENMEM_get_vnumainfo is available.
pub const XENFEAT_MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
/// Arm SMCCC calls through HVC #0 are supported.
pub const XENFEAT_ARM_SMCCC_SUPPORTED: u32 = 14;
/// The ACPI RSDP location is unrestricted (x86).
pub const XENFEAT_LINUX_RSDP_UNRESTRICTED: u32 = 15;
/// The domain's memory is NOT mapped 1:1 (GPA != PA).
pub const XENFEAT_NOT_DIRECT_MAPPED: u32 = 16;
/// The domain's memory is mapped 1:1 (GPA == PA); never set together with bit 16.
pub const XENFEAT_DIRECT_MAPPED: u32 = 17;
/// VCPUOP_register_runstate_phys_area is available.
pub const XENFEAT_RUNSTATE_PHYS_AREA: u32 = 18;
/// VCPUOP_register_vcpu_time_phys_area is available.
pub const XENFEAT_VCPU_TIME_PHYS_AREA: u32 = 19;

/// The mask bit for feature number `nr` in submap 0.
pub const fn bit(nr: u32) -> u32 {
    1 << nr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dom0_mask_from_facts() {
        // Xen's dom0 feature mask per xen-abi.md: bits 0, 2, 11, 13, 14, 17, 18.
        let m = [0, 2, 11, 13, 14, 17, 18].iter().fold(0, |m, &b| m | bit(b));
        assert_eq!(m, 0x66805);
        assert_eq!(bit(XENFEAT_DOM0) | bit(XENFEAT_AUTO_TRANSLATED_PHYSMAP), 0x804);
    }
}
