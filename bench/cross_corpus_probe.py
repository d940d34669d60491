"""What helps a Whisper head on a corpus it never saw: leave-one-corpus-out linear probes on one
embedding set, comparing what a head can do with one clip at a time.

    python bench/cross_corpus_probe.py [--set tfrecords/full-nemo/embeddings/whisper-tiny.en]
        [--c 0.0003,0.001,0.003,0.01] [--held-out ravdess nemo savee tess]
        [--name cross_corpus_probe] -> bench/results/<name>.json

The set is `pipelines.embeddings --encoder whisper` over a build of every shared corpus (the
shipped model's, README); its stored split is ignored. For each held-out corpus C a
class-balanced logistic regression (scikit-learn, inputs standardised on the training clips)
is fitted on every clip of the other corpora except the validation speakers, which are
bench/cross_corpus.py's (RAVDESS 08 and 17, nEMO IC0, SAVEE JE when RAVDESS is held out), and
scored on every clip of C (UA over the classes C has). C is chosen from --c by:
- `speakers`: validation UA on those speakers (bench/cross_corpus.py's rule), or
- `corpora` (with --nested): mean UA over the training corpora, each scored by a probe fitted
  on the others (leave-one-training-corpus-out inside the training data: held-out corpus never
  used).
"oracle" is the best test UA over the grid: a ceiling, never a result.

Inputs compared (all computed from one clip, no speaker or corpus statistics):
- `all`: every hidden state's mean and standard deviation (3840 numbers, the zoo's default);
- `clip-norm`: each of those 384-wide blocks standardised over its own numbers (a layer norm of
  the pooled vector: removes a clip's overall level and spread, e.g. from gain or room);
- `means`: the five states' means only; `states 1-3`: the middle layers' mean and std.
Weights: `class` (balanced over all training clips) or `corpus x class` (every corpus and,
inside it, every class weighs the same: TESS's 2 speakers stop outweighing the rest).
"per speaker" rows (zoo.refit_head's per-speaker head: statistics over the speaker's clips)
are printed beside, for reference. The encoder's input choices are compared by pointing --set
at another set of the same build, e.g. `pipelines.embeddings --encoder whisper --trim-db 40`
(silence trimmed): `--set .../whisper-tiny.en-trim40 --inputs all --weights class --name
cross_corpus_probe_trim40`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import REPO, load_average, write_results  # noqa: E402
from bench.cross_corpus import validation_for  # noqa: E402
from bench.whisper_layers import load_set, per_speaker  # noqa: E402

CORPORA = ("ravdess", "nemo", "savee", "tess")
DEFAULT_C = (0.0003, 0.001, 0.003, 0.01)
WIDTH = 384


def validation_speakers(held_out: str) -> list[str]:
    """bench/cross_corpus.py's validation speakers with every other corpus training."""
    return validation_for(held_out, [c for c in CORPORA if c != held_out])


def clip_norm(x: np.ndarray) -> np.ndarray:
    blocks = x.reshape(len(x), -1, WIDTH)
    blocks = (blocks - blocks.mean(-1, keepdims=True)) / (blocks.std(-1, keepdims=True) + 1e-6)
    return blocks.reshape(len(x), -1)


def inputs(x: np.ndarray, states: int) -> dict[str, np.ndarray]:
    blocks = x.reshape(len(x), states, 2, WIDTH)  # state, (mean, std), feature
    return {"all": x, "clip-norm": clip_norm(x),
            "means": blocks[:, :, 0].reshape(len(x), -1),
            "states 1-3": blocks[:, 1:4].reshape(len(x), -1)}


def weights(y, corpora, scheme: str) -> np.ndarray:
    w = np.ones(len(y))
    groups = [corpora] if scheme == "corpus x class" else [np.zeros(len(y), int)]
    for g in groups:
        for c in np.unique(g):
            in_c = g == c
            for label in np.unique(y[in_c]):
                cell = in_c & (y == label)
                w[cell] = 1.0 / (cell.sum() * len(np.unique(y[in_c])) * len(np.unique(g)))
    return w * len(y)


