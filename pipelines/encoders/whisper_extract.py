"""Whisper embeddings of a waveform set: `python -m pipelines.embeddings --encoder whisper`.

    python -m pipelines.embeddings --encoder whisper --data tfrecords/full
        [--checkpoint DIR] [--context clip|30s] [--trim-db none|DB] [--frames [--frames-layer N]]

writes tfrecords/full/embeddings/whisper-tiny.en/ (the checkpoint's name; `-30s` for the 30 s
context, `-trim40` with silence trimmed at 40 dB): per clip the mean and standard deviation of
EVERY hidden state (0 = conv stem + positions .. L = last layer after the final layer norm)
over the clip's own encoder frames, concatenated: (L + 1) x 2 x d numbers (5 x 768 = 3840 for
tiny), so a head can pick a layer or learn a mix (zoo.models.whisper_heads). With --frames also
one layer's frame sequence (for whisper_attn). Same set format, resumability and progress bar
as the HuBERT path (pipelines.embeddings); the log-Mel is computed on the graph from the
FeatureSpec stored in the set (kind whisper_logmel), as the exported models do.

Clips longer than 30 s are cut into 30 s windows and pooled over all of them. A clip that is
digital silence (every sample zero) has nothing to embed: it is left out and listed in the
set's skipped.csv with the reason.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.records.embedding_set import FRAME_DTYPES, VERSION, encode_example

CONTEXT_SUFFIX = {"clip": "", "30s": "-30s"}


def whisper_spec_for(weights, trim_db):
    """The zoo's Whisper front end for a checkpoint: its mel bands, DC removed, trimmed at
    trim_db below the loudest frame (None: untrimmed)."""
    from pipelines.features.spec import whisper_spec

    return whisper_spec(n_mels=weights.config["n_mels"], trim_db=trim_db, remove_dc=True)


# Whisper saw untrimmed audio in training, and its statistics measured as well or better
# without trimming the clips' silence (bench/whisper_layers.py), so none by default.
DEFAULT_TRIM_DB = None


def target_name(weights, context: str, trim_db) -> str:
    name = weights.name + CONTEXT_SUFFIX[context]
    return name if trim_db is None else f"{name}-trim{trim_db:g}"


def make_runner(encoder, spec, frames_layer: int | None):
    """tf.function (waveform [B, N], length [B]) -> ([pooled [B, S * 2d]], [frames of one
    layer] or [], encoder frame counts), for pipelines.embeddings.embed_clips."""
    import tensorflow as tf

    from pipelines.features import extract as F
    from pipelines.encoders.whisper import HiddenStatePooling

    pool = HiddenStatePooling()

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32),
                                  tf.TensorSpec([None], tf.int32)])
    def run(waveform, length):
        short = tf.maximum(spec.n_fft - tf.shape(waveform)[1], 0)
        waveform = tf.pad(waveform, [[0, 0], [0, short]])
        feats, frames = F.compute(waveform, length, spec)
        states, mask = encoder(feats, F.frame_mask(frames, tf.shape(feats)[1]))
        pooled = pool([states, mask])
        flat = tf.reshape(pooled, [tf.shape(pooled)[0], -1])
        seqs = [states[:, frames_layer]] if frames_layer is not None else []
        return [flat], seqs, tf.cast(tf.reduce_sum(mask, axis=1), tf.int32)

    return run


def extract_whisper(data, checkpoint=None, context: str = "clip", trim_db="default",
                    batch_size: int = 8, frames: bool = False, frames_layer=None,
                    frames_dtype: str = "float16", out=None, force: bool = False,
                    progress: bool = True, fail_after_shards: int | None = None) -> list[Path]:
    """Write (or finish) the Whisper embedding set of a waveform set; returns its folder."""
    from tqdm import tqdm

    from pipelines.encoders.extract import ExtractError, Target, embed_clips, read_shard
    from pipelines.encoders.whisper import CONTEXTS, WhisperEncoder
    from pipelines.encoders.whisper_checkpoint import load_weights
    from pipelines.records.tfrecord import open_set

    tfset = open_set(data)
    if context not in CONTEXTS:
        raise ExtractError(f"--context must be one of {', '.join(CONTEXTS)}")
    if frames_dtype not in FRAME_DTYPES:
        raise ExtractError(f"--frames-dtype must be one of {', '.join(FRAME_DTYPES)}")
    if batch_size < 1:
        raise ExtractError("--batch-size must be at least 1")
    weights = load_weights(checkpoint)
    c = weights.config
    trim = DEFAULT_TRIM_DB if trim_db == "default" else trim_db
    if frames:
        frames_layer = c["n_layers"] if frames_layer in (None, "last") else int(frames_layer)
        if not 0 <= frames_layer <= c["n_layers"]:
            raise ExtractError(f"--frames-layer {frames_layer}: {weights.name} has hidden "
                               f"states 0..{c['n_layers']}")
    else:
        frames_layer = None
    spec = whisper_spec_for(weights, trim)
    root = Path(out) if out else tfset.folder / "embeddings"
    settings = {"embedding_version": VERSION, "encoder": "whisper",
                "checkpoint_sha256": weights.sha256, "layer": "all", "pooling": "meanstd",
                "frames": frames, "frames_layer": frames_layer,
                "frames_dtype": frames_dtype if frames else None, "context": context,
                "feature_spec": spec.to_dict(),
                "source_fingerprint": tfset.schema.get("fingerprint")}
    target = Target(root / target_name(weights, context, trim), "all", settings)
    if not target.prepare(force):
        print(f"{target.folder}: up to date; --force recomputes it")
        return [target.folder]
    states = c["n_layers"] + 1
    info = {**weights.describe(), "dim": states * 2 * c["d_model"], "frame_dim": c["d_model"],
            "num_hidden_states": states, "state_dim": 2 * c["d_model"], "context": context,
            "frames_layer": frames_layer, "feature_spec": spec.to_dict(),
            "frame_rate_hz": 50.0, "windows": "clips over 30 s: 30 s windows pooled together",
            "layout": "hidden states 0..L, each mean then std over the clip's encoder frames"}
    shards = tfset.schema["shards"]
    remaining = [s for s in shards if not target.done(s)]
    total = sum(s["examples"] for s in shards)
    todo = sum(s["examples"] for s in remaining)
    run, written, skipped = None, 0, []
    bar = tqdm(total=total, initial=total - todo, desc=f"{weights.name} embeddings",
               unit="clip", disable=None if progress else True)
    with bar:
        for shard in remaining:
            if run is None:
                encoder = WhisperEncoder.from_weights(weights, context=context)
                run = make_runner(encoder, spec, frames_layer)
            started = time.perf_counter()
            clips = read_shard(tfset.folder / shard["file"])
            silent = [c for c in clips if not np.any(c["pcm"])]
            clips = [c for c in clips if np.any(c["pcm"])]
            bar.update(len(silent))
            skipped += [{"id": c["id"], "split": c["split"],
                         "reason": "digital silence: every sample is zero"} for c in silent]
            result = embed_clips(run, clips, ["all"], batch_size, frames, frames_dtype, bar) \
                if clips else {"all": []}
            examples = [encode_example(p, c["label"], c, seq, frames_dtype)
                        for c, (p, seq) in zip(clips, result["all"])]
            target.write_shard(shard, examples, [c["id"] for c in clips],
                               time.perf_counter() - started)
            written += 1
            if fail_after_shards is not None and written >= fail_after_shards:
                raise RuntimeError(f"simulated failure after {written} shard(s)")
    skipped = _skipped_so_far(target, tfset, skipped)
    schema = target.finish(tfset, info, skipped)
    print(f"{target.folder}: {schema['total_examples']} clips, {states} hidden states x "
          f"{2 * c['d_model']} (mean + std) = {info['dim']} numbers per clip"
          + (f" + layer {frames_layer} frames ({frames_dtype})" if frames else "")
          + f", {schema['extract_seconds']:.0f} s of extraction"
          + (f"; {len(skipped)} clip(s) skipped (skipped.csv)" if len(skipped) else ""))
    return [target.folder]


def _skipped_so_far(target, tfset, skipped_now: list) -> pd.DataFrame:
    """Skips of this run plus those of shards finished by an earlier, interrupted run (ids the
    waveform set has but no shard record lists)."""
    import json

    from pipelines.encoders.extract import PROGRESS

    listed = set()
    for shard in tfset.schema["shards"]:
        record = target.folder / PROGRESS / f"{shard['file']}.json"
        listed |= set(json.loads(record.read_text())["ids"])
    now = {s["id"] for s in skipped_now}
    manifest = tfset.manifest()
    earlier = manifest[~manifest["id"].isin(listed | now)]
    rows = skipped_now + [{"id": i, "split": s, "reason": "digital silence: every sample is "
                           "zero"} for i, s in zip(earlier["id"], earlier["split"])]
    return pd.DataFrame(rows, columns=["id", "split", "reason"])
