//! `cargo xtask snow-log [DUMP]`: the Snow has no reachable UART, so xenith also keeps its log in a
//! RAM ring (platform::exynos5250::logring) at 0xBFF00000, which a warm reset keeps and dom0's DT
//! describes under /reserved-memory (mapped read-only into dom0). This decodes a dump of it, as
//! raw bytes or as the 32-bit words `busybox devmem` or U-Boot's `md.l` print; without a DUMP it
//! says how to take one.

use crate::env::Result;
use platform::exynos5250::logring::{RamLog, HEADER_SIZE, RING_MAGIC, SNOW_RING_BASE, SNOW_RING_SIZE};
use platform::{MemError, PhysMem};
use std::cell::RefCell;

pub const HOW: &str = "\
xenith's RAM log ring on the Snow: 1 MiB at 0xbff00000 (the last MiB of RAM), a 32-byte header
(magic \"XNLG\", version, capacity, head, wrapped, boots, check) then the text. It survives a warm
reset, and the next xenith boot keeps it and appends to it.

From dom0 (the ring is mapped read-only; /dev/mem reads past dom0's RAM need mmap, which
busybox devmem does), one word a line:
    a=$((0xbff00000)); while [ $a -lt $((0xc0000000)) ]; do devmem $a 32; a=$((a + 4)); done > /tmp/ring.txt
From a U-Boot prompt after a warm reset:
    md.l 0xbff00000 0x40000
then, with the output saved to a file on the host:
    cargo xtask snow-log ring.txt
";

/// A dump as physical memory at the ring's address.
struct Dump(RefCell<Vec<u8>>);

impl PhysMem for Dump {
    fn read(&self, pa: u64, buf: &mut [u8]) -> std::result::Result<(), MemError> {
        let at = pa.checked_sub(SNOW_RING_BASE).ok_or(MemError::NotMemory { pa })? as usize;
        buf.copy_from_slice(self.0.borrow().get(at..at + buf.len()).ok_or(MemError::NotMemory { pa })?);
        Ok(())
    }
    fn write(&self, pa: u64, data: &[u8]) -> std::result::Result<(), MemError> {
        let at = pa.checked_sub(SNOW_RING_BASE).ok_or(MemError::NotMemory { pa })? as usize;
        self.0.borrow_mut().get_mut(at..at + data.len()).ok_or(MemError::NotMemory { pa })?.copy_from_slice(data);
        Ok(())
    }
}

/// The bytes of a dump: raw, or text lines of 32-bit hex words (`0x474C4E58` from devmem, or
/// `bff00000: 474c4e58 00000001 ...    XNLG....` from `md.l`), little-endian as in memory.
pub fn dump_bytes(file: &[u8]) -> Vec<u8> {
    if file.len() >= 4 && u32::from_le_bytes([file[0], file[1], file[2], file[3]]) == RING_MAGIC {
        return file.to_vec();
    }
    let text = String::from_utf8_lossy(file);
    let mut out = Vec::new();
    for line in text.lines() {
        let words = match line.split_once(':') {
            Some((_, rest)) => rest.split_whitespace().take(4).collect::<Vec<_>>(),
            None => line.split_whitespace().take(1).collect(),
        };
        for w in words {
            let w = w.trim_start_matches("0x").trim_start_matches("0X");
            if w.len() != 8 {
                break;
            }
            match u32::from_str_radix(w, 16) {
                Ok(v) => out.extend_from_slice(&v.to_le_bytes()),
                Err(_) => break,
            }
        }
    }
    out
}

/// The ring's text, oldest first, and the boots it has seen.
pub fn decode(bytes: &[u8]) -> Result<(Vec<u8>, u32)> {
    if (bytes.len() as u64) < HEADER_SIZE || u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) != RING_MAGIC {
        return Err("no xenith log ring in this dump (the first word is not \"XNLG\")".into());
    }
    let capacity = u64::from(u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]));
    let size = HEADER_SIZE + capacity;
    if size > SNOW_RING_SIZE || (bytes.len() as u64) < size {
        return Err(format!("the dump holds {} bytes; its header says {size}", bytes.len()));
    }
    let mem = Dump(RefCell::new(bytes[..size as usize].to_vec()));
    let (ring, valid) = RamLog::attach(mem, SNOW_RING_BASE, size).map_err(|e| e.to_string())?;
    if !valid {
        return Err("the ring's header does not check out (not written by xenith, or torn)".into());
    }
    let mut out = vec![0u8; ring.len()];
    let n = ring.read_back(&mut out).map_err(|e| e.to_string())?;
    out.truncate(n);
    // Attaching counted one more boot.
    Ok((out, ring.boots().saturating_sub(1)))
}

pub fn main(args: &[String]) -> Result<()> {
    let Some(path) = args.first() else {
        print!("{HOW}");
        return Ok(());
    };
    let file = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let (text, boots) = decode(&dump_bytes(&file))?;
    eprintln!("xtask: xenith log ring, {} bytes, {boots} earlier boot(s) kept in it", text.len());
    print!("{}", String::from_utf8_lossy(&text));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring as xenith leaves it: written through the same RamLog, with `text` in it.
    fn ring_with(text: &[u8]) -> Vec<u8> {
        let mem = Dump(RefCell::new(vec![0u8; SNOW_RING_SIZE as usize]));
        {
            let (mut r, _) = RamLog::attach(&mem, SNOW_RING_BASE, SNOW_RING_SIZE).unwrap();
            r.write(text).unwrap();
        }
        mem.0.into_inner()
    }

    impl PhysMem for &Dump {
        fn read(&self, pa: u64, buf: &mut [u8]) -> std::result::Result<(), MemError> {
            (*self).read(pa, buf)
        }
        fn write(&self, pa: u64, data: &[u8]) -> std::result::Result<(), MemError> {
            (*self).write(pa, data)
        }
    }

    #[test]
    fn raw_devmem_and_md_dumps_decode_to_the_text() {
        let raw = ring_with(b"(xenith) xenith 0.1.0 on the Snow\n");
        assert_eq!(decode(&dump_bytes(&raw)).unwrap(), (b"(xenith) xenith 0.1.0 on the Snow\n".to_vec(), 0));
        let words: Vec<u32> = raw.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let devmem: String = words.iter().map(|w| format!("0x{w:08X}\n")).collect();
        assert_eq!(decode(&dump_bytes(devmem.as_bytes())).unwrap().0, b"(xenith) xenith 0.1.0 on the Snow\n");
        let md: String = words
            .chunks(4)
            .enumerate()
            .map(|(i, c)| format!("{:08x}: {}    ....\n", SNOW_RING_BASE + 16 * i as u64, c.iter().map(|w| format!("{w:08x}")).collect::<Vec<_>>().join(" ")))
            .collect();
        assert_eq!(decode(&dump_bytes(md.as_bytes())).unwrap().0, b"(xenith) xenith 0.1.0 on the Snow\n");
    }

    #[test]
    fn what_is_not_a_ring_is_refused() {
        assert!(decode(&[0u8; 64]).is_err());
        let mut raw = ring_with(b"x");
        raw[12] ^= 1; // head: the check fails
        assert!(decode(&raw).unwrap_err().contains("does not check out"));
        assert!(decode(&ring_with(b"x")[..4096]).is_err(), "a short dump");
    }
}
