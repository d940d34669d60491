"""Give an existing export the reliability outputs: a temperature fitted on the validation
split, a low-confidence threshold, speech_ratio and status (zoo.export.reliability,
docs/reliability.md), written as a new version beside it.

    python -m zoo.calibrate --model savedmodels/mfcc_cnn/3 --data tfrecords/full

Exports trained since zoo.export.reliability have these already (zoo.train, zoo.refit_head); this is
for the ones made before, e.g. the shipped CNNs. The new version wraps the old graph (same
weights, same answers before the temperature; its model.keras and speaker_head.keras are
copied), and adds per signature: probabilities = softmax(logits / T), logits, status and,
where audio comes in, speech_ratio. Exports with the per-speaker head get a second
temperature and threshold fitted on the same validation clips through serving_by_speaker.
The validation and test splits are those of the TFRecord set the model was trained on (the
test split only reports ECE before and after).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from pipelines.common.tfenv import quiet_tensorflow
from zoo.export.layout import (SIGNATURE_DEFAULT, SIGNATURE_EMBEDDING, SIGNATURE_LENGTH,
                        SIGNATURE_SPEAKER, SIGNATURE_SPEAKER_STATS, SIGNATURE_STATS)

KERAS_FILES = ("model.keras", "speaker_head.keras")


class CalibrateError(RuntimeError):
    """A problem the user can fix; printed as one line."""


def fit(model_path, data, progress: bool = True) -> dict:
    """{'plain': calibration, 'speaker': calibration (exports with serving_by_speaker)} fitted
    on the validation split of `data` and scored on its test split (zoo.export.reliability.calibrate)."""
    from zoo.evaluation.clips import clips_from_tfrecords
    from zoo.evaluation.evaluate import speaker_ids
    from zoo.inference.savedmodel import SavedModelRunner
    from zoo.export.reliability import calibrate

    runner = SavedModelRunner(model_path)
    splits = {}
    for split in ("validation", "test"):
        rows, waves = clips_from_tfrecords(data, split)
        known = rows["emotion"].isin(runner.labels).to_numpy()
        rows = rows.loc[known].reset_index(drop=True)
        waves = [w for w, k in zip(waves, known) if k]
        splits[split] = (rows, waves, np.array([runner.labels.index(e) for e in rows["emotion"]]))
    if not len(splits["validation"][1]):
        raise CalibrateError(f"{data}: no validation clips with labels the model knows")
    out = {}
    heads = ["plain"] + (["speaker"] if runner.by_speaker else [])
    for head in heads:
        probs = {}
        for split, (rows, waves, _) in splits.items():
            if progress:
                print(f"{head}: {split} ({len(waves)} clips)", file=sys.stderr)
            probs[split] = (runner.predict_by_speaker(waves, speaker_ids(rows))
                            if head == "speaker" else runner.predict(waves))
        out[head] = calibrate((probs["validation"], splits["validation"][2]),
                              (probs["test"], splits["test"][2]))
        out[head]["validation_clips"] = len(splits["validation"][1])
    return out


def calibrated_module(loaded, labels: list[str], reliability):
    """A tf.Module serving `loaded`'s signatures with the reliability outputs added."""
    tf = quiet_tensorflow()
    from zoo.export.reliability import outputs, speech_ratio

    sigs = loaded.signatures
    module = tf.Module()
    module.inner = loaded
    module.labels = tf.constant(labels)
    wave, length = (tf.TensorSpec([None, None], tf.float32, name="waveform"),
                    tf.TensorSpec([None], tf.int32, name="length"))

    def ratio(after, waveform, n=None):
        """speech_ratio once `after` (the old graph's answer, which carries its input checks)
        exists: a bad request keeps the old graph's one-line message."""
        with tf.control_dependencies([after]):
            n = tf.fill([tf.shape(waveform)[0]], tf.shape(waveform)[1]) if n is None else n
            return speech_ratio(waveform, n, reliability)

    def out(result, audio=None, speaker=False):
        p = result["probabilities"]
        r = None if audio is None else ratio(p, *audio)
        return outputs(module.labels, p, reliability, r, speaker)

    functions = {}
    if SIGNATURE_DEFAULT in sigs:
        functions[SIGNATURE_DEFAULT] = tf.function(
            lambda waveform: out(sigs[SIGNATURE_DEFAULT](waveform=waveform), (waveform,)),
            input_signature=[wave])
    if SIGNATURE_LENGTH in sigs:
        functions[SIGNATURE_LENGTH] = tf.function(
            lambda waveform, length: out(sigs[SIGNATURE_LENGTH](waveform=waveform,
                                                                length=length),
                                         (waveform, length)),
            input_signature=[wave, length])
    if SIGNATURE_STATS in sigs:
        stats = [tf.TensorSpec([None, None], tf.float32, name=n)
                 for n in ("feature_mean", "feature_std")]
        functions[SIGNATURE_STATS] = tf.function(
            lambda waveform, length, feature_mean, feature_std: out(
                sigs[SIGNATURE_STATS](waveform=waveform, length=length,
                                      feature_mean=feature_mean, feature_std=feature_std),
                (waveform, length)),
            input_signature=[wave, length, *stats])
    if SIGNATURE_SPEAKER in sigs:
        functions[SIGNATURE_SPEAKER] = tf.function(
            lambda waveform, length, speaker: out(
                sigs[SIGNATURE_SPEAKER](waveform=waveform, length=length, speaker=speaker),
                (waveform, length), speaker=True),
            input_signature=[wave, length, tf.TensorSpec([None], tf.string, name="speaker")])
    if SIGNATURE_EMBEDDING in sigs:
        def embed(waveform, length):
            emb = sigs[SIGNATURE_EMBEDDING](waveform=waveform, length=length)["embedding"]
            return {"embedding": tf.identity(emb, name="embedding"),
                    "speech_ratio": tf.identity(ratio(emb, waveform, length),
                                                name="speech_ratio")}

        functions[SIGNATURE_EMBEDDING] = tf.function(embed, input_signature=[wave, length])
    if SIGNATURE_SPEAKER_STATS in sigs:
        emb = [tf.TensorSpec([None, None], tf.float32, name=n)
               for n in ("embedding", "embedding_mean", "embedding_std")]
        functions[SIGNATURE_SPEAKER_STATS] = tf.function(
            lambda embedding, embedding_mean, embedding_std: out(
                sigs[SIGNATURE_SPEAKER_STATS](embedding=embedding, embedding_mean=embedding_mean,
                                              embedding_std=embedding_std), speaker=True),
            input_signature=emb)
    for name, fn in functions.items():
        setattr(module, f"_{name}", fn)
    return module, {name: fn.get_concrete_function() for name, fn in functions.items()}


