"""Gradients (``ndpool.vjp``) and unpooling of Dask arrays.

For a Dask ``x``, ``out, pullback = ndpool.vjp(fn, x, ...)`` gives ``out``
exactly as ``fn`` gives it for Dask input (lazy), and ``pullback(g)`` (``g``
a Dask or NumPy array of the pooled values' shape) a lazy Dask array with
``x``'s shape, dtype and chunks, equal to the NumPy pullback of the same call
on ``x.compute()``: bit-exact for the routed gradients (max, min, adaptive
max, Lp with ``p = inf``, unpool), within float tolerance for the spread ones
(average, sum, adaptive average, Lp, global average / Lp).

The routed cases use ties (integer-valued data) and a normal ``g``: where
windows overlap, a cell's sum is bit-exact only if the chunk tasks add the
window gradients in the NumPy pullback's order, which they do.

``max_unpool*d`` with a Dask input (and Dask or NumPy indices) is lazy and
bit-identical to the NumPy result.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from hypothesis import given, reject
from hypothesis import strategies as st

import ndpool

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

#: (rtol, atol) of the spread (non-routed) gradients, per dtype
TOL = {
    np.dtype(np.float64): (1e-12, 1e-12),
    np.dtype(np.float32): (1e-5, 1e-6),
    np.dtype(np.float16): (1e-3, 1e-3),
}

SHAPE_1D = (2, 3, 13)
SHAPE_2D = (2, 3, 10, 11)
SHAPE_3D = (1, 2, 6, 7, 5)
STYLES = ("tiny", "uneven", "single")


def rotate(i: int, n: int = 2) -> tuple[str, ...]:
    """``n`` of the chunk styles for the ``i``-th case of a grid, in turn."""
    return tuple(STYLES[(i + j) % len(STYLES)] for j in range(n))


# --------------------------------------------------------------------------
# helpers


def ties(
    shape: tuple[int, ...], dtype: Any = np.float32, seed: int = 0, nan: float = 0.0
) -> np.ndarray:
    """Integer-valued floats in [-3, 3]: many ties in every window."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, size=shape).astype(dtype)
    x[rng.random(shape) < nan] = np.nan
    return x


def smooth(shape: tuple[int, ...], dtype: Any = np.float64, seed: int = 0) -> Any:
    """Positive, away from zero and ties: a smooth Lp."""
    return (np.abs(np.random.default_rng(seed).standard_normal(shape)) + 0.5).astype(
        dtype
    )


def grad_out(shape: tuple[int, ...], dtype: Any, exact: bool, seed: int = 1) -> Any:
    """A gradient of the pooled output: normal floats, whose sums where
    windows overlap depend on the order of the additions."""
    del exact  # routed sums follow the NumPy pullback's order: exact anyway
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


_PATTERNS = ((1,), (2,), (3, 5), (4,))


def _uneven(length: int, pattern: tuple[int, ...]) -> tuple[int, ...]:
    out: list[int] = []
    for step in itertools.cycle(pattern):
        if sum(out) >= length:
            break
        out.append(min(step, length - sum(out)))
    return tuple(out) or (0,)


def chunks_for(shape: tuple[int, ...], style: str) -> Any:
    """A chunking of ``shape``.

    tiny: 1 cell a chunk along axis 0, 2 along the others (smaller than the
    kernels), but axis 1 whole when there are 4 or more axes (the channels, in
    the channels-first layout: fewer blocks, a faster test); uneven: explicit
    unequal chunks, ``((1, 1), (2, 1), (3, 5, 2), (4, 4, 3))`` for
    ``(2, 3, 10, 11)``; single: one chunk; mixed: whole leading axis, 3 cells
    along the others.
    """
    if style == "tiny":
        whole = {1} if len(shape) >= 4 else set()
        return tuple(
            max(1, s) if i in whole else max(1, min(1 if i == 0 else 2, s))
            for i, s in enumerate(shape)
        )
    if style == "uneven":
        return tuple(
            _uneven(s, _PATTERNS[i % len(_PATTERNS)]) for i, s in enumerate(shape)
        )
    if style == "single":
        return tuple(max(s, 1) for s in shape)
    assert style == "mixed"
    return tuple(max(s, 1) if i == 0 else 3 for i, s in enumerate(shape))


#: how each chunk style hands its gradient to the pullback: tiny gives one
#: chunk, single splits it, uneven keeps the output's chunks, mixed NumPy
G_KIND = {
    "tiny": "dask-other",
    "uneven": "dask-same",
    "single": "dask-other",
    "mixed": "numpy",
}


