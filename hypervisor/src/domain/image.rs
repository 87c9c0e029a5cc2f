//! Kernel image formats a domain can be built from: the arm64 `Image` (Linux's arm64 boot protocol,
//! Documentation/arch/arm64/booting.rst). The header is untrusted input; when the bytes are some other
//! format a user might plausibly pass (gzip'd vmlinuz, ARM32 zImage, ELF vmlinux), the error says which.

use core::fmt;

/// Length of the arm64 Image header.
pub const HEADER_LEN: usize = 64;
/// "ARM\x64", little-endian u32 at offset 0x38.
pub const ARM64_MAGIC: u32 = 0x644d_5241;
/// ARM32 zImage magic at offset 0x24.
pub const ZIMAGE_MAGIC: u32 = 0x016f_2818;
/// Kernels before v3.17 may leave image_size 0 and use this text_offset.
const LEGACY_TEXT_OFFSET: u64 = 0x80000;

/// Why the bytes are not a bootable arm64 Image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Fewer than 64 bytes.
    TooShort { len: usize },
    /// Magic is wrong; `looks_like` names the format the bytes appear to be, if recognised.
    NotArm64Image {
        magic: u32,
        looks_like: Option<OtherFormat>,
    },
    /// Flags bit 0 says big-endian.
    BigEndian,
    /// Reserved flag bits (4..63) are set.
    ReservedFlags { flags: u64 },
    /// text_offset is not 4 KiB aligned below 2 MiB.
    BadTextOffset { text_offset: u64 },
    /// image_size is smaller than the file's header, or absurdly large.
    BadImageSize { image_size: u64 },
}

/// Formats recognised in a rejected image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtherFormat {
    Gzip,
    ArmZImage,
    Elf,
    Uimage,
}

impl fmt::Display for OtherFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OtherFormat::Gzip => {
                "a gzip-compressed file (a vmlinuz? decompress it to the raw Image)"
            }
            OtherFormat::ArmZImage => {
                "an ARM32 zImage (magic 0x016f2818 at 0x24), not an arm64 Image"
            }
            OtherFormat::Elf => {
                "an ELF file (vmlinux?): pass the raw arm64 Image (arch/arm64/boot/Image)"
            }
            OtherFormat::Uimage => {
                "a U-Boot uImage (magic 0x27051956): pass the raw Image inside it"
            }
        })
    }
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::TooShort { len } => {
                write!(
                    f,
                    "not an arm64 Image: {len} bytes, shorter than the 64-byte header"
                )
            }
            ImageError::NotArm64Image {
                magic,
                looks_like: Some(o),
            } => {
                write!(
                    f,
                    "not an arm64 Image: magic at 0x38 is {magic:#010x}; the file looks like {o}"
                )
            }
            ImageError::NotArm64Image {
                magic,
                looks_like: None,
            } => {
                write!(f, "not an arm64 Image: magic at 0x38 is {magic:#010x}, expected 0x644d5241 (\"ARM\\x64\")")
            }
            ImageError::BigEndian => f.write_str(
                "arm64 Image is big-endian (flags bit 0): only little-endian kernels boot",
            ),
            ImageError::ReservedFlags { flags } => {
                write!(f, "arm64 Image flags {flags:#x} set reserved bits 4..63")
            }
            ImageError::BadTextOffset { text_offset } => {
                write!(
                    f,
                    "arm64 Image text_offset {text_offset:#x} is not 4 KiB aligned below 2 MiB"
                )
            }
            ImageError::BadImageSize { image_size } => {
                write!(f, "arm64 Image image_size {image_size:#x} is implausible")
            }
        }
    }
}

/// The kernel's page size, from flags bits 1-2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    Unspecified,
    K4,
    K16,
    K64,
}

