"""The TFRecord set format: one folder with sharded waveforms, manifest.csv, skipped.csv and
schema.json. schema.json is written last, so a folder without it is never taken as complete.

Each example holds one clip as 16-bit PCM at 16 kHz (the precision of every source corpus) and
its metadata; features are computed later, on the graph, from a FeatureSpec.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.features.spec import FeatureSpec
from pipelines.records.shards import (SchemaError, ShardedSet, bytes_feature, check_shards,
                                      float_feature, int64_feature, read_schema, serialize)

SCHEMA_VERSION = 1
SPLITS = ("train", "validation", "test")
STRING_FIELDS = ("id", "emotion", "speaker", "corpus", "gender", "path", "split")


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def quantize(waveform: np.ndarray) -> bytes:
    """float32 in [-1, 1] -> little-endian int16 bytes (clipped at full scale).

    The scale is 32768, libsndfile's, so 16-bit sources round-trip exactly.
    """
    pcm = np.clip(np.round(waveform * 32768.0), -32768, 32767).astype("<i2")
    return pcm.tobytes()


def dequantize(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def encode_example(pcm: bytes, length: int, label: int, meta: dict) -> bytes:
    """Serialise one clip. meta holds the STRING_FIELDS and 'duration'."""
    feature = {
        "waveform": bytes_feature(pcm),
        "length": int64_feature(length),
        "label": int64_feature(label),
        "duration": float_feature(meta["duration"]),
    }
    for name in STRING_FIELDS:
        feature[name] = bytes_feature(str(meta[name]).encode("utf-8"))
    return serialize(feature)


def feature_description():
    import tensorflow as tf

    desc = {
        "waveform": tf.io.FixedLenFeature([], tf.string),
        "length": tf.io.FixedLenFeature([], tf.int64),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "duration": tf.io.FixedLenFeature([], tf.float32),
    }
    desc.update({name: tf.io.FixedLenFeature([], tf.string) for name in STRING_FIELDS})
    return desc


def parse_example(serialized):
    """Graph function: serialized Example -> dict with int16 'pcm' [samples], int32 'length'.

    The waveform stays int16 (half the memory when cached); `to_float` converts it.
    """
    import tensorflow as tf

    ex = tf.io.parse_single_example(serialized, feature_description())
    ex["pcm"] = tf.io.decode_raw(ex.pop("waveform"), tf.int16, little_endian=True)
    ex["length"] = tf.cast(ex["length"], tf.int32)
    ex["label"] = tf.cast(ex["label"], tf.int32)
    return ex


def to_float(pcm):
    """int16 PCM tensor -> float32 waveform in [-1, 1] (inverse of `quantize`)."""
    import tensorflow as tf

    return tf.cast(pcm, tf.float32) / 32768.0


class TFRecordSet(ShardedSet):
    """A complete TFRecord set on disk, validated against its schema."""

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec.from_dict(self.schema["feature_spec"])


def open_set(folder) -> TFRecordSet:
    """Open and validate a TFRecord set; SchemaError with a one-line reason otherwise."""
    folder = Path(folder)
    schema_path = folder / "schema.json"
    schema = read_schema(
        folder, "no such TFRecord folder (build one with python -m pipelines.build)",
        "no schema.json, so not a complete TFRecord set (an interrupted build?); rebuild it "
        "with python -m pipelines.build")
    version = schema.get("schema_version")
    if version != SCHEMA_VERSION:
        raise SchemaError(f"{schema_path}: schema version {version}, but this code reads version "
                          f"{SCHEMA_VERSION}; rebuild with python -m pipelines.build --force")
    if schema.get("kind") != "waveforms":
        raise SchemaError(f"{schema_path}: kind {schema.get('kind')!r} is not a waveform set")
    check_shards(folder, schema)
    return TFRecordSet(folder, schema)
