"""TESS: `<SPEAKER>_<word>_<emotion>.wav` in folders such as `OAF_angry/`.

Labels come from the file name's last part, as the data card asks (folder names are
inconsistent). The distribution has one file with a misspelt speaker prefix (`OA_bite_neutral`);
the speaker is then taken from the folder, and the row says so in `note`.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.corpora.base import Expectation, Readout, Unparsable, read_folder
from pipelines.corpora.labels import is_emotion

CORPUS = "tess"
SPEAKERS = ("OAF", "YAF")
LABELS = ("angry", "disgust", "fear", "happy", "neutral", "ps", "sad")
_FOLDER_SPEAKER = re.compile(r"(OAF|YAF)_", re.IGNORECASE)
EXTRA_COLUMNS = ("word", "note")

EXPECTATION = Expectation(
    speakers=frozenset(f"{CORPUS}_{s}" for s in SPEAKERS),
    total=2800,
    per_speaker={label: 200 for label in LABELS},
)


def _speaker(prefix: str, path: Path, root: Path) -> tuple[str, str]:
    if prefix.upper() in SPEAKERS:
        return prefix.upper(), ""
    if not prefix:
        raise Unparsable("empty speaker prefix")
    for parent in path.relative_to(root).parents:
        m = _FOLDER_SPEAKER.match(parent.name)
        if m and m.group(1).upper().startswith(prefix.upper()):
            return m.group(1).upper(), f"speaker prefix {prefix!r} read as {m.group(1).upper()}"
    raise Unparsable(f"speaker prefix {prefix!r} is not OAF or YAF")


def parse(path: Path, root: Path) -> dict:
    parts = path.stem.split("_")
    if len(parts) < 3:
        raise Unparsable("name is not <SPEAKER>_<word>_<emotion>")
    label = parts[-1].lower()
    words = parts[1:-1]
    if label in ("surprise", "surprised") and words and words[-1].lower() == "pleasant":
        label, words = "ps", words[:-1]
    if not is_emotion(label) or not words:
        raise Unparsable(f"emotion {parts[-1]!r} is not one of {', '.join(LABELS)}")
    speaker, note = _speaker(parts[0], path, root)
    word = "_".join(words).lower()
    return {
        "speaker": f"{CORPUS}_{speaker}",
        "gender": "female",
        "original_label": label,
        "label_word": label,
        "key": (speaker, word, label),
        "word": word,
        "note": note,
    }


def read(root, calm: str = "neutral") -> Readout:
    return read_folder(root, CORPUS, parse, EXPECTATION, calm, EXTRA_COLUMNS)
