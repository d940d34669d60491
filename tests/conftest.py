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


TINY_LABELS = ["angry", "happy", "neutral", "sad"]


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """A tiny untrained mfcc_cnn exported as savedmodels/mfcc_cnn/1 (the serving tests' model):
    (version folder, labels)."""
    from pipelines.tfenv import quiet_tensorflow

    quiet_tensorflow()
    import keras

    from zoo.export import export
    from zoo.registry import build_model, get_entry

    spec = get_entry("mfcc_cnn").default_spec()
    keras.utils.set_random_seed(1)
    model = build_model("mfcc_cnn", len(TINY_LABELS), spec, filters=(4, 4, 4, 4), head_units=8)
    base = tmp_path_factory.mktemp("savedmodels")
    return export(model, spec, TINY_LABELS, base, "mfcc_cnn", card="tiny test model"), TINY_LABELS
