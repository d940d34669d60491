"""Every registered model: builds, runs, has its pinned size and named layers, survives .keras
and SavedModel round trips with equal outputs, and gives a clip the same output alone or padded
in a batch. Adding a model to the registry adds it here (and asks for its parameter count)."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.common.tfenv import quiet_tensorflow

tf = quiet_tensorflow()
import keras  # noqa: E402

from pipelines.features import extract as F  # noqa: E402
from zoo.models.registry import (  # noqa: E402
    UnknownModelError, build_model, get_entry, list_models, register_model,
)

NUM_CLASSES = 7
# Pinned parameter counts for 7 classes with the registered default FeatureSpec. A change here
# is a change of architecture: update deliberately, with the reason in the commit message.
PARAMS = {
    "mfcc_cnn": 455_847,
    "logmel_cnn": 455_847,
    "mfcc_crnn_attn": 1_078_695,
    "logmel_crnn_attn": 1_340_839,
}
NAMED_LAYERS = {
    "cnn": ["frame_mask", "conv_block_1", "conv_block_2", "conv_block_3", "conv_block_4",
            "global_pool", "classifier"],
    "crnn": ["frame_mask", "conv_block_1", "conv_block_2", "conv_block_3", "bilstm",
             "attention", "classifier"],
}
FEATURE_MODELS = [m for m in list_models() if get_entry(m).input == "features"]


def waveforms(lengths=(24000, 15000, 5000), seed=0):
    rng = np.random.default_rng(seed)
    n = max(lengths)
    wave = np.zeros((len(lengths), n), np.float32)
    for i, length in enumerate(lengths):
        t = np.arange(length) / 16000
        wave[i, :length] = 0.1 * np.sin(2 * np.pi * (150 + 50 * i) * t) * \
            (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.normal(size=length)
    return wave, np.asarray(lengths, np.int32)


@pytest.fixture(scope="module", params=FEATURE_MODELS)
def built(request):
    name = request.param
    spec = get_entry(name).default_spec()
    keras.utils.set_random_seed(1)
    return name, spec, build_model(name, NUM_CLASSES, spec)


def test_every_model_has_a_pinned_size(built):
    name, _, model = built
    assert name in PARAMS, f"pin the parameter count of {name}: {model.count_params()}"
    assert model.count_params() == PARAMS[name]


def test_forward_pass_gives_probabilities(built):
    _, spec, model = built
    wave, length = waveforms()
    feats, _ = F.compute(wave, length, spec)
    probs = model(feats, training=False).numpy()
    assert probs.shape == (3, NUM_CLASSES)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_named_layers_present(built):
    name, _, model = built
    family = "crnn" if "crnn" in name else "cnn"
    names = {layer.name for layer in model.layers}
    missing = [n for n in NAMED_LAYERS[family] if n not in names]
    assert not missing, f"{name} lacks layers {missing}"


def test_clip_alone_equals_clip_padded_in_batch(built):
    _, spec, model = built
    wave, length = waveforms()
    batch = model(F.compute(wave, length, spec)[0], training=False).numpy()
    for i in range(len(length)):
        alone_feats, _ = F.compute(wave[i:i + 1, :length[i]], length[i:i + 1], spec)
        alone = model(alone_feats, training=False).numpy()[0]
        np.testing.assert_allclose(alone, batch[i], atol=1e-5)


def test_keras_file_round_trip(built, tmp_path):
    name, spec, model = built
    wave, length = waveforms()
    feats, _ = F.compute(wave, length, spec)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded(feats, training=False).numpy(),
                               model(feats, training=False).numpy(), atol=1e-6)


def test_savedmodel_round_trip(built, tmp_path):
    from zoo.export.savedmodel import SIGNATURE_DEFAULT, SIGNATURE_LENGTH, export

    name, spec, model = built
    labels = [f"class{i}" for i in range(NUM_CLASSES)]
    folder = export(model, spec, labels, tmp_path, name, card="test")
    assert folder == tmp_path / name / "1"
    loaded = tf.saved_model.load(str(folder))
    wave, length = waveforms()
    expected = model(F.compute(wave, length, spec)[0], training=False).numpy()
    out = loaded.signatures[SIGNATURE_LENGTH](waveform=tf.constant(wave),
                                              length=tf.constant(length))
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    assert [s.decode() for s in out["label"].numpy()] == \
        [labels[i] for i in expected.argmax(axis=1)]
    single = loaded.signatures[SIGNATURE_DEFAULT](waveform=tf.constant(wave[:1, :length[0]]))
    np.testing.assert_allclose(single["probabilities"].numpy()[0], expected[0], atol=1e-5)
    assert (folder / "assets" / "labels.txt").read_text().split() == labels


def test_unknown_model_lists_the_available_ones():
    with pytest.raises(UnknownModelError) as err:
        get_entry("mfcc_cnnn")
    assert "did you mean 'mfcc_cnn'" in str(err.value)
    assert all(name in str(err.value) for name in FEATURE_MODELS)


def test_registering_a_name_twice_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_model("mfcc_cnn")(lambda num_classes, spec: None)


def test_wrong_feature_kind_is_refused():
    from pipelines.features.spec import logmel_spec

    with pytest.raises(ValueError, match="takes mfcc features"):
        build_model("mfcc_cnn", NUM_CLASSES, logmel_spec())
