"""``Sequential``: Keras' model class on the stacklstm engine, and ``load_model``."""

import json
import math
import os
import time

from . import _native
from . import callbacks as _callbacks
from . import layers as _layers
from . import losses as _losses
from . import optimizers as _optimizers
from . import utils as _utils

__all__ = ["Sequential", "Model", "load_model"]

# Metric names as Keras takes them -> the engine's.
_METRICS = {
    "mae": "mae", "mean_absolute_error": "mae",
    "mse": "mse", "mean_squared_error": "mse",
    "rmse": "rmse", "root_mean_squared_error": "rmse",
    "accuracy": "accuracy", "acc": "accuracy",
    "binary_accuracy": "accuracy", "categorical_accuracy": "accuracy",
    "sparse_categorical_accuracy": "accuracy",
}
_LOSS_TYPES = {
    "mse": _losses.MeanSquaredError, "mae": _losses.MeanAbsoluteError, "huber": _losses.Huber,
    "binary_crossentropy": _losses.BinaryCrossentropy,
    "categorical_crossentropy": _losses.CategoricalCrossentropy,
    "sparse_categorical_crossentropy": _losses.SparseCategoricalCrossentropy,
}
_OPTIMIZER_TYPES = {
    "sgd": _optimizers.SGD, "adam": _optimizers.Adam, "adam_w": _optimizers.AdamW,
    "rms_prop": _optimizers.RMSprop, "adagrad": _optimizers.Adagrad,
}


def _shape(x):
    shape = getattr(x, "shape", None)
    if shape is None:
        import numpy as np
        shape = np.shape(x)
    return tuple(shape)


def _unsupported(method, **given):
    for k, v in given.items():
        if v is not None and v is not False:
            raise NotImplementedError(f"{method}: {k} is not supported")


