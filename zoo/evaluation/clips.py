"""Where evaluated clips come from: corpus folders read and decoded directly (no build step), or
one split of a TFRecord set as raw waveforms; zoo.evaluate, zoo.predict, zoo.calibrate,
zoo.explain and the benchmarks share them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipelines.audio.decode import AudioError, safe_decode
from pipelines.common.parallel import imap_ordered


def decode_or_reason(path):
    """Waveform (16 kHz mono float32) of a file, or the reason it cannot be read (a string);
    module-level, so process pools can run it (zoo.evaluate, zoo.predict)."""
    result = safe_decode(path)
    return result.reason if isinstance(result, AudioError) else result.waveform


def clips_from_corpora(corpora: list[str], calm: str = "neutral", workers=None,
                       progress: bool = True):
    """(rows, waveforms, skipped) for corpus folders: reader rows of decodable files."""
    from pipelines.corpora import read_corpora

    rows, skipped, _ = read_corpora(corpora, calm=calm)
    decoded = list(imap_ordered(decode_or_reason, rows["path"].tolist(), workers, desc="decoding",
                                progress=progress))
    ok = [not isinstance(d, str) for d in decoded]
    bad = rows.loc[[not o for o in ok], ["path", "corpus"]].assign(
        reason=[d for d in decoded if isinstance(d, str)])
    rows = rows.loc[ok].reset_index(drop=True)
    waves = [d for d in decoded if not isinstance(d, str)]
    rows.insert(0, "id", [f"{c}/{Path(p).stem}" for c, p in zip(rows["corpus"], rows["path"])])
    return rows, waves, pd.concat([skipped, bad], ignore_index=True)


def clips_from_tfrecords(folder, split: str):
    """(rows, waveforms) of one split, as raw waveforms (no trimming: the model does its own)."""
    from pipelines.records.dataset import make_dataset
    from pipelines.features.spec import FeatureSpec
    from pipelines.records.tfrecord import open_set

    tfset = open_set(folder)
    raw = FeatureSpec(remove_dc=False, trim_db=None)
    ds = make_dataset(folder, split, raw, batch_size=64, output="waveform", with_meta=True)
    metas, waves = [], []
    for x, _, meta in ds:
        for i in range(int(x["length"].shape[0])):
            waves.append(x["waveform"][i, :int(x["length"][i])].numpy())
            metas.append({k: meta[k][i].numpy().decode() for k in meta})
    rows = pd.DataFrame(metas)
    manifest = tfset.manifest().set_index("id")
    rows["original_label"] = manifest.loc[rows["id"], "original_label"].astype(str).values
    return rows, waves
