"""What the benchmarks share: the corpora, clip choice, machine facts and the results file.

Each benchmark measures everything it compares in one run of one process, prints a short
table, and writes bench/results/<name>.json. Numbers from different runs (or machines) are not
comparable; ratios from the same run are.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
CORPORA = Path(os.environ.get("SER_CORPORA", REPO.parent / "shared" / "corpora"))
CORPUS_NAMES = ("ravdess", "tess", "savee")


def corpora_root(arg: str | None) -> Path:
    root = Path(arg) if arg else CORPORA
    if not (root / "MANIFEST.csv").is_file():
        sys.exit(f"error: {root}: no MANIFEST.csv; pass --corpora DIR (the shared corpora)")
    return root


def corpus_args(root: Path, names=CORPUS_NAMES) -> list[str]:
    return [f"{name}={root / name}" for name in names]


def manifest(root: Path):
    import pandas as pd

    return pd.read_csv(root / "MANIFEST.csv", dtype=str)


def spread(rows, n: int):
    """n rows evenly spread over a table sorted by path (so over corpora, speakers, emotions)."""
    import numpy as np

    index = np.linspace(0, len(rows) - 1, n).round().astype(int)
    return rows.iloc[index].reset_index(drop=True)


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def versions(*modules: str) -> dict:
    out = {}
    for name in modules:
        module = sys.modules.get(name)
        out[name] = getattr(module, "__version__", "?") if module else "not imported"
    return out


def load_average() -> list[float]:
    """1, 5, 15 minute load averages: the machine is shared, so say how busy it was."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def write_results(name: str, results: dict, script: str | None = None) -> Path:
    """bench/results/<name>.json with the command (bench/<script or name>.py and its
    arguments), date and machine."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    record = {
        "benchmark": name,
        "command": "python " + " ".join([f"bench/{script or name}.py", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        **results,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def verdict(value: float, target: float, higher_is_better: bool = True,
            unit: str = "") -> str:
    ok = value >= target if higher_is_better else value <= target
    sign = ">=" if higher_is_better else "<="
    return f"target {sign} {target:g}{unit}: {'met' if ok else 'NOT met'}"
