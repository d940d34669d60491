"""Benchmark: Whisper tiny.en embedding extraction per 3 s clip on this machine's CPUs, in both
contexts, against CTranslate2's encoder in the same process.

    nice python bench/whisper_extract.py [--clips 16] [--repeats 2] [--min-pass-seconds 1]
        [--corpora DIR] [--no-30s-batch1]
        -> bench/results/whisper_extract.json

The zoo's side is the code path of `python -m pipelines.embeddings --encoder whisper`
(pipelines/encoders/whisper_extract.py): the packaged checkpoint's converted weights
(load_weights, float16 variables, float32 compute), WhisperEncoder.from_weights, make_runner's
tf.function (log-Mel on the graph from the FeatureSpec, encoder, mean/std of all 5 hidden
states = 3840 numbers per clip) driven by pipelines.embeddings.embed_clips on int16 clips as
read from a waveform set. Timed: context `clip` (the default) at batch 1 and 8, context `30s`
at batch 8 and 1.

Baseline, same process, same clips: CTranslate2's `Whisper(<packaged folder>,
compute_type="float32").encode(StorageView.from_array(mel), to_cpu=True)` on each clip's 30 s
log-Mel [B, 80, 3000], at batch 1 and 8 (intra_threads = the cores available, as TensorFlow
uses). The mel is made outside the timing by the zoo's front end, padded to 3000 frames with
Whisper's silence value (equal to WhisperFeatureExtractor's, tests/test_whisper.py), so the
baseline is encoder only while the zoo's figures include front end and pooling. Also timed for
reference: CTranslate2 on the clip's own 301 frames (what context `clip` computes).

Clips: real RAVDESS clips cut or zero-padded to exactly 3 s (pipelines.audio.decode.load) when the
shared corpora are there, synthetic noise otherwise (the JSON says which). Each configuration's
first call (tracing, allocation, one batch's compute) is timed apart; then --repeats passes,
the configurations interleaved within each pass so that a change of machine load hits all of
them, a pass repeating the clip set until it lasts --min-pass-seconds (1), best pass kept. Per
clip: wall ms, process CPU ms (all threads), ratios vs the CTranslate2 30 s baseline at the
same batch size and vs context `clip` at the same batch size. A check that both sides
compute the same thing (last layer's mean over the clip's frames, zoo vs CTranslate2) is
recorded. The machine is shared: load average before and after is recorded with the figures.
Target (the issue): <= 0.3 s wall per 3 s clip at batch 8 on 2 cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's pipelines

import argparse  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from bench._common import (  # noqa: E402
    CORPORA, load_average, manifest, spread, verdict, versions, write_results,
)

SR = 16000
CLIP_SECONDS = 3.0
TARGET_S = 0.3  # wall seconds per 3 s clip at batch 8 on 2 cores (the issue)
WINDOW = 3000   # Whisper's 30 s of 10 ms mel frames


def load_clips(n: int, corpora: str | None) -> tuple[np.ndarray, dict]:
    """[n, 48000] float32 clips and where they came from."""
    samples = int(CLIP_SECONDS * SR)
    root = Path(corpora) if corpora else CORPORA
    if (root / "MANIFEST.csv").is_file():
        from pipelines.audio.decode import load

        rows = manifest(root)
        rows = spread(rows[rows["corpus"] == "ravdess"].sort_values("relpath"), n)
        waves = []
        for rel in rows["relpath"]:
            w = load(root / rel)[:samples]
            waves.append(np.pad(w, (0, samples - len(w))))
        source = {"kind": "real", "corpus": "ravdess", "root": str(root),
                  "files": list(rows["relpath"]),
                  "how": "pipelines.audio.decode.load (16 kHz mono), first 3 s (zero-padded if "
                         "shorter)"}
        return np.stack(waves).astype(np.float32), source
    rng = np.random.default_rng(0)
    return (0.1 * rng.standard_normal((n, samples))).astype(np.float32), \
        {"kind": "synthetic", "how": "Gaussian noise, std 0.1, seed 0"}


def to_int16(waves: np.ndarray) -> np.ndarray:
    """As a waveform set stores them (pipelines.build: int16 PCM)."""
    return np.clip(np.round(waves * 32767), -32768, 32767).astype(np.int16)


def timed(fn, min_seconds: float = 0.0) -> tuple[float, float, int]:
    """(wall, CPU) seconds of one call of fn, averaged over as many calls as fill min_seconds
    (so the fast configurations are not timed on a few milliseconds), and the call count."""
    wall, cpu, calls = time.perf_counter(), time.process_time(), 0
    while True:
        fn()
        calls += 1
        if time.perf_counter() - wall >= min_seconds:
            break
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls, calls


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=16,
                        help="clips timed per configuration (16: two batches of 8)")
    parser.add_argument("--repeats", type=int, default=2, help="best of N passes (2)")
    parser.add_argument("--min-pass-seconds", type=float, default=1.0,
                        help="a pass over the clips is repeated until it lasts this long (1)")
    parser.add_argument("--corpora", help="the shared corpora (default ../shared/corpora)")
    parser.add_argument("--no-30s-batch1", action="store_true",
                        help="leave out context 30s at batch 1 (the slowest row)")
    args = parser.parse_args(argv)

    from pipelines.common.tfenv import quiet_tensorflow

    tf = quiet_tensorflow()
    import ctranslate2

    from pipelines.features import extract as F
    from pipelines.encoders.extract import embed_clips
    from pipelines.encoders.whisper import WhisperEncoder
    from pipelines.encoders.whisper_checkpoint import load_weights, packaged_folder
    from pipelines.encoders.whisper_extract import DEFAULT_TRIM_DB, make_runner, \
        whisper_spec_for

    cores = len(os.sched_getaffinity(0))
    load_before = load_average()
    waves, source = load_clips(args.clips, args.corpora)
    pcm = to_int16(waves)
    n = len(pcm)
    clips = [{"pcm": p} for p in pcm]
    print(f"{n} clips of {CLIP_SECONDS:g} s ({source['kind']}), {cores} cores, "
          f"load {load_before}", flush=True)

    # ---- the zoo's path (pipelines.encoders.whisper_extract)
    weights = load_weights(progress=None)
    spec = whisper_spec_for(weights, DEFAULT_TRIM_DB)
    runners = {ctx: make_runner(WhisperEncoder.from_weights(weights, context=ctx), spec, None)
               for ctx in ("clip", "30s")}

    def zoo(ctx, batch, count=n):
        return lambda: embed_clips(runners[ctx], clips[:count], ["all"], batch, False,
                                   "float16")

    # ---- CTranslate2 baseline on the same clips' log-Mel (made here, not timed)
    floats = pcm.astype(np.float32) / 32768.0  # what embed_clips feeds the graph
    feats, frames = F.compute(floats, np.full(n, floats.shape[1], np.int32), spec)
    feats = feats.numpy()                                               # [n, 301, 80]
    peak = feats.reshape(n, -1).max(axis=1)
    mel30 = np.empty((n, WINDOW, feats.shape[2]), np.float32)
    mel30[:] = (peak - 2.0)[:, None, None]                              # Whisper's silence
    mel30[:, :feats.shape[1]] = feats
    mel30 = np.ascontiguousarray(mel30.transpose(0, 2, 1))              # [n, 80, 3000]
    mel_clip = np.ascontiguousarray(feats.transpose(0, 2, 1))           # [n, 80, 301]
    folder = packaged_folder()
    ct2 = ctranslate2.models.Whisper(str(folder), compute_type="float32", intra_threads=cores)

    def ct2_run(mel, batch, count=n):
        def go():
            for i in range(0, count, batch):
                out = ct2.encode(ctranslate2.StorageView.from_array(
                    np.ascontiguousarray(mel[i:min(i + batch, count)])), to_cpu=True)
                np.asarray(out)
        return go

    configs = [  # (key, what, context, batch, function of (batch, count))
        ("ct2_30s_b1", "ctranslate2 encode, 30 s mel (baseline)", "30s", 1,
         lambda b, c=n: ct2_run(mel30, b, c)),
        ("ct2_30s_b8", "ctranslate2 encode, 30 s mel (baseline)", "30s", 8,
         lambda b, c=n: ct2_run(mel30, b, c)),
        ("ct2_clip_b8", "ctranslate2 encode, clip's own 301 frames (reference)", "clip", 8,
         lambda b, c=n: ct2_run(mel_clip, b, c)),
        ("zoo_clip_b1", "zoo, context clip (default)", "clip", 1, lambda b, c=n: zoo("clip", b, c)),
        ("zoo_clip_b8", "zoo, context clip (default)", "clip", 8, lambda b, c=n: zoo("clip", b, c)),
        ("zoo_30s_b8", "zoo, context 30s", "30s", 8, lambda b, c=n: zoo("30s", b, c)),
    ]
    if not args.no_30s_batch1:
        configs.append(("zoo_30s_b1", "zoo, context 30s", "30s", 1,
                        lambda b, c=n: zoo("30s", b, c)))

    # first call of each configuration: one batch (tracing for the zoo's tf.function)
    first = {}
    for key, _, _, batch, make in configs:
        first[key] = timed(make(batch, min(batch, n)))[0]
        print(f"first call {key}: {first[key]:.2f} s (batch {min(batch, n)})", flush=True)

    best = {}
    for rep in range(args.repeats):
        for key, _, _, batch, make in configs:
            wall, cpu, calls = timed(make(batch), args.min_pass_seconds)
            if key not in best or wall < best[key][0]:
                best[key] = (wall, cpu, calls)
            print(f"pass {rep + 1} {key}: {1000 * wall / n:.1f} ms/clip wall, "
                  f"{1000 * cpu / n:.1f} ms/clip CPU ({calls} x {n} clips)", flush=True)

    # same thing computed? last layer's mean over the clip's encoder frames
    out30 = np.asarray(ct2.encode(ctranslate2.StorageView.from_array(mel30), to_cpu=True))
    outclip = np.asarray(ct2.encode(ctranslate2.StorageView.from_array(mel_clip), to_cpu=True))
    d = weights.config["d_model"]
    last = slice(weights.config["n_layers"] * 2 * d, weights.config["n_layers"] * 2 * d + d)
    check = {}
    for ctx, ref in (("clip", outclip), ("30s", out30)):
        pooled, _, counts = runners[ctx](floats, np.full(n, floats.shape[1], np.int32))
        counts = counts.numpy()
        ours = pooled[0].numpy()[:, last]
        theirs = np.stack([ref[i, :counts[i]].mean(axis=0) for i in range(n)])
        check[ctx] = {"encoder_frames_pooled": int(counts[0]),
                      "max_abs_diff": float(np.abs(ours - theirs).max()),
                      "mean_abs_value": float(np.abs(theirs).mean())}

    load_after = load_average()
    rows = []
    for key, what, ctx, batch, _ in configs:
        wall, cpu, calls = best[key]
        ms = 1000 * wall / n
        base = best[f"ct2_30s_b{batch}"][0]
        clip_key = f"zoo_clip_b{batch}"
        rows.append({
            "key": key, "what": what, "context": ctx, "batch_size": batch, "clips_timed": n,
            "repeats": args.repeats, "clip_sets_per_pass": calls, "ms_per_clip": round(ms, 1),
            "cpu_ms_per_clip": round(1000 * cpu / n, 1),
            "cpu_over_wall": round(cpu / wall, 2),  # about 2 = both cores were ours
            "realtime_factor": round(ms / 1000 / CLIP_SECONDS, 3),
            "vs_ctranslate2_30s": round(wall / base, 2),
            "vs_zoo_clip": round(wall / best[clip_key][0], 2) if clip_key in best else None,
            "first_call_seconds": round(first[key], 2),
            "first_call_batch": min(batch, n)})

    by_key = {r["key"]: r for r in rows}
    verdicts = {k: verdict(by_key[k]["ms_per_clip"] / 1000, TARGET_S, higher_is_better=False,
                           unit=" s/clip") for k in ("zoo_clip_b8", "zoo_30s_b8")}

    print()
    print("| configuration | batch | wall ms/clip | CPU ms/clip | vs CT2 30 s | vs clip | "
          "first call s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        vs_clip = "" if r["vs_zoo_clip"] is None else f"{r['vs_zoo_clip']:.2f}"
        print(f"| {r['what']} | {r['batch_size']} | {r['ms_per_clip']:.0f} | "
              f"{r['cpu_ms_per_clip']:.0f} | {r['vs_ctranslate2_30s']:.2f} | {vs_clip} | "
              f"{r['first_call_seconds']:.2f} |")
    print()
    for k, v in verdicts.items():
        print(f"{k}: {by_key[k]['ms_per_clip'] / 1000:.3f} s per 3 s clip, {v}")
    for ctx, c in check.items():
        print(f"check {ctx}: last layer mean, zoo vs ctranslate2, max |diff| "
              f"{c['max_abs_diff']:.2e} (values ~{c['mean_abs_value']:.2f})")
    print(f"load average before/after: {load_before} / {load_after} "
          f"(the machine is shared; {cores} cores)")

    path = write_results("whisper_extract", {
        "what": "Whisper tiny.en embedding extraction per 3 s clip: the zoo's path "
                "(pipelines.encoders.whisper_extract.make_runner + pipelines.embeddings."
                "embed_clips: log-Mel on the graph, Keras encoder, mean/std of all hidden "
                "states) vs CTranslate2's encoder (encode only) in the same process, CPU",
        "clips": source, "clip_seconds": CLIP_SECONDS, "cores": cores,
        "checkpoint": {"name": weights.name, "folder": str(folder),
                       "weights_dtype": weights.dtype, "sha256": weights.sha256},
        "ctranslate2": {"compute_type": "float32", "intra_threads": cores,
                        "input": "log-Mel made beforehand (not timed): [B, 80, 3000] for the "
                                 "baseline, [B, 80, 301] for the clip-frames reference"},
        "timing": "first call of each configuration (one batch) timed apart; then "
                  f"{args.repeats} passes over the {n} clips, configurations interleaved, "
                  f"each pass repeating the clip set until it lasts {args.min_pass_seconds:g} "
                  "s (clip_sets_per_pass), best pass kept; CPU = process CPU time (all "
                  "threads)",
        "results": rows,
        "target": {"seconds_per_clip_at_batch_8": TARGET_S, **verdicts},
        "same_output_check": check,
        "load_average_before": load_before, "load_average_after": load_after,
        "versions": {**versions("tensorflow", "keras", "numpy"),
                     "ctranslate2": ctranslate2.__version__},
    })
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
