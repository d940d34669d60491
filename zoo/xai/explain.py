"""Explain a trained model's predictions, check the explanations, compare feature types.

    python -m zoo.explain --model savedmodels/mfcc_cnn/1 --data tfrecords/full --split test \\
        --method gradcam --out reports/xai/mfcc_cnn [--layer conv_block_4] [--per-class 2] \\
        [--tensorboard runs/xai] [--sanity]
    python -m zoo.explain sanity --model M (--data D | --corpus NAME=DIR) --out DIR \\
        [--methods gradcam,saliency,magnitude]
    python -m zoo.explain compare --mfcc M1 --logmel M2 (--data D | --corpus ...) --out DIR
    python -m zoo.explain report --mfcc M1 --logmel M2 [--whisper M3] --data D --split test \\
        --out docs/figures/xai

Maps are computed on the export's model.keras (the feature-input Keras model) with features
computed by the export's own FeatureSpec, for each clip's predicted class. SSL heads
(hubert_cnn, hubert_rnn) are explained over their pooled vectors (--data: an embedding set).
Whisper models through their encoder: gradients over the log-Mel input, Grad-CAM over the
encoder's frames at a hidden state (--layer hidden_state_K).
What the checks mean and their thresholds: docs/explain.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.common.tfenv import quiet_tensorflow

COMMANDS = ("sanity", "compare", "report")
SANITY_DEFAULT = "gradcam,gradcam++,saliency,magnitude"
WHISPER_SANITY_DEFAULT = "gradcam,saliency,gradxinput,magnitude"  # whisper_report


class UsageError(ValueError):
    pass


def _source(parser, required: bool = True) -> None:
    source = parser.add_mutually_exclusive_group(required=required)
    source.add_argument("--corpus", action="append", metavar="NAME=DIR",
                        help="corpus folder(s), read with the corpus readers (repeatable)")
    source.add_argument("--data", help="TFRecord set folder (an embedding set for SSL heads)")
    parser.add_argument("--split", default="test", help="split of --data (test)")
    parser.add_argument("--max-clips", type=int, default=None,
                        help="explain at most this many clips (a seeded random choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _sanity_options(parser, default_clips: int = 32) -> None:
    parser.add_argument("--methods", default=None,
                        help=f"comma-separated methods to check ({SANITY_DEFAULT}; Whisper "
                             f"models: {WHISPER_SANITY_DEFAULT}; 'magnitude' is the "
                             "model-independent control that should fail)")
    parser.add_argument("--sanity-clips", type=int, default=default_clips,
                        help=f"clips the checks run on ({default_clips})")
    parser.add_argument("--train-clips", type=int, default=256,
                        help="clips of the train split the permuted-label model trains on "
                             "(256; with --corpus the explained clips themselves)")
    parser.add_argument("--epochs", type=int, default=5,
                        help="epochs of the permuted-label run (5)")
    parser.add_argument("--steps", type=int, default=20, help="deletion/insertion steps (20)")
    parser.add_argument("--retrain-top", type=int, default=0, metavar="K",
                        help="Whisper models: also a permuted-label model whose top K encoder "
                             "layers are trained (--epochs on 3 s crops; 0 = off)")


def _method_list(text: str) -> list[str]:
    from zoo.xai.attribution import CONTROLS, METHODS

    methods = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS + CONTROLS]
    if bad or not methods:
        raise UsageError(f"--methods: unknown method {', '.join(bad) or '(none)'}; choose from "
                         f"{', '.join(METHODS + CONTROLS)}")
    return methods


def parser_for(command: str | None) -> argparse.ArgumentParser:
    from zoo.xai.attribution import METHODS

    prog = "python -m zoo.explain" + (f" {command}" if command else "")
    if command is None:
        p = argparse.ArgumentParser(prog=prog, description=(
            "Attribution maps of an exported model: per-example overlays (correct and wrong "
            "clips per emotion), a per-emotion mean map grid, profiles.csv; for SSL heads, "
            "attribution over the pooled vector's dimensions. Subcommands: "
            + ", ".join(COMMANDS) + " (python -m zoo.explain CMD --help)."))
        p.add_argument("--model", required=True, help="savedmodels/<model>[/<version>]")
        _source(p)
        p.add_argument("--method", default="gradcam", choices=METHODS)
        p.add_argument("--layer", help="layer for CAM methods (default: the last conv block, "
                                        "else the BiLSTM; Whisper models: hidden_state_K, "
                                        "default the state the head weighs most)")
        p.add_argument("--out", required=True, help="output folder")
        p.add_argument("--per-class", type=int, default=2,
                       help="correct and wrong examples per emotion (2)")
        p.add_argument("--tensorboard", metavar="RUN_DIR", help="also write the images here")
        p.add_argument("--sanity", action="store_true",
                       help="also run the sanity checks for this method (sanity/)")
        _sanity_options(p)
        return p
    p = argparse.ArgumentParser(prog=prog)
    if command == "sanity":
        p.description = "Sanity checks (randomisation, deletion/insertion) of methods on a model."
        p.add_argument("--model", required=True)
        p.add_argument("--layer")
        p.add_argument("--out", required=True)
        p.add_argument("--tensorboard", metavar="RUN_DIR")
        _source(p)
        _sanity_options(p)
    elif command == "compare":
        p.description = ("Per-band share of attribution and map entropy of an MFCC and a "
                         "log-Mel model on the same clips: compare.csv, compare.png.")
        p.add_argument("--mfcc", required=True, help="an MFCC model export")
        p.add_argument("--logmel", required=True, help="a log-Mel model export")
        p.add_argument("--method", default="gradcam", choices=METHODS)
        p.add_argument("--out", required=True)
        _source(p)
    else:
        p.description = ("The README figure set: per-emotion maps of an MFCC and a log-Mel "
                         "model, their comparison, sanity checks (cascade and deletion "
                         "curves) and SUMMARY.md; optionally an SSL head and a Whisper model "
                         "(its figures in OUT/whisper). At least one of --mfcc, --logmel, "
                         "--whisper.")
        p.add_argument("--mfcc", help="an MFCC model export")
        p.add_argument("--logmel", help="a log-Mel model export")
        p.add_argument("--whisper", help="a Whisper model export (savedmodels/whisper_*[/N])")
        p.add_argument("--whisper-methods", default=WHISPER_SANITY_DEFAULT,
                       help=f"methods checked on the Whisper model ({WHISPER_SANITY_DEFAULT}; "
                            "its figures: saliency, gradxinput, gradcam)")
        p.add_argument("--ssl", help="optional SSL head export (hubert_cnn / hubert_rnn)")
        p.add_argument("--ssl-data", help="its embedding set (tfrecords/<set>/embeddings/...)")
        p.add_argument("--method", default="gradcam", choices=METHODS,
                       help="method of the per-emotion figures (gradcam)")
        p.add_argument("--per-class", type=int, default=2)
        p.add_argument("--out", required=True)
        p.add_argument("--tensorboard", metavar="RUN_DIR")
        _source(p)
        _sanity_options(p)
    return p


def _check_args(args) -> None:
    from pipelines.corpora import parse_corpus_arg

    for arg in args.corpus or []:
        _, folder = parse_corpus_arg(arg)
        if not Path(folder).is_dir():
            raise UsageError(f"--corpus {arg}: {folder} is not a folder")
    if getattr(args, "data", None) and not Path(args.data).is_dir():
        raise UsageError(f"--data {args.data}: no such folder")
    from zoo.xai.attribution import CAM_METHODS

    for flag in ("max_clips", "per_class", "sanity_clips", "train_clips", "epochs", "steps"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if getattr(args, "retrain_top", 0) < 0:
        raise UsageError(f"--retrain-top must be >= 0, got {args.retrain_top}")
    args.method_list = _method_list(args.methods) if getattr(args, "methods", None) else None
    if getattr(args, "whisper_methods", None):
        args.whisper_method_list = _method_list(args.whisper_methods)
    if getattr(args, "ssl", None) and not getattr(args, "ssl_data", None):
        raise UsageError("--ssl needs --ssl-data (the head's embedding set)")
    if hasattr(args, "whisper") and not (args.mfcc or args.logmel or args.whisper):
        raise UsageError("report needs at least one of --mfcc, --logmel, --whisper")
    method = getattr(args, "method", None)
    if getattr(args, "layer", None) and method and method not in CAM_METHODS:
        raise UsageError(f"--layer applies to the CAM methods ({', '.join(CAM_METHODS)}), not "
                         f"to {method}")


def _clips(loaded, args, max_clips=None):
    from zoo.xai.data import load_clips

    return load_clips(loaded, args.corpus, args.data, args.split,
                      max_clips or args.max_clips, args.seed, progress=not args.quiet)


def _train_clips(loaded, args, clips):
    """What the permuted-label model trains on: the train split of --data when it has one."""
    from zoo.xai.data import ExplainError, load_clips

    if not args.data:
        return clips
    try:
        return load_clips(loaded, None, args.data, "train", args.train_clips, args.seed,
                          progress=not args.quiet)
    except (ExplainError, ValueError):
        return clips


def _default_methods(loaded) -> list[str]:
    from zoo.xai.whisper import find_encoder

    whisper = find_encoder(loaded.model) is not None
    return _method_list(WHISPER_SANITY_DEFAULT if whisper else SANITY_DEFAULT)


def _sanity(loaded, args, clips, out, layer=None, methods=None):
    from zoo.xai.run import sanity_model

    few = clips.subset(range(min(len(clips), args.sanity_clips))) if \
        len(clips) > args.sanity_clips else clips
    return sanity_model(loaded, few, methods or args.method_list or _default_methods(loaded),
                        layer, out, _train_clips(loaded, args, clips), args.epochs, args.steps,
                        progress=not args.quiet, tensorboard=getattr(args, "tensorboard", None),
                        retrain_top=args.retrain_top)


def run_explain(args) -> int:
    from zoo.xai.attribution import Explainer
    from zoo.xai.data import load_model
    from zoo.xai.run import explain_model

    loaded = load_model(args.model)
    if args.method in ("gradcam", "gradcam++", "scorecam"):
        Explainer(loaded.model, args.method, args.layer)  # a bad --layer fails before any work
    clips = _clips(loaded, args)
    summary, _, _ = explain_model(loaded, clips, args.method, args.layer, args.out,
                                  args.per_class, args.tensorboard, progress=not args.quiet)
    print(f"{loaded.name}: {args.method} at {summary['layer'] or 'the input'} on "
          f"{summary['clips']} clips (accuracy {summary['accuracy']:.3f}) -> {args.out}")
    if args.sanity:
        record = _sanity(loaded, args, clips, Path(args.out) / "sanity", args.layer,
                         [args.method])
        print(f"sanity: {record['methods'][args.method]['verdict']} -> {args.out}/sanity")
    return 0


def run_sanity(args) -> int:
    from zoo.xai.data import load_model
    from zoo.xai.run import write_summary

    loaded = load_model(args.model)
    clips = _clips(loaded, args, args.max_clips)
    record = _sanity(loaded, args, clips, args.out, args.layer)
    write_summary(args.out, {loaded.name: record})
    for method, r in record["methods"].items():
        print(f"{loaded.name} {method}: {r['verdict']}")
    return 0


def _feature_pair(args):
    from zoo.xai.data import load_model

    pair = {}
    for flag, kind in (("--mfcc", "mfcc"), ("--logmel", "logmel")):
        if not getattr(args, flag[2:]):
            continue
        loaded = load_model(getattr(args, flag[2:]))
        if loaded.feature_kind != kind:
            raise UsageError(f"{flag} {loaded.path}: takes {loaded.feature_kind} input, "
                             f"not {kind}")
        pair[kind] = loaded
    return pair


def run_compare(args) -> int:
    from zoo.xai.data import attribute
    from zoo.xai.attribution import Explainer
    from zoo.xai.run import compare_models

    explained = {}
    for kind, loaded in _feature_pair(args).items():
        clips = _clips(loaded, args)
        maps, _ = attribute(Explainer(loaded.model, args.method), clips,
                            progress=not args.quiet)
        explained[loaded.name] = (loaded, clips, maps)
    table = compare_models(explained, args.out)
    print(table[table["emotion"] == "all"][["model", "band", "share", "entropy"]]
          .to_string(index=False))
    return 0


def _whisper_report(args, out):
    """(sanity record, SUMMARY lines) of --whisper, its figures in out/whisper."""
    from zoo.xai import whisper_report
    from zoo.xai.data import load_model
    from zoo.xai.whisper import find_encoder

    loaded = load_model(args.whisper)
    if loaded.kind != "features" or find_encoder(loaded.model) is None:
        raise UsageError(f"--whisper {loaded.path}: not a Whisper model (no Whisper encoder in "
                         "its model.keras)")
    clips = _clips(loaded, args)
    lines = whisper_report.report(loaded, clips, out / "whisper", args.per_class,
                                  args.tensorboard, progress=not args.quiet)
    record = _sanity(loaded, args, clips, out / "whisper" / "sanity", None,
                     args.whisper_method_list)
    return loaded.name, record, lines


def run_report(args) -> int:
    from zoo.xai.data import load_model, load_clips
    from zoo.xai.run import compare_models, explain_model, sanity_model, write_summary

    out = Path(args.out)
    explained, records, lines = {}, {}, []
    for kind, loaded in _feature_pair(args).items():
        clips = _clips(loaded, args)
        _, maps, _ = explain_model(loaded, clips, args.method, None, out / kind,
                                   args.per_class, args.tensorboard, progress=not args.quiet)
        explained[loaded.name] = (loaded, clips, maps)
        records[loaded.name] = _sanity(loaded, args, clips, out / kind / "sanity")
    table = compare_models(explained, out) if explained else None
    if args.ssl:
        loaded = load_model(args.ssl)
        clips = load_clips(loaded, None, args.ssl_data, args.split, args.max_clips, args.seed,
                           progress=not args.quiet)
        explain_model(loaded, clips, "saliency", None, out / "ssl", args.per_class,
                      args.tensorboard, progress=not args.quiet)
        few = clips.subset(range(min(len(clips), args.sanity_clips)))
        records[loaded.name] = sanity_model(
            loaded, few, [m for m in args.method_list or _method_list(SANITY_DEFAULT)
                          if m != "scorecam"], None,
            out / "ssl" / "sanity", clips, args.epochs, args.steps, progress=not args.quiet)
    if args.whisper:
        name, records[name], lines = _whisper_report(args, out)
    write_summary(out, records, table, lines)
    print((out / "SUMMARY.md").read_text())
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = parser_for(command).parse_args(argv[1:] if command else argv)
    quiet_tensorflow()
    from pipelines.corpora.base import CorpusError
    from pipelines.records.tfrecord import SchemaError
    from zoo.evaluation.evaluate import EvaluateError
    from zoo.xai.attribution import AttributionError
    from zoo.xai.data import ExplainError

    handlers = {None: run_explain, "sanity": run_sanity, "compare": run_compare,
                "report": run_report}
    try:
        _check_args(args)
        return handlers[command](args)
    except (UsageError, ExplainError, AttributionError, CorpusError, SchemaError,
            EvaluateError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
