"""The Whisper part of `python -m zoo.explain report`: maps and figures of each method (Grad-CAM
at the default hidden state gives time profiles, zoo.xai.timing), band shares of the gradient
methods, and the SUMMARY.md lines."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipelines.common.io import write_csv_atomic

FIGURE_METHODS = ("saliency", "gradxinput", "gradcam")  # report: maps and figures


def markdown(name: str, layer: str | None, timing_rows: list, bands: pd.DataFrame) -> list[str]:
    """SUMMARY.md lines of the Whisper model: where in the clip (Grad-CAM), where over the
    mel bands (the gradient methods)."""
    lines = []
    if layer:
        lines += ["", f"## {name}: where in the clip (Grad-CAM at {layer})", "",
                  "| emotion | clips | centroid (fraction of clip) | first / middle / last "
                  "third | on quiet frames (their share of frames) |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {r['emotion']} | {r['clips']} | {r['centroid']:.2f} | "
                  f"{r['first third']:.2f} / {r['middle third']:.2f} / {r['last third']:.2f} | "
                  f"{r['quiet_share']:.2f} ({r['quiet_frames']:.2f}) |" for r in timing_rows]
    if len(bands):
        lines += ["", f"## {name}: where over the mel bands (all clips)", "",
                  "| method | band | share of attribution | share per channel |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {r['model']} | {r['band']} | {r['share']:.3f} | "
                  f"{r['share_per_channel']:.4f} |"
                  for _, r in bands[bands["emotion"] == "all"].iterrows()]
    return lines


def report(loaded, clips, out, per_class: int = 2, tensorboard=None, progress: bool = True,
           methods=FIGURE_METHODS) -> list[str]:
    """Maps and figures of each method in out/<method>/ (Grad-CAM at the default hidden state:
    time profiles), band shares of the gradient methods in out/bands.csv; the SUMMARY lines."""
    from zoo.xai.compare import summarise
    from zoo.xai.run import explain_model

    out = Path(out)
    rows, timing_rows, layer = [], [], None
    for method in methods:
        summary, maps, _ = explain_model(loaded, clips, method, None, out / method, per_class,
                                         tensorboard, progress=progress)
        if summary.get("timing"):
            timing_rows, layer = summary["timing"], summary["layer"]
        else:
            rows += summarise(method, loaded.spec, maps, loaded.labels, clips.label)[0]
    bands = pd.DataFrame(rows)
    if len(bands):
        write_csv_atomic(out / "bands.csv", bands)
    return markdown(loaded.name, layer, timing_rows, bands)
