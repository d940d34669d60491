"""TF Serving side of the zoo: the server's model config, REST request bodies, export checks.

    python -m zoo.serving config [--root savedmodels] [--base-path /models]
    python -m zoo.serving request FILE.wav [--model NAME] [--format inputs|instances]
                                  [--signature serving_default|serving_with_length|...]
    python -m zoo.serving check savedmodels/<model>/<version> [--wav FILE]

`savedmodels/` is a TF Serving model base path as it stands (`<model>/<version>/saved_model.pb`);
`config` writes `savedmodels/models.config` for `tensorflow_model_server --model_config_file`.
`request` prints the JSON body of a REST `:predict` call for one audio file (decoded with
pipelines.audio: any format libsndfile reads, 16 kHz mono). `check` validates an export the way
the server will use it: layout, assets, signatures (from `saved_model_cli show --all` and from
the loaded SavedModel), a load with the TF1-style loader TF Serving runs, and a call on a test
waveform compared with the Keras model's own output. See docs/serving.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from zoo.layout import (SIGNATURE_DEFAULT, SIGNATURE_LENGTH, SIGNATURE_STATS, SIGNATURES,
                        read_export, resolve_version)

CONFIG_NAME = "models.config"
PREDICT_METHOD = "tensorflow/serving/predict"
SERVE_TAG = "serve"
REQUIRED_FILES = ("saved_model.pb", "variables/variables.index", "assets/labels.txt",
                  "assets/feature_spec.json", "zoo.json", "model.keras")
TOLERANCE = 1e-4  # probabilities: graph vs Keras model, float32 on different kernels


class ServingError(RuntimeError):
    """Bad usage of a zoo.serving command (exit code 2)."""


# ---------------------------------------------------------------- models.config

def find_models(root) -> dict[str, Path]:
    """model name -> its folder, for every folder under root with a numbered SavedModel."""
    root = Path(root)
    if not root.is_dir():
        raise ServingError(f"{root}: not a folder")
    found = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            resolve_version(folder)
        except FileNotFoundError:
            continue
        found[folder.name] = folder
    return found


def models_config(models: dict[str, Path], base_path: str | None = None) -> str:
    """TF Serving ModelServerConfig (text protobuf), one entry per model.

    base_path: the folder holding the models as the server sees it (e.g. /models inside a
    container); None: each model folder's absolute path on this machine.
    """
    entries = []
    for name, folder in models.items():
        path = (base_path.rstrip("/") + "/" + name) if base_path else str(folder.absolute())
        entries.append("  config {\n"
                       f"    name: {json.dumps(name)}\n"
                       f"    base_path: {json.dumps(path)}\n"
                       '    model_platform: "tensorflow"\n'
                       "  }\n")
    return "model_config_list {\n" + "".join(entries) + "}\n"


# ---------------------------------------------------------------- request bodies

def _float_list(values: np.ndarray) -> list[float]:
    """float32 values as the shortest decimals that read back as the same float32 (a JSON
    body about half the size of float64 reprs)."""
    return [float(str(v)) for v in np.asarray(values, np.float32).ravel()]


def request_body(waveform: np.ndarray, signature: str = SIGNATURE_DEFAULT,
                 fmt: str = "inputs", stats: tuple | None = None) -> dict:
    """The JSON body of a REST :predict request for one clip (1-D float32 at 16 kHz).

    fmt 'inputs' (columnar): {"signature_name", "inputs": {"waveform": [[...]], ...}};
    'instances' (row): {"signature_name", "instances": [{"waveform": [...], ...}]}.
    serving_with_length adds length; serving_with_stats also needs stats = (mean, std) [C].
    """
    waveform = np.asarray(waveform, np.float32)
    if waveform.ndim != 1 or not len(waveform):
        raise ServingError("request_body: one non-empty 1-D waveform needed")
    row = {"waveform": _float_list(waveform)}
    if signature in (SIGNATURE_LENGTH, SIGNATURE_STATS):
        row["length"] = int(len(waveform))
    if signature == SIGNATURE_STATS:
        if stats is None:
            raise ServingError(f"{SIGNATURE_STATS} needs feature statistics (--stats, --speaker)")
        row["feature_mean"] = _float_list(stats[0])
        row["feature_std"] = _float_list(stats[1])
    elif signature not in (SIGNATURE_DEFAULT, SIGNATURE_LENGTH):
        raise ServingError(f"unknown signature {signature!r}")
    if fmt == "instances":
        return {"signature_name": signature, "instances": [row]}
    if fmt == "inputs":
        return {"signature_name": signature, "inputs": {k: [v] for k, v in row.items()}}
    raise ServingError(f"format must be 'inputs' or 'instances', not {fmt!r}")


# ---------------------------------------------------------------- saved_model_cli

def saved_model_cli() -> list[str]:
    """The saved_model_cli that ships with this Python's TensorFlow."""
    beside = Path(sys.executable).parent / "saved_model_cli"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("saved_model_cli")
    return [found] if found else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def _start_show(path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([*saved_model_cli(), "show", "--dir", str(path), "--all"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish_show(proc: subprocess.Popen) -> str:
    out, err = proc.communicate()
    if proc.returncode:
        tail = " | ".join(line for line in err.strip().splitlines()[-3:])
        raise RuntimeError(f"saved_model_cli show exited {proc.returncode}: {tail}")
    return out


def show_all(path) -> str:
    """Output of `saved_model_cli show --dir path --all`."""
    return _finish_show(_start_show(path))


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


def expected_signatures(num_classes: int, names=None) -> dict:
    """{signature: {"inputs": {name: (dtype, shape)}, "outputs": {...}}} of a zoo export, in
    saved_model_cli's words (DT_FLOAT, -1 for any size)."""
    waveform = ("DT_FLOAT", (-1, -1))
    length = ("DT_INT32", (-1,))
    outputs = {"probabilities": ("DT_FLOAT", (-1, num_classes)), "label": ("DT_STRING", (-1,))}
    every = {
        SIGNATURE_DEFAULT: {"inputs": {"waveform": waveform}, "outputs": outputs},
        SIGNATURE_LENGTH: {"inputs": {"waveform": waveform, "length": length},
                           "outputs": outputs},
        SIGNATURE_STATS: {"inputs": {"waveform": waveform, "length": length,
                                     "feature_mean": ("DT_FLOAT", (-1, -1)),
                                     "feature_std": ("DT_FLOAT", (-1, -1))},
                          "outputs": outputs},
    }
    names = names or list(every)
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
                                f"{_shape_text(got[key].get('shape'))}, expected {dtype} "
                                f"{_shape_text(shape)}")
    if found.get("method", PREDICT_METHOD) != PREDICT_METHOD:
        problems.append(f"{name}: method {found.get('method')!r}, expected {PREDICT_METHOD}")
    return problems


def _shape_text(shape) -> str:
    return "unknown_rank" if shape is None else "[" + ", ".join(map(str, shape)) + "]"


# ---------------------------------------------------------------- check

@dataclasses.dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def synthetic_clip(seconds: float = 1.6, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A fixed speech-like clip: silence, a gliding harmonic tone with syllable-rate amplitude
    modulation and a little noise, silence (so trimming and normalisation have work to do)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) * (t > 0.2) * (t < seconds - 0.2)
    wave = 0.2 * voiced * envelope + 0.003 * rng.normal(size=n)
    return wave.astype(np.float32)


def _version_number(path: Path) -> Check:
    ok = path.name.isdigit() and int(path.name) > 0
    return Check("layout", ok, f"{path.parent.name}/{path.name}" + (
        "" if ok else ": the version folder must be a positive integer (TF Serving skips others)"))


def _files(path: Path) -> Check:
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    return Check("files", not missing, "all present" if not missing
                 else "missing " + ", ".join(missing))


def _labels_asset(path: Path, info: dict) -> Check:
    asset = path / "assets" / "labels.txt"
    if not asset.is_file():
        return Check("labels asset", False, "assets/labels.txt missing")
    lines = asset.read_text().splitlines()
    labels = list(info.get("labels", []))
    if lines != labels:
        return Check("labels asset", False, f"assets/labels.txt {lines} != zoo.json {labels}")
    return Check("labels asset", True, f"{len(labels)} labels, as zoo.json")


def _spec_asset(path: Path, info: dict):
    from pipelines.spec import FeatureSpec, SpecError

    asset = path / "assets" / "feature_spec.json"
    if not asset.is_file():
        return Check("feature spec", False, "assets/feature_spec.json missing"), None
    try:
        spec = FeatureSpec.load(asset)
    except SpecError as err:
        return Check("feature spec", False, str(err)), None
    if "feature_spec" in info and FeatureSpec.from_dict(info["feature_spec"]) != spec:
        return Check("feature spec", False, "assets/feature_spec.json differs from zoo.json"), spec
    return Check("feature spec", True, f"{spec.kind}, {spec.channels} channels, "
                                       f"{spec.sample_rate} Hz"), spec


def _loaded_signatures(loaded) -> dict:
    """Signatures of a tf.saved_model.load result in parse_show_all's form."""
    from tensorflow.core.framework import types_pb2

    def describe(spec) -> dict:
        shape = None if spec.shape.rank is None else \
            tuple(-1 if d is None else d for d in spec.shape.as_list())
        return {"dtype": types_pb2.DataType.Name(spec.dtype.as_datatype_enum), "shape": shape}

    return {name: {"inputs": {k: describe(v) for k, v in fn.structured_input_signature[1].items()},
                   "outputs": {k: describe(v) for k, v in fn.structured_outputs.items()}}
            for name, fn in loaded.signatures.items()}


def _signature_checks(source: str, found: dict, expected: dict) -> list[Check]:
    checks = []
    for name, want in expected.items():
        problems = compare_signature(name, found.get(name), want)
        inputs = ", ".join(f"{k} {d} {_shape_text(s)}" for k, (d, s) in want["inputs"].items())
        checks.append(Check(f"{source} {name}", not problems,
                            "; ".join(problems) if problems else f"({inputs})"))
    return checks


def _tf1_session_call(path: Path, waveform: np.ndarray) -> np.ndarray:
    """serving_default run the way TF Serving runs it: the MetaGraph imported into a session,
    variables restored by the graph's restore op, signature tensors fed and fetched by name."""
    from pipelines.tfenv import quiet_tensorflow

    from tensorflow.python.util import deprecation

    tf = quiet_tensorflow()
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session, \
            deprecation.silence():
        meta = tf.compat.v1.saved_model.load(session, [SERVE_TAG], str(path))
        sig = meta.signature_def[SIGNATURE_DEFAULT]
        return session.run(sig.outputs["probabilities"].name,
                           {sig.inputs["waveform"].name: waveform})


def check(path, wav=None) -> list[Check]:
    """Every check of an export folder (savedmodels/<model>/<version>), in order."""
    path = Path(path)
    if not path.is_dir():
        return [Check("layout", False, f"{path}: not a folder")]
    show = _start_show(path) if (path / "saved_model.pb").is_file() else None
    try:
        return _run_checks(path, show, wav)
    finally:
        if show is not None and show.poll() is None:
            show.kill()
            show.communicate()


def _run_checks(path: Path, show, wav) -> list[Check]:
    from pipelines.tfenv import quiet_tensorflow

    tf = quiet_tensorflow()
    checks = [_version_number(path), _files(path)]
    try:
        info = read_export(path)
    except (FileNotFoundError, json.JSONDecodeError) as err:
        return checks + [Check("zoo.json", False, str(err))]
    checks.append(Check("zoo.json", True, f"{info.get('name')} version {info.get('version')}"))
    labels = list(info.get("labels", []))
    checks.append(_labels_asset(path, info))
    spec_check, spec = _spec_asset(path, info)
    checks.append(spec_check)
    expected = expected_signatures(len(labels), info.get("signatures"))
    if SIGNATURE_DEFAULT not in expected:
        expected = {**expected_signatures(len(labels), [SIGNATURE_DEFAULT]), **expected}

    loaded = None
    try:
        loaded = tf.saved_model.load(str(path))
        checks += _signature_checks("loaded", _loaded_signatures(loaded), expected)
    except Exception as err:  # noqa: BLE001 - any load failure is the finding
        checks.append(Check("loaded", False, f"tf.saved_model.load failed: {_one_line(err)}"))
    try:
        parsed = parse_show_all(_finish_show(show)) if show else {}
        if SERVE_TAG not in parsed:
            checks.append(Check("saved_model_cli", False,
                                f"no MetaGraph with tag-set '{SERVE_TAG}' in show --all"))
        else:
            checks += _signature_checks("saved_model_cli", parsed[SERVE_TAG], expected)
    except RuntimeError as err:
        checks.append(Check("saved_model_cli", False, str(err)))

    wave = synthetic_clip() if wav is None else _decode(wav)
    checks += _call_checks(path, loaded, spec, labels, wave)
    return checks


def _call_checks(path: Path, loaded, spec, labels: list[str], wave: np.ndarray) -> list[Check]:
    from pipelines.tfenv import quiet_tensorflow

    tf = quiet_tensorflow()
    if loaded is None or SIGNATURE_DEFAULT not in loaded.signatures:
        return [Check("call", False, "no loaded serving_default signature to call")]
    checks = []
    try:
        out = loaded.signatures[SIGNATURE_DEFAULT](waveform=tf.constant(wave[None, :]))
        served = out["probabilities"].numpy()
        label = out["label"].numpy()[0].decode()
    except Exception as err:  # noqa: BLE001
        return [Check("call", False, f"serving_default(waveform [1, {len(wave)}]) failed: "
                                     f"{_one_line(err)}")]
    ok = served.shape == (1, len(labels)) and np.isfinite(served).all() \
        and abs(float(served.sum()) - 1) < 1e-4 and label == labels[int(served.argmax())]
    checks.append(Check("call", ok, f"serving_default(waveform [1, {len(wave)}]) -> "
                                    f"{label} {served.max():.3f}" + (
                                        "" if ok else f" (probabilities {served.tolist()})")))
    try:
        session = _tf1_session_call(path, wave[None, :])
        diff = float(np.abs(session - served).max())
        checks.append(Check("TF Serving loader", diff <= TOLERANCE,
                            f"TF1 session with the graph's restore op: max |diff| {diff:.2e}"))
    except Exception as err:  # noqa: BLE001
        checks.append(Check("TF Serving loader", False, f"TF1 session load or run failed: "
                                                        f"{_one_line(err)}"))
    if SIGNATURE_LENGTH in loaded.signatures:
        padded = np.pad(wave, (0, len(wave) // 2))[None, :]
        try:
            again = loaded.signatures[SIGNATURE_LENGTH](
                waveform=tf.constant(padded), length=tf.constant([len(wave)], tf.int32))
            diff = float(np.abs(again["probabilities"].numpy() - served).max())
            checks.append(Check("padding", diff <= 1e-5, f"{SIGNATURE_LENGTH} on the clip "
                                f"padded by 50%: max |diff| {diff:.2e}"))
        except Exception as err:  # noqa: BLE001
            checks.append(Check("padding", False, f"{SIGNATURE_LENGTH} failed: "
                                                  f"{_one_line(err)}"))
    checks.append(_keras_check(path, spec, wave, served))
    return checks


def _keras_check(path: Path, spec, wave: np.ndarray, served: np.ndarray) -> Check:
    import keras

    import zoo.layers  # noqa: F401 - registers the custom layers for loading
    from pipelines import features as F

    if spec is None:
        return Check("keras", False, "no usable feature spec to compute features with")
    try:
        model = keras.models.load_model(path / "model.keras", safe_mode=True)
        features, _ = F.compute(wave[None, :], np.array([len(wave)], np.int32), spec)
        own = np.asarray(model(features, training=False))
    except Exception as err:  # noqa: BLE001
        return Check("keras", False, f"model.keras on pipelines.features failed: "
                                     f"{_one_line(err)}")
    if own.shape != served.shape:
        return Check("keras", False, f"model.keras gives {own.shape}, the graph {served.shape}")
    diff = float(np.abs(own - served).max())
    return Check("keras", diff <= TOLERANCE, f"model.keras on pipelines.features vs the graph: "
                                             f"max |diff| {diff:.2e} (tolerance {TOLERANCE})")


def _one_line(err: Exception) -> str:
    """The informative line of an exception (TensorFlow's run first a stack header)."""
    text = getattr(err, "message", None) or str(err)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Graph execution error", "Detected at",
                                                       "<stack traces", "[["))]
    return f"{type(err).__name__}: {(useful or lines or [''])[0]}"[:400]


def _decode(path) -> np.ndarray:
    from pipelines.audio import AudioError, decode

    try:
        return decode(path).waveform
    except AudioError as err:
        raise ServingError(str(err)) from None


# ---------------------------------------------------------------- CLI

def _cmd_config(args) -> int:
    from pipelines.io import write_text_atomic

    models = find_models(args.root)
    if not models:
        raise ServingError(f"{args.root}: no <model>/<version>/saved_model.pb below it")
    text = models_config(models, args.base_path)
    out = Path(args.root) / CONFIG_NAME
    write_text_atomic(out, text)
    print(text, end="")
    print(f"wrote {out} ({len(models)} models)", file=sys.stderr)
    return 0


def _cmd_request(args) -> int:
    signatures = list(SIGNATURES)
    if args.model:
        folder = Path(args.model) if Path(args.model).is_dir() else Path(args.root) / args.model
        try:
            info = read_export(resolve_version(folder))
        except FileNotFoundError as err:
            raise ServingError(str(err)) from None
        signatures = info.get("signatures", signatures)
        if args.signature not in signatures:
            raise ServingError(f"{folder.name} has no {args.signature} signature "
                               f"(it has {', '.join(signatures)})")
    stats = None
    if args.signature == SIGNATURE_STATS:
        stats = _speaker_stats(args.stats, args.speaker)
    body = request_body(_decode(args.file), args.signature, args.format, stats)
    text = json.dumps(body, separators=(",", ":"))
    if args.out:
        from pipelines.io import write_text_atomic

        write_text_atomic(args.out, text + "\n")
    else:
        print(text)
    if args.model:
        print(f"POST it to http://localhost:8501/v1/models/{Path(args.model).name}:predict",
              file=sys.stderr)
    return 0


def _speaker_stats(path, speaker):
    from pipelines.speaker_stats import SpeakerStats

    if not path or not speaker:
        raise ServingError(f"{SIGNATURE_STATS} needs --stats FILE.json and --speaker ID")
    try:
        stats = SpeakerStats.from_json(Path(path).read_text())
    except (OSError, ValueError, KeyError) as err:
        raise ServingError(f"{path}: cannot read speaker statistics ({err})") from None
    if speaker not in stats.mean:
        raise ServingError(f"{path}: no speaker {speaker!r} (has {', '.join(stats.speakers)})")
    mean, std = stats.arrays([speaker])
    return mean[0], std[0]


def _cmd_check(args) -> int:
    failed = 0
    for target in args.path:
        try:
            path = resolve_version(target)
        except FileNotFoundError as err:
            print(f"FAIL  layout: {err}")
            failed += 1
            continue
        print(f"checking {path}")
        results = check(path, args.wav)
        for result in results:
            print(result.line())
        bad = [r for r in results if not r.ok]
        print(f"{path}: {'FAIL' if bad else 'PASS'} ({len(results) - len(bad)}/{len(results)} "
              "checks passed)")
        failed += bool(bad)
    return 1 if failed else 0


def main(argv=None) -> int:
    from pipelines.tfenv import quiet_tensorflow

    parser = argparse.ArgumentParser(prog="python -m zoo.serving",
                                     description="TF Serving config, request bodies and "
                                                 "export checks for savedmodels/.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("config", help="write <root>/models.config for tensorflow_model_server")
    p.add_argument("--root", default="savedmodels", help="model base folder (savedmodels)")
    p.add_argument("--base-path", help="the root as the server sees it, e.g. /models in a "
                                       "container (default: absolute path here)")
    p = sub.add_parser("request", help="print the JSON body of a REST :predict request")
    p.add_argument("file", help="audio file (any format libsndfile reads; resampled to 16 kHz)")
    p.add_argument("--model", help="model name under --root (or its folder): checks that it "
                                   "has the signature")
    p.add_argument("--root", default="savedmodels")
    p.add_argument("--format", default="inputs", choices=["inputs", "instances"])
    p.add_argument("--signature", default=SIGNATURE_DEFAULT,
                   choices=SIGNATURES)
    p.add_argument("--stats", help=f"speaker statistics JSON ({SIGNATURE_STATS})")
    p.add_argument("--speaker", help=f"speaker id in --stats ({SIGNATURE_STATS})")
    p.add_argument("--out", help="write the body here instead of stdout")
    p = sub.add_parser("check", help="validate export folder(s): exit 0 all pass, 1 otherwise")
    p.add_argument("path", nargs="+", help="savedmodels/<model>/<version> (or <model>: newest)")
    p.add_argument("--wav", help="test with this audio file instead of a synthetic clip")
    args = parser.parse_args(argv)
    if args.command == "check":
        quiet_tensorflow()
    try:
        return {"config": _cmd_config, "request": _cmd_request, "check": _cmd_check}[
            args.command](args)
    except ServingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # stdout piped into e.g. head, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
