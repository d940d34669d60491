"""Checks that an export is what TF Serving loads and calls: `python -m zoo.serving check`.

Layout, assets, signatures (from `saved_model_cli show --all` and from the loaded SavedModel),
a load with the TF1-style loader TF Serving runs, and a call on a test waveform compared with
the Keras model's own output. Running and parsing saved_model_cli, and the signatures a zoo
export must have, are in zoo.export.saved_model_cli; the CLI, models.config and request bodies in
zoo.serving.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from zoo.export.calibration import softmax
from zoo.export.layout import (
    SIGNATURE_DEFAULT, SIGNATURE_EMBEDDING, SIGNATURE_LENGTH, SIGNATURE_SPEAKER,
    SIGNATURE_SPEAKER_STATS, read_export,
)
from zoo.export.saved_model_cli import (  # noqa: F401 - show_all re-exported (tests, callers)
    SERVE_TAG, compare_signature, expected_signatures, finish_show, parse_show_all, shape_text,
    show_all, start_show,
)

REQUIRED_FILES = ("saved_model.pb", "variables/variables.index", "assets/labels.txt",
                  "assets/feature_spec.json", "zoo.json", "model.keras")
TOLERANCE = 1e-4  # probabilities: graph vs Keras model, float32 on different kernels


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
    from pipelines.features.spec import FeatureSpec, SpecError

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
        inputs = ", ".join(f"{k} {d} {shape_text(s)}" for k, (d, s) in want["inputs"].items())
        checks.append(Check(f"{source} {name}", not problems,
                            "; ".join(problems) if problems else f"({inputs})"))
    return checks


def _tf1_session_call(path: Path, waveform: np.ndarray) -> np.ndarray:
    """serving_default run the way TF Serving runs it: the MetaGraph imported into a session,
    variables restored by the graph's restore op, signature tensors fed and fetched by name."""
    from pipelines.common.tfenv import quiet_tensorflow

    from tensorflow.python.util import deprecation

    tf = quiet_tensorflow()
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session, \
            deprecation.silence():
        meta = tf.compat.v1.saved_model.load(session, [SERVE_TAG], str(path))
        sig = meta.signature_def[SIGNATURE_DEFAULT]
        return session.run(sig.outputs["probabilities"].name,
                           {sig.inputs["waveform"].name: waveform})


def check(path, waveform: np.ndarray | None = None) -> list[Check]:
    """Every check of an export folder (savedmodels/<model>/<version>), in order; the calls use
    `waveform` (16 kHz mono float32) or, by default, `synthetic_clip()`."""
    path = Path(path)
    if not path.is_dir():
        return [Check("layout", False, f"{path}: not a folder")]
    show = start_show(path) if (path / "saved_model.pb").is_file() else None
    try:
        return _run_checks(path, show, waveform)
    finally:
        if show is not None and show.poll() is None:
            show.kill()
            show.communicate()


def _run_checks(path: Path, show, waveform) -> list[Check]:
    from pipelines.common.tfenv import quiet_tensorflow

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
    reliable = bool(info.get("reliability"))
    expected = expected_signatures(len(labels), info.get("signatures"),
                                   info.get("speaker_head", {}).get("embedding_dim"), reliable)
    if SIGNATURE_DEFAULT not in expected:
        expected = {**expected_signatures(len(labels), [SIGNATURE_DEFAULT], None, reliable),
                    **expected}

    loaded = None
    try:
        loaded = tf.saved_model.load(str(path))
        checks += _signature_checks("loaded", _loaded_signatures(loaded), expected)
    except Exception as err:  # noqa: BLE001 - any load failure is the finding
        checks.append(Check("loaded", False, f"tf.saved_model.load failed: {_one_line(err)}"))
    try:
        parsed = parse_show_all(finish_show(show)) if show else {}
        if SERVE_TAG not in parsed:
            checks.append(Check("saved_model_cli", False,
                                f"no MetaGraph with tag-set '{SERVE_TAG}' in show --all"))
        else:
            checks += _signature_checks("saved_model_cli", parsed[SERVE_TAG], expected)
    except RuntimeError as err:
        checks.append(Check("saved_model_cli", False, str(err)))

    wave = synthetic_clip() if waveform is None else waveform
    checks += _call_checks(path, loaded, spec, labels, wave)
    if reliable and loaded is not None and SIGNATURE_DEFAULT in loaded.signatures:
        checks += _reliability_checks(loaded, info["reliability"], wave)
    return checks


