"""Leave-actors-out cross-validation of a CNN recipe and its re-fitted heads over RAVDESS actors.

    python bench/cnn_cv.py [--corpora ../shared/corpora] [--model mfcc_cnn] [--epochs 20]
                           [--work runs/cv]              # -> bench/results/cnn_cv.json
    python bench/cnn_cv.py --speaker-groups 16   # -> cnn_cv_speaker_groups_16.json

The shipped models are scored on four held-out RAVDESS actors, which the SVM baselines show to
be harder than average (bench/svm_baseline.py). This script scores the same recipe on every
RAVDESS actor of the corpora, in the SVM cross-validation's folds (actors 1, 6, 11, 16 |
2, 7, 12, 17 | ...). For fold k it

1. builds a TFRecord set whose test split is the fold's actors and whose validation split is
   the first two actors of the next fold (`pipelines.build --test-speakers
   --validation-speakers`); every other clip (TESS, SAVEE, the other RAVDESS actors) trains;
2. trains the model with the shipped recipe (`zoo.train --set 'filters=[16,32,64,128]'`, no
   feature normalisation, --epochs, the best epoch by validation UA exported);
3. re-fits its heads (`zoo.refit_head`, L2 chosen by validation UA);

and records test UA of the trained head, the plain re-fitted head and the per-speaker head.
With --speaker-groups G, step 2 trains with the embedding standardised per speaker
(`zoo.train --speaker-groups G`, zoo/training/speaker_groups.py) and step 3 is left out: that run already
ends with a plain head fitted after training and its trained per-speaker head.
Every step runs in its own process and leaves its output in --work; a fold whose results are
there is not run again, so an interrupted run resumes (a half-trained fold resumes from its
last epoch). About 10-15 minutes per fold at 20 epochs on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import REPO, corpora_root, corpus_args, manifest, write_results  # noqa: E402

FOLDS = 5
FILTERS = "filters=[16,32,64,128]"
KEYS = ("n", "ua", "wa", "macro_f1")


def folds_of(root: Path, k: int = FOLDS) -> list[list[str]]:
    """RAVDESS speaker ids of the corpora in k folds by actor number (as bench/svm_baseline)."""
    rows = manifest(root)
    actors = sorted(rows.loc[rows["corpus"] == "ravdess", "speaker"].unique())
    ids = [f"ravdess_{a.rsplit('_', 1)[-1]}" for a in actors]
    return [ids[i::k] for i in range(k) if ids[i::k]]


def run(cmd: list[str], log: Path) -> None:
    """Run a step in its own process, its output in `log`; stop with its tail on failure."""
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        code = subprocess.call(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        tail = log.read_text().splitlines()[-5:]
        sys.exit(f"error: step failed ({code}): {' '.join(cmd[:4])} ...; see {log}:\n"
                 + "\n".join(tail))


def pick(metrics: dict) -> dict:
    return {k: metrics[k] for k in KEYS}


def run_fold(k: int, test: list[str], validation: list[str], args, root: Path) -> dict:
    work = Path(args.work) / f"fold-{k}"
    work.mkdir(parents=True, exist_ok=True)
    result_file = work / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    log = work / "log.txt"
    data, exports = work / "data", work / "exports"
    started = time.perf_counter()
    py = sys.executable
    run([py, "-m", "pipelines.build", *sum((["--corpus", c] for c in corpus_args(root)), []),
         "--out", str(data), "--validation", "0", "--test", "0", "--test-speakers",
         ",".join(test), "--validation-speakers", ",".join(validation), "--quiet"], log)
    trained = exports / args.model / "1"
    groups = ["--speaker-groups", str(args.speaker_groups)] if args.speaker_groups else []
    if not trained.is_dir():
        run([py, "-m", "zoo.train", "--model", args.model, "--data", str(data), "--epochs",
             str(args.epochs), "--patience", str(args.epochs), "--set", FILTERS, *groups,
             "--run-dir", str(work / "run"), "--export", str(exports)], log)
    run_metrics = json.loads((work / "run" / "metrics.json").read_text())
    if args.speaker_groups:  # the run's export has both heads already (zoo.training.speaker_groups)
        heads = {"plain_head": run_metrics, "speaker_head": run_metrics["speaker_norm"]}
    else:
        refitted = exports / args.model / "2"
        if not refitted.is_dir():
            run([py, "-m", "zoo.refit_head", "--model", str(trained), "--data", str(data),
                 "--export", str(exports), "--quiet"], log)
        refit_metrics = json.loads((refitted / "zoo.json").read_text())["metrics"]
        heads = {"trained_head": run_metrics, "plain_head": refit_metrics,
                 "speaker_head": refit_metrics["speaker_norm"]}
    result = {
        "fold": k, "test_speakers": test, "validation_speakers": validation,
        **{key: pick(m["test"]) for key, m in heads.items()},
        "validation": {key: m["validation"]["ua"] for key, m in heads.items()},
        "best_epoch": run_metrics.get("best_epoch"),
        "minutes": round((time.perf_counter() - started) / 60, 1),
    }
    result_file.write_text(json.dumps(result, indent=2) + "\n")
    return result


HEADS = (("trained_head", "trained head (zoo.train)"),
         ("plain_head", "re-fitted head, plain"),
         ("speaker_head", "re-fitted head, embeddings per speaker"))
GROUPED_HEADS = (("plain_head", "linear head fitted after training, plain"),
                 ("speaker_head", "trained head, embeddings per speaker (all clips)"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpora", help="shared corpora folder (default ../shared/corpora)")
    parser.add_argument("--model", default="mfcc_cnn", help="registered model (mfcc_cnn)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per fold (20)")
    parser.add_argument("--work", help="work folder (runs/cv)")
    parser.add_argument("--speaker-groups", type=int, default=0, metavar="G",
                        help="train with zoo.train --speaker-groups G instead of re-fitting "
                             "heads afterwards; results go to cnn_cv_speaker_groups_G.json and "
                             "the default work folder is runs/cv-speaker-groups-G")
    parser.add_argument("--folds", type=int, nargs="*",
                        help="run only these fold numbers (0-based; default all)")
    args = parser.parse_args(argv)
    grouped = f"speaker_groups_{args.speaker_groups}" if args.speaker_groups else ""
    args.work = args.work or ("runs/cv-" + grouped.replace("_", "-") if grouped else "runs/cv")
    heads = GROUPED_HEADS if grouped else HEADS
    root = corpora_root(args.corpora)
    folds = folds_of(root)
    chosen = args.folds if args.folds else range(len(folds))
    results = []
    for k in chosen:
        validation = folds[(k + 1) % len(folds)][:2]
        print(f"fold {k}: test {', '.join(folds[k])}; validation {', '.join(validation)}",
              flush=True)
        results.append(run_fold(k, folds[k], validation, args, root))
        r = results[-1]
        print("  test UA: " + ", ".join(f"{label} {100 * r[key]['ua']:.1f}"
                                        for key, label in heads), flush=True)
    summary = {}
    for key, label in heads:
        uas = np.array([r[key]["ua"] for r in results])
        summary[key] = {"ua_mean": float(uas.mean()), "ua_std": float(uas.std()),
                        "per_fold": [float(u) for u in uas]}
    print(f"\n{args.model}, {args.epochs} epochs: leave-actors-out test UA over "
          f"{len(results)} folds ({sum(len(r['test_speakers']) for r in results)} actors)\n")
    print("| head | mean UA | std | per fold |")
    print("| --- | ---: | ---: | --- |")
    for key, label in heads:
        s = summary[key]
        print(f"| {label} | {100 * s['ua_mean']:.1f} | {100 * s['ua_std']:.1f} | "
              + " / ".join(f"{100 * u:.1f}" for u in s["per_fold"]) + " |")
    path = write_results("cnn_cv" + (f"_{grouped}" if grouped else ""),
                         {"model": args.model, "epochs": args.epochs, "filters": FILTERS,
                          "speaker_groups": args.speaker_groups, "folds": results,
                          "summary": summary}, script="cnn_cv")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
