"""Any labelled audio folder: one folder per emotion, optionally one folder per speaker above it.

    DIR/angry/x.wav                  -> emotion angry, speaker unknown
    DIR/spk01/angry/x.wav            -> emotion angry, speaker spk01
    DIR/angry/spk01_x.wav + speaker_pattern=r"(?P<speaker>[^_]+)_" -> speaker spk01

The emotion is the nearest folder whose name is a known emotion word of 3 letters or more
(any alias `harmonise` knows: anger, ang, happiness, ...). Without speaker information all files count as one speaker,
which makes speaker-independent splits impossible; the readout says so.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.corpora.base import Readout, Unparsable, read_folder
from pipelines.corpora.labels import is_emotion

EXTRA_COLUMNS = ("label_folder",)


def _is_label_folder(name: str) -> bool:
    # One- and two-letter aliases (SAVEE's a, d, sa, ...) are too easily folder names of
    # something else; a label folder is a word such as angry, ang, anger, neu, sad.
    return len(name) >= 3 and is_emotion(name)


def parse(path: Path, root: Path, corpus: str, speaker_pattern: re.Pattern | None) -> dict:
    rel = path.relative_to(root)
    folders = rel.parts[:-1]
    label_at = next(
        (i for i in range(len(folders) - 1, -1, -1) if _is_label_folder(folders[i])), None)
    if label_at is None:
        raise Unparsable("no folder on its path is an emotion name (e.g. angry/, happy/)")
    speaker = folders[label_at - 1] if label_at > 0 else None
    if speaker_pattern is not None:
        m = speaker_pattern.search(path.name)
        if not m:
            raise Unparsable(f"speaker pattern {speaker_pattern.pattern!r} does not match")
        speaker = m.group("speaker")
    label = folders[label_at]
    return {
        "speaker": f"{corpus}_{speaker if speaker else 'unknown'}",
        "gender": "unknown",
        "original_label": label,
        "label_word": label,
        "key": str(rel),
        "label_folder": label,
    }


def read(root, corpus: str = "folder", calm: str = "neutral",
         speaker_pattern: str | None = None) -> Readout:
    pattern = re.compile(speaker_pattern) if speaker_pattern else None
    if pattern is not None and "speaker" not in pattern.groupindex:
        raise ValueError("speaker_pattern needs a named group (?P<speaker>...)")
    readout = read_folder(
        root, corpus, lambda p, r: parse(p, r, corpus, pattern), None, calm, EXTRA_COLUMNS
    )
    speakers = set(readout.rows["speaker"])
    readout.notes.append(f"{corpus}: {len(readout.rows)} files, {len(speakers)} speakers")
    if f"{corpus}_unknown" in speakers:
        readout.notes.append(
            f"{corpus}: some files have no speaker (no speaker folder above the emotion folder "
            "and no speaker_pattern); they count as one speaker, so they cannot be split "
            "speaker-independently"
        )
    return readout
