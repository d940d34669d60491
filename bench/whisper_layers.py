"""Which Whisper hidden state carries emotion, and what the encoder's input choices cost: linear
probes in leave-actors-out cross-validation over RAVDESS actors.

    python bench/whisper_layers.py [--sets tfrecords/full/embeddings] [--c 0.003,0.01,0.03]
        -> bench/results/whisper_layers.json

Reads Whisper embedding sets of one waveform set (python -m pipelines.embeddings --encoder
whisper; each holds every hidden state's mean and standard deviation per clip): the default
`whisper-tiny.en-trim40` (the encoder on the clip's own frames, silence trimmed at 40 dB as
the CNNs' features: `--trim-db 40`), and, when present, `whisper-tiny.en-30s-trim40` (padded
to 30 s as Whisper was trained: `--context 30s --trim-db 40`) and `whisper-tiny.en` (the
default: the clip's own frames, untrimmed). The split stored in the sets is ignored: the folds are
bench/cnn_cv.py's (RAVDESS actors 1, 6, 11, 16 | 2, 7, 12, 17 | ...; validation = the first two
actors of the next fold). In each fold a class-balanced logistic regression (scikit-learn,
standardised inputs) is fitted on the training clips: the other RAVDESS actors, alone or with
TESS and SAVEE (every clip of theirs); C is chosen from --c by the fold's validation UA; test UA
is on the fold's actors, never seen. "per speaker": every clip's vector standardised with the
mean and standard deviation over its speaker's clips (no labels), as zoo.refit_head's
per-speaker head.

Rows: each hidden state alone (0 = conv stem + positions, 4 = last layer, final layer norm),
all five side by side; the input variants on all five. A linear probe is the simplest head;
bench/whisper_cv.py scores the zoo's heads.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import REPO, load_average, write_results  # noqa: E402

FOLDS = 5
DEFAULT_C = (0.003, 0.01, 0.03)
VARIANTS = (("whisper-tiny.en-trim40", "clip's own frames, silence trimmed at 40 dB"),
            ("whisper-tiny.en-30s-trim40", "padded to 30 s, silence trimmed at 40 dB"),
            ("whisper-tiny.en", "clip's own frames, untrimmed (the zoo's default)"))
TRAIN_SETS = (("ravdess", ("ravdess",)), ("all", ("ravdess", "tess", "savee", "nemo")))


def load_set(folder: Path):
    """(vectors [n, dim], labels [n], speakers [n], corpora [n], number of hidden states)."""
    from pipelines.common.tfenv import quiet_tensorflow

    tf = quiet_tensorflow()
    from pipelines.records.embedding_set import open_embedding_set, parser

    eset = open_embedding_set(folder)
    parse = parser(eset.dim)
    files = [str(eset.folder / s["file"]) for s in eset.schema["shards"]]
    xs, ys, speakers, corpora = [], [], [], []
    for ex in tf.data.TFRecordDataset(files).map(parse).batch(512):
        xs.append(ex["embedding"].numpy())
        ys.append(ex["label"].numpy())
        speakers += [s.decode() for s in ex["speaker"].numpy()]
        corpora += [c.decode() for c in ex["corpus"].numpy()]
    return (np.concatenate(xs), np.concatenate(ys), np.array(speakers), np.array(corpora),
            int(eset.embedding["num_hidden_states"]))


def ravdess_folds(speakers, corpora, k: int = FOLDS) -> list[list[str]]:
    actors = sorted(set(speakers[corpora == "ravdess"]), key=lambda s: int(s.rsplit("_", 1)[1]))
    return [actors[i::k] for i in range(k) if actors[i::k]]


def per_speaker(x: np.ndarray, speakers) -> np.ndarray:
    from zoo.training.embedding_heads import speaker_standardize_np

    return speaker_standardize_np(x, speakers)


def ua(y, pred) -> float:
    from sklearn.metrics import recall_score

    return float(recall_score(y, pred, average="macro"))


def probe(x, y, train, validation, test, c_grid) -> tuple[float, float, float]:
    """(test UA, validation UA, chosen C) of the logistic regression with the best
    validation UA."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x[train])
    xt, xv, xs = (scaler.transform(x[m]) for m in (train, validation, test))
    best = None
    for c in c_grid:
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit(xt, y[train])
        v = ua(y[validation], clf.predict(xv))
        if best is None or v > best[1]:
            best = (ua(y[test], clf.predict(xs)), v, c)
    return best


def cross_validate(x, y, speakers, corpora, folds, train_corpora, c_grid) -> dict:
    tests, vals, cs = [], [], []
    for k, fold in enumerate(folds):
        validation_actors = folds[(k + 1) % len(folds)][:2]
        test = np.isin(speakers, fold)
        validation = np.isin(speakers, validation_actors)
        train = ~test & ~validation & np.isin(corpora, train_corpora)
        t, v, c = probe(x, y, train, validation, test, c_grid)
        tests.append(t), vals.append(v), cs.append(c)
    return {"test_ua_mean": float(np.mean(tests)), "test_ua_per_fold": tests,
            "validation_ua_mean": float(np.mean(vals)), "c": cs,
            "train_corpora": sorted(set(corpora[np.isin(corpora, train_corpora)]))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default=str(REPO / "tfrecords" / "full" / "embeddings"),
                        help="folder holding the Whisper embedding sets")
    parser.add_argument("--c", default=",".join(str(c) for c in DEFAULT_C),
                        help="inverse L2 strengths to choose from by validation UA")
    args = parser.parse_args(argv)
    c_grid = [float(c) for c in args.c.split(",")]
    root = Path(args.sets)
    started = time.perf_counter()
    rows = []
    for name, description in VARIANTS:
        folder = root / name
        if not (folder / "schema.json").is_file():
            print(f"{folder}: not there, skipped (python -m pipelines.embeddings --encoder "
                  "whisper ...)")
            continue
        x, y, speakers, corpora, states = load_set(folder)
        folds = ravdess_folds(speakers, corpora)
        width = x.shape[1] // states
        choices = [("all", slice(None))]
        if name == VARIANTS[0][0]:
            choices = [(str(i), slice(i * width, (i + 1) * width)) for i in range(states)] \
                + choices
        for layer, cols in choices:
            for mode in ("plain", "per speaker"):
                feats = x[:, cols] if mode == "plain" else per_speaker(x[:, cols], speakers)
                for train_name, train_corpora in TRAIN_SETS:
                    r = cross_validate(feats, y, speakers, corpora, folds, train_corpora,
                                       c_grid)
                    rows.append({"set": name, "input": description, "hidden_state": layer,
                                 "mode": mode, "train": train_name, **r})
                    print(f"{name:28s} state {layer:>3s} {mode:11s} train {train_name:7s} "
                          f"test UA {100 * r['test_ua_mean']:.1f}  (validation "
                          f"{100 * r['validation_ua_mean']:.1f})", flush=True)
    path = write_results("whisper_layers", {
        "folds": "RAVDESS actors i::5 (bench/cnn_cv.py); validation: first two of the next",
        "probe": "scikit-learn LogisticRegression, class_weight=balanced, standardised, C by "
                 "validation UA", "c_grid": c_grid, "rows": rows,
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "load_average": load_average()})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
