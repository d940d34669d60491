"""Corpus readers: on the real corpora against MANIFEST.csv, and on generated trees in the layouts
people download (Kaggle copies, CREMA-D, macOS zips, labelled folders)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from pipelines.corpora import CorpusError, parse_corpus_arg, read_corpora, read_corpus

# The label tables of the data card, written out here so the test does not trust the code's.
RAVDESS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
           "06": "fearful", "07": "disgust", "08": "surprised"}
TESS = {"angry": "angry", "disgust": "disgust", "fear": "fearful", "happy": "happy",
        "neutral": "neutral", "ps": "surprised", "sad": "sad"}
SAVEE = {"a": "angry", "d": "disgust", "f": "fearful", "h": "happy", "n": "neutral",
         "sa": "sad", "su": "surprised"}
LABELS = {"ravdess": RAVDESS, "tess": TESS, "savee": SAVEE}


# --- real corpora ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def manifest(corpora) -> pd.DataFrame:
    return pd.read_csv(corpora / "MANIFEST.csv", dtype=str)


@pytest.fixture(scope="module")
def readouts(corpora):
    return {name: read_corpus(name, corpora / name) for name in LABELS}


def reader_speaker(corpus: str, manifest_speaker: str) -> str:
    return f"{corpus}_{manifest_speaker.removeprefix('Actor_')}"


def _joined(readout, manifest, corpora) -> pd.DataFrame:
    rows = readout.rows.assign(relpath=[str(Path(p).relative_to(corpora))
                                        for p in readout.rows["path"]])
    return rows.merge(manifest, on="relpath", how="outer", suffixes=("", "_m"), indicator=True)


@pytest.mark.parametrize("name", sorted(LABELS))
def test_real_reader_agrees_with_manifest(name, readouts, manifest, corpora):
    readout = readouts[name]
    expected = manifest[manifest["corpus"] == name]
    assert readout.skipped.empty, readout.skipped.head()
    assert len(readout.rows) == len(expected)
    joined = _joined(readout, manifest[manifest["corpus"] == name], corpora)
    assert (joined["_merge"] == "both").all(), joined.loc[joined["_merge"] != "both", "relpath"]
    # Speakers: reader ids are the manifest's (Actor_NN -> NN), prefixed with the corpus name.
    assert (joined["speaker"] == joined["speaker_m"].map(lambda s: reader_speaker(name, s))).all()
    assert (joined["original_label"] == joined["emotion_m"]).all()
    speakers = Counter(readout.rows["speaker"])
    assert speakers == Counter(reader_speaker(name, s) for s in expected["speaker"])
    assert Counter(readout.rows["original_label"]) == Counter(expected["emotion"])


@pytest.mark.parametrize("name", sorted(LABELS))
def test_real_labels_are_harmonised(name, readouts, manifest, corpora):
    joined = _joined(readouts[name], manifest[manifest["corpus"] == name], corpora)
    want = joined["emotion_m"].map(LABELS[name]).replace("calm", "neutral")  # default policy
    assert (joined["emotion"] == want).all()


def test_real_counts_match_the_data_card(readouts):
    ravdess, tess, savee = (readouts[n].rows for n in ("ravdess", "tess", "savee"))
    assert len(ravdess) == 1200 and ravdess["speaker"].nunique() == 20
    assert set(ravdess.groupby("speaker").size()) == {60}
    assert Counter(tess["emotion"]) == {e: 400 for e in TESS.values()}
    assert Counter(tess["speaker"]) == {"tess_OAF": 1400, "tess_YAF": 1400}
    assert Counter(savee["original_label"]) == {**{c: 45 for c in SAVEE}, "n": 90}
    assert Counter(savee["emotion"])["angry"] == 45  # a = anger, not happiness
    assert Counter(savee["emotion"])["happy"] == 45
    # RAVDESS gender: odd actors male, even female.
    genders = ravdess.groupby("actor")["gender"].first()
    assert all((g == "male") == (a % 2 == 1) for a, g in genders.items())


def test_real_readers_note_the_missing_speakers(readouts):
    assert any("ravdess_21" in n and "ravdess_24" in n for n in readouts["ravdess"].notes)
    assert any("savee_KL" in n for n in readouts["savee"].notes)
    assert not any("not present" in n for n in readouts["tess"].notes)


def test_real_misspelt_tess_speaker_is_oaf(readouts):
    rows = readouts["tess"].rows
    row = rows[rows["path"].str.endswith("OA_bite_neutral.flac")]
    assert len(row) == 1
    assert row["speaker"].item() == "tess_OAF"
    assert row["emotion"].item() == "neutral"
    assert "OA" in row["note"].item()


def test_real_calm_policies(corpora):
    default = read_corpus("ravdess", corpora / "ravdess")
    keep = read_corpus("ravdess", corpora / "ravdess", calm="keep")
    drop = read_corpus("ravdess", corpora / "ravdess", calm="drop")
    assert Counter(default.rows["emotion"])["neutral"] == 240
    assert "calm" not in set(default.rows["emotion"])
    assert Counter(keep.rows["emotion"])["calm"] == 160
    assert Counter(keep.rows["emotion"])["neutral"] == 80
    assert len(drop.rows) == 1040 and "calm" not in set(drop.rows["emotion"])
    assert len(drop.skipped) == 160
    assert drop.skipped["reason"].str.contains("calm").all()
    assert set(drop.rows["path"]) | set(drop.skipped["path"]) == set(keep.rows["path"])
    with pytest.raises(ValueError, match="calm"):
        read_corpus("ravdess", corpora / "ravdess", calm="sometimes")


def test_real_read_corpora_concatenates(corpora):
    rows, skipped, notes = read_corpora([f"{n}={corpora / n}" for n in ("ravdess", "savee")])
    assert len(rows) == 1560 and skipped.empty
    assert rows["path"].is_unique
    # Integer fields survive the concatenation as integers (missing for the other corpus).
    assert str(rows["actor"].dtype) == "Int64" and rows["actor"].max() == 20
    assert str(rows["sentence"].dtype) == "Int64"


# --- generated trees ---------------------------------------------------------------------------

def make(root: Path, *relpaths: str) -> list[Path]:
    """A few ms of noise per file: the readers only parse names, but the files are real audio."""
    rng = np.random.default_rng(0)
    paths = []
    for rel in relpaths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = "FLAC" if path.suffix == ".flac" else "WAV"
        sf.write(path, (rng.standard_normal(80) * 0.01).astype(np.float32), 16000, format=fmt)
        paths.append(path)
    return paths


def accounted_for(readout, root: Path) -> None:
    """Every audio-looking file is either a row or a skip with a reason: nothing is dropped."""
    files = {str(p.absolute()) for p in root.rglob("*") if p.suffix in (".wav", ".flac")}
    rows, skipped = set(readout.rows["path"]), set(readout.skipped["path"])
    assert rows | skipped == files
    assert not rows & skipped
    assert readout.skipped["reason"].str.len().gt(5).all()


def reasons(readout) -> dict[str, str]:
    return {Path(p).name: r for p, r in zip(readout.skipped["path"], readout.skipped["reason"])}


def test_cremad_names_and_demographics(tmp_path):
    root = tmp_path / "CREMA-D"
    make(root, "AudioWAV/1001_DFA_ANG_XX.wav", "AudioWAV/1002_IEO_HAP_HI.wav",
         "AudioWAV/1091_TSI_SAD_LO.wav", "AudioWAV/1001_DFA_XYZ_XX.wav",
         "AudioWAV/0999_DFA_ANG_XX.wav", "AudioWAV/1001_ABC_ANG_XX.wav", "AudioWAV/readme.wav")
    (root / "VideoDemographics.csv").write_text(
        "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
        "1002,21,Female,Caucasian,Not Hispanic\n")
    readout = read_corpus("crema-d", root)
    rows = readout.rows.set_index(readout.rows["path"].map(lambda p: Path(p).stem))
    assert set(rows.index) == {"1001_DFA_ANG_XX", "1002_IEO_HAP_HI", "1091_TSI_SAD_LO"}
    assert rows.loc["1001_DFA_ANG_XX", ["speaker", "gender", "emotion", "level"]].tolist() == [
        "cremad_1001", "male", "angry", "unspecified"]
    assert rows.loc["1002_IEO_HAP_HI", ["gender", "emotion", "level"]].tolist() == [
        "female", "happy", "high"]
    assert rows.loc["1091_TSI_SAD_LO", "gender"] == "unknown"  # not in the demographics file
    why = reasons(readout)
    assert "emotion code XYZ" in why["1001_DFA_XYZ_XX.wav"]
    assert "actor 0999" in why["0999_DFA_ANG_XX.wav"]
    assert "sentence code ABC" in why["1001_ABC_ANG_XX.wav"]
    assert "1001_DFA_ANG_XX" in why["readme.wav"]
    accounted_for(readout, root)


def test_ravdess_kaggle_layout(tmp_path):
    root = tmp_path / "ravdess"
    make(root, "audio_speech_actors_01-24/Actor_01/03-01-05-01-01-01-01.wav",
         "audio_speech_actors_01-24/Actor_02/03-01-02-02-01-02-02.flac",
         "Actor_01/03-01-05-01-01-01-01.wav",  # Kaggle zips carry the actors twice
         "Actor_01/03-01-05-01-01-01-03.wav",  # actor 03 in Actor_01/
         "Actor_01/03-02-05-01-01-01-01.wav",  # song
         "Actor_01/03-01-01-02-01-01-01.wav",  # strong neutral does not exist
         "Actor_01/take1.wav",
         "__MACOSX/Actor_01/._03-01-05-01-01-01-01.wav")
    readout = read_corpus("ravdess", root, calm="keep")
    assert sorted(readout.rows["emotion"]) == ["angry", "calm"]
    row = readout.rows[readout.rows["emotion"] == "calm"].iloc[0]
    assert (row["speaker"], row["gender"], row["intensity"]) == ("ravdess_02", "female", "strong")
    why = readout.skipped.assign(name=readout.skipped["path"].map(lambda p: Path(p).name))
    dup = why.loc[why["name"] == "03-01-05-01-01-01-01.wav", "reason"]
    assert len(dup) == 1 and dup.item().startswith("duplicate of")
    assert "macOS" in why.loc[why["name"] == "._03-01-05-01-01-01-01.wav", "reason"].item()
    by_name = reasons(readout)
    assert "folder is Actor_01" in by_name["03-01-05-01-01-01-03.wav"]
    assert "song" in by_name["03-02-05-01-01-01-01.wav"]
    assert "neutral with strong" in by_name["03-01-01-02-01-01-01.wav"]
    assert "MM-VV-EE-II-SS-RR-AA" in by_name["take1.wav"]
    accounted_for(readout, root)


def test_tess_kaggle_layout_with_nested_copy(tmp_path):
    root = tmp_path / "tess"
    top = "TESS Toronto emotional speech set data"
    make(root, f"{top}/OAF_angry/OAF_back_angry.wav", f"{top}/OAF_Fear/OAF_food_fear.wav",
         f"{top}/YAF_pleasant_surprised/YAF_dog_ps.wav", f"{top}/OAF_neutral/OA_bite_neutral.wav",
         f"{top}/YAF_sad/YAF_dog_sad.flac",
         f"tess toronto emotional speech set data/{top}/OAF_angry/OAF_back_angry.wav",
         f"{top}/OAF_angry/OAF_back_bored.wav", f"{top}/OAF_angry/notes.wav",
         f"__MACOSX/{top}/OAF_angry/._OAF_back_angry.wav")
    readout = read_corpus("tess", root)
    rows = readout.rows.set_index(readout.rows["path"].map(lambda p: Path(p).stem))
    assert rows.loc["YAF_dog_ps", "emotion"] == "surprised"
    assert rows.loc["OAF_food_fear", "emotion"] == "fearful"
    assert rows.loc["OA_bite_neutral", "speaker"] == "tess_OAF"
    assert rows.loc["YAF_dog_sad", "speaker"] == "tess_YAF"
    assert len(rows) == 5
    skipped = readout.skipped["reason"]
    assert skipped.str.startswith("duplicate of").sum() == 1
    assert skipped.str.contains("macOS").sum() == 1
    by_name = reasons(readout)
    assert "'bored'" in by_name["OAF_back_bored.wav"]
    assert "<SPEAKER>_<word>_<emotion>" in by_name["notes.wav"]
    accounted_for(readout, root)


def test_savee_single_folder_and_per_speaker_layouts(tmp_path):
    root = tmp_path / "savee"
    make(root, "ALL/DC_a01.wav", "ALL/JK_su15.flac", "ALL/JE_n30.wav",
         "AudioData/DC/a01.wav",  # the same take as ALL/DC_a01
         "AudioData/JE/sa03.wav", "AudioData/JE/h01.flac",
         "ALL/XX_a01.wav", "ALL/DC_x01.wav", "ALL/a01.wav",
         "__MACOSX/ALL/._DC_a01.wav", "ALL/._DC_h01.wav")
    readout = read_corpus("savee", root)
    rows = readout.rows.set_index(readout.rows["path"].map(
        lambda p: "/".join(Path(p).parts[-2:])))
    assert rows.loc["ALL/DC_a01.wav", ["speaker", "emotion"]].tolist() == ["savee_DC", "angry"]
    assert rows.loc["ALL/JK_su15.flac", "emotion"] == "surprised"
    assert rows.loc["ALL/JE_n30.wav", "emotion"] == "neutral"
    assert rows.loc["JE/sa03.wav", ["speaker", "emotion"]].tolist() == ["savee_JE", "sad"]
    assert rows.loc["JE/h01.flac", "emotion"] == "happy"
    assert len(rows) == 5
    skipped = readout.skipped.assign(rel=readout.skipped["path"].map(
        lambda p: "/".join(Path(p).parts[-2:])))
    why = dict(zip(skipped["rel"], skipped["reason"]))
    assert why["DC/a01.wav"].startswith("duplicate of") and "DC_a01.wav" in why["DC/a01.wav"]
    assert "'XX'" in why["ALL/XX_a01.wav"]
    assert "a/d/f/h/n/sa/su" in why["ALL/DC_x01.wav"]
    assert "'ALL'" in why["ALL/a01.wav"]  # no speaker in the name, and ALL is not one
    assert "macOS" in why["ALL/._DC_a01.wav"] and "macOS" in why["ALL/._DC_h01.wav"]
    accounted_for(readout, root)


def test_folder_reader_emotion_folders(tmp_path):
    root = tmp_path / "mine"
    make(root, "angry/a.wav", "Happiness/b.wav", "sad/c.flac", "misc/d.wav")
    readout = read_corpus("mine", root)
    assert sorted(readout.rows["emotion"]) == ["angry", "happy", "sad"]
    assert set(readout.rows["speaker"]) == {"mine_unknown"}
    assert any("cannot be split" in n for n in readout.notes)
    assert "emotion name" in reasons(readout)["d.wav"]
    accounted_for(readout, root)


def test_folder_reader_speaker_folders(tmp_path):
    root = tmp_path / "mine"
    make(root, "spk1/sad/x.wav", "spk1/fear/y.wav", "spk2/calm/z.wav", "spk2/notes/w.wav")
    readout = read_corpus("Mine", root, calm="keep")
    got = {Path(p).name: (s, e) for p, s, e in
           readout.rows[["path", "speaker", "emotion"]].itertuples(index=False)}
    assert got == {"x.wav": ("mine_spk1", "sad"), "y.wav": ("mine_spk1", "fearful"),
                   "z.wav": ("mine_spk2", "calm")}
    assert not any("cannot be split" in n for n in readout.notes)
    accounted_for(readout, root)


def test_folder_reader_speaker_pattern(tmp_path):
    root = tmp_path / "mine"
    make(root, "angry/s1_a.wav", "happy/s2_b.wav", "angry/nospeaker.wav")
    readout = read_corpus("mine", root, speaker_pattern=r"(?P<speaker>[^_]+)_")
    assert sorted(readout.rows["speaker"]) == ["mine_s1", "mine_s2"]
    assert "speaker pattern" in reasons(readout)["nospeaker.wav"]
    accounted_for(readout, root)
    with pytest.raises(ValueError, match="named group"):
        read_corpus("mine", root, speaker_pattern=r"([^_]+)_")


def test_bad_corpus_arguments(tmp_path):
    with pytest.raises(ValueError, match="NAME=DIR"):
        parse_corpus_arg("ravdess")
    assert parse_corpus_arg("CREMA-D=/x") == ("cremad", "/x")
    with pytest.raises(CorpusError, match="does not exist"):
        read_corpus("ravdess", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no audio files"):
        read_corpus("tess", tmp_path / "empty")
    make(tmp_path / "a", "angry/x.wav")
    with pytest.raises(CorpusError, match="twice"):
        read_corpora([f"a={tmp_path / 'a'}", f"a={tmp_path / 'a'}"])
