//! The executor: every pass over a batch (inference, evaluation, a training step) runs
//! here, as one part on the calling thread or as two halves on two threads.
//!
//! Samples are independent through the whole stack, so each part runs forward, the loss
//! and backward on its own rows with no synchronisation until the end:
//!
//! ```text
//! batch rows [0, b/2)  ──► part 0: forward ► loss part ► backward ► grads g0 (the caller's)
//! batch rows [b/2, b)  ──► part 1: forward ► loss part ► backward ► grads g1 (ws.part_grads)
//!                             then deferred weight gradients, g = g0 + g1, loss = (s0 + s1) / n
//! ```
//!
//! - The loss parts are normalised by the whole batch (`Loss::compute_sum`), so the
//!   gradient reaching the output is exactly the one-part one; the weight gradients differ
//!   from a one-part pass only in the order of the sum over samples.
//! - Dropout masks are drawn once for the whole batch, as without the split, and each part
//!   gets its rows; carried (stateful) state is split by rows and joined again after.
//! - A layer whose weight gradient is large and cheap to form after the fact (an
//!   Embedding input, a Dense output: [`Layer::defers_weight_grads`]) forms it once from
//!   both parts instead of keeping a second copy.
//! - Each part always gets the same rows and its products run sequentially on its thread
//!   (`kernels::sequential`), so results do not depend on thread timing: the same seed and
//!   thread count give bit-identical weights run after run.

use ndarray::{s, ArrayView3, ArrayViewD};

use super::backward::Deferred;
use super::workspace::{zero_grads, Grads, PartBuffers, Workspace};
use super::Model;
use crate::error::Result;
use crate::init::Rng;
use crate::kernels;
use crate::layers::{to_time_major_into, Layer, Part, State};
use crate::loss::Loss;

/// Forward FLOPs from which a batch is split: the split itself costs a few microseconds
/// (`rayon::join`, per-part buffers), measured to pay from about 8 MFLOP per forward.
const MIN_FLOPS: usize = 8_000_000;

/// One batch part's output rows, their targets and (with a masked output) which rows
/// count: what the metrics read after a pass.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scored<'a> {
    /// `[rows, width]`, time-major rows.
    pub y: &'a [f32],
    /// `[rows, width]`, or `[rows]` class ids.
    pub target: &'a [f32],
    /// `[rows]`: true where the row counts; `None`: every row does.
    pub keep: Option<&'a [bool]>,
}

/// One pass over a batch.
#[derive(Debug)]
pub(crate) struct Pass<'a> {
    /// `[batch, timesteps, features]`.
    pub x: ArrayView3<'a, f32>,
    /// The loss target (the output's shape, or class ids for sparse losses) and the loss;
    /// `None` for inference.
    pub target: Option<(ArrayViewD<'a, f32>, Loss)>,
    /// Training: draw dropout masks from this generator. `None`: dropout off.
    pub masks: Option<&'a mut Rng>,
    /// Run backward, accumulating into these gradients after zeroing them.
    pub grads: Option<&'a mut Grads>,
    /// Keep d input in the part's `grad_a` (forces one part).
    pub input_grad: bool,
}

impl Model {
    /// Whether a `[b, t, ..]` batch is run as two halves on two threads (never inside
    /// `kernels::sequential`, i.e. within a part of a split already).
    pub(crate) fn split_batch(&self, b: usize, t: usize) -> bool {
        kernels::threads_here() >= 2 && b >= 2 && 2 * self.param_count() * t * b >= MIN_FLOPS
    }

