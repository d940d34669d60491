"""Speaker-grouped splits and folds: no speaker on two sides, deterministic, every class trained."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.corpora import read_corpora
from pipelines.records.splits import (
    SplitError, check_speaker_disjoint, missing_classes, random_split, speaker_folds,
    speaker_split,
)

EMOTIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def synthetic(speakers: dict[str, int], files: int = 3) -> pd.DataFrame:
    """corpus -> number of speakers; every speaker has `files` clips of every emotion."""
    rows = []
    for corpus, n in speakers.items():
        for s in range(n):
            for emotion in EMOTIONS:
                for i in range(files):
                    rows.append({"path": f"/{corpus}/{s}/{emotion}_{i}.wav", "corpus": corpus,
                                 "speaker": f"{corpus}_{s:02d}", "emotion": emotion,
                                 "gender": "male" if s % 2 else "female"})
    return pd.DataFrame(rows)


@pytest.fixture
def rows() -> pd.DataFrame:
    return synthetic({"big": 20, "pair": 2, "trio": 3})


def sides_per_speaker(rows: pd.DataFrame, labels: pd.Series) -> pd.Series:
    return rows.assign(side=labels).groupby("speaker")["side"].nunique()


def test_speaker_split_keeps_speakers_on_one_side(rows):
    split = speaker_split(rows, validation=0.1, test=0.1)
    assert split.notna().all() and set(split) == {"train", "validation", "test"}
    assert (sides_per_speaker(rows, split) == 1).all()
    check_speaker_disjoint(rows.assign(split=split))
    big = rows.assign(split=split)[rows["corpus"] == "big"]
    assert big.groupby("split")["speaker"].nunique().to_dict() == {
        "test": 2, "validation": 2, "train": 16}
    # Held-out speakers alternate between genders.
    assert set(big.loc[big["split"] == "test", "gender"]) == {"male", "female"}
    # Corpora with too few speakers stay in train.
    assert set(split[rows["corpus"] != "big"]) == {"train"}


def test_speakers_given_by_id_make_up_their_side(rows):
    split = speaker_split(rows, validation=0.1, test=0.1, test_speakers=["big_03", "trio_01"],
                          validation_speakers=["big_07"])
    side = rows.assign(split=split).groupby("speaker")["split"].first()
    assert sorted(side[side == "test"].index) == ["big_03", "trio_01"]
    assert list(side[side == "validation"].index) == ["big_07"]
    check_speaker_disjoint(rows.assign(split=split))
    # only validation pinned: test still takes its share of each corpus, never big_07
    split = speaker_split(rows, validation=0.1, test=0.1, validation_speakers=["big_07"])
    side = rows.assign(split=split).groupby("speaker")["split"].first()
    assert side["big_07"] == "validation" and (side == "validation").sum() == 1
    assert (side[side.index.str.startswith("big")] == "test").sum() == 2


@pytest.mark.parametrize("kwargs, message", [
    ({"test_speakers": ["big_99"]}, "no such speaker"),
    ({"test_speakers": ["big_01"], "validation_speakers": ["big_01"]}, "both test and valid"),
])
def test_speakers_given_by_id_are_checked(rows, kwargs, message):
    with pytest.raises(SplitError, match=message):
        speaker_split(rows, **kwargs)


def test_speaker_split_is_deterministic_and_order_independent(rows):
    first = speaker_split(rows, seed=3)
    assert first.equals(speaker_split(rows, seed=3))
    shuffled = rows.sample(frac=1, random_state=1).reset_index(drop=True)
    again = speaker_split(shuffled, seed=3)
    assert dict(zip(rows["path"], first)) == dict(zip(shuffled["path"], again))
    others = [speaker_split(rows, seed=s) for s in range(1, 6)]
    assert any(not first.equals(o) for o in others), "the seed changes nothing"


def test_every_class_in_train(rows):
    split = speaker_split(rows)
    assert missing_classes(rows.assign(split=split)) == []
    # And the check does detect a missing class.
    thinned = rows.assign(split=split)
    thinned = thinned[~((thinned["split"] == "train") & (thinned["emotion"] == "sad"))]
    assert missing_classes(thinned) == ["sad"]


def test_check_speaker_disjoint_raises(rows):
    split = speaker_split(rows)
    leaked = rows.assign(split=split)
    leaked.loc[leaked.index[0], "split"] = "test" if leaked["split"].iloc[0] != "test" else "train"
    with pytest.raises(SplitError, match=leaked["speaker"].iloc[0]):
        check_speaker_disjoint(leaked)


def test_bad_fractions(rows):
    with pytest.raises(ValueError):
        speaker_split(rows, validation=0.6, test=0.5)
    with pytest.raises(ValueError):
        speaker_folds(rows, k=1)


@pytest.mark.parametrize("k", [2, 5])
def test_folds_are_disjoint_and_cover_all_rows(rows, k):
    folds = speaker_folds(rows, k=k)
    assert len(folds) == len(rows) and folds.notna().all()
    assert set(folds) == set(range(k))
    assert (sides_per_speaker(rows, folds) == 1).all()
    for f in range(k):  # each fold as test: no speaker on both sides, every row in one fold
        test, train = set(rows.loc[folds == f, "speaker"]), set(rows.loc[folds != f, "speaker"])
        assert not test & train
    big = rows[rows["corpus"] == "big"].groupby(folds).size()
    assert big.max() == big.min()  # 20 equal speakers deal evenly into 2 or 5 folds


def test_folds_are_deterministic_and_order_independent(rows):
    folds = speaker_folds(rows, k=5, seed=7)
    shuffled = rows.sample(frac=1, random_state=2)
    again = speaker_folds(shuffled, k=5, seed=7)
    assert dict(zip(rows["path"], folds)) == dict(zip(shuffled["path"], again))


def test_random_split_is_stratified_and_deterministic(rows):
    split = random_split(rows, validation=0.1, test=0.2, seed=0)
    per_emotion = rows.assign(split=split).groupby(["emotion", "split"]).size().unstack()
    n = rows["emotion"].value_counts().reindex(per_emotion.index)
    assert (per_emotion["test"] == (n * 0.2).astype(int)).all()
    assert (per_emotion["validation"] == (n * 0.1).astype(int)).all()
    shuffled = rows.sample(frac=1, random_state=3)
    assert dict(zip(rows["path"], split)) == dict(
        zip(shuffled["path"], random_split(shuffled, validation=0.1, test=0.2, seed=0)))
    # By construction it puts speakers on several sides: that is why it is not the default.
    assert (sides_per_speaker(rows, split) > 1).any()


# --- real corpora ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real(corpora) -> pd.DataFrame:
    rows, _, _ = read_corpora([f"{n}={corpora / n}" for n in ("ravdess", "tess", "savee")])
    return rows


def test_real_speaker_split(real):
    split = speaker_split(real)
    check_speaker_disjoint(real.assign(split=split))
    assert missing_classes(real.assign(split=split)) == []
    ravdess = real.assign(split=split)[real["corpus"] == "ravdess"]
    per_side = ravdess.groupby("split")["speaker"].nunique().to_dict()
    assert per_side == {"test": 2, "validation": 2, "train": 16}
    for side in ("test", "validation"):  # one actor and one actress each
        assert sorted(ravdess.loc[ravdess["split"] == side, "gender"].unique()) == [
            "female", "male"]
        assert missing_classes(ravdess.assign(split=split), split=side) == []
    assert speaker_split(real.iloc[::-1]).sort_index().equals(split)


def test_real_folds(real):
    folds = speaker_folds(real, k=5)
    assert (sides_per_speaker(real, folds) == 1).all()
    assert set(folds) == set(range(5))
    actors = real[real["corpus"] == "ravdess"].groupby(folds)["speaker"].nunique()
    assert actors.tolist() == [4] * 5
