"""Dask input: lazy output, chunk by chunk, identical to the NumPy result."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ndpool

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")


def _no_compute(*args: Any, **kwargs: Any) -> Any:
    msg = "computed at call time"
    raise AssertionError(msg)


def _lazy(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call fn with a scheduler that fails if anything is computed."""
    with dask.config.set(scheduler=_no_compute):
        out = fn(*args, **kwargs)
    parts = out if isinstance(out, tuple) else (out,)
    for p in parts:
        assert isinstance(p, da.Array)
    return out


def _check(got: Any, want: Any, exact: bool) -> None:
    got_t = got if isinstance(got, tuple) else (got,)
    want_t = want if isinstance(want, tuple) else (want,)
    computed = dask.compute(*got_t, scheduler="sync")
    for g, w in zip(computed, want_t, strict=True):
        assert g.dtype == w.dtype
        assert g.shape == w.shape
        if exact:
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def _data(shape: tuple[int, ...], seed: int = 0, nan: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, size=shape).astype(np.float32)  # ties
    x[rng.random(shape) < nan] = np.nan
    return x


GRID = [
    (k, s, p, d, c)
    for k, s, p, d, c in itertools.product((1, 2, 3), (1, 2, 3), (0, 1), (1, 2), (0, 1))
    if 2 * p <= k
]


@pytest.mark.parametrize(("k", "s", "p", "d", "c"), GRID)
def test_max_pool2d_with_indices_grid(k: int, s: int, p: int, d: int, c: int) -> None:
    x = _data((2, 3, 13, 11))
    dx = da.from_array(x, chunks=(1, 2, 4, 3))  # chunks smaller than windows
    try:
        want = ndpool.max_pool2d(x, k, s, p, d, bool(c), True)
    except ValueError:
        pytest.skip("invalid geometry")
    got = _lazy(ndpool.max_pool2d, dx, k, s, p, d, bool(c), True)
    _check(got, want, exact=True)


@pytest.mark.parametrize(("k", "s", "p", "c", "cip"), [
    (k, s, p, c, cip)
    for k, s, p, c, cip in itertools.product((2, 3), (1, 2), (0, 1), (0, 1), (0, 1))
])  # fmt: skip
def test_avg_pool2d_grid(k: int, s: int, p: int, c: int, cip: int) -> None:
    x = _data((2, 2, 12, 9), nan=0)
    dx = da.from_array(x, chunks=(2, 1, 5, 2))
    want = ndpool.avg_pool2d(x, k, s, p, bool(c), bool(cip))
    _check(_lazy(ndpool.avg_pool2d, dx, k, s, p, bool(c), bool(cip)), want, False)


@pytest.mark.parametrize("op", ["max", "min", "avg", "sum", "lp"])
@pytest.mark.parametrize("policy", ["propagate", "omit"])
def test_generic_ops_any_axes(op: str, policy: str) -> None:
    x = _data((7, 4, 10), seed=3)
    dx = da.from_array(x, chunks=(3, 2, 4))
    kw: dict[str, Any] = {
        "op": op,
        "axes": (2, 0),
        "stride": (2, 1),
        "padding": "same",
        "nan_policy": policy,
    }
    if op == "lp":
        kw["norm_type"] = 2.0
    want = ndpool.pool(x, (3, 2), **kw)
    _check(_lazy(ndpool.pool, dx, (3, 2), **kw), want, exact=op in ("max", "min"))


def test_channels_last_and_3d() -> None:
    x = _data((2, 6, 7, 5, 3), seed=4)
    dx = da.from_array(x, chunks=(1, 4, 3, 5, 2))
    want = ndpool.max_pool3d(
        x, 2, 1, 1, return_indices=True, data_format="channels_last"
    )
    got = _lazy(
        ndpool.max_pool3d, dx, 2, 1, 1, return_indices=True, data_format="channels_last"
    )
    _check(got, want, exact=True)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 16, (None, 4)])
def test_adaptive(size: Any) -> None:
    x = _data((2, 3, 11, 9), seed=5)
    dx = da.from_array(x, chunks=(1, 3, 3, 4))
    _check(
        _lazy(ndpool.adaptive_max_pool2d, dx, size, True),
        ndpool.adaptive_max_pool2d(x, size, True),
        exact=True,
    )
    _check(
        _lazy(ndpool.adaptive_avg_pool2d, dx, size),
        ndpool.adaptive_avg_pool2d(x, size),
        exact=False,
    )


