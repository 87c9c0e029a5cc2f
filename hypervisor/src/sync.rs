//! The hypervisor's locks, from one place so that the same code runs on spinlocks on the
//! machine and under `loom`'s model checker on the host (`RUSTFLAGS="--cfg loom"`).
//!
//! - [`Mutex`] and [`RwLock`]: `spin`'s locks whose waiting loop runs [`Relax`], normally;
//!   `loom`'s under `--cfg loom` (the models in `crate::loom_models` explore every interleaving
//!   of their lock operations).
//! - [`SpinMutex`]: always a spinlock (with [`Relax`]), for statics: `loom`'s locks cannot be
//!   built in a `const` context, and nothing a model checks lives in a static.
//! - [`Once`]: `spin`'s, for values set once at boot before other CPUs run.
//!
//! Waiting for a lock executes `yield` on AArch64, not the ISB that `core::hint::spin_loop`
//! emits there: under QEMU's single-threaded (round-robin) TCG, `-icount` included, YIELD ends
//! the translation block and lets the next vCPU run, so a CPU waiting for a lock that another
//! vCPU holds hands its time slice over instead of spinning until a timer deadline.

/// How a lock waits while another CPU holds it: one `yield` hint on AArch64.
pub struct Relax;

impl spin::RelaxStrategy for Relax {
    #[inline(always)]
    fn relax() {
        #[cfg(target_arch = "aarch64")]
        // SAFETY: YIELD is a hint with no effect on registers or memory.
        unsafe {
            core::arch::asm!("yield", options(nomem, nostack, preserves_flags))
        };
        #[cfg(not(target_arch = "aarch64"))]
        core::hint::spin_loop();
    }
}

/// A spinlock for statics (never `loom`'s).
pub type SpinMutex<T> = spin::mutex::Mutex<T, Relax>;
pub type SpinMutexGuard<'a, T> = spin::mutex::MutexGuard<'a, T, Relax>;

/// A value set once (at boot, before other CPUs run; a racing second caller waits with [`Relax`]).
pub type Once<T = ()> = spin::once::Once<T, Relax>;

#[cfg(not(loom))]
mod imp {
    use super::Relax;
    pub type Mutex<T> = spin::mutex::Mutex<T, Relax>;
    pub type MutexGuard<'a, T> = spin::mutex::MutexGuard<'a, T, Relax>;
    pub type RwLock<T> = spin::rwlock::RwLock<T, Relax>;
    pub type RwLockReadGuard<'a, T> = spin::rwlock::RwLockReadGuard<'a, T, Relax>;
    pub type RwLockWriteGuard<'a, T> = spin::rwlock::RwLockWriteGuard<'a, T, Relax>;
}

#[cfg(loom)]
mod imp {
    //! `loom`'s locks behind `spin`'s interface (guards without poisoning: a model that
    //! panics has failed anyway).
    pub type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;
    pub type RwLockReadGuard<'a, T> = loom::sync::RwLockReadGuard<'a, T>;
    pub type RwLockWriteGuard<'a, T> = loom::sync::RwLockWriteGuard<'a, T>;

    #[derive(Debug)]
    pub struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub fn new(v: T) -> Self {
            Self(loom::sync::Mutex::new(v))
        }
        pub fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap()
        }
        pub fn get_mut(&mut self) -> &mut T {
            self.0.get_mut().unwrap()
        }
    }

    impl<T: Default> Default for Mutex<T> {
        fn default() -> Self {
            Self::new(T::default())
        }
    }

    #[derive(Debug)]
    pub struct RwLock<T>(loom::sync::RwLock<T>);

    impl<T> RwLock<T> {
        pub fn new(v: T) -> Self {
            Self(loom::sync::RwLock::new(v))
        }
        pub fn read(&self) -> RwLockReadGuard<'_, T> {
            self.0.read().unwrap()
        }
        pub fn write(&self) -> RwLockWriteGuard<'_, T> {
            self.0.write().unwrap()
        }
        pub fn get_mut(&mut self) -> &mut T {
            self.0.get_mut().unwrap()
        }
    }

    impl<T: Default> Default for RwLock<T> {
        fn default() -> Self {
            Self::new(T::default())
        }
    }
}

pub use imp::*;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn locks_exclude_and_share() {
        let m = Mutex::new(1);
        *m.lock() += 1;
        assert!(m.try_lock().is_some());
        let g = m.lock();
        assert!(m.try_lock().is_none(), "held");
        drop(g);
        let rw = RwLock::new(5);
        let (a, b) = (rw.read(), rw.read());
        assert_eq!(*a + *b, 10);
        assert!(rw.try_write().is_none(), "readers keep the writer out");
        drop((a, b));
        *rw.write() = 6;
        assert_eq!(*rw.read(), 6);
    }
}
