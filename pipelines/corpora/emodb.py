"""Emo-DB (Berlin emotional speech): `wav/03a01Fa.wav` = speaker, text, emotion letter, version.

Accepts the original layout (`DIR/wav/`) and the files directly in DIR, as .wav or .flac. German
speech, 10 actors. The emotion letter is the German word's initial: W Wut (anger), L Langeweile
(boredom), E Ekel (disgust), A Angst (fear), F Freude (happiness), T Trauer (sadness),
N neutral. Speakers' gender and age are those of the Emo-DB documentation.

Boredom has no class among the zoo's labels: `boredom='drop'` (default) lists those files as
skipped with the reason, `boredom='neutral'` folds them into neutral (as RAVDESS calm can be).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from pipelines.corpora.base import (
    Expectation, Readout, Unparsable, check_policy, read_folder,
)
from pipelines.corpora.labels import BOREDOM_POLICIES

CORPUS = "emodb"
# speaker -> (gender, age), from the Emo-DB documentation
SPEAKERS = {
    "03": ("male", 31), "08": ("female", 34), "09": ("female", 21), "10": ("male", 32),
    "11": ("male", 26), "12": ("male", 30), "13": ("female", 32), "14": ("female", 35),
    "15": ("male", 25), "16": ("female", 31),
}
TEXTS = ("a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10")
LETTERS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fearful", "F": "happy",
           "T": "sad", "N": "neutral"}
_NAME = re.compile(r"(\d\d)([ab]\d\d)([A-Z])([a-z])")
EXTRA_COLUMNS = ("sentence", "version", "age")

EXPECTATION = Expectation(speakers=frozenset(f"{CORPUS}_{s}" for s in SPEAKERS), total=535)


def parse(path: Path, root: Path, boredom: str = "drop") -> dict:
    m = _NAME.fullmatch(path.stem)
    if not m:
        raise Unparsable("name is not SSTTTEV (speaker, text, emotion letter, version; "
                         "e.g. 03a01Fa)")
    speaker, text, letter, version = m.groups()
    if speaker not in SPEAKERS:
        raise Unparsable(f"speaker {speaker} is not one of {', '.join(SPEAKERS)}")
    if text not in TEXTS:
        raise Unparsable(f"text code {text} is not one of the 10 Emo-DB texts")
    if letter not in LETTERS:
        raise Unparsable(f"emotion letter {letter} is not one of {', '.join(LETTERS)}")
    label = LETTERS[letter]
    if label == "boredom":
        if boredom == "drop":
            raise Unparsable("excluded: boredom has no class here (boredom='drop'; "
                             "boredom='neutral' folds it into neutral)")
        label = "neutral"
    gender, age = SPEAKERS[speaker]
    return {
        "speaker": f"{CORPUS}_{speaker}",
        "gender": gender,
        "original_label": letter,
        "label_word": label,
        "key": path.stem,
        "sentence": text,
        "version": version,
        "age": age,
    }


def read(root, calm: str = "neutral", boredom: str = "drop") -> Readout:
    """Read an Emo-DB folder. boredom: 'drop' (skipped, with the reason) or 'neutral'."""
    check_policy("boredom", boredom, BOREDOM_POLICIES)
    readout = read_folder(
        root, CORPUS, lambda p, r: parse(p, r, boredom), EXPECTATION, calm, EXTRA_COLUMNS
    )
    if boredom == "drop":
        dropped = readout.skipped["reason"].str.startswith("excluded: boredom").sum()
        if dropped:
            readout.notes.append(f"{CORPUS}: boredom ({dropped} files) skipped "
                                 "(boredom='drop'); --boredom neutral folds it into neutral")
    else:
        folded = Counter(readout.rows["original_label"])["L"]
        readout.notes.append(f"{CORPUS}: boredom ({folded} files) folded into neutral "
                             "(boredom='neutral')")
    return readout
