"""Heads on Whisper's encoder (pipelines.encoders.whisper), trained on Whisper embedding sets
(python -m pipelines.embeddings --encoder whisper) and exported with the encoder in front.

    whisper_linear  linear softmax on all hidden states' pooled statistics side by side
                    (layer=all, the default), on one of them (--set layer=N) or on a learned
                    softmax mix (layer=mix); solved exactly by zoo.train but for the mix
    whisper_mlp     the same input, one hidden layer (units, GELU, dropout)
    whisper_attn    attention pooling over one hidden state's frames (sets made with --frames)

Each builder makes the same layers over two inputs: the embedding set's vectors (`embedding`
[batch, (L + 1) * 2d], or `frames` [batch, T', d]) for training, and, given `encoder` (a
WhisperEncoder), the log-Mel features of a whisper_logmel FeatureSpec, computed on the graph in
the export: features -> encoder -> the same pooling -> the same head. `to_features_model()`
copies a trained head's weights into that form. Layer names: input_norm (Normalization fitted
to the training vectors by zoo.train), layer_mix / select_state, `embedding` (the vector the
classifier reads: zoo.refit_head re-fits heads on it), dense, classifier.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from zoo.models.layers import AttentionPooling, FrameMask, LayerMix, SelectState
from zoo.models.registry import register_model

TINY_STATES, TINY_WIDTH = 5, 384  # whisper tiny: hidden states 0..4, width 384


class WhisperHeadError(ValueError):
    """A head that cannot be built as asked; one line."""


def _layer_choice(layer, states: int):
    if layer in ("mix", "all"):
        return layer
    try:
        index = int(layer)
    except (TypeError, ValueError):
        raise WhisperHeadError(f"layer must be 0..{states - 1}, 'mix' or 'all', got "
                               f"{layer!r}") from None
    if not 0 <= index < states:
        raise WhisperHeadError(f"layer {index}: the encoder has hidden states 0..{states - 1}")
    return index


def stats_input(dim: int, states: int, encoder=None, n_mels: int = 80):
    """(inputs, pooled statistics [batch, S, 2d]) from embedding vectors or, with an encoder,
    from whisper_logmel features."""
    from pipelines.encoders.whisper import HiddenStatePooling

    if encoder is None:
        if dim % states:
            raise WhisperHeadError(f"a {dim}-number vector does not split into {states} hidden "
                                   "states; is --data a whisper embedding set?")
        inputs = keras.Input((dim,), name="statistics")
        return inputs, layers.Reshape((states, dim // states), name="to_states")(inputs)
    inputs = keras.Input((None, n_mels), name="features")
    mask = FrameMask(name="frame_mask")(inputs)
    hidden, frame_mask = encoder(inputs, mask)
    return inputs, HiddenStatePooling(name="state_pooling")([hidden, frame_mask])


def _pick(x, layer, states: int):
    """Normalised statistics [batch, S, D] -> the vector the head reads, named `embedding`."""
    choice = _layer_choice(layer, states)
    if choice == "mix":
        x = LayerMix(name="layer_mix")(x)
    elif choice == "all":
        x = layers.Flatten(name="all_states")(x)
    else:
        x = SelectState(choice, name="select_state")(x)
    return layers.Identity(name="embedding")(x)


def _classifier(x, num_classes: int, dropout: float, l2: float):
    x = layers.Dropout(dropout, name="head_dropout")(x)
    return layers.Dense(num_classes, activation="softmax", name="classifier",
                        kernel_regularizer=keras.regularizers.L2(l2) if l2 else None)(x)


# A linear head on fixed statistics is a convex fit, solved exactly by zoo.train (its L2 chosen
# by validation UA; zoo.training.ssl.solve_head); with layer=mix it trains by gradient steps, at a
# larger step than the networks'. The heads read standardised statistics.
LINEAR_DEFAULTS = {"lr": 1e-2, "epochs": 60, "patience": 20, "solver": "exact"}
HEAD_DEFAULTS = {"lr": 3e-3, "epochs": 60, "patience": 20}


@register_model("whisper_linear", input="embedding", train_defaults=LINEAR_DEFAULTS)
def whisper_linear(num_classes: int, spec=None, dim: int = TINY_STATES * 2 * TINY_WIDTH,
                   states: int = TINY_STATES, layer="all", dropout: float = 0.0,
                   l2: float = 1e-2, encoder=None) -> keras.Model:
    """Linear softmax on Whisper hidden-state statistics (one state, a learned mix, or all)."""
    inputs, x = stats_input(dim, states, encoder, spec.n_mels if spec else 80)
    x = layers.Normalization(axis=(1, 2), name="input_norm")(x)
    x = _pick(x, layer, states)
    return keras.Model(inputs, _classifier(x, num_classes, dropout, l2), name="whisper_linear")


@register_model("whisper_mlp", input="embedding", train_defaults=HEAD_DEFAULTS)
def whisper_mlp(num_classes: int, spec=None, dim: int = TINY_STATES * 2 * TINY_WIDTH,
                states: int = TINY_STATES, layer="mix", units: int = 256,
                dropout: float = 0.3, l2: float = 1e-4, encoder=None) -> keras.Model:
    """One hidden layer (GELU) on Whisper hidden-state statistics."""
    inputs, x = stats_input(dim, states, encoder, spec.n_mels if spec else 80)
    x = layers.Normalization(axis=(1, 2), name="input_norm")(x)
    x = _pick(x, layer, states)
    x = layers.Dense(units, activation="gelu", name="dense")(layers.Dropout(
        dropout, name="input_dropout")(x))
    return keras.Model(inputs, _classifier(x, num_classes, dropout, l2), name="whisper_mlp")


@register_model("whisper_attn", input="frames", train_defaults=HEAD_DEFAULTS)
def whisper_attn(num_classes: int, spec=None, dim: int = TINY_WIDTH, layer="last",
                 units: int = 256, attention_units: int = 128, dropout: float = 0.2,
                 l2: float = 1e-4, encoder=None) -> keras.Model:
    """Attention pooling over one Whisper hidden state's frames (the set's --frames-layer)."""
    if encoder is None:
        inputs = keras.Input((None, dim), name="frames")
        mask = FrameMask(name="frame_mask")(inputs)
        x = inputs
    else:
        n_mels = spec.n_mels if spec else 80
        index = encoder.n_layers if layer in ("last", None) else _layer_choice(
            layer, encoder.n_layers + 1)
        if not isinstance(index, int):
            raise WhisperHeadError("whisper_attn reads one hidden state's frames: layer=N")
        inputs = keras.Input((None, n_mels), name="features")
        hidden, mask = encoder(inputs, FrameMask(name="frame_mask")(inputs))
        x = SelectState(index, name="select_state")(hidden)
    x = layers.LayerNormalization(name="input_norm")(x)
    x = layers.Dense(units, activation="gelu", name="projection")(x)
    x = layers.Dropout(dropout, name="projection_dropout")(x)
    x = AttentionPooling(attention_units, name="attention")([x, mask])
    x = layers.Identity(name="embedding")(x)
    return keras.Model(inputs, _classifier(x, num_classes, dropout, l2), name="whisper_attn")


def to_features_model(name: str, head: keras.Model, encoder, spec, num_classes: int,
                      overrides: dict) -> keras.Model:
    """The features-input model (encoder in front) with `head`'s trained weights."""
    from zoo.models.registry import build_model

    full = build_model(name, num_classes, spec, encoder=encoder, **overrides)
    for layer in head.layers:
        if layer.weights and not isinstance(layer, keras.layers.InputLayer):
            target = full.get_layer(layer.name)
            target.set_weights(layer.get_weights())
            if isinstance(target, keras.layers.Normalization):
                target.finalize_state()  # its call reads mean/variance derived from the weights
    return full
