//! Numerical kernels: the matmul seam, fast activations and the fused gate pass.
//! The only place in the library allowed to use `unsafe` (for CPU-feature dispatch).

pub mod gates;
pub mod math;
pub mod matmul;

use std::sync::atomic::{AtomicUsize, Ordering};

/// 0 = not set: use every available core.
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// How many threads the kernels use at most (default: the available cores).
pub fn threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Caps the threads the kernels use (`0` restores the default, every available core).
/// Work is only split where it was measured to pay (see `docs/performance.md`), and the
/// split never depends on timing, so results stay bit-identical from run to run.
pub fn set_threads(n: usize) {
    THREADS.store(n, Ordering::Relaxed);
}
