"""Array-API input: the same kind of array out, equal to the NumPy result.

Backends: ``array_api_strict`` (rejects anything outside the standard),
PyTorch CPU tensors, and JAX / CuPy where installed (skipped otherwise).
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ndpool
import ndpool.functional as F
import ndpool.nn
from arrays import host, same


def _strict() -> tuple[Any, Callable[[np.ndarray], Any]]:
    xps = pytest.importorskip("array_api_strict")
    return xps, lambda a: xps.asarray(a)


def _strict_device() -> tuple[Any, Callable[[np.ndarray], Any]]:
    """``array_api_strict`` on a device other than its default one: a
    constant made on the default device would not mix with it."""
    xps = pytest.importorskip("array_api_strict")
    other = xps.Device("device1")
    return xps, lambda a: xps.asarray(a, device=other)


def _torch() -> tuple[Any, Callable[[np.ndarray], Any]]:
    torch = pytest.importorskip("torch")
    return torch, lambda a: torch.from_numpy(np.array(a))


def _jax() -> tuple[Any, Callable[[np.ndarray], Any]]:
    jnp = pytest.importorskip("jax.numpy")
    import jax

    jax.config.update("jax_enable_x64", True)
    return jnp, lambda a: jnp.asarray(a)


def _cupy() -> tuple[Any, Callable[[np.ndarray], Any]]:
    cp = pytest.importorskip("cupy")
    return cp, lambda a: cp.asarray(a)


BACKENDS = {
    "array_api_strict": _strict,
    "array_api_strict device1": _strict_device,
    "torch": _torch,
    "jax": _jax,
    "cupy": _cupy,
}


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> tuple[Any, Callable[[np.ndarray], Any]]:
    if (
        request.param in ("jax", "cupy")
        and importlib.util.find_spec(request.param) is None
    ):
        pytest.skip(f"{request.param} is not installed")
    return BACKENDS[request.param]()


def _same(got: Any, want: Any, like: Any, exact: bool) -> None:
    same(got, want, like, exact, rtol=1e-5, atol=1e-6)


def _data(shape: tuple[int, ...], seed: int = 0, dtype: Any = np.float32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, size=shape).astype(dtype)
    if np.dtype(dtype).kind == "f":
        x[rng.random(shape) < 0.05] = np.nan
    return x


GRID = [
    g
    for g in itertools.product((1, 2, 3), (1, 2), (0, 1), (1, 2), (False, True))
    if 2 * g[2] <= g[0]
]


@pytest.mark.parametrize(("k", "s", "p", "d", "c"), GRID)
def test_max_pool2d(backend: Any, k: int, s: int, p: int, d: int, c: bool) -> None:
    _, to = backend
    x = _data((2, 3, 9, 8))
    try:
        want = F.max_pool2d(x, k, s, p, d, c, True)
    except ValueError:
        pytest.skip("invalid geometry")
    t = to(x)
    _same(F.max_pool2d(t, k, s, p, d, c, True), want, t, exact=True)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_every_torch_op(backend: Any, nd: int) -> None:
    _, to = backend
    x = _data((2, 3, *(7, 6, 5)[:nd]), seed=nd)
    t = to(x)
    f = lambda name: getattr(F, f"{name}{nd}d")  # noqa: E731
    _same(f("max_pool")(t, 3, 2, 1), f("max_pool")(x, 3, 2, 1), t, True)
    _same(f("avg_pool")(t, 2, 1, 1, True), f("avg_pool")(x, 2, 1, 1, True), t, False)
    _same(
        f("avg_pool")(t, 3, 2, 1, False, False),
        f("avg_pool")(x, 3, 2, 1, False, False),
        t,
        False,
    )
    xa = np.abs(np.nan_to_num(x))
    ta = to(xa)
    _same(f("lp_pool")(ta, 2.0, 2), f("lp_pool")(xa, 2.0, 2), ta, False)
    for size in (1, 3, 4):
        _same(
            f("adaptive_max_pool")(t, size, True),
            f("adaptive_max_pool")(x, size, True),
            t,
            True,
        )
        _same(
            f("adaptive_avg_pool")(t, size), f("adaptive_avg_pool")(x, size), t, False
        )


@pytest.mark.parametrize("op", ["max", "min", "avg", "sum", "lp"])
@pytest.mark.parametrize("policy", ["propagate", "omit"])
def test_generic_pool_any_axes(backend: Any, op: str, policy: str) -> None:
    _, to = backend
    x = _data((5, 4, 7), seed=2)
    kw: dict[str, Any] = {
        "op": op,
        "axes": (2, 0),
        "stride": (2, 1),
        "padding": "same",
        "nan_policy": policy,
        "return_indices": op in ("max", "min"),
    }
    if op == "lp":
        kw["norm_type"] = 3.0
    t = to(x)
    _same(
        ndpool.pool(t, (3, 2), **kw),
        ndpool.pool(x, (3, 2), **kw),
        t,
        op in ("max", "min"),
    )


@pytest.mark.parametrize("p", [3.0, 200.0, -2.0])
@pytest.mark.parametrize("scale", [2.0**-1000, 2.0**1000])
@pytest.mark.parametrize("policy", ["propagate", "omit"])
def test_p_norm_past_the_float_range(
    backend: Any, p: float, scale: float, policy: str
) -> None:
    """The sums of |x|**p that overflow or underflow are redone rescaled,
    on every backend as in the core."""
    _, to = backend
    x = (_data((2, 3, 6, 5), seed=3) + 5).astype(np.float64) * scale
    kw: dict[str, Any] = {"op": "lp", "norm_type": p, "nan_policy": policy}
    kw["padding"] = "same"
    t = to(x)
    want = ndpool.pool(x, (3, 2), **kw)
    assert np.isfinite(want).sum() > want.size // 2  # the rescaled values
    got = ndpool.pool(t, (3, 2), **kw)
    assert type(got) is type(t)
    # relative: the values are near 2**-1000 or 2**1000
    np.testing.assert_allclose(host(got) / scale, want / scale, rtol=1e-12)
    # the gradient goes pair by pair there, on every backend
    out, pull = ndpool.vjp(ndpool.pool, x, (3, 2), **kw)
    _, pull_t = ndpool.vjp(ndpool.pool, t, (3, 2), **kw)
    g = np.random.default_rng(4).standard_normal(out.shape)
    want_grad = pull(g)
    assert np.isfinite(want_grad).sum() > want_grad.size // 2
    np.testing.assert_allclose(
        host(pull_t(to(g))), want_grad, rtol=1e-10, atol=1e-12, equal_nan=True
    )


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int32, np.float64, np.float16, np.bool_]
)
def test_dtypes(backend: Any, dtype: Any) -> None:
    xp, to = backend
    if dtype is np.float16 and not hasattr(xp, "float16"):
        pytest.skip(f"{xp.__name__} has no float16")
    x = _data((2, 2, 6, 6), seed=3, dtype=np.float64)
    x = np.nan_to_num(x).astype(dtype) if dtype is not np.bool_ else x > 0
    t = to(x)
    _same(F.max_pool2d(t, 2), F.max_pool2d(x, 2), t, True)
    if dtype is not np.float16:
        _same(F.avg_pool2d(t, 2), F.avg_pool2d(x, 2), t, False)


def test_channels_last_and_global(backend: Any) -> None:
    _, to = backend
    x = _data((2, 5, 6, 3), seed=4)
    t = to(x)
    _same(
        F.max_pool2d(t, 2, return_indices=True, data_format="channels_last"),
        F.max_pool2d(x, 2, return_indices=True, data_format="channels_last"),
        t,
        True,
    )
    for fn in (ndpool.global_max_pool, ndpool.global_avg_pool):
        for policy in ("propagate", "omit"):
            _same(
                fn(t, nan_policy=policy),
                fn(x, nan_policy=policy),
                t,
                fn is ndpool.global_max_pool,
            )


def test_fractional(backend: Any) -> None:
    _, to = backend
    x = _data((2, 3, 11, 9), seed=5)
    samples = np.random.default_rng(0).random((2, 3, 2)).astype(np.float32)
    want = F.fractional_max_pool2d(
        x, 2, (5, 4), return_indices=True, _random_samples=samples
    )
    t = to(x)
    got = F.fractional_max_pool2d(
        t, 2, (5, 4), return_indices=True, _random_samples=to(samples)
    )
    _same(got, want, t, True)


def test_unpool_roundtrip_or_clear_error(backend: Any) -> None:
    xp, to = backend
    x = _data((1, 2, 6, 6), seed=6)
    out, idx = F.max_pool2d(x, 2, return_indices=True)
    want = F.max_unpool2d(out, idx, 2)
    t = to(out)
    # the standard has no scatter: JAX (immutable) and array_api_strict
    # refuse it with a clear TypeError; torch and CuPy scatter natively
    if xp.__name__.startswith(("jax", "array_api_strict")):
        with pytest.raises(TypeError, match="scatter"):
            F.max_unpool2d(t, to(idx), 2)
        return
    _same(F.max_unpool2d(t, to(idx), 2), want, t, True)


def test_no_numpy_roundtrip_for_torch() -> None:
    torch = pytest.importorskip("torch")
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=False)
    out = F.max_pool2d(x, 2)
    assert isinstance(out, torch.Tensor)
    assert out.device == x.device


def test_array_api_compat_absent_gives_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setitem(sys.modules, "array_api_compat", None)
    with pytest.raises(TypeError, match="array-api-compat"):
        F.max_pool2d(torch.zeros(1, 4, 4), 2)


WINDOW_BY_WINDOW = [  # windows outnumbered by their cells: the per-window path
    ("global_max", lambda a: ndpool.global_max_pool(a)),
    ("global_max omit", lambda a: ndpool.global_max_pool(a, nan_policy="omit")),
    ("adaptive_max indices", lambda a: F.adaptive_max_pool2d(a, 1, True)),
    ("max k64 indices", lambda a: F.max_pool2d(a, 64, return_indices=True)),
    (
        "min omit indices",
        lambda a: ndpool.pool(
            a, (64, 64), op="min", nan_policy="omit", return_indices=True
        ),
    ),
    ("lp inf", lambda a: ndpool.global_lp_pool(a, float("inf"))),
]


@pytest.mark.parametrize(("name", "call"), WINDOW_BY_WINDOW)
def test_window_by_window_on_another_device(name: str, call: Any) -> None:
    """Max and min window by window make their NaN and fill constants on
    the input's device."""
    _, to = _strict_device()
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64))
    x[0, 0, 3, 5] = np.nan
    t = to(x)
    _same(call(t), call(x), t, exact=True)


