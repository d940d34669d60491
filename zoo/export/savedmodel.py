"""Export a trained feature-input Keras model as a TF Serving SavedModel that takes raw audio.
(SSL embedding heads and the fine-tuned Wav2Vec2: zoo.export.ssl, same layout.)

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
        normalised with given statistics (per speaker, pipelines.records.speaker_stats) instead of
        each clip's own; used by `zoo.evaluate --speaker-norm`
    serving_by_speaker(waveform, length, speaker string [batch]): exports of zoo.refit_head
        only; embeddings standardised per speaker id within the request (SpeakerServingModule)
    serving_embedding(waveform, length) -> embedding float32 [batch, D], and
    serving_with_speaker_stats(embedding, embedding_mean, embedding_std [batch, D]):
        serving_by_speaker in two steps, for speakers with more clips than one request should
        hold: embed the clips in any batches, take the mean and (population) standard
        deviation of a speaker's embeddings, then classify the embeddings with them (the
        audio is not sent or run through the network again)
all but serving_embedding -> probabilities float32 [batch, classes] (calibrated), label string
[batch], logits float32 [batch, classes] (the model's own, before calibration), status string
[batch] (ok / low_confidence / no_speech) and, where audio comes in, speech_ratio float32
[batch]; serving_embedding -> embedding and speech_ratio (zoo.export.reliability,
docs/reliability.md).

Any batch size and clip length; clips shorter than one FFT window are zero-padded, and with
`length` a clip's probabilities do not depend on the padding after it. A request that cannot be
answered (empty batch or clip, wrong rank, NaN/Inf samples or statistics, lengths that do not
fit the waveform) fails with an InvalidArgumentError whose message names the input and the
problem (TF Serving answers it as HTTP 400); the server keeps running.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from pipelines.features import extract as F
from pipelines.features.spec import FeatureSpec
from zoo.export.reliability import Reliability, outputs, speech_ratio
from zoo.export.layout import (  # noqa: F401 - re-exported: the layout helpers were defined here first
    SIGNATURE_DEFAULT, SIGNATURE_EMBEDDING, SIGNATURE_LENGTH, SIGNATURE_SPEAKER,
    SIGNATURE_SPEAKER_STATS, SIGNATURE_STATS, next_version, read_export, resolve_version,
)


def waveform_checks(waveform, length, stats=None, channels: int | None = None) -> list:
    """Assertions on a serving request, in two stages, for use as control dependencies.

    Ranks first, and everything else waits on them, because a shape read from a tensor of the
    wrong rank fails with an unrelated message. Every failure is an InvalidArgumentError that
    names the input and the problem.
    """
    ranks = [_assert_rank(waveform, 2, "waveform: wrong rank, [batch, samples] needed"),
             _assert_rank(length, 1, "length: wrong rank, [batch] needed")]
    if stats is not None:
        ranks += [_assert_rank(s, 2, f"{name}: wrong rank, [batch, channels] needed")
                  for s, name in zip(stats, ("feature_mean", "feature_std"))]
    with tf.control_dependencies(ranks):
        rows, samples = tf.shape(waveform)[0], tf.shape(waveform)[1]
        checks = [
            tf.debugging.assert_positive(rows, message="waveform: empty batch (0 rows)"),
            tf.debugging.assert_positive(samples, message="waveform: no samples (0 columns)"),
            tf.debugging.assert_equal(tf.shape(length)[0], rows,
                                      message="length: one value per waveform row needed"),
            tf.debugging.assert_positive(length, message="length: every value must be >= 1"),
            tf.debugging.assert_less_equal(length, samples,
                                           message="length: larger than the waveform rows"),
            tf.debugging.assert_all_finite(waveform, message="waveform: NaN or Inf samples"),
        ]
        if stats is not None:
            checks += [
                tf.debugging.assert_equal(
                    tf.shape(stats[0]), tf.stack([rows, channels]),
                    message=f"feature_mean: [batch, {channels}] needed"),
                tf.debugging.assert_equal(
                    tf.shape(stats[1]), tf.shape(stats[0]),
                    message="feature_std: same shape as feature_mean needed"),
                tf.debugging.assert_all_finite(stats[0],
                                               message="feature_mean: NaN or Inf values"),
                tf.debugging.assert_all_finite(stats[1],
                                               message="feature_std: NaN or Inf values"),
            ]
    return ranks + checks


def full_length(waveform):
    """Every row's length = the number of columns, read only after the rank check."""
    with tf.control_dependencies(
            [_assert_rank(waveform, 2, "waveform: wrong rank, [batch, samples] needed")]):
        return tf.fill([tf.shape(waveform)[0]], tf.shape(waveform)[1])


class _Untracked:
    """Holds an object out of sight of SavedModel dependency tracking."""

    def __init__(self, value):
        self.value = value


