"""Torch parity of every torch-named function, over parametrised grids.

Each case runs the same call through ``ndpool.functional`` and
``torch.nn.functional`` (torch 2.13 CPU) and compares: bit-exact for max,
indices and unpooling; within SPEC §2's float tolerances for averages.
Where torch has no kernel for a dtype (integer average, float16 3-d
average, integer 1-d/adaptive max), the oracle is torch in a wider float
dtype or the naive-loop reference in ``tests/reference.py``.
"""

from __future__ import annotations

import math
import random
import zlib
from typing import Any

import numpy as np
import pytest

import ndpool
import ndpool.functional as F
from reference import adaptive_windows, out_length, reduce_windows, ref_pool
from ways import TAP_LOOPS, TAP_PASSES, TRACKERS, forced

torch = pytest.importorskip("torch")
TF = torch.nn.functional

FLOATS = (np.float16, np.float32, np.float64)
#: (rtol, atol) for average / Lp / adaptive-average results, per SPEC §2
TOL = {
    np.dtype(np.float64): (1e-6, 1e-12),
    np.dtype(np.float32): (1e-5, 1e-6),
    np.dtype(np.float16): (1e-3, 2e-3),
}


# --------------------------------------------------------------------------
# helpers


def _rng(*key: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def ties(shape: tuple[int, ...], dtype: Any = np.float64, *key: object) -> Any:
    """Small integer-valued floats: many ties, exact in every float dtype."""
    return _rng(shape, *key).integers(-4, 5, size=shape).astype(dtype)


def normal(shape: tuple[int, ...], dtype: Any = np.float64, *key: object) -> Any:
    return _rng(shape, "n", *key).standard_normal(shape).astype(dtype)


def special(shape: tuple[int, ...], dtype: Any = np.float64, *key: object) -> Any:
    """Ties plus NaN, +inf and -inf sprinkled in."""
    rng = _rng(shape, "s", *key)
    x = rng.integers(-3, 4, size=shape).astype(dtype)
    pick = rng.random(shape)
    x[pick < 0.08] = np.nan
    x[(pick >= 0.08) & (pick < 0.14)] = np.inf
    x[(pick >= 0.14) & (pick < 0.2)] = -np.inf
    return x


def t(x: Any) -> Any:
    return torch.from_numpy(np.ascontiguousarray(x))


def assert_exact(got: Any, want: Any) -> None:
    want = want.numpy() if hasattr(want, "numpy") else np.asarray(want)
    assert isinstance(got, np.ndarray)
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def assert_close(got: Any, want: Any, dtype: Any = None) -> None:
    want = want.numpy() if hasattr(want, "numpy") else np.asarray(want)
    assert isinstance(got, np.ndarray)
    assert got.shape == want.shape
    dt = np.dtype(dtype if dtype is not None else want.dtype)
    assert got.dtype == dt
    rtol, atol = TOL[dt]
    np.testing.assert_allclose(
        got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol
    )


def shape_of(nd: int, sizes: tuple[int, ...], batched: bool) -> tuple[int, ...]:
    return ((2, 3) if batched else (3,)) + sizes[:nd]


def _tup(values: list[int], nd: int) -> int | tuple[int, ...]:
    """An int when all entries agree (half the time), else a tuple."""
    return values[0] if len(set(values)) == 1 and nd % 2 else tuple(values)


def window_cases(
    nd: int,
    count: int,
    seed: int,
    *,
    dilation: bool,
    padding: bool = True,
    ceil_mode: bool = True,
    fits: bool = False,
) -> list[tuple[Any, ...]]:
    """Sampled valid (sizes, kernel, stride, padding, dilation, ceil) configs."""
    rng = random.Random(seed)
    cases: list[tuple[Any, ...]] = []
    while len(cases) < count:
        sizes, ks, ss, ps, ds = [], [], [], [], []
        for _ in range(nd):
            length = rng.choice([1, 2, 3, 4, 5, 7, 8] if nd < 3 else [1, 2, 3, 5])
            k = rng.randint(1, min(4, length + 2))
            s = rng.randint(1, 3)
            p = rng.randint(0, k // 2) if padding else 0
            d = rng.choice([1, 1, 2, 3]) if dilation else 1
            sizes.append(length)
            ks.append(k)
            ss.append(s)
            ps.append(p)
            ds.append(d)
        ceil = ceil_mode and rng.random() < 0.5
        ok = all(
            out_length(n, k, s, d, p, p, ceil) >= 1
            and (n >= k or not fits)  # torch's avg_pool3d: no kernel overhang
            for n, k, s, p, d in zip(sizes, ks, ss, ps, ds, strict=True)
        )
        if not ok:
            continue
        stride = None if ss == ks and rng.random() < 0.5 else _tup(ss, nd)
        cases.append(
            (tuple(sizes), _tup(ks, nd), stride, _tup(ps, nd), _tup(ds, nd), ceil)
        )
    return cases


# --------------------------------------------------------------------------
# max pooling


Counts = tuple[tuple[int, int], ...]  # (nd, how many cases) per rank


def _max_cases(counts: Counts = ((1, 140), (2, 140), (3, 80))) -> list[Any]:
    out = []
    for nd, count in counts:
        for i, case in enumerate(window_cases(nd, count, nd, dilation=True)):
            out.append(pytest.param(nd, *case, i % 3 != 0, id=f"{nd}d-{i}"))
    return out


@pytest.mark.parametrize("tracker", sorted(TRACKERS))
@pytest.mark.parametrize(
    ("nd", "sizes", "kernel", "stride", "padding", "dilation", "ceil", "batched"),
    _max_cases(),
)
def test_max_pool(
    tracker: str,
    nd: int,
    sizes: tuple[int, ...],
    kernel: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil: bool,
    batched: bool,
) -> None:
    """Every case on each way of tracking the argmax (``ways.TRACKERS``)."""
    with forced(TRACKERS[tracker]):
        _check_max(
            nd, shape_of(nd, sizes, batched), kernel, stride, padding, dilation, ceil
        )


@pytest.mark.parametrize(
    ("name", "shape", "args"),
    [
        ("max_pool1d", (9000, 1, 11), (11,)),
        ("adaptive_max_pool2d", (9000, 1, 4, 4), (1,)),
        ("max_pool3d", (9000, 1, 2, 3, 2), ((2, 3, 2),)),
    ],
)
def test_many_planes_of_one_channel_get_torch_indices(
    name: str, shape: tuple[int, ...], args: tuple[Any, ...]
) -> None:
    """More than 8,192 planes and an axis of length 1 in the output: NumPy
    2.4's unravel_index repeats coordinates there (numpy/numpy#31980),
    which gave wrong indices and gradients window by window."""
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    g = np.random.default_rng(2).standard_normal(shape[:2] + (1,) * (len(shape) - 2))
    g = g.astype(np.float32)
    with forced(TRACKERS["windows-first"]):
        out, idx = getattr(F, name)(x, *args, return_indices=True)
        _, pullback = ndpool.vjp(getattr(F, name), x, *args)
        grad = pullback(g)
    tx = t(x).requires_grad_(True)
    want, want_idx = getattr(TF, name)(tx, *args, return_indices=True)
    want.backward(t(g))
    assert_exact(out, want.detach())
    assert_exact(idx, want_idx)
    assert_exact(grad, tx.grad)


@pytest.mark.parametrize("tracker", ["gathered", "windows-first"])
@pytest.mark.parametrize("dtype", FLOATS)
def test_max_of_several_nans_is_the_last_one(tracker: str, dtype: Any) -> None:
    """Where the value is read at the index, a window of several NaN gives
    PyTorch's bits, its last NaN's (the tap loop keeps NumPy's choice:
    docs/differences.md)."""
    x = np.ones((2, 1, 3, 3), dtype)
    x[..., 0, 0] = np.nan
    x[..., 2, 2] = -np.nan
    x[1, ..., 1, 1] = -np.nan
    with forced(TRACKERS[tracker]):
        out, idx = F.max_pool2d(x, 3, return_indices=True)
    np.testing.assert_array_equal(idx.ravel(), [8, 8])
    assert out.tobytes() == x[..., 2:, 2:].tobytes()


def _check_max(
    nd: int, shape: tuple[int, ...], *args: Any, values_only: bool = True
) -> None:
    """max_pool{nd}d with indices (and without) against PyTorch, on ties
    and on NaN and infinities."""
    fn, tfn = getattr(F, f"max_pool{nd}d"), getattr(TF, f"max_pool{nd}d")
    for make in (ties, special):
        x = make(shape)
        out, idx = fn(x, *args, True)
        want, want_idx = tfn(t(x), *args, True)
        assert_exact(out, want)
        assert_exact(idx, want_idx)
        if values_only:
            assert_exact(fn(x, *args), tfn(t(x), *args))


@pytest.mark.parametrize("loop", sorted(TAP_LOOPS))
@pytest.mark.parametrize(
    ("nd", "sizes", "kernel", "stride", "padding", "dilation", "ceil", "batched"),
    _max_cases()[::6],
)
def test_max_pool_on_every_tap_loop(
    loop: str,
    nd: int,
    sizes: tuple[int, ...],
    kernel: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil: bool,
    batched: bool,
) -> None:
    """The tap loops choose by size: strided taps of the argmax loop (and
    of a values-only first pass along the last axis) read from phase copies
    from ``_PHASE_BYTES`` of input; ranks update with one masked copy up to
    ``_SELECT_CELLS`` of output; a large block's first pass reads rows of
    taps in place, not through NumPy's ufunc buffers (``_core._direct``),
    and the buffer size is restored after. Test inputs are small, so the
    test forces each way (``ways.TAP_LOOPS``) on a sixth of the grid,
    averages too."""
    shape = shape_of(nd, sizes, batched)
    args = (kernel, stride, padding, dilation, ceil)
    before = np.getbufsize()
    with forced(TAP_LOOPS[loop]):
        _check_max(nd, shape, *args, values_only=True)
        if nd < 3 and dilation == 1:  # avg pooling has no dilation
            x = normal(shape)
            fn, tfn = getattr(F, f"avg_pool{nd}d"), getattr(TF, f"avg_pool{nd}d")
            avg_args = (kernel, stride, padding, ceil)
            try:
                want = tfn(t(x), *avg_args)
            except RuntimeError:  # torch refuses (padding over half the kernel)
                want = None
            if want is not None:
                assert_close(fn(x, *avg_args), want)
    assert np.getbufsize() == before


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("make", [ties, normal, special])
def test_max_pool_float_dtypes(dtype: Any, nd: int, make: Any) -> None:
    x = make(shape_of(nd, (7, 6, 5), True), dtype)
    fn, tfn = getattr(F, f"max_pool{nd}d"), getattr(TF, f"max_pool{nd}d")
    out, idx = fn(x, 3, 2, 1, 1, True, True)
    want, want_idx = tfn(t(x), 3, 2, 1, 1, True, True)
    assert_exact(out, want)
    assert_exact(idx, want_idx)


# --------------------------------------------------------------------------
# average pooling


def _avg_cases(
    counts: Counts = ((1, 90), (2, 90), (3, 50)),
    divisors: tuple[int | None, ...] = (None, None, None, 1, 3, -2),
    *,
    fits_3d: bool = True,
    divisor_1d: bool = True,
) -> list[Any]:
    """``fits_3d``: no kernel overhang in 3-d (torch's avg_pool3d refuses
    it); ``divisor_1d``: divisors for 1-d cases too (ndpool's avg_pool1d
    takes one, torch's has none: the forward test checks it through
    avg_pool2d, the gradient test draws none)."""
    out = []
    for nd, count in counts:
        for i, case in enumerate(
            window_cases(nd, count, 10 + nd, dilation=False, fits=fits_3d and nd == 3)
        ):
            sizes, kernel, stride, padding, _, ceil = case
            include = i % 2 == 0
            divisor = divisors[i % len(divisors)] if divisor_1d or nd > 1 else None
            out.append(
                pytest.param(
                    nd,
                    sizes,
                    kernel,
                    stride,
                    padding,
                    ceil,
                    include,
                    divisor,
                    i % 4 != 0,
                    id=f"{nd}d-{i}",
                )
            )
    return out


@pytest.mark.parametrize(
    ("nd", "sizes", "kernel", "stride", "padding", "ceil", "include", "divisor",
     "batched"),
    _avg_cases(),
)  # fmt: skip
def test_avg_pool(
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
    x = normal(shape_of(nd, sizes, batched))
    fn, tfn = getattr(F, f"avg_pool{nd}d"), getattr(TF, f"avg_pool{nd}d")
    args = (kernel, stride, padding, ceil, include, divisor)
    if nd == 1 and divisor is not None:  # torch's avg_pool1d has no divisor
        want = TF.avg_pool2d(
            t(x[..., None, :]), (1, kernel), (1, stride or kernel), (0, padding),
            ceil, include, divisor,
        )[..., 0, :]  # fmt: skip
    else:
        want = tfn(t(x), *args[: 5 if nd == 1 else 6])
    assert_close(fn(x, *args), want)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("include", [True, False])
def test_avg_pool_float_dtypes(dtype: Any, nd: int, include: bool) -> None:
    x = normal(shape_of(nd, (7, 6, 5), True), dtype)
    fn, tfn = getattr(F, f"avg_pool{nd}d"), getattr(TF, f"avg_pool{nd}d")
    args = (3, 2, 1, True, include)
    if dtype == np.float16 and nd == 3:  # torch has no float16 avg_pool3d on CPU
        want = tfn(t(x.astype(np.float32)), *args).numpy().astype(np.float16)
    else:
        want = tfn(t(x), *args)
    assert_close(fn(x, *args), want, dtype)


def test_avg_pool_special_values() -> None:
    x = special((2, 3, 6, 5))
    for include in (True, False):
        got = F.avg_pool2d(x, 3, 2, 1, True, include)
        want = TF.avg_pool2d(t(x), 3, 2, 1, True, include).numpy()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)


# --------------------------------------------------------------------------
# Lp pooling


def _lp_cases(
    counts: Counts = ((1, 45), (2, 45), (3, 27)),
    *,
    padding: bool = False,
    fits_3d: bool = True,
) -> list[Any]:
    """``padding``: whether the sampler draws (unused) paddings, which
    changes the cases it draws; ``fits_3d`` as for ``_avg_cases``."""
    out = []
    norms = (1, 2, 3, 1.5, 0.5, -1, math.inf, -math.inf, 4.0)
    for nd, count in counts:
        fits = fits_3d and nd == 3
        cases = window_cases(
            nd, count, 20 + nd, dilation=False, padding=padding, fits=fits
        )
        for i, case in enumerate(cases):
            sizes, kernel, stride, _, _, ceil = case
            p = norms[i % len(norms)]
            out.append(
                pytest.param(
                    nd, sizes, p, kernel, stride, ceil, i % 3 != 0, id=f"{nd}d-{i}"
                )
            )
    return out


@pytest.mark.parametrize(
    ("nd", "sizes", "norm_type", "kernel", "stride", "ceil", "batched"), _lp_cases()
)
def test_lp_pool(
    nd: int,
    sizes: tuple[int, ...],
    norm_type: float,
    kernel: Any,
    stride: Any,
    ceil: bool,
    batched: bool,
) -> None:
    fn, tfn = getattr(F, f"lp_pool{nd}d"), getattr(TF, f"lp_pool{nd}d")
    shape = shape_of(nd, sizes, batched)
    for x in (normal(shape), np.abs(normal(shape)) + 0.5):
        got = fn(x, norm_type, kernel, stride, ceil)
        want = tfn(t(x), norm_type, kernel, stride, ceil).numpy()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        assert_close(got, want)


@pytest.mark.parametrize("norm_type", [math.inf, -math.inf, 2.0])
@pytest.mark.parametrize("kernel", [2, (2,), [2], (2, 2), (3, 1)])
@pytest.mark.parametrize("nd", [1, 2])
def test_lp_pool_kernel_forms_as_torch(nd: int, kernel: Any, norm_type: float) -> None:
    """PyTorch's lp_pool1d takes an int kernel, but (k,) and [k] too for
    p = +-inf (it calls max_pool1d); lp_pool2d unpacks exactly two. Either
    both libraries answer alike or both refuse."""
    x = normal(shape_of(nd, (6, 5), True))
    fn, tfn = getattr(F, f"lp_pool{nd}d"), getattr(TF, f"lp_pool{nd}d")
    try:
        want = tfn(t(x), norm_type, kernel)
    except (TypeError, ValueError, RuntimeError):
        with pytest.raises((TypeError, ValueError)):
            fn(x, norm_type, kernel)
        return
    assert_close(fn(x, norm_type, kernel), want)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("norm_type", [2, 3.0, math.inf])
def test_lp_pool_float_dtypes(dtype: Any, nd: int, norm_type: float) -> None:
    x = np.abs(normal(shape_of(nd, (7, 6, 5), True), dtype)) + 0.25
    fn, tfn = getattr(F, f"lp_pool{nd}d"), getattr(TF, f"lp_pool{nd}d")
    args = (norm_type, 3, 2, True)
    if dtype == np.float16 and nd == 3 and norm_type != math.inf:
        want = tfn(t(x.astype(np.float32)), *args).numpy().astype(np.float16)
    else:
        want = tfn(t(x), *args)
    assert_close(fn(x, *args), want, dtype)


# --------------------------------------------------------------------------
# adaptive pooling


def _adaptive_cases() -> list[Any]:
    rng = random.Random(7)
    out = []
    for nd, count in ((1, 60), (2, 60), (3, 40)):
        for i in range(count):
            sizes = tuple(rng.choice([1, 2, 3, 5, 7, 8]) for _ in range(nd))
            outs: list[int | None] = [
                rng.choice([1, 2, 3, 4, 5, 6, 9, None if nd > 1 else 0])
                for _ in range(nd)
            ]
            size: Any = tuple(outs)
            if len(set(outs)) == 1 and outs[0] is not None and i % 2:
                size = outs[0]
            out.append(pytest.param(nd, sizes, size, i % 3 != 0, id=f"{nd}d-{i}"))
    return out


@pytest.mark.parametrize(("nd", "sizes", "output_size", "batched"), _adaptive_cases())
def test_adaptive_pool(
    nd: int, sizes: tuple[int, ...], output_size: Any, batched: bool
) -> None:
    shape = shape_of(nd, sizes, batched)
    mx, tmx = (
        getattr(F, f"adaptive_max_pool{nd}d"),
        getattr(TF, f"adaptive_max_pool{nd}d"),
    )
    av, tav = (
        getattr(F, f"adaptive_avg_pool{nd}d"),
        getattr(TF, f"adaptive_avg_pool{nd}d"),
    )
    for make in (ties, special):
        x = make(shape)
        out, idx = mx(x, output_size, True)
        want, want_idx = tmx(t(x), output_size, True)
        assert_exact(out, want)
        assert_exact(idx, want_idx)
        assert_exact(mx(x, output_size), tmx(t(x), output_size))
    x = normal(shape)
    assert_close(av(x, output_size), tav(t(x), output_size))


@pytest.mark.parametrize(
    "output_size",
    [
        np.array([2, 3]),
        np.array([2, 3], np.uint8),
        np.array([2.0, 3.0]),  # float entries: refused by both
        np.array([[2, 3]]),  # not 1-d: refused by both
        np.array(2),
    ],
    ids=["int64", "uint8", "float", "2-d", "0-d"],
)
def test_adaptive_output_size_as_a_numpy_array(output_size: Any) -> None:
    """PyTorch takes any sequence of ints, a 1-d NumPy array too."""
    x = normal((1, 2, 7, 6))
    try:
        want = TF.adaptive_avg_pool2d(t(x), output_size)
    except TypeError:
        with pytest.raises(TypeError, match="output_size"):
            F.adaptive_avg_pool2d(x, output_size)
        return
    assert_close(F.adaptive_avg_pool2d(x, output_size), want)
    out, idx = F.adaptive_max_pool2d(x, output_size, True)
    want, want_idx = TF.adaptive_max_pool2d(t(x), output_size, True)
    assert_exact(out, want)
    assert_exact(idx, want_idx)


def _bits(a: Any) -> Any:
    """``a``'s bits, the sign of a zero included; every NaN as one NaN
    (which NaN an operation on two of them gives, and the sign of inf -
    inf, depends on how NumPy compiled each loop, not on the order)."""
    a = np.ascontiguousarray(a)
    if a.dtype.kind != "f":
        return a
    return np.where(np.isnan(a), np.nan, a).astype(a.dtype).view(f"u{a.itemsize}")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int16])
