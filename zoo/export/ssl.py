"""SavedModel exports of the SSL models, in the layout of zoo.export.savedmodel (savedmodels/<model>/<N>/
with assets/labels.txt, model_card.md and zoo.json; zoo.json's `input` says what the graph takes).

    embedding heads   serving_default(embedding float32 [batch, dim]) or
                      serving_default(frames float32 [batch, time, dim], zero-padded)
                      -> probabilities, label; model.keras beside it. They take what
                      pipelines.embeddings writes, so the encoder runs before them (its identity:
                      zoo.json `embedding`, checked by zoo.evaluate).
    wav2vec2_finetune serving_default(waveform) and serving_with_length(waveform, length), as
                      every other waveform export: the encoder is inside the graph.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from zoo.export.savedmodel import (
    SIGNATURE_DEFAULT, SIGNATURE_LENGTH, _Untracked, full_length, save_signatures,
    waveform_checks, write_version,
)
from zoo.export.reliability import Reliability, outputs, speech_ratio


def _outputs(labels, probabilities, reliability, ratio=None):
    return outputs(labels, probabilities, reliability, ratio)


class EmbeddingServing(tf.Module):
    """An SSL head (Keras 3): embedding vectors or frame sequences in."""

    def __init__(self, model, labels: list[str], input_kind: str, dim: int, assets: Path,
                 reliability: Reliability | None = None):
        super().__init__()
        self._keras = _Untracked(model)  # save_signatures tracks the variables it reads
        self.reliability = reliability or Reliability()
        self.labels = tf.constant(labels)
        self.labels_file = tf.saved_model.Asset(str(assets / "labels.txt"))
        shape = [None, dim] if input_kind == "embedding" else [None, None, dim]
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec(shape, tf.float32, name=input_kind)])

    @property
    def model(self):
        return self._keras.value

    def _serve(self, x):
        check = tf.debugging.assert_all_finite(x, message="input: NaN or Inf values")
        with tf.control_dependencies([check]):
            return _outputs(self.labels, self.model(x, training=False), self.reliability)


class WaveformServing(tf.Module):
    """The fine-tuned encoder + head: raw 16 kHz waveforms in."""

    def __init__(self, model, labels: list[str], assets: Path,
                 reliability: Reliability | None = None):
        super().__init__()
        self.reliability = reliability or Reliability()
        # Track the variables, not the tf_keras model: saving a tf_keras model traces every
        # layer's call functions for Keras metadata (minutes for an encoder), unused here.
        self.model_weights = list(model.weights)
        self._classify = model.__call__
        self.labels = tf.constant(labels)
        self.labels_file = tf.saved_model.Asset(str(assets / "labels.txt"))
        self.config_file = tf.saved_model.Asset(str(assets / "encoder_config.json"))

    def _predict(self, waveform, length):
        with tf.control_dependencies(waveform_checks(waveform, length)):
            probabilities = self._classify({"waveform": waveform, "length": length},
                                           training=False)
            ratio = speech_ratio(waveform, length, self.reliability)
        return _outputs(self.labels, probabilities, self.reliability, ratio)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform")])
    def serve(self, waveform):
        # through serve_with_length's graph: the encoder is traced once, not twice
        return self.serve_with_length(waveform, full_length(waveform))

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform"),
                                  tf.TensorSpec([None], tf.int32, name="length")])
    def serve_with_length(self, waveform, length):
        return self._predict(waveform, length)


def export_embedding_head(model, labels: list[str], base, name: str, input_kind: str, dim: int,
                          embedding: dict, card: str = "", meta: dict | None = None,
                          version: int | None = None,
                          reliability: Reliability | None = None) -> Path:
    """savedmodels/<name>/<N>/ for a Keras 3 head over `input_kind` ('embedding' | 'frames')
    inputs of width `dim`; `embedding`: the set's encoder description (zoo.json)."""

    def write(staging: Path, out: Path) -> dict:
        (staging / "labels.txt").write_text("\n".join(labels) + "\n")
        module = EmbeddingServing(model, labels, input_kind, dim, staging, reliability)
        save_signatures(module, out, {SIGNATURE_DEFAULT: module.serve.get_concrete_function()})
        model.save(out / "model.keras")
        return {"labels": labels, "input": input_kind, "input_dim": dim,
                "embedding": embedding, "signatures": [SIGNATURE_DEFAULT],
                "reliability": module.reliability.to_dict()}

    return write_version(base, name, write, card, meta, version)


def export_waveform_classifier(model, labels: list[str], base, name: str, encoder: dict,
                               encoder_config_json: str, card: str = "",
                               meta: dict | None = None, version: int | None = None,
                               reliability: Reliability | None = None) -> Path:
    """savedmodels/<name>/<N>/ for a waveform-input classifier (tf_keras model taking
    {'waveform', 'length'})."""

    def write(staging: Path, out: Path) -> dict:
        (staging / "labels.txt").write_text("\n".join(labels) + "\n")
        (staging / "encoder_config.json").write_text(encoder_config_json)
        module = WaveformServing(model, labels, staging, reliability)
        tf.saved_model.save(module, str(out), signatures={
            SIGNATURE_DEFAULT: module.serve.get_concrete_function(),
            SIGNATURE_LENGTH: module.serve_with_length.get_concrete_function()})
        return {"labels": labels, "input": "waveform", "sample_rate": 16000,
                "encoder": encoder, "signatures": [SIGNATURE_DEFAULT, SIGNATURE_LENGTH],
                "reliability": module.reliability.to_dict()}

    return write_version(base, name, write, card, meta, version)
