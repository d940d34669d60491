"""Corpus readers added for other languages: Emo-DB (German) and nEMO (Polish), on generated
trees in their original layouts, and nEMO's real copy when ../shared/corpora is there."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from pipelines.corpora import CorpusError, parse_corpus_arg, read_corpora, read_corpus
from test_corpora import accounted_for, make, reasons  # noqa: F401 - shared tree helpers


# --- Emo-DB ------------------------------------------------------------------------------------

# The Emo-DB documentation's tables, written out here so the test does not trust the code's.
EMODB_LETTERS = {"W": "angry", "E": "disgust", "A": "fearful", "F": "happy", "T": "sad",
                 "N": "neutral"}  # L (boredom) has no class
EMODB_SPEAKERS = {"03": ("male", 31), "08": ("female", 34), "09": ("female", 21),
                  "10": ("male", 32), "11": ("male", 26), "12": ("male", 30),
                  "13": ("female", 32), "14": ("female", 35), "15": ("male", 25),
                  "16": ("female", 31)}


def by_stem(readout) -> pd.DataFrame:
    return readout.rows.set_index(readout.rows["path"].map(lambda p: Path(p).stem))


def test_emodb_original_layout(tmp_path):
    root = tmp_path / "emodb"
    make(root, *(f"wav/03a01{letter}a.wav" for letter in EMODB_LETTERS),
         "wav/08b10Wb.wav", "wav/16a07Tc.flac", "wav/09a01La.wav",
         "03a01Wa.wav",            # the same take again, outside wav/
         "wav/04a01Wa.wav",        # no speaker 04
         "wav/03a03Wa.wav",        # no text a03
         "wav/03a01Xa.wav",        # no emotion X
         "wav/erkennung.wav", "__MACOSX/wav/._03a01Wa.wav")
    (root / "erklaerung.txt").write_text("not audio")
    readout = read_corpus("emodb", root)
    rows = by_stem(readout)
    for letter, emotion in EMODB_LETTERS.items():
        assert rows.loc[f"03a01{letter}a", "emotion"] == emotion
        assert rows.loc[f"03a01{letter}a", "original_label"] == letter
    assert rows.loc["08b10Wb", ["speaker", "gender", "age", "sentence", "version"]].tolist() == [
        "emodb_08", "female", 34, "b10", "b"]
    assert rows.loc["16a07Tc", ["speaker", "gender", "age", "emotion"]].tolist() == [
        "emodb_16", "female", 31, "sad"]
    assert len(rows) == 8
    why = reasons(readout)
    assert why["09a01La.wav"].startswith("excluded: boredom")
    assert why["03a01Wa.wav"].startswith("duplicate of")
    assert "speaker 04" in why["04a01Wa.wav"]
    assert "text code a03" in why["03a03Wa.wav"]
    assert "emotion letter X" in why["03a01Xa.wav"]
    assert "03a01Fa" in why["erkennung.wav"]
    assert "macOS" in why["._03a01Wa.wav"]
    accounted_for(readout, root)
    notes = " | ".join(readout.notes)
    assert "boredom (1 files) skipped" in notes and "--boredom neutral" in notes
    # 03, 08 and 16 are here; 09's only clip is boredom, dropped
    assert ("speakers not present: emodb_09, emodb_10, emodb_11, emodb_12, emodb_13, emodb_14, "
            "emodb_15") in notes
    assert "(complete corpus: 535 files)" in notes


def test_emodb_files_directly_in_the_folder_and_boredom_as_neutral(tmp_path):
    root = tmp_path / "berlin"
    make(root, *(f"{s}a02La.wav" for s in EMODB_SPEAKERS), "03a02Na.wav")
    readout = read_corpus("Berlin", root, boredom="neutral")
    assert readout.skipped.empty and len(readout.rows) == 11
    assert set(readout.rows["emotion"]) == {"neutral"}
    assert Counter(readout.rows["original_label"]) == {"L": 10, "N": 1}
    got = readout.rows.groupby("speaker")[["gender", "age"]].first()
    assert {s.removeprefix("emodb_"): (g, a) for s, (g, a) in got.iterrows()} == EMODB_SPEAKERS
    assert not any("not present" in n for n in readout.notes)
    assert any("boredom (10 files) folded into neutral" in n for n in readout.notes)
    with pytest.raises(ValueError, match="boredom must be one of"):
        read_corpus("emodb", root, boredom="keep")


def test_read_corpora_gives_boredom_to_emodb_only(tmp_path):
    make(tmp_path / "e", "wav/03a01La.wav", "wav/03a01Wa.wav")
    make(tmp_path / "r", "Actor_01/03-01-02-01-01-01-01.wav")
    args = [f"emo-db={tmp_path / 'e'}", f"ravdess={tmp_path / 'r'}"]
    rows, skipped, _ = read_corpora(args)
    assert sorted(rows["emotion"]) == ["angry", "neutral"]  # calm folded, boredom dropped
    assert skipped["reason"].str.startswith("excluded: boredom").sum() == 1
    rows, skipped, _ = read_corpora(args, calm="drop", boredom="neutral")
    assert sorted(rows["original_label"]) == ["L", "W"] and len(skipped) == 1
    assert str(rows["age"].dtype) == "Int64" and rows["age"].isna().sum() == 0
    with pytest.raises(ValueError, match="boredom"):
        read_corpora(args, boredom="sometimes")
    assert parse_corpus_arg("Emo-DB=/x") == ("emodb", "/x")
    assert parse_corpus_arg("berlin=/x") == ("emodb", "/x")


# --- nEMO --------------------------------------------------------------------------------------

NEMO_EMOTIONS = {"anger": "angry", "fear": "fearful", "happiness": "happy", "neutral": "neutral",
                 "sadness": "sad", "surprised": "surprised"}
NEMO_HEADER = ("file_id", "emotion", "raw_text", "normalized_text", "speaker_id", "gender", "age")


def write_data_tsv(root: Path, rows: list[tuple[str, ...]], header=NEMO_HEADER) -> Path:
    """data.tsv as distributed: tab-separated, CRLF, speaker_id with leading spaces."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(header)] + ["\t".join(r) for r in rows]
    path = root / "data.tsv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return path


