"""Layers with Keras' names, arguments and defaults.

A layer's options are checked when it is made, by the same code of the engine that reads
Keras `.keras` files: an option Keras has and stacklstm does not (``go_backwards=True``, a
regularizer, an initializer other than Keras' default, ...) raises ``NotImplementedError``
naming it; a malformed value raises ``ValueError``.

Inputs are ``[batch, timesteps, features]`` (``[batch, timesteps]`` token ids for an
``Embedding``).
"""

import json

from . import _native

__all__ = [
    "Layer", "Input", "InputLayer", "LSTM", "GRU", "Bidirectional", "Dense", "Dropout",
    "Embedding", "Masking",
]

# Options every Keras layer takes (Keras 3's `Layer.__init__`), beyond a layer's own.
_BASE_KWARGS = {
    "name", "trainable", "dtype", "input_shape", "batch_input_shape", "batch_size",
    "input_dim", "input_length", "autocast", "activity_regularizer",
}


def _describe(v):
    """A JSON-able stand-in for a Keras option value (objects by their repr)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_describe(x) for x in v]
    return repr(v)


def _activation_name(v):
    if v is None or isinstance(v, str):
        return v
    name = getattr(v, "__name__", None)
    if isinstance(name, str):
        return name
    return _describe(v)


def _check_initializers(cls, given, defaults):
    for key, default in defaults.items():
        v = given.get(key, default)
        if v is None or v == default:
            continue
        shown = v if isinstance(v, str) else repr(v)
        raise NotImplementedError(
            f"{cls}: {key}={shown!r} is not supported: stacklstm initialises with Keras' "
            f"default ({default}); set other weights with set_weights()")


class Layer:
    """A layer spec: Keras class name plus its Keras config.

    After the model holding it is built, ``get_weights``/``set_weights`` read and write the
    layer's weights in the Keras layout.
    """

    _class_name = None

    def __init__(self, config, kwargs):
        unknown = set(kwargs) - _BASE_KWARGS
        if unknown:
            raise ValueError(
                f"Unrecognized keyword arguments passed to {self._class_name}: "
                f"{ {k: kwargs[k] for k in sorted(unknown)} }")
        if kwargs.get("activity_regularizer") is not None:
            config["activity_regularizer"] = _describe(kwargs["activity_regularizer"])
        if kwargs.get("name") is not None:
            config["name"] = str(kwargs["name"])
        if "trainable" in kwargs:
            config["trainable"] = bool(kwargs["trainable"])
        if kwargs.get("dtype") is not None:
            dt = kwargs["dtype"]
            config["dtype"] = dt if isinstance(dt, str) else getattr(dt, "name", repr(dt))
        self._config = config
        self._input_shape = _input_shape_from(kwargs)
        self._spec = json.loads(_native.layer_spec(self._class_name, json.dumps(config)))
        self._model = None
        self._name = config.get("name")

    # -- identity
    @property
    def name(self):
        """The layer's name (Keras' default names are given when the model is built)."""
        return self._name

    def get_config(self):
        """The layer's Keras config (the options it was made with)."""
        cfg = dict(self._config)
        if self._name is not None:
            cfg["name"] = self._name
        return cfg

    def __getattr__(self, key):
        # Keras exposes a layer's options as attributes (`layer.units`, ...).
        cfg = self.__dict__.get("_config")
        if cfg is not None and key in cfg:
            return cfg[key]
        spec = self.__dict__.get("_spec")
        if spec is not None and key in spec:
            return spec[key]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {key!r}")

    def __repr__(self):
        return f"<{self._class_name} name={self._name}>"

    # -- weights (through the model)
    def _bound(self):
        if self._model is None or not self._model.built:
            raise ValueError(
                f"layer {self._name or self._class_name} has no weights yet: add it to a "
                "model and build the model (give an input shape, or call it on data)")
        return self._model

    @property
    def built(self):
        return self._model is not None and self._model.built

    @property
    def weights(self):
        return self.get_weights()

    def get_weights(self):
        """This layer's weights (Keras order and layout), as float32 arrays."""
        model = self._bound()
        lo, hi = model._layer_weight_range(self._name)
        return model.get_weights()[lo:hi]

    def set_weights(self, weights):
        """Replaces this layer's weights (Keras order and layout)."""
        model = self._bound()
        lo, hi = model._layer_weight_range(self._name)
        all_w = model.get_weights()
        weights = list(weights)
        if len(weights) != hi - lo:
            raise ValueError(
                f"layer {self._name} has {hi - lo} weight tensors, got {len(weights)}")
        all_w[lo:hi] = weights
        model.set_weights(all_w)

    def count_params(self):
        model = self._bound()
        lo, hi = model._layer_weight_range(self._name)
        return sum(int(w.size) for w in model.get_weights()[lo:hi])

    @property
    def trainable(self):
        return bool(self._config.get("trainable", True))

    @trainable.setter
    def trainable(self, on):
        self._config["trainable"] = bool(on)
        self._spec["trainable"] = bool(on)
        if self.built:
            self._model._set_trainable(self._name, bool(on))


