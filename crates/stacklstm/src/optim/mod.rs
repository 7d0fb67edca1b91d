//! Optimizers with Keras' defaults and Keras' exact update equations, gradient clipping and
//! learning-rate schedules.
//!
//! With `g` the gradient, `lr` the (scheduled) learning rate and `t` the 1-based step:
//!
//! | optimizer | update (Keras 3) |
//! |---|---|
//! | SGD | `w -= lr g`; momentum: `m = μ m - lr g`, `w += m` (Nesterov: `w += μ m - lr g`) |
//! | Adam | `m += (g - m)(1 - β1)`, `v += (g² - v)(1 - β2)`, `α = lr √(1-β2^t)/(1-β1^t)`, `w -= m α / (√v + ε)` |
//! | AdamW | `w -= w · wd · lr`, then Adam |
//! | RMSprop | `v = ρ v + (1-ρ) g²` (centred: `a = ρ a + (1-ρ) g`, `v - a²`), `Δ = lr g / √(v + ε)`, `w -= Δ` (momentum: `b = μ b + Δ`, `w -= b`) |
//! | Adagrad | `acc += g²`, `w -= lr g / √(acc + ε)` |
//!
//! Note that Keras' Adam adds `ε` to `√v` of the *uncorrected* second moment and folds the
//! bias corrections into `α` (PyTorch adds `ε` to `√v̂`); all of it is evaluated in f32
//! as Keras does. Clipping follows Keras: `clipnorm` rescales each gradient tensor to at
//! most that L2 norm, `global_clipnorm` rescales all of them together, `clipvalue` clamps
//! each element; at most one of them may be set.

mod schedule;

pub use schedule::Schedule;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One trainable tensor with its gradient, for optimizers.
#[derive(Debug)]
pub struct ParamMut<'a> {
    /// `layer/weight`, e.g. `lstm_1/recurrent_kernel`.
    pub name: String,
    /// The weights (flat, row-major).
    pub value: &'a mut [f32],
    /// The accumulated gradient, same layout.
    pub grad: &'a mut [f32],
}

/// Settings every optimizer shares: clipping and the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Common {
    /// Clip each gradient tensor to this L2 norm.
    pub clipnorm: Option<f32>,
    /// Clip each gradient element to `[-clipvalue, clipvalue]`.
    pub clipvalue: Option<f32>,
    /// Clip all gradients together to this global L2 norm.
    pub global_clipnorm: Option<f32>,
    /// Learning-rate schedule.
    pub schedule: Schedule,
}

/// The optimizer algorithm and its hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Kind {
    /// Stochastic gradient descent.
    Sgd {
        /// Momentum factor `μ` (0 = plain SGD).
        momentum: f32,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// Adam.
    Adam {
        /// `β1`.
        beta_1: f32,
        /// `β2`.
        beta_2: f32,
        /// `ε`.
        epsilon: f32,
    },
    /// Adam with decoupled weight decay.
    AdamW {
        /// `β1`.
        beta_1: f32,
        /// `β2`.
        beta_2: f32,
        /// `ε`.
        epsilon: f32,
        /// Weight decay factor.
        weight_decay: f32,
    },
    /// RMSprop.
    RmsProp {
        /// Discount `ρ`.
        rho: f32,
        /// Momentum `μ`.
        momentum: f32,
        /// `ε`.
        epsilon: f32,
        /// Normalise by the centred second moment.
        centered: bool,
    },
    /// Adagrad.
    Adagrad {
        /// Initial accumulator value.
        initial_accumulator_value: f32,
        /// `ε`.
        epsilon: f32,
    },
}

/// A complete optimizer configuration (what `compile` takes and model files store).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    /// Algorithm and hyperparameters.
    pub kind: Kind,
    /// Base learning rate.
    pub learning_rate: f32,
    /// Clipping and schedule.
    #[serde(default)]
    pub common: Common,
}

