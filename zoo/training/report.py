"""The end of a training run, shared by every model family (zoo.train, zoo.training.ssl,
zoo.training.finetune): predictions and metrics per split, `predictions.csv`, the confusion plot,
the export (by the caller's function) and `metrics.json`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def prediction_frame(probs, y, meta: dict, split: str, labels: list[str]) -> pd.DataFrame:
    """Predictions DataFrame (id, speaker, corpus, emotion, ..., split, label, pred,
    p_<label>...) from probabilities [n, classes], label indices [n] and a dict of [n] string
    arrays (bytes are decoded)."""
    probs = np.asarray(probs)
    frame = pd.DataFrame({k: [v.decode() if isinstance(v, bytes) else str(v) for v in values]
                          for k, values in meta.items()})
    frame["split"] = split
    frame["label"] = np.asarray(y).astype(int)
    frame["pred"] = probs.argmax(axis=1).astype(int)
    for j, name in enumerate(labels):
        frame[f"p_{name}"] = probs[:, j].astype(float)
    return frame


def prediction_rows(batches, split: str, labels: list[str]) -> pd.DataFrame:
    """(probabilities, labels, meta of tensors) batches -> prediction_frame of them all."""
    probs, ys, meta = [], [], {}
    for p, y, m in batches:
        probs.append(np.asarray(p))
        ys.append(np.asarray(y))
        for k, v in m.items():
            meta.setdefault(k, []).extend(np.asarray(v).tolist())
    if not probs:
        return pd.DataFrame()
    return prediction_frame(np.concatenate(probs), np.concatenate(ys), meta, split, labels)


def predict_split(model, data, split: str, spec, labels: list[str], batch_size: int = 32,
                  speaker_norm: bool = False) -> pd.DataFrame:
    """A feature model's predictions on one split of a TFRecord set."""
    from pipelines.records.dataset import make_dataset

    ds = make_dataset(data, split, spec, batch_size, with_meta=True,
                      speaker_norm=1.0 if speaker_norm else 0.0)
    return prediction_rows(((np.asarray(model(x, training=False)), y, meta)
                            for x, y, meta in ds), split, labels)


def headline(metrics: dict) -> dict:
    """n, UA, WA and macro-F1 of validation and test (and of both with features normalised per
    speaker, when measured), for zoo.json."""
    def pick(source):
        return {key: {k: source[key][k] for k in ("n", "ua", "wa", "macro_f1")}
                for key in ("validation", "test") if key in source}

    out = pick(metrics)
    if metrics.get("speaker_norm"):
        out["speaker_norm"] = pick(metrics["speaker_norm"])
    return out


def batchnorm_check(history, train_eval) -> dict:
    """Inference-mode accuracy on the training set vs the training curve: a large gap means the
    stored BatchNorm statistics do not fit the data (see ARCHITECTURE.md pitfalls)."""
    if not history or not train_eval:
        return {}
    fit_acc = history[-1].get("accuracy")
    gap = None if fit_acc is None else round(fit_acc - train_eval["wa"], 4)
    return {"train_accuracy_during_fit": fit_acc, "train_accuracy_inference": train_eval["wa"],
            "gap": gap, "ok": gap is None or gap < 0.15}


def run_calibration(preds: dict, speaker_preds: dict) -> dict:
    """Temperature and low-confidence threshold fitted on the validation predictions (and the
    per-speaker ones, when the run has them), with the test split's ECE before and after
    (zoo.export.reliability.calibrate); {} without validation clips."""
    from zoo.export.reliability import calibrate, frame_probabilities

    def fit(frames):
        val, test = frames.get("validation"), frames.get("test")
        if val is None or not len(val):
            return None
        return calibrate((frame_probabilities(val), val["label"].to_numpy()),
                         None if test is None else (frame_probabilities(test),
                                                    test["label"].to_numpy()))

    out = {"plain": fit(preds), "speaker": fit(speaker_preds) if speaker_preds else None}
    return {k: v for k, v in out.items() if v is not None}


def finish_run(config, labels, data, tfset, run: Path, seconds: float, predict,
               save_and_export, predict_speaker_norm=None,
               speaker_title: str = "features normalised per speaker",
               extra: dict | None = None) -> dict:
    """Metrics on every split, predictions.csv, confusion.png, export, metrics.json.

    predict(split) -> predictions DataFrame; save_and_export(metrics) -> the export folder;
    predict_speaker_norm(split), when given, adds validation/test metrics with features
    normalised per speaker (or what `speaker_title` says) under metrics['speaker_norm'];
    extra: more entries for metrics (e.g. how a linear head was solved).
    """
    from pipelines.common.io import write_csv_atomic, write_json_atomic
    from zoo.training.callbacks import read_history
    from zoo.evaluation.metrics import format_table, full_report, plot_confusion

    manifest = tfset.manifest().set_index("id")
    preds, speaker_preds = {}, {}
    frames, metrics = [], {"model": config.model, "data": str(data), "labels": labels,
                           "speaker_independent": tfset.schema["split_method"][
                               "speaker_independent"]}
    for split in ("validation", "test", "train"):
        if tfset.examples(split) == 0:
            continue
        pred = predict(split)
        pred["original_label"] = manifest.loc[pred["id"], "original_label"].astype(str).values
        key = "train_eval" if split == "train" else split
        metrics[key] = full_report(pred, labels)
        if split != "train":
            frames.append(pred)
            preds[split] = pred
        print(format_table(metrics[key], f"{key} ({metrics[key]['n']} clips)"))
        if predict_speaker_norm is not None and split != "train":
            spk = predict_speaker_norm(split)
            speaker_preds[split] = spk
            spk["original_label"] = pred["original_label"].values
            metrics.setdefault("speaker_norm", {})[split] = full_report(spk, labels)
            print(format_table(metrics["speaker_norm"][split],
                               f"{split}, {speaker_title}"))
    history = read_history(run)
    best = max(history, key=lambda h: h["val_ua"]) if history else {}
    metrics.update(best_epoch=best.get("epoch"), epochs_run=len(history),
                   train_seconds=round(seconds, 1))
    metrics["batchnorm_check"] = batchnorm_check(history, metrics.get("train_eval"))
    metrics.update(extra or {})
    metrics["calibration"] = run_calibration(preds, speaker_preds)
    write_csv_atomic(run / "predictions.csv", pd.concat(frames, ignore_index=True))
    shown = metrics.get("test") or metrics["validation"]
    plot_confusion(shown["confusion"], labels,
                   f"{config.model}: {'test' if 'test' in metrics else 'validation'} "
                   f"UA {shown['ua']:.3f}", run / "confusion.png")
    version_dir = save_and_export(metrics)
    metrics["export"] = str(version_dir)
    write_json_atomic(run / "metrics.json", metrics)
    print(f"exported {version_dir}; run folder {run} (tensorboard --logdir {run / 'tb'})")
    return metrics