def ua(y, pred) -> float:
    from sklearn.metrics import recall_score

    return float(recall_score(y, pred, labels=np.unique(y), average="macro", zero_division=0))


def fit(x, y, w, c):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(x), y, sample_weight=w)
    return lambda z: clf.predict(scaler.transform(z))


def held_out_row(x, y, speakers, corpora, held_out, scheme, c_grid, nested: bool) -> dict:
    test = corpora == held_out
    validation = np.isin(speakers, validation_speakers(held_out))
    train = ~test & ~validation
    w = weights(y[train], corpora[train], scheme)
    per_c = []
    for c in c_grid:
        predict = fit(x[train], y[train], w, c)
        row = {"c": c, "test_ua": ua(y[test], predict(x[test])),
               "validation_ua": ua(y[validation], predict(x[validation]))}
        if nested:
            scores = []
            for inner in sorted(set(corpora[train])):
                tr = train & (corpora != inner)
                predict_inner = fit(x[tr], y[tr], weights(y[tr], corpora[tr], scheme), c)
                scores.append(ua(y[corpora == inner], predict_inner(x[corpora == inner])))
            row["corpora_ua"] = float(np.mean(scores))
        per_c.append(row)
    out = {"held_out": held_out, "grid": per_c,
           "oracle": max(r["test_ua"] for r in per_c)}
    for rule, key in (("speakers", "validation_ua"), ("corpora", "corpora_ua")):
        if nested or rule == "speakers":
            best = max(per_c, key=lambda r: r[key])
            out[rule] = {"c": best["c"], "test_ua": best["test_ua"]}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", default=str(REPO / "tfrecords" / "full-nemo" / "embeddings"
                                             / "whisper-tiny.en"))
    parser.add_argument("--c", default=",".join(str(c) for c in DEFAULT_C),
                        help="inverse L2 strengths to choose from")
    parser.add_argument("--held-out", nargs="+", default=list(CORPORA), choices=CORPORA)
    parser.add_argument("--inputs", nargs="+", default=["all", "clip-norm", "means",
                                                        "states 1-3"])
    parser.add_argument("--weights", nargs="+", default=["class", "corpus x class"])
    parser.add_argument("--name", default="cross_corpus_probe",
                        help="results file name in bench/results (default cross_corpus_probe)")
    parser.add_argument("--nested", action="store_true",
                        help="also choose C by leave-one-training-corpus-out (4x the fits)")
    args = parser.parse_args(argv)
    c_grid = [float(c) for c in args.c.split(",")]
    started = time.perf_counter()
    x, y, speakers, corpora, states = load_set(Path(args.set))
    variants = inputs(x, states)
    rows = []
    for name in args.inputs:
        for scheme in args.weights:
            for held_out in args.held_out:
                r = held_out_row(variants[name], y, speakers, corpora, held_out, scheme,
                                 c_grid, args.nested)
                r.update({"input": name, "weights": scheme})
                rows.append(r)
                nested = (f", by corpora {100 * r['corpora']['test_ua']:.1f}"
                          if "corpora" in r else "")
                print(f"{name:10s} {scheme:15s} held out {held_out:8s} UA by speakers "
                      f"{100 * r['speakers']['test_ua']:.1f} (C {r['speakers']['c']:g}){nested}"
                      f"; oracle {100 * r['oracle']:.1f}", flush=True)
    reference = []
    xs = per_speaker(x, speakers)
    for held_out in args.held_out:
        r = held_out_row(xs, y, speakers, corpora, held_out, "class", c_grid, False)
        r.update({"input": "all, per speaker", "weights": "class"})
        reference.append(r)
        print(f"per speaker held out {held_out:8s} {100 * r['speakers']['test_ua']:.1f}",
              flush=True)
    path = write_results(args.name, {
        "set": str(Path(args.set).resolve().relative_to(REPO)) if Path(args.set).resolve()
        .is_relative_to(REPO) else args.set,
        "probe": "scikit-learn LogisticRegression on standardised inputs, sample weights as "
                 "named; UA over the classes the held-out corpus has",
        "c_grid": c_grid, "rows": rows, "per_speaker_reference": reference,
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "load_average": load_average()}, script="cross_corpus_probe")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
