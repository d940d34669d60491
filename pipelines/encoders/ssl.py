"""Pretrained speech encoders (HuBERT, Wav2Vec2) from a local checkpoint folder, run so that a
clip's frames do not depend on how much padding its batch adds.

    ck = inspect_checkpoint("ckpt/hubert-base-ls960", "hubert")   # files only, no TensorFlow
    ck = inspect_checkpoint("facebook/hubert-base-ls960", "hubert")  # a hub id: the HF cache
    encoder = load_encoder(ck)                                     # transformers TF class
    states, mask = encoder(waveform, length)                       # hidden states 0..L, frames

A checkpoint folder is what the hub publishes (facebook/hubert-base-ls960, facebook/wav2vec2-base):
config.json, preprocessor_config.json and weights as model.safetensors (PyTorch or TF layout,
read without torch), tf_model.h5, or pytorch_model.bin (needs torch). A hub id (owner/name or
owner/name@revision) that is not a local folder is resolved into the Hugging Face cache,
fetching only those files (pipelines.encoders.hub); the checkpoint then records the id,
revision and commit (`Checkpoint.hub`).

Padding. The base models use feat_extract_norm='group': their first convolution normalises each
channel over the whole input, padding included, and the original recipe runs them without an
attention mask, so a clip's frames change with the batch it is padded into. Here the reference
is the clip run alone, unpadded. The first layer's statistics are taken over the clip's own
frames and the transformer gets the frame mask (padded frames zeroed before the positional
convolution, and never attended to), which reproduces the unpadded result exactly for
'group' and 'layer' models alike (tests/test_ssl_encoders.py checks it numerically).

This module imports transformers, which makes tf.keras mean the legacy tf_keras package in the
process: use it in the extraction step (pipelines.embeddings) and the fine-tuned model only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
from pathlib import Path

ENCODERS = {"hubert": ("hubert", "TFHubertModel", "HubertConfig"),
            "wav2vec2": ("wav2vec2", "TFWav2Vec2Model", "Wav2Vec2Config")}
# In the order transformers' TF classes try them.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "tf_model.h5",
                "tf_model.h5.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
NORMALIZE_EPS = 1e-7  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm
UNUSED_WEIGHTS = ("masked_spec_embed",)  # SpecAugment's mask vector: not used here


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be used; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A checkpoint folder, checked: its config, preprocessor settings and weights file."""

    folder: Path
    encoder: str
    config: dict
    preprocessor: dict
    weights: Path
    hub: dict | None = None  # repo_id, revision, commit when given as a hub id

    @property
    def hidden_size(self) -> int:
        return int(self.config["hidden_size"])

    @property
    def num_layers(self) -> int:
        return int(self.config["num_hidden_layers"])

    @property
    def do_normalize(self) -> bool:
        return bool(self.preprocessor.get("do_normalize", True))

    @property
    def sample_rate(self) -> int:
        return int(self.preprocessor.get("sampling_rate", 16000))

    def sha256(self) -> str:
        """Hash of config.json, preprocessor_config.json and the weights file(s)."""
        h = hashlib.sha256()
        files = [self.folder / "config.json", self.folder / "preprocessor_config.json"]
        files += _weight_parts(self.weights)
        for path in files:
            h.update(path.name.encode() + b"\0")
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
        return h.hexdigest()

    def describe(self) -> dict:
        return {"encoder": self.encoder, "checkpoint": str(self.folder),
                "weights_file": self.weights.name, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "feat_extract_norm":
                    self.config.get("feat_extract_norm"),
                "do_normalize": self.do_normalize, "hub": self.hub}


def _weight_parts(weights: Path) -> list[Path]:
    if weights.name.endswith(".index.json"):
        index = json.loads(weights.read_text())
        return [weights] + [weights.parent / f for f in sorted(set(index["weight_map"].values()))]
    return [weights]


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path.parent}: no {path.name} ({what}); download the whole "
                              "checkpoint folder (see docs/ssl.md)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err}); an incomplete download?") \
            from None


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def hub_files():
    """What a hub repository must give (pipelines.encoders.hub.Wanted): the two configs and
    the first weights file in the loader's order (pytorch_model.bin only with torch)."""
    from pipelines.encoders.hub import Wanted

    if torch_available():
        return Wanted(("config.json", "preprocessor_config.json"), WEIGHT_FILES)
    return Wanted(("config.json", "preprocessor_config.json"),
                  tuple(n for n in WEIGHT_FILES if not n.startswith("pytorch_model")),
                  "; pytorch_model.bin needs torch (pip install torch, CPU build)")


