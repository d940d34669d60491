"""What every export says besides its emotion: how much of the clip is speech, calibrated
probabilities, and a status per clip (docs/reliability.md).

    rel = reliability_from(metrics)        # temperatures and thresholds fitted on validation
    out = outputs(labels, probabilities, rel, speech_ratio)      # on the serving graph

Outputs of the waveform signatures (zoo.export.savedmodel, zoo.export.ssl, zoo.export.whisper):

    probabilities  float32 [batch, classes]  softmax(logits / T): calibrated (T fitted on the
                                             validation split, zoo.export.calibration)
    label          string [batch]            the most probable emotion (T never changes it)
    logits         float32 [batch, classes]  log of the model's own probabilities (before T)
    speech_ratio   float32 [batch]           share of the clip's 20 ms frames that are voiced
                                             speech (pipelines.audio.speech_activity, on the raw
                                             waveform)
    status         string [batch]            'no_speech' when speech_ratio is under the
                                             export's threshold, else 'low_confidence' when the
                                             calibrated top probability is under the threshold
                                             chosen on validation, else 'ok'

serving_with_speaker_stats takes embeddings, not audio: it has no speech_ratio, and its status
is 'ok' or 'low_confidence' (serving_embedding, the first step, returns the clips'
speech_ratio). The per-speaker head has its own temperature and threshold.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pipelines.audio.speech_activity import DEFAULT_PARAMS, SpeechActivityParams
from zoo.export.calibration import FLOOR, softmax  # FLOOR: log(0) made finite

STATUSES = ("ok", "low_confidence", "no_speech")


@dataclasses.dataclass(frozen=True)
class Reliability:
    """Temperatures and thresholds an export bakes in (zoo.json `reliability`)."""

    temperature: float = 1.0
    confidence_threshold: float = 0.0
    speaker_temperature: float = 1.0
    speaker_confidence_threshold: float = 0.0
    speech: SpeechActivityParams = DEFAULT_PARAMS

    @property
    def no_speech_threshold(self) -> float:
        return float(self.speech.no_speech_threshold)

    def to_dict(self) -> dict:
        return {"temperature": self.temperature,
                "confidence_threshold": self.confidence_threshold,
                "speaker_temperature": self.speaker_temperature,
                "speaker_confidence_threshold": self.speaker_confidence_threshold,
                "no_speech_threshold": self.no_speech_threshold,
                "speech_activity": self.speech.to_dict(), "statuses": list(STATUSES)}

    @classmethod
    def from_dict(cls, data: dict | None) -> "Reliability":
        if not data:
            return cls()
        return cls(float(data["temperature"]), float(data["confidence_threshold"]),
                   float(data.get("speaker_temperature", 1.0)),
                   float(data.get("speaker_confidence_threshold", 0.0)),
                   SpeechActivityParams.from_dict(data["speech_activity"]))


def reliability_from(metrics: dict) -> Reliability:
    """The Reliability of a run's metrics (finish_run's 'calibration'; identity without)."""
    cal = metrics.get("calibration") or {}
    plain, speaker = cal.get("plain") or {}, cal.get("speaker") or {}
    return Reliability(float(plain.get("temperature", 1.0)),
                       float(plain.get("confidence_threshold", 0.0)),
                       float(speaker.get("temperature", 1.0)),
                       float(speaker.get("confidence_threshold", 0.0)))


def calibrate(validation: tuple, test: tuple | None = None) -> dict:
    """zoo.export.calibration.fit_calibration on validation (probabilities, labels), with the test
    split's ECE before and after when given: a JSON-ready dict for metrics / zoo.json."""
    from zoo.export.calibration import apply_temperature, expected_calibration_error, fit_calibration

    cal = fit_calibration(*validation).to_dict()
    if test is not None and len(test[1]):
        probs, labels = test
        cal["test_ece_before"] = expected_calibration_error(probs, labels)
        cal["test_ece_after"] = expected_calibration_error(
            apply_temperature(probs, cal["temperature"]), labels)
    return cal


def frame_probabilities(pred) -> np.ndarray:
    """[n, classes] probabilities of a predictions DataFrame (its p_<label> columns)."""
    return pred[[c for c in pred.columns if c.startswith("p_")]].to_numpy(np.float64)


# ---------------------------------------------------------------- on the graph

def speech_ratio(waveform, length, rel: Reliability):
    from pipelines.audio.speech_activity import speech_ratio as ratio

    return ratio(waveform, length, rel.speech)


def calibrate_graph(probabilities, temperature: float):
    """(logits, calibrated probabilities) on the graph: log p (exact zeros as FLOOR) and
    softmax(log p / T), as zoo.export.calibration.apply_temperature does on the host."""
    import tensorflow as tf

    logits = tf.math.log(tf.maximum(tf.cast(probabilities, tf.float32), FLOOR))
    return logits, tf.nn.softmax(logits / temperature, axis=-1)


def outputs(labels, probabilities, rel: Reliability, ratio=None, speaker: bool = False) -> dict:
    """The signature outputs (see the module docstring) from the model's probabilities."""
    import tensorflow as tf

    temperature = rel.speaker_temperature if speaker else rel.temperature
    threshold = rel.speaker_confidence_threshold if speaker else rel.confidence_threshold
    logits, calibrated = calibrate_graph(probabilities, temperature)
    label = tf.gather(labels, tf.argmax(calibrated, axis=-1))
    status = tf.where(tf.reduce_max(calibrated, axis=-1) < threshold,
                      tf.constant("low_confidence"), tf.constant("ok"))
    out = {"probabilities": tf.identity(calibrated, name="probabilities"),
           "label": tf.identity(label, name="label"),
           "logits": tf.identity(logits, name="logits")}
    if ratio is not None:
        status = tf.where(ratio < rel.no_speech_threshold, tf.constant("no_speech"), status)
        out["speech_ratio"] = tf.identity(ratio, name="speech_ratio")
    out["status"] = tf.identity(status, name="status")
    return out


# ---------------------------------------------------------------- on the host (zoo.predict,
# zoo.evaluate): the same functions, with the export's parameters (zoo.json), so exports made
# before zoo.export.reliability and .tflite files get a speech_ratio and a status too.

def of_export(info: dict) -> Reliability:
    """The Reliability an export's zoo.json (or lite.json) records; the identity calibration
    and the default speech-activity parameters for exports that predate it."""
    return Reliability.from_dict(info.get("reliability"))


def host_speech_ratios(waves, params: SpeechActivityParams = DEFAULT_PARAMS,
                       batch_size: int = 32) -> np.ndarray:
    """[n] speech_ratio of 1-D float32 clips (pipelines.audio.speech_activity, batched by length)."""
    from zoo.inference.savedmodel import batches, padded

    ratio = speech_ratio_function(params)
    out = np.zeros(len(waves), np.float32)
    for idx in batches(list(waves), batch_size):
        batch, length = padded(waves, idx)
        out[idx] = ratio(batch, length).numpy()
    return out


_RATIO_FUNCTIONS: dict = {}


def speech_ratio_function(params: SpeechActivityParams):
    """A tf.function of (waveform, length) -> speech_ratio, traced once per parameter set."""
    import tensorflow as tf

    from pipelines.audio.speech_activity import speech_ratio as ratio

    key = params.to_json()
    if key not in _RATIO_FUNCTIONS:
        _RATIO_FUNCTIONS[key] = tf.function(
            lambda w, n: ratio(w, n, params), reduce_retracing=True,
            input_signature=[tf.TensorSpec([None, None], tf.float32),
                             tf.TensorSpec([None], tf.int32)])
    return _RATIO_FUNCTIONS[key]


def statuses(probabilities, ratio, rel: Reliability, speaker: bool = False) -> np.ndarray:
    """[n] status strings of (calibrated) probabilities [n, C] and speech ratios [n], as the
    serving graph decides them (outputs())."""
    threshold = rel.speaker_confidence_threshold if speaker else rel.confidence_threshold
    probabilities = np.asarray(probabilities, np.float64).reshape(len(ratio), -1)
    status = np.where(probabilities.max(axis=1) < threshold, "low_confidence", "ok")
    return np.where(np.asarray(ratio) < rel.no_speech_threshold, "no_speech", status)


def uncalibrated(probabilities, temperature: float) -> np.ndarray:
    """The model's own probabilities back from softmax(logits / T): softmax(T * log p). (Not
    apply_temperature: that refuses rows that do not sum to 1 within 1e-3, which int8 LiteRT
    outputs may not.)"""
    return softmax(np.log(np.maximum(np.asarray(probabilities, np.float64), FLOOR)),
                   1.0 / temperature)
