"""Benchmark: SSL embedding extraction time per 3 s clip on this machine's CPUs, and the size of
embedding TFRecords per 1,000 clips.

    python bench/ssl_extract.py [--clips 8] [--repeats 2] [--out bench/results/ssl_extract.json]

Base-size HuBERT and Wav2Vec2 (transformers' default HubertConfig() / Wav2Vec2Config(): the
shapes of hubert-base-ls960 and wav2vec2-base, 12 layers, hidden 768) with random weights, which
cost the same compute as the real ones, so nothing is downloaded. Clips go through the same
tf.function as `python -m pipelines.embeddings` (padding-safe forward + mean/std pooling of the
last layer), at batch 1 and 8; the first call of each batch size (tracing) is timed apart.
Anchor: about 370 ms per clip for PyTorch wav2vec2-base on CPU. Kept short (few clips): the
machine is shared, so the load average before and after is recorded with the figures, and the
process CPU time per clip (all threads; independent of how busy the machine is) beside the
wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ANCHOR_MS = 370.0
CLIP_SECONDS = 3.0


def clips(n: int, seconds: float = CLIP_SECONDS, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return np.stack([0.3 * np.sin(2 * np.pi * (110 + 20 * i) * t) + 0.05 * rng.normal(size=len(t))
                     for i in range(n)]).astype(np.float32)


def time_encoder(name: str, batch_sizes, n_clips: int, repeats: int) -> list[dict]:
    import transformers

    from pipelines.encoders.embed import make_runner
    from pipelines.encoders.ssl import PaddingSafeEncoder

    config = transformers.HubertConfig() if name == "hubert" else transformers.Wav2Vec2Config()
    model_cls = transformers.TFHubertModel if name == "hubert" else transformers.TFWav2Vec2Model
    model = model_cls(config)
    encoder = PaddingSafeEncoder(model, do_normalize=True)
    run = make_runner(encoder, [config.num_hidden_layers], frames=False)
    params = int(sum(np.prod(w.shape) for w in model.weights))
    rows = []
    for batch in batch_sizes:
        n = max(n_clips, batch)
        wave = clips(n)
        length = np.full(n, wave.shape[1], np.int32)
        started = time.perf_counter()
        run(wave[:batch], length[:batch])  # trace + first run
        first = time.perf_counter() - started
        best = cpu = None
        for _ in range(repeats):
            started, cpu_started = time.perf_counter(), time.process_time()
            for i in range(0, n, batch):
                pooled, _, _ = run(wave[i:i + batch], length[i:i + batch])
                pooled[0].numpy()
            seconds = time.perf_counter() - started
            if best is None or seconds < best:
                best, cpu = seconds, time.process_time() - cpu_started
        ms = 1000 * best / n
        rows.append({"encoder": f"{name}-base (random weights)", "parameters": params,
                     "batch_size": batch, "clips_timed": n, "repeats": repeats,
                     "ms_per_clip": round(ms, 1), "clips_per_second": round(1000 / ms, 2),
                     "cpu_ms_per_clip": round(1000 * cpu / n, 1),
                     "vs_anchor": round(ms / ANCHOR_MS, 2),
                     "first_call_seconds": round(first, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def record_sizes(hidden: int = 768, n_pooled: int = 1000, n_frames: int = 50) -> dict:
    """Bytes per 1,000 clips: pooled float32 vectors (2 x hidden) and 3 s frame sequences."""
    import tensorflow as tf

    from pipelines.records.embedding_set import encode_example
    from pipelines.encoders.ssl import frame_count

    rng = np.random.default_rng(0)
    meta = {"id": "ravdess/03-01-05-02-01-01-12", "speaker": "ravdess_12",
            "corpus": "ravdess", "emotion": "angry", "split": "train"}
    frames = frame_count(int(CLIP_SECONDS * 16000), {"conv_kernel": [10, 3, 3, 3, 3, 2, 2],
                                                     "conv_stride": [5, 2, 2, 2, 2, 2, 2]})
    out = {"frames_per_3s_clip": int(frames)}
    with tempfile.TemporaryDirectory() as tmp:
        def size(count, **kw):
            path = Path(tmp) / "x.tfrecord"
            with tf.io.TFRecordWriter(str(path)) as writer:
                for _ in range(count):
                    writer.write(encode_example(rng.normal(size=2 * hidden), 3, meta, **kw))
            return path.stat().st_size

        out["pooled_1536_float32_mb"] = round(size(n_pooled) * 1000 / n_pooled / 1e6, 2)
        for dtype in ("float16", "float32"):
            seq = rng.normal(size=(frames, hidden)).astype(np.float32)
            out[f"with_frames_{dtype}_3s_mb"] = round(
                size(n_frames, frames=seq, frames_dtype=dtype) * 1000 / n_frames / 1e6, 1)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=8, help="clips timed per batch size (8)")
    parser.add_argument("--repeats", type=int, default=2, help="best of N passes (2)")
    parser.add_argument("--encoders", nargs="+", default=["wav2vec2", "hubert"])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                              "ssl_extract.json"))
    args = parser.parse_args(argv)
    from pipelines.common.tfenv import _quiet_stderr, quiet_tensorflow

    tf = quiet_tensorflow()
    with _quiet_stderr():
        import transformers

        transformers.logging.set_verbosity_error()
    load_before = os.getloadavg()
    rows = []
    for name in args.encoders:
        with _quiet_stderr():
            rows += time_encoder(name, (1, 8), args.clips, args.repeats)
    load_after = os.getloadavg()
    result = {
        "what": "SSL embedding extraction per 3 s clip (padding-safe forward + mean/std "
                "pooling of the last layer, one tf.function, float32, CPU)",
        "command": " ".join(["python bench/ssl_extract.py", *(argv or sys.argv[1:])]),
        "machine": {"cpus_available": len(os.sched_getaffinity(0)),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in load_after],
                    "note": "shared machine: another training job ran meanwhile",
                    "tensorflow": tf.__version__, "transformers": transformers.__version__},
        "clip_seconds": CLIP_SECONDS,
        "anchor": {"ms_per_clip": ANCHOR_MS,
                   "what": "PyTorch wav2vec2-base on CPU (figure given in the issue)"},
        "results": rows,
        "tfrecord_size_per_1000_clips": record_sizes(),
    }
    from pipelines.common.io import write_json_atomic

    write_json_atomic(args.out, result)
    print(json.dumps(result["tfrecord_size_per_1000_clips"]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
