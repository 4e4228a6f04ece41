"""Gradients (``ndpool.vjp``) against ``torch.autograd.grad``.

The torch-named functions run over the forward tests' grids (ties, NaN and
±inf included) and are compared with PyTorch's own autograd. Extensions
PyTorch has no kernel for ("same" and asymmetric padding, any axes,
channels-last, min/sum/true p-norm, ``nan_policy="omit"``) are compared with
a window-gather written in torch (autograd through ``index_select``) for the
summing ops, and with the naive-loop reference's indices for max/min. Linear
ops also pass the adjoint (dot-product) test; Lp passes finite differences.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import ndpool
import ndpool.functional as F
from reference import ref_pool, regular_windows, same_pads
from test_functional import (
    _adaptive_cases,
    _avg_cases,
    _fractional_cases,
    _lp_cases,
    _max_cases,
    _rng,
    _unpool_cases,
    normal,
    shape_of,
    special,
    t,
    ties,
)

torch = pytest.importorskip("torch")
TF = torch.nn.functional

#: (rtol, atol) of gradients, per dtype
TOL = {
    np.dtype(np.float64): (1e-9, 1e-12),
    np.dtype(np.float32): (1e-5, 1e-6),
    np.dtype(np.float16): (1e-2, 1e-2),
}


# --------------------------------------------------------------------------
# helpers


def torch_grad(tfn: Any, x: np.ndarray, g: np.ndarray, *args: Any, **kw: Any) -> Any:
    xt = t(x).requires_grad_(True)
    out = tfn(xt, *args, **kw)
    out = out[0] if isinstance(out, tuple) else out
    if out.numel() == 0:  # torch's backward refuses an empty output
        return np.zeros_like(x)
    (grad,) = torch.autograd.grad(out, xt, t(g.astype(x.dtype)))
    return grad.numpy()


def assert_grad(got: np.ndarray, want: Any, x: np.ndarray) -> None:
    want = want.numpy() if hasattr(want, "numpy") else np.asarray(want)
    assert isinstance(got, np.ndarray)
    assert got.shape == x.shape
    assert got.dtype == x.dtype
    rtol, atol = TOL[x.dtype]
    np.testing.assert_allclose(
        got.astype(np.float64),
        want.astype(np.float64),
        rtol=rtol,
        atol=atol,
        equal_nan=True,
    )


def check(fn: Any, tfn: Any, x: np.ndarray, *args: Any, **kw: Any) -> None:
    """vjp(fn) against torch autograd of tfn for the same call.

    A call ndpool refuses must be one PyTorch refuses too.
    """
    try:
        out, pullback = ndpool.vjp(fn, x, *args, **kw)
    except ValueError:
        with pytest.raises(RuntimeError):
            tfn(t(x), *args, **kw)
        return
    values = out[0] if isinstance(out, tuple) else out
    g = _rng(x.shape, "g").standard_normal(values.shape)
    assert_grad(pullback(g), torch_grad(tfn, x, g, *args, **kw), x)


def as_tuple(v: Any, nd: int) -> tuple[int, ...]:
    return (v,) * nd if isinstance(v, int) else tuple(v)


# --------------------------------------------------------------------------
# torch-named functions, over the forward tests' grids


@pytest.mark.parametrize(
    ("nd", "sizes", "kernel", "stride", "padding", "dilation", "ceil", "batched"),
    _max_cases(((1, 60), (2, 60), (3, 30))),
)
def test_max_pool_grad(
    nd: int,
    sizes: tuple[int, ...],
    kernel: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil: bool,
    batched: bool,
) -> None:
    fn, tfn = getattr(F, f"max_pool{nd}d"), getattr(TF, f"max_pool{nd}d")
    shape = shape_of(nd, sizes, batched)
    args = (kernel, stride, padding, dilation, ceil)
    for make in (ties, special):
        x = make(shape)
        _, idx = fn(x, *args, True)
        if idx.size and idx.max() >= math.prod(sizes[:nd]):
            # a window wholly in padding: PyTorch's index lies outside the
            # plane and its backward writes out of bounds; ndpool drops it
            out, pullback = ndpool.vjp(fn, x, *args)
            g = _rng(x.shape, "g").standard_normal(out.shape)
            g_in = np.where(idx < math.prod(sizes[:nd]), g, 0)
            axes = list(range(x.ndim - nd, x.ndim))
            assert_grad(pullback(g), naive_route(x, idx, axes, g_in), x)
            continue
        check(fn, tfn, x, *args)
        check(fn, tfn, x, *args, True)


@pytest.mark.parametrize(
    ("nd", "sizes", "kernel", "stride", "padding", "ceil", "include", "divisor",
     "batched"),
    _avg_cases(((1, 40), (2, 40), (3, 24)), (None, None, 3), fits_3d=False,
               divisor_1d=False),
)  # fmt: skip
def test_avg_pool_grad(
    nd: int,
    sizes: tuple[int, ...],
    kernel: Any,
    stride: Any,
    padding: Any,
    ceil: bool,
    include: bool,
    divisor: int | None,
    batched: bool,
) -> None:
    fn, tfn = getattr(F, f"avg_pool{nd}d"), getattr(TF, f"avg_pool{nd}d")
    args: tuple[Any, ...] = (kernel, stride, padding, ceil, include)
    if nd > 1:
        args += (divisor,)
    check(fn, tfn, special(shape_of(nd, sizes, batched)), *args)


@pytest.mark.parametrize(
    ("nd", "sizes", "norm_type", "kernel", "stride", "ceil", "batched"),
    _lp_cases(((1, 27), (2, 27), (3, 18)), padding=True, fits_3d=False),
)
def test_lp_pool_grad(
    nd: int,
    sizes: tuple[int, ...],
    norm_type: float,
    kernel: Any,
    stride: Any,
    ceil: bool,
    batched: bool,
) -> None:
    """Every edge PyTorch's formula has: zero windows, odd p, negatives, ties."""
    fn, tfn = getattr(F, f"lp_pool{nd}d"), getattr(TF, f"lp_pool{nd}d")
    shape = shape_of(nd, sizes, batched)
    for x in (normal(shape), np.abs(normal(shape)) + 0.5, ties(shape)):
        check(fn, tfn, x, norm_type, kernel, stride, ceil)