def inspect_checkpoint(folder, encoder: str, progress=print) -> Checkpoint:
    """Check a checkpoint folder (or hub id, resolved into the Hugging Face cache) without
    loading it; CheckpointError (one line) otherwise."""
    from pipelines.encoders.hub import HubError, local_or_hub

    if encoder not in ENCODERS:
        raise CheckpointError(f"unknown encoder {encoder!r}; use one of {', '.join(ENCODERS)}")
    try:
        folder, hub = local_or_hub(folder, hub_files(), progress)
    except HubError as err:
        raise CheckpointError(str(err)) from None
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder (a hub id is "
                              "owner/name[@revision]; see docs/ssl.md)")
    config = _read_json(folder / "config.json", "the model configuration")
    preprocessor = _read_json(folder / "preprocessor_config.json",
                              "the input normalisation settings")
    model_type = config.get("model_type")
    if model_type != ENCODERS[encoder][0]:
        raise CheckpointError(f"{folder}: config.json says model_type {model_type!r}, not "
                              f"{ENCODERS[encoder][0]!r}; use --encoder "
                              f"{'hubert' if model_type == 'hubert' else 'wav2vec2'}"
                              if model_type in ("hubert", "wav2vec2") else
                              f"{folder}: config.json says model_type {model_type!r}, "
                              f"not a {encoder} checkpoint")
    rate = preprocessor.get("sampling_rate", 16000)
    if rate != 16000:
        raise CheckpointError(f"{folder}: the encoder expects {rate} Hz audio; the TFRecord "
                              "sets hold 16 kHz")
    present = [name for name in WEIGHT_FILES if (folder / name).is_file()]
    if not present:
        raise CheckpointError(f"{folder}: no weights file (model.safetensors, tf_model.h5 or "
                              "pytorch_model.bin); an incomplete download?")
    usable = [n for n in present if not n.startswith("pytorch_model")]
    if not usable and not torch_available():
        raise CheckpointError(
            f"{folder}: only {present[0]} (PyTorch pickle), which the TF classes read only "
            "with torch: pip install torch (CPU build is enough), or fetch model.safetensors "
            "or tf_model.h5 into the folder (see docs/ssl.md)")
    weights = folder / (usable or present)[0]
    for part in _weight_parts(weights) if weights.name.endswith(".index.json") else []:
        if not part.is_file():
            raise CheckpointError(f"{folder}: {weights.name} lists {part.name}, which is "
                                  "missing; an incomplete download?")
    return Checkpoint(folder, encoder, config, preprocessor, weights,
                      hub.describe() if hub else None)


def load_model(ck: Checkpoint, **config_overrides):
    """The transformers TF model (TFHubertModel / TFWav2Vec2Model) with the checkpoint's weights.

    Every encoder weight must come from the file: a missing one would silently stay random.
    """
    from pipelines.common.tfenv import _quiet_stderr, quiet_tensorflow

    quiet_tensorflow()
    from_pt = ck.weights.name.startswith("pytorch_model")
    with _quiet_stderr():  # transformers' TF deprecation and CPU notes, h5py noise
        import transformers

        transformers.logging.set_verbosity_error()
        _, model_class, config_class = ENCODERS[ck.encoder]
        config = getattr(transformers, config_class).from_pretrained(str(ck.folder),
                                                                     **config_overrides)
        model_cls = getattr(transformers, model_class)
        try:
            model, info = model_cls.from_pretrained(str(ck.folder), config=config,
                                                    from_pt=from_pt, output_loading_info=True)
        except Exception as err:  # h5py, safetensors and transformers raise many kinds
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise CheckpointError(f"{ck.weights}: cannot be read ({first}); an incomplete "
                                  "download? fetch the file again") from None
    missing = [k for k in info.get("missing_keys", [])
               if not any(u in k for u in UNUSED_WEIGHTS)]
    if missing:
        raise CheckpointError(f"{ck.weights}: lacks {len(missing)} of the encoder's weights "
                              f"(first: {missing[0]}); a different model or an incomplete file")
    return model


