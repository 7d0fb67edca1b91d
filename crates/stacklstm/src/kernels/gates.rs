//! The fused LSTM gate pass, forward and backward, one timestep at a time.
//!
//! Legend: `B` = batch, `H` = units. A gates row holds four `H`-wide blocks in Keras order
//! i, f, c, o ([`GATE_I`] ...). With `σ` the recurrent activation and `φ` the activation:
//!
//! ```text
//! forward:   z = x·W + h_prev·U + b          (the products before this pass, b here)
//!            i = σ(z_i)  f = σ(z_f)  g = φ(z_c)  o = σ(z_o)
//!            c = f ⊙ c_prev + i ⊙ g        h = o ⊙ φ(c)
//! backward:  dc  += dh ⊙ o ⊙ φ'(φ(c))                 (dc arrives from step t+1)
//!            dz_o = dh ⊙ φ(c) ⊙ σ'(o)      dz_i = dc ⊙ g ⊙ σ'(i)
//!            dz_f = dc ⊙ c_prev ⊙ σ'(f)    dz_c = dc ⊙ i ⊙ φ'(g)
//!            dc_prev = dc ⊙ f
//! ```
//! (derivatives taken from post-activation values, see [`crate::Activation`]; the full
//! derivation is in `docs/lstm-backward.md`).
//!
//! Each pass is one loop over contiguous blocks with no branches in the default
//! (sigmoid, tanh) case, compiled three times (AVX-512, AVX2+FMA, baseline) and chosen at
//! run time, so a portable binary gets vector code.

use crate::kernels::activation::Activation;
use crate::kernels::math::{sigmoid_fast, tanh_fast};

/// Offset (in blocks of `H`) of the forget gate: the gates of one row are the blocks
/// i, f, c, o (Keras' order), each `H` wide.
pub const GATE_F: usize = 1;

/// Buffers of one forward step. Shapes in comments.
pub struct StepForward<'a> {
    /// `[B, 4H]`: pre-activations without the bias in, post-activations (i, f, g, o) out.
    pub gates: &'a mut [f32],
    /// `[4H]`: the bias, added to every row first (`z = x·W + h·U + b`, Keras' order);
    /// empty for none.
    pub bias: &'a [f32],
    /// `[B, H]`: cell state of the previous step.
    pub c_prev: &'a [f32],
    /// `[B, H]`: new cell state.
    pub c: &'a mut [f32],
    /// `[B, H]`: `φ(c)`, kept for backward.
    pub phi_c: &'a mut [f32],
    /// `[B, H]`: new hidden state.
    pub h: &'a mut [f32],
}

/// Buffers of one backward step. Shapes in comments.
pub struct StepBackward<'a> {
    /// `[B, 4H]`: post-activation gates of this step in, overwritten with the gradient
    /// w.r.t. the pre-activations `z` (the gates are not needed after their step's backward,
    /// so the cache holds one `[T, B, 4H]` buffer instead of two).
    pub gates: &'a mut [f32],
    /// `[B, H]`: cell state of the previous step.
    pub c_prev: &'a [f32],
    /// `[B, H]`: `φ(c)` of this step.
    pub phi_c: &'a [f32],
    /// `[B, H]`: total gradient reaching `h` of this step.
    pub dh: &'a [f32],
    /// `[B, H]`: gradient w.r.t. `c` of this step in, w.r.t. `c_prev` out.
    pub dc: &'a mut [f32],
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

fn level() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return Level::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Level::Avx2;
        }
    }
    Level::Baseline
}

/// Elements per block of the gate loops: one AVX-512 register. Blocks are processed as
/// fixed-size arrays, which LLVM turns into straight vector code; the tail (fewer than
/// `LANES` units) runs through the same scalar expressions.
const LANES: usize = 16;

/// Remainders of up to this many units (after the full blocks) run unit by unit.
const SCALAR_TAIL: usize = 4;

