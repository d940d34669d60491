"""Training with the pooled embedding standardised per speaker (`zoo.train --speaker-groups G`):
the GroupStandardize layer, batches grouped by speaker, and a run whose export serves the trained
per-speaker head through serving_by_speaker and a re-fitted plain head through serving_default."""

import json

import numpy as np
import pytest

from conftest import TINY
from test_train import one_line_error, train_argv


def test_group_standardize_is_per_speaker_standardisation_of_each_group():
    import keras

    from zoo.models.layers import GroupStandardize
    from zoo.training.embedding_heads import speaker_standardize_np

    rng = np.random.default_rng(0)
    x = (rng.normal(2.0, 3.0, (12, 5)) * rng.uniform(0.1, 10, 5)).astype(np.float32)
    layer = GroupStandardize(4)
    got = np.asarray(layer(x))
    expected = speaker_standardize_np(x, np.repeat(["a", "b", "c"], 4))
    np.testing.assert_allclose(got, expected, atol=1e-4)
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert clone.group_size == 4 and clone.epsilon == layer.epsilon
    with pytest.raises(ValueError, match="at least 2"):
        GroupStandardize(1)


def test_batches_are_runs_of_one_speaker(demo_set):
    from pipelines.records.dataset import make_dataset

    speakers = []
    for _, _, meta in make_dataset(demo_set, "train", batch_size=8, with_meta=True,
                                   speaker_groups=4):
        batch = [s.decode() for s in meta["speaker"].numpy()]
        assert len(batch) % 4 == 0
        groups = [batch[i:i + 4] for i in range(0, len(batch), 4)]
        assert all(len(set(g)) == 1 for g in groups), groups
        speakers += [g[0] for g in groups]
    assert len(set(speakers)) > 1  # every speaker with 4+ clips contributes groups
    with pytest.raises(ValueError, match="not a multiple"):
        make_dataset(demo_set, "train", batch_size=6, speaker_groups=4)


@pytest.fixture(scope="module")
def grouped_run(demo_set, tmp_path_factory):
    from zoo.training.train import main

    base = tmp_path_factory.mktemp("grouped")
    argv = train_argv(demo_set, base / "run", base / "savedmodels", "--speaker-groups", "4",
                      "--batch-size", "8", epochs=2)
    assert main(argv) == 0
    return {"run": base / "run", "export": base / "savedmodels" / "mfcc_cnn" / "1"}


def test_grouped_run_exports_both_paths(grouped_run):
    import keras

    import zoo.models.layers  # noqa: F401
    from zoo.export.layout import SIGNATURE_SPEAKER

    metrics = json.loads((grouped_run["run"] / "metrics.json").read_text())
    assert set(metrics["speaker_norm"]) == {"validation", "test"}
    info = json.loads((grouped_run["export"] / "zoo.json").read_text())
    assert SIGNATURE_SPEAKER in info["signatures"] and info["speaker_groups"] == 4
    head = info["speaker_head"]
    assert head["embedding_input_of"] == "speaker_standardize"
    assert head["embedding_dim"] == 2 * TINY["filters"][-1]  # mean and max pooling
    assert head["plain"]["l2"] in [t["l2"] for t in head["plain"]["tried"]]
    assert head["speaker"] == {"trained_with_speaker_groups": 4}
    card = (grouped_run["export"] / "model_card.md").read_text()
    assert "--speaker-groups 4" in card and "serving_by_speaker" in card
    assert "test, embeddings standardised per speaker" in card
    trained = keras.saving.load_model(grouped_run["run"] / "model.keras", safe_mode=True)
    assert trained.get_layer("speaker_standardize").group_size == 4
    plain = keras.saving.load_model(grouped_run["export"] / "model.keras", safe_mode=True)
    assert "speaker_standardize" not in [layer.name for layer in plain.layers]


def test_served_figures_equal_the_runs(grouped_run, demo_set):
    """The export, evaluated plain and per speaker through its signatures, reproduces the run's
    own test figures (computed with the Keras pieces)."""
    from zoo.evaluation.clips import clips_from_tfrecords
    from zoo.evaluation.evaluate import evaluate

    metrics = json.loads((grouped_run["run"] / "metrics.json").read_text())
    rows, waves = clips_from_tfrecords(demo_set, "test")
    plain, _ = evaluate(grouped_run["export"], rows, waves)
    assert plain["ua"] == pytest.approx(metrics["test"]["ua"])
    by_speaker, _ = evaluate(grouped_run["export"], rows, waves, speaker_norm=True)
    assert by_speaker["normalization"] == "per speaker (embeddings)"
    assert by_speaker["ua"] == pytest.approx(metrics["speaker_norm"]["test"]["ua"])


@pytest.mark.parametrize("extra, message", [
    (["--speaker-groups", "3"], "--batch-size 32 is not a multiple of --speaker-groups 3"),
    (["--speaker-groups", "1"], "at least 2 clips"),
    (["--speaker-groups", "4", "--speaker-norm", "1", "--spec", 'normalization="utterance"'],
     "choose one"),
])
def test_bad_speaker_groups_are_one_line_errors(demo_set, tmp_path, capsys, extra, message):
    from zoo.training.train import main

    assert main(train_argv(demo_set, tmp_path / "run", tmp_path / "savedmodels", *extra)) == 2
    assert message in one_line_error(capsys)


def test_speaker_groups_are_for_feature_models(demo_set, tmp_path, capsys):
    from zoo.training.train import main

    argv = ["--model", "hubert_cnn", "--data", str(demo_set), "--speaker-groups", "4",
            "--run-dir", str(tmp_path / "run")]
    assert main(argv) == 2
    assert "hubert_cnn takes embedding input" in one_line_error(capsys)
