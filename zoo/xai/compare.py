"""Where the evidence sits: share of attribution per feature band and the entropy of the maps,
to compare an MFCC model with a log-Mel model trained on the same data.

Bands: log-Mel channels (Whisper's too) grouped by centre frequency (HZ_EDGES); MFCC channels
by coefficient (c0 = overall level, c1-4 = spectral tilt and broad shape, c5-12 = formant-scale
detail, c13+ = fine detail and pitch harmonics) plus the log-energy channel.
"""

from __future__ import annotations

import numpy as np

HZ_EDGES = (0, 300, 1000, 2000, 4000, 8000)
MFCC_GROUPS = (("c0", 0, 1), ("c1-4", 1, 5), ("c5-12", 5, 13), ("c13+", 13, None))


def bands(spec, channels: int) -> list[tuple[str, np.ndarray]]:
    """(name, channel indices) per band of a feature image with `channels` channels."""
    if spec.kind in ("logmel", "whisper_logmel"):
        from pipelines.features.extract import mel_frequencies

        hz = mel_frequencies(spec)
        out = []
        for lo, hi in zip(HZ_EDGES[:-1], HZ_EDGES[1:]):
            idx = np.flatnonzero((hz >= lo) & (hz < hi))
            if len(idx):
                out.append((f"{lo}-{hi} Hz", idx))
        rest = np.flatnonzero(hz >= HZ_EDGES[-1])
        if len(rest):
            out.append((f">{HZ_EDGES[-1]} Hz", rest))
        return out
    coefficients = channels - 1 if spec.kind == "mfcc" else channels
    out = [(name, np.arange(lo, coefficients if hi is None else min(hi, coefficients)))
           for name, lo, hi in MFCC_GROUPS if lo < coefficients]
    if spec.kind == "mfcc":
        out.append(("energy", np.array([channels - 1])))
    return out


def band_shares(amap: np.ndarray, groups) -> np.ndarray:
    """Share of a [T, C] map's total attribution in each band."""
    per_channel = amap.sum(axis=0)
    total = per_channel.sum()
    return np.array([per_channel[idx].sum() / total if total > 0 else 0.0
                     for _, idx in groups])


def entropy(amap: np.ndarray) -> float:
    """Shannon entropy of the map as a distribution over its cells / log(cells):
    1 = attribution spread evenly, near 0 = on a few cells."""
    p = np.ravel(amap).astype(np.float64)
    total = p.sum()
    if total <= 0 or p.size < 2:
        return 0.0
    p = p[p > 0] / total
    return float(-(p * np.log(p)).sum() / np.log(amap.size))


def summarise(model: str, spec, maps, labels, label_index) -> tuple[list[dict], list[float]]:
    """Rows (model, feature, emotion, band, share, entropy) per emotion and 'all', and the
    per-clip entropies."""
    groups = bands(spec, maps[0].shape[1])
    shares = np.stack([band_shares(m, groups) for m in maps])
    ent = np.array([entropy(m) for m in maps])
    rows = []
    present = [(labels[j], label_index == j) for j in range(len(labels))
               if (label_index == j).any()]
    for emotion, sel in [("all", np.ones(len(maps), bool))] + present:
        for b, (band, idx) in enumerate(groups):
            rows.append({"model": model, "feature": spec.kind, "emotion": emotion,
                         "band": band, "channels": len(idx),
                         "share": float(shares[sel, b].mean()),
                         "share_per_channel": float(shares[sel, b].mean() / len(idx)),
                         "entropy": float(ent[sel].mean()), "clips": int(sel.sum())})
    return rows, ent.tolist()
