"""Embeddings of a trained CNN/CRNN and linear heads on them: the pieces behind
`zoo.refit_head` (re-fitting an export's heads) and `zoo.speaker_groups` (finishing a run
trained with --speaker-groups).

The embedding is the pooled vector the network's head starts from: the input of its
`speaker_standardize` layer when it has one, else of its `dense` layer. A head is a
Normalization layer and an L2-regularised Dense softmax, fitted class-balanced, one per L2
strength, the best by validation UA. Per speaker, embeddings are standardised with the mean and
(population) standard deviation over all of that speaker's clips (`speaker_standardize_np`, the
reference for zoo.export.speaker_standardize on the graph).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipelines.tfenv import quiet_tensorflow

EMBEDDING_INPUT_OF = "dense"  # the head's first layer in zoo.models (classifier_head)
EMBEDDING_LAYER = "embedding"  # the Whisper heads name their pooled vector (zoo.models.whisper_heads)
DEFAULT_L2 = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
MIN_CLIPS = 20  # clips per speaker a model card asks serving_by_speaker requests to hold
EPS = 1e-6  # zoo.export.SPEAKER_EPS


class RefitError(RuntimeError):
    """A problem the user can fix; printed as one line."""


# ---------------------------------------------------------------- per-speaker statistics

def speaker_standardize_np(embeddings: np.ndarray, speakers) -> np.ndarray:
    """Each row minus the mean over its speaker's rows, divided by their (population) standard
    deviation + EPS. The reference for zoo.export.speaker_standardize (on the graph)."""
    speakers = np.asarray(speakers)
    out = np.empty_like(embeddings, dtype=np.result_type(embeddings.dtype, np.float32))
    for s in np.unique(speakers):
        rows = speakers == s
        centred = embeddings[rows] - embeddings[rows].mean(axis=0)
        out[rows] = centred / (np.sqrt((centred ** 2).mean(axis=0)) + EPS)
    return out


# ---------------------------------------------------------------- model pieces

def embedding_layer(model) -> str:
    """The layer whose input is the pooled embedding: `speaker_standardize` in a model trained
    with speaker groups (zoo.train --speaker-groups), the identity layer `embedding` of the
    Whisper heads, else the head's `dense`."""
    from keras.layers import InputLayer

    from zoo.models.cnn import SPEAKER_STANDARDIZE

    names = {layer.name for layer in model.layers if not isinstance(layer, InputLayer)}
    for name in (SPEAKER_STANDARDIZE, EMBEDDING_LAYER):
        if name in names:
            return name
    return EMBEDDING_INPUT_OF


def embedding_model(model, layer: str | None = None):
    """features -> the input of `layer` (default: embedding_layer(model), the pooled
    embedding), sharing the model's layers."""
    import keras

    layer = layer or embedding_layer(model)
    return keras.Model(model.inputs, model.get_layer(layer).input, name=f"{model.name}_trunk")


def trained_speaker_head(model):
    """The head of a model trained with speaker groups, after its `speaker_standardize` layer
    (dense, dropout, classifier: a chain), as a model on standardised embeddings; it shares the
    trained layers."""
    import keras

    from zoo.models.cnn import SPEAKER_STANDARDIZE

    names = [layer.name for layer in model.layers]
    standardize = model.get_layer(SPEAKER_STANDARDIZE)
    inputs = keras.Input((standardize.output.shape[-1],), name="speaker_embedding")
    x, previous = inputs, standardize.output
    for layer in model.layers[names.index(SPEAKER_STANDARDIZE) + 1:]:
        if layer.input is not previous:
            raise RefitError(f"{model.name}: the layers after {SPEAKER_STANDARDIZE!r} are not "
                             f"a chain ({layer.name!r} does not take {previous.name!r})")
        x, previous = layer(x), layer.output
    return keras.Model(inputs, x, name="speaker_head")