def _input_shape_from(kwargs):
    """`(timesteps, features)` or `(timesteps,)` from Keras 2 style input options."""
    if kwargs.get("batch_input_shape") is not None:
        return tuple(kwargs["batch_input_shape"])[1:]
    if kwargs.get("input_shape") is not None:
        return tuple(kwargs["input_shape"])
    return None


class InputLayer:
    """Declares the model's input shape: ``InputLayer(shape=(timesteps, features))``, or
    ``(timesteps,)`` for token ids. The batch size is not part of it."""

    def __init__(self, shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None,
                 input_tensor=None, optional=False, name=None, ragged=None, **kwargs):
        if kwargs:
            raise ValueError(f"Unrecognized keyword arguments passed to InputLayer: {kwargs}")
        for key, v in (("sparse", sparse), ("ragged", ragged), ("input_tensor", input_tensor)):
            if v:
                raise NotImplementedError(f"Input: {key}={v!r} is not supported")
        if optional:
            raise NotImplementedError("Input: optional=True is not supported")
        if batch_shape is not None:
            shape = tuple(batch_shape)[1:]
        if shape is None:
            raise ValueError("Input: give shape=(timesteps, features)")
        self.shape = (None,) + tuple(shape)
        self._input_shape = tuple(shape)
        self.name = name
        self.dtype = dtype

    def __repr__(self):
        return f"<InputLayer shape={self.shape}>"


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, name=None,
          tensor=None, optional=False):
    """Keras' ``Input``: the input shape of a ``Sequential``, as its first element."""
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse,
                      batch_shape=batch_shape, name=name, input_tensor=tensor,
                      optional=optional)


def _recurrent_config(cls, units, activation, recurrent_activation, use_bias, dropout,
                      recurrent_dropout, return_sequences, return_state, go_backwards,
                      stateful, regularizers, seed, use_cudnn, initializers, extra):
    _check_initializers(cls, initializers, {
        "kernel_initializer": "glorot_uniform",
        "recurrent_initializer": "orthogonal",
        "bias_initializer": "zeros",
    })
    if seed is not None:
        raise NotImplementedError(
            f"{cls}: seed={seed!r} is not supported: dropout masks come from the model's "
            "seed (stacklstm.utils.set_random_seed)")
    if use_cudnn is True:
        raise NotImplementedError(f"{cls}: use_cudnn=True is not supported (no cuDNN)")
    config = {
        "units": units,
        "activation": _activation_name(activation),
        "recurrent_activation": _activation_name(recurrent_activation),
        "use_bias": use_bias,
        "dropout": dropout,
        "recurrent_dropout": recurrent_dropout,
        "return_sequences": return_sequences,
        "return_state": return_state,
        "go_backwards": go_backwards,
        "stateful": stateful,
    }
    config.update({k: _describe(v) for k, v in regularizers.items() if v is not None})
    config.update(extra)
    return config