def _conv_stack(config) -> list[tuple[int, int]]:
    get = config.get if isinstance(config, dict) else lambda k: getattr(config, k)
    return list(zip(get("conv_kernel"), get("conv_stride")))


def frame_count(length, config):
    """Frames the convolutional feature encoder gives for `length` samples (tensor or int);
    config: a transformers config or its config.json dict."""
    for kernel, stride in _conv_stack(config):
        length = (length - kernel) // stride + 1
    return length


def receptive_field(config) -> int:
    """The fewest samples that give one frame (400 for the base models)."""
    size = 1
    for kernel, stride in reversed(_conv_stack(config)):
        size = (size - 1) * stride + kernel
    return size


class PaddingSafeEncoder:
    """Runs a transformers TF speech encoder on zero-padded batches [batch, samples] with
    per-row lengths; each clip's hidden states equal those of the clip run alone.

    __call__(waveform, length, training=False, train_from=None) -> (states, frame_mask):
        states: list of num_layers + 1 tensors [batch, frames, hidden] (index 0 = transformer
        input, i = output of layer i, as transformers' hidden_states); frame_mask [batch,
        frames] float, 1 on each clip's own frames.
    upto: run transformer layers 1..upto only (states then has upto + 1 entries).
    train_from: None = everything frozen (extraction). k = transformer layers k.. run in
        training mode with gradients; 0 also trains the feature projection and positional
        convolution. The convolutional feature encoder is always frozen.
    """

    def __init__(self, model, do_normalize: bool = True):
        if not model.built:
            model.build_in_name_scope()  # weights are created lazily
        self.model = model
        self.config = model.config
        self.main = getattr(model, model.base_model_prefix)
        self.do_normalize = do_normalize
        self.min_samples = receptive_field(self.config)
        if self.config.feat_extract_norm not in ("group", "layer"):
            raise CheckpointError(f"feat_extract_norm {self.config.feat_extract_norm!r} "
                                  "is not supported")

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    def prepare(self, waveform, length):
        """do_normalize (zero mean, unit variance over the clip's own samples), zeros past the
        end, and at least one frame's worth of samples per clip."""
        import tensorflow as tf

        waveform = tf.convert_to_tensor(waveform, tf.float32)
        length = tf.cast(length, tf.int32)
        mask = tf.sequence_mask(length, tf.shape(waveform)[1], tf.float32)
        waveform = waveform * mask
        if self.do_normalize:
            count = tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1.0)
            mean = tf.reduce_sum(waveform, axis=1, keepdims=True) / count
            var = tf.reduce_sum(tf.square(waveform - mean) * mask, axis=1, keepdims=True) / count
            waveform = (waveform - mean) / tf.sqrt(var + NORMALIZE_EPS) * mask
        short = tf.maximum(self.min_samples - tf.shape(waveform)[1], 0)
        waveform = tf.pad(waveform, [[0, 0], [0, short]])
        return waveform, tf.maximum(length, self.min_samples)

    def conv_features(self, waveform, length):
        """The convolutional feature encoder with the first layer's GroupNorm statistics over
        each clip's own frames -> (features [batch, frames, conv_dim], frame lengths)."""
        import tensorflow as tf

        layers = self.main.feature_extractor.conv_layers
        x = waveform[:, :, None]
        frames = length
        for i, layer in enumerate(layers):
            kernel, stride = self.config.conv_kernel[i], self.config.conv_stride[i]
            frames = (frames - kernel) // stride + 1
            if i == 0 and self.config.feat_extract_norm == "group":
                x = layer.conv(x)
                mask = tf.sequence_mask(frames, tf.shape(x)[1], x.dtype)
                x = masked_group_norm(x, mask, layer.layer_norm)
                x = layer.activation(x)
            else:
                x = layer(x)  # local in time: a valid frame only sees the clip's samples
        return x, frames

    def __call__(self, waveform, length, training: bool = False, train_from: int | None = None,
                 upto: int | None = None):
        import tensorflow as tf

        waveform, length = self.prepare(waveform, length)
        feats, frames = self.conv_features(waveform, length)
        feats = tf.stop_gradient(feats)
        mask = tf.sequence_mask(frames, tf.shape(feats)[1], feats.dtype)
        encoder = self.main.encoder
        stable = bool(self.config.do_stable_layer_norm)
        train_input = training and train_from == 0
        hidden = self.main.feature_projection(feats, training=train_input)
        hidden = hidden[0] if isinstance(hidden, (tuple, list)) else hidden
        hidden = hidden * mask[:, :, None]
        hidden = hidden + encoder.pos_conv_embed(hidden)
        if not stable:
            hidden = encoder.layer_norm(hidden)
        hidden = encoder.dropout(hidden, training=train_input)
        if train_from is None or train_from > 0:
            hidden = tf.stop_gradient(hidden)
        additive = (1.0 - mask)[:, None, None, :] * -1e8  # as transformers' _expand_mask
        additive = tf.tile(additive, [1, 1, tf.shape(mask)[1], 1])
        states = [hidden]
        upto = self.num_layers if upto is None else upto
        for i, layer in enumerate(encoder.layer[:upto]):
            trains = training and train_from is not None and i >= train_from
            hidden = layer(hidden_states=hidden, attention_mask=additive, training=trains)[0]
            if train_from is not None and i + 1 == train_from:
                hidden = tf.stop_gradient(hidden)
            states.append(hidden)
        if stable and upto == self.num_layers:
            states[-1] = encoder.layer_norm(hidden)
        return states, mask

    def trainable_variables(self, train_from: int) -> list:
        """The encoder variables that `train_from` trains (see __call__)."""
        encoder = self.main.encoder
        parts = list(encoder.layer[train_from:])
        if self.config.do_stable_layer_norm:
            parts.append(encoder.layer_norm)
        if train_from == 0:
            parts += [self.main.feature_projection, encoder.pos_conv_embed]
            if not self.config.do_stable_layer_norm:
                parts.append(encoder.layer_norm)
        return [v for part in parts for v in part.trainable_variables]


