"""Build a sharded TFRecord set from corpus folders.

    python -m pipelines.build --corpus ravdess=DIR --corpus tess=DIR --out tfrecords/NAME

Decodes every file to 16 kHz mono (in parallel, with a progress bar), assigns speaker-grouped
splits, and writes {train,validation,test}-NNNNN-of-NNNNN.tfrecord, manifest.csv, skipped.csv and
schema.json. Everything is written in a hidden temporary folder that replaces the output folder
only when complete; re-running on an up-to-date folder does nothing unless --force.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.records import splits as splitting
from pipelines.audio.decode import MIN_DURATION, SILENCE_DBFS, AudioError, safe_decode
from pipelines.corpora import CorpusError, read_corpora
from pipelines.common.io import write_csv_atomic
from pipelines.corpora.labels import BOREDOM_POLICIES, ordered
from pipelines.common.parallel import imap_ordered
from pipelines.features.spec import FeatureSpec
from pipelines.records.tfrecord import SCHEMA_VERSION, SPLITS, encode_example, quantize, shard_name


class BuildError(RuntimeError):
    """The build cannot go on; the message is one line for the user."""


def _decode_job(args):
    """Worker: decode one file to (pcm bytes, length, duration, peak) or an error reason."""
    path, min_duration = args
    result = safe_decode(path, min_duration=min_duration)
    if isinstance(result, AudioError):
        return None, result.reason
    if result.silent:
        return None, f"all-silent (peak below {SILENCE_DBFS:.0f} dBFS)"
    wave = result.waveform
    return (quantize(wave), len(wave), len(wave) / result.sample_rate), None


def fingerprint(rows: pd.DataFrame, skipped: pd.DataFrame, options: dict) -> str:
    """Hash of the inputs (file list with sizes and mtimes) and the options of a build."""
    h = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for path in sorted(list(rows["path"]) + list(skipped["path"])):
        try:
            st = os.stat(path)
            h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{path}\0missing\n".encode())
    return h.hexdigest()


class ShardWriter:
    """Writes one split's examples into shards of at most `max_bytes`, named at the end."""

    def __init__(self, folder: Path, split: str, max_bytes: int):
        self.folder, self.split, self.max_bytes = folder, split, max_bytes
        self.parts: list[dict] = []
        self._writer = None

    def write(self, record: bytes) -> str:
        import tensorflow as tf

        if self._writer is None or self.parts[-1]["bytes"] + len(record) > self.max_bytes:
            self.close()
            part = {"tmp": f"{self.split}.part{len(self.parts):05d}", "examples": 0, "bytes": 0}
            self.parts.append(part)
            self._writer = tf.io.TFRecordWriter(str(self.folder / part["tmp"]))
        self._writer.write(record)
        self.parts[-1]["examples"] += 1
        self.parts[-1]["bytes"] += len(record) + 16  # TFRecord framing: length + 2 CRCs
        return self.parts[-1]["tmp"]

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def finish(self) -> list[dict]:
        """Rename parts to split-00000-of-0000N.tfrecord; return shard records for the schema."""
        self.close()
        shards = []
        for i, part in enumerate(self.parts):
            name = shard_name(self.split, i, len(self.parts))
            os.replace(self.folder / part["tmp"], self.folder / name)
            shards.append({"file": name, "split": self.split, "examples": part["examples"],
                           "bytes": (self.folder / name).stat().st_size, "part": part["tmp"]})
        return shards


def assign(rows: pd.DataFrame, mode: str, validation: float, test: float, seed: int,
           test_speakers=None, validation_speakers=None):
    if mode == "speaker":
        split = splitting.speaker_split(rows, validation, test, seed, test_speakers,
                                        validation_speakers)
    elif test_speakers is not None or validation_speakers is not None:
        raise BuildError("--test-speakers / --validation-speakers need --split speaker")
    elif mode == "random":
        split = splitting.random_split(rows, validation, test, seed)
    else:
        raise BuildError(f"unknown split mode {mode!r}")
    return split


