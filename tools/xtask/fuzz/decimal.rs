//! Decimal digits of a number, for the dom0 programs built here (no formatting machinery in
//! them). Included with `#[path]` by each program's single source file.

/// The digits of `v`, at the end of `buf`.
pub fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}