@pytest.mark.parametrize(("nd", "sizes", "output_size", "batched"), _adaptive_cases())
def test_adaptive_passes_give_the_same_bits(
    nd: int, sizes: tuple[int, ...], output_size: Any, batched: bool, dtype: Any
) -> None:
    """A pass over adaptive windows gathers every tap at once on a small
    input, and loops over the taps on a large one (``ways.TAP_PASSES``):
    the same folds in the same order, so the same bits (zeros' signs, inf,
    float16 summed in float32, integers averaged in float64) and NaN in the
    same places. (Under ``nan_policy="omit"`` NumPy's ``fmax`` keeps 0.0 or
    -0.0 by the cell's place in its loop: not tested here.)"""
    shape = shape_of(nd, sizes, batched)
    if dtype == np.int16:
        inputs = [ties(shape, dtype)]
    else:  # sums that round (normal), and -0.0 beside NaN and inf (special)
        inputs = [normal(shape, dtype), special(shape, dtype)]
        inputs[1][_rng(shape, "z").random(shape) < 0.2] = -0.0
    fns = (
        getattr(F, f"adaptive_avg_pool{nd}d"),
        getattr(F, f"adaptive_max_pool{nd}d"),
        lambda a, size: getattr(F, f"adaptive_max_pool{nd}d")(a, size, True)[1],
    )
    for x in inputs:
        for fn in fns:
            got = []
            for way in TAP_PASSES.values():
                with forced(way):
                    got.append(_bits(fn(x, output_size)))
            np.testing.assert_array_equal(got[0], got[1])