@pytest.mark.parametrize(("nd", "sizes", "output_size", "batched"), _adaptive_cases())
def test_adaptive_pool_grad(
    nd: int, sizes: tuple[int, ...], output_size: Any, batched: bool
) -> None:
    shape = shape_of(nd, sizes, batched)
    mx, tmx = (
        F.__dict__[f"adaptive_max_pool{nd}d"],
        TF.__dict__[f"adaptive_max_pool{nd}d"],
    )
    av, tav = (
        F.__dict__[f"adaptive_avg_pool{nd}d"],
        TF.__dict__[f"adaptive_avg_pool{nd}d"],
    )
    if nd == 1 and not isinstance(output_size, int):  # torch 1-d: no None
        output_size = tuple(sizes[0] if o is None else o for o in output_size)
    x = special(shape)
    check(mx, tmx, x, output_size)
    check(mx, tmx, ties(shape), output_size, True)
    check(av, tav, x, output_size)


@pytest.mark.parametrize(
    ("nd", "sizes", "kernel", "spec", "batched"), _fractional_cases()
)
def test_fractional_max_pool_grad(
    nd: int, sizes: tuple[int, ...], kernel: Any, spec: tuple[str, Any], batched: bool
) -> None:
    shape = shape_of(nd, sizes, batched)
    samples = _rng(shape, "u").random((shape[0] if batched else 1, 3, nd))
    fn = getattr(F, f"fractional_max_pool{nd}d")
    tfn = getattr(TF, f"fractional_max_pool{nd}d")
    key = "output_size" if spec[0] == "size" else "output_ratio"
    x = special(shape)
    out, pullback = ndpool.vjp(fn, x, kernel, _random_samples=samples, **{key: spec[1]})
    g = _rng(shape, "g").standard_normal(out.shape)
    want = torch_grad(tfn, x, g, kernel, _random_samples=t(samples), **{key: spec[1]})
    assert_grad(pullback(g), want, x)


