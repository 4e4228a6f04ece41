"""Hypothesis-generated cases: torch parity, and the generic N-d ``pool``
against the naive-loop reference in ``tests/reference.py``.

Arrays are small (at most a few hundred cells) and their values come from a
drawn seed and a drawn kind: ties (small integer-valued floats), normal
floats, or ties with NaN, +inf and -inf. Each test runs a multiple of the
profile's ``max_examples`` (see ``conftest.py``); with the default ``ci``
profile the file runs 2,300 generated cases.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

import ndpool
import ndpool.functional as F
from reference import adaptive_windows, reduce_windows, ref_pool, same_pads
from ways import TRACKERS, forced

torch = pytest.importorskip("torch")
TF = torch.nn.functional

EXAMPLES = settings.default.max_examples
TOL = {
    np.dtype(np.float64): (1e-6, 1e-12),
    np.dtype(np.float32): (1e-5, 1e-6),
    np.dtype(np.float16): (1e-3, 2e-3),
}
KINDS = ("ties", "normal", "special")


def values(shape: tuple[int, ...], dtype: Any, kind: str, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = max(info.min, -50), min(info.max, 50)
        if kind == "special":  # the extremes, where overflow would show
            lo, hi = info.min, info.max
        return rng.integers(lo, hi, size=shape, endpoint=True).astype(dtype)
    if np.dtype(dtype).kind == "b":
        return rng.random(shape) < 0.5
    if kind == "normal":
        return rng.standard_normal(shape).astype(dtype)
    x = rng.integers(-3, 4, size=shape).astype(dtype)
    if kind == "special":
        pick = rng.random(shape)
        x[pick < 0.1] = np.nan
        x[(pick >= 0.1) & (pick < 0.16)] = np.inf
        x[(pick >= 0.16) & (pick < 0.22)] = -np.inf
    return x


def t(x: Any) -> Any:
    return torch.from_numpy(np.ascontiguousarray(x))


def exact(got: Any, want: Any) -> None:
    want = want.numpy() if hasattr(want, "numpy") else np.asarray(want)
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def close(got: Any, want: Any, dtype: Any, magnitude: Any = 0.0) -> None:
    """Within the dtype's tolerance, plus 16 ulps of ``magnitude`` (the
    size of the terms summed, where cancellation leaves a small value)."""
    want = want.numpy() if hasattr(want, "numpy") else np.asarray(want)
    assert got.shape == want.shape
    assert got.dtype == np.dtype(dtype)
    rtol, atol = TOL[np.dtype(dtype)]
    g, w = got.astype(np.float64), want.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
    slack = 16 * np.finfo(np.dtype(dtype)).eps * np.nan_to_num(magnitude)
    both = np.isfinite(g) & np.isfinite(w)
    np.testing.assert_array_equal(g[~both], w[~both])
    err = np.abs(g[both] - w[both])
    bound = (atol + rtol * np.abs(w) + slack * np.ones_like(w))[both]
    assert (err <= bound).all(), (err - bound).max()


def _maybe_tuple(draw: st.DrawFn, per_axis: list[int]) -> Any:
    if len(set(per_axis)) == 1 and draw(st.booleans()):
        return per_axis[0]
    return tuple(per_axis)


@st.composite
def torch_window_case(draw: st.DrawFn, op: str) -> dict[str, Any]:
    """A valid torch max/avg/lp call on a small random input."""
    nd = draw(st.integers(1, 3))
    ks, ss, ps, ds, sizes = [], [], [], [], []
    for _ in range(nd):
        k = draw(st.integers(1, 4 if nd < 3 else 3))
        d = draw(st.integers(1, 3)) if op == "max" else 1
        p = draw(st.integers(0, k // 2)) if op != "lp" else 0
        s = draw(st.integers(1, 3))
        low = max(1, d * (k - 1) + 1 - 2 * p)
        if op != "max" and nd == 3:
            low = max(low, k)  # torch's avg_pool3d: no kernel overhang
        sizes.append(draw(st.integers(low, low + (5 if nd < 3 else 2))))
        ks.append(k)
        ss.append(s)
        ps.append(p)
        ds.append(d)
    batch = draw(st.sampled_from([(), (1,), (2,), (0,)]))
    shape = (*batch, draw(st.integers(1, 3)), *sizes)
    dtype = draw(st.sampled_from([np.float64, np.float32, np.float16]))
    if op != "max" and nd == 3 and dtype == np.float16:
        dtype = np.float32  # torch has no float16 avg_pool3d on CPU
    return {
        "nd": nd,
        "x": values(
            shape, dtype, draw(st.sampled_from(KINDS)), draw(st.integers(0, 2**32 - 1))
        ),
        "kernel": _maybe_tuple(draw, ks),
        "stride": None if draw(st.integers(0, 3)) == 0 else _maybe_tuple(draw, ss),
        "padding": _maybe_tuple(draw, ps),
        "dilation": _maybe_tuple(draw, ds),
        "ceil": draw(st.booleans()),
        "channels_last": draw(st.integers(0, 4)) == 0,
    }


def _last(x: Any, nd: int) -> Any:
    """(N, C, *sp) -> (N, *sp, C)."""
    return np.moveaxis(x, x.ndim - nd - 1, -1)


def _first(x: Any, nd: int) -> Any:
    return np.moveaxis(x, -1, x.ndim - nd - 1)


@settings(max_examples=4 * EXAMPLES)
@given(case=torch_window_case("max"))
def test_max_pool_matches_torch(case: dict[str, Any]) -> None:
    nd, x = case["nd"], case["x"]
    args = (case["kernel"], case["stride"], case["padding"], case["dilation"])
    want, want_idx = getattr(TF, f"max_pool{nd}d")(
        t(x), *args, case["ceil"], return_indices=True
    )
    fn = getattr(F, f"max_pool{nd}d")
    if case["channels_last"]:
        out, idx = fn(
            _last(x, nd), *args, case["ceil"], True, data_format="channels_last"
        )
        out, idx = _first(out, nd), _first(idx, nd)
    else:
        out, idx = fn(x, *args, case["ceil"], True)
    exact(out, want)
    exact(idx, want_idx)


@settings(max_examples=3 * EXAMPLES)
@given(
    case=torch_window_case("avg"),
    include=st.booleans(),
    divisor=st.sampled_from([None, None, None, 1, 2, 5, -3]),
)
def test_avg_pool_matches_torch(
    case: dict[str, Any], include: bool, divisor: int | None
) -> None:
    nd, x = case["nd"], case["x"]
    args = (case["kernel"], case["stride"], case["padding"], case["ceil"], include)
    if nd == 1:  # torch's avg_pool1d has no divisor_override: go through 2-d
        k, s, p = (
            (v if isinstance(v, int) else v[0]) if v is not None else None
            for v in args[:3]
        )
        want = TF.avg_pool2d(
            t(x[..., None, :]), (1, k), (1, s or k), (0, p), case["ceil"], include,
            divisor,
        )[..., 0, :]  # fmt: skip
    else:
        want = getattr(TF, f"avg_pool{nd}d")(t(x), *args, divisor)
    fn = getattr(F, f"avg_pool{nd}d")
    if case["channels_last"]:
        got = _first(fn(_last(x, nd), *args, divisor, data_format="channels_last"), nd)
    else:
        got = fn(x, *args, divisor)
    close(got, want, x.dtype)


@settings(max_examples=2 * EXAMPLES)
@given(
    case=torch_window_case("lp"),
    norm=st.sampled_from([1, 2, 3, 1.5, 0.5, -1, 4.0, math.inf, -math.inf]),
)
def test_lp_pool_matches_torch(case: dict[str, Any], norm: float) -> None:
    nd, x = case["nd"], case["x"]
    kernel = case["kernel"]
    if nd == 1 and not isinstance(kernel, int):
        kernel = kernel[0]
    finite = x[np.isfinite(x)]
    if not np.array_equal(finite, np.round(finite)):  # cancelling float sums
        x = np.abs(x)  # amplify rounding noise; integer-valued ones are exact
    if norm < 0:  # 1/sum near a zero sum is rounding noise: keep sums positive
        x = (np.abs(x) + 0.5).astype(x.dtype)
    args = (norm, kernel, case["stride"], case["ceil"])
    want = getattr(TF, f"lp_pool{nd}d")(t(x), *args)
    close(getattr(F, f"lp_pool{nd}d")(x, *args), want, x.dtype)


@st.composite
def adaptive_case(draw: st.DrawFn) -> dict[str, Any]:
    nd = draw(st.integers(1, 3))
    sizes = [draw(st.integers(1, 9 if nd < 3 else 5)) for _ in range(nd)]
    outs: list[int | None] = [
        draw(st.integers(0, 11 if nd < 3 else 6)) for _ in range(nd)
    ]
    if nd > 1:
        outs = [o if draw(st.integers(0, 4)) else None for o in outs]
    batch = draw(st.sampled_from([(), (1,), (2,), (0,)]))
    shape = (*batch, draw(st.integers(1, 3)), *sizes)
    dtype = draw(st.sampled_from([np.float64, np.float32, np.float16]))
    kind = draw(st.sampled_from(KINDS))
    single = len(set(outs)) == 1 and outs[0] is not None and draw(st.booleans())
    size = outs[0] if single else tuple(outs)
    return {
        "nd": nd,
        "x": values(shape, dtype, kind, draw(st.integers(0, 2**32 - 1))),
        "size": size,
    }


@settings(max_examples=3 * EXAMPLES)
@given(case=adaptive_case())
def test_adaptive_matches_torch(case: dict[str, Any]) -> None:
    nd, x, size = case["nd"], case["x"], case["size"]
    want, want_idx = getattr(TF, f"adaptive_max_pool{nd}d")(t(x), size, True)
    out, idx = getattr(F, f"adaptive_max_pool{nd}d")(x, size, True)
    exact(out, want)
    exact(idx, want_idx)
    want = getattr(TF, f"adaptive_avg_pool{nd}d")(t(x), size)
    close(getattr(F, f"adaptive_avg_pool{nd}d")(x, size), want, x.dtype)


@st.composite
def fractional_case(draw: st.DrawFn) -> dict[str, Any]:
    nd = draw(st.integers(2, 3))
    ks, outs, sizes = [], [], []
    for _ in range(nd):
        length = draw(st.integers(1, 9 if nd == 2 else 6))
        k = draw(st.integers(1, max(1, length - (nd == 3))))
        o = draw(st.integers(0, max(0, length - k + (nd == 2))))
        if nd == 3 and length == 1:
            k, o = 1, 0
        ks.append(k)
        outs.append(o)
        sizes.append(length)
    batched = draw(st.booleans())
    n = draw(st.integers(0, 2)) if batched else 1
    c = draw(st.integers(1, 3))
    shape = ((n,) if batched else ()) + (c, *sizes)
    dtype = draw(st.sampled_from([np.float64, np.float32, np.float16]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    samples = rng.random((n + draw(st.integers(0, 1)), c, nd))
    if draw(st.integers(0, 5)) == 0:  # torch takes any value, even outside [0, 1)
        samples = samples * 4 - 2
    return {
        "nd": nd,
        "x": values(
            shape, dtype, draw(st.sampled_from(KINDS)), int(rng.integers(2**32))
        ),
        "kernel": _maybe_tuple(draw, ks),
        "size": _maybe_tuple(draw, outs),
        "samples": samples.astype(dtype),
    }


@settings(max_examples=2 * EXAMPLES)
@given(case=fractional_case())
def test_fractional_matches_torch(case: dict[str, Any]) -> None:
    nd, x = case["nd"], case["x"]
    args = (case["kernel"], case["size"])
    want, want_idx = getattr(TF, f"fractional_max_pool{nd}d")(
        t(x), *args, return_indices=True, _random_samples=t(case["samples"])
    )
    out, idx = getattr(F, f"fractional_max_pool{nd}d")(
        x, *args, return_indices=True, _random_samples=case["samples"]
    )
    exact(out, want)
    exact(idx, want_idx)


@settings(max_examples=2 * EXAMPLES)
@given(case=torch_window_case("max"), grow=st.booleans(), long_size=st.booleans())
def test_unpool_roundtrip_matches_torch(
    case: dict[str, Any], grow: bool, long_size: bool
) -> None:
    nd, x = case["nd"], case["x"]
    kernel, stride, padding = case["kernel"], case["stride"], case["padding"]
    pooled, idx = getattr(F, f"max_pool{nd}d")(
        x, kernel, stride, padding, 1, False, True
    )
    tpooled, tidx = getattr(TF, f"max_pool{nd}d")(
        t(x), kernel, stride, padding, 1, False, True
    )
    exact(pooled, tpooled)
    size: Any = None
    if grow or long_size:  # the input's own size, when PyTorch allows it
        size = list(x.shape[-nd:])
        if long_size:
            size = [7, 7, *size]
    args = (kernel, stride, padding, size)
    try:
        want = getattr(TF, f"max_unpool{nd}d")(tpooled, tidx, *args)
    except (RuntimeError, ValueError):
        with pytest.raises(ValueError, match=r"indices|output"):
            getattr(F, f"max_unpool{nd}d")(pooled, idx, *args)
        return
    exact(getattr(F, f"max_unpool{nd}d")(pooled, idx, *args), want)


# --------------------------------------------------------------------------
# generic N-d pool vs the naive-loop reference


@st.composite
def generic_case(
    draw: st.DrawFn,
    big: bool = False,
    ops: tuple[str, ...] = ("max", "min", "avg", "sum", "lp"),
) -> dict[str, Any]:
    """A random ``pool`` call with one of ``ops``; ``big``: kernels of 9 to
    40 taps with few windows, which the core folds window by window."""
    ndim = draw(st.integers(1, 4))
    n = draw(st.integers(1, min(ndim, 3)))
    axes = draw(st.permutations(range(ndim)))[:n]
    axes = [a - ndim if draw(st.booleans()) else a for a in axes]
    op = draw(st.sampled_from(ops))
    pad_mode = draw(
        st.sampled_from(["int", "int", "pairs", "same", "same_lower", "valid"])
    )
    shape = [draw(st.integers(1, 3)) for _ in range(ndim)]
    ks, ss, ds, pads = [], [], [], []
    for a in axes:
        k = draw(st.integers(9, 40) if big else st.integers(1, 3))
        d = draw(st.integers(1, 2))
        s = draw(st.integers(k // 2, 2 * k) if big else st.integers(1, 3))
        span = d * (k - 1) + 1
        if pad_mode == "int":
            p = draw(st.integers(0, k // 2))
            pair = (p, p)
        elif pad_mode == "pairs":
            pair = (draw(st.integers(0, span - 1)), draw(st.integers(0, span - 1)))
        else:
            pair = (0, 0)
        low = max(1, span - pair[0] - pair[1])
        shape[a] = draw(st.integers(low, low + (2 * s if big else 3)))
        ks.append(k)
        ss.append(s)
        ds.append(d)
        pads.append(pair)
    dtype = draw(
        st.sampled_from([np.float64, np.float32, np.int16, np.uint8, np.bool_])
    )
    if op in ("lp",) and dtype == np.bool_:
        dtype = np.float64
    kind = draw(st.sampled_from(KINDS))
    if pad_mode == "int":
        padding: Any = (
            pads[0][0] if len({p for p, _ in pads}) == 1 else tuple(p for p, _ in pads)
        )
    elif pad_mode == "pairs":
        padding = tuple(pads)
    else:
        padding = pad_mode
    return {
        "x": values(tuple(shape), dtype, kind, draw(st.integers(0, 2**32 - 1))),
        "axes": axes,
        "op": op,
        "kernel": tuple(ks),
        "stride": tuple(ss),
        "dilation": tuple(ds),
        "pads": pads,
        "padding": padding,
        "ceil": draw(st.booleans()) and pad_mode not in ("same", "same_lower"),
        "include": draw(st.booleans()),
        "divisor": draw(st.sampled_from([None, None, None, 2, -3]))
        if op == "avg"
        else None,
        "norm": draw(st.sampled_from([1.0, 2.0, 3.0, math.inf]))
        if op == "lp"
        else None,
        "nan_policy": draw(st.sampled_from(["propagate", "omit"])),
    }


@settings(max_examples=6 * EXAMPLES)
@given(case=generic_case())
def test_generic_pool_matches_reference(case: dict[str, Any]) -> None:
    _check_generic(case)


@settings(max_examples=2 * EXAMPLES)
@given(case=generic_case(big=True))
def test_few_windows_of_many_taps_match_reference(case: dict[str, Any]) -> None:
    """Kernels many times longer than the output: folded window by window
    (``_core.window_major``), the gradient spread back the same way."""
    _check_generic(case)
    x = case["x"]
    if case["op"] in ("max", "min") or x.dtype.kind != "f":
        return
    kwargs = {**_pool_kwargs(case), "padding": case["padding"]}
    out, pullback = ndpool.vjp(ndpool.pool, x, case["kernel"], **kwargs)
    g = np.random.default_rng(0).standard_normal(out.shape).astype(x.dtype)
    with pytest.MonkeyPatch.context() as patch:  # the tap loops as the oracle
        patch.setattr(ndpool._core, "WINDOW_MAJOR", 10**9)
        _, taps = ndpool.vjp(ndpool.pool, x, case["kernel"], **kwargs)
        want = taps(g)
    close(pullback(g), want, x.dtype)


@settings(max_examples=2 * EXAMPLES)
@given(
    case=st.one_of(
        generic_case(ops=("max", "min")), generic_case(big=True, ops=("max", "min"))
    )
)
def test_every_argmax_way_matches_reference(case: dict[str, Any]) -> None:
    """Max and min with indices on each way of tracking them (one gather,
    the tap loop, window by window: ``ways.TRACKERS``), whichever the
    input's size would pick."""
    _check_generic(case, list(TRACKERS.values()))


