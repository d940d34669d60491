"""`python -m pipelines.download`: kagglehub's download replaced by a function that returns a
generated Kaggle-like tree (never the network); every error path is one line with exit code 2."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf

from conftest import REPO, subprocess_env
from pipelines.corpora import download
from pipelines.corpora.download import DATASETS, main


def _audio(fmt: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(80, np.float32), 16000, format=fmt)
    return buffer.getvalue()


AUDIO = {".wav": _audio("WAV"), ".flac": _audio("FLAC")}


def write(root: Path, *relpaths: str) -> Path:
    """Tiny real audio files (the readers parse names; the files still decode)."""
    for rel in relpaths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(AUDIO[path.suffix])
    return root


def emodb_names(n: int) -> list[str]:
    """n distinct valid Emo-DB names (speakers x texts x letters x versions)."""
    combos = itertools.product("ab", "WLEAFTN", ("a01", "a02", "a04", "a05", "a07", "b01", "b02",
                                                 "b03", "b09", "b10"),
                               ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16"))
    return [f"{s}{t}{e}{v}.wav" for v, e, t, s in itertools.islice(combos, n)]


@pytest.fixture
def fake_kaggle(monkeypatch):
    """The installed kagglehub, its download replaced: `serve(folder or exception)`."""
    hub = pytest.importorskip("kagglehub")
    calls = []

    def serve(result):
        def dataset_download(handle, *args, **kwargs):
            calls.append(handle)
            if isinstance(result, BaseException):
                raise result
            return str(result)
        monkeypatch.setattr(hub, "dataset_download", dataset_download)
        return calls
    return serve


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(code: int, err: str, *parts: str) -> None:
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("python -m pipelines.download: error: "), err
    for part in parts:
        assert part in err, err


# --- success -----------------------------------------------------------------------------------

def test_complete_emodb_is_linked_and_counted(fake_kaggle, tmp_path, capsys):
    cache = tmp_path / "cache" / "versions" / "1"
    names = emodb_names(535)
    write(cache, *(f"wav/{n}" for n in names), "wav/__MACOSX/._03a01Wa.wav")
    (cache / "erklaerung.txt").write_text("Emo-DB")
    calls = fake_kaggle(cache)
    out = tmp_path / "data" / "emodb"
    code, stdout, err = run(capsys, "emo-db", "--out", str(out))
    assert code == 0 and err == "", err
    assert calls == ["piyushagni5/berlin-database-of-emotional-speech-emodb"]
    assert out.is_symlink() and out.resolve() == (cache / "wav").resolve()
    assert f"linked to {(cache / 'wav').resolve()}" in stdout
    assert "emodb: 535 clips, 10 speakers, 1 skipped (published: 535 clips, 10 speakers" in stdout
    assert "skipped 1: macOS resource fork" in stdout
    # again: the link is already there, nothing changes
    code, stdout, err = run(capsys, "emodb", "--out", str(out))
    assert code == 0 and "link already in place" in stdout


def test_short_ravdess_copy_warns_and_picks_the_nested_folder(fake_kaggle, tmp_path, capsys):
    """The Kaggle RAVDESS zip holds the actors twice: at the top and in audio_speech_actors_01-24/."""
    cache = tmp_path / "cache"
    takes = [f"Actor_{a:02d}/03-01-{e:02d}-02-01-01-{a:02d}.wav" for a in (1, 2) for e in (3, 5)]
    write(cache, *takes, *(f"audio_speech_actors_01-24/{t}" for t in takes))
    fake_kaggle(cache)
    out = tmp_path / "ravdess"
    code, stdout, err = run(capsys, "ravdess", "--out", str(out), "--copy")
    assert code == 0
    assert not out.is_symlink() and sorted(p.name for p in out.iterdir()) == ["Actor_01",
                                                                             "Actor_02"]
    assert f"copied from {(cache / 'audio_speech_actors_01-24').resolve()}" in stdout
    assert "ravdess: 4 clips, 2 speakers, 0 skipped (published: 1440 clips, 24 speakers" in stdout
    assert "ravdess: speakers not present: ravdess_03" in stdout
    assert err == ("warning: ravdess: 4 clips, 1436 fewer than the 1440 of the published corpus "
                   "(see the notes above)\n")
    assert (cache / "audio_speech_actors_01-24" / takes[0]).is_file()  # the cache is left alone
    assert not list(tmp_path.glob(".ravdess.tmp-*"))


@pytest.mark.parametrize("name, handle, relpaths, folder", [
    ("tess", "ejlok1/toronto-emotional-speech-set-tess",
     ["TESS Toronto emotional speech set data/OAF_angry/OAF_back_angry.wav",
      "TESS Toronto emotional speech set data/YAF_fear/YAF_dog_fear.wav",
      "tess toronto emotional speech set data/TESS Toronto emotional speech set data/"
      "OAF_angry/OAF_back_angry.wav"],
     "TESS Toronto emotional speech set data"),
    ("savee", "ejlok1/surrey-audiovisual-expressed-emotion-savee",
     ["ALL/DC_a01.wav", "ALL/JK_su15.wav"], "ALL"),
    ("crema-d", "ejlok1/cremad",
     ["AudioWAV/1001_DFA_ANG_XX.wav", "AudioWAV/1002_IEO_HAP_HI.wav"], "AudioWAV"),
])
def test_kaggle_layouts_are_found_by_reading(name, handle, relpaths, folder, fake_kaggle, tmp_path,
                                             capsys):
    cache = write(tmp_path / "cache", *relpaths)
    calls = fake_kaggle(cache)
    out = tmp_path / "corpus"
    code, stdout, err = run(capsys, name, "--out", str(out))
    assert code == 0 and calls == [handle]
    assert out.resolve() == (cache / folder).resolve()
    assert "warning:" in err and "fewer than the" in err


# --- errors ------------------------------------------------------------------------------------

def test_kagglehub_missing(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # import kagglehub -> ImportError
    code, _, err = run(capsys, "savee", "--out", str(tmp_path / "savee"))
    one_line_error(code, err, "kagglehub is not installed", "pip install -e '.[download]'")
    assert not (tmp_path / "savee").exists()


def test_offline(fake_kaggle, tmp_path, capsys):
    request = requests.Request("GET", "https://api.kaggle.com/v1/x").prepare()
    fake_kaggle(requests.exceptions.ConnectionError("Max retries exceeded\nNameResolutionError",
                                                  request=request))
    code, _, err = run(capsys, "tess", "--out", str(tmp_path / "tess"))
    one_line_error(code, err, "cannot reach Kaggle (api.kaggle.com)",
                   "ejlok1/toronto-emotional-speech-set-tess", "offline")


def http_error(status: int) -> Exception:
    from kagglehub.exceptions import KaggleApiHTTPError

    response = requests.Response()
    response.status_code = status
    response.url = "https://api.kaggle.com/v1/datasets"
    return KaggleApiHTTPError(f"{status} Client Error.\n\nYou don't have permission", response)


@pytest.mark.parametrize("status, credentials, message", [
    (401, None, "Kaggle refused ejlok1/cremad without credentials (HTTP 401): set "
                "KAGGLE_API_TOKEN"),
    (403, object(), "Kaggle refused the credentials for ejlok1/cremad (HTTP 403): check the "
                    "API token"),
    (404, None, "Kaggle has no dataset ejlok1/cremad (HTTP 404)"),
    (500, None, "Kaggle answered HTTP 500 for ejlok1/cremad: 500 Client Error."),
])
def test_refused_downloads(status, credentials, message, fake_kaggle, monkeypatch, tmp_path,
                           capsys):
    import kagglehub.config

    monkeypatch.setattr(kagglehub.config, "get_kaggle_credentials", lambda: credentials)
    fake_kaggle(http_error(status))
    code, _, err = run(capsys, "cremad", "--out", str(tmp_path / "cremad"))
    one_line_error(code, err, message)


def test_missing_credentials_error(fake_kaggle, tmp_path, capsys):
    from kagglehub.exceptions import UnauthenticatedError

    fake_kaggle(UnauthenticatedError())
    code, _, err = run(capsys, "savee", "--out", str(tmp_path / "savee"))
    one_line_error(code, err, "no Kaggle credentials for ejlok1/surrey-audiovisual-expressed-"
                              "emotion-savee", "KAGGLE_USERNAME and KAGGLE_KEY")


def test_any_other_kagglehub_failure_is_one_line(fake_kaggle, tmp_path, capsys):
    from kagglehub.exceptions import DataCorruptionError

    fake_kaggle(DataCorruptionError("The X file is corrupted.\nExpected md5 a, got b"))
    code, _, err = run(capsys, "savee", "--out", str(tmp_path / "savee"))
    one_line_error(code, err, "DataCorruptionError: The X file is corrupted.")


def test_download_without_the_corpus_files(fake_kaggle, tmp_path, capsys):
    cache = write(tmp_path / "cache", "ALL/notes.wav", "ALL/XX_a01.wav")
    (cache / "README.txt").write_text("SAVEE")
    fake_kaggle(cache)
    code, _, err = run(capsys, "savee", "--out", str(tmp_path / "savee"))
    one_line_error(code, err, f"{cache}: the download holds no savee clips its reader "
                              "recognises (2 audio files; e.g. XX_a01.wav: speaker 'XX'")
    empty = tmp_path / "empty"
    empty.mkdir()
    fake_kaggle(empty)
    code, _, err = run(capsys, "savee", "--out", str(tmp_path / "savee"))
    one_line_error(code, err, "holds no savee clips its reader recognises (0 audio files)")
    assert not (tmp_path / "savee").exists()


def test_out_in_the_way(fake_kaggle, tmp_path, capsys):
    cache = write(tmp_path / "cache", "ALL/DC_a01.wav")
    fake_kaggle(cache)
    taken = tmp_path / "taken"
    write(taken, "x.wav")
    code, _, err = run(capsys, "savee", "--out", str(taken))
    one_line_error(code, err, f"--out {taken} exists and is not an empty folder")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    code, _, err = run(capsys, "savee", "--out", str(link))
    one_line_error(code, err, f"--out {link} is a link to {tmp_path / 'elsewhere'}")
    (tmp_path / "empty").mkdir()
    code, _, _ = run(capsys, "savee", "--out", str(tmp_path / "empty"))
    assert code == 0 and (tmp_path / "empty").is_symlink()


def test_command_line(tmp_path):
    """As users run it: usage errors and --help, in a process."""
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "pipelines.download", *args], cwd=REPO,
                              env=subprocess_env(), capture_output=True, text=True, timeout=120)

    bad = cli("mp3s", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert "unknown corpus 'mp3s'; one of ravdess, tess, savee, cremad, emodb" in bad.stderr
    helped = cli("--help")
    assert helped.returncode == 0
    for name, (handle, _) in DATASETS.items():
        assert name in helped.stdout and handle.split("/")[0] in helped.stdout
    assert download.DATASETS["emodb"][1].EXPECTATION.total == 535