/// A parsed arm64 Image header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arm64Image {
    pub text_offset: u64,
    /// Effective image size (bss included); for a v3.16-or-older header (image_size 0), the file length
    /// plus a generous allowance, as the boot protocol asks the loader to assume.
    pub image_size: u64,
    /// The header's image_size was 0 (pre-3.17 kernel: text_offset taken as 0x80000 then).
    pub legacy_header: bool,
    pub flags: u64,
    pub page_size: PageSize,
    /// Flags bit 3: the kernel may be placed anywhere in RAM (2 MiB aligned); else as close as possible to
    /// the start of RAM.
    pub place_anywhere: bool,
    pub file_len: usize,
}

/// Extra room assumed for bss and early data of a pre-3.17 kernel, whose header does not say.
const LEGACY_BSS_ALLOWANCE: u64 = 16 << 20;
/// Upper bound on a credible image_size.
const MAX_IMAGE_SIZE: u64 = 1 << 32;

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn le64(b: &[u8], off: usize) -> u64 {
    (le32(b, off) as u64) | ((le32(b, off + 4) as u64) << 32)
}

/// Recognises formats a user might pass instead of an arm64 Image.
pub fn sniff_other_format(bytes: &[u8]) -> Option<OtherFormat> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        Some(OtherFormat::Gzip)
    } else if bytes.starts_with(b"\x7fELF") {
        Some(OtherFormat::Elf)
    } else if bytes.starts_with(&[0x27, 0x05, 0x19, 0x56]) {
        Some(OtherFormat::Uimage)
    } else if bytes.len() >= 0x28 && le32(bytes, 0x24) == ZIMAGE_MAGIC {
        Some(OtherFormat::ArmZImage)
    } else {
        None
    }
}

impl Arm64Image {
    /// Parses and checks the 64-byte header of `bytes` (the whole file).
    pub fn parse(bytes: &[u8]) -> Result<Arm64Image, ImageError> {
        if bytes.len() < HEADER_LEN {
            return Err(ImageError::TooShort { len: bytes.len() });
        }
        let magic = le32(bytes, 0x38);
        if magic != ARM64_MAGIC {
            return Err(ImageError::NotArm64Image {
                magic,
                looks_like: sniff_other_format(bytes),
            });
        }
        let mut text_offset = le64(bytes, 8);
        let raw_size = le64(bytes, 16);
        let flags = le64(bytes, 24);
        let legacy_header = raw_size == 0;
        if legacy_header {
            // Before v3.17 the fields after text_offset are zero, flags meaningless, and text_offset 0x80000.
            text_offset = LEGACY_TEXT_OFFSET;
        }
        if !text_offset.is_multiple_of(4096) || text_offset >= 2 << 20 {
            return Err(ImageError::BadTextOffset { text_offset });
        }
        let flags = if legacy_header { 0 } else { flags };
        if flags & 1 != 0 {
            return Err(ImageError::BigEndian);
        }
        if flags >> 4 != 0 {
            return Err(ImageError::ReservedFlags { flags });
        }
        let image_size = if legacy_header {
            (bytes.len() as u64).saturating_add(LEGACY_BSS_ALLOWANCE)
        } else {
            if raw_size < HEADER_LEN as u64 || raw_size > MAX_IMAGE_SIZE {
                return Err(ImageError::BadImageSize {
                    image_size: raw_size,
                });
            }
            raw_size
        };
        let page_size = match (flags >> 1) & 3 {
            0 => PageSize::Unspecified,
            1 => PageSize::K4,
            2 => PageSize::K16,
            _ => PageSize::K64,
        };
        Ok(Arm64Image {
            text_offset,
            image_size,
            legacy_header,
            flags,
            page_size,
            place_anywhere: flags & (1 << 3) != 0,
            file_len: bytes.len(),
        })
    }

    /// Offset from a 2 MiB-aligned base at which the Image must be placed.
    pub fn load_offset(&self) -> u64 {
        self.text_offset
    }

