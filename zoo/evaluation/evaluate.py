"""Evaluate an exported model on corpus folders or on a TFRecord split.

    python -m zoo.evaluate --model savedmodels/mfcc_cnn/1 --corpus ravdess=/data/ravdess
    python -m zoo.evaluate --model savedmodels/mfcc_cnn --data tfrecords/full --split test
    python -m zoo.evaluate --model savedmodels/hubert_cnn \
        --data tfrecords/full/embeddings/hubert-layer12
    python -m zoo.evaluate --model lite/mfcc_cnn-3-int8/model.tflite --data tfrecords/full

A LiteRT model (python -m zoo.lite) runs one clip at a time through the LiteRT interpreter,
its input resized to each clip; the same table and JSON, plus runtime and quantization.

Corpus folders are read with the corpus readers and decoded directly (no build step). The model
is called through its `serving_with_length` signature, as TF Serving would. Exports of SSL
embedding heads (zoo.json input 'embedding' or 'frames') are called through serving_default on
an embedding set made with the checkpoint and layer they were trained on (pipelines.embeddings).
Prints a table and writes JSON with ua, wa, macro_f1, n, per_class, per_corpus and confusion
(rows true, columns predicted, with the label list).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.common.tfenv import quiet_tensorflow
from zoo.evaluation.clips import clips_from_corpora, clips_from_tfrecords


class EvaluateError(RuntimeError):
    pass


def speaker_ids(rows: pd.DataFrame) -> list[str]:
    """The clips' speaker ids, or a one-line error when a reader had none to give."""
    speakers = rows["speaker"].astype(str).tolist()
    unknown = sorted({s for s in speakers if s.endswith("_unknown")})
    if unknown:
        raise EvaluateError(f"--speaker-norm needs speaker ids; {', '.join(unknown)} "
                            "stands for clips without one")
    return speakers


def speaker_statistics(runner, rows: pd.DataFrame, waves: list[np.ndarray]):
    """Per-clip (mean, std) arrays from each speaker's clips (all of them, no labels used)."""
    from pipelines.records.speaker_stats import from_waveforms

    speakers = speaker_ids(rows)
    stats = from_waveforms(waves, speakers, runner.spec)
    return stats.arrays(speakers)


def check_speaker_norm(normalization: str, model) -> None:
    """Per-speaker statistics replace per-utterance ones; a model that normalises nothing has
    none to replace."""
    if normalization == "none":
        raise EvaluateError(f"{model}: --speaker-norm does not apply, the model's FeatureSpec "
                            "has normalization 'none'")


def evaluate(model_path, rows: pd.DataFrame, waves: list[np.ndarray], batch_size: int = 16,
             speaker_norm: bool = False, speaker_group: int = 0, progress: bool = False):
    """(metrics dict, predictions DataFrame) for clips with an `emotion` column.

    model_path: an export (its serving signatures) or a LiteRT model written by zoo.lite
    (DIR/model.tflite, run one clip at a time through the LiteRT interpreter).

    speaker_norm: normalise features with statistics over each speaker's clips instead of each
    clip's own (explicit opt-in; the figures are labelled with it). For exports with
    serving_by_speaker (zoo.refit_head), speaker_group k > 0 sends each speaker's clips in
    random requests of k clips instead of one request with all of them.
    """
    from zoo.inference.savedmodel import open_runner
    from zoo.export.layout import few_clips_warning
    from zoo.evaluation.metrics import full_report

    runner = open_runner(model_path, progress=progress)
    labels = runner.labels
    normalization = runner.spec.normalization
    by_speaker = speaker_norm and runner.by_speaker
    if speaker_norm and not by_speaker:
        check_speaker_norm(normalization, model_path)
    stats = speaker_statistics(runner, rows, waves) if speaker_norm and not by_speaker else None
    known = rows["emotion"].isin(labels)
    if not known.any():
        raise EvaluateError(f"none of the clips has a label the model knows ({labels})")
    unknown = sorted(set(rows.loc[~known, "emotion"]))
    keep = known.to_numpy()
    rows = rows.loc[known].reset_index(drop=True)
    waves = [w for w, k in zip(waves, keep) if k]
    if stats is not None:
        stats = (stats[0][keep], stats[1][keep])
    if by_speaker:
        speakers = speaker_ids(rows)
        warning = None if speaker_group else few_clips_warning(
            pd.Series(speakers).value_counts().to_dict(), runner.min_clips_per_speaker)
        if warning:
            print(warning, file=sys.stderr)
        probs = runner.predict_by_speaker(waves, speakers, group_size=speaker_group)
        ratios = None
    else:
        probs, ratios = runner.predict_with_speech(waves, batch_size=batch_size, stats=stats)
    pred = rows[[c for c in ("id", "path", "speaker", "corpus", "emotion", "original_label")
                 if c in rows]].copy()
    pred["label"] = [labels.index(e) for e in rows["emotion"]]
    pred["pred"] = probs.argmax(axis=1)
    pred["predicted"] = [labels[i] for i in pred["pred"]]
    for j, name in enumerate(labels):
        pred[f"p_{name}"] = probs[:, j]
    metrics = full_report(pred, labels)
    metrics["reliability"] = _reliability_report(runner.info, pred, probs, waves, by_speaker,
                                                 ratios)
    trained_share = runner.info.get("speaker_norm_training_share", 0.0)
    metrics.update(model=str(runner.path), excluded_labels=unknown,
                   speakers=int(pred["speaker"].nunique()),
                   normalization=_normalization_label(normalization, speaker_norm,
                                                      by_speaker, speaker_group),
                   speaker_norm_training_share=trained_share)
    if "quantization" in runner.info:  # a LiteRT model
        metrics.update(runtime="litert", quantization=runner.info["quantization"]["mode"],
                       source_export=runner.info.get("source_export"))
    return metrics, pred


