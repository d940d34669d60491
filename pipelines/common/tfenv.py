"""Import TensorFlow (and tensorflow-io) without the start-up noise a user cannot act on.

TensorFlow's C++ runtime prints CUDA probing lines on machines without a GPU, and
tensorflow-io 0.37 prints 'undefined symbol' warnings on TF >= 2.18 because its native plugins
(decoders, resampling, file systems) do not load there; only its pure-TF audio ops (time_mask,
freq_mask, ...) are used here, and those work. Set SER_VERBOSE_TF=1 to see everything.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import warnings


@contextlib.contextmanager
def _quiet_stderr():
    """Silence fd 2 (C++ logging) for the block; Python exceptions still propagate."""
    if os.environ.get("SER_VERBOSE_TF"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_tensorflow():
    """Import TensorFlow with its start-up logging silenced; returns the module."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with _quiet_stderr():
        tf = importlib.import_module("tensorflow")
        tf.config.list_physical_devices()  # the CUDA probe happens here, once
    return tf


def tfio_audio():
    """tensorflow_io.audio, imported lazily and quietly (only its pure-TF ops are used)."""
    quiet_tensorflow()
    with _quiet_stderr():
        tfio = importlib.import_module("tensorflow_io")
    return tfio.audio
