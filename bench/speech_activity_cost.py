"""bench/speech_activity.py's cost measurement (speech activity's share of a CNN's serving
time) and its per-frame figure; run through `python bench/speech_activity.py`."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench._common import REPO, load_average

COST_TARGET = 0.10  # share of a CNN's serving time


class BenchError(RuntimeError):
    """Bad usage or unusable input: one line, exit status 2."""


# ---------------------------------------------------------------- cost

def latest_export(base: Path) -> Path | None:
    versions_ = [p for p in base.iterdir() if p.name.isdigit()] if base.is_dir() else []
    return max(versions_, key=lambda p: int(p.name)) if versions_ else None


def cost(table: pd.DataFrame, repeats: int) -> dict:
    """Median / p95 ms per call of each path on 3 s clips, batch 1 and 32, interleaved."""
    import keras
    import tensorflow as tf

    import zoo.models.layers  # noqa: F401 - the zoo's custom layers, for model.keras
    from pipelines.features import extract as F
    from pipelines.audio import speech_activity as S
    from pipelines.audio.decode import load
    from pipelines.features.spec import FeatureSpec
    from zoo.models import zoo_mfcc_spec

    spec = zoo_mfcc_spec()
    sig = [tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None], tf.int32)]

    def graph(fn, jit=False):
        return tf.function(fn, input_signature=sig, jit_compile=jit)

    paths = {"speech_ratio": graph(lambda w, n: S.speech_ratio(w, n)),
             "speech_ratio_xla": graph(lambda w, n: S.speech_ratio(w, n), jit=True),
             "features": graph(lambda w, n: F.compute(w, n, spec)[0])}
    served = []
    for name in ("mfcc_cnn", "logmel_cnn"):
        export = latest_export(REPO / "savedmodels" / name)
        if export is None or not (export / "model.keras").is_file():
            continue
        label = f"{name}/{export.name}"
        model = keras.models.load_model(export / "model.keras")
        model_spec = FeatureSpec.load(export / "assets" / "feature_spec.json")
        paths[f"{label} network"] = graph(
            lambda w, n, m=model, sp=model_spec: m(F.compute(w, n, sp)[0], training=False))
        paths[f"{label} network + speech_ratio"] = graph(
            lambda w, n, m=model, sp=model_spec: (m(F.compute(w, n, sp)[0], training=False),
                                                  S.speech_ratio(w, n)))
        paths[f"{label} serving_default"] = tf.saved_model.load(str(export)).signatures[
            "serving_default"]
        served.append(label)
    long = table[table["corpus"] == "ravdess"]["path"].head(64)
    clips = [w[:48000] for w in (load(p) for p in long) if len(w) >= 48000][:32]
    if not clips:
        raise BenchError("no RAVDESS clip of 3 s or more to time")
    clips = (clips * 32)[:32]  # a short --limit may leave fewer than 32
    out = {"clip_seconds": 3.0, "load_average_before": load_average(), "batches": {},
           "note": "'network' = features + the export's model.keras in one tf.function (what "
                   "serving_default computes, without its request checks); 'network + "
                   "speech_ratio' adds the speech activity to the same graph, as an export "
                   "would: the difference is what it adds to a request"}
    for size in (1, 32):
        wave = tf.constant(np.stack(clips[:size]))
        length = tf.constant(np.full(size, 48000, np.int32))

        def call(fn):
            if getattr(fn, "structured_input_signature", None) and \
                    "waveform" in fn.structured_input_signature[1]:
                return lambda: fn(waveform=wave)["probabilities"].numpy()
            return lambda: tf.nest.map_structure(lambda t: t.numpy(), fn(wave, length))

        calls = {name: call(fn) for name, fn in paths.items()}
        for run in calls.values():  # warm-up: tracing, compilation, caches
            run()
            run()
        times = {name: [] for name in calls}
        rounds = repeats if size == 1 else max(10, repeats // 5)
        for _ in range(rounds):
            for name, run in calls.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        ms = {name: {"median_ms": float(np.median(t) * 1000),
                     "p95_ms": float(np.percentile(t, 95) * 1000)} for name, t in times.items()}
        med = {name: v["median_ms"] for name, v in ms.items()}
        ratios = {"speech_ratio / features": med["speech_ratio"] / med["features"],
                  "speech_ratio_xla / features": med["speech_ratio_xla"] / med["features"]}
        for label in served:
            base = med[f"{label} network"]
            ratios[f"added by speech_ratio / {label} network"] = \
                (med[f"{label} network + speech_ratio"] - base) / base
            ratios[f"speech_ratio alone / {label} serving_default"] = \
                med["speech_ratio"] / med[f"{label} serving_default"]
        out["batches"][str(size)] = {"calls": rounds, "ms": ms, "ratios": ratios}
    out["load_average_after"] = load_average()
    return out


# ---------------------------------------------------------------- figure

def figure(path: Path, table: pd.DataFrame, params) -> None:
    """Per-frame cues and decisions of a tuning RAVDESS clip, a word inside a melody and a
    chord sequence."""
    from pipelines.audio import speech_activity as S
    from pipelines.audio.decode import load
    from pipelines.common.figures import pyplot, save_png
    from pipelines.audio.synthetic import make, with_word

    examples = [("RAVDESS Actor_01 (speech)", load(table[table["part"] == "tune"]["path"]
                                                   .iloc[0])),
                ("a word inside a melody, SNR 20 dB",
                 with_word("melody", 0, 4.0, snr_db=20.0).waveform),
                ("chords (no speech)", make("chord", 0, 4.0).waveform)]
    plt = pyplot()
    fig, axes = plt.subplots(len(examples), 1, figsize=(8, 2.6 * len(examples)))
    for ax, (title, wave) in zip(axes, examples):
        out = {k: v.numpy()[0] for k, v in S.analyse(wave[None], [len(wave)], params).items()}
        t = np.arange(int(out["num_frames"])) * params.frame_seconds
        ax.plot(t, out["energy_db"], color="black", linewidth=1, label="energy (dB)")
        ax.axhline(float(out["threshold_db"]), color="gray", linestyle="--", linewidth=1,
                   label="activity threshold")
        ax.set_ylim(-100, 0)
        ax.set_ylabel("dB")
        twin = ax.twinx()
        twin.plot(t, out["voicing"], color="#4C72B0", linewidth=1, label="voicing")
        twin.axhline(params.voicing_min, color="#4C72B0", linestyle=":", linewidth=1)
        twin.set_ylim(-0.05, 1.05)
        for key, color, y in (("tonal", "#C44E52", 0.96), ("steady", "#DD8452", 0.9)):
            hit = out[key] > 0
            twin.scatter(t[hit], np.full(hit.sum(), y), s=6, color=color, label=key)
        ax.fill_between(t, -100, 0, where=out["speech"] > 0, color="#55A868", alpha=0.25,
                        step="mid", label="speech frame")
        ax.set_title(f"{title}: speech_ratio {float(out['speech_ratio']):.2f}", fontsize=9)
        ax.set_xlim(0, t[-1])
        lines = ax.get_legend_handles_labels()
        extra = twin.get_legend_handles_labels()
        ax.legend(lines[0] + extra[0], lines[1] + extra[1], fontsize=7, loc="lower right",
                  ncol=3)
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    save_png(fig, path)
