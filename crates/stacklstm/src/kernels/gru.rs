//! The fused GRU gate passes, forward and backward, one timestep at a time.
//!
//! Legend: `B` = batch, `H` = units. A gates row holds three `H`-wide blocks in Keras order
//! z, r, h (update gate, reset gate, candidate: [`GATE_Z`], [`GATE_R`], [`GATE_H`]). `σ` is
//! the recurrent activation, `φ` the activation, `h_p` the previous state. The GEMMs run
//! before and between the passes (see `layers/gru.rs`); the passes add the biases.
//!
//! **`reset_after`** (one pass per step, after the recurrent product `p = h_p·R`):
//! ```text
//! forward:   z = σ((x_z + bx_z) + (p_z + bh_z))     r = σ((x_r + bx_r) + (p_r + bh_r))
//!            hr = p_h + bh_h      ĥ = φ((x_h + bx_h) + r ⊙ hr)
//!            h = z ⊙ h_p + (1 − z) ⊙ ĥ
//! backward:  dz̃ = dh ⊙ (h_p − ĥ) ⊙ σ'(z)           dĥ̃ = dh ⊙ (1 − z) ⊙ φ'(ĥ)
//!            dr̃ = dĥ̃ ⊙ hr ⊙ σ'(r)                  d hr = dĥ̃ ⊙ r
//!            dh_p = dh ⊙ z  (+ the recurrent product, after the pass)
//! ```
//! **`reset_before`** (the candidate's product needs `r`, so two passes per step around it):
//! ```text
//! forward:   gates pass:      z = σ(a_z + b_z)   r = σ(a_r + b_r)   q = r ⊙ h_c
//!            (product)        a_h += q · R_h
//!            candidate pass:  ĥ = φ(a_h + b_h)   h = z ⊙ h_p + (1 − z) ⊙ ĥ
//! backward:  candidate pass:  dz̃, dĥ̃ as above    dh_p = dh ⊙ z
//!            (product)        dq = dĥ̃ · R_hᵀ
//!            gates pass:      dr̃ = dq ⊙ h_c ⊙ σ'(r)   dh_p += dq ⊙ r ⊙ n_h
//! ```
//! `h_c` is the state the candidate sees (`h_p`, or `h_p ⊙ n_h` under recurrent dropout with
//! mask `n_h`). Derivatives are taken from post-activation values (see
//! [`crate::Activation`]); the derivation is in `docs/gru-backward.md`.
//!
//! Each pass is one loop over blocks of [`LANES`] units copied into local arrays (so LLVM
//! emits straight vector code, as in [`super::gates`]), with the default (sigmoid, tanh)
//! pair specialised, compiled for AVX-512, AVX2+FMA and the baseline and chosen at run time.

use crate::kernels::activation::Activation;
use crate::kernels::math::{sigmoid_fast, tanh_fast};

/// Offset (in blocks of `H`) of the update gate `z`.
pub const GATE_Z: usize = 0;
/// Offset (in blocks of `H`) of the reset gate `r`.
pub const GATE_R: usize = 1;
/// Offset (in blocks of `H`) of the candidate `h`.
pub const GATE_H: usize = 2;

/// Elements per block: one AVX-512 register.
const LANES: usize = 16;

/// `LANES` values of `s` from `k`; past the end of `s` (a row's last, partial block), and
/// for an empty `s` (no bias), zeros.
#[inline(always)]
fn load(s: &[f32], k: usize) -> [f32; LANES] {
    let mut v = [0.0; LANES];
    if k + LANES <= s.len() {
        v.copy_from_slice(&s[k..k + LANES]);
    } else if k < s.len() {
        v[..s.len() - k].copy_from_slice(&s[k..]);
    }
    v
}

/// Writes the first `min(LANES, s.len() - k)` values of `v` to `s[k..]`.
#[inline(always)]
fn store(s: &mut [f32], k: usize, v: &[f32; LANES]) {
    if k + LANES <= s.len() {
        s[k..k + LANES].copy_from_slice(v);
    } else {
        let n = s.len() - k;
        s[k..].copy_from_slice(&v[..n]);
    }
}

