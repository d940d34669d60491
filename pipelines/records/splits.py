"""Speaker-grouped splits: whole speakers go to train, validation or test (or to one of k folds).

Assignment is deterministic (a seeded hash of the speaker id, not the row order) and made per
corpus, so every corpus with enough speakers appears on every side; within a corpus the held-out
speakers alternate between genders where genders are known. A corpus with too few speakers for a
held-out share (TESS has 2) stays in train: no speaker is ever on two sides.

`random_split` exists only to reproduce speaker-dependent numbers from the literature; its
results must be labelled as such.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict

import pandas as pd

SPLITS = ("train", "validation", "test")


class SplitError(ValueError):
    """Splits that break a promise (speaker on two sides, empty split, missing class)."""


def _rank(seed: int, speaker: str) -> str:
    return hashlib.sha256(f"{seed}:{speaker}".encode()).hexdigest()


def _interleave_genders(speakers: list[str], genders: dict[str, str], seed: int) -> list[str]:
    """Speakers in seeded order, alternating between genders so held-out sets are balanced."""
    by_gender = defaultdict(list)
    for s in sorted(speakers, key=lambda s: _rank(seed, s)):
        by_gender[genders.get(s, "unknown")].append(s)
    queues = [by_gender[g] for g in sorted(by_gender)]
    order = []
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop(0))
    return order


def _speaker_table(rows: pd.DataFrame) -> pd.DataFrame:
    table = rows.groupby("speaker", sort=True).agg(
        corpus=("corpus", "first"), gender=("gender", "first"), n=("path", "size")
    )
    return table


def speaker_split(
    rows: pd.DataFrame,
    validation: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    test_speakers: list[str] | None = None,
    validation_speakers: list[str] | None = None,
) -> pd.Series:
    """'train'/'validation'/'test' per row, whole speakers per side, per corpus.

    A corpus with n speakers gives round(n * test) speakers to test and round(n * validation)
    to validation, always leaving at least one speaker in train.

    test_speakers / validation_speakers: exactly these speakers (ids as in the manifest, e.g.
    ravdess_09) make up that side, in every corpus, instead of a share (e.g. the folds of a
    cross-validation); every other speaker is assigned as usual for the other side, or trains.
    """
    if not 0 <= validation < 1 or not 0 <= test < 1 or validation + test >= 1:
        raise ValueError("validation and test are fractions that sum to less than 1")
    table = _speaker_table(rows)
    assignment = _pinned(table, test_speakers, validation_speakers)
    if test_speakers is not None:
        test = 0.0
    if validation_speakers is not None:
        validation = 0.0
    for corpus, group in table.groupby("corpus", sort=True):
        group = group.loc[[s for s in group.index if s not in assignment]]
        order = _interleave_genders(list(group.index), group["gender"].to_dict(), seed)
        n = len(order)
        n_test = min(round(n * test), n - 1)
        n_val = min(round(n * validation), n - 1 - n_test)
        for i, speaker in enumerate(order):
            assignment[speaker] = (
                "test" if i < n_test else "validation" if i < n_test + n_val else "train"
            )
    return rows["speaker"].map(assignment).rename("split")


def _pinned(table: pd.DataFrame, test_speakers, validation_speakers) -> dict[str, str]:
    """{speaker: side} for speakers given by id, after checking the ids."""
    pinned = {}
    for side, speakers in (("test", test_speakers), ("validation", validation_speakers)):
        for speaker in speakers or ():
            if pinned.get(speaker, side) != side:
                raise SplitError(f"speaker {speaker} is given for both test and validation")
            pinned[speaker] = side
    unknown = sorted(set(pinned) - set(table.index))
    if unknown:
        raise SplitError(f"no such speaker(s): {', '.join(unknown)} (speakers look like "
                         f"{', '.join(list(table.index)[:3])})")
    return pinned


def speaker_folds(rows: pd.DataFrame, k: int = 5, seed: int = 0) -> pd.Series:
    """Fold number 0..k-1 per row; a speaker's rows all share one fold.

    Within each corpus, speakers are dealt to the fold that holds the fewest files so far
    (largest speakers first, ties broken by a seeded hash), which keeps folds similar in size
    and in corpus mix. A corpus with fewer than k speakers fills only some folds.
    """
    if k < 2:
        raise ValueError("k must be at least 2")
    table = _speaker_table(rows)
    sizes = [0] * k
    fold_of = {}
    for _, group in table.groupby("corpus", sort=True):
        order = sorted(group.index, key=lambda s: (-group.at[s, "n"], _rank(seed, s)))
        corpus_sizes = [0] * k
        for speaker in order:
            f = min(range(k), key=lambda i: (corpus_sizes[i], sizes[i], i))
            fold_of[speaker] = f
            corpus_sizes[f] += group.at[speaker, "n"]
            sizes[f] += group.at[speaker, "n"]
    return rows["speaker"].map(fold_of).astype(int).rename("fold")


def random_split(rows: pd.DataFrame, validation: float = 0.1, test: float = 0.1,
                 seed: int = 0) -> pd.Series:
    """Speaker-DEPENDENT split by file, stratified by emotion: for comparison numbers only."""
    out = pd.Series("train", index=rows.index, name="split")
    for _, group in rows.groupby("emotion", sort=True):
        order = sorted(group.index, key=lambda i: _rank(seed, str(rows.at[i, "path"])))
        n = len(order)
        n_test, n_val = math.floor(n * test), math.floor(n * validation)
        out.loc[order[:n_test]] = "test"
        out.loc[order[n_test:n_test + n_val]] = "validation"
    return out


def check_speaker_disjoint(rows: pd.DataFrame, column: str = "split") -> None:
    """Raise SplitError if any speaker has rows on two sides of `column`."""
    sides = rows.groupby("speaker")[column].nunique()
    crossing = sides[sides > 1]
    if len(crossing):
        raise SplitError(f"speakers on more than one side of {column!r}: "
                         f"{', '.join(crossing.index[:10])}")


def missing_classes(rows: pd.DataFrame, split: str = "train", column: str = "split") -> list[str]:
    """Emotions present in the data but absent from one split (empty list if none)."""
    present = set(rows.loc[rows[column] == split, "emotion"])
    return sorted(set(rows["emotion"]) - present)


def summary(rows: pd.DataFrame, column: str = "split") -> pd.DataFrame:
    """Speakers and files per corpus and split, for reports."""
    return rows.groupby(["corpus", column]).agg(
        speakers=("speaker", "nunique"), files=("path", "size")
    ).reset_index()
