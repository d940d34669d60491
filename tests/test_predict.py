"""zoo.predict: windows of long recordings, per-window rows equal to predicting each window on
its own, folders with unreadable files (reported, the rest predicted, exit 1), usage errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from pipelines.common.tfenv import quiet_tensorflow

tf = quiet_tensorflow()

from zoo.inference import predict  # noqa: E402
from zoo.export.layout import SIGNATURE_DEFAULT  # noqa: E402
from zoo.export.check import synthetic_clip  # noqa: E402

SR = 16000


@pytest.fixture(scope="module")
def runner(tiny_export):
    from zoo.inference.savedmodel import SavedModelRunner

    return SavedModelRunner(tiny_export[0].parent)  # model folder: the highest version


def write(path, seconds, seed=0, rate=SR, channels=1):
    wave = synthetic_clip(seconds, sample_rate=rate, seed=seed)
    if channels > 1:
        wave = np.stack([wave] * channels, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, rate, subtype="PCM_16")
    return path


def test_window_bounds():
    assert predict.window_bounds(100, 400, 200) == [(0, 100)]
    assert predict.window_bounds(400, 400, 200) == [(0, 400)]
    assert predict.window_bounds(800, 400, 400) == [(0, 400), (400, 800)]
    assert predict.window_bounds(900, 400, 400) == [(0, 400), (400, 800), (500, 900)]
    assert predict.window_bounds(900, 400, 200) == [(0, 400), (200, 600), (400, 800),
                                                   (500, 900)]
    with pytest.raises(ValueError):
        predict.window_bounds(900, 0, 200)


def test_windowed_prediction_equals_predicting_each_window(runner, tmp_path):
    path = write(tmp_path / "long.wav", 10.5, seed=4)
    (result,) = predict.predict_files(runner, [path], window=4.0, hop=2.0, workers=1,
                                      progress=False)
    assert not result.error and result.windowed
    assert [(s / SR, e / SR) for s, e in result.bounds] == \
        [(0, 4), (2, 6), (4, 8), (6, 10), (6.5, 10.5)]
    wave = sf.read(path, dtype="float32")[0]
    signature = runner.loaded.signatures[SIGNATURE_DEFAULT]
    for (s, e), probs in zip(result.bounds, result.window_probs):
        alone = signature(waveform=tf.constant(wave[None, s:e]))["probabilities"].numpy()[0]
        np.testing.assert_allclose(probs, alone, atol=1e-5)
    np.testing.assert_allclose(result.probabilities, result.window_probs.mean(axis=0))
    assert np.abs(result.window_probs[0] - result.window_probs[2]).max() > 1e-4

    rows = predict.to_rows([result], runner.labels)
    assert rows["kind"].tolist() == ["file"] + ["window"] * 5
    assert rows.loc[0, "label"] == runner.labels[int(result.probabilities.argmax())]
    data = predict.to_json([result], runner.labels, {"model": "m"})
    assert len(data["files"][0]["windows"]) == 5 and data["failed"] == []
    assert set(data["files"][0]["probabilities"]) == set(runner.labels)


def test_short_recording_is_one_prediction(runner, tmp_path):
    path = write(tmp_path / "short.wav", 2.5)
    (result,) = predict.predict_files(runner, [path], window=4.0, workers=1, progress=False)
    assert result.bounds == [(0, int(2.5 * SR))] and not result.windowed
    wave = sf.read(path, dtype="float32")[0]
    alone = runner.loaded.signatures[SIGNATURE_DEFAULT](waveform=tf.constant(wave[None]))
    np.testing.assert_allclose(result.probabilities, alone["probabilities"].numpy()[0],
                               atol=1e-5)


def test_folder_with_bad_files(tiny_export, tmp_path, capsys):
    folder = tmp_path / "in"
    good = [write(folder / "a.wav", 1.5, seed=1),
            write(folder / "sub" / "b.wav", 5.0, seed=2, rate=44100, channels=2),
            write(folder / "sub" / "c.flac", 2.0, seed=3)]
    (folder / "sub" / "noise.wav").write_bytes(np.random.default_rng(0).bytes(3000))
    (folder / "empty.flac").write_bytes(b"")
    (folder / "notes.txt").write_text("not audio, not looked at\n")
    (folder / "._a.wav").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork
    out = tmp_path / "pred.csv"
    code = predict.main(["--model", str(tiny_export[0].parent), str(folder), "--out", str(out),
                         "--workers", "1", "--quiet"])
    assert code == 1
    captured = capsys.readouterr()
    assert f"failed: {folder / 'sub' / 'noise.wav'}: not an audio file" in captured.err
    assert f"failed: {folder / 'empty.flac'}: empty file (0 bytes)" in captured.err
    assert "ignored:" in captured.err and "resource fork" in captured.err
    assert "3 of 5 files predicted" in captured.out

    table = pd.read_csv(out, keep_default_na=False)
    files = table[table["kind"] == "file"].set_index("path")
    assert set(files.index) == {str(p) for p in good} | {str(folder / "sub" / "noise.wav"),
                                                         str(folder / "empty.flac")}
    for p in good:
        row = files.loc[str(p)]
        assert row["error"] == "" and row["label"] in tiny_export[1]
        probs = np.array([float(row[f"p_{name}"]) for name in tiny_export[1]])
        np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-4)
    assert files.loc[str(folder / "empty.flac"), "error"] == "empty file (0 bytes)"
    windows = table[table["kind"] == "window"]
    assert set(windows["path"]) == {str(good[1])}  # only the 5 s file is longer than 4 s
    assert len(windows) == 2

    only_good = tmp_path / "pred.json"
    assert predict.main(["--model", str(tiny_export[0]), str(good[0]), str(good[2]),
                         "--out", str(only_good), "--workers", "1", "--quiet"]) == 0
    data = json.loads(only_good.read_text())
    assert [f["path"] for f in data["files"]] == [str(good[0]), str(good[2])]
    assert data["failed"] == [] and data["labels"] == tiny_export[1]


@pytest.mark.parametrize("extra, message", [
    (["--window", "0"], "must be positive"),
    (["--window", "2", "--hop", "3"], "would skip audio"),
    (["--out", "x.txt"], ".csv or .json expected"),
])
def test_usage_errors_exit_2(tiny_export, tmp_path, capsys, extra, message):
    clip = write(tmp_path / "a.wav", 1.0)
    assert predict.main(["--model", str(tiny_export[0]), str(clip), *extra]) == 2
    assert message in capsys.readouterr().err


def test_missing_model_and_empty_folder_exit_2(tiny_export, tmp_path, capsys):
    clip = write(tmp_path / "a.wav", 1.0)
    assert predict.main(["--model", str(tmp_path / "nope"), str(clip)]) == 2
    assert "no such export folder, model or family" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert predict.main(["--model", str(tiny_export[0]), str(tmp_path / "empty")]) == 2
    assert "no audio files found" in capsys.readouterr().err
