"""Time per explanation: ms per clip of each method on a batch of 32 clips of 3 s, against a
plain forward pass of the same model measured in the same process (ratios hold across runs,
absolute numbers depend on the machine's load).

    python bench/explain.py [--model savedmodels/mfcc_cnn/1] [--repeat 3] [--batch 32]
                            [--out bench/results/explain.json]

Without --model: an untrained mfcc_cnn at full size (the shipped architecture; timing does
not depend on the weights). Features: synthetic standard-normal [32, 301, C] images (3 s at a
10 ms hop). Wall time and process CPU time are both recorded: CPU / wall shows how many of the
cores a method keeps busy. Threads are TensorFlow's defaults.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's zoo and pipelines

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from _common import load_average, versions, write_results  # noqa: E402

METHODS = ("gradcam", "gradcam++", "scorecam", "saliency")


def timed(fn, repeat: int):
    """Median wall and CPU seconds of fn() over `repeat` calls, after one warm-up call."""
    fn()
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return float(np.median(walls)), float(np.median(cpus))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="an export (default: untrained full-size mfcc_cnn)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=301)
    parser.add_argument("--out", default="explain", help="results name (bench/results/NAME)")
    args = parser.parse_args(argv)

    from pipelines.common.tfenv import quiet_tensorflow

    quiet_tensorflow()
    import keras

    from zoo.xai.attribution import Explainer

    if args.model:
        from zoo.xai.data import load_model

        loaded = load_model(args.model)
        model, name, channels = loaded.model, loaded.name, loaded.spec.channels
    else:
        from zoo.models.registry import build_model, get_entry

        keras.utils.set_random_seed(0)
        spec = get_entry("mfcc_cnn").default_spec()
        model, name, channels = build_model("mfcc_cnn", 7, spec), "mfcc_cnn (untrained)", \
            spec.channels
    x = np.random.default_rng(0).normal(size=(args.batch, args.frames, channels)) \
        .astype(np.float32)
    targets = np.arange(args.batch) % int(model.output.shape[-1])
    forward_wall, forward_cpu = timed(lambda: model(x, training=False), args.repeat)
    rows = {"forward": {"ms_per_clip": 1000 * forward_wall / args.batch,
                        "cpu_ms_per_clip": 1000 * forward_cpu / args.batch, "ratio": 1.0}}
    for method in METHODS:
        explainer = Explainer(model, method)
        wall, cpu = timed(lambda: explainer(x, targets, batch_size=args.batch), args.repeat)
        rows[method] = {"ms_per_clip": 1000 * wall / args.batch,
                        "cpu_ms_per_clip": 1000 * cpu / args.batch,
                        "ratio": wall / forward_wall, "layer": explainer.layer}
    print(f"{name}, batch {args.batch} x {args.frames} frames; load {load_average()}")
    print(f"{'method':<10} {'ms/clip':>9} {'cpu ms/clip':>12} {'x forward':>10}")
    for method, r in rows.items():
        print(f"{method:<10} {r['ms_per_clip']:9.2f} {r['cpu_ms_per_clip']:12.2f} "
              f"{r['ratio']:10.1f}")
    path = write_results(args.out, {
        "model": name, "batch": args.batch, "frames": args.frames, "repeat": args.repeat,
        "load_average": load_average(), "versions": versions("tensorflow", "keras"),
        "results": rows})
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