def _reliability_report(info: dict, pred: pd.DataFrame, probs: np.ndarray, waves,
                        speaker: bool, ratios: np.ndarray | None = None) -> dict:
    """ECE (15 bins) of the served probabilities and of the model's own (before the export's
    temperature), and the status counts (docs/reliability.md); adds speech_ratio and status
    columns to `pred`: `ratios` as the export's graph returned them, else computed here with its
    parameters. Exports made before zoo.export.reliability have no temperature (before = after)
    and get the default speech-activity threshold."""
    from zoo.export.calibration import ECE_BINS, expected_calibration_error
    from zoo.export.reliability import host_speech_ratios, of_export, statuses, uncalibrated

    rel = of_export(info)
    temperature = rel.speaker_temperature if speaker else rel.temperature
    labels = pred["label"].to_numpy()
    pred["speech_ratio"] = host_speech_ratios(waves, rel.speech) if ratios is None else ratios
    pred["status"] = statuses(probs, pred["speech_ratio"].to_numpy(), rel, speaker)
    counts = pred["status"].value_counts()
    return {"calibrated": bool(info.get("reliability")), "temperature": temperature,
            "bins": ECE_BINS,
            "ece_before": expected_calibration_error(uncalibrated(probs, temperature), labels),
            "ece_after": expected_calibration_error(probs, labels),
            "status_counts": {k: int(counts.get(k, 0)) for k in ("ok", "low_confidence",
                                                                  "no_speech")},
            "no_speech_threshold": rel.no_speech_threshold,
            "confidence_threshold": (rel.speaker_confidence_threshold if speaker
                                     else rel.confidence_threshold)}


def reliability_line(rel: dict) -> str:
    counts = rel["status_counts"]
    ece = (f"ECE {rel['ece_before']:.3f} before calibration, {rel['ece_after']:.3f} after "
           f"(T = {rel['temperature']:.2f})" if rel["calibrated"] else
           f"ECE {rel['ece_after']:.3f} (export not calibrated)")
    return (f"{ece}; status: {counts['ok']} ok, {counts['low_confidence']} low_confidence, "
            f"{counts['no_speech']} no_speech")


def _normalization_label(normalization: str, speaker_norm: bool, by_speaker: bool,
                         speaker_group: int) -> str:
    """How the evaluated features were normalised, as the metrics say it."""
    if by_speaker:
        return (f"per speaker (embeddings, requests of {speaker_group} clips)" if speaker_group
                else "per speaker (embeddings)")
    if speaker_norm:
        return "per speaker"
    return "per utterance" if normalization != "none" else "none"


def export_input(model_path) -> dict:
    """zoo.json of an export ('input' is 'waveform' unless it says otherwise), or lite.json of
    a LiteRT model (checked to be a readable .tflite)."""
    from zoo.inference.lite import interpreter, is_tflite, read_info

    if is_tflite(model_path):
        path, info = read_info(model_path)
        interpreter(path=path)
        return {**info, "input": "waveform"}
    from zoo.export.savedmodel import read_export, resolve_version

    return read_export(resolve_version(Path(model_path)))