class ServingModule(tf.Module):
    """Waveform in, probabilities and label out; features computed on the graph."""

    def __init__(self, model: keras.Model, spec: FeatureSpec, labels: list[str], assets: Path,
                 reliability: Reliability | None = None):
        super().__init__()
        # The Keras model is kept out of the SavedModel's object graph; export() tracks the
        # variables the signatures read instead (see there).
        self._keras = _Untracked(model)
        self.spec = spec
        self.reliability = reliability or Reliability()
        self.labels = tf.constant(labels)
        self.labels_file = tf.saved_model.Asset(str(assets / "labels.txt"))
        self.spec_file = tf.saved_model.Asset(str(assets / "feature_spec.json"))

    @property
    def model(self) -> keras.Model:
        return self._keras.value

    def _features(self, waveform, length, stats=None, extra_checks=()):
        with tf.control_dependencies(waveform_checks(waveform, length, stats,
                                                     self.spec.channels) + list(extra_checks)):
            short = tf.maximum(self.spec.n_fft - tf.shape(waveform)[1], 0)
            waveform = tf.pad(waveform, [[0, 0], [0, short]])  # clips under one window
            features, _ = F.compute(waveform, length, self.spec, stats=stats)
        return features

    def _outputs(self, probabilities, ratio=None, speaker: bool = False) -> dict:
        """probabilities (calibrated), label, logits, status (+ speech_ratio): zoo.export.reliability."""
        return outputs(self.labels, probabilities, self.reliability, ratio, speaker)

    def _speech(self, waveform, length, after):
        """speech_ratio, computed after `after` (the features, which carry the input checks):
        a bad request is refused with the checks' message, never one from the speech graph."""
        with tf.control_dependencies([after]):
            return speech_ratio(waveform, length, self.reliability)

    def _predict(self, waveform, length=None, stats=None):
        if length is None:
            length = full_length(waveform)
        features = self._features(waveform, length, stats)
        return self._outputs(self.model(features, training=False),
                             self._speech(waveform, length, features))

    def signatures(self) -> dict:
        """{signature name: concrete function} to save."""
        return {SIGNATURE_DEFAULT: self.serve.get_concrete_function(),
                SIGNATURE_LENGTH: self.serve_with_length.get_concrete_function(),
                SIGNATURE_STATS: self.serve_with_stats.get_concrete_function()}

    def save_keras(self, out: Path) -> None:
        """The Keras file(s) beside the SavedModel."""
        self.model.save(out / "model.keras")

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform")])
    def serve(self, waveform):
        return self._predict(waveform)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform"),
                                  tf.TensorSpec([None], tf.int32, name="length")])
    def serve_with_length(self, waveform, length):
        return self._predict(waveform, length)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform"),
                                  tf.TensorSpec([None], tf.int32, name="length"),
                                  tf.TensorSpec([None, None], tf.float32, name="feature_mean"),
                                  tf.TensorSpec([None, None], tf.float32, name="feature_std")])
    def serve_with_stats(self, waveform, length, feature_mean, feature_std):
        return self._predict(waveform, length, (feature_mean, feature_std))


SPEAKER_EPS = 1e-6


def speaker_standardize(embeddings, speakers):
    """Each row minus the mean over the batch's rows with the same speaker id, divided by their
    (population) standard deviation + SPEAKER_EPS (zoo.refit_head.speaker_standardize_np)."""
    _, index = tf.unique(speakers)
    groups = tf.reduce_max(index) + 1
    mean = tf.math.unsorted_segment_mean(embeddings, index, groups)
    centred = embeddings - tf.gather(mean, index)
    std = tf.sqrt(tf.math.unsorted_segment_mean(tf.square(centred), index, groups))
    return centred / (tf.gather(std, index) + SPEAKER_EPS)


