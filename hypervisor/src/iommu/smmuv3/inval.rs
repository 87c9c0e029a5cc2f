//! Planning stage-2 TLB invalidation after a p2m unmap: which commands go in front of the
//! batch's single CMD_SYNC. Pure, so a bench can count commands without an SMMU.

use super::cmd::{self, Command};

/// How to invalidate: what the SMMU supports and where the cut-over to a VMID-wide
/// invalidation lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidationPolicy {
    /// The SMMU has range-based invalidation (IDR3.RIL).
    pub range_inval: bool,
    /// Without RIL, batches of more granules than this use one TLBI_S12_VMALL instead.
    pub vmall_threshold_pages: u64,
    /// log2 of the stage-2 granule (12, 14 or 16).
    pub granule_shift: u32,
}

/// Granules touched by `[ipa, ipa + size)`: (first granule number, count). Rounds outwards.
fn granules(shift: u32, ipa: u64, size: u64) -> (u64, u64) {
    let first = ipa >> shift;
    let end = ipa.saturating_add(size).saturating_add((1u64 << shift) - 1) >> shift;
    (first, end.saturating_sub(first))
}

/// Emit the invalidation commands (not the CMD_SYNC) for `ranges` of `vmid`. Returns how many
/// were emitted; zero when the ranges are empty. Stops at the first error from `emit`.
pub fn plan_s2_invalidation<E>(
    policy: &InvalidationPolicy,
    vmid: u16,
    ranges: &[(u64, u64)],
    leaf: bool,
    mut emit: impl FnMut(Command) -> Result<(), E>,
) -> Result<usize, E> {
    let shift = policy.granule_shift;
    let total = ranges
        .iter()
        .map(|&(ipa, size)| granules(shift, ipa, size).1)
        .fold(0, u64::saturating_add);
    if total == 0 {
        return Ok(0);
    }
    let mut n = 0;
    if policy.range_inval {
        let tg = match shift {
            12 => 1,
            14 => 2,
            _ => 3,
        };
        for &(ipa, size) in ranges {
            let (first, count) = granules(shift, ipa, size);
            cmd::split_range(count, tg, |offset, range| {
                n += 1;
                emit(Command::TlbiS2Ipa {
                    vmid,
                    ipa: (first + offset) << shift,
                    leaf,
                    ttl: 0,
                    range: Some(range),
                })
            })?;
        }
    } else if total > policy.vmall_threshold_pages {
        n += 1;
        emit(Command::TlbiS12Vmall { vmid })?;
    } else {
        for &(ipa, size) in ranges {
            let (first, count) = granules(shift, ipa, size);
            for g in first..first + count {
                n += 1;
                emit(Command::TlbiS2Ipa {
                    vmid,
                    ipa: g << shift,
                    leaf,
                    ttl: 0,
                    range: None,
                })?;
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn plan(policy: InvalidationPolicy, ranges: &[(u64, u64)]) -> Vec<Command> {
        let mut v = Vec::new();
        let n = plan_s2_invalidation::<()>(&policy, 1, ranges, false, |c| {
            v.push(c);
            Ok(())
        })
        .unwrap();
        assert_eq!(n, v.len());
        v
    }

    #[test]
    fn unmap_of_1000_pages() {
        let per_page = InvalidationPolicy {
            range_inval: false,
            vmall_threshold_pages: 1000,
            granule_shift: 12,
        };
        assert_eq!(plan(per_page, &[(0x4000_0000, 1000 << 12)]).len(), 1000);
        let vmall = InvalidationPolicy {
            vmall_threshold_pages: 256,
            ..per_page
        };
        assert_eq!(
            plan(vmall, &[(0x4000_0000, 1000 << 12)]),
            [Command::TlbiS12Vmall { vmid: 1 }]
        );
        let ril = InvalidationPolicy {
            range_inval: true,
            ..per_page
        };
        assert!(plan(ril, &[(0x4000_0000, 1000 << 12)]).len() <= 3);
        assert!(plan(ril, &[(0, 0)]).is_empty());
    }

    #[test]
    fn granule_rounding_and_64k() {
        let p = InvalidationPolicy {
            range_inval: false,
            vmall_threshold_pages: 100,
            granule_shift: 16,
        };
        let cmds = plan(p, &[(0x1_8000, 0x1_0000)]);
        let ipas: Vec<u64> = cmds
            .iter()
            .map(|c| match c {
                Command::TlbiS2Ipa { ipa, .. } => *ipa,
                _ => u64::MAX,
            })
            .collect();
        assert_eq!(ipas, [0x1_0000, 0x2_0000]);
        let ril = InvalidationPolicy {
            range_inval: true,
            ..p
        };
        match plan(ril, &[(0, 0x10_0000)])[0] {
            Command::TlbiS2Ipa { range: Some(r), .. } => assert_eq!(r.tg, 3, "64K"),
            ref other => panic!("{other:?}"),
        }
    }

    #[test]
    fn emit_errors_stop_the_plan() {
        let p = InvalidationPolicy {
            range_inval: false,
            vmall_threshold_pages: 100,
            granule_shift: 12,
        };
        let mut seen = 0;
        let r = plan_s2_invalidation(&p, 1, &[(0, 10 << 12)], false, |_| {
            seen += 1;
            if seen == 3 {
                Err("full")
            } else {
                Ok(())
            }
        });
        assert_eq!(r, Err("full"));
        assert_eq!(seen, 3);
    }
}
