"""The calibration baseline the shipped models are judged against: an RBF-SVM on per-clip
feature statistics, scored on the same speaker-independent split as the models, and in a
leave-actors-out cross-validation over every RAVDESS actor in the set.

    python bench/svm_baseline.py [--data tfrecords/full]   # -> bench/results/svm_baseline.json

Per clip, from the zoo's FeatureSpecs (silence trimmed at 40 dB, DC removed, computed on the TF
graph, no normalisation), two sets of statistics over the clip's frames:

- mfcc: mean and standard deviation of the 40 MFCCs + log energy (82 numbers);
- mfcc+delta+logmel: those, the mean absolute value and standard deviation of the
  frame-to-frame MFCC differences (deltas), and mean and standard deviation of the 64 log-Mel
  bands (292 numbers).

Then StandardScaler + SVC(RBF, class-balanced) fitted on training clips. The statistics are
normalised in one of two ways, each reported:

- none: the numbers as they are (the scaler is fitted on training clips only);
- per speaker: each clip's numbers are standardised with the mean and standard deviation
  over all clips of its speaker (no labels used), as zoo.refit_head does with embeddings;
- frames per speaker: the statistics of frames standardised with the mean and standard
  deviation over all frames of the speaker (what `--speaker-norm` does to a model's input
  features), for comparison.

(Per-utterance normalisation has no SVM counterpart: it sets every clip's means to 0 and
standard deviations to 1, leaving these statistics nothing to classify.)

Two protocols:

- split: trained on the set's training split, scored on its validation and test splits (the
  shipped models' split). UA is also given for RAVDESS alone, the corpus whose held-out actors
  the issue's targets refer to.
- RAVDESS cross-validation: the set's RAVDESS actors in 5 folds (actors 1, 6, 11, 16 | 2, 7,
  12, 17 | ...); each fold is scored by an SVM trained on every other clip of the set (all
  corpora, all splits). Shows how much the figure depends on which actors are held out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.common.tfenv import quiet_tensorflow  # noqa: E402

quiet_tensorflow()

from bench._common import write_results  # noqa: E402
from pipelines.features.extract import compute_many  # noqa: E402
from pipelines.records.tfrecord import open_set  # noqa: E402
from zoo.evaluation.clips import clips_from_tfrecords  # noqa: E402
from zoo.evaluation.metrics import report  # noqa: E402
from zoo.models import zoo_mfcc_spec  # noqa: E402
from zoo.training.embedding_heads import speaker_standardize_np  # noqa: E402

SPLITS = ("train", "validation", "test")
FEATURE_SETS = ("mfcc", "mfcc+delta+logmel")
MODES = ("none", "per speaker", "frames per speaker")
FOLDS = 5
KEYS = ("n", "ua", "wa", "macro_f1")


def mean_std(features: list[np.ndarray]) -> np.ndarray:
    """[clips, 2 * channels]: mean and std of each channel over the clip's frames."""
    return np.stack([np.concatenate([f.mean(axis=0), f.std(axis=0)]) for f in features])


def delta_stats(features: list[np.ndarray]) -> np.ndarray:
    """[clips, 2 * channels]: mean |delta| and std of delta (frame-to-frame differences)."""
    out = []
    for f in features:
        d = np.diff(f, axis=0) if len(f) > 1 else np.zeros_like(f)
        out.append(np.concatenate([np.abs(d).mean(axis=0), d.std(axis=0)]))
    return np.stack(out)


def frames_per_speaker(features: list[np.ndarray], speakers: np.ndarray) -> list[np.ndarray]:
    """Each clip's frames standardised with the mean and std over all frames of its speaker."""
    out = list(features)
    for s in np.unique(speakers):
        idx = np.flatnonzero(speakers == s)
        frames = np.concatenate([features[i] for i in idx])
        mean, std = frames.mean(axis=0), frames.std(axis=0) + 1e-6
        for i in idx:
            out[i] = (features[i] - mean) / std
    return out


def clip_statistics(waves: list[np.ndarray], spec, speakers=None) -> dict[str, np.ndarray]:
    """feature set name -> [clips, dims]; with speakers, of frames normalised per speaker."""
    mfcc = compute_many(waves, spec)
    logmel = compute_many(waves, spec.replace(kind="logmel"))
    if speakers is not None:
        mfcc, logmel = frames_per_speaker(mfcc, speakers), frames_per_speaker(logmel, speakers)
    base = mean_std(mfcc)
    return {"mfcc": base,
            "mfcc+delta+logmel": np.hstack([base, delta_stats(mfcc), mean_std(logmel)])}


# each clip's numbers standardised over its speaker's clips: the same function zoo.refit_head
# applies to embeddings
per_speaker = speaker_standardize_np


