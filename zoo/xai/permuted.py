"""Models trained on permuted labels, for the data-randomisation check (zoo.xai.sanity): a
fresh copy of a model's architecture trained for a short run on labels that mean nothing, and
for Whisper models (zoo.models.whisper_heads) the head retrained on the frozen, pretrained
encoder, optionally with the encoder's top layers trained on the same labels too."""

from __future__ import annotations

import numpy as np

from zoo.xai.whisper import find_encoder


def train_on_permuted_labels(model, clips, epochs: int = 5, seed: int = 0,
                             crop_frames: int = 300, batch_size: int = 16,
                             progress: bool = False, fresh=None, lr: float = 1e-3):
    """(a fresh copy of model's architecture, or `fresh`, trained on clips with permuted labels,
    its accuracy on those permuted labels): how far a short run memorised them."""
    import keras
    from tqdm import tqdm

    from zoo.xai.data import pad

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    if fresh is None:
        fresh = keras.models.clone_model(model)  # new weights, same layers
    fresh.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy")
    labels = rng.permutation(clips.label)

    def crop(x):
        if x.ndim == 1 or len(x) <= crop_frames:
            return x
        start = rng.integers(0, len(x) - crop_frames + 1)
        return x[start:start + crop_frames]

    for _ in tqdm(range(epochs), desc="permuted labels", disable=not progress, leave=False):
        order = rng.permutation(len(clips))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            fresh.train_on_batch(pad([crop(clips.x[i]) for i in idx]), labels[idx])
    predicted = np.concatenate([
        np.asarray(fresh(pad([crop(clips.x[i]) for i in range(s, min(s + batch_size,
                                                                      len(clips)))]),
                         training=False)).argmax(axis=1)
        for s in range(0, len(clips), batch_size)])
    return fresh, float((predicted == labels).mean())



PERMUTED_HEAD_EPOCHS = 100  # on cached statistics: seconds, and enough to fit the labels
PERMUTED_HEAD_LR = 1e-2  # zoo.models.whisper_heads.LINEAR_DEFAULTS
RETRAIN_LR = 1e-4  # bench/whisper_finetune.py's larger step for the top layers


def copy_model(model, train_top: int = 0, keep_head: bool = False):
    """A copy of a Whisper model with the trained encoder (weights copied by name; with
    train_top, that many top layers and the final layer norm trainable, in float32) and
    input_norm's statistics; the head freshly initialised, or with keep_head its weights too."""
    import keras

    encoder = find_encoder(model)

    def clone(layer):
        config = layer.get_config()
        if layer is encoder and train_top:
            config.update(train_top=train_top, weights_dtype="float32")
        return layer.__class__.from_config(config)

    fresh = keras.models.clone_model(model, clone_function=clone)
    find_encoder(fresh).load_arrays({n: np.asarray(v) for n, v in encoder.w.items()})
    for layer in model.layers:
        if layer is encoder or not layer.weights:
            continue
        if keep_head or isinstance(layer, keras.layers.Normalization):
            target = fresh.get_layer(layer.name)
            target.set_weights(layer.get_weights())
            if isinstance(target, keras.layers.Normalization):
                target.finalize_state()
    return fresh


def pooled_statistics(model, clips, batch_size: int = 16) -> np.ndarray:
    """The `state_pooling` output [n, S, 2d] of each clip (its own frames)."""
    import keras

    from zoo.xai.data import batches

    pooled = keras.Model(model.inputs[0], model.get_layer("state_pooling").output)
    out = np.zeros((len(clips),) + tuple(pooled.output.shape[1:]), np.float32)
    for idx, x in batches(clips, batch_size):
        out[idx] = np.asarray(pooled(x, training=False))
    return out


_LAST_RUN: list = []  # (model, clips, settings, runs) of the last train_permuted call


def train_permuted(model, clips, epochs: int = 5, seed: int = 0, retrain_top: int = 0,
                   progress: bool = False) -> dict:
    """Permuted-label models of a Whisper model: the head retrained from scratch on the frozen,
    pretrained encoder ('head', always), and with retrain_top the top layers of the encoder
    trained on the same labels too, starting from that head ('top'). {kind: (model, training
    accuracy on the permuted labels, what was trained)}. The same model, clips and settings
    give the same models: the last call's are reused (the sanity checks ask once per method)."""
    settings = (epochs, seed, retrain_top)
    if _LAST_RUN and _LAST_RUN[0] is model and _LAST_RUN[1] is clips and \
            _LAST_RUN[2] == settings:
        return _LAST_RUN[3]
    runs = _train_permuted(model, clips, epochs, seed, retrain_top, progress)
    _LAST_RUN[:] = [model, clips, settings, runs]
    return runs


def _train_permuted(model, clips, epochs, seed, retrain_top, progress) -> dict:
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(clips.label)  # as train_on_permuted_labels
    head = copy_model(model)
    if "state_pooling" in [layer.name for layer in head.layers]:
        stats = pooled_statistics(head, clips)
        tail = keras.Model(head.get_layer("state_pooling").output, head.output)
        tail.compile(optimizer=keras.optimizers.Adam(PERMUTED_HEAD_LR),
                     loss="sparse_categorical_crossentropy")
        for _ in range(PERMUTED_HEAD_EPOCHS):
            order = rng.permutation(len(stats))
            for start in range(0, len(order), 32):
                tail.train_on_batch(stats[order[start:start + 32]],
                                    labels[order[start:start + 32]])
        accuracy = float((np.asarray(tail(stats)).argmax(axis=1) == labels).mean())
        how = (f"head only, {PERMUTED_HEAD_EPOCHS} epochs at {PERMUTED_HEAD_LR} on the frozen "
               f"encoder's statistics of whole clips")
    else:  # a frame-sequence head: trained through the frozen encoder on 3 s crops
        head, accuracy = train_on_permuted_labels(model, clips, epochs, seed, fresh=head,
                                                  progress=progress)
        how = f"head only, {epochs} epochs on 3 s crops through the frozen encoder"
    out = {"head": (head, accuracy, how)}
    if retrain_top:
        top = copy_model(head, train_top=retrain_top, keep_head=True)
        top, top_accuracy = train_on_permuted_labels(model, clips, epochs, seed, fresh=top,
                                                     lr=RETRAIN_LR, batch_size=8,
                                                     progress=progress)
        first = find_encoder(model).n_layers - retrain_top
        out["top"] = (top, top_accuracy,
                      f"then encoder layers {first}.. and the final layer norm with the head, "
                      f"{epochs} epochs at {RETRAIN_LR} on 3 s crops")
    return out