def embed_split(trunk, folder, split: str, spec, batch_size: int = 32, progress: bool = True):
    """(embeddings [n, D], labels [n], meta dict of arrays) for one split of a TFRecord set."""
    from tqdm import tqdm

    from pipelines.dataset import make_dataset
    from pipelines.tfrecord import open_set

    total = math.ceil(open_set(folder).examples(split) / batch_size)
    ds = make_dataset(folder, split, spec, batch_size, with_meta=True)
    parts, labels, meta = [], [], {}
    for x, y, m in tqdm(ds, total=total, desc=f"embedding {split}", disable=not progress,
                        leave=False):
        parts.append(np.asarray(trunk(x, training=False)))
        labels.append(np.asarray(y))
        for k, v in m.items():
            meta.setdefault(k, []).extend(s.decode() for s in v.numpy())
    return (np.concatenate(parts).astype(np.float32), np.concatenate(labels),
            {k: np.array(v) for k, v in meta.items()})


def linear_head(train_x: np.ndarray, num_classes: int, l2: float, prefix: str = ""):
    """Normalization (adapted to train_x) -> Dense softmax with L2 on the kernel."""
    import keras

    tf = quiet_tensorflow()
    scale = keras.layers.Normalization(name=f"{prefix}embedding_scale")
    scale.adapt(tf.data.Dataset.from_tensor_slices(train_x).batch(1024))
    inputs = keras.Input((train_x.shape[1],), name=f"{prefix}embedding")
    dense = keras.layers.Dense(num_classes, activation="softmax", name=f"{prefix}classifier",
                               kernel_regularizer=keras.regularizers.L2(l2))
    head = keras.Model(inputs, dense(scale(inputs)), name=f"{prefix}head")
    head.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    return head


def fit_head(train, validation, labels: list[str], l2_grid, prefix: str = "",
             epochs: int = 100, seed: int = 0):
    """Fit one linear head per L2 strength; (best head, its l2, [{l2, validation_ua}]).

    train / validation: (embeddings, label indices). Class-balanced weights; the best
    validation UA wins (the first, i.e. weakest L2, on ties)."""
    import keras

    from zoo.metrics import report

    x, y = train
    counts = np.bincount(y, minlength=len(labels))
    weights = {i: len(y) / (len(labels) * c) for i, c in enumerate(counts) if c}
    best, tried = None, []
    for l2 in l2_grid:
        keras.utils.set_random_seed(seed)
        head = linear_head(x, len(labels), l2, prefix)
        head.fit(x, y, batch_size=256, epochs=epochs, class_weight=weights, verbose=0)
        pred = np.asarray(head(validation[0], training=False)).argmax(axis=1)
        ua = report(validation[1], pred, labels)["ua"]
        tried.append({"l2": l2, "validation_ua": round(float(ua), 4)})
        if best is None or ua > best[0]:
            best = (ua, l2, head)
    return best[2], best[1], tried


def plain_model(source, head):
    """The source model with `head` in place of its own: one flat functional model (so
    Grad-CAM and fine-tuning address the conv blocks by name, as before)."""
    import keras

    embedding = source.get_layer(embedding_layer(source)).input
    out = head.get_layer("classifier")(head.get_layer("embedding_scale")(embedding))
    return keras.Model(source.inputs, out, name=source.name)


# ---------------------------------------------------------------- predictions and export

def predictions(probs, y, meta, split: str, labels: list[str], manifest):
    """zoo.train_report.prediction_frame plus each clip's original label (from `manifest`,
    indexed by id), as in a run's predictions.csv."""
    from zoo.train_report import prediction_frame

    pred = prediction_frame(probs, y, meta, split, labels)
    pred["original_label"] = manifest.loc[pred["id"], "original_label"].astype(str).values
    return pred


def export_refit(model, trunk, speaker_head, spec, labels, base, name: str, card: str,
                 meta: dict, version: int | None = None) -> Path:
    """Write base/name/<version>/ with serving_default/_with_length/_with_stats (plain model)
    and serving_by_speaker (trunk -> per-request speaker statistics -> speaker head)."""
    from zoo.export import SpeakerServingModule, export

    return export(model, spec, labels, base, name, card, meta, version,
                  make_module=lambda assets: SpeakerServingModule(
                      model, trunk, speaker_head, spec, labels, assets))
