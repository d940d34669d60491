"""SAVEE: `ALL/DC_a01.wav` (single folder) or `AudioData/DC/a01.wav` (per speaker).

Emotion codes: a anger, d disgust, f fear, h happiness, n neutral, sa sadness, su surprise
(some copies of the SAVEE readme wrongly say a = happy).
"""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.corpora.base import Expectation, Readout, Unparsable, read_folder

CORPUS = "savee"
SPEAKERS = ("DC", "JE", "JK", "KL")
CODES = {"a": "angry", "d": "disgust", "f": "fearful", "h": "happy",
         "n": "neutral", "sa": "sad", "su": "surprised"}
_NAME = re.compile(r"(?:(?P<speaker>[A-Za-z]{2})_)?(?P<code>sa|su|a|d|f|h|n)(?P<num>\d\d)")
EXTRA_COLUMNS = ("sentence",)

EXPECTATION = Expectation(
    speakers=frozenset(f"{CORPUS}_{s}" for s in SPEAKERS),
    total=480,
    per_speaker={"a": 15, "d": 15, "f": 15, "h": 15, "n": 30, "sa": 15, "su": 15},
)


def parse(path: Path, root: Path) -> dict:
    m = _NAME.fullmatch(path.stem)
    if not m:
        raise Unparsable("name is not [SPEAKER_]<code><nn> with code a/d/f/h/n/sa/su")
    speaker = m.group("speaker") or path.parent.name
    if speaker.upper() not in SPEAKERS:
        where = "name" if m.group("speaker") else "folder"
        raise Unparsable(f"speaker {speaker!r} (from the {where}) is not one of DC, JE, JK, KL")
    speaker, code = speaker.upper(), m.group("code")
    return {
        "speaker": f"{CORPUS}_{speaker}",
        "gender": "male",
        "original_label": code,
        "label_word": CODES[code],
        "key": (speaker, code, m.group("num")),
        "sentence": int(m.group("num")),
    }


def read(root, calm: str = "neutral") -> Readout:
    return read_folder(root, CORPUS, parse, EXPECTATION, calm, EXTRA_COLUMNS)
