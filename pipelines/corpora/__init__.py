"""Corpus readers: a folder in, rows (pandas) out, with what was skipped and why.

    from pipelines.corpora import read_corpus, read_corpora
    readout = read_corpus("ravdess", "/data/ravdess")           # one corpus
    rows, skipped, notes = read_corpora(["ravdess=/data/r", "mine=/data/my_folders"])
    rows, skipped, notes = read_corpora(["emodb=/data/emodb"], boredom="neutral")

Known names use their corpus' reader; any other name reads a "one folder per emotion" tree.
"""

from __future__ import annotations

import pandas as pd

from pipelines.corpora import cremad, emodb, folder, nemo, ravdess, savee, tess
from pipelines.corpora.base import (
    COLUMNS, SKIP_COLUMNS, CorpusError, Readout, Unparsable, audio_files, check_policy,
)
from pipelines.corpora.labels import BOREDOM_POLICIES

READERS = {
    "ravdess": ravdess.read,
    "tess": tess.read,
    "savee": savee.read,
    "cremad": cremad.read,
    "emodb": emodb.read,
    "nemo": nemo.read,
}
ALIASES = {"crema-d": "cremad", "crema_d": "cremad", "crema": "cremad",
           "emo-db": "emodb", "emo_db": "emodb", "berlin": "emodb"}
# Label policies only some corpora have (calm goes to every reader): option -> those readers.
POLICY_READERS = {"boredom": ("emodb",)}

__all__ = [
    "COLUMNS", "SKIP_COLUMNS", "CorpusError", "Readout", "Unparsable", "audio_files",
    "READERS", "parse_corpus_arg", "read_corpus", "read_corpora",
]


def parse_corpus_arg(arg: str) -> tuple[str, str]:
    """'NAME=DIR' -> (name, dir). Raises ValueError with the expected form."""
    name, sep, path = arg.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"--corpus takes NAME=DIR (e.g. ravdess=/data/ravdess), got {arg!r}")
    name = name.strip().lower()
    return ALIASES.get(name, name), path


def read_corpus(name: str, root, calm: str = "neutral", **options) -> Readout:
    """Read one corpus folder with the reader for `name` (generic folder reader otherwise)."""
    name = ALIASES.get(name.lower(), name.lower())
    if name in READERS:
        return READERS[name](root, calm=calm, **options)
    return folder.read(root, corpus=name, calm=calm, **options)


def read_corpora(args, calm: str = "neutral",
                 boredom: str = "drop") -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Read several 'NAME=DIR' corpora; rows and skips concatenated, notes in order.

    calm goes to every reader; boredom (Emo-DB: 'drop' or 'neutral') only to those that have it.
    """
    check_policy("boredom", boredom, BOREDOM_POLICIES)
    policies = {"boredom": boredom}
    readouts = []
    for arg in args:
        name, path = parse_corpus_arg(arg) if isinstance(arg, str) else arg
        name = ALIASES.get(name.lower(), name.lower())
        options = {k: v for k, v in policies.items() if name in POLICY_READERS[k]}
        readouts.append(read_corpus(name, path, calm=calm, **options))
    names = [r.corpus for r in readouts]
    if len(set(names)) != len(names):
        raise CorpusError(f"the same corpus name is given twice: {names}")
    rows = pd.concat([r.rows for r in readouts], ignore_index=True)
    # A reader's integer column (RAVDESS actor, SAVEE sentence) turns float where other corpora
    # lack it; keep it integer, with missing values, so manifests say 1 and not 1.0.
    for column in rows.columns:
        if rows[column].dtype.kind == "f" and any(
            column in r.rows and r.rows[column].dtype.kind in "iu" for r in readouts
        ):
            rows[column] = rows[column].astype("Int64")
    skipped = pd.concat([r.skipped for r in readouts], ignore_index=True)
    return rows, skipped, [n for r in readouts for n in r.notes]
