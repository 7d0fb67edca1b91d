//! `c = alpha * a · B + beta * c` for one row `a` (`M = 1`, `B` row-major `[k, n]`): the
//! batch-1 recurrent product `h[t-1] · recurrent_kernel` of inference.
//!
//! A general GEMM packs its operands and spends most of a 1 x 50 x 200 product on that
//! (~0.7 µs in faer, where the 10,000 multiply-adds take ~0.2 µs). Here each block of up to
//! 64 output columns stays in registers while `a[p] * B[p, block]` is added for every `p`:
//! `B` is read once, straight from memory, and nothing is packed.
//!
//! Each output is summed over `p` in order, in plain multiplies and adds, so every
//! instruction-set path gives bit-identical results.

/// One block of `W` output columns starting at `j0`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block<const W: usize>(
    k: usize,
    j0: usize,
    alpha: f32,
    a: &[f32],
    sa: usize,
    b: &[f32],
    ldb: usize,
    accumulate: bool,
    c: &mut [f32],
) {
    let mut acc = [0f32; W];
    for p in 0..k {
        let av = a[p * sa];
        let row: &[f32; W] = match b[p * ldb + j0..p * ldb + j0 + W].try_into() {
            Ok(r) => r,
            Err(_) => unreachable!("a block of W columns"),
        };
        for (s, &bv) in acc.iter_mut().zip(row) {
            *s += av * bv;
        }
    }
    let out = &mut c[j0..j0 + W];
    if accumulate {
        for (o, s) in out.iter_mut().zip(acc) {
            *o += alpha * s;
        }
    } else {
        for (o, s) in out.iter_mut().zip(acc) {
            *o = alpha * s;
        }
    }
}

/// See [`gemv`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gemv_body(
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    sa: usize,
    b: &[f32],
    ldb: usize,
    accumulate: bool,
    c: &mut [f32],
) {
    let mut j = 0;
    while j + 128 <= n {
        block::<128>(k, j, alpha, a, sa, b, ldb, accumulate, c);
        j += 128;
    }
    while j + 64 <= n {
        block::<64>(k, j, alpha, a, sa, b, ldb, accumulate, c);
        j += 64;
    }
    while j + 16 <= n {
        block::<16>(k, j, alpha, a, sa, b, ldb, accumulate, c);
        j += 16;
    }
    while j + 8 <= n {
        block::<8>(k, j, alpha, a, sa, b, ldb, accumulate, c);
        j += 8;
    }
    while j < n {
        block::<1>(k, j, alpha, a, sa, b, ldb, accumulate, c);
        j += 1;
    }
}

super::dispatch!(
    /// `c[..n] = alpha * Σ_p a[p * sa] * b[p * ldb + j] (+ c[j] when accumulate)`.
    ///
    /// # Panics
    /// If a slice is shorter than `k`, `n`, `sa`, `ldb` require (an internal bug).
    gemv,
    gemv_body,
    (k: usize, n: usize, alpha: f32, a: &[f32], sa: usize, b: &[f32], ldb: usize, accumulate: bool, c: &mut [f32]) -> ()
);