def _pool_kwargs(case: dict[str, Any]) -> dict[str, Any]:
    """``ndpool.pool``'s keywords for a ``generic_case`` (but the padding)."""
    return {
        "axes": case["axes"],
        "stride": case["stride"],
        "dilation": case["dilation"],
        "ceil_mode": case["ceil"],
        "op": case["op"],
        "count_include_pad": case["include"],
        "divisor_override": case["divisor"],
        "norm_type": case["norm"],
        "nan_policy": case["nan_policy"],
    }


def _check_generic(
    case: dict[str, Any], ways: Sequence[dict[str, int]] = ({},)
) -> None:
    """``pool`` against the reference, on each of ``ways`` (settings of
    ``_core``, as in ``ways.py``) in turn."""
    x, axes = case["x"], case["axes"]
    padding = case["padding"]
    pads = case["pads"]
    include, ceil = case["include"], case["ceil"]
    if isinstance(padding, str):
        if padding != "valid":
            pads = [
                same_pads(x.shape[a], k, s, d, padding == "same_lower")
                for a, k, s, d in zip(
                    axes, case["kernel"], case["stride"], case["dilation"], strict=True
                )
            ]
        include, ceil = False, False  # "same": padded cells never count
    kwargs = _pool_kwargs(case)
    if case["op"] == "sum" and x.dtype.kind == "f":  # math.fsum: no inf - inf
        x = np.where(x == -np.inf, np.nan, x).astype(x.dtype)
    tracked = case["op"] in ("max", "min")
    gots = []
    for way in ways:
        with forced(way):
            gots.append(
                ndpool.pool(
                    x, case["kernel"], padding=padding, return_indices=tracked, **kwargs
                )
            )
    kwargs.update(ceil_mode=ceil, count_include_pad=include)
    try:
        want, want_idx = ref_pool(x, case["kernel"], pads=pads, **kwargs)
    except ZeroDivisionError:  # a dilated window of padding only, no divisor
        reject()
    magnitude = None
    if not tracked and x.dtype.kind == "f":
        # a float sum rounds in proportion to its terms' magnitude, not to
        # its value: that of |x| pooled alike widens the tolerance
        magnitude, _ = ref_pool(np.abs(x), case["kernel"], pads=pads, **kwargs)
    for got in gots:
        if tracked:
            out, idx = got
            exact(out, want)
            exact(idx, want_idx)
        elif magnitude is not None:
            close(got, want.astype(x.dtype), x.dtype, np.abs(magnitude))
        elif case["op"] == "sum":
            exact(got, want.astype(got.dtype))
        else:
            close(got, want, np.float64)


