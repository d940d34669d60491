"""Small heads over frozen self-supervised speech embeddings (pipelines.embeddings sets).

    hubert_cnn        1-D CNN over the pooled vector (mean + std of the frames: 1536 numbers for
                      base models), as the seed's HuBERT CNN
    hubert_rnn        BiLSTM over the pooled vector read as a sequence: step i holds the means
                      and standard deviations of `chunk` consecutive hidden units
    wav2vec2_frozen   attention pooling over the frame sequence (sets made with --frames)

`dim` is the width of the input (vector length, or frame width for wav2vec2_frozen); training
takes it from the embedding set. Names follow the zoo's (input_norm, conv_block_N, bilstm,
attention, classifier) so Grad-CAM and tests address layers by name. The input vector is
standardised by a BatchNormalization layer (the seed standardised the vectors before its heads).
"""

from __future__ import annotations

import keras
from keras import layers

from zoo.models.layers import AttentionPooling, FrameMask
from zoo.models.cnn import classifier_head
from zoo.models.registry import register_model

BASE_HIDDEN = 768  # hubert-base / wav2vec2-base


class HeadConfigError(ValueError):
    """A head that cannot be built for the given input width; one line."""


def vector_input(dim: int):
    inputs = keras.Input((dim,), name="embedding")
    return inputs, layers.BatchNormalization(momentum=0.9, name="input_norm")(inputs)


@register_model("hubert_cnn", input="embedding")
def hubert_cnn(num_classes: int, spec=None, dim: int = 2 * BASE_HIDDEN,
               filters=(64, 128, 256), kernel: int = 5, pool: int = 4, head_units: int = 128,
               head_dropout: float = 0.3) -> keras.Model:
    """1-D CNN (3 conv blocks) over the pooled SSL vector (mean + std, 1536 for base models)."""
    inputs, x = vector_input(dim)
    x = layers.Reshape((dim, 1), name="expand")(x)
    for i, f in enumerate(filters, start=1):
        name = f"conv_block_{i}"
        x = layers.Conv1D(f, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
        x = layers.ReLU(name=name)(x)
        x = layers.MaxPooling1D(pool, padding="same", name=f"{name}_pool")(x)
    x = layers.GlobalAveragePooling1D(name="global_pool")(x)
    return keras.Model(inputs, classifier_head(x, num_classes, head_units, head_dropout),
                       name="hubert_cnn")


@register_model("hubert_rnn", input="embedding")
def hubert_rnn(num_classes: int, spec=None, dim: int = 2 * BASE_HIDDEN, chunk: int = 32,
               lstm_units: int = 64, attention_units: int = 64, head_units: int = 128,
               head_dropout: float = 0.3) -> keras.Model:
    """BiLSTM + attention over the pooled SSL vector as a sequence of hidden-unit groups."""
    hidden = dim // 2
    if dim % 2 or hidden % chunk:
        raise HeadConfigError(f"hubert_rnn reads a mean+std vector of {dim} numbers in steps "
                              f"of {chunk} hidden units: need dim / 2 divisible by chunk "
                              "(--set chunk=N)")
    inputs, x = vector_input(dim)
    x = layers.Reshape((2, hidden), name="mean_std")(x)
    x = layers.Permute((2, 1), name="per_unit")(x)  # [hidden, (mean, std)]
    x = layers.Reshape((hidden // chunk, 2 * chunk), name="to_sequence")(x)
    x = layers.Bidirectional(layers.LSTM(lstm_units, return_sequences=True), name="bilstm")(x)
    x = AttentionPooling(attention_units, name="attention")(x)
    return keras.Model(inputs, classifier_head(x, num_classes, head_units, head_dropout),
                       name="hubert_rnn")


@register_model("wav2vec2_frozen", input="frames")
def wav2vec2_frozen(num_classes: int, spec=None, dim: int = BASE_HIDDEN,
                    projection_units: int = 256, attention_units: int = 128,
                    dropout: float = 0.1, head_units: int = 128,
                    head_dropout: float = 0.3) -> keras.Model:
    """Attention pooling over frozen SSL frame embeddings [time, hidden] (Wav2Vec2 or HuBERT)."""
    inputs = keras.Input((None, dim), name="frames")
    mask = FrameMask(name="frame_mask")(inputs)  # padded frames are exact zeros
    x = layers.LayerNormalization(name="input_norm")(inputs)
    x = layers.Dense(projection_units, activation="relu", name="projection")(x)
    x = layers.Dropout(dropout, name="projection_dropout")(x)
    x = AttentionPooling(attention_units, name="attention")([x, mask])
    return keras.Model(inputs, classifier_head(x, num_classes, head_units, head_dropout),
                       name="wav2vec2_frozen")