def check_embedding_set(info: dict, eset) -> None:
    """One-line EvaluateError when an embedding set does not fit an embedding head's export."""
    kind, want = info["input"], int(info["input_dim"])
    if kind == "frames" and not eset.has_frames:
        raise EvaluateError(f"the model takes frame sequences, but {eset.folder} holds pooled "
                            "vectors only (extract with --frames)")
    have = eset.input_dim(kind)
    trained = info.get("embedding", {})
    if have != want:
        raise EvaluateError(f"{eset.folder} holds {have}-dim {kind} vectors "
                            f"({eset.describe()}), but the model takes {want}-dim input "
                            f"({trained.get('encoder')} layer {trained.get('layer')})")
    for key in ("encoder", "layer", "checkpoint_sha256", "pooling"):
        if key in trained and trained[key] != eset.embedding.get(key):
            raise EvaluateError(f"{eset.folder} was made with {key} "
                                f"{eset.embedding.get(key)!r}, the model was trained on "
                                f"{trained[key]!r}; extract with the same checkpoint and layer")


def evaluate_embeddings(model_path, folder, split: str = "test", batch_size: int = 64):
    """(metrics, predictions) of an embedding-head export on one split of an embedding set."""
    from pipelines.records.embedding_set import make_dataset, open_embedding_set
    from zoo.export.savedmodel import SIGNATURE_DEFAULT, resolve_version
    from zoo.evaluation.metrics import full_report

    tf = quiet_tensorflow()
    path = resolve_version(Path(model_path))
    info = export_input(path)
    eset = open_embedding_set(folder)
    check_embedding_set(info, eset)
    labels = list(info["labels"])
    if labels != eset.labels:
        raise EvaluateError(f"the model's labels {labels} differ from the set's {eset.labels}")
    serve = tf.saved_model.load(str(path)).signatures[SIGNATURE_DEFAULT]
    rows = []
    for x, y, meta in make_dataset(folder, split, info["input"], batch_size, with_meta=True):
        probs = serve(**{info["input"]: x})["probabilities"].numpy()
        for i in range(len(probs)):
            row = {k: meta[k][i].numpy().decode() for k in meta}
            row.update(label=int(y[i]), pred=int(probs[i].argmax()))
            row.update({f"p_{name}": float(probs[i, j]) for j, name in enumerate(labels)})
            rows.append(row)
    pred = pd.DataFrame(rows)
    if pred.empty:
        raise EvaluateError("no clips to evaluate")
    manifest = eset.manifest().set_index("id")
    pred["original_label"] = manifest.loc[pred["id"], "original_label"].astype(str).values
    pred["predicted"] = [labels[i] for i in pred["pred"]]
    metrics = full_report(pred, labels)
    metrics.update(model=str(path), excluded_labels=[], speakers=int(pred["speaker"].nunique()),
                   normalization="none (SSL embeddings)", input=eset.describe(),
                   speaker_norm_training_share=0.0)
    return metrics, pred


