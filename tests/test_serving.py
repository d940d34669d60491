"""TF Serving side: the export's signatures as saved_model_cli shows them, `zoo.serving check`
on a fresh and on tampered exports, the signatures' handling of padding, short clips and bad
requests (called as TF Serving calls them: the loaded SavedModel's signature functions),
models.config and REST request bodies."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import soundfile as sf

from pipelines.common.tfenv import quiet_tensorflow

tf = quiet_tensorflow()

from zoo.export import serving  # noqa: E402
from zoo.export import check as serving_check
from zoo.export.layout import SIGNATURE_DEFAULT, SIGNATURE_LENGTH, SIGNATURE_STATS  # noqa: E402


@pytest.fixture(scope="module")
def loaded(tiny_export):
    return tf.saved_model.load(str(tiny_export[0]))


def clips(lengths, seed=0):
    """Zero-padded batch [n, max(lengths)] of different speech-like clips, and the lengths."""
    wave = np.zeros((len(lengths), max(lengths)), np.float32)
    for i, n in enumerate(lengths):
        clip = serving_check.synthetic_clip(seconds=max(n, 400) / 16000, seed=seed + i)[:n]
        wave[i, :n] = clip * (1 + i) / 2  # different levels
    return wave, np.asarray(lengths, np.int32)


def probabilities(signature, **inputs):
    return signature(**{k: tf.constant(v) for k, v in inputs.items()})["probabilities"].numpy()


# ---------------------------------------------------------------- saved_model_cli and check

def test_saved_model_cli_shows_the_three_signatures(tiny_export):
    folder, labels = tiny_export
    parsed = serving_check.parse_show_all(serving_check.show_all(folder))
    assert "serve" in parsed
    sigs = parsed["serve"]
    assert sigs[SIGNATURE_DEFAULT]["inputs"]["waveform"]["dtype"] == "DT_FLOAT"
    assert sigs[SIGNATURE_DEFAULT]["inputs"]["waveform"]["shape"] == (-1, -1)
    assert sigs[SIGNATURE_LENGTH]["inputs"]["length"]["shape"] == (-1,)
    assert sigs[SIGNATURE_DEFAULT]["outputs"]["probabilities"]["shape"] == (-1, len(labels))
    assert sigs[SIGNATURE_DEFAULT]["outputs"]["label"]["dtype"] == "DT_STRING"
    assert sigs[SIGNATURE_STATS]["method"] == "tensorflow/serving/predict"
    assert sigs[SIGNATURE_DEFAULT]["outputs"]["status"]["dtype"] == "DT_STRING"
    assert sigs[SIGNATURE_LENGTH]["outputs"]["speech_ratio"]["shape"] == (-1,)
    assert sigs[SIGNATURE_STATS]["outputs"]["logits"]["shape"] == (-1, len(labels))
    for name, expected in serving_check.expected_signatures(len(labels),
                                                            reliability=True).items():
        assert serving_check.compare_signature(name, sigs.get(name), expected) == []
    # an export without the reliability outputs would be told so
    old = serving_check.expected_signatures(len(labels))[SIGNATURE_DEFAULT]
    assert serving_check.compare_signature(SIGNATURE_DEFAULT, sigs[SIGNATURE_DEFAULT], old)


def test_check_passes_on_a_fresh_export(tiny_export, capsys):
    assert serving.main(["check", str(tiny_export[0])]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out
    for name in ("labels asset", "saved_model_cli serving_default", "loaded serving_with_stats",
                 "TF Serving loader", "padding", "keras"):
        assert f"PASS  {name}:" in out


def test_check_fails_without_the_labels_asset(tiny_export, tmp_path, capsys):
    copy = tmp_path / "mfcc_cnn" / "1"
    shutil.copytree(tiny_export[0], copy)
    (copy / "assets" / "labels.txt").unlink()
    assert serving.main(["check", str(copy)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  labels asset: assets/labels.txt missing" in out
    assert "FAIL  files: missing assets/labels.txt" in out
    assert out.strip().endswith("checks passed)") and ": FAIL (" in out


class _WrongInputName(tf.Module):
    """A SavedModel whose serving_default takes `audio`, not `waveform`."""

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="audio")])
    def serve(self, audio):
        rows = tf.shape(audio)[0]
        return {"probabilities": tf.fill([rows, 4], 0.25),
                "label": tf.fill([rows], "angry")}


def test_check_fails_on_a_wrong_signature(tiny_export, tmp_path, capsys):
    copy = tmp_path / "mfcc_cnn" / "1"
    shutil.copytree(tiny_export[0], copy)
    module = _WrongInputName()
    other = tmp_path / "other"
    tf.saved_model.save(module, str(other), signatures={
        SIGNATURE_DEFAULT: module.serve.get_concrete_function()})
    (copy / "saved_model.pb").unlink()
    shutil.rmtree(copy / "variables")
    shutil.copy(other / "saved_model.pb", copy / "saved_model.pb")
    shutil.copytree(other / "variables", copy / "variables")
    assert serving.main(["check", str(copy)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  saved_model_cli serving_default: serving_default: inputs ['audio'], " \
           "expected ['waveform']" in out
    assert "FAIL  loaded serving_default:" in out
    assert "FAIL  saved_model_cli serving_with_length: serving_with_length: missing" in out
    assert "FAIL  call:" in out


def test_parse_show_all_reads_unknown_rank_and_scalars():
    text = """MetaGraphDef with tag-set: 'serve' contains the following SignatureDefs:

