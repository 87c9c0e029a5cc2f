//! The module bundle: dom0's boot modules carried inside xenith's own image, for loaders that
//! only copy one image (an old U-Boot's `bootm` of a FIT copies the configuration's `kernel`
//! and passes its `fdt`; it knows nothing of `loadables`).
//!
//! `cargo xtask snow` appends to the ARMv7 image, at its BSS start (`__bss_start`, where the
//! loaded bytes end), a 64-byte header and the modules. The entry code, before it clears the
//! BSS, moves header and modules up to the header's destination, which lies past the end of
//! xenith's memory (`__image_end`: BSS, stacks, static heap) on a 2 MiB boundary, copying
//! from the end down (the destination is above the source). The DTB's `multiboot,module`
//! nodes name the modules at their destination, so the boot plan reserves them like any
//! loader's modules; the header's CRC-32s tell a corrupt module from a good one.
//!
//! Header, little-endian 32-bit words: 0-1 [`MAGIC`], 2 [`VERSION`], 3 [`HEADER_LEN`],
//! 4 destination, 5 total length (header and modules, a multiple of [`COPY_GRANULE`]),
//! 6 module count (at most [`MAX_MODULES`]), 7 CRC-32 of the header with this word 0; then
//! per module: kind ([`Kind`]), offset from the header's start, size, CRC-32 of its bytes.

/// "XNTH", "MODS".
pub const MAGIC: [u32; 2] = [0x4854_4e58, 0x5344_4f4d];
pub const VERSION: u32 = 1;
pub const HEADER_LEN: usize = 64;
pub const MAX_MODULES: usize = 2;
/// The destination's alignment.
pub const DEST_ALIGN: u64 = 2 << 20;
/// Each module's alignment inside the bundle.
pub const MODULE_ALIGN: u64 = 4096;
/// The entry code copies 32 bytes at a time: the total length is a multiple of this.
pub const COPY_GRANULE: u64 = 32;
/// The longest bundle the entry code moves.
pub const MAX_LEN: u64 = 256 << 20;

/// What a module is (the `multiboot,kernel` / `multiboot,ramdisk` of its DTB node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Kernel = 1,
    Ramdisk = 2,
}

impl Kind {
    fn from_word(w: u32) -> Option<Kind> {
        match w {
            1 => Some(Kind::Kernel),
            2 => Some(Kind::Ramdisk),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Kernel => "dom0 kernel",
            Kind::Ramdisk => "dom0 initramfs",
        }
    }
}

/// One module of the bundle: where it lies (from the header's start) and its CRC-32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module {
    pub kind: Kind,
    pub offset: u32,
    pub size: u32,
    pub crc: u32,
}

/// A parsed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub dest: u32,
    pub total_len: u32,
    pub count: usize,
    pub modules: [Option<Module>; MAX_MODULES],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleError {
    NoMagic,
    Version(u32),
    HeaderLen(u32),
    HeaderCrc { stored: u32, computed: u32 },
    Count(u32),
    Length(u32),
    Dest(u32),
    BadKind(u32),
    /// A module outside the bundle, overlapping the header or another module.
    Placement { index: usize },
    /// A module's bytes do not match its CRC-32.
    Corrupt { kind: Kind, at: u64, size: u32, stored: u32, computed: u32 },
    /// The bundle is shorter than its header says (the loader copied less).
    Truncated { have: usize, want: u32 },
}

