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
@pytest.mark.parametrize(
    "chunks",
    [(1, 2, 4, 2), ((1, 1), (0, 5), (2, 0, 4), (3,))],  # chunks of no cell too
)
def test_global(policy: str, fmt: str, chunks: Any) -> None:
    x = _data((2, 5, 6, 3), seed=6, nan=0.02)
    dx = da.from_array(x, chunks=chunks)
    for fn, exact in [
        (ndpool.global_max_pool, True),
        (ndpool.global_avg_pool, False),
    ]:
        want = fn(x, nan_policy=policy, data_format=fmt)
        _check(_lazy(fn, dx, nan_policy=policy, data_format=fmt), want, exact)


def _most_chunks_a_task_reads(arr: Any) -> int:
    graph = dict(arr.__dask_graph__())
    return max(len(dask.core.get_dependencies(graph, k)) for k in graph)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32])
@pytest.mark.parametrize("p", [0.5, 1.0, 2.0, 3.0, -1.5, float("inf")])
@pytest.mark.parametrize("policy", ["propagate", "omit"])
def test_global_norm_is_a_tree_of_norms(dtype: Any, p: float, policy: str) -> None:
    """Whole-plane Lp norms: the norm of the chunks' norms, level by level
    (the core's Lp at each), so no task reads more than a few chunks. A
    window of only NaN, a chunk along a pooled axis with no cell, zeros
    (p < 0) and sums past the float range (the core rescales them)."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 7, 7)) * 3
    if np.dtype(dtype).kind == "f":
        x[rng.random(x.shape) < 0.1] = np.nan
        x[0, 0] = np.nan
        x[1, 1, :3] = 0.0
        x[1, 2] *= 1e15 if dtype != np.float16 else 1e3  # |x|**3 overflows
    x = (x if np.dtype(dtype).kind == "f" else np.abs(x) % 100).astype(dtype)
    tol = {np.float16: 2e-3, np.float32: 2e-6}.get(dtype, 1e-12)
    for chunks in [(1, 2, 3, 2), ((1, 1), (3,), (0, 2, 5), (7,))]:
        dx = da.from_array(x, chunks=chunks)
        want = ndpool.global_lp_pool(x, p, nan_policy=policy)
        got = _lazy(ndpool.global_lp_pool, dx, p, nan_policy=policy)
        assert got.dtype == want.dtype
        np.testing.assert_allclose(
            got.compute().astype(float), want.astype(float), rtol=tol, equal_nan=True
        )
    if np.dtype(dtype).kind == "f" and 0 < p < float("inf"):  # PyTorch's lp_pool
        want = ndpool.lp_pool2d(np.abs(x), p, 7, nan_policy=policy)
        dx = da.from_array(np.abs(x), chunks=2)
        got = _lazy(ndpool.lp_pool2d, dx, p, 7, nan_policy=policy)
        np.testing.assert_allclose(
            got.compute().astype(float), want.astype(float), rtol=tol, equal_nan=True
        )
    big = da.ones((1, 1, 64, 64), chunks=8, dtype=dtype)  # 64 chunks a plane
    assert _most_chunks_a_task_reads(ndpool.global_lp_pool(big, p)) <= 8
    if 0 < p < float("inf") and np.dtype(dtype).kind == "f":
        assert _most_chunks_a_task_reads(ndpool.lp_pool2d(big, p, 64)) <= 8


def _same_bits(got: Any, want: Any) -> None:
    """Equal values and dtypes, zeros' signs included (NaN as one NaN)."""
    assert got.dtype == want.dtype
    if want.dtype.kind == "f":
        got, want = (
            np.where(np.isnan(a), np.nan, a).astype(a.dtype).view(f"u{a.itemsize}")
            for a in (got, want)
        )
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int32, np.bool_])
@pytest.mark.parametrize("op", ["max", "min"])
@pytest.mark.parametrize("policy", ["propagate", "omit"])
@pytest.mark.parametrize("fmt", ["channels_first", "channels_last"])
def test_global_argmax_is_a_tree_of_winners(
    dtype: Any, op: str, policy: str, fmt: str
) -> None:
    """Whole-plane max or min with indices: each chunk's winner, then the
    winner of winners, bit for bit the core's (ties: the first; NaN: the
    last; omitted NaN: the first best real value, or the first cell), with
    no task reading more than a few chunks."""
    rng = np.random.default_rng(12)
    x = rng.integers(-2, 3, (2, 3, 7, 7)).astype(float)
    if np.dtype(dtype).kind == "f":
        x[rng.random(x.shape) < 0.1] = np.nan
        x[0, 0] = np.nan  # all NaN
        x[1, 1] = 0.0
        x[1, 1, 2, 3] = x[1, 1, 5, 5] = -0.0  # zeros of both signs tie
        x[1, 2, 3:] = np.nan
        x[1, 2, :3] = -np.inf if op == "max" else np.inf
    x = x.astype(dtype)
    kw = {"op": op, "nan_policy": policy, "return_indices": True}
    axes = (2, 3)
    chunkings = [
        (1, 2, 3, 2),
        (1, 1, 1, 1),
        ((1, 1), (3,), (0, 2, 5), (7,)),  # no cell in a chunk of a pooled axis
        ((0, 2), (1, 0, 2), (4, 3), (7,)),  # nor in one of a batch axis
    ]
    if fmt == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        axes = (1, 2)
        chunkings = [(c[0], c[2], c[3], c[1]) for c in chunkings]
    want_values, want_indices = ndpool.pool(x, (7, 7), axes=axes, **kw)
    cells = np.moveaxis(x, axes, (-2, -1)).reshape(*np.delete(x.shape, axes), 49)
    for chunks in chunkings:
        dx = da.from_array(x, chunks=chunks)
        got = _lazy(ndpool.pool, dx, (7, 7), axes=axes, **kw)
        values, indices = dask.compute(*got, scheduler="sync")
        _same_bits(indices, want_indices)
        # NumPy's value may be the other zero (docs/differences.md); the
        # tree's is the cell at the index, whatever the chunks
        np.testing.assert_array_equal(values, want_values)
        at = np.moveaxis(indices, axes, (-2, -1)).reshape(*cells.shape[:-1], 1)
        cell = np.take_along_axis(cells, at, axis=-1)
        _same_bits(np.moveaxis(values, axes, (-2, -1)).reshape(cell.shape), cell)
    big = da.ones((1, 1, 64, 64), chunks=8, dtype=dtype)  # 64 chunks a plane
    _, indices = ndpool.adaptive_max_pool2d(big, 1, return_indices=True)
    assert _most_chunks_a_task_reads(indices) <= 8
    out, pullback = ndpool.vjp(ndpool.global_max_pool, big.astype(np.float32))
    assert _most_chunks_a_task_reads(pullback(da.ones(out.shape))) <= 8


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


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.bool_])
@pytest.mark.parametrize("p", [float("inf"), float("-inf")])
def test_lp_pool_inf_of_integers_stays_lazy(dtype: Any, p: float) -> None:
    """PyTorch's lp_pool with p = +-inf is a max of |x|: integer and bool
    input is cast to float64 by Dask itself, lazily."""
    x = (np.arange(32).reshape(1, 2, 16) % 7 - 3).astype(dtype)
    dx = da.from_array(x, chunks=(1, 1, 3))
    want = ndpool.lp_pool1d(x, p, 2)
    _check(_lazy(ndpool.lp_pool1d, dx, p, 2), want, exact=True)
    x2 = x.reshape(1, 2, 4, 4)
    want = ndpool.lp_pool2d(x2, p, 3, 1, True)
    _check(
        _lazy(ndpool.lp_pool2d, da.from_array(x2, chunks=2), p, 3, 1, True), want, True
    )


