//! `Core`: one model of the engine, as the Python `Sequential` holds it.
//!
//! It is a built [`Model`] until `compile` makes it a [`Trainer`]. Inference, training,
//! evaluation and file I/O release the GIL; while `fit` runs, the trainer is out of the
//! `Core` (the Python callbacks get it lent back while they run, see `hooks`), so another
//! thread's call on the same model gets a clear error instead of waiting.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use ndarray::{Array3, ArrayD, IxDyn};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use stacklstm::io::native;
use stacklstm::loss::Loss;
use stacklstm::optim::OptimizerConfig;
use stacklstm::{Fit, Metric, Model, Sequential, Trainer};

use crate::arrays::{batch, float_array, to_numpy, FloatArray};
use crate::errors::{value_error, Context};
use crate::hooks::{self, PyHooks};

/// What a `Core` holds.
pub enum Engine {
    /// A model that infers (not compiled yet).
    Built(Box<Model>),
    /// A compiled model: the trainer owns it.
    Compiled(Box<Trainer>),
    /// `fit` has the trainer.
    Training,
}

/// A model of the engine (see the module docs).
#[pyclass(module = "stacklstm._native", name = "Core")]
pub struct Core {
    pub(crate) engine: Engine,
    /// Set while `fit` runs (also while its callbacks have the trainer lent back).
    in_fit: bool,
}

const TRAINING: &str = "the model is being trained by fit (its weights can be read and changed from a callback's on_epoch_begin / on_epoch_end)";

impl Core {
    fn model(&self) -> PyResult<&Model> {
        match &self.engine {
            Engine::Built(m) => Ok(m),
            Engine::Compiled(t) => Ok(t.model()),
            Engine::Training => Err(pyo3::exceptions::PyRuntimeError::new_err(TRAINING)),
        }
    }

    fn model_mut(&mut self) -> PyResult<&mut Model> {
        match &mut self.engine {
            Engine::Built(m) => Ok(m),
            Engine::Compiled(t) => Ok(t.model_mut()),
            Engine::Training => Err(pyo3::exceptions::PyRuntimeError::new_err(TRAINING)),
        }
    }

    fn trainer(&mut self) -> PyResult<&mut Trainer> {
        match &mut self.engine {
            Engine::Compiled(t) => Ok(t),
            Engine::Built(_) => Err(pyo3::exceptions::PyRuntimeError::new_err(
                "you must call compile() before training or evaluating the model",
            )),
            Engine::Training => Err(pyo3::exceptions::PyRuntimeError::new_err(TRAINING)),
        }
    }

    /// `x` as a batch of this model's input, described for errors.
    fn input<'a>(
        &self,
        x: &'a FloatArray<'_>,
        what: &str,
    ) -> PyResult<ndarray::ArrayView3<'a, f32>> {
        let m = self.model()?;
        let ids = m.spec().layers[0].config().takes_token_ids();
        let (t, f) = m.input_shape();
        let ts = t.map_or_else(|| "timesteps".to_string(), |t| t.to_string());
        let expected = if ids {
            format!("[batch, {ts}] of token ids")
        } else {
            format!("[batch, {ts}, {f}] (batch, timesteps, features)")
        };
        batch(x.view(), what, &expected, ids)
    }

    fn from_loaded(loaded: stacklstm::LoadedModel) -> PyResult<Core> {
        let engine = match &loaded.training {
            Some(state) => {
                let (t, _) = Trainer::restore(loaded.model, state).context("")?;
                Engine::Compiled(Box::new(t))
            }
            None => Engine::Built(Box::new(loaded.model)),
        };
        Ok(Core {
            engine,
            in_fit: false,
        })
    }
}

/// The `Core` for writing, waiting (without the GIL) for another thread's call on it to end:
/// one that took it during a callback's `predict` on the lent model, say.
pub fn borrow_mut_waiting<'py>(core: &Bound<'py, Core>) -> PyRefMut<'py, Core> {
    loop {
        if let Ok(c) = core.try_borrow_mut() {
            return c;
        }
        core.py().detach(std::thread::yield_now);
    }
}

#[pymethods]
impl Core {
    /// Builds a model from the library's JSON spec of a `Sequential`.
    #[staticmethod]
    fn build(spec_json: &str) -> PyResult<Core> {
        let spec: Sequential = serde_json::from_str(spec_json).context("model spec")?;
        Ok(Core {
            engine: Engine::Built(Box::new(spec.build().context("")?)),
            in_fit: false,
        })
    }

