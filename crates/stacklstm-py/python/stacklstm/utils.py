"""Seeds. All randomness (initial weights, shuffles, dropout masks) comes from seeds drawn
from one generator: the same script gives the same results run after run, and
``set_random_seed`` chooses another sequence, as Keras' does."""

import random

__all__ = ["set_random_seed"]

_state = {"seed": 0, "drawn": 0}


def set_random_seed(seed):
    """Restarts the sequence of seeds models and ``fit`` calls draw from."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"set_random_seed: expected a non-negative int, got {seed!r}")
    _state["seed"] = seed
    _state["drawn"] = 0


def _next_seed():
    """The next seed of the sequence (a pure function of the seed and the count)."""
    _state["drawn"] += 1
    return random.Random(f"{_state['seed']}:{_state['drawn']}").getrandbits(63)
