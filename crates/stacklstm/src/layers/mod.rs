//! Layers: each file holds a layer's spec, built form, forward and backward.

pub mod dense;
pub mod dropout;
pub mod embedding;
pub mod lstm;

use ndarray::{Array3, ArrayView3};

use crate::error::{Error, Result};

/// The most weights one layer may have: 2^31 (8 GiB of f32). Anything larger is almost
/// certainly a typo (`units = 10^12`) and is refused before any allocation.
pub const MAX_LAYER_PARAMS: u128 = 1 << 31;

/// Refuses a layer whose weight count (the product of `dims`) exceeds [`MAX_LAYER_PARAMS`].
pub(crate) fn check_size(name: &str, kind: &str, dims: &[usize]) -> Result<()> {
    let n = dims
        .iter()
        .fold(1u128, |acc, &d| acc.saturating_mul(d as u128));
    if n > MAX_LAYER_PARAMS {
        return Err(Error::config(format!(
            "layer '{name}' ({kind}) is too large: about {n} weights, the limit is {MAX_LAYER_PARAMS}; check its units and input width"
        )));
    }
    Ok(())
}

/// Fails on the first non-finite value, naming its `[batch, timestep, feature]` index.
///
/// Non-finite inputs are rejected rather than propagated: one NaN would silently turn
/// every later output (and, in training, every weight) into NaN.
pub(crate) fn check_finite(x: ArrayView3<'_, f32>, what: &str) -> Result<()> {
    if x.iter().all(|v| v.is_finite()) {
        return Ok(());
    }
    for ((b, t, f), v) in x.indexed_iter() {
        if !v.is_finite() {
            return Err(Error::input(format!(
                "{what}: input value {v} at [{b}, {t}, {f}] (batch, timestep, feature); NaN and infinite inputs are rejected"
            )));
        }
    }
    Ok(())
}

/// `[B, T, D]` (batch-major) to a time-major `[T, B, D]` buffer.
pub(crate) fn to_time_major(x: ArrayView3<'_, f32>) -> Vec<f32> {
    let (b, t, d) = x.dim();
    let mut out = Vec::with_capacity(b * t * d);
    for s in 0..t {
        for i in 0..b {
            out.extend(x.slice(ndarray::s![i, s, ..]).iter().copied());
        }
    }
    out
}

/// A time-major `[T, B, D]` buffer to a batch-major `[B, T, D]` array.
pub(crate) fn to_batch_major(v: &[f32], t: usize, b: usize, d: usize) -> Array3<f32> {
    Array3::from_shape_fn((b, t, d), |(i, s, k)| v[(s * b + i) * d + k])
}

#[cfg(test)]
pub(crate) mod test_util {
    use crate::init::Rng;

    /// Uniform values in `[-scale, scale]`.
    pub fn rand_vec(rng: &mut Rng, n: usize, scale: f64) -> Vec<f32> {
        (0..n).map(|_| rng.uniform(-scale, scale) as f32).collect()
    }

    /// Central finite differences against an analytic gradient.
    ///
    /// The layers compute in f32, so the difference quotient carries rounding noise of
    /// about `1e-7 |L| / eps`; with `eps = 5e-3` that is ~1e-5, and the truncation error
    /// `eps^2 |L'''| / 6` is ~1e-5 for these smooth, O(1) losses. The tolerance
    /// `1e-3 + 1e-2 |fd|` sits two orders above both and two below the size of a real
    /// mistake (a missing term or a wrong derivative changes a gradient by O(0.1)).
    pub fn fd_check(
        what: &str,
        analytic: &[f32],
        n: usize,
        mut loss: impl FnMut(usize, f32) -> f64,
    ) {
        assert_eq!(analytic.len(), n, "{what}: gradient has the wrong length");
        let eps = 5e-3f32;
        for (i, &a) in analytic.iter().enumerate() {
            let fd = (loss(i, eps) - loss(i, -eps)) / (2.0 * f64::from(eps));
            let a = f64::from(a);
            assert!(
                (a - fd).abs() <= 1e-3 + 1e-2 * fd.abs(),
                "{what}[{i}]: analytic {a} vs finite difference {fd}"
            );
        }
    }
}