    /// Runs `pass`: checks the input (and target), forward, the loss when there is a
    /// target, backward when there are gradients. Returns the batch's loss (0 without a
    /// target). The outputs, targets and caches stay in `ws`.
    ///
    /// # Errors
    /// Shape errors for the input or target; non-finite or out-of-vocabulary inputs;
    /// invalid targets (see [`Loss::compute`]).
    pub(crate) fn run_pass(&self, ws: &mut Workspace, pass: Pass<'_>) -> Result<f64> {
        let Pass {
            x,
            target,
            masks,
            mut grads,
            input_grad,
        } = pass;
        let (b, t, _) = x.dim();
        let backward = grads.is_some();
        self.check_input(x)?;
        if let Some((tgt, loss)) = &target {
            self.check_target(b, t, tgt, *loss)?;
        }
        let n_parts = if !input_grad && self.split_batch(b, t) {
            2
        } else {
            1
        };
        ws.prepare(&self.layers, t, b, n_parts);
        self.prepare_masks(ws, masks);
        self.prepare_step_mask(ws, x);
        let sliced: Vec<Vec<Option<State>>>;
        let states: [&[Option<State>]; 2] = if n_parts == 1 {
            [&self.states, &[]]
        } else {
            sliced = ws
                .parts()
                .iter()
                .map(|p| {
                    self.states
                        .iter()
                        .map(|s| s.as_ref().map(|s| s.rows(p.rows.clone())))
                        .collect()
                })
                .collect();
            [&sliced[0], &sliced[1]]
        };
        let last = self.layers.len() - 1;
        let defer = |l: &dyn Layer, first: bool, last: bool| {
            n_parts > 1 && grads.is_some() && l.defers_weight_grads(first, last)
        };
        let deferred = Deferred {
            first: defer(&*self.layers[0], true, last == 0),
            last: last > 0 && defer(&*self.layers[last], false, true),
        };
        if let Some(g) = grads.as_deref_mut() {
            zero_grads(&self.layers, g);
        }
        let s = self.output_shape();
        // With a masked output the loss is the mean over the kept positions (0, not NaN,
        // when there are none: every position then contributes nothing).
        let total_rows = if self.output_masked() {
            ws.mask.iter().filter(|&&k| k).count().max(1)
        } else if s.seq {
            t * b
        } else {
            b
        };
        let run = |p: &mut PartBuffers, states: &[Option<State>], g: Option<&mut Grads>| {
            to_time_major_into(x.slice(s![p.rows.clone(), .., ..]), &mut p.x);
            self.forward_part(p, states);
            let sum = match &target {
                Some((tgt, loss)) => self.part_loss_sum(p, tgt.view(), *loss, total_rows)?,
                None => 0.0,
            };
            if let Some(g) = g {
                self.backward_part(p, g, input_grad, deferred);
            }
            Ok::<f64, crate::Error>(sum)
        };
        let sum = if n_parts == 1 {
            run(&mut ws.parts[0], states[0], grads.as_deref_mut())?
        } else {
            let g1 = &mut ws.part_grads;
            if grads.is_some() {
                zero_grads(&self.layers, g1);
                for (i, g) in g1.iter_mut().enumerate() {
                    if (i == 0 && deferred.first) || (i == last && deferred.last) {
                        g.clear();
                    }
                }
            }
            let (p0, p1) = ws.parts.split_at_mut(1);
            let g0 = grads.as_deref_mut();
            let g1 = g0.is_some().then_some(g1);
            let (r0, r1) = rayon::join(
                || kernels::sequential(|| run(&mut p0[0], states[0], g0)),
                || kernels::sequential(|| run(&mut p1[0], states[1], g1)),
            );
            r0? + r1?
        };
        if let Some(g) = grads {
            self.finish_grads(ws, g, deferred);
        }
        ws.fresh = !backward;
        let denominator = target.map_or(1.0, |(_, loss)| loss.denominator(total_rows, s.width));
        Ok(sum / denominator)
    }

    /// Draws the training masks for the batch (into the part's caches, or into `ws.full`
    /// and then each part's rows), or clears them.
    fn prepare_masks(&self, ws: &mut Workspace, masks: Option<&mut Rng>) {
        let (t, b) = (ws.t, ws.b);
        match masks {
            None => {
                for p in &mut ws.parts[..ws.n_parts] {
                    for (l, c) in self.layers.iter().zip(&mut p.caches) {
                        l.clear_masks(&mut **c);
                    }
                }
            }
            Some(rng) if ws.n_parts == 1 => {
                for (l, c) in self.layers.iter().zip(&mut ws.parts[0].caches) {
                    l.draw_masks(rng, t, b, &mut **c);
                }
            }
            Some(rng) => {
                for (l, c) in self.layers.iter().zip(&mut ws.full) {
                    l.draw_masks(rng, t, b, &mut **c);
                }
                for p in &mut ws.parts[..ws.n_parts] {
                    for ((l, full), c) in self.layers.iter().zip(&ws.full).zip(&mut p.caches) {
                        l.copy_mask_rows(&**full, p.rows.clone(), t, b, &mut **c);
                    }
                }
            }
        }
    }

