"""LiteRT (on-device) models against the SavedModels they come from: size, labels, UA, latency.

    python bench/lite.py --data tfrecords/full [--models savedmodels/mfcc_cnn/3 ...]
                         [--variants none float16 int8 int8-full] [--repeat 30] [--threads N]

Per export and variant (python -m zoo.lite: none = float32, float16, int8 = int8 weights with
dynamic-range kernels, int8-full = int8 weights and activations calibrated on 300 training
clips of --data), in one process:

- size of model.tflite against the SavedModel (saved_model.pb + variables/) and against the
  float32 .tflite;
- on the test split of --data, each clip alone: the share of clips whose label is the
  SavedModel's (serving signature, zoo.evaluate), the largest probability difference, and UA of
  both with the difference in points;
- latency for a 3 s clip (zoo.export.check.synthetic_clip), numpy in to probabilities out:
  LiteRT (signature runner, input resized to the clip) and the loaded SavedModel's
  serving_default at batch 1, called in turn in every repetition after warm-up; p50 / p95 and
  the ratio. LiteRT gets --threads threads (default: this machine's cores, as TensorFlow uses).

Writes bench/results/lite.json (with the load average: this machine is shared, so absolute
times move between runs; ratios within a run hold better).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's zoo and pipelines

import argparse  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from bench._common import load_average, verdict, write_results  # noqa: E402

MODELS = ("savedmodels/mfcc_cnn/3", "savedmodels/logmel_cnn/3", "savedmodels/mfcc_crnn_attn/2")
VARIANTS = {"none": ("none", "weights"), "float16": ("float16", "weights"),
            "int8": ("int8", "weights"), "int8-full": ("int8", "full")}
TARGET_UA_POINTS, TARGET_SMALLER = 1.0, 2.0  # int8 CNN: within 1 point UA, >= 2x smaller


def latency(fns: dict, clip: np.ndarray, repeat: int, warmup: int) -> dict:
    """p50 / p95 ms per call of each fn(clip), called in turn (order rotating)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn(clip)
    times = {name: [] for name in fns}
    names = list(fns)
    for i in range(repeat):
        for name in names[i % len(names):] + names[:i % len(names)]:
            start = time.perf_counter()
            fns[name](clip)
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: {"p50_ms": round(float(np.percentile(t, 50)), 2),
                   "p95_ms": round(float(np.percentile(t, 95)), 2)} for name, t in times.items()}


def agreement(reference, lite) -> dict:
    """Label agreement and probability difference of two prediction tables (same clips)."""
    probs = [c for c in reference.columns if c.startswith("p_")]
    a, b = reference.set_index("id").sort_index(), lite.set_index("id").sort_index()
    return {"same_label": round(float((a["pred"] == b["pred"]).mean()), 4),
            "max_abs_diff": round(float(np.abs(a[probs].to_numpy() - b[probs].to_numpy()).max()),
                                  5)}


def bench_export(export: Path, args, rows, waves, out: Path) -> dict:
    from pipelines.common.tfenv import quiet_tensorflow
    from zoo.evaluation.evaluate import evaluate
    from zoo.export.lite import convert, source_size
    from zoo.inference.lite import LiteError, LiteRunner
    from zoo.export.check import synthetic_clip

    tf = quiet_tensorflow()
    reference, ref_pred = evaluate(export, rows, waves)
    signature = tf.saved_model.load(str(export)).signatures["serving_default"]
    clip = synthetic_clip(3.0, seed=3)
    result = {"export": str(export), "savedmodel": {
        "size_mb": round(source_size(export) / 1e6, 3), "ua": round(reference["ua"] * 100, 2)},
        "variants": []}
    float_size = None
    for variant in args.variants:
        quantize, int8 = VARIANTS[variant]
        folder = out / f"{export.parent.name}-{export.name}-{variant}"
        row = {"variant": variant}
        start = time.perf_counter()
        try:
            record = convert(export, folder, quantize, args.data, int8, progress=False)
        except LiteError as err:
            row["error"] = str(err)
            print(f"  {export} {variant}: {err}", flush=True)
            result["variants"].append(row)
            continue
        row["convert_s"] = round(time.perf_counter() - start, 1)
        size = record["size_bytes"]
        float_size = size if variant == "none" else float_size
        metrics, pred = evaluate(folder / "model.tflite", rows, waves)
        runner = LiteRunner(folder, threads=args.threads)
        times = latency({
            "litert": runner.predict_one,
            "savedmodel": lambda w: signature(waveform=tf.constant(w[None]))["probabilities"]
            .numpy()}, clip, args.repeat, args.warmup)
        row.update({
            "quantization": record["quantization"]["what"],
            "size_mb": round(size / 1e6, 3),
            "smaller_than_savedmodel": round(source_size(export) / size, 2),
            "smaller_than_float32_tflite": round(float_size / size, 2) if float_size else None,
            **agreement(ref_pred, pred),
            "ua": round(metrics["ua"] * 100, 2),
            "ua_diff_points": round((metrics["ua"] - reference["ua"]) * 100, 2),
            "latency_3s": times,
            "latency_ratio_litert_to_savedmodel": round(
                times["litert"]["p50_ms"] / times["savedmodel"]["p50_ms"], 2),
        })
        result["variants"].append(row)
        print(f"  {export} {variant}: {row['size_mb']} MB, same label {row['same_label']:.1%}, "
              f"UA {row['ua']} ({row['ua_diff_points']:+.2f}), 3 s p50 "
              f"{times['litert']['p50_ms']} vs {times['savedmodel']['p50_ms']} ms", flush=True)
    return result