impl core::fmt::Display for BundleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BundleError::NoMagic => write!(f, "no module bundle header (magic XNTH MODS)"),
            BundleError::Version(v) => write!(f, "module bundle version {v}, this xenith reads {VERSION}"),
            BundleError::HeaderLen(l) => write!(f, "module bundle header length {l}, not {HEADER_LEN}"),
            BundleError::HeaderCrc { stored, computed } => write!(f, "module bundle header CRC-32 {computed:#010x}, stored {stored:#010x}: the header is corrupt"),
            BundleError::Count(n) => write!(f, "module bundle holds {n} modules, at most {MAX_MODULES}"),
            BundleError::Length(l) => write!(f, "module bundle length {l:#x} is not a multiple of {COPY_GRANULE} between {HEADER_LEN} and {MAX_LEN:#x}"),
            BundleError::Dest(d) => write!(f, "module bundle destination {d:#x} is not {DEST_ALIGN:#x}-aligned"),
            BundleError::BadKind(k) => write!(f, "module bundle: unknown module kind {k}"),
            BundleError::Placement { index } => write!(f, "module bundle: module {index} lies outside the bundle or over the header or another module"),
            BundleError::Corrupt { kind, at, size, stored, computed } => write!(
                f,
                "{} in the module bundle at {at:#x} ({size} bytes) is corrupt: CRC-32 {computed:#010x}, the header says {stored:#010x}",
                kind.name()
            ),
            BundleError::Truncated { have, want } => write!(f, "module bundle: {have} bytes present, its header says {want}"),
        }
    }
}

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC_TABLE: [u32; 256] = crc_table();

/// CRC-32 (IEEE 802.3, as zlib's `crc32`).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

fn word(h: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([h[4 * i], h[4 * i + 1], h[4 * i + 2], h[4 * i + 3]])
}

/// Whether the first bytes of `h` are a bundle header's magic.
pub fn has_magic(h: &[u8]) -> bool {
    h.len() >= 8 && word(h, 0) == MAGIC[0] && word(h, 1) == MAGIC[1]
}

impl Header {
    /// Parse and check a header (its own CRC, the layout of its modules).
    pub fn parse(h: &[u8]) -> Result<Header, BundleError> {
        if h.len() < HEADER_LEN || !has_magic(h) {
            return Err(BundleError::NoMagic);
        }
        if word(h, 2) != VERSION {
            return Err(BundleError::Version(word(h, 2)));
        }
        if word(h, 3) as usize != HEADER_LEN {
            return Err(BundleError::HeaderLen(word(h, 3)));
        }
        let mut copy = [0u8; HEADER_LEN];
        copy.copy_from_slice(&h[..HEADER_LEN]);
        copy[28..32].fill(0);
        let (stored, computed) = (word(h, 7), crc32(&copy));
        if stored != computed {
            return Err(BundleError::HeaderCrc { stored, computed });
        }
        let (dest, total_len, count) = (word(h, 4), word(h, 5), word(h, 6));
        if !u64::from(dest).is_multiple_of(DEST_ALIGN) {
            return Err(BundleError::Dest(dest));
        }
        let len = u64::from(total_len);
        if !len.is_multiple_of(COPY_GRANULE) || len < HEADER_LEN as u64 || len > MAX_LEN || u64::from(dest) + len > 1 << 32 {
            return Err(BundleError::Length(total_len));
        }
        if count as usize > MAX_MODULES {
            return Err(BundleError::Count(count));
        }
        let mut modules = [None; MAX_MODULES];
        for (i, slot) in modules.iter_mut().enumerate().take(count as usize) {
            let w = 8 + 4 * i;
            let kind = Kind::from_word(word(h, w)).ok_or(BundleError::BadKind(word(h, w)))?;
            *slot = Some(Module { kind, offset: word(h, w + 1), size: word(h, w + 2), crc: word(h, w + 3) });
        }
        // Each module inside the bundle, past the header, clear of the others.
        for (i, m) in modules.iter().flatten().enumerate() {
            let end = u64::from(m.offset) + u64::from(m.size);
            if (m.offset as usize) < HEADER_LEN || end > len {
                return Err(BundleError::Placement { index: i });
            }
            for o in modules.iter().flatten().take(i) {
                if u64::from(o.offset) < end && u64::from(m.offset) < u64::from(o.offset) + u64::from(o.size) {
                    return Err(BundleError::Placement { index: i });
                }
            }
        }
        Ok(Header { dest, total_len, count: count as usize, modules })
    }

