//! Constant-time equality for secrets and their digests.
//!
//! `subtle`'s slice comparison puts an optimisation barrier on every byte, which made it the
//! largest cost of an access-token verify after SHA-256 itself. Here the bytes are XORed into
//! one 64-bit word eight at a time, with no early exit, and only that word goes through
//! `subtle`: the work depends on the length alone, never on where the inputs differ.

use subtle::ConstantTimeEq;

/// Whether `a == b`, in time that depends only on the lengths (which are public here).
pub(crate) fn eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u64;
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        let mut wx = [0u8; 8];
        let mut wy = [0u8; 8];
        wx.copy_from_slice(x);
        wy.copy_from_slice(y);
        diff |= u64::from_ne_bytes(wx) ^ u64::from_ne_bytes(wy);
    }
    for (x, y) in ra.iter().zip(rb) {
        diff |= u64::from(x ^ y);
    }
    diff.ct_eq(&0).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_position_counts() {
        for len in [0usize, 1, 7, 8, 9, 32, 43, 65] {
            let a: Vec<u8> = (0..len as u8).collect();
            assert!(eq(&a, &a.clone()));
            for i in 0..len {
                for bit in 0..8 {
                    let mut b = a.clone();
                    b[i] ^= 1 << bit;
                    assert!(!eq(&a, &b), "len {len} byte {i} bit {bit}");
                }
            }
        }
        assert!(!eq(b"abc", b"abcd"));
    }
}
