"""Figures of attribution maps and of their checks (matplotlib, Agg)."""

from __future__ import annotations

import numpy as np

from pipelines.common.figures import pyplot as _plt
from pipelines.common.figures import save_png as save  # noqa: F401 - zoo.xai.run saves through plots.save

TIME_BINS = 100  # time-normalised maps: every clip resampled to this many bins


def channel_axis(spec, channels: int):
    """(label, tick positions, tick labels) of the feature axis."""
    if spec is not None and spec.kind in ("logmel", "whisper_logmel"):
        from pipelines.features.extract import mel_frequencies

        hz = mel_frequencies(spec)
        ticks = np.linspace(0, channels - 1, 6).round().astype(int)
        return "mel band (Hz)", ticks, [f"{hz[t]:.0f}" for t in ticks]
    ticks = list(range(0, channels - 1, 8))
    labels = [str(t) for t in ticks]
    if spec is not None and spec.kind == "mfcc":
        return "cepstral coefficient (E = log energy)", ticks + [channels - 1], labels + ["E"]
    return "channel", ticks, labels


def time_normalised(amap: np.ndarray, bins: int = TIME_BINS) -> np.ndarray:
    """[T, C] -> [bins, C] by linear interpolation over time."""
    t = np.linspace(0, len(amap) - 1, bins)
    return np.stack([np.interp(t, np.arange(len(amap)), amap[:, c])
                     for c in range(amap.shape[1])], axis=1)


def overlay(ax, feats, amap, spec, title: str = "") -> None:
    """The feature image in grey, the map over it; time in seconds on x."""
    seconds = len(feats) * (spec.hop_length / spec.sample_rate if spec else 0.01)
    extent = (0, seconds, -0.5, feats.shape[1] - 0.5)
    ax.imshow(feats.T, origin="lower", aspect="auto", cmap="gray", extent=extent)
    ax.imshow(amap.T, origin="lower", aspect="auto", cmap="jet", alpha=0.45, vmin=0, vmax=1,
              extent=extent)
    label, ticks, names = channel_axis(spec, feats.shape[1])
    ax.set_yticks(ticks, names, fontsize=7)
    ax.set_ylabel(label, fontsize=7)
    ax.set_xlabel("time (s)", fontsize=7)
    ax.set_title(title, fontsize=8)


def examples_figure(emotion: str, picks: dict, clips, maps, probs, labels, spec, method):
    """One emotion: a row of correctly and a row of wrongly classified clips."""
    plt = _plt()
    cols = max(1, max(len(v) for v in picks.values()))
    fig, axes = plt.subplots(2, cols, figsize=(3.2 * cols, 5.2), squeeze=False)
    for r, kind in enumerate(("correct", "wrong")):
        for c in range(cols):
            ax = axes[r, c]
            if c >= len(picks[kind]):
                ax.axis("off")
                continue
            i = picks[kind][c]
            pred = int(probs[i].argmax())
            overlay(ax, clips.x[i], maps[i], spec,
                    f"{kind}: {clips.rows.iloc[i].get('id', i)}\n"
                    f"predicted {labels[pred]} ({probs[i, pred]:.2f})")
    fig.suptitle(f"{method}, true emotion: {emotion}", fontsize=10)
    fig.tight_layout()
    return fig


def emotion_grid(means: dict, counts: dict, spec, method: str, model: str):
    """Per emotion: the time-normalised mean map (top) and its profile over the feature
    axis (the map averaged over time, bottom)."""
    plt = _plt()
    names = list(means)
    fig, axes = plt.subplots(2, len(names), figsize=(2.6 * len(names), 5.6), squeeze=False)
    for c, name in enumerate(names):
        m = means[name]
        ax = axes[0, c]
        ax.imshow(m.T, origin="lower", aspect="auto", cmap="jet", vmin=0,
                  extent=(0, 1, -0.5, m.shape[1] - 0.5))
        label, ticks, tick_names = channel_axis(spec, m.shape[1])
        ax.set_yticks(ticks, tick_names if c == 0 else [], fontsize=7)
        if c == 0:
            ax.set_ylabel(label, fontsize=7)
        ax.set_xlabel("time (fraction of clip)", fontsize=7)
        ax.set_title(f"{name} (n={counts[name]})", fontsize=9)
        prof = axes[1, c]
        prof.plot(m.mean(axis=0), np.arange(m.shape[1]))
        prof.set_ylim(-0.5, m.shape[1] - 0.5)
        prof.set_yticks(ticks, tick_names if c == 0 else [], fontsize=7)
        prof.set_xlabel("mean attribution", fontsize=7)
    fig.suptitle(f"{model}: {method}, mean map per true emotion", fontsize=10)
    fig.tight_layout()
    return fig


