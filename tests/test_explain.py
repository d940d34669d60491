"""Explanations and their sanity checks (zoo.xai, zoo.explain). The checks must be able to
fail: a model-independent explainer fails parameter randomisation, Grad-CAM on a trained model
passes it, and deleting the most attributed cells hurts the prediction more than random ones.

The trained fixture is a tiny mfcc_cnn fitted in a few seconds on a synthetic task whose
evidence is a local patch (a bright, a dark or a checkered 8 x 8 patch at a random place in a
noise image), so where the evidence sits is known."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipelines.common.tfenv import quiet_tensorflow

quiet_tensorflow()

import keras  # noqa: E402

from zoo.models.registry import build_model, get_entry  # noqa: E402
from zoo.xai import sanity  # noqa: E402
from zoo.xai.attribution import AttributionError, Explainer  # noqa: E402
from zoo.xai.data import Clips, pad  # noqa: E402

SPEC = get_entry("mfcc_cnn").default_spec()
CHANNELS = SPEC.channels


def synthetic(n: int, seed: int) -> Clips:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    checker = 2.5 * (np.indices((8, 8)).sum(0) % 2 * 2 - 1)
    patches = (np.full((8, 8), 2.5), np.full((8, 8), -2.5), checker)
    for i in range(n):
        y = i % 3
        x = rng.normal(0, 1, (48, CHANNELS)).astype(np.float32)
        t0, f0 = rng.integers(0, 40), rng.integers(0, CHANNELS - 8)
        x[t0:t0 + 8, f0:f0 + 8] += patches[y]
        xs.append(x)
        ys.append(y)
    return Clips(xs, np.array(ys), pd.DataFrame({"id": [f"clip{i}" for i in range(n)]}))


@pytest.fixture(scope="module")
def trained():
    """(model, held-out clips): about 90% accuracy on 3 classes after 6 epochs."""
    keras.utils.set_random_seed(0)
    model = build_model("mfcc_cnn", 3, SPEC, filters=(8, 8, 8, 8), head_units=16,
                        head_dropout=0.0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    train = synthetic(300, 0)
    model.fit(pad(train.x), train.label, epochs=6, batch_size=32, verbose=0)
    test = synthetic(12, 1)
    accuracy = (np.asarray(model(pad(test.x))).argmax(axis=1) == test.label).mean()
    assert accuracy >= 0.75, f"fixture model did not learn the task ({accuracy:.2f})"
    return model, test


def test_gradcam_equals_a_hand_written_gradient_computation():
    keras.utils.set_random_seed(3)
    model = build_model("mfcc_cnn", 4, SPEC, filters=(4, 4, 4, 4), head_units=8)
    x = np.random.default_rng(0).normal(size=(2, 40, CHANNELS)).astype(np.float32)
    targets = np.array([1, 3])
    import tensorflow as tf

    inner = keras.Model(model.inputs, [model.get_layer("conv_block_3").output,
                                       model.get_layer("head_dropout").output])
    kernel, bias = model.get_layer("classifier").get_weights()
    with tf.GradientTape() as tape:
        act, hidden = inner(x, training=False)
        tape.watch(act)
        act, hidden = inner(x, training=False)
        logits = tf.matmul(hidden, kernel) + bias
        score = tf.reduce_sum(tf.gather(logits, targets, axis=1, batch_dims=1))
    grads = tape.gradient(score, act).numpy()
    weights = grads.mean(axis=(1, 2), keepdims=True)
    expected = np.maximum((act.numpy() * weights).sum(axis=-1), 0)

    explainer = Explainer(model, "gradcam", "conv_block_3")
    np.testing.assert_allclose(explainer.raw_cam(x, targets), expected, rtol=1e-4, atol=1e-6)
    full = explainer(x, targets)
    up = explainer.to_input(expected, x.shape)
    up = (up - up.min(axis=(1, 2), keepdims=True)) / np.ptp(up, axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(full, up, atol=1e-4)
    assert full.shape == x.shape


def test_unknown_layer_lists_the_valid_ones():
    model = build_model("mfcc_cnn", 4, SPEC, filters=(4, 4, 4, 4), head_units=8)
    with pytest.raises(AttributionError) as err:
        Explainer(model, "gradcam", "conv_block_9")
    message = str(err.value)
    assert "conv_block_9" in message and "conv_block_4" in message and "\n" not in message


def test_maps_ignore_padding_and_cover_every_method():
    model = build_model("mfcc_cnn", 4, SPEC, filters=(4, 4, 4, 4), head_units=8)
    x = np.random.default_rng(1).normal(size=(2, 50, CHANNELS)).astype(np.float32)
    x[1, 30:] = 0
    for method in ("gradcam", "gradcam++", "scorecam", "saliency", "gradxinput", "integrated"):
        maps = Explainer(model, method)(x, [0, 1])
        assert maps.shape == x.shape and np.isfinite(maps).all()
        assert maps[1, 30:].max() == 0 and maps.max() <= 1 and maps.min() >= 0


def test_magnitude_fails_and_gradcam_passes_parameter_randomisation(trained):
    model, clips = trained
    clips = clips.subset(range(4))
    targets = clips.label
    control = sanity.parameter_randomisation(Explainer(model, "magnitude"), clips, targets)
    assert not control["pass"] and control["value"] > 0.99
    explainer = Explainer(model, "gradcam")
    before = explainer(pad(clips.x), targets)
    gradcam = sanity.parameter_randomisation(explainer, clips, targets,
                                             independent_layers=False)
    assert gradcam["pass"], gradcam["value"]
    assert len(gradcam["cascade"]) == len(sanity.weighted_layers(model))
    # the trained weights are back afterwards
    np.testing.assert_allclose(explainer(pad(clips.x), targets), before, atol=1e-5)


def test_deleting_top_cells_hurts_more_than_random(trained):
    model, clips = trained
    explainer = Explainer(model, "gradcam")
    from zoo.xai.data import attribute

    maps, probs = attribute(explainer, clips, progress=False)
    result = sanity.faithfulness(explainer, clips, probs.argmax(axis=1), maps, steps=10)
    assert result["auc_deletion"] < result["auc_deletion_random"] - sanity.FAITHFUL_MIN_GAP
    assert result["deletion_pass"]
    # an explainer pointing at the least attributed cells must fail it
    inverted = [1 - m for m in maps]
    worse = sanity.faithfulness(explainer, clips, probs.argmax(axis=1), inverted, steps=10)
    assert not worse["deletion_pass"]


def test_similarity_metrics():
    rng = np.random.default_rng(0)
    a = rng.random((20, 30))
    assert sanity.spearman(a, a) == pytest.approx(1.0)
    assert sanity.ssim(a, a) == pytest.approx(1.0)
    assert abs(sanity.spearman(a, rng.random((20, 30)))) < 0.2
    assert sanity.ssim(a, rng.random((20, 30))) < 0.3


def test_ssl_heads_are_explained_over_their_dimensions():
    for name, kw in (("hubert_cnn", {}), ("hubert_rnn", {"chunk": 4})):
        model = build_model(name, 3, dim=64, **kw)
        x = np.random.default_rng(0).normal(size=(4, 64)).astype(np.float32)
        for method in ("gradcam", "saliency"):
            maps = Explainer(model, method)(x, [0, 1, 2, 0])
            assert maps.shape == x.shape and np.isfinite(maps).all()
    # hubert_rnn: step s reads hidden units [s*chunk, (s+1)*chunk) of both halves
    explainer = Explainer(build_model("hubert_rnn", 3, dim=64, chunk=4), "gradcam")
    cam = np.arange(8, dtype=np.float32)[None]
    mapped = explainer.to_input(cam, (1, 64))[0]
    assert mapped[0] == mapped[32] == 0 and mapped[5] == mapped[37] == 1 and mapped[31] == 7


# ---------------------------------------------------------------- the command line


def run_cli(argv, capsys):
    from zoo.xai.explain import main

    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err.strip()


def test_cli_errors_are_one_line(tiny_export, tmp_path, capsys):
    folder, _ = tiny_export
    cases = [
        (["--model", str(tmp_path), "--corpus", f"ravdess={tmp_path}", "--out", "o"],
         "--model"),
        (["--model", str(folder), "--data", str(tmp_path / "nope"), "--out", "o"], "--data"),
        (["--model", str(folder), "--corpus", "ravdess", "--out", "o"], "NAME=DIR"),
        (["--model", str(folder), "--data", str(tmp_path), "--out", "o"], "schema.json"),
        (["--model", str(folder), "--data", str(tmp_path), "--layer", "conv_block_9",
          "--out", "o"], "conv_block_4"),
        (["--model", str(folder), "--data", str(tmp_path), "--per-class", "0", "--out", "o"],
         "--per-class"),
        (["sanity", "--model", str(folder), "--data", str(tmp_path), "--methods",
          "gradcam,magic", "--out", "o"], "magic"),
        (["compare", "--mfcc", str(folder), "--logmel", str(folder), "--data", str(tmp_path),
          "--out", "o"], "not logmel"),
    ]
    for argv, needle in cases:
        rc, _, err = run_cli(argv, capsys)
        assert rc == 2 and needle in err and "\n" not in err and "Traceback" not in err, \
            (argv, err)


def test_explain_cli_on_demo_clips(tiny_export, tmp_path, capsys):
    """The whole command on an export and real clips (4 demo actors' angry/happy/neutral/sad
    clips, read from the corpus folder), with TensorBoard images."""
    import shutil

    from conftest import DEMO

    folder, _ = tiny_export
    corpus = tmp_path / "ravdess" / "Actor_01"
    corpus.mkdir(parents=True)
    for f in sorted((DEMO / "Actor_01").iterdir())[:8]:
        shutil.copy(f, corpus / f.name)
    out = tmp_path / "out"
    rc, stdout, err = run_cli(["--model", str(folder), "--corpus",
                               f"ravdess={tmp_path / 'ravdess'}", "--method", "gradcam",
                               "--out", str(out), "--tensorboard", str(tmp_path / "tb"),
                               "--quiet"], capsys)
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["layer"] == "conv_block_4" and summary["clips"] >= 4
    assert (out / "emotion_grid.png").stat().st_size > 1000
    assert list((out / "examples").glob("*.png"))
    profiles = pd.read_csv(out / "profiles.csv")
    assert set(profiles["channel"]) == set(range(CHANNELS))
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
