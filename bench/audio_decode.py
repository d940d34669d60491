"""Decode + resample to 16 kHz: pipelines.audio.decode.load against librosa.load, same files, same process.

    python bench/audio_decode.py [--corpora DIR] [--flacs 200] [--repeat 5] [--out FILE]

Files: the 11 original files of raw-samples/ (48/96/44.1/24.414 kHz, stereo, AIFF named .wav),
each timed `--repeat` times, and `--flacs` of the shared 16 kHz FLACs (every n-th row of
MANIFEST.csv, so the pick is fixed). Both loaders first run once on every file (warm-up: imports,
page cache, soxr plans); then each file is timed with both, alternating which one goes first so
neither profits from the other having just read the file. Outputs are compared as a sanity check.
Prints per-file milliseconds and the ratio; writes bench/results/audio_decode.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.common.io import write_text_atomic as write_text  # noqa: E402
from pipelines.audio.decode import load  # noqa: E402


def pick_files(corpora: Path, flacs: int) -> list[tuple[str, Path]]:
    import pandas as pd

    samples = pd.read_csv(corpora / "raw-samples" / "SAMPLES.csv", dtype=str)
    raw = [("raw", corpora / "raw-samples" / r) for r in samples["relpath"]]
    manifest = pd.read_csv(corpora / "MANIFEST.csv", dtype=str)
    step = max(1, len(manifest) // flacs)
    flac = [("flac", corpora / r) for r in manifest["relpath"].iloc[::step].head(flacs)]
    return raw + flac


def time_ms(fn, path) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    wave = fn(path)
    return (time.perf_counter() - start) * 1000, wave


def run(files, repeat: int) -> list[dict]:
    import librosa

    loaders = {
        "pipelines": lambda p: load(p),
        "librosa": lambda p: librosa.load(p, sr=16000)[0],
    }
    for _, path in files:  # warm-up, untimed
        for fn in loaders.values():
            fn(path)
    results = []
    turn = 0
    for group, path in files:
        times = {name: [] for name in loaders}
        for _ in range(repeat if group == "raw" else 1):
            order = list(loaders) if turn % 2 == 0 else list(reversed(loaders))
            turn += 1
            waves = {}
            for name in order:
                ms, waves[name] = time_ms(loaders[name], path)
                times[name].append(ms)
        a, b = waves["pipelines"], waves["librosa"]
        results.append({
            "group": group, "path": str(path),
            "pipelines_ms": statistics.median(times["pipelines"]),
            "librosa_ms": statistics.median(times["librosa"]),
            # librosa sizes its output ceil(n * ratio) and pads; soxr (and the shared FLACs)
            # round, so lengths may differ by one sample. Compare on the common part.
            "length_diff": len(b) - len(a),
            "max_abs_diff": float(np.abs(a[:len(b)] - b[:len(a)]).max()),
        })
    return results


def summarise(results: list[dict]) -> dict:
    out = {}
    for group in ("raw", "flac", "all"):
        rows = [r for r in results if group in ("all", r["group"])]
        p = sum(r["pipelines_ms"] for r in rows) / len(rows)
        lib = sum(r["librosa_ms"] for r in rows) / len(rows)
        out[group] = {"files": len(rows), "pipelines_ms_per_file": round(p, 3),
                      "librosa_ms_per_file": round(lib, 3),
                      "ratio_librosa_over_pipelines": round(lib / p, 3),
                      "median_ratio": round(statistics.median(
                          r["librosa_ms"] / r["pipelines_ms"] for r in rows), 3)}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpora", type=Path, default=REPO.parent / "shared" / "corpora",
                   help="the shared corpora folder (MANIFEST.csv, raw-samples/)")
    p.add_argument("--flacs", type=int, default=200, help="shared FLACs to time (default 200)")
    p.add_argument("--repeat", type=int, default=5,
                   help="timings per raw sample, median kept (default 5)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "audio_decode.json")
    args = p.parse_args()
    if not (args.corpora / "MANIFEST.csv").is_file():
        print(f"audio_decode: error: no MANIFEST.csv in {args.corpora}", file=sys.stderr)
        return 2
    import librosa
    import soundfile
    import soxr

    files = pick_files(args.corpora, args.flacs)
    results = run(files, args.repeat)
    print(f"{'file':44} {'pipelines ms':>12} {'librosa ms':>11} {'ratio':>6} {'max |diff|':>10} "
          f"{'len diff':>8}")
    for r in results:
        if r["group"] == "raw":
            name = str(Path(r["path"]).relative_to(args.corpora / "raw-samples"))
            print(f"{name:44} {r['pipelines_ms']:12.2f} {r['librosa_ms']:11.2f} "
                  f"{r['librosa_ms'] / r['pipelines_ms']:6.2f} {r['max_abs_diff']:10.2e} "
                  f"{r['length_diff']:8d}")
    summary = summarise(results)
    for group, s in summary.items():
        print(f"{group:5} {s['files']:4d} files: pipelines {s['pipelines_ms_per_file']:.2f} ms/file, "
              f"librosa {s['librosa_ms_per_file']:.2f} ms/file, librosa/pipelines "
              f"{s['ratio_librosa_over_pipelines']:.2f} (median per file {s['median_ratio']:.2f})")
    report = {
        "what": "ms per file to decode and resample to 16 kHz mono float32 (median of "
                f"{args.repeat} runs for raw samples, 1 run per FLAC; warm page cache)",
        "summary": summary,
        "files_with_other_length": sum(r["length_diff"] != 0 for r in results),
        "max_length_diff": max(abs(r["length_diff"]) for r in results),
        "max_abs_diff": max(r["max_abs_diff"] for r in results),
        "environment": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "load_average": os.getloadavg(), "librosa": librosa.__version__,
                        "soundfile": soundfile.__version__, "soxr": soxr.__version__,
                        "numpy": np.__version__, "machine": platform.machine()},
        "files": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
