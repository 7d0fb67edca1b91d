//! Running one batch as two halves on two threads (data parallelism inside a call).
//!
//! Samples are independent through the whole stack, so each half runs forward, the loss
//! and backward on its own rows with no synchronisation until the end:
//!
//! ```text
//! batch rows [0, b/2)  ──► half 0: forward ► loss part ► backward ► grads g0 (the layers' own)
//! batch rows [b/2, b)  ──► half 1: forward ► loss part ► backward ► grads g1 (ws.half_grads)
//!                                                   then g = g0 + g1, loss = (s0 + s1) / n
//! ```
//!
//! - The loss parts are normalised by the whole batch (`Loss::compute_sum`), so the
//!   gradient reaching the output is exactly the unsplit one; the weight gradients differ
//!   from a one-thread run only in the order of the sum over samples.
//! - Dropout masks are drawn once for the whole batch, as without the split, and each half
//!   gets its rows; carried (stateful) state is split by rows and joined again after.
//! - Each half always gets the same rows and its products run sequentially on its thread
//!   (`kernels::sequential`), so results do not depend on thread timing: the same seed and
//!   thread count give bit-identical weights run after run.

use ndarray::{s, ArrayD, ArrayView3, ArrayViewD, Axis, Slice};

use super::{Layer, LayerGrads, Model, Workspace};
use crate::error::{Error, Result};
use crate::kernels;
use crate::layers::to_time_major;
use crate::loss::Loss;

/// Carried `(h, c)` per layer, as `forward_ws` takes it.
type States = Vec<Option<(Vec<f32>, Vec<f32>)>>;

/// Forward FLOPs from which a call is split: the split itself costs a few microseconds
/// (`rayon::join`, per-half buffers), measured to pay from about 8 MFLOP per forward.
const MIN_FLOPS: usize = 8_000_000;

impl Model {
    /// Whether a `[b, t, ..]` batch is run as two halves on two threads (never inside
    /// `kernels::sequential`, i.e. within a part of a split already).
    pub(super) fn split_batch(&self, b: usize, t: usize) -> bool {
        kernels::threads_here() >= 2 && b >= 2 && 2 * self.param_count() * t * b >= MIN_FLOPS
    }

    /// Rows `[lo, hi)` of the carried states.
    fn half_states(&self, lo: usize, hi: usize) -> States {
        self.layers
            .iter()
            .zip(&self.states)
            .map(|(l, st)| match (l, st) {
                (Layer::Lstm(l), Some((h, c))) => {
                    let u = l.units();
                    Some((h[lo * u..hi * u].to_vec(), c[lo * u..hi * u].to_vec()))
                }
                _ => None,
            })
            .collect()
    }

    /// Copies rows `[lo, hi)` of the dropout masks drawn for the whole batch in `full`
    /// (none at inference) into `half`.
    fn half_masks(&self, full: &Workspace, lo: usize, hi: usize, half: &mut Workspace) {
        let n = self.layers.len();
        half.lstm.resize_with(n, Default::default);
        half.masks.resize_with(n, Vec::new);
        let (t, b) = (full.t, full.b);
        let mut seq = true;
        let mut width = self.features;
        for (i, layer) in self.layers.iter().enumerate() {
            let rows = |m: &[f32], w: usize, out: &mut Vec<f32>| {
                out.clear();
                if !m.is_empty() {
                    out.extend_from_slice(&m[lo * w..hi * w]);
                }
            };
            match layer {
                Layer::Lstm(l) => {
                    let (src, dst) = (full.lstm.get(i), &mut half.lstm[i]);
                    let empty = Vec::new();
                    let (im, rm) = src.map_or((&empty, &empty), |c| (&c.in_mask, &c.rec_mask));
                    rows(im, l.input_width, &mut dst.in_mask);
                    rows(rm, l.units(), &mut dst.rec_mask);
                    seq = l.spec.return_sequences;
                }
                Layer::Dropout(_) => {
                    let m = full.masks.get(i).map_or(&[][..], Vec::as_slice);
                    let out = &mut half.masks[i];
                    out.clear();
                    if !m.is_empty() {
                        // Time-major `[t, b, width]` for sequences, `[b, width]` otherwise.
                        let steps = if seq { t } else { 1 };
                        for step in 0..steps {
                            let base = step * b;
                            out.extend_from_slice(&m[(base + lo) * width..(base + hi) * width]);
                        }
                    }
                }
                Layer::Dense(_) | Layer::Embedding(_) => {}
            }
            width = self.shapes[i].width;
        }
    }