    /// The step mask of the batch `x` (from the first layer, for a model that masks) into
    /// `ws.mask`, and each part's rows of it.
    fn prepare_step_mask(&self, ws: &mut Workspace, x: ArrayView3<'_, f32>) {
        ws.mask.clear();
        let n_parts = ws.n_parts;
        if !self.has_mask() {
            for p in &mut ws.parts[..n_parts] {
                p.mask.clear();
            }
            return;
        }
        self.layers[0].compute_mask(x, &mut ws.mask);
        let (t, b) = (ws.t, ws.b);
        for p in &mut ws.parts[..n_parts] {
            p.mask.clear();
            for step in 0..t {
                p.mask
                    .extend_from_slice(&ws.mask[step * b + p.rows.start..step * b + p.rows.end]);
            }
        }
    }

    /// After the parts' backward: the deferred weight gradients from every part, then the
    /// second part's gradients added to the first's, in a fixed order.
    fn finish_grads(&self, ws: &mut Workspace, grads: &mut Grads, deferred: Deferred) {
        let last = self.layers.len() - 1;
        if deferred.last {
            let parts: Vec<Part<'_>> = ws
                .parts()
                .iter()
                .map(|p| Part {
                    x: self.layer_output(p, last - 1),
                    dy: &p.dy,
                    cache: &*p.caches[last],
                })
                .collect();
            self.layers[last].weight_grads_of_parts(&parts, &mut grads[last]);
        }
        if deferred.first {
            let parts: Vec<Part<'_>> = ws
                .parts()
                .iter()
                .map(|p| Part {
                    x: &p.x,
                    dy: &p.grad_a,
                    cache: &*p.caches[0],
                })
                .collect();
            self.layers[0].weight_grads_of_parts(&parts, &mut grads[0]);
        }
        if ws.n_parts > 1 {
            for (dst, src) in grads.iter_mut().zip(&ws.part_grads) {
                for (d, s) in dst.iter_mut().zip(src) {
                    for (a, v) in d.iter_mut().zip(s) {
                        *a += v;
                    }
                }
            }
        }
    }

