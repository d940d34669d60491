"""The EDA pictures: one function per PNG, each from the EDA manifest (one row per decoded file).

Every picture compares corpora, so each corpus keeps one colour throughout, emotions follow the
canonical order of pipelines.corpora.labels.EMOTIONS, and every axis names its unit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.common.figures import pyplot, save_png
from pipelines.corpora.labels import ordered

plt = pyplot()  # Agg: files only

from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def colours(corpora: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {c: cmap(i % 10) for i, c in enumerate(corpora)}


def save(fig, path: Path) -> None:
    save_png(fig, path)


def outside_legend(ax, **kwargs) -> None:
    """Corpus legend right of the plot, where it cannot hide a bar or a box."""
    ax.legend(title="corpus", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), **kwargs)


def _empty(ax, text="no decodable files") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")


def duration_hist(m: pd.DataFrame, corpora: list[str], path: Path) -> None:
    """One histogram per corpus on a shared duration axis."""
    n = max(1, len(corpora))
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.9 * n + 0.8), sharex=True, squeeze=False)
    axes = axes[:, 0]
    colour = colours(corpora)
    edges = (np.histogram_bin_edges(m["duration_s"], bins=60) if len(m) else None)
    for ax, corpus in zip(axes, corpora):
        d = m.loc[m["corpus"] == corpus, "duration_s"]
        if d.empty:
            _empty(ax)
        else:
            ax.hist(d, bins=edges, color=colour[corpus],
                    label=f"{corpus}: {len(d)} files, median {d.median():.2f} s")
            ax.axvline(d.median(), color="black", lw=1, ls="--")
            ax.legend(loc="upper right", fontsize=8, frameon=False)
        ax.set_ylabel("files")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(corpus, fontsize=9, loc="left")
    axes[-1].set_xlabel("duration of the original file (s); dashed line: median")
    fig.suptitle("Clip duration per corpus")
    save(fig, path)


def label_counts(m: pd.DataFrame, corpora: list[str], path: Path) -> None:
    """Files per emotion, one bar per corpus, emotions in canonical order."""
    emotions = ordered(m["emotion"]) if len(m) else []
    counts = m.groupby(["emotion", "corpus"]).size().unstack(fill_value=0) if len(m) else None
    fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(emotions) + 2), 4.2))
    width = 0.8 / max(1, len(corpora))
    colour = colours(corpora)
    x = np.arange(len(emotions))
    for i, corpus in enumerate(corpora):
        values = [int(counts.at[e, corpus]) if counts is not None and corpus in counts
                  else 0 for e in emotions]
        bars = ax.bar(x + (i - (len(corpora) - 1) / 2) * width, values, width,
                      color=colour[corpus], label=corpus)
        ax.bar_label(bars, fontsize=7, padding=1)
    if not emotions:
        _empty(ax)
    ax.set_xticks(x, emotions)
    ax.set_xlabel("emotion (harmonised label)")
    ax.set_ylabel("files")
    ax.set_title("Files per emotion and corpus")
    outside_legend(ax)
    ax.margins(y=0.12)
    save(fig, path)


def sample_rates(m: pd.DataFrame, corpora: list[str], path: Path) -> None:
    """Files per original sample rate and corpus (log scale: one odd file must stay visible)."""
    rates = sorted(m["orig_sample_rate"].unique()) if len(m) else []
    counts = m.groupby(["orig_sample_rate", "corpus"]).size() if len(m) else pd.Series()
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(rates) + 2), 4))
    width = 0.8 / max(1, len(corpora))
    colour = colours(corpora)
    x = np.arange(len(rates))
    for i, corpus in enumerate(corpora):
        values = [int(counts.get((r, corpus), 0)) for r in rates]
        bars = ax.bar(x + (i - (len(corpora) - 1) / 2) * width, values, width,
                      color=colour[corpus], label=corpus)
        ax.bar_label(bars, labels=[str(v) if v else "" for v in values], fontsize=7, padding=1)
    if rates:
        ax.set_yscale("log")
        ax.set_ylim(0.7, max(counts) * 3)
    else:
        _empty(ax)
    ax.set_xticks(x, [f"{r:,} Hz" for r in rates])
    ax.set_xlabel("sample rate of the original file")
    ax.set_ylabel("files (log scale)")
    ax.set_title("Sample rates per corpus")
    outside_legend(ax)
    save(fig, path)


def box_by_emotion(m: pd.DataFrame, corpora: list[str], column: str, ylabel: str,
                   title: str, path: Path) -> None:
    """Box plot of `column` per emotion, one box per corpus side by side."""
    emotions = ordered(m["emotion"]) if len(m) else []
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(emotions) + 2), 4.5))
    width = 0.8 / max(1, len(corpora))
    colour = colours(corpora)
    for i, corpus in enumerate(corpora):
        sub = m[m["corpus"] == corpus]
        data, pos = [], []
        for j, emotion in enumerate(emotions):
            values = sub.loc[sub["emotion"] == emotion, column].dropna()
            if len(values):
                data.append(values.to_numpy())
                pos.append(j + (i - (len(corpora) - 1) / 2) * width)
        if not data:
            continue
        for values, x in zip(data, pos):  # a box of 1-4 values says little: show the values
            if len(values) < 5:
                ax.scatter(np.full(len(values), x), values, s=14, color=colour[corpus], zorder=3)
        box = ax.boxplot(data, positions=pos, widths=width * 0.85, patch_artist=True,
                         manage_ticks=False, flierprops={"markersize": 2, "alpha": 0.5},
                         medianprops={"color": "black"})
        for patch in box["boxes"]:
            patch.set_facecolor(colour[corpus])
            patch.set_alpha(0.8)
    if not emotions:
        _empty(ax)
    ax.set_xticks(np.arange(len(emotions)), emotions)
    ax.set_xlim(-0.6, len(emotions) - 0.4)
    ax.set_xlabel("emotion (harmonised label)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    outside_legend(ax, handles=[Patch(color=colour[c], label=c) for c in corpora])
    save(fig, path)


def write_all(m: pd.DataFrame, corpora: list[str], out: Path) -> None:
    duration_hist(m, corpora, out / "duration_hist.png")
    label_counts(m, corpora, out / "label_counts.png")
    sample_rates(m, corpora, out / "sample_rates.png")
    box_by_emotion(m, corpora, "duration_s", "duration (s)",
                   "Clip duration per emotion and corpus", out / "box_duration.png")
    # Silent files sit at the -200 dB floor of rms_dbfs and would flatten every box.
    audible = m[~m["silent"].astype(bool)]
    silent = len(m) - len(audible)
    box_by_emotion(audible, corpora, "rms_dbfs", "RMS level (dBFS, 0 = full scale)",
                   "Recording level per emotion and corpus"
                   + (f" ({silent} silent file{'s' if silent > 1 else ''} left out)" if silent else ""),
                   out / "box_rms.png")
