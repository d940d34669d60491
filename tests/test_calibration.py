"""zoo.export.calibration on synthetic predictions whose true calibration is known: temperature
scaling recovers the temperature that made them, ECE is ~0 for calibrated and large for
over-confident probabilities, the reliability diagram is written, the low-confidence threshold
sits where the accuracy crosses its level."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zoo.export import calibration as C

CLASSES = 7


def sample(n: int, true_temperature: float, seed: int = 0, scale: float = 3.0):
    """Logits z and labels drawn from softmax(z / true_temperature): softmax(z) is
    over-confident for a temperature > 1, timid for < 1, calibrated for 1."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, scale, (n, CLASSES))
    truth = C.softmax(logits, true_temperature)
    labels = (truth.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return logits, labels


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_temperature_is_recovered(true_temperature):
    logits, labels = sample(20000, true_temperature)
    assert C.fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.06)


def test_probabilities_give_the_same_temperature_as_logits():
    logits, labels = sample(5000, 2.0, seed=1)
    from_logits = C.fit_temperature(logits, labels, kind="logits")
    probs = C.softmax(logits).astype(np.float32)
    assert C.fit_temperature(probs, labels) == pytest.approx(from_logits, rel=1e-3)
    shifted = logits + np.random.default_rng(2).normal(size=(len(logits), 1))  # per-row constant
    assert C.fit_temperature(shifted, labels, kind="logits") == pytest.approx(from_logits,
                                                                             rel=1e-6)


def test_exact_zero_probabilities_are_safe():
    logits, labels = sample(3000, 4.0, seed=3, scale=40.0)
    probs = C.softmax(logits).astype(np.float32)
    assert (probs == 0).any()  # underflow, as a float32 softmax gives
    temperature = C.fit_temperature(probs, labels)
    assert np.isfinite(temperature) and temperature > 1
    calibrated = C.apply_temperature(probs, temperature)
    assert np.isfinite(calibrated).all() and (calibrated > 0).all()
    np.testing.assert_array_equal(calibrated.argmax(axis=1), probs.argmax(axis=1))


def test_temperature_stays_in_its_bounds():
    labels = np.arange(200) % CLASSES
    confident_and_right = np.eye(CLASSES)[labels] * 10.0
    assert C.fit_temperature(confident_and_right, labels, kind="logits") == C.T_BOUNDS[0]
    assert C.fit_temperature(confident_and_right, labels, bounds=(0.5, 3.0),
                             kind="logits") == 0.5


def test_ece_of_calibrated_and_over_confident_probabilities():
    logits, labels = sample(20000, 1.0, seed=4)
    assert C.expected_calibration_error(C.softmax(logits), labels) < 0.015
    logits, labels = sample(20000, 3.0, seed=5)
    over = C.softmax(logits)
    assert C.expected_calibration_error(over, labels) > 0.2
    fixed = C.apply_temperature(over, C.fit_temperature(over, labels))
    assert C.expected_calibration_error(fixed, labels) < 0.015


def test_ece_by_hand():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])
    # bins of 0.5: all in (0.5, 1.0]; accuracy 0.75, confidence 0.75 -> 0
    assert C.expected_calibration_error(probs, labels, bins=2) == pytest.approx(0.0)
    # 10 bins: (0.8, 0.9] acc 0.5 conf 0.9; (0.5, 0.6] acc 1.0 conf 0.6
    assert C.expected_calibration_error(probs, labels, bins=10) == pytest.approx(
        0.5 * 0.4 + 0.5 * 0.4)
    rel = C.reliability(probs, labels, bins=10)
    assert rel["count"][8] == 2 and rel["count"][5] == 2 and sum(rel["count"]) == 4
    assert rel["accuracy"][0] is None and rel["edges"][0] == 0.0 and rel["edges"][-1] == 1.0


def test_reliability_diagram_png(tmp_path):
    logits, labels = sample(2000, 2.0, seed=6)
    path = tmp_path / "figs" / "reliability.png"
    rel = C.write_reliability_diagram(C.softmax(logits), labels, path, title="synthetic")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert rel["ece"] == pytest.approx(C.expected_calibration_error(C.softmax(logits), labels))


def test_confidence_threshold_where_accuracy_crosses_its_level():
    rng = np.random.default_rng(7)
    confidence = rng.uniform(0.5, 1.0, 20000)
    right = rng.random(20000) < confidence  # calibrated: accuracy = confidence
    labels = np.where(right, 0, 1)  # class 0 is always the predicted one
    probs = np.stack([confidence, 1 - confidence], axis=1)
    low = C.confidence_threshold(probs, labels, min_accuracy=0.6)
    assert low.threshold == pytest.approx(0.6, abs=0.03)
    assert low.accuracy_below < 0.6 < low.accuracy_above
    assert C.confidence_threshold(probs, labels, min_accuracy=0.3).threshold == 0.0
    always_wrong = 1 - probs.argmax(axis=1)
    assert C.confidence_threshold(probs, always_wrong).threshold == 1.0


def test_fit_calibration_is_json(tmp_path):
    logits, labels = sample(4000, 2.0, seed=8)
    cal = C.fit_calibration(C.softmax(logits).astype(np.float32), labels)
    assert cal.temperature == pytest.approx(2.0, rel=0.1)
    assert cal.ece_after < cal.ece_before and cal.nll_after < cal.nll_before
    assert 0 <= cal.confidence_threshold <= 1 and cal.fitted_on == "validation"
    again = C.Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again == cal


@pytest.mark.parametrize("probs, labels, message", [
    (np.ones((3, 1)), [0, 0, 0], r"\[clips, classes\] with >= 2 classes"),
    (np.full((2, 2), 0.5), [0], "one integer per row"),
    (np.full((2, 2), 0.5), [0, 2], r"indices in \[0, 2\)"),
    (np.array([[0.5, np.nan]]), [0], "NaN or Inf"),
    (np.array([[0.7, 0.7]]), [0], "summing to 1"),
    (np.zeros((0, 3)), [], "no clips")])
def test_bad_input_is_one_line(probs, labels, message):
    with pytest.raises(C.CalibrationError, match=message) as err:
        C.expected_calibration_error(probs, labels)
    assert "\n" not in str(err.value)
