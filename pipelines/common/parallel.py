"""One ordered, parallel map over files with a progress bar, shared by every command that
decodes many files (EDA, build, evaluate, predict).

Worker processes come from a 'forkserver' context: they start clean, without any TensorFlow
state the parent may hold (forking a process that runs TensorFlow threads is unsafe).
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Iterator

from tqdm import tqdm


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _apply_chunk(fn: Callable, chunk: list) -> list:
    return [fn(item) for item in chunk]


def imap_ordered(fn: Callable, items: Iterable, workers: int | None = None, desc: str = "",
                 unit: str = "file", progress: bool = True, total: int | None = None,
                 chunksize: int | None = None) -> Iterator:
    """fn(item) for every item, in input order, in `workers` processes (1: in this process).

    `fn` must be importable (a module-level function). Work is handed out in chunks: decoding
    a clip takes milliseconds, so one task per file would be mostly overhead. At most
    2 x workers chunks are in flight, so results never pile up in memory.

    A ProcessPoolExecutor, not multiprocessing.Pool: Pool.terminate() (what leaving a
    `with Pool` block early calls) first takes the task queue's read lock, which an idle worker
    holds while it waits for work, and was seen to hang there. Here leaving early (an error in
    the caller, or close()) cancels the queued chunks and waits only for the running ones.
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
        chunks = iter([items[i:i + chunksize] for i in range(0, len(items), chunksize)])
        executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(
            "forkserver"))
        try:
            window = collections.deque(executor.submit(_apply_chunk, fn, chunk)
                                       for chunk in itertools.islice(chunks, 2 * workers))
            while window:
                results = window.popleft().result()
                following = next(chunks, None)
                if following is not None:
                    window.append(executor.submit(_apply_chunk, fn, following))
                for result in results:
                    yield result
                    bar.update()
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