/// The three `H`-wide blocks of a `[3H]` row (or three empty slices for an empty bias).
#[inline(always)]
fn blocks(row: &[f32], units: usize) -> [&[f32]; 3] {
    if row.is_empty() {
        return [&[], &[], &[]];
    }
    let (z, rest) = row.split_at(units);
    let (r, h) = rest.split_at(units);
    [z, r, h]
}

/// The three `H`-wide blocks of a mutable `[3H]` row.
#[inline(always)]
fn blocks_mut(row: &mut [f32], units: usize) -> [&mut [f32]; 3] {
    let (z, rest) = row.split_at_mut(units);
    let (r, h) = rest.split_at_mut(units);
    [z, r, h]
}

/// Buffers of one `reset_after` forward step.
pub struct AfterForward<'a> {
    /// `[B, 3H]`: `x·K` (no bias) in; post-activation `z, r, ĥ` out.
    pub gates: &'a mut [f32],
    /// `[B, 3H]`: `h_p·R` (no bias) in; its candidate block becomes `hr = p_h + bh_h` (kept
    /// for backward), the other two blocks are left as they are.
    pub rec: &'a mut [f32],
    /// `[3H]`: the input bias (row 0 of Keras' `[2, 3H]` bias); empty for none.
    pub bias_x: &'a [f32],
    /// `[3H]`: the recurrent bias (row 1); empty for none.
    pub bias_h: &'a [f32],
    /// `[B, H]`: previous state.
    pub h_prev: &'a [f32],
    /// `[B, H]`: new state.
    pub h: &'a mut [f32],
}

/// Buffers of one `reset_after` backward step.
pub struct AfterBackward<'a> {
    /// `[B, 3H]`: `z, r, ĥ` in; the gradient w.r.t. the input-side pre-activations
    /// `(dz̃, dr̃, dĥ̃)` out.
    pub gates: &'a mut [f32],
    /// `[B, 3H]`: `hr` in its candidate block; the gradient w.r.t. the recurrent-side
    /// pre-activations `(dz̃, dr̃, dĥ̃ ⊙ r)` out (every block written).
    pub rec: &'a mut [f32],
    /// `[B, H]`: previous state.
    pub h_prev: &'a [f32],
    /// `[B, H]`: total gradient reaching `h` in; its direct part of `dh_p`, `dh ⊙ z`, out.
    pub dh: &'a mut [f32],
}

/// Buffers of the `reset_before` gates pass (forward).
pub struct BeforeGates<'a> {
    /// `[B, 3H]`: `z`, `r` blocks hold `x·K + h·R` (no bias) in, `σ(.. + b)` out; the
    /// candidate block is not touched.
    pub gates: &'a mut [f32],
    /// `[3H]`: the bias; empty for none.
    pub bias: &'a [f32],
    /// `[B, H]`: the state the candidate sees (`h_p`, masked under recurrent dropout).
    pub h_cand: &'a [f32],
    /// `[B, H]`: `q = r ⊙ h_cand` out.
    pub q: &'a mut [f32],
}

/// Buffers of the `reset_before` candidate pass (forward).
pub struct BeforeCandidate<'a> {
    /// `[B, 3H]`: `z` in its first block; the candidate block holds `x·K_h + q·R_h` (no
    /// bias) in, `ĥ` out.
    pub gates: &'a mut [f32],
    /// `[3H]`: the bias; empty for none.
    pub bias: &'a [f32],
    /// `[B, H]`: previous state.
    pub h_prev: &'a [f32],
    /// `[B, H]`: new state.
    pub h: &'a mut [f32],
}

/// Buffers of the `reset_before` candidate pass (backward).
pub struct BeforeCandidateBackward<'a> {
    /// `[B, 3H]`: `z`, `ĥ` in; `dz̃`, `dĥ̃` out (the `r` block is not touched).
    pub gates: &'a mut [f32],
    /// `[B, H]`: previous state.
    pub h_prev: &'a [f32],
    /// `[B, H]`: total gradient reaching `h` in; `dh ⊙ z` out.
    pub dh: &'a mut [f32],
}

