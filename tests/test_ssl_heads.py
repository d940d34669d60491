"""Heads over SSL embeddings (Keras 3): every registered 'embedding' / 'frames' model builds,
runs, has its pinned size and named layers, survives .keras and SavedModel round trips; and
the heads train and evaluate end to end on an embedding set extracted from a tiny random HuBERT
(the set comes from tests/ssl_checks.py, run in its own process)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipelines.common.tfenv import quiet_tensorflow

tf = quiet_tensorflow()
import keras  # noqa: E402

from zoo.models.registry import build_model, get_entry, list_models  # noqa: E402

NUM_CLASSES = 7
# Pinned parameter counts for 7 classes at the base models' widths (1536-dim vectors,
# 768-dim frames). A change here is a change of architecture: update deliberately.
PARAMS = {
    "hubert_cnn": 246_855,
    "hubert_rnn": 97_927,
    "wav2vec2_frozen": 265_223,
}
NAMED_LAYERS = {
    "hubert_cnn": ["embedding", "input_norm", "conv_block_1", "conv_block_2", "conv_block_3",
                   "global_pool", "classifier"],
    "hubert_rnn": ["embedding", "input_norm", "to_sequence", "bilstm", "attention",
                   "classifier"],
    "wav2vec2_frozen": ["frames", "frame_mask", "projection", "attention", "classifier"],
}
HEADS = [m for m in list_models() if get_entry(m).input in ("embedding", "frames")
         and get_entry(m).family != "zoo.models.whisper_heads"]  # tests/test_whisper_heads.py


def inputs(name, batch=3, seed=0):
    rng = np.random.default_rng(seed)
    if get_entry(name).input == "embedding":
        return rng.normal(size=(batch, 1536)).astype(np.float32)
    x = rng.normal(size=(batch, 40, 768)).astype(np.float32)
    x[1, 25:] = 0.0  # padded frames
    x[2, 10:] = 0.0
    return x


@pytest.fixture(scope="module", params=HEADS)
def head(request):
    keras.utils.set_random_seed(1)
    return request.param, build_model(request.param, NUM_CLASSES)


def test_heads_are_registered():
    assert set(HEADS) == set(PARAMS)
    assert get_entry("wav2vec2_finetune").input == "waveform"


def test_pinned_size(head):
    name, model = head
    assert model.count_params() == PARAMS[name], f"{name}: {model.count_params()}"


def test_forward_gives_probabilities(head):
    name, model = head
    probs = model(inputs(name), training=False).numpy()
    assert probs.shape == (3, NUM_CLASSES)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_named_layers(head):
    name, model = head
    names = {layer.name for layer in model.layers}
    assert not [n for n in NAMED_LAYERS[name] if n not in names]


def test_keras_file_round_trip(head, tmp_path):
    name, model = head
    x = inputs(name)
    model.save(tmp_path / f"{name}.keras")
    loaded = keras.models.load_model(tmp_path / f"{name}.keras", safe_mode=True)
    np.testing.assert_allclose(loaded(x, training=False).numpy(),
                               model(x, training=False).numpy(), atol=1e-6)


def test_savedmodel_round_trip(head, tmp_path):
    from zoo.export.ssl import export_embedding_head

    name, model = head
    kind = get_entry(name).input
    dim = 1536 if kind == "embedding" else 768
    labels = [f"c{i}" for i in range(NUM_CLASSES)]
    folder = export_embedding_head(model, labels, tmp_path, name, kind, dim, {"encoder": "x"})
    x = inputs(name)
    out = tf.saved_model.load(str(folder)).signatures["serving_default"](**{kind: tf.constant(x)})
    expected = model(x, training=False).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    assert [s.decode() for s in out["label"].numpy()] == [labels[i]
                                                          for i in expected.argmax(1)]
    info = json.loads((folder / "zoo.json").read_text())
    assert info["input"] == kind and info["input_dim"] == dim


def test_frames_head_ignores_padding():
    model = build_model("wav2vec2_frozen", NUM_CLASSES)
    x = inputs("wav2vec2_frozen")
    batch = model(x, training=False).numpy()
    alone = model(x[2:3, :10], training=False).numpy()
    np.testing.assert_allclose(alone[0], batch[2], atol=1e-5)


def test_rnn_head_refuses_a_width_it_cannot_split():
    from zoo.models.ssl_heads import HeadConfigError

    with pytest.raises(HeadConfigError, match="chunk"):
        build_model("hubert_rnn", NUM_CLASSES, dim=100)


# ---------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def extracted(ssl_checks):
    out, results = ssl_checks
    if results.get("check_extraction_cli_and_resume") != "ok":
        pytest.fail("the extraction check failed; see test_ssl_encoders")
    return out / "emb-full"


def run_cli(module_main, argv, capsys):
    rc = module_main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err.strip()


@pytest.mark.parametrize("model, layer", [("hubert_cnn", "hubert-layer1"),
                                          ("wav2vec2_frozen", "hubert-mean")])
def test_train_and_evaluate_a_head(extracted, tmp_path, capsys, model, layer):
    from zoo.evaluation.evaluate import main as evaluate_main
    from zoo.training.train import main as train_main

    data = extracted / layer
    run, export = tmp_path / "run", tmp_path / "savedmodels"
    rc, out, err = run_cli(train_main, ["--model", model, "--data", str(data), "--epochs", "1",
                                        "--batch-size", "8", "--run-dir", str(run),
                                        "--export", str(export)], capsys)
    assert rc == 0, err
    for name in ("config.json", "versions.json", "history.jsonl", "metrics.json",
                 "predictions.csv", "confusion.png", "model.keras", "tb"):
        assert (run / name).exists(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["n"] > 0 and Path(metrics["export"]).is_dir()
    config = json.loads((run / "config.json").read_text())
    assert config["input_dim"] == (64 if model == "hubert_cnn" else 32)
    result = tmp_path / "eval.json"
    rc, out, err = run_cli(evaluate_main, ["--model", str(export / model), "--data", str(data),
                                           "--out", str(result)], capsys)
    assert rc == 0, err
    evaluated = json.loads(result.read_text())
    assert evaluated["n"] == metrics["test"]["n"]
    assert evaluated["ua"] == pytest.approx(metrics["test"]["ua"])


def synthetic_set(src: Path, dst: Path, dim: int) -> Path:
    """A copy of an embedding set with random vectors of another width."""
    from pipelines.records.embedding_set import encode_example
    from pipelines.common.io import write_json_atomic

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.tfrecord"))
    schema = json.loads((src / "schema.json").read_text())
    schema["embedding"].update(dim=dim, frame_dim=dim // 2, frames=False)
    manifest = {r["id"]: r for r in
                __import__("pandas").read_csv(src / "manifest.csv").to_dict("records")}
    rng = np.random.default_rng(0)
    for shard in schema["shards"]:
        with tf.io.TFRecordWriter(str(dst / shard["file"])) as writer:
            for clip_id in shard["ids"]:
                row = manifest[clip_id]
                writer.write(encode_example(rng.normal(size=dim), int(row["label"]),
                                            {**row, "id": clip_id}))
        shard["bytes"] = (dst / shard["file"]).stat().st_size
    write_json_atomic(dst / "schema.json", schema)
    return dst


def test_dimension_mismatch_is_one_line(extracted, tmp_path, capsys):
    from zoo.evaluation.evaluate import main as evaluate_main
    from zoo.training.train import main as train_main

    data = extracted / "hubert-layer1"
    rc, _, err = run_cli(train_main, ["--model", "hubert_cnn", "--data", str(data),
                                      "--set", "dim=1536"], capsys)
    assert rc == 2 and "1536" in err and "64" in err and "\n" not in err
    model = build_model("hubert_cnn", NUM_CLASSES, dim=64)
    from zoo.export.ssl import export_embedding_head

    schema = json.loads((data / "schema.json").read_text())
    export_embedding_head(model, schema["labels"], tmp_path / "sm", "hubert_cnn", "embedding",
                          64, schema["embedding"])
    other = synthetic_set(data, tmp_path / "wide", 96)
    rc, _, err = run_cli(evaluate_main, ["--model", str(tmp_path / "sm" / "hubert_cnn"),
                                         "--data", str(other)], capsys)
    assert rc == 2 and "96-dim" in err and "64-dim" in err and "\n" not in err


def test_wrong_kind_of_data_is_one_line(extracted, ssl_waveform_set, capsys):
    from zoo.training.train import main as train_main

    rc, _, err = run_cli(train_main, ["--model", "hubert_cnn", "--data",
                                      str(ssl_waveform_set)], capsys)
    assert rc == 2 and "is a waveform set" in err and "pipelines.embeddings" in err
    pooled_only = extracted.parent / "emb-batch1" / "hubert-layer1"
    rc, _, err = run_cli(train_main, ["--model", "wav2vec2_frozen", "--data",
                                      str(pooled_only)], capsys)
    assert rc == 2 and "--frames" in err and "\n" not in err
    rc, _, err = run_cli(train_main, ["--model", "wav2vec2_finetune", "--data",
                                      str(ssl_waveform_set)], capsys)
    assert rc == 2 and "--checkpoint" in err
