"""The calibration baseline the shipped models are judged against: an RBF-SVM on per-clip MFCC
statistics, trained and scored on the same speaker-independent split as the models.

    python bench/svm_baseline.py [--data tfrecords/full]   # -> bench/results/svm_baseline.json

Per clip: the zoo's MFCC FeatureSpec (40 coefficients + log energy, silence trimmed at 40 dB,
DC removed, computed on the TF graph) without normalisation, summarised by the mean and standard
deviation of every channel over the clip's frames (82 numbers). Then StandardScaler + SVC(RBF,
class-balanced) fitted on the training split, scored on validation and test. The statistics are
normalised in one of two ways, each reported:

- none: the 82 numbers as they are (the scaler is fitted on training clips only);
- per speaker: each clip's 82 numbers are standardised with the mean and standard deviation
  over all clips of its speaker (no labels used), as `zoo.evaluate --speaker-norm` allows.

(Per-utterance normalisation has no SVM counterpart: it sets every clip's means to 0 and
standard deviations to 1, leaving these statistics nothing to classify.) UA is the mean per-class recall; figures are also given for RAVDESS alone, the corpus whose
held-out actors the issue's targets refer to.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.tfenv import quiet_tensorflow  # noqa: E402

quiet_tensorflow()

from bench._common import write_results  # noqa: E402
from pipelines.features import compute_many  # noqa: E402
from pipelines.tfrecord import open_set  # noqa: E402
from zoo.evaluate import clips_from_tfrecords  # noqa: E402
from zoo.metrics import report  # noqa: E402
from zoo.models import zoo_mfcc_spec  # noqa: E402


def clip_statistics(waves: list[np.ndarray], spec) -> np.ndarray:
    """[clips, 2 * channels]: mean and std of each feature channel over the clip's frames."""
    return np.stack([np.concatenate([f.mean(axis=0), f.std(axis=0)])
                     for f in compute_many(waves, spec)])


def per_speaker(x: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for s in np.unique(speakers):
        rows = speakers == s
        out[rows] = (x[rows] - x[rows].mean(axis=0)) / (x[rows].std(axis=0) + 1e-6)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="tfrecords/full", help="TFRecord set (pipelines.build)")
    parser.add_argument("--C", type=float, default=10.0, help="SVC C (10)")
    args = parser.parse_args(argv)
    if not (Path(args.data) / "schema.json").is_file():
        print(f"error: {args.data}: not a TFRecord set (build it with python -m pipelines.build)",
              file=sys.stderr)
        return 2
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    splits = {s: clips_from_tfrecords(args.data, s) for s in ("train", "validation", "test")}
    labels = open_set(args.data).labels
    y = {s: np.array([labels.index(e) for e in rows["emotion"]]) for s, (rows, _) in
         splits.items()}
    spec = zoo_mfcc_spec().replace(normalization="none")
    results, started = {}, time.perf_counter()
    raw = {split: clip_statistics(waves, spec) for split, (_, waves) in splits.items()}
    for mode in ("none", "per speaker"):
        data = {}
        for split, (rows, _) in splits.items():
            x = raw[split]
            if mode == "per speaker":
                x = per_speaker(x, rows["speaker"].to_numpy())
            data[split] = (x, rows)
        svm = make_pipeline(StandardScaler(), SVC(C=args.C, kernel="rbf", gamma="scale",
                                                  class_weight="balanced"))
        svm.fit(data["train"][0], y["train"])
        results[mode] = {}
        for split in ("validation", "test"):
            x, rows = data[split]
            pred = svm.predict(x)
            rav = (rows["corpus"] == "ravdess").to_numpy()
            entry = {k: report(y[split], pred, labels)[k] for k in ("n", "ua", "wa", "macro_f1")}
            entry["ravdess"] = {k: report(y[split][rav], pred[rav], labels)[k]
                                for k in ("n", "ua", "wa", "macro_f1")} if rav.any() else None
            results[mode][split] = entry

    print(f"RBF-SVM on per-clip MFCC statistics, {args.data} "
          f"({len(splits['train'][0])} training clips)\n")
    print("| statistics normalised | split | n | UA | WA | macro-F1 | RAVDESS UA |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for mode, by_split in results.items():
        for split, m in by_split.items():
            rav = m["ravdess"]["ua"] if m["ravdess"] else float("nan")
            print(f"| {mode} | {split} | {m['n']} | {100 * m['ua']:.1f} | {100 * m['wa']:.1f} | "
                  f"{100 * m['macro_f1']:.1f} | {100 * rav:.1f} |")
    speakers = {s: sorted(r["speaker"].unique()) for s, (r, _) in splits.items()
                if s != "train"}
    path = write_results("svm_baseline", {"data": args.data, "C": args.C, "labels": labels,
                                          "speakers": speakers, "results": results,
                                          "seconds": round(time.perf_counter() - started, 1)})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
