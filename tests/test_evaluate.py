"""zoo.evaluate on a corpus folder agrees with evaluation on the TFRecords built from the same
files: both feed the exported SavedModel the same 16-bit samples, so per-clip probabilities and
every metric must match. Plus the JSON it writes and one-line errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import DEMO
from zoo.evaluation.clips import clips_from_tfrecords
from zoo.evaluation.evaluate import evaluate, main
from zoo.evaluation.metrics import full_report

JSON_KEYS = {"ua", "wa", "macro_f1", "n", "per_class", "per_corpus", "confusion", "labels"}


@pytest.fixture(scope="module")
def corpus_eval(tiny_run, tmp_path_factory):
    """The CLI on the demo corpus folder: (exit code, metrics JSON, predictions CSV)."""
    out = tmp_path_factory.mktemp("evaluate")
    code = main(["--model", str(tiny_run["export"]), "--corpus", f"ravdess={DEMO}",
                 "--out", str(out / "metrics.json"), "--predictions", str(out / "pred.csv"),
                 "--quiet"])
    return (code, json.loads((out / "metrics.json").read_text()),
            pd.read_csv(out / "pred.csv", dtype={"original_label": str}))


@pytest.fixture(scope="module")
def tfrecord_eval(tiny_run, demo_set):
    """evaluate() on the clips of all three splits of the TFRecord set, combined."""
    parts = [clips_from_tfrecords(demo_set, split) for split in ("train", "validation", "test")]
    rows = pd.concat([rows for rows, _ in parts], ignore_index=True)
    waves = [w for _, split_waves in parts for w in split_waves]
    return evaluate(tiny_run["export"], rows, waves)


def test_corpus_folder_run_writes_the_metrics_json(corpus_eval, tiny_run):
    code, metrics, pred = corpus_eval
    assert code == 0
    assert JSON_KEYS <= set(metrics)
    assert metrics["n"] == 98 and len(pred) == 98 and metrics["speakers"] == 7
    assert metrics["labels"] == (tiny_run["export"] / "assets" / "labels.txt").read_text().split()
    assert set(metrics["per_corpus"]) == {"ravdess"}
    assert np.asarray(metrics["confusion"]).shape == (7, 7)
    assert np.asarray(metrics["confusion"]).sum() == 98
    assert sum(c["support"] for c in metrics["per_class"].values()) == 98
    assert metrics["excluded_labels"] == []


def test_corpus_folder_and_tfrecords_give_the_same_predictions(corpus_eval, tfrecord_eval):
    _, _, from_corpus = corpus_eval
    _, from_tfrecords = tfrecord_eval
    assert sorted(from_corpus["id"]) == sorted(from_tfrecords["id"])
    a = from_corpus.set_index("id").sort_index()
    b = from_tfrecords.set_index("id").sort_index()
    probs = [c for c in a.columns if c.startswith("p_")]
    assert len(probs) == 7 and probs == [c for c in b.columns if c.startswith("p_")]
    np.testing.assert_allclose(a[probs].to_numpy(), b[probs].to_numpy(), atol=1e-5)
    for column in ("label", "pred", "predicted", "emotion", "speaker", "corpus"):
        assert (a[column] == b[column]).all(), column


def test_corpus_folder_and_tfrecords_give_the_same_metrics(corpus_eval, tfrecord_eval):
    _, from_corpus, _ = corpus_eval
    from_tfrecords, _ = tfrecord_eval
    for key in ("n", "ua", "wa", "macro_f1", "confusion", "labels", "per_class", "per_corpus"):
        assert_same(from_corpus[key], from_tfrecords[key], key)


def assert_same(a, b, where):
    """Equal structures; floats to 1e-9 (one side went through JSON)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, abs=1e-9), where
    else:
        assert a == b, where


def test_tfrecord_split_from_the_cli(corpus_eval, tiny_run, demo_set, tmp_path):
    _, _, from_corpus = corpus_eval
    out = tmp_path / "test.json"
    assert main(["--model", str(tiny_run["export"].parent), "--data", str(demo_set),
                 "--split", "test", "--out", str(out), "--predictions",
                 str(tmp_path / "test.csv")]) == 0
    metrics = json.loads(out.read_text())
    assert JSON_KEYS <= set(metrics) and metrics["n"] == 14 and metrics["speakers"] == 1
    assert metrics["model"] == str(tiny_run["export"]), "a model folder means its newest version"
    test = pd.read_csv(tmp_path / "test.csv").set_index("id").sort_index()
    same = from_corpus.set_index("id").loc[test.index]
    probs = [c for c in test.columns if c.startswith("p_")]
    np.testing.assert_allclose(test[probs].to_numpy(), same[probs].to_numpy(), atol=1e-5)
    # the metrics of a split are those of its clips in the corpus-folder run
    expected = full_report(same.reset_index(), metrics["labels"])
    for key in ("n", "ua", "wa", "macro_f1", "confusion", "per_class", "per_corpus"):
        assert_same(metrics[key], expected[key], key)


def test_missing_model_folder(demo_set, tmp_path, capsys):
    assert main(["--model", str(tmp_path / "nothing"), "--data", str(demo_set),
                 "--split", "test"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert str(tmp_path / "nothing") in err


def test_corpus_without_name(tmp_path, capsys):
    assert main(["--model", str(tmp_path), "--corpus", str(DEMO), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert "NAME=DIR" in err


def test_speaker_norm_is_refused_for_unnormalised_features(demo_set, tmp_path, capsys):
    """A model whose FeatureSpec says normalization 'none' has no statistics to swap in."""
    import json

    from pipelines.features.spec import mfcc_spec

    export = tmp_path / "mfcc_cnn" / "1"
    export.mkdir(parents=True)
    (export / "saved_model.pb").write_bytes(b"")  # never loaded: the check comes first
    (export / "zoo.json").write_text(json.dumps(
        {"labels": ["angry", "happy"],
         "feature_spec": mfcc_spec().replace(normalization="none").to_dict()}))
    assert main(["--model", str(export), "--data", str(demo_set), "--speaker-norm"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "normalization 'none'" in err
