"""The SVM calibration baseline's pieces: folds by actor, per-speaker statistics, deltas."""

import numpy as np
import pandas as pd

from bench.svm_baseline import delta_stats, mean_std, per_speaker, ravdess_folds


def test_folds_deal_actors_by_number_and_skip_other_corpora():
    speakers = [f"ravdess_{i:02d}" for i in (12, 3, 1, 7, 20, 2, 16)] + ["tess_OAF", "savee_DC"]
    rows = pd.DataFrame({"speaker": speakers,
                         "corpus": ["ravdess"] * 7 + ["tess", "savee"]})
    folds = ravdess_folds(rows, folds=3)
    assert folds == [["ravdess_01", "ravdess_07", "ravdess_20"],
                     ["ravdess_02", "ravdess_12"], ["ravdess_03", "ravdess_16"]]
    assert ravdess_folds(rows[rows["corpus"] != "ravdess"]) == []


def test_per_speaker_standardises_within_each_speaker_only():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(5, 2, (6, 3)), rng.normal(-3, 0.5, (4, 3))])
    speakers = np.array(["a"] * 6 + ["b"] * 4)
    out = per_speaker(x, speakers)
    for s in "ab":
        np.testing.assert_allclose(out[speakers == s].mean(axis=0), 0, atol=1e-9)
        np.testing.assert_allclose(out[speakers == s].std(axis=0), 1, atol=1e-4)


def test_clip_statistics_shapes_and_values():
    ramp = np.arange(10, dtype=float)[:, None] * np.array([[1.0, -2.0]])   # [T=10, C=2]
    single = np.ones((1, 2))
    stats = mean_std([ramp, single])
    np.testing.assert_allclose(stats[0], [4.5, -9.0, ramp[:, 0].std(), ramp[:, 1].std()])
    deltas = delta_stats([ramp, single])
    np.testing.assert_allclose(deltas[0], [1.0, 2.0, 0.0, 0.0])
    np.testing.assert_allclose(deltas[1], 0.0)                # one frame: no change, no NaN


def test_frames_per_speaker_uses_all_frames_of_the_speaker():
    from bench.svm_baseline import frames_per_speaker

    a1, a2 = np.full((3, 2), 1.0), np.full((1, 2), 5.0)    # speaker a: frames 1, 1, 1, 5
    b = np.array([[2.0, 4.0], [4.0, 8.0]])
    out = frames_per_speaker([a1, b, a2], np.array(["a", "b", "a"]))
    both = np.concatenate([out[0], out[2]])
    np.testing.assert_allclose(both.mean(axis=0), 0, atol=1e-9)   # over the speaker's frames,
    np.testing.assert_allclose(out[0][0], [-1 / np.sqrt(3)] * 2, atol=1e-5)  # not per clip
    np.testing.assert_allclose(out[1], [[-1, -1], [1, 1]], atol=1e-5)
