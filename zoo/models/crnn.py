"""CNN front end -> BiLSTM -> additive attention pooling -> dense head.

`mfcc_crnn_attn` and `logmel_crnn_attn` share the builder. The conv blocks halve time twice and
frequency three times; the LSTM sees the masked sequence, so padded frames never enter its
state, and attention weights are zero on them.
"""

from __future__ import annotations

import keras
from keras import layers

from pipelines.features.spec import FeatureSpec
from zoo.models.layers import AttentionPooling
from zoo.models import zoo_logmel_spec, zoo_mfcc_spec
from zoo.models.cnn import classifier_head, conv_block, feature_input, speaker_standardize
from zoo.models.registry import register_model


def crnn_attention(num_classes: int, spec: FeatureSpec, filters=(32, 64, 128),
                   pools=((2, 2), (2, 2), (1, 2)), lstm_units: int = 128,
                   attention_units: int = 128, head_units: int = 128,
                   head_dropout: float = 0.3, speaker_groups: int = 0,
                   name: str = "crnn_attn") -> keras.Model:
    inputs, mask = feature_input(spec)
    x = layers.Reshape((-1, spec.channels, 1), name="expand")(inputs)
    for i, (f, pool) in enumerate(zip(filters, pools), start=1):
        x, mask = conv_block(x, mask, f, i, pool=pool)
    freq = x.shape[2]
    x = layers.Reshape((-1, freq * filters[-1]), name="to_sequence")(x)
    bool_mask = layers.Identity(name="sequence_mask")(mask) > 0.5
    x = layers.Bidirectional(layers.LSTM(lstm_units, return_sequences=True), name="bilstm")(
        x, mask=bool_mask)
    x = AttentionPooling(attention_units, name="attention")([x, mask])
    x = speaker_standardize(x, speaker_groups)
    return keras.Model(inputs, classifier_head(x, num_classes, head_units, head_dropout),
                       name=name)


@register_model("mfcc_crnn_attn", spec=zoo_mfcc_spec)
def mfcc_crnn_attn(num_classes: int, spec: FeatureSpec, **overrides) -> keras.Model:
    """CNN-BiLSTM with attention pooling on MFCC (40 + log energy)."""
    return crnn_attention(num_classes, spec, name="mfcc_crnn_attn", **overrides)


@register_model("logmel_crnn_attn", spec=zoo_logmel_spec)
def logmel_crnn_attn(num_classes: int, spec: FeatureSpec, **overrides) -> keras.Model:
    """CNN-BiLSTM with attention pooling on 64-band log-Mel."""
    return crnn_attention(num_classes, spec, name="logmel_crnn_attn", **overrides)
