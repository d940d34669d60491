"""Speaker-independent emotion metrics: UA (mean per-class recall), WA (accuracy), macro-F1,
per class, per corpus, and the confusion matrix (rows true, columns predicted)."""

from __future__ import annotations


import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


def report(y_true, y_pred, labels: list[str]) -> dict:
    """Metrics over the classes present in y_true (a class with no examples has no recall).

    y_true / y_pred are label indices into `labels`.
    """
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    if len(y_true) == 0:
        return {"n": 0, "ua": None, "wa": None, "macro_f1": None, "per_class": {},
                "labels": list(labels), "confusion": []}
    present = sorted(set(y_true.tolist()))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(len(labels))), zero_division=0)
    per_class = {
        labels[i]: {"recall": float(recall[i]), "precision": float(precision[i]),
                    "f1": float(f1[i]), "support": int(support[i])}
        for i in range(len(labels)) if support[i] > 0
    }
    return {
        "n": int(len(y_true)),
        "ua": float(np.mean(recall[present])),
        "wa": float(np.mean(y_true == y_pred)),
        "macro_f1": float(np.mean(f1[present])),
        "per_class": per_class,
        "labels": list(labels),
        "confusion": confusion_matrix(y_true, y_pred, labels=list(range(len(labels)))).tolist(),
    }


def full_report(predictions: pd.DataFrame, labels: list[str]) -> dict:
    """report() overall and per corpus; plus the same without RAVDESS calm when calm rows are
    marked (column `original_label` == '02' for corpus ravdess), since calm folded into
    neutral flatters the score.

    predictions needs columns label (true index), pred (predicted index), corpus.
    """
    out = report(predictions["label"], predictions["pred"], labels)
    out["per_corpus"] = {
        corpus: _short(report(g["label"], g["pred"], labels))
        for corpus, g in predictions.groupby("corpus", sort=True)
    }
    calm = _calm_rows(predictions)
    if calm.any():
        without = predictions[~calm]
        out["without_calm"] = _short(report(without["label"], without["pred"], labels))
        out["without_calm"]["note"] = "RAVDESS calm clips (folded into neutral) left out"
    return out


def _calm_rows(predictions: pd.DataFrame) -> pd.Series:
    if "original_label" not in predictions:
        return pd.Series(False, index=predictions.index)
    return (predictions["corpus"] == "ravdess") & \
        (predictions["original_label"].astype(str).str.zfill(2) == "02")


def _short(rep: dict) -> dict:
    keep = ("n", "ua", "wa", "macro_f1", "per_class")
    return {k: rep[k] for k in keep}


def format_table(rep: dict, title: str = "") -> str:
    """A plain-text table of per-class recall/precision/F1 and the summary figures."""
    lines = [title] if title else []
    if not rep.get("n"):
        return "\n".join(lines + ["  (no examples)"])
    lines.append(f"  {'class':<12}{'recall':>8}{'precision':>11}{'f1':>7}{'n':>6}")
    for name, m in rep["per_class"].items():
        lines.append(f"  {name:<12}{m['recall']:8.3f}{m['precision']:11.3f}{m['f1']:7.3f}"
                     f"{m['support']:6d}")
    lines.append(f"  UA {rep['ua']:.3f}   WA {rep['wa']:.3f}   macro-F1 {rep['macro_f1']:.3f}"
                 f"   n {rep['n']}")
    for corpus, m in rep.get("per_corpus", {}).items():
        lines.append(f"    {corpus:<10} UA {m['ua']:.3f}  WA {m['wa']:.3f}  "
                     f"F1 {m['macro_f1']:.3f}  n {m['n']}")
    if "without_calm" in rep:
        m = rep["without_calm"]
        lines.append(f"    without RAVDESS calm: UA {m['ua']:.3f}  WA {m['wa']:.3f}  "
                     f"F1 {m['macro_f1']:.3f}  n {m['n']}")
    return "\n".join(lines)


def plot_confusion(confusion, labels: list[str], title: str = "", path=None) -> bytes:
    """Row-normalised confusion matrix (counts in cells) as PNG bytes; saved to path if given."""
    from pipelines.common.figures import png_bytes, pyplot, save_png

    plt = pyplot()
    cm = np.asarray(confusion, float)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(labels), 0.8 + 0.7 * len(labels)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            if cm[i, j]:
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true class")
    ax.set_title(title or "confusion (rows: true class)", fontsize=10)
    fig.tight_layout()
    return png_bytes(fig, tight=False) if path is None else save_png(fig, path, tight=False)