/// Where the blocked loop of a row of `units` ends: before a short remainder (run unit by
/// unit), or at the end when the last partial block is padded instead.
#[inline(always)]
fn vector_end(units: usize) -> usize {
    if units % LANES <= SCALAR_TAIL {
        units - units % LANES
    } else {
        units
    }
}

/// `&mut s[k..k + LANES]` as an array (the length check is the only bounds check per block).
#[inline(always)]
fn block_mut(s: &mut [f32], k: usize) -> &mut [f32; LANES] {
    (&mut s[k..k + LANES]).try_into().expect("block in range")
}

#[inline(always)]
fn block(s: &[f32], k: usize) -> &[f32; LANES] {
    (&s[k..k + LANES]).try_into().expect("block in range")
}

/// One unit of the forward gate pass: `(i, f, g, o, c, φ(c), h)` from `z` and `c_prev`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_unit<R: Fn(f32) -> f32, P: Fn(f32) -> f32>(
    zi: &mut f32,
    zf: &mut f32,
    zc: &mut f32,
    zo: &mut f32,
    cp: f32,
    c: &mut f32,
    pc: &mut f32,
    h: &mut f32,
    ra: &R,
    act: &P,
) {
    let i = ra(*zi);
    let f = ra(*zf);
    let g = act(*zc);
    let o = ra(*zo);
    let cn = f * cp + i * g;
    let p = act(cn);
    *zi = i;
    *zf = f;
    *zc = g;
    *zo = o;
    *c = cn;
    *pc = p;
    *h = o * p;
}

/// `LANES` values of `s` from `k` (fewer at the end of the row: the rest stay 0.0, a
/// harmless input to every activation).
#[inline(always)]
fn load(s: &[f32], k: usize) -> [f32; LANES] {
    if k + LANES <= s.len() {
        *block(s, k)
    } else {
        let mut v = [0.0; LANES];
        let n = s.len() - k;
        v[..n].copy_from_slice(&s[k..]);
        v
    }
}

/// Writes the first `min(LANES, s.len() - k)` values of `v` to `s[k..]`.
#[inline(always)]
fn store(s: &mut [f32], k: usize, v: &[f32; LANES]) {
    if k + LANES <= s.len() {
        *block_mut(s, k) = *v;
    } else {
        let n = s.len() - k;
        s[k..].copy_from_slice(&v[..n]);
    }
}