macro_rules! builder {
    ($(#[$doc:meta])* $name:ident, $default_lr:expr, { $($field:ident : $ty:ty = $def:expr, $fdoc:literal;)* }, |$s:ident| $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub struct $name {
            /// Base learning rate.
            pub learning_rate: f32,
            $(#[doc = $fdoc] pub $field: $ty,)*
            /// Clipping and schedule.
            pub common: Common,
        }
        impl Default for $name {
            fn default() -> Self {
                $name { learning_rate: $default_lr, $($field: $def,)* common: Common::default() }
            }
        }
        impl $name {
            /// With this learning rate and Keras' defaults for everything else.
            #[must_use]
            pub fn new(learning_rate: f32) -> Self {
                $name { learning_rate, ..Self::default() }
            }
            $(
                #[doc = $fdoc]
                #[must_use]
                pub fn $field(mut self, v: $ty) -> Self {
                    self.$field = v;
                    self
                }
            )*
            /// Clip each gradient tensor to this L2 norm.
            #[must_use]
            pub fn clipnorm(mut self, v: f32) -> Self {
                self.common.clipnorm = Some(v);
                self
            }
            /// Clip each gradient element to `[-v, v]`.
            #[must_use]
            pub fn clipvalue(mut self, v: f32) -> Self {
                self.common.clipvalue = Some(v);
                self
            }
            /// Clip all gradients together to this global L2 norm.
            #[must_use]
            pub fn global_clipnorm(mut self, v: f32) -> Self {
                self.common.global_clipnorm = Some(v);
                self
            }
            /// Learning-rate schedule.
            #[must_use]
            pub fn schedule(mut self, s: Schedule) -> Self {
                self.common.schedule = s;
                self
            }
        }
        impl From<$name> for OptimizerConfig {
            fn from($s: $name) -> Self {
                OptimizerConfig { kind: $kind, learning_rate: $s.learning_rate, common: $s.common }
            }
        }
    };
}

builder!(
    /// SGD (Keras defaults: learning rate 0.01, momentum 0).
    Sgd, 0.01, {
        momentum: f32 = 0.0, "Momentum factor.";
        nesterov: bool = false, "Nesterov momentum.";
    }, |s| Kind::Sgd { momentum: s.momentum, nesterov: s.nesterov }
);
builder!(
    /// Adam (Keras defaults: 0.001, β1 0.9, β2 0.999, ε 1e-7).
    Adam, 0.001, {
        beta_1: f32 = 0.9, "`β1`.";
        beta_2: f32 = 0.999, "`β2`.";
        epsilon: f32 = 1e-7, "`ε`.";
    }, |s| Kind::Adam { beta_1: s.beta_1, beta_2: s.beta_2, epsilon: s.epsilon }
);
builder!(
    /// AdamW (Keras defaults: 0.001, β1 0.9, β2 0.999, ε 1e-7, weight decay 0.004).
    AdamW, 0.001, {
        beta_1: f32 = 0.9, "`β1`.";
        beta_2: f32 = 0.999, "`β2`.";
        epsilon: f32 = 1e-7, "`ε`.";
        weight_decay: f32 = 0.004, "Decoupled weight decay factor.";
    }, |s| Kind::AdamW { beta_1: s.beta_1, beta_2: s.beta_2, epsilon: s.epsilon, weight_decay: s.weight_decay }
);
builder!(
    /// RMSprop (Keras defaults: 0.001, ρ 0.9, momentum 0, ε 1e-7, not centred).
    RmsProp, 0.001, {
        rho: f32 = 0.9, "Discount `ρ`.";
        momentum: f32 = 0.0, "Momentum.";
        epsilon: f32 = 1e-7, "`ε`.";
        centered: bool = false, "Centred variant.";
    }, |s| Kind::RmsProp { rho: s.rho, momentum: s.momentum, epsilon: s.epsilon, centered: s.centered }
);
builder!(
    /// Adagrad (Keras defaults: 0.001, initial accumulator 0.1, ε 1e-7).
    Adagrad, 0.001, {
        initial_accumulator_value: f32 = 0.1, "Initial accumulator value.";
        epsilon: f32 = 1e-7, "`ε`.";
    }, |s| Kind::Adagrad { initial_accumulator_value: s.initial_accumulator_value, epsilon: s.epsilon }
);

impl OptimizerConfig {
    /// Checks every hyperparameter.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        let pos = |name: &str, v: f32| -> Result<()> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::config(format!(
                    "optimizer: {name} must be a finite number > 0, got {v}"
                )))
            }
        };
        let unit = |name: &str, v: f32| -> Result<()> {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::config(format!(
                    "optimizer: {name} must be in [0, 1), got {v}"
                )))
            }
        };
        pos("learning_rate", self.learning_rate)?;
        match self.kind {
            Kind::Sgd { momentum, .. } => unit("momentum", momentum)?,
            Kind::Adam {
                beta_1,
                beta_2,
                epsilon,
            } => {
                unit("beta_1", beta_1)?;
                unit("beta_2", beta_2)?;
                pos("epsilon", epsilon)?;
            }
            Kind::AdamW {
                beta_1,
                beta_2,
                epsilon,
                weight_decay,
            } => {
                unit("beta_1", beta_1)?;
                unit("beta_2", beta_2)?;
                pos("epsilon", epsilon)?;
                if !(weight_decay >= 0.0 && weight_decay.is_finite()) {
                    return Err(Error::config(format!(
                        "optimizer: weight_decay must be >= 0, got {weight_decay}"
                    )));
                }
            }
            Kind::RmsProp {
                rho,
                momentum,
                epsilon,
                ..
            } => {
                unit("rho", rho)?;
                unit("momentum", momentum)?;
                pos("epsilon", epsilon)?;
            }
            Kind::Adagrad {
                initial_accumulator_value,
                epsilon,
            } => {
                if !(initial_accumulator_value >= 0.0 && initial_accumulator_value.is_finite()) {
                    return Err(Error::config(
                        "optimizer: initial_accumulator_value must be >= 0",
                    ));
                }
                pos("epsilon", epsilon)?;
            }
        }
        let c = &self.common;
        let set = [c.clipnorm, c.clipvalue, c.global_clipnorm]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if set > 1 {
            return Err(Error::config(
                "optimizer: set at most one of clipnorm, clipvalue and global_clipnorm",
            ));
        }
        for (name, v) in [
            ("clipnorm", c.clipnorm),
            ("clipvalue", c.clipvalue),
            ("global_clipnorm", c.global_clipnorm),
        ] {
            if let Some(v) = v {
                pos(name, v)?;
            }
        }
        c.schedule.validate()
    }

    /// Number of state slots per weight tensor.
    fn slots(&self) -> usize {
        match self.kind {
            Kind::Sgd { momentum, .. } => usize::from(momentum != 0.0),
            Kind::Adam { .. } | Kind::AdamW { .. } => 2,
            Kind::RmsProp {
                momentum, centered, ..
            } => 1 + usize::from(momentum != 0.0) + usize::from(centered),
            Kind::Adagrad { .. } => 1,
        }
    }

    /// The optimizer's Keras name.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Sgd { .. } => "sgd",
            Kind::Adam { .. } => "adam",
            Kind::AdamW { .. } => "adamw",
            Kind::RmsProp { .. } => "rmsprop",
            Kind::Adagrad { .. } => "adagrad",
        }
    }
}

