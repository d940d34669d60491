"""Shared fixtures. Real-data tests read ../shared/corpora (or $SER_CORPORA) and skip cleanly
when it is absent."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
CORPORA = Path(os.environ.get("SER_CORPORA", REPO.parent / "shared" / "corpora"))
DEMO = REPO / "zoo" / "data" / "demo" / "ravdess"  # the bundled 98-clip sample


@pytest.fixture(scope="session")
def corpora() -> Path:
    """The shared corpora folder (ravdess/, tess/, savee/, raw-samples/, MANIFEST.csv)."""
    if not (CORPORA / "MANIFEST.csv").is_file():
        pytest.skip(f"real corpora not found at {CORPORA} (set SER_CORPORA)")
    return CORPORA


# ---------------------------------------------------------------- SSL (docs/ssl.md)


def subprocess_env() -> dict:
    """Environment for child processes that import this checkout's packages."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.fixture(scope="session")
def ssl_waveform_set(tmp_path_factory) -> Path:
    """A small waveform set (4 demo actors, 56 clips) in several shards per split."""
    import shutil

    from pipelines.records.build import build

    root = tmp_path_factory.mktemp("ssl-data")
    corpus = root / "ravdess"
    for actor in ("Actor_01", "Actor_02", "Actor_03", "Actor_04"):
        shutil.copytree(DEMO / actor, corpus / actor)
    out = root / "wave"
    build([f"ravdess={corpus}"], out, validation=0.25, test=0.25, shard_mb=0.5, workers=1,
          progress=False)
    return out


@pytest.fixture(scope="session")
def ssl_checks(tmp_path_factory, ssl_waveform_set):
    """Runs tests/ssl_checks.py (everything that imports transformers) once, in a child
    process; returns (its output folder, {check: 'ok' or traceback})."""
    import json
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("ssl-checks")
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "ssl_checks.py"), str(out),
                           str(ssl_waveform_set)], cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=1200)
    results_path = out / "results.json"
    if not results_path.is_file():
        pytest.fail(f"tests/ssl_checks.py wrote no results (rc {proc.returncode}):\n"
                    f"{proc.stderr[-4000:]}")
    return out, json.loads(results_path.read_text())


# ---------------------------------------------------------------- training fixtures

# Builder overrides that keep a model tiny: a training test is about the plumbing, not accuracy.
TINY = {"filters": [4, 4, 4, 4], "head_units": 8}


def tiny_flags(overrides: dict = TINY) -> list[str]:
    """The --set flags of `overrides` for the zoo.train CLI."""
    import json

    return [arg for key, value in overrides.items()
            for arg in ("--set", f"{key}={json.dumps(value)}")]


