"""The TFRecord set and its build (issue 4): round trip, schema on read, interrupted builds,
idempotent re-runs, CLI errors, skipped files and speaker-disjoint splits.

All of it runs on small corpora copied into tmp_path (see conftest.py): a few seconds per build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from conftest import BAD_FILES, REPO, corpus_args, synthetic_tone
from pipelines.records.build import build, main
from pipelines.records.tfrecord import (
    SCHEMA_VERSION, SPLITS, SchemaError, dequantize, open_set, quantize,
)

FAST = dict(workers=2, progress=False)
RAVDESS_TWO = ("03-01-01-01-01-01-{a}", "03-01-05-01-01-01-{a}")  # neutral, angry


def read_examples(folder) -> dict[str, dict]:
    """Every example of a set, by id, with the split its shard belongs to."""
    import tensorflow as tf

    from pipelines.records.tfrecord import parse_example

    tfset = open_set(folder)
    examples = {}
    for split in SPLITS:
        for path in tfset.files(split):
            for raw in tf.data.TFRecordDataset(path):
                ex = parse_example(raw)
                item = {k: (v.numpy().decode() if v.dtype == tf.string else v.numpy())
                        for k, v in ex.items()}
                item["shard_split"] = split
                item["shard"] = Path(path).name
                examples[item["id"]] = item
    return examples


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """(inode, mtime_ns, sha256) of every file below folder: to show nothing was touched."""
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns,
                                         hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(out: Path) -> list[str]:
    """Hidden temporary or old folders a build leaves beside `out`."""
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*"))


# ---------------------------------------------------------------- round trip


def test_round_trip_waveforms_and_labels(built_set, small_corpus):
    tfset = open_set(built_set)
    manifest = tfset.manifest().set_index("id")
    examples = read_examples(built_set)
    assert sorted(examples) == sorted(manifest.index)
    assert len(examples) == tfset.schema["total_examples"] == 33
    for clip_id, ex in examples.items():
        row = manifest.loc[clip_id]
        source, sr = sf.read(row["path"], dtype="float32")
        assert sr == 16000
        wave = dequantize(ex["pcm"].astype("<i2").tobytes())
        assert ex["length"] == len(wave) == len(source), clip_id
        # 16-bit sources come back within one step of the int16 grid
        np.testing.assert_allclose(wave, source, rtol=0, atol=1.01 / 32767, err_msg=clip_id)
        assert tfset.labels[ex["label"]] == ex["emotion"] == row["emotion"]
        assert ex["label"] == row["label"]
        for key in ("speaker", "corpus", "gender", "path", "split"):
            assert ex[key] == str(row[key]), (clip_id, key)
        assert ex["split"] == ex["shard_split"] and ex["shard"] == row["shard"]
        assert ex["duration"] == pytest.approx(len(source) / 16000, abs=1e-4)


def test_round_trip_of_a_generated_wav_is_the_int16_quantisation(built_set, small_corpus):
    ex = read_examples(built_set)["savee/JK_h01"]
    written = synthetic_tone(1.5, seed=1)
    on_disk = sf.read(Path(small_corpus["savee"]) / "JK_h01.wav", dtype="float32")[0]
    assert ex["emotion"] == "happy" and ex["speaker"] == "savee_JK"
    assert ex["pcm"].tobytes() == quantize(on_disk)
    # libsndfile writes float * 32767 and reads int / 32768: two roundings, at most 2 steps
    np.testing.assert_allclose(dequantize(ex["pcm"].tobytes()), written, atol=2 / 32767)


def test_labels_follow_the_canonical_order(built_set):
    tfset = open_set(built_set)
    assert tfset.labels == ["neutral", "happy", "sad", "angry"]
    assert tfset.schema["calm"] == "neutral"


# ---------------------------------------------------------------- schema checked on read


@pytest.fixture
def set_copy(built_set, tmp_path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(built_set, copy)
    return copy


def _edit_schema(folder: Path, **changes) -> None:
    schema = json.loads((folder / "schema.json").read_text())
    schema.update(changes)
    (folder / "schema.json").write_text(json.dumps(schema))


def test_wrong_schema_version_is_a_clear_error(set_copy):
    from pipelines.records.dataset import make_dataset

    _edit_schema(set_copy, schema_version=SCHEMA_VERSION + 1)
    message = rf"schema version {SCHEMA_VERSION + 1}, but this code reads version " \
              rf"{SCHEMA_VERSION}; rebuild with python -m pipelines.build --force"
    with pytest.raises(SchemaError, match=message):
        open_set(set_copy)
    with pytest.raises(SchemaError, match="schema version"):
        make_dataset(set_copy, "train")


@pytest.mark.parametrize("damage, message", [
    ("no_schema", "no schema.json, so not a complete TFRecord set"),
    ("bad_json", "schema.json: not valid JSON"),
    ("no_version", "schema version None"),
    ("wrong_kind", "kind 'features' is not a waveform set"),
    ("short_shard", "shard missing or not the size schema.json records"),
    ("missing_shard", "shard missing or not the size schema.json records"),
    ("not_a_folder", "no such TFRecord folder"),
])
def test_damaged_sets_are_refused_with_one_line(set_copy, damage, message):
    schema = json.loads((set_copy / "schema.json").read_text())
    shard = set_copy / schema["shards"][0]["file"]
    if damage == "no_schema":
        (set_copy / "schema.json").unlink()
    elif damage == "bad_json":
        (set_copy / "schema.json").write_text("{ not json")
    elif damage == "no_version":
        schema.pop("schema_version")
        (set_copy / "schema.json").write_text(json.dumps(schema))
    elif damage == "wrong_kind":
        _edit_schema(set_copy, kind="features")
    elif damage == "short_shard":
        shard.write_bytes(shard.read_bytes()[:-100])
    elif damage == "missing_shard":
        shard.unlink()
    elif damage == "not_a_folder":
        shutil.rmtree(set_copy)
    with pytest.raises(SchemaError, match=message) as info:
        open_set(set_copy)
    assert "\n" not in str(info.value)


def test_unknown_split_is_a_clear_error(built_set):
    with pytest.raises(SchemaError, match="no split 'dev'; it has train, validation, test"):
        open_set(built_set).files("dev")


# ---------------------------------------------------------------- the CLI


def run_cli(*args, timeout=60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pipelines.build", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


CLI_ERRORS = [
    ("ravdess", "error: --corpus takes NAME=DIR (e.g. ravdess=/data/ravdess), got 'ravdess'"),
    ("=/data/x", "error: --corpus takes NAME=DIR"),
    ("ravdess={missing}", "error: {missing}: ravdess folder does not exist"),
    ("ravdess={file}", "error: {file}: ravdess path is not a folder"),
    ("happy={empty}", "error: {empty}: no audio files found for happy"),
]


def _error_paths(tmp_path):
    paths = {"missing": tmp_path / "nowhere", "file": tmp_path / "a.txt",
             "empty": tmp_path / "empty"}
    paths["file"].write_text("x")
    paths["empty"].mkdir()
    return paths


@pytest.mark.parametrize("corpus, message", CLI_ERRORS[::2])
def test_cli_errors_are_one_line_with_exit_code_2(corpus, message, tmp_path):
    """As a user sees them: a process, its exit code and its stderr."""
    paths = _error_paths(tmp_path)
    proc = run_cli("--corpus", corpus.format(**paths), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.startswith(message.format(**paths)) and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("corpus, message", CLI_ERRORS)
def test_cli_main_errors_are_one_line_with_exit_code_2(corpus, message, tmp_path, capsys):
    paths = _error_paths(tmp_path)
    assert main(["--corpus", corpus.format(**paths), "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(message.format(**paths)) and captured.err.count("\n") == 1
    assert captured.out == "" and not (tmp_path / "out").exists()


def test_cli_builds_and_reports(corpus_factory, tmp_path, capsys):
    folders = corpus_factory(actors=2, picks=RAVDESS_TWO, savee=False, bad=False)
    out = tmp_path / "cli-set"
    code = main([*sum([["--corpus", a] for a in corpus_args(folders)], []), "--out", str(out),
                 "--quiet", "--workers", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"{out}: 4 clips, 0 skipped (see skipped.csv), labels: neutral, angry" in captured.out
    assert "     train:     4 clips,   2 speakers" in captured.out
    assert open_set(out).schema["total_examples"] == 4


def test_boredom_policy_is_recorded_and_changes_the_fingerprint(tmp_path, capsys):
    corpus = tmp_path / "emodb" / "wav"
    corpus.mkdir(parents=True)
    for i, speaker in enumerate(("03", "08", "09", "10")):  # Emo-DB anger, neutral, boredom
        for j, letter in enumerate("WNL"):
            sf.write(corpus / f"{speaker}a01{letter}a.wav", synthetic_tone(1.0, seed=3 * i + j),
                     16000, subtype="PCM_16")
    out, args = tmp_path / "set", ["--corpus", f"emodb={corpus.parent}", "--quiet"]
    schema = build([f"emodb={corpus.parent}"], out, **FAST)
    assert schema["boredom"] == "drop" and "boredom" not in schema["options"]  # old fingerprints
    assert schema["total_examples"] == 8 and schema["labels"] == ["neutral", "angry"]
    reasons = pd.read_csv(out / "skipped.csv")["reason"]
    assert len(reasons) == 4 and reasons.str.startswith("excluded: boredom").all()
    assert main([*args, "--out", str(out), "--boredom", "neutral"]) == 2  # other options
    assert "other inputs or options" in capsys.readouterr().err
    assert main([*args, "--out", str(out), "--boredom", "neutral", "--force"]) == 0
    schema = open_set(out).schema
    assert schema["boredom"] == "neutral" and schema["options"]["boredom"] == "neutral"
    assert schema["total_examples"] == 12 and schema["skipped"] == 0
    assert schema["splits"]["train"]["emotions"]["neutral"] >= 2


# ---------------------------------------------------------------- skipped files


def test_bad_files_are_skipped_with_reasons_and_do_not_stop_the_build(built_set, small_corpus):
    tfset = open_set(built_set)
    skipped = pd.read_csv(built_set / "skipped.csv", dtype=str, keep_default_na=False)
    assert list(skipped.columns) == ["path", "corpus", "reason"]
    root = Path(small_corpus["ravdess"]).parent
    reasons = dict(zip(skipped["path"], skipped["reason"]))
    assert sorted(reasons) == sorted(str(root / rel) for rel, _, _ in BAD_FILES)
    for rel, _, why in BAD_FILES:
        assert why in reasons[str(root / rel)], (rel, reasons[str(root / rel)])
        assert "\n" not in reasons[str(root / rel)]
    assert tfset.schema["skipped"] == len(BAD_FILES)
    assert not set(tfset.manifest()["path"]) & set(reasons)


# ---------------------------------------------------------------- speaker-disjoint splits


def test_splits_are_speaker_disjoint_and_written_down(built_set):
    tfset = open_set(built_set)
    manifest, schema = tfset.manifest(), tfset.schema
    assert schema["split_method"] == {"mode": "speaker", "validation": 0.1, "test": 0.1,
                                      "seed": 0, "speaker_independent": True}
    assert (manifest.groupby("speaker")["split"].nunique() == 1).all()
    sides = {split: set(schema["splits"][split]["speakers"]) for split in SPLITS}
    for split in SPLITS:
        rows = manifest[manifest["split"] == split]
        assert sides[split] == set(rows["speaker"])
        assert schema["splits"][split]["examples"] == len(rows) == tfset.examples(split)
        assert sum(tfset.class_counts(split).values()) == len(rows)
    assert not sides["train"] & sides["validation"]
    assert not sides["train"] & sides["test"]
    assert not sides["validation"] & sides["test"]
    # 10 RAVDESS actors: one in test, one in validation, one man and one woman; SAVEE's 3
    # speakers are too few to hold any out, so they all train
    assert len(sides["test"]) == len(sides["validation"]) == 1
    held_out = {int(s[-2:]) % 2 for s in sides["test"] | sides["validation"]}
    assert held_out == {0, 1}
    assert {"savee_DC", "savee_JE", "savee_JK"} <= sides["train"]
    # every shard holds one split only, and the manifest says which shard has each clip
    for shard in schema["shards"]:
        assert shard["file"].startswith(shard["split"] + "-")
        in_shard = manifest[manifest["shard"] == shard["file"]]
        assert len(in_shard) == shard["examples"] and set(in_shard["split"]) == {shard["split"]}
    assert len(tfset.files("train")) >= 2  # 0.5 MB shards



def test_speakers_given_by_id_on_the_command_line(tmp_path, capsys):
    """--test-speakers / --validation-speakers pin those sides (the schema records them); an
    unknown id is a one-line error that writes nothing."""
    from conftest import DEMO

    out = tmp_path / "pinned"
    assert main(["--corpus", f"ravdess={DEMO}", "--out", str(out), "--quiet", "--workers", "1",
                 "--test-speakers", "ravdess_02,ravdess_05",
                 "--validation-speakers", "ravdess_07"]) == 0
    schema = json.loads((out / "schema.json").read_text())
    assert schema["splits"]["test"]["speakers"] == ["ravdess_02", "ravdess_05"]
    assert schema["splits"]["validation"]["speakers"] == ["ravdess_07"]
    assert schema["split_method"]["test_speakers"] == ["ravdess_02", "ravdess_05"]
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert main(["--corpus", f"ravdess={DEMO}", "--out", str(bad), "--quiet", "--workers", "1",
                 "--test-speakers", "ravdess_42"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no such speaker(s): ravdess_42") and "\n" not in err
    assert not bad.exists()