/// An optimizer with its state (moments, step count).
#[derive(Debug, Clone, PartialEq)]
pub struct Optimizer {
    /// The configuration.
    pub config: OptimizerConfig,
    /// Updates applied so far.
    pub iterations: u64,
    /// Per weight tensor, its state slots (e.g. Adam's `m`, `v`), each as long as the tensor.
    slots: Vec<Vec<Vec<f32>>>,
}

impl Optimizer {
    /// A fresh optimizer.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] from [`OptimizerConfig::validate`].
    pub fn new(config: impl Into<OptimizerConfig>) -> Result<Self> {
        let config = config.into();
        config.validate()?;
        Ok(Optimizer {
            config,
            iterations: 0,
            slots: Vec::new(),
        })
    }

    /// The learning rate the next update uses (schedule applied).
    pub fn current_learning_rate(&self) -> f32 {
        self.config
            .common
            .schedule
            .rate(self.config.learning_rate, self.iterations)
    }

    /// Sets the base learning rate (what `ReduceLROnPlateau` does).
    pub fn set_learning_rate(&mut self, lr: f32) {
        self.config.learning_rate = lr;
    }

    /// The state tensors, named `<param index>/<slot index>`, for checkpoints.
    pub fn state(&self) -> Vec<(String, Vec<f32>)> {
        let mut out = Vec::new();
        for (p, slots) in self.slots.iter().enumerate() {
            for (s, v) in slots.iter().enumerate() {
                out.push((format!("{p}/{s}"), v.clone()));
            }
        }
        out
    }

