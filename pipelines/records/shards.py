"""What the two sharded TFRecord formats share, the waveform set (pipelines.records.tfrecord)
and the embedding set (pipelines.records.embedding_set): the tf.train.Feature helpers their
examples are written with, writing a shard under a temporary name, reading schema.json and
checking the shards it lists, and the per-split queries of an open set."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pandas as pd


class SchemaError(ValueError):
    """A folder that is not a complete TFRecord set this code can read."""


def bytes_feature(value: bytes):
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def int64_feature(value: int):
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def float_feature(value: float):
    import tensorflow as tf

    return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))


def serialize(feature: dict) -> bytes:
    """A dict of tf.train.Feature -> one serialised tf.train.Example."""
    import tensorflow as tf

    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_shard(path: Path, examples: list[bytes]) -> None:
    """Write a whole shard under a temporary name, then rename it: a shard that exists is
    complete."""
    import tensorflow as tf

    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    with tf.io.TFRecordWriter(str(tmp)) as writer:
        for example in examples:
            writer.write(example)
    os.replace(tmp, path)


def read_schema(folder: Path, missing: str, incomplete: str) -> dict:
    """schema.json of a set folder; SchemaError with `missing` (no folder) or `incomplete` (no
    schema.json) as the reason otherwise."""
    schema_path = folder / "schema.json"
    if not folder.is_dir():
        raise SchemaError(f"{folder}: {missing}")
    if not schema_path.is_file():
        raise SchemaError(f"{folder}: {incomplete}")
    try:
        return json.loads(schema_path.read_text())
    except json.JSONDecodeError as err:
        raise SchemaError(f"{schema_path}: not valid JSON ({err})") from None


def check_shards(folder: Path, schema: dict) -> None:
    """Every shard schema.json lists is there, at the size it records."""
    for shard in schema["shards"]:
        path = folder / shard["file"]
        if not path.is_file() or path.stat().st_size != shard["bytes"]:
            raise SchemaError(f"{path}: shard missing or not the size schema.json records")


@dataclasses.dataclass(frozen=True)
class ShardedSet:
    """An open set: its folder and schema.json, and what each split holds."""

    folder: Path
    schema: dict

    @property
    def labels(self) -> list[str]:
        return list(self.schema["labels"])

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