    /// Loads a native, `.keras` or PyTorch safetensors file (a checkpoint comes back
    /// compiled, with its optimizer state).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Core> {
        let loaded = py
            .detach(|| stacklstm::load_model(&path, None))
            .context("")?;
        Core::from_loaded(loaded)
    }

    /// Loads a `.weights.h5` file (or any other) with the architecture of `spec_json`.
    #[staticmethod]
    fn load_with_spec(py: Python<'_>, path: PathBuf, spec_json: &str) -> PyResult<Core> {
        let spec: Sequential = serde_json::from_str(spec_json).context("model spec")?;
        let arch = stacklstm::Arch {
            sources: vec![None; spec.layers.len()],
            spec,
        };
        let loaded = py
            .detach(|| stacklstm::load_model(&path, Some(&arch)))
            .context("")?;
        Core::from_loaded(loaded)
    }

    /// A model from the bytes of a file ([`to_bytes`](Self::to_bytes) or any model file).
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8], name: &str) -> PyResult<Core> {
        let loaded = py
            .detach(|| stacklstm::io::load_model_bytes(data, name, None))
            .context("")?;
        Core::from_loaded(loaded)
    }

    /// The model as native-file bytes; a compiled model with its training state.
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = match &self.engine {
            Engine::Compiled(t) => {
                let (m, state) = (t.model(), t.training_state(0));
                py.detach(|| native::to_bytes(m, None, Some(&state)))
            }
            _ => {
                let m = self.model()?;
                py.detach(|| native::to_bytes(m, None, None))
            }
        }
        .context("")?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Saves the model atomically in the native format (with the training state when
    /// compiled, as Keras' `model.save` keeps the optimizer).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        match &self.engine {
            Engine::Compiled(t) => {
                let (m, state) = (t.model(), t.training_state(0));
                py.detach(|| native::save_checkpoint(&path, m, None, Some(&state)))
            }
            _ => {
                let m = self.model()?;
                py.detach(|| native::save(&path, m, None))
            }
        }
        .context("")
    }

    /// The model's spec as the library's JSON.
    fn spec_json(&self) -> PyResult<String> {
        serde_json::to_string(self.model()?.spec()).context("model spec")
    }

    /// Per layer: `(name, Keras class, spec JSON, output keeps time axis, output width,
    /// weights)`.
    #[allow(clippy::type_complexity)]
    fn layers(&self) -> PyResult<Vec<(String, String, String, bool, usize, usize)>> {
        let m = self.model()?;
        let mut out = Vec::new();
        for ((l, s), spec) in m
            .layers()
            .iter()
            .zip(m.layer_shapes())
            .zip(&m.spec().layers)
        {
            let n: usize = l.weights().iter().map(|w| w.values.len()).sum();
            out.push((
                l.name().to_string(),
                l.kind().to_string(),
                serde_json::to_string(spec).context("layer spec")?,
                s.seq,
                s.width,
                n,
            ));
        }
        Ok(out)
    }

    /// `(timesteps or None, features)` of one input sample.
    fn input_shape(&self) -> PyResult<(Option<usize>, usize)> {
        Ok(self.model()?.input_shape())
    }

    /// Whether the model reads 2-D `[batch, timesteps]` token ids (an Embedding first).
    fn takes_token_ids(&self) -> PyResult<bool> {
        Ok(self.model()?.spec().layers[0].config().takes_token_ids())
    }

    /// `(total, trainable)` weight counts.
    fn param_counts(&self) -> PyResult<(usize, usize)> {
        let m = self.model()?;
        Ok((m.param_count(), m.trainable_param_count()))
    }

    /// The Keras-style summary table.
    fn summary(&self) -> PyResult<String> {
        Ok(self.model()?.summary())
    }

    /// Inference (dropout off) on `x` `[batch, timesteps, features]`; the whole batch at
    /// once, or `batch_size` samples at a time. Releases the GIL.
    #[pyo3(signature = (x, batch_size=None))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        batch_size: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let xa = float_array(x, "x")?;
        let xv = self.input(&xa, "x")?;
        let m = self.model()?;
        let y = py
            .detach(|| match batch_size {
                Some(b) => m.predict_batched(xv, b),
                None => m.predict(xv),
            })
            .context("")?;
        Ok(to_numpy(py, y))
    }

    /// Inference that carries the state of stateful layers on (Keras `predict_on_batch` of
    /// a stateful model).
    fn predict_on_batch<'py>(
        &mut self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let xa = float_array(x, "x")?;
        let xv = self.input(&xa, "x")?;
        let m = self.model_mut()?;
        let y = py.detach(|| m.predict_on_batch(xv)).context("")?;
        Ok(to_numpy(py, y))
    }

    /// Keras `compile`: `loss_json` is a library `Loss`, `optimizer_json` an
    /// `OptimizerConfig`, `metrics` library metric names. A compiled model keeps its
    /// weights and gets a fresh optimizer.
    fn compile(
        &mut self,
        loss_json: &str,
        optimizer_json: &str,
        metrics: Vec<String>,
    ) -> PyResult<()> {
        let loss: Loss = serde_json::from_str(loss_json).context("loss")?;
        let opt: OptimizerConfig = serde_json::from_str(optimizer_json).context("optimizer")?;
        let metrics = metrics
            .iter()
            .map(|m| Metric::from_name(m))
            .collect::<Result<Vec<_>, _>>()
            .context("")?;
        if self.in_fit {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "compile() cannot be called while the model is being trained",
            ));
        }
        let model = match std::mem::replace(&mut self.engine, Engine::Training) {
            Engine::Built(m) => *m,
            Engine::Compiled(t) => t.into_model(),
            Engine::Training => return Err(pyo3::exceptions::PyRuntimeError::new_err(TRAINING)),
        };
        // On a refused config the model stays as it was, uncompiled.
        match Trainer::with_metrics(model.clone(), loss, opt, &metrics) {
            Ok(t) => {
                self.engine = Engine::Compiled(Box::new(t));
                Ok(())
            }
            Err(e) => {
                self.engine = Engine::Built(Box::new(model));
                Err(crate::errors::to_py(e))
            }
        }
    }

    /// Whether `compile` was called.
    fn compiled(&self) -> bool {
        matches!(self.engine, Engine::Compiled(_))
    }

    /// `(loss JSON, optimizer config JSON, metric names)` of a compiled model.
    fn compiled_config(&self) -> PyResult<Option<(String, String, Vec<String>)>> {
        match &self.engine {
            Engine::Compiled(t) => Ok(Some((
                serde_json::to_string(&t.loss()).context("loss")?,
                serde_json::to_string(&t.optimizer().config).context("optimizer")?,
                t.metrics().iter().map(|m| m.name().to_string()).collect(),
            ))),
            _ => Ok(None),
        }
    }

    /// The optimizer's current base learning rate.
    fn learning_rate(&mut self) -> PyResult<f32> {
        Ok(self.trainer()?.optimizer().config.learning_rate)
    }

    /// Sets the optimizer's base learning rate.
    fn set_learning_rate(&mut self, lr: f32) -> PyResult<()> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(value_error(format!(
                "learning_rate must be a finite number > 0, got {lr}"
            )));
        }
        self.trainer()?.optimizer_mut().set_learning_rate(lr);
        Ok(())
    }

    /// The number of optimizer updates applied so far.
    fn iterations(&mut self) -> PyResult<u64> {
        Ok(self.trainer()?.optimizer().iterations)
    }

    /// Keras `fit`. Returns one dict of logs per epoch run (library metric names), and
    /// whether a stop was requested mid-epoch. Releases the GIL while training; `hooks`
    /// (the Python callbacks and the progress bar) run with it, `callbacks` are the
    /// library's own.
    #[pyo3(signature = (x, y, *, epochs, batch_size, shuffle, seed, validation_split,
        validation_data, initial_epoch, callbacks, hooks, every_batch))]
    #[allow(clippy::too_many_arguments)]
    fn fit<'py>(
        slf: &Bound<'py, Self>,
        x: &Bound<'py, PyAny>,
        y: &Bound<'py, PyAny>,
        epochs: usize,
        batch_size: usize,
        shuffle: bool,
        seed: u64,
        validation_split: f32,
        validation_data: Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
        initial_epoch: usize,
        callbacks: Vec<Bound<'py, PyAny>>,
        hooks: Option<Py<PyAny>>,
        every_batch: bool,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let py = slf.py();
        let xa = float_array(x, "x")?;
        let ya = float_array(y, "y")?;
        let mut fit = Fit::new()
            .epochs(epochs)
            .batch_size(batch_size)
            .shuffle(shuffle)
            .seed(seed)
            .validation_split(validation_split)
            .initial_epoch(initial_epoch);
        let (xv, yv);
        {
            let me = slf.try_borrow()?;
            xv = me.input(&xa, "x")?;
            yv = ya.view();
            if let Some((vx, vy)) = &validation_data {
                let vxa = float_array(vx, "validation x")?;
                let vya = float_array(vy, "validation y")?;
                let vx3: Array3<f32> = me.input(&vxa, "validation x")?.to_owned();
                let vy: ArrayD<f32> = vya.view().to_owned();
                fit = fit.validation_data(vx3, vy);
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let pending = Arc::new(Mutex::new(None));
        fit = fit.stop_flag(stop.clone());
        fit.callbacks.push(Box::new(PyHooks::new(
            slf.clone().unbind(),
            hooks,
            every_batch,
            batch_size,
            stop,
            pending.clone(),
        )?));
        for cb in &callbacks {
            fit.callbacks.push(hooks::native_callback(cb)?);
        }
        // The trainer leaves the Core for the run (see the module docs).
        let mut trainer = {
            let mut me = slf.try_borrow_mut()?;
            if me.in_fit {
                return Err(pyo3::exceptions::PyRuntimeError::new_err(
                    "fit() cannot be called from a callback of a fit of the same model",
                ));
            }
            me.trainer()?;
            let t = match std::mem::replace(&mut me.engine, Engine::Training) {
                Engine::Compiled(t) => t,
                other => {
                    me.engine = other;
                    return Err(pyo3::exceptions::PyRuntimeError::new_err(TRAINING));
                }
            };
            me.in_fit = true;
            t
        };
        let result = py.detach(|| trainer.fit(xv, yv, fit));
        {
            let mut me = borrow_mut_waiting(slf);
            me.engine = Engine::Compiled(trainer);
            me.in_fit = false;
        }
        if let Some(e) = pending.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(e);
        }
        let history = result.context("")?;
        history
            .epochs
            .iter()
            .map(|e| hooks::logs_dict(py, e))
            .collect()
    }

    /// Keras `evaluate`: the loss and every compiled metric (library names).
    fn evaluate<'py>(
        &mut self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        y: &Bound<'py, PyAny>,
        batch_size: usize,
    ) -> PyResult<(f64, Vec<(String, f64)>)> {
        let xa = float_array(x, "x")?;
        let ya = float_array(y, "y")?;
        let xv = self.input(&xa, "x")?;
        let yv = ya.view();
        let t = self.trainer()?;
        let e = py.detach(|| t.evaluate(xv, yv, batch_size)).context("")?;
        Ok((e.loss, e.metrics.into_iter().collect()))
    }

    /// Keras `train_on_batch`: one update; returns the batch's loss before it.
    fn train_on_batch<'py>(
        &mut self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        y: &Bound<'py, PyAny>,
    ) -> PyResult<f64> {
        let xa = float_array(x, "x")?;
        let ya = float_array(y, "y")?;
        let xv = self.input(&xa, "x")?;
        let yv = ya.view();
        let t = self.trainer()?;
        py.detach(|| t.train_on_batch(xv, yv)).context("")
    }

    /// Every weight in Keras `get_weights()` order, as float32 arrays.
    fn get_weights<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        Ok(self
            .model()?
            .get_weights()
            .into_iter()
            .map(|w| to_numpy(py, w))
            .collect())
    }

    /// `("layer/weight", shape)` of every weight, in `get_weights` order.
    fn weight_names(&self) -> PyResult<Vec<(String, Vec<usize>)>> {
        Ok(self.model()?.weight_names())
    }

    /// Replaces every weight (Keras `set_weights` order); nothing changes unless all fit.
    fn set_weights(&mut self, weights: Vec<Bound<'_, PyAny>>) -> PyResult<()> {
        let names = self.model()?.weight_names();
        let mut arrays = Vec::with_capacity(weights.len());
        for (i, w) in weights.iter().enumerate() {
            let what = names
                .get(i)
                .map_or_else(|| format!("weight {i}"), |(n, _)| n.clone());
            let a = float_array(w, &what)?;
            let v = a.view();
            arrays.push(
                ArrayD::from_shape_vec(IxDyn(v.shape()), v.iter().copied().collect())
                    .map_err(|e| value_error(format!("{what}: {e}")))?,
            );
        }
        self.model_mut()?.set_weights(&arrays).context("")
    }

    /// Forgets the carried state of stateful layers.
    fn reset_states(&mut self) -> PyResult<()> {
        self.model_mut()?.reset_states();
        Ok(())
    }

    /// Freezes or unfreezes a layer (applies at the next `compile`).
    fn set_trainable(&mut self, name: &str, on: bool) -> PyResult<()> {
        self.model_mut()?.set_trainable(name, on).context("")
    }
}
