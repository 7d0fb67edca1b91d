//! Row kernels of softmax and the cross-entropies: the row maximum and `e^(z - m)` with its
//! sum, vectorised through [`exp_fast`].
//!
//! Sums run in 16 fixed lanes (one AVX-512 register), added lane by lane at the end, so the
//! order of the additions is the same on every instruction set: AVX-512, AVX2 and the
//! portable path give bit-identical results.

use super::math::exp_fast;

/// Lanes of the blocked loops.
const LANES: usize = 16;

/// `max(z)` (−∞ for an empty row).
#[inline(always)]
fn max_body(z: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut blocks = z.chunks_exact(LANES);
    for b in &mut blocks {
        for (a, &v) in acc.iter_mut().zip(b) {
            *a = a.max(v);
        }
    }
    let mut m = acc.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for &v in blocks.remainder() {
        m = m.max(v);
    }
    m
}

/// `out[i] = e^(z[i] - shift)`; returns `Σ out`.
#[inline(always)]
fn exp_sum_body(z: &[f32], shift: f32, out: &mut [f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let n = z.len() / LANES * LANES;
    for (zb, ob) in z[..n]
        .chunks_exact(LANES)
        .zip(out[..n].chunks_exact_mut(LANES))
    {
        for ((a, &v), o) in acc.iter_mut().zip(zb).zip(ob) {
            let e = exp_fast(v - shift);
            *o = e;
            *a += e;
        }
    }
    let mut s = 0f32;
    for a in acc {
        s += a;
    }
    for (&v, o) in z[n..].iter().zip(&mut out[n..]) {
        let e = exp_fast(v - shift);
        *o = e;
        s += e;
    }
    s
}

/// `z[i] = e^(z[i] - shift)` in place; returns the sum (same order as [`exp_sum_body`]).
#[inline(always)]
fn exp_sum_in_place_body(z: &mut [f32], shift: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let n = z.len() / LANES * LANES;
    for zb in z[..n].chunks_exact_mut(LANES) {
        for (a, v) in acc.iter_mut().zip(zb) {
            let e = exp_fast(*v - shift);
            *v = e;
            *a += e;
        }
    }
    let mut s = 0f32;
    for a in acc {
        s += a;
    }
    for v in &mut z[n..] {
        let e = exp_fast(*v - shift);
        *v = e;
        s += e;
    }
    s
}

super::dispatch!(
    /// The largest value of `z` (−∞ for an empty row).
    max,
    max_body,
    (z: &[f32]) -> f32
);
super::dispatch!(
    /// Writes `out[i] = e^(z[i] - shift)` (`out` as long as `z`) and returns their sum.
    exp_sum,
    exp_sum_body,
    (z: &[f32], shift: f32, out: &mut [f32]) -> f32
);

super::dispatch!(
    /// `z[i] = e^(z[i] - shift)` in place; returns their sum.
    exp_sum_in_place,
    exp_sum_in_place_body,
    (z: &mut [f32], shift: f32) -> f32
);

/// Numerically stable softmax of one row, in place.
pub(crate) fn softmax_in_place(row: &mut [f32]) {
    let m = max(row);
    let sum = exp_sum_in_place(row, m);
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 2000) as f32 / 100.0
                    - 10.0
            })
            .collect()
    }

    #[test]
    fn max_and_exp_sum_match_f64_and_portable_path() {
        for n in [0, 1, 15, 16, 17, 65, 10_000] {
            let z = row(n, 7);
            let m = max(&z);
            assert_eq!(m, z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)));
            assert_eq!(m.to_bits(), max_body(&z).to_bits());
            let mut out = vec![0.0; n];
            let s = exp_sum(&z, m, &mut out);
            // `z - m` is rounded to f32 before the exponential, in the kernel as here.
            let want: f64 = z.iter().map(|&v| f64::from(v - m).exp()).sum();
            assert!(
                (f64::from(s) - want).abs() <= 1e-6 * want.max(1e-30),
                "n={n}: {s} vs {want}"
            );
            for (&o, &v) in out.iter().zip(&z) {
                let w = f64::from(v - m).exp();
                assert!((f64::from(o) - w).abs() <= 2.5e-7 * w, "{o} vs {w}");
            }
            // The dispatched (vector) path equals the portable one bit for bit.
            let mut out2 = vec![0.0; n];
            let s2 = exp_sum_body(&z, m, &mut out2);
            assert_eq!(s.to_bits(), s2.to_bits());
            assert_eq!(out, out2);
            let mut inplace = z.clone();
            assert_eq!(exp_sum_in_place(&mut inplace, m).to_bits(), s.to_bits());
            assert_eq!(inplace, out);
        }
    }
}
