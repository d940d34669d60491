"""Layers shared by the model families: time masks, masked pooling, attention pooling.

Padding frames are exact zeros in every feature matrix (pipelines.features.extract), so a model finds
its own time mask from its input. Re-zeroing padded frames after each conv block keeps a clip's
prediction the same alone or padded in a batch: convolutions see zeros beyond a clip's end
either way ('same' padding or padded frames), and max pooling after ReLU cannot pick them.
All layers are registered for safe_mode loading of .keras files.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="zoo")
class FrameMask(keras.layers.Layer):
    """[batch, T, C] features -> [batch, T] float mask, 1 where any channel is non-zero."""

    def call(self, features):
        return ops.cast(ops.any(ops.not_equal(features, 0.0), axis=-1), features.dtype)


@keras.saving.register_keras_serializable(package="zoo")
class ApplyFrameMask(keras.layers.Layer):
    """(x [batch, T, ...], mask [batch, T]) -> x with padded frames set to zero."""

    def call(self, inputs):
        x, mask = inputs
        shape = ops.shape(mask)
        expand = ops.reshape(mask, (shape[0], shape[1]) + (1,) * (len(x.shape) - 2))
        return x * ops.cast(expand, x.dtype)


@keras.saving.register_keras_serializable(package="zoo")
class DownsampleMask(keras.layers.Layer):
    """Frame mask after time pooling by `pool` with 'same' padding: ceil(T / pool) frames."""

    def __init__(self, pool: int, **kwargs):
        super().__init__(**kwargs)
        self.pool = int(pool)

    def call(self, mask):
        if self.pool == 1:
            return mask
        pooled = ops.max_pool(mask[:, :, None], pool_size=self.pool, strides=self.pool,
                              padding="same")
        return pooled[:, :, 0]


    def get_config(self):
        return {**super().get_config(), "pool": self.pool}


def _masked_mean_max(x, mask):
    """x [batch, T, D], mask [batch, T] -> concat(mean over valid T, max over valid T)."""
    m = ops.cast(mask, x.dtype)[:, :, None]
    count = ops.maximum(ops.sum(m, axis=1), 1.0)
    mean = ops.sum(x * m, axis=1) / count
    very_negative = ops.cast(-1e9, x.dtype)
    peak = ops.max(ops.where(m > 0, x, very_negative), axis=1)
    peak = ops.where(count > 0.5, peak, ops.zeros_like(peak))
    return ops.concatenate([mean, peak], axis=-1)


@keras.saving.register_keras_serializable(package="zoo")
class MaskedStatsPooling(keras.layers.Layer):
    """(x [batch, T, F, C] or [batch, T, D], mask) -> [batch, 2D]: mean and max over valid
    frames (after averaging over F for 4-D inputs)."""

    def call(self, inputs):
        x, mask = inputs
        if len(x.shape) == 4:
            x = ops.mean(x, axis=2)
        return _masked_mean_max(x, mask)


@keras.saving.register_keras_serializable(package="zoo")
class AttentionPooling(keras.layers.Layer):
    """Additive attention pooling: e_t = v . tanh(W h_t + b), softmax over valid frames,
    output sum_t a_t h_t. Input: [h, mask] or h alone (every frame valid).
    `return_weights=True` also returns the weights [batch, T]."""

    def __init__(self, units: int = 128, return_weights: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.return_weights = bool(return_weights)

    def build(self, input_shape):
        with_mask = isinstance(input_shape[0], (list, tuple))
        dim = (input_shape[0] if with_mask else input_shape)[-1]
        self.w = self.add_weight(name="w", shape=(dim, self.units), initializer="glorot_uniform")
        self.b = self.add_weight(name="b", shape=(self.units,), initializer="zeros")
        self.v = self.add_weight(name="v", shape=(self.units,), initializer="glorot_uniform")

    def call(self, inputs, mask=None):
        # The explicit frame mask (second input) is used; a Keras mask carried by h is the same
        # information and is consumed here rather than passed on.
        if isinstance(inputs, (list, tuple)):
            h, mask = inputs
        else:
            h, mask = inputs, ops.ones(ops.shape(inputs)[:2], inputs.dtype)
        scores = ops.tensordot(ops.tanh(ops.tensordot(h, self.w, axes=1) + self.b), self.v,
                               axes=1)
        m = ops.cast(mask, scores.dtype)
        scores = ops.where(m > 0, scores, ops.cast(-1e9, scores.dtype))
        weights = ops.softmax(scores, axis=1) * m
        weights = weights / ops.maximum(ops.sum(weights, axis=1, keepdims=True), 1e-9)
        context = ops.sum(h * weights[:, :, None], axis=1)
        return (context, weights) if self.return_weights else context


    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "return_weights": self.return_weights}


@keras.saving.register_keras_serializable(package="zoo")
class GroupStandardize(keras.layers.Layer):
    """[batch, D] -> each run of `group_size` consecutive rows minus its mean, divided by its
    (population) standard deviation + epsilon.

    Trained on batches of clips grouped by speaker (`zoo.train --speaker-groups`), this is the
    per-speaker embedding standardisation of `zoo.refit_head` inside the network, so the layers
    below it learn what tells emotions apart *within* a speaker. The batch must be a multiple
    of `group_size` whose groups each hold one speaker; exports replace it by the statistics
    over all of a speaker's clips in a request (serving_by_speaker).
    """

    def __init__(self, group_size: int, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        if int(group_size) < 2:
            raise ValueError(f"group_size must be at least 2, not {group_size}")
        self.group_size = int(group_size)
        self.epsilon = float(epsilon)

    def call(self, x):
        dim = x.shape[-1]
        groups = ops.reshape(x, (-1, self.group_size, dim))
        mean = ops.mean(groups, axis=1, keepdims=True)
        std = ops.sqrt(ops.mean(ops.square(groups - mean), axis=1, keepdims=True))
        return ops.reshape((groups - mean) / (std + self.epsilon), (-1, dim))

    def get_config(self):
        return {**super().get_config(), "group_size": self.group_size, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="zoo")
class LayerMix(keras.layers.Layer):
    """[batch, S, D] -> [batch, D]: softmax(w) weighted sum over the S hidden states."""

    def build(self, input_shape):
        self.logits = self.add_weight(name="logits", shape=(input_shape[1],),
                                      initializer="zeros")

    def call(self, x):
        return ops.einsum("bsd,s->bd", x, ops.softmax(self.logits))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package="zoo")
class SelectState(keras.layers.Layer):
    """[batch, S, ...] -> [batch, ...]: hidden state `index`."""

    def __init__(self, index: int, **kwargs):
        super().__init__(**kwargs)
        self.index = int(index)

    def call(self, x):
        return x[:, self.index]

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(input_shape[2:])

    def get_config(self):
        return {**super().get_config(), "index": self.index}


# The Whisper encoder's layers live with the encoder (pipelines.encoders.whisper); importing them
# here registers them for loading, like every layer above.
from pipelines.encoders.whisper import HiddenStatePooling, WhisperEncoder  # noqa: E402, F401