/// The forward pass over the units of one batch row. Each block of `LANES` units is
/// copied into local arrays, computed, and stored back: locals cannot alias, so LLVM emits
/// straight vector code with no overlap checks (through the slices it did not, and the pass
/// ran at half speed), and the last, partial block takes the same vector path.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_row<R: Fn(f32) -> f32, P: Fn(f32) -> f32>(
    row: &mut [f32],
    bias: &[f32],
    cp: &[f32],
    c: &mut [f32],
    pc: &mut [f32],
    h: &mut [f32],
    units: usize,
    ra: &R,
    act: &P,
) {
    let (zi, rest) = row.split_at_mut(units);
    let (zf, rest) = rest.split_at_mut(units);
    let (zc, zo) = rest.split_at_mut(units);
    let (bias_i, bias_f, bias_c, bias_o) = if bias.is_empty() {
        (&[][..], &[][..], &[][..], &[][..])
    } else {
        let (i, rest) = bias.split_at(units);
        let (f, rest) = rest.split_at(units);
        let (c, o) = rest.split_at(units);
        (i, f, c, o)
    };
    // A short remainder (up to `SCALAR_TAIL` units) runs unit by unit: cheaper than a
    // padded block's partial loads and stores.
    let vector_end = vector_end(units);
    for k in vector_end..units {
        let b = |g: &[f32]| if g.is_empty() { 0.0 } else { g[k] };
        let (mut i, mut f, mut g, mut o) = (
            zi[k] + b(bias_i),
            zf[k] + b(bias_f),
            zc[k] + b(bias_c),
            zo[k] + b(bias_o),
        );
        forward_unit(
            &mut i, &mut f, &mut g, &mut o, cp[k], &mut c[k], &mut pc[k], &mut h[k], ra, act,
        );
        (zi[k], zf[k], zc[k], zo[k]) = (i, f, g, o);
    }
    for k in (0..vector_end).step_by(LANES) {
        let (mut bi, mut bf, mut bc, mut bo) = (load(zi, k), load(zf, k), load(zc, k), load(zo, k));
        if !bias.is_empty() {
            let (b_i, b_f, b_c, b_o) = (
                load(bias_i, k),
                load(bias_f, k),
                load(bias_c, k),
                load(bias_o, k),
            );
            for j in 0..LANES {
                bi[j] += b_i[j];
                bf[j] += b_f[j];
                bc[j] += b_c[j];
                bo[j] += b_o[j];
            }
        }
        let bcp = load(cp, k);
        let (mut bcn, mut bpc, mut bh) = ([0.0; LANES], [0.0; LANES], [0.0; LANES]);
        for j in 0..LANES {
            forward_unit(
                &mut bi[j],
                &mut bf[j],
                &mut bc[j],
                &mut bo[j],
                bcp[j],
                &mut bcn[j],
                &mut bpc[j],
                &mut bh[j],
                ra,
                act,
            );
        }
        store(zi, k, &bi);
        store(zf, k, &bf);
        store(zc, k, &bc);
        store(zo, k, &bo);
        store(c, k, &bcn);
        store(pc, k, &bpc);
        store(h, k, &bh);
    }
}

#[inline(always)]
fn forward_body<R: Fn(f32) -> f32, P: Fn(f32) -> f32>(
    s: StepForward<'_>,
    units: usize,
    ra: R,
    act: P,
) {
    let h4 = 4 * units;
    let rows = s.gates.chunks_exact_mut(h4);
    let cps = s.c_prev.chunks_exact(units);
    let cs = s.c.chunks_exact_mut(units);
    let pcs = s.phi_c.chunks_exact_mut(units);
    let hs = s.h.chunks_exact_mut(units);
    for ((((row, cp), c), pc), h) in rows.zip(cps).zip(cs).zip(pcs).zip(hs) {
        forward_row(row, s.bias, cp, c, pc, h, units, &ra, &act);
    }
}

/// One unit of the backward gate pass (see the module docs).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_unit<R: Fn(f32) -> f32, P: Fn(f32) -> f32>(
    gate: [f32; 4],
    cp: f32,
    pc: f32,
    dh: f32,
    dc: &mut f32,
    di: &mut f32,
    df: &mut f32,
    dcc: &mut f32,
    dout: &mut f32,
    ra_grad: &R,
    act_grad: &P,
) {
    let [i, f, g, o] = gate;
    let dct = *dc + dh * o * act_grad(pc);
    *dout = dh * pc * ra_grad(o);
    *di = dct * g * ra_grad(i);
    *df = dct * cp * ra_grad(f);
    *dcc = dct * i * act_grad(g);
    *dc = dct * f;
}