@st.composite
def integer_adaptive_case(draw: st.DrawFn) -> dict[str, Any]:
    nd = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from([np.int8, np.uint8, np.int32, np.int64, np.uint16]))
    shape = (draw(st.integers(1, 2)), *(draw(st.integers(1, 5)) for _ in range(nd)))
    size = tuple(draw(st.integers(1, 6)) for _ in range(nd))
    x = values(
        shape, dtype, draw(st.sampled_from(KINDS)), draw(st.integers(0, 2**32 - 1))
    )
    return {"nd": nd, "x": x, "size": size}


@settings(max_examples=EXAMPLES)
@given(case=integer_adaptive_case())
def test_integer_adaptive_matches_reference(case: dict[str, Any]) -> None:
    """Integers: max keeps the dtype, the average is the exact float64 mean."""
    nd, x, size = case["nd"], case["x"], case["size"]
    axes = list(range(1, 1 + nd))
    wins = [adaptive_windows(x.shape[a], o) for a, o in zip(axes, size, strict=True)]
    want, want_idx = reduce_windows(x, axes, wins, op="max")
    out, idx = getattr(F, f"adaptive_max_pool{nd}d")(x, size, True)
    exact(out, want)
    exact(idx, want_idx)
    want, _ = reduce_windows(x, axes, wins, op="avg")
    close(getattr(F, f"adaptive_avg_pool{nd}d")(x, size), want, np.float64)


