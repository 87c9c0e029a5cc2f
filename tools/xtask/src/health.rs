//! Console lines that say a guest kernel or the hypervisor is in trouble: an oops, a panic, a
//! kernel warning, an RCU stall, a hypervisor bug, a killed domain. The runner watches for them
//! so that a dead dom0 fails a run at once, with the lines that matter, instead of at a timeout.

/// Substrings that mark trouble (Linux's oops/panic/warning/stall reports; xenith's bug and
/// kill reports; Xen's crash reports).
const PATTERNS: &[&str] = &[
    "Kernel panic - not syncing",
    "Internal error: Oops",
    "Unable to handle kernel",
    "BUG: ",
    "WARNING: CPU:",
    "rcu: INFO: ",
    "self-detected stall",
    "HYPERVISOR BUG",
    ": domain killed",
    "crashed: ",
    "hardware domain crashed",
    "Hardware Dom0 crashed",
    "Panic on CPU",
];

/// Whether one console line reports trouble.
pub fn is_trouble(line: &str) -> bool {
    PATTERNS.iter().any(|p| line.contains(p))
}

/// The report around the first trouble line in `output`: up to 5 lines before it and 40 from
/// it (an oops's registers and call trace), or `None` when the console shows none.
pub fn report(output: &str) -> Option<Vec<String>> {
    let lines: Vec<&str> = output.lines().collect();
    let first = lines.iter().position(|l| is_trouble(l))?;
    Some(lines[first.saturating_sub(5)..(first + 40).min(lines.len())].iter().map(|l| l.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_oopses_panics_and_hypervisor_trouble() {
        for l in [
            "[   12.3] Unable to handle kernel paging request at virtual address 0000000000001234",
            "[   12.4] Internal error: Oops: 0000000096000004 [#1] SMP",
            "[   13.0] Kernel panic - not syncing: sysrq triggered crash",
            "[    5.1] WARNING: CPU: 1 PID: 42 at mm/page_alloc.c:1 foo+0x10/0x20",
            "[   30.0] rcu: INFO: rcu_sched self-detected stall on CPU",
            "[    1.0] BUG: scheduling while atomic: swapper/0/0/0x00000002",
            "(xenith) HYPERVISOR BUG: panic: panicked at src/x.rs:1:1:",
            "(xenith) d1: unhandled trap EC 0x3f ISS 0x0 at 0x1000: domain killed",
            "(xenith) hardware domain crashed: restarting the machine in 5 seconds",
            "(XEN) Hardware Dom0 crashed: rebooting machine in 5 seconds.",
        ] {
            assert!(is_trouble(l), "{l}");
        }
        for l in [
            "[    0.0] Booting Linux on physical CPU 0x0000000000 [0x411fd070]",
            "(xenith) hardware domain powered off: powering off the machine",
            "(xenith) d0: data abort reading IPA 0x1 (VA 0x2, PC 0x3): not owned, abort injected",
            "XENITH-DOM0-USERSPACE-OK",
        ] {
            assert!(!is_trouble(l), "{l}");
        }
    }

    #[test]
    fn report_starts_just_before_the_first_trouble_line() {
        let mut out = String::new();
        for i in 0..20 {
            out.push_str(&format!("line {i}\n"));
        }
        out.push_str("[ 1.0] Internal error: Oops: 96000004 [#1] SMP\n");
        for i in 0..60 {
            out.push_str(&format!("trace {i}\n"));
        }
        let r = report(&out).unwrap();
        assert_eq!(r.first().map(String::as_str), Some("line 15"));
        assert_eq!(r[5], "[ 1.0] Internal error: Oops: 96000004 [#1] SMP");
        assert_eq!(r.len(), 45);
        assert!(report("all good\n").is_none());
    }
}