    /// Loads rows `[lo, hi)` of `x` (already checked as a whole) into `half`.
    fn load_half(x: ArrayView3<'_, f32>, lo: usize, hi: usize, half: &mut Workspace) {
        let xs = x.slice(s![lo..hi, .., ..]);
        half.t = xs.dim().1;
        half.b = xs.dim().0;
        half.x = to_time_major(xs);
    }

    /// [`predict_with`](Model::predict_with) on the two halves of the batch in parallel.
    pub(super) fn predict_halves(
        &self,
        x: ArrayView3<'_, f32>,
        ws: &mut Workspace,
    ) -> Result<ArrayD<f32>> {
        self.check_input(x)?;
        let (b, t, _) = x.dim();
        let half = b / 2;
        ws.t = t;
        ws.b = b;
        ws.masks.clear();
        ws.lstm.clear();
        ws.halves.resize_with(2, Workspace::default);
        let bounds = [(0, half), (half, b)];
        let states = [self.half_states(0, half), self.half_states(half, b)];
        for h in &mut ws.halves {
            // No dropout at inference.
            h.masks.iter_mut().for_each(Vec::clear);
            for c in &mut h.lstm {
                c.in_mask.clear();
                c.rec_mask.clear();
            }
        }
        let (w0, w1) = ws.halves.split_at_mut(1);
        let run = |k: usize, w: &mut Workspace| {
            kernels::sequential(|| {
                let (lo, hi) = bounds[k];
                Self::load_half(x, lo, hi, w);
                self.forward_ws(w, &states[k]);
                self.output_array(w)
            })
        };
        let (a, c) = rayon::join(|| run(0, &mut w0[0]), || run(1, &mut w1[0]));
        ws.split = true;
        ndarray::concatenate(Axis(0), &[a.view(), c.view()])
            .map_err(|e| Error::input(e.to_string()))
    }

    /// Checks `x` and `target` as a whole, draws the dropout masks of the whole batch
    /// (when `training`), then runs [`loss_step_halves`](Self::loss_step_halves).
    pub(super) fn checked_loss_halves(
        &mut self,
        x: ArrayView3<'_, f32>,
        target: ArrayViewD<'_, f32>,
        loss: Loss,
        training: bool,
        backward: bool,
    ) -> Result<f64> {
        let (b, t, _) = x.dim();
        self.check_input(x)?;
        self.check_target_of(b, t, &target, loss)?;
        (self.ws.t, self.ws.b) = (t, b);
        self.prepare_masks(training);
        self.loss_step_halves(x, target, loss, backward)
    }