def nemo_row(file_id: str, emotion: str, speaker: str, gender: str = "female",
             age: str = "27", text: str = "Lubię czytać przed snem.") -> tuple[str, ...]:
    return (file_id, emotion, text, text.lower().rstrip("."), f"        {speaker}", gender, age)


def nemo_accounted_for(readout, root: Path) -> None:
    """Every file below samples/ is a row or a skip; no path is both."""
    files = {str(p.absolute()) for p in (root / "samples").rglob("*") if p.is_file()}
    rows, skipped = set(readout.rows["path"]), set(readout.skipped["path"])
    assert files <= rows | skipped and not rows & skipped
    assert readout.skipped["reason"].str.len().gt(5).all()


def test_nemo_reads_data_tsv(tmp_path):
    root = tmp_path / "nemo"
    make(root, "samples/EB0_anger_1.wav",       # the name data.tsv gives
         "samples/EB0_fear_2.flac",             # data.tsv says .wav: matched without extension
         "samples/KS0_happiness_3.flac",        # data.tsv names the .flac
         "samples/WR0_surprised_64.wav",
         "samples/KD0_neutral_5.wav", "samples/KD0_neutral_5.flac",  # two copies of one clip
         "samples/TP0_sadness_6.wav",           # emotion in data.tsv unknown
         "samples/MK0_anger_7.wav",             # data.tsv says fear
         "samples/IC0_neutral_8.wav",           # not in data.tsv
         "samples/._EB0_anger_1.wav")
    write_data_tsv(root, [
        nemo_row("EB0_anger_1.wav", "anger", "EB0"),
        nemo_row("EB0_fear_2.wav", "fear", "EB0"),
        nemo_row("KS0_happiness_3.flac", "happiness", "KS0", "male", "23", "„Ród smoka” to serial."),
        nemo_row("WR0_surprised_64.wav", "Surprised", "WR0", "male", ""),
        nemo_row("KD0_neutral_5.wav", "neutral", "KD0", "female", "28"),
        nemo_row("TP0_sadness_6.wav", "boredom", "TP0", "male", "26"),
        nemo_row("MK0_anger_7.wav", "fear", "MK0", "female", "23"),
        nemo_row("SM0_sadness_9.wav", "sadness", "SM0", "male", "24"),  # no file
        nemo_row("EB0_anger_1.wav", "anger", "EB0"),                      # listed twice
    ])
    readout = read_corpus("nemo", root)
    rows = by_stem(readout)
    assert sorted(rows.index) == ["EB0_anger_1", "EB0_fear_2", "KD0_neutral_5",
                                  "KS0_happiness_3", "WR0_surprised_64"]
    assert Path(rows.loc["EB0_fear_2", "path"]).name == "EB0_fear_2.flac"
    assert Path(rows.loc["KD0_neutral_5", "path"]).name == "KD0_neutral_5.wav"
    for stem, row in rows.iterrows():
        assert row["emotion"] == NEMO_EMOTIONS[row["original_label"]]
        assert row["speaker"] == "nemo_" + stem.split("_")[0]  # leading spaces stripped
        assert row["sentence"] == int(stem.split("_")[-1])
    assert rows.loc["KS0_happiness_3", ["gender", "age", "text"]].tolist() == [
        "male", 23, "„Ród smoka” to serial."]
    assert pd.isna(rows.loc["WR0_surprised_64", "age"])  # empty in data.tsv
    assert rows.loc["WR0_surprised_64", "emotion"] == "surprised"
    why = reasons(readout)
    assert "another copy of KD0_neutral_5.wav" in why["KD0_neutral_5.flac"]
    assert "emotion 'boredom'" in why["TP0_sadness_6.wav"]
    assert "the name says anger but data.tsv says fear" in why["MK0_anger_7.wav"]
    assert why["IC0_neutral_8.wav"] == "not listed in data.tsv"
    assert why["SM0_sadness_9.wav"].startswith("listed in data.tsv but not in samples/")
    assert "macOS" in why["._EB0_anger_1.wav"]
    twice = readout.skipped[readout.skipped["path"].str.endswith("data.tsv:10")]
    assert twice["reason"].item() == "data.tsv line 10 lists EB0_anger_1.wav again (first on line 2)"
    nemo_accounted_for(readout, root)
    notes = " | ".join(readout.notes)
    assert "5 files from 4 of 9 speakers (complete corpus: 4481 files)" in notes
    assert "speakers not present: nemo_IC0, nemo_MK0, nemo_MP0, nemo_SM0, nemo_TP0" in notes
    assert "may be partial: 5 of the 4481 published clips" in notes


