"""How many threads the compute core may use, and the pool that runs them.

The count is, in order of precedence: the value given to
:func:`set_num_threads`, the ``NDPOOL_NUM_THREADS`` environment variable
(read when first needed), or every core this process may run on. NumPy's
ufuncs release the GIL, so threads that each pool a slice of the batch run
in parallel; results never depend on the count.

>>> import ndpool
>>> with ndpool.set_num_threads(1):
...     ndpool.get_num_threads()
1
"""

from __future__ import annotations

import operator
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from types import TracebackType
from typing import SupportsIndex, TypeVar

__all__ = ["executor", "get_num_threads", "set_num_threads", "share"]

T = TypeVar("T")

ENV_VAR = "NDPOOL_NUM_THREADS"

_lock = threading.Lock()
_requested: int | None = None  # set_num_threads; None: env var or all cores
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_sharing = threading.local()  # .active: this thread is running a share's work


def _check(n: object, name: str) -> int:
    """``n`` as an int (a NumPy integer too, not a bool), at least 1."""
    try:
        value = operator.index(n)  # type: ignore[arg-type]
    except TypeError:
        value = None
    if value is None or isinstance(n, bool):
        msg = f"{name} must be a positive int, got {n!r} of type {type(n).__name__}"
        raise TypeError(msg)
    if value < 1:
        msg = f"{name}={value} must be a positive int (1 = single-threaded)"
        raise ValueError(msg)
    return value


def _available_cores() -> int:
    count = getattr(os, "process_cpu_count", None)  # Python >= 3.13
    if count is not None:
        return int(count() or 1)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _from_env() -> int | None:
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        msg = f"{ENV_VAR}={raw!r} must be a positive int"
        raise ValueError(msg) from None
    return _check(value, ENV_VAR)


def get_num_threads() -> int:
    """The number of threads large pooling calls split their work over.

    Examples
    --------
    >>> import ndpool
    >>> ndpool.get_num_threads() >= 1
    True
    """
    if _requested is not None:
        return _requested
    env = _from_env()
    return env if env is not None else _available_cores()


class set_num_threads:
    """Set the thread count; as a context manager, restore it on exit.

    Parameters
    ----------
    n : int
        Threads to use (``1``: single-threaded), at least 1; a NumPy
        integer too (not a bool).

    Examples
    --------
    >>> import ndpool
    >>> before = ndpool.get_num_threads()
    >>> with ndpool.set_num_threads(2):
    ...     ndpool.get_num_threads()
    2
    >>> ndpool.get_num_threads() == before
    True
    """

    def __init__(self, n: SupportsIndex) -> None:
        global _requested
        value = _check(n, "n")
        self._previous = _requested
        _requested = value

    def __enter__(self) -> set_num_threads:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _requested
        _requested = self._previous


def executor(workers: int) -> ThreadPoolExecutor:
    """A shared pool with at least ``workers`` threads (grown on demand)."""
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < workers:
            old = _pool
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="ndpool")
            _pool_size = workers
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def share(work: Callable[[T], object], items: Iterable[T], threads: int) -> None:
    """Call ``work(item)`` for every item, on up to ``threads`` threads.

    The calling thread and ``threads - 1`` pool threads take the items one
    at a time, whichever asks next, so a helper that is slow to wake up (an
    idle virtual CPU can take over a millisecond) delays nothing: the work
    is shared as the threads actually run. The first error stops the
    hand-out and is raised once every thread has stopped.

    A share inside another one's work runs on its own thread alone: the
    outer share already keeps every thread busy, and a pool thread waiting
    for a helper queued behind it would wait for ever.
    """
    todo = list(items)
    if threads <= 1 or len(todo) <= 1 or getattr(_sharing, "active", False):
        for item in todo:  # nothing to share: no lock, no pool
            work(item)
        return
    taken = 0  # items handed out so far; len(todo) once an error stops it
    lock = threading.Lock()

    def drain() -> None:
        nonlocal taken
        outer = getattr(_sharing, "active", False)
        _sharing.active = True
        try:
            while True:
                with lock:
                    if taken >= len(todo):
                        return
                    item = todo[taken]
                    taken += 1
                try:
                    work(item)
                except BaseException:
                    with lock:
                        taken = len(todo)
                    raise
        finally:
            _sharing.active = outer

    helpers = max(0, min(threads, len(todo)) - 1)
    pool, futures = executor(helpers), []
    try:
        for _ in range(helpers):
            futures.append(pool.submit(drain))
    except RuntimeError:  # that pool was shut down meanwhile: fewer helpers
        pass
    try:
        drain()
    finally:
        # a helper that has not started yet has nothing left to do: cancel
        # it rather than wait for it to wake up and find that out
        futures = [f for f in futures if not f.cancel()]
        wait(futures)
    for f in futures:
        f.result()
