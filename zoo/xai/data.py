"""Exports and clips for explanations: the feature-input Keras model of an export, the clips
(corpus folders, a TFRecord split or an embedding set) as the model's own input, and the
model's predictions on them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np


class ExplainError(RuntimeError):
    """A problem the user can fix; printed as one line."""


@dataclasses.dataclass
class LoadedModel:
    path: Path
    info: dict
    model: object  # keras.Model taking features [B, T, C] or vectors [B, D]
    labels: list[str]
    kind: str  # 'features' or 'embedding'
    spec: object | None  # FeatureSpec of a features model

    @property
    def name(self) -> str:
        return str(self.info.get("name", self.path.parent.name))

    @property
    def feature_kind(self) -> str:
        return self.spec.kind if self.spec is not None else "embedding"


def load_model(path) -> LoadedModel:
    """savedmodels/<model>[/<version>] -> its model.keras and what it takes."""
    from pipelines.features.spec import FeatureSpec
    from zoo.export.layout import read_export, resolve_version

    try:
        version = resolve_version(Path(path))
        info = read_export(version)
    except FileNotFoundError as err:
        raise ExplainError(f"--model {err}") from None
    keras_file = version / "model.keras"
    if not keras_file.is_file():
        raise ExplainError(f"--model {version}: no model.keras beside the SavedModel (the "
                           "feature-input Keras model explanations run on)")
    kind = info.get("input", "waveform")
    if kind == "waveform" and "feature_spec" in info:
        kind, spec = "features", FeatureSpec.from_dict(info["feature_spec"])
    elif kind == "embedding":
        spec = None
    else:
        raise ExplainError(f"--model {version}: takes {kind} input; explanations cover feature "
                           "models (MFCC / log-Mel) and pooled-vector SSL heads")
    import keras

    import zoo.models.layers  # noqa: F401 - registers the zoo's layers for loading

    model = keras.saving.load_model(keras_file, compile=False)
    return LoadedModel(version, info, model, list(info["labels"]), kind, spec)


@dataclasses.dataclass
class Clips:
    """Per clip: its input (features [T, C] or a vector [D]), label index and meta."""

    x: list[np.ndarray]
    label: np.ndarray
    rows: object  # pandas DataFrame: id, emotion, speaker, corpus (as available)

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, index) -> "Clips":
        index = np.asarray(index, int)
        return Clips([self.x[i] for i in index], self.label[index],
                     self.rows.iloc[index].reset_index(drop=True))


def load_clips(loaded: LoadedModel, corpus=None, data=None, split: str = "test",
               max_clips: int | None = None, seed: int = 0, progress: bool = True) -> Clips:
    """The clips of --corpus folders or --data (a TFRecord split, or an embedding set for SSL
    heads) that carry one of the model's labels, as the model's input."""
    if loaded.kind == "embedding":
        if not data:
            raise ExplainError("this model takes SSL embeddings: pass --data <embedding set> "
                               "(python -m pipelines.embeddings)")
        return _embedding_clips(loaded, data, split, max_clips, seed)
    from zoo.evaluation.clips import clips_from_corpora, clips_from_tfrecords

    if corpus:
        rows, waves, skipped = clips_from_corpora(corpus, progress=progress)
    else:
        if not Path(data, "schema.json").is_file():
            raise ExplainError(f"--data {data}: no schema.json (not a TFRecord set; make one "
                               "with python -m pipelines.build)")
        rows, waves = clips_from_tfrecords(data, split)
    known = rows["emotion"].isin(loaded.labels).to_numpy()
    if not known.any():
        raise ExplainError(f"none of the clips has a label the model knows ({loaded.labels})")
    index = _pick(np.flatnonzero(known), max_clips, seed)
    rows = rows.iloc[index].reset_index(drop=True)
    x = features(loaded.spec, [waves[i] for i in index], progress)
    label = np.array([loaded.labels.index(e) for e in rows["emotion"]], np.int64)
    return Clips(x, label, rows)


def _pick(index: np.ndarray, max_clips: int | None, seed: int) -> np.ndarray:
    if max_clips is None or len(index) <= max_clips:
        return index
    return np.sort(np.random.default_rng(seed).choice(index, max_clips, replace=False))


def features(spec, waves, progress: bool = True, batch_size: int = 32) -> list[np.ndarray]:
    """Each clip's features [frames, C] with the model's FeatureSpec (its own frames only);
    clips shorter than one FFT window are zero-padded to one."""
    from tqdm import tqdm

    from pipelines.features.extract import compute_many

    waves = [np.pad(w, (0, max(0, spec.n_fft - len(w)))) for w in
             (np.asarray(w, np.float32) for w in waves)]
    out = []
    with tqdm(total=len(waves), desc="features", disable=not progress, leave=False) as bar:
        for start in range(0, len(waves), 8 * batch_size):
            out += compute_many(waves[start:start + 8 * batch_size], spec, batch_size)
            bar.update(len(out) - bar.n)
    return out


def _embedding_clips(loaded, data, split, max_clips, seed) -> Clips:
    import pandas as pd

    from pipelines.records.embedding_set import make_dataset, open_embedding_set
    from zoo.evaluation.evaluate import check_embedding_set

    eset = open_embedding_set(data)
    check_embedding_set(loaded.info, eset)
    if list(eset.labels) != loaded.labels:
        raise ExplainError(f"--data {data}: labels {eset.labels} differ from the model's "
                           f"{loaded.labels}")
    xs, ys, metas = [], [], []
    for x, y, meta in make_dataset(data, split, "embedding", 256, with_meta=True):
        xs.extend(np.asarray(x, np.float32))
        ys.extend(np.asarray(y).tolist())
        metas.extend({k: meta[k][i].numpy().decode() for k in meta} for i in range(len(y)))
    if not xs:
        raise ExplainError(f"--data {data}: split {split!r} is empty")
    index = _pick(np.arange(len(xs)), max_clips, seed)
    return Clips([xs[i] for i in index], np.asarray(ys, np.int64)[index],
                 pd.DataFrame([metas[i] for i in index]))


def pad(xs: list[np.ndarray]) -> np.ndarray:
    """Zero-pad clips to the longest ([B, T, C]), or stack vectors ([B, D])."""
    if xs[0].ndim == 1:
        return np.stack(xs).astype(np.float32)
    longest = max(len(x) for x in xs)
    out = np.zeros((len(xs), longest, xs[0].shape[1]), np.float32)
    for i, x in enumerate(xs):
        out[i, :len(x)] = x
    return out


def batches(clips: Clips, batch_size: int = 16):
    """(indices, padded inputs) in batches of similar length (less padding)."""
    order = np.argsort([len(x) for x in clips.x], kind="stable")
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        yield idx, pad([clips.x[i] for i in idx])


def attribute(explainer, clips: Clips, targets=None, batch_size: int = 16,
              progress: bool = True, signed=False):
    """(maps per clip, cropped to the clip, probabilities [n, classes]) for `targets`
    (default: each clip's predicted class). signed='both': (map, signed map) per clip."""
    from tqdm import tqdm

    maps: list = [None] * len(clips)
    probs = np.zeros((len(clips), int(explainer.model.output.shape[-1])), np.float32)
    with tqdm(total=len(clips), desc=explainer.method, disable=not progress,
              leave=False) as bar:
        for idx, x in batches(clips, batch_size):
            probs[idx] = explainer.probabilities(x)
            t = probs[idx].argmax(axis=1) if targets is None else np.asarray(targets)[idx]
            if signed == "both":
                m, ms = explainer.pair(x, t, batch_size=batch_size)
                for row, i in enumerate(idx):
                    maps[i] = (m[row, :len(clips.x[i])], ms[row, :len(clips.x[i])])
            else:
                m = explainer(x, t, signed=signed, batch_size=batch_size)
                for row, i in enumerate(idx):
                    maps[i] = m[row, :len(clips.x[i])]
            bar.update(len(idx))
    return maps, probs
