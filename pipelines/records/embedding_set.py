"""The embedding set format: SSL vectors (and optionally frame sequences) of a waveform set,
written by `python -m pipelines.embeddings` beside it, e.g. in
tfrecords/full/embeddings/hubert-layer12/:

    train-00000-of-00004.tfrecord ...   one shard per waveform shard, same names and clips
    manifest.csv                        the waveform set's manifest rows (ids, speakers, labels)
    schema.json                         written last: encoder, checkpoint hash, layer, pooling,
                                        dims, labels, splits, shards with their clip ids

Each example: embedding (float32 [dim] bytes; mean then std over the clip's frames), optional
frames (float16 or float32 [num_frames, frame_dim] bytes) and num_frames, label, and the id /
speaker / corpus / emotion / split strings. Reading needs no transformers (Keras 3 processes).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.records.tfrecord import SchemaError

KIND = "embeddings"
VERSION = 1
META_FIELDS = ("id", "speaker", "corpus", "emotion", "split")
FRAME_DTYPES = ("float16", "float32")
CACHE_LIMIT_BYTES = 2_000_000_000


def encode_example(embedding: np.ndarray, label: int, meta: dict,
                   frames: np.ndarray | None = None, frames_dtype: str = "float16") -> bytes:
    """Serialise one clip's vector (and frames [num_frames, frame_dim])."""
    import tensorflow as tf

    def b(value: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def i(value: int):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    feature = {"embedding": b(np.asarray(embedding, "<f4").tobytes()), "label": i(label)}
    if frames is not None:
        feature["frames"] = b(np.asarray(frames, np.dtype(frames_dtype).newbyteorder("<"))
                              .tobytes())
        feature["num_frames"] = i(len(frames))
    for name in META_FIELDS:
        feature[name] = b(str(meta[name]).encode("utf-8"))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parser(dim: int, frame_dim: int | None = None, frames_dtype: str = "float16"):
    """A graph function: serialized example -> dict (embedding [dim], frames [T, frame_dim]
    float32 if frame_dim, label int32, meta strings)."""
    import tensorflow as tf

    desc = {"embedding": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64)}
    desc.update({name: tf.io.FixedLenFeature([], tf.string) for name in META_FIELDS})
    if frame_dim:
        desc["frames"] = tf.io.FixedLenFeature([], tf.string)
    dtype = tf.float16 if frames_dtype == "float16" else tf.float32

    def parse(serialized):
        ex = tf.io.parse_single_example(serialized, desc)
        ex["embedding"] = tf.ensure_shape(
            tf.io.decode_raw(ex["embedding"], tf.float32, little_endian=True), [dim])
        ex["label"] = tf.cast(ex["label"], tf.int32)
        if frame_dim:
            flat = tf.io.decode_raw(ex["frames"], dtype, little_endian=True)
            ex["frames"] = tf.cast(tf.reshape(flat, [-1, frame_dim]), tf.float32)
        return ex

    return parse


@dataclasses.dataclass(frozen=True)
class EmbeddingSet:
    """A complete embedding set on disk (same split and label API as TFRecordSet)."""

    folder: Path
    schema: dict

    @property
    def labels(self) -> list[str]:
        return list(self.schema["labels"])

    @property
    def embedding(self) -> dict:
        """encoder, checkpoint_sha256, layer, pooling, dim, frame_dim, frames, frames_dtype..."""
        return dict(self.schema["embedding"])

    @property
    def dim(self) -> int:
        return int(self.schema["embedding"]["dim"])

    @property
    def frame_dim(self) -> int:
        return int(self.schema["embedding"]["frame_dim"])

    @property
    def has_frames(self) -> bool:
        return bool(self.schema["embedding"]["frames"])

    def input_dim(self, kind: str) -> int:
        """The width a model input of kind 'embedding' or 'frames' gets from this set."""
        return self.dim if kind == "embedding" else self.frame_dim

    def files(self, split: str) -> list[str]:
        if split not in self.schema["splits"]:
            raise SchemaError(f"{self.folder}: no split {split!r}")
        return [str(self.folder / s["file"]) for s in self.schema["shards"] if s["split"] == split]

    def examples(self, split: str) -> int:
        return int(self.schema["splits"].get(split, {}).get("examples", 0))

    def class_counts(self, split: str) -> dict[str, int]:
        return dict(self.schema["splits"].get(split, {}).get("emotions", {}))

    def bytes(self, split: str) -> int:
        return sum(s["bytes"] for s in self.schema["shards"] if s["split"] == split)

    def manifest(self) -> pd.DataFrame:
        return pd.read_csv(self.folder / "manifest.csv", dtype={"speaker": str, "id": str},
                           keep_default_na=False)

    def describe(self) -> str:
        e = self.schema["embedding"]
        return f"{e['encoder']} layer {e['layer']}, {e['pooling']} {e['dim']}-dim"


