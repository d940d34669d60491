"""zoo.refit_head: heads re-fitted on a trained model's frozen embeddings, plain and per speaker,
exported with serving_by_speaker."""

import json
import shutil
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

from conftest import DEMO


def _args(model, data, export, **kw):
    from zoo.training.refit_head import MIN_CLIPS

    return Namespace(model=str(model), data=str(data), export=str(export), version=None,
                     l2=kw.pop("l2", [1e-3, 1e-1]), min_clips=kw.pop("min_clips", MIN_CLIPS),
                     batch_size=16, seed=0, quiet=True, **kw)


@pytest.fixture(scope="module")
def refit_run(tiny_run, demo_set, tmp_path_factory):
    """The tiny trained mfcc_cnn re-fitted on the demo set: {'metrics', 'export'}."""
    from zoo.training.refit_head import refit

    base = tmp_path_factory.mktemp("refit")
    metrics = refit(_args(tiny_run["export"], demo_set, base))
    return {"metrics": metrics, "export": Path(metrics["export"])}


def test_graph_standardisation_matches_numpy_and_ignores_order():
    import tensorflow as tf

    from zoo.export.savedmodel import speaker_standardize
    from zoo.training.refit_head import speaker_standardize_np

    rng = np.random.default_rng(0)
    emb = rng.normal(3.0, 2.0, (30, 5)).astype(np.float32) * rng.uniform(0.1, 10, 5)
    speakers = np.array(["a", "b", "c"] * 10)
    expected = speaker_standardize_np(emb, speakers)
    got = speaker_standardize(tf.constant(emb), tf.constant(speakers)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)
    for s in "abc":  # every speaker's rows: mean 0, standard deviation 1
        np.testing.assert_allclose(expected[speakers == s].mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(expected[speakers == s].std(axis=0), 1, atol=1e-4)
    order = rng.permutation(30)
    shuffled = speaker_standardize(tf.constant(emb[order]), tf.constant(speakers[order])).numpy()
    np.testing.assert_allclose(shuffled, got[order], atol=1e-5)


def test_refit_exports_a_new_version_with_both_heads(refit_run, tiny_run):
    from zoo.export.layout import SIGNATURE_SPEAKER

    out = refit_run["export"]
    info = json.loads((out / "zoo.json").read_text())
    assert info["name"] == "mfcc_cnn" and info["version"] == 1
    assert SIGNATURE_SPEAKER in info["signatures"]
    head = info["speaker_head"]
    assert head["source"] == str(tiny_run["export"]) and head["embedding_dim"] == 8
    for key in ("plain", "speaker"):  # every L2 strength tried, the best by validation kept
        tried = head[key]["tried"]
        assert [t["l2"] for t in tried] == [1e-3, 1e-1]
        assert head[key]["l2"] == max(tried, key=lambda t: t["validation_ua"])["l2"]
    metrics = refit_run["metrics"]
    assert set(metrics["speaker_norm"]) == {"validation", "test"}
    assert info["metrics"]["test"]["ua"] == metrics["test"]["ua"]
    card = (out / "model_card.md").read_text()
    assert "serving_by_speaker" in card and "Test speakers (never seen in training)" in card
    assert "test, embeddings standardised per speaker" in card
    assert (out / "speaker_head.keras").is_file() and (out / "model.keras").is_file()


def test_export_passes_the_serving_checks(refit_run):
    from zoo.export.check import check

    failed = [c.line() for c in check(refit_run["export"]) if not c.ok]
    assert not failed, failed


def test_by_speaker_signature_equals_the_keras_pieces(refit_run):
    """serving_by_speaker == trunk of model.keras -> per-speaker standardisation (numpy) ->
    speaker_head.keras, on real clips of two speakers in one request."""
    import keras
    import tensorflow as tf

    import zoo.models.layers  # noqa: F401
    from pipelines.audio.decode import load
    from pipelines.features.extract import compute_many
    from zoo.inference.savedmodel import SavedModelRunner
    from zoo.training.refit_head import speaker_standardize_np

    out = refit_run["export"]
    runner = SavedModelRunner(out)
    files = sorted((DEMO / "Actor_01").glob("*.flac"))[:5] + \
        sorted((DEMO / "Actor_02").glob("*.flac"))[:4]
    waves = [load(f) for f in files]
    speakers = ["Actor_01"] * 5 + ["Actor_02"] * 4
    served = runner.predict_by_speaker(waves, speakers)
    # the served probabilities are calibrated (zoo.export.reliability): undo the temperature
    from zoo.export.reliability import of_export, uncalibrated

    served = uncalibrated(served, of_export(runner.info).speaker_temperature)

    model = keras.saving.load_model(out / "model.keras", safe_mode=True)
    head = keras.saving.load_model(out / "speaker_head.keras", safe_mode=True)
    trunk = keras.Model(model.inputs, model.get_layer("embedding_scale").input)
    emb = np.concatenate([np.asarray(trunk(tf.constant(f[None]), training=False))
                          for f in compute_many(waves, runner.spec)])
    expected = np.asarray(head(speaker_standardize_np(emb, speakers), training=False))
    np.testing.assert_allclose(served, expected, atol=1e-4)
    # the plain path is the model.keras that Grad-CAM explains
    assert model.get_layer("conv_block_4") is not None
    assert model.get_layer("classifier").output.shape[-1] == len(runner.labels)


def test_by_speaker_bad_request_is_one_clear_error(refit_run):
    import tensorflow as tf

    from zoo.export.layout import SIGNATURE_SPEAKER

    loaded = tf.saved_model.load(str(refit_run["export"]))
    sig = loaded.signatures[SIGNATURE_SPEAKER]
    wave = tf.zeros([2, 8000]) + 0.01
    with pytest.raises(tf.errors.InvalidArgumentError, match="one id per waveform row"):
        sig(waveform=wave, length=tf.constant([8000, 8000]), speaker=tf.constant(["a"]))


def test_two_step_signatures_give_the_by_speaker_answers(refit_run):
    """The runner's two-step path (serving_embedding in small batches, statistics here, then
    serving_with_speaker_stats on the embeddings) equals one serving_by_speaker request per
    group of clips, for whole speakers and for groups of 3."""
    import tensorflow as tf

    from pipelines.audio.decode import load
    from zoo.inference.savedmodel import SavedModelRunner, padded
    from zoo.export.layout import SIGNATURE_SPEAKER

    runner = SavedModelRunner(refit_run["export"])
    assert runner.two_step
    files = sorted((DEMO / "Actor_01").glob("*.flac"))[:7] + \
        sorted((DEMO / "Actor_02").glob("*.flac"))[:5]
    waves = [load(f) for f in files]
    speakers = np.array(["Actor_01"] * 7 + ["Actor_02"] * 5)
    for group_size in (0, 3):
        two_step = runner.predict_by_speaker(waves, speakers, group_size=group_size,
                                             batch_size=4)
        expected = np.zeros_like(two_step)
        rng = np.random.default_rng(0)  # the runner's dealing of clips into groups
        for speaker in ("Actor_01", "Actor_02"):
            idx = np.flatnonzero(speakers == speaker)
            if group_size:
                idx = rng.permutation(idx)
            for part in ([idx[i:i + group_size] for i in range(0, len(idx), group_size)]
                         if group_size else [idx]):
                batch, length = padded(waves, part)
                expected[part] = runner.loaded.signatures[SIGNATURE_SPEAKER](
                    waveform=tf.constant(batch), length=tf.constant(length),
                    speaker=tf.constant([speaker] * len(part)))["probabilities"].numpy()
        np.testing.assert_allclose(two_step, expected, atol=1e-4)


def test_speaker_stats_bad_request_is_one_clear_error(refit_run):
    import tensorflow as tf

    from zoo.export.layout import SIGNATURE_SPEAKER_STATS

    loaded = tf.saved_model.load(str(refit_run["export"]))
    sig = loaded.signatures[SIGNATURE_SPEAKER_STATS]
    dim = json.loads((refit_run["export"] / "zoo.json").read_text())["speaker_head"][
        "embedding_dim"]
    emb = tf.ones([2, dim])
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"embedding_std: \\[batch, {dim}\\]"):
        sig(embedding=emb, embedding_mean=tf.zeros([2, dim]), embedding_std=tf.ones([2, dim + 1]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"embedding: \\[batch, {dim}\\]"):
        sig(embedding=tf.ones([2, dim + 1]), embedding_mean=tf.zeros([2, dim]),
            embedding_std=tf.ones([2, dim]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="embedding_std: negative"):
        sig(embedding=emb, embedding_mean=tf.zeros([2, dim]), embedding_std=-tf.ones([2, dim]))


def test_evaluate_speaker_norm_goes_through_serving_by_speaker(refit_run, demo_set, capsys):
    """zoo.evaluate --speaker-norm on the export reproduces the refit's own per-speaker figures
    (Keras path) through the SavedModel, and plain evaluation the plain ones."""
    from zoo.evaluation.clips import clips_from_tfrecords
    from zoo.evaluation.evaluate import evaluate

    rows, waves = clips_from_tfrecords(demo_set, "test")
    metrics, _ = evaluate(refit_run["export"], rows, waves, speaker_norm=True)
    assert metrics["normalization"] == "per speaker (embeddings)"
    assert metrics["ua"] == pytest.approx(refit_run["metrics"]["speaker_norm"]["test"]["ua"])
    assert "warning" in capsys.readouterr().err  # 14 test clips < 20 per speaker
    # requests of k clips per speaker: k >= the speaker's clips is the single request again
    # (shuffled: the statistics do not depend on the order); small k differs
    whole, _ = evaluate(refit_run["export"], rows, waves, speaker_norm=True, speaker_group=100)
    assert whole["normalization"] == "per speaker (embeddings, requests of 100 clips)"
    assert whole["ua"] == pytest.approx(metrics["ua"])
    pairs, pred = evaluate(refit_run["export"], rows, waves, speaker_norm=True, speaker_group=2)
    _, single = evaluate(refit_run["export"], rows, waves, speaker_norm=True)
    assert not np.allclose(pred.filter(like="p_").to_numpy(), single.filter(like="p_").to_numpy())
    plain, _ = evaluate(refit_run["export"], rows, waves)
    assert plain["normalization"] == "none"
    assert plain["ua"] == pytest.approx(refit_run["metrics"]["test"]["ua"])


def test_cli_errors_are_one_line(refit_run, tiny_run, demo_set, tmp_path, capsys):
    from zoo.training.refit_head import main

    cases = [
        (["--model", str(tmp_path / "nothing"), "--data", str(demo_set)], "neither a SavedModel"),
        (["--model", str(refit_run["export"]), "--data", str(demo_set)], "already has a re-fitted"),
        (["--model", str(tiny_run["export"]), "--data", str(tmp_path)], "schema.json"),
    ]
    from pipelines.records.build import build
    from pipelines.records.tfrecord import open_set

    trained = open_set(demo_set).schema["splits"]["train"]["speakers"]
    leaky = tmp_path / "leaky"
    build([f"ravdess={DEMO}"], leaky, validation=0.15, test=0.0, test_speakers=trained[:1],
          progress=False, workers=1)
    cases.append((["--model", str(tiny_run["export"]), "--data", str(leaky)],
                  f"held-out speaker(s) {trained[0]} were in the training split"))
    no_keras = tmp_path / "copy" / "mfcc_cnn" / "1"
    shutil.copytree(tiny_run["export"], no_keras)
    (no_keras / "model.keras").unlink()
    cases.append((["--model", str(no_keras), "--data", str(demo_set)], "model.keras"))
    for argv, message in cases:
        assert main(argv + ["--export", str(tmp_path / "out"), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_request_body_for_serving_by_speaker_round_trips(refit_run, tmp_path, capsys):
    """`zoo.serving request a b c --signature serving_by_speaker --speaker X`: one request of
    three rows (padded, with lengths and the id), answered as the runner answers."""
    import soundfile as sf
    import tensorflow as tf

    from pipelines.audio.decode import load
    from zoo.export import serving
    from zoo.inference.savedmodel import SavedModelRunner
    from zoo.export.layout import SIGNATURE_SPEAKER

    files = sorted((DEMO / "Actor_03").glob("*.flac"))[:3]
    paths = []
    for i, f in enumerate(files):
        paths.append(tmp_path / f"clip{i}.wav")
        sf.write(paths[-1], load(f), 16000, subtype="FLOAT")
    export = refit_run["export"]
    argv = ["request", *map(str, paths), "--model", str(export), "--signature",
            SIGNATURE_SPEAKER]
    assert serving.main(argv) == 2  # no --speaker
    assert "--speaker" in capsys.readouterr().err
    assert serving.main(argv + ["--speaker", "alice"]) == 0
    captured = capsys.readouterr()
    assert "at least 20" in captured.err  # 3 clips: warned
    body = json.loads(captured.out)
    inputs = body["inputs"]
    assert body["signature_name"] == SIGNATURE_SPEAKER and inputs["speaker"] == ["alice"] * 3
    waves = [load(p) for p in paths]
    assert inputs["length"] == [len(w) for w in waves]
    loaded = tf.saved_model.load(str(export))
    served = loaded.signatures[SIGNATURE_SPEAKER](
        waveform=tf.constant(inputs["waveform"], tf.float32),
        length=tf.constant(inputs["length"], tf.int32),
        speaker=tf.constant(inputs["speaker"]))["probabilities"].numpy()
    direct = SavedModelRunner(export).predict_by_speaker(waves, ["alice"] * 3)
    np.testing.assert_allclose(served, direct, atol=1e-6)


def test_predict_by_speaker_uses_each_folder_as_a_speaker(refit_run, tiny_run, tmp_path,
                                                          capsys):
    """zoo.predict --by-speaker: files grouped by their folder, windows of a speaker in one
    serving_by_speaker request; the same as the runner on those clips. Models without the
    signature are refused with one line."""
    import pandas as pd

    from pipelines.audio.decode import load
    from zoo.inference.savedmodel import SavedModelRunner
    from zoo.inference.predict import main

    folders = {}
    for actor in ("Actor_05", "Actor_06"):
        folders[actor] = sorted((DEMO / actor).glob("*.flac"))[:6]
        (tmp_path / "in" / actor).mkdir(parents=True)
        for f in folders[actor]:
            shutil.copy(f, tmp_path / "in" / actor / f.name)
    out = tmp_path / "pred.csv"
    assert main(["--model", str(refit_run["export"]), str(tmp_path / "in"), "--by-speaker",
                 "--window", "30", "--out", str(out), "--quiet", "--workers", "1"]) == 0
    assert "fewer than 20 clips" in capsys.readouterr().err
    rows = pd.read_csv(out)
    assert set(rows["kind"]) == {"file"}  # 30 s windows: one per clip
    assert sorted(rows["speaker"].unique()) == ["Actor_05", "Actor_06"]
    runner = SavedModelRunner(refit_run["export"])
    for actor, files in folders.items():
        expected = runner.predict_by_speaker([load(f) for f in files], [actor] * len(files))
        mine = rows[rows["speaker"] == actor].sort_values("path")
        np.testing.assert_allclose(mine.filter(like="p_").to_numpy(), expected, atol=1e-5)
    assert main(["--model", str(tiny_run["export"]), str(tmp_path / "in"), "--by-speaker"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no serving_by_speaker signature" in err and "\n" not in err