WHOLE_AXIS: list[tuple[Any, str, dict[str, Any]]] = [
    (np.array([[[1.6, 0.2, 2.5, 3.5]]]), "global_max_pool", {"dtype": "uint8"}),
    (np.array([[[1.6, 0.2, 2.5, 3.5]]]), "global_avg_pool", {"dtype": "uint8"}),
    (np.array([[[1.6, 0.2, np.nan, 3.5]]]), "global_max_pool", {"dtype": "int8"}),
    (np.array([[[1e19, -3.0], [-1e19, 2.0]]]), "global_max_pool", {"dtype": "int64"}),
    (
        np.full((1, 1, 6), 100, np.int64),
        "pool",
        {"kernel": 6, "op": "sum", "dtype": "int8"},
    ),
    (
        np.full((1, 1, 6), 100, np.int8),
        "pool",
        {"kernel": 6, "op": "sum", "dtype": "int8"},
    ),
    (
        np.array([[[-1.6, -0.2, -2.5]]]),
        "pool",
        {"kernel": 3, "op": "sum", "dtype": "uint8"},
    ),
    (
        np.array([[[7, 200, 3]]], np.uint8),
        "pool",
        {"kernel": 3, "op": "min", "dtype": "int8"},
    ),
    (
        np.array([[[7, 9, 3, 4]]], np.uint16),
        "pool",
        {"kernel": 4, "op": "avg", "dtype": "uint8"},
    ),
]


