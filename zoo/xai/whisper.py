"""Explanations of Whisper models (zoo.models.whisper_heads): the features-input model is one
Keras layer for the encoder (`whisper_encoder`, a WhisperEncoder), so what sits inside it is
reached here by running the encoder's own pieces.

    forward = EncoderForward(model)          # model: the export's model.keras (or its copy)
    scores, states, frame_mask = forward(x)  # = model(x); states: every hidden state
    cam = forward.grad_cam(x, targets, state=2)   # [B, T'] at the encoder's 20 ms frames
    maps = frames_to_input(cam, mask)        # [B, T, 80] at the input's 10 ms frames

Grad-CAM over the encoder's frames (Selvaraju et al. 2017, with time as the only position
axis): for hidden state K (`hidden_state_K`: 0 = convolution stem + positions, i = output of
transformer layer i, L = after the final layer norm), w_c = the mean over the clip's frames of
d score / d A(t, c), cam(t) = ReLU(sum_c w_c A(t, c)). The gradient is the total one: state K
reaches the score through its own pooled statistics and through every layer above it.

The cascade of the sanity checks randomises the encoder by groups of its weights (encoder.w,
by name): `encoder.final_ln`, `encoder.layers.{L-1}` ... `encoder.layers.0`,
`encoder.conv_stem` (conv1 and conv2). Whisper's position embeddings are fixed sinusoids, not
learned, and are left as they are.
"""

from __future__ import annotations

import numpy as np

from zoo.xai.errors import AttributionError

STATE_PREFIX = "hidden_state_"
CAM_METHODS = ("gradcam",)


def find_encoder(model):
    """The model's WhisperEncoder layer, or None."""
    from pipelines.encoders.whisper import WhisperEncoder

    for layer in model.layers:
        if isinstance(layer, WhisperEncoder):
            return layer
    return None


def state_names(encoder) -> list[str]:
    return [f"{STATE_PREFIX}{i}" for i in range(encoder.n_layers + 1)]


def check_state(model, layer: str) -> str:
    names = state_names(find_encoder(model))
    if layer not in names:
        raise AttributionError(f"unknown layer {layer!r} for a Grad-CAM on {model.name} (a "
                               f"Whisper model); valid layers: {', '.join(names)}")
    return layer


def state_index(layer: str) -> int:
    return int(layer[len(STATE_PREFIX):])


def state_weights(model) -> np.ndarray | None:
    """How much the head reads each hidden state: the softmax of `layer_mix`, one-hot for
    `select_state`, and for `all_states` the norm of the weights of the dense layer reading the
    (standardised) statistics, per state's slice; None when the head says nothing about it."""
    encoder = find_encoder(model)
    states = encoder.n_layers + 1
    names = [layer.name for layer in model.layers]
    if "select_state" in names:
        return np.eye(states)[model.get_layer("select_state").index]
    if "layer_mix" in names:
        logits = np.asarray(model.get_layer("layer_mix").logits, np.float64)
        e = np.exp(logits - logits.max())
        return e / e.sum()
    if "all_states" in names and "embedding" in names:
        import keras

        after = model.layers[names.index("embedding") + 1:]
        dense = next((layer for layer in after if isinstance(layer, keras.layers.Dense)), None)
        if dense is not None:
            kernel = np.asarray(dense.kernel, np.float64)
            norms = np.sqrt((kernel.reshape(states, -1, kernel.shape[-1]) ** 2).sum(axis=(1, 2)))
            return norms / norms.sum()
    return None


def default_state(model) -> str:
    """The hidden state the head weighs most, else the last one."""
    weights = state_weights(model)
    index = int(np.argmax(weights)) if weights is not None else find_encoder(model).n_layers
    return f"{STATE_PREFIX}{index}"


