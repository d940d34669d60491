"""Explanations of Whisper models (zoo.xai.whisper, zoo.xai.whisper_report) on a tiny random
WhisperEncoder (d_model 16, 2 layers) inside a whisper_linear: the encoder run piece by piece
equals the model, Grad-CAM over the encoder's frames equals a GradientTape over the model's own
encoder output and is 0 on padded frames, the cascade re-draws the head and then the encoder's
weight groups and changes the maps while the magnitude control fails, the permuted-label models
keep the pretrained encoder, and the command line works on an export."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipelines.common.tfenv import quiet_tensorflow

tf = quiet_tensorflow()
import keras  # noqa: E402

from pipelines.encoders.whisper import WhisperEncoder  # noqa: E402
from pipelines.features.spec import whisper_spec  # noqa: E402
from zoo.models.registry import build_model  # noqa: E402
from zoo.xai import sanity  # noqa: E402
from zoo.xai.attribution import AttributionError, Explainer  # noqa: E402
from zoo.xai.data import Clips, pad  # noqa: E402
from zoo.xai.permuted import train_permuted  # noqa: E402
from zoo.xai.whisper import EncoderForward, frames_to_input  # noqa: E402

LABELS = ["angry", "happy", "neutral", "sad"]


def tiny_model(layer="all", seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    encoder = WhisperEncoder(n_mels=80, d_model=16, n_heads=2, n_layers=2, ffn_dim=32,
                             n_ctx=1500)
    encoder.build((None, None, 80))
    rng = np.random.default_rng(seed)
    encoder.load_arrays({name: rng.normal(0, 0.3, shape) + name.endswith("gamma")
                         for name, shape in encoder.param_shapes().items()})
    model = build_model("whisper_linear", len(LABELS), whisper_spec(), encoder=encoder,
                        layer=layer, states=3)
    norm = model.get_layer("input_norm")  # statistics as a trained head has them
    mean, variance, count = norm.get_weights()
    norm.set_weights([rng.normal(0, 1, mean.shape), rng.uniform(0.2, 3, variance.shape), count])
    norm.finalize_state()
    return model


def random_clips(n: int = 6, seed: int = 0) -> Clips:
    """Log-Mel-like clips of 31 to 64 frames (odd and even lengths)."""
    rng = np.random.default_rng(seed)
    xs = [rng.normal(0.2, 0.4, (int(rng.integers(31, 65)), 80)).astype(np.float32)
          for _ in range(n)]
    return Clips(xs, np.arange(n) % len(LABELS),
                 pd.DataFrame({"id": [f"clip{i}" for i in range(n)]}))


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.mark.parametrize("layer", ["all", "mix", 1])
def test_the_encoder_run_piece_by_piece_equals_the_model(layer):
    model = tiny_model(layer)
    x = pad(random_clips(3).x)
    explainer = Explainer(model, "gradcam")
    scores, states, mask = EncoderForward(explainer.linear)(x)
    np.testing.assert_allclose(scores, explainer.linear(x), atol=1e-5)
    np.testing.assert_allclose(tf.nn.softmax(scores), model(x), atol=1e-6)
    assert len(states) == 3 and mask.shape == (3, (x.shape[1] + 1) // 2)


def test_grad_cam_equals_a_tape_over_the_models_own_encoder_output(model):
    """At the last hidden state (nothing above it but the pooling), Grad-CAM from the pieces
    equals time-averaged gradients of the score taken over the model's encoder output."""
    clips = random_clips(3)
    x, targets = pad(clips.x), np.array([0, 3, 1])
    explainer = Explainer(model, "gradcam", "hidden_state_2")
    lin = explainer.linear
    encoder = lin.get_layer("whisper_encoder")
    inner = keras.Model(lin.inputs[0], list(encoder.output))
    head = keras.Model(list(encoder.output), lin.output)
    states, mask = inner(x)
    with tf.GradientTape() as tape:
        tape.watch(states)
        score = tf.reduce_sum(tf.gather(head([states, mask]), targets, axis=1, batch_dims=1))
    grads = tape.gradient(score, states)[:, 2].numpy()
    act, m = states[:, 2].numpy(), mask.numpy()
    weights = (grads * m[..., None]).sum(1) / m.sum(1, keepdims=True)
    expected = np.maximum(np.einsum("btc,bc->bt", act, weights), 0) * m
    cam = explainer.raw_cam(x, targets)
    np.testing.assert_allclose(cam, expected, rtol=1e-4, atol=1e-6)
    assert cam.shape == m.shape and cam[m == 0].max() == 0

    maps = explainer(x, targets)
    assert maps.shape == x.shape and np.isfinite(maps).all()
    for i, clip in enumerate(clips.x):
        assert maps[i, len(clip):].max(initial=0) == 0  # padded frames
        assert np.ptp(maps[i, :len(clip)], axis=1).max() == 0  # the same over every band