    /// `loss_step` / `eval_loss` on the two halves of the batch in parallel: forward (with
    /// the masks drawn in `self.ws` for the whole batch), the loss, and with `backward` the
    /// weight gradients summed into the layers (zeroed first). Returns the batch's loss.
    fn loss_step_halves(
        &mut self,
        x: ArrayView3<'_, f32>,
        target: ArrayViewD<'_, f32>,
        loss: Loss,
        backward: bool,
    ) -> Result<f64> {
        let (b, t) = (self.ws.b, self.ws.t);
        let half = b / 2;
        let bounds = [(0, half), (half, b)];
        let states = [self.half_states(0, half), self.half_states(half, b)];
        let mut ws = std::mem::take(&mut self.ws);
        ws.halves.resize_with(2, Workspace::default);
        for (k, (lo, hi)) in bounds.into_iter().enumerate() {
            let mut h = std::mem::take(&mut ws.halves[k]);
            self.half_masks(&ws, lo, hi, &mut h);
            ws.halves[k] = h;
        }
        // Half 0 accumulates into the layers' own gradients, half 1 into `half_grads`.
        // An Embedding input layer runs its backward (a scatter-add into its table) after
        // the halves, one after the other into the same gradient: no second copy of a
        // vocabulary-sized table.
        let first_trained = usize::from(matches!(self.layers.first(), Some(Layer::Embedding(_))));
        // Likewise a Dense output layer: each half computes its dz and dx, and the weight
        // gradient of both halves is summed after them, its rows split over the threads:
        // no second copy of a vocabulary-wide head's gradient.
        let last = self.layers.len() - 1;
        let head_after = last > 0 && matches!(self.layers.last(), Some(Layer::Dense(_)));
        let mut g0: Vec<LayerGrads> = Vec::new();
        let mut g1 = std::mem::take(&mut ws.half_grads);
        if backward {
            self.zero_grad();
            g0 = self.layers.iter_mut().map(Layer::take_grads).collect();
            g1.resize_with(g0.len(), LayerGrads::default);
            for (i, (a, z)) in g1.iter_mut().zip(&mut g0).enumerate() {
                if i < first_trained || (head_after && i == last) {
                    *a = LayerGrads::None;
                    continue;
                }
                if std::mem::discriminant(a) != std::mem::discriminant(z) {
                    *a = z.clone();
                }
                for (buf, like) in a.buffers_mut().into_iter().zip(z.buffers_mut()) {
                    buf.clear();
                    buf.resize(like.len(), 0.0);
                }
            }
        }
        let s = self.output_shape();
        let total_rows = if s.seq { t * b } else { b };
        let this = &*self;
        let run = |k: usize, w: &mut Workspace, g: &mut [LayerGrads]| -> Result<f64> {
            kernels::sequential(|| {
                let (lo, hi) = bounds[k];
                Self::load_half(x, lo, hi, w);
                this.forward_ws(w, &states[k]);
                let tgt = target.slice_axis(Axis(0), Slice::from(lo..hi));
                let sum = this.loss_sum_of_output(w, tgt, loss, total_rows)?;
                if backward {
                    this.backward_layers(w, false, g, first_trained, !head_after);
                }
                Ok(sum)
            })
        };
        let (w0, w1) = ws.halves.split_at_mut(1);
        let (r0, r1) = rayon::join(
            || run(0, &mut w0[0], &mut g0),
            || run(1, &mut w1[0], &mut g1),
        );
        if backward && head_after && r0.is_ok() && r1.is_ok() {
            if let (Some(Layer::Dense(d)), Some(LayerGrads::Dense(g))) =
                (self.layers.last(), g0.last_mut())
            {
                let parts: Vec<(&[f32], &[f32])> = ws
                    .halves
                    .iter()
                    .map(|h| {
                        let x = super::layer_output(&self.layers, &h.outs, &h.lstm, last - 1);
                        (x, d.dz(&h.dy, &h.scratch))
                    })
                    .collect();
                d.backward_weights_parts(&parts, g);
            }
        }
        if backward && first_trained == 1 && r0.is_ok() && r1.is_ok() {
            if let (Some(Layer::Embedding(e)), Some(LayerGrads::Embedding(g))) =
                (self.layers.first(), g0.first_mut())
            {
                for h in &ws.halves {
                    e.backward_into(&h.x, &h.grad_a, g);
                }
            }
        }
        if backward {
            for ((l, mut a), z) in self.layers.iter_mut().zip(g0).zip(&mut g1) {
                for (dst, src) in a.buffers_mut().into_iter().zip(z.buffers_mut()) {
                    for (d, v) in dst.iter_mut().zip(src.iter()) {
                        *d += v;
                    }
                }
                l.put_grads(a);
            }
        }
        ws.half_grads = g1;
        ws.split = true;
        // The whole-batch buffers are not current: `backward` must not run on them.
        ws.outs.clear();
        self.ws = ws;
        Ok((r0? + r1?) / loss.denominator(total_rows, s.width))
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, Array3, ArrayD};

    use crate::init::Rng;
    use crate::kernels;
    use crate::layers::dense::Dense;
    use crate::layers::dropout::Dropout;
    use crate::layers::embedding::Embedding;
    use crate::layers::lstm::Lstm;
    use crate::loss::Loss;
    use crate::model::{Model, Sequential};
    use crate::optim::Adam;

    /// Every gradient of `a` within `tol` of `b`'s, relative to the tensor's largest entry.
    fn grads_close(a: &[ArrayD<f32>], b: &[ArrayD<f32>], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (k, (ga, gb)) in a.iter().zip(b).enumerate() {
            let scale = gb.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
            assert!(
                scale > 1e-9,
                "gradient {k} is all zero: the test would not see a bug"
            );
            for (x, y) in ga.iter().zip(gb) {
                assert!(
                    (x - y).abs() <= tol * scale,
                    "gradient {k}: {x} vs {y} (scale {scale})"
                );
            }
        }
    }

    fn uniform(shape: (usize, usize, usize), seed: u64) -> Array3<f32> {
        let mut rng = Rng::new(seed);
        Array3::from_shape_fn(shape, |_| rng.uniform(-1.0, 1.0) as f32)
    }

    /// One training loss step (dropout on), split or not; returns the loss and gradients.
    fn step(
        m: &mut Model,
        x: &Array3<f32>,
        y: &ArrayD<f32>,
        loss: Loss,
        split: bool,
    ) -> (f64, Vec<ArrayD<f32>>) {
        m.rng = Rng::new(77);
        let v = if split {
            m.loss_step(x.view(), y.view(), loss, true, false).unwrap()
        } else {
            kernels::sequential(|| m.loss_step(x.view(), y.view(), loss, true, false)).unwrap()
        };
        assert_eq!(m.ws.split, split && kernels::threads() >= 2);
        (v, m.get_gradients())
    }

