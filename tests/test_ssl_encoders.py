"""HuBERT / Wav2Vec2 encoders, extraction and fine-tuning on tiny random checkpoints.

Everything that imports transformers runs once in a child process (tests/ssl_checks.py: it
switches tf.keras to tf_keras for its process); each of its checks is reported here as a test.
Checkpoint-folder errors are found before transformers is imported, so they run in-process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ssl_checks  # noqa: E402  (imports no TensorFlow or transformers)

from pipelines.encoders.ssl import CheckpointError, inspect_checkpoint, torch_available  # noqa: E402


@pytest.mark.parametrize("name", ssl_checks.check_names())
def test_checks_in_a_transformers_process(ssl_checks, name):
    _, results = ssl_checks
    assert name in results, f"{name} did not run"
    assert results[name] == "ok", results[name]


def tiny_config(model_type="hubert") -> dict:
    return {"model_type": model_type, "hidden_size": 32, "num_hidden_layers": 2,
            "conv_kernel": [10, 8, 8], "conv_stride": [5, 8, 8], "feat_extract_norm": "group"}


def checkpoint_folder(tmp_path, files=("config.json", "preprocessor_config.json",
                                       "model.safetensors"), model_type="hubert") -> Path:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    if "config.json" in files:
        (folder / "config.json").write_text(json.dumps(tiny_config(model_type)))
    if "preprocessor_config.json" in files:
        (folder / "preprocessor_config.json").write_text(
            json.dumps({"do_normalize": True, "sampling_rate": 16000}))
    for name in files:
        if not name.endswith(".json"):
            (folder / name).write_bytes(b"weights")
    return folder


@pytest.mark.parametrize("missing, named", [
    ("config.json", "config.json"),
    ("preprocessor_config.json", "preprocessor_config.json"),
    ("model.safetensors", "no weights file"),
])
def test_incomplete_checkpoint_folder_names_the_missing_file(tmp_path, missing, named):
    files = [f for f in ("config.json", "preprocessor_config.json", "model.safetensors")
             if f != missing]
    folder = checkpoint_folder(tmp_path, files)
    with pytest.raises(CheckpointError) as err:
        inspect_checkpoint(folder, "hubert")
    assert named in str(err.value) and "\n" not in str(err.value)


def test_missing_folder_and_wrong_encoder(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        inspect_checkpoint(tmp_path / "nowhere", "hubert")
    folder = checkpoint_folder(tmp_path, model_type="wav2vec2")
    with pytest.raises(CheckpointError, match="use --encoder wav2vec2"):
        inspect_checkpoint(folder, "hubert")
    assert inspect_checkpoint(folder, "wav2vec2").weights.name == "model.safetensors"


@pytest.mark.skipif(torch_available(), reason="torch is installed: the .bin loads")
def test_pytorch_bin_without_torch_says_what_to_do(tmp_path):
    folder = checkpoint_folder(tmp_path, ("config.json", "preprocessor_config.json",
                                          "pytorch_model.bin"))
    with pytest.raises(CheckpointError) as err:
        inspect_checkpoint(folder, "hubert")
    msg = str(err.value)
    assert "pip install torch" in msg and "model.safetensors" in msg and "\n" not in msg


def test_usable_weights_win_over_a_pytorch_bin(tmp_path):
    folder = checkpoint_folder(tmp_path, ("config.json", "preprocessor_config.json",
                                          "pytorch_model.bin", "tf_model.h5"))
    assert inspect_checkpoint(folder, "hubert").weights.name == "tf_model.h5"


def test_sharded_index_with_a_missing_part(tmp_path):
    folder = checkpoint_folder(tmp_path, ("config.json", "preprocessor_config.json"))
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors",
                        "b": "model-00002-of-00002.safetensors"}}))
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors"):
        inspect_checkpoint(folder, "hubert")


def test_embeddings_cli_one_line_errors(tmp_path, ssl_waveform_set, capsys):
    from pipelines.encoders.embed import main

    rc = main(["--encoder", "hubert", "--checkpoint", str(tmp_path / "none"), "--data",
               str(ssl_waveform_set), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: ") and "\n" not in err
    folder = checkpoint_folder(tmp_path)
    rc = main(["--encoder", "hubert", "--checkpoint", str(folder), "--data",
               str(ssl_waveform_set), "--layer", "5", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "hidden states 0..2" in err and "\n" not in err
    rc = main(["--encoder", "hubert", "--checkpoint", str(folder), "--data",
               str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "schema.json" in err


def test_this_process_never_imported_transformers():
    """Project modules import transformers only inside the SSL steps; Keras 3 code in this
    process keeps tf.keras untouched."""
    import zoo.models.wav2vec2_finetune  # noqa: F401
    from zoo.models.registry import list_models

    assert "wav2vec2_finetune" in list_models()
    assert "transformers" not in sys.modules


def test_resolve_layers():
    from pipelines.encoders.embed import ExtractError, resolve_layers, target_name

    assert resolve_layers(None, False, 12) == [12]
    assert resolve_layers(["6", "last", "6"], True, 12) == [6, 12, "mean"]
    assert [target_name("hubert", x) for x in (0, "mean")] == ["hubert-layer0", "hubert-mean"]
    with pytest.raises(ExtractError, match="0..12"):
        resolve_layers(["13"], False, 12)


@pytest.mark.slow
def test_finetune_cli_trains_exports_and_evaluates(ssl_checks, ssl_waveform_set, tmp_path,
                                                   capsys):
    """python -m zoo.train --model wav2vec2_finetune (own process), then zoo.evaluate on the
    waveform SavedModel it exports."""
    import subprocess

    from conftest import REPO, subprocess_env
    from zoo.evaluation.evaluate import main as evaluate_main

    out, _ = ssl_checks
    run, export = tmp_path / "run", tmp_path / "savedmodels"
    proc = subprocess.run(
        [sys.executable, "-m", "zoo.train", "--model", "wav2vec2_finetune", "--checkpoint",
         str(out / "ckpt" / "wav2vec2"), "--data", str(ssl_waveform_set), "--epochs", "2",
         "--batch-size", "8", "--set", "trainable_layers=1", "--run-dir", str(run),
         "--export", str(export)], cwd=REPO, env=subprocess_env(), capture_output=True,
        text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("config.json", "versions.json", "history.jsonl", "metrics.json",
                 "predictions.csv", "confusion.png", "tb", "best", "backup"):
        assert (run / name).exists(), name
    assert len((run / "history.jsonl").read_text().splitlines()) == 2
    metrics = json.loads((run / "metrics.json").read_text())
    result = tmp_path / "eval.json"
    rc = evaluate_main(["--model", str(export / "wav2vec2_finetune"), "--data",
                        str(ssl_waveform_set), "--out", str(result), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    evaluated = json.loads(result.read_text())
    assert evaluated["n"] == metrics["test"]["n"]
    assert evaluated["ua"] == pytest.approx(metrics["test"]["ua"], abs=1e-6)
