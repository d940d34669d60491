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
