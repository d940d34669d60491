"""What every corpus reader shares: walking a folder, collecting rows and skips, label policy.

A reader module supplies only what is specific to its corpus: a `parse(path, root)` function
that turns one file path into a dict of fields (or raises `Unparsable` with a reason) and an
`Expectation` describing the complete corpus. `read_folder` does the rest, identically for all.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd

from pipelines.corpora.labels import CALM_POLICIES, EMOTIONS, harmonise

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".aif", ".aiff", ".aifc", ".ogg", ".mp3"})

# Columns every reader returns, in this order; corpus-specific fields follow them.
COLUMNS = ("path", "corpus", "speaker", "gender", "emotion", "original_label")
SKIP_COLUMNS = ("path", "corpus", "reason")


class Unparsable(ValueError):
    """A file's name or place does not say what the corpus layout promises."""


class CorpusError(ValueError):
    """A whole corpus folder cannot be read (missing, empty, not a folder)."""


@dataclasses.dataclass(frozen=True)
class Expectation:
    """What the complete, original corpus holds, so a reader can say what is missing.

    speakers: every speaker id of the full corpus (already prefixed, e.g. 'ravdess_01').
    per_speaker: original_label -> files per speaker, when every speaker has the same design.
    total: files in the full corpus.
    """

    speakers: frozenset[str]
    total: int
    per_speaker: Mapping[str, int] | None = None


@dataclasses.dataclass
class Readout:
    """The result of reading one corpus folder."""

    corpus: str
    rows: pd.DataFrame
    skipped: pd.DataFrame
    notes: list[str]

    def __repr__(self) -> str:  # pragma: no cover - convenience
        return f"Readout({self.corpus!r}, rows={len(self.rows)}, skipped={len(self.skipped)})"


def audio_files(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Audio files below root (sorted), and files that look like audio but are not to be read.

    macOS resource forks (`._name.wav`, `__MACOSX/`) are common in Kaggle zips; they carry no
    audio and are reported rather than decoded.
    """
    found, ignored = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() not in AUDIO_EXTENSIONS:
                continue
            if "__MACOSX" in path.parts or name.startswith("._"):
                ignored.append((path, "macOS resource fork, not audio"))
            else:
                found.append(path)
    return found, ignored


def check_root(root: str | os.PathLike, corpus: str) -> Path:
    root = Path(root).absolute()
    if not root.exists():
        raise CorpusError(f"{root}: {corpus} folder does not exist")
    if not root.is_dir():
        raise CorpusError(f"{root}: {corpus} path is not a folder")
    return root


def check_policy(option: str, value: str, choices: tuple[str, ...]) -> None:
    """A label policy (calm, boredom) must be one of its choices: ValueError naming them."""
    if value not in choices:
        raise ValueError(f"{option} must be one of {choices}, got {value!r}")


def read_folder(
    root: str | os.PathLike,
    corpus: str,
    parse: Callable[[Path, Path], dict],
    expectation: Expectation | None = None,
    calm: str = "neutral",
    extra_columns: tuple[str, ...] = (),
) -> Readout:
    """Parse every audio file below root with `parse`; collect rows, skips and notes.

    `parse` returns a dict with at least speaker, gender, original_label (as the corpus writes
    it), label_word (a word `harmonise` knows) and key (what makes the recording unique, used
    to report duplicates), plus any corpus-specific fields.
    """
    check_policy("calm", calm, CALM_POLICIES)
    root = check_root(root, corpus)
    files, ignored = audio_files(root)
    rows, skipped = [], [(str(p), corpus, why) for p, why in ignored]
    seen: dict[object, Path] = {}
    for path in files:
        try:
            fields = parse(path, root)
            emotion = harmonise(fields["label_word"])
        except Unparsable as err:
            skipped.append((str(path), corpus, str(err)))
            continue
        except KeyError as err:
            skipped.append((str(path), corpus, str(err.args[0])))
            continue
        key = fields.pop("key")
        if key in seen:
            skipped.append((str(path), corpus, f"duplicate of {seen[key]}"))
            continue
        seen[key] = path
        if emotion == "calm" and calm == "neutral":
            emotion = "neutral"
        elif emotion == "calm" and calm == "drop":
            skipped.append((str(path), corpus, "excluded: calm dropped (calm='drop')"))
            continue
        fields.pop("label_word")
        rows.append({"path": str(path), "corpus": corpus, "emotion": emotion, **fields})
    if not files:
        raise CorpusError(f"{root}: no audio files found for {corpus}")
    columns = list(COLUMNS) + list(extra_columns)
    frame = pd.DataFrame(rows, columns=columns)
    skipped_frame = pd.DataFrame(skipped, columns=list(SKIP_COLUMNS))
    notes = completeness_notes(corpus, frame, expectation) if expectation else []
    return Readout(corpus, frame, skipped_frame, notes)


def completeness_notes(corpus: str, rows: pd.DataFrame, expect: Expectation) -> list[str]:
    """Plain-language notes on what is missing compared with the complete corpus."""
    notes = []
    present = set(rows["speaker"])
    missing = sorted(expect.speakers - present)
    unknown = sorted(present - expect.speakers)
    notes.append(
        f"{corpus}: {len(rows)} files from {len(present & expect.speakers)} of "
        f"{len(expect.speakers)} speakers (complete corpus: {expect.total} files)"
    )
    if missing:
        notes.append(f"{corpus}: speakers not present: {', '.join(missing)}")
    if unknown:
        notes.append(f"{corpus}: speakers not in the published corpus: {', '.join(unknown)}")
    if expect.per_speaker:
        for speaker, group in rows.groupby("speaker", sort=True):
            counts = Counter(group["original_label"])
            off = [
                f"{label} {counts.get(label, 0)}/{want}"
                for label, want in expect.per_speaker.items()
                if counts.get(label, 0) != want
            ]
            if off:
                notes.append(f"{corpus}: {speaker} has unexpected counts: {', '.join(off)}")
    return notes


def emotion_order(rows: pd.DataFrame) -> list[str]:
    present = set(rows["emotion"])
    return [e for e in EMOTIONS if e in present]