def test_frames_to_input_interpolates_between_encoder_frame_centres():
    cam = np.array([[0.0, 2.0, 4.0, 9.0]], np.float32)
    odd = frames_to_input(cam, np.pad(np.ones((1, 5, 2)), ((0, 0), (0, 3), (0, 0))))
    np.testing.assert_allclose(odd[0, :, 0], [0, 1, 2, 3, 4, 0, 0, 0])
    even = frames_to_input(cam, np.ones((1, 6, 2)))  # frame 5: past the last centre (4)
    np.testing.assert_allclose(even[0, :, 1], [0, 1, 2, 3, 4, 4])


def test_gradient_methods_through_the_encoder(model):
    x = pad(random_clips(3).x)
    for method in ("saliency", "gradxinput", "integrated"):
        explainer = Explainer(model, method)
        maps, signed = explainer.pair(x, [0, 1, 2])
        assert maps.shape == x.shape and np.isfinite(maps).all() and maps.max() == 1
        assert np.abs(signed).max() == pytest.approx(1)
        assert maps[2, len(random_clips(3).x[2]):].max(initial=0) == 0


def test_layers_and_methods_are_checked_in_one_line(model):
    with pytest.raises(AttributionError) as err:
        Explainer(model, "gradcam", "conv_block_4")
    message = str(err.value)
    assert "hidden_state_0, hidden_state_1, hidden_state_2" in message and "\n" not in message
    with pytest.raises(AttributionError, match="not available on Whisper"):
        Explainer(model, "gradcam++")
    # the default state is the one the head weighs most
    kernel = model.get_layer("classifier").kernel.numpy().reshape(3, 32, -1)
    best = int(np.argmax((kernel ** 2).sum(axis=(1, 2))))
    assert Explainer(model, "gradcam").layer == f"hidden_state_{best}"


def test_cascade_reaches_the_encoder_and_the_control_fails(model):
    clips = random_clips(4)
    targets = clips.label
    explainer = Explainer(model, "gradcam", "hidden_state_1")
    before = explainer(pad(clips.x), targets)
    result = sanity.parameter_randomisation(explainer, clips, targets)
    names = [r["layer"] for r in result["cascade"]]
    assert names == ["classifier", "encoder.final_ln", "encoder.layers.1", "encoder.layers.0",
                     "encoder.conv_stem"]
    assert [r["layer"] for r in result["independent"]] == names
    assert result["value"] < 0.9  # the maps changed
    assert "encoder.layers.0" in result["independent_layers_changing_map"] or \
        result["independent"][3]["spearman_abs"] < 0.99
    np.testing.assert_allclose(explainer(pad(clips.x), targets), before, atol=1e-5)
    control = sanity.parameter_randomisation(Explainer(model, "magnitude"), clips, targets)
    assert not control["pass"] and control["value"] > 0.99
    assert len(control["cascade"]) == len(names)