class LSTM(Layer):
    """Keras' ``LSTM``: weights ``kernel [D, 4H]``, ``recurrent_kernel [H, 4H]``, ``bias
    [4H]``, gate order i, f, c, o. Output ``[batch, units]``, or ``[batch, timesteps,
    units]`` with ``return_sequences=True``. ``unroll`` changes nothing here (no graph)."""

    _class_name = "LSTM"

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
                 dropout=0.0, recurrent_dropout=0.0, seed=None, return_sequences=False,
                 return_state=False, go_backwards=False, stateful=False, unroll=False,
                 use_cudnn="auto", **kwargs):
        config = _recurrent_config(
            "LSTM", units, activation, recurrent_activation, use_bias, dropout,
            recurrent_dropout, return_sequences, return_state, go_backwards, stateful,
            {"kernel_regularizer": kernel_regularizer,
             "recurrent_regularizer": recurrent_regularizer,
             "bias_regularizer": bias_regularizer, "kernel_constraint": kernel_constraint,
             "recurrent_constraint": recurrent_constraint, "bias_constraint": bias_constraint},
            seed, use_cudnn,
            {"kernel_initializer": kernel_initializer,
             "recurrent_initializer": recurrent_initializer,
             "bias_initializer": bias_initializer},
            {"unit_forget_bias": unit_forget_bias})
        if activity_regularizer is not None:
            kwargs["activity_regularizer"] = activity_regularizer
        super().__init__(config, kwargs)


class GRU(Layer):
    """Keras' ``GRU`` (both ``reset_after`` modes): weights ``kernel [D, 3H]``,
    ``recurrent_kernel [H, 3H]``, ``bias [3H]`` (``[2, 3H]`` with ``reset_after``), gate
    order z, r, h."""

    _class_name = "GRU"

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, unroll=False, reset_after=True,
                 use_cudnn="auto", **kwargs):
        config = _recurrent_config(
            "GRU", units, activation, recurrent_activation, use_bias, dropout,
            recurrent_dropout, return_sequences, return_state, go_backwards, stateful,
            {"kernel_regularizer": kernel_regularizer,
             "recurrent_regularizer": recurrent_regularizer,
             "bias_regularizer": bias_regularizer, "kernel_constraint": kernel_constraint,
             "recurrent_constraint": recurrent_constraint, "bias_constraint": bias_constraint},
            seed, use_cudnn,
            {"kernel_initializer": kernel_initializer,
             "recurrent_initializer": recurrent_initializer,
             "bias_initializer": bias_initializer},
            {"reset_after": reset_after})
        if activity_regularizer is not None:
            kwargs["activity_regularizer"] = activity_regularizer
        super().__init__(config, kwargs)


class Dense(Layer):
    """Keras' ``Dense`` on the last axis: weights ``kernel [in, units]``, ``bias [units]``.
    After a layer returning sequences it applies to every timestep."""

    _class_name = "Dense"

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, lora_rank=None, lora_alpha=None,
                 quantization_config=None, **kwargs):
        _check_initializers("Dense", {"kernel_initializer": kernel_initializer,
                                      "bias_initializer": bias_initializer},
                            {"kernel_initializer": "glorot_uniform",
                             "bias_initializer": "zeros"})
        config = {"units": units, "activation": _activation_name(activation),
                  "use_bias": use_bias}
        for k, v in (("kernel_regularizer", kernel_regularizer),
                     ("bias_regularizer", bias_regularizer),
                     ("kernel_constraint", kernel_constraint),
                     ("bias_constraint", bias_constraint), ("lora_rank", lora_rank),
                     ("quantization_config", quantization_config)):
            if v is not None:
                config[k] = _describe(v)
        if lora_alpha is not None:
            raise NotImplementedError("Dense: lora_alpha is not supported")
        if activity_regularizer is not None:
            kwargs["activity_regularizer"] = activity_regularizer
        super().__init__(config, kwargs)


