"""The two checkpoint formats Whisper encoder weights are read from, into the zoo's names
(pipelines.encoders.whisper_checkpoint: locating, checking, caching):

- CTranslate2 (`model.bin`, format version 6, spec WhisperSpec): a small binary reader (uint32
  version; spec string; revision; variable count; per variable name, rank, dims, dtype code,
  byte count, raw bytes), encoder variables only;
- Hugging Face (`config.json` + `model.safetensors`, or `pytorch_model.bin` with torch).

Any problem is a one-line WhisperCheckpointError.
"""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import numpy as np

CT2_VERSION = 6
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class WhisperCheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line."""


# ---------------------------------------------------------------- CTranslate2

class _Reader:
    def __init__(self, f, path: Path, size: int):
        self.f, self.path, self.size = f, path, size

    def take(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise WhisperCheckpointError(f"{self.path}: truncated at byte {self.f.tell()} of "
                                         f"{self.size}; an incomplete download? fetch it again")
        return data

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def string(self) -> str:
        raw = self.take(self.u16())
        try:
            return raw.rstrip(b"\0").decode("utf-8")
        except UnicodeDecodeError:
            raise WhisperCheckpointError(f"{self.path}: not a CTranslate2 model file "
                                         "(unreadable name)") from None


def read_ctranslate2(path, prefix: str = "encoder/") -> tuple[str, int, dict]:
    """(spec name, revision, {variable name: array}) of a CTranslate2 model.bin, keeping the
    variables whose names start with `prefix` (the others' bytes are skipped)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        r = _Reader(f, path, size)
        version = r.u32()
        if version != CT2_VERSION:
            raise WhisperCheckpointError(
                f"{path}: CTranslate2 model format version {version}, this reader knows "
                f"version {CT2_VERSION} (re-convert with ctranslate2 4.x)"
                if 0 < version < 100 else f"{path}: not a CTranslate2 model file")
        spec, revision = r.string(), r.u32()
        arrays = {}
        for _ in range(r.u32()):
            name = r.string()
            dims = [r.u32() for _ in range(r.u8())]
            code, nbytes = r.u8(), r.u32()
            if not name.startswith(prefix):
                if f.seek(nbytes, 1) > size:
                    raise WhisperCheckpointError(f"{path}: truncated inside variable {name}; "
                                                 "an incomplete download? fetch it again")
                continue
            if code not in CT2_DTYPES:
                raise WhisperCheckpointError(f"{path}: variable {name} has data type code "
                                             f"{code} (bfloat16?), which this reader does "
                                             "not convert; use a float16 or float32 checkpoint")
            dtype = np.dtype(CT2_DTYPES[code]).newbyteorder("<")
            if nbytes != dtype.itemsize * int(np.prod(dims, dtype=np.int64)):
                raise WhisperCheckpointError(f"{path}: variable {name} holds {nbytes} bytes, "
                                             f"not the {dims} {dtype.name} its header says")
            arrays[name] = np.frombuffer(r.take(nbytes), dtype).reshape(dims).astype(
                dtype.newbyteorder("="))
    return spec, revision, arrays


def convert_ctranslate2(folder: Path) -> tuple[dict, dict]:
    """(dims config, zoo-named arrays) from a CTranslate2 Whisper folder."""
    path = folder / "model.bin"
    spec, revision, v = read_ctranslate2(path)
    if spec != "WhisperSpec":
        raise WhisperCheckpointError(f"{path}: a CTranslate2 {spec or 'model'}, not a Whisper "
                                     "model (WhisperSpec)")
    if any(name.endswith("weight_scale") for name in v):
        raise WhisperCheckpointError(f"{path}: quantised (int8) weights; convert the model "
                                     "with --quantization float16 or float32")
    enc = "encoder/"
    need = [f"{enc}conv1/weight", f"{enc}conv2/weight", f"{enc}position_encodings/encodings",
            f"{enc}layer_norm/gamma", f"{enc}num_heads"]
    missing = [n for n in need if n not in v]
    if missing:
        raise WhisperCheckpointError(f"{path}: lacks {missing[0]}; not a Whisper encoder of "
                                     "the expected layout")
    n_layers = 0
    while f"{enc}layer_{n_layers}/self_attention/linear_0/weight" in v:
        n_layers += 1
    out = {"conv1.kernel": v[f"{enc}conv1/weight"].transpose(2, 1, 0),
           "conv1.bias": v[f"{enc}conv1/bias"],
           "conv2.kernel": v[f"{enc}conv2/weight"].transpose(2, 1, 0),
           "conv2.bias": v[f"{enc}conv2/bias"],
           "positions": v[f"{enc}position_encodings/encodings"],
           "final_ln.gamma": v[f"{enc}layer_norm/gamma"],
           "final_ln.beta": v[f"{enc}layer_norm/beta"]}
    d = out["conv1.bias"].shape[0]
    for i in range(n_layers):
        p, q = f"{enc}layer_{i}/", f"layers.{i}."
        try:
            qkv, qkv_b = v[f"{p}self_attention/linear_0/weight"], v[f"{p}self_attention/linear_0/bias"]
            if qkv.shape != (3 * d, d):
                raise WhisperCheckpointError(f"{path}: {p}self_attention/linear_0 is "
                                             f"{list(qkv.shape)}, not the fused [{3 * d}, {d}]")
            out.update({
                f"{q}attn_ln.gamma": v[f"{p}self_attention/layer_norm/gamma"],
                f"{q}attn_ln.beta": v[f"{p}self_attention/layer_norm/beta"],
                f"{q}q.kernel": qkv[:d].T, f"{q}q.bias": qkv_b[:d],
                f"{q}k.kernel": qkv[d:2 * d].T,
                f"{q}v.kernel": qkv[2 * d:].T, f"{q}v.bias": qkv_b[2 * d:],
                f"{q}o.kernel": v[f"{p}self_attention/linear_1/weight"].T,
                f"{q}o.bias": v[f"{p}self_attention/linear_1/bias"],
                f"{q}ffn_ln.gamma": v[f"{p}ffn/layer_norm/gamma"],
                f"{q}ffn_ln.beta": v[f"{p}ffn/layer_norm/beta"],
                f"{q}fc1.kernel": v[f"{p}ffn/linear_0/weight"].T,
                f"{q}fc1.bias": v[f"{p}ffn/linear_0/bias"],
                f"{q}fc2.kernel": v[f"{p}ffn/linear_1/weight"].T,
                f"{q}fc2.bias": v[f"{p}ffn/linear_1/bias"],
            })
        except KeyError as err:
            raise WhisperCheckpointError(f"{path}: lacks {err.args[0]}; not a Whisper encoder "
                                         "of the expected layout") from None
        if np.any(qkv_b[d:2 * d] != 0):
            raise WhisperCheckpointError(f"{path}: layer {i} has a key bias; not Whisper's "
                                         "attention")
    config = {"n_mels": int(out["conv1.kernel"].shape[1]), "d_model": int(d),
              "n_heads": int(v[f"{enc}num_heads"]), "n_layers": n_layers,
              "ffn_dim": int(out["layers.0.fc1.bias"].shape[0]) if n_layers else 4 * d,
              "n_ctx": int(out["positions"].shape[0]), "spec_revision": revision}
    return config, {k: np.ascontiguousarray(a) for k, a in out.items()}


# ---------------------------------------------------------------- Hugging Face

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _hf_weights_file(folder: Path) -> Path:
    for name in HF_WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    if (folder / "model.safetensors.index.json").is_file():
        raise WhisperCheckpointError(f"{folder}: sharded weights (model.safetensors.index.json)"
                                     " are not supported; the published Whisper checkpoints "
                                     "ship one model.safetensors")
    raise WhisperCheckpointError(f"{folder}: no model.safetensors (or pytorch_model.bin); an "
                                 "incomplete download? (docs/whisper.md)")


def _hf_tensors(path: Path) -> dict:
    """The encoder's tensors of a Hugging Face weights file, as numpy, names without the
    'model.' prefix."""
    keep = ("encoder.", "model.encoder.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                return {k.removeprefix("model."): f.get_tensor(k) for k in f.keys()
                        if k.startswith(keep)}
        except (SafetensorError, OSError, ValueError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            raise WhisperCheckpointError(f"{path}: cannot be read ({first}); an incomplete "
                                         "download? fetch it again") from None
    if importlib.util.find_spec("torch") is None:
        raise WhisperCheckpointError(f"{path}: a PyTorch pickle, which needs torch (pip install "
                                     "torch, CPU build); or fetch model.safetensors instead")
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a broken pickle
        raise WhisperCheckpointError(f"{path}: cannot be read ({type(err).__name__}); an "
                                     "incomplete download? fetch it again") from None
    return {k.removeprefix("model."): v.float().numpy() for k, v in state.items()
            if k.startswith(keep)}


def hf_config(folder: Path) -> dict:
    """A Hugging Face folder's config.json, checked to be Whisper's."""
    cfg_path = folder / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise WhisperCheckpointError(f"{cfg_path}: not valid JSON ({err})") from None
    if not isinstance(cfg, dict) or cfg.get("model_type") != "whisper":
        kind = cfg.get("model_type") if isinstance(cfg, dict) else None
        raise WhisperCheckpointError(f"{cfg_path}: model_type {kind!r}, not 'whisper'")
    if cfg.get("activation_function", "gelu") != "gelu":
        raise WhisperCheckpointError(f"{cfg_path}: activation {cfg['activation_function']!r}; "
                                     "the encoder here uses Whisper's GELU")
    return cfg


def convert_huggingface(folder: Path) -> tuple[dict, dict]:
    """(dims config, zoo-named arrays) from a Hugging Face Whisper folder."""
    cfg = hf_config(folder)
    path = _hf_weights_file(folder)
    t = _hf_tensors(path)
    try:
        out = {"conv1.kernel": t["encoder.conv1.weight"].transpose(2, 1, 0),
               "conv1.bias": t["encoder.conv1.bias"],
               "conv2.kernel": t["encoder.conv2.weight"].transpose(2, 1, 0),
               "conv2.bias": t["encoder.conv2.bias"],
               "positions": t["encoder.embed_positions.weight"],
               "final_ln.gamma": t["encoder.layer_norm.weight"],
               "final_ln.beta": t["encoder.layer_norm.bias"]}
        for i in range(int(cfg["encoder_layers"])):
            p, q = f"encoder.layers.{i}.", f"layers.{i}."
            a = f"{p}self_attn."
            out.update({
                f"{q}attn_ln.gamma": t[f"{p}self_attn_layer_norm.weight"],
                f"{q}attn_ln.beta": t[f"{p}self_attn_layer_norm.bias"],
                f"{q}q.kernel": t[f"{a}q_proj.weight"].T, f"{q}q.bias": t[f"{a}q_proj.bias"],
                f"{q}k.kernel": t[f"{a}k_proj.weight"].T,
                f"{q}v.kernel": t[f"{a}v_proj.weight"].T, f"{q}v.bias": t[f"{a}v_proj.bias"],
                f"{q}o.kernel": t[f"{a}out_proj.weight"].T,
                f"{q}o.bias": t[f"{a}out_proj.bias"],
                f"{q}ffn_ln.gamma": t[f"{p}final_layer_norm.weight"],
                f"{q}ffn_ln.beta": t[f"{p}final_layer_norm.bias"],
                f"{q}fc1.kernel": t[f"{p}fc1.weight"].T, f"{q}fc1.bias": t[f"{p}fc1.bias"],
                f"{q}fc2.kernel": t[f"{p}fc2.weight"].T, f"{q}fc2.bias": t[f"{p}fc2.bias"],
            })
    except KeyError as err:
        raise WhisperCheckpointError(f"{path}: lacks {err.args[0]}; not a Whisper encoder (or "
                                     "an incomplete file)") from None
    config = {"n_mels": int(cfg["num_mel_bins"]), "d_model": int(cfg["d_model"]),
              "n_heads": int(cfg["encoder_attention_heads"]),
              "n_layers": int(cfg["encoder_layers"]), "ffn_dim": int(cfg["encoder_ffn_dim"]),
              "n_ctx": int(cfg["max_source_positions"])}
    return config, {k: np.ascontiguousarray(a) for k, a in out.items()}
