"""stacklstm: Keras' API for stacked recurrent networks, on a native engine.

Replace ``keras`` with ``stacklstm`` in the imports of a Keras script::

    from stacklstm.models import Sequential
    from stacklstm.layers import LSTM, Dense

Layers (``LSTM``, ``GRU``, ``Dense``, ``Dropout``, ``Embedding``, ``Masking``), optimizers,
losses and callbacks take Keras' arguments; weights use Keras' layout, so ``get_weights`` /
``set_weights`` move them between Keras and stacklstm as they are. No TensorFlow, JAX or
PyTorch is needed.
"""

from . import _native
from . import callbacks, layers, losses, models, optimizers, saving, utils
from .layers import Input, InputLayer
from .models import Model, Sequential, load_model

__version__ = _native.__version__

__all__ = [
    "Input", "InputLayer", "Model", "Sequential", "load_model", "callbacks", "layers",
    "losses", "models", "optimizers", "saving", "utils", "set_threads", "threads",
]


def set_threads(n):
    """Runs the engine on ``n`` threads (1 or 2: a large enough batch is split in two)."""
    _native.set_threads(n)


def threads():
    """The number of threads the engine uses."""
    return _native.threads()
