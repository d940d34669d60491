"""Does fine-tuning Whisper's top layers beat the frozen encoder? Leave-actors-out CV on RAVDESS.

    python bench/whisper_finetune.py prepare --out runs/ft-data      # CPU, TensorFlow: inputs
    KERAS_BACKEND=jax python bench/whisper_finetune.py run --data runs/ft-data \\
        [--configs 2:3e-5 4:3e-5] [--epochs 12]          -> bench/results/whisper_finetune.json

`prepare` computes every RAVDESS clip's Whisper log-Mel on the graph (the zoo's whisper_logmel
FeatureSpec: silence trimmed at 40 dB, pipelines.features.extract) and stores it quantised to 8 bits
per value (each clip's features span 2.0 below its maximum, so the step is 0.008, a quarter of
float16's near 1.0 ... enough that the frozen probe scores as on exact features: checked by
`run --check`), with the converted tiny.en weights beside it (data.npz, weights.npz). The
folder is small enough to travel to a GPU machine that has only Keras and JAX.

`run` needs Keras 3 on any backend and this checkout (pipelines.encoders.whisper), nothing
else of the zoo. In bench/cnn_cv.py's folds (RAVDESS actors 1, 6, 11, 16 | 2, 7, 12, 17 | ...;
validation = the first two actors of the next fold; training = the other 14 actors), for each
--top K:
1. linear probe: a logistic regression (scikit-learn, standardised, C by validation UA) on the
   frozen encoder's statistics (every hidden state's mean and std, as the zoo's heads);
2. K > 0: the probe becomes the head of the network (Normalization + Dense) and the top K
   transformer layers (with the final layer norm) and the head are trained together (AdamW at
   LR, --epochs, batch 16, class-balanced, label smoothing 0.1 and dropout 0.2 on the
   statistics, since the probe alone already fits the training clips), the epoch with the best
   validation UA kept;
3. plain test UA on the fold's actors, and per speaker: a new probe on the network's statistics
   standardised per speaker (no labels), as zoo.refit_head's per-speaker head.
K = 0 is the frozen baseline (step 2 left out).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FOLDS = 5
C_GRID = (0.003, 0.01, 0.03)


# ---------------------------------------------------------------- prepare (TensorFlow)

def prepare(args) -> int:
    from bench._common import corpora_root
    from pipelines.audio.decode import load
    from pipelines.corpora import read_corpus
    from pipelines.encoders.whisper_checkpoint import load_weights
    from pipelines.features.extract import compute_many
    from pipelines.corpora.labels import EMOTIONS
    from pipelines.features.spec import TRIM_DB, whisper_spec

    rows = read_corpus("ravdess", corpora_root(args.corpora) / "ravdess").rows
    emotions = [e for e in EMOTIONS if e != "calm"]  # calm folded into neutral, as the zoo
    waves = [load(p) for p in rows["path"]]
    feats = compute_many(waves, whisper_spec(trim_db=TRIM_DB, remove_dc=True))
    frames = np.array([int(np.any(f != 0, axis=1).sum()) for f in feats])
    width = int(frames.max())
    q = np.zeros((len(feats), width, 80), np.uint8)
    top = np.zeros(len(feats), np.float32)
    for i, f in enumerate(feats):
        f = f[:frames[i]]
        top[i] = f.max()
        q[i, :frames[i]] = np.clip(np.round((f - (top[i] - 2.0)) / 2.0 * 255), 0, 255)
    labels = np.array([emotions.index(e) for e in rows["emotion"]])
    speakers = rows["speaker"].to_numpy(str)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "data.npz", q=q, top=top, frames=frames, labels=labels,
                        speakers=speakers, emotions=np.array(emotions))
    weights = load_weights()
    np.savez(out / "weights.npz", **weights.arrays)
    (out / "config.json").write_text(json.dumps(weights.config, indent=2))
    print(f"{out}: {len(q)} clips, up to {width} frames, "
          f"{(out / 'data.npz').stat().st_size / 1e6:.1f} MB + weights "
          f"{(out / 'weights.npz').stat().st_size / 1e6:.1f} MB")
    return 0


# ---------------------------------------------------------------- run (any Keras backend)

def load_data(folder: Path):
    d = np.load(folder / "data.npz")
    q, top, frames = d["q"], d["top"], d["frames"]
    x = q.astype(np.float32) / 255.0 * 2.0 + (top[:, None, None] - 2.0)
    x *= (np.arange(q.shape[1])[None, :] < frames[:, None])[:, :, None]
    return x, d["labels"], d["speakers"], list(d["emotions"])


def folds_of(speakers) -> list[list[str]]:
    actors = sorted(set(speakers), key=lambda s: int(str(s).rsplit("_", 1)[-1]))
    return [actors[i::FOLDS] for i in range(FOLDS)]


def ua(y, pred) -> float:
    from sklearn.metrics import recall_score

    return float(recall_score(y, pred, average="macro"))


def per_speaker(x, speakers):
    out = np.empty_like(x)
    for s in np.unique(speakers):
        r = speakers == s
        c = x[r] - x[r].mean(0)
        out[r] = c / (c.std(0) + 1e-6)
    return out


def probe(x, y, tr, va, te):
    """(test UA, validation UA, fitted scaler, classifier) of the best C by validation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x[tr])
    best = None
    for c in C_GRID:
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit(
            scaler.transform(x[tr]), y[tr])
        v = ua(y[va], clf.predict(scaler.transform(x[va])))
        if best is None or v > best[1]:
            best = (ua(y[te], clf.predict(scaler.transform(x[te]))), v, scaler, clf)
    return best


