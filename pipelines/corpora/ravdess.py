"""RAVDESS (speech and, on request, song): `MM-VV-EE-II-SS-RR-AA.wav` under `Actor_AA/`.

Accepts the original zip layout (`Actor_01/...`, possibly under `audio_speech_actors_01-24/`) and
the Kaggle copies, as .wav or .flac. Field meanings follow the RAVDESS documentation.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.corpora.base import Expectation, Readout, Unparsable, read_folder

CORPUS = "ravdess"
_NAME = re.compile(r"(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)")
_FOLDER = re.compile(r"actor_(\d\d)", re.IGNORECASE)
EMOTION_CODES = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
INTENSITIES = {"01": "normal", "02": "strong"}
CHANNELS = {"01": "speech", "02": "song"}
EXTRA_COLUMNS = ("vocal_channel", "intensity", "statement", "repetition", "actor")

EXPECTATION = Expectation(
    speakers=frozenset(f"{CORPUS}_{a:02d}" for a in range(1, 25)),
    total=1440,
    per_speaker={"01": 4, **{f"{c:02d}": 8 for c in range(2, 9)}},
)


def parse(path: Path, root: Path, include_song: bool = False) -> dict:
    m = _NAME.fullmatch(path.stem)
    if not m:
        raise Unparsable("name is not MM-VV-EE-II-SS-RR-AA (seven two-digit RAVDESS fields)")
    modality, channel, emotion, intensity, statement, repetition, actor = m.groups()
    if modality != "03":
        raise Unparsable(f"modality {modality} is not 03 (audio-only)")
    if channel not in CHANNELS:
        raise Unparsable(f"vocal channel {channel} is not 01 (speech) or 02 (song)")
    if channel == "02" and not include_song:
        raise Unparsable("excluded: song recording (vocal channel 02); only speech is read")
    if emotion not in EMOTION_CODES:
        raise Unparsable(f"emotion code {emotion} is not 01..08")
    if intensity not in INTENSITIES:
        raise Unparsable(f"intensity {intensity} is not 01 or 02")
    if emotion == "01" and intensity == "02":
        raise Unparsable("neutral with strong intensity does not exist in RAVDESS")
    if statement not in STATEMENTS or repetition not in ("01", "02"):
        raise Unparsable(f"statement {statement} / repetition {repetition} not 01 or 02")
    if not 1 <= int(actor) <= 24:
        raise Unparsable(f"actor {actor} is not 01..24")
    folder = _FOLDER.fullmatch(path.parent.name)
    if folder and folder.group(1) != actor:
        raise Unparsable(f"actor {actor} in the name but folder is {path.parent.name}")
    return {
        "speaker": f"{CORPUS}_{actor}",
        "gender": "male" if int(actor) % 2 else "female",
        "original_label": emotion,
        "label_word": EMOTION_CODES[emotion],
        "key": path.stem,
        "vocal_channel": CHANNELS[channel],
        "intensity": INTENSITIES[intensity],
        "statement": int(statement),
        "repetition": int(repetition),
        "actor": int(actor),
    }


def read(root, calm: str = "neutral", include_song: bool = False) -> Readout:
    """Read a RAVDESS folder. calm: 'neutral' (fold into neutral), 'keep' or 'drop'."""
    return read_folder(
        root, CORPUS, lambda p, r: parse(p, r, include_song), EXPECTATION, calm, EXTRA_COLUMNS
    )
