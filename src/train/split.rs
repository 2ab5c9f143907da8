//! Which records are trained and which are held out, and the order of each epoch.

use crate::rng::Rng;

/// Splits `n` records into (train, held-out) index lists, deterministically from `seed`.
/// Any positive fraction holds out at least one record, and at least one is always trained.
pub fn split_indices(n: usize, held_out: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, seed ^ SPLIT_SALT);
    let mut n_held = (n as f64 * held_out).round() as usize;
    if held_out > 0.0 && n >= 2 {
        n_held = n_held.clamp(1, n - 1);
    } else {
        n_held = 0;
    }
    let held = order[..n_held].to_vec();
    let mut train = order[n_held..].to_vec();
    train.sort_unstable();
    let mut held = held;
    held.sort_unstable();
    (train, held)
}

/// A fixed salt so the split and the epoch shuffles draw different streams from one seed.
const SPLIT_SALT: u64 = 0x5eed_5b17;

pub(crate) fn shuffle(items: &mut [usize], seed: u64) {
    let mut rng = Rng::new(seed);
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}
