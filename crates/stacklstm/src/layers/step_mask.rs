//! Masked steps of a recurrent layer (see "Masks" in the module docs): a row masked at a
//! step keeps its state, and no gradient flows through the step.
//!
//! Forward computes the step for every row (the fused kernels stay branch-free) and then
//! gives the masked rows their previous state back ([`hold`]). Backward, for the masked
//! rows of a step, saves the gradient reaching the state before the step's backward
//! ([`save`]), zeroes the gate gradients the step's backward computed for them
//! ([`zero`], so the weight and input gradients see no trace of the step) and puts the
//! saved gradient back as the gradient of the previous state ([`restore`]): the state
//! passes through unchanged, so does its gradient.
//!
//! `keep` is one step's `[B]` row of the `[T, B]` mask; buffers are `[B, w]` row-major.

/// Whether every row of the step is kept (nothing to do).
pub(crate) fn all_kept(keep: &[bool]) -> bool {
    keep.iter().all(|&k| k)
}

/// Rows of `next` masked at this step get their `prev` values.
pub(crate) fn hold(keep: &[bool], prev: &[f32], next: &mut [f32], w: usize) {
    for (r, _) in keep.iter().enumerate().filter(|(_, &k)| !k) {
        next[r * w..(r + 1) * w].copy_from_slice(&prev[r * w..(r + 1) * w]);
    }
}

/// The masked rows of `src`, one after another, into `saved`.
pub(crate) fn save(keep: &[bool], src: &[f32], w: usize, saved: &mut Vec<f32>) {
    saved.clear();
    for (r, _) in keep.iter().enumerate().filter(|(_, &k)| !k) {
        saved.extend_from_slice(&src[r * w..(r + 1) * w]);
    }
}

/// Puts what [`save`] took back into the masked rows of `dst`.
pub(crate) fn restore(keep: &[bool], saved: &[f32], dst: &mut [f32], w: usize) {
    let masked = keep.iter().enumerate().filter(|(_, &k)| !k);
    for ((r, _), s) in masked.zip(saved.chunks_exact(w)) {
        dst[r * w..(r + 1) * w].copy_from_slice(s);
    }
}