/// Buffers of the `reset_before` gates pass (backward).
pub struct BeforeGatesBackward<'a> {
    /// `[B, 3H]`: `r` in its block, `dr̃` out (the other blocks are not touched).
    pub gates: &'a mut [f32],
    /// `[B, H]`: `dq = dĥ̃ · R_hᵀ`.
    pub dq: &'a [f32],
    /// `[B, H]`: the state the candidate saw.
    pub h_cand: &'a [f32],
    /// `[B, H]`: the candidate's recurrent dropout mask; empty for none.
    pub mask: &'a [f32],
    /// `[B, H]`: gradient w.r.t. `h_p`; `dq ⊙ r (⊙ mask)` is added.
    pub dh: &'a mut [f32],
}

#[inline(always)]
fn after_forward_body<R: Fn(f32) -> f32, P: Fn(f32) -> f32>(
    s: AfterForward<'_>,
    units: usize,
    ra: R,
    act: P,
) {
    let h3 = 3 * units;
    let [bxz, bxr, bxh] = blocks(s.bias_x, units);
    let [bhz, bhr, bhh] = blocks(s.bias_h, units);
    let rows = s.gates.chunks_exact_mut(h3).zip(s.rec.chunks_exact_mut(h3));
    let states = s
        .h_prev
        .chunks_exact(units)
        .zip(s.h.chunks_exact_mut(units));
    for ((grow, prow), (hp, h)) in rows.zip(states) {
        let [xz, xr, xh] = blocks_mut(grow, units);
        let [pz, pr, ph] = blocks_mut(prow, units);
        for k in (0..units).step_by(LANES) {
            let (mut z, mut r, mut c) = (load(xz, k), load(xr, k), load(xh, k));
            let (qz, qr, mut hr) = (load(pz, k), load(pr, k), load(ph, k));
            let (b0, b1, b2) = (load(bxz, k), load(bxr, k), load(bxh, k));
            let (c0, c1, c2) = (load(bhz, k), load(bhr, k), load(bhh, k));
            let hpv = load(hp, k);
            let mut hn = [0.0; LANES];
            for j in 0..LANES {
                z[j] = ra((z[j] + b0[j]) + (qz[j] + c0[j]));
                r[j] = ra((r[j] + b1[j]) + (qr[j] + c1[j]));
                hr[j] += c2[j];
                c[j] = act((c[j] + b2[j]) + r[j] * hr[j]);
                hn[j] = z[j] * hpv[j] + (1.0 - z[j]) * c[j];
            }
            store(xz, k, &z);
            store(xr, k, &r);
            store(xh, k, &c);
            store(ph, k, &hr);
            store(h, k, &hn);
        }
    }
}

#[inline(always)]
fn after_backward_body<R: Fn(f32) -> f32, P: Fn(f32) -> f32>(
    s: AfterBackward<'_>,
    units: usize,
    ra_grad: R,
    act_grad: P,
) {
    let h3 = 3 * units;
    let rows = s.gates.chunks_exact_mut(h3).zip(s.rec.chunks_exact_mut(h3));
    let states = s
        .h_prev
        .chunks_exact(units)
        .zip(s.dh.chunks_exact_mut(units));
    for ((grow, prow), (hp, dh)) in rows.zip(states) {
        let [gz, gr, gh] = blocks_mut(grow, units);
        let [pz, pr, ph] = blocks_mut(prow, units);
        for k in (0..units).step_by(LANES) {
            let (z, r, c, hr) = (load(gz, k), load(gr, k), load(gh, k), load(ph, k));
            let (hpv, mut d) = (load(hp, k), load(dh, k));
            let (mut dz, mut dr, mut dc, mut dhr) =
                ([0.0; LANES], [0.0; LANES], [0.0; LANES], [0.0; LANES]);
            for j in 0..LANES {
                dz[j] = d[j] * (hpv[j] - c[j]) * ra_grad(z[j]);
                dc[j] = d[j] * (1.0 - z[j]) * act_grad(c[j]);
                dr[j] = dc[j] * hr[j] * ra_grad(r[j]);
                dhr[j] = dc[j] * r[j];
                d[j] *= z[j];
            }
            store(gz, k, &dz);
            store(gr, k, &dr);
            store(gh, k, &dc);
            store(pz, k, &dz);
            store(pr, k, &dr);
            store(ph, k, &dhr);
            store(dh, k, &d);
        }
    }
}

