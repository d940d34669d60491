"""Checks that need transformers, run in their own process by tests/test_ssl_encoders.py
(importing transformers' TF classes switches tf.keras to tf_keras for the whole process):

    python tests/ssl_checks.py OUT_DIR WAVEFORM_SET [check_name ...]

Makes tiny random checkpoints (tests/ssl_tiny.py) in OUT_DIR/ckpt, runs every check_* below and
writes OUT_DIR/results.json: {check name: "ok" or the failure's traceback}. Extraction checks
leave embedding sets in OUT_DIR/emb-* for the in-process head tests.
"""

from __future__ import annotations

import json
import shutil
import sys
import traceback
from pathlib import Path

import numpy as np

OUT = Path("ssl-checks")  # set by main()
WAVE: Path | None = None
CK: dict = {}
LENGTHS = (16000, 9000, 4001, 700)  # the last is under two frames


def clips(seed=0, lengths=LENGTHS):
    rng = np.random.default_rng(seed)
    wave = np.zeros((len(lengths), max(lengths)), np.float32)
    for i, n in enumerate(lengths):
        t = np.arange(n) / 16000
        wave[i, :n] = 0.2 * np.sin(2 * np.pi * (120 + 40 * i) * t) + 0.05 * rng.normal(size=n)
    return wave, np.asarray(lengths, np.int32)


def encoder(name, **kw):
    from pipelines.encoders.ssl import inspect_checkpoint, load_encoder

    return load_encoder(inspect_checkpoint(CK[name], name.split("-")[0]), **kw)


def check_formats_load_the_same_weights():
    """tf_model.h5, model.safetensors (TF layout) and model.safetensors (PyTorch layout, as the
    hub's PyTorch checkpoints) load into the TF classes without torch: every weight bit-equal,
    and equal outputs."""
    wave, length = clips()
    for name in ("hubert", "wav2vec2"):
        ref = encoder(name)
        ref_out = ref(wave, length)[0][-1].numpy()
        for fmt in ("safetensors-tf", "safetensors-pt"):
            other = encoder(f"{name}-{fmt}")
            assert len(other.model.weights) == len(ref.model.weights)
            for a, b in zip(other.model.weights, ref.model.weights):
                np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=f"{fmt} {a.name}")
            np.testing.assert_allclose(other(wave, length)[0][-1].numpy(), ref_out, atol=1e-6,
                                       err_msg=f"{name} {fmt}")
        assert "torch" not in sys.modules


def check_unpadded_clip_matches_transformers():
    """One clip, no padding: our forward equals transformers' own (all hidden states)."""
    wave, length = clips()
    for name in ("hubert", "wav2vec2", "wav2vec2-layernorm"):
        enc = encoder(name)
        x, n = enc.prepare(wave[:1, :length[0]], length[:1])
        ref = enc.model(x, output_hidden_states=True).hidden_states
        states, _ = enc(wave[:1, :length[0]], length[:1])
        assert len(states) == len(ref) == enc.num_layers + 1
        for i, (a, b) in enumerate(zip(states, ref)):
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=f"{name} {i}")


def check_shapes_and_pooling():
    """frames [clip frames x hidden]; pooled [2 x hidden] = numpy mean and std of the frames."""
    from pipelines.encoders.ssl import frame_count, masked_mean_std, select_layer

    wave, length = clips()
    for name in ("hubert", "wav2vec2"):
        enc = encoder(name)
        states, mask = enc(wave, length)
        hidden = enc.config.hidden_size
        counts = mask.numpy().sum(axis=1).astype(int)
        expected = [max(frame_count(int(n), enc.config), 1) for n in length]
        assert counts.tolist() == expected, (counts, expected)
        for layer in (0, 1, enc.num_layers, "mean"):
            frames = select_layer(states, layer)
            assert frames.shape[-1] == hidden
            pooled = masked_mean_std(frames, mask).numpy()
            assert pooled.shape == (len(length), 2 * hidden)
            for i, n in enumerate(counts):
                f = frames[i, :n].numpy()
                np.testing.assert_allclose(pooled[i, :hidden], f.mean(axis=0), atol=1e-5)
                np.testing.assert_allclose(pooled[i, hidden:], f.std(axis=0), atol=1e-5)