def _stale_temporaries(out: Path) -> None:
    """Clear what a killed build left beside `out` (.out.tmp-PID, .out.old-PID of dead PIDs).

    A build killed between the two renames of `_replace_folder` leaves the previous set in
    .out.old-PID and no `out`: that set is put back.
    """
    for tmp in sorted(out.parent.glob(f".{out.name}.*-*")):
        kind, _, pid = tmp.name[len(out.name) + 2:].rpartition("-")
        if kind not in ("tmp", "old") or not pid.isdigit() or _alive(int(pid)):
            continue
        if kind == "old" and not out.exists():
            os.rename(tmp, out)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _replace_folder(tmp: Path, out: Path) -> None:
    """Swap the finished temporary folder in; if that fails, the previous set stays in `out`
    (and a kill in between is repaired by the next build, see `_stale_temporaries`)."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        if old.exists() and not out.exists():
            os.rename(old, out)
        raise
    if old.exists():
        shutil.rmtree(old)


def build(
    corpora: list[str],
    out,
    spec: FeatureSpec | None = None,
    split_mode: str = "speaker",
    validation: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    calm: str = "neutral",
    boredom: str = "drop",
    shard_mb: float = 100.0,
    workers: int | None = None,
    min_duration: float = MIN_DURATION,
    force: bool = False,
    progress: bool = True,
    test_speakers: list[str] | None = None,
    validation_speakers: list[str] | None = None,
    _fail_after: int | None = None,
) -> dict:
    """Build (or confirm up to date) the TFRecord set in `out`; returns its schema dict.
    test_speakers / validation_speakers: those sides by speaker id instead of by share
    (pipelines.records.splits.speaker_split)."""
    out = Path(out)
    spec = spec or FeatureSpec()
    rows, skipped, notes = read_corpora(corpora, calm=calm, boredom=boredom)
    if rows.empty:
        raise BuildError("no readable files in the given corpora (see skipped reasons)")
    options = {"corpora": sorted(corpora), "split_mode": split_mode, "validation": validation,
               "test": test, "seed": seed, "calm": calm, "shard_mb": shard_mb,
               "min_duration": min_duration, "feature_spec": spec.to_dict(),
               "schema_version": SCHEMA_VERSION}
    if boredom != "drop":  # only when not the default: older sets keep their fingerprint
        options["boredom"] = boredom
    for key, speakers in (("test_speakers", test_speakers),
                          ("validation_speakers", validation_speakers)):
        if speakers is not None:  # only when given: older sets keep their fingerprint
            options[key] = sorted(speakers)
    digest = fingerprint(rows, skipped, options)
    _stale_temporaries(out)  # before the up-to-date check: it may put a previous set back
    existing = out / "schema.json"
    if existing.is_file() and not force:
        try:
            old = json.loads(existing.read_text())
        except json.JSONDecodeError:
            old = {}
        if old.get("fingerprint") == digest:
            print(f"{out}: up to date ({old['total_examples']} clips); --force rebuilds it")
            return old
        raise BuildError(f"{out} holds a set built from other inputs or options; "
                         "pass --force to replace it")
    if out.exists() and not existing.is_file() and any(out.iterdir()) and not force:
        raise BuildError(f"{out} exists and is not a TFRecord set; choose another --out "
                         "or pass --force to replace it")

    rows = rows.copy()
    rows["split"] = assign(rows, split_mode, validation, test, seed, test_speakers,
                           validation_speakers)
    if split_mode == "speaker":
        splitting.check_speaker_disjoint(rows)
    labels = ordered(rows["emotion"])
    label_index = {name: i for i, name in enumerate(labels)}
    # Shuffle once, deterministically, so every shard mixes corpora and emotions.
    rows = rows.sample(frac=1.0, random_state=seed).reset_index(drop=True)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    started = time.perf_counter()
    try:
        result = _write(rows, skipped, labels, label_index, tmp, shard_mb, workers,
                        min_duration, progress, _fail_after)
        kept, skipped, shards = result
        schema = _schema(kept, skipped, shards, labels, spec, notes, options, digest,
                         time.perf_counter() - started)
        write_csv_atomic(tmp / "manifest.csv", kept)
        write_csv_atomic(tmp / "skipped.csv", skipped)
        (tmp / "schema.json").write_text(json.dumps(schema, indent=2) + "\n")  # last: complete
        _replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return schema


def _write(rows, skipped, labels, label_index, tmp, shard_mb, workers, min_duration,
           progress, fail_after):
    from pipelines.common.tfenv import quiet_tensorflow

    jobs = [(p, min_duration) for p in rows["path"]]
    ids = [f"{c}/{os.path.splitext(os.path.basename(p))[0]}"
           for c, p in zip(rows["corpus"], rows["path"])]
    fields = ("emotion", "speaker", "corpus", "gender", "path", "split")
    records = rows[list(fields)].to_dict("records")  # row access by index is slow in pandas
    writers = {s: ShardWriter(tmp, s, int(shard_mb * 1e6)) for s in SPLITS}
    kept_idx, durations, parts, reasons = [], [], [], []
    quiet_tensorflow()
    results = imap_ordered(_decode_job, jobs, workers, desc="decode+write", unit="clip",
                           progress=progress)
    # closing(): on any error the worker processes are shut down here, before the error
    # propagates, not whenever the garbage collector gets to the suspended generator.
    with contextlib.closing(results):
        for i, (decoded, reason) in enumerate(results):
            if fail_after is not None and i == fail_after:
                raise RuntimeError("simulated failure during the build")
            row = records[i]
            if decoded is None:
                reasons.append((row["path"], row["corpus"], reason))
                continue
            pcm, length, duration = decoded
            meta = {"id": ids[i], "duration": duration, **row}
            record = encode_example(pcm, length, label_index[row["emotion"]], meta)
            parts.append(writers[row["split"]].write(record))
            kept_idx.append(i)
            durations.append(duration)
    shards = [s for w in writers.values() for s in w.finish()]
    part_to_file = {s.pop("part"): s["file"] for s in shards}
    kept = rows.iloc[kept_idx].copy()
    kept.insert(0, "id", [ids[i] for i in kept_idx])
    kept["label"] = [label_index[e] for e in kept["emotion"]]
    kept["duration_s"] = np.round(durations, 4)
    kept["shard"] = [part_to_file[p] for p in parts]
    bad = pd.DataFrame(reasons, columns=["path", "corpus", "reason"])
    skipped = pd.concat([skipped, bad], ignore_index=True)
    missing = [name for name in labels if name not in set(kept["emotion"])]
    if missing:
        raise BuildError(f"no decodable files for emotion(s) {', '.join(missing)}")
    return kept, skipped, shards


def _schema(kept, skipped, shards, labels, spec, notes, options, digest, seconds) -> dict:
    per_split = {}
    for split in SPLITS:
        part = kept[kept["split"] == split]
        per_split[split] = {
            "examples": int(len(part)),
            "hours": round(float(part["duration_s"].sum()) / 3600, 3),
            "speakers": sorted(part["speaker"].unique().tolist()),
            "emotions": {e: int(n) for e, n in Counter(part["emotion"]).items()},
            "corpora": {c: int(n) for c, n in Counter(part["corpus"]).items()},
        }
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "waveforms",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "sample_rate": spec.sample_rate,
        "waveform_encoding": "pcm16",
        "labels": labels,
        "feature_spec": spec.to_dict(),
        "split_method": {"mode": options["split_mode"], "validation": options["validation"],
                         "test": options["test"], "seed": options["seed"],
                         "speaker_independent": options["split_mode"] == "speaker",
                         **{k: options[k] for k in ("test_speakers", "validation_speakers")
                            if k in options}},
        "calm": options["calm"],
        "boredom": options.get("boredom", "drop"),
        "splits": per_split,
        "corpora": {c: {"files": int(n), "speakers": int(kept.loc[kept.corpus == c,
                                                                  "speaker"].nunique())}
                    for c, n in Counter(kept["corpus"]).items()},
        "total_examples": int(len(kept)),
        "skipped": int(len(skipped)),
        "reader_notes": notes,
        "shards": shards,
        "build_seconds": round(seconds, 1),
        "fingerprint": digest,
        "options": options,
    }


def _speaker_list(text: str) -> list[str]:
    speakers = [s.strip() for s in text.split(",") if s.strip()]
    if not speakers:
        raise argparse.ArgumentTypeError("give one or more speaker ids, comma-separated")
    return speakers


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.build",
        description="Decode corpora to 16 kHz mono and write a sharded TFRecord set with "
                    "speaker-independent train/validation/test splits.",
    )
    parser.add_argument("--corpus", action="append", required=True, metavar="NAME=DIR",
                        help="a corpus folder; NAME is ravdess, tess, savee, cremad, emodb, "
                             "nemo, or any other name for a one-folder-per-emotion tree "
                             "(repeatable)")
    parser.add_argument("--out", required=True, help="output folder, e.g. tfrecords/all")
    parser.add_argument("--split", default="speaker", choices=["speaker", "random"],
                        help="speaker: whole speakers per side (default). random: by file, "
                             "speaker-dependent, only for comparison with published numbers")
    parser.add_argument("--validation", type=float, default=0.1,
                        help="share of each corpus' speakers held out for validation (0.1)")
    parser.add_argument("--test", type=float, default=0.1,
                        help="share of each corpus' speakers held out for test (0.1)")
    parser.add_argument("--test-speakers", type=_speaker_list, metavar="ID,ID,...",
                        help="exactly these speakers (manifest ids, e.g. ravdess_09) form the "
                             "test split, instead of --test's share (e.g. for cross-validation)")
    parser.add_argument("--validation-speakers", type=_speaker_list, metavar="ID,ID,...",
                        help="the same for the validation split, instead of --validation")
    parser.add_argument("--seed", type=int, default=0, help="split seed (0)")
    parser.add_argument("--calm", default="neutral", choices=["neutral", "keep", "drop"],
                        help="RAVDESS calm: fold into neutral (default), keep as a class, drop")
    parser.add_argument("--boredom", default="drop", choices=list(BOREDOM_POLICIES),
                        help="Emo-DB boredom, which has no class here: drop (default; listed "
                             "in skipped.csv) or fold into neutral")
    parser.add_argument("--shard-mb", type=float, default=100.0,
                        help="maximum shard size in MB (100)")
    parser.add_argument("--workers", type=int, default=None,
                        help="decoding processes (default: all CPU cores)")
    parser.add_argument("--min-duration", type=float, default=MIN_DURATION,
                        help=f"clips shorter than this many seconds are skipped ({MIN_DURATION})")
    parser.add_argument("--force", action="store_true",
                        help="rebuild even if --out already holds an up-to-date set")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        schema = build(args.corpus, args.out, split_mode=args.split, validation=args.validation,
                       test=args.test, seed=args.seed, calm=args.calm, boredom=args.boredom,
                       shard_mb=args.shard_mb,
                       workers=args.workers, min_duration=args.min_duration, force=args.force,
                       progress=not args.quiet, test_speakers=args.test_speakers,
                       validation_speakers=args.validation_speakers)
    except (BuildError, CorpusError, splitting.SplitError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the output folder was left as it was", file=sys.stderr)
        return 130
    for split in SPLITS:
        s = schema["splits"][split]
        print(f"{split:>10}: {s['examples']:5d} clips, {len(s['speakers']):3d} speakers, "
              f"{s['hours']:.2f} h")
    print(f"{args.out}: {schema['total_examples']} clips, {schema['skipped']} skipped "
          f"(see skipped.csv), labels: {', '.join(schema['labels'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
