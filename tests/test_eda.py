"""The EDA command: outputs on a generated folder of good and broken files, usage errors, and the
measurements on real files against MANIFEST.csv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from pipelines.exploration.eda import main

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = ("manifest.csv", "skipped.csv", "sample_rates.csv", "summary.md", "duration_hist.png",
           "label_counts.png", "sample_rates.png", "box_duration.png", "box_rms.png")


def noise(rate: int, seconds: float, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(rate)
    return (0.1 * rng.standard_normal((int(rate * seconds), channels))).astype(np.float32)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """A labelled folder (<speaker>/<emotion>/) with 4 usable files and 7 that must be skipped."""
    root = tmp_path_factory.mktemp("mixed") / "data"
    for rel in ("spk1/angry", "spk1/happy", "spk1/sad", "spk1/fear", "spk1/misc", "spk2/sad",
                "spk2/neutral", "spk2/angry", "__MACOSX/spk1/angry"):
        (root / rel).mkdir(parents=True)
    sf.write(root / "spk1/angry/good48k.wav", noise(48000, 0.5), 48000)
    sf.write(root / "spk1/happy/stereo44k.wav", noise(44100, 0.6, 2), 44100, subtype="PCM_24")
    sf.write(root / "spk2/sad/good22k.flac", noise(22050, 0.4), 22050)
    sf.write(root / "spk2/neutral/silent.wav", np.zeros(8000), 16000)
    (root / "spk2/angry/empty.wav").write_bytes(b"")
    (root / "spk2/angry/text.wav").write_text("not audio at all\n" * 50)
    full = (root / "spk1/angry/good48k.wav").read_bytes()
    (root / "spk1/sad/truncated.wav").write_bytes(full[: len(full) // 3])
    sf.write(root / "spk1/fear/short.wav", noise(16000, 0.1), 16000)
    nan = noise(16000, 0.5)
    nan[10] = np.nan
    sf.write(root / "spk1/fear/nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(root / "spk1/misc/nolabel.wav", noise(16000, 0.5), 16000)
    (root / "__MACOSX/spk1/angry/._good48k.wav").write_bytes(b"\x00\x05\x16\x07" * 20)
    return root


@pytest.fixture(scope="module")
def mixed_run(mixed, tmp_path_factory):
    out = tmp_path_factory.mktemp("eda") / "out"
    code = main(["--corpus", f"mine={mixed}", "--out", str(out), "--workers", "2",
                 "--no-progress"])
    return code, out


def test_eda_writes_every_output(mixed_run):
    code, out = mixed_run
    assert code == 0
    for name in OUTPUTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]  # no half-written files
    import matplotlib.image

    for name in OUTPUTS:
        if name.endswith(".png"):
            height, width = matplotlib.image.imread(out / name).shape[:2]
            assert width > 400 and height > 250, name


def test_eda_manifest_measures_the_originals(mixed_run):
    manifest = pd.read_csv(mixed_run[1] / "manifest.csv").set_index("path")
    manifest.index = [Path(p).name for p in manifest.index]
    assert sorted(manifest.index) == ["good22k.flac", "good48k.wav", "silent.wav", "stereo44k.wav"]
    assert {"speaker", "emotion", "duration_s", "orig_sample_rate", "channels", "format",
            "subtype", "peak", "rms_dbfs", "dc_offset", "silent"} <= set(manifest.columns)
    got = manifest.loc["stereo44k.wav"]
    assert (got["orig_sample_rate"], got["channels"], got["subtype"]) == (44100, 2, "PCM_24")
    assert got["duration_s"] == pytest.approx(0.6, abs=1e-4)
    assert got["emotion"] == "happy" and got["speaker"] == "mine_spk1"
    assert manifest.loc["good22k.flac", "format"] == "FLAC"
    assert manifest.loc["good48k.wav", "rms_dbfs"] == pytest.approx(-20, abs=0.5)
    assert manifest["silent"].to_dict() == {"good22k.flac": False, "good48k.wav": False,
                                            "silent.wav": True, "stereo44k.wav": False}
    rates = pd.read_csv(mixed_run[1] / "sample_rates.csv")
    assert sorted(rates["orig_sample_rate"]) == [16000, 22050, 44100, 48000]
    assert rates["files"].sum() == 4


def test_eda_lists_bad_files_with_reasons(mixed_run):
    skipped = pd.read_csv(mixed_run[1] / "skipped.csv")
    assert list(skipped.columns) == ["path", "corpus", "reason"]
    why = {Path(p).name: r for p, r in zip(skipped["path"], skipped["reason"])}
    assert set(why) == {"empty.wav", "text.wav", "truncated.wav", "short.wav", "nan.wav",
                        "nolabel.wav", "._good48k.wav"}
    assert "empty file" in why["empty.wav"]
    assert "not an audio file" in why["text.wav"]
    assert "truncated" in why["truncated.wav"]
    assert "too short" in why["short.wav"]
    assert "non-finite" in why["nan.wav"]
    assert "emotion name" in why["nolabel.wav"]
    assert "macOS" in why["._good48k.wav"]
    summary = (mixed_run[1] / "summary.md").read_text()
    assert "7 files skipped" in summary and "silent files (peak below -70 dBFS): 1" in summary
    assert "mine: NOT consistent" in summary
    for picture in ("duration_hist.png", "label_counts.png", "box_rms.png"):
        assert f"]({picture})" in summary


def test_eda_can_run_in_one_process(mixed, tmp_path):
    assert main(["--corpus", f"mine={mixed}", "--out", str(tmp_path), "--workers", "1",
                 "--no-progress", "--calm", "drop"]) == 0
    assert len(pd.read_csv(tmp_path / "manifest.csv")) == 4


def test_eda_boredom_policy_is_applied_and_written_down(tmp_path):
    corpus = tmp_path / "emodb" / "wav"
    corpus.mkdir(parents=True)
    for name in ("03a01La.wav", "03a01Wa.wav"):  # Emo-DB boredom and anger
        sf.write(corpus / name, noise(16000, 0.5), 16000)
    for policy, emotions, skipped in (("drop", ["angry"], 1), ("neutral", ["angry", "neutral"], 0)):
        out = tmp_path / policy
        assert main(["--corpus", f"emodb={corpus.parent}", "--out", str(out), "--workers", "1",
                     "--no-progress", "--boredom", policy]) == 0
        assert sorted(pd.read_csv(out / "manifest.csv")["emotion"]) == emotions
        reasons = pd.read_csv(out / "skipped.csv")["reason"]
        assert len(reasons) == skipped and reasons.str.startswith("excluded: boredom").all()
        assert f"Emo-DB boredom policy: `{policy}`" in (out / "summary.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--corpus", "ravdess"], "NAME=DIR"),
    (["--corpus", "ravdess=/no/such/folder"], "does not exist"),
    (["--corpus", "mine=MIXED", "--workers", "0"], "--workers"),
])
def test_eda_usage_errors(argv, message, mixed, tmp_path, capsys):
    argv = [a.replace("MIXED", str(mixed)) for a in argv]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_eda_out_must_be_a_folder(mixed, tmp_path, capsys):
    (tmp_path / "out").write_text("a file")
    assert main(["--corpus", f"mine={mixed}", "--out", str(tmp_path / "out")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert (tmp_path / "out").read_text() == "a file"


def test_eda_bad_option_values_exit_2(tmp_path, capsys):
    for argv in (["--out", str(tmp_path)], ["--corpus", "a=b", "--out", str(tmp_path),
                                            "--calm", "sometimes"],
                 ["--corpus", "a=b", "--out", str(tmp_path), "--boredom", "keep"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error:" in err


def test_eda_command_line(tmp_path):
    """As users run it: `python -m pipelines.eda`, exit codes and stderr."""
    def run(*args):
        return subprocess.run([sys.executable, "-m", "pipelines.eda", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=120)

    bad = run("--corpus", "ravdess", "--out", str(tmp_path))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.count("\n") == 1 and "NAME=DIR" in bad.stderr
    helped = run("--help")
    assert helped.returncode == 0
    for option in ("--corpus", "--out", "--calm", "--boredom", "--workers", "--no-progress"):
        assert option in helped.stdout


# --- real files --------------------------------------------------------------------------------

def test_eda_on_real_files_agrees_with_manifest(corpora, tmp_path):
    """SAVEE's FLACs and the 9 raw originals of RAVDESS and TESS: rates, channels, formats and
    durations as MANIFEST.csv records them."""
    raw = corpora / "raw-samples"
    code = main(["--corpus", f"savee={corpora / 'savee'}", "--corpus", f"tess={raw / 'tess'}",
                 "--corpus", f"ravdess={raw / 'ravdess'}", "--out", str(tmp_path),
                 "--no-progress"])
    assert code == 0
    reference = pd.read_csv(corpora / "MANIFEST.csv", dtype=str).set_index("relpath")
    got = pd.read_csv(tmp_path / "manifest.csv")
    assert len(got) == 360 + 9 and pd.read_csv(tmp_path / "skipped.csv").empty

    flac = got[got["corpus"] == "savee"]
    ref = reference.loc[[str(Path(p).relative_to(corpora)) for p in flac["path"]]]
    assert (flac["orig_sample_rate"] == 16000).all() and (flac["format"] == "FLAC").all()
    assert np.allclose(flac["duration_s"], ref["duration_s"].astype(float), atol=1e-4)
    assert (flac["dc_offset"] > 0.005).all()  # the SAVEE DC offset of the data card

    originals = got[got["corpus"] != "savee"]
    ref = reference.loc[[str(Path(p).relative_to(raw).with_suffix(".flac"))
                         for p in originals["path"]]]
    assert originals["orig_sample_rate"].tolist() == ref["orig_sample_rate"].astype(int).tolist()
    assert originals["channels"].tolist() == ref["orig_channels"].astype(int).tolist()
    assert originals["format"].tolist() == ref["orig_format"].tolist()
    assert originals["subtype"].tolist() == ref["orig_subtype"].tolist()
    assert np.allclose(originals["duration_s"], ref["duration_s"].astype(float), atol=2e-4)
    assert sorted(originals["orig_sample_rate"].unique()) == [24414, 48000, 96000]
    summary = (tmp_path / "summary.md").read_text()
    assert "savee_KL" in summary and "tess: NOT consistent" in summary


@pytest.mark.slow
def test_eda_on_all_corpora(corpora, tmp_path):
    code = main([*(a for n in ("ravdess", "tess", "savee")
                   for a in ("--corpus", f"{n}={corpora / n}")),
                 "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    reference = pd.read_csv(corpora / "MANIFEST.csv", dtype=str).set_index("relpath")
    got = pd.read_csv(tmp_path / "manifest.csv")
    assert len(got) == len(reference) == 4360
    assert pd.read_csv(tmp_path / "skipped.csv").empty
    ref = reference.loc[[str(Path(p).relative_to(corpora)) for p in got["path"]]]
    assert np.allclose(got["duration_s"], ref["duration_s"].astype(float), atol=1e-4)
    assert not got["silent"].any()
    full_scale = got[got["peak"] >= 0.999].groupby("corpus").size().to_dict()
    assert full_scale["ravdess"] == 11 and full_scale["tess"] == 2  # as on the data card
    assert full_scale["savee"] >= 171