@pytest.mark.parametrize(
    ("fn", "args", "kwargs", "shape"),
    [
        (ndpool.pool, ((2, 2),), {"op": "avg", "dtype": np.int32}, (2, 3, 6, 6)),
        (ndpool.pool, ((2, 2),), {"op": "max", "dtype": np.int32}, (2, 3, 6, 6)),
        (F.avg_pool2d, (2,), {}, (0, 3, 6, 6)),
        (F.lp_pool2d, (2.0, 2), {}, (0, 3, 6, 6)),
    ],
    ids=["avg to int32", "max to int32", "avg of no plane", "lp of no plane"],
)
def test_zero_gradients_on_another_device(
    fn: Any, args: Any, kwargs: Any, shape: tuple[int, ...]
) -> None:
    """A gradient that is zero everywhere (an integer output, an empty
    batch) is made on the input's device."""
    _, to = _strict_device()
    x = np.random.default_rng(1).standard_normal(shape)
    out, pull = ndpool.vjp(fn, x, *args, **kwargs)
    t = to(x)
    _, tpull = ndpool.vjp(fn, t, *args, **kwargs)
    g = np.ones(out.shape, dtype=out.dtype)
    _same(tpull(to(g)), pull(g), t, exact=True)


def test_unsupported_dtype_names_it() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="complex") as complex_error:
        F.max_pool2d(torch.zeros(1, 4, 4, dtype=torch.complex64), 2)
    assert "float32, float64; cast it to one of those first" in str(complex_error.value)
    assert "bfloat16" not in str(complex_error.value)
    with pytest.raises(TypeError, match="bfloat16 to float32 keeps every value"):
        F.max_pool2d(torch.zeros(1, 4, 4, dtype=torch.bfloat16), 2)


