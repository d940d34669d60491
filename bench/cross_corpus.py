"""Leave-one-corpus-out: how the zoo's recipes do on a corpus they never saw.

    python bench/cross_corpus.py [--corpora ../shared/corpora] [--recipes whisper mfcc_cnn]
        [--held-out ravdess tess savee nemo] [--work runs/cross-corpus]
        -> bench/results/cross_corpus.json (rows of earlier runs for other held-out corpora,
           recipes or training sets are kept)

For each held-out corpus C and recipe, with the zoo's own commands (each in its own process):
1. `pipelines.build` over all the shared corpora with every speaker of C as the test split and
   speaker-independent validation speakers from the others (RAVDESS 08 and 17, nEMO IC0; SAVEE
   JE when RAVDESS is held out), everything else training;
2. the recipe: `whisper` = `pipelines.embeddings --encoder whisper` + `zoo.train --model
   whisper_linear --set layer=all`; `mfcc_cnn` = `zoo.train --model mfcc_cnn --set
   'filters=[16,32,64,128]' --epochs 30` (the shipped CNN's);
3. `zoo.refit_head` on its export: linear heads on the frozen embedding, plain (one clip at a
   time) and per speaker (statistics over the speaker's clips).
For C other than nEMO the Whisper recipe runs twice, with and without nEMO among the training
corpora (--without nemo), which is how the shipped model's corpora are chosen. Test figures are
over the whole held-out corpus: UA (classes it lacks are reported, not counted: nEMO has no
disgust), per-class recall and the confusion matrix. Resumable: finished steps are kept.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import corpora_root, write_results  # noqa: E402
from bench.cnn_cv import run  # noqa: E402

CORPORA = ("ravdess", "tess", "savee", "nemo")
VALIDATION = {"ravdess": ["ravdess_08", "ravdess_17"], "nemo": ["nemo_IC0"]}
RECIPES = {
    "whisper": ("whisper_linear", ["--set", "layer=all"]),
    "mfcc_cnn": ("mfcc_cnn", ["--set", "filters=[16,32,64,128]", "--epochs", "30"]),
}


def speakers_of(root: Path, corpus: str) -> list[str]:
    from pipelines.corpora import read_corpus

    return sorted(read_corpus(corpus, root / corpus).rows["speaker"].unique())


def validation_for(held_out: str, train: list[str]) -> list[str]:
    out = [s for c, ids in VALIDATION.items() if c != held_out and c in train for s in ids]
    if held_out == "ravdess":
        out.append("savee_JE")
    return out


def keep(m: dict) -> dict:
    return {k: m[k] for k in ("n", "ua", "wa", "macro_f1", "per_class", "labels", "confusion")
            if k in m}


def run_one(held_out: str, recipe: str, train: list[str], args, root: Path) -> dict:
    tag = f"{held_out}-{recipe}" + ("" if "nemo" in train or held_out == "nemo" else "-no-nemo")
    work = Path(args.work) / tag
    work.mkdir(parents=True, exist_ok=True)
    done = work / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    log, data, exports = work / "log.txt", work / "data", work / "exports"
    py = sys.executable
    started = time.perf_counter()
    test = speakers_of(root, held_out)
    validation = validation_for(held_out, train)
    corpora = sum((["--corpus", f"{c}={root / c}"] for c in [held_out] + train), [])
    if not (data / "schema.json").is_file():
        run([py, "-m", "pipelines.build", *corpora, "--out", str(data), "--validation", "0",
             "--test", "0", "--test-speakers", ",".join(test), "--validation-speakers",
             ",".join(validation), "--quiet"], log)
    model, flags = RECIPES[recipe]
    source = data
    if recipe == "whisper":
        source = data / "embeddings" / "whisper-tiny.en"
        if not (source / "schema.json").is_file():
            run([py, "-m", "pipelines.embeddings", "--encoder", "whisper", "--data", str(data),
                 "--quiet"], log)
    if not (work / "run" / "metrics.json").is_file():
        run([py, "-m", "zoo.train", "--model", model, *flags, "--data", str(source),
             "--run-dir", str(work / "run"), "--export", str(exports)], log)
    if not (exports / model / "2").is_dir():
        run([py, "-m", "zoo.refit_head", "--model", str(exports / model / "1"), "--data",
             str(data), "--export", str(exports), "--quiet"], log)
    trained = json.loads((work / "run" / "metrics.json").read_text())
    refit = json.loads((exports / model / "2" / "zoo.json").read_text())["metrics"]
    result = {"held_out": held_out, "recipe": recipe, "train_corpora": train,
              "test_speakers": test, "validation_speakers": validation,
              "trained_head": keep(trained["test"]),
              "plain": keep(_full(work, exports / model / "2", "test")),
              "per_speaker": keep(_full(work, exports / model / "2", "test", True)),
              "validation": {"trained_head": trained["validation"]["ua"],
                             "plain": refit["validation"]["ua"],
                             "per_speaker": refit["speaker_norm"]["validation"]["ua"]},
              "minutes": round((time.perf_counter() - started) / 60, 1),
              "command": " ".join(["python bench/cross_corpus.py", *sys.argv[1:]])}
    done.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _full(work: Path, export: Path, split: str, per_speaker: bool = False) -> dict:
    """The refit's figures with per-class recall and confusion: zoo.evaluate on the split."""
    out = work / f"eval-{split}{'-speaker' if per_speaker else ''}.json"
    if not out.is_file():
        run([sys.executable, "-m", "zoo.evaluate", "--model", str(export), "--data",
             str(work / "data"), "--split", split, "--out", str(out), "--quiet",
             *(["--speaker-norm"] if per_speaker else [])], work / "log.txt")
    return json.loads(out.read_text())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpora", help="shared corpora folder (default ../shared/corpora)")
    parser.add_argument("--recipes", nargs="+", default=["whisper", "mfcc_cnn"],
                        choices=sorted(RECIPES))
    parser.add_argument("--held-out", nargs="+", default=list(CORPORA), choices=CORPORA)
    parser.add_argument("--without", default="nemo",
                        help="also run the Whisper recipe without this training corpus ('' to "
                             "skip)")
    parser.add_argument("--work", default="runs/cross-corpus")
    args = parser.parse_args(argv)
    root = corpora_root(args.corpora)
    results = []
    for held_out in args.held_out:
        everything = [c for c in CORPORA if c != held_out]
        for recipe in args.recipes:
            variants = [everything]
            if recipe == "whisper" and args.without and args.without in everything:
                variants.append([c for c in everything if c != args.without])
            for train in variants:
                r = run_one(held_out, recipe, train, args, root)
                results.append(r)
                print(f"held out {held_out:8s} {recipe:9s} trained on {'+'.join(train):24s} "
                      f"UA one clip {100 * r['plain']['ua']:.1f}, per speaker "
                      f"{100 * r['per_speaker']['ua']:.1f} (trained head "
                      f"{100 * r['trained_head']['ua']:.1f}; {r['minutes']} min)", flush=True)
    results = merged(results)
    path = write_results("cross_corpus", {"results": results}, script="cross_corpus")
    print(table(results))
    print(f"wrote {path}")
    return 0


