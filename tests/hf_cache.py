"""A Hugging Face hub cache written by hand, laid out as huggingface_hub lays it out (its
documented cache layout; huggingface_hub.scan_cache_dir reads it back), so that hub ids can be
resolved in tests with HF_HUB_OFFLINE=1 and no network:

    CACHE/models--OWNER--NAME/blobs/<sha256 of the file>
    CACHE/models--OWNER--NAME/snapshots/<40-hex commit>/<file> -> ../../blobs/<sha256>
    CACHE/models--OWNER--NAME/refs/<branch or tag>        (the commit, no newline)

Imports no TensorFlow or transformers.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def add_snapshot(cache, repo_id: str, files, commit: str | None = None,
                 ref: str | None = "main") -> Path:
    """Put `files` (a folder, or {name: bytes or Path}) into CACHE as a snapshot of
    `repo_id` at `commit` (default: a hash of the contents), with refs/<ref> pointing at it
    (ref None: no ref, reachable by commit only). Returns the snapshot folder."""
    if isinstance(files, (str, Path)):
        files = {p.name: p for p in sorted(Path(files).iterdir()) if p.is_file()}
    contents = {name: data if isinstance(data, bytes) else Path(data).read_bytes()
                for name, data in files.items()}
    if commit is None:
        h = hashlib.sha1()
        for name in sorted(contents):
            h.update(name.encode() + b"\0" + contents[name])
        commit = h.hexdigest()
    repo = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        if not blob.exists():
            blob.write_bytes(data)
        link = snapshot / name
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(os.path.relpath(blob, link.parent), link)
    if ref is not None:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot

