"""Probabilities that mean what they say: temperature scaling, the expected calibration error,
the reliability diagram, and the confidence threshold of a 'low_confidence' status.

    cal = fit_calibration(val_probs, val_labels)          # on validation clips, never on test
    probs = apply_temperature(test_probs, cal.temperature)
    low = probs.max(axis=1) < cal.confidence_threshold    # the status 'low_confidence'
    expected_calibration_error(probs, test_labels)        # top-label ECE, 15 equal-width bins
    write_reliability_diagram(probs, test_labels, "reliability.png", title="mfcc_cnn/3 test")
    cal.to_dict()                                         # JSON for zoo.json

Temperature scaling (Guo et al. 2017) divides a model's logits by one number T > 0 before the
softmax: T > 1 softens over-confident probabilities, T < 1 sharpens timid ones, and the
predicted label never changes. T minimises the mean negative log-likelihood of the true labels
on validation clips. The zoo's models output softmax probabilities; log(p) equals the logits up
to a constant per clip, which the softmax ignores, so probabilities serve as well as logits.
An exact 0 (float32 underflow) is taken as 1.18e-38, the smallest normal float32, so its
logit stays finite. The objective is convex in 1/T; it is searched on a grid of 1/T over
[1 / t_max, 1 / t_min] (default T in [0.05, 20]) and refined with bounded Brent.

Expected calibration error (ECE): the clips are put into `bins` equal-width bins of their
top-label confidence (the highest probability; bin i holds (i/bins, (i+1)/bins], a confidence
of exactly 0 goes to the first), and ECE = sum over bins of (clips in bin / all clips) *
|accuracy in bin - mean confidence in bin|: 0 when each confidence is the accuracy it
promises. 15 bins is the usual choice (Guo et al.).

Reliability diagram: per bin, the accuracy (bars) against the mean confidence (the diagonal is
perfect calibration; a bar below it is over-confidence), with the number of clips per bin
under it and the ECE in the title.

Low confidence: with calibrated probabilities, the top probability estimates the chance that
the predicted label is right. `confidence_threshold` makes that concrete on validation: it
fits the accuracy of the predicted label as a non-decreasing function of the confidence
(isotonic regression of 'right or wrong' on the confidence, so no bins and no noise-driven
wiggles) and returns the lowest confidence at which that accuracy reaches `min_accuracy`
(default 0.5: below it, the label is more often wrong than right). A clip whose calibrated top
probability is under the threshold gets the status 'low_confidence'. A region under the
threshold with fewer than 1% of the clips (at least 10) is noise at the bottom of the curve,
and gives no threshold (0).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

ECE_BINS = 15
T_BOUNDS = (0.05, 20.0)
MIN_ACCURACY = 0.5
FLOOR = float(np.finfo(np.float32).tiny)  # what an exact 0 probability is taken as


class CalibrationError(ValueError):
    """Inputs that cannot be calibrated; str() is one line."""


# ---------------------------------------------------------------- inputs

def _labels(labels, rows: int, classes: int | None = None) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != rows:
        raise CalibrationError(f"labels: one integer per row needed ({rows}), got shape "
                               f"{labels.shape}")
    if rows and not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise CalibrationError("labels: class indices (integers) needed")
        labels = labels.astype(np.int64)
    if classes is not None and rows and (labels.min() < 0 or labels.max() >= classes):
        raise CalibrationError(f"labels: indices in [0, {classes}) needed, got "
                               f"{labels.min()}..{labels.max()}")
    return labels.astype(np.int64)


def _matrix(values, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] < 2:
        raise CalibrationError(f"{name}: [clips, classes] with >= 2 classes needed, got shape "
                               f"{values.shape}")
    if values.shape[0] == 0:
        raise CalibrationError(f"{name}: no clips")
    if not np.isfinite(values).all():
        raise CalibrationError(f"{name}: NaN or Inf values")
    return values


def _probabilities(probs) -> np.ndarray:
    probs = _matrix(probs, "probabilities")
    if probs.min() < 0 or probs.max() > 1 + 1e-6 or \
            np.abs(probs.sum(axis=1) - 1).max() > 1e-3:
        raise CalibrationError("probabilities: rows of values in [0, 1] summing to 1 needed")
    return probs


def is_probabilities(values) -> bool:
    """True if every row lies in [0, 1] and sums to 1 (within 1e-3)."""
    values = np.asarray(values, dtype=np.float64)
    return bool(values.ndim == 2 and values.size and values.min() >= 0
                and values.max() <= 1 + 1e-6 and np.abs(values.sum(axis=1) - 1).max() <= 1e-3)


def to_logits(probs) -> np.ndarray:
    """log(p) with exact zeros taken as FLOOR: logits up to a constant per row."""
    return np.log(np.maximum(_probabilities(probs), FLOOR))


def _as_logits(logits_or_probs, kind: str) -> np.ndarray:
    if kind not in ("auto", "logits", "probabilities"):
        raise CalibrationError(f"kind must be auto, logits or probabilities, got {kind!r}")
    values = _matrix(logits_or_probs, "logits_or_probs")
    if kind == "probabilities" or (kind == "auto" and is_probabilities(values)):
        return to_logits(values)
    return values


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------- temperature scaling

def nll(logits, labels, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits / temperature)."""
    z = np.asarray(logits, np.float64) / temperature
    rows, top = np.arange(len(z)), z.argmax(axis=1)
    shifted = np.exp(z - z[rows, top][:, None])
    shifted[rows, top] = 0.0  # log-sum-exp = max + log1p(the others): exact when confident
    return float(np.mean(z[rows, top] - z[rows, labels] + np.log1p(shifted.sum(axis=1))))


def fit_temperature(logits_or_probs, labels, bounds: tuple[float, float] = T_BOUNDS,
                    kind: str = "auto") -> float:
    """The temperature T in `bounds` that minimises the validation NLL (see the module
    docstring). kind: 'auto' (probabilities if every row is a distribution), 'logits' or
    'probabilities'. Returns a bound when the optimum lies beyond it (e.g. every validation
    clip right and confident: the NLL falls as T -> 0)."""
    from scipy.optimize import minimize_scalar

    lo, hi = bounds
    if not 0 < lo < hi or not math.isfinite(hi):
        raise CalibrationError(f"bounds: 0 < low < high needed, got {bounds}")
    logits = _as_logits(logits_or_probs, kind)
    labels = _labels(labels, logits.shape[0], logits.shape[1])
    # the objective is convex in beta = 1 / T: a grid finds the bracket, Brent refines it
    betas = np.geomspace(1 / hi, 1 / lo, 61)
    losses = [nll(logits, labels, 1 / b) for b in betas]
    best = int(np.argmin(losses))
    left, right = betas[max(best - 1, 0)], betas[min(best + 1, len(betas) - 1)]
    if left == right:
        return float(1 / betas[best])
    result = minimize_scalar(lambda b: nll(logits, labels, 1 / b), bounds=(left, right),
                             method="bounded", options={"xatol": 1e-6})
    beta = float(result.x) if result.fun <= losses[best] else float(betas[best])
    return float(np.clip(1 / beta, lo, hi))


def apply_temperature(logits_or_probs, temperature: float, kind: str = "auto") -> np.ndarray:
    """Calibrated probabilities softmax(logits / T) (from probabilities: softmax(log p / T)).
    The predicted label is unchanged."""
    if not temperature > 0:
        raise CalibrationError(f"temperature must be positive, got {temperature}")
    return softmax(_as_logits(logits_or_probs, kind), temperature)


# ---------------------------------------------------------------- calibration error

def reliability(probs, labels, bins: int = ECE_BINS) -> dict:
    """Per equal-width confidence bin: edges, clips, accuracy and mean confidence (None for an
    empty bin), and the top-label ECE over them."""
    probs = _probabilities(probs)
    labels = _labels(labels, probs.shape[0], probs.shape[1])
    if not isinstance(bins, int) or bins < 1:
        raise CalibrationError(f"bins must be a positive integer, got {bins!r}")
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    hits = np.bincount(index, weights=correct, minlength=bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=bins)
    filled = counts > 0
    accuracy = np.divide(hits, counts, out=np.zeros(bins), where=filled)
    mean_conf = np.divide(conf_sum, counts, out=np.zeros(bins), where=filled)
    ece = float(np.sum(counts[filled] / len(labels) * np.abs(accuracy - mean_conf)[filled]))
    return {"bins": bins, "edges": np.linspace(0, 1, bins + 1).tolist(),
            "count": counts.tolist(),
            "accuracy": [float(a) if f else None for a, f in zip(accuracy, filled)],
            "confidence": [float(c) if f else None for c, f in zip(mean_conf, filled)],
            "ece": ece, "accuracy_overall": float(correct.mean()),
            "confidence_overall": float(confidence.mean()), "clips": int(len(labels))}


def expected_calibration_error(probs, labels, bins: int = ECE_BINS) -> float:
    """Top-label ECE with `bins` equal-width bins (see the module docstring)."""
    return reliability(probs, labels, bins)["ece"]


def write_reliability_diagram(probs, labels, path, bins: int = ECE_BINS, title: str = "") -> dict:
    """Write the reliability diagram of `probs` as a PNG (atomically); returns reliability()."""
    from pipelines.common.figures import pyplot, save_png

    rel = reliability(probs, labels, bins)
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.2, 6.2), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    width = 1.0 / bins
    centres = np.asarray(rel["edges"][:-1]) + width / 2
    filled = np.asarray(rel["count"]) > 0
    acc = np.array([a if a is not None else 0.0 for a in rel["accuracy"]])
    conf = np.array([c if c is not None else 0.0 for c in rel["confidence"]])
    top.bar(centres[filled], acc[filled], width=width * 0.95, color="#4C72B0",
            edgecolor="black", linewidth=0.5, label="accuracy")
    top.bar(centres[filled], (conf - acc)[filled], bottom=acc[filled], width=width * 0.95,
            color="#DD8452", alpha=0.45, edgecolor="#DD8452", linewidth=0.5,
            label="gap to mean confidence")
    top.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy of the predicted label")
    top.legend(loc="upper left", fontsize=8)
    heading = f"ECE {rel['ece']:.3f} ({bins} bins, {rel['clips']} clips)"
    top.set_title(f"{title}\n{heading}" if title else heading, fontsize=10)
    bottom.bar(centres, rel["count"], width=width * 0.95, color="gray")
    bottom.set_xlabel("confidence (top probability)")
    bottom.set_ylabel("clips")
    fig.tight_layout()
    save_png(fig, path)
    return rel


# ---------------------------------------------------------------- low confidence

@dataclasses.dataclass(frozen=True)
class ConfidenceThreshold:
    """The 'low_confidence' threshold and what it means on the clips it was chosen on."""

    threshold: float  # top probability under which a clip is low_confidence
    min_accuracy: float
    share_below: float  # share of the clips under the threshold
    accuracy_below: float | None  # accuracy of those clips (None: none)
    accuracy_above: float | None


def confidence_threshold(probs, labels, min_accuracy: float = MIN_ACCURACY,
                         min_clips: int | None = None) -> ConfidenceThreshold:
    """The lowest confidence at which the isotonic accuracy curve reaches min_accuracy (see
    the module docstring): 0 if it does everywhere, 1 (every clip low) if it never does. A
    low-confidence region holding fewer than `min_clips` clips (default: 1% of them, at least
    10) is noise at the bottom of the curve, not evidence: the threshold is then 0."""
    from sklearn.isotonic import IsotonicRegression

    probs = _probabilities(probs)
    labels = _labels(labels, probs.shape[0], probs.shape[1])
    if not 0 < min_accuracy <= 1:
        raise CalibrationError(f"min_accuracy must be in (0, 1], got {min_accuracy}")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    curve = IsotonicRegression(y_min=0, y_max=1, increasing=True, out_of_bounds="clip")
    fitted = curve.fit_transform(confidence, correct)
    reached = fitted >= min_accuracy
    threshold = float(confidence[reached].min()) if reached.any() else 1.0
    min_clips = max(10, math.ceil(0.01 * len(labels))) if min_clips is None else min_clips
    if np.sum(confidence < threshold) < min_clips:
        threshold = 0.0
    below = confidence < threshold
    return ConfidenceThreshold(
        threshold=threshold, min_accuracy=float(min_accuracy), share_below=float(below.mean()),
        accuracy_below=float(correct[below].mean()) if below.any() else None,
        accuracy_above=float(correct[~below].mean()) if (~below).any() else None)


# ---------------------------------------------------------------- all of it

@dataclasses.dataclass(frozen=True)
class Calibration:
    """What fit_calibration found on validation clips; to_dict() is JSON for zoo.json."""

    temperature: float
    confidence_threshold: float
    min_accuracy: float
    bins: int
    clips: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    share_low_confidence: float
    accuracy_low_confidence: float | None
    accuracy_confident: float | None
    fitted_on: str = "validation"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise CalibrationError(f"unknown calibration fields: {', '.join(unknown)}")
        return cls(**data)


def fit_calibration(logits_or_probs, labels, min_accuracy: float = MIN_ACCURACY,
                    bins: int = ECE_BINS, bounds: tuple[float, float] = T_BOUNDS,
                    kind: str = "auto", fitted_on: str = "validation") -> Calibration:
    """Temperature, then the low-confidence threshold on the calibrated probabilities, with
    NLL and ECE before and after, all on the same (validation) clips."""
    logits = _as_logits(logits_or_probs, kind)
    labels = _labels(labels, logits.shape[0], logits.shape[1])
    temperature = fit_temperature(logits, labels, bounds, kind="logits")
    before, after = softmax(logits), softmax(logits, temperature)
    low = confidence_threshold(after, labels, min_accuracy)
    return Calibration(
        temperature=temperature, confidence_threshold=low.threshold,
        min_accuracy=low.min_accuracy, bins=bins, clips=int(len(labels)),
        nll_before=nll(logits, labels), nll_after=nll(logits, labels, temperature),
        ece_before=expected_calibration_error(before, labels, bins),
        ece_after=expected_calibration_error(after, labels, bins),
        share_low_confidence=low.share_below, accuracy_low_confidence=low.accuracy_below,
        accuracy_confident=low.accuracy_above, fitted_on=fitted_on)
