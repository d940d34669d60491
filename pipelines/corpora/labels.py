"""The harmonised emotion label set and the aliases the corpora use for it."""

from __future__ import annotations

# Canonical order: every label list in the project (schema, models, reports) follows it.
EMOTIONS: tuple[str, ...] = (
    "neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised",
)

CALM_POLICIES = ("neutral", "keep", "drop")
# Emo-DB boredom has no class here: listed as skipped (default) or folded into neutral.
BOREDOM_POLICIES = ("drop", "neutral")

_ALIASES = {
    "neutral": "neutral", "neu": "neutral", "n": "neutral",
    "calm": "calm",
    "happy": "happy", "happiness": "happy", "hap": "happy", "h": "happy", "joy": "happy",
    "sad": "sad", "sadness": "sad", "sa": "sad",
    "angry": "angry", "anger": "angry", "ang": "angry", "a": "angry",
    "fearful": "fearful", "fear": "fearful", "fea": "fearful", "f": "fearful",
    "disgust": "disgust", "dis": "disgust", "d": "disgust", "disgusted": "disgust",
    "surprised": "surprised", "surprise": "surprised", "su": "surprised", "sur": "surprised",
    "ps": "surprised", "pleasant_surprise": "surprised", "pleasant_surprised": "surprised",
    "pleasantsurprise": "surprised",
}


def harmonise(label: str) -> str:
    """Map a corpus label (any case, '-' or ' ' for '_') to the canonical name.

    Raises KeyError with the known aliases when the label is unknown.
    """
    key = label.strip().lower().replace("-", "_").replace(" ", "_")
    try:
        return _ALIASES[key]
    except KeyError:
        raise KeyError(f"unknown emotion label {label!r}") from None


def is_emotion(label: str) -> bool:
    try:
        harmonise(label)
    except KeyError:
        return False
    return True


def ordered(labels) -> list[str]:
    """The given labels in canonical order (unknown ones last, alphabetically)."""
    labels = set(labels)
    known = [e for e in EMOTIONS if e in labels]
    return known + sorted(labels - set(known))
