"""Download a corpus from Kaggle, as the original notebooks did, and put the folder its reader
needs at --out, then read it and compare the count with the published corpus.

    pip install -e '.[download]'                      # kagglehub
    python -m pipelines.download ravdess --out data/ravdess
    python -m pipelines.download emodb --out data/emodb --copy

kagglehub keeps the download in its cache (~/.cache/kagglehub, or $KAGGLEHUB_CACHE) and reuses
it. Kaggle copies nest the corpus (RAVDESS `audio_speech_actors_01-24/`, TESS `TESS Toronto
emotional speech set data/`, SAVEE `ALL/`, CREMA-D `AudioWAV/`, Emo-DB `wav/`), sometimes twice;
the folder used is the deepest one from which the reader gets every clip it finds in the whole
download. --out becomes a link to it (--copy: a copy). A short count is a warning, not an error;
anything that stops the download is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from pipelines.corpora import ALIASES, CorpusError, Readout, audio_files, read_corpus
from pipelines.corpora import cremad, emodb, ravdess, savee, tess
from pipelines.corpora.labels import ordered

# Kaggle dataset handle and reader module (its EXPECTATION: the published corpus) per corpus.
DATASETS = {
    "ravdess": ("uwrfkaggler/ravdess-emotional-speech-audio", ravdess),
    "tess": ("ejlok1/toronto-emotional-speech-set-tess", tess),
    "savee": ("ejlok1/surrey-audiovisual-expressed-emotion-savee", savee),
    "cremad": ("ejlok1/cremad", cremad),
    "emodb": ("piyushagni5/berlin-database-of-emotional-speech-emodb", emodb),
}
# Label policies that keep every clip as a row, so the count is the corpus' own.
KEEP_ALL = {"calm": "keep"}
KEEP_ALL_BY_CORPUS = {"emodb": {"boredom": "neutral"}}
INSTALL = "pip install -e '.[download]' in the repository (or: pip install kagglehub)"
CREDENTIALS = ("set KAGGLE_API_TOKEN, or KAGGLE_USERNAME and KAGGLE_KEY, or put kaggle.json "
               "in ~/.kaggle/ (kaggle.com > Settings > API)")


class DownloadError(Exception):
    """Why a download cannot go on, in one line."""


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else err.__class__.__name__


def _has_credentials(kagglehub) -> bool:
    try:
        return kagglehub.config.get_kaggle_credentials() is not None
    except Exception:  # noqa: BLE001 - a malformed kaggle.json is as good as none here
        return False


def fetch(handle: str) -> Path:
    """kagglehub.dataset_download(handle) -> the local folder; DownloadError in one line."""
    try:
        import kagglehub
        import kagglehub.config
        from kagglehub.exceptions import CredentialError, UnauthenticatedError
        from requests.exceptions import ConnectionError, HTTPError, Timeout
    except ImportError:
        raise DownloadError(f"kagglehub is not installed: {INSTALL}") from None
    try:
        return Path(kagglehub.dataset_download(handle))
    except HTTPError as err:  # kagglehub's KaggleApiHTTPError for 401, 403, 404, ...
        status = getattr(err.response, "status_code", None)
        if status in (401, 403):
            if _has_credentials(kagglehub):
                raise DownloadError(f"Kaggle refused the credentials for {handle} (HTTP {status}):"
                                    f" check the API token ({CREDENTIALS})") from None
            raise DownloadError(f"Kaggle refused {handle} without credentials (HTTP {status}): "
                                f"{CREDENTIALS}") from None
        if status == 404:
            raise DownloadError(f"Kaggle has no dataset {handle} (HTTP 404)") from None
        raise DownloadError(f"Kaggle answered HTTP {status} for {handle}: "
                            f"{_first_line(err)}") from None
    except (ConnectionError, Timeout) as err:
        url = getattr(getattr(err, "request", None), "url", None) or "kaggle.com"
        raise DownloadError(f"cannot reach Kaggle ({urlsplit(url).hostname or url}) to download "
                            f"{handle}: offline, or a proxy or firewall in the way "
                            f"({err.__class__.__name__})") from None
    except (UnauthenticatedError, CredentialError):
        raise DownloadError(f"no Kaggle credentials for {handle}: {CREDENTIALS}") from None
    except Exception as err:  # noqa: BLE001 - anything else kagglehub raises, still one line
        raise DownloadError(f"downloading {handle} failed: {err.__class__.__name__}: "
                            f"{_first_line(err)}") from None


def read_all(name: str, folder: Path) -> Readout:
    """The reader's view of `folder` with every clip kept (calm kept, boredom as neutral), so
    the count is the corpus' own; pipelines.eda and pipelines.build apply --calm/--boredom."""
    return read_corpus(name, folder, **KEEP_ALL, **KEEP_ALL_BY_CORPUS.get(name, {}))


