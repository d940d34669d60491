"""summary.md of the EDA: counts, level, what the readers noted, what was skipped and why."""

from __future__ import annotations

import re

import pandas as pd

from pipelines.corpora.labels import ordered

FULL_SCALE = 0.999  # a peak at or above this counts as reaching full scale (likely clipped)
LIST_AT_MOST = 10


def table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (no tabulate dependency)."""
    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def reason_kind(reason: str) -> str:
    """A reason without its particulars, so that like reasons count together."""
    if reason.startswith("duplicate of "):
        return "duplicate of another file"
    return re.sub(r"\d+(\.\d+)?", "N", reason)


def overview(m: pd.DataFrame, skipped: pd.DataFrame, corpora: list[str]) -> pd.DataFrame:
    out = []
    for corpus in corpora:
        sub = m[m["corpus"] == corpus]
        d = sub["duration_s"]
        rates = ", ".join(f"{r:,} Hz" for r in sorted(sub["orig_sample_rate"].unique()))
        out.append({
            "corpus": corpus, "files": len(sub), "speakers": sub["speaker"].nunique(),
            "skipped": int((skipped["corpus"] == corpus).sum()),
            "audio (min)": f"{d.sum() / 60:.1f}",
            "duration s, median (min-max)": (f"{d.median():.2f} ({d.min():.2f}-{d.max():.2f})"
                                             if len(d) else "-"),
            "sample rates": rates or "-", "silent": int(sub["silent"].sum()),
        })
    return pd.DataFrame(out)


def per_emotion(m: pd.DataFrame, by: list[str], corpora: list[str]) -> pd.DataFrame:
    """Files per emotion (canonical order) for each value of `by`, corpora in command order."""
    m = m.assign(corpus=pd.Categorical(m["corpus"], categories=corpora))
    counts = m.groupby([*by, "emotion"], observed=True).size().unstack(fill_value=0)
    counts = counts[ordered(counts.columns)]
    counts["total"] = counts.sum(axis=1)
    return counts.reset_index()


def level(m: pd.DataFrame, corpora: list[str]) -> pd.DataFrame:
    out = []
    for corpus in corpora:
        sub = m[m["corpus"] == corpus]
        if sub.empty:
            continue
        r = sub["rms_dbfs"]
        out.append({
            "corpus": corpus, "RMS dBFS median": f"{r.median():.1f}",
            "RMS dBFS 5-95 %": f"{r.quantile(0.05):.1f} to {r.quantile(0.95):.1f}",
            "peak median": f"{sub['peak'].median():.3f}",
            "files reaching full scale": int((sub["peak"] >= FULL_SCALE).sum()),
            "DC offset median": f"{round(sub['dc_offset'].median(), 4) + 0.0:+.4f}",
        })
    return pd.DataFrame(out)


def consistency_notes(m: pd.DataFrame, rates: pd.DataFrame, corpora: list[str]) -> list[str]:
    """Per corpus: one sentence if files agree on rate/channels/format, else the odd ones out."""
    notes = []
    for corpus in corpora:
        sub = rates[rates["corpus"] == corpus]
        if sub.empty:
            continue
        major = sub.iloc[0]
        desc = (f"{major.orig_sample_rate:,} Hz, {major.channels} ch, "
                f"{major.format}/{major.subtype}")
        if len(sub) == 1:
            notes.append(f"{corpus}: all {major.files} files are {desc}")
            continue
        notes.append(f"{corpus}: NOT consistent; {major.files} files are {desc}, but:")
        files = m[m["corpus"] == corpus]
        for odd in sub.iloc[1:].itertuples():
            match = files[(files["orig_sample_rate"] == odd.orig_sample_rate)
                          & (files["channels"] == odd.channels) & (files["format"] == odd.format)
                          & (files["subtype"] == odd.subtype)]
            examples = ", ".join(f"`{p}`" for p in match["path"].head(3))
            more = " ..." if len(match) > 3 else ""
            notes.append(f"  - {odd.files} file(s) {odd.orig_sample_rate:,} Hz, {odd.channels} ch, "
                         f"{odd.format}/{odd.subtype}: {examples}{more}")
    return notes


def render(m: pd.DataFrame, skipped: pd.DataFrame, rates: pd.DataFrame, notes: list[str],
           corpora: list[str], sources=(), calm: str = "neutral", boredom: str = "drop",
           elapsed: float = 0.0) -> str:
    lines = ["# Corpus EDA", ""]
    lines += [f"Corpora: {', '.join(f'`{s}`' for s in sources) or ', '.join(corpora)}; "
              f"RAVDESS calm policy: `{calm}`; Emo-DB boredom policy: `{boredom}`. "
              f"{len(m)} files measured, {len(skipped)} skipped, "
              f"in {elapsed:.1f} s. Levels and rates are of the original files (no resampling).",
              "", "## Overview", "", table(overview(m, skipped, corpora)), ""]
    if len(m):
        lines += ["## Files per emotion", "", table(per_emotion(m, ["corpus"], corpora)), "",
                  "## Files per speaker", "", table(per_emotion(m, ["corpus", "speaker"], corpora)), "",
                  "## Level", "", table(level(m, corpora)), "",
                  f"Full scale: peak >= {FULL_SCALE}. DC offset: mean sample value "
                  "(full scale = 1).", ""]
    lines += ["## Notes", "", *[f"- {n}" for n in notes]]
    silent = m[m["silent"]]
    lines.append(f"- silent files (peak below -70 dBFS): {len(silent)}")
    lines += [f"  - `{p}`" for p in silent["path"].head(LIST_AT_MOST)]
    if len(silent) > LIST_AT_MOST:
        lines.append(f"  - ... {len(silent) - LIST_AT_MOST} more (column `silent` in manifest.csv)")
    lines += ["- sample rate, channels and format:",
              *[f"  {n}" if n.startswith("  ") else f"  - {n}"
                for n in consistency_notes(m, rates, corpora)], ""]
    lines += ["## Skipped", "", f"{len(skipped)} files skipped (all listed in "
              "[skipped.csv](skipped.csv) with path and reason).", ""]
    if len(skipped):
        top = skipped["reason"].map(reason_kind).value_counts().head(LIST_AT_MOST)
        lines += [table(pd.DataFrame({"reason": top.index, "files": top.to_numpy()})), ""]
    lines += ["## Pictures", "",
              "- [duration_hist.png](duration_hist.png): clip duration per corpus",
              "- [label_counts.png](label_counts.png): files per emotion and corpus",
              "- [sample_rates.png](sample_rates.png): original sample rates per corpus "
              "(table: [sample_rates.csv](sample_rates.csv))",
              "- [box_duration.png](box_duration.png): duration per emotion and corpus",
              "- [box_rms.png](box_rms.png): RMS level per emotion and corpus", "",
              "![duration](duration_hist.png)", "", "![labels](label_counts.png)", "",
              "![rates](sample_rates.png)", "", "![duration per emotion](box_duration.png)", "",
              "![level per emotion](box_rms.png)", ""]
    return "\n".join(lines)
