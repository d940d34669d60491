"""Serving latency and throughput: the exported SavedModel's signature against the notebook path
(librosa features on numpy, normalised per utterance, then the Keras model), same model, same
clips, same process.

    python bench/serving.py [--root savedmodels] [--repeat 30] [--warmup 5] [--batch 32]
                            [--batches 5] [--out bench/results/serving.json]

Models: the highest version of every model under --root (shipped); if none is there, an
untrained export of each registered features model (the output says which). Clips: fixed
synthetic speech-like clips (zoo.export.check.synthetic_clip) of 1 s, 3 s and 10 s.

- Latency, batch 1: p50 / p95 milliseconds of one request per clip length, from numpy in to
  probabilities out, for (a) the loaded SavedModel's serving_default signature (what TF Serving
  runs, features computed in the graph), (b) librosa features + `model(x)` and (c) librosa
  features + `model.predict(x)`. The three are called in turn within every repetition (the
  order rotating), so the load of this shared machine falls on all of them alike.
- Throughput, batch 32 of 3 s clips: clips per second, the median of --batches batches, for
  (a) one signature call on [32, samples] and (b, c) 32 librosa feature extractions + one
  `model(x)` / `model.predict(x)` call.
- Agreement on the 3 s clip: max |difference| of the features (graph vs librosa) and of the
  probabilities (a) vs (b), a check that both paths compute the same thing.

Warm-up calls (tracing, lazy imports, caches) come first and are not timed. Threads are
TensorFlow's defaults (all cores), as TF Serving's. The machine's load average is recorded:
numbers from a busy machine are slower than from a quiet one, ratios within a run hold.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's zoo and pipelines

import argparse  # noqa: E402
import datetime  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

DURATIONS = (1.0, 3.0, 10.0)
TARGET_MS = 10.0  # p50 for a 3 s clip, CNN models
WHISPER_TARGET_MS = 150.0  # p50 for a 3 s clip, Whisper models
LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


# ---------------------------------------------------------------- the notebook path

def librosa_features(wave: np.ndarray, spec) -> np.ndarray:
    """[T, C] features the way a notebook computes them: librosa on numpy, per clip (Whisper's
    log-Mel: transformers' WhisperFeatureExtractor, cut to the clip's frames)."""
    import librosa

    y = wave - wave.mean() if spec.remove_dc else wave
    if spec.kind == "whisper_logmel":
        return whisper_features(y, spec)
    if spec.trim_db is not None:
        y, _ = librosa.effects.trim(y, top_db=spec.trim_db, frame_length=spec.n_fft,
                                    hop_length=spec.hop_length)
    mel = librosa.feature.melspectrogram(
        y=y, sr=spec.sample_rate, n_fft=spec.n_fft, win_length=spec.win_length,
        hop_length=spec.hop_length, center=True, pad_mode="constant", power=2.0,
        n_mels=spec.n_mels, fmin=spec.fmin, fmax=spec.fmax)
    feats = librosa.power_to_db(mel, ref=1.0, amin=spec.log_floor, top_db=spec.top_db)
    if spec.kind == "mfcc":
        cepstra = librosa.feature.mfcc(S=feats, n_mfcc=spec.n_mfcc, dct_type=2, norm="ortho")
        rms = librosa.feature.rms(y=y, frame_length=spec.n_fft, hop_length=spec.hop_length,
                                  center=True, pad_mode="constant")
        energy = librosa.power_to_db(rms ** 2, ref=1.0, amin=spec.log_floor,
                                     top_db=spec.top_db)
        feats = np.concatenate([cepstra, energy])
    feats = feats.T
    if spec.normalization == "utterance":
        feats = (feats - feats.mean(axis=0)) / np.sqrt(feats.var(axis=0) + 1e-5)
    return feats.astype(np.float32)


_EXTRACTORS: dict = {}


def whisper_features(y: np.ndarray, spec) -> np.ndarray:
    import librosa

    if spec.trim_db is not None:
        y, _ = librosa.effects.trim(y, top_db=spec.trim_db, frame_length=spec.n_fft,
                                    hop_length=spec.hop_length)
    if spec.n_mels not in _EXTRACTORS:
        from transformers import WhisperFeatureExtractor

        _EXTRACTORS[spec.n_mels] = WhisperFeatureExtractor(feature_size=spec.n_mels)
    mel = _EXTRACTORS[spec.n_mels](y, sampling_rate=spec.sample_rate,
                                   return_tensors="np").input_features[0]
    return mel.T[:1 + len(y) // spec.hop_length].astype(np.float32)


# ---------------------------------------------------------------- models

def shipped_models(root: Path) -> dict[str, Path]:
    from zoo.export.layout import read_export, resolve_version
    from zoo.export.serving import ServingError, find_models

    try:
        found = find_models(root)
    except ServingError:
        return {}
    out = {}
    for name, folder in found.items():
        version = resolve_version(folder)
        if "feature_spec" in read_export(version):
            out[name] = version
    return out


def untrained_models(base: Path, only=None) -> dict[str, Path]:
    import keras

    from zoo.export.savedmodel import export
    from zoo.models.registry import build_model, get_entry, list_models

    out = {}
    for name in list_models():
        entry = get_entry(name)
        if entry.input != "features" or (only and name not in only):
            continue
        keras.utils.set_random_seed(0)
        spec = entry.default_spec()
        model = build_model(name, len(LABELS), spec)
        out[name] = export(model, spec, LABELS, base, name, card="untrained, for benchmarking")
        print(f"  exported untrained {name}", flush=True)
    return out


# ---------------------------------------------------------------- timing

def clock(fn):
    c, t = time.process_time(), time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000


def paths_for(signature, model, spec):
    """name -> fn(batch of 1-D waveforms of equal length) -> probabilities [n, classes]."""
    import tensorflow as tf

    def graph(waves):
        out = signature(waveform=tf.constant(np.stack(waves)))
        if "logits" not in out:
            return out["probabilities"].numpy()
        # exports with reliability outputs calibrate `probabilities`; the model's own (what the
        # librosa paths compute) are softmax(logits)
        logits = out["logits"].numpy()
        p = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return p / p.sum(axis=-1, keepdims=True)

    def eager(waves):
        x = np.stack([librosa_features(w, spec) for w in waves])
        return np.asarray(model(x, training=False))

    def predict(waves):
        x = np.stack([librosa_features(w, spec) for w in waves])
        return model.predict(x, batch_size=len(waves), verbose=0)

    return {"savedmodel_signature": graph, "librosa_model_call": eager,
            "librosa_model_predict": predict}


def latency(paths: dict, clip: np.ndarray, repeat: int, warmup: int) -> dict:
    for _ in range(warmup):
        for fn in paths.values():
            fn([clip])
    wall = {name: [] for name in paths}
    cpu = {name: [] for name in paths}
    names = list(paths)
    for i in range(repeat):
        for name in names[i % len(names):] + names[:i % len(names)]:
            _, w, c = clock(lambda: paths[name]([clip]))
            wall[name].append(w)
            cpu[name].append(c)
    return {name: {"p50_ms": round(float(np.percentile(wall[name], 50)), 2),
                   "p95_ms": round(float(np.percentile(wall[name], 95)), 2),
                   "cpu_ms_p50": round(float(np.percentile(cpu[name], 50)), 2)}
            for name in paths}


def throughput(paths: dict, clips: list[np.ndarray], batches: int) -> dict:
    for fn in paths.values():
        fn(clips)
    wall = {name: [] for name in paths}
    cpu = {name: [] for name in paths}
    names = list(paths)
    for i in range(batches):
        for name in names[i % len(names):] + names[:i % len(names)]:
            _, w, c = clock(lambda: paths[name](clips))
            wall[name].append(w)
            cpu[name].append(c)
    return {name: {"clips_per_s": round(len(clips) / (np.median(wall[name]) / 1000), 1),
                   "ms_per_batch_median": round(float(np.median(wall[name])), 1),
                   "cpu_ms_per_clip": round(float(np.median(cpu[name])) / len(clips), 2)}
            for name in paths}


def bench_model(name: str, folder: Path, args) -> dict:
    import keras
    import tensorflow as tf

    import zoo.models.layers  # noqa: F401 - custom layers for loading model.keras
    from pipelines.features import extract as F
    from pipelines.features.spec import FeatureSpec
    from zoo.export.layout import SIGNATURE_DEFAULT, read_export
    from zoo.export.check import synthetic_clip

    info = read_export(folder)
    spec = FeatureSpec.from_dict(info["feature_spec"])
    signature = tf.saved_model.load(str(folder)).signatures[SIGNATURE_DEFAULT]
    model = keras.models.load_model(folder / "model.keras", safe_mode=True)
    paths = paths_for(signature, model, spec)
    result = {"model": name, "export": str(folder), "latency_batch1": {}}
    for seconds in DURATIONS:
        clip = synthetic_clip(seconds, seed=int(seconds))
        result["latency_batch1"][f"{seconds:g}s"] = latency(paths, clip, args.repeat,
                                                            args.warmup)
        print(f"  {name} {seconds:g} s done", flush=True)
    clip = synthetic_clip(3.0, seed=3)
    graph_features, _ = F.compute(clip[None], np.array([len(clip)], np.int32), spec)
    result["agreement_3s"] = {
        "features_max_abs_diff": round(float(np.abs(
            graph_features.numpy()[0] - librosa_features(clip, spec)).max()), 6),
        "probabilities_max_abs_diff": round(float(np.abs(
            paths["savedmodel_signature"]([clip]) - paths["librosa_model_call"]([clip])).max()),
            6),
    }
    clips = [synthetic_clip(3.0, seed=100 + i) for i in range(args.batch)]
    result[f"throughput_batch{args.batch}_3s"] = throughput(paths, clips, args.batches)
    return result


# ---------------------------------------------------------------- report

def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def report(results: dict) -> str:
    short = {"savedmodel_signature": "SavedModel signature", "librosa_model_call":
             "librosa + model(x)", "librosa_model_predict": "librosa + model.predict"}
    lines = [f"models: {results['models_source']}; load average {results['load_before']} "
             f"before, {results['load_after']} after; {results['machine']['cores']} cores", ""]
    batch_key = f"throughput_batch{results['batch']}_3s"
    head = f"{'model':<18}{'path':<26}" + "".join(f"{d:g} s p50/p95 ms".rjust(20)
                                                  for d in DURATIONS)
    lines += [head, f"{'':<44}" + f"batch {results['batch']} x 3 s: clips/s".rjust(60)]
    for r in results["models"]:
        for path, label in short.items():
            cells = "".join(f"{r['latency_batch1'][f'{d:g}s'][path]['p50_ms']:>10.1f} /"
                            f"{r['latency_batch1'][f'{d:g}s'][path]['p95_ms']:>7.1f}"
                            for d in DURATIONS)
            lines.append(f"{r['model']:<18}{label:<26}{cells}"
                         f"{r[batch_key][path]['clips_per_s']:>12.1f}")
        signature = {d: r["latency_batch1"][f"{d:g}s"]["savedmodel_signature"] for d in DURATIONS}
        cpu = ", ".join(f"{d:g} s {signature[d]['cpu_ms_p50']:.1f}" for d in DURATIONS)
        lines.append(f"{'':<18}SavedModel signature, CPU ms per request (p50, all threads): "
                     f"{cpu}; batch {results['batch']}: "
                     f"{r[batch_key]['savedmodel_signature']['cpu_ms_per_clip']:.1f} per clip")
        agree = r["agreement_3s"]
        lines.append(f"{'':<18}3 s clip, graph vs librosa: features max |diff| "
                     f"{agree['features_max_abs_diff']:.2g}, probabilities max |diff| "
                     f"{agree['probabilities_max_abs_diff']:.2g}")
    lines.append("")
    for r in results["models"]:
        target = WHISPER_TARGET_MS if "whisper" in r["model"] else \
            TARGET_MS if "cnn" in r["model"] and "crnn" not in r["model"] else None
        if target is not None:
            p50 = r["latency_batch1"]["3s"]["savedmodel_signature"]["p50_ms"]
            lines.append(f"target p50 <= {target:g} ms for a 3 s clip, {r['model']}: "
                         f"{p50:.1f} ms, {'met' if p50 <= target else 'NOT met'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(REPO / "savedmodels"))
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per clip length")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=5, help="timed batches (throughput)")
    parser.add_argument("--only", nargs="*", help="model names to run (default all)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "serving.json"))
    args = parser.parse_args(argv)

    from pipelines.common.tfenv import quiet_tensorflow

    tf = quiet_tensorflow()
    import keras
    import librosa

    from pipelines.common.io import write_json_atomic

    load_before = load_average()
    models = shipped_models(Path(args.root))
    source = f"shipped, highest version under {args.root}"
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        if not models:
            source = (f"none shipped under {args.root}: untrained exports of every registered "
                      "features model (same architecture and graph, random weights)")
            print(source, flush=True)
            models = untrained_models(Path(tmp), args.only)
        if args.only:
            models = {k: v for k, v in models.items() if k in args.only}
        rows = [bench_model(name, folder, args) for name, folder in models.items()]
    results = {
        "benchmark": "serving",
        "command": " ".join(["python bench/serving.py",
                             *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
                    "platform": platform.platform()},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "librosa": librosa.__version__, "numpy": np.__version__},
        "models_source": source,
        "load_before": load_before,
        "load_after": load_average(),
        "repeat": args.repeat, "warmup": args.warmup, "batch": args.batch,
        "target": f"p50 <= {TARGET_MS:g} ms for a 3 s clip with the CNN models "
                  "(SavedModel signature, batch 1)",
        "models": rows,
    }
    write_json_atomic(args.out, results)
    print(report(results))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
