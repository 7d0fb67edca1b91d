//! Numerical kernels: the matmul seam, fast activations and the fused gate passes (LSTM, GRU).
//! The only place in the library allowed to use `unsafe` (for CPU-feature dispatch).

/// Defines `pub fn $name(args) -> ret` running the `#[inline(always)]` body `$body`
/// compiled for AVX-512, AVX2+FMA or the portable baseline, whichever the CPU has (checked
/// at run time, so a portable build is fast). The bodies use plain adds and multiplies, so
/// every path gives bit-identical results.
macro_rules! dispatch {
    ($(#[$doc:meta])* $name:ident, $body:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        pub fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx512($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: avx512f, avx512vl and fma (avx2 is implied) were detected on
                    // this CPU just above.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: avx2 and fma were detected on this CPU just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use dispatch;

pub mod activation;
pub mod gates;
mod gemv;
pub mod gru;
pub mod math;
pub mod matmul;
pub mod softmax;

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// 0 = not set: use every available core.
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// How many threads the kernels use at most (default: the available cores).
pub fn threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => available_cores(),
        n => n,
    }
}

/// The cores this process may use, asked once: `available_parallelism` reads the cgroup
/// quota files on Linux, ~30 µs a call, which is longer than most of this library's
/// products.
fn available_cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Caps the threads the kernels use (`0` restores the default, every available core).
/// Work is only split where it was measured to pay (see `docs/performance.md`): a model
/// call of at least ~8 MFLOP runs its batch as two halves on two threads, and products of
/// at least 32 MFLOP outside such a call are split by columns. The split never depends on
/// timing, so results stay bit-identical from run to run for a given thread count; with
/// `set_threads(1)` the sums over a batch are taken in one order, which changes the last
/// bits of trained weights.
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
