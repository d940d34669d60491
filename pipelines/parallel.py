"""One ordered, parallel map over files with a progress bar, shared by every command that
decodes many files (EDA, build, evaluate, predict).

Worker processes come from a 'forkserver' context: they start clean, without any TensorFlow
state the parent may hold (forking a process that runs TensorFlow threads is unsafe).
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Callable, Iterable, Iterator

from tqdm import tqdm


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def imap_ordered(fn: Callable, items: Iterable, workers: int | None = None, desc: str = "",
                 unit: str = "file", progress: bool = True, total: int | None = None,
                 chunksize: int | None = None) -> Iterator:
    """fn(item) for every item, in input order, in `workers` processes (1: in this process).

    `fn` must be importable (a module-level function). Work is handed out in chunks: decoding
    a clip takes milliseconds, so one task per file would be mostly overhead.
    """
    items = list(items)
    workers = max(1, min(workers or default_workers(), len(items) or 1))
    bar = tqdm(total=total or len(items), desc=desc, unit=unit,
               disable=None if progress else True)
    with bar:
        if workers == 1:
            for item in items:
                yield fn(item)
                bar.update()
            return
        chunksize = chunksize or max(1, min(64, len(items) // (workers * 8)))
        with multiprocessing.get_context("forkserver").Pool(workers) as pool:
            for result in pool.imap(fn, items, chunksize=chunksize):
                yield result
                bar.update()
