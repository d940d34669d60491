"""Where in the clip a Whisper model's Grad-CAM over the encoder's frames puts the evidence:
per-emotion mean time profiles over TIME_BINS bins, share per third of the clip, share on
quiet frames (timing.csv, timing_by_emotion.csv, time_profiles.png; zoo.xai.run writes them
for Whisper models, zoo.xai.whisper_report summarises them).

A frame is quiet when its level (10 log10 of its mel power, from Whisper's log-Mel, which is
(log10 power + 4) / 4) is more than QUIET_DB below the clip's loudest frame's: pauses and the
silence around the speech (about half the frames of these untrimmed corpus clips).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.common.io import write_csv_atomic
from zoo.xai import plots

QUIET_DB = 30.0
THIRDS = ("first third", "middle third", "last third")


def level_db(feats: np.ndarray) -> np.ndarray:
    """Each frame's level in dB (relative) from Whisper's log-Mel [T, 80]."""
    return 10.0 * np.log10(np.power(10.0, 4.0 * feats.astype(np.float64) - 4.0).sum(axis=1))


def quiet_frames(feats: np.ndarray) -> np.ndarray:
    level = level_db(feats)
    return level < level.max() - QUIET_DB


def clip_timing(amap: np.ndarray, feats: np.ndarray) -> dict:
    """Where one clip's time map ([T, C], the same over C) sits: centroid as a fraction of the
    clip, share of the attribution per third, on quiet frames, and the quiet frames' share of
    the clip's frames."""
    profile = amap.mean(axis=1).astype(np.float64)
    total = profile.sum()
    n = len(profile)
    position = (np.arange(n) + 0.5) / n
    share = profile / total if total > 0 else np.full(n, 1.0 / n)
    quiet = quiet_frames(feats)
    row = {"centroid": float((share * position).sum()),
           "quiet_share": float(share[quiet].sum()), "quiet_frames": float(quiet.mean())}
    for k, name in enumerate(THIRDS):
        row[name] = float(share[(position >= k / 3) & (position < (k + 1) / 3)].sum())
    return row


def loudness(feats: np.ndarray) -> np.ndarray:
    """The clip's frame level, min-max scaled to [0, 1]."""
    level = level_db(feats)
    span = np.ptp(level)
    return (level - level.min()) / span if span > 0 else np.zeros_like(level)


def resampled(values: np.ndarray, bins: int = plots.TIME_BINS) -> np.ndarray:
    return np.interp(np.linspace(0, len(values) - 1, bins), np.arange(len(values)), values)


def timing(maps, clips, labels) -> tuple[pd.DataFrame, dict]:
    """(per clip rows with id, emotion and clip_timing; per emotion the mean time profile,
    its quartiles and the mean loudness profile, each over TIME_BINS bins)."""
    rows = [{"id": clips.rows.iloc[i].get("id", i), "emotion": labels[clips.label[i]],
             **clip_timing(maps[i], clips.x[i])} for i in range(len(clips))]
    profiles = {}
    for j, emotion in enumerate(labels):
        sel = np.flatnonzero(clips.label == j)
        if not len(sel):
            continue
        curves = np.stack([resampled(maps[i].mean(axis=1)) for i in sel])
        profiles[emotion] = {
            "mean": curves.mean(axis=0), "q25": np.quantile(curves, 0.25, axis=0),
            "q75": np.quantile(curves, 0.75, axis=0), "clips": len(sel),
            "loudness": np.stack([resampled(loudness(clips.x[i])) for i in sel]).mean(axis=0)}
    return pd.DataFrame(rows), profiles


def by_emotion(table: pd.DataFrame) -> pd.DataFrame:
    """Mean of the timing columns per emotion, and over all clips ('all')."""
    columns = ["centroid", *THIRDS, "quiet_share", "quiet_frames"]
    grouped = table.groupby("emotion", sort=False)[columns].mean()
    grouped.loc["all"] = table[columns].mean()
    grouped.insert(0, "clips", table.groupby("emotion", sort=False).size().reindex(
        grouped.index).fillna(len(table)).astype(int))
    return grouped.reset_index()


def timing_figure(profiles: dict, summary: pd.DataFrame, layer: str, model: str):
    """Per emotion: the mean Grad-CAM over the clip's time (quartile band) with the mean
    loudness (top); shares per third and on quiet frames (bottom)."""
    plt = plots._plt()
    names = list(profiles)
    fig, axes = plt.subplots(2, len(names), figsize=(2.6 * len(names), 5.2), squeeze=False,
                             sharey="row")
    t = np.linspace(0, 1, plots.TIME_BINS)
    rows = summary.set_index("emotion")
    for c, name in enumerate(names):
        p, ax = profiles[name], axes[0, c]
        ax.fill_between(t, p["q25"], p["q75"], alpha=0.25, label="quartiles")
        ax.plot(t, p["mean"], label="Grad-CAM")
        ax.plot(t, p["loudness"], "--", color="gray", lw=0.9, label="loudness")
        ax.set_title(f"{name} (n={p['clips']})", fontsize=9)
        ax.set_xlabel("time (fraction of clip)", fontsize=7)
        ax.set_ylim(0, 1.02)
        bars, r = axes[1, c], rows.loc[name]
        keys = [*THIRDS, "quiet_share", "quiet_frames"]
        bars.bar(range(len(keys)), [r[k] for k in keys],
                 color=["C0", "C0", "C0", "C1", "lightgray"])
        bars.set_xticks(range(len(keys)), ["1st", "2nd", "3rd", "quiet", "quiet\nframes"],
                        fontsize=7)
        bars.axhline(1 / 3, color="gray", lw=0.6)
    axes[0, 0].set_ylabel("mean map (0-1)", fontsize=7)
    axes[1, 0].set_ylabel("share of attribution", fontsize=7)
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(f"{model}: Grad-CAM at {layer} over time, per true emotion (quiet: "
                 f"{QUIET_DB:.0f} dB below the loudest frame)", fontsize=10)
    fig.tight_layout()
    return fig


def write_timing(maps, clips, loaded, layer: str, out) -> tuple[dict, bytes]:
    """timing.csv (per clip), timing_by_emotion.csv and time_profiles.png in out;
    (the per-emotion summary as records, the PNG bytes)."""
    out = Path(out)
    table, profiles = timing(maps, clips, loaded.labels)
    summary = by_emotion(table)
    write_csv_atomic(out / "timing.csv", table)
    write_csv_atomic(out / "timing_by_emotion.csv", summary)
    png = plots.save(timing_figure(profiles, summary, layer, loaded.name),
                     out / "time_profiles.png")
    return summary.to_dict("records"), png
