"""The savedmodels/<model>/<version>/ layout TF Serving reads: signature names, integer
versions, the zoo.json beside each SavedModel. No TensorFlow here, so commands that only find
or describe exports (zoo.serving config/request, zoo.predict's argument checks) start fast."""

from __future__ import annotations

import json
from pathlib import Path

SIGNATURE_DEFAULT = "serving_default"
SIGNATURE_LENGTH = "serving_with_length"
SIGNATURE_STATS = "serving_with_stats"
SIGNATURES = (SIGNATURE_DEFAULT, SIGNATURE_LENGTH, SIGNATURE_STATS)


def next_version(base: Path) -> int:
    """The next free integer version under base (1 if none)."""
    versions = [int(p.name) for p in Path(base).glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def read_export(path) -> dict:
    """zoo.json of an export folder, with labels and FeatureSpec, or a clear error."""
    path = Path(path)
    info = path / "zoo.json"
    if not (path / "saved_model.pb").is_file():
        raise FileNotFoundError(f"{path}: no saved_model.pb (not a SavedModel version folder)")
    if not info.is_file():
        raise FileNotFoundError(f"{path}: no zoo.json beside the SavedModel")
    return json.loads(info.read_text())


def resolve_version(path) -> Path:
    """savedmodels/<model> -> its highest version folder; a version folder is returned as is."""
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    versions = sorted((int(p.name) for p in path.glob("*") if p.is_dir() and p.name.isdigit()
                       and (p / "saved_model.pb").is_file()))
    if not versions:
        raise FileNotFoundError(f"{path}: neither a SavedModel nor a folder of numbered versions")
    return path / str(versions[-1])
