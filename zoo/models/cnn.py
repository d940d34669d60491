"""Deep CNN over a [time, channels] feature image: 4 conv blocks, masked pooling, dense head.

Registered twice with one builder: `mfcc_cnn` (MFCC 40 + log energy) and `logmel_cnn` (64-band
log-Mel). Block dropout defaults to 0: dropout right before a conv + BatchNorm block shifts the
variance BatchNorm sees between training and inference, which made predictions collapse on this
data (see ARCHITECTURE.md); the head keeps its dropout. BatchNorm momentum is 0.9, not Keras'
0.99: with a few hundred steps per run the slower average leaves the inference statistics far
from the data (measured: chance-level validation on the demo sample with 0.99).
"""

from __future__ import annotations

import keras
from keras import layers

from pipelines.features.spec import FeatureSpec
from zoo.models.layers import (
    ApplyFrameMask, DownsampleMask, FrameMask, GroupStandardize, MaskedStatsPooling,
)
from zoo.models import zoo_logmel_spec, zoo_mfcc_spec
from zoo.models.registry import register_model

SPEAKER_STANDARDIZE = "speaker_standardize"  # zoo.refit_head embeds at its input when present


def conv_block(x, mask, filters: int, index: int, pool=(2, 2), dropout: float = 0.0,
               kernel=(3, 3), bn_momentum: float = 0.9):
    """conv -> BN -> ReLU -> re-zero padded frames (named conv_block_N) -> pool [-> dropout]."""
    name = f"conv_block_{index}"
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    x = ApplyFrameMask(name=name)([x, mask])
    x = layers.MaxPooling2D(pool, padding="same", name=f"{name}_pool")(x)
    mask = DownsampleMask(pool[0], name=f"{name}_mask")(mask)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x, mask


def feature_input(spec: FeatureSpec):
    """The features input [batch, T, C] and its frame mask."""
    inputs = keras.Input((None, spec.channels), name="features")
    return inputs, FrameMask(name="frame_mask")(inputs)


def speaker_standardize(x, speaker_groups: int):
    """The pooled embedding standardised per group of `speaker_groups` clips of one speaker
    (zoo.models.layers.GroupStandardize, layer `speaker_standardize`); unchanged when 0."""
    if not speaker_groups:
        return x
    return GroupStandardize(speaker_groups, name=SPEAKER_STANDARDIZE)(x)


def classifier_head(x, num_classes: int, units: int, dropout: float):
    x = layers.Dense(units, activation="relu", name="dense")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    return layers.Dense(num_classes, activation="softmax", name="classifier")(x)


def deep_cnn(num_classes: int, spec: FeatureSpec, filters=(32, 64, 128, 256),
             block_dropout: float = 0.0, head_units: int = 128, head_dropout: float = 0.3,
             speaker_groups: int = 0, name: str = "deep_cnn") -> keras.Model:
    inputs, mask = feature_input(spec)
    x = layers.Reshape((-1, spec.channels, 1), name="expand")(inputs)
    for i, f in enumerate(filters, start=1):
        x, mask = conv_block(x, mask, f, i, dropout=block_dropout)
    x = MaskedStatsPooling(name="global_pool")([x, mask])
    x = speaker_standardize(x, speaker_groups)
    return keras.Model(inputs, classifier_head(x, num_classes, head_units, head_dropout),
                       name=name)


@register_model("mfcc_cnn", spec=zoo_mfcc_spec)
def mfcc_cnn(num_classes: int, spec: FeatureSpec, **overrides) -> keras.Model:
    """Deep CNN, 4 conv blocks, on MFCC (40 coefficients + log energy)."""
    return deep_cnn(num_classes, spec, name="mfcc_cnn", **overrides)


@register_model("logmel_cnn", spec=zoo_logmel_spec)
def logmel_cnn(num_classes: int, spec: FeatureSpec, **overrides) -> keras.Model:
    """The mfcc_cnn architecture on 64-band log-Mel."""
    return deep_cnn(num_classes, spec, name="logmel_cnn", **overrides)
