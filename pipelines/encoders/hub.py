"""Checkpoints by Hugging Face hub id: `--checkpoint facebook/hubert-base-ls960`, or
`owner/name@revision` (a branch, tag or commit), for HuBERT, Wav2Vec2 and Whisper.

    folder, snap = local_or_hub(value, wanted)   # snap is None for a local folder
    snap.describe()                              # {'repo_id', 'revision', 'commit'}

A value that exists on disk is a local path, whatever it looks like. Otherwise a value of the
form owner/name[@revision] is a hub id, resolved with huggingface_hub's snapshot_download into
the standard cache (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub; read when
called, not when imported): the cache first (local_files_only), the network only when the
cache lacks it and HF_HUB_OFFLINE is not set, and then only the files the zoo reads (`Wanted`:
the configs and ONE weights file, the first the repository has in the zoo's order). The
snapshot folder's name is the commit, recorded with the id so that a result can be traced.
Every failure is one line (HubError) naming the id; huggingface_hub is imported only here and
only for a hub id.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

# owner/name as the hub spells them, optionally @revision (branch, tag, commit, refs/pr/N)
HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)"
                    r"(?:@(?P<revision>[\w.][\w./-]*))?$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
TRUE = {"1", "ON", "YES", "TRUE"}  # as huggingface_hub reads its switches


class HubError(ValueError):
    """A hub id that cannot be resolved; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Wanted:
    """What the zoo reads from a repository: every `required` file and the first of `weights`
    the repository has (an `.index.json` brings its shards); `note` ends the message when it
    has none of them."""

    required: tuple[str, ...]
    weights: tuple[str, ...]
    note: str = ""

    def patterns(self, repo_files) -> list[str] | None:
        """allow_patterns for snapshot_download, or None when no weights file is there."""
        files = set(repo_files)
        for name in self.weights:
            if name in files:
                if name.endswith(".index.json"):  # its shards: model-*.safetensors
                    stem, ext = name[:-len(".index.json")].split(".", 1)
                    return [*self.required, name, f"{stem}-*.{ext}"]
                return [*self.required, name]
        return None

    def missing(self, folder: Path) -> list[str]:
        """What a snapshot folder lacks of this (empty when it is complete)."""
        out = [name for name in self.required if not (folder / name).is_file()]
        present = [name for name in self.weights if (folder / name).is_file()]
        if not present:
            return out + [f"a weights file ({', '.join(self.weights)})"]
        if present[0].endswith(".index.json"):
            try:
                parts = json.loads((folder / present[0]).read_text())["weight_map"].values()
            except (OSError, ValueError, KeyError, AttributeError):
                return out + [present[0]]
            out += sorted({p for p in parts if not (folder / p).is_file()})
        return out


@dataclasses.dataclass(frozen=True)
class HubSnapshot:
    """A resolved hub id: the snapshot folder in the cache and the commit it holds."""

    repo_id: str
    revision: str
    commit: str
    folder: Path

    def describe(self) -> dict:
        return {"repo_id": self.repo_id, "revision": self.revision, "commit": self.commit}


def parse(value) -> tuple[str, str | None] | None:
    """(repo_id, revision or None) when `value` has the form of a hub id, else None."""
    m = HUB_ID.match(str(value))
    if m is None or ".." in m["repo"] or "--" in m["repo"]:
        return None
    return m["repo"], m["revision"]


def is_hub_id(value) -> bool:
    """True for a value that names no local path and has the form owner/name[@revision]."""
    return value is not None and not Path(value).exists() and parse(value) is not None


def cache_dir() -> Path:
    """The hub cache huggingface_hub uses, from the environment as it is now."""
    env = os.environ
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(key):
            return Path(os.path.expandvars(os.path.expanduser(env[key])))
    if env.get("HF_HOME"):
        return Path(os.path.expandvars(os.path.expanduser(env["HF_HOME"]))) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as set now; huggingface_hub's own reading
    (at its import) when neither is set."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    if value:
        return value.upper() in TRUE
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def local_or_hub(value, wanted: Wanted, progress=print) -> tuple[Path, HubSnapshot | None]:
    """(folder, None) for a local path or anything not shaped like a hub id (the caller
    reports a missing folder), else (snapshot folder, HubSnapshot)."""
    if not is_hub_id(value):
        return Path(value), None
    snap = resolve(str(value), wanted, progress)
    return snap.folder, snap