@st.composite
def row_reduce_case(draw: st.DrawFn) -> dict[str, Any]:
    dtype = draw(
        st.sampled_from([np.float16, np.float32, np.float64, np.int8, np.uint8, bool])
    )
    shape = tuple(draw(st.integers(1, 5)) for _ in range(draw(st.integers(1, 4))))
    if draw(st.booleans()):  # rows past NumPy's vector loops and buffers
        shape = (*shape[:-1], draw(st.sampled_from([64, 1000, 8193])))
    seed = draw(st.integers(0, 2**32 - 1))
    x = values(shape, dtype, draw(st.sampled_from(KINDS)), seed)
    if x.dtype.kind == "f":  # zeros of both signs, NaN of either sign and
        # any payload: which one the fold keeps must match
        rng = np.random.default_rng(seed)
        x[rng.random(shape) < 0.3] = -0.0
        bits = x.view(f"u{x.itemsize}")
        quiet = np.array(np.nan, x.dtype).view(bits.dtype)
        payload = rng.integers(0, 2 ** np.finfo(x.dtype).nmant, shape, dtype=np.uint64)
        sign = rng.integers(0, 2, shape, dtype=np.uint64) << (8 * x.itemsize - 1)
        nan = (quiet | payload | sign).astype(bits.dtype)
        where = rng.random(shape) < 0.05
        bits[where] = nan[where]
    layout = draw(st.sampled_from(["contiguous", "sliced", "transposed"]))
    if layout == "sliced" and x.shape[-1] > 1:
        x = x[..., ::2]
    elif layout == "transposed":
        x = x.T
    k = draw(st.integers(1, x.ndim))
    axes = tuple(draw(st.permutations(range(x.ndim)))[:k])
    fold = draw(st.sampled_from([np.maximum, np.minimum, np.fmax, np.fmin]))
    return {"x": x, "axes": axes, "fold": fold, "strided_out": draw(st.booleans())}


