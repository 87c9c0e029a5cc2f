//! The raw trap instructions.

#[cfg(target_arch = "aarch64")]
mod imp {
    use core::arch::asm;

    macro_rules! hypercall_fn {
        ($(#[$m:meta])* $name:ident ($($a:ident),*)) => {
            $(#[$m])*
            ///
            /// # Safety
            /// The hypervisor reads and writes guest memory at any addresses the arguments name:
            /// they must be valid for the operation (or deliberately invalid in a test that
            /// expects -EFAULT).
            #[inline(always)]
            pub unsafe fn $name(nr: usize $(, $a: usize)*) -> i64 {
                let args: [usize; 5] = hypercall_fn!(@pad $($a),*);
                let ret: usize;
                // SAFETY: the caller vouches for the pointers; all registers Xen may change are
                // declared as outputs, and memory is not marked as untouched.
                unsafe {
                    asm!(
                        "hvc #0xEA1",
                        inlateout("x0") args[0] => ret,
                        inlateout("x1") args[1] => _,
                        inlateout("x2") args[2] => _,
                        inlateout("x3") args[3] => _,
                        inlateout("x4") args[4] => _,
                        inlateout("x16") nr => _,
                        options(nostack),
                    );
                }
                ret as i64
            }
        };
        (@pad) => { [0; 5] };
        (@pad $a0:ident) => { [$a0, 0, 0, 0, 0] };
        (@pad $a0:ident, $a1:ident) => { [$a0, $a1, 0, 0, 0] };
        (@pad $a0:ident, $a1:ident, $a2:ident) => { [$a0, $a1, $a2, 0, 0] };
        (@pad $a0:ident, $a1:ident, $a2:ident, $a3:ident) => { [$a0, $a1, $a2, $a3, 0] };
        (@pad $a0:ident, $a1:ident, $a2:ident, $a3:ident, $a4:ident) => { [$a0, $a1, $a2, $a3, $a4] };
    }

    hypercall_fn!(/// Hypercall `nr` with no argument.
        hypercall0());
    hypercall_fn!(/// Hypercall `nr` with one argument.
        hypercall1(a0));
    hypercall_fn!(/// Hypercall `nr` with two arguments.
        hypercall2(a0, a1));
    hypercall_fn!(/// Hypercall `nr` with three arguments.
        hypercall3(a0, a1, a2));
    hypercall_fn!(/// Hypercall `nr` with four arguments.
        hypercall4(a0, a1, a2, a3));
    hypercall_fn!(/// Hypercall `nr` with five arguments.
        hypercall5(a0, a1, a2, a3, a4));

    /// An SMCCC / PSCI call through `hvc #0`: function ID and up to 7 arguments in x0..x7, results
    /// in x0..x3. x4..x17 are treated as clobbered (SMCCC 1.0 allows it).
    ///
    /// # Safety
    /// Some functions have effects on the whole VM (CPU_ON with an entry point, SYSTEM_OFF).
    #[inline(always)]
    pub unsafe fn smccc_call(fid: u32, args: [usize; 7]) -> [usize; 4] {
        let (r0, r1, r2, r3);
        // SAFETY: see the function's contract; every register the callee may change is an output.
        unsafe {
            asm!(
                "hvc #0",
                inlateout("x0") fid as usize => r0,
                inlateout("x1") args[0] => r1,
                inlateout("x2") args[1] => r2,
                inlateout("x3") args[2] => r3,
                inlateout("x4") args[3] => _,
                inlateout("x5") args[4] => _,
                inlateout("x6") args[5] => _,
                inlateout("x7") args[6] => _,
                lateout("x8") _, lateout("x9") _, lateout("x10") _, lateout("x11") _,
                lateout("x12") _, lateout("x13") _, lateout("x14") _, lateout("x15") _,
                lateout("x16") _, lateout("x17") _,
                options(nostack),
            );
        }
        [r0, r1, r2, r3]
    }
}

#[cfg(target_arch = "arm")]
mod imp {
    use core::arch::asm;

    macro_rules! hypercall_fn {
        ($(#[$m:meta])* $name:ident ($($a:ident),*)) => {
            $(#[$m])*
            ///
            /// # Safety
            /// The hypervisor reads and writes guest memory at any addresses the arguments name:
            /// they must be valid for the operation (or deliberately invalid in a test that
            /// expects -EFAULT).
            #[inline(always)]
            pub unsafe fn $name(nr: usize $(, $a: usize)*) -> i64 {
                let args: [usize; 5] = hypercall_fn!(@pad $($a),*);
                let ret: usize;
                // SAFETY: as on AArch64; r4 is an argument register that Xen may change.
                unsafe {
                    asm!(
                        ".arch_extension virt",
                        "hvc #0xEA1",
                        inlateout("r0") args[0] => ret,
                        inlateout("r1") args[1] => _,
                        inlateout("r2") args[2] => _,
                        inlateout("r3") args[3] => _,
                        inlateout("r4") args[4] => _,
                        inlateout("r12") nr => _,
                        options(nostack),
                    );
                }
                ret as isize as i64
            }
        };
        (@pad) => { [0; 5] };
        (@pad $a0:ident) => { [$a0, 0, 0, 0, 0] };
        (@pad $a0:ident, $a1:ident) => { [$a0, $a1, 0, 0, 0] };
        (@pad $a0:ident, $a1:ident, $a2:ident) => { [$a0, $a1, $a2, 0, 0] };
        (@pad $a0:ident, $a1:ident, $a2:ident, $a3:ident) => { [$a0, $a1, $a2, $a3, 0] };
        (@pad $a0:ident, $a1:ident, $a2:ident, $a3:ident, $a4:ident) => { [$a0, $a1, $a2, $a3, $a4] };
    }

    hypercall_fn!(/// Hypercall `nr` with no argument.
        hypercall0());
    hypercall_fn!(/// Hypercall `nr` with one argument.
        hypercall1(a0));
    hypercall_fn!(/// Hypercall `nr` with two arguments.
        hypercall2(a0, a1));
    hypercall_fn!(/// Hypercall `nr` with three arguments.
        hypercall3(a0, a1, a2));
    hypercall_fn!(/// Hypercall `nr` with four arguments.
        hypercall4(a0, a1, a2, a3));
    hypercall_fn!(/// Hypercall `nr` with five arguments.
        hypercall5(a0, a1, a2, a3, a4));

    /// An SMCCC / PSCI call through `hvc #0`: function ID and up to 7 arguments in r0..r7, results
    /// in r0..r3; r4..r7 and r12 are treated as clobbered.
    ///
    /// # Safety
    /// Some functions have effects on the whole VM (CPU_ON with an entry point, SYSTEM_OFF).
    #[inline(always)]
    pub unsafe fn smccc_call(fid: u32, args: [usize; 7]) -> [usize; 4] {
        let (r0, r1, r2, r3);
        // SAFETY: see the function's contract. r6 and r7 may be reserved by LLVM (base and frame
        // pointer), so args[5] and args[6] are not passed (PSCI and SMCCC 1.x calls use fewer).
        unsafe {
            asm!(
                ".arch_extension virt",
                "hvc #0",
                inlateout("r0") fid as usize => r0,
                inlateout("r1") args[0] => r1,
                inlateout("r2") args[1] => r2,
                inlateout("r3") args[2] => r3,
                inlateout("r4") args[3] => _,
                inlateout("r5") args[4] => _,
                lateout("r12") _,
                options(nostack),
            );
        }
        [r0, r1, r2, r3]
    }
}

#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
pub use imp::*;