def resolve(value: str, wanted: Wanted, progress=print) -> HubSnapshot:
    """The snapshot of hub id `value` holding `wanted`, from the cache or downloaded."""
    parsed = parse(value)
    if parsed is None:
        raise HubError(f"{value}: not a Hugging Face hub id (owner/name or owner/name@revision)")
    repo_id, revision = parsed
    cache, off = cache_dir(), offline()
    where = f"HF_HUB_OFFLINE=1, cache {cache}" if off else f"cache {cache}"
    folder = _cached(value, repo_id, revision, cache)
    how = "in the local Hugging Face cache"
    lacking = wanted.missing(folder) if folder is not None else []
    if lacking:
        if off:
            raise HubError(f"{value}: the cached snapshot {folder} lacks {lacking[0]} and "
                           "cannot be completed here (HF_HUB_OFFLINE=1); fetch it where the "
                           "hub is reachable")
        folder = None  # fetch what is missing
    if folder is None:
        if off:
            raise HubError(f"{value}: not a local folder, and not in the local Hugging Face "
                           f"cache ({where}) and cannot be downloaded here: offline mode; "
                           "download it where the hub is reachable and copy the cache, or "
                           "pass a local folder (docs/ssl.md)")
        folder = _download(value, repo_id, revision, cache, wanted, where)
        how = "downloaded"
        lacking = wanted.missing(folder)
        if lacking:
            raise HubError(f"{value}: the downloaded snapshot {folder} lacks {lacking[0]}")
    commit = folder.name
    if not COMMIT.match(commit):
        raise HubError(f"{value}: {folder} is not a snapshot of the hub cache (no commit name)")
    snap = HubSnapshot(repo_id, revision or "main", commit, folder)
    if progress:
        progress(f"{value}: commit {commit[:12]}, {how}: {folder}")
    return snap


def _cached(value: str, repo_id: str, revision: str | None, cache: Path) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=str(cache),
                                      local_files_only=True))
    except LocalEntryNotFoundError:
        return None
    except Exception as err:  # noqa: BLE001  huggingface_hub raises several kinds
        raise HubError(explain(value, err, cache)) from None


def _download(value: str, repo_id: str, revision: str | None, cache: Path, wanted: Wanted,
              where: str) -> Path:
    from huggingface_hub import HfApi, snapshot_download

    try:
        files = HfApi().list_repo_files(repo_id, revision=revision)
    except Exception as err:  # noqa: BLE001  network, HTTP, validation
        raise HubError(explain(value, err, cache, where)) from None
    absent = [name for name in wanted.required if name not in files]
    if absent:
        raise HubError(f"{value}: the repository has no {absent[0]}, which the zoo reads; not "
                       "a checkpoint of this kind?")
    patterns = wanted.patterns(files)
    if patterns is None:
        raise HubError(f"{value}: the repository has none of the weights files the zoo reads "
                       f"({', '.join(wanted.weights)}){wanted.note}")
    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=str(cache),
                                      allow_patterns=patterns))
    except Exception as err:  # noqa: BLE001  network, HTTP, disk
        raise HubError(explain(value, err, cache, where)) from None


def _first_line(err: BaseException) -> str:
    return ((str(err).strip().splitlines() or [type(err).__name__])[0])[:200]


def explain(value: str, err: BaseException, cache: Path, where: str | None = None) -> str:
    """One line for an exception of huggingface_hub about hub id `value`."""
    from huggingface_hub.errors import (
        GatedRepoError, HfHubHTTPError, HFValidationError, LocalEntryNotFoundError,
        OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError,
    )

    login = "log in with huggingface-cli login or set HF_TOKEN"
    parsed = parse(value) or (value, None)
    if isinstance(err, GatedRepoError):
        return f"{value}: a gated repository: accept its conditions on huggingface.co and {login}"
    if isinstance(err, RepositoryNotFoundError):
        return (f"{value}: not a local folder, and no such repository on the Hugging Face hub "
                f"(or a private one: {login})")
    if isinstance(err, RevisionNotFoundError):
        return f"{value}: {parsed[0]} has no revision {parsed[1]!r} on the Hugging Face hub"
    if isinstance(err, HFValidationError):
        return f"{value}: not a valid Hugging Face hub id ({_first_line(err)})"
    connection = (ConnectionError, TimeoutError, LocalEntryNotFoundError, OfflineModeIsEnabled)
    try:
        import requests

        connection += (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
    except ImportError:  # huggingface_hub 1.x uses httpx
        pass
    if isinstance(err, connection):
        cause = err.__cause__ or err.__context__ or err
        return (f"{value}: not a local folder, and not in the local Hugging Face cache "
                f"({where or f'cache {cache}'}) and cannot be downloaded here: "
                f"{type(cause).__name__}: {_first_line(cause)}")
    if isinstance(err, HfHubHTTPError):
        return f"{value}: the Hugging Face hub refused the request: {_first_line(err)}"
    return f"{value}: {type(err).__name__}: {_first_line(err)}"


def hub_note(hub: dict | None) -> str:
    """', hub id owner/name@revision at commit 0123456789ab' for model cards; '' without."""
    if not hub:
        return ""
    return f", hub id {hub['repo_id']}@{hub['revision']} at commit {hub['commit'][:12]}"