def check_padding_does_not_change_a_clip():
    """Each clip's frames and pooled vector are the same alone and padded in a batch, for
    'group' (base) and 'layer' feature-encoder norms; plain transformers on the same padded
    batch without a mask is not (that is what the masking fixes)."""
    from pipelines.encoders.ssl import masked_mean_std

    wave, length = clips()
    for name in ("hubert", "wav2vec2", "wav2vec2-layernorm"):
        enc = encoder(name)
        states, mask = enc(wave, length)
        pooled = masked_mean_std(states[-1], mask).numpy()
        for i, n in enumerate(length):
            s1, m1 = enc(wave[i:i + 1, :n], length[i:i + 1])
            frames = int(m1.numpy().sum())
            # equal up to float32 rounding (different shapes sum in different orders)
            np.testing.assert_allclose(states[-1][i, :frames].numpy(), s1[-1][0].numpy(),
                                       rtol=1e-4, atol=1e-5, err_msg=f"{name} clip {i}")
            np.testing.assert_allclose(pooled[i], masked_mean_std(s1[-1], m1).numpy()[0],
                                       rtol=1e-4, atol=1e-5, err_msg=f"{name} clip {i}")
        if name == "hubert":
            x, _ = enc.prepare(wave, length)
            plain = enc.model(x).last_hidden_state.numpy()
            frames = int(mask[2].numpy().sum())
            diff = np.abs(plain[2, :frames] - states[-1][2, :frames].numpy()).max()
            assert diff > 1e-3, f"unmasked padding changed nothing ({diff})"


def check_do_normalize_follows_the_preprocessor_config():
    """do_normalize true: the input level does not matter; false: it does."""
    import transformers

    wave, length = clips()
    enc = encoder("hubert")
    a = enc(wave, length)[0][-1].numpy()
    b = enc(wave * 0.1, length)[0][-1].numpy()
    np.testing.assert_allclose(a, b, atol=1e-4)
    folder = OUT / "ckpt" / "hubert-raw"
    shutil.copytree(CK["hubert"], folder)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=False).save_pretrained(str(folder))
    CK["hubert-raw"] = str(folder)
    raw = encoder("hubert-raw")
    assert not raw.do_normalize
    c = raw(wave, length)[0][-1].numpy()
    d = raw(wave * 0.1, length)[0][-1].numpy()
    assert np.abs(c - d).max() > 1e-3


def _error(fn):
    from pipelines.encoders.ssl import CheckpointError

    try:
        fn()
    except CheckpointError as err:
        return str(err)
    raise AssertionError("no CheckpointError")