#[inline(always)]
fn backward_body<R: Fn(f32) -> f32, P: Fn(f32) -> f32>(
    s: StepBackward<'_>,
    units: usize,
    ra_grad: R,
    act_grad: P,
) {
    let h4 = 4 * units;
    let rows = s.gates.chunks_exact_mut(h4);
    let cps = s.c_prev.chunks_exact(units);
    let pcs = s.phi_c.chunks_exact(units);
    let dhs = s.dh.chunks_exact(units);
    let dcs = s.dc.chunks_exact_mut(units);
    for ((((row, cp), pc), dh), dc) in rows.zip(cps).zip(pcs).zip(dhs).zip(dcs) {
        let (di, rest) = row.split_at_mut(units);
        let (df, rest) = rest.split_at_mut(units);
        let (dcc, dout) = rest.split_at_mut(units);
        // Local arrays per block, as in `forward_row`: a block's gates are all read before
        // its gradients are stored over them.
        let vector_end = vector_end(units);
        for k in vector_end..units {
            let gate = [di[k], df[k], dcc[k], dout[k]];
            let (mut a, mut b, mut c, mut d) = (0.0, 0.0, 0.0, 0.0);
            backward_unit(
                gate, cp[k], pc[k], dh[k], &mut dc[k], &mut a, &mut b, &mut c, &mut d, &ra_grad,
                &act_grad,
            );
            (di[k], df[k], dcc[k], dout[k]) = (a, b, c, d);
        }
        for k in (0..vector_end).step_by(LANES) {
            let (bgi, bgf, bgc, bgo) = (load(di, k), load(df, k), load(dcc, k), load(dout, k));
            let (bcp, bpc, bdh) = (load(cp, k), load(pc, k), load(dh, k));
            let mut bdc = load(dc, k);
            let (mut bdi, mut bdf, mut bdcc, mut bdo) =
                ([0.0; LANES], [0.0; LANES], [0.0; LANES], [0.0; LANES]);
            for j in 0..LANES {
                backward_unit(
                    [bgi[j], bgf[j], bgc[j], bgo[j]],
                    bcp[j],
                    bpc[j],
                    bdh[j],
                    &mut bdc[j],
                    &mut bdi[j],
                    &mut bdf[j],
                    &mut bdcc[j],
                    &mut bdo[j],
                    &ra_grad,
                    &act_grad,
                );
            }
            store(dc, k, &bdc);
            store(di, k, &bdi);
            store(df, k, &bdf);
            store(dcc, k, &bdcc);
            store(dout, k, &bdo);
        }
    }
}