@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 9), st.integers(1, 9)),
    k=st.integers(1, 3),
    s=st.integers(1, 3),
    ceil=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_cases_strict(
    shape: tuple[int, int, int], k: int, s: int, ceil: bool, seed: int
) -> None:
    xps = pytest.importorskip("array_api_strict")
    x = _data(shape, seed=seed)
    try:
        want = F.max_pool1d(x, k, s, k // 2, 1, ceil, True)
    except ValueError:
        return
    t = xps.asarray(x)
    _same(F.max_pool1d(t, k, s, k // 2, 1, ceil, True), want, t, True)
    _same(
        F.avg_pool1d(t, k, s, k // 2, ceil),
        F.avg_pool1d(x, k, s, k // 2, ceil),
        t,
        False,
    )


# --------------------------------------------------------------------------
# gradients and layers


GRAD_CASES: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("max_pool2d", (3, 2, 1), {}),
    ("max_pool1d", (2, 1, 1, 2, True), {}),
    ("max_pool3d", (2,), {"data_format": "channels_last"}),
    ("avg_pool2d", (3, 2, 1, True, False), {}),
    ("avg_pool1d", (2, 1, 1), {"nan_policy": "omit"}),
    ("avg_pool3d", (2, 1, 0, False, True, 3), {}),
    ("lp_pool2d", (2.0, 2), {}),
    ("lp_pool1d", (3.0, 3, 2, True), {}),
    ("lp_pool2d", (float("inf"), 2), {}),
    ("adaptive_max_pool2d", (3,), {}),
    ("adaptive_avg_pool2d", ((4, 3),), {}),
    ("adaptive_avg_pool1d", (5,), {}),
    (
        "fractional_max_pool2d",
        (2, (4, 3)),
        {"_random_samples": np.random.default_rng(1).random((2, 3, 2))},
    ),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), GRAD_CASES)
def test_vjp_matches_numpy(backend: Any, name: str, args: Any, kwargs: Any) -> None:
    _, to = backend
    nd = int(name[-2])
    shape = (2, 3, *(7, 6, 5)[:nd])
    if kwargs.get("data_format") == "channels_last":
        shape = (2, *(7, 6, 5)[:nd], 3)
    rng = np.random.default_rng(len(name) + nd)
    x = rng.integers(-3, 4, size=shape).astype(np.float64)  # ties
    if "lp" in name:
        x = np.abs(x) + 0.5
    fn = getattr(F, name)
    out, pull = ndpool.vjp(fn, x, *args, **kwargs)
    g = rng.standard_normal(out.shape)
    want = pull(g)
    t = to(x)
    tout, tpull = ndpool.vjp(fn, t, *args, **kwargs)
    _same(tout, out, t, exact=False)
    _same(tpull(to(g)), want, t, exact=False)


@pytest.mark.parametrize("op", ["max", "min", "avg", "sum", "lp"])
def test_vjp_generic_and_global(backend: Any, op: str) -> None:
    _, to = backend
    rng = np.random.default_rng(9)
    x = rng.integers(-3, 4, size=(4, 3, 6)).astype(np.float64)
    kw: dict[str, Any] = {"op": op, "axes": (2, 0), "padding": "same", "stride": (2, 1)}
    if op == "lp":
        kw["norm_type"] = 2.0
    out, pull = ndpool.vjp(ndpool.pool, x, (3, 2), **kw)
    g = rng.standard_normal(out.shape)
    t = to(x)
    _, tpull = ndpool.vjp(ndpool.pool, t, (3, 2), **kw)
    _same(tpull(to(g)), pull(g), t, exact=False)
    for fn in (ndpool.global_max_pool, ndpool.global_avg_pool, ndpool.global_lp_pool):
        gout, gpull = ndpool.vjp(fn, x[None])
        gg = rng.standard_normal(gout.shape)
        _same(ndpool.vjp(fn, to(x[None]))[1](to(gg)), gpull(gg), t, exact=False)


@pytest.mark.parametrize(
    ("shape", "args"),
    [
        ((2, 3, 2, 2), ((1, 2), 1, (0, 1), (1, 3))),  # index aliases the next row
        ((2, 3, 3, 2), (2, 1, 1, 3, True)),  # ceil_mode: in and out of plane
        ((1, 2, 4, 1, 2), ((2, 1, 2), 1, (1, 0, 1), (3, 1, 3))),
    ],
)
def test_vjp_window_wholly_in_padding(backend: Any, shape: Any, args: Any) -> None:
    """A dilated window with no real cell keeps PyTorch's index; its gradient
    goes where that index points in the plane (as PyTorch) and is dropped
    outside it (PyTorch writes into the next plane), in every backend as in
    NumPy."""
    _, to = backend
    fn = F.max_pool3d if len(shape) == 5 else F.max_pool2d
    x = np.random.default_rng(23).integers(-3, 4, size=shape).astype(np.float64)
    out, pull = ndpool.vjp(fn, x, *args)
    assert np.isinf(out).any()  # some window is wholly in padding
    g = np.random.default_rng(24).standard_normal(out.shape)
    t = to(x)
    _same(ndpool.vjp(fn, t, *args)[1](to(g)), pull(g), t, exact=False)


def test_unpool_vjp_gathers(backend: Any) -> None:
    xp, to = backend
    if xp.__name__.startswith(("jax", "array_api_strict")):
        pytest.skip("no integer-array scatter for the forward")
    x = _data((2, 3, 6, 6), seed=12, dtype=np.float64)
    out, idx = F.max_pool2d(np.nan_to_num(x), 2, return_indices=True)
    res, pull = ndpool.vjp(F.max_unpool2d, out, idx, 2)
    g = np.random.default_rng(3).standard_normal(res.shape)
    t = to(out)
    for indices in (to(idx), idx):  # NumPy indices too, as the forward takes
        _, tpull = ndpool.vjp(F.max_unpool2d, t, indices, 2)
        _same(tpull(to(g)), pull(g), t, exact=True)
        layer = ndpool.nn.MaxUnpool2d(2)
        _same(layer(t, indices), res, t, exact=True)
        _same(layer.backward(to(g)), pull(g), t, exact=True)


def test_layers_on_tensors(backend: Any) -> None:
    _, to = backend
    x = _data((2, 3, 8, 8), seed=11, dtype=np.float64)
    x = np.nan_to_num(x)
    for layer in (ndpool.nn.MaxPool2d(3, 2, 1), ndpool.nn.AvgPool2d(2)):
        want = layer(x)
        g = np.ones_like(want)
        want_grad = layer.backward(g)
        t = to(x)
        _same(layer(t), want, t, exact=False)
        _same(layer.backward(to(g)), want_grad, t, exact=False)


# --------------------------------------------------------------------------
# dtypes: every backend gives NumPy's dtype and values


def _xp_name(xp: Any) -> str:
    return str(xp.__name__)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.bool_])
@pytest.mark.parametrize("p", [2.0, 1.5, 3.0])
def test_lp_pool_of_integers_and_bools(backend: Any, dtype: Any, p: float) -> None:
    """PyTorch's float16 step rounding is for narrow float input only: an
    integer or bool input is not truncated on the way (NaN where NumPy has
    it: a negative sum to a fractional power)."""
    _, to = backend
    x = np.array([[1, 0, 1, 1, -3, 5, 2]]) if dtype is np.int16 else [[1, 0, 1, 1]]
    x = np.array(x).astype(dtype)
    for args in ((p, 2), (p, 2, 1), (p, 3, 2, True)):
        want = F.lp_pool1d(x, *args)
        t = to(x)
        _same(F.lp_pool1d(t, *args), want, t, exact=False)
    x2 = np.abs(np.nan_to_num(_data((1, 2, 5, 4), seed=13))).astype(dtype)
    t2 = to(x2)
    _same(F.lp_pool2d(t2, p, 2, 1), F.lp_pool2d(x2, p, 2, 1), t2, exact=False)


FLOAT16_CALLS: list[tuple[str, Callable[[Any], Any]]] = [
    ("avg_pool2d", lambda a: F.avg_pool2d(a, 2)),
    ("avg_pool1d", lambda a: F.avg_pool1d(a[..., 0, :], 3, 2, 1)),
    ("lp_pool2d", lambda a: F.lp_pool2d(a, 2.0, 2)),
    ("adaptive_avg_pool2d", lambda a: F.adaptive_avg_pool2d(a, 3)),
    ("pool-sum", lambda a: ndpool.pool(a, 2, op="sum")),
    ("pool-avg-omit", lambda a: ndpool.pool(a, 2, op="avg", nan_policy="omit")),
    ("pool-lp", lambda a: ndpool.pool(a, 2, op="lp", norm_type=3.0)),
    ("global_avg_pool", lambda a: ndpool.global_avg_pool(a)),
    ("global_lp_pool", lambda a: ndpool.global_lp_pool(a)),
]


@pytest.mark.parametrize(
    ("name", "call"), FLOAT16_CALLS, ids=[c[0] for c in FLOAT16_CALLS]
)
def test_float16_sums_keep_float16(backend: Any, name: str, call: Any) -> None:
    """float16 sums accumulate in float32 and come back float16 (SPEC 3)."""
    xp, to = backend
    if not hasattr(xp, "float16"):
        pytest.skip(f"{_xp_name(xp)} has no float16")
    x = np.random.default_rng(14).standard_normal((1, 2, 4, 6)).astype(np.float16)
    if name.startswith("lp"):
        x = np.abs(x)
    want = call(x)
    assert want.dtype == np.float16
    t = to(x)
    got = call(t)
    assert type(got) is type(t)
    h = host(got)
    assert h.dtype == np.float16
    np.testing.assert_allclose(h.astype(np.float64), want, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int64, np.bool_])
def test_lp_inf_of_integers_is_float64(backend: Any, dtype: Any) -> None:
    """op="lp" with p = inf takes |x| in float64 for integer and bool input,
    as the core: no abs overflow at the most negative integer."""
    _, to = backend
    if dtype is np.bool_:
        x = np.array([[[True, False, False, False]]])
    else:
        info = np.iinfo(dtype)
        x = np.array([[[info.min, 5, -3 if info.min else 3, 2]]], dtype=dtype)
    t = to(x)
    for call in (
        lambda a: ndpool.pool(a, 2, op="lp", norm_type=np.inf),
        lambda a: ndpool.pool(a, 2, op="lp", norm_type=np.inf, padding=1),
        lambda a: ndpool.global_lp_pool(a, np.inf),
    ):
        want = call(x)
        assert want.dtype == np.float64
        _same(call(t), want, t, exact=True)


SATURATING: list[tuple[Any, Any, int, str]] = [
    (np.full((1, 6), 100, np.int64), "int8", 6, "sum"),  # 600: 127, not 88
    (np.array([[-1, -1, 3, 4]], np.int32), "uint8", 2, "sum"),  # -2: 0, not 254
    (np.array([[300, -300, 5, 7]], np.int16), "int8", 1, "max"),
    (np.array([[1e19, -1e19, np.nan, 2.6]]), "int64", 1, "max"),
    (np.array([[2e19, -1.0, 1.5, 2.5]]), "uint64", 1, "max"),
    (np.array([[1e10, -1e10, 3.5, -2.5]], np.float32), "int32", 2, "avg"),
    (np.array([[2**62, 2**62, 2**62, 2**62]], np.int64), "int64", 4, "sum"),
]


