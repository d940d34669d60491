"""Attribution maps on a zoo model's feature-input Keras graph.

    explainer = Explainer(model, "gradcam", layer="conv_block_4")
    maps = explainer(x, targets)          # same shape as x, in [0, 1], 0 on padded frames

x is a zero-padded batch of feature images [batch, T, C] (MFCC / log-Mel / Whisper log-Mel
models) or of pooled SSL vectors [batch, D] (hubert_cnn / hubert_rnn). Grad-CAM, Grad-CAM++ and
saliency come from tf-keras-vis; Score-CAM is computed here, because tf-keras-vis' Scorecam
upsamples activations over the input's spatial axes only and reads a [T, C] feature matrix as a
1-D signal with C channels. Every method explains the pre-softmax score of the target class
(the classifier's softmax is replaced by a linear activation on a private copy of the model),
as in the papers.

Gradient x input and integrated gradients (Sundararajan et al. 2017, INTEGRATED_STEPS midpoint
steps) are taken against a baseline, the same one the faithfulness check removes cells to
(`baseline`): the clip's per-channel mean over its frames, nudged off exact zero so that a
frame never looks like padding (input_norm's moving mean for SSL vectors). Their gradients come
from tf-keras-vis' Saliency. On Whisper models (zoo.xai.whisper) the gradients run through the
encoder, and Grad-CAM is taken over the encoder's frames at a hidden state (`hidden_state_K`).

CAM maps at a layer's resolution are brought to the input's: bilinear over (time, frequency)
for 2-D conv layers, over time (then repeated over channels) for sequence layers such as the
BiLSTM, and for hubert_rnn's steps (each step = `chunk` hidden units, mean and std) back onto
the dimensions they read. `magnitude` (|x|, no model at all) is a control that every sanity
check should fail.
"""

from __future__ import annotations

import warnings

import numpy as np

from zoo.xai.errors import AttributionError

METHODS = ("gradcam", "gradcam++", "scorecam", "saliency", "gradxinput", "integrated")
CONTROLS = ("magnitude",)
CAM_METHODS = ("gradcam", "gradcam++", "scorecam")
INTEGRATED_STEPS = 16


def cam_layers(model) -> list[str]:
    """Names of layers a CAM can be taken at: outputs with positions and channels
    ([batch, positions..., channels]), after the input."""
    names = []
    for layer in model.layers[1:]:
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            continue
        if len(shape) >= 3 and layer.name not in names:
            names.append(layer.name)
    return names


def default_layer(model) -> str:
    """The last named conv block, else the BiLSTM, else the last layer with positions."""
    names = cam_layers(model)
    blocks = sorted((n for n in names if n.startswith("conv_block_") and n[11:].isdigit()),
                    key=lambda n: int(n[11:]))
    if blocks:
        return blocks[-1]
    if "bilstm" in names:
        return "bilstm"
    if not names:
        raise AttributionError(f"model {model.name!r} has no layer with positions and "
                               "channels to take a CAM at; use --method saliency")
    return names[-1]


def check_layer(model, layer: str) -> str:
    names = cam_layers(model)
    if layer not in names:
        raise AttributionError(f"unknown layer {layer!r} for a CAM on {model.name}; valid "
                               f"layers: {', '.join(names)}")
    return layer