signature_def['x']:
  The given SavedModel SignatureDef contains the following input(s):
    inputs['a'] tensor_info:
        dtype: DT_INT64
        shape: ()
        name: x_a:0
    inputs['b'] tensor_info:
        dtype: DT_FLOAT
        shape: unknown_rank
        name: x_b:0
  The given SavedModel SignatureDef contains the following output(s):
    outputs['y'] tensor_info:
        dtype: DT_FLOAT
        shape: (-1, 7)
        name: Identity:0
  Method name is: tensorflow/serving/predict
The MetaGraph with tag set ['serve'] contains the following ops: {'Const'}
"""
    sig = serving_check.parse_show_all(text)["serve"]["x"]
    assert sig["inputs"]["a"] == {"dtype": "DT_INT64", "shape": (), "tensor": "x_a:0"}
    assert sig["inputs"]["b"]["shape"] is None
    assert sig["outputs"]["y"]["shape"] == (-1, 7)


# ---------------------------------------------------------------- the signatures themselves

def test_padding_does_not_change_a_clips_probabilities(loaded):
    wave, length = clips([24000, 9000, 3000])
    batch = probabilities(loaded.signatures[SIGNATURE_LENGTH], waveform=wave, length=length)
    for i, n in enumerate(length):
        alone = probabilities(loaded.signatures[SIGNATURE_DEFAULT], waveform=wave[i:i + 1, :n])
        np.testing.assert_allclose(batch[i], alone[0], atol=1e-5)
    assert np.abs(batch[0] - batch[2]).max() > 1e-4  # the clips do differ


@pytest.mark.parametrize("n", [1, 100, 511])
def test_too_short_clip_is_padded(loaded, n):
    wave, _ = clips([n])
    short = probabilities(loaded.signatures[SIGNATURE_DEFAULT], waveform=wave)
    assert short.shape == (1, 4) and np.isfinite(short).all()
    np.testing.assert_allclose(short.sum(), 1.0, atol=1e-5)
    padded = np.pad(wave, [(0, 0), (0, 2000)])
    again = probabilities(loaded.signatures[SIGNATURE_LENGTH], waveform=padded,
                          length=np.array([n], np.int32))
    np.testing.assert_allclose(again, short, atol=1e-6)


GOOD = np.tile(serving_check.synthetic_clip(0.5)[None, :], (2, 1))
LENGTH = np.array([8000, 6000], np.int32)
NAN = GOOD.copy()
NAN[1, 100] = np.nan
INF = GOOD.copy()
INF[0, 5] = -np.inf
STATS = np.zeros((2, 41), np.float32), np.ones((2, 41), np.float32)

BAD_REQUESTS = {
    "empty batch": (SIGNATURE_DEFAULT, {"waveform": GOOD[:0]}, "waveform: empty batch"),
    "no samples": (SIGNATURE_DEFAULT, {"waveform": GOOD[:, :0]}, "waveform: no samples"),
    "rank 1": (SIGNATURE_DEFAULT, {"waveform": GOOD[0]}, r"waveform: wrong rank"),
    "rank 3": (SIGNATURE_DEFAULT, {"waveform": GOOD[None]}, r"waveform: wrong rank"),
    "NaN": (SIGNATURE_DEFAULT, {"waveform": NAN}, "waveform: NaN or Inf"),
    "Inf": (SIGNATURE_LENGTH, {"waveform": INF, "length": LENGTH}, "waveform: NaN or Inf"),
    "length 0": (SIGNATURE_LENGTH, {"waveform": GOOD, "length": np.array([8000, 0], np.int32)},
                 "length: every value must be >= 1"),
    "length too long": (SIGNATURE_LENGTH,
                        {"waveform": GOOD, "length": np.array([8000, 8001], np.int32)},
                        "length: larger than the waveform rows"),
    "one length for two rows": (SIGNATURE_LENGTH, {"waveform": GOOD, "length": LENGTH[:1]},
                                "length: one value per waveform row"),
    "length rank 2": (SIGNATURE_LENGTH, {"waveform": GOOD, "length": LENGTH[:, None]},
                      "length: wrong rank"),
    "stats channels": (SIGNATURE_STATS, {"waveform": GOOD, "length": LENGTH,
                                         "feature_mean": STATS[0][:, :40],
                                         "feature_std": STATS[1][:, :40]},
                       r"feature_mean: \[batch, 41\] needed"),
    "stats NaN": (SIGNATURE_STATS, {"waveform": GOOD, "length": LENGTH,
                                    "feature_mean": STATS[0],
                                    "feature_std": np.full((2, 41), np.nan, np.float32)},
                  "feature_std: NaN or Inf"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_is_an_invalid_argument_naming_the_problem(loaded, case):
    signature, inputs, message = BAD_REQUESTS[case]
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        probabilities(loaded.signatures[signature], **inputs)
    # and the model still answers the next request
    good = probabilities(loaded.signatures[SIGNATURE_DEFAULT], waveform=GOOD)
    assert good.shape == (2, 4) and np.isfinite(good).all()


def test_stats_signature_answers(loaded):
    out = probabilities(loaded.signatures[SIGNATURE_STATS], waveform=GOOD, length=LENGTH,
                        feature_mean=STATS[0], feature_std=STATS[1])
    assert out.shape == (2, 4) and np.isfinite(out).all()


# ---------------------------------------------------------------- models.config

def test_models_config_lists_every_versioned_model(tmp_path, capsys):
    root = tmp_path / "savedmodels"
    for rel in ("mfcc_cnn/1", "mfcc_cnn/2", "logmel_cnn/3"):
        (root / rel).mkdir(parents=True)
        (root / rel / "saved_model.pb").write_bytes(b"")
    (root / "runs_without_versions" / "x").mkdir(parents=True)
    (root / ".logmel_cnn.tmp").mkdir()
    (root / "README.md").write_text("not a model\n")

    assert serving.main(["config", "--root", str(root), "--base-path", "/models/"]) == 0
    text = (root / "models.config").read_text()
    assert capsys.readouterr().out == text
    entries = re.findall(r'config \{\s*name: "([^"]+)"\s*base_path: "([^"]+)"\s*'
                         r'model_platform: "tensorflow"\s*\}', text)
    assert entries == [("logmel_cnn", "/models/logmel_cnn"), ("mfcc_cnn", "/models/mfcc_cnn")]
    assert text.startswith("model_config_list {") and text.rstrip().endswith("}")
    assert text.count("{") == text.count("}") == 3

    assert serving.main(["config", "--root", str(root)]) == 0
    local = (root / "models.config").read_text()
    assert f'base_path: "{(root / "mfcc_cnn").absolute()}"' in local


def test_models_config_without_models_is_a_usage_error(tmp_path, capsys):
    assert serving.main(["config", "--root", str(tmp_path)]) == 2
    assert "no <model>/<version>/saved_model.pb" in capsys.readouterr().err


# ---------------------------------------------------------------- request bodies

def test_request_body_round_trips(tiny_export, loaded, tmp_path, capsys):
    wave = serving_check.synthetic_clip(0.7, seed=3)
    path = tmp_path / "clip.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    assert serving.main(["request", str(path)]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["signature_name"] == SIGNATURE_DEFAULT
    assert list(body["inputs"]) == ["waveform"]
    sent = np.asarray(body["inputs"]["waveform"], np.float32)
    assert sent.shape == (1, len(wave))
    np.testing.assert_array_equal(sent[0], wave)  # shortest decimals read back exactly
    served = probabilities(loaded.signatures[SIGNATURE_DEFAULT], waveform=sent)
    direct = probabilities(loaded.signatures[SIGNATURE_DEFAULT], waveform=wave[None])
    np.testing.assert_array_equal(served, direct)

    root = tiny_export[0].parent.parent
    assert serving.main(["request", str(path), "--model", "mfcc_cnn", "--root", str(root),
                         "--format", "instances", "--signature", SIGNATURE_LENGTH]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["signature_name"] == SIGNATURE_LENGTH
    (row,) = body["instances"]
    assert set(row) == {"waveform", "length"}
    assert row["length"] == len(row["waveform"]) == len(wave)


def test_request_resamples_other_rates_to_16k(tmp_path, capsys):
    path = tmp_path / "stereo44k.wav"
    t = np.arange(44100) / 44100
    sf.write(path, np.stack([np.sin(2 * np.pi * 220 * t)] * 2, axis=1) * 0.1, 44100,
             subtype="PCM_16")
    assert serving.main(["request", str(path), "--format", "instances"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert abs(len(body["instances"][0]["waveform"]) - 16000) <= 1


def test_request_usage_errors(tmp_path, capsys):
    assert serving.main(["request", str(tmp_path / "missing.wav")]) == 2
    assert "file not found" in capsys.readouterr().err
    path = tmp_path / "clip.wav"
    sf.write(path, serving_check.synthetic_clip(0.5), 16000)
    assert serving.main(["request", str(path), "--signature", SIGNATURE_STATS]) == 2
    assert "--stats" in capsys.readouterr().err


def _fake_export(folder, name="mfcc_cnn", version=3, marker="new"):
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_text(marker)
    (folder / "variables").mkdir()
    (folder / "variables" / "variables.index").write_text(marker)
    (folder / "zoo.json").write_text(json.dumps({"name": name, "version": version}))
    return folder


def test_promote_copies_an_export_into_the_base_folder(tmp_path, capsys):
    source = _fake_export(tmp_path / "runs" / "exports" / "mfcc_cnn" / "3")
    root = tmp_path / "savedmodels"
    assert serving.main(["promote", str(source.parent), "--root", str(root)]) == 0
    final = root / "mfcc_cnn" / "1"
    assert (final / "variables" / "variables.index").read_text() == "new"
    assert json.loads((final / "zoo.json").read_text()) == {"name": "mfcc_cnn", "version": 1}
    assert json.loads((source / "zoo.json").read_text())["version"] == 3  # source untouched
    assert serving.main(["promote", str(source), "--root", str(root)]) == 0   # next free
    assert sorted(p.name for p in (root / "mfcc_cnn").iterdir()) == ["1", "2"]


def test_promote_refuses_to_overwrite_unless_asked_and_then_swaps(tmp_path, capsys):
    root = tmp_path / "savedmodels"
    _fake_export(root / "mfcc_cnn" / "1", version=1, marker="old")
    source = _fake_export(tmp_path / "src" / "2")
    assert serving.main(["promote", str(source), "--root", str(root), "--version", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and "--replace" in err
    assert (root / "mfcc_cnn" / "1" / "saved_model.pb").read_text() == "old"
    assert serving.main(["promote", str(source), "--root", str(root), "--version", "1",
                         "--replace"]) == 0
    assert (root / "mfcc_cnn" / "1" / "saved_model.pb").read_text() == "new"
    assert [p.name for p in (root / "mfcc_cnn").iterdir()] == ["1"]   # no temporary left


def test_promote_of_something_that_is_not_an_export_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert serving.main(["promote", str(tmp_path / "empty"), "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_request_body_of_several_clips():
    a, b = serving_check.synthetic_clip(0.5, seed=1), serving_check.synthetic_clip(0.3, seed=2)
    with pytest.raises(serving.ServingError, match="different lengths"):
        serving.request_body([a, b])
    body = serving.request_body([a, b], SIGNATURE_LENGTH)
    assert body["inputs"]["length"] == [len(a), len(b)]
    rows = np.asarray(body["inputs"]["waveform"], np.float32)
    assert rows.shape == (2, len(a)) and not rows[1, len(b):].any()
