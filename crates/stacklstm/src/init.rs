//! Seeded randomness and the Keras default initialisers.
//!
//! All randomness in the library flows from an explicit `u64` seed through [`Rng`]
//! (xoshiro256** seeded by SplitMix64): the same seed gives the same weights on every run
//! and every machine. No OS entropy is used anywhere.

/// A small, fast, seedable PRNG (xoshiro256**).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose whole stream is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            // SplitMix64: spreads any seed (also 0) over the 256-bit state.
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // in (0, 1]
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Uniform integer in `[0, n)` (`n > 0`), without modulo bias worth mentioning for
    /// the sizes used here (n < 2^32).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// Keras `glorot_uniform` for a `[fan_in, fan_out]` kernel: `U(-l, l)`,
/// `l = sqrt(6 / (fan_in + fan_out))`.
pub fn glorot_uniform(rng: &mut Rng, fan_in: usize, fan_out: usize) -> Vec<f32> {
    let limit = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt();
    (0..fan_in * fan_out)
        .map(|_| rng.uniform(-limit, limit) as f32)
        .collect()
}

/// Keras `orthogonal` (gain 1) for a `[rows, cols]` matrix, row-major.
///
/// As Keras does: draw a normal matrix of shape `[max, min]`, take the Q of its QR
/// decomposition with the signs fixed so that `diag(R) > 0` (which is what Gram-Schmidt
/// produces), and transpose it when `rows < cols`. The result has orthonormal rows (if
/// `rows <= cols`) or columns.
pub fn orthogonal(rng: &mut Rng, rows: usize, cols: usize) -> Vec<f32> {
    let (long, short) = (rows.max(cols), rows.min(cols));
    // The normal draws fill a `[long, short]` matrix row by row; it is kept column-major
    // (column j at at[j * long..][..long]) so that Gram-Schmidt walks contiguous memory.
    // The arithmetic, and so every bit of the result, is that of the row-major version
    // (kept as the test oracle below); only the memory order differs.
    let mut at = vec![0.0f64; long * short];
    for r in 0..long {
        for j in 0..short {
            at[j * long + r] = rng.normal();
        }
    }
    for j in 0..short {
        let (done, rest) = at.split_at_mut(j * long);
        let col = &mut rest[..long];
        // Modified Gram-Schmidt, twice for stability.
        for _ in 0..2 {
            for p in 0..j {
                let prev = &done[p * long..(p + 1) * long];
                let dot: f64 = col.iter().zip(prev).map(|(x, y)| x * y).sum();
                for (x, y) in col.iter_mut().zip(prev) {
                    *x -= dot * y;
                }
            }
        }
        let norm = col.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-30);
        for x in col.iter_mut() {
            *x /= norm;
        }
    }
    let mut out = vec![0.0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[r * cols + c] = if rows >= cols {
                at[c * long + r]
            } else {
                at[r * long + c]
            } as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward row-major version: the oracle of [`orthogonal`].
    fn orthogonal_row_major(rng: &mut Rng, rows: usize, cols: usize) -> Vec<f32> {
        let (long, short) = (rows.max(cols), rows.min(cols));
        // a: [long, short], column j at a[.., j]; work in f64 for a clean basis.
        let mut a: Vec<f64> = (0..long * short).map(|_| rng.normal()).collect();
        for j in 0..short {
            // Modified Gram-Schmidt, twice for stability.
            for _ in 0..2 {
                for p in 0..j {
                    let dot: f64 = (0..long).map(|r| a[r * short + j] * a[r * short + p]).sum();
                    for r in 0..long {
                        a[r * short + j] -= dot * a[r * short + p];
                    }
                }
            }
            let norm = (0..long)
                .map(|r| a[r * short + j] * a[r * short + j])
                .sum::<f64>()
                .sqrt()
                .max(1e-30);
            for r in 0..long {
                a[r * short + j] /= norm;
            }
        }
        let mut out = vec![0.0f32; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                out[r * cols + c] = if rows >= cols {
                    a[r * short + c]
                } else {
                    a[c * short + r]
                } as f32;
            }
        }
        out
    }

    #[test]
    fn orthogonal_equals_the_row_major_oracle_bit_for_bit() {
        for (r, c) in [(1, 1), (3, 12), (12, 3), (7, 28), (5, 5), (16, 64)] {
            let a = orthogonal(&mut Rng::new(9), r, c);
            let b = orthogonal_row_major(&mut Rng::new(9), r, c);
            assert!(a == b, "{r}x{c}");
        }
    }

    #[test]
    fn same_seed_same_stream_and_different_seed_differs() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(1);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(1);
                move |_| r.next_u64()
            })
            .collect();
        let c = Rng::new(2).next_u64();
        assert_eq!(a, b);
        assert_ne!(a[0], c);
    }

    #[test]
    fn orthogonal_rows_are_orthonormal() {
        let mut rng = Rng::new(9);
        for &(r, c) in &[(5usize, 20usize), (20, 5), (6, 6)] {
            let m = orthogonal(&mut rng, r, c);
            // Gram matrix over the shorter side is the identity.
            let (n, len, row_major) = if r <= c { (r, c, true) } else { (c, r, false) };
            for i in 0..n {
                for j in 0..n {
                    let dot: f64 = (0..len)
                        .map(|k| {
                            let (x, y) = if row_major {
                                (m[i * c + k], m[j * c + k])
                            } else {
                                (m[k * c + i], m[k * c + j])
                            };
                            f64::from(x) * f64::from(y)
                        })
                        .sum();
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-5, "{r}x{c} ({i},{j}): {dot}");
                }
            }
        }
    }

    #[test]
    fn glorot_within_limit_and_normal_has_unit_variance() {
        let mut rng = Rng::new(4);
        let w = glorot_uniform(&mut rng, 10, 40);
        let limit = (6.0f32 / 50.0).sqrt();
        assert!(w.iter().all(|v| v.abs() <= limit));
        assert!(w.iter().any(|v| v.abs() > limit * 0.9));
        let xs: Vec<f64> = (0..20000).map(|_| rng.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
