//! LSB-first bit packing of b-bit codes (b in 1..=8), the normative code layout of the
//! `int` stage: element j of a group occupies bits [j*b, j*b+b) of the group's
//! little-endian bit stream. For b=4 element 2i is the low nibble of byte i; for b=2
//! four codes share a byte, the first in the lowest bits.

/// Bytes needed for `n` codes of `bits` bits, or `None` on overflow.
pub fn packed_len(n: usize, bits: u8) -> Option<usize> {
    n.checked_mul(bits as usize)?.checked_add(7).map(|v| v / 8)
}

/// Packs `codes` (each `< 2^bits`; higher bits are masked off) into `out`, which must
/// hold at least `packed_len(codes.len(), bits)` bytes. Returns `false` (writing
/// nothing) if `bits` is not in 1..=8 or `out` is too short, so callers cannot index
/// out of bounds.
pub fn pack(codes: &[u8], bits: u8, out: &mut [u8]) -> bool {
    if !(1..=8).contains(&bits) {
        return false;
    }
    let Some(need) = packed_len(codes.len(), bits) else {
        return false;
    };
    let Some(out) = out.get_mut(..need) else {
        return false;
    };
    out.fill(0);
    let mask = ((1u32 << bits) - 1) as u8;
    let mut acc: u32 = 0;
    let mut nacc: u32 = 0;
    let mut o = 0usize;
    for &c in codes {
        acc |= ((c & mask) as u32) << nacc;
        nacc += bits as u32;
        while nacc >= 8 {
            out[o] = acc as u8;
            o += 1;
            acc >>= 8;
            nacc -= 8;
        }
    }
    if nacc > 0 {
        out[o] = acc as u8;
    }
    true
}

/// Unpacks `out.len()` codes of `bits` bits from `src`. Returns `false` (writing
/// nothing) if `bits` is not in 1..=8 or `src` is too short.
pub fn unpack(src: &[u8], bits: u8, out: &mut [u8]) -> bool {
    if !(1..=8).contains(&bits) {
        return false;
    }
    let Some(need) = packed_len(out.len(), bits) else {
        return false;
    };
    let Some(src) = src.get(..need) else {
        return false;
    };
    let mask = (1u32 << bits) - 1;
    let mut acc: u32 = 0;
    let mut nacc: u32 = 0;
    let mut it = src.iter();
    for c in out.iter_mut() {
        if nacc < bits as u32 {
            // `need` bytes cover every code, so the iterator cannot run dry here.
            acc |= (*it.next().unwrap_or(&0) as u32) << nacc;
            nacc += 8;
        }
        *c = (acc & mask) as u8;
        acc >>= bits;
        nacc -= bits as u32;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nibble_and_crumb_order() {
        let mut out = [0u8; 2];
        assert!(pack(&[1, 2, 3, 4], 4, &mut out));
        assert_eq!(out, [0x21, 0x43]);
        let mut o1 = [0u8; 1];
        assert!(pack(&[1, 2, 3, 0], 2, &mut o1));
        assert_eq!(o1, [0b00_11_10_01]);
    }

    #[test]
    fn roundtrip_all_widths() {
        for bits in 1..=8u8 {
            let codes: Vec<u8> = (0..64u32)
                .map(|i| ((i * 37 + 11) % (1 << bits)) as u8)
                .collect();
            let mut packed = vec![0u8; packed_len(64, bits).unwrap()];
            assert!(pack(&codes, bits, &mut packed));
            let mut back = vec![0u8; 64];
            assert!(unpack(&packed, bits, &mut back));
            assert_eq!(codes, back, "bits={bits}");
        }
    }

    #[test]
    fn short_buffers_refused() {
        let mut out = [0u8; 1];
        assert!(!pack(&[1, 2, 3], 4, &mut out));
        let mut back = [0u8; 3];
        assert!(!unpack(&[0u8], 4, &mut back));
        assert!(!pack(&[1], 9, &mut out));
    }
}