#[inline(always)]
fn before_gates_body<R: Fn(f32) -> f32, P: Fn(f32) -> f32>(
    s: BeforeGates<'_>,
    units: usize,
    ra: R,
    _act: P,
) {
    let h3 = 3 * units;
    let [bz, br, _] = blocks(s.bias, units);
    let states = s
        .h_cand
        .chunks_exact(units)
        .zip(s.q.chunks_exact_mut(units));
    for (grow, (hc, q)) in s.gates.chunks_exact_mut(h3).zip(states) {
        let [az, ar, _] = blocks_mut(grow, units);
        for k in (0..units).step_by(LANES) {
            let (mut z, mut r) = (load(az, k), load(ar, k));
            let (b0, b1, hcv) = (load(bz, k), load(br, k), load(hc, k));
            let mut qv = [0.0; LANES];
            for j in 0..LANES {
                z[j] = ra(z[j] + b0[j]);
                r[j] = ra(r[j] + b1[j]);
                qv[j] = r[j] * hcv[j];
            }
            store(az, k, &z);
            store(ar, k, &r);
            store(q, k, &qv);
        }
    }
}

#[inline(always)]
fn before_candidate_body<R: Fn(f32) -> f32, P: Fn(f32) -> f32>(
    s: BeforeCandidate<'_>,
    units: usize,
    _ra: R,
    act: P,
) {
    let h3 = 3 * units;
    let [_, _, bh] = blocks(s.bias, units);
    let states = s
        .h_prev
        .chunks_exact(units)
        .zip(s.h.chunks_exact_mut(units));
    for (grow, (hp, h)) in s.gates.chunks_exact_mut(h3).zip(states) {
        let [az, _, ah] = blocks_mut(grow, units);
        for k in (0..units).step_by(LANES) {
            let (z, mut c) = (load(az, k), load(ah, k));
            let (b2, hpv) = (load(bh, k), load(hp, k));
            let mut hn = [0.0; LANES];
            for j in 0..LANES {
                c[j] = act(c[j] + b2[j]);
                hn[j] = z[j] * hpv[j] + (1.0 - z[j]) * c[j];
            }
            store(ah, k, &c);
            store(h, k, &hn);
        }
    }
}

#[inline(always)]
fn before_candidate_backward_body<R: Fn(f32) -> f32, P: Fn(f32) -> f32>(
    s: BeforeCandidateBackward<'_>,
    units: usize,
    ra_grad: R,
    act_grad: P,
) {
    let h3 = 3 * units;
    let states = s
        .h_prev
        .chunks_exact(units)
        .zip(s.dh.chunks_exact_mut(units));
    for (grow, (hp, dh)) in s.gates.chunks_exact_mut(h3).zip(states) {
        let [gz, _, gh] = blocks_mut(grow, units);
        for k in (0..units).step_by(LANES) {
            let (z, c, hpv, mut d) = (load(gz, k), load(gh, k), load(hp, k), load(dh, k));
            let (mut dz, mut dc) = ([0.0; LANES], [0.0; LANES]);
            for j in 0..LANES {
                dz[j] = d[j] * (hpv[j] - c[j]) * ra_grad(z[j]);
                dc[j] = d[j] * (1.0 - z[j]) * act_grad(c[j]);
                d[j] *= z[j];
            }
            store(gz, k, &dz);
            store(gh, k, &dc);
            store(dh, k, &d);
        }
    }
}

#[inline(always)]
fn before_gates_backward_body<R: Fn(f32) -> f32, P: Fn(f32) -> f32>(
    s: BeforeGatesBackward<'_>,
    units: usize,
    ra_grad: R,
    _act_grad: P,
) {
    let h3 = 3 * units;
    let masked = !s.mask.is_empty();
    let inputs = s.dq.chunks_exact(units).zip(s.h_cand.chunks_exact(units));
    for ((grow, (dq, hc)), (row, dh)) in s
        .gates
        .chunks_exact_mut(h3)
        .zip(inputs)
        .zip(s.dh.chunks_exact_mut(units).enumerate())
    {
        let [_, gr, _] = blocks_mut(grow, units);
        let mask = if masked {
            &s.mask[row * units..(row + 1) * units]
        } else {
            &[]
        };
        for k in (0..units).step_by(LANES) {
            let (r, dqv, hcv, mut d) = (load(gr, k), load(dq, k), load(hc, k), load(dh, k));
            let m = if masked { load(mask, k) } else { [1.0; LANES] };
            let mut dr = [0.0; LANES];
            for j in 0..LANES {
                dr[j] = dqv[j] * hcv[j] * ra_grad(r[j]);
                d[j] += dqv[j] * r[j] * m[j];
            }
            store(gr, k, &dr);
            store(dh, k, &d);
        }
    }
}

