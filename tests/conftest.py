"""Shared fixtures. Real-data tests read ../shared/corpora (or $SER_CORPORA) and skip cleanly
when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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

    from pipelines.build import build

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
    from pipelines.build import build

    out = tmp_path_factory.mktemp("tfrecords") / "demo"
    build([f"ravdess={DEMO}"], out, validation=0.15, test=0.15, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_run(demo_set, tmp_path_factory) -> dict:
    """One finished 1-epoch training run of a tiny mfcc_cnn on the demo set:
    {'run': run folder, 'export': SavedModel version folder, 'metrics': train()'s result}."""
    from zoo.train import TrainConfig, train

    base = tmp_path_factory.mktemp("tiny_run")
    metrics = train(TrainConfig(model="mfcc_cnn", data=str(demo_set), epochs=1,
                                overrides=dict(TINY), run_dir=str(base / "run"),
                                export=str(base / "savedmodels")))
    return {"run": base / "run", "export": Path(metrics["export"]), "metrics": metrics}
