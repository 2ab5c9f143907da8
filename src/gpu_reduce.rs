//! Reductions across a workgroup, shared by the GPU kernels (the decode step's, the sampler's,
//! the optimizer's): each thread gives a value, a tree in workgroup memory halves the field
//! `log2(threads)` times, and every thread gets the result. `threads` is the workgroup's size, a
//! power of two; `s` (and `at`) hold a value a thread.
//!
//! The tree is unrolled: a loop whose stride halves each round did not compile to a working
//! shader through CubeCL 0.11, and the levels are few.

use cubecl::prelude::*;

/// The sum of every thread's `value` (f32 sums, u32 counts).
#[cube]
pub(crate) fn workgroup_sum<N: Numeric>(s: &mut Shared<[N]>, value: N, #[comptime] threads: u32) -> N {
    let unit = UNIT_POS as usize;
    s[unit] = value;
    sync_cube();
    #[unroll]
    for level in 0..comptime![threads.trailing_zeros()] {
        let stride = comptime![(threads >> (level + 1)) as usize];
        if unit < stride {
            let other = s[unit + stride];
            s[unit] += other;
        }
        sync_cube();
    }
    let total = s[0];
    sync_cube();
    total
}

/// The largest of every thread's `value`.
#[cfg_attr(feature = "fusion", allow(dead_code))]
#[cube]
pub(crate) fn workgroup_max_f32(s: &mut Shared<[f32]>, value: f32, #[comptime] threads: u32) -> f32 {
    let unit = UNIT_POS as usize;
    s[unit] = value;
    sync_cube();
    #[unroll]
    for level in 0..comptime![threads.trailing_zeros()] {
        let stride = comptime![(threads >> (level + 1)) as usize];
        if unit < stride && s[unit + stride] > s[unit] {
            s[unit] = s[unit + stride];
        }
        sync_cube();
    }
    let max = s[0];
    sync_cube();
    max
}

/// The index that goes with the largest of every thread's `value`, the lowest index on ties (as
/// the host's `sampling::argmax`); a thread with nothing to offer gives `index == none`, which
/// any real index beats.
#[cfg_attr(feature = "fusion", allow(dead_code))]
#[cube]
pub(crate) fn workgroup_argmax(s: &mut Shared<[f32]>, at: &mut Shared<[u32]>, value: f32, index: u32, none: u32, #[comptime] threads: u32) -> u32 {
    let unit = UNIT_POS as usize;
    s[unit] = value;
    at[unit] = index;
    sync_cube();
    #[unroll]
    for level in 0..comptime![threads.trailing_zeros()] {
        let stride = comptime![(threads >> (level + 1)) as usize];
        if unit < stride {
            let v = s[unit + stride];
            let i = at[unit + stride];
            let w = s[unit];
            let j = at[unit];
            if j == none || (i != none && (v > w || (v == w && i < j))) {
                s[unit] = v;
                at[unit] = i;
            }
        }
        sync_cube();
    }
    let best = at[0];
    sync_cube();
    best
}
