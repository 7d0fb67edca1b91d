//! Numerical kernels: the matmul seam, fast activations and the fused gate pass.
//! The only place in the library allowed to use `unsafe` (for CPU-feature dispatch).

pub mod gates;
pub mod math;
pub mod matmul;
pub mod softmax;

use std::cell::Cell;
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

thread_local! {
    /// Set while this thread runs one part of work already split over the threads.
    static IN_SPLIT: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every product on this thread sequential: for work that is itself one of
/// the parts of a split (a batch half), where the other threads are busy with the others.
pub(crate) fn sequential<R>(f: impl FnOnce() -> R) -> R {
    /// Restores the flag even if `f` unwinds.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            IN_SPLIT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(IN_SPLIT.with(|c| c.replace(true)));
    f()
}

/// The threads a product started on this thread may use: 1 inside [`sequential`].
pub(crate) fn threads_here() -> usize {
    if IN_SPLIT.with(Cell::get) {
        1
    } else {
        threads()
    }
}
