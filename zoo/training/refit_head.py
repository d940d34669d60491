"""Re-fit an exported model's classifier on its frozen embeddings, plain and per speaker.

    python -m zoo.refit_head --model savedmodels/mfcc_cnn/2 --data tfrecords/full

The trained network up to its head (the input of the layer named `dense`: the pooled
embedding of the CNN and CRNN families) is kept as it is. Every clip of the TFRecord set is
embedded once, and two linear softmax classifiers (a Normalization layer and a Dense layer,
L2-regularised, class-balanced) are fitted on the training clips' embeddings:

- plain: on the embeddings as they are. It replaces the trained head (dense, dropout,
  classifier) in `serving_default`; end-to-end training leaves that head fitted to the
  training speakers, and a strongly regularised linear read-out generalises better to new ones.
- per speaker: on embeddings standardised with the mean and standard deviation over all clips
  of the same speaker (no labels used). What separates emotions in acted speech is how a clip
  differs from the speaker's other clips; this removes voice, level and channel at the level
  where the network has already summarised the clip, which works much better than normalising
  the input features per speaker (README, Results).

Each L2 strength of --l2 is tried and the one with the best validation UA (held-out speakers)
is kept, for each head separately; the test split is only reported. The result is a new export
version (the source model's name, next free version under --export) with the signatures of the
source plus

    serving_by_speaker(waveform, length, speaker string [batch]): each clip's embedding is
        standardised with the statistics over the clips of the same request that carry the same
        speaker id, then classified by the per-speaker head.

So a request must hold all the clips of a speaker that the statistics should come from (at
least --min-clips, 20 by default: measured, 10 clips per speaker cost several points of UA and
5 clips more). `zoo.evaluate --speaker-norm` sends one request per speaker.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from pipelines.common.tfenv import quiet_tensorflow
from zoo.training.embedding_heads import (  # noqa: F401 - re-exported: defined here first
    DEFAULT_L2, EMBEDDING_INPUT_OF, EPS, MIN_CLIPS, RefitError, embed_split, embedding_layer,
    embedding_model, export_refit, fit_head, linear_head, plain_model, predictions,
    speaker_standardize_np, trained_speaker_head,
)


# ---------------------------------------------------------------- source and data

def load_source(path):
    """(version folder, zoo.json, feature-input Keras model, FeatureSpec) of an export."""
    import keras

    import zoo.models.layers  # noqa: F401 - registers the custom layers for deserialisation
    from pipelines.features.spec import FeatureSpec
    from zoo.export.layout import read_export, resolve_version

    path = resolve_version(Path(path))
    info = read_export(path)
    if "feature_spec" not in info or not (path / "model.keras").is_file():
        raise RefitError(f"{path}: not a feature model export with model.keras (SSL heads and "
                         "fine-tuned encoders are not supported)")
    if "speaker_head" in info:
        raise RefitError(f"{path}: already has a re-fitted head (its source is "
                         f"{info['speaker_head'].get('source')})")
    model = keras.saving.load_model(path / "model.keras", safe_mode=True)
    try:
        model.get_layer(embedding_layer(model))
    except ValueError:
        raise RefitError(f"{path}: the model has no layer named {EMBEDDING_INPUT_OF!r} (the "
                         "zoo's classifier head) to take the embedding from") from None
    return path, info, model, FeatureSpec.from_dict(info["feature_spec"])


def check_held_out(info: dict, tfset) -> None:
    """Refuse a set whose validation or test speakers the source network trained on (its
    zoo.json names the set it was trained on); the figures would not be speaker-independent."""
    from pipelines.records.tfrecord import open_set

    source_data = info.get("data")
    if not source_data or not (Path(source_data) / "schema.json").is_file():
        print(f"note: cannot check that the source network never saw this set's held-out "
              f"speakers (its training set {source_data!r} is not here)", file=sys.stderr)
        return
    trained = set(open_set(source_data).schema["splits"]["train"]["speakers"])
    splits = tfset.schema["splits"]
    held = set(splits["validation"]["speakers"]) | set(splits["test"]["speakers"])
    seen = sorted(trained & held)
    if seen:
        raise RefitError(f"{tfset.folder}: held-out speaker(s) {', '.join(seen[:5])} were in "
                         f"the training split of {source_data}, which the source network was "
                         "trained on; use that set (or one with the same speaker split)")


# ---------------------------------------------------------------- card

def card_text(name: str, source: Path, info: dict, args, spec, tfset, metrics: dict,
              selection: dict, seconds: float) -> str:
    from zoo.evaluation.model_card import TWO_STEP_NOTE, embedding_results

    def tried(key):
        return ", ".join(f"{t['l2']:g}: {100 * t['validation_ua']:.1f}%"
                         for t in selection[key]["tried"])

    lines = [
        f"# {name}",
        "",
        f"The network of `{source}` (its card: how it was trained) with both classifier heads "
        f"re-fitted on its frozen embeddings by `python -m zoo.refit_head --model {source} "
        f"--data {args.data}` ({seconds / 60:.1f} min on CPU). Embedding: the input of the "
        f"source's `{selection['embedding_input_of']}` layer, {selection['embedding_dim']} "
        "numbers per clip.",
        "",
        "## Input and output",
        "",
        "`serving_default`: `waveform` float32 [batch, samples], mono, 16 kHz, full scale 1.0; "
        "`serving_with_length` adds `length` int32 [batch]. One clip at a time, no speaker "
        "information: the plain head.",
        "`serving_by_speaker`: `waveform`, `length` and `speaker` string [batch]. Each clip's "
        "embedding is standardised with the statistics of the clips in the same request that "
        "have the same speaker id, then classified by the per-speaker head. **Send all of a "
        f"speaker's clips in one request, at least {args.min_clips}**; statistics from a few "
        "clips are poor. " + TWO_STEP_NOTE,
        "`serving_with_stats` is kept for a uniform interface (with normalisation "
        f"'{spec.normalization}' its statistics are not used).",
        "All but `serving_embedding` return `probabilities` float32 [batch, classes] "
        "(calibrated), `label` string [batch], `logits` and `status`, and those that take "
        "audio `speech_ratio` (Reliability, below; docs/serving.md). "
        f"Labels (index order): {', '.join(info['labels'])}.",
        "",
        f"Features computed inside the graph: {spec.kind}, {spec.channels} channels, "
        + (f"trim {spec.trim_db} dB" if spec.trim_db else "untrimmed")
        + f", DC removal {spec.remove_dc}, normalisation {spec.normalization} "
        "(assets/feature_spec.json).",
        "",
        "## Heads",
        "",
        "Normalization + Dense softmax, class-balanced, L2 strength chosen by validation UA "
        "(held-out speakers; the test split played no part):",
        "",
        f"- plain: L2 {selection['plain']['l2']:g} (tried {tried('plain')})",
        f"- per speaker: L2 {selection['speaker']['l2']:g} (tried {tried('speaker')})",
        "",
    ]
    return "\n".join(lines + embedding_results(tfset, metrics) + source_card(source))


def source_card(source: Path) -> list[str]:
    """The source export's card, its headings one level down: the new card stands alone when
    the source version is not kept (e.g. a run's export promoted by its re-fitted version)."""
    card = source / "model_card.md"
    if not card.is_file():
        return []
    body = [("#" + line) if line.startswith("#") else line
            for line in card.read_text().splitlines()]
    return ["", f"## The source's card ({source})", ""] + body[1:] + [""]


def refit(args) -> dict:
    """Embed, fit both heads, measure, export; returns the metrics (also in zoo.json)."""
    quiet_tensorflow()
    from zoo.evaluation.metrics import format_table, full_report
    from zoo.evaluation.model_card import SPEAKER_EMBEDDING_ROWS
    from zoo.export.reliability import calibrate, reliability_from
    from zoo.training.report import headline
    from zoo.training.setup import check_data
    from pipelines.records.tfrecord import open_set

    started = time.perf_counter()
    source, info, model, spec = load_source(args.model)
    tfset = open_set(args.data)
    labels = list(info["labels"])
    if list(tfset.labels) != labels:
        raise RefitError(f"{args.data}: labels {tfset.labels} differ from the model's {labels}")
    check_data(tfset, ("train", "validation"))
    check_held_out(info, tfset)
    trunk = embedding_model(model)
    splits = [s for s in ("train", "validation", "test") if tfset.examples(s)]
    data = {s: embed_split(trunk, args.data, s, spec, args.batch_size, not args.quiet)
            for s in splits}
    plain_x = {s: data[s][0] for s in splits}
    speaker_x = {s: speaker_standardize_np(data[s][0], data[s][2]["speaker"]) for s in splits}
    y = {s: data[s][1] for s in splits}

    plain, plain_l2, plain_tried = fit_head(
        (plain_x["train"], y["train"]), (plain_x["validation"], y["validation"]), labels,
        args.l2, seed=args.seed)
    speaker, speaker_l2, speaker_tried = fit_head(
        (speaker_x["train"], y["train"]), (speaker_x["validation"], y["validation"]), labels,
        args.l2, prefix="speaker_", seed=args.seed)

    manifest = tfset.manifest().set_index("id")
    metrics = {"labels": labels, "source": str(source), "data": str(args.data)}
    probabilities = {}
    for s in splits:
        if s == "train":
            continue
        for key, head, x in (("plain", plain, plain_x), ("speaker", speaker, speaker_x)):
            probs = np.asarray(head(x[s], training=False))
            probabilities[key, s] = probs
            report = full_report(predictions(probs, y[s], data[s][2], s, labels, manifest),
                                 labels)
            if key == "plain":
                metrics[s] = report
                print(format_table(report, f"{s} ({report['n']} clips), plain head"))
            else:
                metrics.setdefault("speaker_norm", {})[s] = report
                print(format_table(report, f"{s}, {SPEAKER_EMBEDDING_ROWS}"))
    metrics["calibration"] = {
        key: calibrate((probabilities[key, "validation"], y["validation"]),
                       (probabilities[key, "test"], y["test"]) if "test" in y else None)
        for key in ("plain", "speaker")}
    selection = {"embedding_dim": int(plain_x["train"].shape[1]),
                 "embedding_input_of": embedding_layer(model),
                 "plain": {"l2": plain_l2, "tried": plain_tried},
                 "speaker": {"l2": speaker_l2, "tried": speaker_tried}}
    seconds = time.perf_counter() - started
    name = info["name"]
    card = card_text(name, source, info, args, spec, tfset, metrics, selection, seconds)
    meta = {"speaker_head": {"source": str(source), "min_clips_per_speaker": args.min_clips,
                             **selection},
            "metrics": headline(metrics), "data": str(args.data),
            "speaker_split": tfset.schema["split_method"],
            **{k: info[k] for k in ("encoder",) if k in info}}  # what a Whisper model runs
    out = export_refit(plain_model(model, plain), trunk, speaker, spec, labels, args.export,
                       name, card, meta, args.version, reliability_from(metrics))
    metrics["export"] = str(out)
    print(f"exported {out}")
    return metrics


def _l2_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}")
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("need one or more L2 strengths >= 0")
    return values