def check_damaged_weights_give_one_line_errors():
    """A truncated weights file, and a file lacking tensors, name the file in one line."""
    from safetensors.numpy import load_file, save_file

    for fmt, name in (("safetensors-pt", "model.safetensors"), ("h5", "tf_model.h5")):
        folder = OUT / "ckpt" / f"truncated-{fmt}"
        src = CK["hubert" if fmt == "h5" else f"hubert-{fmt}"]
        shutil.copytree(src, folder)
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[:len(data) // 2])
        CK[f"hubert-truncated-{fmt}"] = str(folder)
        msg = _error(lambda: encoder(f"hubert-truncated-{fmt}"))
        assert "\n" not in msg and name in msg and "cannot be read" in msg, msg
    folder = OUT / "ckpt" / "lacking"
    shutil.copytree(CK["hubert-safetensors-pt"], folder)
    tensors = load_file(str(folder / "model.safetensors"))
    dropped = sorted(k for k in tensors if "layers.1.attention.k_proj" in k)[0]
    del tensors[dropped]
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    CK["hubert-lacking"] = str(folder)
    msg = _error(lambda: encoder("hubert-lacking"))
    assert "\n" not in msg and "lacks 1 of the encoder's weights" in msg and \
        "k_proj" in msg, msg


def check_finetune_step_changes_only_the_trained_layers():
    """One training step with the top layer trainable: the conv feature encoder, the feature
    projection, the positional convolution and layer 0 stay bit-identical; layer 1 and the
    head change."""
    from zoo.models.wav2vec2_finetune import build_finetune
    from zoo.training.train import TrainConfig
    from zoo.training.finetune import Trainer

    model = build_finetune(7, CK["wav2vec2"], trainable_layers=1)
    trainer = Trainer(model, TrainConfig(model="wav2vec2_finetune", epochs=1, lr=1e-2),
                      steps=1, class_weights={0: 2.0}, num_classes=7)
    before = [w.numpy().copy() for w in model.weights]
    wave, length = clips()
    trainer.train_step({"waveform": wave, "length": length},
                       np.array([0, 1, 2, 3], np.int32))
    trained = {id(v) for v in trainer.encoder_vars + trainer.head_vars}
    assert trained, "nothing to train"
    for w, old in zip(model.weights, before):
        changed = not np.array_equal(w.numpy(), old)
        if id(w) in trained:
            assert changed, f"{w.name} should have changed"
        else:
            assert not changed, f"{w.name} changed but is frozen"
    names = [v.name for v in trainer.encoder_vars]
    assert names and all("layers.1/" in n for n in names), names
    frozen = [w.name for w in model.weights if id(w) not in trained]
    for part in ("feature_extractor", "feature_projection", "pos_conv_embed", "layers.0/"):
        assert any(part in n for n in frozen), part
    FINETUNED.update(model=model, trainer=trainer)


FINETUNED: dict = {}


def check_finetune_savedmodel_reloads_with_equal_outputs():
    import tensorflow as tf

    from zoo.export.ssl import export_waveform_classifier

    if not FINETUNED:
        check_finetune_step_changes_only_the_trained_layers()
    model, trainer = FINETUNED["model"], FINETUNED["trainer"]
    labels = [f"c{i}" for i in range(7)]
    folder = export_waveform_classifier(model, labels, OUT / "savedmodels", "wav2vec2_finetune",
                                        model.checkpoint_info, model.encoder_config_json)
    wave, length = clips(seed=5)
    expected = trainer.infer(wave, length).numpy()
    loaded = tf.saved_model.load(str(folder))
    out = loaded.signatures["serving_with_length"](waveform=tf.constant(wave),
                                                   length=tf.constant(length))
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    assert [s.decode() for s in out["label"].numpy()] == [labels[i] for i in
                                                          expected.argmax(1)]
    one = loaded.signatures["serving_default"](waveform=tf.constant(wave[1:2, :length[1]]))
    np.testing.assert_allclose(one["probabilities"].numpy()[0], expected[1], atol=1e-5)
    info = json.loads((folder / "zoo.json").read_text())
    assert info["input"] == "waveform" and info["labels"] == labels


def _read_set(folder):
    """{id: (embedding, frames or None)} of every shard of an embedding set folder."""
    import tensorflow as tf

    out = {}
    for path in sorted(Path(folder).glob("*.tfrecord")):
        for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            ex = tf.train.Example.FromString(raw).features.feature
            frames = ex["frames"].bytes_list.value[0] if "frames" in ex else None
            out[ex["id"].bytes_list.value[0].decode()] = (
                ex["embedding"].bytes_list.value[0], frames)
    return out


def check_extraction_cli_and_resume():
    """The CLI writes one set per layer; an extraction stopped after two shards and run again
    writes the same bytes as an uninterrupted one, without recomputing finished shards;
    stored vectors are the mean/std of stored frames; batch size 1 gives the same vectors."""
    from pipelines.encoders.embed import extract, main

    assert WAVE is not None, "no waveform set given"
    full = OUT / "emb-full"
    rc = main(["--encoder", "hubert", "--checkpoint", CK["hubert-safetensors-pt"], "--data",
               str(WAVE), "--out", str(full), "--layer", "1", "--layers", "all", "--frames",
               "--frames-dtype", "float32", "--batch-size", "4", "--quiet"])
    assert rc == 0
    resumed = OUT / "emb-resumed"
    args = dict(data=WAVE, encoder="hubert", checkpoint=CK["hubert-safetensors-pt"],
                layers=["1"], all_layers=True, frames=True, frames_dtype="float32",
                batch_size=4, out=resumed, progress=False)
    try:
        extract(**args, fail_after_shards=2)
        raise AssertionError("the simulated failure did not happen")
    except RuntimeError as err:
        assert "simulated" in str(err)
    first = resumed / "hubert-layer1"
    assert not (first / "schema.json").exists()
    done = {p.name: p.stat().st_mtime_ns for p in first.glob("*.tfrecord")}
    assert len(done) == 2, done
    extract(**args)
    for name in ("hubert-layer1", "hubert-mean"):
        a, b = full / name, resumed / name
        assert (b / "schema.json").is_file()
        for shard in a.glob("*.tfrecord"):
            assert shard.read_bytes() == (b / shard.name).read_bytes(), shard.name
    assert {p: first.joinpath(p).stat().st_mtime_ns for p in done} == done
    schema = json.loads((full / "hubert-layer1" / "schema.json").read_text())
    hidden = schema["embedding"]["frame_dim"]
    assert schema["embedding"]["dim"] == 2 * hidden == 64
    stored = _read_set(full / "hubert-layer1")
    assert len(stored) == schema["total_examples"]
    for emb, frames in stored.values():
        v = np.frombuffer(emb, "<f4")
        f = np.frombuffer(frames, "<f4").reshape(-1, hidden)
        np.testing.assert_allclose(v, np.concatenate([f.mean(0), f.std(0)]), atol=1e-5)
    single = OUT / "emb-batch1"
    extract(WAVE, "hubert", CK["hubert-safetensors-pt"], ["1"], batch_size=1, out=single,
            progress=False)
    alone = _read_set(single / "hubert-layer1")
    for key, (emb, _) in stored.items():
        np.testing.assert_allclose(np.frombuffer(alone[key][0], "<f4"),
                                   np.frombuffer(emb, "<f4"), rtol=1e-4, atol=1e-5,
                                   err_msg=key)


def check_hub_id_loads_the_cached_snapshot():
    """--checkpoint as a hub id: the tiny HuBERT put into a Hugging Face cache laid out as
    huggingface_hub lays it out (tests/hf_cache.py), resolved with HF_HUB_OFFLINE=1, loads
    from the snapshot with the folder's weights (bit-equal) and outputs, recording id and
    commit."""
    import os

    from hf_cache import add_snapshot
    from pipelines.encoders.ssl import inspect_checkpoint, load_encoder

    cache = OUT / "hf-hub"
    snap = add_snapshot(cache, "ser-zoo/tiny-hubert", Path(CK["hubert-safetensors-pt"]))
    saved = {k: os.environ.get(k) for k in ("HF_HUB_CACHE", "HF_HUB_OFFLINE")}
    os.environ.update(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    try:
        ck = inspect_checkpoint("ser-zoo/tiny-hubert", "hubert", progress=None)
        enc = load_encoder(ck)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert ck.folder == snap and ck.weights == snap / "model.safetensors"
    assert ck.hub == {"repo_id": "ser-zoo/tiny-hubert", "revision": "main",
                      "commit": snap.name}
    ref = encoder("hubert-safetensors-pt")
    assert len(enc.model.weights) == len(ref.model.weights)
    for a, b in zip(enc.model.weights, ref.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
    wave, length = clips()
    np.testing.assert_allclose(enc(wave, length)[0][-1].numpy(),
                               ref(wave, length)[0][-1].numpy(), atol=1e-6)


def check_names() -> list[str]:
    return [n for n in globals() if n.startswith("check_")]


def main(argv: list[str]) -> int:
    global OUT, WAVE
    from pipelines.common.tfenv import quiet_tensorflow

    OUT, WAVE = Path(argv[0]), Path(argv[1])
    quiet_tensorflow()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import ssl_tiny

    OUT.mkdir(parents=True, exist_ok=True)
    CK.update(ssl_tiny.make_all(OUT / "ckpt"))
    results = {}
    wanted = argv[2:] or check_names()
    for name in wanted:
        try:
            globals()[name]()
            results[name] = "ok"
        except Exception:  # report every failure, go on with the rest
            results[name] = traceback.format_exc()
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    return 0 if all(v == "ok" for v in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