@pytest.mark.parametrize(("x", "dtype", "k", "op"), SATURATING)
def test_integer_dtype_saturates(
    backend: Any, x: np.ndarray, dtype: str, k: int, op: str
) -> None:
    """dtype=: integers and floats to an integer dtype round to nearest and
    saturate (NaN: 0) as the core's ``_cast``, never wrap."""
    _, to = backend
    want = ndpool.pool(x, k, op=op, dtype=dtype)  # type: ignore[call-overload]
    t = to(x)
    _same(ndpool.pool(t, k, op=op, dtype=dtype), want, t, exact=True)  # type: ignore[call-overload]


UNSIGNED_CALLS: list[tuple[str, Callable[[Any], Any]]] = [
    ("max_pool2d", lambda a: F.max_pool2d(a, 2, return_indices=True)),
    ("max_pool2d-dilated", lambda a: F.max_pool2d(a, 3, 2, 1, 2, True, True)),
    (
        "min-padded",
        lambda a: ndpool.pool(
            a, (2, 3), op="min", padding=1, dilation=(3, 1), return_indices=True
        ),
    ),
    (
        "min-int32",
        lambda a: ndpool.pool(
            a, (2, 3), op="min", padding=1, dilation=(3, 1), dtype="int32"
        ),
    ),
    ("max-int8", lambda a: ndpool.pool(a, 2, dtype="int8")),
    ("max-float32", lambda a: ndpool.pool(a, 2, dtype="float32")),
    ("max-bool", lambda a: ndpool.pool(a, 2, dtype="bool")),
    ("adaptive_max_pool2d", lambda a: F.adaptive_max_pool2d(a, 3, True)),
    ("global_max_pool", lambda a: ndpool.global_max_pool(a)),
    ("sum", lambda a: ndpool.pool(a, (2, 2), op="sum")),
    ("sum-global", lambda a: ndpool.pool(a, (7, 6), op="sum")),
    ("sum-int8", lambda a: ndpool.pool(a, (2, 2), op="sum", dtype="int8")),
    ("sum-int64", lambda a: ndpool.pool(a, (2, 2), op="sum", dtype="int64")),
    ("sum-uint16", lambda a: ndpool.pool(a, (2, 2), op="sum", dtype="uint16")),
    ("sum-float64", lambda a: ndpool.pool(a, (2, 2), op="sum", dtype="float64")),
    ("avg_pool2d", lambda a: F.avg_pool2d(a, 2)),
    ("lp-inf", lambda a: ndpool.pool(a, 2, op="lp", norm_type=np.inf)),
    ("unpool", lambda a: F.max_unpool2d(*F.max_pool2d(a, 2, return_indices=True), 2)),
]


