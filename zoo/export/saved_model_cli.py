"""What `saved_model_cli show --all` says of a SavedModel, and what a zoo export's signatures
must look like in its words: running the tool (the one beside this Python's TensorFlow),
parsing its output, the expected signature specs, and comparing the two. Used by
zoo.export.check; no TensorFlow import."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from zoo.export.layout import (
    SIGNATURE_DEFAULT, SIGNATURE_EMBEDDING, SIGNATURE_LENGTH, SIGNATURE_SPEAKER,
    SIGNATURE_SPEAKER_STATS, SIGNATURE_STATS,
)

PREDICT_METHOD = "tensorflow/serving/predict"
SERVE_TAG = "serve"


def saved_model_cli() -> list[str]:
    """The saved_model_cli that ships with this Python's TensorFlow."""
    beside = Path(sys.executable).parent / "saved_model_cli"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("saved_model_cli")
    return [found] if found else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def start_show(path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([*saved_model_cli(), "show", "--dir", str(path), "--all"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish_show(proc: subprocess.Popen) -> str:
    out, err = proc.communicate()
    if proc.returncode:
        tail = " | ".join(line for line in err.strip().splitlines()[-3:])
        raise RuntimeError(f"saved_model_cli show exited {proc.returncode}: {tail}")
    return out


def show_all(path) -> str:
    """Output of `saved_model_cli show --dir path --all`."""
    return finish_show(start_show(path))


_TAGSET = re.compile(r"^MetaGraphDef with tag-set: '([^']*)' contains the following SignatureDefs")
_SIGNATURE = re.compile(r"^signature_def\['([^']+)'\]:")
_TENSOR = re.compile(r"^\s+(inputs|outputs)\['([^']+)'\] tensor_info:")
_FIELD = re.compile(r"^\s+(dtype|shape|name): (.*)$")
_METHOD = re.compile(r"^\s+Method name is: ?(.*)$")


def _parse_shape(text: str):
    """'(-1, -1)' -> (-1, -1); '(-1)' -> (-1,); 'unknown_rank' -> None; '()' -> ()."""
    text = text.strip()
    if text == "unknown_rank":
        return None
    inner = text.strip("()").strip()
    return tuple(int(d) for d in inner.split(",") if d.strip()) if inner else ()


def parse_show_all(text: str) -> dict:
    """`saved_model_cli show --all` output -> {tag_set: {signature: {"inputs": {name: {dtype,
    shape, tensor}}, "outputs": {...}, "method": str}}}. tag_set: the tags joined by ', '."""
    tagsets: dict[str, dict] = {}
    signatures = sig = tensor = None
    for line in text.splitlines():
        if m := _TAGSET.match(line):
            signatures = tagsets.setdefault(m.group(1), {})
            sig = tensor = None
        elif signatures is not None and (m := _SIGNATURE.match(line)):
            sig = signatures.setdefault(m.group(1), {"inputs": {}, "outputs": {}, "method": ""})
            tensor = None
        elif sig is not None and (m := _TENSOR.match(line)):
            tensor = sig[m.group(1)].setdefault(m.group(2), {})
        elif tensor is not None and (m := _FIELD.match(line)):
            key, value = m.group(1), m.group(2).strip()
            tensor["tensor" if key == "name" else key] = \
                _parse_shape(value) if key == "shape" else value
        elif sig is not None and (m := _METHOD.match(line)):
            sig["method"] = m.group(1).strip()
            tensor = None
        elif line.startswith(("The MetaGraph with tag set", "Concrete Functions:")):
            signatures = sig = tensor = None
    return tagsets


def expected_signatures(num_classes: int, names=None, embedding_dim: int | None = None,
                        reliability: bool = False) -> dict:
    """{signature: {"inputs": {name: (dtype, shape)}, "outputs": {...}}} of a zoo export, in
    saved_model_cli's words (DT_FLOAT, -1 for any size). names: those listed in zoo.json;
    default the three every feature export has (serving_by_speaker and its two-step form only
    when named; embedding_dim: zoo.json speaker_head.embedding_dim). reliability: the export
    has zoo.json `reliability` (zoo.export.reliability): logits and status on every classifying
    signature, speech_ratio on those that take audio."""
    waveform = ("DT_FLOAT", (-1, -1))
    embedding = ("DT_FLOAT", (-1, embedding_dim or -1))
    length = ("DT_INT32", (-1,))
    stats_outputs = {"probabilities": ("DT_FLOAT", (-1, num_classes)),
                     "label": ("DT_STRING", (-1,))}
    embedding_outputs = {"embedding": embedding}
    if reliability:
        stats_outputs.update(logits=("DT_FLOAT", (-1, num_classes)), status=("DT_STRING", (-1,)))
        embedding_outputs["speech_ratio"] = ("DT_FLOAT", (-1,))
    outputs = dict(stats_outputs)
    if reliability:
        outputs["speech_ratio"] = ("DT_FLOAT", (-1,))
    every = {
        SIGNATURE_DEFAULT: {"inputs": {"waveform": waveform}, "outputs": outputs},
        SIGNATURE_LENGTH: {"inputs": {"waveform": waveform, "length": length},
                           "outputs": outputs},
        SIGNATURE_STATS: {"inputs": {"waveform": waveform, "length": length,
                                     "feature_mean": ("DT_FLOAT", (-1, -1)),
                                     "feature_std": ("DT_FLOAT", (-1, -1))},
                          "outputs": outputs},
        SIGNATURE_SPEAKER: {"inputs": {"waveform": waveform, "length": length,
                                       "speaker": ("DT_STRING", (-1,))},
                            "outputs": outputs},
        SIGNATURE_EMBEDDING: {"inputs": {"waveform": waveform, "length": length},
                              "outputs": embedding_outputs},
        SIGNATURE_SPEAKER_STATS: {"inputs": {name: ("DT_FLOAT", (-1, -1)) for name in
                                             ("embedding", "embedding_mean", "embedding_std")},
                                  "outputs": stats_outputs},
    }
    names = names or [SIGNATURE_DEFAULT, SIGNATURE_LENGTH, SIGNATURE_STATS]  # every export
    return {n: every[n] for n in names if n in every}


def compare_signature(name: str, found: dict | None, expected: dict) -> list[str]:
    """Problems of one parsed signature against the expected one ([] if none)."""
    if found is None:
        return [f"{name}: missing"]
    problems = []
    for side in ("inputs", "outputs"):
        want, got = expected[side], found.get(side, {})
        if set(got) != set(want):
            problems.append(f"{name}: {side} {sorted(got)}, expected {sorted(want)}")
            continue
        for key, (dtype, shape) in want.items():
            if got[key].get("dtype") != dtype or got[key].get("shape") != shape:
                problems.append(f"{name}: {side[:-1]} {key} is {got[key].get('dtype')} "
                                f"{shape_text(got[key].get('shape'))}, expected {dtype} "
                                f"{shape_text(shape)}")
    if found.get("method", PREDICT_METHOD) != PREDICT_METHOD:
        problems.append(f"{name}: method {found.get('method')!r}, expected {PREDICT_METHOD}")
    return problems


def shape_text(shape) -> str:
    return "unknown_rank" if shape is None else "[" + ", ".join(map(str, shape)) + "]"