@pytest.mark.parametrize(("x", "name", "kw"), WHOLE_AXIS)
def test_whole_axis_integer_dtype_rounds_and_saturates(
    x: np.ndarray, name: str, kw: dict[str, Any]
) -> None:
    """Windows spanning whole axes go through Dask's reductions, then the
    core's cast per block: to nearest, saturated, NaN to 0, as NumPy."""
    kw = dict(kw)
    args = (kw.pop("kernel"),) if name == "pool" else ()
    fn = getattr(ndpool, name)
    want = fn(x, *args, **kw)
    _check(_lazy(fn, da.from_array(x, chunks=1), *args, **kw), want, exact=True)


@pytest.mark.parametrize(
    "call",
    [
        lambda a: ndpool.global_max_pool(a),
        lambda a: ndpool.global_max_pool(a, nan_policy="omit"),
        lambda a: ndpool.pool(a, (5, 5), op="min"),
        lambda a: ndpool.adaptive_max_pool2d(a, 1),
        lambda a: ndpool.global_avg_pool(a),
        lambda a: ndpool.fractional_max_pool2d(a, 2, output_size=2),
        lambda a: ndpool.fractional_max_pool2d(
            a, 2, output_size=2, return_indices=True
        ),
    ],
)
def test_empty_batch(call: Any) -> None:
    """N = 0 gives NumPy's empty result (shape and dtype), lazily."""
    x = np.zeros((0, 2, 5, 5), np.float32)
    _check(_lazy(call, da.from_array(x, chunks=(1, 1, 2, 3))), call(x), exact=True)


@pytest.mark.parametrize("fmt", ["channels_first", "channels_last"])
@pytest.mark.parametrize("return_indices", [False, True])
def test_fractional_lazy_samples(fmt: str, return_indices: bool) -> None:
    """Dask ``_random_samples`` are read by the tasks, not at call time."""
    x = _data((3, 4, 11, 13), seed=10)
    if fmt == "channels_last":
        x = np.moveaxis(x, 1, -1).copy()
    samples = np.random.default_rng(11).random((4, 4, 2), dtype=np.float32)
    kw = {"return_indices": return_indices, "data_format": fmt}
    want = ndpool.fractional_max_pool2d(x, 3, (5, 6), _random_samples=samples, **kw)
    dx = da.from_array(x, chunks=(2, 3, 4, 5))
    ds = da.from_array(samples, chunks=(1, 3, 1))
    got = _lazy(ndpool.fractional_max_pool2d, dx, 3, (5, 6), _random_samples=ds, **kw)
    _check(got, want, exact=True)
    one = samples[:1]  # unbatched (C, H, W): the first row of samples
    unbatched = {"output_ratio": 0.5, "data_format": fmt}
    want = ndpool.fractional_max_pool2d(x[0], 2, _random_samples=one, **unbatched)
    got = _lazy(
        ndpool.fractional_max_pool2d, dx[0], 2, _random_samples=da.from_array(one),
        **unbatched,
    )  # fmt: skip
    _check(got, want, exact=True)
    with pytest.raises(TypeError, match="_random_samples must have the input's dtype"):
        ndpool.fractional_max_pool2d(
            dx, 3, (5, 6), _random_samples=ds.astype("f8"), **kw
        )
    with pytest.raises(ValueError, match=r"_random_samples must have shape"):
        ndpool.fractional_max_pool2d(dx, 3, (5, 6), _random_samples=ds[:, :2], **kw)


