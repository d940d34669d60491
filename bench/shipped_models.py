"""Speaker-independent results of the shipped models, the figures the README quotes.

    python bench/shipped_models.py [--data tfrecords/full] [--split test]
                                   [--models savedmodels [runs/exports ...]]

For every <model>/<version> under the model folders that takes waveforms, evaluates the TFRecord
split through the SavedModel's signatures (as zoo.evaluate does), with features normalised per
utterance (one clip at a time, the serving default) and per speaker (statistics over each test
speaker's clips, no labels used), or not at all for models whose FeatureSpec says
normalization 'none'. Exports of zoo.refit_head are scored with their plain head and through
serving_by_speaker: one request per speaker with all its clips, and requests of 5, 10 and 20
clips (--speaker-groups), since a client may not have more. Prints a markdown table and writes
bench/results/shipped_models.json. The split's speakers never appear in training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.common.tfenv import quiet_tensorflow  # noqa: E402

quiet_tensorflow()

from pipelines.common.io import write_json_atomic  # noqa: E402
from zoo.evaluation.clips import clips_from_tfrecords  # noqa: E402
from zoo.evaluation.evaluate import evaluate  # noqa: E402
from zoo.export.layout import read_export, versions  # noqa: E402


def summary(metrics: dict) -> dict:
    out = {k: metrics[k] for k in ("n", "ua", "wa", "macro_f1")}
    out["per_corpus"] = {c: {k: m[k] for k in ("n", "ua", "wa", "macro_f1")}
                         for c, m in metrics["per_corpus"].items()}
    if "without_calm" in metrics:
        out["without_calm"] = {k: metrics["without_calm"][k] for k in ("n", "ua", "wa",
                                                                         "macro_f1")}
    out["per_class_recall"] = {c: round(m["recall"], 4) for c, m in metrics["per_class"].items()}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="tfrecords/full")
    parser.add_argument("--split", default="test")
    parser.add_argument("--models", nargs="+", default=["savedmodels"],
                        help="model base folders (savedmodels; add e.g. runs/exports to compare "
                             "experiments that were not shipped)")
    parser.add_argument("--speaker-groups", type=lambda t: [int(v) for v in t.split(",") if v],
                        default=[5, 10, 20],
                        help="for exports with serving_by_speaker: also score requests of this "
                             "many clips per speaker (comma-separated; 5,10,20)")
    parser.add_argument("--out", default="bench/results/shipped_models.json")
    args = parser.parse_args(argv)

    rows, waves = clips_from_tfrecords(args.data, args.split)
    results = {"data": args.data, "split": args.split, "clips": len(rows),
               "speakers": sorted(rows["speaker"].unique()), "models": {}}
    exports = [v for base in args.models for folder in sorted(Path(base).iterdir())
               if folder.is_dir() for v in versions(folder)]
    if not exports:
        print(f"error: no <model>/<version>/saved_model.pb under {', '.join(args.models)}",
              file=sys.stderr)
        return 2
    for version in exports:
        info = read_export(version)
        if info.get("input", "waveform") != "waveform" or "feature_spec" not in info:
            continue
        entry = {"export": str(version),
                 "speaker_norm_training_share": info.get("speaker_norm_training_share", 0.0),
                 "validation": info.get("metrics", {}).get("validation"),
                 "validation_per_speaker": info.get("metrics", {}).get(
                     "speaker_norm", {}).get("validation")}
        if "speaker_head" in info:  # zoo.refit_head: plain head, and per speaker (embeddings)
            modes = [("none", False, 0), ("per_speaker", True, 0)] + [
                (f"per_speaker_{k}_clips", True, k) for k in args.speaker_groups]
        elif info["feature_spec"].get("normalization") == "none":
            modes = [("none", False, 0)]
        else:
            modes = [("per_utterance", False, 0), ("per_speaker", True, 0)]
        for mode, flag, group in modes:
            metrics, _ = evaluate(version, rows, waves, speaker_norm=flag, speaker_group=group)
            entry[mode] = summary(metrics)
        results["models"][str(version)] = entry
    write_json_atomic(args.out, results)

    print(f"{args.data} split {args.split}: {len(rows)} clips, speakers "
          f"{', '.join(results['speakers'])}\n")
    print("| export | normalisation | UA | WA | macro-F1 | RAVDESS UA | UA without RAVDESS calm "
          "| validation UA (training) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, entry in results["models"].items():
        for mode in [k for k in entry if k in ("none", "per_utterance")
                     or k.startswith("per_speaker")]:
            m = entry[mode]
            validation = (entry["validation_per_speaker"] if mode == "per_speaker"
                          else None if mode.startswith("per_speaker_") else entry["validation"])
            rav = m["per_corpus"].get("ravdess", {})
            calm = m.get("without_calm", {})
            print(f"| {name} | {mode.replace('_', ' ')} | {100 * m['ua']:.1f} | "
                  f"{100 * m['wa']:.1f} | {100 * m['macro_f1']:.1f} | "
                  f"{100 * rav.get('ua', float('nan')):.1f} | "
                  f"{100 * calm.get('ua', float('nan')):.1f} | "
                  + (f"{100 * validation['ua']:.1f} |" if validation else " |"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