@pytest.mark.parametrize(
    ("name", "call"), UNSIGNED_CALLS, ids=[c[0] for c in UNSIGNED_CALLS]
)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64])
def test_unsigned_dtypes(backend: Any, dtype: Any, name: str, call: Any) -> None:
    """Every unsigned dtype gives NumPy's result bit for bit, extremes and
    uint64 wrap-around of sums included, also where the library cannot add
    or compare the dtype itself (PyTorch's uint16/32/64, and its uint64
    accumulator of unsigned sums)."""
    xp, to = backend
    if name == "unpool" and _xp_name(xp).startswith(("jax", "array_api_strict")):
        pytest.skip("no integer-array scatter")
    info = np.iinfo(dtype)
    rng = np.random.default_rng(15)
    x = rng.integers(0, info.max, size=(2, 3, 7, 6), dtype=dtype, endpoint=True)
    x.flat[:5] = info.max  # sums past 2**64 wrap in uint64, as NumPy's
    x.flat[5:9] = 0
    want = call(x)
    t = to(x)
    _same(call(t), want, t, exact=True)


def test_vjp_axis_with_every_window_in_padding(backend: Any) -> None:
    """A pooled axis whose windows all lie in padding (dilation) has no
    cell to spread to: a zero gradient, as NumPy."""
    _, to = backend
    x = np.array([[1.0], [2.0]])
    for op, kw in (
        ("sum", {"dilation": 2, "padding": ((1, 1),)}),
        ("avg", {"dilation": 2, "padding": "same_lower"}),
    ):
        out, pull = ndpool.vjp(ndpool.pool, x, 2, op=op, **kw)
        g = np.ones_like(out)
        t = to(x)
        tout, tpull = ndpool.vjp(ndpool.pool, t, 2, op=op, **kw)
        _same(tout, out, t, exact=False)
        _same(tpull(to(g)), pull(g), t, exact=True)


