"""Leave-actors-out cross-validation of the Whisper heads, in bench/cnn_cv.py's folds.

    python bench/whisper_cv.py [--corpora ../shared/corpora] [--heads whisper_linear:layer=all
        whisper_mlp:layer=all ...] [--refit whisper_linear:layer=all] [--epochs 30]
        [--train ravdess,tess,savee] [--work runs/whisper-cv]     -> bench/results/whisper_cv.json

For fold k (RAVDESS actors 1, 6, 11, 16 | 2, 7, 12, 17 | ...) it runs the zoo's own commands,
each in its own process, as a user would:

1. `pipelines.build` with the fold's actors as test speakers and the first two actors of the
   next fold as validation speakers; every other clip of the --train corpora trains;
2. `pipelines.embeddings --encoder whisper` (the packaged tiny.en, the clip's own frames,
   silence trimmed at 40 dB: every hidden state's mean and standard deviation);
3. `zoo.train` for each head of --heads (MODEL[:key=value,...] = --set flags), the best epoch
   by validation UA exported waveform-in;
4. `zoo.refit_head` on the export of --refit: linear heads re-fitted on the frozen embedding,
   plain and per speaker (L2 by validation UA).

Test UA is on the fold's actors, never seen in training or selection; validation UA is what a
head would be chosen by. Steps whose output is in --work are not run again (resumable).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import corpora_root, write_results  # noqa: E402
from bench.cnn_cv import folds_of, pick, run  # noqa: E402

DEFAULT_HEADS = ("whisper_linear:layer=all", "whisper_linear", "whisper_mlp:layer=all")
EMBEDDINGS = "whisper-tiny.en"


def head_args(spec: str) -> tuple[str, list[str], str]:
    """'whisper_linear:layer=all,dropout=0.1' -> (model, --set flags, a folder-safe tag)."""
    model, _, sets = spec.partition(":")
    pairs = [p for p in sets.split(",") if p]
    flags = sum((["--set", p] for p in pairs), [])
    tag = model + "".join(f"-{p.replace('=', '')}" for p in pairs)
    return model, flags, tag


def run_fold(k: int, test: list[str], validation: list[str], args, root: Path) -> dict:
    work = Path(args.work) / f"fold-{k}"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    data, emb = work / "data", work / "data" / "embeddings" / EMBEDDINGS
    py = sys.executable
    started = time.perf_counter()
    if not (emb / "schema.json").is_file():
        corpora = sum((["--corpus", f"{c}={root / c}"] for c in args.train), [])
        run([py, "-m", "pipelines.build", *corpora, "--out", str(data), "--validation", "0",
             "--test", "0", "--test-speakers", ",".join(test), "--validation-speakers",
             ",".join(validation), "--quiet"], log)
        run([py, "-m", "pipelines.embeddings", "--encoder", "whisper", "--data", str(data),
             "--quiet"], log)
    result = {"fold": k, "test_speakers": test, "validation_speakers": validation,
              "heads": {}}
    for spec in dict.fromkeys(args.heads + [args.refit]):
        model, flags, tag = head_args(spec)
        run_dir, exports = work / "runs" / tag, work / "exports" / tag
        if not (run_dir / "metrics.json").is_file():
            run([py, "-m", "zoo.train", "--model", model, *flags, "--data", str(emb),
                 "--epochs", str(args.epochs), "--run-dir", str(run_dir), "--export",
                 str(exports)], log)
        m = json.loads((run_dir / "metrics.json").read_text())
        result["heads"][spec] = {"validation_ua": m["validation"]["ua"], "test": pick(m["test"]),
                                 "best_epoch": m.get("best_epoch")}
        if spec == args.refit:
            refitted = exports / model / "2"
            if not refitted.is_dir():
                run([py, "-m", "zoo.refit_head", "--model", str(exports / model / "1"),
                     "--data", str(data), "--export", str(exports), "--quiet"], log)
            r = json.loads((refitted / "zoo.json").read_text())["metrics"]
            result["refit_plain"] = {"validation_ua": r["validation"]["ua"],
                                     "test": pick(r["test"])}
            result["refit_speaker"] = {"validation_ua": r["speaker_norm"]["validation"]["ua"],
                                       "test": pick(r["speaker_norm"]["test"])}
    result["minutes"] = round((time.perf_counter() - started) / 60, 1)
    return result


def summary(results: list[dict], key) -> dict:
    tests = np.array([key(r)["test"]["ua"] for r in results])
    vals = np.array([key(r)["validation_ua"] for r in results])
    return {"ua_mean": float(tests.mean()), "ua_std": float(tests.std()),
            "per_fold": [float(u) for u in tests], "validation_ua_mean": float(vals.mean())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpora", help="shared corpora folder (default ../shared/corpora)")
    parser.add_argument("--heads", nargs="+", default=list(DEFAULT_HEADS),
                        help="heads to train, MODEL[:key=value,...] (zoo.train --set)")
    parser.add_argument("--refit", default=DEFAULT_HEADS[0],
                        help="the head whose export zoo.refit_head re-fits (plain and per "
                             "speaker)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs per head (30)")
    parser.add_argument("--train", default="ravdess,tess,savee",
                        help="corpora whose clips train (RAVDESS actors outside the fold's "
                             "test and validation always do)")
    parser.add_argument("--work", help="work folder (runs/whisper-cv[-<train>])")
    parser.add_argument("--folds", type=int, nargs="*", help="only these folds (0-based)")
    parser.add_argument("--name", default="whisper_cv", help="results file name")
    args = parser.parse_args(argv)
    args.train = [c for c in args.train.split(",") if c]
    args.work = args.work or "runs/whisper-cv-" + "-".join(args.train)
    root = corpora_root(args.corpora)
    folds = folds_of(root)
    results = []
    for k in (args.folds if args.folds else range(len(folds))):
        validation = folds[(k + 1) % len(folds)][:2]
        print(f"fold {k}: test {', '.join(folds[k])}; validation {', '.join(validation)}",
              flush=True)
        results.append(run_fold(k, folds[k], validation, args, root))
        r = results[-1]
        print("  test UA: " + ", ".join(f"{s} {100 * h['test']['ua']:.1f}"
                                        for s, h in r["heads"].items())
              + f"; re-fitted plain {100 * r['refit_plain']['test']['ua']:.1f}, per speaker "
              f"{100 * r['refit_speaker']['test']['ua']:.1f} ({r['minutes']} min)", flush=True)
    rows = {f"{s} (zoo.train)": summary(results, lambda r, s=s: r["heads"][s])
            for s in dict.fromkeys(args.heads + [args.refit])}
    rows[f"{args.refit}, re-fitted plain"] = summary(results, lambda r: r["refit_plain"])
    rows[f"{args.refit}, re-fitted per speaker"] = summary(results,
                                                          lambda r: r["refit_speaker"])
    print(f"\nleave-actors-out test UA over {len(results)} folds, training on "
          f"{', '.join(args.train)}\n")
    print("| head | mean UA | std | validation UA | per fold |")
    print("| --- | ---: | ---: | ---: | --- |")
    for label, s in rows.items():
        print(f"| {label} | {100 * s['ua_mean']:.1f} | {100 * s['ua_std']:.1f} | "
              f"{100 * s['validation_ua_mean']:.1f} | "
              + " / ".join(f"{100 * u:.1f}" for u in s["per_fold"]) + " |")
    path = write_results(args.name, {"train": args.train, "epochs": args.epochs,
                                     "embeddings": EMBEDDINGS, "folds": results,
                                     "summary": rows}, script="whisper_cv")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