def vector_figures(maps, clips, labels, method: str, model: str, top: int = 8):
    """SSL pooled vectors: (heatmap per emotion over the dimensions, mean half against std
    half; box plots of the attribution shares and of the top dimensions' values)."""
    plt = _plt()
    maps = np.stack(maps)
    x = np.stack(clips.x)
    half = maps.shape[1] // 2
    present = [j for j in range(len(labels)) if (clips.label == j).any()]
    grid = np.stack([maps[clips.label == j].mean(axis=0) for j in present])
    fig1, axes = plt.subplots(2, 1, figsize=(11, 1.0 + 0.5 * len(present) * 2), squeeze=False)
    for r, (name, part) in enumerate((("mean half", grid[:, :half]),
                                      ("std half", grid[:, half:]))):
        ax = axes[r, 0]
        im = ax.imshow(part, aspect="auto", cmap="jet", vmin=0, interpolation="nearest")
        ax.set_yticks(range(len(present)), [labels[j] for j in present], fontsize=7)
        ax.set_xlabel(f"hidden unit ({name} of the pooled vector)", fontsize=7)
        fig1.colorbar(im, ax=ax, fraction=0.02)
    fig1.suptitle(f"{model}: {method}, mean attribution per emotion over the dimensions",
                  fontsize=10)
    fig1.tight_layout()

    order = np.argsort(-maps.mean(axis=0))[:top]
    share = maps[:, :half].sum(axis=1) / np.maximum(maps.sum(axis=1), 1e-12)
    fig2, axes = plt.subplots(1, 2 + len(order[:4]), figsize=(3.2 * (2 + len(order[:4])), 3.6))
    names = [labels[j] for j in present]
    axes[0].boxplot([maps[clips.label == j].sum(axis=1) for j in present], tick_labels=names)
    axes[0].set_title("total attribution per clip", fontsize=8)
    axes[1].boxplot([share[clips.label == j] for j in present], tick_labels=names)
    axes[1].set_title("share on the mean half", fontsize=8)
    for ax, d in zip(axes[2:], order[:4]):
        ax.boxplot([x[clips.label == j, d] for j in present], tick_labels=names)
        part = "mean" if d < half else "std"
        ax.set_title(f"value of dim {d} ({part} of unit {d % half})", fontsize=8)
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    fig2.suptitle(f"{model}: {method}, per emotion (top dims by mean attribution)",
                  fontsize=10)
    fig2.tight_layout()
    return fig1, fig2, order


def cascade_figure(results: dict, model: str):
    """The cascade curve: similarity to the trained model's maps as layers are randomised
    from the top down, one panel per method."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(results), figsize=(4.4 * len(results), 3.8), squeeze=False)
    for ax, (method, res) in zip(axes[0], results.items()):
        rows = res["cascade"]
        xs = np.arange(len(rows) + 1)
        for key, style in (("spearman_abs", "o-"), ("spearman_signed", "s--"), ("ssim", "^:")):
            ax.plot(xs, [1.0] + [r[key] for r in rows], style, label=key, markersize=3)
        ax.axhline(res.get("threshold", 0.5), color="gray", lw=0.8)
        ax.set_xticks(xs, ["trained"] + [r["layer"] for r in rows], rotation=75, fontsize=6)
        verdict = "pass" if res["pass"] else "FAIL"
        ax.set_title(f"{method}: {verdict}", fontsize=9)
        ax.set_ylim(-0.5, 1.05)
        ax.set_ylabel("similarity to trained maps", fontsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{model}: cascading parameter randomisation (top layer first)", fontsize=10)
    fig.tight_layout()
    return fig


def faithfulness_figure(results: dict, model: str):
    """Deletion and insertion curves, attribution order against random order."""
    plt = _plt()
    fig, axes = plt.subplots(2, len(results), figsize=(4 * len(results), 6.4), squeeze=False)
    for c, (method, res) in enumerate(results.items()):
        f = res["fractions"]
        for r, kind in enumerate(("deletion", "insertion")):
            ax = axes[r, c]
            ax.plot(f, res[kind], label=f"{method} (AUC {res['auc_' + kind]:.3f})")
            unit = "frames" if res.get("random_unit") == "frame" else "cells"
            ax.plot(f, res[f"{kind}_random"], "--",
                    label=f"random {unit} (AUC {res[f'auc_{kind}_random']:.3f})")
            ax.set_xlabel(f"fraction of cells {'removed' if r == 0 else 'restored'}",
                          fontsize=7)
            ax.set_ylabel("target probability", fontsize=7)
            ok = res[f"{kind}_pass"]
            ax.set_title(f"{method} {kind}: {'pass' if ok else 'FAIL'}", fontsize=9)
            ax.legend(fontsize=7)
    fig.suptitle(f"{model}: faithfulness", fontsize=10)
    fig.tight_layout()
    return fig


def compare_figure(table, entropy: dict):
    """Per-band share of attribution for each model, and the maps' entropy."""
    plt = _plt()
    models = list(dict.fromkeys(table["model"]))
    fig, axes = plt.subplots(1, len(models) + 1, figsize=(4.2 * (len(models) + 1), 3.8))
    for ax, model in zip(axes, models):
        rows = table[table["model"] == model]
        for emotion in dict.fromkeys(rows["emotion"]):
            part = rows[rows["emotion"] == emotion]
            ax.plot(part["band"], part["share"], marker="o", label=emotion)
        ax.set_title(f"{model} ({rows['feature'].iloc[0]})", fontsize=9)
        ax.set_ylabel("share of attribution", fontsize=7)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    axes[0].legend(fontsize=6)
    ax = axes[-1]
    ax.boxplot(list(entropy.values()), tick_labels=list(entropy))
    ax.set_title("normalised entropy of the maps\n(1 = spread evenly)", fontsize=9)
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    fig.tight_layout()
    return fig