class Dropout(Layer):
    """Keras' ``Dropout``: during training, zeroes a fraction ``rate`` of its inputs and
    scales the rest by ``1 / (1 - rate)``; the identity at inference."""

    _class_name = "Dropout"

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        if seed is not None:
            raise NotImplementedError(
                f"Dropout: seed={seed!r} is not supported: dropout masks come from the "
                "model's seed (stacklstm.utils.set_random_seed)")
        config = {"rate": rate}
        if noise_shape is not None:
            config["noise_shape"] = _describe(noise_shape)
        super().__init__(config, kwargs)


class Embedding(Layer):
    """Keras' ``Embedding`` (first layer only): token ids ``[batch, timesteps]`` to vectors;
    weight ``embeddings [input_dim, output_dim]``. ``mask_zero=True`` masks id 0."""

    _class_name = "Embedding"

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 embeddings_regularizer=None, embeddings_constraint=None, mask_zero=False,
                 weights=None, lora_rank=None, lora_alpha=None, quantization_config=None,
                 **kwargs):
        _check_initializers("Embedding", {"embeddings_initializer": embeddings_initializer},
                            {"embeddings_initializer": "uniform"})
        for k, v in (("weights", weights), ("lora_alpha", lora_alpha),
                     ("quantization_config", quantization_config)):
            if v is not None:
                raise NotImplementedError(f"Embedding: {k} is not supported")
        config = {"input_dim": input_dim, "output_dim": output_dim, "mask_zero": mask_zero}
        for k, v in (("embeddings_regularizer", embeddings_regularizer),
                     ("embeddings_constraint", embeddings_constraint), ("lora_rank", lora_rank)):
            if v is not None:
                config[k] = _describe(v)
        input_length = kwargs.pop("input_length", None)
        if input_length is not None and "input_shape" not in kwargs:
            kwargs["input_shape"] = (input_length,)
        super().__init__(config, kwargs)


class Masking(Layer):
    """Keras' ``Masking`` (first layer only): timesteps whose features all equal
    ``mask_value`` are skipped by the recurrent layers above (and by the loss when the
    output keeps the time axis)."""

    _class_name = "Masking"

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__({"mask_value": mask_value}, kwargs)


class Bidirectional(Layer):
    """Keras' ``Bidirectional`` around an ``LSTM`` or ``GRU``: a forward copy and a backward
    copy (reading the sequence in reverse) whose outputs are merged (``merge_mode``
    ``"concat"``, ``"sum"``, ``"mul"`` or ``"ave"``). Weights: the forward layer's, then the
    backward layer's, each in its own Keras layout."""

    _class_name = "Bidirectional"

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None,
                 **kwargs):
        if not isinstance(layer, (LSTM, GRU)):
            raise NotImplementedError(
                f"Bidirectional: wrapping {type(layer).__name__} is not supported (only LSTM "
                "and GRU)")
        if weights is not None:
            raise NotImplementedError("Bidirectional: weights is not supported (use "
                                      "set_weights once the model is built)")
        config = {"layer": {"class_name": layer._class_name, "config": dict(layer._config)},
                  "merge_mode": merge_mode}
        if backward_layer is not None:
            if not isinstance(backward_layer, (LSTM, GRU)):
                raise NotImplementedError(
                    f"Bidirectional: a backward {type(backward_layer).__name__} is not "
                    "supported (only LSTM and GRU)")
            config["backward_layer"] = {"class_name": backward_layer._class_name,
                                        "config": dict(backward_layer._config)}
        if "input_shape" not in kwargs and "batch_input_shape" not in kwargs \
                and layer._input_shape is not None:
            kwargs["input_shape"] = layer._input_shape
        super().__init__(config, kwargs)
        self.layer = layer
        self.backward_layer = backward_layer