def merged(new: list[dict]) -> list[dict]:
    """The rows of this run with those of earlier runs (other held-out corpora, recipes or
    training sets) kept from bench/results/cross_corpus.json, in CORPORA / RECIPES order."""
    from bench._common import RESULTS

    def key(r):
        return r["held_out"], r["recipe"], tuple(r["train_corpora"])

    path = RESULTS / "cross_corpus.json"
    old = json.loads(path.read_text())["results"] if path.is_file() else []
    ours = {key(r) for r in new}
    rows = [r for r in old if key(r) not in ours] + new
    order = {name: i for i, name in enumerate(CORPORA)}
    recipes = {name: i for i, name in enumerate(RECIPES)}
    return sorted(rows, key=lambda r: (order[r["held_out"]], recipes[r["recipe"]],
                                       -len(r["train_corpora"])))


def table(results: list[dict]) -> str:
    """Markdown: one row per held-out corpus and training set, UA one clip / per speaker with
    the per-class recall of the one-clip head (classes the corpus lacks left out)."""
    lines = ["| held out | recipe | trained on | UA one clip | UA per speaker | validation UA "
             "(one clip / per speaker) | recall per class, one clip |",
             "| --- | --- | --- | ---: | ---: | ---: | --- |"]
    for r in results:
        recall = ", ".join(f"{c} {100 * m['recall']:.0f}"
                           for c, m in r["plain"].get("per_class", {}).items())
        lines.append(f"| {r['held_out']} | {r['recipe']} | {' + '.join(r['train_corpora'])} | "
                     f"{100 * r['plain']['ua']:.1f} | {100 * r['per_speaker']['ua']:.1f} | "
                     f"{100 * r['validation']['plain']:.1f} / "
                     f"{100 * r['validation']['per_speaker']:.1f} | {recall} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
