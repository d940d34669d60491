"""pipelines.common.parallel.imap_ordered: order, early exit and errors leave no worker behind."""

import math
import multiprocessing

import pytest

from pipelines.common.parallel import imap_ordered


def test_results_come_in_input_order():
    items = list(range(700))
    assert list(imap_ordered(math.sqrt, items, workers=2, progress=False, chunksize=7)) == \
        [math.sqrt(i) for i in items]


def test_leaving_early_shuts_the_workers_down():
    for _ in range(5):  # the old Pool-based version hung here now and then
        results = imap_ordered(math.sqrt, range(2000), workers=2, progress=False, chunksize=5)
        assert next(results) == 0.0
        results.close()
        assert multiprocessing.active_children() == []


def test_an_error_in_a_worker_reaches_the_caller():
    with pytest.raises(ValueError, match="math domain error"):
        list(imap_ordered(math.sqrt, [1, 4, 9] * 40 + [-1] + [16] * 200, workers=2,
                          progress=False, chunksize=4))
    assert multiprocessing.active_children() == []