/// Specialises a forward body for the default activations and wraps it in the run-time
/// instruction-set dispatch.
macro_rules! forward_pass {
    ($(#[$doc:meta])* $name:ident, $step:ident, $body:ident, $generic:ident) => {
        #[inline(always)]
        fn $generic(s: $step<'_>, units: usize, ra: Activation, act: Activation) {
            if ra == Activation::Sigmoid && act == Activation::Tanh {
                $body(s, units, sigmoid_fast, tanh_fast)
            } else {
                $body(s, units, |x| ra.apply(x), |x| act.apply(x))
            }
        }
        super::dispatch!(
            $(#[$doc])*
            $name,
            $generic,
            (s: $step<'_>, units: usize, recurrent: Activation, activation: Activation) -> ()
        );
    };
}

/// As [`forward_pass`], with the derivatives from outputs.
macro_rules! backward_pass {
    ($(#[$doc:meta])* $name:ident, $step:ident, $body:ident, $generic:ident) => {
        #[inline(always)]
        fn $generic(s: $step<'_>, units: usize, ra: Activation, act: Activation) {
            if ra == Activation::Sigmoid && act == Activation::Tanh {
                $body(s, units, |y: f32| y * (1.0 - y), |y: f32| 1.0 - y * y)
            } else {
                $body(
                    s,
                    units,
                    |y| ra.grad_from_output(y),
                    |y| act.grad_from_output(y),
                )
            }
        }
        super::dispatch!(
            $(#[$doc])*
            $name,
            $generic,
            (s: $step<'_>, units: usize, recurrent: Activation, activation: Activation) -> ()
        );
    };
}

forward_pass!(
    /// The `reset_after` forward pass of one timestep (see the module docs).
    after_forward_step,
    AfterForward,
    after_forward_body,
    after_forward_generic
);
backward_pass!(
    /// The `reset_after` backward pass of one timestep (see the module docs).
    after_backward_step,
    AfterBackward,
    after_backward_body,
    after_backward_generic
);
forward_pass!(
    /// The `reset_before` gates pass of one timestep, forward: `z`, `r` and `q = r ⊙ h_c`.
    before_gates_step,
    BeforeGates,
    before_gates_body,
    before_gates_generic
);
forward_pass!(
    /// The `reset_before` candidate pass of one timestep, forward: `ĥ` and the new state.
    before_candidate_step,
    BeforeCandidate,
    before_candidate_body,
    before_candidate_generic
);
backward_pass!(
    /// The `reset_before` candidate pass of one timestep, backward: `dz̃`, `dĥ̃`, `dh ⊙ z`.
    before_candidate_backward_step,
    BeforeCandidateBackward,
    before_candidate_backward_body,
    before_candidate_backward_generic
);
backward_pass!(
    /// The `reset_before` gates pass of one timestep, backward: `dr̃` and `dq ⊙ r` into
    /// `dh_p`.
    before_gates_backward_step,
    BeforeGatesBackward,
    before_gates_backward_body,
    before_gates_backward_generic
);

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    fn rand(rng: &mut crate::init::Rng, n: usize, scale: f64) -> Vec<f32> {
        (0..n).map(|_| rng.uniform(-scale, scale) as f32).collect()
    }

    /// Both modes of one step against the equations in f64, for a unit count with a full
    /// block and a partial one.
    #[test]
    fn forward_passes_match_f64_reference() {
        let (b, u) = (3, 21);
        let mut rng = crate::init::Rng::new(7);
        let x = rand(&mut rng, b * 3 * u, 3.0);
        let p = rand(&mut rng, b * 3 * u, 3.0);
        let bias = rand(&mut rng, 6 * u, 1.0);
        let hp = rand(&mut rng, b * u, 1.0);
        let at = |v: &[f32], i: usize| f64::from(v[i]);

        // reset_after
        let (mut gates, mut rec, mut h) = (x.clone(), p.clone(), vec![0.0; b * u]);
        after_forward_step(
            AfterForward {
                gates: &mut gates,
                rec: &mut rec,
                bias_x: &bias[..3 * u],
                bias_h: &bias[3 * u..],
                h_prev: &hp,
                h: &mut h,
            },
            u,
            Activation::Sigmoid,
            Activation::Tanh,
        );
        for row in 0..b {
            for k in 0..u {
                let g = |blk: usize| row * 3 * u + blk * u + k;
                let z = sig(at(&x, g(0)) + at(&bias, k) + at(&p, g(0)) + at(&bias, 3 * u + k));
                let r = sig(at(&x, g(1)) + at(&bias, u + k) + at(&p, g(1)) + at(&bias, 4 * u + k));
                let hr = at(&p, g(2)) + at(&bias, 5 * u + k);
                let c = (at(&x, g(2)) + at(&bias, 2 * u + k) + r * hr).tanh();
                let hn = z * at(&hp, row * u + k) + (1.0 - z) * c;
                assert!((at(&gates, g(0)) - z).abs() < 1e-6, "z");
                assert!((at(&gates, g(1)) - r).abs() < 1e-6, "r");
                assert!((at(&gates, g(2)) - c).abs() < 1e-6, "candidate");
                assert!((at(&rec, g(2)) - hr).abs() < 1e-6, "hr");
                assert!((at(&h, row * u + k) - hn).abs() < 1e-6, "h");
            }
        }

        // reset_before: gates pass, then (here) a fixed candidate product, candidate pass.
        let (mut gates, mut q, mut h) = (x.clone(), vec![0.0; b * u], vec![0.0; b * u]);
        before_gates_step(
            BeforeGates {
                gates: &mut gates,
                bias: &bias[..3 * u],
                h_cand: &hp,
                q: &mut q,
            },
            u,
            Activation::Sigmoid,
            Activation::Tanh,
        );
        before_candidate_step(
            BeforeCandidate {
                gates: &mut gates,
                bias: &bias[..3 * u],
                h_prev: &hp,
                h: &mut h,
            },
            u,
            Activation::Sigmoid,
            Activation::Tanh,
        );
        for row in 0..b {
            for k in 0..u {
                let g = |blk: usize| row * 3 * u + blk * u + k;
                let z = sig(at(&x, g(0)) + at(&bias, k));
                let r = sig(at(&x, g(1)) + at(&bias, u + k));
                let c = (at(&x, g(2)) + at(&bias, 2 * u + k)).tanh();
                let hn = z * at(&hp, row * u + k) + (1.0 - z) * c;
                assert!((at(&q, row * u + k) - r * at(&hp, row * u + k)).abs() < 1e-6);
                assert!((at(&h, row * u + k) - hn).abs() < 1e-6, "h");
            }
        }
    }

    #[test]
    fn fast_and_generic_paths_agree_bit_for_bit() {
        let (b, u) = (2, 19);
        let mut rng = crate::init::Rng::new(5);
        let x = rand(&mut rng, b * 3 * u, 5.0);
        let p = rand(&mut rng, b * 3 * u, 5.0);
        let hp = rand(&mut rng, b * u, 1.0);
        let run = |fast: bool| {
            let (mut gates, mut rec, mut h) = (x.clone(), p.clone(), vec![0.0; b * u]);
            let s = AfterForward {
                gates: &mut gates,
                rec: &mut rec,
                bias_x: &[],
                bias_h: &[],
                h_prev: &hp,
                h: &mut h,
            };
            if fast {
                after_forward_body(s, u, sigmoid_fast, tanh_fast);
            } else {
                let (ra, act) = (Activation::Sigmoid, Activation::Tanh);
                after_forward_body(s, u, |x| ra.apply(x), |x| act.apply(x));
            }
            (gates, rec, h)
        };
        assert_eq!(run(true), run(false));
    }
}