def masked_group_norm(x, mask, norm):
    """transformers' TF GroupNorm (tensorflow-addons semantics) with statistics over the frames
    where mask == 1 only. x [batch, frames, channels]."""
    import tensorflow as tf

    channels = x.shape[-1]
    groups = norm.groups
    per_group = channels // groups
    shape = tf.shape(x)
    xg = tf.reshape(x, [shape[0], shape[1], groups, per_group])
    m = mask[:, :, None, None]
    count = tf.maximum(tf.reduce_sum(m, axis=1, keepdims=True) * per_group, 1.0)
    mean = tf.reduce_sum(xg * m, axis=[1, 3], keepdims=True) / count
    var = tf.reduce_sum(tf.square(xg - mean) * m, axis=[1, 3], keepdims=True) / count
    out = (xg - mean) * tf.math.rsqrt(var + norm.epsilon)
    out = tf.reshape(out, shape)
    if norm.scale:
        out = out * norm.gamma
    if norm.center:
        out = out + norm.beta
    return out


def select_layer(states, layer):
    """One hidden state by index (0..L), or 'mean': the average over all L + 1."""
    import tensorflow as tf

    if layer == "mean":
        return tf.add_n(states) / float(len(states))
    return states[int(layer)]


def masked_mean_std(frames, mask):
    """[batch, frames, hidden] with a frame mask -> [batch, 2 * hidden]: mean and (population)
    standard deviation over each clip's own frames, as numpy's mean and std."""
    import tensorflow as tf

    m = mask[:, :, None]
    count = tf.maximum(tf.reduce_sum(m, axis=1), 1.0)
    mean = tf.reduce_sum(frames * m, axis=1) / count
    var = tf.reduce_sum(tf.square(frames - mean[:, None, :]) * m, axis=1) / count
    return tf.concat([mean, tf.sqrt(var)], axis=-1)


def load_encoder(ck: Checkpoint, **config_overrides) -> PaddingSafeEncoder:
    return PaddingSafeEncoder(load_model(ck, **config_overrides), ck.do_normalize)
