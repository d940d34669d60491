"""Benchmark: does the input pipeline starve training?

    python bench/input_pipeline.py [--data tfrecords/all] [--corpora DIR] [--epochs 2]
                                   [--batch 32] [--max-steps N]

Trains a small Keras CNN (three Conv2D blocks over [T, C] log-Mel features) for timed epochs
fed (a) by make_dataset(training=True): TFRecord parsing, crop, speed/gain/noise augmentation,
on-graph log-Mel and SpecAugment, all inside tf.data; and (b) by the same batches computed once
beforehand and held in memory. The ratio of epoch times (a)/(b) is the pipeline's cost to
training; 1.0 means it is fully hidden behind the model's work. Feeds alternate epoch by epoch
after a few untimed warm-up steps of each; each feed's time is its best of --epochs epochs (the
one least disturbed by other work on the shared machine). The pipeline caches decoded clips in
memory on its first pass (the one that materialises the batches), as in real training. Without
--data it builds a set from the shared corpora into a temporary folder first (not part of the
ratio). Writes bench/results/input_pipeline.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's pipelines

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench._common import (  # noqa: E402
    corpora_root, corpus_args, load_average, verdict, versions, write_results,
)

TARGET_RATIO = 1.1


def small_cnn(channels: int, classes: int):
    import keras

    features = keras.Input((None, channels), name="features")
    x = keras.layers.Reshape((-1, channels, 1))(features)
    for i, filters in enumerate((16, 32, 64)):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                name=f"conv_block_{i}")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, name="classifier")(x)
    model = keras.Model(features, outputs, name="bench_cnn")
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="an existing TFRecord set to read")
    parser.add_argument("--corpora", default=None, help="the shared corpora (without --data)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per feed (2)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-steps", type=int, default=None,
                        help="batches per epoch (default: the whole train split)")
    args = parser.parse_args(argv)

    from pipelines.common.tfenv import quiet_tensorflow

    tf = quiet_tensorflow()
    import keras

    from pipelines.records.dataset import make_dataset
    from pipelines.features.spec import FeatureSpec
    from pipelines.records.tfrecord import open_set

    scratch = None
    build_s = None
    if args.data:
        data = Path(args.data)
    else:
        from pipelines.records.build import build

        scratch = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
        data = scratch / "all"
        start = time.perf_counter()
        build(corpus_args(corpora_root(args.corpora)), data, progress=False)
        build_s = time.perf_counter() - start
    try:
        tfset = open_set(data)
        spec = FeatureSpec()
        ds = make_dataset(data, "train", spec, batch_size=args.batch, training=True)
        if args.max_steps:
            ds = ds.take(args.max_steps)

        # the same tensors, materialised in memory (one epoch's worth of augmented batches);
        # this first pass also fills the pipeline's cache of decoded clips
        batches = [(x.numpy(), y.numpy()) for x, y in ds]
        clips, steps = sum(len(y) for _, y in batches), len(batches)
        ds = ds.apply(tf.data.experimental.assert_cardinality(steps))
        # the pipeline alone, from its cache, as in every epoch after the first
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in ds:
            pass
        pipeline_only_s = time.perf_counter() - start
        pipeline_only_cpu = time.process_time() - cpu_start

        in_memory = tf.data.Dataset.from_generator(
            lambda: iter(batches), output_signature=(
                tf.TensorSpec([None, None, spec.channels], tf.float32),
                tf.TensorSpec([None], tf.int32))
        ).apply(tf.data.experimental.assert_cardinality(steps))
        memory_mb = sum(x.nbytes + y.nbytes for x, y in batches) / 1e6

        keras.utils.set_random_seed(0)
        model = small_cnn(spec.channels, len(tfset.labels))
        feeds = {"pipeline": ds, "memory": in_memory}
        for feed in feeds.values():  # warm-up: tracing, for both feeds
            model.fit(feed.take(4), epochs=1, shuffle=False, verbose=0)
        times = {name: [] for name in feeds}
        cpu = {name: [] for name in feeds}
        load_before = load_average()
        for _ in range(args.epochs):
            for name, feed in feeds.items():
                start, cpu_start = time.perf_counter(), time.process_time()
                model.fit(feed, epochs=1, shuffle=False, verbose=0)
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - cpu_start)
        load_after = load_average()
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)

    cores = len(os.sched_getaffinity(0))
    epoch = {name: min(t) for name, t in times.items()}
    epoch_cpu = {name: min(t) for name, t in cpu.items()}
    ratio = epoch["pipeline"] / epoch["memory"]
    print(f"\nInput pipeline: train split, {clips} clips an epoch, batches of {args.batch}, "
          f"3 s crops,\n  default augmentation + SpecAugment; a 3-block CNN of "
          f"{model.count_params():,} parameters; best of {args.epochs} epochs per feed")
    if build_s is not None:
        print(f"  (built the TFRecord set first in {build_s:.1f} s)")
    print(f"{'':46s}{'s/epoch':>9s}{'clips/s':>9s}{'CPU s':>8s}")
    print(f"  {'pipeline alone (no model)':44s}{pipeline_only_s:9.1f}"
          f"{clips / pipeline_only_s:9.0f}{pipeline_only_cpu:8.1f}")
    print(f"  {'training fed by make_dataset(training=True)':44s}{epoch['pipeline']:9.1f}"
          f"{clips / epoch['pipeline']:9.0f}{epoch_cpu['pipeline']:8.1f}")
    print(f"  {'training fed from memory':44s}{epoch['memory']:9.1f}"
          f"{clips / epoch['memory']:9.0f}{epoch_cpu['memory']:8.1f}")
    print(f"  ratio {ratio:.3f} ({verdict(ratio, TARGET_RATIO, higher_is_better=False)}); "
          f"epochs timed: pipeline {[round(t, 1) for t in times['pipeline']]}, "
          f"memory {[round(t, 1) for t in times['memory']]}")
    cpu_ratio = epoch_cpu["pipeline"] / epoch_cpu["memory"]
    print(f"  CPU per epoch: {cpu_ratio:.3f}x with the pipeline "
          f"({epoch_cpu['pipeline'] - epoch_cpu['memory']:+.1f} s); on {cores} cores shared "
          "by the model\n  and the pipeline, that CPU comes out of training's share")
    print(f"load average before/after: {load_before} / {load_after} (the machine is shared)")
    path = write_results("input_pipeline", {
        "clips_per_epoch": clips, "batch": args.batch, "max_steps": args.max_steps,
        "data": str(args.data) if args.data else "built from the shared corpora",
        "build_seconds": round(build_s, 1) if build_s is not None else None,
        "model_parameters": model.count_params(),
        "pipeline_only_seconds": round(pipeline_only_s, 2),
        "pipeline_only_clips_per_s": round(clips / pipeline_only_s, 1),
        "epoch_seconds_pipeline": round(epoch["pipeline"], 2),
        "epoch_seconds_memory": round(epoch["memory"], 2),
        "epochs_pipeline": [round(t, 2) for t in times["pipeline"]],
        "epochs_memory": [round(t, 2) for t in times["memory"]],
        "pipeline_only_cpu_seconds": round(pipeline_only_cpu, 2),
        "epoch_cpu_seconds_pipeline": round(epoch_cpu["pipeline"], 2),
        "epoch_cpu_seconds_memory": round(epoch_cpu["memory"], 2),
        "clips_per_s_pipeline": round(clips / epoch["pipeline"], 1),
        "clips_per_s_memory": round(clips / epoch["memory"], 1),
        "ratio": round(ratio, 3), "cpu_ratio": round(cpu_ratio, 3),
        "target_ratio": TARGET_RATIO,
        "target_met": ratio <= TARGET_RATIO, "in_memory_mb": round(memory_mb, 1),
        "load_average_before": load_before, "load_average_after": load_after,
        "versions": versions("tensorflow", "keras", "numpy"),
    })
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
