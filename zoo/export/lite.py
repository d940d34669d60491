"""LiteRT (TFLite) export of an export's serving_default: waveform in, features on the graph.

    python -m zoo.lite --model savedmodels/mfcc_cnn/3 --out lite/mfcc_cnn-3
    python -m zoo.lite --model savedmodels/mfcc_cnn/3 --out lite/mfcc_cnn-3-int8 \
        --quantize int8 --data tfrecords/full

writes DIR/model.tflite and DIR/lite.json (labels, FeatureSpec, source export, quantisation,
size, the check against the SavedModel). The model's `serving_default` takes `waveform` float32
[1, samples] at 16 kHz with any number of samples (declared [1, -1]: resize the input to
[1, len(clip)] before each clip, as zoo.inference.lite does) and returns `probabilities` [1, classes]
and `label` [1].

The export's own graph does not convert: TFLite has no kernel for slicing the complex FFT that
tf.signal.dct takes (MFCC), it cannot lower a new-axis slice (x[:, :, None], as in the models'
mask layers) of a tensor with more than one unknown dimension, and the batch size is unknown
there; LiteRT's interpreter has no TF Select (Flex) kernels to fall back on. So the conversion
traces the same computation again for one clip ([1, samples]): the export's FeatureSpec through
pipelines.features.extract (the DCT-II as a product with its orthonormal matrix; for an n_fft that is
not a power of two the power spectrum as a DFT matrix product, since TFLite's RFFT2D takes powers
of two only) and the export's model.keras (the weights the SavedModel's signatures read), with
the batch size fixed at 1. Before anything is written, the converted model runs in LiteRT on
check clips (synthetic ones of 0.02-7.3 s, and with --data 20 validation clips) and its
probabilities are compared with the SavedModel's serving_default: without quantisation a
difference above 1e-4 (float16: 0.25) refuses the conversion.

Quantisation (zoo.export.lite_quantize): float16 stores weights and constants as float16 (computed in
float32); int8 stores the network's weights as int8 (--int8 weights, the default) or also runs
its activations in int8, calibrated on clips of the training split of --data (--int8 full). The
feature front end stays float32 in every mode.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import numpy as np

from pipelines.common.tfenv import quiet_tensorflow
from zoo.export.lite_quantize import (FEATURES_SCOPE, INT8_MODES, conversion_error,
                               tflite_bytes)
from zoo.inference.lite import INFO_FILE, MODEL_FILE, SIGNATURE, LiteError, interpreter

tf = quiet_tensorflow()

QUANTIZE = ("none", "float16", "int8")
CALIBRATION_CLIPS = 300
CHECK_SECONDS = (0.02, 0.5, 1.0, 3.0, 7.3)
CHECK_REAL = 20  # validation clips added to the check when --data is given
# max |probability difference| from the SavedModel on the check clips above which the conversion
# is refused: float32 must agree to rounding; float16 weights move the shipped models' outputs by
# up to 0.1 (bench/results/lite.json), a broken conversion by far more
TOLERANCE = {"none": 1e-4, "float16": 0.25}


# ---------------------------------------------------------------- the TFLite formulation

def dct_matrix(n: int) -> np.ndarray:
    """[n, n] orthonormal DCT-II: x @ M == tf.signal.dct(x, type=2, norm='ortho')."""
    i, k = np.arange(n)[:, None], np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[:, 0] /= np.sqrt(2.0)
    return m.astype(np.float32)


def dft_matrices(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """[n_fft, n_fft // 2 + 1] cosine and sine matrices: the real and (negated) imaginary part
    of the real-input DFT as matrix products."""
    angle = 2 * np.pi * np.outer(np.arange(n_fft), np.arange(n_fft // 2 + 1)) / n_fft
    return np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)


@contextlib.contextmanager
def lite_formulation(spec):
    """Within the block, pipelines.features.extract computes the DCT-II (and for an n_fft that is not
    a power of two the power spectrum) with ops TFLite has kernels for; same values to float
    rounding. Yields the list of substitutions made (recorded in lite.json)."""
    from pipelines.features import extract as F

    saved = F.dct_ortho, F.power_spectrogram
    made = []

    def dct(x):
        return tf.matmul(x, tf.constant(dct_matrix(int(x.shape[-1]))))

    def power(framed, spec):
        cos, sin = dft_matrices(spec.n_fft)
        windowed = framed * tf.constant(F.analysis_window(spec.win_length, spec.n_fft))
        return tf.matmul(windowed, tf.constant(cos)) ** 2 + tf.matmul(windowed,
                                                                      tf.constant(sin)) ** 2

    if spec.kind == "mfcc":
        F.dct_ortho = dct
        made.append("DCT-II as a product with its orthonormal matrix")
    if spec.n_fft & (spec.n_fft - 1):
        F.power_spectrogram = power
        made.append(f"power spectrum as a {spec.n_fft}-point DFT matrix product "
                    "(TFLite's RFFT2D takes powers of two only)")
    try:
        yield made
    finally:
        F.dct_ortho, F.power_spectrogram = saved


class LiteModule(tf.Module):
    """serving_default for one clip: waveform [1, samples] -> probabilities, label.

    The computation of zoo.export.savedmodel.ServingModule's serving_default (clips shorter than one FFT
    window zero-padded, pipelines.features.extract.compute, the model), with the batch size fixed at 1
    in every shape so that TFLite can lower the new-axis slices."""

    def __init__(self, model, spec, labels: list[str], temperature: float = 1.0):
        super().__init__()
        from zoo.export.savedmodel import _Untracked

        self._keras = _Untracked(model)
        self.spec = spec
        self.labels = tf.constant(labels)
        self.temperature = float(temperature)  # the export's calibration (zoo.export.reliability)

    @tf.function(input_signature=[tf.TensorSpec([1, None], tf.float32, name="waveform")])
    def serve(self, waveform):
        from pipelines.features import extract as F

        with tf.name_scope(FEATURES_SCOPE):
            samples = tf.shape(waveform)[1]
            short = tf.maximum(self.spec.n_fft - samples, 0)
            waveform = tf.reshape(tf.pad(waveform, [[0, 0], [0, short]]), [1, -1])
            features, _ = F.compute(waveform, tf.reshape(samples, [1]), self.spec)
            features = tf.reshape(features, [1, -1, self.spec.channels])
        probabilities = self._keras.value(features, training=False)
        if self.temperature != 1.0:  # as the SavedModel: softmax(log p / T)
            from zoo.export.reliability import calibrate_graph

            _, probabilities = calibrate_graph(probabilities, self.temperature)
        label = tf.gather(self.labels, tf.argmax(probabilities, axis=-1))
        return {"probabilities": probabilities, "label": label}


# ---------------------------------------------------------------- the source export

def load_source(model_path):
    """(version folder, zoo.json, loaded SavedModel) of a waveform-input feature export, or a
    one-line LiteError."""
    from zoo.export.layout import read_export, resolve_version

    try:
        path = resolve_version(Path(model_path))
        info = read_export(path)
    except (FileNotFoundError, ValueError) as err:
        raise LiteError(f"not an export: {err}") from None
    if "feature_spec" not in info or info.get("input", "waveform") != "waveform":
        raise LiteError(f"{path}: takes {info.get('input', 'no waveform')} input; zoo.lite "
                        "converts waveform-input exports with a FeatureSpec")
    if not (path / "model.keras").is_file():
        raise LiteError(f"{path}: no model.keras beside the SavedModel")
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as err:  # noqa: BLE001 - any load failure is one line
        raise LiteError(f"{path}: the SavedModel does not load "
                        f"({' '.join(str(err).split())[:160]})") from None
    if SIGNATURE not in loaded.signatures:
        raise LiteError(f"{path}: missing signature {SIGNATURE} "
                        f"(it has {', '.join(loaded.signatures) or 'none'})")
    return path, info, loaded


def load_keras(path: Path):
    import keras

    import zoo.models.layers  # noqa: F401 - the zoo's custom layers
    try:
        return keras.models.load_model(path / "model.keras", safe_mode=True)
    except Exception as err:  # noqa: BLE001
        raise LiteError(f"{path}/model.keras does not load "
                        f"({' '.join(str(err).split())[:160]})") from None


# ---------------------------------------------------------------- calibration and checks

def split_clips(folder, split: str, n: int, seed: int = 0,
                progress: bool = True) -> list[np.ndarray]:
    """n clips of one split of a TFRecord set, drawn at random (seeded), as stored (16 kHz)."""
    from tqdm import tqdm

    from pipelines.records.tfrecord import open_set, parse_example, to_float

    tfset = open_set(folder)
    manifest = tfset.manifest()
    ids = manifest.loc[manifest["split"] == split, "id"].to_numpy()
    if not len(ids):
        return []
    chosen = np.random.default_rng(seed).choice(ids, min(n, len(ids)), replace=False)
    wanted, found = set(chosen), {}
    records = tf.data.TFRecordDataset(tfset.files(split)).map(parse_example)
    for ex in tqdm(records, total=len(ids), desc=f"{split} clips", unit="clip",
                   disable=not progress, leave=False):
        clip_id = ex["id"].numpy().decode()
        if clip_id in wanted:
            found[clip_id] = to_float(ex["pcm"][:ex["length"]]).numpy()
            if len(found) == len(wanted):
                break
    return [found[i] for i in chosen if i in found]


def calibration_clips(folder, n: int = CALIBRATION_CLIPS, seed: int = 0,
                      progress: bool = True) -> list[np.ndarray]:
    """The int8 representative set: n training clips (seeded)."""
    clips = split_clips(folder, "train", n, seed, progress)
    if not clips:
        raise LiteError(f"{folder}: no training clips to calibrate on")
    return clips


def check_clips() -> list[np.ndarray]:
    """Speech-like synthetic clips of CHECK_SECONDS (one shorter than an FFT window); with
    --data, CHECK_REAL validation clips are added (int8 is calibrated on speech)."""
    from zoo.export.check import synthetic_clip

    return [synthetic_clip(max(s, 0.5), seed=i)[:int(s * 16000)]
            for i, s in enumerate(CHECK_SECONDS)]


def compare(content: bytes, signature, clips) -> dict:
    """LiteRT against the SavedModel's serving_default on the same clips."""
    from pipelines.common.tfenv import _quiet_stderr

    runner = interpreter(content=content).get_signature_runner(SIGNATURE)
    diffs, same = [], 0
    for clip in clips:
        with _quiet_stderr():  # the first run creates the XNNPACK delegate, which says so
            lite = runner(waveform=clip[None].astype(np.float32))["probabilities"][0]
        ref = signature(waveform=tf.constant(clip[None], tf.float32))["probabilities"][0].numpy()
        diffs.append(float(np.abs(lite - ref).max()))
        same += int(lite.argmax() == ref.argmax())
    return {"clips": len(clips), "max_abs_diff": max(diffs), "labels_agree": same}


