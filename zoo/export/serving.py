"""TF Serving side of the zoo: the server's model config, REST request bodies, export checks.

    python -m zoo.serving config [--root savedmodels] [--base-path /models]
    python -m zoo.serving request FILE.wav [FILE ...] [--model NAME] [--format inputs|instances]
                                  [--signature serving_default|serving_with_length|...]
    python -m zoo.serving check savedmodels/<model>/<version> [--wav FILE]
    python -m zoo.serving promote runs/<run-exports>/<model>/<version> [--root savedmodels]
                                  [--version N] [--replace]

`savedmodels/` is a TF Serving model base path as it stands (`<model>/<version>/saved_model.pb`);
`config` writes `savedmodels/models.config` for `tensorflow_model_server --model_config_file`.
`request` prints the JSON body of a REST `:predict` call for one audio file or several (decoded
with pipelines.audio.decode: any format libsndfile reads, 16 kHz mono; several files are the rows of
one request, e.g. all clips of a speaker for serving_by_speaker). `check` validates an export the way
the server will use it: layout, assets, signatures (from `saved_model_cli show --all` and from
the loaded SavedModel), a load with the TF1-style loader TF Serving runs, and a call on a test
waveform compared with the Keras model's own output (zoo.export.check). `promote` copies a
chosen run's export into the base folder under a temporary name and renames it into place, so
the server never loads half a version. See docs/serving.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from zoo.export.layout import (SIGNATURE_DEFAULT, SIGNATURE_LENGTH, SIGNATURE_SPEAKER, SIGNATURE_STATS,
                        SIGNATURES, few_clips_warning, min_clips_per_speaker, read_export,
                        resolve_version)

CONFIG_NAME = "models.config"


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


def request_body(waveform, signature: str = SIGNATURE_DEFAULT, fmt: str = "inputs",
                 stats: tuple | None = None, speaker: str | None = None) -> dict:
    """The JSON body of a REST :predict request for one clip (1-D float32 at 16 kHz) or several
    (a list of them: rows zero-padded to the longest, each with its `length`).

    fmt 'inputs' (columnar): {"signature_name", "inputs": {"waveform": [[...]], ...}};
    'instances' (row): {"signature_name", "instances": [{"waveform": [...], ...}]}.
    serving_with_length adds length; serving_with_stats also needs stats = (mean, std) [C];
    serving_by_speaker needs `speaker`, sent with every clip (all clips of one speaker).
    """
    clips = [np.asarray(w, np.float32) for w in
             (waveform if isinstance(waveform, (list, tuple)) else [waveform])]
    if not clips or any(c.ndim != 1 or not len(c) for c in clips):
        raise ServingError("request_body: non-empty 1-D waveforms needed")
    if signature not in (*SIGNATURES, SIGNATURE_SPEAKER):
        raise ServingError(f"unknown signature {signature!r}")
    longest = max(len(c) for c in clips)
    if signature == SIGNATURE_DEFAULT and any(len(c) != longest for c in clips):
        raise ServingError(f"clips of different lengths need --signature {SIGNATURE_LENGTH} "
                           f"(or {SIGNATURE_SPEAKER})")
    if signature == SIGNATURE_STATS and stats is None:
        raise ServingError(f"{SIGNATURE_STATS} needs feature statistics (--stats, --speaker)")
    if signature == SIGNATURE_SPEAKER and not speaker:
        raise ServingError(f"{SIGNATURE_SPEAKER} needs --speaker ID (the same for every clip)")
    rows = []
    for clip in clips:
        row = {"waveform": _float_list(np.pad(clip, (0, longest - len(clip))))}
        if signature != SIGNATURE_DEFAULT:
            row["length"] = int(len(clip))
        if signature == SIGNATURE_STATS:
            row["feature_mean"] = _float_list(stats[0])
            row["feature_std"] = _float_list(stats[1])
        if signature == SIGNATURE_SPEAKER:
            row["speaker"] = speaker
        rows.append(row)
    if fmt == "instances":
        return {"signature_name": signature, "instances": rows}
    if fmt == "inputs":
        return {"signature_name": signature, "inputs": {k: [r[k] for r in rows] for k in rows[0]}}
    raise ServingError(f"format must be 'inputs' or 'instances', not {fmt!r}")


def _decode(path) -> np.ndarray:
    from pipelines.audio.decode import AudioError, decode

    try:
        return decode(path).waveform
    except AudioError as err:
        raise ServingError(str(err)) from None


# ---------------------------------------------------------------- CLI

def _cmd_config(args) -> int:
    from pipelines.common.io import write_text_atomic

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
    signatures, info = list(SIGNATURES), {}
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
    if args.signature == SIGNATURE_SPEAKER:
        warning = few_clips_warning({args.speaker or "?": len(args.file)},
                                    min_clips_per_speaker(info))
        if warning:
            print(warning, file=sys.stderr)
    body = request_body([_decode(f) for f in args.file], args.signature, args.format, stats,
                        args.speaker if args.signature == SIGNATURE_SPEAKER else None)
    text = json.dumps(body, separators=(",", ":"))
    if args.out:
        from pipelines.common.io import write_text_atomic

        write_text_atomic(args.out, text + "\n")
    else:
        print(text)
    if args.model:
        print(f"POST it to http://localhost:8501/v1/models/{Path(args.model).name}:predict",
              file=sys.stderr)
    return 0


def _speaker_stats(path, speaker):
    from pipelines.records.speaker_stats import SpeakerStats

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


def _cmd_promote(args) -> int:
    from zoo.export.layout import promote

    try:
        final = promote(resolve_version(args.source), args.root, args.version, args.replace)
    except (FileNotFoundError, FileExistsError, ValueError, json.JSONDecodeError) as err:
        raise ServingError(str(err)) from None
    print(f"{args.source} -> {final}")
    print(f"check it with: python -m zoo.serving check {final}", file=sys.stderr)
    return 0


def _cmd_check(args) -> int:
    from zoo.export.check import check

    waveform = None if args.wav is None else _decode(args.wav)
    failed = 0
    for target in args.path:
        try:
            path = resolve_version(target)
        except FileNotFoundError as err:
            print(f"FAIL  layout: {err}")
            failed += 1
            continue
        print(f"checking {path}")
        results = check(path, waveform)
        for result in results:
            print(result.line())
        bad = [r for r in results if not r.ok]
        print(f"{path}: {'FAIL' if bad else 'PASS'} ({len(results) - len(bad)}/{len(results)} "
              "checks passed)")
        failed += bool(bad)
    return 1 if failed else 0


def main(argv=None) -> int:
    from pipelines.common.tfenv import quiet_tensorflow

    parser = argparse.ArgumentParser(prog="python -m zoo.serving",
                                     description="TF Serving config, request bodies and "
                                                 "export checks for savedmodels/.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("config", help="write <root>/models.config for tensorflow_model_server")
    p.add_argument("--root", default="savedmodels", help="model base folder (savedmodels)")
    p.add_argument("--base-path", help="the root as the server sees it, e.g. /models in a "
                                       "container (default: absolute path here)")
    p = sub.add_parser("request", help="print the JSON body of a REST :predict request")
    p.add_argument("file", nargs="+",
                   help="audio file(s) (any format libsndfile reads; resampled to 16 kHz); "
                        "several make one request of several rows")
    p.add_argument("--model", help="model name under --root (or its folder): checks that it "
                                   "has the signature")
    p.add_argument("--root", default="savedmodels")
    p.add_argument("--format", default="inputs", choices=["inputs", "instances"])
    p.add_argument("--signature", default=SIGNATURE_DEFAULT,
                   choices=[*SIGNATURES, SIGNATURE_SPEAKER])
    p.add_argument("--stats", help=f"speaker statistics JSON ({SIGNATURE_STATS})")
    p.add_argument("--speaker", help=f"speaker id in --stats ({SIGNATURE_STATS}), or the id "
                                     f"sent with every clip ({SIGNATURE_SPEAKER}: give all of "
                                     "one speaker's clips)")
    p.add_argument("--out", help="write the body here instead of stdout")
    p = sub.add_parser("promote", help="copy an export (e.g. runs/<run>/...) into the model "
                                       "base folder as <name>/<version>, atomically")
    p.add_argument("source", help="export version folder (or its <model> folder: newest)")
    p.add_argument("--root", default="savedmodels", help="model base folder (savedmodels)")
    p.add_argument("--version", type=int, help="version number (default: next free)")
    p.add_argument("--replace", action="store_true",
                   help="replace that version if it exists (swapped in atomically)")
    p = sub.add_parser("check", help="validate export folder(s): exit 0 all pass, 1 otherwise")
    p.add_argument("path", nargs="+", help="savedmodels/<model>/<version> (or <model>: newest)")
    p.add_argument("--wav", help="test with this audio file instead of a synthetic clip")
    args = parser.parse_args(argv)
    if args.command == "check":
        quiet_tensorflow()
    try:
        return {"config": _cmd_config, "request": _cmd_request, "check": _cmd_check,
                "promote": _cmd_promote}[
            args.command](args)
    except ServingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # stdout piped into e.g. head, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