/// Zeroes the masked rows of `buf`.
pub(crate) fn zero(keep: &[bool], buf: &mut [f32], w: usize) {
    for (r, _) in keep.iter().enumerate().filter(|(_, &k)| !k) {
        buf[r * w..(r + 1) * w].fill(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::Rng;
    use crate::layers::gru::Gru;
    use crate::layers::lstm::Lstm;
    use crate::layers::test_util::{fd_check, rand_vec};
    use crate::layers::{Backward, Layer, LayerConfig, OutShape};

    /// Row patterns, one string per batch row (`1` kept, `0` masked): no padding, right
    /// padding, left padding, a hole, and a row that is all padding.
    const ROWS: [&str; 5] = ["11111", "11100", "00111", "11011", "00000"];
    const D: usize = 3;

    /// `[T, B]` time-major mask of `ROWS`.
    fn mask() -> Vec<bool> {
        let t = ROWS[0].len();
        (0..t * ROWS.len())
            .map(|k| ROWS[k % ROWS.len()].as_bytes()[k / ROWS.len()] == b'1')
            .collect()
    }

    /// The recurrent specs under test: LSTM and GRU (both reset modes), with and without
    /// `return_sequences`.
    fn specs() -> Vec<Box<dyn LayerConfig>> {
        let mut v: Vec<Box<dyn LayerConfig>> = Vec::new();
        for rs in [true, false] {
            v.push(Box::new(Lstm::new(4).return_sequences(rs)));
            v.push(Box::new(Gru::new(4).return_sequences(rs)));
            v.push(Box::new(
                Gru::new(4).return_sequences(rs).reset_after(false),
            ));
        }
        v
    }

    fn build(spec: &dyn LayerConfig, seed: u64) -> Box<dyn Layer> {
        let mut rng = Rng::new(seed);
        let input = OutShape {
            seq: true,
            width: D,
        };
        let mut l = spec.build("rnn".into(), input, &mut rng, true).unwrap();
        for w in l.weights_mut() {
            for v in w.iter_mut() {
                *v = rng.uniform(-0.5, 0.5) as f32;
            }
        }
        l
    }

    fn run(l: &dyn Layer, x: &[f32], t: usize, b: usize, mask: Option<&[bool]>) -> Vec<f32> {
        let mut c = l.new_cache();
        l.forward(x, t, b, None, mask, &mut *c);
        l.output(&*c).to_vec()
    }

    #[test]
    fn masked_steps_are_as_if_deleted_and_outputs_hold_the_carried_state() {
        let (t, b) = (ROWS[0].len(), ROWS.len());
        let m = mask();
        for spec in specs() {
            let l = build(&*spec, 3);
            let rs = spec_rs(&*spec);
            let x = rand_vec(&mut Rng::new(4), t * b * D, 1.0);
            let y = run(&*l, &x, t, b, Some(&m));
            for (row, pat) in ROWS.iter().enumerate() {
                // The row's kept steps alone, as a batch of one without a mask.
                let kept: Vec<usize> = (0..t).filter(|&s| pat.as_bytes()[s] == b'1').collect();
                let xs: Vec<f32> = kept
                    .iter()
                    .flat_map(|&s| x[(s * b + row) * D..(s * b + row + 1) * D].to_vec())
                    .collect();
                let compact = if kept.is_empty() {
                    Vec::new()
                } else {
                    run(&*l, &xs, kept.len(), 1, None)
                };
                let close = |a: &[f32], e: &[f32], what: &str| {
                    for (p, q) in a.iter().zip(e) {
                        assert!(
                            (p - q).abs() <= 1e-6,
                            "{}: {what}: {a:?} vs {e:?}",
                            spec.kind()
                        );
                    }
                };
                if rs {
                    // Output at step s: the compact output of the last kept step <= s
                    // (zeros before the first).
                    let mut seen = 0;
                    for s in 0..t {
                        if pat.as_bytes()[s] == b'1' {
                            seen += 1;
                        }
                        let got = &y[(s * b + row) * 4..(s * b + row + 1) * 4];
                        let want = if seen == 0 {
                            vec![0.0; 4]
                        } else {
                            compact[(seen - 1) * 4..seen * 4].to_vec()
                        };
                        close(got, &want, &format!("row {pat} step {s}"));
                    }
                } else {
                    let got = &y[row * 4..(row + 1) * 4];
                    let want = if kept.is_empty() {
                        vec![0.0; 4]
                    } else {
                        compact.clone()
                    };
                    close(got, &want, &format!("row {pat} last output"));
                }
            }
        }
    }

    fn spec_rs(spec: &dyn LayerConfig) -> bool {
        let input = crate::layers::StackInput {
            index: 1,
            shape: OutShape {
                seq: true,
                width: D,
            },
            flat_origin: None,
        };
        spec.output_shape("rnn", &input).unwrap().seq
    }

    #[test]
    fn masked_gradients_match_finite_differences() {
        use crate::layers::bidirectional::{Bidirectional, MergeMode};
        let (t, b) = (ROWS[0].len(), ROWS.len());
        let m = mask();
        let mut all = specs();
        // Inside a Bidirectional: each copy skips masked steps (the backward copy reads
        // them reversed) and a sequence output is zero at masked steps.
        for (mode, rs) in [
            (MergeMode::Concat, true),
            (MergeMode::Mul, true),
            (MergeMode::Ave, false),
        ] {
            all.push(Box::new(
                Bidirectional::new(Lstm::new(3).return_sequences(rs)).merge_mode(mode),
            ));
            all.push(Box::new(
                Bidirectional::new(Gru::new(3).return_sequences(rs)).merge_mode(mode),
            ));
        }
        for spec in all {
            let base = build(&*spec, 5);
            let mut rng = Rng::new(6);
            let x = rand_vec(&mut rng, t * b * D, 1.0);
            let n_out = run(&*base, &x, t, b, Some(&m)).len();
            let w = rand_vec(&mut rng, n_out, 1.0);
            let loss = |l: &dyn Layer, x: &[f32]| -> f64 {
                let y = run(l, x, t, b, Some(&m));
                y.iter()
                    .zip(&w)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum()
            };
            let mut c = base.new_cache();
            base.forward(&x, t, b, None, Some(&m), &mut *c);
            let mut grads: Vec<Vec<f32>> = base
                .weights()
                .iter()
                .map(|w| vec![0.0; w.values.len()])
                .collect();
            let mut dx = Vec::new();
            base.backward(Backward {
                x: &x,
                dy: &w,
                cache: &mut *c,
                mask: Some(&m),
                dx: Some(&mut dx),
                grads: Some(&mut grads),
            });
            let what = |n: &str| format!("{} {n}", spec.kind());
            fd_check(&what("input"), &dx, x.len(), |i, e| {
                let mut x2 = x.clone();
                x2[i] += e;
                loss(&*base, &x2)
            });
            // Inputs at masked steps have no effect at all.
            for (k, keep) in m.iter().enumerate() {
                if !keep {
                    assert!(dx[k * D..(k + 1) * D].iter().all(|&g| g == 0.0));
                }
            }
            for (wi, g) in grads.iter().enumerate() {
                fd_check(&what(&format!("weight {wi}")), g, g.len(), |i, e| {
                    let mut l2 = base.clone();
                    l2.weights_mut()[wi][i] += e;
                    loss(&*l2, &x)
                });
            }
        }
    }

    #[test]
    fn hold_save_restore_zero_touch_masked_rows_only() {
        let keep = [true, false, true, false];
        let prev: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let mut next = vec![-1.0; 8];
        hold(&keep, &prev, &mut next, 2);
        assert_eq!(next, [-1.0, -1.0, 2.0, 3.0, -1.0, -1.0, 6.0, 7.0]);
        let mut saved = Vec::new();
        save(&keep, &prev, 2, &mut saved);
        assert_eq!(saved, [2.0, 3.0, 6.0, 7.0]);
        let mut dst = vec![9.0; 8];
        restore(&keep, &saved, &mut dst, 2);
        assert_eq!(dst, [9.0, 9.0, 2.0, 3.0, 9.0, 9.0, 6.0, 7.0]);
        zero(&keep, &mut dst, 2);
        assert_eq!(dst, [9.0, 9.0, 0.0, 0.0, 9.0, 9.0, 0.0, 0.0]);
        assert!(!all_kept(&keep) && all_kept(&[true, true]));
    }
}