class SpeakerServingModule(ServingModule):
    """A ServingModule (plain model) plus serving_by_speaker: features -> trunk (the model's
    embedding) -> standardised with the statistics of the request's clips of the same speaker
    -> speaker head (zoo.refit_head)."""

    def __init__(self, model: keras.Model, trunk: keras.Model, speaker_head: keras.Model,
                 spec: FeatureSpec, labels: list[str], assets: Path,
                 reliability: Reliability | None = None):
        super().__init__(model, spec, labels, assets, reliability)
        self._speaker_models = _Untracked((trunk, speaker_head))

    def signatures(self) -> dict:
        return {**super().signatures(),
                SIGNATURE_SPEAKER: self.serve_by_speaker.get_concrete_function(),
                SIGNATURE_EMBEDDING: self.serve_embedding.get_concrete_function(),
                SIGNATURE_SPEAKER_STATS: self.serve_with_speaker_stats.get_concrete_function()}

    def save_keras(self, out: Path) -> None:
        super().save_keras(out)
        self._speaker_models.value[1].save(out / "speaker_head.keras")

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform"),
                                  tf.TensorSpec([None], tf.int32, name="length"),
                                  tf.TensorSpec([None], tf.string, name="speaker")])
    def serve_by_speaker(self, waveform, length, speaker):
        trunk, head = self._speaker_models.value
        ranks = [_assert_rank(speaker, 1, "speaker: wrong rank, [batch] needed"),
                 _assert_rank(waveform, 2, "waveform: wrong rank, [batch, samples] needed")]
        with tf.control_dependencies(ranks):
            rows = tf.debugging.assert_equal(
                tf.shape(speaker)[0], tf.shape(waveform)[0],
                message="speaker: one id per waveform row needed")
        features = self._features(waveform, length, extra_checks=ranks + [rows])
        embedding = speaker_standardize(trunk(features, training=False), speaker)
        return self._outputs(head(embedding, training=False),
                             self._speech(waveform, length, features), speaker=True)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform"),
                                  tf.TensorSpec([None], tf.int32, name="length")])
    def serve_embedding(self, waveform, length):
        trunk, _ = self._speaker_models.value
        features = self._features(waveform, length)
        embedding = trunk(features, training=False)
        return {"embedding": tf.identity(embedding, name="embedding"),
                "speech_ratio": tf.identity(self._speech(waveform, length, features),
                                            name="speech_ratio")}

    @tf.function(input_signature=[
        tf.TensorSpec([None, None], tf.float32, name="embedding"),
        tf.TensorSpec([None, None], tf.float32, name="embedding_mean"),
        tf.TensorSpec([None, None], tf.float32, name="embedding_std")])
    def serve_with_speaker_stats(self, embedding, embedding_mean, embedding_std):
        trunk, head = self._speaker_models.value
        dim = trunk.output.shape[-1]
        inputs = (("embedding", embedding), ("embedding_mean", embedding_mean),
                  ("embedding_std", embedding_std))
        ranks = [_assert_rank(x, 2, f"{name}: wrong rank, [batch, {dim}] needed")
                 for name, x in inputs]
        with tf.control_dependencies(ranks):
            rows = tf.shape(embedding)[0]
            checks = [tf.debugging.assert_positive(
                rows, message="embedding: empty batch (0 rows)")]
            for name, x in inputs:
                checks += [
                    tf.debugging.assert_equal(tf.shape(x), tf.stack([rows, dim]),
                                              message=f"{name}: [batch, {dim}] needed"),
                    tf.debugging.assert_all_finite(x, message=f"{name}: NaN or Inf values"),
                ]
            checks.append(tf.debugging.assert_non_negative(
                embedding_std, message="embedding_std: negative values"))
        with tf.control_dependencies(checks):
            standardized = (embedding - embedding_mean) / (embedding_std + SPEAKER_EPS)
            return self._outputs(head(standardized, training=False), speaker=True)


def _assert_rank(x, rank: int, message: str):
    """Run-time rank check. The declared input shapes ([-1, -1], [-1]) fix the rank in the
    graph, and Grappler folds tf.rank(x) or tf.size(tf.shape(x)) to that constant, so a request
    of another rank (TF Serving does not compare it with the signature) would pass them;
    counting the entries of the run-time shape vector is not folded."""
    actual = tf.cast(tf.math.count_nonzero(tf.shape(x) >= 0), tf.int32)
    return tf.debugging.assert_equal(actual, rank, message=message)


def captured_variables(functions) -> list:
    """Variables read by concrete functions, each once, in first-use order."""
    seen, found = set(), []
    for fn in functions:
        for v in fn.variables:
            if id(v) not in seen:
                seen.add(id(v))
                found.append(v)
    return found


def save_signatures(module: tf.Module, out: Path, signatures: dict) -> None:
    """tf.saved_model.save that TF Serving can restore.

    The graph functions read the tf.Variables inside Keras 3's variables. Tracked only
    through the Keras model, the checkpoint holds the Keras wrappers as other resources than
    the ones the signatures read: tf.saved_model.load copes, but the TF1-style loader that TF
    Serving uses (the graph's restore op) leaves those uninitialised and every request fails
    with "Could not find variable ...". Tracking exactly the variables the signatures capture
    (as keras.export.ExportArchive does) fixes it.
    """
    module.graph_variables = captured_variables(signatures.values())
    tf.saved_model.save(module, str(out), signatures=signatures)


def export(model: keras.Model, spec: FeatureSpec, labels: list[str], base, name: str,
           card: str = "", meta: dict | None = None, version: int | None = None,
           make_module=None, reliability: Reliability | None = None) -> Path:
    """Write savedmodels-style `base/name/<version>/`; returns the version folder.

    make_module(assets folder) -> the ServingModule (default: ServingModule of `model`); its
    signatures() and save_keras() say what is written (SpeakerServingModule adds
    serving_by_speaker and speaker_head.keras)."""

    def write(staging: Path, out: Path) -> dict:
        (staging / "labels.txt").write_text("\n".join(labels) + "\n")
        (staging / "feature_spec.json").write_text(spec.to_json() + "\n")
        module = (make_module(staging) if make_module
                  else ServingModule(model, spec, labels, staging, reliability))
        signatures = module.signatures()
        save_signatures(module, out, signatures)
        module.save_keras(out)
        return {"labels": labels, "feature_spec": spec.to_dict(),
                "signatures": list(signatures),
                "reliability": module.reliability.to_dict()}

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
