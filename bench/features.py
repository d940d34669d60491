"""Benchmark: on-graph batched features (tf.function, batches of 32) vs librosa, clip by clip.

    python bench/features.py [--clips 200] [--batch 32] [--repeats 5] [--corpora DIR]

Both sides compute the same features from the same real clips, already decoded in memory:
log-Mel (64 bands) and MFCC (40 coefficients + log energy) with n_fft 512, win 400, hop 160,
Slaney mel, top_db 80, no normalisation, no DC removal (the parity settings of
tests/test_features.py). The on-graph side runs zero-padded batches through one traced
tf.function on all cores; librosa runs one clip at a time, as per-clip code calls it. The two
sides alternate batch by batch and each side's time is the sum over batches of its best of
--repeats runs (see `timed`); CPU time is reported too, since TensorFlow uses every core and
librosa mostly one. Writes bench/results/features.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's pipelines

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from bench._common import (  # noqa: E402
    corpora_root, load_average, manifest, spread, verdict, versions, write_results,
)

SR, N_FFT, WIN, HOP, N_MELS, N_MFCC = 16000, 512, 400, 160, 64, 40
TARGET = 5.0


def librosa_logmel(y):
    import librosa

    mel = librosa.feature.melspectrogram(
        y=y, sr=SR, n_fft=N_FFT, win_length=WIN, hop_length=HOP, center=True,
        pad_mode="constant", power=2.0, n_mels=N_MELS, fmin=0.0, fmax=8000.0, htk=False,
        norm="slaney")
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0)


def librosa_mfcc(y):
    import librosa

    cepstra = librosa.feature.mfcc(S=librosa_logmel(y), n_mfcc=N_MFCC, dct_type=2, norm="ortho")
    rms = librosa.feature.rms(y=y, frame_length=N_FFT, hop_length=HOP, center=True,
                              pad_mode="constant")
    energy = librosa.power_to_db(rms ** 2, ref=1.0, amin=1e-10, top_db=80.0)
    return np.concatenate([cepstra, energy])


def batches(waves, size):
    """(clips, zero-padded [batch, samples], lengths) per batch of `size` clips."""
    out = []
    for start in range(0, len(waves), size):
        group = waves[start:start + size]
        batch = np.zeros((len(group), max(map(len, group))), np.float32)
        for i, w in enumerate(group):
            batch[i, :len(w)] = w
        out.append((group, batch, np.array([len(w) for w in group], np.int32)))
    return out


def timed(fns: dict, data, repeats: int):
    """Time each side batch by batch, alternating sides within every batch, so that the shared
    machine's changing load hits both alike. A side's time is the sum over batches of its best
    of `repeats` (the run least disturbed by other work); CPU seconds are summed the same way.
    One untimed warm-up pass first (tracing, lazy imports)."""
    for fn in fns.values():
        for batch in data:
            fn(batch)
    best = {name: [float("inf")] * len(data) for name in fns}
    cpu = {name: [float("inf")] * len(data) for name in fns}
    outputs = {name: [None] * len(data) for name in fns}
    for _ in range(repeats):
        for k, batch in enumerate(data):
            for name, fn in fns.items():
                c, t = time.process_time(), time.perf_counter()
                out = fn(batch)
                t, c = time.perf_counter() - t, time.process_time() - c
                if t < best[name][k]:
                    best[name][k], cpu[name][k] = t, c
                outputs[name][k] = out
    return {name: (sum(best[name]), sum(cpu[name]), [x for o in outputs[name] for x in o])
            for name in fns}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--corpora", default=None, help="the shared corpora folder")
    args = parser.parse_args(argv)

    import soundfile as sf

    from pipelines.common.tfenv import quiet_tensorflow

    tf = quiet_tensorflow()
    from pipelines.features import extract as F
    from pipelines.features.spec import FeatureSpec, logmel_spec, mfcc_spec

    root = corpora_root(args.corpora)
    rows = spread(manifest(root), args.clips)
    waves = [sf.read(root / p, dtype="float32")[0] for p in rows["relpath"]]
    seconds = sum(map(len, waves)) / SR
    data = batches(waves, args.batch)
    load_before = load_average()

    specs = {
        "logmel": logmel_spec(normalization="none", remove_dc=False),
        "mfcc": mfcc_spec(normalization="none", remove_dc=False),
        "logmel, zoo default spec (DC removal, per-utterance normalisation)": FeatureSpec(),
    }
    reference = {"logmel": librosa_logmel, "mfcc": librosa_mfcc}
    signature = [tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None], tf.int32)]
    results = {}
    for name, spec in specs.items():
        graph = tf.function(lambda w, n, spec=spec: F.compute(w, n, spec),
                            input_signature=signature)

        def run_graph(batch, graph=graph):
            _, padded, lengths = batch
            feats, frames = graph(padded, lengths)
            feats, frames = feats.numpy(), frames.numpy()
            return [feats[i, :frames[i]] for i in range(len(frames))]

        fns = {"graph": run_graph}
        if name in reference:
            fns["librosa"] = lambda batch, ref=reference[name]: [ref(w) for w in batch[0]]
        timing = timed(fns, data, args.repeats)
        graph_s, graph_cpu, graph_out = timing["graph"]
        entry = {"graph_seconds": round(graph_s, 4), "graph_cpu_seconds": round(graph_cpu, 4),
                 "graph_clips_per_s": round(len(waves) / graph_s, 1)}
        if name in reference:
            lib_s, lib_cpu, lib_out = timing["librosa"]
            r = min(float(np.corrcoef(g.ravel(), l.T.ravel())[0, 1])
                    for g, l in zip(graph_out, lib_out))
            entry.update({
                "librosa_seconds": round(lib_s, 4), "librosa_cpu_seconds": round(lib_cpu, 4),
                "librosa_clips_per_s": round(len(waves) / lib_s, 1),
                "speedup": round(lib_s / graph_s, 2), "target_speedup": TARGET,
                "target_met": lib_s / graph_s >= TARGET,
                "cpu_ratio": round(lib_cpu / graph_cpu, 2), "min_pearson_r": round(r, 6),
            })
        results[name] = entry

    print(f"\nFeatures: {len(waves)} real clips ({seconds / 60:.1f} min of audio) from "
          f"{', '.join(sorted(set(rows['corpus'])))}; on-graph batches of {args.batch}; "
          f"per batch, best of {args.repeats} runs, sides alternating")
    print(f"{'':44s}{'clips/s':>9s}{'x realtime':>12s}{'CPU ms/clip':>13s}")
    for name, e in results.items():
        label = "log-Mel 64" if name == "logmel" else "MFCC 40 + log energy" \
            if name == "mfcc" else name
        print(f"{label}")
        print(f"  {'on-graph (tf.function, batched)':42s}{e['graph_clips_per_s']:9.1f}"
              f"{seconds / e['graph_seconds']:11.0f}x"
              f"{1000 * e['graph_cpu_seconds'] / len(waves):13.2f}")
        if "librosa_clips_per_s" in e:
            print(f"  {'librosa (one clip at a time)':42s}{e['librosa_clips_per_s']:9.1f}"
                  f"{seconds / e['librosa_seconds']:11.0f}x"
                  f"{1000 * e['librosa_cpu_seconds'] / len(waves):13.2f}")
            print(f"  speed-up {e['speedup']:.1f}x "
                  f"({verdict(e['speedup'], TARGET, unit='x')}); "
                  f"same values: min Pearson r {e['min_pearson_r']:.6f}")
    load_after = load_average()
    print(f"load average before/after: {load_before} / {load_after} "
          f"(the machine is shared; {len(__import__('os').sched_getaffinity(0))} cores)")
    path = write_results("features", {
        "clips": len(waves), "audio_seconds": round(seconds, 1), "batch": args.batch,
        "repeats": args.repeats,
        "corpora": {c: int(n) for c, n in rows["corpus"].value_counts().items()},
        "settings": {"n_fft": N_FFT, "win_length": WIN, "hop_length": HOP, "n_mels": N_MELS,
                     "n_mfcc": N_MFCC, "top_db": 80.0, "mel": "slaney"},
        "results": results, "load_average_before": load_before, "load_average_after": load_after,
        "versions": versions("tensorflow", "librosa", "numpy"),
    })
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
