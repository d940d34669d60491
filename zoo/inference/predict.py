"""Predict emotions for audio files or folders with an exported model.

    python -m zoo.predict --model savedmodels/mfcc_cnn[/<version>] PATH... [--window 4 --hop 2]
                          [--by-speaker] [--out predictions.csv|.json]

PATH: files (any format libsndfile reads, resampled to 16 kHz mono) or folders, searched
recursively for audio files. The model is the highest version unless a version folder is given,
called through its `serving_with_length` signature as TF Serving would. A recording longer than
--window seconds is cut into windows of --window seconds every --hop seconds (the last one ends
at the recording's end); each window gets a row, and the file's prediction is the mean of its
window probabilities. Files that cannot be read are listed with the reason; the others are still
predicted. With --by-speaker (models re-fitted by zoo.refit_head), each folder's files are one
speaker, classified through serving_by_speaker with statistics over all of that speaker's
windows. Exit code: 0 all files predicted, 1 some failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from pathlib import Path

import numpy as np

from pipelines.audio.decode import SAMPLE_RATE

DEFAULT_WINDOW = 4.0
FLUSH_WINDOWS = 64  # windows gathered before a model call (bounds memory on big folders)


class PredictError(RuntimeError):
    """Bad usage (exit code 2)."""


@dataclasses.dataclass
class FileResult:
    """One input file: its windows' probabilities [n, classes] and where they lie, or why not."""

    path: str
    duration: float = 0.0
    speaker: str = ""
    bounds: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    window_probs: np.ndarray | None = None
    window_ratio: np.ndarray | None = None  # speech_ratio per window
    window_status: np.ndarray | None = None
    status: str = ""
    error: str = ""

    @property
    def probabilities(self) -> np.ndarray:
        """Per file: mean of the window probabilities."""
        return self.window_probs.mean(axis=0)

    @property
    def speech_ratio(self) -> float:
        """Per file: the windows' speech ratios weighted by their lengths."""
        weights = np.array([e - s for s, e in self.bounds], np.float64)
        return float(np.average(self.window_ratio, weights=np.maximum(weights, 1)))

    @property
    def windowed(self) -> bool:
        return len(self.bounds) > 1


def window_bounds(n: int, window: int, hop: int) -> list[tuple[int, int]]:
    """[start, end) sample ranges: the whole clip if it fits in one window; otherwise windows of
    `window` samples every `hop`, plus one ending at the clip's end if the hops fall short."""
    if window <= 0 or hop <= 0:
        raise ValueError("window and hop must be positive")
    if n <= window:
        return [(0, n)]
    starts = list(range(0, n - window + 1, hop))
    if starts[-1] + window < n:
        starts.append(n - window)
    return [(s, s + window) for s in starts]


