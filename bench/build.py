"""Benchmark: TFRecord build of the whole shared corpora vs a one-by-one librosa.load loop.

    python bench/build.py [--corpora DIR] [--workers N] [--out DIR]

Builds ravdess + tess + savee (4,360 clips) with `pipelines.build.build(..., force=True)`, the
same call as `python -m pipelines.build --corpus ... --out DIR --force`, into a temporary folder
(removed afterwards unless --out is given), and times it from the first file read to the
finished set. Then it loads the same files one by one with `librosa.load(path, sr=16000)`.
One-time costs are kept out of both timings and reported apart: TensorFlow's import (which the
CLI pays once per run) and librosa's lazy imports on its first load. The files are read once
beforehand so that both sides find them in the page cache. Writes bench/results/build.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's pipelines

import argparse  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402

from bench._common import (  # noqa: E402
    corpora_root, corpus_args, load_average, verdict, versions, write_results,
)

TARGET_SECONDS = 180.0
TARGET_SPEEDUP = 3.0


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", default=None, help="the shared corpora folder")
    parser.add_argument("--workers", type=int, default=None,
                        help="decoding processes for the build (default: all cores)")
    parser.add_argument("--out", default=None, help="keep the set here (default: a temp dir)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    from pipelines.records.build import build
    from pipelines.common.tfenv import quiet_tensorflow

    quiet_tensorflow()
    tf_import_s = time.perf_counter() - start

    root = corpora_root(args.corpora)
    source_bytes = 0
    for path in sorted(p for name in ("ravdess", "tess", "savee")
                       for p in (root / name).rglob("*.flac")):
        source_bytes += len(path.read_bytes())  # warm the page cache for both sides

    scratch = Path(tempfile.mkdtemp(prefix="bench-build-"))
    out = Path(args.out) if args.out else scratch / "all"
    load_before = load_average()
    try:
        start = time.perf_counter()
        schema = build(corpus_args(root), out, workers=args.workers, force=True,
                       progress=False)
        build_s = time.perf_counter() - start
        set_bytes = folder_bytes(out)
        shards = len(schema["shards"])
        paths = list(__import__("pandas").read_csv(out / "manifest.csv")["path"])
    finally:
        if not args.out:
            shutil.rmtree(scratch, ignore_errors=True)
    clips = schema["total_examples"]

    start = time.perf_counter()
    import librosa

    librosa.load(paths[0], sr=16000)  # librosa loads its decoders lazily on the first call
    librosa_warmup_s = time.perf_counter() - start

    start, cpu = time.perf_counter(), time.process_time()
    samples = 0
    for path in paths:
        y, _ = librosa.load(path, sr=16000)
        samples += len(y)
    loop_s = time.perf_counter() - start
    loop_cpu_s = time.process_time() - cpu
    load_after = load_average()

    speedup = loop_s / build_s
    hours = samples / 16000 / 3600
    workers = args.workers or len(__import__("os").sched_getaffinity(0))
    print(f"\nBuild: {clips} clips ({hours:.2f} h of audio) from ravdess, tess, savee; "
          f"{workers} decoding workers; files in the page cache")
    print(f"{'':40s}{'seconds':>9s}{'clips/s':>9s}")
    print(f"  {'TFRecord build (--force)':38s}{build_s:9.1f}{clips / build_s:9.0f}   "
          f"({verdict(build_s, TARGET_SECONDS, higher_is_better=False, unit=' s')})")
    print(f"  {'librosa.load(path, sr=16000) loop':38s}{loop_s:9.1f}{clips / loop_s:9.0f}")
    print(f"  speed-up of the build over the loop: {speedup:.2f}x "
          f"({verdict(speedup, TARGET_SPEEDUP, unit='x')})")
    print(f"  set on disk: {set_bytes / 1e6:.0f} MB in {shards} shards + manifest, skipped, schema "
          f"(source FLACs: {source_bytes / 1e6:.0f} MB; the set stores 16-bit PCM, not FLAC)")
    print(f"  {schema['skipped']} skipped; splits: " + ", ".join(
        f"{s} {schema['splits'][s]['examples']}" for s in ("train", "validation", "test")))
    print(f"  not timed: TensorFlow import {tf_import_s:.1f} s (paid once by the CLI), librosa's "
          f"first load {librosa_warmup_s:.1f} s")
    print(f"  the loop used {loop_cpu_s:.1f} s of CPU, {1000 * loop_cpu_s / clips:.1f} ms a clip")
    if speedup < TARGET_SPEEDUP:
        why = (f"Why not {TARGET_SPEEDUP:g}x: the shared files are already 16 kHz, so neither side "
               f"resamples, and the loop only decodes FLAC ({1000 * loop_cpu_s / clips:.1f} ms "
               "of CPU a clip). The build decodes too, spread over the cores, but it also "
               "measures levels, quantises, sends the samples from the workers to the writer, "
               f"serialises tf.train.Examples and writes {set_bytes / 1e6:.0f} MB; on "
               f"{workers} cores that costs more than the parallel decoding saves.")
        print(textwrap.fill(why, width=96, initial_indent="  ", subsequent_indent="  "))
    print(f"load average before/after: {load_before} / {load_after} (the machine is shared)")
    path = write_results("build", {
        "clips": clips, "audio_hours": round(hours, 3), "workers": workers,
        "build_seconds": round(build_s, 2), "build_clips_per_s": round(clips / build_s, 1),
        "librosa_loop_seconds": round(loop_s, 2), "librosa_clips_per_s": round(clips / loop_s, 1),
        "librosa_loop_cpu_seconds": round(loop_cpu_s, 2), "speedup": round(speedup, 2),
        "tf_import_seconds_not_timed": round(tf_import_s, 2),
        "librosa_first_load_seconds_not_timed": round(librosa_warmup_s, 2),
        "target_build_seconds": TARGET_SECONDS, "target_build_met": build_s <= TARGET_SECONDS,
        "target_speedup": TARGET_SPEEDUP, "target_speedup_met": speedup >= TARGET_SPEEDUP,
        "set_bytes": set_bytes, "source_flac_bytes": source_bytes, "shards": shards,
        "skipped": schema["skipped"],
        "splits": {s: schema["splits"][s]["examples"] for s in ("train", "validation", "test")},
        "load_average_before": load_before, "load_average_after": load_after,
        "versions": versions("tensorflow", "librosa", "soundfile", "numpy"),
    })
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