@settings(max_examples=4 * EXAMPLES)
@given(case=row_reduce_case())
def test_row_reduce_gives_the_reduce_bits(case: dict[str, Any]) -> None:
    """``_reduce_kept`` (reduceat over a run of trailing contiguous cells,
    NumPy's reduce otherwise) gives ``fold.reduce``'s bits, the sign of a
    zero and NaN included, into a fresh or a strided ``out``."""
    from ndpool import _core

    x, axes, fold = case["x"], case["axes"], case["fold"]
    with np.errstate(invalid="ignore"):
        want = fold.reduce(x, axis=axes, keepdims=True)
        out = None
        if case["strided_out"]:
            out = np.empty((*want.shape, 2), want.dtype)[..., 0]
        got = _core._reduce_kept(fold, x, axes, x.dtype, out)
    assert out is None or got is out
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    assert got.tobytes() == np.ascontiguousarray(want).tobytes()


def test_row_reduce_merges_only_trailing_contiguous_axes() -> None:
    from ndpool import _core

    x = np.zeros((2, 3, 4, 5))
    assert _core._one_run(x, (2, 3)).shape == (2, 3, 20)
    assert np.shares_memory(_core._one_run(x, (3, 2)), x)
    assert _core._one_run(x[..., ::2], (2, 3)) is None
    assert _core._one_run(x, (1, 3)) is None
    assert _core._one_run(x[:, :, :1], (2, 3)).shape == (2, 3, 5)
