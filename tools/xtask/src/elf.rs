//! Turn a bare-metal ELF64 into the raw image QEMU's `-kernel` and U-Boot's `booti` load:
//! the bytes of every PT_LOAD segment laid out from the lowest physical address.

use std::fmt;

#[derive(Debug)]
pub struct ElfError(pub String);

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn u16_at(b: &[u8], o: usize) -> Result<u16, ElfError> {
    b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]])).ok_or_else(|| ElfError(format!("truncated at {o:#x}")))
}
fn u32_at(b: &[u8], o: usize) -> Result<u32, ElfError> {
    b.get(o..o + 4).map(|s| u32::from_le_bytes(s.try_into().unwrap())).ok_or_else(|| ElfError(format!("truncated at {o:#x}")))
}
fn u64_at(b: &[u8], o: usize) -> Result<u64, ElfError> {
    b.get(o..o + 8).map(|s| u64::from_le_bytes(s.try_into().unwrap())).ok_or_else(|| ElfError(format!("truncated at {o:#x}")))
}

/// The flat image and the physical address its first byte belongs at.
pub fn flatten(elf: &[u8]) -> Result<(u64, Vec<u8>), ElfError> {
    if elf.get(0..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err(ElfError("not a little-endian ELF64 file".into()));
    }
    let phoff = u64_at(elf, 0x20)? as usize;
    let phentsize = u16_at(elf, 0x36)? as usize;
    let phnum = u16_at(elf, 0x38)? as usize;
    let mut segs = Vec::new();
    for i in 0..phnum {
        let p = phoff + i * phentsize;
        if u32_at(elf, p)? != 1 {
            continue; // not PT_LOAD
        }
        let offset = u64_at(elf, p + 0x08)? as usize;
        let paddr = u64_at(elf, p + 0x18)?;
        let filesz = u64_at(elf, p + 0x20)? as usize;
        if filesz == 0 {
            continue;
        }
        let data = elf.get(offset..offset + filesz).ok_or_else(|| ElfError(format!("segment {i} runs past the file")))?;
        segs.push((paddr, data));
    }
    let base = segs.iter().map(|s| s.0).min().ok_or_else(|| ElfError("no loadable segment".into()))?;
    let end = segs.iter().map(|s| s.0 + s.1.len() as u64).max().unwrap_or(base);
    let mut out = vec![0u8; (end - base) as usize];
    for (pa, data) in segs {
        let at = (pa - base) as usize;
        out[at..at + data.len()].copy_from_slice(data);
    }
    Ok((base, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf_with(segs: &[(u64, &[u8])]) -> Vec<u8> {
        let phoff = 64usize;
        let mut data_off = phoff + 56 * segs.len();
        let mut out = vec![0u8; data_off];
        out[0..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[0x20..0x28].copy_from_slice(&(phoff as u64).to_le_bytes());
        out[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        out[0x38..0x3a].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        for (i, (pa, bytes)) in segs.iter().enumerate() {
            let p = phoff + 56 * i;
            out[p..p + 4].copy_from_slice(&1u32.to_le_bytes());
            out[p + 8..p + 16].copy_from_slice(&(data_off as u64).to_le_bytes());
            out[p + 0x18..p + 0x20].copy_from_slice(&pa.to_le_bytes());
            out[p + 0x20..p + 0x28].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            data_off += bytes.len();
        }
        for (_, bytes) in segs {
            out.extend_from_slice(bytes);
        }
        out
    }

    #[test]
    fn lays_segments_out_from_the_lowest_address() {
        let elf = elf_with(&[(0x1010, b"BB"), (0x1000, b"AA")]);
        let (base, img) = flatten(&elf).unwrap();
        assert_eq!(base, 0x1000);
        assert_eq!(img.len(), 0x12);
        assert_eq!(&img[0..2], b"AA");
        assert_eq!(&img[0x10..0x12], b"BB");
    }

    #[test]
    fn rejects_non_elf_and_truncation() {
        assert!(flatten(b"MZ\0\0").is_err());
        let mut elf = elf_with(&[(0x1000, b"AAAA")]);
        elf.truncate(elf.len() - 2);
        assert!(flatten(&elf).is_err());
    }
}
