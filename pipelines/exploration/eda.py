"""Exploratory data analysis of emotional-speech corpora: one table, a few pictures, a summary.

    python -m pipelines.eda --corpus ravdess=/data/ravdess --corpus tess=/data/tess --out reports/eda

Reads the corpora with their readers, then measures every ORIGINAL file (its own sample rate,
channels, length, container and sample type, peak, RMS level, DC offset; nothing is resampled)
in a process pool. Files that cannot be decoded are listed in skipped.csv with the reason, next
to what the readers skipped; the command still succeeds. Every output is written atomically.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from pipelines.common.io import atomic_path, write_text_atomic as write_text
from pipelines.audio.decode import AudioError, safe_decode
from pipelines.corpora import SKIP_COLUMNS, CorpusError, read_corpora
from pipelines.corpora.labels import BOREDOM_POLICIES, CALM_POLICIES
from pipelines.common.parallel import default_workers, imap_ordered

MEASURES = ("duration_s", "orig_sample_rate", "channels", "format", "subtype",
            "peak", "rms_dbfs", "dc_offset", "silent")
PICTURES = ("duration_hist.png", "label_counts.png", "sample_rates.png",
            "box_duration.png", "box_rms.png")
CONSISTENCY = ("orig_sample_rate", "channels", "format", "subtype")


def measure(path: str) -> dict:
    """The original file's metadata and level, or {'error': reason}. Runs in worker processes."""
    try:
        result = safe_decode(path, sample_rate=None)
    except Exception as err:  # noqa: BLE001 - one odd file must not end a run over thousands
        return {"error": f"unexpected error ({err.__class__.__name__}: {err})"}
    if isinstance(result, AudioError):
        return {"error": result.reason}
    info = result.info
    return {
        "duration_s": round(info.duration, 4),
        "orig_sample_rate": info.sample_rate,
        "channels": info.channels,
        "format": info.format,
        "subtype": info.subtype,
        "peak": round(result.peak, 6),
        "rms_dbfs": round(result.rms_dbfs, 2),
        "dc_offset": round(result.dc_offset, 6),
        "silent": bool(result.silent),
    }


def measure_all(paths: list[str], workers: int, progress: bool = True) -> list[dict]:
    """measure() for every path, in order; `workers` processes (1: in this process)."""
    return list(imap_ordered(measure, paths, workers, desc="measuring", progress=progress))


def combine(rows: pd.DataFrame, skipped: pd.DataFrame,
            results: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reader rows + measurements -> (manifest of decodable files, all skipped files)."""
    table = pd.DataFrame(results, index=rows.index, columns=[*MEASURES, "error"])
    failed = table["error"].notna()
    manifest = pd.concat([rows[~failed], table.loc[~failed, list(MEASURES)]], axis=1)
    for column in ("orig_sample_rate", "channels"):
        manifest[column] = manifest[column].astype("int64")
    manifest["silent"] = manifest["silent"].astype(bool)
    decode_skips = pd.DataFrame({
        "path": rows.loc[failed, "path"], "corpus": rows.loc[failed, "corpus"],
        "reason": table.loc[failed, "error"],
    })
    all_skipped = pd.concat([skipped, decode_skips], ignore_index=True)[list(SKIP_COLUMNS)]
    return manifest.reset_index(drop=True), all_skipped


def sample_rate_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Files per corpus and (sample rate, channels, format, subtype), with the share per corpus."""
    keys = ["corpus", *CONSISTENCY]
    table = manifest.groupby(keys, sort=True).size().rename("files").reset_index()
    table["share"] = (table["files"] / table.groupby("corpus")["files"].transform("sum")).round(4)
    return table.sort_values(["corpus", "files"], ascending=[True, False], ignore_index=True)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def analyse(rows: pd.DataFrame, skipped: pd.DataFrame, notes: list[str], out: Path,
            workers: int, progress: bool = True, sources=(), calm: str = "neutral",
            boredom: str = "drop") -> dict:
    """Measure the files the readers found and write every output into `out`."""
    from pipelines.exploration import plots as eda_plots  # matplotlib only once the data is read
    from pipelines.exploration import summary as eda_summary

    start = time.perf_counter()
    results = measure_all(rows["path"].tolist(), workers, progress)
    manifest, skipped = combine(rows, skipped, results)
    corpora = list(dict.fromkeys([*rows["corpus"], *skipped["corpus"]]))
    write_csv(manifest, out / "manifest.csv")
    write_csv(skipped, out / "skipped.csv")
    rates = sample_rate_table(manifest)
    write_csv(rates, out / "sample_rates.csv")
    eda_plots.write_all(manifest, corpora, out)
    elapsed = time.perf_counter() - start
    text = eda_summary.render(manifest, skipped, rates, notes, corpora,
                              sources=sources, calm=calm, boredom=boredom, elapsed=elapsed)
    write_text(out / "summary.md", text)
    return {"files": len(manifest), "skipped": len(skipped), "seconds": elapsed}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + message
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m pipelines.eda",
        description="Exploratory analysis of emotional-speech corpora: measures every original "
                    "file (sample rate, channels, duration, format, peak, RMS level, DC offset, "
                    "silence) and writes manifest.csv, skipped.csv, sample_rates.csv, "
                    "summary.md and plots (" + ", ".join(PICTURES) + ") into --out.",
        epilog="Files that cannot be read or decoded are listed in skipped.csv with the reason "
               "and do not stop the run. Exit status: 0 when the outputs are written, 2 on bad "
               "usage (malformed --corpus, missing or empty folder, bad option value).",
    )
    p.add_argument("--corpus", action="append", required=True, metavar="NAME=DIR",
                   help="a corpus folder; repeat for several. Known names (ravdess, tess, savee, "
                        "cremad, emodb, nemo) use their reader; any other name reads "
                        "DIR/<emotion>/ or DIR/<speaker>/<emotion>/ folders.")
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="folder for the outputs (created if missing; files in it are replaced).")
    p.add_argument("--calm", choices=CALM_POLICIES, default="neutral",
                   help="RAVDESS calm: fold into neutral (default), keep as its own class, or "
                        "drop (dropped files are listed in skipped.csv).")
    p.add_argument("--boredom", choices=BOREDOM_POLICIES, default="drop",
                   help="Emo-DB boredom (no class here): drop (default; listed in skipped.csv) "
                        "or fold into neutral.")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help=f"processes that decode files (default: the CPUs available, "
                        f"{default_workers()} here; 1 decodes in the main process).")
    p.add_argument("--no-progress", action="store_true",
                   help="hide the progress bar (it is shown only on a terminal anyway).")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def usage_error(message: str) -> int:
        print(f"python -m pipelines.eda: error: {message}", file=sys.stderr)
        return 2

    if args.workers is not None and args.workers < 1:
        return usage_error(f"--workers must be at least 1, got {args.workers}")
    start = time.perf_counter()
    try:
        rows, skipped, notes = read_corpora(args.corpus, calm=args.calm, boredom=args.boredom)
    except (CorpusError, ValueError) as err:  # bad NAME=DIR, missing or empty folder
        return usage_error(str(err))
    if args.out.exists() and not args.out.is_dir():
        return usage_error(f"--out {args.out} exists and is not a folder")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return usage_error(f"cannot create --out {args.out}: {err.strerror or err}")
    counts = analyse(rows, skipped, notes, args.out, args.workers or default_workers(),
                     not args.no_progress, sources=args.corpus, calm=args.calm,
                     boredom=args.boredom)
    print(f"{counts['files']} files measured, {counts['skipped']} skipped, "
          f"{time.perf_counter() - start:.1f} s; see {args.out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
