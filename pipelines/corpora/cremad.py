"""CREMA-D: `AudioWAV/1001_DFA_ANG_XX.wav` = actor, sentence, emotion, level.

Gender comes from `VideoDemographics.csv` (ActorID, Sex) when it lies in the corpus folder or
one above it; otherwise it is left unknown. Naming as documented in the CREMA-D repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from pipelines.corpora.base import Expectation, Readout, Unparsable, read_folder

CORPUS = "cremad"
SENTENCES = {
    "IEO": "It's eleven o'clock", "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting", "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full", "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock", "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket", "ITS": "I think I've seen this before",
    "TSI": "The surface is slick", "WSI": "We'll stop in a couple of minutes",
}
EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy",
            "NEU": "neutral", "SAD": "sad"}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
_NAME = re.compile(r"(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})")
EXTRA_COLUMNS = ("sentence", "level", "actor")

EXPECTATION = Expectation(
    speakers=frozenset(f"{CORPUS}_{a}" for a in range(1001, 1092)), total=7442
)


def demographics(root: Path) -> dict[int, str]:
    """ActorID -> 'male'/'female' from VideoDemographics.csv, if the file is there."""
    for folder in (root, root.parent):
        csv = folder / "VideoDemographics.csv"
        if csv.is_file():
            table = pd.read_csv(csv)
            return {int(a): str(s).lower() for a, s in zip(table["ActorID"], table["Sex"])}
    return {}


def parse(path: Path, root: Path, genders: dict[int, str]) -> dict:
    m = _NAME.fullmatch(path.stem)
    if not m:
        raise Unparsable("name is not ActorID_SENTENCE_EMOTION_LEVEL (e.g. 1001_DFA_ANG_XX)")
    actor, sentence, emotion, level = m.groups()
    if not 1001 <= int(actor) <= 1091:
        raise Unparsable(f"actor {actor} is not 1001..1091")
    if sentence not in SENTENCES:
        raise Unparsable(f"sentence code {sentence} is not one of the 12 CREMA-D sentences")
    if emotion not in EMOTIONS:
        raise Unparsable(f"emotion code {emotion} is not one of {', '.join(EMOTIONS)}")
    if level not in LEVELS:
        raise Unparsable(f"level {level} is not LO, MD, HI or XX")
    return {
        "speaker": f"{CORPUS}_{actor}",
        "gender": genders.get(int(actor), "unknown"),
        "original_label": emotion,
        "label_word": EMOTIONS[emotion],
        "key": path.stem,
        "sentence": sentence,
        "level": LEVELS[level],
        "actor": int(actor),
    }


def read(root, calm: str = "neutral") -> Readout:
    genders = demographics(Path(root))
    return read_folder(
        root, CORPUS, lambda p, r: parse(p, r, genders), EXPECTATION, calm, EXTRA_COLUMNS
    )
