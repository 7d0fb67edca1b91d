"""Learning-rate schedules (``stacklstm.optimizers.schedules``), evaluated at the optimizer's
update count as Keras does."""

__all__ = ["LearningRateSchedule", "ExponentialDecay"]


class LearningRateSchedule:
    """Base class of the schedules an optimizer takes as its ``learning_rate``."""

    _initial = None

    def _to_config(self):
        raise NotImplementedError


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``, the exponent floored
    with ``staircase=True``."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        self._initial = float(initial_learning_rate)
        self.initial_learning_rate = self._initial
        self.decay_steps = int(decay_steps)
        self.decay_rate = float(decay_rate)
        self.staircase = bool(staircase)
        self.name = name

    def __call__(self, step):
        p = step / self.decay_steps
        if self.staircase:
            p = float(int(p))
        return self._initial * self.decay_rate ** p

    def _to_config(self):
        return {"type": "exponential_decay", "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase}
