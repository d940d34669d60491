"""The reliability outputs in exports (zoo.export.reliability): calibrated probabilities, logits,
speech_ratio and status on the serving graph, zoo.calibrate for exports made before them, and
what zoo.predict / zoo.evaluate make of them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from pipelines.common.tfenv import quiet_tensorflow

tf = quiet_tensorflow()

from zoo.export import calibrate  # noqa: E402
from zoo.evaluation import evaluate
from zoo.inference import predict
from zoo.export.layout import SIGNATURE_DEFAULT, SIGNATURE_LENGTH  # noqa: E402
from zoo.export.reliability import (Reliability, host_speech_ratios, of_export, statuses,  # noqa: E402
                             uncalibrated)
from zoo.export.check import check  # noqa: E402

from conftest import DEMO  # noqa: E402

SR = 16000


def _silence_and_tone(folder):
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(2 * SR) / SR
    sf.write(folder / "silence.wav", np.zeros(2 * SR, np.float32), SR)
    sf.write(folder / "tone.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR)
    speech = sorted((DEMO / "Actor_01").glob("*.flac"))[0]
    shutil.copy(speech, folder / speech.name)
    return speech.name


def _old_export(tiny_export, tmp_path):
    """A copy of the tiny export that says it predates the reliability outputs."""
    source, labels = tiny_export
    old = tmp_path / "old" / "mfcc_cnn" / "1"
    shutil.copytree(source, old)
    info = json.loads((old / "zoo.json").read_text())
    info.pop("reliability")
    (old / "zoo.json").write_text(json.dumps(info))
    return old, labels


def test_statuses_follow_the_thresholds():
    rel = Reliability(confidence_threshold=0.6)
    probs = np.array([[0.5, 0.5], [0.9, 0.1], [0.3, 0.7], [0.95, 0.05]])
    ratio = np.array([0.5, 0.5, 0.5, 0.01])
    assert statuses(probs, ratio, rel).tolist() == ["low_confidence", "ok", "ok", "no_speech"]
    p = np.array([[0.7, 0.2, 0.1]])
    logits = np.log(p)
    calibrated = np.exp(logits / 2.0) / np.exp(logits / 2.0).sum()
    np.testing.assert_allclose(uncalibrated(calibrated, 2.0), p, atol=1e-9)


def test_graph_outputs_and_calibration(tiny_export):
    """probabilities = softmax(logits / T); silence and a tone are no_speech, speech is not."""
    folder, labels = tiny_export
    info = json.loads((folder / "zoo.json").read_text())
    assert set(info["reliability"]) >= {"temperature", "confidence_threshold",
                                        "no_speech_threshold", "speech_activity"}
    loaded = tf.saved_model.load(str(folder))
    speech = sf.read(sorted((DEMO / "Actor_01").glob("*.flac"))[0], dtype="float32")[0]
    t = np.arange(2 * SR) / SR
    clips = [np.zeros(2 * SR, np.float32), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32),
             speech[:2 * SR]]
    out = loaded.signatures[SIGNATURE_LENGTH](waveform=tf.constant(np.stack(clips)),
                                              length=tf.constant([2 * SR] * 3, tf.int32))
    assert [s.decode() for s in out["status"].numpy()][:2] == ["no_speech", "no_speech"]
    assert out["status"].numpy()[2].decode() in ("ok", "low_confidence")
    ratio = out["speech_ratio"].numpy()
    assert ratio[0] == 0 and ratio[2] > 0.1
    np.testing.assert_allclose(ratio, host_speech_ratios(clips, of_export(info).speech),
                               atol=1e-6)
    logits, probs = out["logits"].numpy(), out["probabilities"].numpy()
    temperature = info["reliability"]["temperature"]
    expected = np.exp(logits / temperature)
    np.testing.assert_allclose(probs, expected / expected.sum(1, keepdims=True), atol=1e-5)
    assert [s.decode() for s in out["label"].numpy()] == [labels[i] for i in probs.argmax(1)]


def test_runner_takes_the_speech_ratio_from_the_graph(tiny_export, monkeypatch):
    """zoo.predict / zoo.evaluate use the speech_ratio the export's graph returns instead of
    computing it again beside the model."""
    from zoo.export import reliability
    from zoo.inference.savedmodel import SavedModelRunner

    runner = SavedModelRunner(tiny_export[0])
    speech = sf.read(sorted((DEMO / "Actor_01").glob("*.flac"))[0], dtype="float32")[0]
    clips = [np.zeros(SR, np.float32), speech[:3 * SR], speech[SR:2 * SR]]
    probs, ratios = runner.predict_with_speech(clips, batch_size=2)
    np.testing.assert_allclose(probs, runner.predict(clips), atol=1e-6)
    np.testing.assert_allclose(ratios, host_speech_ratios(clips, of_export(runner.info).speech),
                               atol=1e-6)
    assert ratios[0] == 0 and ratios[1] > 0.1

    def host(*_a, **_k):
        raise AssertionError("speech ratio computed again beside a graph that returns it")

    monkeypatch.setattr(reliability, "host_speech_ratios", host)
    ((_, window_probs, window_ratios),) = predict.predict_waveforms(runner, [clips[1]], 4.0, 4.0)
    np.testing.assert_allclose(window_ratios, ratios[1:2], atol=1e-6)


def test_zoo_calibrate_wraps_an_old_export(tiny_export, demo_set, tmp_path, capsys):
    old, labels = _old_export(tiny_export, tmp_path)
    assert calibrate.main(["--model", str(old), "--data", str(demo_set), "--quiet"]) == 0
    new = old.parent / "2"
    info = json.loads((new / "zoo.json").read_text())
    rel = info["reliability"]
    cal = info["metrics"]["calibration"]["plain"]
    assert rel["temperature"] == pytest.approx(cal["temperature"])
    assert info["calibrated_from"] == str(old) and (new / "model.keras").is_file()
    assert "## Reliability" in (new / "model_card.md").read_text()
    failed = [c.line() for c in check(new) if not c.ok]
    assert failed == []
    # same answers as the old graph before the temperature
    wave = sf.read(sorted((DEMO / "Actor_02").glob("*.flac"))[0], dtype="float32")[0]
    before = tf.saved_model.load(str(old)).signatures[SIGNATURE_DEFAULT](
        waveform=tf.constant(wave[None]))["probabilities"].numpy()
    after = tf.saved_model.load(str(new)).signatures[SIGNATURE_DEFAULT](
        waveform=tf.constant(wave[None]))
    np.testing.assert_allclose(np.exp(after["logits"].numpy()), before, atol=1e-5)
    np.testing.assert_allclose(after["probabilities"].numpy(),
                               uncalibrated(before, 1 / rel["temperature"]), atol=1e-5)
    # a calibrated export is not calibrated twice
    assert calibrate.main(["--model", str(new), "--data", str(demo_set), "--quiet"]) == 2
    assert "already has reliability outputs" in capsys.readouterr().err


def test_predict_reports_status_and_no_label_for_no_speech(tiny_export, tmp_path):
    name = _silence_and_tone(tmp_path / "clips")
    out = tmp_path / "pred.csv"
    assert predict.main(["--model", str(tiny_export[0]), str(tmp_path / "clips"), "--out",
                         str(out), "--quiet"]) == 0
    rows = pd.read_csv(out).set_index("path")
    by_name = {p.split("/")[-1]: r for p, r in rows.iterrows()}
    for silent in ("silence.wav", "tone.wav"):
        assert by_name[silent]["status"] == "no_speech"
        assert pd.isna(by_name[silent]["label"])
    assert by_name[name]["status"] in ("ok", "low_confidence")
    assert isinstance(by_name[name]["label"], str) and by_name[name]["speech_ratio"] > 0.1


def test_predict_on_an_old_export_still_gets_speech_status(tiny_export, tmp_path):
    old, _ = _old_export(tiny_export, tmp_path)
    _silence_and_tone(tmp_path / "clips")
    out = tmp_path / "pred.json"
    assert predict.main(["--model", str(old), str(tmp_path / "clips"), "--out", str(out),
                         "--quiet"]) == 0
    files = {f["path"].split("/")[-1]: f for f in json.loads(out.read_text())["files"]}
    assert files["silence.wav"]["status"] == "no_speech" and files["silence.wav"]["label"] is None


def test_evaluate_reports_ece_and_writes_the_diagram(tiny_run, demo_set, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert evaluate.main(["--model", str(tiny_run["export"]), "--data", str(demo_set),
                          "--out", str(out), "--quiet"]) == 0
    metrics = json.loads(out.read_text())
    rel = metrics["reliability"]
    assert rel["calibrated"] and rel["bins"] == 15
    assert 0 <= rel["ece_before"] <= 1 and 0 <= rel["ece_after"] <= 1
    assert sum(rel["status_counts"].values()) == metrics["n"]
    assert (tmp_path / "metrics_reliability.png").stat().st_size > 1000
    assert "ECE" in capsys.readouterr().out
