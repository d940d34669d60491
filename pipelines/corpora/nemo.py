"""nEMO (Polish emotional speech): `DIR/samples/<file_id>` described by `DIR/data.tsv`.

data.tsv has one row per clip: file_id (`{speaker_id}_{emotion}_{sentence}.wav`), emotion
(anger, fear, happiness, neutral, sadness, surprised), raw_text, normalized_text, speaker_id,
gender, age. Labels, speakers, gender and age come from data.tsv, not from the file name; the
name only has to agree with it. speaker_id values carry leading spaces in the distribution;
they are stripped. A row whose file_id names another audio extension than the file on disk
(data.tsv says .wav, the copy holds .flac) is matched by name without the extension.

Every clip is accounted for: rows without a file, files without a row, unknown emotions and
disagreements between name and row are listed as skipped with the reason. Layout and counts
as published in the nEMO repository (github.com/amu-cai/nEMO): 4481 clips of 9 actors.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

import pandas as pd

from pipelines.corpora.base import (
    AUDIO_EXTENSIONS, COLUMNS, SKIP_COLUMNS, CorpusError, Expectation, Readout, audio_files,
    check_policy, check_root, completeness_notes,
)
from pipelines.corpora.labels import CALM_POLICIES

CORPUS = "nemo"
EMOTIONS = {"anger": "angry", "fear": "fearful", "happiness": "happy", "neutral": "neutral",
            "sadness": "sad", "surprised": "surprised"}
SPEAKERS = ("EB0", "IC0", "KD0", "KS0", "MK0", "MP0", "SM0", "TP0", "WR0")
TSV_COLUMNS = ("file_id", "emotion", "raw_text", "normalized_text", "speaker_id", "gender",
               "age")
REQUIRED = ("file_id", "emotion", "speaker_id", "gender", "age")
_FILE_ID = re.compile(r"(?P<speaker>[^_]+)_(?P<emotion>[a-z]+)_(?P<sentence>\d+)")
EXTRA_COLUMNS = ("sentence", "text", "age")

EXPECTATION = Expectation(speakers=frozenset(f"{CORPUS}_{s}" for s in SPEAKERS), total=4481)


def read_table(tsv: Path) -> pd.DataFrame:
    """data.tsv as strings (text may hold quotes, so no CSV quoting); one-line CorpusError."""
    try:
        table = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False,
                            quoting=csv.QUOTE_NONE, encoding="utf-8-sig")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        reason = (str(err).strip().splitlines() or [err.__class__.__name__])[0]
        raise CorpusError(f"{tsv}: not a readable tab-separated table ({reason})") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise CorpusError(f"{tsv}: no column {', '.join(missing)} (nEMO's data.tsv has "
                          f"{', '.join(TSV_COLUMNS)})")
    return table


def _stem(name: str) -> str:
    """A file_id or relative path without its audio extension (names without one stay)."""
    path = Path(name)
    return path.with_suffix("").as_posix() if path.suffix.lower() in AUDIO_EXTENSIONS else name


def parse_row(row: dict, path: Path) -> dict:
    """One data.tsv row whose file is `path` -> reader fields; ValueError with the reason."""
    emotion = row["emotion"].strip().lower()
    if emotion not in EMOTIONS:
        raise ValueError(f"emotion {row['emotion']!r} in data.tsv is not one of "
                         f"{', '.join(EMOTIONS)}")
    speaker = row["speaker_id"].strip()
    if not speaker:
        raise ValueError("no speaker_id in data.tsv")
    m = _FILE_ID.fullmatch(_stem(row["file_id"].strip()))
    if m and m.group("emotion") != emotion:
        raise ValueError(f"the name says {m.group('emotion')} but data.tsv says {emotion}")
    if m and m.group("speaker") != speaker:
        raise ValueError(f"the name says speaker {m.group('speaker')} but data.tsv says "
                         f"{speaker}")
    age = row["age"].strip()
    return {
        "path": str(path),
        "corpus": CORPUS,
        "speaker": f"{CORPUS}_{speaker}",
        "gender": row["gender"].strip().lower() or "unknown",
        "emotion": EMOTIONS[emotion],
        "original_label": emotion,
        "sentence": int(m.group("sentence")) if m else None,
        "text": row.get("raw_text", "").strip(),
        "age": int(age) if age.isdigit() else None,
    }


def read(root, calm: str = "neutral") -> Readout:
    """Read an nEMO folder (samples/ + data.tsv). nEMO has no calm; `calm` is only checked."""
    check_policy("calm", calm, CALM_POLICIES)
    root = check_root(root, CORPUS)
    tsv, samples = root / "data.tsv", root / "samples"
    if not tsv.is_file():
        raise CorpusError(f"{tsv}: nemo data.tsv not found (nEMO is samples/ + data.tsv)")
    if not samples.is_dir():
        raise CorpusError(f"{samples}: nemo samples folder not found (nEMO is samples/ + "
                          "data.tsv)")
    table = read_table(tsv)
    files, ignored = audio_files(samples)
    if not files:
        raise CorpusError(f"{samples}: no audio files found for {CORPUS}")
    by_name = {p.relative_to(samples).as_posix(): p for p in files}
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for rel, path in by_name.items():
        by_stem[_stem(rel)].append(path)

    rows, skipped = [], [(str(p), CORPUS, why) for p, why in ignored]
    claimed: dict[str, tuple[Path, int]] = {}  # stem -> (file, data.tsv line)
    for line, row in enumerate(table.to_dict("records"), start=2):
        file_id = row["file_id"].strip()
        if not file_id:
            skipped.append((f"{tsv}:{line}", CORPUS, f"data.tsv line {line} has no file_id"))
            continue
        stem = _stem(file_id)
        if stem in claimed:
            first = claimed[stem][1]
            skipped.append((f"{tsv}:{line}", CORPUS,
                            f"data.tsv line {line} lists {file_id} again (first on line {first})"))
            continue
        path = by_name.get(file_id) or next(iter(sorted(by_stem.get(stem, []))), None)
        if path is None:
            skipped.append((str(samples / file_id), CORPUS,
                            "listed in data.tsv but not in samples/ (under any audio extension)"))
            continue
        claimed[stem] = (path, line)
        try:
            rows.append(parse_row(row, path))
        except ValueError as err:
            skipped.append((str(path), CORPUS, f"data.tsv line {line}: {err}"))
    used = {path for path, _ in claimed.values()}
    for rel, path in by_name.items():
        if path in used:
            continue
        twin = claimed.get(_stem(rel))
        why = (f"another copy of {twin[0].name} (same name, other extension)" if twin
               else "not listed in data.tsv")
        skipped.append((str(path), CORPUS, why))

    frame = pd.DataFrame(rows, columns=list(COLUMNS) + list(EXTRA_COLUMNS))
    for column in ("sentence", "age"):
        frame[column] = frame[column].astype("Int64")
    notes = completeness_notes(CORPUS, frame, EXPECTATION)
    if len(frame) < EXPECTATION.total:
        notes.append(f"{CORPUS}: this copy may be partial: {len(frame)} of the "
                     f"{EXPECTATION.total} published clips of {len(SPEAKERS)} speakers; counts "
                     "per speaker and emotion are the copy's, not the corpus'")
    return Readout(CORPUS, frame, pd.DataFrame(skipped, columns=list(SKIP_COLUMNS)), notes)
