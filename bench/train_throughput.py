"""Training throughput (clips/s) of every registered features model: fed by the tf.data input
pipeline against fed the same batches from memory, same process.

    python bench/train_throughput.py [--data tfrecords/full] [--steps 15] [--warmup 3]
                                     [--models mfcc_cnn,...] [--out FILE]

For each FeatureSpec the models need (MFCC, log-Mel), one training iterator over
make_dataset(split='train', training=True, batch 32, 3 s crops, default augmentation) is opened
and kept, as model.fit keeps it: its first batch waits for the shuffle buffer, which holds the
whole training split, so that cost is reported apart (shuffle_buffer_fill_s). Each model (full
size, the optimizer and loss of zoo.train) then runs `--warmup` untimed steps plus two that force
Keras' relaxed-shape retrace, so no timed step pays for tracing; then `--steps` timed
train_on_batch steps pulling batches from the iterator while the pipeline prefetches in the
background, keeping those batches; then the same batches again, from memory.
ratio = pipeline seconds / in-memory seconds: 1.0 means the input pipeline costs nothing; the
target is <= 1.1. The projected epoch time is for the train split of --data at the pipeline
rate. Writes bench/results/train_throughput.json, with the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.common.tfenv import quiet_tensorflow  # noqa: E402

BATCH = 32
CLIP_SECONDS = 3.0


def compiled_model(name: str, num_classes: int, spec):
    """The model as zoo.train compiles it (AdamW, sparse cross-entropy, accuracy)."""
    import keras

    from zoo.models.registry import build_model

    keras.utils.set_random_seed(0)
    model = build_model(name, num_classes, spec)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=1e-4),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def timed_steps(model, batches) -> tuple[float, list]:
    """Seconds for one train_on_batch per batch; `batches` may be an iterator (kept)."""
    kept = []
    start = time.perf_counter()
    for x, y in batches:
        model.train_on_batch(x, y)
        kept.append((x, y))
    # train_on_batch returns after the step has run (its logs are fetched as numbers)
    return time.perf_counter() - start, kept


def bench_model(name, spec, iterator, num_classes, steps, warmup) -> dict:
    model = compiled_model(name, num_classes, spec)
    started = time.perf_counter()
    for _ in range(warmup):
        x, y = next(iterator)
        model.train_on_batch(x, y)
    # Keras traces the step for the first input shape, then once more with the dimensions that
    # changed left open; force that relaxed trace now (shorter batch, fewer frames), so that no
    # timed step of either side pays for tracing.
    model.train_on_batch(x[:, :-3], y)
    model.train_on_batch(x[:-1], y[:-1])
    warmup_s = time.perf_counter() - started
    pipeline_s, kept = timed_steps(model, (next(iterator) for _ in range(steps)))
    memory_s, _ = timed_steps(model, iter(kept))
    clips = sum(int(y.shape[0]) for _, y in kept)
    frames = [int(x.shape[1]) for x, _ in kept]
    out = {
        "model": name, "parameters": int(model.count_params()), "feature_kind": spec.kind,
        "timed_steps": steps, "clips": clips, "frames_per_batch": [min(frames), max(frames)],
        "warmup_steps": warmup, "warmup_s": round(warmup_s, 2),
        "pipeline_s": round(pipeline_s, 3), "memory_s": round(memory_s, 3),
        "pipeline_clips_per_s": round(clips / pipeline_s, 2),
        "memory_clips_per_s": round(clips / memory_s, 2),
        "ratio_memory_over_pipeline": round(pipeline_s / memory_s, 3),
    }
    return out


def environment(load_before) -> dict:
    import keras
    import numpy as np

    tf = quiet_tensorflow()
    return {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": len(os.sched_getaffinity(0)), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__,
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="tfrecords/full", help="TFRecord set (tfrecords/full)")
    parser.add_argument("--steps", type=int, default=15, help="timed steps per model (15)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model (3)")
    parser.add_argument("--models", help="comma-separated (default: every features model)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" /
                                             "train_throughput.json"))
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    quiet_tensorflow()
    from pipelines.records.dataset import make_dataset
    from pipelines.common.io import write_json_atomic
    from pipelines.records.tfrecord import open_set
    from zoo.models.registry import get_entry, list_models

    tfset = open_set(args.data)
    names = args.models.split(",") if args.models else [
        m for m in list_models() if get_entry(m).input == "features"]
    by_spec: dict = {}
    for name in names:
        by_spec.setdefault(get_entry(name).default_spec(), []).append(name)
    train_clips = tfset.examples("train")
    results, fills = [], {}
    for spec, models in by_spec.items():
        ds = make_dataset(args.data, "train", spec, BATCH, training=True,
                          clip_seconds=CLIP_SECONDS).repeat()
        iterator = iter(ds)
        started = time.perf_counter()
        next(iterator)  # waits for the shuffle buffer: the whole train split, parsed, trimmed
        fills[spec.kind] = round(time.perf_counter() - started, 1)
        print(f"{spec.kind}: first batch after {fills[spec.kind]} s (shuffle buffer of "
              f"{train_clips} clips)", flush=True)
        for name in models:
            r = bench_model(name, spec, iterator, len(tfset.labels), args.steps, args.warmup)
            r["projected_epoch_s"] = round(train_clips / r["pipeline_clips_per_s"], 1)
            results.append(r)
            print(f"{name:>18}: pipeline {r['pipeline_clips_per_s']:6.1f} clips/s, memory "
                  f"{r['memory_clips_per_s']:6.1f} clips/s, ratio "
                  f"{r['ratio_memory_over_pipeline']:.3f}, epoch of {train_clips} clips "
                  f"~{r['projected_epoch_s'] / 60:.1f} min", flush=True)
    env = environment(load_before)
    loaded = max(env["load_average_before"][0], env["load_average_after"][0]) > env["cpus"]
    report = {
        "what": f"training clips/s, batch {BATCH}, {CLIP_SECONDS:g} s crops, default "
                "augmentation; pipeline = make_dataset(training=True) iterator, memory = the "
                "same batches replayed from memory; ratio = pipeline_s / memory_s "
                "(target <= 1.1)",
        "command": "python bench/train_throughput.py " + " ".join(argv if argv is not None
                                                                  else sys.argv[1:]),
        "data": str(args.data), "train_clips": train_clips,
        "shuffle_buffer_fill_s": fills,
        "machine_loaded": loaded,
        "note": ("other jobs shared the 2 cores during the run (load average above the core "
                 "count): absolute clips/s are lower than on an idle machine, and both sides "
                 "of each ratio were measured under the same load") if loaded else "",
        "results": results,
        "environment": env,
    }
    write_json_atomic(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
