"""camflow.runtime.parallel_map: order, the in-process path, errors, the in-flight bound."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator

import pytest

from camflow.runtime import parallel_map


def _slow_square(x: int) -> int:
    """Earlier items take longer, so a pool finishes them out of order."""
    time.sleep(0.002 * (20 - x % 20))
    return x * x


def _pid(_: int) -> int:
    return os.getpid()


def _fail_at_3(x: int) -> int:
    if x == 3:
        raise ValueError("item 3 is bad")
    time.sleep(0.01)
    return x


def _identity(x: int) -> int:
    return x


@pytest.mark.parametrize("chunksize", [None, 1, 3])
def test_order_is_kept_over_a_pool(chunksize: int | None) -> None:
    items = list(range(40))
    out = list(parallel_map(_slow_square, items, 2, progress=False, chunksize=chunksize))
    assert out == [x * x for x in items]
    assert multiprocessing.active_children() == []


def test_workers_are_other_processes() -> None:
    pids = set(parallel_map(_pid, range(8), 2, progress=False, chunksize=1))
    assert os.getpid() not in pids and len(pids) >= 1


@pytest.mark.parametrize("workers", [0, 1])
def test_in_process_when_one_worker(workers: int) -> None:
    # a lambda cannot be pickled: this only works if nothing is sent to a pool
    out = list(parallel_map(lambda x: (x, os.getpid()), iter(range(5)), workers, progress=False))
    assert out == [(x, os.getpid()) for x in range(5)]


def test_single_item_runs_in_process() -> None:
    assert list(parallel_map(_pid, [0], 4, progress=False)) == [os.getpid()]


@pytest.mark.parametrize("max_pending", [None, 2])
def test_worker_error_propagates_and_leaves_no_children(max_pending: int | None) -> None:
    with pytest.raises(ValueError, match="item 3 is bad"):
        list(parallel_map(_fail_at_3, range(30), 2, progress=False, max_pending=max_pending))
    assert multiprocessing.active_children() == []


def test_input_error_propagates_and_leaves_no_children() -> None:
    def source() -> Iterator[int]:
        yield from range(5)
        raise KeyError("no more images")

    with pytest.raises(KeyError, match="no more images"):
        list(parallel_map(_identity, source(), 2, progress=False, max_pending=2))
    assert multiprocessing.active_children() == []


def test_closing_early_leaves_no_children() -> None:
    results = parallel_map(_identity, range(100), 2, progress=False)
    assert next(results) == 0
    assert multiprocessing.active_children()
    results.close()
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("max_pending", [1, 3, 5])
def test_lazy_input_is_drawn_within_the_bound(max_pending: int) -> None:
    drawn: list[int] = []
    children_at_first_draw: list[int] = []

    def source() -> Iterator[int]:
        for i in range(30):
            if not drawn:
                children_at_first_draw.append(len(multiprocessing.active_children()))
            drawn.append(i)
            yield i

    results = parallel_map(_slow_square, source(), 2, progress=False, total=30,
                           max_pending=max_pending)
    assert drawn == []  # nothing happens before the first result is asked for
    out = []
    for result in results:
        out.append(result)
        # results yielded so far: len(out); the one just yielded still counted as in flight
        assert len(drawn) - (len(out) - 1) <= max_pending
        if len(out) == 1:
            assert len(drawn) == max_pending  # the bound is used, not just respected
    assert out == [x * x for x in range(30)]
    assert children_at_first_draw == [2]  # the pool is forked before the first draw
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("option", ["max_pending", "chunksize"])
def test_bad_sizes_are_refused(option: str) -> None:
    with pytest.raises(ValueError, match=option):
        list(parallel_map(_identity, range(3), 2, progress=False, **{option: 0}))
