"""What the zoo.explain commands do, as functions: explain one model, check one model's
methods, compare an MFCC with a log-Mel model, and the README figure set (report)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.common.io import write_csv_atomic, write_json_atomic, write_text_atomic
from zoo.xai import plots
from zoo.xai.attribution import CAM_METHODS, Explainer
from zoo.xai.data import attribute


def log_images(run_dir, images: dict, step: int = 0) -> None:
    """PNG bytes -> TensorBoard image summaries in run_dir."""
    import tensorflow as tf

    from pipelines.common.figures import summary_image

    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        for name, data in images.items():
            summary_image(name, data, step)
    writer.flush()


def pick_examples(label, probs, j: int, per_class: int) -> dict:
    """The most confident correct and wrong clips of true class j."""
    pred = probs.argmax(axis=1)
    correct = np.flatnonzero((label == j) & (pred == j))
    wrong = np.flatnonzero((label == j) & (pred != j))
    correct = correct[np.argsort(-probs[correct, j])][:per_class]
    wrong = wrong[np.argsort(-probs[wrong].max(axis=1))][:per_class]
    return {"correct": correct.tolist(), "wrong": wrong.tolist()}


def explain_model(loaded, clips, method: str, layer: str | None, out, per_class: int = 2,
                  tensorboard=None, progress: bool = True):
    """Maps for every clip (target: the predicted class) and their figures in out/.
    Returns (summary, maps, probabilities)."""
    out = Path(out)
    explainer = Explainer(loaded.model, method, layer)
    maps, probs = attribute(explainer, clips, progress=progress)
    labels = loaded.labels
    images = {}
    summary = {"model": str(loaded.path), "name": loaded.name, "method": method,
               "layer": explainer.layer, "clips": len(clips),
               "accuracy": float((probs.argmax(axis=1) == clips.label).mean()),
               "target": "predicted class", "figures": []}
    if loaded.kind == "features":
        means, counts, rows = {}, {}, []
        for j, emotion in enumerate(labels):
            sel = np.flatnonzero(clips.label == j)
            if not len(sel):
                continue
            picks = pick_examples(clips.label, probs, j, per_class)
            if picks["correct"] or picks["wrong"]:
                name = f"examples/{emotion}.png"
                images[f"{method}/examples/{emotion}"] = plots.save(plots.examples_figure(
                    emotion, picks, clips, maps, probs, labels, loaded.spec, method),
                    out / name)
                summary["figures"].append(name)
            means[emotion] = np.mean([plots.time_normalised(maps[i]) for i in sel], axis=0)
            counts[emotion] = len(sel)
            rows += [{"emotion": emotion, "channel": c, "mean_attribution": float(v)}
                     for c, v in enumerate(means[emotion].mean(axis=0))]
        if explainer.encoder is not None and explainer.layer:  # Whisper: maps over time only
            from zoo.xai.timing import write_timing

            summary["timing"], images[f"{method}/time_profiles"] = write_timing(
                maps, clips, loaded, explainer.layer, out)
            summary["figures"].append("time_profiles.png")
        else:
            images[f"{method}/emotion_grid"] = plots.save(plots.emotion_grid(
                means, counts, loaded.spec, method, loaded.name), out / "emotion_grid.png")
            summary["figures"].append("emotion_grid.png")
            write_csv_atomic(out / "profiles.csv", pd.DataFrame(rows))
    else:
        fig1, fig2, top = plots.vector_figures(maps, clips, labels, method, loaded.name)
        images[f"{method}/dimensions"] = plots.save(fig1, out / "dimensions.png")
        images[f"{method}/boxplots"] = plots.save(fig2, out / "boxplots.png")
        summary["figures"] += ["dimensions.png", "boxplots.png"]
        stack, half = np.stack(maps), len(maps[0]) // 2
        rows = [{"emotion": labels[j], "dim": d, "half": "mean" if d < half else "std",
                 "mean_attribution": float(v)}
                for j in range(len(labels)) if (clips.label == j).any()
                for d, v in enumerate(stack[clips.label == j].mean(axis=0))]
        write_csv_atomic(out / "dimensions.csv", pd.DataFrame(rows))
        summary["top_dimensions"] = [int(d) for d in top]
        summary["mean_half_share"] = float(stack[:, :half].sum() / max(stack.sum(), 1e-12))
    write_json_atomic(out / "summary.json", summary)
    if tensorboard:
        log_images(tensorboard, images)
    return summary, maps, probs


def sanity_model(loaded, clips, methods, layer, out, train_clips=None, epochs: int = 5,
                 steps: int = 20, progress: bool = True, tensorboard=None,
                 retrain_top: int = 0) -> dict:
    """Every sanity check for each method on one model: out/sanity.json, cascade.png,
    faithfulness.png. retrain_top: Whisper models, sanity.data_randomisation."""
    from tqdm import tqdm

    from zoo.xai import sanity

    out = Path(out)
    results = {}
    for method in tqdm(methods, desc=f"sanity {loaded.name}", disable=not progress):
        explainer = Explainer(loaded.model, method, layer if method in CAM_METHODS else None)
        results[method] = sanity.run_checks(explainer, clips, train_clips=train_clips,
                                            epochs=epochs, steps=steps, progress=progress,
                                            retrain_top=retrain_top)
        results[method]["verdict"] = sanity.verdicts(results[method])
    record = {"model": str(loaded.path), "name": loaded.name, "clips": len(clips),
              "thresholds": {"randomisation_max_spearman_abs": sanity.RANDOMISATION_MAX,
                             "faithfulness_min_auc_gap": sanity.FAITHFUL_MIN_GAP},
              "methods": results}
    write_json_atomic(out / "sanity.json", record)
    images = {
        "sanity/cascade": plots.save(plots.cascade_figure(
            {m: {**r["parameter_randomisation"], "threshold": sanity.RANDOMISATION_MAX}
             for m, r in results.items()}, loaded.name), out / "cascade.png"),
        "sanity/faithfulness": plots.save(plots.faithfulness_figure(
            {m: r["faithfulness"] for m, r in results.items()}, loaded.name),
            out / "faithfulness.png"),
    }
    if tensorboard:
        log_images(tensorboard, images)
    return record


def compare_models(explained: dict, out) -> pd.DataFrame:
    """explained: {model name: (loaded, clips, maps)} of feature models -> compare.csv and
    compare.png in out."""
    from zoo.xai.compare import summarise

    out = Path(out)
    rows, entropies = [], {}
    for name, (loaded, clips, maps) in explained.items():
        r, ent = summarise(name, loaded.spec, maps, loaded.labels, clips.label)
        rows += r
        entropies[f"{name} ({loaded.spec.kind})"] = ent
    table = pd.DataFrame(rows)
    write_csv_atomic(out / "compare.csv", table)
    plots.save(plots.compare_figure(table[table["emotion"] == "all"], entropies),
               out / "compare.png")
    by_emotion = table[table["emotion"] != "all"]
    if len(by_emotion):
        plots.save(plots.compare_figure(by_emotion, entropies), out / "compare_by_emotion.png")
    return table


def summary_markdown(records: dict, compare: pd.DataFrame | None = None) -> str:
    """sanity.json of several models as a markdown table, plus the comparison in words."""
    from zoo.xai.sanity import FAITHFUL_MIN_GAP, RANDOMISATION_MAX

    lines = ["| model | method | parameter randomisation (cascade |rho|) | "
             "data randomisation (|rho|) | deletion AUC (random) | insertion AUC (random) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, record in records.items():
        for method, r in record["methods"].items():
            p, d, f = (r["parameter_randomisation"], r["data_randomisation"],
                       r["faithfulness"])
            top = d.get("retrained_top")
            top = (f"; with the top {top['layers']} encoder layers retrained "
                   f"{top['spearman_abs']:.2f}, acc {top['permuted_label_accuracy']:.2f}"
                   if top else "")
            unit = " frames" if f.get("random_unit") == "frame" else ""
            lines.append(
                f"| {name} | {method} | {'pass' if p['pass'] else '**FAIL**'} "
                f"({p['value']:.2f}) | {'pass' if d['pass'] else '**FAIL**'} ({d['value']:.2f}"
                f", permuted-label train acc {d['permuted_label_accuracy']:.2f}{top}) | "
                f"{'pass' if f['deletion_pass'] else '**FAIL**'} {f['auc_deletion']:.3f} "
                f"({f['auc_deletion_random']:.3f}{unit}) | "
                f"{'pass' if f['insertion_pass'] else '**FAIL**'} {f['auc_insertion']:.3f} "
                f"({f['auc_insertion_random']:.3f}{unit}) |")
    text = ["# Explanation sanity checks", "",
            f"Randomisation checks pass when the mean absolute Spearman correlation between "
            f"the trained model's maps and the randomised model's is below "
            f"{RANDOMISATION_MAX}; faithfulness passes when deleting (inserting) the most "
            f"attributed cells first lowers (raises) the explained class's probability AUC by "
            f"at least {FAITHFUL_MIN_GAP} against a random order (of cells; of whole frames for "
            f"maps over a Whisper encoder's frames, marked 'frames'). Clips per model: "
            + ", ".join(f"{n} {r['clips']}" for n, r in records.items()) + ".", "", *lines, ""]
    passing = {f"{n}/{m}" for n, r in records.items() for m, v in r["methods"].items()
               if all(x == "pass" for x in v["verdict"].values())}
    text.append("Methods passing every check: "
                + (", ".join(sorted(passing)) if passing else "none") + ".")
    if compare is not None and len(compare):
        text += ["", "## Where the evidence sits (all clips)", "",
                 "| model | band | share of attribution | share per channel | "
                 "map entropy |", "| --- | --- | --- | --- | --- |"]
        for _, row in compare[compare["emotion"] == "all"].iterrows():
            text.append(f"| {row['model']} ({row['feature']}) | {row['band']} | "
                        f"{row['share']:.3f} | {row['share_per_channel']:.4f} | "
                        f"{row['entropy']:.3f} |")
    return "\n".join(text) + "\n"


def write_summary(out, records: dict, compare=None, extra: list[str] | None = None) -> None:
    """sanity.json and SUMMARY.md (extra: more markdown lines at its end)."""
    write_json_atomic(Path(out) / "sanity.json", records)
    text = summary_markdown(records, compare) + "\n".join(extra or [])
    write_text_atomic(Path(out) / "SUMMARY.md", text.rstrip("\n") + "\n")
