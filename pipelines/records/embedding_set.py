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

from pathlib import Path

import numpy as np

from pipelines.records.shards import (SchemaError, ShardedSet, bytes_feature, check_shards,
                                      int64_feature, read_schema, serialize)

KIND = "embeddings"
VERSION = 1
META_FIELDS = ("id", "speaker", "corpus", "emotion", "split")
FRAME_DTYPES = ("float16", "float32")
CACHE_LIMIT_BYTES = 2_000_000_000


def encode_example(embedding: np.ndarray, label: int, meta: dict,
                   frames: np.ndarray | None = None, frames_dtype: str = "float16") -> bytes:
    """Serialise one clip's vector (and frames [num_frames, frame_dim])."""
    feature = {"embedding": bytes_feature(np.asarray(embedding, "<f4").tobytes()),
               "label": int64_feature(label)}
    if frames is not None:
        feature["frames"] = bytes_feature(
            np.asarray(frames, np.dtype(frames_dtype).newbyteorder("<")).tobytes())
        feature["num_frames"] = int64_feature(len(frames))
    for name in META_FIELDS:
        feature[name] = bytes_feature(str(meta[name]).encode("utf-8"))
    return serialize(feature)


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


class EmbeddingSet(ShardedSet):
    """A complete embedding set on disk (same split and label API as TFRecordSet)."""

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

    def describe(self) -> str:
        e = self.schema["embedding"]
        return f"{e['encoder']} layer {e['layer']}, {e['pooling']} {e['dim']}-dim"


def open_embedding_set(folder) -> EmbeddingSet:
    """Open and validate an embedding set; SchemaError with a one-line reason otherwise."""
    folder = Path(folder)
    schema_path = folder / "schema.json"
    schema = read_schema(
        folder, "no such embedding set (make one with python -m pipelines.embeddings)",
        "no schema.json, so not a complete embedding set (an interrupted extraction? run the "
        "same pipelines.embeddings command again to finish it)")
    if schema.get("kind") == "waveforms":
        raise SchemaError(f"{folder} is a waveform set; this model takes SSL embeddings: run "
                          f"python -m pipelines.embeddings --data {folder} ... and pass "
                          f"{folder}/embeddings/<encoder>-<layer> as --data")
    if schema.get("kind") != KIND or schema.get("embedding_version") != VERSION:
        raise SchemaError(f"{schema_path}: not an embedding set of version {VERSION}")
    check_shards(folder, schema)
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
