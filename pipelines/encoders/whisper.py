"""Whisper's audio encoder as a Keras 3 layer (keras.ops only), with every hidden state.

    weights = whisper_checkpoint.load_weights()              # packaged tiny.en by default
    encoder = WhisperEncoder.from_weights(weights, context="clip")
    states, mask = encoder(features, frame_mask)             # whisper_logmel features

features: [batch, T, n_mels] log-Mel frames as Whisper computes them (FeatureSpec kind
'whisper_logmel', pipelines.features.extract), padded frames zero; frame_mask [batch, T] (1 on each
clip's own frames; default: frames that are not all zero). Returns states [batch, L + 1, T', d]
(0 = convolution stem + positions, i = output of layer i, L = after the final layer norm, as
transformers' hidden_states and CTranslate2's encode) and the encoder-frame mask [batch, T'].

context:
- 'clip': the encoder runs on the clip's own frames (T' = ceil(T / 2) positions). Padded
  frames are zeroed after each step and never attended to, so a clip's states are the same
  alone or in a batch. Whisper's position embeddings allow any length up to 30 s.
- '30s': as Whisper was trained: every clip padded to 30 s (3000 mel frames) with the value
  Whisper's front end gives silence (the clip's maximum - 8 in log10, i.e. its feature maximum
  - 2), all 1500 positions attended to. About ten times the cost for a 3 s clip.
Clips longer than 30 s are cut into 30 s windows (3000 frames), each encoded on its own; the
windows' frames come back concatenated, so pooling takes all of them.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

CONTEXTS = ("clip", "30s")
WINDOW_FRAMES = 3000  # 30 s of 10 ms mel frames, Whisper's input
LN_EPS = 1e-5
_LAYER_PARAMS = ("attn_ln.gamma", "attn_ln.beta", "q.kernel", "q.bias", "k.kernel", "v.kernel",
                 "v.bias", "o.kernel", "o.bias", "ffn_ln.gamma", "ffn_ln.beta", "fc1.kernel",
                 "fc1.bias", "fc2.kernel", "fc2.bias")


def _frames(mask):
    """[N, T] mask -> [N, T, 1] (expand_dims rather than [:, :, None]: LiteRT converts it)."""
    return ops.expand_dims(mask, -1)


def _layer_norm(x, gamma, beta):
    mean = ops.mean(x, axis=-1, keepdims=True)
    var = ops.mean(ops.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * ops.rsqrt(var + LN_EPS) * gamma + beta


@keras.saving.register_keras_serializable(package="zoo")
class WhisperEncoder(keras.layers.Layer):
    """Whisper's encoder (conv stem, sinusoidal positions, pre-norm transformer layers, final
    layer norm). train_top: how many of the top transformer layers (with the final layer norm)
    are trainable; the rest is frozen. weights_dtype: the variables' dtype ('float16' keeps a
    float16 checkpoint's weights as they are, half the size; computation is float32)."""

    def __init__(self, n_mels: int = 80, d_model: int = 384, n_heads: int = 6,
                 n_layers: int = 4, ffn_dim: int = 1536, n_ctx: int = 1500,
                 context: str = "clip", train_top: int = 0, weights_dtype: str = "float32",
                 checkpoint: dict | None = None, **kwargs):
        kwargs.setdefault("name", "whisper_encoder")
        super().__init__(**kwargs)
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
        if not 0 <= train_top <= n_layers:
            raise ValueError(f"train_top must be 0..{n_layers}, got {train_top}")
        if train_top and weights_dtype != "float32":
            raise ValueError("trainable layers need weights_dtype='float32'")
        self.n_mels, self.d_model, self.n_heads = n_mels, d_model, n_heads
        self.n_layers, self.ffn_dim, self.n_ctx = n_layers, ffn_dim, n_ctx
        self.context, self.train_top, self.weights_dtype = context, train_top, weights_dtype
        self.checkpoint = checkpoint or {}  # what the weights are (name, sha256): zoo.json
        self.w = {}

    @classmethod
    def from_weights(cls, weights, context: str = "clip", train_top: int = 0,
                     weights_dtype: str | None = None, **kwargs) -> "WhisperEncoder":
        """An encoder built and loaded from converted weights (whisper_checkpoint)."""
        c = weights.config
        dtype = weights_dtype or ("float32" if train_top else weights.dtype)
        layer = cls(c["n_mels"], c["d_model"], c["n_heads"], c["n_layers"], c["ffn_dim"],
                    c["n_ctx"], context, train_top, dtype,
                    {"name": c["name"], "sha256": c["sha256"]}, **kwargs)
        layer.build((None, None, c["n_mels"]))
        layer.load_arrays(weights.arrays)
        return layer

    # ------------------------------------------------------------ weights

    def param_shapes(self) -> dict:
        from pipelines.encoders.whisper_checkpoint import expected_shapes

        return expected_shapes({"n_mels": self.n_mels, "d_model": self.d_model,
                                "ffn_dim": self.ffn_dim, "n_ctx": self.n_ctx,
                                "n_layers": self.n_layers, "n_heads": self.n_heads})

    def _param_trainable(self, name: str) -> bool:
        if not self.train_top:
            return False
        if name.startswith("final_ln"):
            return True
        if name.startswith("layers."):
            return int(name.split(".")[1]) >= self.n_layers - self.train_top
        return False

    def build(self, input_shape):
        for name, shape in self.param_shapes().items():
            self.w[name] = self.add_weight(
                name=name.replace(".", "_"), shape=shape, dtype=self.weights_dtype,
                initializer="zeros", trainable=self._param_trainable(name))
        self.built = True

    def load_arrays(self, arrays: dict) -> None:
        for name, var in self.w.items():
            value = np.asarray(arrays[name])
            if value.shape != tuple(var.shape):
                raise ValueError(f"{name}: {value.shape} does not fit {tuple(var.shape)}")
            var.assign(value.astype(self.weights_dtype))

    def _p(self, name: str):
        v = self.w[name]
        return ops.cast(v, "float32") if self.weights_dtype != "float32" else v

    # ------------------------------------------------------------ forward

    def call(self, features, mask=None, training=False):
        features = ops.cast(features, "float32")
        if mask is None:
            mask = ops.cast(ops.any(ops.not_equal(features, 0.0), axis=-1), "float32")
        mask = ops.cast(mask, "float32")
        batch = ops.shape(features)[0]
        x, m, windows = self._windows(features, mask)
        states, m2 = self._encode(x, m, training)
        # [B * nw, S, W', d] -> [B, S, nw * W', d]: the windows' frames one after the other
        s = ops.stack(states, axis=1)
        width = ops.shape(s)[2]
        s = ops.reshape(s, (batch, windows, self.n_layers + 1, width, self.d_model))
        s = ops.transpose(s, (0, 2, 1, 3, 4))
        s = ops.reshape(s, (batch, self.n_layers + 1, windows * width, self.d_model))
        return s, ops.reshape(m2, (batch, windows * width))

    def _windows(self, x, mask):
        """[B, T, M] -> [B * nw, W, M] windows of at most 3000 frames (exactly 3000 in '30s'
        context, padded with the clip's silence value), with their masks."""
        frames = x.shape[1]  # a Python int where the length is static (JAX traces need it)
        if frames is None:
            frames = ops.shape(x)[1]
            width = WINDOW_FRAMES if self.context == "30s" else ops.minimum(frames,
                                                                             WINDOW_FRAMES)
        else:
            width = WINDOW_FRAMES if self.context == "30s" else min(frames, WINDOW_FRAMES)
        windows = (frames + width - 1) // width
        pad = windows * width - frames
        x = ops.pad(x, ((0, 0), (0, pad), (0, 0)))
        mask = ops.pad(mask, ((0, 0), (0, pad)))
        if self.context == "30s":
            # Whisper's silence: log10 floor clamped at max - 8, i.e. feature max - 2
            peak = ops.max(ops.where(_frames(mask) > 0, x, -1e9), axis=(1, 2), keepdims=True)
            x = ops.where(_frames(mask) > 0, x, peak - 2.0)
        x = ops.reshape(x, (-1, width, self.n_mels))
        mask = ops.reshape(mask, (-1, width))
        return x, mask, windows

    def _encode(self, x, m, training):
        p = self._p
        clip = self.context == "clip"
        if clip:
            x = x * _frames(m)
        h = ops.conv(ops.pad(x, ((0, 0), (1, 1), (0, 0))), p("conv1.kernel"), padding="valid")
        h = ops.gelu(h + p("conv1.bias"), approximate=False)
        if clip:
            h = h * _frames(m)
        h = ops.conv(ops.pad(h, ((0, 0), (1, 1), (0, 0))), p("conv2.kernel"), strides=2,
                     padding="valid")
        h = ops.gelu(h + p("conv2.bias"), approximate=False)
        m2 = m[:, ::2]  # output j reads input frames 2j-1..2j+1: valid while 2j is
        width = ops.shape(h)[1]
        h = h + ops.expand_dims(p("positions")[:width], 0)
        key_bias = None
        if clip:
            h = h * _frames(m2)
            key_bias = ops.expand_dims(ops.expand_dims(1.0 - m2, 1), 1) * -1e9
        states = [h]
        for i in range(self.n_layers):
            h = self._layer(h, i, key_bias)
            if clip:
                h = h * _frames(m2)
            states.append(h)
        last = _layer_norm(h, p("final_ln.gamma"), p("final_ln.beta"))
        states[-1] = last * _frames(m2) if clip else last
        return states, m2

    def _layer(self, h, i: int, key_bias):
        p = {k: self._p(f"layers.{i}.{k}") for k in _LAYER_PARAMS}
        heads, dh = self.n_heads, self.d_model // self.n_heads
        a = _layer_norm(h, p["attn_ln.gamma"], p["attn_ln.beta"])

        def split(t):  # [N, T, d] -> [N, heads, T, dh]
            return ops.transpose(ops.reshape(t, (ops.shape(t)[0], -1, heads, dh)), (0, 2, 1, 3))

        q = split(ops.matmul(a, p["q.kernel"]) + p["q.bias"])
        k = split(ops.matmul(a, p["k.kernel"]))
        v = split(ops.matmul(a, p["v.kernel"]) + p["v.bias"])
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (dh ** -0.5)
        if key_bias is not None:
            scores = scores + key_bias
        o = ops.matmul(ops.softmax(scores, axis=-1), v)
        o = ops.reshape(ops.transpose(o, (0, 2, 1, 3)), (ops.shape(h)[0], -1, self.d_model))
        h = h + ops.matmul(o, p["o.kernel"]) + p["o.bias"]
        f = _layer_norm(h, p["ffn_ln.gamma"], p["ffn_ln.beta"])
        f = ops.gelu(ops.matmul(f, p["fc1.kernel"]) + p["fc1.bias"], approximate=False)
        return h + ops.matmul(f, p["fc2.kernel"]) + p["fc2.bias"]

    def compute_output_shape(self, features_shape, mask_shape=None):
        return ((features_shape[0], self.n_layers + 1, None, self.d_model),
                (features_shape[0], None))

    def get_config(self):
        return {**super().get_config(), "n_mels": self.n_mels, "d_model": self.d_model,
                "n_heads": self.n_heads, "n_layers": self.n_layers, "ffn_dim": self.ffn_dim,
                "n_ctx": self.n_ctx, "context": self.context, "train_top": self.train_top,
                "weights_dtype": self.weights_dtype, "checkpoint": self.checkpoint}


@keras.saving.register_keras_serializable(package="zoo")
class HiddenStatePooling(keras.layers.Layer):
    """(states [batch, S, T', d], mask [batch, T']) -> [batch, S, 2d]: each hidden state's mean
    and (population) standard deviation over the clip's own frames."""

    def call(self, inputs):
        states, mask = inputs
        m = ops.expand_dims(ops.expand_dims(ops.cast(mask, states.dtype), 1), -1)
        count = ops.maximum(ops.sum(m, axis=2), 1.0)
        mean = ops.sum(states * m, axis=2) / count
        var = ops.sum(ops.square(states - ops.expand_dims(mean, 2)) * m, axis=2) / count
        return ops.concatenate([mean, ops.sqrt(var + 1e-12)], axis=-1)

    def compute_output_shape(self, input_shape):
        s = input_shape[0]
        return (s[0], s[1], 2 * s[3])