def open_embedding_set(folder) -> EmbeddingSet:
    """Open and validate an embedding set; SchemaError with a one-line reason otherwise."""
    folder = Path(folder)
    schema_path = folder / "schema.json"
    if not folder.is_dir():
        raise SchemaError(f"{folder}: no such embedding set (make one with "
                          "python -m pipelines.embeddings)")
    if not schema_path.is_file():
        raise SchemaError(f"{folder}: no schema.json, so not a complete embedding set (an "
                          "interrupted extraction? run the same pipelines.embeddings command "
                          "again to finish it)")
    try:
        schema = json.loads(schema_path.read_text())
    except json.JSONDecodeError as err:
        raise SchemaError(f"{schema_path}: not valid JSON ({err})") from None
    if schema.get("kind") == "waveforms":
        raise SchemaError(f"{folder} is a waveform set; this model takes SSL embeddings: run "
                          f"python -m pipelines.embeddings --data {folder} ... and pass "
                          f"{folder}/embeddings/<encoder>-<layer> as --data")
    if schema.get("kind") != KIND or schema.get("embedding_version") != VERSION:
        raise SchemaError(f"{schema_path}: not an embedding set of version {VERSION}")
    for shard in schema["shards"]:
        path = folder / shard["file"]
        if not path.is_file() or path.stat().st_size != shard["bytes"]:
            raise SchemaError(f"{path}: shard missing or not the size schema.json records")
    return EmbeddingSet(folder, schema)


def make_dataset(folder, split: str, input_kind: str = "embedding", batch_size: int = 32,
                 training: bool = False, seed: int = 0, with_meta: bool = False,
                 cache: bool | str = "auto"):
    """Batches of (x, label[, meta]): x [batch, dim] vectors for input_kind 'embedding',
    [batch, frames, frame_dim] zero-padded sequences for 'frames'."""
    import tensorflow as tf

    eset = open_embedding_set(folder)
    if input_kind not in ("embedding", "frames"):
        raise ValueError("input_kind must be 'embedding' or 'frames'")
    if input_kind == "frames" and not eset.has_frames:
        raise SchemaError(f"{eset.folder} holds pooled vectors only; extract frames too "
                          "(python -m pipelines.embeddings ... --frames)")
    files = eset.files(split)
    if not files:
        raise SchemaError(f"{eset.folder}: split {split!r} is empty")
    parse = parser(eset.dim, eset.frame_dim if input_kind == "frames" else None,
                   eset.embedding.get("frames_dtype", "float16"))
    ds = tf.data.TFRecordDataset(files, num_parallel_reads=min(len(files), 4))
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    key = "embedding" if input_kind == "embedding" else "frames"
    keep = (key, "label") + (("id", "speaker", "corpus", "emotion") if with_meta else ())
    ds = ds.map(lambda ex: {k: ex[k] for k in keep})
    if cache is True or (cache == "auto" and 2 * eset.bytes(split) < CACHE_LIMIT_BYTES):
        ds = ds.cache()
    if training:
        ds = ds.shuffle(min(max(eset.examples(split), 1), 8192), seed=seed,
                        reshuffle_each_iteration=True)
    ds = ds.padded_batch(batch_size) if key == "frames" else ds.batch(batch_size)

    def split_batch(batch):
        if with_meta:
            return batch[key], batch["label"], {k: batch[k] for k in
                                                ("id", "speaker", "corpus", "emotion")}
        return batch[key], batch["label"]

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    options.deterministic = not training
    return ds.map(split_batch).with_options(options).prefetch(tf.data.AUTOTUNE)


def class_weights(eset: EmbeddingSet, split: str = "train") -> dict[int, float]:
    counts = eset.class_counts(split)
    total = sum(counts.values())
    return {i: total / (len(eset.labels) * counts[name]) for i, name in enumerate(eset.labels)
            if counts.get(name)}
