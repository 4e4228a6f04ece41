"""What ndpool keeps between calls never changes what a call does.

Checked window arguments are kept by value *and type* (``pooling._checked``),
adaptive geometries per shape, and each plan keeps its pass schedules per
array rank. A call must answer exactly as it would with nothing kept: the
same result, or the same error, whatever was called before it.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ndpool
from ndpool import pooling

# values that are equal (and hash alike) to a dict but not to the checks
EQUAL_BUT_NOT_SAME: list[Any] = [2, 2.0, True, np.int64(2), np.float64(2.0), "2"]
FLAGS: list[Any] = [True, False, 1, 0, np.bool_(True), 1.0, None]


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        out = call()
    except (TypeError, ValueError) as err:
        return type(err).__name__, str(err)
    return "ok", out


def _same(a: tuple[str, Any], b: tuple[str, Any]) -> None:
    assert a[0] == b[0], (a, b)
    if a[0] != "ok":
        assert a[1] == b[1]
        return
    left = a[1] if isinstance(a[1], tuple) else (a[1],)
    right = b[1] if isinstance(b[1], tuple) else (b[1],)
    for u, v in zip(left, right, strict=True):
        assert u.dtype == v.dtype
        np.testing.assert_array_equal(u, v)


def _fresh(call: Any) -> tuple[str, Any]:
    """The outcome with nothing kept."""
    kept = dict(pooling._checked)
    pooling._checked.clear()
    try:
        return _outcome(call)
    finally:
        pooling._checked.clear()
        pooling._checked.update(kept)


argument = st.sampled_from([*EQUAL_BUT_NOT_SAME, (2, 2), [2, 2], (2, 2.0), [True, 2]])


@given(
    calls=st.lists(
        st.tuples(
            st.sampled_from(["kernel_size", "stride", "padding", "dilation"]),
            argument,
            st.sampled_from(FLAGS),
            st.sampled_from(["max_pool2d", "avg_pool2d", "pool"]),
        ),
        min_size=2,
        max_size=6,
    )
)
def test_kept_arguments_answer_as_fresh_ones(calls: list[Any]) -> None:
    """A run of calls whose arguments are equal to a dict but of other types
    (2, 2.0, True, np.int64(2), [2, 2], ...): each answers as it does alone."""
    x = np.arange(2 * 3 * 6 * 7, dtype=np.float32).reshape(2, 3, 6, 7) % 5
    for name, value, flag, fn in calls:
        kw: dict[str, Any] = {"kernel_size": 2, name: value}
        if fn == "pool":
            kw["kernel_size"] = (2, 2) if name != "kernel_size" else value
            kw["ceil_mode"] = flag

            def call(kw: dict[str, Any] = kw) -> Any:
                return ndpool.pool(x, **kw)
        else:
            kw["ceil_mode" if fn == "avg_pool2d" else "return_indices"] = flag
            f = getattr(ndpool, fn)

            def call(kw: dict[str, Any] = kw, f: Any = f) -> Any:
                return f(x, **kw)

        _same(_outcome(call), _fresh(call))


def test_a_float_kernel_is_refused_after_an_int_one() -> None:
    x = np.zeros((1, 1, 4, 4))
    ndpool.max_pool2d(x, 2)
    with pytest.raises(TypeError, match="kernel_size"):
        ndpool.max_pool2d(x, 2.0)  # type: ignore[arg-type]
    ndpool.avg_pool2d(x, 2, ceil_mode=True)
    with pytest.raises(TypeError, match="ceil_mode"):
        ndpool.avg_pool2d(x, 2, ceil_mode=1)  # type: ignore[arg-type]


def test_kept_arguments_are_bounded() -> None:
    for n in range(3 * pooling._CHECKED_KEPT):
        ndpool.max_pool1d(np.zeros((1, 1, 2 + n % 50)), 2, stride=1 + n // 50)
    assert len(pooling._checked) <= pooling._CHECKED_KEPT


def test_unhashable_or_odd_arguments_are_checked_each_time() -> None:
    x = np.arange(16.0).reshape(1, 1, 4, 4)

    class Two(int):  # an int subclass: not kept, checked as given
        pass

    before = len(pooling._checked)
    out = ndpool.max_pool2d(x, Two(2))
    np.testing.assert_array_equal(out, ndpool.max_pool2d(x, 2))
    out = ndpool.pool(x, [2, 2], padding=[(0, 0), [1, 1]])  # a list inside
    assert out.shape == (1, 1, 2, 3)
    assert len(pooling._checked) <= before + 2


def test_one_plan_pooled_at_two_ranks() -> None:
    """A plan is kept per axis and length; its pass schedules per rank."""
    rng = np.random.default_rng(0)
    three = rng.standard_normal((2, 9, 3))
    four = rng.standard_normal((2, 9, 3, 2))
    for _ in range(2):
        got3 = ndpool.pool(three, (3,), axes=(1,), stride=2, padding=1)
        got4 = ndpool.pool(four, (3,), axes=(1,), stride=2, padding=1)
        for x, got in ((three, got3), (four, got4)):
            padded = np.pad(x, [(0, 0), (1, 1)] + [(0, 0)] * (x.ndim - 2),
                            constant_values=-np.inf)  # fmt: skip
            want = np.stack(
                [padded[:, i : i + 3].max(axis=1) for i in range(0, 9, 2)], 1
            )
            np.testing.assert_array_equal(got, want)


def test_threads_share_what_is_kept() -> None:
    """Calls from many threads, all shapes at once, each gets its own answer."""
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((2, 3, 5 + i, 6 + i)) for i in range(8)]
    want = [ndpool.avg_pool2d(x, 3, 2, 1) for x in inputs]
    pooling._checked.clear()
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(200):
                j = (i + k) % len(inputs)
                np.testing.assert_array_equal(
                    ndpool.avg_pool2d(inputs[j], 3, 2, 1), want[j]
                )
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
