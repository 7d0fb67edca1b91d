"""Losses with Keras' names, arguments and default reduction (the mean over the batch).

By name (``"mse"``, ``"mean_squared_error"``, ``"mae"``, ``"huber"``,
``"binary_crossentropy"``, ``"categorical_crossentropy"``,
``"sparse_categorical_crossentropy"``) or as objects (``MeanSquaredError()``,
``Huber(delta=...)``, ``SparseCategoricalCrossentropy(from_logits=True)``, ...).
"""

__all__ = [
    "Loss", "MeanSquaredError", "MeanAbsoluteError", "Huber", "BinaryCrossentropy",
    "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "get",
]


class Loss:
    """Base class: a loss of the engine."""

    _type = None
    _default_name = None

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None):
        if reduction not in ("sum_over_batch_size", "auto", None):
            raise NotImplementedError(
                f"{type(self).__name__}: reduction={reduction!r} is not supported (only "
                "'sum_over_batch_size', Keras' default)")
        if dtype not in (None, "float32"):
            raise NotImplementedError(f"{type(self).__name__}: dtype={dtype!r} is not supported")
        self.name = name or self._default_name
        self.reduction = "sum_over_batch_size"

    def _options(self):
        return {}

    def _to_config(self):
        return dict(type=self._type, **self._options())

    def get_config(self):
        cfg = {"name": self.name, "reduction": self.reduction}
        cfg.update(self._options())
        return cfg

    def __repr__(self):
        return f"<{type(self).__name__} {self._options()}>"


class MeanSquaredError(Loss):
    """``mean((y_pred - y_true) ** 2)`` over all elements."""

    _type = "mse"
    _default_name = "mean_squared_error"


class MeanAbsoluteError(Loss):
    """``mean(abs(y_pred - y_true))`` over all elements."""

    _type = "mae"
    _default_name = "mean_absolute_error"


class Huber(Loss):
    """Quadratic within ``delta``, linear outside."""

    _type = "huber"
    _default_name = "huber_loss"

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss",
                 dtype=None):
        super().__init__(reduction, name, dtype)
        self.delta = float(delta)

    def _options(self):
        return {"delta": self.delta}


class _CrossEntropy(Loss):
    def __init__(self, from_logits=False, axis=-1, reduction="sum_over_batch_size", name=None,
                 dtype=None):
        super().__init__(reduction, name, dtype)
        if axis != -1:
            raise NotImplementedError(f"{type(self).__name__}: axis={axis!r} is not supported "
                                      "(only the last axis)")
        self.from_logits = bool(from_logits)

    def _options(self):
        return {"from_logits": self.from_logits}


class BinaryCrossentropy(_CrossEntropy):
    """Binary cross-entropy over all elements (targets in [0, 1])."""

    _type = "binary_crossentropy"
    _default_name = "binary_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="binary_crossentropy", dtype=None):
        if label_smoothing:
            raise NotImplementedError(
                "BinaryCrossentropy: label_smoothing is not supported")
        super().__init__(from_logits, axis, reduction, name, dtype)


class CategoricalCrossentropy(_CrossEntropy):
    """Cross-entropy against one-hot targets of the output's shape."""

    _type = "categorical_crossentropy"
    _default_name = "categorical_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy", dtype=None):
        if label_smoothing:
            raise NotImplementedError(
                "CategoricalCrossentropy: label_smoothing is not supported")
        super().__init__(from_logits, axis, reduction, name, dtype)


class SparseCategoricalCrossentropy(_CrossEntropy):
    """Cross-entropy against integer class ids (the output's shape without its last axis)."""

    _type = "sparse_categorical_crossentropy"
    _default_name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 axis=-1, name="sparse_categorical_crossentropy", dtype=None):
        if ignore_class is not None:
            raise NotImplementedError(
                "SparseCategoricalCrossentropy: ignore_class is not supported")
        super().__init__(from_logits, axis, reduction, name, dtype)


_BY_NAME = {
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "huber": Huber, "huber_loss": Huber,
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}
_KERAS_ONLY = (
    "mape", "mean_absolute_percentage_error", "msle", "mean_squared_logarithmic_error",
    "hinge", "squared_hinge", "categorical_hinge", "log_cosh", "logcosh", "kld",
    "kl_divergence", "poisson", "cosine_similarity", "ctc", "dice", "tversky",
    "binary_focal_crossentropy", "categorical_focal_crossentropy",
)


def get(identifier):
    """A loss from a name or a loss object, as ``compile`` takes it."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        if identifier in _BY_NAME:
            return _BY_NAME[identifier]()
        if identifier in _KERAS_ONLY:
            raise NotImplementedError(
                f"loss '{identifier}' is not supported; supported: {', '.join(_BY_NAME)}")
        raise ValueError(f"Could not interpret loss identifier: {identifier!r}")
    if callable(identifier):
        raise NotImplementedError(
            f"custom loss functions are not supported ({identifier!r}); use one of "
            f"{', '.join(_BY_NAME)}")
    raise ValueError(f"Could not interpret loss identifier: {identifier!r}")