# ---------------------------------------------------------------- conversion

def convert(model_path, out, quantize: str = "none", data=None, int8: str = "weights",
            calibration: int = CALIBRATION_CLIPS, seed: int = 0, progress: bool = True) -> dict:
    """Write out/model.tflite and out/lite.json; returns the lite.json contents.

    int8 'weights': dynamic-range (int8 weights, no calibration); 'full': int8 activations
    too, calibrated on `calibration` training clips of `data` (zoo.export.lite_quantize)."""
    from pipelines.common.io import atomic_path, write_json_atomic
    from pipelines.features.spec import FeatureSpec
    from zoo.export.savedmodel import save_signatures

    if quantize not in QUANTIZE:
        raise LiteError(f"--quantize must be one of {', '.join(QUANTIZE)}, not {quantize!r}")
    if int8 not in INT8_MODES:
        raise LiteError(f"--int8 must be one of {', '.join(INT8_MODES)}, not {int8!r}")
    full = quantize == "int8" and int8 == "full"
    if full and calibration < 1:
        raise LiteError(f"--calibration must be at least 1, not {calibration}")
    if full and not data:
        raise LiteError("--quantize int8 --int8 full needs --data tfrecords/NAME (clips of its "
                        "training split calibrate the activations)")
    path, info, loaded = load_source(model_path)
    spec = FeatureSpec.from_dict(info["feature_spec"])
    clips = calibration_clips(data, calibration, seed, progress) if full else None
    checks = check_clips() + (split_clips(data, "validation", CHECK_REAL, seed, False)
                              if data else [])
    reliability = info.get("reliability") or {}
    module = LiteModule(load_keras(path), spec, list(info["labels"]),
                        reliability.get("temperature", 1.0))
    with tempfile.TemporaryDirectory(prefix="zoo-lite-") as tmp, lite_formulation(spec) as made:
        signatures = {SIGNATURE: module.serve.get_concrete_function()}
        save_signatures(module, Path(tmp), signatures)
        try:
            content = tflite_bytes(Path(tmp), quantize, int8, clips, progress)
        except Exception as err:  # noqa: BLE001 - the converter raises several kinds
            raise conversion_error(path, err) from None
    check = compare(content, loaded.signatures[SIGNATURE], checks)
    limit = TOLERANCE.get(quantize)
    check["tolerance"] = limit
    if limit is not None and check["max_abs_diff"] > limit:
        raise LiteError(f"{path}: the converted model differs from the SavedModel by "
                        f"{check['max_abs_diff']:.2g} in probability (> {limit:g}); not written")
    out = Path(out)
    with atomic_path(out / MODEL_FILE) as tmp_file:
        tmp_file.write_bytes(content)
    record = {
        "format": "tflite",
        "signature": SIGNATURE,
        "input": {"name": "waveform", "dtype": "float32", "shape": [1, -1],
                  "sample_rate": spec.sample_rate,
                  "note": "resize to [1, samples] for each clip (resize_tensor_input)"},
        "outputs": {"probabilities": ["float32", [1, len(info["labels"])]],
                    "label": ["string", [1]]},
        "labels": list(info["labels"]),
        "feature_spec": spec.to_dict(),
        # temperature applied inside; speech_ratio and status are computed beside the
        # interpreter by zoo.predict / zoo.evaluate with these parameters
        **({"reliability": reliability} if reliability else {}),
        "source_export": str(path),
        "source": {k: info.get(k) for k in ("name", "version")},
        "quantization": quantize_record(quantize, int8, data, clips, calibration, seed),
        "formulation": made,
        "size_bytes": len(content),
        "source_size_bytes": source_size(path),
        "check": check,
        "versions": {"tensorflow": tf.__version__, "ai_edge_litert": litert_version()},
    }
    write_json_atomic(out / INFO_FILE, record)
    return record