def test_faithfulness_runs_with_the_band_mean_baseline(model):
    from zoo.xai.data import attribute

    clips = random_clips(3)
    explainer = Explainer(model, "saliency")
    maps, probs = attribute(explainer, clips, progress=False)
    result = sanity.faithfulness(explainer, clips, probs.argmax(axis=1), maps, steps=4)
    assert len(result["deletion"]) == 5 and np.isfinite(result["auc_deletion"])
    # fraction 0 is the clip itself; fraction 1 of deletion is all cells at the band mean
    assert result["deletion"][0] == pytest.approx(result["deletion_random"][0])
    base = sanity.baseline_for(explainer, clips.x[0])
    np.testing.assert_allclose(base[0], clips.x[0].mean(axis=0), atol=1e-4)
    assert np.all(base != 0)
    # a map with one value per frame is measured against random whole frames
    order = sanity.random_order(np.random.default_rng(0), (5, 3), "frame").reshape(5, 3)
    assert (order // 3 == order[:, :1] // 3).all() and sorted(order[:, 0] // 3) == list(range(5))
    cam = Explainer(model, "gradcam")
    maps, _ = attribute(cam, clips, progress=False)
    frames = sanity.faithfulness(cam, clips, probs.argmax(axis=1), maps, steps=4,
                                 random_unit="frame")
    assert frames["random_unit"] == "frame" and np.isfinite(frames["auc_insertion"])


def test_permuted_label_models_keep_the_pretrained_encoder(model, monkeypatch):
    monkeypatch.setattr("zoo.xai.permuted.PERMUTED_HEAD_EPOCHS", 5)
    clips = random_clips(8)
    runs = train_permuted(model, clips, epochs=1, retrain_top=1)
    trained = model.get_layer("whisper_encoder").w
    head, accuracy, _ = runs["head"]
    assert 0 <= accuracy <= 1
    for name, var in head.get_layer("whisper_encoder").w.items():
        np.testing.assert_array_equal(var.numpy(), trained[name].numpy())
    assert not np.allclose(head.get_layer("classifier").kernel.numpy(),
                           model.get_layer("classifier").kernel.numpy())
    top = runs["top"][0].get_layer("whisper_encoder")
    assert top.train_top == 1
    np.testing.assert_allclose(top.w["layers.0.fc1.kernel"].numpy(),
                               trained["layers.0.fc1.kernel"].numpy())
    assert not np.allclose(top.w["layers.1.fc1.kernel"].numpy(),
                           trained["layers.1.fc1.kernel"].numpy())


# ---------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def whisper_export(tmp_path_factory, model):
    """A version folder as zoo.explain reads it: model.keras and zoo.json (the SavedModel
    itself is not read by explanations; an empty saved_model.pb marks the folder)."""
    folder = tmp_path_factory.mktemp("savedmodels") / "whisper_linear" / "1"
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    (folder / "saved_model.pb").write_bytes(b"")
    (folder / "zoo.json").write_text(json.dumps({
        "name": "whisper_linear", "version": 1, "labels": LABELS,
        "feature_spec": whisper_spec().to_dict()}))
    return folder


@pytest.fixture(scope="module")
def demo_corpus(tmp_path_factory):
    import shutil

    from conftest import DEMO

    corpus = tmp_path_factory.mktemp("demo") / "ravdess"
    (corpus / "Actor_01").mkdir(parents=True)
    for f in sorted((DEMO / "Actor_01").iterdir())[:8]:
        shutil.copy(f, corpus / "Actor_01" / f.name)
    return corpus


def run_cli(argv, capsys):
    from zoo.xai.explain import main

    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err.strip()


def test_cli_errors_on_whisper_models_are_one_line(whisper_export, demo_corpus, tmp_path,
                                                   tiny_export, capsys):
    source = ["--corpus", f"ravdess={demo_corpus}", "--out", str(tmp_path / "o")]
    cases = [
        (["--model", str(whisper_export), "--layer", "hidden_state_9", *source],
         "hidden_state_0, hidden_state_1, hidden_state_2"),
        (["--model", str(whisper_export), "--method", "gradcam++", *source], "gradcam++"),
        (["--model", str(whisper_export), "--method", "saliency", "--layer",
          "hidden_state_1", *source], "--layer"),
        (["report", *source], "at least one of"),
        (["report", "--whisper", str(tiny_export[0]), *source], "not a Whisper model"),
    ]
    for argv, needle in cases:
        rc, _, err = run_cli(argv, capsys)
        assert rc == 2 and needle in err and "\n" not in err, (argv, err)


def test_explain_and_report_on_a_whisper_export(whisper_export, demo_corpus, tmp_path, capsys):
    out = tmp_path / "gradcam"
    rc, stdout, err = run_cli(["--model", str(whisper_export), "--corpus",
                               f"ravdess={demo_corpus}", "--method", "gradcam", "--layer",
                               "hidden_state_1", "--per-class", "1", "--out", str(out),
                               "--quiet"], capsys)
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["layer"] == "hidden_state_1" and summary["clips"] == 8
    assert (out / "time_profiles.png").stat().st_size > 1000
    timing = pd.read_csv(out / "timing.csv")
    thirds = timing[["first third", "middle third", "last third"]].sum(axis=1)
    np.testing.assert_allclose(thirds, 1, atol=1e-6)

    report = tmp_path / "report"
    rc, stdout, err = run_cli(["report", "--whisper", str(whisper_export), "--corpus",
                               f"ravdess={demo_corpus}", "--out", str(report), "--max-clips",
                               "4", "--per-class", "1", "--sanity-clips", "2",
                               "--whisper-methods", "gradcam,magnitude", "--epochs", "1",
                               "--steps", "3", "--quiet"], capsys)
    assert rc == 0, err
    for name in ("saliency/emotion_grid.png", "gradxinput/emotion_grid.png",
                 "gradcam/time_profiles.png", "sanity/cascade.png", "sanity/faithfulness.png",
                 "bands.csv"):
        assert (report / "whisper" / name).is_file(), name
    text = (report / "SUMMARY.md").read_text()
    assert "| whisper_linear | gradcam |" in text and "| whisper_linear | magnitude |" in text
    assert "where in the clip" in text and "where over the mel bands" in text
    record = json.loads((report / "sanity.json").read_text())["whisper_linear"]
    cascade = record["methods"]["gradcam"]["parameter_randomisation"]["cascade"]
    assert cascade[-1]["layer"] == "encoder.conv_stem"