    /// The 64 header bytes for `modules` moved to `dest`, the bundle `total_len` long.
    pub fn encode(dest: u32, total_len: u32, modules: &[Module]) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        let mut put = |i: usize, v: u32| h[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        put(0, MAGIC[0]);
        put(1, MAGIC[1]);
        put(2, VERSION);
        put(3, HEADER_LEN as u32);
        put(4, dest);
        put(5, total_len);
        put(6, modules.len() as u32);
        for (i, m) in modules.iter().take(MAX_MODULES).enumerate() {
            let w = 8 + 4 * i;
            put(w, m.kind as u32);
            put(w + 1, m.offset);
            put(w + 2, m.size);
            put(w + 3, m.crc);
        }
        let crc = crc32(&h);
        h[28..32].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// The modules with their physical addresses once moved.
    pub fn placed(&self) -> impl Iterator<Item = (Module, u64)> + '_ {
        self.modules.iter().flatten().map(move |m| (*m, u64::from(self.dest) + u64::from(m.offset)))
    }

    /// Check every module's bytes against its CRC-32; `bundle` is the moved bundle (header
    /// first), at least `total_len` bytes.
    pub fn verify(&self, bundle: &[u8]) -> Result<(), BundleError> {
        if bundle.len() < self.total_len as usize {
            return Err(BundleError::Truncated { have: bundle.len(), want: self.total_len });
        }
        for (m, at) in self.placed() {
            let bytes = &bundle[m.offset as usize..(m.offset + m.size) as usize];
            let computed = crc32(bytes);
            if computed != m.crc {
                return Err(BundleError::Corrupt { kind: m.kind, at, size: m.size, stored: m.crc, computed });
            }
        }
        Ok(())
    }
}

/// Where a bundle's parts go, given the image's link address, its BSS start and its end (the
/// ELF's `__image_start`, `__bss_start`, `__image_end`) and the modules' sizes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Where the header starts in the loaded image (bytes from the image's start).
    pub header_offset: u64,
    pub dest: u64,
    pub total_len: u64,
    /// (kind, offset from the header, size) per module.
    pub modules: [(Kind, u64, u64); MAX_MODULES],
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

