"""Tiny randomly initialised HuBERT / Wav2Vec2 checkpoints, saved the way the hub publishes
them (save_pretrained: config.json + preprocessor_config.json + weights), for tests and for
trying the SSL commands without a download.

    python tests/ssl_tiny.py OUT_DIR      # OUT_DIR/hubert, OUT_DIR/wav2vec2 (+ other formats)

Imports transformers: run it in its own process (tests call it through subprocess).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# hidden 32, 2 layers, a 3-layer conv stack with the base models' 320-sample hop (50 frames/s)
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16, 16, 16), conv_kernel=(10, 8, 8), conv_stride=(5, 8, 8),
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
            hidden_dropout=0.1, attention_dropout=0.1, layerdrop=0.0)
FORMATS = ("h5", "safetensors-tf", "safetensors-pt")


def build(encoder: str, seed: int = 0, **changes):
    import tensorflow as tf
    import transformers

    config_cls = transformers.HubertConfig if encoder == "hubert" else \
        transformers.Wav2Vec2Config
    model_cls = transformers.TFHubertModel if encoder == "hubert" else \
        transformers.TFWav2Vec2Model
    tf.random.set_seed(seed)
    model = model_cls(config_cls(**{**TINY, **changes}))
    model.build_in_name_scope()
    return model


def save(model, folder, fmt: str = "h5", do_normalize: bool = True) -> Path:
    """A checkpoint folder with the weights in one format:
    h5 = tf_model.h5; safetensors-tf = model.safetensors as TF saves it; safetensors-pt =
    model.safetensors with PyTorch names and layouts (as the hub's PyTorch checkpoints)."""
    import transformers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors-pt":
        model.config.save_pretrained(str(folder))
        save_pytorch_layout(model, folder / "model.safetensors")
    else:
        model.save_pretrained(str(folder), safe_serialization=fmt == "safetensors-tf")
    transformers.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=do_normalize,
        return_attention_mask=False).save_pretrained(str(folder))
    return folder


def save_pytorch_layout(model, path) -> None:
    """Write the TF model's weights as a PyTorch-format safetensors file (names without the
    TF model scope, PyTorch tensor layouts, metadata format 'pt'), without torch."""
    import numpy as np
    from safetensors.numpy import save_file
    from transformers.modeling_tf_pytorch_utils import (
        apply_transpose, convert_tf_weight_name_to_pt_weight_name,
    )

    prefix = model.base_model_prefix + "."
    tensors = {}
    for weight in model.weights:
        name, transpose = convert_tf_weight_name_to_pt_weight_name(
            weight.name, tf_weight_shape=weight.shape)
        array = np.asarray(apply_transpose(transpose, weight.numpy(), pt_to_tf=False))
        if name.endswith("weight_g"):
            array = array.reshape(1, 1, -1)
        # PyTorch HubertModel / Wav2Vec2Model checkpoints have no base-model prefix
        tensors[name[len(prefix):] if name.startswith(prefix) else name] = \
            np.ascontiguousarray(array)
    save_file(tensors, str(path), metadata={"format": "pt"})


def make_all(out) -> dict:
    """hubert/ and wav2vec2/ (h5), plus every weights format and a 'layer'-norm model."""
    out = Path(out)
    made = {}
    for encoder in ("hubert", "wav2vec2"):
        model = build(encoder, seed=1 if encoder == "hubert" else 2)
        made[encoder] = str(save(model, out / encoder, "h5"))
        for fmt in FORMATS[1:]:
            made[f"{encoder}-{fmt}"] = str(save(model, out / f"{encoder}-{fmt}", fmt))
    stable = build("wav2vec2", seed=3, feat_extract_norm="layer", do_stable_layer_norm=True)
    made["wav2vec2-layernorm"] = str(save(stable, out / "wav2vec2-layernorm", "safetensors-tf"))
    (out / "made.json").write_text(json.dumps(made, indent=2))
    return made


if __name__ == "__main__":
    from pipelines.common.tfenv import quiet_tensorflow

    quiet_tensorflow()
    print(json.dumps(make_all(sys.argv[1])))
