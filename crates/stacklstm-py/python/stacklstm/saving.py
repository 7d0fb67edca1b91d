"""``stacklstm.saving.load_model``, as ``keras.saving.load_model``."""

from .models import load_model

__all__ = ["load_model"]