def main(argv=None) -> int:
    quiet_tensorflow()
    parser = argparse.ArgumentParser(
        prog="python -m zoo.refit_head",
        description="Re-fit an exported CNN/CRNN's classifier on its frozen embeddings (plain, "
                    "and standardised per speaker for serving_by_speaker); exports a new "
                    "version.",
        epilog="Example: python -m zoo.refit_head --model savedmodels/mfcc_cnn/2 "
               "--data tfrecords/full  (-> savedmodels/mfcc_cnn/<next version>)")
    parser.add_argument("--model", required=True,
                        help="source export: savedmodels/<model>/<version> (or the model folder "
                             "for its newest version)")
    parser.add_argument("--data", required=True,
                        help="TFRecord set the source was trained on (its training split fits "
                             "the heads, validation picks L2, test is reported)")
    parser.add_argument("--export", default="savedmodels",
                        help="base folder of the new version (savedmodels)")
    parser.add_argument("--version", type=int, help="version number (default: next free)")
    parser.add_argument("--l2", type=_l2_list, default=list(DEFAULT_L2),
                        help="L2 strengths to try, comma-separated ("
                             + ",".join(f"{v:g}" for v in DEFAULT_L2) + ")")
    parser.add_argument("--min-clips", type=int, default=MIN_CLIPS,
                        help="clips per speaker the card asks serving_by_speaker requests to "
                             "hold (%(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="embedding batch size (32)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    from pipelines.records.tfrecord import SchemaError
    from zoo.training.setup import TrainError

    try:
        refit(args)
    except (RefitError, TrainError, SchemaError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
