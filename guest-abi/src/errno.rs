//! Error numbers a hypercall returns as `-E...` in x0 / r0. Xen uses the Linux values on ARM.

use core::fmt;

/// Operation not permitted.
pub const EPERM: i32 = 1;
/// No such entry.
pub const ENOENT: i32 = 2;
/// No such domain (or process).
pub const ESRCH: i32 = 3;
/// Interrupted.
pub const EINTR: i32 = 4;
/// I/O error.
pub const EIO: i32 = 5;
/// No such device or address.
pub const ENXIO: i32 = 6;
/// Argument list too long.
pub const E2BIG: i32 = 7;
/// Bad descriptor (port, handle).
pub const EBADF: i32 = 9;
/// Try again.
pub const EAGAIN: i32 = 11;
/// Out of memory.
pub const ENOMEM: i32 = 12;
/// Permission denied.
pub const EACCES: i32 = 13;
/// Bad guest address.
pub const EFAULT: i32 = 14;
/// Resource busy (already registered).
pub const EBUSY: i32 = 16;
/// Already exists.
pub const EEXIST: i32 = 17;
/// Cross-domain link.
pub const EXDEV: i32 = 18;
/// No such device.
pub const ENODEV: i32 = 19;
/// Invalid argument.
pub const EINVAL: i32 = 22;
/// No space left.
pub const ENOSPC: i32 = 28;
/// Read-only.
pub const EROFS: i32 = 30;
/// Argument out of domain (e.g. a continuation field too large).
pub const EDOM: i32 = 33;
/// Result out of range.
pub const ERANGE: i32 = 34;
/// Function not implemented (unknown hypercall or sub-op).
pub const ENOSYS: i32 = 38;
/// No data available.
pub const ENODATA: i32 = 61;
/// Value too large.
pub const EOVERFLOW: i32 = 75;
/// Hypervisor-internal "restart this call"; never seen by a guest.
pub const ERESTART: i32 = 85;
/// Operation not supported.
pub const EOPNOTSUPP: i32 = 95;
/// No buffer space.
pub const ENOBUFS: i32 = 105;
/// Timed out.
pub const ETIMEDOUT: i32 = 110;

/// Largest errno a raw return is treated as; more negative values are data, not errors.
pub const MAX_ERRNO: i32 = 4095;

/// A positive Xen errno value, as carried (negated) in a hypercall's return register.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Errno(pub i32);

impl Errno {
    /// See [`EPERM`].
    pub const PERM: Errno = Errno(EPERM);
    /// See [`ENOENT`].
    pub const NOENT: Errno = Errno(ENOENT);
    /// See [`ESRCH`].
    pub const SRCH: Errno = Errno(ESRCH);
    /// See [`EFAULT`].
    pub const FAULT: Errno = Errno(EFAULT);
    /// See [`EBUSY`].
    pub const BUSY: Errno = Errno(EBUSY);
    /// See [`EEXIST`].
    pub const EXIST: Errno = Errno(EEXIST);
    /// See [`EINVAL`].
    pub const INVAL: Errno = Errno(EINVAL);
    /// See [`ENOSYS`].
    pub const NOSYS: Errno = Errno(ENOSYS);
    /// See [`EOPNOTSUPP`].
    pub const OPNOTSUPP: Errno = Errno(EOPNOTSUPP);

    /// The value a hypercall returns for this error (`-errno`).
    pub const fn to_ret(self) -> i64 {
        -(self.0 as i64)
    }

    /// The symbolic name (`"EINVAL"`), or `None` for a number this crate does not name.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            EPERM => "EPERM",
            ENOENT => "ENOENT",
            ESRCH => "ESRCH",
            EINTR => "EINTR",
            EIO => "EIO",
            ENXIO => "ENXIO",
            E2BIG => "E2BIG",
            EBADF => "EBADF",
            EAGAIN => "EAGAIN",
            ENOMEM => "ENOMEM",
            EACCES => "EACCES",
            EFAULT => "EFAULT",
            EBUSY => "EBUSY",
            EEXIST => "EEXIST",
            EXDEV => "EXDEV",
            ENODEV => "ENODEV",
            EINVAL => "EINVAL",
            ENOSPC => "ENOSPC",
            EROFS => "EROFS",
            EDOM => "EDOM",
            ERANGE => "ERANGE",
            ENOSYS => "ENOSYS",
            ENODATA => "ENODATA",
            EOVERFLOW => "EOVERFLOW",
            ERESTART => "ERESTART",
            EOPNOTSUPP => "EOPNOTSUPP",
            ENOBUFS => "ENOBUFS",
            ETIMEDOUT => "ETIMEDOUT",
            _ => return None,
        })
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "-{n}"),
            None => write!(f, "-errno {}", self.0),
        }
    }
}

/// The hypercall return value for `errno` (a positive errno constant): `-errno`.
pub const fn ret(errno: i32) -> i64 {
    -(errno as i64)
}

/// Splits a raw hypercall return into success (the value, >= 0 or a large negative datum) and
/// error (a value in `-MAX_ERRNO..=-1`).
pub const fn check(raw: i64) -> Result<i64, Errno> {
    if raw < 0 && raw >= -(MAX_ERRNO as i64) {
        Err(Errno(-raw as i32))
    } else {
        Ok(raw)
    }
}

/// Like [`check`] for a call whose only success value is 0.
pub const fn check_zero(raw: i64) -> Result<(), Errno> {
    match check(raw) {
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_splits_errors_from_values() {
        assert_eq!(check(0), Ok(0));
        assert_eq!(check(0x40011), Ok(0x40011));
        assert_eq!(check(-22), Err(Errno::INVAL));
        assert_eq!(check(-1), Err(Errno::PERM));
        assert_eq!(check(-4095), Err(Errno(4095)));
        assert_eq!(check(-4096), Ok(-4096));
        assert_eq!(check(i64::MIN), Ok(i64::MIN));
        assert_eq!(check_zero(5), Ok(()));
        assert_eq!(check_zero(-38), Err(Errno::NOSYS));
    }

    #[test]
    fn ret_and_names_round_trip() {
        assert_eq!(ret(EFAULT), -14);
        assert_eq!(Errno::NOSYS.to_ret(), -38);
        assert_eq!(Errno(EINVAL).name(), Some("EINVAL"));
        assert_eq!(Errno(1234).name(), None);
        for e in [EPERM, ENOENT, ESRCH, EFAULT, EBUSY, EEXIST, EINVAL, ENOSYS, EOPNOTSUPP, ETIMEDOUT] {
            assert_eq!(check(ret(e)), Err(Errno(e)));
        }
    }

    #[test]
    fn linux_numbers() {
        assert_eq!((EDOM, ERANGE, ENODATA, EOVERFLOW, ERESTART, ENOBUFS), (33, 34, 61, 75, 85, 105));
    }
}
