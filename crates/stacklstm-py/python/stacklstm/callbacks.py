"""Callbacks: Keras' ``Callback`` base class for your own, ``History``, ``EarlyStopping``,
``ModelCheckpoint``, ``ReduceLROnPlateau``, ``LambdaCallback`` and ``ProgbarLogger``.

``EarlyStopping``, ``ModelCheckpoint`` and ``ReduceLROnPlateau`` run inside the engine
(training does not come back to Python for them). A ``Callback`` subclass gets
``on_train_begin``, ``on_epoch_begin``, ``on_epoch_end(epoch, logs)``,
``on_train_batch_end(batch, logs)`` (``logs["loss"]``: the epoch's running mean) and
``on_train_end``; ``self.model`` is the model, which it may read and change at epoch
boundaries, and ``self.model.stop_training = True`` stops training.
"""

import math
import os
import sys
import time

from . import _native

__all__ = [
    "Callback", "History", "EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau",
    "LambdaCallback", "ProgbarLogger",
]


class Callback:
    """Base class of Python callbacks (Keras' hooks; every one a no-op here)."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    # Evaluation and prediction hooks exist for compatibility; fit calls the training ones.
    def on_test_begin(self, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass

    def on_predict_begin(self, logs=None):
        pass

    def on_predict_end(self, logs=None):
        pass

    def _wants_batches(self):
        """Whether this callback overrides a per-batch hook (then fit calls it every batch)."""
        cls = type(self)
        return (cls.on_train_batch_end is not Callback.on_train_batch_end
                or cls.on_batch_end is not Callback.on_batch_end)


class History(Callback):
    """What ``fit`` returns: ``history`` maps each logged quantity (``loss``, the metrics,
    ``val_loss``, ...) to its value per epoch; ``epoch`` lists the epochs run."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def __repr__(self):
        return f"<History epochs={len(self.epoch)} keys={list(self.history)}>"


