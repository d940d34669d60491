"""Embeddings of a trained CNN/CRNN and linear heads on them: the pieces behind
`zoo.refit_head` (re-fitting an export's heads) and `zoo.training.speaker_groups` (finishing a run
trained with --speaker-groups).

The embedding is the pooled vector the network's head starts from: the input of its
`speaker_standardize` layer when it has one, of the Whisper heads' `embedding` layer, else of
its `dense` layer. A head is a Normalization layer and an L2-regularised Dense softmax: a
class-balanced logistic regression solved exactly (L-BFGS), one per L2 strength, the best by
validation UA. Per speaker, embeddings are standardised with the mean and
(population) standard deviation over all of that speaker's clips (`speaker_standardize_np`, the
reference for zoo.export.savedmodel.speaker_standardize on the graph).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipelines.common.tfenv import quiet_tensorflow

EMBEDDING_INPUT_OF = "dense"  # the head's first layer in zoo.models (classifier_head)
EMBEDDING_LAYER = "embedding"  # the Whisper heads name their pooled vector (zoo.models.whisper_heads)
DEFAULT_L2 = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
MIN_CLIPS = 20  # clips per speaker a model card asks serving_by_speaker requests to hold
EPS = 1e-6  # zoo.export.savedmodel.SPEAKER_EPS


class RefitError(RuntimeError):
    """A problem the user can fix; printed as one line."""


# ---------------------------------------------------------------- per-speaker statistics

def speaker_standardize_np(embeddings: np.ndarray, speakers) -> np.ndarray:
    """Each row minus the mean over its speaker's rows, divided by their (population) standard
    deviation + EPS. The reference for zoo.export.savedmodel.speaker_standardize (on the graph)."""
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

    from pipelines.records.dataset import make_dataset
    from pipelines.records.tfrecord import open_set

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
    """Normalization (adapted to train_x) -> Dense softmax with L2 on the kernel (weights are
    set by fit_head)."""
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


def solve_path(x: np.ndarray, y: np.ndarray, num_classes: int, l2_grid,
               seed: int = 0) -> dict:
    """{l2: (kernel [D, C], bias [C])}: the class-balanced multinomial logistic regression with
    loss mean(weighted CE) + l2 * |W|^2 on standardised x for each L2 strength, solved by
    scikit-learn's L-BFGS along the regularisation path (strongest first, each fit starting
    from the previous solution). A convex fit, the same answer every time, which the gradient
    steps used before did not reach on wide (Whisper) embeddings."""
    from sklearn.linear_model import LogisticRegression

    present = np.unique(y)
    clf = LogisticRegression(class_weight="balanced", max_iter=1000, tol=1e-4,
                             warm_start=True, random_state=seed)
    out = {}
    for l2 in sorted(set(l2_grid), reverse=True):
        # scikit-learn minimises 0.5 |W|^2 + C sum(weighted CE): C = 1 / (2 l2 n) is the
        # same objective as mean CE + l2 |W|^2.
        clf.set_params(C=1.0 / (2.0 * l2 * len(y)))
        clf.fit(x, y)
        kernel = np.zeros((x.shape[1], num_classes), np.float32)
        bias = np.full(num_classes, -1e4, np.float32)  # a class never seen is never predicted
        if len(present) == 2:  # binary: scikit-learn keeps one row
            kernel[:, present[1]], bias[present[1]] = clf.coef_[0], clf.intercept_[0]
            kernel[:, present[0]], bias[present[0]] = 0.0, 0.0
        else:
            kernel[:, present] = clf.coef_.T
            bias[present] = clf.intercept_
        out[l2] = (kernel, bias)
    return out


def solve(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float, seed: int = 0):
    """solve_path for one L2 strength: (kernel, bias)."""
    return solve_path(x, y, num_classes, [l2], seed)[l2]


def fit_head(train, validation, labels: list[str], l2_grid, prefix: str = "",
             epochs: int | None = None, seed: int = 0):
    """Fit one linear head per L2 strength; (best head, its l2, [{l2, validation_ua}]).

    train / validation: (embeddings, label indices). Class-balanced, solved exactly
    (solve()); the best validation UA wins (the first, i.e. weakest L2, on ties). `epochs` is
    accepted for old callers and unused."""
    from zoo.evaluation.metrics import report

    x, y = train
    best, tried, solved = None, [], None
    for l2 in l2_grid:
        head = linear_head(x, len(labels), l2, prefix)
        if solved is None:
            standardised = np.asarray(head.get_layer(f"{prefix}embedding_scale")(x))
            solved = solve_path(standardised, y, len(labels), l2_grid, seed)
        head.get_layer(f"{prefix}classifier").set_weights(list(solved[l2]))
        pred = np.asarray(head(validation[0], training=False)).argmax(axis=1)
        ua = report(validation[1], pred, labels)["ua"]
        tried.append({"l2": l2, "validation_ua": round(float(ua), 4)})
        if best is None or ua > best[0]:
            best = (ua, l2, head)
    return best[2], best[1], tried


def solve_classifier(model, train, validation, labels: list[str], l2_grid,
                     seed: int = 0) -> list[dict]:
    """Set a model's `classifier` (a Dense softmax on its embedding layer's output, as the
    linear Whisper heads) to the exact class-balanced logistic regression on the training
    clips' embeddings, for the L2 strength of l2_grid with the best validation UA (solve()).
    train / validation: (model inputs, label indices). Returns [{l2, validation_ua}]."""
    from zoo.evaluation.metrics import report

    trunk = embedding_model(model)
    x = np.asarray(trunk.predict(train[0], batch_size=1024, verbose=0))
    classifier = model.get_layer("classifier")
    best, tried = None, []
    solved = solve_path(x, train[1], len(labels), l2_grid, seed)
    for l2 in l2_grid:
        kernel, bias = solved[l2]
        classifier.set_weights([kernel, bias])
        pred = np.asarray(model.predict(validation[0], batch_size=1024, verbose=0)).argmax(1)
        ua = float(report(validation[1], pred, labels)["ua"])
        tried.append({"l2": l2, "validation_ua": round(ua, 4)})
        if best is None or ua > best[0]:
            best = (ua, [kernel, bias])
    classifier.set_weights(best[1])
    return tried


def plain_model(source, head):
    """The source model with `head` in place of its own: one flat functional model (so
    Grad-CAM and fine-tuning address the conv blocks by name, as before)."""
    import keras

    embedding = source.get_layer(embedding_layer(source)).input
    out = head.get_layer("classifier")(head.get_layer("embedding_scale")(embedding))
    return keras.Model(source.inputs, out, name=source.name)


# ---------------------------------------------------------------- predictions and export

def predictions(probs, y, meta, split: str, labels: list[str], manifest):
    """zoo.training.report.prediction_frame plus each clip's original label (from `manifest`,
    indexed by id), as in a run's predictions.csv."""
    from zoo.training.report import prediction_frame

    pred = prediction_frame(probs, y, meta, split, labels)
    pred["original_label"] = manifest.loc[pred["id"], "original_label"].astype(str).values
    return pred


def export_refit(model, trunk, speaker_head, spec, labels, base, name: str, card: str,
                 meta: dict, version: int | None = None, reliability=None) -> Path:
    """Write base/name/<version>/ with serving_default/_with_length/_with_stats (plain model)
    and serving_by_speaker (trunk -> per-request speaker statistics -> speaker head)."""
    from zoo.export.savedmodel import SpeakerServingModule, export

    return export(model, spec, labels, base, name, card, meta, version,
                  make_module=lambda assets: SpeakerServingModule(
                      model, trunk, speaker_head, spec, labels, assets, reliability))