def main(argv=None) -> int:
    quiet_tensorflow()  # before anything imports keras, so start-up noise stays hidden
    parser = argparse.ArgumentParser(
        prog="python -m zoo.evaluate",
        description="Speaker-level evaluation of an exported model: UA (mean per-class recall), "
                    "WA (accuracy), macro-F1, per class, per corpus, confusion matrix.")
    parser.add_argument("--model",
                        help="savedmodels/<model>/<version>, savedmodels/<model> (newest), a "
                             "model name or family (whisper, mfcc, logmel), or a LiteRT model "
                             "from python -m zoo.lite (DIR/model.tflite); default: the "
                             "recommended model (README)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", action="append", metavar="NAME=DIR",
                        help="corpus folder(s), read with the corpus readers (repeatable)")
    source.add_argument("--data", help="TFRecord set folder (python -m pipelines.build)")
    parser.add_argument("--split", default="test", help="split of --data (test)")
    parser.add_argument("--calm", default="neutral", choices=["neutral", "keep", "drop"],
                        help="RAVDESS calm handling for --corpus (neutral)")
    parser.add_argument("--out", help="write the metrics JSON here")
    parser.add_argument("--predictions", help="write per-clip predictions CSV here")
    parser.add_argument("--reliability-diagram", metavar="PNG",
                        help="write the reliability diagram here (default: beside --out, "
                             "<out>_reliability.png)")
    parser.add_argument("--speaker-norm", action="store_true",
                        help="normalise features with statistics over each speaker's clips "
                             "(from the same evaluation data, no labels used) instead of each "
                             "clip's own (exports of zoo.refit_head: their embeddings, "
                             "through serving_by_speaker); off unless asked, and reported as "
                             "such")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    from pipelines.corpora import CorpusError, parse_corpus_arg
    from pipelines.common.io import write_csv_atomic, write_json_atomic
    from pipelines.records.tfrecord import SchemaError
    from zoo.inference.lite import LiteError
    from zoo.evaluation.metrics import format_table

    try:
        for arg in args.corpus or []:  # usage errors before the (slow) model loading
            parse_corpus_arg(arg)
        from zoo.export.layout import resolve_model

        model, note = resolve_model(args.model)
        if note:
            print(note, file=sys.stderr)
        args.model = str(model)
        info = export_input(args.model)
        kind = info.get("input", "waveform")
        if args.speaker_norm and "quantization" in info:
            raise EvaluateError("--speaker-norm needs the SavedModel (serving_by_speaker, "
                                "serving_with_stats); a LiteRT model has serving_default only")
        if args.speaker_norm and "feature_spec" not in info:
            raise EvaluateError("--speaker-norm applies to feature models only")
        if args.speaker_norm and "speaker_head" not in info:  # before the (slow) decoding
            check_speaker_norm(info["feature_spec"].get("normalization"), args.model)
        if kind != "waveform":
            if not args.data:
                raise EvaluateError("this model takes SSL embeddings: evaluate it on an "
                                    "embedding set, --data <set> (python -m pipelines.embeddings)")
            metrics, pred = evaluate_embeddings(args.model, args.data, args.split,
                                                args.batch_size)
        elif args.corpus:
            rows, waves, skipped = clips_from_corpora(args.corpus, args.calm,
                                                      progress=not args.quiet)
            if len(skipped):
                print(f"{len(skipped)} files skipped (first: {skipped.iloc[0]['path']}: "
                      f"{skipped.iloc[0]['reason']})", file=sys.stderr)
        else:
            rows, waves = clips_from_tfrecords(args.data, args.split)
        if kind == "waveform":
            if not len(rows):
                raise EvaluateError("no clips to evaluate")
            metrics, pred = evaluate(args.model, rows, waves, args.batch_size, args.speaker_norm,
                                     progress=not args.quiet)
    except (EvaluateError, CorpusError, SchemaError, FileNotFoundError, ValueError,
            LiteError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    title = (f"{metrics['model']}: {metrics['n']} clips, {metrics['speakers']} speakers, "
             + (f"input {metrics['input']}" if "input" in metrics else
                f"features normalised {metrics['normalization']}"))
    if (args.speaker_norm and not metrics["speaker_norm_training_share"]
            and metrics["normalization"] == "per speaker"):
        print("note: this model was trained with per-utterance normalisation only; "
              "per-speaker figures are for information", file=sys.stderr)
    if not args.speaker_norm and metrics["speaker_norm_training_share"] >= 1.0:
        print("note: this model was trained on features normalised per speaker only; "
              "evaluate it with --speaker-norm (per-clip normalisation is not what it saw)",
              file=sys.stderr)
    print(format_table(metrics, title))
    if metrics["excluded_labels"]:
        print(f"left out (labels the model does not know): {metrics['excluded_labels']}")
    if "reliability" in metrics:
        print(reliability_line(metrics["reliability"]))
        diagram = args.reliability_diagram or (
            str(Path(args.out).with_suffix("")) + "_reliability.png" if args.out else None)
        if diagram:
            from zoo.export.calibration import write_reliability_diagram

            probs = pred[[f"p_{name}" for name in metrics["labels"]]].to_numpy()
            write_reliability_diagram(probs, pred["label"].to_numpy(), diagram,
                                      title="/".join(Path(metrics["model"]).parts[-2:]))
            print(f"wrote {diagram}")
    if args.out:
        write_json_atomic(args.out, metrics)
    if args.predictions:
        write_csv_atomic(args.predictions, pred)
    return 0


if __name__ == "__main__":
    sys.exit(main())