impl Layout {
    pub fn new(image_start: u64, bss_start: u64, image_end: u64, kernel: u64, ramdisk: u64) -> Result<Layout, &'static str> {
        if !(image_start <= bss_start && bss_start < image_end && bss_start.is_multiple_of(8)) {
            return Err("the image's start, BSS start and end are out of order or misaligned");
        }
        let dest = align_up(image_end, DEST_ALIGN);
        let k = align_up(HEADER_LEN as u64, MODULE_ALIGN);
        let r = align_up(k + kernel, MODULE_ALIGN);
        let total_len = align_up(r + ramdisk, COPY_GRANULE);
        if total_len > MAX_LEN || dest + total_len > 1 << 32 {
            return Err("the modules are too large for a bundle");
        }
        Ok(Layout { header_offset: bss_start - image_start, dest, total_len, modules: [(Kind::Kernel, k, kernel), (Kind::Ramdisk, r, ramdisk)] })
    }

    /// The physical address of each module once moved.
    pub fn module_addr(&self, kind: Kind) -> u64 {
        self.modules.iter().find(|m| m.0 == kind).map_or(0, |m| self.dest + m.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle as `cargo xtask snow` lays it out, from its header on.
    fn bundle(kernel: &[u8], ramdisk: &[u8]) -> (Layout, Vec<u8>) {
        let l = Layout::new(0x4001_0000, 0x4008_b000, 0x408d_1000, kernel.len() as u64, ramdisk.len() as u64).unwrap();
        let mut b = vec![0u8; l.total_len as usize];
        let mods: Vec<Module> = l
            .modules
            .iter()
            .zip([kernel, ramdisk])
            .map(|(&(kind, off, size), data)| {
                b[off as usize..(off + size) as usize].copy_from_slice(data);
                Module { kind, offset: off as u32, size: size as u32, crc: crc32(data) }
            })
            .collect();
        b[..HEADER_LEN].copy_from_slice(&Header::encode(l.dest as u32, l.total_len as u32, &mods));
        (l, b)
    }

    #[test]
    fn crc32_is_zlibs() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn the_layout_puts_the_modules_past_the_image_on_a_2_mib_boundary() {
        let l = Layout::new(0x4001_0000, 0x4008_b000, 0x408d_1000, 5_546_496, 1_611_776).unwrap();
        assert_eq!(l.header_offset, 0x7_b000);
        assert_eq!(l.dest, 0x40a0_0000);
        assert_eq!(l.module_addr(Kind::Kernel), 0x40a0_1000);
        assert_eq!(l.module_addr(Kind::Ramdisk), 0x40a0_1000 + 5_546_496_u64.div_ceil(4096) * 4096);
        assert_eq!(l.total_len % COPY_GRANULE, 0);
        assert!(l.total_len >= l.modules[1].1 + 1_611_776);
        // The destination never overlaps the image's own memory, even when the end is aligned.
        assert_eq!(Layout::new(0x4001_0000, 0x4008_b000, 0x40a0_0000, 1, 1).unwrap().dest, 0x40a0_0000);
        assert!(Layout::new(0x4001_0000, 0x4008_b000, 0x4008_b000, 1, 1).is_err());
        assert!(Layout::new(0x4001_0000, 0x4008_b000, 0x408d_1000, 300 << 20, 1).is_err());
    }

    #[test]
    fn a_bundle_round_trips_and_its_modules_verify() {
        let (l, b) = bundle(b"kernel bytes", &[7u8; 5000]);
        let h = Header::parse(&b).unwrap();
        assert_eq!((u64::from(h.dest), u64::from(h.total_len), h.count), (l.dest, l.total_len, 2));
        let placed: Vec<(Kind, u64, u32)> = h.placed().map(|(m, at)| (m.kind, at, m.size)).collect();
        assert_eq!(placed, [(Kind::Kernel, l.module_addr(Kind::Kernel), 12), (Kind::Ramdisk, l.module_addr(Kind::Ramdisk), 5000)]);
        assert_eq!(h.verify(&b), Ok(()));
    }

    #[test]
    fn a_corrupt_module_or_header_is_named() {
        let (l, mut b) = bundle(b"kernel bytes", &[7u8; 5000]);
        let at = l.modules[1].1 as usize + 4999;
        b[at] ^= 1;
        let h = Header::parse(&b).unwrap();
        let e = h.verify(&b).unwrap_err();
        assert!(matches!(e, BundleError::Corrupt { kind: Kind::Ramdisk, size: 5000, .. }), "{e:?}");
        assert!(e.to_string().contains("dom0 initramfs in the module bundle at 0x40a02000 (5000 bytes) is corrupt"), "{e}");
        assert!(matches!(h.verify(&b[..100]), Err(BundleError::Truncated { have: 100, .. })));
        let (_, mut b) = bundle(b"kernel bytes", &[7u8; 5000]);
        b[20] ^= 0x20; // the total length
        assert!(matches!(Header::parse(&b), Err(BundleError::HeaderCrc { .. })));
        assert_eq!(Header::parse(&[0u8; 64]), Err(BundleError::NoMagic));
        assert!(!has_magic(&[0u8; 4]));
    }

    #[test]
    fn a_header_with_modules_out_of_place_is_refused() {
        let m = |offset, size| Module { kind: Kind::Kernel, offset, size, crc: 0 };
        for mods in [[m(32, 8), m(4096, 8)], [m(4096, 8), m(4100, 8)], [m(4096, 8), m(8192, 4096)]] {
            let h = Header::encode(0x40a0_0000, 8192, &mods);
            assert!(matches!(Header::parse(&h), Err(BundleError::Placement { .. })), "{mods:?}");
        }
        assert!(matches!(Header::parse(&Header::encode(0x40a0_1000, 8192, &[])), Err(BundleError::Dest(_))));
        assert!(matches!(Header::parse(&Header::encode(0x40a0_0000, 100, &[])), Err(BundleError::Length(100))));
        assert!(matches!(Header::parse(&Header::encode(0xffe0_0000, 0x40_0000, &[])), Err(BundleError::Length(_))));
        let mut h = Header::encode(0x40a0_0000, 8192, &[m(4096, 8)]);
        h[32] = 9;
        let crc = crc32(&{
            let mut c = h;
            c[28..32].fill(0);
            c
        });
        h[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Header::parse(&h), Err(BundleError::BadKind(9)));
    }
}