def as_g(g: np.ndarray, kind: str, out_chunks: tuple[tuple[int, ...], ...]) -> Any:
    """``g`` as the pullback gets it: NumPy, or Dask with or without out's chunks."""
    if kind == "numpy":
        return g
    if kind == "dask-same":
        dg = da.from_array(g, chunks=out_chunks)
        assert dg.chunks == out_chunks
        return dg
    assert kind == "dask-other"
    if all(len(c) <= 1 for c in out_chunks):  # a single block: split it
        return da.from_array(g, chunks=tuple(max(1, (s + 1) // 2) for s in g.shape))
    return da.from_array(g, chunks=-1)


def _no_compute(*args: Any, **kwargs: Any) -> Any:
    msg = "computed at call time"
    raise AssertionError(msg)


@contextmanager
def no_compute() -> Iterator[None]:
    """Fail if anything is computed (through Dask's scheduler) inside."""
    with dask.config.set(scheduler=_no_compute):
        yield


def _parts(out: Any) -> tuple[Any, ...]:
    return out if isinstance(out, tuple) else (out,)


def assert_close(got: np.ndarray, want: np.ndarray, exact: bool) -> None:
    assert isinstance(got, np.ndarray)
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    if exact:
        np.testing.assert_array_equal(got, want)
    else:
        rtol, atol = TOL.get(want.dtype, TOL[np.dtype(np.float32)])
        np.testing.assert_allclose(
            got.astype(np.float64),
            want.astype(np.float64),
            rtol=rtol,
            atol=atol,
            equal_nan=True,
        )


def check_vjp(
    fn: Callable[..., Any],
    x: np.ndarray,
    chunks: Any,
    *args: Any,
    exact: bool,
    g_kind: str = "numpy",
    **kwargs: Any,
) -> None:
    """vjp of fn on Dask x against vjp of fn on the same values in NumPy."""
    try:
        want_out, want_pb = ndpool.vjp(fn, x, *args, **kwargs)
    except ValueError:
        pytest.skip("a geometry the NumPy forward refuses")
    dx = da.from_array(x, chunks=chunks)
    out, pullback = ndpool.vjp(fn, dx, *args, **kwargs)
    assert isinstance(out, tuple) == isinstance(want_out, tuple)
    for part in _parts(out):
        assert isinstance(part, da.Array)
    values = _parts(out)[0]
    want_values = _parts(want_out)[0]
    assert values.shape == want_values.shape

    g = grad_out(want_values.shape, x.dtype, exact)
    want = want_pb(g)
    with no_compute():  # the pullback only builds a graph
        grad = pullback(as_g(g, g_kind, values.chunks))
    assert isinstance(grad, da.Array)
    assert grad.shape == x.shape
    assert grad.dtype == x.dtype
    assert grad.chunks == dx.chunks

    *got_out, got = dask.compute(*_parts(out), grad, scheduler="sync")
    for part, ref in zip(got_out, _parts(want_out), strict=True):
        assert_close(part, ref, exact or ref.dtype.kind == "i")
    assert_close(got, want, exact)


# --------------------------------------------------------------------------
# max pooling: kernel, stride, padding, dilation, ceil_mode, return_indices


def _max_cases() -> list[Any]:
    out = []
    shapes = {1: SHAPE_1D, 2: SHAPE_2D, 3: SHAPE_3D}
    for nd in (1, 2, 3):
        grid = itertools.product((2, 3), (1, 2), (0, 1), (1, 2), (False, True))
        for i, (k, s, p, d, ceil) in enumerate(grid):
            # 2-d: the whole grid, two chunkings a case; 1-d and 3-d: one, over
            # half the grid (1-d: an even number of second choices, 3-d: odd)
            if nd != 2 and bin(i).count("1") % 2 != nd // 3:
                continue
            for style in rotate(i, 2 if nd == 2 else 1):
                ri = i % 3 == 0
                ident = f"{nd}d-k{k}s{s}p{p}d{d}{'-ceil' * ceil}{'-idx' * ri}-{style}"
                values = (nd, shapes[nd], k, s, p, d, ceil, ri, style)
                out.append(pytest.param(*values, id=ident))
    return out


@pytest.mark.parametrize(
    ("nd", "shape", "k", "s", "p", "d", "ceil", "ri", "style"), _max_cases()
)
def test_max_pool_grad(
    nd: int,
    shape: tuple[int, ...],
    k: int,
    s: int,
    p: int,
    d: int,
    ceil: bool,
    ri: bool,
    style: str,
) -> None:
    fn = getattr(ndpool, f"max_pool{nd}d")
    check_vjp(
        fn, ties(shape, seed=nd), chunks_for(shape, style), k, s, p, d, ceil, ri,
        exact=True, g_kind=G_KIND[style],
    )  # fmt: skip


@pytest.mark.parametrize("style", [*STYLES, "mixed"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_grad_tuple_args_and_nan(style: str, dtype: Any) -> None:
    """Per-axis kernel/stride/padding/dilation; NaN propagates (routed to it)."""
    x = ties(SHAPE_2D, dtype, seed=11, nan=0.05)
    check_vjp(
        ndpool.max_pool2d, x, chunks_for(SHAPE_2D, style), (3, 2), (2, 1), (1, 0),
        (1, 2), True, True, exact=True, g_kind=G_KIND[style],
    )  # fmt: skip


# --------------------------------------------------------------------------
# average, Lp, adaptive


def _avg_cases() -> list[Any]:
    out = []
    grid = itertools.product((2, 3), (1, 2), (0, 1), (False, True), (False, True))
    for i, (k, s, p, ceil, include) in enumerate(grid):
        divisor = (None, None, 3)[i % 3]
        for style in rotate(i):
            ident = f"k{k}s{s}p{p}{'-ceil' * ceil}{'-incl' * include}-div{divisor}"
            values = (k, s, p, ceil, include, divisor, style)
            out.append(pytest.param(*values, id=f"{ident}-{style}"))
    return out


@pytest.mark.parametrize(
    ("k", "s", "p", "ceil", "include", "divisor", "style"), _avg_cases()
)
def test_avg_pool2d_grad(
    k: int,
    s: int,
    p: int,
    ceil: bool,
    include: bool,
    divisor: int | None,
    style: str,
) -> None:
    x = ties(SHAPE_2D, np.float32, seed=2)
    check_vjp(
        ndpool.avg_pool2d, x, chunks_for(SHAPE_2D, style), k, s, p, ceil, include,
        divisor, exact=False, g_kind=G_KIND[style],
    )  # fmt: skip


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("nd", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_avg_pool_1d_3d_grad(style: str, nd: int, dtype: Any) -> None:
    shape = SHAPE_1D if nd == 1 else SHAPE_3D
    fn = getattr(ndpool, f"avg_pool{nd}d")
    x = ties(shape, dtype, seed=nd)
    check_vjp(
        fn, x, chunks_for(shape, style), 3, 2, 1, True, False, exact=False,
        g_kind=G_KIND[style],
    )  # fmt: skip


def _lp_cases() -> list[Any]:
    out = []
    geometries = [(2, 2, False), (3, 2, True), (3, 1, False), (2, 1, True)]
    for p, (k, s, ceil) in itertools.product((2.0, 1.5, math.inf), geometries):
        for style in STYLES:
            ident = f"p{p}-k{k}s{s}{'-ceil' * ceil}-{style}"
            out.append(pytest.param(p, k, s, ceil, style, id=ident))
    return out


@pytest.mark.parametrize(("norm_type", "k", "s", "ceil", "style"), _lp_cases())
def test_lp_pool2d_grad(
    norm_type: float, k: int, s: int, ceil: bool, style: str
) -> None:
    chunks = chunks_for(SHAPE_2D, style)
    if math.isinf(norm_type):  # routed: max of |x|, ties and signs
        x = ties(SHAPE_2D, np.float32, seed=3)
        check_vjp(
            ndpool.lp_pool2d, x, chunks, norm_type, k, s, ceil, exact=True,
            g_kind=G_KIND[style],
        )  # fmt: skip
        return
    for x in (smooth(SHAPE_2D, np.float64, 3), ties(SHAPE_2D, np.float32, seed=3)):
        # ties: zero windows and negative bases (NaN for p = 1.5), as PyTorch
        check_vjp(
            ndpool.lp_pool2d, x, chunks, norm_type, k, s, ceil, exact=False,
            g_kind=G_KIND[style],
        )  # fmt: skip


#: output sizes of (10, 11): dividing, not dividing, larger than the input
ADAPTIVE_SIZES = [1, 2, 5, (5, 11), 3, 4, 7, (None, 4), (3, 6), 13]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("size", ADAPTIVE_SIZES, ids=str)
def test_adaptive_max_pool2d_grad(size: Any, style: str) -> None:
    x = ties(SHAPE_2D, np.float32, seed=5)
    check_vjp(
        ndpool.adaptive_max_pool2d, x, chunks_for(SHAPE_2D, style), size,
        style == "uneven", exact=True, g_kind=G_KIND[style],
    )  # fmt: skip


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("size", ADAPTIVE_SIZES, ids=str)
def test_adaptive_avg_pool2d_grad(size: Any, style: str) -> None:
    x = ties(SHAPE_2D, np.float64 if style == "uneven" else np.float32, seed=6)
    check_vjp(
        ndpool.adaptive_avg_pool2d, x, chunks_for(SHAPE_2D, style), size,
        exact=False, g_kind=G_KIND[style],
    )  # fmt: skip


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("nd", [1, 3])
def test_adaptive_1d_3d_grad(nd: int, style: str) -> None:
    shape = SHAPE_1D if nd == 1 else SHAPE_3D
    chunks = chunks_for(shape, style)
    x = ties(shape, np.float64, seed=nd)
    mx = getattr(ndpool, f"adaptive_max_pool{nd}d")
    av = getattr(ndpool, f"adaptive_avg_pool{nd}d")
    check_vjp(mx, x, chunks, 4, True, exact=True, g_kind=G_KIND[style])
    check_vjp(av, x, chunks, 4, exact=False, g_kind=G_KIND[style])


# --------------------------------------------------------------------------
# ndpool.pool: every op, any axes, "same" padding, nan_policy


def _pool_cases() -> list[Any]:
    out = []
    axes_kernels = [((0, 2), (2, 3)), ((1,), (3,)), ((-1, 0), (4, 2))]
    grid = itertools.product(
        ("max", "min", "avg", "sum", "lp"),
        axes_kernels,
        (0, "same"),
        ("propagate", "omit"),
    )
    for i, (op, (axes, kernel), padding, policy) in enumerate(grid):
        style = STYLES[i % len(STYLES)]
        ident = f"{op}-axes{axes}-pad{padding}-{policy}-{style}"
        values = (op, axes, kernel, padding, policy, style)
        out.append(pytest.param(*values, id=ident))
    return out


@pytest.mark.parametrize(
    ("op", "axes", "kernel", "padding", "policy", "style"), _pool_cases()
)
def test_pool_grad(
    op: str,
    axes: tuple[int, ...],
    kernel: tuple[int, ...],
    padding: Any,
    policy: str,
    style: str,
) -> None:
    shape = (7, 4, 10)
    exact = op in ("max", "min")
    x = ties(shape, np.float32, seed=7, nan=0.08)
    kw: dict[str, Any] = {
        "op": op,
        "axes": axes,
        "stride": tuple(range(1, len(axes) + 1)),
        "padding": padding,
        "nan_policy": policy,
    }
    if op == "lp":
        kw["norm_type"] = 2.0
    check_vjp(
        ndpool.pool, x, chunks_for(shape, style), kernel, exact=exact,
        g_kind=G_KIND[style], **kw,
    )  # fmt: skip


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("norm_type", [1.0, 3.0, math.inf])
@pytest.mark.parametrize("policy", ["propagate", "omit"])
def test_pool_lp_grad(style: str, norm_type: float, policy: str) -> None:
    """The true p-norm; p = inf routes to the max of |x| (exact)."""
    shape = (3, 9, 8)
    exact = math.isinf(norm_type)
    x = ties(shape, np.float64, seed=8, nan=0.05 if policy == "omit" else 0.0)
    check_vjp(
        ndpool.pool, x, chunks_for(shape, style), (3, 2), op="lp", axes=(1, 2),
        norm_type=norm_type, stride=(2, 1), dilation=(1, 2), padding="same",
        nan_policy=policy, exact=exact, g_kind=G_KIND[style],
    )  # fmt: skip


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("op", ["max", "min", "avg", "sum"])
def test_pool_grad_return_indices_and_asymmetric(style: str, op: str) -> None:
    shape = (2, 9, 3, 8)
    x = ties(shape, np.float32, seed=9)
    kw: dict[str, Any] = {
        "op": op,
        "axes": (3, 1),
        "stride": (3, 2),
        "padding": ((2, 0), (0, 1)),
        "ceil_mode": True,
        "count_include_pad": False,
    }
    if op in ("max", "min"):
        kw["return_indices"] = True
    check_vjp(
        ndpool.pool, x, chunks_for(shape, style), (3, 2), exact=op in ("max", "min"),
        g_kind=G_KIND[style], **kw,
    )  # fmt: skip


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(
    ("name", "args", "exact"),
    [
        ("max_pool2d", (3, 2, 1), True),
        ("avg_pool2d", (3, 2, 1), False),
        ("lp_pool2d", (2.0, 3, 2), False),
        ("adaptive_max_pool2d", (4,), True),
        ("adaptive_avg_pool2d", (4,), False),
    ],
)
def test_torch_named_nan_omit_grad(
    style: str, name: str, args: tuple[Any, ...], exact: bool
) -> None:
    x = ties(SHAPE_2D, np.float64, seed=10, nan=0.1)
    if name == "lp_pool2d":
        x = np.where(np.isnan(x), np.nan, smooth(SHAPE_2D, np.float64, 10))
    check_vjp(
        getattr(ndpool, name), x, chunks_for(SHAPE_2D, style), *args,
        nan_policy="omit", exact=exact, g_kind=G_KIND[style],
    )  # fmt: skip


# --------------------------------------------------------------------------
# global pooling, channels_last


@pytest.mark.parametrize("style", ["tiny", "uneven"])
@pytest.mark.parametrize("fmt", ["channels_first", "channels_last"])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("policy", ["propagate", "omit"])
def test_global_pool_grad(style: str, fmt: str, keepdims: bool, policy: str) -> None:
    shape = (2, 5, 6, 3)
    x = ties(shape, np.float64, seed=12, nan=0.05 if policy == "omit" else 0.0)
    chunks = chunks_for(shape, style)
    kw: dict[str, Any] = {
        "data_format": fmt,
        "keepdims": keepdims,
        "nan_policy": policy,
        "g_kind": G_KIND[style],
    }
    check_vjp(ndpool.global_max_pool, x, chunks, exact=True, **kw)
    check_vjp(ndpool.global_avg_pool, x, chunks, exact=False, **kw)
    if keepdims:  # one Lp a case
        check_vjp(ndpool.global_lp_pool, x, chunks, 2.0, exact=False, **kw)
    else:
        check_vjp(ndpool.global_lp_pool, x, chunks, math.inf, exact=True, **kw)


@pytest.mark.parametrize("style", [*STYLES, "mixed"])
@pytest.mark.parametrize(
    ("name", "args", "exact"),
    [
        ("max_pool2d", (3, 2, 1, 1, True, True), True),
        ("avg_pool2d", (3, 2, 1, True, False), False),
        ("lp_pool2d", (2.0, 2), False),
        ("lp_pool2d", (math.inf, 3, 2), True),
        ("adaptive_max_pool2d", (4, True), True),
        ("adaptive_avg_pool2d", ((3, 5),), False),
        ("max_pool3d", (2, 1, 1), True),
        ("avg_pool1d", (3, 2, 1), False),
    ],
)
def test_channels_last_grad(
    style: str, name: str, args: tuple[Any, ...], exact: bool
) -> None:
    nd = int(name[-2])
    shape = {1: (2, 13, 3), 2: (2, 10, 11, 3), 3: (1, 6, 7, 5, 2)}[nd]
    x = ties(shape, np.float32, seed=13)
    check_vjp(
        getattr(ndpool, name), x, chunks_for(shape, style), *args,
        data_format="channels_last", exact=exact, g_kind=G_KIND[style],
    )  # fmt: skip


# --------------------------------------------------------------------------
# the gradient of unpooling


def unpool_case(
    nd: int, k: int, s: int, p: int, size: bool
) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """An input shape whose max-pool indices all fit the unpooled plane.

    Each spatial length is ``(n - 1) * s - 2 * p + k``, the default unpooled
    length; ``size`` asks for an explicit ``output_size``, one more than the
    default where the stride allows (PyTorch: within ``stride`` of it).
    """
    spatial = tuple((n - 1) * s - 2 * p + k for n in (5, 6, 4)[:nd])
    batch = (2, 3) if nd < 3 else (1, 2)
    output_size = tuple(n + (s > 1) for n in spatial) if size else None
    return (*batch, *spatial), output_size


def _unpool_grad_cases() -> list[Any]:
    out = []
    grid = itertools.product(
        [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0)], (False, True), STYLES
    )
    for i, ((k, s, p), size, style) in enumerate(grid):
        idx_kind = ("dask", "numpy")[i % 2]
        ident = f"k{k}s{s}p{p}{'-size' * size}-{style}-{idx_kind}-indices"
        out.append(pytest.param(k, s, p, size, style, idx_kind, id=ident))
    return out


@pytest.mark.parametrize(
    ("k", "s", "p", "size", "style", "idx_kind"), _unpool_grad_cases()
)
def test_max_unpool2d_grad(
    k: int, s: int, p: int, size: bool, style: str, idx_kind: str
) -> None:
    shape, output_size = unpool_case(2, k, s, p, size)
    x = ties(shape, np.float64, seed=14)
    pooled, idx = ndpool.max_pool2d(x, k, s, p, return_indices=True)
    indices: Any = idx
    if idx_kind == "dask":  # not the values' chunks
        indices = da.from_array(idx, chunks=chunks_for(idx.shape, "uneven"))
    want_out, want_pb = ndpool.vjp(
        ndpool.max_unpool2d, pooled, idx, k, s, p, output_size
    )
    dp = da.from_array(pooled, chunks=chunks_for(pooled.shape, style))
    out, pullback = ndpool.vjp(ndpool.max_unpool2d, dp, indices, k, s, p, output_size)
    assert isinstance(out, da.Array)
    g = grad_out(want_out.shape, np.float64, exact=True)
    want = want_pb(g)
    with no_compute():
        grad = pullback(as_g(g, G_KIND[style], out.chunks))
    assert isinstance(grad, da.Array)
    assert grad.shape == pooled.shape
    assert grad.dtype == pooled.dtype
    assert grad.chunks == dp.chunks
    got_out, got = dask.compute(out, grad, scheduler="sync")
    assert_close(got_out, want_out, exact=True)
    assert_close(got, want, exact=True)


@pytest.mark.parametrize("nd", [1, 2])
def test_max_unpool_grad_of_an_empty_batch(nd: int) -> None:
    """N = 0 unpools and pulls back to an empty gradient, as NumPy's."""
    shape = (0, 2, *(2,) * nd)
    x, idx = np.zeros(shape), np.zeros(shape, dtype=np.int64)
    fn = getattr(ndpool, f"max_unpool{nd}d")
    want_out, want_pb = ndpool.vjp(fn, x, idx, 2)
    out, pullback = ndpool.vjp(fn, da.from_array(x), da.from_array(idx), 2)
    g = np.zeros(want_out.shape)
    got_out, got = dask.compute(out, pullback(g), scheduler="sync")
    assert_close(got_out, want_out, exact=True)
    assert_close(got, want_pb(g), exact=True)


# --------------------------------------------------------------------------
# the gradient argument: NumPy or Dask, any chunks; wrong shapes


@pytest.mark.parametrize(
    ("name", "args", "exact"),
    [
        ("max_pool2d", (3, 2, 1), True),
        ("avg_pool2d", (3, 1, 1), False),
        ("adaptive_avg_pool2d", (4,), False),
    ],
)
def test_g_numpy_or_dask_any_chunks(
    name: str, args: tuple[Any, ...], exact: bool
) -> None:
    fn = getattr(ndpool, name)
    x = ties(SHAPE_2D, np.float32, seed=15)
    dx = da.from_array(x, chunks=chunks_for(SHAPE_2D, "uneven"))
    out, pullback = ndpool.vjp(fn, dx, *args)
    _, want_pb = ndpool.vjp(fn, x, *args)
    g = grad_out(out.shape, np.float32, exact)
    g64 = g.astype(np.float64)  # another float dtype: summed in it, cast to x's
    gs = [
        g,
        g64,
        da.from_array(g, chunks=out.chunks),
        da.from_array(g64, chunks=-1),
        da.from_array(g, chunks=1),
        da.from_array(g, chunks=(2, 1, 3, 2)),
    ]
    for gi in gs:
        want = want_pb(g64 if gi.dtype == np.float64 else g)
        with no_compute():
            grad = pullback(gi)
        assert isinstance(grad, da.Array)
        assert grad.chunks == dx.chunks
        assert grad.dtype == np.float32
        assert_close(grad.compute(scheduler="sync"), want, exact)


@pytest.mark.parametrize("g_kind", ["numpy", "dask"])
@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("max_pool2d", (2,)),
        ("max_pool2d", (2, None, 0, 1, False, True)),
        ("avg_pool2d", (2,)),
        ("lp_pool2d", (2.0, 2)),
        ("adaptive_avg_pool2d", (3,)),
        ("global_avg_pool", ()),
    ],
)
def test_wrong_shaped_g(g_kind: str, name: str, args: tuple[Any, ...]) -> None:
    x = da.from_array(ties((1, 2, 6, 6)), chunks=(1, 1, 4, 4))
    out, pullback = ndpool.vjp(getattr(ndpool, name), x, *args)
    values = _parts(out)[0]
    for shape in ((1, 2, 5, 5), (*values.shape, 1), (values.size,)):
        g = np.ones(shape, np.float32)
        bad = g if g_kind == "numpy" else da.from_array(g, chunks=2)
        with pytest.raises(ValueError, match="grad_out"):
            pullback(bad)


# --------------------------------------------------------------------------
# laziness and locality


class Counter:
    """An identity ``map_blocks`` function that counts the blocks it makes."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, block: np.ndarray) -> np.ndarray:
        self.calls += 1
        return block


def counted(x: np.ndarray, chunks: Any) -> tuple[Any, Counter]:
    counter = Counter()
    meta = np.empty((0,) * x.ndim, dtype=x.dtype)
    dx = da.from_array(x, chunks=chunks).map_blocks(counter, meta=meta)
    assert counter.calls == 0
    return dx, counter


LAZY_CASES = [
    pytest.param(ndpool.max_pool2d, (3, 2, 1), {}, id="max"),
    pytest.param(ndpool.max_pool2d, (3, 2, 1, 1, True, True), {}, id="max-indices"),
    pytest.param(ndpool.avg_pool2d, (3, 2, 1), {}, id="avg"),
    pytest.param(ndpool.lp_pool2d, (2.0, 3, 2), {}, id="lp"),
    pytest.param(ndpool.lp_pool2d, (math.inf, 3, 2), {}, id="lp-inf"),
    pytest.param(ndpool.adaptive_max_pool2d, (4,), {}, id="adaptive-max"),
    pytest.param(ndpool.adaptive_avg_pool2d, (4,), {}, id="adaptive-avg"),
    pytest.param(
        ndpool.pool, (3,), {"op": "min", "axes": (2,), "padding": "same"}, id="min"
    ),
    pytest.param(
        ndpool.pool,
        ((2, 3),),
        {"op": "sum", "axes": (0, 3), "nan_policy": "omit"},
        id="sum-omit",
    ),
    pytest.param(ndpool.pool, (3,), {"op": "lp", "norm_type": 3.0}, id="pool-lp"),
    pytest.param(ndpool.global_max_pool, (), {}, id="global-max"),
    pytest.param(ndpool.global_avg_pool, (), {"keepdims": True}, id="global-avg"),
    pytest.param(ndpool.global_lp_pool, (2.0,), {}, id="global-lp"),
]


@pytest.mark.parametrize(("fn", "args", "kwargs"), LAZY_CASES)
def test_pullback_computes_nothing(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    nan = 0.05 if kwargs.get("nan_policy") == "omit" else 0.0
    x = ties(SHAPE_2D, np.float64, seed=16, nan=nan)
    dx, x_counter = counted(x, (1, 2, 4, 3))
    out, pullback = ndpool.vjp(fn, dx, *args, **kwargs)
    values = _parts(out)[0]
    g = grad_out(values.shape, np.float64, exact=True)
    dg, g_counter = counted(g, tuple(max(1, s // 2) for s in g.shape))
    calls = x_counter.calls
    grad = pullback(dg)
    assert isinstance(grad, da.Array)
    assert x_counter.calls == calls, "pullback computed the input"
    assert g_counter.calls == 0, "pullback computed the gradient"
    got = grad.compute(scheduler="sync")
    assert g_counter.calls > 0
    _, want_pb = ndpool.vjp(fn, x, *args, **kwargs)
    assert_close(got, want_pb(g), exact=False)


@pytest.mark.parametrize(("fn", "args", "kwargs"), LAZY_CASES[:7])
def test_vjp_computes_nothing(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """The forward inside vjp stays lazy too, as fn itself is on Dask input."""
    x = ties(SHAPE_2D, np.float64, seed=17)
    dx, counter = counted(x, (1, 2, 4, 3))
    with no_compute():
        out, _ = ndpool.vjp(fn, dx, *args, **kwargs)
    assert counter.calls == 0
    for part in _parts(out):
        assert isinstance(part, da.Array)


@pytest.mark.parametrize(
    ("fn", "args", "kwargs"),
    [
        pytest.param(ndpool.max_pool2d, (3, 2, 1), {}, id="max"),
        pytest.param(ndpool.avg_pool2d, (3, 2, 1), {}, id="avg"),
        pytest.param(ndpool.lp_pool2d, (2.0, 3, 2), {}, id="lp"),
        pytest.param(ndpool.adaptive_max_pool2d, (16,), {}, id="adaptive-max"),
        pytest.param(
            ndpool.pool, (3,), {"op": "min", "padding": "same", "axes": (3,)}, id="min"
        ),
    ],
)
def test_one_grad_block_reads_few_chunks(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """A block of the gradient reads the chunks around it, not the whole input."""
    x = ties((1, 1, 64, 64), np.float64, seed=18)
    dx, counter = counted(x, (1, 1, 8, 8))  # 64 chunks
    out, pullback = ndpool.vjp(fn, dx, *args, **kwargs)
    g = grad_out(out.shape, np.float64, exact=True)
    grad = pullback(da.from_array(g, chunks=8))
    assert grad.numblocks == (1, 1, 8, 8)
    block = grad.blocks[0, 0, 3, 4].compute(scheduler="sync")
    assert counter.calls <= 16, f"one gradient block read {counter.calls} chunks"
    _, want_pb = ndpool.vjp(fn, x, *args, **kwargs)
    assert_close(block, want_pb(g)[:, :, 24:32, 32:40], exact=False)


@st.composite
def random_cases(draw: st.DrawFn) -> dict[str, Any]:
    """Any 2-d geometry (including "same" and asymmetric padding), op, NaN
    policy and chunking, on data with ties and NaN."""
    shape = (
        draw(st.integers(1, 2)),
        draw(st.integers(1, 3)),
        draw(st.integers(1, 12)),
        draw(st.integers(1, 12)),
    )
    chunks = tuple(draw(st.integers(1, max(1, n))) for n in shape)
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding: Any = draw(
        st.sampled_from([0, "same", ((1, 0), (0, 2)), (kernel[0] // 2, kernel[1] // 2)])
    )
    op = draw(st.sampled_from(["max", "min", "avg", "sum", "lp"]))
    return {
        "shape": shape,
        "chunks": chunks,
        "kernel": kernel,
        "kw": {
            "op": op,
            "axes": (2, 3),
            "stride": stride,
            "dilation": dilation,
            "padding": padding,
            "ceil_mode": draw(st.booleans()) and not isinstance(padding, str),
            "nan_policy": draw(st.sampled_from(["propagate", "omit"])),
            **(
                {"norm_type": draw(st.sampled_from([1.0, 2.0, math.inf]))}
                if op == "lp"
                else {}
            ),
        },
        "seed": draw(st.integers(0, 2**16)),
    }


@given(case=random_cases())
def test_random_geometries_and_chunkings(case: dict[str, Any]) -> None:
    """ndpool.pool's pullback on Dask equals the NumPy one, whatever the
    windows and the chunks."""
    x = ties(case["shape"], np.float64, seed=case["seed"], nan=0.1)
    kw = case["kw"]
    try:
        out, want_pb = ndpool.vjp(ndpool.pool, x, case["kernel"], **kw)
    except ValueError:
        reject()
    exact = kw["op"] in ("max", "min") or kw.get("norm_type") == math.inf
    g = grad_out(out.shape, np.float64, exact)
    dx = da.from_array(x, chunks=case["chunks"])
    _, pullback = ndpool.vjp(ndpool.pool, dx, case["kernel"], **kw)
    got = pullback(g).compute(scheduler="sync")
    assert_close(got, want_pb(g), exact)


@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 12),
                    st.integers(1, 12)),
    chunk=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 12),
                    st.integers(1, 12)),
    size=st.tuples(st.integers(1, 15), st.integers(1, 15)),
    op=st.sampled_from(["max", "avg"]),
    policy=st.sampled_from(["propagate", "omit"]),
    seed=st.integers(0, 2**16),
)  # fmt: skip
def test_random_adaptive_chunkings(
    shape: tuple[int, ...],
    chunk: tuple[int, ...],
    size: tuple[int, int],
    op: str,
    policy: str,
    seed: int,
) -> None:
    """Adaptive windows of any output size (larger than the input too)."""
    x = ties(shape, np.float64, seed=seed, nan=0.1)
    fn = getattr(ndpool, f"adaptive_{op}_pool2d")
    out, want_pb = ndpool.vjp(fn, x, size, nan_policy=policy)
    g = grad_out(out.shape, np.float64, exact=op == "max")
    _, pullback = ndpool.vjp(
        fn, da.from_array(x, chunks=chunk), size, nan_policy=policy
    )
    got = pullback(g).compute(scheduler="sync")
    assert_close(got, want_pb(g), exact=op == "max")


# --------------------------------------------------------------------------
# errors, dtypes, empty input


def _fractional_case(nd: int, fmt: str) -> tuple[tuple[int, ...], Any, Any]:
    """(shape, samples, function) of the fractional gradient tests."""
    shape = SHAPE_2D if nd == 2 else SHAPE_3D
    if fmt == "channels_last":
        shape = (shape[0], *shape[2:], shape[1])
    channels = shape[1] if fmt == "channels_first" else shape[-1]
    samples = np.random.default_rng(nd).random((shape[0], channels, nd))
    return shape, samples, getattr(ndpool, f"fractional_max_pool{nd}d")


@pytest.mark.parametrize("style", [*STYLES, "mixed"])
@pytest.mark.parametrize("fmt", ["channels_first", "channels_last"])
@pytest.mark.parametrize("nd", [2, 3])
def test_fractional_grad(nd: int, fmt: str, style: str) -> None:
    """Windows drawn per plane: the forward and its gradient keep whole
    planes per task, with the same samples as the NumPy call."""
    shape, samples, fn = _fractional_case(nd, fmt)
    check_vjp(
        fn, ties(shape, np.float64, seed=19), chunks_for(shape, style), 2,
        output_ratio=0.5, return_indices=style == "tiny", _random_samples=samples,
        data_format=fmt, exact=True, g_kind=G_KIND[style],
    )  # fmt: skip


def test_integer_dask_input_has_no_gradient() -> None:
    dx = da.from_array(np.arange(32, dtype=np.int64).reshape(1, 2, 4, 4), chunks=2)
    with pytest.raises(TypeError, match="floating"):
        ndpool.vjp(ndpool.max_pool2d, dx, 2)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize(
    ("name", "args", "exact"),
    [
        ("max_pool2d", (3, 2, 1), True),
        ("avg_pool2d", (3, 2, 1), False),
        ("adaptive_avg_pool2d", (3,), False),
    ],
)
def test_dtypes(dtype: Any, name: str, args: tuple[Any, ...], exact: bool) -> None:
    x = ties(SHAPE_2D, dtype, seed=19)
    check_vjp(
        getattr(ndpool, name), x, chunks_for(SHAPE_2D, "tiny"), *args, exact=exact
    )


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("max_pool2d", (2,)),
        ("avg_pool2d", (2,)),
        ("adaptive_max_pool2d", (2,)),
        ("adaptive_avg_pool2d", (2,)),
        ("lp_pool2d", (2.0, 2)),
    ],
)
def test_empty_batch(name: str, args: tuple[Any, ...]) -> None:
    x = np.zeros((0, 2, 5, 5), np.float32)
    check_vjp(getattr(ndpool, name), x, (1, 1, 3, 3), *args, exact=True)


def test_distributed_local_cluster() -> None:
    distributed = pytest.importorskip("distributed")
    x = ties((2, 3, 16, 14), np.float64, seed=20)
    dx = da.from_array(x, chunks=(1, 3, 5, 6))
    g = grad_out((2, 3, 8, 7), np.float64, exact=True)
    _, max_pb = ndpool.vjp(ndpool.max_pool2d, x, 3, 2, 1)
    _, avg_pb = ndpool.vjp(ndpool.avg_pool2d, x, 3, 2, 1)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        _, dmax = ndpool.vjp(ndpool.max_pool2d, dx, 3, 2, 1)
        _, davg = ndpool.vjp(ndpool.avg_pool2d, dx, 3, 2, 1)
        got_max, got_avg = client.compute([dmax(g), davg(g)], sync=True)
    assert_close(got_max, max_pb(g), exact=True)
    assert_close(got_avg, avg_pb(g), exact=False)


# --------------------------------------------------------------------------
# max_unpool*d of Dask input


def _unpool_cases() -> list[Any]:
    out = []
    ksp = [(2, 2, 0), (3, 2, 1), (3, 3, 0), (2, 1, 0), (3, 1, 1)]
    grid = itertools.product((1, 2, 3), ksp, (False, True), STYLES)
    kinds = ("dask-same", "dask-other", "numpy")
    for i, (nd, (k, s, p), size, style) in enumerate(grid):
        if nd == 3 and s == 1:  # keep the file fast
            continue
        idx_kind = kinds[i % len(kinds)]
        ident = f"{nd}d-k{k}s{s}p{p}{'-size' * size}-{style}-{idx_kind}-indices"
        out.append(pytest.param(nd, k, s, p, size, style, idx_kind, id=ident))
    return out


@pytest.mark.parametrize(
    ("nd", "k", "s", "p", "size", "style", "idx_kind"), _unpool_cases()
)
def test_max_unpool(
    nd: int, k: int, s: int, p: int, size: bool, style: str, idx_kind: str
) -> None:
    shape, output_size = unpool_case(nd, k, s, p, size)
    x = ties(shape, np.float32, seed=21 + nd)
    pooled, idx = getattr(ndpool, f"max_pool{nd}d")(x, k, s, p, return_indices=True)
    unpool = getattr(ndpool, f"max_unpool{nd}d")
    want = unpool(pooled, idx, k, s, p, output_size)
    chunks = chunks_for(pooled.shape, style)
    dp = da.from_array(pooled, chunks=chunks)
    indices: Any = idx
    if idx_kind == "dask-same":
        indices = da.from_array(idx, chunks=chunks)
    elif idx_kind == "dask-other":
        other = "uneven" if style != "uneven" else "single"
        indices = da.from_array(idx, chunks=chunks_for(idx.shape, other))
    with no_compute():
        got = unpool(dp, indices, k, s, p, output_size)
    assert isinstance(got, da.Array)
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    assert_close(got.compute(scheduler="sync"), want, exact=True)


@pytest.mark.parametrize("style", [*STYLES, "mixed"])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_unpool_round_trip_of_dask_pool(style: str, nd: int) -> None:
    """max_pool of Dask with indices, then unpool, all lazy.

    Odd lengths need ``output_size`` (the default plane is smaller than the
    indices' own); even ones take the default.
    """
    pool = getattr(ndpool, f"max_pool{nd}d")
    unpool = getattr(ndpool, f"max_unpool{nd}d")
    odd = {1: SHAPE_1D, 2: SHAPE_2D, 3: SHAPE_3D}[nd]
    even = unpool_case(nd, 2, 2, 0, False)[0]
    for shape, output_size in ((odd, odd[2:]), (even, None)):
        x = ties(shape, np.float64, seed=30 + nd)
        dx = da.from_array(x, chunks=chunks_for(shape, style))
        with no_compute():
            vals, idx = pool(dx, 2, return_indices=True)
            got = unpool(vals, idx, 2, output_size=output_size)
        assert isinstance(got, da.Array)
        pv, pi = pool(x, 2, return_indices=True)
        want = unpool(pv, pi, 2, output_size=output_size)
        assert_close(got.compute(scheduler="sync"), want, exact=True)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("dtype", [np.uint8, np.float16, np.float64])
def test_max_unpool_dtypes_and_channels_last(style: str, dtype: Any) -> None:
    x = np.random.default_rng(40).integers(0, 50, size=(2, 10, 11, 3)).astype(dtype)
    kw: dict[str, Any] = {"data_format": "channels_last"}
    pooled, idx = ndpool.max_pool2d(x, 3, 2, 1, return_indices=True, **kw)
    want = ndpool.max_unpool2d(pooled, idx, 3, 2, 1, output_size=(10, 11), **kw)
    dp = da.from_array(pooled, chunks=chunks_for(pooled.shape, style))
    di = da.from_array(idx, chunks=chunks_for(idx.shape, "uneven"))
    with no_compute():
        got = ndpool.max_unpool2d(dp, di, 3, 2, 1, output_size=(10, 11), **kw)
    assert isinstance(got, da.Array)
    assert_close(got.compute(scheduler="sync"), want, exact=True)


def test_max_unpool_computes_nothing() -> None:
    x = ties(SHAPE_2D, np.float64, seed=41)
    pooled, idx = ndpool.max_pool2d(x, 2, return_indices=True)
    dp, counter = counted(pooled, (1, 2, 2, 3))
    di, idx_counter = counted(idx, (2, 1, 3, 2))
    got = ndpool.max_unpool2d(dp, di, 2, output_size=(10, 11))
    assert isinstance(got, da.Array)
    assert counter.calls == 0
    assert idx_counter.calls == 0
    want = ndpool.max_unpool2d(pooled, idx, 2, output_size=(10, 11))
    assert_close(got.compute(scheduler="sync"), want, exact=True)
    assert counter.calls > 0


def test_max_unpool_index_out_of_plane_raises() -> None:
    """An index that does not fit the unpooled plane: ValueError, now or at compute."""
    pooled = np.array([[[1.0, 3.0, 5.0]]])
    idx = np.array([[[0, 2, 4]]])  # max_pool1d(1..5, 2, 2, 1): 4 >= the 4 cells
    with pytest.raises(ValueError, match=r"(?i)ind"):
        ndpool.max_unpool1d(pooled, idx, 2, 2, 1)
    dp = da.from_array(pooled, chunks=1)
    di = da.from_array(idx, chunks=2)
    with pytest.raises(ValueError, match=r"(?i)ind"):
        ndpool.max_unpool1d(dp, di, 2, 2, 1).compute(scheduler="sync")


def test_g_with_unknown_chunk_sizes_is_refused() -> None:
    x = da.from_array(ties((1, 2, 6, 6)), chunks=(1, 1, 4, 4))
    out, pullback = ndpool.vjp(ndpool.max_pool2d, x, 2)
    g = da.ones(out.shape, chunks=out.chunks)
    unknown = g[g.sum(axis=(1, 2, 3)) > -1]  # a boolean index: lengths unknown
    with pytest.raises(ValueError, match="grad_out has an unknown shape"):
        pullback(unknown)


@pytest.mark.parametrize("style", [*STYLES, "mixed"])
@pytest.mark.parametrize("fmt", ["channels_first", "channels_last"])
@pytest.mark.parametrize("nd", [2, 3])
def test_fractional_grad_lazy_samples(nd: int, fmt: str, style: str) -> None:
    """Dask ``_random_samples``: the forward and the pullback stay lazy
    (the windows are drawn when computed) and equal NumPy's bit for bit."""
    shape, samples, fn = _fractional_case(nd, fmt)
    x = ties(shape, np.float64, seed=19)
    kw: dict[str, Any] = {"output_ratio": 0.5, "data_format": fmt}
    kw["return_indices"] = style == "tiny"
    want_out, want_pb = ndpool.vjp(fn, x, 2, _random_samples=samples, **kw)
    dx = da.from_array(x, chunks=chunks_for(shape, style))
    ds = da.from_array(samples, chunks=1)
    with no_compute():
        out, pullback = ndpool.vjp(fn, dx, 2, _random_samples=ds, **kw)
        values = _parts(out)[0]
        g = grad_out(values.shape, x.dtype, exact=True)
        grad = pullback(as_g(g, G_KIND[style], values.chunks))
    assert grad.chunks == dx.chunks
    assert grad.dtype == x.dtype
    *got_out, got = dask.compute(*_parts(out), grad, scheduler="sync")
    for part, ref in zip(got_out, _parts(want_out), strict=True):
        assert_close(part, ref, exact=True)
    assert_close(got, want_pb(g), exact=True)


def test_x_with_unknown_chunk_sizes_is_refused() -> None:
    x = da.from_array(ties((1, 2, 12)), chunks=(1, 1, 4))
    unknown = x[:, :, x[0, 0] > -10]  # a boolean index: lengths unknown
    for fn, args in [
        (ndpool.avg_pool1d, (2,)),
        (ndpool.max_pool1d, (2,)),
        (ndpool.pool, (2,)),
        (ndpool.global_max_pool, ()),
    ]:
        with pytest.raises(ValueError, match=r"vjp: x.*compute_chunk_sizes\(\)"):
            ndpool.vjp(fn, unknown, *args)


# --------------------------------------------------------------------------
# whole-axis windows that read their cells: no task reads a whole plane

WHOLE_AXIS_SPREAD = (
    [
        ("global_lp_pool", (p,), {"nan_policy": policy})
        for p in (0.5, 1.0, 1.5, 3.0, -1.5)
        for policy in ("propagate", "omit")
    ]
    + [
        ("lp_pool2d", (p, 7), {"nan_policy": policy})
        for p in (1.0, 2.0, 3.0)
        for policy in ("propagate", "omit")
    ]
    + [
        ("pool", ((7, 2),), {"op": "lp", "norm_type": 2.0, "axes": (2, 0)}),
        ("global_avg_pool", (), {"nan_policy": "omit"}),
        ("pool", ((7, 7),), {"op": "sum", "nan_policy": "omit"}),
        ("pool", ((7, 7),), {"op": "avg", "nan_policy": "omit", "divisor_override": 3}),
    ]
)


@pytest.mark.parametrize(("name", "args", "kwargs"), WHOLE_AXIS_SPREAD)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_whole_axis_spread_reads_a_few_chunks(
    name: str, args: Any, kwargs: Any, dtype: Any
) -> None:
    """The pullback of windows spanning whole axes that read their cells
    (Lp, NaN-omitting sums): each window's factor from tree reductions of
    its norm, mean or NaN count, then each chunk times its window's. Zero
    cells, NaN, windows of only NaN or zeros, and norms whose powers pass
    the float range (the pair-by-pair pullback)."""
    fn = getattr(ndpool, name)
    rng = np.random.default_rng(len(name) + len(args))
    omit = kwargs.get("nan_policy") == "omit"
    for scale in (1.0, 1e30) if dtype != np.float16 else (1.0,):
        x = rng.standard_normal((2, 3, 7, 7)) * scale
        if name == "lp_pool2d":
            x = np.abs(x)
        x[rng.random(x.shape) < 0.1] = np.nan if omit else 0.0
        if omit:
            x[0, 0] = np.nan
        x[1, 1] = 0.0
        x = x.astype(dtype)
        out, pullback = ndpool.vjp(fn, x, *args, **kwargs)
        g = rng.standard_normal(out.shape).astype(out.dtype)
        want = pullback(g)
        chunkings = [
            (1, 2, 3, 2),
            ((1, 1), (3,), (0, 2, 5), (7,)),  # no cell in a pooled axis' chunk
            ((0, 2), (1, 0, 2), (7,), (4, 3)),  # nor in a batch axis' one
        ]
        for chunks in chunkings:
            _, lazy = ndpool.vjp(fn, da.from_array(x, chunks=chunks), *args, **kwargs)
            got = lazy(g)
            graph = dict(got.__dask_graph__())
            assert max(len(dask.core.get_dependencies(graph, k)) for k in graph) <= 8
            got = got.compute()
            assert got.dtype == want.dtype
            rtol, _ = TOL[np.dtype(dtype)]
            finite = np.abs(want[np.isfinite(want)].astype(float))
            atol = rtol * finite.max(initial=0)
            np.testing.assert_allclose(
                got.astype(float), want.astype(float), rtol=3 * rtol, atol=atol,
                equal_nan=True,
            )  # fmt: skip


@pytest.mark.parametrize(("cells", "p"), [((300.0, 1.0), 2.0), ((0.3, -0.31), -1.0)])
def test_whole_axis_lp_pool_of_float16_works_in_float32(
    cells: tuple[float, float], p: float
) -> None:
    """PyTorch's lp_pool pullback of float16 takes its terms in float32,
    unrounded (300**2 overflows float16), as the NumPy pullback does."""
    x = np.array([[cells]], np.float16)
    g = np.ones((1, 1, 1), np.float16)
    want = ndpool.vjp(ndpool.lp_pool1d, x, p, 2)[1](g)
    got = ndpool.vjp(ndpool.lp_pool1d, da.from_array(x, chunks=1), p, 2)[1](g)
    np.testing.assert_array_equal(got.compute(), want)