class EncoderForward:
    """The features model run piece by piece: frame mask -> encoder._windows / _encode -> every
    hidden state -> the model's own pooling and head layers (a Keras model over the encoder's
    outputs, sharing the layers, so weights changed on the model are seen here)."""

    def __init__(self, model):
        import keras

        self.model = model
        self.encoder = find_encoder(model)
        if self.encoder is None:
            raise AttributionError(f"model {model.name!r} has no Whisper encoder")
        self.head = keras.Model(list(self.encoder.output), model.output)
        self._functions = {}

    def __call__(self, x):
        """(scores [B, classes], per-window hidden states (each [B * windows, W', d]), frame
        mask [B, T'])."""
        from keras import ops

        enc = self.encoder
        mask = ops.cast(ops.any(ops.not_equal(x, 0.0), axis=-1), "float32")
        windows, window_mask, _ = enc._windows(ops.cast(x, "float32"), mask)
        states, state_mask = enc._encode(windows, window_mask, False)
        batch = ops.shape(x)[0]
        joined = [ops.reshape(s, (batch, -1, enc.d_model)) for s in states]  # windows in order
        frame_mask = ops.reshape(state_mask, (batch, -1))
        return self.head([ops.stack(joined, axis=1), frame_mask]), states, frame_mask

    def grad_cam(self, x, targets, state: int, signed: bool = False) -> np.ndarray:
        """[B, T'] Grad-CAM at hidden state `state` for the target classes' scores (before the
        ReLU with signed=True); 0 on padded encoder frames."""
        act, grads, frame_mask = (np.asarray(t) for t in self._compiled(state)(
            np.asarray(x, np.float32), np.asarray(targets, np.int64)))
        m = frame_mask
        weights = (grads * m[..., None]).sum(axis=1) / np.maximum(m.sum(axis=1), 1)[:, None]
        cam = np.einsum("btc,bc->bt", act, weights) * m
        return cam if signed else np.maximum(cam, 0.0)

    def _compiled(self, state: int):
        """A tf.function (one per state, any batch and length): (A [B, T', d], d score / d A,
        frame mask [B, T'])."""
        import tensorflow as tf

        if state not in self._functions:
            def run(x, targets):
                with tf.GradientTape() as tape:
                    tape.watch(x)  # the encoder's weights are not trainable: nothing else is
                    scores, states, frame_mask = self(x)
                    score = tf.reduce_sum(tf.gather(scores, targets, axis=1, batch_dims=1))
                grads = tape.gradient(score, states[state])
                shape = (tf.shape(x)[0], -1, self.encoder.d_model)
                return tf.reshape(states[state], shape), tf.reshape(grads, shape), frame_mask

            self._functions[state] = tf.function(run, input_signature=[
                tf.TensorSpec((None, None, self.encoder.n_mels), tf.float32),
                tf.TensorSpec((None,), tf.int64)])
        return self._functions[state]


def frames_to_input(cam: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[B, T'] maps at the encoder's frames -> [B, T, C] at the input's (mask [B, T, C], 1 on
    the clip's cells): encoder frame j reads input frames 2j-2..2j+2 and is centred on 2j;
    input frames between two centres are interpolated linearly, the last frame past the last
    centre keeps its value; padded frames are 0; the same over every mel band."""
    frames = mask[..., 0] > 0
    out = np.zeros(frames.shape, np.float32)
    for i in range(len(out)):
        n = int(frames[i].sum())
        if n:
            n2 = (n + 1) // 2
            out[i, :n] = np.interp(np.arange(n), 2 * np.arange(n2), cam[i, :n2])
    return np.repeat(out[:, :, None], mask.shape[2], axis=2)


def parameter_groups(model) -> list[tuple[str, list]]:
    """The cascade's groups from the output down: the head's layers with trainable weights,
    then the encoder's weights by name (module docstring)."""
    encoder = find_encoder(model)
    groups = [(layer.name, list(layer.trainable_weights)) for layer in reversed(model.layers)
              if layer is not encoder and layer.trainable_weights]

    def pick(*prefixes):
        return [v for name, v in encoder.w.items() if name.startswith(prefixes)]

    groups.append(("encoder.final_ln", pick("final_ln.")))
    groups += [(f"encoder.layers.{i}", pick(f"layers.{i}."))
               for i in reversed(range(encoder.n_layers))]
    groups.append(("encoder.conv_stem", pick("conv1.", "conv2.")))
    return groups


# ---------------------------------------------------------------- data randomisation