def quantize_record(quantize: str, int8: str, data, clips, calibration: int,
                    seed: int) -> dict:
    if quantize != "int8":
        what = {"none": "float32", "float16": "float16 weights and constants, float32 compute"}
        return {"mode": quantize, "what": what[quantize]}
    if int8 == "weights":
        return {"mode": "int8", "int8": int8,
                "what": "dynamic range: network weights int8 (hybrid kernels), activations and "
                        "the feature front end float32"}
    return {"mode": "int8", "int8": int8,
            "what": "full integer: network weights and activations int8, the feature front "
                    "end float32",
            "calibration": {"data": str(data), "split": "train", "clips": len(clips),
                            "asked": calibration, "seed": seed}}


def source_size(path: Path) -> int:
    """Bytes of the SavedModel the server loads (saved_model.pb + variables/)."""
    files = [path / "saved_model.pb", *(path / "variables").glob("*")]
    return sum(f.stat().st_size for f in files if f.is_file())


def litert_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-edge-litert")
    except PackageNotFoundError:
        return "not installed"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zoo.lite",
        description="Convert an export's serving_default (waveform in, features on the graph) "
                    "to a LiteRT model: DIR/model.tflite and DIR/lite.json. The input "
                    "'waveform' is float32 [1, samples] at 16 kHz, any length: resize it to "
                    "[1, len(clip)] before each clip (interpreter.resize_tensor_input, or the "
                    "signature runner, which resizes on every call).")
    parser.add_argument("--model", required=True,
                        help="savedmodels/<model>/<version> (or savedmodels/<model>: newest)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--quantize", default="none", choices=QUANTIZE,
                        help="none (float32), float16 (weights and constants), int8 (see "
                             "--int8); the feature front end stays float32")
    parser.add_argument("--int8", default="weights", choices=INT8_MODES,
                        help="weights: dynamic range, int8 weights and float activations (the "
                             "default; no calibration); full: int8 activations too, calibrated "
                             "on --data (less accurate on the shipped CNNs, docs/serving.md)")
    parser.add_argument("--data", help="TFRecord set: its training split calibrates --int8 "
                                       "full, and validation clips join the check")
    parser.add_argument("--calibration", type=int, default=CALIBRATION_CLIPS,
                        help=f"calibration clips for --int8 full ({CALIBRATION_CLIPS})")
    parser.add_argument("--seed", type=int, default=0, help="which calibration clips (0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    from pipelines.records.tfrecord import SchemaError

    try:
        record = convert(args.model, args.out, args.quantize, args.data, args.int8,
                         args.calibration, args.seed, progress=not args.quiet)
    except (LiteError, SchemaError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # --out not writable, a file in the way
        print(f"error: {args.out}: cannot write ({err.strerror or err})", file=sys.stderr)
        return 2
    check = record["check"]
    print(f"{Path(args.out) / MODEL_FILE}: {record['size_bytes'] / 1e6:.2f} MB "
          f"(SavedModel {record['source_size_bytes'] / 1e6:.2f} MB), {args.quantize}; "
          f"against the SavedModel on {check['clips']} check clips: max |p diff| "
          f"{check['max_abs_diff']:.2g}, same label {check['labels_agree']}/{check['clips']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