def ravdess_folds(rows: pd.DataFrame, folds: int = FOLDS) -> list[list[str]]:
    """RAVDESS speakers of the set, dealt into folds by actor number (1, 6, 11, 16 | ...)."""
    actors = sorted(rows.loc[rows["corpus"] == "ravdess", "speaker"].unique(),
                    key=lambda s: int(s.rsplit("_", 1)[-1]))
    return [f for f in (actors[k::folds] for k in range(folds)) if f]


def fit_predict(x_train, y_train, x_test, c: float):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    svm = make_pipeline(StandardScaler(), SVC(C=c, kernel="rbf", gamma="scale",
                                              class_weight="balanced"))
    return svm.fit(x_train, y_train).predict(x_test)


def scores(y, pred, labels, rows: pd.DataFrame) -> dict:
    entry = {k: report(y, pred, labels)[k] for k in KEYS}
    rav = (rows["corpus"] == "ravdess").to_numpy()
    entry["ravdess"] = ({k: report(y[rav], pred[rav], labels)[k] for k in KEYS}
                        if rav.any() else None)
    return entry


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="tfrecords/full", help="TFRecord set (pipelines.build)")
    parser.add_argument("--C", type=float, default=10.0, help="SVC C (10)")
    args = parser.parse_args(argv)
    if not (Path(args.data) / "schema.json").is_file():
        print(f"error: {args.data}: not a TFRecord set (build it with python -m pipelines.build)",
              file=sys.stderr)
        return 2
    started = time.perf_counter()
    labels = open_set(args.data).labels
    parts, waves = [], []
    for split in SPLITS:
        rows, split_waves = clips_from_tfrecords(args.data, split)
        parts.append(rows.assign(split=split))
        waves += list(split_waves)
    rows = pd.concat(parts, ignore_index=True)
    y = np.array([labels.index(e) for e in rows["emotion"]])
    split = rows["split"].to_numpy()
    speakers = rows["speaker"].to_numpy()
    spec = zoo_mfcc_spec().replace(normalization="none")
    raw = clip_statistics(waves, spec)
    framed = clip_statistics(waves, spec, speakers)
    folds = ravdess_folds(rows)

    results = {"split": {}, "ravdess_cv": {}}
    for name in FEATURE_SETS:
        for mode in MODES:
            key = f"{name}, {mode}"
            x = {"none": raw[name], "per speaker": per_speaker(raw[name], speakers),
                 "frames per speaker": framed[name]}[mode]
            train = split == "train"
            results["split"][key] = {}
            for part in ("validation", "test"):
                held = split == part
                pred = fit_predict(x[train], y[train], x[held], args.C)
                results["split"][key][part] = scores(y[held], pred, labels,
                                                     rows[held].reset_index(drop=True))
            per_fold = []
            for fold in folds:
                held = np.isin(speakers, fold)
                pred = fit_predict(x[~held], y[~held], x[held], args.C)
                per_fold.append({"speakers": fold,
                                 **{k: report(y[held], pred, labels)[k] for k in KEYS}})
            uas = np.array([f["ua"] for f in per_fold])
            results["ravdess_cv"][key] = {"ua_mean": float(uas.mean()),
                                          "ua_std": float(uas.std()), "folds": per_fold}

    n_train = int((split == "train").sum())
    print(f"RBF-SVM on per-clip feature statistics, {args.data} ({n_train} training clips)\n")
    print("| statistics | normalised | split | n | UA | WA | macro-F1 | RAVDESS UA |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for key, by_split in results["split"].items():
        name, mode = key.split(", ")
        for part, m in by_split.items():
            rav = m["ravdess"]["ua"] if m["ravdess"] else float("nan")
            print(f"| {name} | {mode} | {part} | {m['n']} | {100 * m['ua']:.1f} | "
                  f"{100 * m['wa']:.1f} | {100 * m['macro_f1']:.1f} | {100 * rav:.1f} |")
    print(f"\nRAVDESS leave-actors-out cross-validation ({len(folds)} folds, "
          f"{sum(map(len, folds))} actors; trained on every other clip of the set)\n")
    print("| statistics | normalised | mean UA | std | per fold |")
    print("| --- | --- | ---: | ---: | --- |")
    for key, cv in results["ravdess_cv"].items():
        name, mode = key.split(", ")
        fold_text = " / ".join(f"{100 * f['ua']:.1f}" for f in cv["folds"])
        print(f"| {name} | {mode} | {100 * cv['ua_mean']:.1f} | {100 * cv['ua_std']:.1f} | "
              f"{fold_text} |")
    held_out = {s: sorted(rows.loc[rows["split"] == s, "speaker"].unique())
                for s in ("validation", "test")}
    path = write_results("svm_baseline", {
        "data": args.data, "C": args.C, "labels": labels, "speakers": held_out,
        "folds": folds, "results": results,
        "seconds": round(time.perf_counter() - started, 1)})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