    /// The output (time-major, `[rows, width]`), target and, when the output carries the
    /// step mask, the kept rows of the last pass: one triple per batch part.
    pub(crate) fn outputs_and_targets<'a>(&self, ws: &'a Workspace) -> Vec<Scored<'a>> {
        let last = self.layers.len() - 1;
        ws.parts()
            .iter()
            .map(|p| Scored {
                y: self.layer_output(p, last),
                target: p.target.as_slice(),
                keep: self.output_masked().then_some(p.mask.as_slice()),
            })
            .collect()
    }

    /// Stores the final state of every stateful layer after a pass in `ws`.
    pub(crate) fn carry_states(&mut self, ws: &Workspace) {
        for (i, l) in self.layers.iter().enumerate() {
            if !l.stateful() {
                continue;
            }
            let mut tensors: Vec<Vec<f32>> = vec![Vec::new(); l.state_widths().len()];
            for p in ws.parts() {
                for (dst, src) in tensors.iter_mut().zip(l.final_state(&*p.caches[i])) {
                    dst.extend_from_slice(src);
                }
            }
            self.states[i] = Some(State {
                batch: ws.b,
                tensors,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, Array3, ArrayD};

    use super::Pass;
    use crate::init::Rng;
    use crate::kernels;
    use crate::layers::dense::Dense;
    use crate::layers::dropout::Dropout;
    use crate::layers::embedding::Embedding;
    use crate::layers::lstm::Lstm;
    use crate::loss::Loss;
    use crate::model::{Grads, Model, Sequential, Workspace};
    use crate::optim::Adam;

    /// Every gradient of `a` within `tol` of `b`'s, relative to the tensor's largest entry.
    fn grads_close(a: &[Vec<f32>], b: &[Vec<f32>], tol: f32) {
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

    /// One training loss step (dropout on), split or not; returns the loss and the
    /// gradients (one vector per weight).
    fn step(
        m: &Model,
        ws: &mut Workspace,
        x: &Array3<f32>,
        y: &ArrayD<f32>,
        loss: Loss,
        split: bool,
    ) -> (f64, Vec<Vec<f32>>) {
        let mut rng = Rng::new(77);
        let mut grads = Grads::new();
        let mut run = || {
            m.run_pass(
                ws,
                Pass {
                    x: x.view(),
                    target: Some((y.view(), loss)),
                    masks: Some(&mut rng),
                    grads: Some(&mut grads),
                    input_grad: false,
                },
            )
            .unwrap()
        };
        let v = if split {
            run()
        } else {
            kernels::sequential(run)
        };
        assert_eq!(ws.n_parts == 2, split && kernels::threads() >= 2);
        (v, grads.into_iter().flatten().collect())
    }

    #[test]
    fn split_training_step_equals_one_thread_with_dropout_masks() {
        let m = Sequential::new()
            .input_shape(16, 5)
            .add(
                Lstm::new(24)
                    .return_sequences(true)
                    .dropout(0.2)
                    .recurrent_dropout(0.3),
            )
            .add(Dropout::new(0.25))
            .add(Lstm::new(24).return_sequences(true))
            .add(Dense::new(4).activation(crate::kernels::activation::Activation::Softmax))
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
        let mut ws = Workspace::default();
        let (v1, g1) = step(&m, &mut ws, &x, &y, loss, false);
        let (v2, g2) = step(&m, &mut ws, &x, &y, loss, true);
        assert!((v1 - v2).abs() <= 1e-12 * v1.abs(), "loss {v1} vs {v2}");
        grads_close(&g2, &g1, 1e-5);
        // Metrics see both halves: the rows of the parts add up to the batch.
        let rows: usize = m
            .outputs_and_targets(&ws)
            .iter()
            .map(|o| o.y.len() / 4)
            .sum();
        assert_eq!(rows, b * t);
        // Run to run, the split step is bit-identical.
        let (v3, g3) = step(&m, &mut ws, &x, &y, loss, true);
        assert_eq!(v2.to_bits(), v3.to_bits());
        assert_eq!(g2, g3);
    }

    #[test]
    fn split_training_step_equals_one_thread_with_gru_dropout_masks() {
        use crate::layers::gru::Gru;
        // Per-gate input and recurrent masks (recurrent_dropout) and one shared input mask
        // (dropout alone), in both reset modes: each half gets its rows of every mask.
        for reset_after in [true, false] {
            let m = Sequential::new()
                .input_shape(16, 5)
                .add(
                    Gru::new(24)
                        .return_sequences(true)
                        .reset_after(reset_after)
                        .dropout(0.2)
                        .recurrent_dropout(0.3),
                )
                .add(Gru::new(24).reset_after(reset_after).dropout(0.1))
                .add(Dense::new(3))
                .seed(3)
                .build()
                .unwrap();
            let (b, t) = (47, 16);
            assert!(
                kernels::threads() < 2 || m.split_batch(b, t),
                "the batch must be split"
            );
            let x = uniform((b, t, 5), 1);
            let y = uniform((b, 1, 3), 2)
                .into_shape_with_order((b, 3))
                .unwrap()
                .into_dyn();
            let mut ws = Workspace::default();
            let (v1, g1) = step(&m, &mut ws, &x, &y, Loss::Mse, false);
            let (v2, g2) = step(&m, &mut ws, &x, &y, Loss::Mse, true);
            assert!((v1 - v2).abs() <= 1e-12 * v1.abs(), "loss {v1} vs {v2}");
            grads_close(&g2, &g1, 1e-5);
        }
    }

    /// `[b, t, f]` input whose row `i` is padded (all features 0) outside a random run of
    /// kept steps: right, left and no padding, holes, and one row with no kept step.
    fn padded(b: usize, t: usize, f: usize, seed: u64) -> Array3<f32> {
        let mut x = uniform((b, t, f), seed);
        let mut rng = Rng::new(seed + 1);
        for i in 0..b {
            let (lo, hi) = match i % 5 {
                0 => (0, t),
                1 => (0, 1 + (rng.next_u64() as usize % t)),
                2 => (rng.next_u64() as usize % t, t),
                3 => (t / 3, t - t / 3),
                _ => (0, 0),
            };
            for s in 0..t {
                let hole = i % 7 == 6 && s == t / 2;
                if s < lo || s >= hi || hole {
                    x.slice_mut(ndarray::s![i, s, ..]).fill(0.0);
                }
            }
        }
        x
    }

    #[test]
    fn split_training_step_equals_one_thread_with_a_step_mask() {
        use crate::layers::gru::Gru;
        use crate::layers::masking::Masking;
        let m = Sequential::new()
            .input_shape(16, 5)
            .add(Masking::new(0.0))
            .add(
                Lstm::new(32)
                    .return_sequences(true)
                    .dropout(0.2)
                    .recurrent_dropout(0.1),
            )
            .add(Gru::new(16).return_sequences(true))
            .add(Dense::new(3))
            .seed(4)
            .build()
            .unwrap();
        assert!(m.has_mask() && m.output_masked());
        let (b, t) = (41, 16);
        assert!(kernels::threads() < 2 || m.split_batch(b, t));
        let x = padded(b, t, 5, 7);
        let mut rng = Rng::new(8);
        let y = Array2::from_shape_fn((b, t), |_| (rng.next_u64() % 3) as f32).into_dyn();
        let loss = Loss::SparseCategoricalCrossentropy { from_logits: true };
        let mut ws = Workspace::default();
        let (v1, g1) = step(&m, &mut ws, &x, &y, loss, false);
        let (v2, g2) = step(&m, &mut ws, &x, &y, loss, true);
        assert!(
            v1.is_finite() && (v1 - v2).abs() <= 1e-12 * v1.abs(),
            "loss {v1} vs {v2}"
        );
        grads_close(&g2, &g1, 1e-5);
        // The loss ignores the targets at masked steps.
        let mut y2 = y.clone();
        for i in 0..b {
            for s in 0..t {
                if x.slice(ndarray::s![i, s, ..]).iter().all(|&v| v == 0.0) {
                    y2[[i, s]] = (y2[[i, s]] + 1.0) % 3.0;
                }
            }
        }
        let (v3, g3) = step(&m, &mut ws, &x, &y2, loss, true);
        assert_eq!(v2.to_bits(), v3.to_bits());
        assert_eq!(g2, g3);
    }

    #[test]
    fn a_batch_without_kept_steps_has_zero_loss_and_gradients_not_nan() {
        use crate::layers::masking::Masking;
        let m = Sequential::new()
            .input_shape(6, 2)
            .add(Masking::new(-1.0))
            .add(Lstm::new(4).return_sequences(true))
            .add(Dense::new(2))
            .build()
            .unwrap();
        let x = Array3::from_elem((3, 6, 2), -1.0f32);
        let y = uniform((3, 6, 2), 1).into_dyn();
        let mut ws = Workspace::default();
        let (v, g) = step(&m, &mut ws, &x, &y, Loss::Mse, false);
        assert_eq!(v, 0.0);
        assert!(g.iter().flatten().all(|&v| v == 0.0));
        // Keras outputs at fully masked rows: the Dense layer on the LSTM's zeros.
        let out = m.predict(&x).unwrap();
        assert!(out.iter().all(|v| v.is_finite()));
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
        let (mut ws1, mut ws2) = (Workspace::default(), Workspace::default());
        for _ in 0..2 {
            let (v1, g1) = step(&one, &mut ws1, &x, &y, loss, false);
            one.carry_states(&ws1);
            let (v2, g2) = step(&two, &mut ws2, &x, &y, loss, true);
            two.carry_states(&ws2);
            assert!((v1 - v2).abs() <= 1e-12 * v1.abs(), "loss {v1} vs {v2}");
            grads_close(&g2, &g1, 1e-5);
        }
        let (s1, s2) = (
            one.states[1].clone().unwrap(),
            two.states[1].clone().unwrap(),
        );
        assert_eq!(
            (s1.batch, s1.tensors.len(), s1.tensors[0].len()),
            (b, 2, b * 32)
        );
        for (a, z) in s1.tensors.iter().flatten().zip(s2.tensors.iter().flatten()) {
            assert!((a - z).abs() <= 1e-6, "carried state {a} vs {z}");
        }
        // Evaluation splits the same way and gives the same loss.
        let eval = |m: &Model, ws: &mut Workspace| {
            m.run_pass(
                ws,
                Pass {
                    x: x.view(),
                    target: Some((y.view(), loss)),
                    masks: None,
                    grads: None,
                    input_grad: false,
                },
            )
            .unwrap()
        };
        let e1 = kernels::sequential(|| eval(&one, &mut ws1));
        let e2 = eval(&two, &mut ws2);
        assert!((e1 - e2).abs() <= 1e-6 * e1.abs(), "eval loss {e1} vs {e2}");
    }

    #[test]
    fn split_training_is_bit_identical_run_to_run() {
        let run = || {
            let m = Sequential::new()
                .input_shape(20, 3)
                .add(Lstm::new(32).return_sequences(true))
                .add(Lstm::new(32))
                .add(Dense::new(1))
                .seed(5)
                .build()
                .unwrap();
            assert!(kernels::threads() < 2 || m.split_batch(33, 20));
            let mut m = m.compile(Loss::Mse, Adam::new(1e-2)).unwrap();
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
