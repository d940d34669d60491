"""LiteRT export (zoo.lite): a small export made here converted with every quantisation, run
through the LiteRT interpreter one clip at a time and compared with the SavedModel's
serving_default; zoo.evaluate on the .tflite; the substitutions the conversion makes; one-line
errors for bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pipelines.common.tfenv import quiet_tensorflow

tf = quiet_tensorflow()

pytest.importorskip("ai_edge_litert", reason="ai-edge-litert not installed (pip install '.[lite]')")

import keras  # noqa: E402

from conftest import TINY_LABELS  # noqa: E402
from zoo.evaluation import evaluate  # noqa: E402
from zoo.export import lite
from zoo.inference.lite import LiteError, LiteRunner  # noqa: E402
from zoo.export.check import synthetic_clip  # noqa: E402

# clip lengths in samples: shorter than one FFT window, odd, 1 s, 3.3 s
LENGTHS = (300, 7001, 16000, 52800)
# max |probability difference| from the SavedModel per mode (a random-weight model)
TOLERANCE = {"none": 1e-5, "float16": 5e-3, "int8": 5e-2, "int8-full": 0.25}


@keras.saving.register_keras_serializable(package="test_lite")
class CumProd(keras.layers.Layer):
    """A layer with an op (Cumprod) that has no TFLite builtin."""

    def call(self, x):
        return tf.math.cumprod(tf.sigmoid(x), axis=-1)


def small_export(base, name="mfcc_cnn", layer=None):
    """An untrained export big enough for int8 to quantise something (conv weights of 1024
    values or more), in seconds; calibrated with T = 1.7, which the .tflite must apply too."""
    from zoo.export.savedmodel import export
    from zoo.models.registry import build_model, get_entry
    from zoo.export.reliability import Reliability

    spec = get_entry(name).default_spec()
    keras.utils.set_random_seed(3)
    model = build_model(name, len(TINY_LABELS), spec, filters=(4, 8, 16, 32), head_units=16)
    if layer is not None:
        inputs = keras.Input((None, spec.channels), name="features")
        model = keras.Model(inputs, model(layer(inputs)))
    return export(model, spec, TINY_LABELS, base, name, card="lite test model",
                  reliability=Reliability(temperature=1.7))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return small_export(tmp_path_factory.mktemp("savedmodels"))


@pytest.fixture(scope="module")
def converted(source, demo_set, tmp_path_factory):
    """{mode: (folder, lite.json)} for none, float16, int8 (weights) and int8-full."""
    out = tmp_path_factory.mktemp("lite")
    modes = {"none": ("none", "weights"), "float16": ("float16", "weights"),
             "int8": ("int8", "weights"), "int8-full": ("int8", "full")}
    result = {}
    for mode, (quantize, int8) in modes.items():
        folder = out / mode
        record = lite.convert(source, folder, quantize, data=demo_set if mode == "int8-full"
                              else None, int8=int8, calibration=20, progress=False)
        result[mode] = folder, record
    return result


@pytest.fixture(scope="module")
def reference(source):
    return tf.saved_model.load(str(source)).signatures["serving_default"]


def clips():
    return [synthetic_clip(max(n, 8000) / 16000, seed=i)[:n] * (0.5 + i)
            for i, n in enumerate(LENGTHS)]


@pytest.mark.parametrize("mode", list(TOLERANCE))
def test_outputs_match_the_savedmodel(converted, reference, mode):
    folder, record = converted[mode]
    runner = LiteRunner(folder / "model.tflite")
    for clip in clips():
        ref = reference(waveform=tf.constant(clip[None]))["probabilities"][0].numpy()
        got = runner.predict_one(clip)
        assert got.shape == (len(TINY_LABELS),) and np.isfinite(got).all()
        # full-integer softmax comes out in steps of 1/256
        np.testing.assert_allclose(got.sum(), 1.0, atol=1e-2 if mode == "int8-full" else 1e-4)
        np.testing.assert_allclose(got, ref, atol=TOLERANCE[mode], err_msg=mode)
        if mode in ("none", "float16"):
            assert got.argmax() == ref.argmax()
    assert record["check"]["max_abs_diff"] <= TOLERANCE[mode]
    assert record["reliability"]["temperature"] == 1.7


def test_the_label_output_and_any_clip_length(converted, reference):
    """serving_default is declared [1, -1]: resized to each clip, as the docs tell clients."""
    folder, _ = converted["none"]
    interpreter = LiteRunner(folder).interpreter
    detail = interpreter.get_input_details()[0]
    assert list(detail["shape_signature"]) == [1, -1]
    runner = interpreter.get_signature_runner("serving_default")
    for clip in clips():
        out = runner(waveform=clip[None])
        assert out["label"].shape == (1,)
        label = out["label"][0]
        label = label.decode() if isinstance(label, bytes) else str(label)
        assert label == TINY_LABELS[int(out["probabilities"][0].argmax())]


def test_lite_json_describes_the_model(converted, source):
    for mode, (folder, record) in converted.items():
        on_disk = json.loads((folder / "lite.json").read_text())
        assert on_disk == json.loads(json.dumps(record))
        assert on_disk["labels"] == TINY_LABELS
        assert on_disk["feature_spec"]["kind"] == "mfcc"
        assert on_disk["source_export"] == str(source)
        assert on_disk["size_bytes"] == (folder / "model.tflite").stat().st_size
        assert on_disk["input"]["shape"] == [1, -1] and on_disk["input"]["sample_rate"] == 16000
        assert on_disk["quantization"]["mode"] == mode.split("-")[0]
        assert "DCT-II as a product with its orthonormal matrix" in on_disk["formulation"]
    full = converted["int8-full"][1]["quantization"]
    assert full["int8"] == "full" and full["calibration"]["split"] == "train"
    assert full["calibration"]["clips"] == 20 and full["calibration"]["seed"] == 0
    sizes = {mode: record["size_bytes"] for mode, (_, record) in converted.items()}
    # (int8 keeps the front end's mel and DCT matrices in float32, float16 halves them too)
    assert sizes["float16"] < sizes["none"] and sizes["int8"] < sizes["none"]


def test_feature_front_end_stays_float_in_int8(converted):
    from zoo.export.lite_quantize import is_feature_node

    for mode in ("int8", "int8-full"):
        folder, _ = converted[mode]
        details = LiteRunner(folder).interpreter.get_tensor_details()
        quantised = [d["name"] for d in details if d["dtype"] == np.int8]
        assert quantised, mode  # the network's weights are int8
        # the front end's own constants and ops stay float (int8 copies of its last output
        # may feed the network in full-integer mode)
        assert not [n for n in quantised if is_feature_node(n) and "Reshape" not in n
                    and "truediv" not in n], mode


def test_calibration_clips_are_seeded(demo_set):
    a = lite.calibration_clips(demo_set, 5, seed=0, progress=False)
    b = lite.calibration_clips(demo_set, 5, seed=0, progress=False)
    c = lite.calibration_clips(demo_set, 5, seed=1, progress=False)
    assert len(a) == 5 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(len(x) == len(y) and np.array_equal(x, y) for x, y in zip(a, c))


# ---------------------------------------------------------------- the TFLite formulation

def test_dct_matrix_is_tf_signal_dct():
    x = np.random.default_rng(0).normal(size=(3, 5, 64)).astype(np.float32) * 30
    expected = tf.signal.dct(x, type=2, norm="ortho").numpy()
    np.testing.assert_allclose(x @ lite.dct_matrix(64), expected, atol=2e-4, rtol=1e-5)


@pytest.mark.parametrize("n_fft", [400, 512])
def test_dft_power_spectrum_is_rffts(n_fft):
    from pipelines.features import extract as F
    from pipelines.features.spec import FeatureSpec

    spec = FeatureSpec(kind="logmel", n_fft=n_fft)
    framed = tf.constant(np.random.default_rng(1).normal(size=(2, 7, n_fft)), tf.float32)
    expected = F.power_spectrogram(framed, spec).numpy()
    with lite.lite_formulation(spec) as made:
        got = F.power_spectrogram(framed, spec).numpy()
    assert bool(made) == (n_fft == 400)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * expected.max())
    assert F.power_spectrogram is not None and F.dct_ortho.__name__ == "dct_ortho"  # restored


# ---------------------------------------------------------------- zoo.evaluate on a .tflite

def test_evaluate_scores_the_tflite_like_the_savedmodel(converted, source, demo_set, tmp_path):
    folder, _ = converted["none"]
    outs = {}
    for name, model in (("savedmodel", source), ("lite", folder / "model.tflite")):
        assert evaluate.main(["--model", str(model), "--data", str(demo_set), "--split", "test",
                              "--out", str(tmp_path / f"{name}.json"), "--predictions",
                              str(tmp_path / f"{name}.csv"), "--quiet"]) == 0
        outs[name] = json.loads((tmp_path / f"{name}.json").read_text())
    a, b = outs["savedmodel"], outs["lite"]
    for key in ("n", "ua", "wa", "macro_f1", "per_class", "per_corpus", "confusion", "labels"):
        assert json.dumps(a[key]) == json.dumps(b[key]), key
    assert b["runtime"] == "litert" and b["quantization"] == "none"
    assert b["model"] == str(folder / "model.tflite")


# ---------------------------------------------------------------- one-line errors

def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_not_an_export(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert lite.main(["--model", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "not an export" in one_line(capsys)
    assert not (tmp_path / "o").exists()


def test_missing_signature(source, tmp_path, capsys):
    copy = tmp_path / "mfcc_cnn" / "1"
    shutil.copytree(source, copy)

    class Other(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
        def other(self, waveform):
            return {"probabilities": tf.nn.softmax(waveform[:, :4])}

    module, saved = Other(), tmp_path / "other"
    tf.saved_model.save(module, str(saved), signatures={"other": module.other})
    (copy / "saved_model.pb").unlink()
    shutil.copy(saved / "saved_model.pb", copy / "saved_model.pb")
    assert lite.main(["--model", str(copy), "--out", str(tmp_path / "o")]) == 2
    err = one_line(capsys)
    assert "missing signature serving_default" in err and "other" in err


def test_conversion_failure_names_the_op(tmp_path, capsys):
    export = small_export(tmp_path / "savedmodels", layer=CumProd(name="cumprod"))
    assert lite.main(["--model", str(export), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = one_line(capsys)
    assert "conversion failed" in err and "Cumprod" in err


def test_int8_full_needs_data(source, tmp_path, capsys):
    assert lite.main(["--model", str(source), "--out", str(tmp_path / "o"), "--quantize",
                      "int8", "--int8", "full"]) == 2
    assert "--data" in one_line(capsys)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "no lite.json"])
def test_corrupt_tflite_is_one_line(converted, demo_set, tmp_path, capsys, damage):
    folder = tmp_path / "broken"
    shutil.copytree(converted["none"][0], folder)
    model = folder / "model.tflite"
    if damage == "garbage":
        model.write_bytes(b"this is not a flatbuffer" * 40)
    elif damage == "truncated":
        model.write_bytes(model.read_bytes()[:2000])
    else:
        (folder / "lite.json").unlink()
    assert evaluate.main(["--model", str(model), "--data", str(demo_set), "--quiet"]) == 2
    err = one_line(capsys)
    assert str(model) in err
    with pytest.raises(LiteError):
        LiteRunner(model)


def test_speaker_norm_is_refused_for_tflite(converted, demo_set, capsys):
    model = converted["none"][0] / "model.tflite"
    assert evaluate.main(["--model", str(model), "--data", str(demo_set), "--speaker-norm"]) == 2
    assert "serving_default only" in one_line(capsys)


def test_bad_clips_are_refused(converted):
    runner = LiteRunner(converted["none"][0])
    for bad, message in ((np.zeros(0, np.float32), "no samples"),
                         (np.full(800, np.nan, np.float32), "NaN"),
                         (np.zeros((2, 800), np.float32), "wrong rank")):
        with pytest.raises(ValueError, match=message):
            runner.predict_one(bad)