def test_unpool_empty_plane_and_empty_batch(backend: Any) -> None:
    """An empty output plane reads no index; an empty batch scatters
    nothing (so neither needs the library's scatter)."""
    _, to = backend
    v, i = np.array([[[5.0]]]), np.array([[[0]]], dtype=np.int64)
    want = F.max_unpool1d(v, i, 2, stride=1, padding=1)
    assert want.shape == (1, 1, 0)
    tv = to(v)
    _same(F.max_unpool1d(tv, to(i), 2, stride=1, padding=1), want, tv, exact=True)
    vals, idx = F.max_pool2d(np.zeros((0, 2, 4, 4)), 2, return_indices=True)
    tv = to(vals)
    _same(F.max_unpool2d(tv, to(idx), 2), F.max_unpool2d(vals, idx, 2), tv, True)


def test_random_samples_tensor_that_requires_grad() -> None:
    torch = pytest.importorskip("torch")
    x = _data((1, 2, 6, 6), seed=16)
    s = np.full((1, 2, 2), 0.4, np.float32)
    want = F.fractional_max_pool2d(x, 2, output_size=3, _random_samples=s)
    samples = torch.from_numpy(s).requires_grad_(True)
    t = torch.from_numpy(x)
    got = F.fractional_max_pool2d(t, 2, output_size=3, _random_samples=samples)
    _same(got, want, t, exact=True)


@pytest.mark.filterwarnings("ignore:Explicitly requested dtype:UserWarning")
def test_jax_without_x64_saturates_at_its_own_limits() -> None:
    """JAX without x64 makes int32 of int64 (and uint32 of uint64): dtype=
    saturates at the limits of the dtype it makes, never overflows."""
    jax = pytest.importorskip("jax")
    if not hasattr(jax, "enable_x64"):
        pytest.skip("this JAX has no scoped x64 switch")
    jnp = jax.numpy
    x = np.array([[3e12, -3e12, 2.6, np.nan]], np.float32)
    with jax.enable_x64(False):
        for dtype, made in (("int64", np.int32), ("uint64", np.uint32)):
            got = np.asarray(ndpool.pool(jnp.asarray(x), 1, dtype=dtype))
            info = np.iinfo(made)
            assert got.dtype == made
            np.testing.assert_array_equal(got, [[info.max, info.min, 3, 0]])
