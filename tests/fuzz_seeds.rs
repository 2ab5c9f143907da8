//! The fuzz targets' checks (`fuzz/checks.rs`) on every `./x test`, without libFuzzer: each
//! target's seeds, its saved corpus where `./x fuzz` has left one (`fuzz/corpus/`, not in git),
//! and seeded mutations of every seed (truncations, byte and bit changes, length-like fields
//! set to extremes, spliced chunks). Fuzzing itself, which searches far wider, is `./x fuzz`.
//! A reader that panics on any of these inputs fails the test, with the input's origin named.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// Mutants made of each seed. Deterministic (a fixed xorshift seed), so a failure reproduces.
const MUTANTS_PER_SEED: usize = 2000;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `seed`, and the words that say which.
fn mutate(seed: &[u8], rng: &mut Rng) -> (Vec<u8>, String) {
    let mut data = seed.to_vec();
    let at = rng.below(data.len());
    let what = match rng.below(6) {
        0 => {
            data.truncate(at);
            format!("cut to {at} bytes")
        }
        1 => {
            let bit = rng.below(8);
            if let Some(b) = data.get_mut(at) {
                *b ^= 1 << bit;
            }
            format!("bit {bit} of byte {at} flipped")
        }
        2 => {
            let v = rng.next() as u8;
            if let Some(b) = data.get_mut(at) {
                *b = v;
            }
            format!("byte {at} set to {v}")
        }
        3 => {
            // Counts, lengths and offsets are little-endian u32/u64 fields in these formats.
            let extremes = [u64::MAX, u64::MAX / 2, 1 << 32, 1 << 40, u32::MAX as u64, 0, 1 << 31];
            let v = extremes[rng.below(extremes.len())];
            let width = if rng.below(2) == 0 { 4 } else { 8 };
            let end = (at + width).min(data.len());
            data[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
            format!("{width} bytes at {at} set to {v:#x}")
        }
        4 => {
            let len = 1 + rng.below(64);
            let end = (at + len).min(data.len());
            data.drain(at..end);
            format!("bytes {at}..{end} removed")
        }
        _ => {
            let from = rng.below(seed.len());
            let len = (1 + rng.below(256)).min(seed.len() - from.min(seed.len()));
            let chunk = seed[from..from + len].to_vec();
            data.splice(at..at, chunk);
            format!("{len} bytes from {from} inserted at {at}")
        }
    };
    (data, what)
}

thread_local! {
    /// Set while a check runs: its panics are caught and listed at the end, not printed one by one.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A panic hook that stays silent for the checks' caught panics and prints the rest (the test's
/// own assertion) as the default hook does. Installed once: the tests run on parallel threads.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.get() {
                default(info);
            }
        }));
    });
}

fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let seeds = files_in(&root.join("seeds").join(target));
    assert!(!seeds.is_empty(), "fuzz/seeds/{target} holds no seeds");
    let corpus = files_in(&root.join("corpus").join(target));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut failures = Vec::new();
    let mut inputs = 0;
    quiet_panics();
    let mut run = |data: &[u8], origin: String| {
        inputs += 1;
        QUIET.set(true);
        let result = catch_unwind(AssertUnwindSafe(|| check(data)));
        QUIET.set(false);
        if let Err(panic) = result {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{origin}: {message}"));
        }
    };
    for path in seeds.iter().chain(&corpus) {
        let bytes = std::fs::read(path).unwrap();
        let name = path.strip_prefix(&root).unwrap().display().to_string();
        run(&bytes, name.clone());
        if corpus.contains(path) {
            continue;
        }
        for _ in 0..MUTANTS_PER_SEED {
            let (data, what) = mutate(&bytes, &mut rng);
            run(&data, format!("{name}, {what}"));
        }
    }
    eprintln!("{target}: {inputs} inputs ({} seeds, {} from the corpus)", seeds.len(), corpus.len());
    assert!(failures.is_empty(), "{target} panicked on {} of {inputs} inputs:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn gguf_parse() {
    replay("gguf_parse", checks::gguf_parse);
}

#[test]
fn safetensors_read() {
    replay("safetensors_read", checks::safetensors_read);
}

#[test]
fn annotations_jsonl() {
    replay("annotations_jsonl", checks::annotations_jsonl);
}

#[test]
fn benchmark_jsonl() {
    replay("benchmark_jsonl", checks::benchmark_jsonl);
}
