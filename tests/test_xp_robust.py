"""Array-API input at the edges, each result equal to the NumPy path's.

Non-finite gradients through adaptive and fractional windows, kernels and
strides far larger than the input, outputs no memory holds, and the order
in which a cell adds the gradients of its windows. Backends:
``array_api_strict``, PyTorch CPU tensors and JAX (skipped where missing).
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import ndpool
import ndpool._geometry
import ndpool.functional as F
from arrays import host, same

inf, nan = float("inf"), float("nan")
Backend = tuple[Any, Callable[[np.ndarray], Any]]


def _strict() -> Backend:
    xps = pytest.importorskip("array_api_strict")
    return xps, lambda a: xps.asarray(a)


def _torch() -> Backend:
    torch = pytest.importorskip("torch")
    return torch, lambda a: torch.from_numpy(np.array(a))


def _jax() -> Backend:
    jnp = pytest.importorskip("jax.numpy")
    import jax

    jax.config.update("jax_enable_x64", True)
    return jnp, lambda a: jnp.asarray(a)


BACKENDS = {"array_api_strict": _strict, "torch": _torch, "jax": _jax}


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "jax" and importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    return BACKENDS[request.param]()


def _same(got: Any, want: Any, like: Any, *, exact: bool = True) -> None:
    """As NumPy's: ``exact`` to the bit, else within 1e-12."""
    same(got, want, like, exact, rtol=1e-12, atol=0)


def _exact(xp: Any, op: str) -> bool:
    """Whether ``op`` matches NumPy to the bit: max, min and sums do;
    averages too, but on JAX, whose XLA divides by multiplying with the
    reciprocal; Lp powers may round differently in any library."""
    return op in ("max", "min", "sum") or (op == "avg" and "jax" not in xp.__name__)


