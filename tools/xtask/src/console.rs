//! dom0's console bytes, as the hypervisor passes them to the UART. With `xenith-console-bytes`
//! on its command line, Linux dom0's /init writes `linux::console_payload()` (every byte value
//! 1..=255 and a few line-ending sequences) to its console (hvc0, i.e. console_io hypercalls) between two markers; the bytes
//! QEMU's serial port received between them are compared with Xen 4.17's, recorded in
//! tests/conformance/console-xen-4.17.hex by `cargo xtask conformance --against xen --console`.

use crate::env::{self, Result};
use crate::fixtures;
use crate::qemu::{Boot, Outcome};
use std::path::PathBuf;
use std::time::Duration;

use crate::linux::{CONSOLE_BYTES_BEGIN as BEGIN, CONSOLE_BYTES_END as END};

/// Xen 4.17's command line for the recording (the reference setup's).
const XEN_CMDLINE: &str = "dom0_mem=512M console=dtuart dtuart=/pl011@9000000 bootscrub=0 dom0_max_vcpus=1";

/// The bytes between the markers in a console capture.
pub fn segment(raw: &[u8]) -> Option<&[u8]> {
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let start = find(raw, BEGIN)? + BEGIN.len();
    let len = find(&raw[start..], END)?;
    Some(&raw[start..start + len])
}

fn expected_path() -> PathBuf {
    env::root().join("tests/conformance/console-xen-4.17.hex")
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.chunks(32).map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n").collect()
}

fn from_hex(text: &str) -> std::result::Result<Vec<u8>, String> {
    let digits: String = text.lines().filter(|l| !l.starts_with('#')).flat_map(|l| l.chars().filter(|c| !c.is_whitespace())).collect();
    if digits.len() % 2 != 0 {
        return Err("odd number of hex digits".into());
    }
    (0..digits.len()).step_by(2).map(|i| u8::from_str_radix(&digits[i..i + 2], 16).map_err(|e| format!("offset {}: {e}", i / 2))).collect()
}

/// The first offset where `a` and `b` differ, with a few bytes of each from there.
fn first_difference(a: &[u8], b: &[u8]) -> Option<String> {
    let at = a.iter().zip(b).position(|(x, y)| x != y).or((a.len() != b.len()).then_some(a.len().min(b.len())))?;
    let show = |s: &[u8]| s[at.min(s.len())..(at + 12).min(s.len())].iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
    Some(format!("at byte {at}: Xen 4.17 `{}`, xenith `{}` (lengths {} and {})", show(a), show(b), a.len(), b.len()))
}

/// Linux dom0 on `hypervisor` (1 vCPU) writing the payload.
pub fn boot(hypervisor: PathBuf, cmdline: &str) -> Boot {
    let mut b = Boot::new(hypervisor);
    b.timeout = Duration::from_secs(180);
    b.cmdline = cmdline.into();
    if let Err(e) = crate::linux::use_for(&mut b) {
        eprintln!("xtask: Linux dom0 fixtures: {e}");
        b.dom0 = Some(PathBuf::from("/nonexistent/linux-dom0-fixtures-unavailable"));
    }
    b.dom0_args = format!("{} xenith-console-bytes", crate::linux::DOM0_ARGS);
    b
}

/// The system test's check: xenith's bytes are Xen 4.17's recorded ones, exactly.
pub fn check(o: &Outcome) -> std::result::Result<(), String> {
    let path = expected_path();
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e} (record it: `cargo xtask conformance --against xen --console`)", path.display()))?;
    let xen = from_hex(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let ours = segment(&o.raw).ok_or("dom0 never wrote the console markers")?;
    if let Some(d) = first_difference(&xen, ours) {
        return Err(format!("dom0's console bytes differ from Xen 4.17's {d}"));
    }
    if !o.has(crate::linux::MARKER) || o.timed_out {
        return Err("dom0 did not reach its marker and power off".into());
    }
    Ok(())
}

/// `--against xen --console`: record what Xen 4.17 passes to the UART.
pub fn record_xen() -> Result<()> {
    let out = boot(fixtures::xen_4_17()?, XEN_CMDLINE).run()?;
    let Some(seg) = segment(&out.raw) else {
        let log = env::target_dir().join("console-xen-4.17.log");
        let _ = std::fs::write(&log, &out.raw);
        return Err(format!("Linux dom0 on Xen 4.17 never wrote the console markers; output in {}", log.display()));
    };
    let mut text = String::from("# The bytes Debian's Xen 4.17 put on QEMU virt's PL011 while Linux dom0's /init wrote\n");
    text.push_str("# linux::console_payload() to hvc0 (between the CONSOLE-BYTES markers). Written by\n");
    text.push_str(&format!("# `cargo xtask conformance --against xen --console`; Xen command line: {XEN_CMDLINE}\n"));
    text.push_str(&to_hex(seg));
    let path = expected_path();
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("console: recorded {} bytes from Xen 4.17 into {}", seg.len(), path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_hex_and_differences() {
        let raw = b"noise\r\nCONSOLE-BYTES-BEGIN\r\n\x01\x02\r\r\nCONSOLE-BYTES-END\r\n";
        let seg = segment(raw).unwrap();
        assert_eq!(seg, b"\r\n\x01\x02\r\r\n");
        assert_eq!(from_hex(&format!("# c\n{}", to_hex(seg))).unwrap(), seg);
        assert_eq!(first_difference(seg, seg), None);
        assert!(first_difference(b"\r\r\n", b"\r\n").unwrap().starts_with("at byte 1"));
        assert!(first_difference(b"ab", b"abc").unwrap().starts_with("at byte 2"));
        assert!(segment(b"CONSOLE-BYTES-BEGIN only").is_none());
    }

}