def test_unknown_chunk_sizes_are_named() -> None:
    d = da.from_array(np.arange(20.0).reshape(1, 1, 20), chunks=5)
    d = d[:, :, d[0, 0] > 3]  # a boolean index: lengths unknown
    for fn, args in [
        (ndpool.max_pool1d, (2,)),
        (ndpool.avg_pool1d, (2,)),
        (ndpool.lp_pool1d, (float("inf"), 2)),
        (ndpool.adaptive_avg_pool1d, (1,)),
        (ndpool.pool, (2,)),
        (ndpool.global_max_pool, ()),
        (ndpool.global_avg_pool, ()),
    ]:
        with pytest.raises(ValueError, match=r"compute_chunk_sizes\(\)"):
            fn(d, *args)
    x = da.from_array(_data((1, 2, 6, 6)), chunks=2)
    samples = da.from_array(np.full((3, 2, 2), 0.5, np.float32), chunks=1)
    unknown = samples[samples[:, 0, 0] > 0]
    with pytest.raises(ValueError, match=r"_random_samples.*compute_chunk_sizes"):
        ndpool.fractional_max_pool2d(x, 2, 3, _random_samples=unknown)


def _brute_cells(plan: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per window, the input cells it reads, ``[lo, hi)``, cell by cell."""
    lo, hi = [], []
    for i in range(plan.out):
        start = i * plan.stride - plan.pad_before
        taps = [start + j * plan.dilation for j in range(plan.taps)]
        inside = [t for t in taps if 0 <= t < plan.length]
        clipped = min(max(start, 0), plan.length)
        lo.append(inside[0] if inside else clipped)
        hi.append(inside[-1] + 1 if inside else clipped)
    return np.array(lo, dtype=np.int64), np.array(hi, dtype=np.int64)


@given(
    length=st.integers(1, 40),
    k=st.integers(1, 12),
    s=st.integers(1, 5),
    d=st.integers(1, 9),
    pads=st.tuples(st.integers(0, 60), st.integers(0, 60)),
    ceil=st.booleans(),
)
def test_block_bounds_match_a_cell_by_cell_count(
    length: int, k: int, s: int, d: int, pads: tuple[int, int], ceil: bool
) -> None:
    """The cells a run of windows reads, and the windows a chunk feeds, come
    from closed forms inside the input and tables at its borders only: they
    equal a cell-by-cell count."""
    from ndpool._dask import _needed, _touching
    from ndpool._geometry import _regular_axis

    span = d * (k - 1) + 1
    pb, pa = (min(p, span - 1) for p in pads)
    plan = _regular_axis(0, length, k, s, d, pb, pa, ceil)
    if plan.out < 1:
        return
    lo, hi = _brute_cells(plan)
    for o0, o1 in itertools.combinations(range(plan.out + 1), 2):
        a = int(lo[o0:o1].min())
        assert _needed(plan, o0, o1) == (a, max(int(hi[o0:o1].max()), a))
    for c0, c1 in itertools.combinations(range(length + 1), 2):
        if plan.has_empty_window:
            want: Any = (0, plan.out, *_needed(plan, 0, plan.out))
        else:
            hits = np.flatnonzero((lo < c1) & (hi > c0) & (hi > lo))
            want = None
            if hits.size:
                w0, w1 = int(hits[0]), int(hits[-1]) + 1
                w_a = int(lo[w0:w1].min())
                want = (w0, w1, w_a, max(int(hi[w0:w1].max()), w_a))
        assert _touching(plan, c0, c1) == want, (c0, c1)


def test_long_lazy_axis_builds_no_whole_axis_tables() -> None:
    """A 10**9-cell lazy axis: its graph is built from each block's
    windows (closed forms), in well under the memory of one table."""
    import tracemalloc

    x = da.zeros((1, 1, 10**9), dtype=np.float32, chunks=(1, 1, 10**8))
    tracemalloc.start()
    try:
        out = _lazy(ndpool.functional.max_pool1d, x, 3, 1, 1)
        with dask.config.set(scheduler=_no_compute):
            _, pullback = ndpool.vjp(ndpool.functional.avg_pool1d, x, 3, 1, 1)
        grad = _lazy(pullback, da.ones(out.shape, chunks=10**8))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == grad.shape == x.shape
    assert peak < 10**7  # one whole-axis int64 table is 8 * 10**9 bytes
    head = out[0, 0, :5].compute(scheduler="sync")
    np.testing.assert_array_equal(head, np.zeros(5, np.float32))


@given(
    length=st.integers(20, 120),
    chunk=st.integers(1, 30),
    k=st.integers(10, 60),
    s=st.integers(5, 60),
    d=st.integers(1, 3),
    pads=st.tuples(st.integers(0, 200), st.integers(0, 200)),
    op=st.sampled_from(["max", "avg", "sum", "lp"]),
    seed=st.integers(0, 2**16),
)
def test_few_windows_of_many_taps_any_chunking(
    length: int,
    chunk: int,
    k: int,
    s: int,
    d: int,
    pads: tuple[int, int],
    op: str,
    seed: int,
) -> None:
    """Chunked blocks fold their few windows window by window, as the whole
    input does (restricted plans read whole-input tables): the same result,
    indices and gradient as NumPy."""
    span = d * (k - 1) + 1
    padding = (tuple(min(p, span - 1) for p in pads),)
    x = _data((2, length), seed=seed, nan=0.1)
    kw: dict[str, Any] = {"stride": s, "dilation": d, "padding": padding, "op": op}
    kw["norm_type"] = 2.0 if op == "lp" else None
    try:
        want = ndpool.pool(x, k, return_indices=op == "max", **kw)
    except ValueError:  # no window fits
        return
    dx = da.from_array(x, chunks=(1, chunk))
    got = _lazy(ndpool.pool, dx, k, return_indices=op == "max", **kw)
    _check(got, want, exact=op in ("max", "sum"))
    if op == "max":
        return
    clean = np.nan_to_num(x)
    out, want_pb = ndpool.vjp(ndpool.pool, clean, k, **kw)
    _, pullback = ndpool.vjp(
        ndpool.pool, da.from_array(clean, chunks=(1, chunk)), k, **kw
    )
    g = np.random.default_rng(seed).standard_normal(out.shape).astype(np.float32)
    _check(pullback(g), want_pb(g), exact=False)


@pytest.mark.parametrize("size", [(64, 64), (40, 3), 200])
def test_adaptive_upsampling_keeps_blocks_chunk_sized(size: Any) -> None:
    """Adaptive pooling to more cells than the input has: output blocks are
    at most a chunk's length on each pooled axis (they were as many times
    the chunk as the output is larger, on every axis: 64x64 from 8x8 in
    chunks of 4 made blocks of 32x32), and equal NumPy's."""
    x = _data((1, 2, 8, 8), seed=9)
    dx = da.from_array(x, chunks=(1, 2, 4, 4))
    got = ndpool.adaptive_avg_pool2d(dx, size)
    for axis in (2, 3):
        assert max(got.chunks[axis]) <= max(4, -(-got.shape[axis] // 32))
    _check(got, ndpool.adaptive_avg_pool2d(x, size), exact=False)
    got_max = ndpool.adaptive_max_pool2d(dx, size, True)
    _check(got_max, ndpool.adaptive_max_pool2d(x, size, True), exact=True)


@pytest.mark.parametrize(
    ("fn", "kwargs"),
    [
        (ndpool.global_max_pool, {}),
        (ndpool.global_lp_pool, {"norm_type": float("inf")}),
        (ndpool.global_lp_pool, {"norm_type": 2.0}),
        (ndpool.global_avg_pool, {}),
    ],
)
def test_global_casts_warn_as_numpy_does(fn: Any, kwargs: Any) -> None:
    """A max cast past float16's range warns, as NumPy's does; a sum's or
    a p-norm's is quiet, as the core's is."""
    import warnings

    x = np.full((1, 1, 4, 4), 1e30, np.float32)
    counts = []
    for source in (x, da.from_array(x, chunks=2)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = fn(source, dtype=np.float16, **kwargs)
            if not isinstance(out, np.ndarray):
                out.compute()
        counts.append(len(caught))
    assert counts[0] == counts[1]