    #[test]
    fn split_training_step_equals_one_thread_with_dropout_masks() {
        let mut m = Sequential::new()
            .input_shape(16, 5)
            .add(
                Lstm::new(24)
                    .return_sequences(true)
                    .dropout(0.2)
                    .recurrent_dropout(0.3),
            )
            .add(Dropout::new(0.25))
            .add(Lstm::new(24).return_sequences(true))
            .add(Dense::new(4).activation(crate::activation::Activation::Softmax))
            .seed(3)
            .build()
            .unwrap();
        let (b, t) = (37, 16);
        assert!(
            kernels::threads() < 2 || m.split_batch(b, t),
            "the batch must be split"
        );
        let x = uniform((b, t, 5), 1);
        let mut rng = Rng::new(2);
        let y = Array3::from_shape_fn((b, t, 4), |_| {
            if rng.uniform(0.0, 1.0) < 0.25 {
                1.0
            } else {
                0.0
            }
        });
        let y = y.into_dyn();
        let loss = Loss::CategoricalCrossentropy { from_logits: false };
        let (v1, g1) = step(&mut m, &x, &y, loss, false);
        let (v2, g2) = step(&mut m, &x, &y, loss, true);
        assert!((v1 - v2).abs() <= 1e-12 * v1.abs(), "loss {v1} vs {v2}");
        grads_close(&g2, &g1, 1e-5);
        // Metrics see both halves: the rows of the parts add up to the batch.
        let rows: usize = m
            .last_output_and_target()
            .iter()
            .map(|(o, _)| o.len() / 4)
            .sum();
        assert_eq!(rows, b * t);
        // Run to run, the split step is bit-identical.
        let (v3, g3) = step(&mut m, &x, &y, loss, true);
        assert_eq!(v2.to_bits(), v3.to_bits());
        assert_eq!(g2, g3);
    }

    #[test]
    fn split_steps_carry_stateful_state_and_token_inputs() {
        let build = || {
            Sequential::new()
                .input_shape(12, 1)
                .add(Embedding::new(50, 16))
                .add(Lstm::new(32).return_sequences(true).stateful(true))
                .add(Dense::new(50))
                .seed(9)
                .build()
                .unwrap()
        };
        let (b, t) = (48, 12);
        let mut rng = Rng::new(4);
        let x = Array3::from_shape_fn((b, t, 1), |_| (rng.next_u64() % 50) as f32);
        let y = Array2::from_shape_fn((b, t), |_| (rng.next_u64() % 50) as f32).into_dyn();
        let loss = Loss::SparseCategoricalCrossentropy { from_logits: true };
        let (mut one, mut two) = (build(), build());
        assert!(kernels::threads() < 2 || two.split_batch(b, t));
        // Two consecutive steps each, carrying the state from the first to the second.
        for _ in 0..2 {
            let (v1, g1) = step(&mut one, &x, &y, loss, false);
            one.carry_states();
            let (v2, g2) = step(&mut two, &x, &y, loss, true);
            two.carry_states();
            assert!((v1 - v2).abs() <= 1e-12 * v1.abs(), "loss {v1} vs {v2}");
            grads_close(&g2, &g1, 1e-5);
        }
        let (h1, c1) = one.states[1].clone().unwrap();
        let (h2, c2) = two.states[1].clone().unwrap();
        assert_eq!(h1.len(), b * 32);
        for (a, z) in h1.iter().chain(&c1).zip(h2.iter().chain(&c2)) {
            assert!((a - z).abs() <= 1e-6, "carried state {a} vs {z}");
        }
        // Evaluation splits the same way and gives the same loss.
        let e1 = kernels::sequential(|| one.eval_loss(x.view(), y.view(), loss)).unwrap();
        let e2 = two.eval_loss(x.view(), y.view(), loss).unwrap();
        assert!((e1 - e2).abs() <= 1e-6 * e1.abs(), "eval loss {e1} vs {e2}");
    }

    #[test]
    fn split_training_is_bit_identical_run_to_run() {
        let run = || {
            let mut m = Sequential::new()
                .input_shape(20, 3)
                .add(Lstm::new(32).return_sequences(true))
                .add(Lstm::new(32))
                .add(Dense::new(1))
                .seed(5)
                .build()
                .unwrap();
            assert!(kernels::threads() < 2 || m.split_batch(33, 20));
            m.compile(Loss::Mse, Adam::new(1e-2)).unwrap();
            let x = uniform((33, 20, 3), 8);
            let y = uniform((33, 1, 1), 9)
                .into_shape_with_order((33, 1))
                .unwrap()
                .into_dyn();
            for _ in 0..3 {
                m.train_on_batch(x.view(), y.view()).unwrap();
            }
            m.get_weights()
        };
        assert_eq!(run(), run());
    }
}