@pytest.mark.parametrize(
    ("nd", "sizes", "kernel", "stride", "padding", "size_mode", "batched"),
    _unpool_cases()[::3],
)
def test_max_unpool_grad(
    nd: int,
    sizes: tuple[int, ...],
    kernel: Any,
    stride: Any,
    padding: Any,
    size_mode: int,
    batched: bool,
) -> None:
    x = normal(shape_of(nd, sizes, batched))
    pooled, idx = getattr(F, f"max_pool{nd}d")(
        x, kernel, stride, padding, 1, False, True
    )
    fn, tfn = getattr(F, f"max_unpool{nd}d"), getattr(TF, f"max_unpool{nd}d")
    try:  # an index from the right padding may not fit the unpooled plane
        out, pullback = ndpool.vjp(fn, pooled, idx, kernel, stride, padding)
    except ValueError:
        return
    g = _rng(pooled.shape, "g").standard_normal(out.shape)
    want = torch_grad(lambda v: tfn(v, t(idx), kernel, stride, padding), pooled, g)
    assert_grad(pullback(g), want, pooled)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_dtypes_and_shapes(dtype: Any, nd: int) -> None:
    """Every family keeps x's dtype and shape (float16 vs torch in float32)."""
    x = normal(shape_of(nd, (7, 6, 5), True), dtype)
    wide = x.astype(np.float32) if dtype == np.float16 else x
    cases = [
        ("max_pool", (3, 2, 1, 1, True)),
        ("avg_pool", (3, 2, 1, True, False)),
        ("lp_pool", (2.0, 3, 2, True)),
        ("adaptive_max_pool", (3,)),
        ("adaptive_avg_pool", (4,)),
    ]
    for name, args in cases:
        fn, tfn = getattr(F, f"{name}{nd}d"), getattr(TF, f"{name}{nd}d")
        src = np.abs(x) + np.asarray(0.5, dtype) if name == "lp_pool" else x
        out, pullback = ndpool.vjp(fn, src, *args)
        g = _rng(x.shape, name).standard_normal(out.shape)
        got = pullback(g)
        assert got.dtype == x.dtype
        assert got.shape == x.shape
        wide_src = src.astype(wide.dtype)
        assert_grad(got, torch_grad(tfn, wide_src, g, *args).astype(dtype), src)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_empty_batch(nd: int) -> None:
    x = np.zeros((0, 2, *(5,) * nd))
    for name in ("max_pool", "avg_pool", "adaptive_max_pool", "adaptive_avg_pool"):
        fn, tfn = getattr(F, f"{name}{nd}d"), getattr(TF, f"{name}{nd}d")
        check(fn, tfn, x, 2)
    check(getattr(F, f"lp_pool{nd}d"), getattr(TF, f"lp_pool{nd}d"), x, 2, 2)


# --------------------------------------------------------------------------
# extensions: a torch window-gather oracle for sums, naive indices for max


def torch_window_pool(
    xt: Any,
    axes: list[int],
    pads: list[tuple[int, int]],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    ceil_mode: bool,
    *,
    op: str,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    norm_type: float | None = None,
    omit: bool = False,
) -> Any:
    """Sum/avg/lp over explicit windows, differentiable by torch autograd."""
    nd, n = xt.ndim, len(axes)
    order = sorted(range(n), key=lambda i: axes[i])
    valid = np.ones((1,) * (nd + n), dtype=bool)
    padded_count = np.ones((1,) * nd)
    cur = xt
    for rank, i in enumerate(order):
        a, length = axes[i], xt.shape[axes[i]]
        wins = regular_windows(length, kernel[i], stride[i], dilation[i], *pads[i],
                               ceil_mode)  # fmt: skip
        pos = np.array([w[0] for w in wins], dtype=np.int64)  # (out, k)
        index = torch.from_numpy(np.clip(pos, 0, length - 1).ravel())
        cur = cur.index_select(a, index)
        cur = cur.reshape(*cur.shape[:a], *pos.shape, *cur.shape[a + 1 :])
        cur = cur.movedim(a + 1, -1)  # this axis' taps go last
        shape = [1] * (nd + n)
        shape[a], shape[nd + rank] = pos.shape
        valid = valid & ((pos >= 0) & (pos < length)).reshape(shape)
        cshape = [1] * nd
        cshape[a] = len(wins)
        padded_count = padded_count * np.array([w[1] for w in wins]).reshape(cshape)
    cur = cur.flatten(-n)
    valid_t = torch.from_numpy(np.ascontiguousarray(valid)).flatten(-n)
    valid = valid_t.expand(cur.shape)
    real = valid & ~torch.isnan(cur) if omit else valid
    zero = torch.zeros((), dtype=cur.dtype)
    kept = torch.where(real, cur, zero)
    if op == "sum":
        out = kept.sum(-1)
    elif op == "avg":
        if divisor_override is not None:
            div: Any = float(divisor_override)
        elif count_include_pad:
            div = torch.from_numpy(padded_count).to(cur.dtype)
            if omit:
                div = div - (valid & torch.isnan(cur)).sum(-1)
        else:
            div = real.sum(-1).to(cur.dtype)
        out = kept.sum(-1) / div
    else:
        out = torch.linalg.vector_norm(kept, ord=norm_type, dim=-1)
    if omit:
        out = torch.where(real.any(-1), out, torch.full((), math.nan, dtype=out.dtype))
    return out


