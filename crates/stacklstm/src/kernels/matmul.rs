//! The one matrix-multiply entry point of the library.
//!
//! `sgemm` computes `C = alpha * op(A) * op(B) + beta * C` on row-major `f32` slices with
//! leading dimensions, BLAS style, so that transposes cost nothing. It is backed by `faer`,
//! sequential below [`PAR_MIN_FLOPS`] and split over [`threads`](super::threads) above: on the LSTM step shapes of this project (batch 1-64, units 50-512)
//! faer measured 94-109 GFLOP/s on one core, the best or within noise of the best Rust
//! backend, and clearly the best on the `A * B^T` products of backward. faer checks for
//! AVX-512 / AVX2+FMA at run time, so a portable build is fast. Keeping every call behind
//! this seam confines faer's 0.x API to this file.
//!
//! [`sgemm_naive`] is the reference implementation the tests compare against.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

/// Whether an operand is used as stored or transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trans {
    /// Use the matrix as stored.
    No,
    /// Use the transpose of the stored matrix.
    Yes,
}

/// Row-major view of `op(X)` with `rows x cols` logical shape, stored with leading dimension `ld`.
fn view(x: &[f32], t: Trans, rows: usize, cols: usize, ld: usize) -> MatRef<'_, f32> {
    match t {
        Trans::No => MatRef::from_row_major_slice_with_stride(x, rows, cols, ld),
        Trans::Yes => MatRef::from_row_major_slice_with_stride(x, cols, rows, ld).transpose(),
    }
}

/// Minimal slice length for a row-major `rows x cols` matrix with leading dimension `ld`.
fn needed(rows: usize, cols: usize, ld: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * ld + cols
    }
}

/// `C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C`, row-major.
///
/// `beta` must be `0.0` (overwrite `C`) or `1.0` (accumulate into `C`). With `Trans::No`, `A`
/// is stored `m x k` (leading dimension `lda >= k`); with `Trans::Yes` it is stored `k x m`
/// (`lda >= m`). Likewise `B` is stored `k x n` or `n x k`.
///
/// # Panics
/// If a slice is shorter than its dimensions require (an internal bug, never user input).
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    ta: Trans,
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    debug_assert!(beta == 0.0 || beta == 1.0, "beta must be 0 or 1");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if beta == 0.0 {
            for row in 0..m {
                c[row * ldc..row * ldc + n].fill(0.0);
            }
        }
        return;
    }
    let (ar, ac) = if ta == Trans::No { (m, k) } else { (k, m) };
    if m == 1 && tb == Trans::No && 2 * n * k < GEMV_MAX_FLOPS {
        // One row: no packing (see `gemv`). `a` is read with its stride.
        let sa = if ta == Trans::No { 1 } else { lda };
        assert!(a.len() > (k - 1) * sa, "sgemm: A too short");
        assert!(
            b.len() >= needed(k, n, ldb) && ldb >= n,
            "sgemm: B too short"
        );
        assert!(c.len() >= n, "sgemm: C too short");
        super::gemv::gemv(k, n, alpha, a, sa, b, ldb, beta != 0.0, c);
        return;
    }
    let (br, bc) = if tb == Trans::No { (k, n) } else { (n, k) };
    assert!(
        a.len() >= needed(ar, ac, lda) && lda >= ac,
        "sgemm: A too short"
    );
    assert!(
        b.len() >= needed(br, bc, ldb) && ldb >= bc,
        "sgemm: B too short"
    );
    assert!(
        c.len() >= needed(m, n, ldc) && ldc >= n,
        "sgemm: C too short"
    );
    let a = view(a, ta, m, k, lda);
    let b = view(b, tb, k, n, ldb);
    let c_len = needed(m, n, ldc);
    // A row-major `m x n` matrix is the transpose of a column-major `n x m` one. (faer
    // 0.24's `from_row_major_slice_with_stride_mut` builds a column-major view instead, so
    // it is not used.)
    let c =
        MatMut::from_column_major_slice_with_stride_mut(&mut c[..c_len], n, m, ldc).transpose_mut();
    let accum = if beta == 0.0 {
        Accum::Replace
    } else {
        Accum::Add
    };
    matmul(c, accum, a, b, alpha, par(m, n, k));
}

/// One-row products below this many FLOPs use the unpacked `gemv` kernel: measured
/// ~3x faster than faer on 1 x 50 x 200 and 1 x 64 x 256 (see `docs/performance.md`); at
/// larger `k x n` the weights no longer fit in the L2 cache and packing pays.
pub const GEMV_MAX_FLOPS: usize = 4_000_000;