def collect_files(paths) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to predict, in argument order (folders: their audio files, sorted, recursively),
    and files passed over with the reason (e.g. macOS resource forks). A path that does not
    exist is kept: decoding reports it as 'file not found'."""
    from pipelines.corpora.base import audio_files

    files, ignored = [], []
    for path in map(Path, paths):
        if path.is_dir():
            found, skipped = audio_files(path)
            files += found
            ignored += [(str(p), why) for p, why in skipped]
        else:
            files.append(path)
    seen, unique = set(), []
    for f in files:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    return unique, ignored


def predict_waveforms(runner, waves, window: float, hop: float, batch_size: int = 16,
                      speakers=None) -> list[tuple[list, np.ndarray, np.ndarray]]:
    """(bounds, window probabilities, window speech ratios) for each waveform, in one batched
    model pass; with `speakers` (one id per waveform), through serving_by_speaker, every window
    of a speaker in one request. The speech ratios are those the export's graph returns
    (speech_ratio), else pipelines.audio.speech_activity's computed here with the export's
    parameters (by speaker, older exports, .tflite)."""
    from zoo.export.reliability import host_speech_ratios, of_export

    win, step = int(round(window * SAMPLE_RATE)), int(round(hop * SAMPLE_RATE))
    bounds = [window_bounds(len(w), win, step) for w in waves]
    pieces = [w[s:e] for w, b in zip(waves, bounds) for s, e in b]
    ratios = None
    if not pieces:
        probs = np.zeros((0, len(runner.labels)), np.float32)
    elif speakers is not None:
        probs = runner.predict_by_speaker(
            pieces, [s for s, b in zip(speakers, bounds) for _ in b])
    else:
        probs, ratios = runner.predict_with_speech(pieces, batch_size=batch_size)
    if ratios is None:
        ratios = host_speech_ratios(pieces, of_export(runner.info).speech)
    out, at = [], 0
    for b in bounds:
        out.append((b, probs[at:at + len(b)], ratios[at:at + len(b)]))
        at += len(b)
    return out


def predict_files(runner, files, window: float = DEFAULT_WINDOW, hop: float | None = None,
                  batch_size: int = 16, workers=None, progress: bool = True,
                  by_speaker: bool = False) -> list[FileResult]:
    """A FileResult per file, in order; decoding runs in a process pool, and windows go to the
    model in groups of about FLUSH_WINDOWS, so a large folder is never held in memory at once.

    by_speaker: a file's speaker is the folder holding it, and all windows of a speaker's files
    go into one serving_by_speaker request, whose statistics they are; so every file is decoded
    before the model is called (a speaker's clips must be together)."""
    from pipelines.common.parallel import imap_ordered
    from zoo.evaluation.clips import decode_or_reason

    from zoo.export.reliability import of_export, statuses

    hop = window if hop is None else hop
    rel = of_export(runner.info)
    results: list[FileResult] = []
    pending: list[tuple[FileResult, np.ndarray]] = []

    def flush():
        speakers = [r.speaker for r, _ in pending] if by_speaker else None
        done = predict_waveforms(runner, [w for _, w in pending], window, hop, batch_size,
                                 speakers)
        for (result, _), (bounds, probs, ratios) in zip(pending, done):
            result.bounds, result.window_probs, result.window_ratio = bounds, probs, ratios
            result.window_status = statuses(probs, ratios, rel, speaker=by_speaker)
            result.status = str(statuses(result.probabilities[None], [result.speech_ratio],
                                         rel, speaker=by_speaker)[0])
        pending.clear()

    windows = 0
    decoding = imap_ordered(decode_or_reason, [str(f) for f in files], workers, desc="decoding",
                            progress=progress)
    with contextlib.closing(decoding):  # an error stops the workers now, not at GC time
        for path, decoded in zip(files, decoding):
            result = FileResult(str(path), speaker=Path(path).resolve().parent.name
                                if by_speaker else "")
            results.append(result)
            if isinstance(decoded, str):
                result.error = decoded
                continue
            result.duration = len(decoded) / SAMPLE_RATE
            pending.append((result, decoded))
            windows += max(1, int(np.ceil(len(decoded) / (hop * SAMPLE_RATE))))
            if windows >= FLUSH_WINDOWS and not by_speaker:
                flush()
                windows = 0
    if pending:
        flush()
    return results


def to_rows(results: list[FileResult], labels: list[str]):
    """DataFrame: a 'file' row per file (mean over windows; error if unreadable) followed by
    its 'window' rows when it was cut into windows."""
    import pandas as pd

    rows = []
    for r in results:
        base = {"path": r.path, "speaker": r.speaker, "kind": "file", "window": None,
                "start_s": 0.0,
                "end_s": round(r.duration, 4), "windows": len(r.bounds)}
        if r.error:
            rows.append({**base, "start_s": None, "end_s": None, "windows": 0, "label": None,
                         "status": "error", "error": r.error})
            continue
        rows.append({**base, **_probs(r.probabilities, labels, r.status),
                     "speech_ratio": round(r.speech_ratio, 4), "status": r.status, "error": ""})
        if r.windowed:
            for i, ((s, e), p, ratio, status) in enumerate(
                    zip(r.bounds, r.window_probs, r.window_ratio, r.window_status)):
                rows.append({"path": r.path, "speaker": r.speaker, "kind": "window",
                             "window": i,
                             "start_s": s / SAMPLE_RATE, "end_s": e / SAMPLE_RATE, "windows": 1,
                             **_probs(p, labels, status), "speech_ratio": round(float(ratio), 4),
                             "status": status, "error": ""})
    columns = ["path", *(["speaker"] if any(r.speaker for r in results) else []), "kind",
               "window", "start_s", "end_s", "windows", "status", "speech_ratio", "label",
               *[f"p_{name}" for name in labels], "error"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["window"] = frame["window"].astype("Int64")
    return frame


def _probs(p: np.ndarray, labels: list[str], status: str = "ok") -> dict:
    """label (none for no_speech: docs/reliability.md) and p_<emotion> columns."""
    return {"label": None if status == "no_speech" else labels[int(np.argmax(p))],
            **{f"p_{name}": round(float(v), 6) for name, v in zip(labels, p)}}


def to_json(results: list[FileResult], labels: list[str], meta: dict) -> dict:
    files, failed = [], []
    for r in results:
        if r.error:
            failed.append({"path": r.path, "reason": r.error})
            continue
        entry = {"path": r.path, **({"speaker": r.speaker} if r.speaker else {}),
                 "duration_s": round(r.duration, 4), "status": r.status,
                 "speech_ratio": round(r.speech_ratio, 4),
                 "label": _probs(r.probabilities, labels, r.status)["label"],
                 "probabilities": _named(r.probabilities, labels)}
        if r.windowed:
            entry["windows"] = [{"start_s": s / SAMPLE_RATE, "end_s": e / SAMPLE_RATE,
                                 "status": str(status), "speech_ratio": round(float(ratio), 4),
                                 "label": _probs(p, labels, status)["label"],
                                 "probabilities": _named(p, labels)}
                                for (s, e), p, ratio, status in zip(
                                    r.bounds, r.window_probs, r.window_ratio, r.window_status)]
        files.append(entry)
    return {**meta, "labels": labels, "files": files, "failed": failed}


def _named(p, labels):
    return {name: round(float(v), 6) for name, v in zip(labels, p)}


def format_table(results: list[FileResult], labels: list[str]) -> str:
    ok = [r for r in results if not r.error]
    width = min(60, max([len(r.path) for r in ok] + [4]))
    lines = [f"{'file':<{width}}  {'dur s':>6}  {'win':>3}  {'speech':>6}  {'status':<14} "
             f"{'label':<10} {'p':>5}  " + " ".join(f"{name[:7]:>7}" for name in labels)]
    for r in ok:
        p = r.probabilities
        name = r.path if len(r.path) <= width else "..." + r.path[-(width - 3):]
        label = _probs(p, labels, r.status)["label"] or "-"
        lines.append(f"{name:<{width}}  {r.duration:6.2f}  {len(r.bounds):3d}  "
                     f"{r.speech_ratio:6.2f}  {r.status:<14} {label:<10} "
                     + (f"{'-':>5}  " if r.status == "no_speech" else f"{p.max():5.3f}  ")
                     + " ".join(f"{v:7.3f}" for v in p))
    return "\n".join(lines)


def main(argv=None) -> int:
    from pipelines.common.tfenv import quiet_tensorflow

    parser = argparse.ArgumentParser(
        prog="python -m zoo.predict",
        description="Emotion predictions for audio files and folders with an exported model; "
                    "long recordings are cut into windows. Exit 0: all files predicted, "
                    "1: some could not be read, 2: bad usage.")
    parser.add_argument("--model",
                        help="savedmodels/<model> (highest version), savedmodels/<model>/<v>, "
                             "a model name or family (whisper, mfcc, logmel); default: the "
                             "recommended model (README)")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders")
    parser.add_argument("--window", type=float, default=DEFAULT_WINDOW,
                        help=f"window length in seconds for long recordings ({DEFAULT_WINDOW})")
    parser.add_argument("--hop", type=float, help="seconds between window starts (= --window)")
    parser.add_argument("--out", help="write the predictions here: .csv or .json")
    parser.add_argument("--by-speaker", action="store_true",
                        help="models re-fitted by zoo.refit_head (e.g. mfcc_cnn/3): treat each "
                             "folder's files as one speaker and classify them with statistics "
                             "over all of that speaker's windows (serving_by_speaker; give at "
                             "least 20 clips per speaker). Off unless asked")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, help="decoding processes (all cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    from zoo.export.layout import read_export, resolve_model

    try:
        hop = args.window if args.hop is None else args.hop
        if not args.window > 0 or not hop > 0:
            raise PredictError("--window and --hop must be positive")
        if hop > args.window:
            raise PredictError("--hop larger than --window would skip audio between windows")
        if args.batch_size < 1:
            raise PredictError("--batch-size must be at least 1")
        if args.out and Path(args.out).suffix.lower() not in (".csv", ".json"):
            raise PredictError(f"--out {args.out}: .csv or .json expected")
        model, note = resolve_model(args.model)
        if note:
            print(note, file=sys.stderr)
        info = read_export(model)
        if args.by_speaker and "speaker_head" not in info:
            raise PredictError(f"{model}: no serving_by_speaker signature (--by-speaker needs a "
                               "model re-fitted by python -m zoo.refit_head)")
        files, ignored = collect_files(args.paths)
        if not files:
            raise PredictError("no audio files found in " + ", ".join(args.paths))
    except (PredictError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    quiet_tensorflow()
    from zoo.inference.savedmodel import SavedModelRunner

    runner = SavedModelRunner(model)
    results = predict_files(runner, files, args.window, hop, args.batch_size, args.workers,
                            progress=not args.quiet, by_speaker=args.by_speaker)
    if args.by_speaker:
        _warn_few_clips(results, runner.min_clips_per_speaker)
    labels = runner.labels
    failed = [r for r in results if r.error]
    print(f"{runner.path}: {len(results) - len(failed)} of {len(results)} files predicted "
          f"(windows {args.window:g} s, hop {hop:g} s"
          + (f"; {len({r.speaker for r in results})} speakers, statistics per speaker folder)"
             if args.by_speaker else ")"))
    if len(failed) < len(results):
        print(format_table(results, labels))
    for r in failed:
        print(f"failed: {r.path}: {r.error}", file=sys.stderr)
    for path, why in ignored:
        print(f"ignored: {path}: {why}", file=sys.stderr)
    if args.out:
        from pipelines.common.io import write_csv_atomic, write_json_atomic

        if args.out.lower().endswith(".json"):
            meta = {"model": str(runner.path), "window_s": args.window, "hop_s": hop,
                    "ignored": [{"path": p, "reason": why} for p, why in ignored]}
            write_json_atomic(args.out, to_json(results, labels, meta))
        else:
            write_csv_atomic(args.out, to_rows(results, labels))
        print(f"wrote {args.out}")
    return 1 if failed else 0


def _warn_few_clips(results: list[FileResult], wanted: int) -> None:
    """Windows per speaker folder below what the model card asks for: one warning line."""
    from zoo.export.layout import few_clips_warning

    counts: dict[str, int] = {}
    for r in results:
        if not r.error:
            counts[r.speaker] = counts.get(r.speaker, 0) + len(r.bounds)
    warning = few_clips_warning(counts, wanted)
    if warning:
        print(warning, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