    /// Bytes of RAM the kernel occupies from its load address (the larger of image_size and the file).
    pub fn memory_needed(&self) -> u64 {
        self.image_size.max(self.file_len as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use alloc::vec::Vec;

    /// A header as Linux v6.1's head.S lays it out (code0 `add x13, x18, #0x16` = "MZ" stub, b stext).
    fn header(text_offset: u64, image_size: u64, flags: u64) -> Vec<u8> {
        let mut h = vec![0u8; 4096];
        h[0..4].copy_from_slice(&0xfa40_5a4du32.to_le_bytes());
        h[4..8].copy_from_slice(&0x1440_0000u32.to_le_bytes());
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&flags.to_le_bytes());
        h[0x38..0x3c].copy_from_slice(b"ARM\x64");
        h[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes()); // PE header offset
        h
    }

    #[test]
    fn parses_a_modern_header() {
        let img = Arm64Image::parse(&header(0, 0x2a1_0000, 0xa)).unwrap();
        assert_eq!(img.load_offset(), 0);
        assert_eq!(img.memory_needed(), 0x2a1_0000);
        assert_eq!(img.page_size, PageSize::K4);
        assert!(img.place_anywhere);
        assert!(!img.legacy_header);
    }

    #[test]
    fn old_header_with_zero_image_size_uses_protocol_defaults() {
        let img = Arm64Image::parse(&header(0x80000, 0, 0)).unwrap();
        assert!(img.legacy_header);
        assert_eq!(img.load_offset(), 0x80000);
        assert_eq!(img.memory_needed(), 4096 + (16 << 20));
    }

    #[test]
    fn rejects_big_endian_bad_offsets_and_sizes() {
        assert_eq!(
            Arm64Image::parse(&header(0, 0x10000, 1)),
            Err(ImageError::BigEndian)
        );
        assert_eq!(
            Arm64Image::parse(&header(0x123, 0x10000, 0)),
            Err(ImageError::BadTextOffset { text_offset: 0x123 })
        );
        assert_eq!(
            Arm64Image::parse(&header(0, 0x10000, 0x10)),
            Err(ImageError::ReservedFlags { flags: 0x10 })
        );
        assert_eq!(
            Arm64Image::parse(&header(0, 8, 0)),
            Err(ImageError::BadImageSize { image_size: 8 })
        );
        assert_eq!(
            Arm64Image::parse(&[0u8; 10]),
            Err(ImageError::TooShort { len: 10 })
        );
    }

    #[test]
    fn names_other_formats() {
        let mut gz = vec![0u8; 128];
        gz[..3].copy_from_slice(&[0x1f, 0x8b, 0x08]);
        let e = Arm64Image::parse(&gz).unwrap_err();
        assert!(matches!(
            e,
            ImageError::NotArm64Image {
                looks_like: Some(OtherFormat::Gzip),
                ..
            }
        ));
        assert!(e.to_string().contains("gzip"), "{e}");

        let mut z = vec![0u8; 128];
        z[0x24..0x28].copy_from_slice(&ZIMAGE_MAGIC.to_le_bytes());
        let e = Arm64Image::parse(&z).unwrap_err();
        assert!(matches!(
            e,
            ImageError::NotArm64Image {
                looks_like: Some(OtherFormat::ArmZImage),
                ..
            }
        ));
        assert!(e.to_string().contains("zImage"), "{e}");

        let mut elf = vec![0u8; 128];
        elf[..4].copy_from_slice(b"\x7fELF");
        let e = Arm64Image::parse(&elf).unwrap_err();
        assert!(matches!(
            e,
            ImageError::NotArm64Image {
                looks_like: Some(OtherFormat::Elf),
                ..
            }
        ));
        assert!(e.to_string().contains("ELF"), "{e}");

        let e = Arm64Image::parse(&[0x55u8; 64]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "not an arm64 Image: magic at 0x38 is 0x55555555, expected 0x644d5241 (\"ARM\\x64\")"
        );
    }

    #[test]
    fn real_xen_image_header_if_present() {
        // Xen 4.17's arm64 binary is itself an arm64 Image; use it when the lead's fixture is around.
        if let Some(bytes) = crate::dt::fixtures::optional("xen-4.17-arm64") {
            let img = Arm64Image::parse(&bytes).unwrap();
            assert!(img.memory_needed() >= bytes.len() as u64);
        }
    }
}
