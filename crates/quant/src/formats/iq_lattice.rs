//! What the I-quants below 4 bits share: their lattices (`iq_grids.rs`, generated from gguf-py
//! by tests/reference/make_iq_grids.py), unpacked at compile time to one row of levels a point,
//! and the sign code of IQ2_XXS, IQ2_XS and IQ3_XXS.
//!
//! These formats write a group of 8 (or 4) weights as the index of the nearest point of a fixed
//! lattice, its signs apart: a few bits a weight buy a vector code instead of a scalar one.

use super::iq_grids::{
    IQ1S_GRID, IQ1S_LEVELS, IQ2S_GRID, IQ2S_LEVELS, IQ2XS_GRID, IQ2XS_LEVELS, IQ2XXS_GRID, IQ2XXS_LEVELS, IQ3S_GRID,
    IQ3S_LEVELS, IQ3XXS_GRID, IQ3XXS_LEVELS,
};

const fn unpack<const N: usize, const W: usize>(packed: &[u16; N], levels: &[i8], bits: u32) -> [[i8; W]; N] {
    let mut out = [[0i8; W]; N];
    let mask = (1u16 << bits) - 1;
    let mut i = 0;
    while i < N {
        let mut j = 0;
        while j < W {
            out[i][j] = levels[((packed[i] >> (bits * j as u32)) & mask) as usize];
            j += 1;
        }
        i += 1;
    }
    out
}

/// IQ1_S's and IQ1_M's 2048 points (coordinates −1, 0, 1).
pub(crate) static IQ1S: [[i8; 8]; 2048] = unpack(&IQ1S_GRID, &IQ1S_LEVELS, 2);
/// IQ2_XXS's 256 points (coordinates 8, 25, 43).
pub(crate) static IQ2XXS: [[i8; 8]; 256] = unpack(&IQ2XXS_GRID, &IQ2XXS_LEVELS, 2);
/// IQ2_XS's 512 points.
pub(crate) static IQ2XS: [[i8; 8]; 512] = unpack(&IQ2XS_GRID, &IQ2XS_LEVELS, 2);
/// IQ2_S's 1024 points.
pub(crate) static IQ2S: [[i8; 8]; 1024] = unpack(&IQ2S_GRID, &IQ2S_LEVELS, 2);
/// IQ3_XXS's 256 points of 4 (coordinates 4, 12, …, 62).
pub(crate) static IQ3XXS: [[i8; 4]; 256] = unpack(&IQ3XXS_GRID, &IQ3XXS_LEVELS, 3);
/// IQ3_S's 512 points of 4 (coordinates 1, 3, …, 15).
pub(crate) static IQ3S: [[i8; 4]; 512] = unpack(&IQ3S_GRID, &IQ3S_LEVELS, 3);

/// Eight sign bits from the seven stored: the eighth makes the count of minus signs even (the
/// quantizer flips the smallest weight's sign to make it so). Bit j set: weight j is negative.
#[inline(always)]
pub(crate) fn even_signs(seven: u32) -> u32 {
    let s = seven & 127;
    s | ((s.count_ones() & 1) << 7)
}

/// `v`, negated where bit `j` of `signs` is set.
#[inline(always)]
pub(crate) fn signed(v: f32, signs: u32, j: usize) -> f32 {
    if (signs >> j) & 1 != 0 { -v } else { v }
}

/// IQ1_S's and IQ1_M's shift of every coordinate of a group, away from the lattice's centre.
pub(crate) const IQ1_DELTA: f32 = 0.125;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_code_has_even_parity_and_keeps_the_seven_bits() {
        for s in 0..128u32 {
            let e = even_signs(s);
            assert_eq!(e & 127, s);
            assert_eq!(e.count_ones() % 2, 0);
        }
        assert_eq!(even_signs(1), 0x81);
    }

    #[test]
    fn the_lattices_unpack_to_their_levels() {
        // First points as gguf-py lists them (its grids, coordinate 0 first).
        assert_eq!(IQ2XXS[0], [8; 8]);
        assert_eq!(IQ2XXS[1], [43, 8, 8, 8, 8, 8, 8, 8]);
        assert_eq!(IQ3XXS[1], [20, 4, 4, 4]);
        assert_eq!(IQ3S[1], [3, 1, 1, 1]);
        assert_eq!(IQ1S[0], [-1; 8]);
        assert_eq!(IQ1S[1], [1, -1, -1, -1, -1, -1, -1, -1]);
        // Every point of a lattice is distinct.
        let distinct = |rows: Vec<Vec<i8>>| rows.iter().collect::<std::collections::BTreeSet<_>>().len() == rows.len();
        assert!(distinct(IQ1S.iter().map(|p| p.to_vec()).collect()));
        assert!(distinct(IQ2S.iter().map(|p| p.to_vec()).collect()));
        assert!(distinct(IQ3S.iter().map(|p| p.to_vec()).collect()));
    }
}
