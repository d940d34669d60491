"""Export a trained feature-input Keras model as a TF Serving SavedModel that takes raw audio.
(SSL embedding heads and the fine-tuned Wav2Vec2: zoo.export_ssl, same layout.)

    savedmodels/<model>/<version>/
        saved_model.pb, variables/        the graph TF Serving loads
        assets/labels.txt                 one label per line, index order
        assets/feature_spec.json          the FeatureSpec the graph computes
        model.keras                       the feature-input Keras model (Grad-CAM, fine-tuning)
        model_card.md, zoo.json           what it is, how it was trained, how well it does

Signatures (TF Serving needs every input of a signature in a request, so the optional length
is a second signature):
    serving_default(waveform float32 [batch, samples] @ 16 kHz)
    serving_with_length(waveform, length int32 [batch]): rows zero-padded past `length`
    serving_with_stats(waveform, length, feature_mean, feature_std [batch, channels]): features
        normalised with given statistics (per speaker, pipelines.speaker_stats) instead of
        each clip's own; used by `zoo.evaluate --speaker-norm`
all -> probabilities float32 [batch, classes], label string [batch].
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from pipelines import features as F
from pipelines.spec import FeatureSpec

SIGNATURE_DEFAULT = "serving_default"
SIGNATURE_LENGTH = "serving_with_length"
SIGNATURE_STATS = "serving_with_stats"


def waveform_checks(waveform, length) -> list:
    """Assertions on a serving request (waveform [batch, samples], length [batch]), with
    messages a client can act on; run them as control dependencies."""
    return [
        tf.debugging.assert_positive(tf.shape(waveform)[0],
                                     message="waveform: empty batch (0 rows)"),
        tf.debugging.assert_positive(tf.shape(waveform)[1],
                                     message="waveform: no samples (0 columns)"),
        tf.debugging.assert_equal(tf.shape(length)[0], tf.shape(waveform)[0],
                                  message="length: one value per waveform row needed"),
        tf.debugging.assert_positive(length, message="length: every value must be >= 1"),
        tf.debugging.assert_less_equal(length, tf.shape(waveform)[1],
                                       message="length: larger than the waveform rows"),
        tf.debugging.assert_all_finite(waveform, message="waveform: NaN or Inf samples"),
    ]


class ServingModule(tf.Module):
    """Waveform in, probabilities and label out; features computed on the graph."""

    def __init__(self, model: keras.Model, spec: FeatureSpec, labels: list[str], assets: Path):
        super().__init__()
        self.model = model
        self.spec = spec
        self.labels = tf.constant(labels)
        self.labels_file = tf.saved_model.Asset(str(assets / "labels.txt"))
        self.spec_file = tf.saved_model.Asset(str(assets / "feature_spec.json"))

    def _predict(self, waveform, length, stats=None):
        checks = waveform_checks(waveform, length)
        with tf.control_dependencies(checks):
            short = tf.maximum(self.spec.n_fft - tf.shape(waveform)[1], 0)
            waveform = tf.pad(waveform, [[0, 0], [0, short]])  # clips under one window
            features, _ = F.compute(waveform, length, self.spec, stats=stats)
            probabilities = self.model(features, training=False)
        label = tf.gather(self.labels, tf.argmax(probabilities, axis=-1))
        return {"probabilities": tf.identity(probabilities, name="probabilities"),
                "label": tf.identity(label, name="label")}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform")])
    def serve(self, waveform):
        length = tf.fill([tf.shape(waveform)[0]], tf.shape(waveform)[1])
        return self._predict(waveform, length)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform"),
                                  tf.TensorSpec([None], tf.int32, name="length")])
    def serve_with_length(self, waveform, length):
        return self._predict(waveform, length)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform"),
                                  tf.TensorSpec([None], tf.int32, name="length"),
                                  tf.TensorSpec([None, None], tf.float32, name="feature_mean"),
                                  tf.TensorSpec([None, None], tf.float32, name="feature_std")])
    def serve_with_stats(self, waveform, length, feature_mean, feature_std):
        checks = [tf.debugging.assert_equal(
            tf.shape(feature_mean), [tf.shape(waveform)[0], self.spec.channels],
            message=f"feature_mean: [batch, {self.spec.channels}] needed"),
            tf.debugging.assert_equal(tf.shape(feature_std), tf.shape(feature_mean),
                                      message="feature_std: same shape as feature_mean needed")]
        with tf.control_dependencies(checks):
            return self._predict(waveform, length, (feature_mean, feature_std))


def next_version(base: Path) -> int:
    """The next free integer version under base (1 if none)."""
    versions = [int(p.name) for p in base.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def export(model: keras.Model, spec: FeatureSpec, labels: list[str], base, name: str,
           card: str = "", meta: dict | None = None, version: int | None = None) -> Path:
    """Write savedmodels-style `base/name/<version>/`; returns the version folder."""

    def write(staging: Path, out: Path) -> dict:
        (staging / "labels.txt").write_text("\n".join(labels) + "\n")
        (staging / "feature_spec.json").write_text(spec.to_json() + "\n")
        module = ServingModule(model, spec, labels, staging)
        tf.saved_model.save(module, str(out), signatures={
            SIGNATURE_DEFAULT: module.serve.get_concrete_function(),
            SIGNATURE_LENGTH: module.serve_with_length.get_concrete_function(),
            SIGNATURE_STATS: module.serve_with_stats.get_concrete_function(),
        })
        model.save(out / "model.keras")
        return {"labels": labels, "feature_spec": spec.to_dict(),
                "signatures": [SIGNATURE_DEFAULT, SIGNATURE_LENGTH, SIGNATURE_STATS]}

    return write_version(base, name, write, card, meta, version)


def write_version(base, name: str, write, card: str = "", meta: dict | None = None,
                  version: int | None = None) -> Path:
    """Write `base/name/<version>/`: write(staging, out) saves the SavedModel (assets from
    staging) into out and returns zoo.json fields; the card and zoo.json are added.

    Written to a hidden temporary folder first and renamed, so TF Serving (which polls the base
    path) never sees a half-written version.
    """
    model_base = Path(base) / name
    model_base.mkdir(parents=True, exist_ok=True)
    version = version or next_version(model_base)
    final = model_base / str(version)
    if final.exists():
        raise FileExistsError(f"{final} already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=model_base))
    try:
        staging = tmp / "staging"
        staging.mkdir()
        out = tmp / "out"
        fields = write(staging, out)
        (out / "model_card.md").write_text(card)
        info = {"name": name, "version": version, **fields, **(meta or {})}
        (out / "zoo.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
        os.rename(out, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def read_export(path) -> dict:
    """zoo.json of an export folder, with labels and FeatureSpec, or a clear error."""
    path = Path(path)
    info = path / "zoo.json"
    if not (path / "saved_model.pb").is_file():
        raise FileNotFoundError(f"{path}: no saved_model.pb (not a SavedModel version folder)")
    if not info.is_file():
        raise FileNotFoundError(f"{path}: no zoo.json beside the SavedModel")
    return json.loads(info.read_text())


def resolve_version(path) -> Path:
    """savedmodels/<model> -> its highest version folder; a version folder is returned as is."""
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    versions = sorted((int(p.name) for p in path.glob("*") if p.is_dir() and p.name.isdigit()
                       and (p / "saved_model.pb").is_file()))
    if not versions:
        raise FileNotFoundError(f"{path}: neither a SavedModel nor a folder of numbered versions")
    return path / str(versions[-1])