def linear_copy(model):
    """A copy of the model (same weights) whose classifier outputs pre-softmax scores.
    Normalization layers (the Whisper heads' input_norm) compute with tensors derived from
    their weights when built: they are derived again from the copied weights."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in copy.layers:
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()
    copy.get_layer(copy.layers[-1].name).activation = keras.activations.linear
    return copy


def valid_mask(x: np.ndarray) -> np.ndarray:
    """1 where a cell belongs to the clip: frames with any non-zero value ([B, T, C] inputs;
    padded frames are exact zeros), everything for vectors."""
    if x.ndim == 3:
        frames = np.any(x != 0, axis=-1, keepdims=True)
        return np.broadcast_to(frames, x.shape).astype(np.float32)
    return np.ones_like(x, np.float32)


def baseline(x: np.ndarray, model=None) -> np.ndarray:
    """What a removed cell is set to, per clip of a padded batch (module docstring); padded
    frames stay 0."""
    if x.ndim == 3:
        mask = valid_mask(x)
        frames = np.maximum(mask[:, :, :1].sum(axis=1, keepdims=True), 1)
        mean = (x * mask).sum(axis=1, keepdims=True) / frames
        return (np.where(np.abs(mean) < 1e-4, 1e-4, mean) * mask).astype(np.float32)
    names = [layer.name for layer in model.layers] if model is not None else []
    if "input_norm" in names:
        mean = np.asarray(model.get_layer("input_norm").moving_mean, np.float32)
        return np.broadcast_to(mean, x.shape).copy()
    return np.zeros_like(x, np.float32)


def normalise(maps: np.ndarray, mask: np.ndarray, signed: bool = False) -> np.ndarray:
    """Per example: [0, 1] (min-max over the clip's cells), or signed / max |value|."""
    out = np.zeros_like(maps, np.float32)
    for i in range(len(maps)):
        m, valid = maps[i], mask[i] > 0
        if not valid.any():
            continue
        vals = m[valid]
        if signed:
            scale = np.abs(vals).max()
            out[i] = np.where(valid, m / scale if scale > 0 else 0.0, 0.0)
        else:
            lo, hi = vals.min(), vals.max()
            out[i] = np.where(valid, (m - lo) / (hi - lo) if hi > lo else 0.0, 0.0)
    return out


class Explainer:
    """One method (and layer) on one model; call it on batches."""

    def __init__(self, model, method: str, layer: str | None = None, score_cam_channels=32):
        from zoo.xai import whisper

        if method not in METHODS + CONTROLS:
            raise AttributionError(f"unknown method {method!r}; choose from "
                                   f"{', '.join(METHODS)}")
        self.model = model
        self.method = method
        self.layer = None
        self.encoder = whisper.find_encoder(model)
        if method in CAM_METHODS and self.encoder is not None:
            if method not in whisper.CAM_METHODS:
                usable = [m for m in METHODS if m not in CAM_METHODS] + list(whisper.CAM_METHODS)
                raise AttributionError(f"{method} is not available on Whisper models; choose "
                                       f"from {', '.join(usable)}")
            self.layer = whisper.check_state(model, layer) if layer else \
                whisper.default_state(model)
        elif method in CAM_METHODS:
            self.layer = check_layer(model, layer) if layer else default_layer(model)
        self.linear = linear_copy(model) if method != "magnitude" else None
        self.score_cam_channels = score_cam_channels
        self._tool = None

    # ------------------------------------------------------------ public

    def __call__(self, x, targets, signed: bool = False, batch_size: int = 16) -> np.ndarray:
        """Maps [batch, ...] shaped as x: normalised to [0, 1] per example, or with
        signed=True to [-1, 1] without the rectification (ReLU for CAMs, |.| for gradients),
        as the 'signed' variant of the sanity checks needs. Padded frames are 0."""
        x = np.asarray(x, np.float32)
        targets = np.asarray(targets, np.int64)
        with warnings.catch_warnings():  # Keras' note that the input came as a list
            warnings.simplefilter("ignore", UserWarning)
            out = [self._batch(x[i:i + batch_size], targets[i:i + batch_size], signed)
                   for i in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.zeros_like(x)

    def raw_cam(self, x, targets, signed: bool = False) -> np.ndarray:
        """The CAM at the layer's resolution, before upsampling and normalisation."""
        x = np.asarray(x, np.float32)
        if self.encoder is not None:
            from zoo.xai.whisper import state_index

            return self._forward().grad_cam(x, targets, state_index(self.layer), signed)
        if self.method == "scorecam":
            return self._score_cam(x, np.asarray(targets), signed)
        from tf_keras_vis.utils.scores import CategoricalScore

        act = None if not signed else (lambda cam: cam)
        kwargs = {} if not signed else {"activation_modifier": act}
        return np.asarray(self._vis()(CategoricalScore(list(map(int, targets))), x,
                                      penultimate_layer=self.layer,
                                      seek_penultimate_conv_layer=False, expand_cam=False,
                                      normalize_cam=False, **kwargs))

    def probabilities(self, x, batch_size: int = 64) -> np.ndarray:
        """Softmax of the (linear copy's) scores: the model's probabilities."""
        x = np.asarray(x, np.float32)
        out = []
        for i in range(0, len(x), batch_size):
            if self.linear is None:  # the control explainer: the model as it is
                out.append(np.asarray(self.model(x[i:i + batch_size], training=False)))
                continue
            logits = np.asarray(self.linear(x[i:i + batch_size], training=False), np.float64)
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            out.append(e / e.sum(axis=1, keepdims=True))
        return np.concatenate(out)

    # ------------------------------------------------------------ internals

    def _forward(self):
        """Whisper models: the encoder run piece by piece on the linear copy."""
        if self._tool is None:
            from zoo.xai.whisper import EncoderForward

            self._tool = EncoderForward(self.linear)
        return self._tool

    def _vis(self):
        if self._tool is None:
            from tf_keras_vis.gradcam import Gradcam
            from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
            from tf_keras_vis.saliency import Saliency

            cls = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus}.get(self.method, Saliency)
            # the linear copy is private: no second clone, and weights changed on it (sanity
            # checks randomise them) are seen by the next call
            self._tool = cls(self.linear, clone=False)
        return self._tool

    def pair(self, x, targets, batch_size: int = 16):
        """(maps, signed maps) from one gradient pass per batch (the sanity checks need
        both)."""
        x = np.asarray(x, np.float32)
        targets = np.asarray(targets, np.int64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            parts = [self._batch(x[i:i + batch_size], targets[i:i + batch_size], None)
                     for i in range(0, len(x), batch_size)]
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))

    def _batch(self, x, targets, signed):
        """signed None: both (rectified, signed); else the one asked for."""
        mask = valid_mask(x)
        if self.method == "magnitude":
            raw = x.copy()
        elif self.method == "saliency":
            raw = self.gradients(x, targets)
        elif self.method in ("gradxinput", "integrated"):
            base = baseline(x, self.model)
            steps = INTEGRATED_STEPS if self.method == "integrated" else 0
            grads = self.gradients(x, targets) if not steps else np.mean(
                [self.gradients(base + (k + 0.5) / steps * (x - base), targets)
                 for k in range(steps)], axis=0)
            raw = (x - base) * grads
        else:
            raw = self.raw_cam(x, targets, signed=True)
        if self.method in CAM_METHODS:  # rectify at the layer, as Grad-CAM does
            positive = self.to_input(np.maximum(raw, 0.0), x.shape, mask)
            raw = self.to_input(raw, x.shape, mask)
        else:
            positive = np.abs(raw)
        if signed is None:
            return normalise(positive * mask, mask), normalise(raw * mask, mask, True)
        return normalise((raw if signed else positive) * mask, mask, signed)

    def gradients(self, x, targets) -> np.ndarray:
        """d score / d input (tf-keras-vis' Saliency, no modification), shaped as x."""
        from tf_keras_vis.utils.scores import CategoricalScore

        return np.asarray(self._vis()(CategoricalScore(list(map(int, targets))), x,
                                      keepdims=True, normalize_map=False,
                                      gradient_modifier=lambda g: g)).reshape(x.shape)

    def to_input(self, cam: np.ndarray, shape, mask=None) -> np.ndarray:
        """A CAM [B, positions...] at the layer's resolution -> the input's shape (Whisper's
        encoder frames need the input's mask: zoo.xai.whisper.frames_to_input)."""
        import tensorflow as tf

        cam = np.asarray(cam, np.float32)
        if self.encoder is not None:
            from zoo.xai.whisper import frames_to_input

            return frames_to_input(cam, np.ones(shape, np.float32) if mask is None else mask)
        if len(shape) == 3:  # feature images [B, T, C]
            if cam.ndim == 3:
                return tf.image.resize(cam[..., None], shape[1:3], "bilinear").numpy()[..., 0]
            over_time = tf.image.resize(cam[:, :, None, None], (shape[1], 1),
                                        "bilinear").numpy()[..., 0, 0]
            return np.repeat(over_time[:, :, None], shape[2], axis=2)
        dim = shape[1]  # pooled vectors [B, D]
        if cam.ndim != 2:
            raise AttributionError(f"layer {self.layer!r} gives {cam.ndim - 1}-D maps; "
                                   "a vector model needs a sequence layer")
        names = [layer.name for layer in self.model.layers]
        if "mean_std" in names:  # hubert_rnn: step s reads units [s*chunk, (s+1)*chunk)
            hidden, steps = dim // 2, cam.shape[1]
            unit = np.arange(dim) % hidden
            return cam[:, (unit * steps) // hidden]
        return tf.image.resize(cam[:, :, None, None], (dim, 1), "bilinear").numpy()[..., 0, 0]

    def _score_cam(self, x, targets, signed):
        """Score-CAM (Wang et al. 2020): each activation channel, upsampled and min-max
        normalised, masks the input; the channel's weight is the target's probability on the
        masked input. The `score_cam_channels` channels of largest spatial variance are used
        (as tf-keras-vis' max_N)."""
        import keras

        inner = keras.Model(self.linear.inputs, self.linear.get_layer(self.layer).output)
        acts = np.asarray(inner(x, training=False), np.float32)  # [B, pos..., K]
        k = acts.shape[-1]
        spatial = tuple(range(1, acts.ndim - 1))
        std = acts.std(axis=spatial)  # [B, K]
        cams = np.zeros(acts.shape[:-1], np.float32)
        mask = valid_mask(x)
        for i in range(len(x)):
            chosen = np.argsort(-std[i])[:min(self.score_cam_channels, k)]
            channel_maps = np.moveaxis(acts[i][..., chosen], -1, 0)  # [N, pos...]
            up = self.to_input(channel_maps, (len(chosen),) + x.shape[1:])
            lo = up.reshape(len(chosen), -1).min(axis=1)
            hi = up.reshape(len(chosen), -1).max(axis=1)
            scale = np.where(hi > lo, hi - lo, 1.0)
            up = (up - lo.reshape((-1,) + (1,) * (up.ndim - 1))) / \
                scale.reshape((-1,) + (1,) * (up.ndim - 1))
            masked = x[i][None] * up * mask[i][None]
            if x.ndim == 3:  # keep the clip's frames non-zero so its frame mask holds
                masked = np.where(mask[i][None] > 0, masked + 1e-6, 0.0)
            weights = self.probabilities(masked)[:, targets[i]]
            cams[i] = np.tensordot(weights, channel_maps, axes=1)
        return cams if signed else np.maximum(cams, 0.0)