/// Products smaller than this many FLOPs run on one thread. faer's fork/join costs 13-20 µs
/// per call on this project's machines, and splitting measured a loss below ~10 MFLOP and
/// x1.4-1.8 from ~100 MFLOP (64x512x2048); see `docs/performance.md`.
pub const PAR_MIN_FLOPS: usize = 32_000_000;

/// The parallelism for one product. faer splits the output into blocks, each summed over
/// the whole `k` by one thread, so the result does not depend on which thread ran what.
fn par(m: usize, n: usize, k: usize) -> Par {
    let threads = super::threads_here();
    if threads > 1 && 2 * m * n * k >= PAR_MIN_FLOPS {
        Par::rayon(threads)
    } else {
        Par::Seq
    }
}

/// Reference `sgemm`: the textbook triple loop in `f64`, the oracle for tests.
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
pub fn sgemm_naive(
    ta: Trans,
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f64;
            for p in 0..k {
                let av = match ta {
                    Trans::No => a[i * lda + p],
                    Trans::Yes => a[p * lda + i],
                };
                let bv = match tb {
                    Trans::No => b[p * ldb + j],
                    Trans::Yes => b[j * ldb + p],
                };
                acc += f64::from(av) * f64::from(bv);
            }
            let prev = if beta == 0.0 {
                0.0
            } else {
                f64::from(beta) * f64::from(c[i * ldc + j])
            };
            c[i * ldc + j] = (f64::from(alpha) * acc + prev) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::Rng;

    fn rand_vec(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()
    }

    #[test]
    fn split_products_are_bit_identical_run_to_run() {
        // Large enough to be split across threads; the split must not change the sums.
        let (m, n, k) = (96, 512, 400);
        assert!(2 * m * n * k >= PAR_MIN_FLOPS);
        let mut rng = Rng::new(9);
        let a = rand_vec(&mut rng, m * k);
        let b = rand_vec(&mut rng, k * n);
        let run = || {
            let mut c = vec![0.0; m * n];
            sgemm(
                Trans::No,
                Trans::No,
                m,
                n,
                k,
                1.0,
                &a,
                k,
                &b,
                n,
                0.0,
                &mut c,
                n,
            );
            c
        };
        let first = run();
        for _ in 0..5 {
            assert_eq!(run(), first);
        }
        let mut c = vec![0.0; m * n];
        sgemm_naive(
            Trans::No,
            Trans::No,
            m,
            n,
            k,
            1.0,
            &a,
            k,
            &b,
            n,
            0.0,
            &mut c,
            n,
        );
        for (x, y) in first.iter().zip(&c) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn matches_naive_over_shapes_transposes_and_accumulate() {
        let mut rng = Rng::new(7);
        let shapes = [
            (0, 3, 4),
            (3, 0, 4),
            (3, 4, 0),
            (1, 1, 1),
            (1, 50, 200),
            (7, 13, 5),
            (32, 17, 33),
            (2, 200, 9),
            (1, 200, 50),
            (1, 97, 33),
            (1, 8, 3),
            (1, 1024, 256),
        ];
        for &(m, n, k) in &shapes {
            for ta in [Trans::No, Trans::Yes] {
                for tb in [Trans::No, Trans::Yes] {
                    for beta in [0.0f32, 1.0] {
                        // Padded leading dimensions exercise the strides.
                        let lda = if ta == Trans::No { k + 2 } else { m + 1 };
                        let ldb = if tb == Trans::No { n + 3 } else { k + 1 };
                        let ldc = n + 1;
                        let a_rows = if ta == Trans::No { m } else { k };
                        let b_rows = if tb == Trans::No { k } else { n };
                        let a = rand_vec(&mut rng, a_rows * lda);
                        let b = rand_vec(&mut rng, b_rows * ldb);
                        let c0 = rand_vec(&mut rng, m * ldc);
                        let mut c1 = c0.clone();
                        let mut c2 = c0.clone();
                        sgemm(ta, tb, m, n, k, 0.5, &a, lda, &b, ldb, beta, &mut c1, ldc);
                        sgemm_naive(ta, tb, m, n, k, 0.5, &a, lda, &b, ldb, beta, &mut c2, ldc);
                        for i in 0..m {
                            for j in 0..n {
                                let (x, y) = (c1[i * ldc + j], c2[i * ldc + j]);
                                assert!(
                                    (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                                    "{m}x{n}x{k} {ta:?}{tb:?} beta {beta}: {x} vs {y}"
                                );
                            }
                            // Padding columns are never written.
                            for j in n..ldc {
                                assert_eq!(c1[i * ldc + j], c0[i * ldc + j]);
                            }
                        }
                    }
                }
            }
        }
    }
}