@pytest.fixture(scope="session")
def demo_set(tmp_path_factory) -> Path:
    """TFRecord set of the bundled 98-clip demo sample: 5/1/1 actors (70/14/14 clips)."""
    from pipelines.records.build import build

    out = tmp_path_factory.mktemp("tfrecords") / "demo"
    build([f"ravdess={DEMO}"], out, validation=0.15, test=0.15, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_run(demo_set, tmp_path_factory) -> dict:
    """One finished 1-epoch training run of a tiny mfcc_cnn on the demo set:
    {'run': run folder, 'export': SavedModel version folder, 'metrics': train()'s result}."""
    from zoo.training.train import TrainConfig, train

    base = tmp_path_factory.mktemp("tiny_run")
    metrics = train(TrainConfig(model="mfcc_cnn", data=str(demo_set), epochs=1,
                                overrides=dict(TINY), run_dir=str(base / "run"),
                                export=str(base / "savedmodels")))
    return {"run": base / "run", "export": Path(metrics["export"]), "metrics": metrics}


# ---------------------------------------------------------------- small corpora and TFRecord sets
#
# Tests of the TFRecord build and the input pipeline run on small copies of the real corpora made
# in a temporary folder: a RAVDESS-like `Actor_XX/` tree of real FLACs, a flat SAVEE folder with
# two real FLACs and one generated WAV, and a handful of broken files that must be skipped.


# RAVDESS names (emotion code in the third field) copied per actor: neutral, angry, sad (strong).
RAVDESS_PICKS = ("03-01-01-01-01-01-{a}", "03-01-05-01-01-01-{a}", "03-01-04-02-01-01-{a}")
SAVEE_PICKS = ("DC_a01", "JE_n01")

# Broken files: (relative path, how to make it, the reason skipped.csv must give). Their emotions
# also have good files, so the build still has every label.
BAD_FILES = (
    ("ravdess/Actor_01/03-01-05-01-02-01-01.wav", "empty", "empty file"),
    ("ravdess/Actor_02/03-01-05-01-02-01-02.wav", "text", "not an audio file"),
    ("ravdess/Actor_03/03-01-05-01-02-01-03.wav", "truncated", "truncated"),
    ("ravdess/Actor_04/03-01-05-01-02-01-04.wav", "short", "too short"),
    ("ravdess/Actor_05/03-01-05-01-02-01-05.wav", "silent", "all-silent"),
    ("ravdess/Actor_06/take-2-final.wav", "tone", "MM-VV-EE-II-SS-RR-AA"),
)


def synthetic_tone(seconds: float, seed: int = 0, sr: int = 16000) -> np.ndarray:
    """A speech-like test signal: a gliding harmonic tone with noise, between silences."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 40 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = np.clip(np.sin(np.pi * t / t[-1]) * 3, 0, 1) ** 2
    wave = 0.2 * voice * envelope + 0.003 * rng.standard_normal(t.size)
    silence = np.zeros(int(0.2 * sr))
    return np.concatenate([silence, wave, silence]).astype(np.float32)


def _write_bad(path: Path, how: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "empty":
        path.write_bytes(b"")
    elif how == "text":
        path.write_text("this is a note, not a recording\n" * 20)
    elif how == "truncated":
        sf.write(path, synthetic_tone(1.0, seed=3), 16000, subtype="PCM_16")
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "short":
        sf.write(path, synthetic_tone(0.1, seed=4)[:1600], 16000, subtype="PCM_16")
    elif how == "silent":
        sf.write(path, np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    elif how == "tone":
        sf.write(path, synthetic_tone(1.0, seed=5), 16000, subtype="PCM_16")
    else:  # pragma: no cover
        raise ValueError(how)


def make_corpus(source: Path, dest: Path, actors: int = 10, picks=RAVDESS_PICKS,
                savee: bool = True, bad: bool = True) -> dict[str, str]:
    """Copy a small RAVDESS-like (and SAVEE-like) corpus into dest; returns {name: folder}."""
    folders = {"ravdess": dest / "ravdess"}
    for actor in range(1, actors + 1):
        a = f"{actor:02d}"
        (dest / "ravdess" / f"Actor_{a}").mkdir(parents=True, exist_ok=True)
        for pick in picks:
            name = pick.format(a=a) + ".flac"
            shutil.copy(source / "ravdess" / f"Actor_{a}" / name,
                        dest / "ravdess" / f"Actor_{a}" / name)
    if savee:
        folders["savee"] = dest / "savee"
        folders["savee"].mkdir(parents=True, exist_ok=True)
        for name in SAVEE_PICKS:
            shutil.copy(source / "savee" / f"{name}.flac", dest / "savee" / f"{name}.flac")
        # a generated 16-bit WAV: the one "happy" clip, so its exact samples are known
        sf.write(dest / "savee" / "JK_h01.wav", synthetic_tone(1.5, seed=1), 16000,
                 subtype="PCM_16")
    if bad:
        for rel, how, _ in BAD_FILES:
            _write_bad(dest / rel, how)
    return {name: str(folder) for name, folder in folders.items()}


def corpus_args(folders: dict[str, str]) -> list[str]:
    return [f"{name}={folder}" for name, folder in folders.items()]


@pytest.fixture(scope="session")
def small_corpus(corpora, tmp_path_factory) -> dict[str, str]:
    """10 RAVDESS actors x 3 real clips, 3 SAVEE clips (one generated) and 6 broken files.

    Read-only for tests: tests that change inputs make their own corpus with `make_corpus`.
    """
    return make_corpus(corpora, tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def built_set(small_corpus, tmp_path_factory) -> Path:
    """A TFRecord set built once from `small_corpus` (small shards, so splits have several).

    Read-only for tests: copy it (shutil.copytree) before changing anything in it.
    """
    from pipelines.records.build import build

    out = tmp_path_factory.mktemp("tfrecords") / "small"
    build(corpus_args(small_corpus), out, shard_mb=0.5, workers=2, progress=False)
    return out


@pytest.fixture
def corpus_factory(corpora, tmp_path):
    """make(**options) -> {name: folder}: a fresh small corpus in this test's tmp_path."""
    def make(name: str = "corpus", **options) -> dict[str, str]:
        return make_corpus(corpora, tmp_path / name, **options)

    return make


TINY_LABELS = ["angry", "happy", "neutral", "sad"]


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """A tiny untrained mfcc_cnn exported as savedmodels/mfcc_cnn/1 (the serving tests' model):
    (version folder, labels)."""
    from pipelines.common.tfenv import quiet_tensorflow

    quiet_tensorflow()
    import keras

    from zoo.export.savedmodel import export
    from zoo.models.registry import build_model, get_entry

    spec = get_entry("mfcc_cnn").default_spec()
    keras.utils.set_random_seed(1)
    model = build_model("mfcc_cnn", len(TINY_LABELS), spec, filters=(4, 4, 4, 4), head_units=8)
    base = tmp_path_factory.mktemp("savedmodels")
    return export(model, spec, TINY_LABELS, base, "mfcc_cnn", card="tiny test model"), TINY_LABELS
