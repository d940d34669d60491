"""Shared fixtures. Real-data tests read ../shared/corpora (or $SER_CORPORA) and skip cleanly
when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
CORPORA = Path(os.environ.get("SER_CORPORA", REPO.parent / "shared" / "corpora"))


@pytest.fixture(scope="session")
def corpora() -> Path:
    """The shared corpora folder (ravdess/, tess/, savee/, raw-samples/, MANIFEST.csv)."""
    if not (CORPORA / "MANIFEST.csv").is_file():
        pytest.skip(f"real corpora not found at {CORPORA} (set SER_CORPORA)")
    return CORPORA


# ---------------------------------------------------------------- training fixtures

DEMO = REPO / "zoo" / "data" / "demo" / "ravdess"
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