@pytest.mark.parametrize(
    ("sizes", "output_size"),
    [
        ((100,), 3),
        ((1000,), 7),
        ((97, 5), (2, 5)),
        ((64, 90), (3, 1)),
        ((20, 70), (3, 4)),  # rows of 70 cells: folded window by window too
        ((10, 9, 8), (3, 2, 2)),
    ],
)
def test_adaptive_few_windows_of_many_cells(
    sizes: tuple[int, ...], output_size: Any
) -> None:
    """Windows many times wider than the output (folded window by window,
    and spread back so): values, indices and gradients equal PyTorch's."""
    nd = len(sizes)
    x = normal(shape_of(nd, sizes, True))
    for name in ("adaptive_max_pool", "adaptive_avg_pool"):
        fn, tfn = getattr(F, f"{name}{nd}d"), getattr(TF, f"{name}{nd}d")
        if name.endswith("max_pool"):
            out, idx = fn(x, output_size, True)
            want, want_idx = tfn(t(x), output_size, True)
            assert_exact(out, want)
            assert_exact(idx, want_idx)
        out, pullback = ndpool.vjp(fn, x, output_size)
        xt = t(x).requires_grad_(True)
        g = normal(out.shape)
        tfn(xt, output_size).backward(t(g))
        assert_close(out, tfn(t(x), output_size))
        assert_close(pullback(g), xt.grad)