def naive_route(x: np.ndarray, idx: np.ndarray, axes: list[int], g: np.ndarray) -> Any:
    """Add g to the naive reference's indices, one output cell at a time."""
    pooled = sorted(a % x.ndim for a in axes)
    grad = np.zeros(x.shape)
    for out_pos in np.ndindex(*g.shape):
        flat, src = int(idx[out_pos]), list(out_pos)
        for a in reversed(pooled):
            flat, src[a] = divmod(flat, x.shape[a])
        if flat == 0:  # else outside the plane (a window wholly in padding)
            grad[tuple(src)] += g[out_pos]
    return grad


def resolve_pads(
    padding: Any,
    shape: tuple[int, ...],
    axes: list[int],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> list[tuple[int, int]]:
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * len(axes)
        return [
            same_pads(shape[a], k, s, d, padding == "same_lower")
            for a, k, s, d in zip(axes, kernel, stride, dilation, strict=True)
        ]
    if isinstance(padding, int):
        return [(padding, padding)] * len(axes)
    return [tuple(p) for p in padding]  # type: ignore[misc]


@st.composite
def pool_cases(draw: st.DrawFn) -> dict[str, Any]:
    ndim = draw(st.integers(1, 4), label="ndim")
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim)))
    assume(math.prod(shape) <= 150)
    n = draw(st.integers(1, min(ndim, 3)), label="n pooled")
    axes = list(draw(st.permutations(range(ndim)))[:n])
    kernel = tuple(draw(st.integers(1, 3)) for _ in axes)
    stride = tuple(draw(st.integers(1, 3)) for _ in axes)
    dilation = tuple(draw(st.integers(1, 2)) for _ in axes)
    kind = draw(st.sampled_from(["int", "pairs", "same", "same_lower", "valid"]))
    padding: Any
    if kind == "int":
        padding = draw(st.integers(0, min(kernel) // 2))
    elif kind == "pairs":
        padding = tuple(
            (draw(st.integers(0, d * (k - 1))), draw(st.integers(0, d * (k - 1))))
            for k, d in zip(kernel, dilation, strict=True)
        )
    else:
        padding = kind
    ceil_mode = draw(st.booleans()) and not isinstance(padding, str)
    pads = resolve_pads(padding, shape, axes, kernel, stride, dilation)
    for a, k, s, d, (pb, pa) in zip(axes, kernel, stride, dilation, pads, strict=True):
        length = len(regular_windows(shape[a], k, s, d, pb, pa, ceil_mode))
        assume(length >= 1)
    op = draw(st.sampled_from(["max", "min", "avg", "sum", "lp"]), label="op")
    omit = draw(st.booleans(), label="omit")
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.integers(-3, 4, size=shape).astype(np.float64)
    if op == "lp":
        x = rng.standard_normal(shape)  # away from |x| ties for p = 1
    x[rng.random(shape) < 0.15] = np.nan
    return {
        "x": x,
        "kernel": kernel,
        "axes": axes,
        "stride": stride,
        "dilation": dilation,
        "padding": padding,
        "pads": pads,
        "ceil_mode": ceil_mode,
        "op": op,
        "count_include_pad": draw(st.booleans()),
        "norm_type": draw(st.sampled_from([1.0, 2.0, 3.0, 1.5, 0.5])),
        "nan_policy": "omit" if omit else "propagate",
    }


@given(case=pool_cases())
def test_pool_grad_hypothesis(case: dict[str, Any]) -> None:
    """ndpool.pool, every op, any axes and padding, against the oracles."""
    x, pads, axes, op = case.pop("x"), case.pop("pads"), case["axes"], case["op"]
    kw = {k: v for k, v in case.items() if k != "kernel"}
    if op != "lp":
        kw.pop("norm_type")
    out, pullback = ndpool.vjp(ndpool.pool, x, case["kernel"], **kw)
    g = np.random.default_rng(1).standard_normal(out.shape)
    got = pullback(g)
    omit = case["nan_policy"] == "omit"
    if op in ("max", "min"):
        _, idx = ref_pool(
            x, case["kernel"], axes=axes, stride=case["stride"], pads=pads,
            dilation=case["dilation"], ceil_mode=case["ceil_mode"], op=op,
            nan_policy=case["nan_policy"],
        )  # fmt: skip
        assert idx is not None
        want = naive_route(x, idx, axes, g)
        if omit:
            want[np.isnan(x)] = 0
    else:
        include = case["count_include_pad"] and not isinstance(case["padding"], str)
        want = torch_grad(
            lambda v: torch_window_pool(
                v, axes, pads, case["kernel"], case["stride"], case["dilation"],
                case["ceil_mode"], op=op, count_include_pad=include,
                norm_type=case["norm_type"], omit=omit,
            ),
            x, g,
        )  # fmt: skip
        if omit:
            want[np.isnan(x)] = 0
    assert_grad(got, want, x)


@pytest.mark.parametrize("p", [math.inf, -math.inf, 1.0])
def test_lp_through_abs_of_nan_matches_torch(p: float) -> None:
    """PyTorch's sign(NaN) is 0, so the chain through |x| gives a NaN cell
    a zero gradient (NumPy's sign would give NaN)."""
    rng = np.random.default_rng(22)
    x = rng.integers(-3, 4, size=(2, 3, 6, 6)).astype(np.float64)
    x[rng.random(x.shape) < 0.2] = np.nan
    check(F.lp_pool2d, TF.lp_pool2d, x, p, 2)
    if p == 1.0:  # the true p-norm, against torch's vector_norm backward
        out, pullback = ndpool.vjp(ndpool.pool, x, (2, 2), op="lp", norm_type=p)
        g = rng.standard_normal(out.shape)
        tx = torch.tensor(x, requires_grad=True)
        windows = tx.unfold(2, 2, 2).unfold(3, 2, 2)
        torch.linalg.vector_norm(windows, p, dim=(-2, -1)).backward(torch.tensor(g))
        assert_grad(pullback(g), tx.grad, x)


@pytest.mark.parametrize(
    "p", [0.5, -0.5, 1.5, 2.0, -2.0, 2 / 3, 0.25, 3.0, -1.0, -3.0, 1 / 3]
)
@pytest.mark.parametrize("stride", [2, 3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_lp_pool_of_special_values_matches_torch_bit_for_bit(
    p: float, stride: int, dtype: Any
) -> None:
    """PyTorch's float32/float64 pow by 0.5 is a square root and by -0.5 one
    over it: ``(-inf) ** -0.5`` is NaN there (C's pow: 0), ``(-0.0) **
    -0.5`` is -inf (C: +inf); its float16 pow is C's. They reach lp_pool's
    forward (p = -0.5) and its gradient (p = 0.5, 1.5), also for a cell no
    window reads (stride 3). Its 2, 3 and -2 are products; other powers of
    a negative cell are C's pow (ndpool works them out on ``|x|``). Values,
    gradients and the signs of zeros and infinities, as PyTorch's (float16
    values within its tolerance)."""
    cells = [-np.inf, -0.0, 0.0, np.inf, -4.0, np.nan, 1e-30, 4.0, 9.0]
    rng = np.random.default_rng(7)
    x = rng.choice(np.array(cells), size=(3, 4, 11)).astype(dtype)
    out, pullback = ndpool.vjp(F.lp_pool1d, x, p, 2, stride)
    g = rng.standard_normal(out.shape).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    want = TF.lp_pool1d(tx, p, 2, stride)
    want.backward(torch.tensor(g))
    rtol = 1e-12 if dtype == np.float64 else 1e-5 if dtype == np.float32 else 1e-2
    for got, exp in ((out, want.detach().numpy()), (pullback(g), tx.grad.numpy())):
        np.testing.assert_allclose(got, exp, rtol=rtol, atol=0, equal_nan=True)
        real = ~np.isnan(exp)
        np.testing.assert_array_equal(np.signbit(got[real]), np.signbit(exp[real]))


@pytest.mark.parametrize(
    ("p", "cells"), [(3.0, [10.0, 0.0]), (3.0, [7.0, 3.0]), (2.5, [30.0, 2.0])]
)
def test_float16_lp_pool_rounds_its_powers_to_float16_as_torch(
    p: float, cells: list[float]
) -> None:
    """PyTorch's float16 pow rounds the exponent to float16 first: the cube
    root of 1000 is 1000 ** 0.33325 = 9.99 there, not 10. Values bit for
    bit; gradients within two float16 steps (PyTorch rounds each step of its
    backward to float16, ndpool the result)."""
    x = np.array([[cells]], dtype=np.float16)
    out, pullback = ndpool.vjp(F.lp_pool1d, x, p, 2)
    tx = torch.tensor(x, requires_grad=True)
    want = TF.lp_pool1d(tx, p, 2)
    want.backward(torch.ones_like(want))
    np.testing.assert_array_equal(out, want.detach().numpy())
    got = pullback(np.ones_like(out))
    np.testing.assert_allclose(got, tx.grad.numpy(), rtol=2**-9, atol=0)


def test_float16_power_beyond_float16_is_kept_as_given() -> None:
    """PyTorch refuses a float16 pow whose power float16 cannot hold
    (65504 at most); ndpool keeps such a power as given, rather than round
    it to infinity (docs/differences.md)."""
    from ndpool._core import torch_pow

    base = np.array([1.0001, 0.5, -1.0001], dtype=np.float32)
    with pytest.raises(RuntimeError, match="Half without overflow"):
        torch.tensor(base.astype(np.float16)).pow(70000.0)
    got = torch_pow(base, 70000.0, half=True)
    np.testing.assert_allclose(got, np.power(np.abs(base), np.float32(70000.0)))
    assert np.isfinite(got[0])  # 1.0001 ** inf would be inf
    assert torch_pow(base, 3.0, half=True)[2] < 0  # an odd power keeps the sign


@pytest.mark.parametrize("p", [0.5, 1.0, 2.0, 3.0])
def test_p_norm_gradient_of_a_cell_no_window_reads_is_zero(p: float) -> None:
    """The p-norm reads only its windows' cells: a NaN or inf cell between
    windows (stride > kernel) gets 0; PyTorch's lp_pool raises every cell
    to p, and its autograd gives such a NaN cell NaN, as ndpool does."""
    x = np.array([[[1.0, 2.0, np.nan, 3.0, -4.0, np.inf]]])
    out, pullback = ndpool.vjp(ndpool.pool, x, 2, stride=3, op="lp", norm_type=p)
    grad = pullback(np.ones_like(out))
    assert grad[0, 0, 2] == 0
    assert grad[0, 0, 5] == 0
    assert np.isfinite(grad[0, 0, [0, 1, 3, 4]]).all()
    check(F.lp_pool1d, TF.lp_pool1d, x[:, :, :5], p, 2, 3)


@pytest.mark.parametrize(
    ("call", "sign"),
    [("pool", 1), ("lp_pool2d", 1), ("lp_pool2d", -1), ("global_lp_pool", 1)],
)
def test_inf_norm_omit_gives_nan_cells_zero(call: str, sign: int) -> None:
    """Lp with p = +-inf routes to the extreme |x| and chains through |x|;
    with nan_policy="omit" a NaN cell's gradient is 0, not 0 * sign(NaN)."""
    rng = np.random.default_rng(21)
    x = rng.integers(-3, 4, size=(2, 3, 5, 7)).astype(np.float64)
    x[rng.random(x.shape) < 0.2] = np.nan
    x[0, 0, :2, :3] = np.nan  # a window of NaN only
    p = sign * math.inf
    kernel, stride = (2, 3), (2, 2)
    if call == "pool":
        fn, args = ndpool.pool, (kernel,)
        kw: dict[str, Any] = {"op": "lp", "norm_type": p, "stride": stride}
    elif call == "lp_pool2d":
        fn, args, kw = F.lp_pool2d, (p, kernel, stride), {}
    else:
        fn, args, kw = ndpool.global_lp_pool, (p,), {"keepdims": True}
        kernel, stride = (5, 7), (5, 7)
    out, pullback = ndpool.vjp(fn, x, *args, nan_policy="omit", **kw)
    g = rng.standard_normal(out.shape)
    _, idx = ref_pool(
        sign * np.abs(x), kernel, stride=stride, op="max", nan_policy="omit"
    )
    assert idx is not None
    want = naive_route(x, idx, [2, 3], g) * np.sign(x)
    want[np.isnan(x)] = 0
    got = pullback(g)
    assert not np.isnan(got).any()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize(
    "name", ["max_pool", "avg_pool", "lp_pool", "adaptive_max_pool",
             "adaptive_avg_pool"],
)  # fmt: skip
def test_channels_last(nd: int, name: str) -> None:
    x = special(shape_of(nd, (6, 5, 4), True))
    if name == "lp_pool":
        x = np.abs(normal(x.shape)) + 0.5
    args = {"lp_pool": (2.0, 2), "adaptive_max_pool": (3,), "adaptive_avg_pool": (3,)}
    a = args.get(name, (3, 2, 1))
    fn, tfn = getattr(F, f"{name}{nd}d"), getattr(TF, f"{name}{nd}d")
    last = np.moveaxis(x, 1, -1)
    out, pullback = ndpool.vjp(fn, last, *a, data_format="channels_last")
    g = _rng(x.shape, "cl").standard_normal(out.shape)
    want = torch_grad(tfn, x, np.moveaxis(g, -1, 1), *a)
    assert_grad(pullback(g), np.moveaxis(want, 1, -1), last)


def test_global_pools() -> None:
    x = special((2, 3, 4, 5))
    for keep in (False, True):
        for df, axes in (("channels_first", (2, 3)), ("channels_last", (1, 2))):
            kw = {"data_format": df, "keepdims": keep}
            out, pb = ndpool.vjp(ndpool.global_max_pool, x, **kw)
            g = _rng(out.shape, "gm").standard_normal(out.shape)
            gk = g if keep else np.expand_dims(g, axes)
            kernel = tuple(x.shape[a] for a in axes)
            _, pool_pb = ndpool.vjp(ndpool.pool, x, kernel, axes=axes)
            np.testing.assert_array_equal(pb(g), pool_pb(gk))
            out, pb = ndpool.vjp(ndpool.global_avg_pool, x, **kw)
            _, pool_pb = ndpool.vjp(ndpool.pool, x, kernel, axes=axes, op="avg")
            np.testing.assert_allclose(pb(g), pool_pb(gk))
            y = normal(x.shape)
            for p in (2.0, 3.0, math.inf):
                out, pb = ndpool.vjp(ndpool.global_lp_pool, y, p, **kw)
                _, pool_pb = ndpool.vjp(
                    ndpool.pool, y, kernel, axes=axes, op="lp", norm_type=p
                )
                np.testing.assert_allclose(pb(g), pool_pb(gk))


def test_pool_lp_inf_routes_to_max_abs() -> None:
    x = ties((2, 3, 7))
    out, pb = ndpool.vjp(ndpool.pool, x, 3, op="lp", norm_type=math.inf, stride=2)
    g = _rng(x.shape, "inf").standard_normal(out.shape)
    want = torch_grad(lambda v: TF.max_pool1d(v.abs(), 3, 2), x, g)
    assert_grad(pb(g), want, x)


def test_min_is_max_of_negation() -> None:
    x = special((2, 3, 6, 7))
    out, pb = ndpool.vjp(ndpool.pool, x, (3, 2), op="min", stride=1, padding=1)
    g = _rng(x.shape, "min").standard_normal(out.shape)
    want = torch_grad(lambda v: -TF.max_pool2d(-v, (3, 2), 1, 1), x, g)
    assert_grad(pb(g), want, x)


# --------------------------------------------------------------------------
# adjoint (dot-product) test and finite differences


@given(case=pool_cases(), seed=st.integers(0, 2**16))
def test_adjoint_dot_product(case: dict[str, Any], seed: int) -> None:
    """<A x, g> == <x, A^T g> for the linear ops (avg, sum)."""
    assume(case["op"] in ("avg", "sum"))
    case.pop("pads")
    x = np.random.default_rng(seed).standard_normal(case.pop("x").shape)
    kw = {k: v for k, v in case.items() if k not in ("kernel", "norm_type")}
    kw["nan_policy"] = "propagate"
    out, pullback = ndpool.vjp(ndpool.pool, x, case["kernel"], **kw)
    g = np.random.default_rng(seed + 1).standard_normal(out.shape)
    empty = np.isnan(out)  # an average over no real cell (dilated "same")
    g[empty] = 0
    np.testing.assert_allclose(
        np.vdot(np.where(empty, 0, out), g),
        np.vdot(x, pullback(g)),
        rtol=1e-10,
        atol=1e-10,
    )


@given(
    nd=st.integers(1, 3),
    sizes=st.lists(st.integers(1, 7), min_size=3, max_size=3),
    outs=st.lists(st.integers(1, 9), min_size=3, max_size=3),
)
def test_adaptive_avg_adjoint(nd: int, sizes: list[int], outs: list[int]) -> None:
    x = normal((2, *sizes[:nd]))
    out, pullback = ndpool.vjp(getattr(F, f"adaptive_avg_pool{nd}d"), x, outs[:nd])
    g = normal(out.shape, np.float64, "adj")
    np.testing.assert_allclose(np.vdot(out, g), np.vdot(x, pullback(g)), rtol=1e-10)


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, 1.5])
@pytest.mark.parametrize("torch_formula", [True, False])
def test_lp_finite_differences(nd: int, norm_type: float, torch_formula: bool) -> None:
    """Central differences along a random direction, away from ties and zeros."""
    x = np.abs(normal(shape_of(nd, (6, 5, 4), True))) + 0.5
    if torch_formula:
        fn: Any = getattr(F, f"lp_pool{nd}d")
        args: tuple[Any, ...] = (norm_type, 2, 1, True)
        kw: dict[str, Any] = {}
    else:
        fn, args = ndpool.pool, ((3,) * nd,)
        kw = {"op": "lp", "norm_type": norm_type, "padding": "same", "stride": 2}
    out, pullback = ndpool.vjp(fn, x, *args, **kw)
    g = normal(out.shape, np.float64, "fd-g")
    v = normal(x.shape, np.float64, "fd-v")
    h = 1e-6
    numeric = (np.vdot(fn(x + h * v, *args, **kw), g)
               - np.vdot(fn(x - h * v, *args, **kw), g)) / (2 * h)  # fmt: skip
    np.testing.assert_allclose(np.vdot(pullback(g), v), numeric, rtol=1e-6)


# --------------------------------------------------------------------------
# errors


def test_errors() -> None:
    x = normal((1, 2, 4, 4))
    with pytest.raises(TypeError, match="not an ndpool pooling function"):
        ndpool.vjp(np.max, x)
    with pytest.raises(TypeError, match="floating"):
        ndpool.vjp(F.max_pool2d, x.astype(np.int64), 2)
    _, pullback = ndpool.vjp(F.max_pool2d, x, 2)
    with pytest.raises(ValueError, match="shape"):
        pullback(np.ones((1, 2, 3, 3)))
    with pytest.raises(ValueError, match="padding"):
        ndpool.vjp(F.avg_pool2d, x, 2, 2, 3)  # the forward's own check


@pytest.mark.parametrize(
    ("name", "shape", "args"),
    [
        ("lp_pool2d", (2, 1, 8, 8), (1.5, [4, 1], [1, 3])),
        ("adaptive_avg_pool3d", (1, 2, 2, 1, 9), ([9, 10, 5],)),
        ("avg_pool2d", (2, 3, 9, 9), (3, 1, 1)),
    ],
)
def test_float16_gradients_are_closer_to_float64_than_torch(
    name: str, shape: tuple[int, ...], args: tuple[Any, ...]
) -> None:
    """float16 gradients are summed in float32 and rounded once; PyTorch's
    half-precision backward rounds each step (docs/differences.md). Both are
    measured against the float64 gradient, relative to its largest cell."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    if name.startswith("lp"):
        x = np.abs(x)
    x16 = x.astype(np.float16)
    out, pullback = ndpool.vjp(getattr(F, name), x16, *args)
    g = rng.standard_normal(out.shape).astype(np.float16)
    mine = pullback(g).astype(np.float64)
    tfn = getattr(torch.nn.functional, name)

    def torch_grad(dtype: Any) -> np.ndarray:
        xt = torch.tensor(x16.astype(dtype), requires_grad=True)
        torch.autograd.backward(tfn(xt, *args), torch.tensor(g.astype(dtype)))
        return xt.grad.numpy().astype(np.float64)  # type: ignore[no-any-return]

    truth, theirs = torch_grad(np.float64), torch_grad(np.float16)
    scale = np.abs(truth).max()
    assert np.abs(mine - truth).max() / scale <= 1e-3
    assert np.abs(mine - truth).max() <= np.abs(theirs - truth).max()