class LambdaCallback(Callback):
    """A callback from functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None,
                 **kwargs):
        super().__init__()
        if kwargs:
            raise ValueError(f"Unrecognized keyword arguments passed to LambdaCallback: {kwargs}")
        if on_train_batch_begin is not None:
            raise NotImplementedError("LambdaCallback: on_train_batch_begin is not supported")
        if on_epoch_begin is not None:
            self.on_epoch_begin = on_epoch_begin
        if on_epoch_end is not None:
            self.on_epoch_end = on_epoch_end
        if on_train_begin is not None:
            self.on_train_begin = on_train_begin
        if on_train_end is not None:
            self.on_train_end = on_train_end
        self._batch_end = on_train_batch_end

    def on_train_batch_end(self, batch, logs=None):
        if self._batch_end is not None:
            self._batch_end(batch, logs)

    def _wants_batches(self):
        return self._batch_end is not None


def _check_mode(cls, mode, monitor):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{cls}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    return mode


class EarlyStopping(Callback):
    """Stops training when ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` epochs; with ``restore_best_weights`` the model gets the best epoch's
    weights back. ``stopped_epoch`` says where it stopped (0 when it did not)."""

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        if baseline is not None:
            raise NotImplementedError("EarlyStopping: baseline is not supported")
        if start_from_epoch:
            raise NotImplementedError("EarlyStopping: start_from_epoch is not supported")
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = _check_mode("EarlyStopping", mode, monitor)
        self.restore_best_weights = bool(restore_best_weights)
        self.stopped_epoch = 0
        self._core = None

    def _native(self, monitor):
        self._core = _native.EarlyStoppingCore(monitor, self.patience, self.min_delta,
                                               self.restore_best_weights, self.mode)
        return self._core

    def _after_fit(self):
        e = self._core.stopped_epoch if self._core is not None else None
        self.stopped_epoch = 0 if e is None else e
        if e is not None and self.verbose > 0:
            print(f"Epoch {e + 1}: early stopping")
            if self.restore_best_weights:
                print("Restoring model weights from the end of the best epoch.")

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_core"] = None
        return state


class ModelCheckpoint(Callback):
    """Saves the model after every epoch, or only when ``monitor`` improved
    (``save_best_only``), as a native ``.safetensors`` checkpoint with its optimizer state
    (``stacklstm.load_model`` gives it back compiled). ``filepath`` may hold ``{epoch}``
    (1-based), e.g. ``"ckpt-{epoch:02d}.safetensors"``."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        super().__init__()
        filepath = os.fspath(filepath)
        if not str(filepath).endswith(".safetensors"):
            raise ValueError(
                f"ModelCheckpoint: stacklstm writes its native format; give a filepath ending "
                f"in .safetensors (got {filepath!r}; writing .keras and .h5 files is not "
                "supported)")
        if save_freq != "epoch":
            raise NotImplementedError(
                f"ModelCheckpoint: save_freq={save_freq!r} is not supported (only 'epoch')")
        if initial_value_threshold is not None:
            raise NotImplementedError("ModelCheckpoint: initial_value_threshold is not supported")
        mode = _check_mode("ModelCheckpoint", mode, monitor)
        auto = "max" if "acc" in monitor else "min"
        if mode not in ("auto", auto):
            raise NotImplementedError(
                f"ModelCheckpoint: mode={mode!r} for monitor {monitor!r} is not supported "
                f"(the engine uses {auto!r} for it)")
        try:
            filepath.format(epoch=1)
        except (KeyError, IndexError, ValueError) as e:
            raise NotImplementedError(
                f"ModelCheckpoint: filepath {filepath!r}: only the {{epoch}} placeholder is "
                f"supported ({e!r})") from None
        self.filepath = filepath
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self._core = None

    def _native(self, monitor):
        templated = "{" in self.filepath
        path_for = (lambda epoch, f=self.filepath: f.format(epoch=epoch)) if templated else None
        self._core = _native.CheckpointCore(self.filepath, monitor, self.save_best_only,
                                            path_for)
        return self._core

    def _after_fit(self):
        pass

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_core"] = None
        return state


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by ``factor`` after ``patience`` epochs without
    improvement of ``monitor``, then waits ``cooldown`` epochs; never below ``min_lr``."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0, **kwargs):
        super().__init__()
        if kwargs:
            raise ValueError(f"Unrecognized keyword arguments passed to ReduceLROnPlateau: "
                             f"{kwargs}")
        if factor >= 1.0:
            raise ValueError("ReduceLROnPlateau does not support a factor >= 1.0.")
        mode = _check_mode("ReduceLROnPlateau", mode, monitor)
        auto = "max" if "acc" in monitor else "min"
        if mode not in ("auto", auto):
            raise NotImplementedError(
                f"ReduceLROnPlateau: mode={mode!r} for monitor {monitor!r} is not supported")
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = int(patience)
        self.verbose = verbose
        self.min_delta = float(min_delta)
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self._core = None

    def _native(self, monitor):
        self._core = _native.ReduceLrCore(monitor, self.factor, self.patience, self.min_delta,
                                          self.cooldown, self.min_lr)
        return self._core

    def _after_fit(self):
        pass

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_core"] = None
        return state


# ---------------------------------------------------------------- progress


def _dynamic_display():
    # As Keras decides it: a terminal, a notebook, or any POSIX system.
    return ((hasattr(sys.stdout, "isatty") and sys.stdout.isatty())
            or "ipykernel" in sys.modules or "posix" in sys.modules
            or "PYCHARM_HOSTED" in os.environ)


def _format_time(per_step):
    if per_step >= 1 or per_step == 0:
        return f" {per_step:.0f}s/step"
    if per_step >= 1e-3:
        return f" {per_step * 1e3:.0f}ms/step"
    return f" {per_step * 1e6:.0f}us/step"


def _format_value(v):
    return f" {v:.4f}" if abs(v) > 1e-3 else f" {v:.4e}"


class Progbar:
    """Keras' progress bar: ``3/10 ━━━━━━──────── 1s 12ms/step - loss: 0.1234``, redrawn in
    place, at most every 50 ms; ``verbose=2`` prints one line when done."""

    def __init__(self, target, verbose=1, width=20, interval=0.05):
        self.target = target
        self.verbose = verbose
        self.width = width
        self.interval = interval
        self._dynamic = _dynamic_display()
        self._start = time.time()
        self._last_update = 0.0
        self._prev_width = 0

    def update(self, current, values=(), finalize=False):
        now = time.time()
        per_step = (now - self._start) / current if current else 0.0
        if self.verbose == 1:
            if now - self._last_update < self.interval and not finalize:
                return
            message = ("\b" * self._prev_width + "\r") if self._dynamic else "\n"
            digits = int(math.log10(self.target)) + 1 if self.target else 1
            count = f"{current:{digits}d}/{self.target}"
            bar = f"\x1b[1m{count}\x1b[0m "
            special = 8
            filled = int(self.width * current / self.target) if self.target else 0
            if filled > 0:
                bar += f"\33[32m{'━' * filled}\x1b[0m"
                special += 9
            bar += f"\33[37m{'━' * (self.width - filled)}\x1b[0m"
            special += 9
            if finalize:
                info = f" \x1b[1m{now - self._start:.0f}s\x1b[0m"
            else:
                eta = per_step * (self.target - current)
                if eta > 3600:
                    eta_s = "%d:%02d:%02d" % (eta // 3600, (eta % 3600) // 60, eta % 60)
                elif eta > 60:
                    eta_s = "%d:%02d" % (eta // 60, eta % 60)
                else:
                    eta_s = "%ds" % eta
                info = f" \x1b[1m{eta_s}\x1b[0m"
            special += 8
            info += _format_time(per_step)
            for k, v in values:
                info += f" - {k}:" + _format_value(v)
            width = len(bar) + len(info) - special
            message += bar + info
            if self._prev_width > width:
                message += " " * (self._prev_width - width)
            if finalize:
                message += "\n"
            sys.stdout.write(message)
            sys.stdout.flush()
            self._prev_width = width
        elif self.verbose == 2 and finalize:
            digits = int(math.log10(self.target)) + 1 if self.target else 1
            info = f"{current:{digits}d}/{self.target} - {now - self._start:.0f}s -"
            info += _format_time(per_step)
            for k, v in values:
                # (Keras' verbose=2 line compares the value itself, not its magnitude.)
                info += f" - {k}:" + (f" {v:.4f}" if v > 1e-3 else f" {v:.4e}")
            sys.stdout.write(info + "\n")
            sys.stdout.flush()
        self._last_update = now


class ProgbarLogger(Callback):
    """Prints Keras' ``Epoch 1/10`` header and progress bar (``fit(verbose=1)``, the
    default) or one line per epoch (``verbose=2``) on stdout."""

    def __init__(self):
        super().__init__()
        self.verbose = 1
        self.epochs = 1
        self.target = None
        self.progbar = None

    def set_params(self, params):
        super().set_params(params)
        self.verbose = 1 if params.get("verbose") == "auto" else params.get("verbose", 1)
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def on_epoch_begin(self, epoch, logs=None):
        self.progbar = Progbar(self.target, verbose=self.verbose)
        if self.verbose and self.epochs > 1:
            print(f"Epoch {epoch + 1}/{self.epochs}", flush=True)

    def on_train_batch_end(self, batch, logs=None):
        if self.progbar is not None and self.verbose == 1:
            self.progbar.update(batch + 1, list((logs or {}).items()))

    def on_epoch_end(self, epoch, logs=None):
        if self.progbar is not None:
            self.progbar.update(self.target, list((logs or {}).items()), finalize=True)


class _FitHooks:
    """What the engine calls during ``fit`` (see the extension's ``hooks``): the progress
    bar, the user's Python callbacks and the History, with Keras' logs."""

    def __init__(self, model, callbacks, history, progbar, names):
        self.model = model
        self.callbacks = callbacks
        self.history = history
        self.progbar = progbar
        self.names = names  # engine metric name -> the name the user compiled with

    def _logs(self, logs):
        out = {}
        for k, v in logs.items():
            if k.startswith("val_") and k[4:] in self.names:
                out["val_" + self.names[k[4:]]] = v
            else:
                out[self.names.get(k, k)] = v
        return out

    def train_begin(self, epochs, initial_epoch, batches, samples):
        for cb in self.callbacks:
            cb.on_train_begin(logs={})

    # Keras' order: the user's callbacks, then the History, then the progress bar.
    def epoch_begin(self, epoch):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs={})
        if self.progbar is not None:
            self.progbar.on_epoch_begin(epoch)

    def batch_end(self, epoch, batch, loss):
        logs = {"loss": loss}
        for cb in self.callbacks:
            if cb._wants_batches():
                cb.on_train_batch_end(batch, dict(logs))
        if self.progbar is not None:
            self.progbar.on_train_batch_end(batch, logs)
        return bool(getattr(self.model, "stop_training", False))

    def epoch_end(self, epoch, logs):
        logs = self._logs(logs)
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, dict(logs))
        self.history.on_epoch_end(epoch, dict(logs))
        if self.progbar is not None:
            self.progbar.on_epoch_end(epoch, logs)
        return bool(getattr(self.model, "stop_training", False))

    def train_end(self):
        for cb in self.callbacks:
            cb.on_train_end(logs={})