class Network:
    """features -> encoder (top K trainable) -> statistics -> Normalization -> Dense, built
    once per K; its weights are reset for every fold, so the compiled step is reused."""

    def __init__(self, weights: dict, config: dict, top: int, frames: int, lr: float,
                 classes: int):
        import keras

        from pipelines.encoders.whisper import HiddenStatePooling, WhisperEncoder

        self.weights, self.top = weights, top
        inputs = keras.Input((frames, config["n_mels"]))
        self.encoder = WhisperEncoder(config["n_mels"], config["d_model"], config["n_heads"],
                                      config["n_layers"], config["ffn_dim"], config["n_ctx"],
                                      train_top=top)
        states, mask = self.encoder(inputs)  # mask: the frames that are not all zero
        stats = keras.layers.Flatten()(HiddenStatePooling()([states, mask]))
        self.embed = keras.Model(inputs, stats)
        self.norm = keras.layers.Normalization()
        self.dense = keras.layers.Dense(classes, activation="softmax",
                                        kernel_regularizer=keras.regularizers.L2(1e-4))
        dropped = keras.layers.Dropout(0.2)(stats)
        self.model = keras.Model(inputs, self.dense(self.norm(dropped)))
        self.norm.adapt(np.zeros((2, stats.shape[-1]), np.float32))
        # Label smoothing keeps a gradient when the probe already fits the training clips
        # (it nearly always does: 3840 numbers per clip, ~840 clips).
        self.model.compile(keras.optimizers.AdamW(lr, weight_decay=1e-2),
                           keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
        self.classes = classes

    def reset(self, scaler, clf) -> None:
        self.encoder.load_arrays(self.weights)
        self.norm.adapt_mean.assign(scaler.mean_.astype(np.float32))
        self.norm.adapt_variance.assign(scaler.var_.astype(np.float32))
        self.norm.finalize_state()
        self.dense.kernel.assign(clf.coef_.T.astype(np.float32))
        self.dense.bias.assign(clf.intercept_.astype(np.float32))
        for v in self.model.optimizer.variables:  # moments and step count, not the rate
            if "learning_rate" not in v.path:
                v.assign(np.zeros(v.shape, v.dtype))

    def stats(self, x, batch: int = 64) -> np.ndarray:
        return np.asarray(self.embed.predict(x, batch_size=batch, verbose=0))

    def predict(self, x, batch: int = 64) -> np.ndarray:
        return np.asarray(self.model.predict(x, batch_size=batch, verbose=0)).argmax(1)

    def change(self) -> float:
        """Relative L2 change of the trainable encoder weights from the checkpoint's."""
        moved = [(np.asarray(v), self.weights[name]) for name, v in self.encoder.w.items()
                 if v.trainable]
        if not moved:
            return 0.0
        diff = sum(float(np.sum((a - b) ** 2)) for a, b in moved)
        return float(np.sqrt(diff / sum(float(np.sum(b ** 2)) for _, b in moved)))


def run(args) -> int:
    import keras

    data = Path(args.data)
    x, y, speakers, emotions = load_data(data)
    with np.load(data / "weights.npz") as w:
        weights = {k: w[k].astype(np.float32) for k in w.files}
    config = json.loads((data / "config.json").read_text())
    folds = folds_of(speakers)
    if args.folds:
        folds_run = args.folds
    else:
        folds_run = list(range(len(folds)))
    started = time.perf_counter()
    keras.utils.set_random_seed(0)
    configs = [(0, 0.0)] + [_config(c) for c in args.configs]
    nets = {c: Network(weights, config, c[0], x.shape[1], c[1], len(emotions))
            for c in configs if c[0] > 0}
    frozen = Network(weights, config, 0, x.shape[1], 1e-3, len(emotions))
    frozen.encoder.load_arrays(weights)
    base = frozen.stats(x)
    print(f"frozen statistics of {len(x)} clips: {time.perf_counter() - started:.0f} s",
          flush=True)
    rows = []
    for k_fold in folds_run:
        te = np.isin(speakers, folds[k_fold])
        va = np.isin(speakers, folds[(k_fold + 1) % len(folds)][:2])
        tr = ~te & ~va
        t0, v0, scaler, clf = probe(base, y, tr, va, te)
        spk0 = probe(per_speaker(base, speakers), y, tr, va, te)
        for top, lr in configs:
            row = {"fold": k_fold, "top": top, "lr": lr, "probe_test_ua": t0,
                   "probe_validation_ua": v0}
            if top == 0:
                row.update(test_ua=t0, validation_ua=v0, speaker_test_ua=spk0[0],
                           speaker_validation_ua=spk0[1], best_epoch=0)
            else:
                row.update(finetune(nets[(top, lr)], scaler, clf, x, y, speakers, tr, va, te,
                                    args))
            rows.append(row)
            _write(args.out, {"partial": True, "rows": rows})  # a killed run keeps its folds
            print(f"fold {k_fold} top {top} lr {lr:g}: test UA {100 * row['test_ua']:.1f} "
                  f"(validation "
                  f"{100 * row['validation_ua']:.1f}, epoch {row['best_epoch']}, weights moved "
                  f"{row.get('encoder_change', 0):.2e}), per speaker "
                  f"{100 * row['speaker_test_ua']:.1f}  [{time.perf_counter() - started:.0f} s]",
                  flush=True)
    summary = {}
    for top, lr in configs:
        r = [row for row in rows if (row["top"], row["lr"]) == (top, lr)]
        key_name = "frozen" if top == 0 else f"top {top}, lr {lr:g}"
        summary[key_name] = {key: float(np.mean([row[key] for row in r])) for key in
                             ("test_ua", "validation_ua", "speaker_test_ua",
                              "speaker_validation_ua")}
        s = summary[key_name]
        print(f"{key_name}: test UA {100 * s['test_ua']:.1f}, per speaker "
              f"{100 * s['speaker_test_ua']:.1f} (validation {100 * s['validation_ua']:.1f} / "
              f"{100 * s['speaker_validation_ua']:.1f})")
    result = {"benchmark": "whisper_finetune", "backend": keras.backend.backend(),
              "devices": _devices(), "configs": args.configs, "epochs": args.epochs,
              "batch_size": args.batch_size, "folds": folds_run, "rows": rows,
              "summary": summary, "seconds": round(time.perf_counter() - started, 1),
              "command": "python bench/whisper_finetune.py " + " ".join(sys.argv[1:])}
    _write(args.out, result)
    print(f"wrote {args.out}")
    return 0


def _write(path, data: dict) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(out)


def finetune(net, scaler, clf, x, y, speakers, tr, va, te, args) -> dict:
    net.reset(scaler, clf)
    counts = np.bincount(y[tr], minlength=int(y.max()) + 1)
    weight = (len(y[tr]) / (len(counts) * np.maximum(counts, 1)))[y[tr]].astype(np.float32)
    best = (-1.0, 0, None)
    rng = np.random.default_rng(0)
    xt, yt = x[tr], y[tr]
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(xt))
        usable = len(order) // args.batch_size * args.batch_size  # one compiled batch shape
        net.model.fit(xt[order[:usable]], np.eye(net.classes, dtype=np.float32)[
                          yt[order[:usable]]],
                      sample_weight=weight[order[:usable]], batch_size=args.batch_size,
                      epochs=1, shuffle=False, verbose=0)
        v = ua(y[va], net.predict(x[va]))
        if v > best[0]:
            best = (v, epoch, [np.array(w) for w in net.model.get_weights()])
    net.model.set_weights(best[2])
    test = ua(y[te], net.predict(x[te]))
    change = net.change()
    stats = net.stats(x)
    spk = probe(per_speaker(stats, speakers), y, tr, va, te)
    return {"test_ua": test, "validation_ua": best[0], "best_epoch": best[1],
            "speaker_test_ua": spk[0], "speaker_validation_ua": spk[1],
            "encoder_change": change}


def _config(text: str) -> tuple[int, float]:
    top, _, lr = text.partition(":")
    return int(top), float(lr or 3e-5)


def _devices() -> list[str]:
    try:
        import jax

        return [str(d) for d in jax.devices()]
    except ImportError:
        return []


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="compute the inputs (TensorFlow, CPU)")
    p.add_argument("--corpora", help="shared corpora folder (default ../shared/corpora)")
    p.add_argument("--out", default="runs/ft-data")
    r = sub.add_parser("run", help="the cross-validation (any Keras backend)")
    r.add_argument("--data", default="runs/ft-data")
    r.add_argument("--configs", nargs="+", default=["2:3e-5", "4:3e-5"], metavar="TOP:LR",
                   help="fine-tuned variants: top layers trained and learning rate (the "
                        "frozen baseline is always run)")
    r.add_argument("--epochs", type=int, default=12)
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--folds", type=int, nargs="*")
    r.add_argument("--out", default="bench/results/whisper_finetune.json")
    args = parser.parse_args(argv)
    return prepare(args) if args.command == "prepare" else run(args)


if __name__ == "__main__":
    sys.exit(main())
