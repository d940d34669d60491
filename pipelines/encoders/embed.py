"""Run a pretrained speech encoder over a waveform set and write pooled SSL embeddings beside it.
(Whisper: --encoder whisper, pipelines.encoders.whisper_extract, with its own options.)

    python -m pipelines.embeddings --encoder hubert --checkpoint ckpt/hubert-base-ls960 \\
        --data tfrecords/full [--layer N ...] [--layers all] [--frames] [--batch-size 8]

(--checkpoint also takes a Hugging Face hub id, facebook/hubert-base-ls960 or
owner/name@revision: resolved into the Hugging Face cache, offline with HF_HUB_OFFLINE=1;
pipelines.encoders.hub.)

writes tfrecords/full/embeddings/hubert-layer12/ (the last layer by default; hubert-layerN
for --layer N, hubert-mean for --layers all = the average of all hidden states 0..L): one
shard per waveform shard with each clip's mean and standard deviation over its frames (2 x
hidden = 1536 numbers for base models) and, with --frames, the frame sequences; then
manifest.csv and schema.json (pipelines.records.embedding_set). Several --layer values come from one
pass over the audio. Each shard is written under a temporary name and renamed when complete,
so an interrupted run, started again with the same command, goes on from the first unfinished
shard. Runs in its own process: transformers switches tf.keras to tf_keras when imported.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from pipelines.records.embedding_set import FRAME_DTYPES, VERSION, encode_example
from pipelines.encoders.extract import ExtractError, Target, embed_clips, read_shard, target_name
from pipelines.encoders.ssl import CheckpointError, inspect_checkpoint, receptive_field
from pipelines.records.tfrecord import SchemaError, open_set

POOLINGS = ("meanstd",)


def resolve_layers(layers: list[str] | None, all_layers: bool, num_layers: int) -> list:
    """--layer values (0..L, 'last', 'mean') and --layers all -> a list of ints / 'mean'."""
    out = []
    for value in layers or []:
        if value in ("last", "mean"):
            out.append(num_layers if value == "last" else "mean")
            continue
        try:
            index = int(value)
        except ValueError:
            raise ExtractError(f"--layer takes 0..{num_layers}, 'last' or 'mean', got "
                               f"{value!r}") from None
        if not 0 <= index <= num_layers:
            raise ExtractError(f"--layer {index}: this checkpoint has hidden states 0..{num_layers}"
                               " (0 = transformer input, i = output of layer i)")
        out.append(index)
    if all_layers:
        out.append("mean")
    out = out or [num_layers]
    return list(dict.fromkeys(out))


def make_runner(encoder, layers: list, frames: bool):
    """A tf.function (waveform [B, N], length [B]) -> (pooled per layer, frames per layer,
    frame counts)."""
    import tensorflow as tf

    from pipelines.encoders.ssl import masked_mean_std, select_layer

    upto = encoder.num_layers if "mean" in layers else max(layers)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32),
                                  tf.TensorSpec([None], tf.int32)])
    def run(waveform, length):
        states, mask = encoder(waveform, length, upto=upto)
        pooled, seqs = [], []
        for layer in layers:
            h = select_layer(states, layer)
            pooled.append(masked_mean_std(h, mask))
            if frames:
                seqs.append(h)
        return pooled, seqs, tf.cast(tf.reduce_sum(mask, axis=1), tf.int32)

    return run


def extract(data, encoder: str, checkpoint, layers: list[str] | None = None,
            all_layers: bool = False, pooling: str = "meanstd", batch_size: int = 8,
            frames: bool = False, frames_dtype: str = "float16", out=None, force: bool = False,
            progress: bool = True, fail_after_shards: int | None = None) -> list[Path]:
    """Write (or finish) one embedding set per layer; returns their folders."""
    from tqdm import tqdm

    tfset = open_set(data)
    ck = inspect_checkpoint(checkpoint, encoder)
    if pooling not in POOLINGS:
        raise ExtractError(f"--pooling must be one of {', '.join(POOLINGS)}")
    if frames_dtype not in FRAME_DTYPES:
        raise ExtractError(f"--frames-dtype must be one of {', '.join(FRAME_DTYPES)}")
    if batch_size < 1:
        raise ExtractError("--batch-size must be at least 1")
    layer_list = resolve_layers(layers, all_layers, ck.num_layers)
    root = Path(out) if out else tfset.folder / "embeddings"
    sha = ck.sha256()
    targets = []
    for layer in layer_list:
        settings = {"embedding_version": VERSION, "encoder": encoder, "checkpoint_sha256": sha,
                    "layer": layer, "pooling": pooling, "frames": frames,
                    "frames_dtype": frames_dtype if frames else None,
                    "source_fingerprint": tfset.schema.get("fingerprint")}
        targets.append(Target(root / target_name(encoder, layer), layer, settings))
    active = [t for t in targets if t.prepare(force)]
    for t in targets:
        if t not in active:
            print(f"{t.folder}: up to date; --force recomputes it")
    if not active:
        return [t.folder for t in targets]
    info = {**ck.describe(), "dim": 2 * ck.hidden_size, "frame_dim": ck.hidden_size,
            "num_hidden_states": ck.num_layers + 1,
            "frame_rate_hz": 16000 / float(np.prod(ck.config["conv_stride"])),
            "receptive_field_samples": receptive_field(ck.config),
            "padding": "per-clip statistics in the first conv layer + frame mask (exact)"}
    shards = tfset.schema["shards"]
    remaining = [s for s in shards if any(not t.done(s) for t in active)]
    total = sum(s["examples"] for s in shards)
    todo = sum(s["examples"] for s in remaining)
    run = None
    written = 0
    bar = tqdm(total=total, initial=total - todo, desc=f"{encoder} embeddings", unit="clip",
               disable=None if progress else True)
    with bar:
        for shard in remaining:
            if run is None:
                from pipelines.encoders.ssl import load_encoder

                run = make_runner(load_encoder(ck), [t.layer for t in active], frames)
            started = time.perf_counter()
            clips = read_shard(tfset.folder / shard["file"])
            result = embed_clips(run, clips, [t.layer for t in active], batch_size, frames,
                                 frames_dtype, bar)
            seconds = time.perf_counter() - started
            ids = [c["id"] for c in clips]
            for t in active:
                if t.done(shard):
                    continue
                examples = [encode_example(p, c["label"], c, seq, frames_dtype)
                            for c, (p, seq) in zip(clips, result[t.layer])]
                t.write_shard(shard, examples, ids, seconds)
            written += 1
            if fail_after_shards is not None and written >= fail_after_shards:
                raise RuntimeError(f"simulated failure after {written} shard(s)")
    for t in active:
        schema = t.finish(tfset, info)
        print(f"{t.folder}: {schema['total_examples']} clips, {info['dim']}-dim vectors"
              + (f" + {info['frame_dim']}-dim frames ({frames_dtype})" if frames else "")
              + f", {schema['extract_seconds']:.0f} s of extraction")
    return [t.folder for t in targets]


def _trim_db(value: str):
    if value.lower() == "none":
        return None
    try:
        db = float(value)
    except ValueError:
        raise ExtractError(f"--trim-db takes a number of dB or 'none', got {value!r}") from None
    if db <= 0:
        raise ExtractError("--trim-db must be positive (or 'none')")
    return db


def main(argv=None) -> int:
    from pipelines.common.tfenv import quiet_tensorflow

    parser = argparse.ArgumentParser(
        prog="python -m pipelines.embeddings",
        description="Pooled speech-encoder embeddings (Whisper, HuBERT, Wav2Vec2; frozen) of "
                    "every clip of a TFRecord set, written beside it as TFRecords. Whisper "
                    "sets hold every hidden state's mean and standard deviation; HuBERT / "
                    "Wav2Vec2 sets one layer each.")
    parser.add_argument("--encoder", required=True, choices=["whisper", "hubert", "wav2vec2"])
    parser.add_argument("--checkpoint",
                        help="local checkpoint folder or Hugging Face hub id (owner/name"
                             "[@revision], e.g. facebook/hubert-base-ls960, openai/whisper-base:"
                             " fetched into the Hugging Face cache, or read from it with "
                             "HF_HUB_OFFLINE=1). whisper: a CTranslate2 or Hugging Face "
                             "Whisper folder, default the packaged tiny.en (docs/whisper.md); "
                             "hubert / wav2vec2 (required): the folder as published on the hub "
                             "(config.json, preprocessor_config.json, model.safetensors or "
                             "tf_model.h5; docs/ssl.md)")
    parser.add_argument("--data", required=True, help="waveform set (python -m pipelines.build)")
    parser.add_argument("--layer", action="append", metavar="N",
                        help="hubert / wav2vec2: hidden state to pool: 0 (transformer input) .. "
                             "L (last, the default), 'last' or 'mean'; repeat for several sets "
                             "from one pass")
    parser.add_argument("--layers", choices=["all"],
                        help="hubert / wav2vec2: 'all': the average of all hidden states 0..L "
                             "(a <encoder>-mean set)")
    parser.add_argument("--pooling", default="meanstd", choices=POOLINGS,
                        help="meanstd: mean and standard deviation over the clip's frames")
    parser.add_argument("--context", default="clip", choices=["clip", "30s"],
                        help="whisper: run the encoder on the clip's own frames (clip, the "
                             "default) or padded to 30 s as Whisper was trained (30s, about "
                             "36x the extraction time for 3 s clips)")
    parser.add_argument("--trim-db", default="none", metavar="DB",
                        help="whisper: 'none' (the default; measured best, bench/"
                             "whisper_layers.py) or trim leading/trailing silence quieter than "
                             "DB below the loudest frame (the CNNs use 40)")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="clips per forward pass, grouped by length (8)")
    parser.add_argument("--frames", action="store_true",
                        help="also store the frame sequences (for wav2vec2_frozen / "
                             "whisper_attn; about 230 kB per 3 s clip in float16 for base "
                             "models, 115 kB for whisper tiny)")
    parser.add_argument("--frames-layer", metavar="N",
                        help="whisper: the hidden state whose frames --frames stores (default "
                             "the last)")
    parser.add_argument("--frames-dtype", default="float16", choices=FRAME_DTYPES)
    parser.add_argument("--out", help="parent folder of the sets (default DATA/embeddings)")
    parser.add_argument("--force", action="store_true",
                        help="replace sets made with other settings")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--fail-after-shards", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quiet_tensorflow()
    from pipelines.encoders.whisper_checkpoint import WhisperCheckpointError

    try:
        if args.encoder == "whisper":
            from pipelines.encoders.whisper_extract import extract_whisper

            if args.layer or args.layers:
                raise ExtractError("--layer/--layers: a whisper set holds every hidden state; "
                                   "a head picks one (zoo.train --set layer=N)")
            extract_whisper(args.data, args.checkpoint, args.context, _trim_db(args.trim_db),
                            args.batch_size, args.frames, args.frames_layer, args.frames_dtype,
                            args.out, args.force, not args.quiet, args.fail_after_shards)
        else:
            if not args.checkpoint:
                raise ExtractError(f"--encoder {args.encoder} needs --checkpoint DIR or a hub "
                                   "id such as facebook/hubert-base-ls960 (docs/ssl.md)")
            if args.frames_layer is not None:
                raise ExtractError("--frames-layer is for --encoder whisper (hubert / "
                                   "wav2vec2 store the frames of each --layer)")
            extract(args.data, args.encoder, args.checkpoint, args.layer,
                    args.layers == "all", args.pooling, args.batch_size, args.frames,
                    args.frames_dtype, args.out, args.force, not args.quiet,
                    args.fail_after_shards)
    except (ExtractError, CheckpointError, SchemaError, WhisperCheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command to go on (finished shards are kept)",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