def test_nemo_errors_name_the_path(tmp_path):
    root = tmp_path / "nemo"
    make(root, "samples/EB0_anger_1.wav")
    with pytest.raises(CorpusError, match=r"nemo/data.tsv: nemo data.tsv not found"):
        read_corpus("nemo", root)
    write_data_tsv(root, [nemo_row("EB0_anger_1.wav", "anger", "EB0")],
                   header=NEMO_HEADER[:4] + ("speaker",) + NEMO_HEADER[5:])
    with pytest.raises(CorpusError, match=r"data.tsv: no column speaker_id \(nEMO's"):
        read_corpus("nemo", root)
    (root / "data.tsv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CorpusError, match="data.tsv: not a readable tab-separated table"):
        read_corpus("nemo", root)
    write_data_tsv(root, [nemo_row("EB0_anger_1.wav", "anger", "EB0")])
    (root / "samples" / "EB0_anger_1.wav").unlink()
    with pytest.raises(CorpusError, match=r"nemo/samples: no audio files found for nemo"):
        read_corpus("nemo", root)
    (root / "samples").rmdir()
    with pytest.raises(CorpusError, match=r"nemo/samples: nemo samples folder not found"):
        read_corpus("nemo", root)
    with pytest.raises(CorpusError, match="does not exist"):
        read_corpus("nemo", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="calm"):
        read_corpus("nemo", root, calm="sometimes")


@pytest.mark.realdata
def test_real_nemo_copy(corpora):
    root = corpora / "nemo"
    if not (root / "data.tsv").is_file():
        pytest.skip(f"no nEMO copy at {root}")
    readout = read_corpus("nemo", root)
    rows = readout.rows
    assert readout.skipped.empty, readout.skipped.head()
    assert len(rows) == 1494 and rows["speaker"].nunique() == 9
    assert set(rows["emotion"]) == set(NEMO_EMOTIONS.values())
    assert (rows["emotion"] == rows["original_label"].map(NEMO_EMOTIONS)).all()
    table = pd.read_csv(root / "data.tsv", sep="\t", dtype=str)
    assert Counter(rows["original_label"]) == Counter(table["emotion"])
    assert Counter(rows["speaker"]) == Counter("nemo_" + table["speaker_id"].str.strip())
    # gender and age per speaker as data.tsv gives them: 5 male, 4 female actors
    people = rows.groupby("speaker")[["gender", "age"]].agg(lambda s: set(s))
    assert (people["gender"].map(len) == 1).all() and (people["age"].map(len) == 1).all()
    assert Counter(g for (g,) in people["gender"]) == {"male": 5, "female": 4}
    assert all(Path(p).suffix == ".flac" for p in rows["path"])
    assert not any("not present" in n for n in readout.notes)
    assert any("may be partial: 1494 of the 4481" in n for n in readout.notes)
