"""Run a LiteRT (TFLite) model written by `python -m zoo.lite` on waveforms, one clip at a time.

Needs only numpy and ai-edge-litert (`pip install -e '.[lite]'`), not TensorFlow: what a device
does. The model's `serving_default` takes `waveform` float32 [1, samples] at 16 kHz, any number
of samples: the input is declared [1, -1] and resized to each clip before it runs
(`SignatureRunner` resizes it and re-allocates the tensors on every call; with the plain
interpreter API, `interpreter.resize_tensor_input(index, [1, len(clip)])` then
`interpreter.allocate_tensors()`). It returns `probabilities` float32 [1, classes] and `label`
(bytes) [1]. `lite.json` beside the .tflite holds the labels, the FeatureSpec the graph computes,
the source export and the quantisation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MODEL_FILE = "model.tflite"
INFO_FILE = "lite.json"
SIGNATURE = "serving_default"


class LiteError(RuntimeError):
    """A one-line reason why a LiteRT model cannot be made, read or run."""


def is_tflite(path) -> bool:
    """Whether `path` names a LiteRT model (a .tflite file, or a folder holding model.tflite)."""
    path = Path(path)
    return path.suffix == ".tflite" or (path.is_dir() and (path / MODEL_FILE).is_file()
                                        and not (path / "saved_model.pb").is_file())


def read_info(path) -> tuple[Path, dict]:
    """(the .tflite file, its lite.json) for a .tflite file or the folder holding it."""
    path = Path(path)
    model = path / MODEL_FILE if path.is_dir() else path
    if not model.is_file():
        raise LiteError(f"{model}: no such file")
    info_path = model.parent / INFO_FILE
    if not info_path.is_file():
        raise LiteError(f"{model}: no {INFO_FILE} beside it (labels and FeatureSpec; write "
                        "the model with python -m zoo.lite)")
    try:
        info = json.loads(info_path.read_text())
        info["labels"], info["feature_spec"]  # noqa: B018 - both must be there
    except (ValueError, KeyError, TypeError) as err:
        raise LiteError(f"{info_path}: unreadable ({type(err).__name__}: {err})") from None
    return model, info


def interpreter(content: bytes | None = None, path=None, threads: int | None = None):
    """A LiteRT Interpreter for a model file or bytes; LiteError (one line) if it is not one."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise LiteError("ai-edge-litert is not installed (pip install -e '.[lite]')") from None
    from pipelines.common.tfenv import _quiet_stderr

    where = path if path is not None else "model"
    try:
        with _quiet_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            found = Interpreter(model_path=None if path is None else str(path),
                                model_content=content, num_threads=threads)
    except (ValueError, RuntimeError) as err:
        reason = " ".join(str(err).split())[:200]
        raise LiteError(f"{where}: not a readable TFLite model ({reason})") from None
    if SIGNATURE not in found.get_signature_list():
        raise LiteError(f"{where}: no {SIGNATURE} signature (not written by zoo.lite)")
    return found


def check_clip(wave) -> np.ndarray:
    """A clip as float32 [1, samples], or ValueError for what the SavedModel's checks refuse
    (LiteRT drops the graph's assertions)."""
    wave = np.asarray(wave, np.float32)
    if wave.ndim != 1:
        raise ValueError(f"waveform: wrong rank {wave.ndim}, [samples] needed")
    if not wave.size:
        raise ValueError("waveform: no samples")
    if not np.isfinite(wave).all():
        raise ValueError("waveform: NaN or Inf samples")
    return wave[None, :]


class LiteRunner:
    """Loads DIR/model.tflite (or a .tflite path) and predicts on lists of 1-D waveforms.

    Same interface as zoo.inference.savedmodel.SavedModelRunner for plain predictions (labels, spec, info,
    path, predict); there is no per-speaker signature on the device side."""

    by_speaker = False
    two_step = False
    min_clips_per_speaker = 0

    def __init__(self, path, threads: int | None = None, progress: bool = False):
        self.path, self.info = read_info(path)
        self.progress = progress
        self.labels: list[str] = list(self.info["labels"])
        self.interpreter = interpreter(path=self.path, threads=threads)
        self.runner = self.interpreter.get_signature_runner(SIGNATURE)
        from pipelines.common.tfenv import _quiet_stderr

        with _quiet_stderr():  # the first run creates the XNNPACK delegate, which says so
            self.predict_one(np.zeros(1600, np.float32))

    @property
    def spec(self):
        from pipelines.features.spec import FeatureSpec

        return FeatureSpec.from_dict(self.info["feature_spec"])

    def predict_one(self, wave) -> np.ndarray:
        """Probabilities [classes] of one clip."""
        return self.runner(waveform=check_clip(wave))["probabilities"][0]

    def predict_with_speech(self, waves, batch_size: int = 1, stats=None, **_):
        """(predict(), None): a .tflite returns probabilities only; callers compute the speech
        ratio beside it (zoo.export.reliability.host_speech_ratios)."""
        return self.predict(waves, batch_size, stats), None

    def predict(self, waves, batch_size: int = 1, stats=None, **_) -> np.ndarray:
        """Probabilities [n, classes], one clip per call (batch_size is accepted for the
        SavedModelRunner interface and ignored); a progress bar if the runner was made with
        progress=True."""
        if stats is not None:
            raise LiteError(f"{self.path}: a LiteRT model has serving_default only; "
                            "per-speaker statistics need the SavedModel")
        from tqdm import tqdm

        out = np.zeros((len(waves), len(self.labels)), np.float32)
        for i, wave in enumerate(tqdm(waves, desc="LiteRT", unit="clip", disable=not self.progress,
                                      leave=False)):
            out[i] = self.predict_one(wave)
        return out
