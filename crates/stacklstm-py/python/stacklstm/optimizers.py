"""Optimizers with Keras' names, arguments, defaults and exact update equations.

``SGD``, ``Adam``, ``AdamW``, ``RMSprop`` and ``Adagrad``, with ``clipnorm``, ``clipvalue``
and ``global_clipnorm``, and ``schedules.ExponentialDecay`` as a learning rate. An option
Keras has and stacklstm does not (``amsgrad=True``, ``use_ema=True``, weight decay outside
``AdamW``, ...) raises ``NotImplementedError`` naming it.
"""

from . import schedules

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "get", "schedules"]

_UNSUPPORTED_DEFAULTS = {
    "use_ema": False,
    "ema_momentum": 0.99,
    "ema_overwrite_frequency": None,
    "loss_scale_factor": None,
    "gradient_accumulation_steps": None,
}


class Optimizer:
    """Base class: the learning rate, clipping and the algorithm's own hyperparameters.

    Once a model is compiled with it, ``learning_rate`` reads and sets the rate the model
    trains with, and ``iterations`` counts the updates applied.
    """

    _type = None

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        if kwargs:
            raise ValueError(
                f"Unrecognized keyword arguments passed to {type(self).__name__}: {kwargs}")
        given = {"use_ema": use_ema, "ema_momentum": ema_momentum,
                 "ema_overwrite_frequency": ema_overwrite_frequency,
                 "loss_scale_factor": loss_scale_factor,
                 "gradient_accumulation_steps": gradient_accumulation_steps}
        for k, default in _UNSUPPORTED_DEFAULTS.items():
            if given[k] != default:
                raise NotImplementedError(
                    f"{type(self).__name__}: {k}={given[k]!r} is not supported")
        if weight_decay is not None and self._type != "adam_w":
            raise NotImplementedError(
                f"{type(self).__name__}: weight_decay is not supported (use AdamW)")
        if sum(v is not None for v in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can "
                             "be set.")
        self.name = name or type(self).__name__.lower()
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        if isinstance(learning_rate, schedules.LearningRateSchedule):
            self._schedule = learning_rate
            self._learning_rate = float(learning_rate._initial)
        elif callable(learning_rate):
            raise NotImplementedError(
                f"{type(self).__name__}: a learning rate given as a function is not "
                "supported; use a float or stacklstm.optimizers.schedules.ExponentialDecay")
        else:
            self._schedule = None
            self._learning_rate = float(learning_rate)
        self._core = None  # the compiled model's core, once compiled

    # -- the values the model trains with
    @property
    def learning_rate(self):
        if self._core is not None:
            return self._core.learning_rate()
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        value = float(value)
        if self._core is not None:
            self._core.set_learning_rate(value)
        self._learning_rate = value

    lr = learning_rate

    @property
    def iterations(self):
        return self._core.iterations() if self._core is not None else 0

    def _kind(self):
        raise NotImplementedError

    def _to_config(self):
        """The library's optimizer config (what compile sends to the engine)."""
        return {
            "kind": dict(type=self._type, **self._kind()),
            "learning_rate": self._learning_rate,
            "common": {
                "clipnorm": self.clipnorm,
                "clipvalue": self.clipvalue,
                "global_clipnorm": self.global_clipnorm,
                "schedule": self._schedule._to_config() if self._schedule else
                getattr(self, "_schedule_config", {"type": "constant"}),
            },
        }

    def get_config(self):
        cfg = {"name": self.name, "learning_rate": self._learning_rate,
               "clipnorm": self.clipnorm, "clipvalue": self.clipvalue,
               "global_clipnorm": self.global_clipnorm}
        cfg.update(self._kind())
        return cfg

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_core"] = None
        return state

    def __repr__(self):
        return f"<{type(self).__name__} learning_rate={self.learning_rate}>"


class SGD(Optimizer):
    """``w -= lr * g``; with momentum ``m = momentum * m - lr * g; w += m`` (Nesterov:
    ``w += momentum * m - lr * g``)."""

    _type = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        super().__init__(learning_rate, **kwargs)

    def _kind(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Keras' Adam (epsilon added to the square root of the uncorrected second moment)."""

    _type = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-07,
                 amsgrad=False, **kwargs):
        if amsgrad:
            raise NotImplementedError(f"{type(self).__name__}: amsgrad=True is not supported")
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        super().__init__(learning_rate, **kwargs)

    def _kind(self):
        return {"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class AdamW(Adam):
    """Adam with decoupled weight decay (``w -= w * weight_decay * lr`` first)."""

    _type = "adam_w"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-07, amsgrad=False, **kwargs):
        self.weight_decay = float(weight_decay)
        super().__init__(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         amsgrad=amsgrad, weight_decay=weight_decay, **kwargs)

    def _kind(self):
        k = super()._kind()
        k["weight_decay"] = self.weight_decay
        return k


class RMSprop(Optimizer):
    """Keras' RMSprop, optionally centred and with momentum."""

    _type = "rms_prop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-07,
                 centered=False, **kwargs):
        self.rho = float(rho)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.centered = bool(centered)
        super().__init__(learning_rate, **kwargs)

    def _kind(self):
        return {"rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}


class Adagrad(Optimizer):
    """Keras' Adagrad."""

    _type = "adagrad"

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-07,
                 **kwargs):
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.epsilon = float(epsilon)
        super().__init__(learning_rate, **kwargs)

    def _kind(self):
        return {"initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad}
_KERAS_ONLY = ("adadelta", "adafactor", "adamax", "ftrl", "lion", "lamb", "loss_scale_optimizer",
               "nadam", "muon")


def get(identifier):
    """An optimizer from a name (``"adam"``) or an optimizer object, as ``compile`` takes it."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in _BY_NAME:
            return _BY_NAME[key]()
        if key in _KERAS_ONLY:
            raise NotImplementedError(
                f"optimizer '{identifier}' is not supported; supported: "
                f"{', '.join(_BY_NAME)}")
        raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}")
    if isinstance(identifier, dict) and "class_name" in identifier:
        cls = _BY_NAME.get(str(identifier["class_name"]).lower())
        if cls is None:
            raise NotImplementedError(f"optimizer {identifier['class_name']} is not supported")
        cfg = dict(identifier.get("config", {}))
        return cls(**cfg)
    raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}")