def locate(name: str, root: Path) -> tuple[Path, Readout]:
    """The deepest folder below root (root included) whose readout has every clip root's has;
    between equally deep ones, the one with fewest skipped files."""
    try:
        whole = read_all(name, root)
    except CorpusError:
        whole = None
    if whole is None or whole.rows.empty:
        files, _ = audio_files(root)
        example = ""
        if whole is not None and len(whole.skipped):
            path, reason = whole.skipped.iloc[0][["path", "reason"]]
            example = f"; e.g. {Path(path).name}: {reason}"
        raise DownloadError(f"{root}: the download holds no {name} clips its reader recognises "
                            f"({len(files)} audio files{example})")
    wanted = len(whole.rows)
    below = Counter()  # audio files below each folder
    for path in audio_files(root)[0]:
        for parent in path.relative_to(root).parents:
            below[root / parent] += 1
    found = [(0, len(whole.skipped), str(root), whole)]
    for folder, n in below.items():
        if folder != root and n >= wanted:
            readout = read_all(name, folder)
            if len(readout.rows) == wanted:
                found.append((len(folder.relative_to(root).parts), len(readout.skipped),
                              str(folder), readout))
    depth, _, folder, readout = min(found, key=lambda f: (-f[0], f[1], f[2]))
    return Path(folder), readout


def place(found: Path, out: Path, copy: bool) -> str:
    """Put `found` at `out` (a link, or a copy); returns what was done, in words."""
    target = found.resolve()
    if out.is_symlink():
        if not copy and out.resolve() == target:
            return "link already in place"
        raise DownloadError(f"--out {out} is a link to {os.readlink(out)}; remove it or choose "
                            "another --out")
    if out.exists():
        if not out.is_dir() or any(out.iterdir()):
            raise DownloadError(f"--out {out} exists and is not an empty folder; remove it or "
                                "choose another --out")
        out.rmdir()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if not copy:
            out.symlink_to(target, target_is_directory=True)
            return f"linked to {target}"
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
        try:
            shutil.copytree(target, tmp)
            os.rename(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as err:
        raise DownloadError(f"cannot place {target} at {out}: {err.strerror or err}") from None
    return f"copied from {target}"


def summary(name: str, readout: Readout) -> tuple[list[str], str | None]:
    """Readout summary lines, and a warning when the count is short of the published corpus."""
    expect = DATASETS[name][1].EXPECTATION
    rows, skipped = readout.rows, readout.skipped
    emotions = Counter(rows["emotion"])
    lines = [f"{name}: {len(rows)} clips, {rows['speaker'].nunique()} speakers, "
             f"{len(skipped)} skipped (published: {expect.total} clips, "
             f"{len(expect.speakers)} speakers)",
             "  emotions: " + ", ".join(f"{e} {emotions[e]}" for e in ordered(emotions))]
    for reason, n in Counter(skipped["reason"]).most_common(5):
        lines.append(f"  skipped {n}: {reason}")
    lines += [f"  {note}" for note in readout.notes]
    warning = None
    if len(rows) < expect.total:
        warning = (f"warning: {name}: {len(rows)} clips, {expect.total - len(rows)} fewer than "
                   f"the {expect.total} of the published corpus (see the notes above)")
    elif len(rows) > expect.total:
        warning = (f"warning: {name}: {len(rows)} clips, more than the {expect.total} of the "
                   "published corpus")
    return lines, warning


def download(name: str, out, copy: bool = False) -> Readout:
    """Fetch `name` from Kaggle, place its reader's folder at `out`, read it; prints the summary."""
    handle = DATASETS[name][0]
    root = fetch(handle)
    if not root.is_dir():
        raise DownloadError(f"{root}: kagglehub returned no folder for {handle}")
    found, _ = locate(name, root)
    done = place(found, Path(out), copy)
    print(f"{name}: {Path(out)} ({done})")
    readout = read_all(name, Path(out))
    lines, warning = summary(name, readout)
    print("\n".join(lines))
    if warning:
        print(warning, file=sys.stderr)
    return readout


def _corpus_name(text: str) -> str:
    name = ALIASES.get(text.strip().lower(), text.strip().lower())
    if name not in DATASETS:
        raise argparse.ArgumentTypeError(f"unknown corpus {text!r}; one of {', '.join(DATASETS)}")
    return name


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + message
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv=None) -> int:
    parser = _Parser(
        prog="python -m pipelines.download",
        description="Download a corpus from Kaggle with kagglehub, put the folder its reader "
                    "needs at --out (a link into kagglehub's cache, or a copy) and check the "
                    "count against the published corpus.",
        epilog="Corpora: " + ", ".join(f"{n} ({h})" for n, (h, _) in DATASETS.items())
               + ". Needs kagglehub (pip install -e '.[download]'); Kaggle credentials only "
                 "where Kaggle asks for them. Exit status: 0 when --out is in place (a short "
                 "count is a warning), 2 on any error.",
    )
    parser.add_argument("name", type=_corpus_name, metavar="NAME",
                        help=f"corpus: {', '.join(DATASETS)} (aliases: crema-d, emo-db, berlin)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="where the corpus folder goes (must not exist, or be empty)")
    parser.add_argument("--copy", action="store_true",
                        help="copy the files instead of linking to kagglehub's cache")
    args = parser.parse_args(argv)
    try:
        download(args.name, args.out, args.copy)
    except (DownloadError, CorpusError) as err:
        print(f"python -m pipelines.download: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