class Sequential:
    """A linear stack of layers, as Keras' ``Sequential``.

    ``Sequential([Input(shape=(30, 1)), LSTM(50, return_sequences=True), LSTM(50),
    Dense(1)])``, or ``.add()`` layer by layer with ``input_shape=`` on the first. The model
    is built (its weights initialised) as soon as its input shape is known, else at its
    first call on data. Arrays are ``[batch, timesteps, features]``.
    """

    def __init__(self, layers=None, trainable=True, name=None):
        if not trainable:
            raise NotImplementedError(
                "Sequential: trainable=False is not supported; set trainable on the layers")
        self.name = name or "sequential"
        self._layers = []
        self._input_shape = None
        self._core = None
        self._seed = None
        self._metrics = []          # (name the user gave, engine name), in order
        self.loss = None
        self.optimizer = None
        self.stop_training = False
        self.history = None
        for layer in layers or []:
            self.add(layer)

    # ------------------------------------------------------------------ structure
    @property
    def layers(self):
        return list(self._layers)

    @property
    def built(self):
        return self._core is not None

    def add(self, layer):
        """Appends a layer (or an ``Input`` as the first element)."""
        if isinstance(layer, _layers.InputLayer):
            if self._layers:
                raise ValueError("Sequential: an Input can only be the first element")
            self._input_shape = layer._input_shape
            return
        if not isinstance(layer, _layers.Layer):
            raise ValueError(
                "Only instances of stacklstm.layers.Layer can be added to a Sequential model; "
                f"received: {layer!r}")
        if layer._model is not None and layer._model is not self:
            raise ValueError(f"layer {layer.name or layer._class_name} already belongs to "
                             "another model")
        if not self._layers and self._input_shape is None:
            self._input_shape = layer._input_shape
        keep = self.get_weights() if self.built else None
        self._layers.append(layer)
        layer._model = self
        if self._input_shape is not None:
            try:
                self._build(keep)
            except Exception:
                self._layers.pop()
                layer._model = None
                raise

    def pop(self):
        """Removes the last layer (the others keep their weights)."""
        if not self._layers:
            raise TypeError("There are no layers in the model.")
        keep = self.get_weights() if self.built else None
        layer = self._layers.pop()
        layer._model = None
        self._core = None
        if keep is not None and self._layers:
            self._build(None)
            self._core.set_weights(keep[:len(self._core.weight_names())])
            if self.optimizer is not None:
                self._compile_core()
        return layer

    def build(self, input_shape=None):
        """Builds the model for ``input_shape`` ``(batch, timesteps, features)`` (or
        ``(batch, timesteps)`` for token ids)."""
        if input_shape is not None:
            self._input_shape = tuple(input_shape)[1:]
        if self._input_shape is None:
            raise ValueError("build: give input_shape=(batch, timesteps, features)")
        if not self.built:
            self._build(None)

    def _build(self, keep):
        if not self._layers:
            raise ValueError("the model has no layers: add at least one")
        shape = tuple(self._input_shape)
        first = self._layers[0]._spec
        if len(shape) == 1:
            if first.get("type") != "embedding":
                raise ValueError(
                    f"input shape {shape} gives 2-D input [batch, {shape[0]}], but layer "
                    f"{self._layers[0]._class_name} needs 3-D input [batch, timesteps, "
                    "features]: give input_shape=(timesteps, features)")
            shape = (shape[0], 1)
        if len(shape) != 2:
            raise ValueError(
                f"input shape {tuple(self._input_shape)}: expected (timesteps, features)")
        if self._seed is None:
            self._seed = _utils._next_seed()
        spec = {
            "name": self.name,
            "input_shape": [None if shape[0] is None else int(shape[0]), int(shape[1])],
            "layers": [layer._spec for layer in self._layers],
            "seed": self._seed,
        }
        core = _native.Core.build(json.dumps(spec))
        if keep:
            w = core.get_weights()
            w[:len(keep)] = keep
            core.set_weights(w)
        old = self._core
        self._core = core
        self._name_layers()
        if old is not None and old.compiled():
            self._compile_core()

    def _name_layers(self):
        for layer, (name, *_rest) in zip(self._layers, self._core.layers()):
            layer._name = name

    def _ensure_built(self, x):
        if self._core is None:
            if not self._layers:
                raise ValueError("the model has no layers: add at least one")
            self._input_shape = _shape(x)[1:]
            self._build(None)
        return self._core

    def _layer_weight_range(self, name):
        lo = 0
        for lname, _kind, _spec, _seq, _width, n in self._core.layers():
            count = sum(1 for w, _ in self._core.weight_names() if w.split("/")[0] == lname)
            if lname == name:
                return lo, lo + count
            lo += count
        raise ValueError(f"no layer named {name!r}")

    def _set_trainable(self, name, on):
        self._core.set_trainable(name, on)
        if self._core.compiled():
            self._compile_core()

    @property
    def input_shape(self):
        if self._input_shape is None:
            raise AttributeError("the model has no input shape yet")
        return (None,) + tuple(self._input_shape)

    @property
    def output_shape(self):
        core = self._require_built("output_shape")
        _n, _k, _s, seq, width, _p = core.layers()[-1]
        t = core.input_shape()[0]
        return (None, t, width) if seq else (None, width)

    def _require_built(self, what):
        if self._core is None:
            raise ValueError(
                f"{what}: the model is not built yet: give input_shape= to its first layer, "
                "start it with stacklstm.Input(shape=...), or call it on data first")
        return self._core

    def count_params(self):
        return self._require_built("count_params").param_counts()[0]

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        """Prints Keras' summary table (layers, output shapes, parameter counts)."""
        _unsupported("summary", line_length=line_length, positions=positions,
                     show_trainable=show_trainable, layer_range=layer_range)
        text = self._require_built("summary").summary().rstrip("\n")
        (print_fn or print)(text)

    # ------------------------------------------------------------------ compile
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution=1,
                jit_compile="auto", auto_scale_loss=True):
        """Keras' ``compile``: optimizer (name or object), loss (name or object), metrics
        (``"mae"``, ``"mse"``, ``"rmse"``, ``"accuracy"`` and their long names).
        ``run_eagerly``, ``jit_compile`` and ``steps_per_execution`` change nothing here."""
        _unsupported("compile", loss_weights=loss_weights, weighted_metrics=weighted_metrics)
        if loss is None:
            raise ValueError("compile: give a loss (e.g. loss='mse')")
        self.optimizer = _optimizers.get(optimizer)
        self.loss = loss
        self._loss_obj = _losses.get(loss)
        self._metrics = []
        for m in metrics or []:
            if not isinstance(m, str):
                raise NotImplementedError(
                    f"metric objects are not supported ({m!r}); give metric names: "
                    f"{', '.join(_METRICS)}")
            if m not in _METRICS:
                raise NotImplementedError(
                    f"metric '{m}' is not supported; supported: {', '.join(_METRICS)}")
            self._metrics.append((m, _METRICS[m]))
        if self.built:
            self._compile_core()

    def _compile_core(self):
        if self.optimizer is None:
            return
        self._core.compile(json.dumps(self._loss_obj._to_config()),
                           json.dumps(self.optimizer._to_config()),
                           [engine for _, engine in self._metrics])
        self.optimizer._core = self._core

    @property
    def compiled(self):
        return self.optimizer is not None

    @property
    def metrics_names(self):
        return ["loss"] + [name for name, _ in self._metrics]

    def _core_for_training(self, x):
        core = self._ensure_built(x)
        if not core.compiled():
            if self.optimizer is None:
                raise RuntimeError("You must call `compile()` before using the model.")
            self._compile_core()
        return core

    # ------------------------------------------------------------------ training
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1):
        """Keras' ``fit`` on arrays; returns a ``History``. Releases the GIL while training;
        Ctrl-C stops after the current batch and raises ``KeyboardInterrupt`` with the
        weights of the last finished batch."""
        _unsupported("fit", class_weight=class_weight, sample_weight=sample_weight,
                     steps_per_epoch=steps_per_epoch, validation_steps=validation_steps)
        if validation_batch_size is not None and validation_batch_size != batch_size:
            raise NotImplementedError("fit: validation_batch_size is not supported "
                                      "(validation uses batch_size)")
        if validation_freq != 1:
            raise NotImplementedError("fit: validation_freq other than 1 is not supported")
        if shuffle not in (True, False):
            raise NotImplementedError(f"fit: shuffle={shuffle!r} is not supported")
        if x is None or y is None:
            raise NotImplementedError(
                "fit: datasets and generators are not supported; pass arrays x and y")
        batch_size = 32 if batch_size is None else int(batch_size)
        if verbose not in ("auto", 0, 1, 2):
            raise ValueError(f"fit: verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
        core = self._core_for_training(x)
        vd = None
        if validation_data is not None:
            vd = tuple(validation_data)
            if len(vd) == 3 and vd[2] is not None:
                raise NotImplementedError("fit: validation sample weights are not supported")
            if len(vd) not in (2, 3):
                raise ValueError("validation_data must be (x_val, y_val)")
            vd = (vd[0], vd[1])
        n = _shape(x)[0] if _shape(x) else 0
        n_train = n if vd is not None else n - int(math.floor(n * float(validation_split)))
        steps = max(1, math.ceil(n_train / batch_size)) if batch_size > 0 else 1
        params = {"verbose": verbose, "epochs": epochs, "steps": steps}
        python_cbs, native = [], []
        to_engine = {name: engine for name, engine in self._metrics}

        def monitor_name(m):
            if m.startswith("val_") and m[4:] in to_engine:
                return "val_" + to_engine[m[4:]]
            return to_engine.get(m, m)
        for cb in callbacks or []:
            if isinstance(cb, (_callbacks.EarlyStopping, _callbacks.ModelCheckpoint,
                               _callbacks.ReduceLROnPlateau)):
                native.append((cb, cb._native(monitor_name(cb.monitor))))
            else:
                python_cbs.append(cb)
        history = _callbacks.History()
        for cb in python_cbs + [history]:
            cb.set_model(self)
            cb.set_params(params)
        progbar = None
        if verbose != 0:
            progbar = _callbacks.ProgbarLogger()
            progbar.set_params(params)
        names = {engine: name for name, engine in self._metrics}
        hooks = _callbacks._FitHooks(self, python_cbs, history, progbar, names)
        every_batch = any(_wants_batches(cb) for cb in python_cbs)
        self.stop_training = False
        self.history = history
        history.params = params
        try:
            core.fit(x, y, epochs=int(epochs), batch_size=batch_size, shuffle=bool(shuffle),
                     seed=_utils._next_seed(), validation_split=float(validation_split),
                     validation_data=vd, initial_epoch=int(initial_epoch),
                     callbacks=[c for _, c in native], hooks=hooks, every_batch=every_batch)
        finally:
            for cb, _ in native:
                cb._after_fit()
        return history

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None,
                       return_dict=False):
        """One optimizer update on one batch; returns the batch's loss (computed before the
        update)."""
        _unsupported("train_on_batch", sample_weight=sample_weight, class_weight=class_weight)
        loss = self._core_for_training(x).train_on_batch(x, y)
        return {"loss": loss} if return_dict else loss

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False, **kwargs):
        """The loss and compiled metrics over ``x``, ``y`` (dropout off): the loss alone
        without metrics, else ``[loss, *metrics]`` (a dict with ``return_dict=True``)."""
        _unsupported("evaluate", sample_weight=sample_weight, steps=steps,
                     callbacks=callbacks or None)
        if kwargs:
            raise ValueError(f"Arguments not recognized: {kwargs}")
        batch_size = 32 if batch_size is None else int(batch_size)
        core = self._core_for_training(x)
        bar = _callbacks.Progbar(max(1, math.ceil(_shape(x)[0] / batch_size)),
                                 verbose=1 if verbose == "auto" else verbose) if verbose else None
        loss, metrics = core.evaluate(x, y, batch_size)
        metrics = dict(metrics)
        out = {"loss": loss}
        for name, engine in self._metrics:
            out[name] = metrics[engine]
        if bar is not None:
            bar.update(bar.target, list(out.items()), finalize=True)
        if return_dict:
            return out
        return loss if len(out) == 1 else list(out.values())

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """``evaluate`` on one batch."""
        return self.evaluate(x, y, batch_size=max(1, _shape(x)[0]), verbose=0,
                             sample_weight=sample_weight, return_dict=return_dict)

    # ------------------------------------------------------------------ inference
    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Outputs for ``x`` ``[batch, timesteps, features]`` as a float32 array ``[batch,
        units]`` (``[batch, timesteps, units]`` when the last layer returns sequences).
        Releases the GIL; a C-contiguous float32 ``x`` is read in place."""
        core = self._core
        if core is None:
            core = self._ensure_built(x)
        if verbose == 0 and steps is None and not callbacks:
            return core.predict(x, batch_size)
        _unsupported("predict", steps=steps, callbacks=callbacks or None)
        bar = _callbacks.Progbar(max(1, math.ceil(_shape(x)[0] / (batch_size or 32))),
                                 verbose=1 if verbose == "auto" else verbose)
        y = core.predict(x, batch_size)
        bar.update(bar.target, finalize=True)
        return y

    def predict_on_batch(self, x):
        """Outputs for one batch; a stateful model carries its state on to the next call."""
        return self._ensure_built(x).predict_on_batch(x)

    def __call__(self, x, training=False, mask=None):
        if training:
            raise NotImplementedError("calling the model with training=True is not supported")
        if mask is not None:
            raise NotImplementedError("calling the model with mask= is not supported")
        return self.predict(x, verbose=0)

    def reset_states(self):
        """Forgets the state carried by stateful layers."""
        self._require_built("reset_states").reset_states()

    # ------------------------------------------------------------------ weights and files
    def get_weights(self):
        """Every weight, in Keras' order and layout (so they move to and from Keras as
        they are), as float32 arrays."""
        return self._require_built("get_weights").get_weights()

    def set_weights(self, weights):
        """Replaces every weight (Keras' order and layout); nothing changes unless every
        shape fits."""
        self._require_built("set_weights").set_weights(list(weights))

    @property
    def weights(self):
        return self.get_weights()

    def save(self, filepath, overwrite=True, zipped=None, **kwargs):
        """Saves the model (architecture, weights and, when compiled, the optimizer state)
        as a native ``.safetensors`` file, atomically."""
        if kwargs:
            raise ValueError(f"save: arguments not recognized: {kwargs}")
        path = os.fspath(filepath)
        if not str(path).endswith(".safetensors"):
            raise ValueError(
                f"save: stacklstm saves models in its native format; give a file name ending "
                f"in .safetensors (got {str(path)!r}; writing .keras and .h5 files is not "
                "supported, reading .keras files is: stacklstm.load_model)")
        if not overwrite and os.path.exists(path):
            raise FileExistsError(f"{path} exists and overwrite=False")
        self._require_built("save").save(path)

    def save_weights(self, filepath, overwrite=True):
        """Saves the weights (with the architecture) as a native ``.safetensors`` file."""
        self.save(filepath, overwrite=overwrite)

    def load_weights(self, filepath, skip_mismatch=False):
        """Sets the weights from a native, ``.keras`` or ``.weights.h5`` file of a model
        with this architecture."""
        if skip_mismatch:
            raise NotImplementedError("load_weights: skip_mismatch is not supported")
        core = self._require_built("load_weights")
        other = _native.Core.load_with_spec(os.fspath(filepath), core.spec_json())
        core.set_weights(other.get_weights())

    def get_config(self):
        return {"name": self.name, "layers": [layer.get_config() for layer in self._layers]}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_core"] = None
        if self._core is not None:
            state["_bytes"] = bytes(self._core.to_bytes())
            state["_layers"] = None
        state["optimizer"] = self.optimizer
        return state

    def __setstate__(self, state):
        data = state.pop("_bytes", None)
        self.__dict__.update(state)
        if data is not None:
            self._core = _native.Core.from_bytes(data, "pickled model")
            self._layers = _layers_of(self, self._core)
            if self.optimizer is not None:
                self.optimizer._core = self._core

    def __repr__(self):
        return f"<Sequential name={self.name}, built={self.built}>"


Model = Sequential


def _wants_batches(cb):
    check = getattr(cb, "_wants_batches", None)
    if check is not None:
        return check()
    return hasattr(cb, "on_train_batch_end") or hasattr(cb, "on_batch_end")


class _LoadedLayer(_layers.Layer):
    """A layer of a model read from a file: its engine spec, Keras' name and class."""

    def __init__(self, class_name, name, spec):
        self._class_name = class_name
        self._spec = spec
        self._config = {k: v for k, v in spec.items() if k != "type"}
        self._input_shape = None
        self._model = None
        self._name = name


def _layers_of(model, core):
    out = []
    for name, kind, spec, *_rest in core.layers():
        layer = _LoadedLayer(kind, name, json.loads(spec))
        layer._model = model
        out.append(layer)
    return out


def _from_core(core, compile=True):
    spec = json.loads(core.spec_json())
    model = Sequential(name=spec.get("name") or "sequential")
    model._core = core
    model._seed = spec.get("seed", 0)
    t, f = core.input_shape()
    model._input_shape = (t,) if core.takes_token_ids() else (t, f)
    model._layers = _layers_of(model, core)
    compiled = core.compiled_config()
    if compiled is not None and compile:
        loss_cfg, opt_cfg, metrics = compiled
        model._loss_obj = _loss_from(json.loads(loss_cfg))
        model.loss = model._loss_obj
        model.optimizer = _optimizer_from(json.loads(opt_cfg))
        model.optimizer._core = core
        model._metrics = [(m, m) for m in metrics]
    return model


def _loss_from(cfg):
    cfg = dict(cfg)
    cls = _LOSS_TYPES[cfg.pop("type")]
    return cls(**cfg)


def _optimizer_from(cfg):
    kind = dict(cfg["kind"])
    cls = _OPTIMIZER_TYPES[kind.pop("type")]
    common = cfg.get("common", {})
    kwargs = {k: common.get(k) for k in ("clipnorm", "clipvalue", "global_clipnorm")}
    schedule = common.get("schedule", {"type": "constant"})
    lr = cfg["learning_rate"]
    if schedule.get("type") == "exponential_decay":
        lr = _optimizers.schedules.ExponentialDecay(
            lr, schedule["decay_steps"], schedule["decay_rate"], schedule["staircase"])
    opt = cls(learning_rate=lr, **kind, **kwargs)
    if schedule.get("type") not in ("constant", "exponential_decay"):
        opt._schedule_config = schedule  # another schedule of the engine, kept as it is
    return opt


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Loads a model file: stacklstm's native ``.safetensors`` (a compiled model comes back
    compiled, with its optimizer state), a Keras 3 ``.keras`` file, or a PyTorch
    ``state_dict`` in safetensors. The format is read from the content."""
    if custom_objects:
        raise NotImplementedError("load_model: custom_objects are not supported")
    core = _native.Core.load(os.fspath(filepath))
    return _from_core(core, compile=compile)