def report(results: dict) -> str:
    lines = [f"{results['clips']} test clips of {results['data']}; LiteRT {results['threads']} "
             f"threads; load average {results['load_before']} before, "
             f"{results['load_after']} after", "",
             f"{'export':<32}{'variant':<11}{'MB':>7}{'x SM':>7}{'x f32':>7}{'same':>7}"
             f"{'UA':>7}{'dUA':>7}{'p50 lite':>10}{'p50 SM':>8}{'ratio':>7}"]
    for model in results["models"]:
        sm = model["savedmodel"]
        lines.append(f"{model['export']:<32}{'SavedModel':<11}{sm['size_mb']:>7.2f}"
                     f"{'':>21}{sm['ua']:>7.1f}")
        for row in model["variants"]:
            if "error" in row:
                lines.append(f"{'':<32}{row['variant']:<11}  failed: {row['error']}")
                continue
            f32 = row["smaller_than_float32_tflite"]
            lines.append(
                f"{'':<32}{row['variant']:<11}{row['size_mb']:>7.2f}"
                f"{row['smaller_than_savedmodel']:>7.1f}{(f32 or 0):>7.2f}"
                f"{row['same_label'] * 100:>6.1f}%{row['ua']:>7.1f}{row['ua_diff_points']:>+7.2f}"
                f"{row['latency_3s']['litert']['p50_ms']:>10.1f}"
                f"{row['latency_3s']['savedmodel']['p50_ms']:>8.1f}"
                f"{row['latency_ratio_litert_to_savedmodel']:>7.2f}")
    lines.append("")
    lines += results["verdicts"]
    return "\n".join(lines)


def verdicts(models: list[dict]) -> list[str]:
    """The issue's target for the int8 CNNs, against the float32 .tflite and the SavedModel."""
    out = []
    for model in models:
        if "cnn" not in model["export"] or "crnn" in model["export"]:
            continue
        for row in model["variants"]:
            if not row["variant"].startswith("int8") or "error" in row:
                continue
            out.append(f"{model['export']} {row['variant']}: UA {row['ua_diff_points']:+.2f} "
                       f"points, {verdict(abs(row['ua_diff_points']), TARGET_UA_POINTS, False)}; "
                       f"{row['smaller_than_float32_tflite']}x smaller than the float32 .tflite "
                       f"({row['smaller_than_savedmodel']}x than the SavedModel), "
                       f"{verdict(row['smaller_than_float32_tflite'] or 0, TARGET_SMALLER)}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="tfrecords/full", help="TFRecord set (relative: to "
                        "the current folder)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--models", nargs="+", default=list(MODELS),
                        help="export version folders (relative ones: to this checkout)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per path")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--keep", help="write the .tflite folders here (default: a temporary "
                                       "folder, removed)")
    parser.add_argument("--out", default="lite", help="bench/results/<out>.json")
    args = parser.parse_args(argv)
    if "none" in args.variants:  # the float32 .tflite first: the others' sizes are against it
        args.variants = ["none"] + [v for v in args.variants if v != "none"]

    from pipelines.common.tfenv import quiet_tensorflow

    tf = quiet_tensorflow()
    from zoo.evaluation.clips import clips_from_tfrecords
    from zoo.export.lite import litert_version

    load_before = load_average()
    args.models = [str(REPO / m) if not Path(m).is_absolute() else m for m in args.models]
    rows, waves = clips_from_tfrecords(args.data, args.split)
    with tempfile.TemporaryDirectory(prefix="bench-lite-") as tmp:
        out = Path(args.keep) if args.keep else Path(tmp)
        models = [bench_export(Path(m), args, rows, waves, out) for m in args.models]
    for model in models:  # paths as given, not this machine's absolute ones
        model["export"] = str(Path(model["export"]).relative_to(REPO)) \
            if Path(model["export"]).is_relative_to(REPO) else model["export"]
    results = {
        "versions": {"tensorflow": tf.__version__, "ai_edge_litert": litert_version()},
        "data": args.data, "split": args.split, "clips": len(waves), "threads": args.threads,
        "repeat": args.repeat, "warmup": args.warmup, "clip_seconds": 3.0,
        "load_before": load_before, "load_after": load_average(),
        "target": f"int8 CNN within {TARGET_UA_POINTS:g} point UA of the SavedModel and >= "
                  f"{TARGET_SMALLER:g}x smaller (than the float32 .tflite)",
        "models": models,
    }
    results["verdicts"] = verdicts(models)
    path = write_results(args.out, results, script="lite")
    print(report(results))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