def _reliability_checks(loaded, reliability: dict, wave: np.ndarray) -> list[Check]:
    """The outputs zoo.export.reliability adds: probabilities are softmax(logits / T) with the
    temperature in zoo.json, status follows the thresholds, speech_ratio is a share, and two
    seconds of digital silence and a 220 Hz tone are no_speech."""
    from pipelines.common.tfenv import quiet_tensorflow

    tf = quiet_tensorflow()
    temperature = float(reliability["temperature"])
    silence, t = np.zeros(32000, np.float32), np.arange(32000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    try:
        outs = [loaded.signatures[SIGNATURE_DEFAULT](waveform=tf.constant(x[None, :]))
                for x in (wave, silence, tone)]
    except Exception as err:  # noqa: BLE001
        return [Check("reliability", False, f"{SIGNATURE_DEFAULT} failed: {_one_line(err)}")]
    logits, probs = outs[0]["logits"].numpy(), outs[0]["probabilities"].numpy()
    diff = float(np.abs(softmax(logits, temperature) - probs).max())
    ratio = float(outs[0]["speech_ratio"].numpy()[0])
    status = [o["status"].numpy()[0].decode() for o in outs]
    expect = "no_speech" if ratio < float(reliability["no_speech_threshold"]) else (
        "low_confidence" if probs.max() < float(reliability["confidence_threshold"]) else "ok")
    return [
        Check("calibration", diff <= TOLERANCE, f"probabilities = softmax(logits / "
              f"{temperature:.3f}): max |diff| {diff:.2e}"),
        Check("status", status[0] == expect and 0.0 <= ratio <= 1.0,
              f"speech_ratio {ratio:.2f} -> {status[0]} (expected {expect})"),
        Check("no speech", status[1:] == ["no_speech", "no_speech"],
              f"2 s of silence -> {status[1]}, a 220 Hz tone -> {status[2]}"),
    ]


def _call_checks(path: Path, loaded, spec, labels: list[str], wave: np.ndarray) -> list[Check]:
    from pipelines.common.tfenv import quiet_tensorflow

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
    if SIGNATURE_SPEAKER in loaded.signatures:
        checks += _speaker_checks(loaded, wave, len(labels))
    if "logits" in out:  # the Keras model gives the probabilities before calibration
        served = softmax(out["logits"].numpy())
    checks.append(_keras_check(path, spec, wave, served))
    return checks


def _speaker_checks(loaded, wave: np.ndarray, num_classes: int) -> list[Check]:
    """serving_by_speaker on four variants of the clip from two speakers: valid probabilities,
    and the same answers when the rows come in reverse order (only the speaker ids group
    them); where the export has the two-step form (serving_embedding, then
    serving_with_speaker_stats with each speaker's mean and standard deviation), the same
    answers from it."""
    from pipelines.common.tfenv import quiet_tensorflow

    tf = quiet_tensorflow()
    n = len(wave)
    rows = np.stack([wave, 0.5 * wave, np.roll(wave, n // 3), np.roll(wave, n // 2) * 0.8])
    rows[2:, : n // 10] = 0.0  # the second speaker's clips start later
    length = np.full(4, n, np.int32)
    speaker = np.array([b"a", b"a", b"b", b"b"])

    def call(order):
        out = loaded.signatures[SIGNATURE_SPEAKER](
            waveform=tf.constant(rows[order]), length=tf.constant(length[order]),
            speaker=tf.constant(speaker[order]))
        return out["probabilities"].numpy()

    try:
        forward, backward = call([0, 1, 2, 3]), call([3, 2, 1, 0])[::-1]
    except Exception as err:  # noqa: BLE001
        return [Check("by speaker", False, f"{SIGNATURE_SPEAKER} failed: {_one_line(err)}")]
    diff = float(np.abs(forward - backward).max())
    ok = forward.shape == (4, num_classes) and np.isfinite(forward).all() \
        and np.allclose(forward.sum(axis=1), 1, atol=1e-4) and diff <= TOLERANCE
    # TOLERANCE, not 1e-5: a transformer encoder's float32 sums depend on a row's place in the
    # batch (4e-5 seen on Whisper tiny.en); a grouping error moves probabilities by 0.1s
    checks = [Check("by speaker", ok, f"{SIGNATURE_SPEAKER} on 4 clips of 2 speakers, rows "
                                      f"reversed: max |diff| {diff:.2e}")]
    if SIGNATURE_SPEAKER_STATS not in loaded.signatures:
        return checks
    try:
        two_step = []
        for pair in ([0, 1], [2, 3]):  # one speaker at a time, as a client would
            emb = loaded.signatures[SIGNATURE_EMBEDDING](
                waveform=tf.constant(rows[pair]), length=tf.constant(length[pair]))
            emb = emb["embedding"].numpy()
            stats = np.repeat(emb.mean(axis=0, keepdims=True), 2, axis=0), \
                np.repeat(emb.std(axis=0, keepdims=True), 2, axis=0)
            out = loaded.signatures[SIGNATURE_SPEAKER_STATS](
                embedding=tf.constant(emb), embedding_mean=tf.constant(stats[0]),
                embedding_std=tf.constant(stats[1]))
            two_step.append(out["probabilities"].numpy())
    except Exception as err:  # noqa: BLE001
        return checks + [Check("by speaker, two steps", False,
                               f"{SIGNATURE_EMBEDDING} / {SIGNATURE_SPEAKER_STATS} failed: "
                               f"{_one_line(err)}")]
    diff = float(np.abs(np.concatenate(two_step) - forward).max())
    return checks + [Check("by speaker, two steps", diff <= 1e-4,
                           f"{SIGNATURE_EMBEDDING} then {SIGNATURE_SPEAKER_STATS} with each "
                           f"speaker's statistics vs {SIGNATURE_SPEAKER}: max |diff| {diff:.2e}")]


def _keras_check(path: Path, spec, wave: np.ndarray, served: np.ndarray) -> Check:
    import keras

    import zoo.models.layers  # noqa: F401 - registers the custom layers for loading
    from pipelines.features import extract as F

    if spec is None:
        return Check("keras", False, "no usable feature spec to compute features with")
    try:
        model = keras.models.load_model(path / "model.keras", safe_mode=True)
        features, _ = F.compute(wave[None, :], np.array([len(wave)], np.int32), spec)
        own = np.asarray(model(features, training=False))
    except Exception as err:  # noqa: BLE001
        return Check("keras", False, f"model.keras on pipelines.features.extract failed: "
                                     f"{_one_line(err)}")
    if own.shape != served.shape:
        return Check("keras", False, f"model.keras gives {own.shape}, the graph {served.shape}")
    diff = float(np.abs(own - served).max())
    return Check("keras", diff <= TOLERANCE, f"model.keras on pipelines.features.extract vs the graph: "
                                             f"max |diff| {diff:.2e} (tolerance {TOLERANCE})")


def _one_line(err: Exception) -> str:
    """The informative line of an exception (TensorFlow's run first a stack header)."""
    text = getattr(err, "message", None) or str(err)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Graph execution error", "Detected at",
                                                       "<stack traces", "[["))]
    return f"{type(err).__name__}: {(useful or lines or [''])[0]}"[:400]