    /// Restores state saved by [`state`](Self::state) for parameters of the given lengths.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if a slot is missing or has the wrong length.
    pub fn load_state(
        &mut self,
        iterations: u64,
        lens: &[usize],
        state: &[(String, Vec<f32>)],
    ) -> Result<()> {
        let k = self.config.slots();
        let mut slots = Vec::with_capacity(lens.len());
        for (p, &n) in lens.iter().enumerate() {
            let mut ps = Vec::with_capacity(k);
            for s in 0..k {
                let name = format!("{p}/{s}");
                let v = state.iter().find(|(nm, _)| *nm == name).ok_or_else(|| {
                    Error::input(format!("optimizer state: slot {name} is missing"))
                })?;
                if v.1.len() != n {
                    return Err(Error::input(format!(
                        "optimizer state: slot {name} has {} values, the weight has {n}",
                        v.1.len()
                    )));
                }
                ps.push(v.1.clone());
            }
            slots.push(ps);
        }
        self.slots = slots;
        self.iterations = iterations;
        Ok(())
    }

    fn ensure_slots(&mut self, params: &[ParamMut<'_>]) -> Result<()> {
        let k = self.config.slots();
        if self.slots.is_empty() {
            let init = match self.config.kind {
                Kind::Adagrad {
                    initial_accumulator_value,
                    ..
                } => initial_accumulator_value,
                _ => 0.0,
            };
            self.slots = params
                .iter()
                .map(|p| (0..k).map(|_| vec![init; p.value.len()]).collect())
                .collect();
        }
        let fits = self.slots.len() == params.len()
            && self
                .slots
                .iter()
                .zip(params)
                .all(|(s, p)| s.len() == k && s.iter().all(|v| v.len() == p.value.len()));
        if fits {
            Ok(())
        } else {
            Err(Error::State(
                "the optimizer's state belongs to a model of another shape; compile again".into(),
            ))
        }
    }

    /// Clips the gradients in place as configured.
    fn clip(&self, params: &mut [ParamMut<'_>]) {
        let c = &self.config.common;
        if let Some(max) = c.clipnorm {
            for p in params.iter_mut() {
                let norm = l2(p.grad);
                if norm > max {
                    let s = max / norm;
                    p.grad.iter_mut().for_each(|g| *g *= s);
                }
            }
        } else if let Some(max) = c.global_clipnorm {
            let norm = params
                .iter()
                .map(|p| l2(p.grad).powi(2))
                .sum::<f32>()
                .sqrt();
            if norm > max {
                let s = max / norm;
                for p in params.iter_mut() {
                    p.grad.iter_mut().for_each(|g| *g *= s);
                }
            }
        } else if let Some(v) = c.clipvalue {
            for p in params.iter_mut() {
                p.grad.iter_mut().for_each(|g| *g = g.clamp(-v, v));
            }
        }
    }

    /// Applies one update to every parameter from its gradient. The gradient buffers are
    /// used as scratch: afterwards they hold the new weights.
    ///
    /// # Errors
    /// [`Error::State`] if the parameters do not match the optimizer's state.
    pub fn step(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        self.step_staged(params)?;
        for p in params.iter_mut() {
            p.value.copy_from_slice(p.grad);
        }
        Ok(())
    }

    /// One update that leaves the weights as they are and writes the new weights into the
    /// gradient buffers (the optimizer's state does advance). Training checks them there
    /// and copies them over only if every one is finite: a rollback with no copy of the
    /// weights kept aside.
    ///
    /// Each new weight is computed with exactly the arithmetic of an in-place update
    /// (Keras' equations, in f32).
    pub(crate) fn step_staged(&mut self, params: &mut [ParamMut<'_>]) -> Result<()> {
        self.ensure_slots(params)?;
        self.clip(params);
        let lr = self.current_learning_rate();
        let t = (self.iterations + 1) as f32;
        for (p, slots) in params.iter_mut().zip(self.slots.iter_mut()) {
            // `out` holds the gradient on entry and the new weight on exit, element by
            // element (each gradient is read before its slot is written).
            let (w, out) = (&*p.value, &mut *p.grad);
            match self.config.kind {
                Kind::Sgd { momentum, nesterov } => {
                    if momentum == 0.0 {
                        for (&w, o) in w.iter().zip(out.iter_mut()) {
                            let g = *o;
                            *o = w - g * lr;
                        }
                    } else {
                        let m = &mut slots[0];
                        for ((&w, o), m) in w.iter().zip(out.iter_mut()).zip(m.iter_mut()) {
                            let g = *o;
                            *m = *m * momentum - g * lr;
                            *o = if nesterov {
                                w + (*m * momentum - g * lr)
                            } else {
                                w + *m
                            };
                        }
                    }
                }
                Kind::Adam {
                    beta_1,
                    beta_2,
                    epsilon,
                } => adam(w, out, slots, lr, t, beta_1, beta_2, epsilon, None),
                Kind::AdamW {
                    beta_1,
                    beta_2,
                    epsilon,
                    weight_decay,
                } => adam(
                    w,
                    out,
                    slots,
                    lr,
                    t,
                    beta_1,
                    beta_2,
                    epsilon,
                    Some(weight_decay),
                ),
                Kind::RmsProp {
                    rho,
                    momentum,
                    epsilon,
                    centered,
                } => {
                    let (v, rest) = slots.split_at_mut(1);
                    let v = &mut v[0];
                    let (mom, avg) = match (momentum != 0.0, centered) {
                        (true, true) => {
                            let (a, b) = rest.split_at_mut(1);
                            (Some(&mut a[0]), Some(&mut b[0]))
                        }
                        (true, false) => (rest.first_mut(), None),
                        (false, true) => (None, rest.first_mut()),
                        (false, false) => (None, None),
                    };
                    let mut mom = mom;
                    let mut avg = avg;
                    for i in 0..w.len() {
                        let g = out[i];
                        v[i] = rho * v[i] + (1.0 - rho) * g * g;
                        let mut denom = v[i];
                        if let Some(a) = avg.as_deref_mut() {
                            a[i] = rho * a[i] + (1.0 - rho) * g;
                            denom -= a[i] * a[i];
                        }
                        let inc = lr * g / (denom + epsilon).sqrt();
                        if let Some(m) = mom.as_deref_mut() {
                            m[i] = momentum * m[i] + inc;
                            out[i] = w[i] - m[i];
                        } else {
                            out[i] = w[i] - inc;
                        }
                    }
                }
                Kind::Adagrad { epsilon, .. } => {
                    let acc = &mut slots[0];
                    for ((&w, o), a) in w.iter().zip(out.iter_mut()).zip(acc.iter_mut()) {
                        let g = *o;
                        *a += g * g;
                        *o = w - lr * g / (*a + epsilon).sqrt();
                    }
                }
            }
        }
        self.iterations += 1;
        Ok(())
    }
}

/// Adam (with `weight_decay`: AdamW, the decay applied first, as Keras does); `out` holds
/// the gradient in and the new weight out.
#[allow(clippy::too_many_arguments)]
fn adam(
    w: &[f32],
    out: &mut [f32],
    slots: &mut [Vec<f32>],
    lr: f32,
    t: f32,
    b1: f32,
    b2: f32,
    eps: f32,
    weight_decay: Option<f32>,
) {
    // α_t in f32, as Keras evaluates it.
    let alpha = lr * (1.0 - b2.powf(t)).sqrt() / (1.0 - b1.powf(t));
    let (m, v) = slots.split_at_mut(1);
    let (m, v) = (&mut m[0], &mut v[0]);
    let (c1, c2) = (1.0 - b1, 1.0 - b2);
    // Zipped iterators (no bounds checks) so the loop vectorises; same arithmetic, in the
    // same order, as the indexed form.
    let zipped = w
        .iter()
        .zip(out.iter_mut())
        .zip(m.iter_mut())
        .zip(v.iter_mut());
    match weight_decay {
        None => {
            for (((&w, o), m), v) in zipped {
                let g = *o;
                *m += (g - *m) * c1;
                *v += (g * g - *v) * c2;
                *o = w - (*m * alpha) / (v.sqrt() + eps);
            }
        }
        Some(wd) => {
            for (((&w, o), m), v) in zipped {
                let g = *o;
                let w = w - w * wd * lr;
                *m += (g - *m) * c1;
                *v += (g * g - *v) * c2;
                *o = w - (*m * alpha) / (v.sqrt() + eps);
            }
        }
    }
}

fn l2(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One parameter `[w0, w1]` with gradient `g`, stepped `n` times with the same gradient.
    fn run(cfg: impl Into<OptimizerConfig>, w: [f32; 2], g: [f32; 2], n: usize) -> [f32; 2] {
        let mut opt = Optimizer::new(cfg).unwrap();
        let mut w = w;
        for _ in 0..n {
            let mut gg = g;
            let mut params = vec![ParamMut {
                name: "p".into(),
                value: &mut w,
                grad: &mut gg,
            }];
            opt.step(&mut params).unwrap();
        }
        w
    }

    fn close(a: [f32; 2], b: [f64; 2]) {
        for (x, y) in a.iter().zip(b) {
            assert!((f64::from(*x) - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn sgd_plain_momentum_and_nesterov_by_hand() {
        close(run(Sgd::new(0.1), [1.0, -1.0], [0.5, 2.0], 1), [0.95, -1.2]);
        // momentum 0.9: m1 = -0.05, w1 = 0.95; m2 = -0.045 - 0.05 = -0.095, w2 = 0.855
        close(
            run(Sgd::new(0.1).momentum(0.9), [1.0, 0.0], [0.5, 0.0], 2),
            [0.855, 0.0],
        );
        // nesterov: m1 = -0.05, w1 = 1 + 0.9(-0.05) - 0.05 = 0.905;
        // m2 = -0.095, w2 = 0.905 + 0.9(-0.095) - 0.05 = 0.7695
        close(
            run(
                Sgd::new(0.1).momentum(0.9).nesterov(true),
                [1.0, 0.0],
                [0.5, 0.0],
                2,
            ),
            [0.7695, 0.0],
        );
    }

    #[test]
    fn adam_keras_equations_by_hand() {
        // Step 1: m = 0.1 g, v = 0.001 g², α = lr √0.001 / 0.1,
        // w -= m α / (√v + ε) = lr · g √0.001 / (√0.001 |g| + ε·...) — computed in f64 here.
        let (lr, b1, b2, eps) = (0.01f64, 0.9f64, 0.999f64, 1e-3f64);
        let mut w = 1.0f64;
        let (mut m, mut v) = (0.0f64, 0.0f64);
        let g = 0.3f64;
        for t in 1..=3 {
            m += (g - m) * (1.0 - b1);
            v += (g * g - v) * (1.0 - b2);
            let a = lr * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t));
            w -= m * a / (v.sqrt() + eps);
        }
        let got = run(Adam::new(0.01).epsilon(1e-3), [1.0, 0.0], [0.3, 0.0], 3);
        assert!((f64::from(got[0]) - w).abs() < 1e-6, "{} vs {w}", got[0]);
        // The PyTorch form (ε on the corrected √v̂) differs visibly at this ε.
        let mut wt = 1.0f64;
        let (mut m2, mut v2) = (0.0, 0.0);
        for t in 1..=3 {
            m2 = b1 * m2 + (1.0 - b1) * g;
            v2 = b2 * v2 + (1.0 - b2) * g * g;
            let (mh, vh) = (m2 / (1.0 - b1.powi(t)), v2 / (1.0 - b2.powi(t)));
            wt -= lr * mh / (vh.sqrt() + eps);
        }
        assert!((wt - w).abs() > 1e-5);
    }

    #[test]
    fn adamw_rmsprop_adagrad_by_hand() {
        // AdamW, one step: w = 1 - 1·0.1·0.01 = 0.999, then Adam's first step is
        // lr · g/|g| · √0.001/0.1 · 0.1 / (√0.001 + ε) ≈ lr (ε = 1e-7 negligible).
        let got = run(
            AdamW::new(0.01).weight_decay(0.1),
            [1.0, 0.0],
            [0.5, 0.0],
            1,
        );
        let m = 0.05f64;
        let v = 0.001 * 0.25f64;
        let a = 0.01 * 0.001f64.sqrt() / 0.1;
        close(got, [0.999 - m * a / (v.sqrt() + 1e-7), 0.0]);
        // RMSprop: v = 0.1 g², w -= lr g / √(v + ε).
        let got = run(RmsProp::new(0.01), [1.0, 0.0], [2.0, 0.0], 1);
        close(got, [1.0 - 0.01 * 2.0 / (0.4f64 + 1e-7).sqrt(), 0.0]);
        // Adagrad: acc = 0.1 + g², w -= lr g / √(acc + ε).
        let got = run(Adagrad::new(0.1), [1.0, 0.0], [1.0, 0.0], 1);
        close(got, [1.0 - 0.1 / (1.1f64 + 1e-7).sqrt(), 0.0]);
    }

    #[test]
    fn clipping_by_value_norm_and_global_norm() {
        // clipvalue 0.5: g = [0.5, -0.5] with SGD lr 1.
        close(
            run(Sgd::new(1.0).clipvalue(0.5), [0.0, 0.0], [3.0, -4.0], 1),
            [-0.5, 0.5],
        );
        // clipnorm 1: g = [3, -4] / 5.
        close(
            run(Sgd::new(1.0).clipnorm(1.0), [0.0, 0.0], [3.0, -4.0], 1),
            [-0.6, 0.8],
        );
        // global_clipnorm over two tensors [3] and [4]: scaled by 1/5.
        let mut opt = Optimizer::new(Sgd::new(1.0).global_clipnorm(1.0)).unwrap();
        let (mut a, mut b) = ([0.0f32], [0.0f32]);
        let (mut ga, mut gb) = ([3.0f32], [4.0f32]);
        let mut params = vec![
            ParamMut {
                name: "a".into(),
                value: &mut a,
                grad: &mut ga,
            },
            ParamMut {
                name: "b".into(),
                value: &mut b,
                grad: &mut gb,
            },
        ];
        opt.step(&mut params).unwrap();
        assert!((a[0] + 0.6).abs() < 1e-6 && (b[0] + 0.8).abs() < 1e-6);
        // A norm below the limit is untouched.
        close(
            run(Sgd::new(1.0).clipnorm(10.0), [0.0, 0.0], [3.0, -4.0], 1),
            [-3.0, 4.0],
        );
    }

    #[test]
    fn schedule_changes_the_step() {
        let s = Schedule::StepDecay {
            step_size: 1,
            gamma: 0.5,
        };
        // lr 1, 0.5, 0.25 with g = 1: w = -1.75.
        close(
            run(Sgd::new(1.0).schedule(s), [0.0, 0.0], [1.0, 0.0], 3),
            [-1.75, 0.0],
        );
    }

    #[test]
    fn invalid_settings_are_errors() {
        assert!(Optimizer::new(Adam::new(-1.0)).is_err());
        assert!(Optimizer::new(Adam::new(f32::NAN)).is_err());
        assert!(Optimizer::new(Adam::new(0.1).beta_1(1.0)).is_err());
        assert!(Optimizer::new(Sgd::new(0.1).clipnorm(1.0).clipvalue(1.0)).is_err());
        assert!(Optimizer::new(Sgd::new(0.1).clipnorm(0.0)).is_err());
    }

    #[test]
    fn state_round_trip() {
        let mut opt = Optimizer::new(Adam::new(0.1)).unwrap();
        let mut w = [1.0f32, 2.0];
        let mut g = [0.1f32, 0.2];
        opt.step(&mut [ParamMut {
            name: "p".into(),
            value: &mut w,
            grad: &mut g,
        }])
        .unwrap();
        let st = opt.state();
        let mut o2 = Optimizer::new(Adam::new(0.1)).unwrap();
        o2.load_state(opt.iterations, &[2], &st).unwrap();
        assert_eq!(o2, opt);
        assert!(o2.load_state(1, &[3], &st).is_err());
    }
}