def write_calibrated(source, calibration: dict, base=None, version: int | None = None,
                     command: str = "") -> Path:
    """A new version of `source`'s model with the reliability outputs; returns its folder."""
    tf = quiet_tensorflow()
    from zoo.export.savedmodel import save_signatures, write_version
    from zoo.export.layout import read_export, resolve_version
    from zoo.evaluation.model_card import calibration_lines
    from zoo.export.reliability import reliability_from

    source = resolve_version(Path(source))
    info = read_export(source)
    if info.get("reliability"):
        raise CalibrateError(f"{source}: already has reliability outputs (zoo.json "
                             "'reliability'); calibrate the version it was made from")
    if info.get("input", "waveform") != "waveform":
        raise CalibrateError(f"{source}: takes {info['input']}, not audio; retrain it with "
                             "python -m zoo.train to get the reliability outputs")
    rel = reliability_from({"calibration": calibration})
    base = Path(base) if base else source.parent.parent
    name = info["name"]

    def write(staging: Path, out: Path) -> dict:
        loaded = tf.saved_model.load(str(source))
        module, signatures = calibrated_module(loaded, list(info["labels"]), rel)
        save_signatures(module, out, signatures)
        for asset in ("labels.txt", "feature_spec.json"):  # as the source had them
            if (source / "assets" / asset).is_file() and not (out / "assets" / asset).is_file():
                (out / "assets").mkdir(exist_ok=True)
                shutil.copy2(source / "assets" / asset, out / "assets" / asset)
        for keras_file in KERAS_FILES:
            if (source / keras_file).is_file():
                shutil.copy2(source / keras_file, out / keras_file)
        return {"signatures": list(signatures), "reliability": rel.to_dict()}

    meta = {k: v for k, v in info.items() if k not in ("name", "version", "signatures")}
    meta["metrics"] = {**info.get("metrics", {}), "calibration": calibration}
    meta["calibrated_from"] = str(source)
    old_card = (source / "model_card.md").read_text() if (source / "model_card.md").is_file() \
        else f"# {name}\n"
    card = (old_card.rstrip() + "\n\n" + "\n".join(calibration_lines(meta["metrics"]))
            + f"\nThis version is {source} with the reliability outputs added (same weights; "
            f"temperatures and thresholds fitted on the validation split by "
            f"`{command or 'python -m zoo.calibrate'}`).\n")
    return write_version(base, name, write, card, meta, version)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zoo.calibrate",
        description="Add calibrated probabilities, logits, speech_ratio and status "
                    "(docs/reliability.md) to an export made before they existed: fits the "
                    "temperature and low-confidence threshold on the validation split of the "
                    "TFRecord set it was trained on and writes the next version.")
    parser.add_argument("--model", required=True,
                        help="savedmodels/<model>/<version> (or savedmodels/<model>: newest)")
    parser.add_argument("--data", help="its TFRecord set (default: zoo.json 'data')")
    parser.add_argument("--export", help="base folder of the new version (default: the "
                                         "model's own savedmodels folder)")
    parser.add_argument("--version", type=int, help="version number (default: next free)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    quiet_tensorflow()
    from pipelines.records.tfrecord import SchemaError
    from zoo.export.layout import read_export, resolve_version

    try:
        source = resolve_version(Path(args.model))
        data = args.data or read_export(source).get("data")
        if not data or not Path(data).is_dir():
            raise CalibrateError(f"{source}: its TFRecord set {data!r} is not here; pass --data")
        calibration = fit(source, data, progress=not args.quiet)
        command = "python -m zoo.calibrate " + " ".join(argv if argv is not None
                                                        else sys.argv[1:])
        out = write_calibrated(source, calibration, args.export, args.version, command)
    except (CalibrateError, FileNotFoundError, FileExistsError, SchemaError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for head, c in calibration.items():
        print(f"{head}: T = {c['temperature']:.2f}, ECE validation {c['ece_before']:.3f} -> "
              f"{c['ece_after']:.3f}, test {c['test_ece_before']:.3f} -> "
              f"{c['test_ece_after']:.3f}, low_confidence under {c['confidence_threshold']:.2f}")
    print(f"wrote {out}")
    print(json.dumps({"export": str(out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