@pytest.mark.parametrize("policy", ["propagate", "omit"])
@pytest.mark.parametrize("fmt", ["channels_first", "channels_last"])
def test_global(policy: str, fmt: str) -> None:
    x = _data((2, 5, 6, 3), seed=6, nan=0.02)
    dx = da.from_array(x, chunks=(1, 2, 4, 2))
    for fn, exact in [
        (ndpool.global_max_pool, True),
        (ndpool.global_avg_pool, False),
    ]:
        want = fn(x, nan_policy=policy, data_format=fmt)
        _check(_lazy(fn, dx, nan_policy=policy, data_format=fmt), want, exact)


def test_integer_and_unpool_paths() -> None:
    x = np.random.default_rng(7).integers(0, 256, size=(1, 3, 20, 14), dtype=np.uint8)
    dx = da.from_array(x, chunks=(1, 1, 6, 5))
    _check(_lazy(ndpool.max_pool2d, dx, 2), ndpool.max_pool2d(x, 2), exact=True)
    _check(_lazy(ndpool.avg_pool2d, dx, 3, 2, 1), ndpool.avg_pool2d(x, 3, 2, 1), False)


@pytest.mark.parametrize("chunks", [(1, 1, 3, 4), (2, 3, 11, 13), (1, 2, 11, 5)])
@pytest.mark.parametrize("return_indices", [False, True])
def test_fractional_whole_planes(chunks: Any, return_indices: bool) -> None:
    """Windows drawn per (n, c) plane: each task pools whole planes."""
    x = _data((2, 3, 11, 13), seed=8)
    samples = np.random.default_rng(9).random((2, 3, 2), dtype=np.float32)
    kw = {"return_indices": return_indices, "_random_samples": samples}
    want = ndpool.fractional_max_pool2d(x, 3, output_size=(5, 6), **kw)
    dx = da.from_array(x, chunks=chunks)
    got = _lazy(ndpool.fractional_max_pool2d, dx, 3, output_size=(5, 6), **kw)
    _check(got, want, exact=True)
    one = samples[:1]  # unbatched (C, H, W): the first row of samples
    unbatched = _lazy(
        ndpool.fractional_max_pool2d, dx[0], 2, output_ratio=0.5, _random_samples=one
    )
    want = ndpool.fractional_max_pool2d(x[0], 2, output_ratio=0.5, _random_samples=one)
    _check(unbatched, want, exact=True)


def test_pooled_axes_stay_chunked() -> None:
    x = da.zeros((4, 8, 1000, 1000), chunks=(1, 8, 250, 250), dtype=np.float32)
    out = ndpool.max_pool2d(x, 3, 2, 1)
    assert out.shape == (4, 8, 500, 500)
    assert len(out.chunks[2]) > 1
    assert len(out.chunks[3]) > 1
    # one task per output block, each reading a few input chunks
    assert out.numblocks == (4, 1, 4, 4)


@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 12)),
    chunk=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)),
    k=st.integers(1, 3),
    s=st.integers(1, 3),
    d=st.integers(1, 2),
    ceil=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_chunkings(
    shape: tuple[int, int, int],
    chunk: tuple[int, int, int],
    k: int,
    s: int,
    d: int,
    ceil: bool,
    seed: int,
) -> None:
    x = _data(shape, seed=seed, nan=0.1)
    p = k // 2
    try:
        want = ndpool.max_pool1d(x, k, s, p, d, ceil, True)
    except ValueError:
        return
    dx = da.from_array(x, chunks=chunk)
    _check(_lazy(ndpool.max_pool1d, dx, k, s, p, d, ceil, True), want, exact=True)
    want_avg = ndpool.avg_pool1d(x, k, s, p, ceil, False)
    _check(_lazy(ndpool.avg_pool1d, dx, k, s, p, ceil, False), want_avg, exact=False)


def test_distributed_local_cluster() -> None:
    distributed = pytest.importorskip("distributed")
    x = _data((2, 3, 24, 20), seed=8)
    dx = da.from_array(x, chunks=(1, 3, 7, 6))
    want = ndpool.max_pool2d(x, 3, 2, 1, return_indices=True)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        vals, idx = ndpool.max_pool2d(dx, 3, 2, 1, return_indices=True)
        got_v, got_i = client.compute([vals, idx], sync=True)
    np.testing.assert_array_equal(got_v, want[0])
    np.testing.assert_array_equal(got_i, want[1])