def _vjp_both(
    to: Callable[[np.ndarray], Any],
    fn: Callable[..., Any],
    x: np.ndarray,
    g: np.ndarray,
    *args: Any,
    **kwargs: Any,
) -> tuple[Any, np.ndarray, Any]:
    """(Array-API gradient, NumPy gradient, Array-API input) of ``fn`` at ``x``."""
    want = ndpool.vjp(fn, x, *args, **kwargs)[1](g)
    arrays = {k: to(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    t = to(x)
    return ndpool.vjp(fn, t, *args, **arrays)[1](to(g)), want, t


# --------------------------------------------------------------------------
# non-finite gradients through adaptive and fractional windows


def test_adaptive_avg_gradient_of_inf_stays_in_its_window(backend: Backend) -> None:
    """The inf of window 0 reaches its three cells only (no ``0 * inf``)."""
    xp, to = backend
    x = np.random.default_rng(0).random((1, 1, 7))
    got, want, t = _vjp_both(to, F.adaptive_avg_pool1d, x, np.array([[[inf, 1, 2]]]), 3)
    np.testing.assert_allclose(want, [[[inf, inf, inf, 1 / 3, 1, 2 / 3, 2 / 3]]])
    _same(got, want, t, exact=_exact(xp, "avg"))


IRREGULAR = [
    ("adaptive_avg_pool1d", (7,), ((3,),), {}),
    ("adaptive_max_pool1d", (7,), ((3,),), {}),
    # more windows than cells: windows of one start share their cells
    ("adaptive_avg_pool1d", (3,), ((8,),), {}),
    ("adaptive_max_pool1d", (3,), ((8,),), {}),
    ("adaptive_avg_pool2d", (7, 5), ((3, 4),), {}),
    ("adaptive_max_pool2d", (7, 5), ((3, 4),), {}),
    ("adaptive_avg_pool3d", (5, 4, 6), ((2, 3, 4),), {}),
    (
        "fractional_max_pool2d",
        (8, 9),
        (2, (6, 5)),
        {"_random_samples": np.random.default_rng(1).random((2, 3, 2))},
    ),
]


@pytest.mark.parametrize(("name", "shape", "args", "kwargs"), IRREGULAR)
def test_non_finite_gradient_through_irregular_windows(
    backend: Backend, name: str, shape: Any, args: Any, kwargs: Any
) -> None:
    """inf, -inf and NaN in ``grad_out`` reach only the cells their windows
    route or spread to: each cell gets the IEEE sum of what lands on it."""
    xp, to = backend
    rng = np.random.default_rng(len(name))
    x = rng.integers(-3, 4, size=(2, 3, *shape)).astype(np.float64)  # ties
    out = ndpool.vjp(getattr(F, name), x, *args, **kwargs)[0]
    g = rng.standard_normal(out.shape)
    flat = g.reshape(-1)
    flat[::7], flat[3::11], flat[5::13] = inf, -inf, nan
    got, want, t = _vjp_both(to, getattr(F, name), x, g, *args, **kwargs)
    assert np.isfinite(want).any()
    _same(got, want, t, exact=_exact(xp, name.split("_")[-2]))


def test_one_nan_in_a_fractional_gradient_is_one_nan(backend: Backend) -> None:
    _, to = backend
    rng = np.random.default_rng(2)
    x, samples = rng.random((1, 1, 8, 8)), rng.random((1, 1, 2))
    g = np.ones((1, 1, 6, 6))
    g[0, 0, 2, 3] = nan
    got, want, t = _vjp_both(
        to, F.fractional_max_pool2d, x, g, 2, (6, 6), _random_samples=samples
    )
    assert np.isnan(want).sum() == 1
    _same(got, want, t)


# --------------------------------------------------------------------------
# kernels and strides far larger than the input


def _pool_kwargs(op: str, **kwargs: Any) -> dict[str, Any]:
    kwargs["op"] = op
    if op == "lp":
        kwargs["norm_type"] = 2.0
    return kwargs


@pytest.mark.parametrize("k", [10**6, 10**8, 10**15])
@pytest.mark.parametrize("op", ["max", "min", "avg", "sum", "lp"])
def test_far_apart_windows_of_a_huge_kernel(backend: Backend, k: int, op: str) -> None:
    """Eleven windows 10**(n-1) apart: each tap folds only the windows whose
    cell is real, so neither the forward nor the pullback builds the
    padding (2 * 10**15 cells at most here) and they cost what NumPy's do."""
    xp, to = backend
    rng = np.random.default_rng(3)
    x = rng.random((64, 4))
    kw = _pool_kwargs(op, stride=k // 10, padding=((k - 1, k - 1),))
    indices = {"return_indices": True} if op in ("max", "min") else {}
    want = ndpool.pool(x, k, **kw, **indices)
    t = to(x)
    _same(ndpool.pool(t, k, **kw, **indices), want, t, exact=_exact(xp, op))
    g = rng.standard_normal((64, 11))
    got, want_grad, _ = _vjp_both(to, ndpool.pool, x, g, k, **kw)
    _same(got, want_grad, t, exact=_exact(xp, op))


@pytest.mark.parametrize("op", ["max", "avg", "lp"])
def test_huge_kernel_on_two_axes(backend: Backend, op: str) -> None:
    """Combined taps (indices, routing) over a huge axis and a dilated one;
    Lp at 2**600, where the norm is summed again rescaled and the pullback
    goes pair by pair (cell, window)."""
    xp, to = backend
    rng = np.random.default_rng(4)
    x = rng.random((2, 5, 6)) * (2.0**600 if op == "lp" else 1.0)
    k = 10**9
    kw = _pool_kwargs(
        op,
        stride=(k // 10, 2),
        padding=((k - 1, k - 1), (1, 1)),
        dilation=(1, 2),
        ceil_mode=True,
    )
    indices = {"return_indices": True} if op == "max" else {}
    want = ndpool.pool(x, (k, 3), **kw, **indices)
    t = to(x)
    _same(ndpool.pool(t, (k, 3), **kw, **indices), want, t, exact=_exact(xp, op))
    g = rng.standard_normal(ndpool.pool(x, (k, 3), **kw).shape)
    got, want_grad, _ = _vjp_both(to, ndpool.pool, x, g, (k, 3), **kw)
    _same(got, want_grad, t, exact=_exact(xp, op))


GEOMETRIES = [
    {
        "kernel_size": 3,
        "stride": 24,
        "padding": 1,
    },  # the last window's gap passes the end
    {"kernel_size": 5, "stride": 49, "padding": 2, "ceil_mode": True},
    {"kernel_size": 3, "stride": 10**9, "padding": ((2, 2),)},
    {"kernel_size": 4, "stride": 3, "dilation": 20, "padding": ((30, 59),)},
    {"kernel_size": 2, "dilation": 60, "padding": ((59, 59),)},  # empty windows
    {
        "kernel_size": 5,
        "stride": 10**9 + 7,
        "dilation": 10**10,
        "padding": ((4 * 10**10 - 1, 4 * 10**10 - 1),),
    },
]


@pytest.mark.parametrize("kw", GEOMETRIES)
@pytest.mark.parametrize("op", ["max", "avg", "sum"])
def test_long_strides_and_dilations(
    backend: Backend, kw: dict[str, Any], op: str
) -> None:
    xp, to = backend
    rng = np.random.default_rng(5)
    x = rng.integers(-3, 4, size=(3, 50)).astype(np.float64)
    indices = {"return_indices": True} if op == "max" else {}
    want = ndpool.pool(x, op=op, **kw, **indices)
    t = to(x)
    _same(ndpool.pool(t, op=op, **kw, **indices), want, t, exact=_exact(xp, op))
    g = rng.standard_normal(ndpool.pool(x, op=op, **kw).shape)
    got, want_grad, _ = _vjp_both(to, ndpool.pool, x, g, op=op, **kw)
    _same(got, want_grad, t, exact=_exact(xp, op))


def test_empty_windows_whose_index_aliases_later_rows(backend: Backend) -> None:
    """Thousands of windows wholly in padding carry PyTorch's index, which
    points into later rows of the plane: their gradients go there, as in
    NumPy, gathered in a few rounds rather than window by window."""
    _, to = backend
    rng = np.random.default_rng(7)
    x = rng.random((2, 16, 8))
    d = 10**4
    kw = _pool_kwargs(
        "max", stride=1, dilation=(1, d), padding=((0, 0), (d - 1, d - 1))
    )
    values, idx = ndpool.pool(x, (1, 2), return_indices=True, **kw)
    assert np.count_nonzero(np.isinf(values) & (idx < 16 * 8)) > 1000
    g = rng.standard_normal(values.shape)
    got, want, t = _vjp_both(to, ndpool.pool, x, g, (1, 2), **kw)
    _same(got, want, t, exact=False)  # added after the others: last bits


WINDOW_MAJOR = [
    (F.max_pool1d, (200,), (150, 50), {"return_indices": True}),
    (F.avg_pool1d, (200,), (150, 50, 40), {}),
    (F.adaptive_max_pool2d, (40, 30), ((2, 1),), {"return_indices": True}),
    (F.adaptive_avg_pool2d, (40, 30), ((1, 3),), {}),
    (ndpool.global_max_pool, (20, 30), (), {}),
    (ndpool.pool, (60, 50), ((50, 40),), {"op": "max", "nan_policy": "omit"}),
    (ndpool.pool, (60, 50), ((50, 20),), {"op": "min", "dilation": (1, 2)}),
    (ndpool.pool, (60, 50), ((50, 20),), {"op": "lp", "norm_type": 2.0}),
]


@pytest.mark.parametrize(("fn", "shape", "args", "kwargs"), WINDOW_MAJOR)
def test_few_windows_of_many_taps(
    backend: Backend, fn: Any, shape: Any, args: Any, kwargs: Any
) -> None:
    """Where taps outnumber windows, each window is reduced (and its
    gradient spread or routed) at once: ties, NaN and indices as the tap
    loop has them, and a global max gradient in one step, not one per tap."""
    xp, to = backend
    rng = np.random.default_rng(8)
    x = rng.integers(-3, 4, size=(2, 3, *shape)).astype(np.float64)  # ties
    x[rng.random(x.shape) < 0.01] = nan
    x[0, 0] = nan  # a window of NaN only
    want = fn(x, *args, **kwargs)
    t = to(x)
    op = kwargs["op"] if "op" in kwargs else fn.__name__.split("_")[-2]
    _same(fn(t, *args, **kwargs), want, t, exact=_exact(xp, op))
    values = want[0] if isinstance(want, tuple) else want
    g = rng.standard_normal(values.shape)
    got, want_grad, _ = _vjp_both(to, fn, x, g, *args, **kwargs)
    _same(got, want_grad, t, exact=_exact(xp, op))


# --------------------------------------------------------------------------
# outputs beyond memory, and empty ones

BEYOND = [
    lambda t: F.adaptive_max_pool2d(t, (10**6, 10**6)),
    lambda t: F.adaptive_max_pool2d(t, (10**6, 10**6), return_indices=True),
    lambda t: F.adaptive_avg_pool2d(t, (10**6, 10**6)),
    lambda t: ndpool.pool(
        t, (10**6,) * 2, stride=1, padding=((10**6 - 1, 10**6 - 1),) * 2, op="sum"
    ),
]


#: every kind of result: values of each op, and max's indices
OPS_AND_INDICES = [
    ("max", False), ("max", True), ("avg", False), ("sum", False), ("lp", False)
]  # fmt: skip


@pytest.mark.parametrize("call", BEYOND)
def test_output_beyond_memory_is_a_value_error(backend: Backend, call: Any) -> None:
    """A terabyte output is refused before anything is allocated, as for a
    NumPy array, not by the library's allocator."""
    _, to = backend
    with pytest.raises(ValueError, match=r"the pooling arguments: .* memory"):
        call(to(np.ones((1, 1, 1))))


@pytest.mark.parametrize(("op", "return_indices"), OPS_AND_INDICES)
def test_a_pass_larger_than_memory_is_refused(
    backend: Backend, op: str, return_indices: bool
) -> None:
    """10**5 padded windows beside a 200,000-cell axis summed whole. Input
    and output are small. Max and min run the innermost axis first (their
    ties resolve in row-major order, pass by pass), whose pass would be
    160 GB: a ValueError naming the passes, not the allocator's error.
    Sums run the whole axis first, as on NumPy (``_core.pass_order``): on
    200 windows beside it, NumPy's result."""
    _, to = backend
    n = 200_000
    k = 10**5 if op == "max" else 200
    kw: dict[str, Any] = {"stride": 1, "padding": ((0, 0), (k - 1, k - 1))}
    if op == "lp":
        kw["norm_type"] = 2.0
    call = functools.partial(
        ndpool.pool, kernel_size=(n, k), op=op, return_indices=return_indices, **kw
    )
    x = np.ones((n, 1))
    if op != "max":
        np.testing.assert_allclose(host(call(to(x))), call(x))
        return
    with pytest.raises(ValueError, match="between two axes' passes"):
        call(to(x))


def test_output_size_counts_the_indices(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1000 bool values fit in 5000 bytes; with their int64 indices they
    do not."""
    _, to = backend
    monkeypatch.setattr(ndpool._geometry, "_memory_bytes", lambda: 5000)
    t = to(np.ones((1, 1000), dtype=np.bool_))
    assert host(F.max_pool1d(t, 1)).shape == (1, 1000)
    with pytest.raises(ValueError, match="the pooling arguments"):
        F.max_pool1d(t, 1, return_indices=True)


@pytest.mark.parametrize(("op", "return_indices"), OPS_AND_INDICES)
def test_empty_output_loops_over_no_tap(
    backend: Backend, op: str, return_indices: bool
) -> None:
    """An empty batch beside 10**12 windows: nothing to pool, no tap to
    loop over; the dtypes are NumPy's."""
    _, to = backend
    k = 10**12
    kw = _pool_kwargs(op, stride=1, padding=((k - 1, k - 1),))
    x = np.ones((0, 4), np.int16)
    want = ndpool.pool(x, k, return_indices=return_indices, **kw)
    t = to(x)
    _same(ndpool.pool(t, k, return_indices=return_indices, **kw), want, t)
    got, want_grad, _ = _vjp_both(
        to, ndpool.pool, x.astype(np.float64), np.ones((0, k + 3)), k, **kw
    )
    assert host(got).shape == want_grad.shape == (0, 4)


# --------------------------------------------------------------------------
# the order a cell adds its windows' gradients in


@pytest.mark.parametrize(
    ("fn", "args"),
    [
        (F.max_pool2d, (3, 1, 1)),
        (F.max_pool2d, (3, 2, 1, 2, True)),
        (F.max_pool1d, (4, 1, 2)),
        (F.adaptive_max_pool1d, (20,)),  # windows of one start share a cell
    ],
)
def test_max_gradient_adds_in_output_order(
    backend: Backend, fn: Any, args: Any
) -> None:
    """Overlapping windows that route to one cell add up in output order,
    as NumPy's scatter and PyTorch's backward do: bit for bit in float32."""
    _, to = backend
    rng = np.random.default_rng(6)
    nd = 2 if fn is F.max_pool2d else 1
    x = rng.integers(0, 2, size=(2, 3, *(9,) * nd)).astype(np.float32)  # many ties
    out = fn(x, *args)
    g = rng.standard_normal(out.shape).astype(np.float32)
    got, want, t = _vjp_both(to, fn, x, g, *args)
    _same(got, want, t)


def test_gradient_and_indices_of_numpy_or_another_library(backend: Backend) -> None:
    """A pullback of an Array-API input takes a gradient of the same library
    or NumPy data (moved beside the input: JAX code passes NumPy arrays),
    and unpooling its indices likewise; another library's array is a
    TypeError naming the argument (it was an AttributeError)."""
    xp, to = backend
    x = np.arange(36.0).reshape(1, 1, 6, 6)
    t = to(x)
    _, pull = ndpool.vjp(F.max_pool2d, t, 2)
    _, want = ndpool.vjp(F.max_pool2d, x, 2)
    g = np.arange(9.0).reshape(1, 1, 3, 3)
    for data in (g, g.tolist(), g.astype(">f8")):
        _same(pull(data), want(g), t)
    other = pytest.importorskip(
        "array_api_strict" if xp.__name__ != "array_api_strict" else "torch"
    )
    with pytest.raises(TypeError, match="grad_out must be an array of the input"):
        pull(other.asarray(g))
    values, idx = F.max_pool2d(t, 2, return_indices=True)
    with pytest.raises(TypeError, match="indices must be an array of the input"):
        F.max_unpool2d(values, other.asarray(host(idx)), 2)
    if xp.__name__ == "torch":  # the others have no integer-array scatter
        assert host(F.max_unpool2d(values, host(idx), 2)).max() == 35.0


def test_torch_meta_tensors_give_shapes() -> None:
    """Meta tensors hold no values: every check of values is skipped and the
    result has the right shape, as PyTorch's own functions do."""
    torch = pytest.importorskip("torch")
    m = torch.empty((2, 3, 8, 8), device="meta")
    assert ndpool.pool(m, (2, 2), op="lp", norm_type=3.0).shape == (2, 3, 4, 4)
    assert ndpool.global_lp_pool(m, norm_type=2.0).shape == (2, 3)
    out, pull = ndpool.vjp(ndpool.pool, m, (2, 2), op="lp", norm_type=2.0)
    assert pull(torch.empty(out.shape, device="meta")).shape == (2, 3, 8, 8)
    idx = torch.empty((2, 3, 4, 4), dtype=torch.int64, device="meta")
    assert F.max_unpool2d(torch.empty((2, 3, 4, 4), device="meta"), idx, 2).shape == (
        2, 3, 8, 8,
    )  # fmt: skip


def test_lp_under_jax_jit_rescales_as_eagerly() -> None:
    """Inside ``jax.jit`` the overflow test cannot branch on values: the
    rescaled norms are always worked out, so the 1e200 window's norm is
    right there too, and so is its gradient."""
    pytest.importorskip("jax")
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8))
    x[0, 0, 0, 0] = 1e200

    def norm(a: Any) -> Any:
        return ndpool.pool(a, (2, 2), op="lp", norm_type=2.0)

    want = ndpool.pool(x, (2, 2), op="lp", norm_type=2.0)
    got = np.asarray(jax.jit(norm)(jnp.asarray(x)))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[0, 0, 0, 0] == pytest.approx(1e200)

    def grad(a: Any) -> Any:
        out, pull = ndpool.vjp(ndpool.pool, a, (2, 2), op="lp", norm_type=2.0)
        return pull(jnp.ones(out.shape, dtype=out.dtype))

    _, pull = ndpool.vjp(ndpool.pool, x, (2, 2), op="lp", norm_type=2.0)
    np.testing.assert_allclose(
        np.asarray(jax.jit(grad)(jnp.asarray(x))),
        pull(np.ones(want.shape)),
        rtol=1e-12,
    )


def test_dtype_may_be_the_librarys_own(backend: Backend) -> None:
    """``dtype=`` takes the input library's dtype objects (``torch.uint8``,
    ``xps.uint8``) as well as NumPy's, with the same result."""
    xp, to = backend
    x = np.arange(32.0).reshape(2, 1, 4, 4)
    t = to(x)
    for name in ("uint8", "int16", "float64"):
        got = ndpool.pool(t, (2, 2), op="avg", dtype=getattr(xp, name))
        assert got.dtype == getattr(xp, name)
        _same(got, ndpool.pool(x, (2, 2), op="avg", dtype=np.dtype(name)), t)
        with warnings.catch_warnings():  # array_api_strict warns when its
            warnings.simplefilter("error")  # dtypes are compared to NumPy's
            numpy_named = ndpool.pool(t, (2, 2), op="avg", dtype=np.dtype(name))
        assert numpy_named.dtype == getattr(xp, name)
    with pytest.raises(TypeError, match="dtype="):
        ndpool.global_avg_pool(t, dtype=xp.complex128)
