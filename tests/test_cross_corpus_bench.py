"""The leave-one-corpus-out benchmarks' pieces: sample weights, per-clip block normalisation,
validation speakers, and the results file that keeps earlier runs' rows."""

import json

import numpy as np
import pytest

from bench import _common
from bench.cross_corpus import merged
from bench.cross_corpus_probe import WIDTH, clip_norm, inputs, validation_speakers, weights


def test_class_weights_give_every_class_the_same_total():
    y = np.array([0] * 6 + [1] * 3 + [2] * 1)
    w = weights(y, np.array(["a"] * 10), "class")
    totals = [w[y == c].sum() for c in range(3)]
    assert totals == pytest.approx([totals[0]] * 3)
    assert w.mean() == pytest.approx(1.0)


def test_corpus_x_class_weights_give_every_corpus_and_class_in_it_the_same_total():
    y = np.array([0, 0, 0, 0, 1, 1, 0, 1, 2])
    corpora = np.array(["big"] * 6 + ["small"] * 3)
    w = weights(y, corpora, "corpus x class")
    assert w[corpora == "big"].sum() == pytest.approx(w[corpora == "small"].sum())
    big = corpora == "big"
    assert w[big & (y == 0)].sum() == pytest.approx(w[big & (y == 1)].sum())
    small = corpora == "small"
    cells = [w[small & (y == c)].sum() for c in range(3)]
    assert cells == pytest.approx([cells[0]] * 3)
    assert w.mean() == pytest.approx(1.0)


def test_clip_norm_standardises_each_block_and_forgets_a_blocks_level_and_scale():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4 * WIDTH))
    out = clip_norm(x).reshape(3, 4, WIDTH)
    assert np.allclose(out.mean(-1), 0, atol=1e-9)
    assert np.allclose(out.std(-1), 1, atol=1e-4)
    shifted = x.reshape(3, 4, WIDTH) * np.array([2.0, 0.5, 3.0, 1.0])[None, :, None] + 7.0
    assert np.allclose(clip_norm(shifted.reshape(3, -1)), clip_norm(x), atol=1e-4)


def test_probe_inputs_pick_means_and_middle_states():
    states = 5
    x = np.arange(2 * states * 2 * WIDTH, dtype=float).reshape(2, -1)
    variants = inputs(x, states)
    blocks = x.reshape(2, states, 2, WIDTH)
    assert np.array_equal(variants["means"], blocks[:, :, 0].reshape(2, -1))
    assert np.array_equal(variants["states 1-3"][:, :WIDTH], blocks[:, 1, 0])
    assert variants["states 1-3"].shape == (2, 3 * 2 * WIDTH)


def test_validation_speakers_never_come_from_the_held_out_corpus():
    assert validation_speakers("ravdess") == ["nemo_IC0", "savee_JE"]
    assert validation_speakers("nemo") == ["ravdess_08", "ravdess_17"]
    assert "savee_JE" not in validation_speakers("tess")


def _row(held_out, recipe, train, ua):
    return {"held_out": held_out, "recipe": recipe, "train_corpora": train, "plain": {"ua": ua}}


def test_results_of_earlier_runs_are_kept_and_a_rerun_replaces_its_own_rows(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    old = [_row("ravdess", "whisper", ["tess", "savee", "nemo"], 0.4),
           _row("ravdess", "mfcc_cnn", ["tess", "savee", "nemo"], 0.3),
           _row("tess", "whisper", ["ravdess", "savee"], 0.2)]
    (tmp_path / "cross_corpus.json").write_text(json.dumps({"results": old}))
    new = [_row("tess", "mfcc_cnn", ["ravdess", "savee", "nemo"], 0.25),
           _row("ravdess", "mfcc_cnn", ["tess", "savee", "nemo"], 0.35)]
    rows = merged(new)
    assert [(r["held_out"], r["recipe"], r["plain"]["ua"]) for r in rows] == [
        ("ravdess", "whisper", 0.4), ("ravdess", "mfcc_cnn", 0.35),
        ("tess", "whisper", 0.2), ("tess", "mfcc_cnn", 0.25)]


def test_first_run_has_no_earlier_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    row = _row("nemo", "whisper", ["ravdess", "tess", "savee"], 0.42)
    assert merged([row]) == [row]
