"""What the embedding extractions share (pipelines.encoders.embed for HuBERT / Wav2Vec2,
pipelines.encoders.whisper_extract for Whisper): their one-line error, reading a waveform
shard, batching clips by length, running an encoder over them, and Target, the resumable
writer of one embedding set (pipelines.records.embedding_set is its format)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
from pathlib import Path

import numpy as np

from pipelines.common.io import write_csv_atomic, write_json_atomic
from pipelines.records.embedding_set import KIND, VERSION
from pipelines.records.shards import write_shard

MAX_BATCH_SAMPLES = 16000 * 120  # at most two minutes of audio per forward pass
PROGRESS = ".progress"


class ExtractError(RuntimeError):
    """A problem the user can fix; printed as one line."""


def target_name(encoder: str, layer) -> str:
    return f"{encoder}-mean" if layer == "mean" else f"{encoder}-layer{layer}"


@dataclasses.dataclass
class Target:
    """One output embedding set and its resumable progress."""

    folder: Path
    layer: object
    settings: dict

    def prepare(self, force: bool) -> bool:
        """Set the folder up; False when it already holds the finished set."""
        schema = self.folder / "schema.json"
        job = self.folder / PROGRESS / "job.json"
        if schema.is_file():
            done = json.loads(schema.read_text()).get("settings")
            if done == self.settings and not force:
                return False
            if not force:
                raise ExtractError(f"{self.folder} holds embeddings made with other settings "
                                   "(checkpoint, layer, frames or source set); pass --force to "
                                   "replace them or --out for another place")
            shutil.rmtree(self.folder)
        elif job.is_file():
            if json.loads(job.read_text()) != self.settings:
                if not force:
                    raise ExtractError(f"{self.folder} holds an unfinished extraction with "
                                       "other settings; pass --force to start it again")
                shutil.rmtree(self.folder)
        elif self.folder.exists() and any(self.folder.iterdir()):
            if not force:
                raise ExtractError(f"{self.folder} exists and is not an embedding set; pass "
                                   "--force to replace it or --out for another place")
            shutil.rmtree(self.folder)
        (self.folder / PROGRESS).mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob(".*.tmp-*"):
            stale.unlink()
        if not job.is_file():
            write_json_atomic(job, self.settings)
        return True

    def done(self, shard: dict) -> bool:
        return (self.folder / shard["file"]).is_file() and self._record(shard).is_file()

    def _record(self, shard: dict) -> Path:
        return self.folder / PROGRESS / f"{shard['file']}.json"

    def write_shard(self, shard: dict, examples: list[bytes], ids: list[str],
                    seconds: float) -> None:
        final = self.folder / shard["file"]
        write_shard(final, examples)
        write_json_atomic(self._record(shard), {
            "file": shard["file"], "split": shard["split"], "examples": len(examples),
            "bytes": final.stat().st_size, "ids": ids, "seconds": round(seconds, 3)})

    def finish(self, tfset, info: dict, skipped=None) -> dict:
        """Write manifest.csv and schema.json (last). skipped: a DataFrame (id, reason) of
        clips left out (written as skipped.csv; the split counts then exclude them)."""
        records = [json.loads(self._record(s).read_text()) for s in tfset.schema["shards"]]
        ids = [i for r in records for i in r["ids"]]
        manifest = tfset.manifest().set_index("id").loc[ids].reset_index()
        write_csv_atomic(self.folder / "manifest.csv", manifest)
        splits = tfset.schema["splits"]
        if skipped is not None and len(skipped):
            write_csv_atomic(self.folder / "skipped.csv", skipped)
            splits = {split: {**splits[split], "examples": int((manifest["split"] == split)
                                                               .sum()),
                              "emotions": manifest.loc[manifest["split"] == split, "emotion"]
                              .value_counts().astype(int).to_dict()}
                      for split in splits}
        seconds = sum(r["seconds"] for r in records)
        schema = {
            "kind": KIND,
            "embedding_version": VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "labels": tfset.labels,
            "embedding": {**info, "layer": self.layer, **{k: self.settings[k] for k in (
                "encoder", "checkpoint_sha256", "pooling", "frames", "frames_dtype")}},
            "settings": self.settings,
            "source": {"folder": str(tfset.folder),
                       "fingerprint": tfset.schema.get("fingerprint")},
            "split_method": tfset.schema["split_method"],
            "splits": splits,
            "skipped": 0 if skipped is None else int(len(skipped)),
            "shards": [{k: r[k] for k in ("file", "split", "examples", "bytes", "ids")}
                       for r in records],
            "total_examples": len(ids),
            "extract_seconds": round(seconds, 1),
        }
        write_json_atomic(self.folder / "schema.json", schema)  # last: the set is complete
        shutil.rmtree(self.folder / PROGRESS, ignore_errors=True)
        return schema


def read_shard(path) -> list[dict]:
    """A waveform shard's examples as dicts of numpy values (pcm int16, label, meta)."""
    import tensorflow as tf

    from pipelines.records.tfrecord import parse_example

    out = []
    for ex in tf.data.TFRecordDataset(str(path)).map(parse_example).as_numpy_iterator():
        out.append({"pcm": ex["pcm"], "label": int(ex["label"]),
                    **{k: ex[k].decode() for k in ("id", "speaker", "corpus", "emotion",
                                                    "split")}})
    return out


def batches(lengths: list[int], batch_size: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar length (sorted, so little padding)."""
    order = np.argsort(lengths, kind="stable")
    out, start = [], 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and stop - start < batch_size and \
                lengths[order[stop]] * (stop - start + 1) <= MAX_BATCH_SAMPLES:
            stop += 1
        out.append(order[start:stop])
        start = stop
    return out


def embed_clips(run, clips: list[dict], layers: list, batch_size: int, frames: bool,
                frames_dtype: str, bar=None) -> dict:
    """{layer: [(pooled [dim], frames [n, hidden] or None) per clip, in clip order]}."""
    lengths = [len(c["pcm"]) for c in clips]
    out = {layer: [None] * len(clips) for layer in layers}
    for idx in batches(lengths, batch_size):
        wave = np.zeros((len(idx), max(lengths[i] for i in idx)), np.float32)
        for row, i in enumerate(idx):
            wave[row, :lengths[i]] = clips[i]["pcm"].astype(np.float32) / 32768.0
        pooled, seqs, counts = run(wave, np.asarray([lengths[i] for i in idx], np.int32))
        counts = counts.numpy()
        for j, layer in enumerate(layers):
            p = pooled[j].numpy()
            s = seqs[j].numpy() if frames else None
            for row, i in enumerate(idx):
                seq = s[row, :counts[row]].astype(frames_dtype) if frames else None
                out[layer][i] = (p[row], seq)
        if bar is not None:
            bar.update(len(idx))
    return out