@pytest.mark.parametrize(
    ("sizes", "output_size"),
    [((100,), 3), ((14, 14), 1), ((97, 5), (2, 5)), ((64, 90), (3, 1))],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adaptive_max_of_few_windows_points_at_the_last_nan(
    sizes: tuple[int, ...], output_size: Any, dtype: Any
) -> None:
    """Window by window, an arg-reduce stops at a window's first NaN;
    PyTorch's index is its last NaN (a NaN always replaces). Windows with
    several NaN, with none, and of NaN only."""
    nd = len(sizes)
    rng = np.random.default_rng(nd)
    x = normal(shape_of(nd, sizes, True), dtype)
    planes = x.reshape(*x.shape[:2], -1)  # a view
    cells = planes.shape[-1]
    planes[0, 0] = np.nan  # a plane of NaN only
    planes[0, 1, rng.choice(cells, 3 + cells // 20, replace=False)] = np.nan
    planes[1, 0, rng.integers(cells)] = np.nan
    fn, tfn = (
        getattr(F, f"adaptive_max_pool{nd}d"),
        getattr(TF, f"adaptive_max_pool{nd}d"),
    )
    out, idx = fn(x, output_size, True)
    want, want_idx = tfn(t(x), output_size, True)
    assert np.isnan(out).any()
    assert not np.isnan(out).all()
    assert_exact(out, want)
    assert_exact(idx, want_idx)


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation"),
    [((7, 1), (7, 1), 0, 1), ((7, 2), (8, 2), (3, 0), 1), ((5, 1), (9, 1), 0, (2, 1))],
)
def test_few_windows_of_long_rows(
    kernel: Any, stride: Any, padding: Any, dilation: Any
) -> None:
    """An axis before the last whose taps are rows of 64 cells or more and
    outnumber its windows twice is folded window by window (one reduce of
    rows each): max, average and Lp equal PyTorch's, padding included."""
    x = special((2, 3, 21, 70))
    args = (kernel, stride, padding, dilation)
    assert_exact(F.max_pool2d(x, *args), TF.max_pool2d(t(x), *args))
    if dilation == 1:
        y = normal((2, 3, 21, 70))
        for include in (True, False):
            avg = (kernel, stride, padding, False, include)
            assert_close(F.avg_pool2d(y, *avg), TF.avg_pool2d(t(y), *avg))
        if padding == 0:
            lp = (2.0, kernel, stride)
            assert_close(F.lp_pool2d(y, *lp), TF.lp_pool2d(t(y), *lp))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_adaptive_float_dtypes(dtype: Any, nd: int) -> None:
    x = normal(shape_of(nd, (7, 6, 5), True), dtype)
    mx, tmx = (
        getattr(F, f"adaptive_max_pool{nd}d"),
        getattr(TF, f"adaptive_max_pool{nd}d"),
    )
    av, tav = (
        getattr(F, f"adaptive_avg_pool{nd}d"),
        getattr(TF, f"adaptive_avg_pool{nd}d"),
    )
    out, idx = mx(x, 3, True)
    want, want_idx = tmx(t(x), 3, True)
    assert_exact(out, want)
    assert_exact(idx, want_idx)
    assert_close(av(x, 3), tav(t(x), 3), dtype)


# --------------------------------------------------------------------------
# fractional max pooling


def _fractional_cases() -> list[Any]:
    rng = random.Random(3)
    out = []
    for nd, count in ((2, 70), (3, 40)):
        for i in range(count):
            sizes, ks, os_ = [], [], []
            for _ in range(nd):
                length = rng.choice([1, 2, 3, 4, 6, 9])
                k = rng.randint(1, length - (nd == 3 and length > 1))
                sizes.append(length)
                ks.append(k)
                # torch's 3-d needs o + k - 1 < length, 2-d allows equality
                os_.append(rng.randint(0, length - k + (nd == 2)))
            if i % 4 == 3:  # output_ratio instead of output_size
                ratios = [o / n + 1e-3 for o, n in zip(os_, sizes, strict=True)]
                spec = ("ratio", tuple(ratios))
            else:
                spec = ("size", _tup(os_, nd))
            out.append(
                pytest.param(
                    nd, tuple(sizes), _tup(ks, nd), spec, i % 3 != 0, id=f"{nd}d-{i}"
                )
            )
    return out


def check_fractional(
    nd: int, x: np.ndarray, kernel: Any, samples: np.ndarray, **kw: Any
) -> None:
    """ndpool's fractional max pool (values and indices) is PyTorch's."""
    fn, tfn = (
        getattr(F, f"fractional_max_pool{nd}d"),
        getattr(TF, f"fractional_max_pool{nd}d"),
    )
    out, idx = fn(x, kernel, return_indices=True, _random_samples=samples, **kw)
    want, want_idx = tfn(
        t(x), kernel, return_indices=True, _random_samples=t(samples), **kw
    )
    assert_exact(out, want)
    assert_exact(idx, want_idx)


@pytest.mark.parametrize(
    ("nd", "sizes", "kernel", "spec", "batched"), _fractional_cases()
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fractional_max_pool(
    nd: int,
    sizes: tuple[int, ...],
    kernel: Any,
    spec: tuple[str, Any],
    batched: bool,
    dtype: Any,
) -> None:
    shape = shape_of(nd, sizes, batched)
    samples = _rng(shape, "u").random((shape[0] if batched else 1, 3, nd))
    samples = samples.astype(dtype)
    kw = {"output_size": spec[1]} if spec[0] == "size" else {"output_ratio": spec[1]}
    for make in (ties, special):
        check_fractional(nd, make(shape, dtype), kernel, samples, **kw)


@pytest.mark.parametrize("nd", [2, 3])
def test_fractional_is_never_gathered(nd: int) -> None:
    """Windows drawn per plane have no table the planes share: with the
    gather forced on (after the tap loop has run), fractional pooling still
    takes the tap loop, and gives PyTorch's values and indices."""
    shape = shape_of(nd, (9, 8, 7), True)
    samples = _rng(shape, "g").random((2, 3, nd))
    for tracker in ("tap-loop", "gathered", "windows-first"):
        with forced(TRACKERS[tracker]):
            check_fractional(nd, ties(shape), 2, samples, output_size=4)


@pytest.mark.parametrize("nd", [2, 3])
def test_fractional_float16(nd: int) -> None:
    shape = shape_of(nd, (9, 8, 7), True)
    x = normal(shape, np.float16)
    samples = _rng(shape, "h").random((2, 3, nd)).astype(np.float16)
    check_fractional(nd, x, 2, samples, output_size=4)


@pytest.mark.parametrize("nd", [2, 3])
def test_fractional_without_samples(nd: int) -> None:
    """Random samples: a valid max of some window, in the right shape."""
    x = normal(shape_of(nd, (9, 8, 7), True))
    fn = getattr(F, f"fractional_max_pool{nd}d")
    out, idx = fn(x, 2, output_ratio=0.5, return_indices=True)
    assert out.shape == x.shape[:2] + tuple(s // 2 for s in x.shape[2:])
    flat = x.reshape(*x.shape[:2], -1)
    picked = np.take_along_axis(flat, idx.reshape(*idx.shape[:2], -1), axis=-1)
    np.testing.assert_array_equal(picked.reshape(out.shape), out)


# --------------------------------------------------------------------------
# unpooling


def _unpool_cases() -> list[Any]:
    out = []
    for nd, count in ((1, 45), (2, 45), (3, 30)):
        for i, case in enumerate(
            window_cases(nd, count, 30 + nd, dilation=False, ceil_mode=False)
        ):
            sizes, kernel, stride, padding, _, _ = case
            out.append(
                pytest.param(
                    nd,
                    sizes,
                    kernel,
                    stride,
                    padding,
                    i % 3,
                    i % 4 != 0,
                    id=f"{nd}d-{i}",
                )
            )
    return out


@pytest.mark.parametrize(
    ("nd", "sizes", "kernel", "stride", "padding", "size_mode", "batched"),
    _unpool_cases(),
)
def test_max_unpool(
    nd: int,
    sizes: tuple[int, ...],
    kernel: Any,
    stride: Any,
    padding: Any,
    size_mode: int,
    batched: bool,
) -> None:
    x = normal(shape_of(nd, sizes, batched))
    pooled, idx = getattr(TF, f"max_pool{nd}d")(
        t(x), kernel, stride, padding, return_indices=True
    )
    k = (kernel,) * nd if isinstance(kernel, int) else kernel
    s = k if stride is None else ((stride,) * nd if isinstance(stride, int) else stride)
    p = (padding,) * nd if isinstance(padding, int) else padding
    default = [
        (n - 1) * si - 2 * pi + ki
        for n, ki, si, pi in zip(pooled.shape[-nd:], k, s, p, strict=True)
    ]
    output_size: Any = None
    if size_mode:  # the largest allowed size, as N or N + 2 entries
        wanted = [d + si - 1 for d, si in zip(default, s, strict=True)]
        output_size = wanted if size_mode == 1 else [7, 7, *wanted]
    fn, tfn = getattr(F, f"max_unpool{nd}d"), getattr(TF, f"max_unpool{nd}d")
    args = (kernel, stride, padding, output_size)
    try:  # an index from the right padding may not fit the unpooled plane
        want = tfn(pooled, idx, *args)
    except RuntimeError:
        with pytest.raises(ValueError, match=r"indices|output size"):
            fn(pooled.numpy(), idx.numpy(), *args)
        return
    assert_exact(fn(pooled.numpy(), idx.numpy(), *args), want)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_unpool_dtypes_and_roundtrip(dtype: Any, nd: int) -> None:
    x = special(shape_of(nd, (6, 5, 4), True), dtype)
    pooled, idx = F.__dict__[f"max_pool{nd}d"](x, 2, return_indices=True)
    tpooled, tidx = getattr(TF, f"max_pool{nd}d")(t(x), 2, return_indices=True)
    got = getattr(F, f"max_unpool{nd}d")(pooled, idx, 2, output_size=x.shape[-nd:])
    want = getattr(TF, f"max_unpool{nd}d")(tpooled, tidx, 2, output_size=x.shape[-nd:])
    assert_exact(got, want)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_unpool_smaller_output_size(nd: int) -> None:
    """The smallest allowed output_size, with indices that fit in it."""
    x = normal(shape_of(nd, (4, 4, 4), True))
    pooled, idx = getattr(TF, f"max_pool{nd}d")(t(x), 2, 3, return_indices=True)
    size = [3] * nd  # default 5, stride 3: 3 is the smallest allowed
    small = torch.remainder(idx, 3**nd)  # fit the plane, with duplicates
    got = getattr(F, f"max_unpool{nd}d")(pooled.numpy(), small.numpy(), 2, 3, 0, size)
    want = getattr(TF, f"max_unpool{nd}d")(pooled, small, 2, 3, 0, size)
    assert_exact(got, want)


# --------------------------------------------------------------------------
# empty batches and size-1 dims


def _all_calls(nd: int) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    return [
        (f"max_pool{nd}d", (2,), {"return_indices": True}),
        (f"max_pool{nd}d", (1, 1, 0, 2), {}),
        (f"avg_pool{nd}d", (2, 1, 1, True, False), {}),
        (f"lp_pool{nd}d", (2, 2), {}),
        (f"adaptive_max_pool{nd}d", (3,), {"return_indices": True}),
        (f"adaptive_avg_pool{nd}d", (3,), {}),
    ]


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("lead", [(0, 3), (0, 1), (1, 1), (3,), (1,)])
@pytest.mark.parametrize("dtype", FLOATS)
def test_empty_batch_and_size_one(nd: int, lead: tuple[int, ...], dtype: Any) -> None:
    for spatial in ((1,) * nd, (2, 1, 3)[:nd], (4,) * nd):
        shape = lead + spatial
        x = special(shape, dtype)
        for name, args, kw in _all_calls(nd):
            short = min(spatial) == 1
            if short and name.startswith(("lp_pool", "avg_pool")):
                continue  # kernel longer than the input
            if short and name.startswith("max_pool") and args[0] == 2:
                continue
            if dtype == np.float16 and nd == 3 and name.startswith(("avg", "lp")):
                continue
            got = getattr(F, name)(x, *args, **kw)
            want = getattr(TF, name)(t(x), *args, **kw)
            got = got if isinstance(got, tuple) else (got,)
            want = want if isinstance(want, tuple) else (want,)
            for g, w in zip(got, want, strict=True):
                if g.dtype.kind == "f" and name.startswith(("avg", "lp", "adaptive_a")):
                    np.testing.assert_array_equal(np.isnan(g), np.isnan(w.numpy()))
                    assert_close(np.nan_to_num(g), np.nan_to_num(w.numpy()))
                else:
                    assert_exact(g, w)


@pytest.mark.parametrize("nd", [2, 3])
def test_empty_batch_fractional_and_unpool(nd: int) -> None:
    x = normal((0, 3) + (6,) * nd)
    samples = np.zeros((0, 3, nd))
    check_fractional(nd, x, 2, samples, output_size=3)
    for d in (1, nd):
        y = x.reshape((0, 3) + (6,) * d) if d != nd else x
        p, i = getattr(F, f"max_pool{d}d")(y, 2, return_indices=True)
        got = getattr(F, f"max_unpool{d}d")(p, i, 2)
        want = getattr(TF, f"max_unpool{d}d")(t(p), t(i), 2)
        assert_exact(got, want)


def test_empty_channels_adaptive_avg() -> None:
    """torch accepts C=0 for adaptive average pooling only."""
    x = np.zeros((2, 0, 4, 4))
    assert_exact(F.adaptive_avg_pool2d(x, 2), TF.adaptive_avg_pool2d(t(x), 2))


# --------------------------------------------------------------------------
# integer and bool dtypes (not as torch: SPEC §3)

INTS = (np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint16)


@pytest.mark.parametrize("dtype", INTS)
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_integer_max_keeps_dtype(dtype: Any, nd: int) -> None:
    info = np.iinfo(dtype)
    rng = _rng(nd, np.dtype(dtype).name)
    x = rng.integers(info.min, info.max, size=shape_of(nd, (6, 5, 4), True))
    x = x.astype(dtype)
    x.flat[::7] = info.max  # extremes and ties
    x.flat[1::5] = info.min
    axes = tuple(range(2, 2 + nd))
    cases = [
        ("max_pool", (3, 2, 1, 1, True), {"stride": (2,) * nd, "pads": [(1, 1)] * nd,
                                          "ceil_mode": True}),
        ("max_pool", (2, 1, 0, 2, False), {"stride": (1,) * nd, "dilation": (2,) * nd}),
    ]  # fmt: skip
    for name, args, ref_kw in cases:
        out, idx = getattr(F, f"{name}{nd}d")(x, *args, True)
        want, want_idx = ref_pool(x, (args[0],) * nd, axes=axes, **ref_kw)
        assert out.dtype == x.dtype
        assert_exact(out, want)
        assert_exact(idx, want_idx)
    out, idx = getattr(F, f"adaptive_max_pool{nd}d")(x, 3, True)
    wins = [adaptive_windows(x.shape[a], 3) for a in axes]
    want, want_idx = reduce_windows(x, axes, wins, op="max")
    assert_exact(out, want)
    assert_exact(idx, want_idx)


def test_bool_max_keeps_dtype() -> None:
    x = _rng("bool").random((2, 3, 5, 6)) < 0.3
    out, idx = F.max_pool2d(x, 2, 1, 1, return_indices=True)
    want, want_idx = TF.max_pool2d(
        t(x.astype(np.float64)), 2, 1, 1, return_indices=True
    )
    assert out.dtype == np.bool_
    np.testing.assert_array_equal(out, want.numpy().astype(bool))
    assert_exact(idx, want_idx)


@pytest.mark.parametrize("dtype", [*INTS, np.bool_])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_integer_average_is_exact_float64(dtype: Any, nd: int) -> None:
    """Integer averages return the exact float64 mean (torch truncates)."""
    if dtype == np.bool_:
        x = _rng("b", nd).random(shape_of(nd, (5, 4, 3), False)) < 0.5
    else:
        info = np.iinfo(dtype)
        x = _rng(nd, "avg").integers(
            info.min, info.max, size=shape_of(nd, (5, 4, 3), False)
        )
        x = x.astype(dtype)
    axes = tuple(range(1, 1 + nd))
    got = getattr(F, f"avg_pool{nd}d")(x, 2, 1, 1, True, False)
    want, _ = ref_pool(
        x, (2,) * nd, axes=axes, stride=(1,) * nd, pads=[(1, 1)] * nd,
        ceil_mode=True, op="avg", count_include_pad=False,
    )  # fmt: skip
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12)
    got = getattr(F, f"adaptive_avg_pool{nd}d")(x, 2)
    wins = [adaptive_windows(x.shape[a], 2) for a in axes]
    want, _ = reduce_windows(x, axes, wins, op="avg")
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12)
    if dtype == np.int64:  # no overflow: the mean of huge values
        big = np.full(shape_of(nd, (4, 4, 4), False), np.iinfo(np.int64).max // 2)
        np.testing.assert_allclose(
            getattr(F, f"avg_pool{nd}d")(big, 2), float(big.flat[0])
        )


def test_top_level_reexports() -> None:
    for name in F.__all__:
        assert getattr(ndpool, name) is getattr(F, name)
        assert hasattr(TF, name)
    assert len(set(F.__all__)) == 20
