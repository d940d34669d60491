"""The TFRecord set format: one folder with sharded waveforms, manifest.csv, skipped.csv and
schema.json. schema.json is written last, so a folder without it is never taken as complete.

Each example holds one clip as 16-bit PCM at 16 kHz (the precision of every source corpus) and
its metadata; features are computed later, on the graph, from a FeatureSpec.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.features.spec import FeatureSpec

SCHEMA_VERSION = 1
SPLITS = ("train", "validation", "test")
STRING_FIELDS = ("id", "emotion", "speaker", "corpus", "gender", "path", "split")


class SchemaError(ValueError):
    """A folder that is not a complete TFRecord set this code can read."""


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
    import tensorflow as tf

    def b(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    feature = {
        "waveform": b(pcm),
        "length": tf.train.Feature(int64_list=tf.train.Int64List(value=[length])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "duration": tf.train.Feature(float_list=tf.train.FloatList(value=[meta["duration"]])),
    }
    for name in STRING_FIELDS:
        feature[name] = b(str(meta[name]).encode("utf-8"))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


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


@dataclasses.dataclass(frozen=True)
class TFRecordSet:
    """A complete TFRecord set on disk, validated against its schema."""

    folder: Path
    schema: dict

    @property
    def labels(self) -> list[str]:
        return list(self.schema["labels"])

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec.from_dict(self.schema["feature_spec"])

    def files(self, split: str) -> list[str]:
        if split not in self.schema["splits"]:
            raise SchemaError(f"{self.folder}: no split {split!r}; "
                              f"it has {', '.join(self.schema['splits'])}")
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


def open_set(folder) -> TFRecordSet:
    """Open and validate a TFRecord set; SchemaError with a one-line reason otherwise."""
    folder = Path(folder)
    schema_path = folder / "schema.json"
    if not folder.is_dir():
        raise SchemaError(f"{folder}: no such TFRecord folder (build one with "
                          "python -m pipelines.build)")
    if not schema_path.is_file():
        raise SchemaError(f"{folder}: no schema.json, so not a complete TFRecord set "
                          "(an interrupted build?); rebuild it with python -m pipelines.build")
    try:
        schema = json.loads(schema_path.read_text())
    except json.JSONDecodeError as err:
        raise SchemaError(f"{schema_path}: not valid JSON ({err})") from None
    version = schema.get("schema_version")
    if version != SCHEMA_VERSION:
        raise SchemaError(f"{schema_path}: schema version {version}, but this code reads version "
                          f"{SCHEMA_VERSION}; rebuild with python -m pipelines.build --force")
    if schema.get("kind") != "waveforms":
        raise SchemaError(f"{schema_path}: kind {schema.get('kind')!r} is not a waveform set")
    for shard in schema["shards"]:
        path = folder / shard["file"]
        if not path.is_file() or path.stat().st_size != shard["bytes"]:
            raise SchemaError(f"{path}: shard missing or not the size schema.json records")
    return TFRecordSet(folder, schema)