/// Dispatches one body to the best instruction set, specialising the default activations.
macro_rules! multiversion {
    ($name:ident, $body:ident, $step:ty, $fast_r:expr, $fast_p:expr, $gen_r:ident, $gen_p:ident) => {
        mod $name {
            use super::*;

            #[inline(always)]
            fn run(s: $step, units: usize, ra: Activation, act: Activation) {
                if ra == Activation::Sigmoid && act == Activation::Tanh {
                    $body(s, units, $fast_r, $fast_p)
                } else {
                    $body(s, units, |x| ra.$gen_r(x), |x| act.$gen_p(x))
                }
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
            fn avx512(s: $step, units: usize, ra: Activation, act: Activation) {
                run(s, units, ra, act)
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2(s: $step, units: usize, ra: Activation, act: Activation) {
                run(s, units, ra, act)
            }

            pub fn dispatch(s: $step, units: usize, ra: Activation, act: Activation) {
                match level() {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: `level()` returned Avx512 only after detecting avx512f,
                    // avx512vl and fma (avx2 is implied by avx512f) on this CPU.
                    Level::Avx512 => unsafe { avx512(s, units, ra, act) },
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: `level()` returned Avx2 only after detecting avx2 and fma.
                    Level::Avx2 => unsafe { avx2(s, units, ra, act) },
                    Level::Baseline => run(s, units, ra, act),
                }
            }
        }
    };
}

multiversion!(
    fwd,
    forward_body,
    StepForward<'_>,
    sigmoid_fast,
    tanh_fast,
    apply,
    apply
);
multiversion!(
    bwd,
    backward_body,
    StepBackward<'_>,
    |y: f32| y * (1.0 - y),
    |y: f32| 1.0 - y * y,
    grad_from_output,
    grad_from_output
);

/// Runs the forward gate pass of one timestep (see the module docs).
///
/// `recurrent` is `σ` (applied to i, f, o), `activation` is `φ` (cell candidate and output).
pub fn forward_step(
    s: StepForward<'_>,
    units: usize,
    recurrent: Activation,
    activation: Activation,
) {
    debug_assert_eq!(s.gates.len(), 4 * s.c.len());
    debug_assert_eq!(s.c_prev.len(), s.c.len());
    debug_assert_eq!(s.h.len(), s.c.len());
    debug_assert_eq!(s.phi_c.len(), s.c.len());
    fwd::dispatch(s, units, recurrent, activation)
}

/// Runs the backward gate pass of one timestep (see the module docs).
pub fn backward_step(
    s: StepBackward<'_>,
    units: usize,
    recurrent: Activation,
    activation: Activation,
) {
    debug_assert_eq!(s.gates.len(), 4 * s.dc.len());
    debug_assert_eq!(s.dh.len(), s.dc.len());
    bwd::dispatch(s, units, recurrent, activation)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scalar reference: the same equations with libm functions in f64.
    fn reference(z: &[f32], cp: &[f32], units: usize) -> (Vec<f64>, Vec<f64>) {
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let mut c = vec![0.0; cp.len()];
        let mut h = vec![0.0; cp.len()];
        for b in 0..cp.len() / units {
            for k in 0..units {
                let zz = |g: usize| f64::from(z[b * 4 * units + g * units + k]);
                let (i, f, g, o) = (sig(zz(0)), sig(zz(1)), zz(2).tanh(), sig(zz(3)));
                let cn = f * f64::from(cp[b * units + k]) + i * g;
                c[b * units + k] = cn;
                h[b * units + k] = o * cn.tanh();
            }
        }
        (c, h)
    }

    #[test]
    fn forward_matches_f64_reference() {
        let (b, u) = (3, 37);
        let mut rng = crate::init::Rng::new(3);
        let z: Vec<f32> = (0..b * 4 * u)
            .map(|_| rng.uniform(-6.0, 6.0) as f32)
            .collect();
        let cp: Vec<f32> = (0..b * u).map(|_| rng.uniform(-2.0, 2.0) as f32).collect();
        let mut gates = z.clone();
        let (mut c, mut pc, mut h) = (vec![0.0; b * u], vec![0.0; b * u], vec![0.0; b * u]);
        forward_step(
            StepForward {
                gates: &mut gates,
                bias: &[],
                c_prev: &cp,
                c: &mut c,
                phi_c: &mut pc,
                h: &mut h,
            },
            u,
            Activation::Sigmoid,
            Activation::Tanh,
        );
        let (rc, rh) = reference(&z, &cp, u);
        for k in 0..b * u {
            assert!((f64::from(c[k]) - rc[k]).abs() < 1e-6, "c[{k}]");
            assert!((f64::from(h[k]) - rh[k]).abs() < 1e-6, "h[{k}]");
        }
    }

    #[test]
    fn fast_and_generic_paths_agree_bit_for_bit() {
        // The specialised (sigmoid, tanh) path and the generic path share the math.
        let (b, u) = (2, 19);
        let mut rng = crate::init::Rng::new(5);
        let z: Vec<f32> = (0..b * 4 * u)
            .map(|_| rng.uniform(-5.0, 5.0) as f32)
            .collect();
        let cp: Vec<f32> = (0..b * u).map(|_| rng.uniform(-1.0, 1.0) as f32).collect();
        let run = |fast: bool| {
            let mut gates = z.clone();
            let (mut c, mut pc, mut h) = (vec![0.0; b * u], vec![0.0; b * u], vec![0.0; b * u]);
            let s = StepForward {
                gates: &mut gates,
                bias: &[],
                c_prev: &cp,
                c: &mut c,
                phi_c: &mut pc,
                h: &mut h,
            };
            if fast {
                forward_body(s, u, sigmoid_fast, tanh_fast);
            } else {
                let (ra, act) = (Activation::Sigmoid, Activation::Tanh);
                forward_body(s, u, |x| ra.apply(x), |x| act.apply(x));
            }
            (gates, c, h)
        };
        assert_eq!(run(true), run(false));
    }
}
