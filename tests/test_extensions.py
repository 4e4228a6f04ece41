"""The keyword-only extensions beyond PyTorch (SPEC §2, §3), against naive loops.

Oracle: ``tests/reference.py`` (cell-by-cell loops) wherever PyTorch has no
equivalent, NumPy's own reductions for global pooling, and the channels-first
result for ``data_format="channels_last"``. Covered, each over grids and
hypothesis cases:

- ``padding="valid" / "same" / "same_lower"`` and explicit ``((b, a), ...)``;
- ``data_format="channels_last"`` for every pooling function;
- ``nan_policy="omit"`` for max, min, avg, sum, Lp, adaptive and global;
- ``op="min"`` / ``op="sum"``; global pooling with ``keepdims``;
- integer and bool inputs, ``dtype=``, and refused dtypes;
- any ``axes`` (negative, any order) with every feature above.
"""

from __future__ import annotations

import itertools
import math
import re
import tracemalloc
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import ndpool
import ndpool.functional as F
from reference import (
    adaptive_windows,
    out_length,
    reduce_windows,
    ref_pool,
    regular_windows,
    same_pads,
)

RNG = np.random.default_rng(20240613)
OPS = ("max", "min", "avg", "sum", "lp")
INT_DTYPES = (np.uint8, np.uint16, np.int32, np.bool_)


# --------------------------------------------------------------------------
# helpers


def _rand(shape: tuple[int, ...], dtype: Any = np.float64, nan: float = 0.0) -> Any:
    """Random data; floats get a fraction ``nan`` of NaN cells."""
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return RNG.random(shape) < 0.5
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return RNG.integers(info.min, info.max, size=shape, endpoint=True, dtype=dt)
    x = RNG.standard_normal(shape).astype(dt)
    if nan:
        x[RNG.random(shape) < nan] = np.nan
    return x


def _kwargs_for_ref(op: str, norm_type: float | None) -> dict[str, Any]:
    return {"op": op, "norm_type": norm_type if op == "lp" else None}


def _check_values(got: Any, want: Any, op: str) -> None:
    """Bit-exact for max/min/sum of integers; float tolerance otherwise."""
    assert got.shape == want.shape
    if op in ("max", "min") or (op == "sum" and got.dtype.kind in "iu"):
        np.testing.assert_array_equal(got, want.astype(got.dtype))
    else:
        rtol = 1e-5 if got.dtype == np.float32 else 1e-9
        np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-12, equal_nan=True)


def _resolve_pads(
    padding: Any,
    shape: tuple[int, ...],
    axes: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> list[tuple[int, int]]:
    """The reference's (before, after) pairs for any padding form."""
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * len(kernel)
        lower = padding == "same_lower"
        return [
            same_pads(shape[a], k, s, d, lower)
            for a, k, s, d in zip(axes, kernel, stride, dilation, strict=True)
        ]
    if isinstance(padding, int):
        return [(padding, padding)] * len(kernel)
    return [tuple(p) if isinstance(p, tuple) else (p, p) for p in padding]  # type: ignore[misc]


def _has_empty_window(
    shape: tuple[int, ...],
    axes: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    pads: list[tuple[int, int]],
    ceil_mode: bool,
) -> bool:
    """Whether some window has no cell inside the input (only with dilation)."""
    for a, k, s, d, (pb, pa) in zip(axes, kernel, stride, dilation, pads, strict=True):
        for pos, _ in regular_windows(shape[a], k, s, d, pb, pa, ceil_mode):
            if not any(0 <= p < shape[a] for p in pos):
                return True
    return False


def _fits(
    shape: tuple[int, ...],
    axes: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    padding: Any,
    ceil_mode: bool,
) -> bool:
    """Whether every output length is >= 1 (else ndpool rightly refuses)."""
    if isinstance(padding, str) and padding != "valid":
        return True
    pads = _resolve_pads(padding, shape, axes, kernel, stride, dilation)
    return all(
        out_length(shape[a], k, s, d, pb, pa, ceil_mode and padding != "valid") >= 1
        for a, k, s, d, (pb, pa) in zip(
            axes, kernel, stride, dilation, pads, strict=True
        )
    )


def _check_pool(
    x: Any,
    kernel: tuple[int, ...],
    *,
    axes: tuple[int, ...] | None = None,
    stride: tuple[int, ...] | None = None,
    padding: Any = 0,
    dilation: tuple[int, ...] | None = None,
    ceil_mode: bool = False,
    op: str = "max",
    count_include_pad: bool = True,
    norm_type: float | None = 2.0,
    nan_policy: str = "propagate",
) -> None:
    """ndpool.pool against ref_pool for one call (indices too for max/min)."""
    n = len(kernel)
    ax = tuple(range(x.ndim - n, x.ndim)) if axes is None else axes
    st_ = kernel if stride is None else stride
    dil = (1,) * n if dilation is None else dilation
    pads = _resolve_pads(padding, x.shape, ax, kernel, st_, dil)
    is_str = isinstance(padding, str)
    if op == "avg" and _has_empty_window(
        x.shape, ax, kernel, st_, dil, pads, ceil_mode and not is_str
    ):
        return  # 0 / 0 (dilated taps all in padding): the reference divides by 0
    want, want_idx = ref_pool(
        x,
        kernel,
        axes=ax,
        stride=st_,
        pads=pads,
        dilation=dil,
        ceil_mode=ceil_mode and not is_str,
        count_include_pad=count_include_pad and not is_str,
        nan_policy=nan_policy,
        **_kwargs_for_ref(op, norm_type),
    )
    kw: dict[str, Any] = {
        "axes": axes,
        "stride": stride,
        "padding": padding,
        "dilation": dil,
        "ceil_mode": ceil_mode,
        "op": op,
        "count_include_pad": count_include_pad,
        "norm_type": norm_type if op == "lp" else None,
        "nan_policy": nan_policy,
    }
    if op in ("max", "min"):
        got, idx = ndpool.pool(x, kernel, return_indices=True, **kw)
        assert got.dtype == x.dtype
        assert idx.dtype == np.int64
        np.testing.assert_array_equal(idx, want_idx)
    else:
        got = ndpool.pool(x, kernel, **kw)
    _check_values(got, want, op)


# --------------------------------------------------------------------------
# "valid" / "same" / "same_lower" / explicit (before, after) padding


SAME_GRID = [
    (length, k, s, d)
    for length, k, s, d in itertools.product(
        range(1, 8), (1, 2, 3, 4), (1, 2, 3), (1, 2)
    )
    if d * (k - 1) < 7
]


@pytest.mark.parametrize("mode", ["same", "same_lower", "valid"])
@pytest.mark.parametrize("op", OPS)
def test_string_padding_1d_grid(mode: str, op: str) -> None:
    for length, k, s, d in SAME_GRID:
        if mode == "valid" and d * (k - 1) + 1 > length:
            continue
        x = _rand((2, length))
        _check_pool(
            x, (k,), stride=(s,), dilation=(d,), padding=mode, op=op, norm_type=3.0
        )


@pytest.mark.parametrize("mode", ["same", "same_lower"])
def test_same_output_length_and_split(mode: str) -> None:
    """Output ceil(L/s); total padding as TF; the odd cell at the end (start)."""
    for length, k, s, d in SAME_GRID:
        x = np.arange(length, dtype=np.float64)
        out = ndpool.pool(x, k, stride=s, dilation=d, padding=mode, op="sum")
        assert out.shape == (math.ceil(length / s),)
        out_len = math.ceil(length / s)
        total = max((out_len - 1) * s + d * (k - 1) + 1 - length, 0)
        before = total // 2 if mode == "same" else total - total // 2
        assert same_pads(length, k, s, d, mode == "same_lower") == (
            before,
            total - before,
        )


@pytest.mark.parametrize("mode", ["same", "same_lower"])
@pytest.mark.parametrize("op", OPS)
def test_same_padding_2d_3d(mode: str, op: str) -> None:
    x2 = _rand((2, 5, 6))
    x3 = _rand((4, 5, 3))
    for k, s, d in [((3, 2), (2, 1), (1, 2)), ((2, 4), (3, 2), (2, 1)), ((1, 5), 1, 1)]:
        stride = (s, s) if isinstance(s, int) else s
        dil = (d, d) if isinstance(d, int) else d
        _check_pool(x2, k, stride=stride, dilation=dil, padding=mode, op=op)
    _check_pool(x3, (2, 3, 2), stride=(2, 2, 1), padding=mode, op=op, norm_type=2)


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_same_average_never_counts_padding(count_include_pad: bool) -> None:
    """With "same", padded cells never count, whatever count_include_pad says."""
    ones = np.ones((3, 7, 5))
    for mode in ("same", "same_lower"):
        out = ndpool.pool(
            ones,
            (4, 3),
            stride=(2, 1),
            padding=mode,
            op="avg",
            count_include_pad=count_include_pad,
        )
        np.testing.assert_array_equal(out, np.ones((3, 4, 5)))
        out = F.avg_pool2d(ones, 3, 2, padding=mode, count_include_pad=True)
        np.testing.assert_array_equal(out, np.ones((3, 4, 3)))


def test_explicit_pairs_keep_count_include_pad() -> None:
    """Explicit (before, after) padding: count_include_pad as in PyTorch."""
    ones = np.ones((1, 4, 4))
    pads = ((1, 0), (0, 2))
    inc = ndpool.pool(ones, (3, 3), stride=1, padding=pads, op="avg")
    exc = ndpool.pool(
        ones, (3, 3), stride=1, padding=pads, op="avg", count_include_pad=False
    )
    np.testing.assert_array_equal(exc, np.ones_like(exc))
    assert inc.shape == (1, 3, 4)
    assert inc[0, 0, 0] == pytest.approx(6 / 9)  # one padded row
    assert inc[0, 1, 3] == pytest.approx(3 / 9)  # two padded columns


def test_explicit_pairs_match_torch() -> None:
    """Symmetric pairs == int padding == torch; asymmetric pairs == torch on a
    copy padded by hand (zeros for the average: count_include_pad counts
    them; -inf for the max)."""
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x = _rand((2, 3, 7, 6))
    xt = torch.from_numpy(x)
    got = F.avg_pool2d(x, 3, 2, ((1, 1), (1, 1)))
    np.testing.assert_allclose(got, tf.avg_pool2d(xt, 3, 2, 1).numpy(), rtol=1e-12)
    np.testing.assert_array_equal(
        F.max_pool2d(x, 3, 2, ((1, 1), (1, 1))), tf.max_pool2d(xt, 3, 2, 1).numpy()
    )
    pads = ((2, 0), (1, 2))
    torch_pads = (1, 2, 2, 0)  # (left, right, top, bottom)
    got = ndpool.pool(x, (3, 3), stride=(2, 1), padding=pads, op="avg")
    want = tf.avg_pool2d(tf.pad(xt, torch_pads), 3, (2, 1)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)
    got = F.max_pool2d(x, 3, (2, 1), pads)
    want = tf.max_pool2d(tf.pad(xt, torch_pads, value=-math.inf), 3, (2, 1))
    np.testing.assert_array_equal(got, want.numpy())


PAIR_GRID = [
    (length, k, s, d, pb, pa, ceil)
    for length, k, s, d in itertools.product((1, 3, 6), (1, 2, 3), (1, 2, 3), (1, 2))
    for pb, pa in itertools.product(range(d * (k - 1) + 1), repeat=2)
    for ceil in (False, True)
    if out_length(length, k, s, d, pb, pa, ceil) >= 1
]


@pytest.mark.parametrize("op", OPS)
def test_explicit_pairs_grid(op: str) -> None:
    for length, k, s, d, pb, pa, ceil in PAIR_GRID:
        x = _rand((2, length))
        for cip in (True, False) if op == "avg" else (True,):
            _check_pool(
                x,
                (k,),
                stride=(s,),
                dilation=(d,),
                padding=((pb, pa),),
                ceil_mode=ceil,
                op=op,
                count_include_pad=cip,
                norm_type=2.0,
            )


def test_padding_errors() -> None:
    x = np.zeros((1, 5, 5))
    with pytest.raises(ValueError, match="padding"):
        ndpool.pool(x, (3, 3), padding="full")
    with pytest.raises(ValueError, match="kernel extent 3"):
        ndpool.pool(x, (3, 3), padding=((3, 0), (0, 0)))
    with pytest.raises(ValueError, match="pair per pooled axis"):
        ndpool.pool(x, (3, 3), padding=((1, 1),))
    with pytest.raises(ValueError, match="non-negative"):
        ndpool.pool(x, (3, 3), padding=((1, -1), (0, 0)))


# --------------------------------------------------------------------------
# data_format="channels_last"


def _to_last(a: Any, batched: bool) -> Any:
    return np.ascontiguousarray(np.moveaxis(a, 1 if batched else 0, -1))


def _torch_named_calls(nd: int) -> list[tuple[str, Callable[..., Any]]]:
    """(name, f(x, data_format)) for every torch-named op and global pool."""
    mx = getattr(F, f"max_pool{nd}d")
    av = getattr(F, f"avg_pool{nd}d")
    lp = getattr(F, f"lp_pool{nd}d")
    amx = getattr(F, f"adaptive_max_pool{nd}d")
    aav = getattr(F, f"adaptive_avg_pool{nd}d")
    unp = getattr(F, f"max_unpool{nd}d")

    def unpool(x: Any, df: str) -> Any:
        out, idx = mx(x, 2, 2, return_indices=True, data_format=df)
        return unp(out, idx, 2, 2, data_format=df)

    def unpool_to(x: Any, df: str) -> Any:
        """Back to ``x``'s size, given as PyTorch takes it: the whole
        batched shape (in the input's layout), or the spatial sizes."""
        out, idx = mx(x, 2, 2, return_indices=True, data_format=df)
        whole = x.ndim == nd + 2
        spatial = x.shape[-nd:] if df == "channels_first" else x.shape[-nd - 1 : -1]
        return unp(out, idx, 2, 2, 0, x.shape if whole else spatial, data_format=df)

    calls: list[tuple[str, Callable[..., Any]]] = [
        ("max", lambda x, df: mx(x, 3, 2, 1, 1, True, True, data_format=df)),
        ("max_same", lambda x, df: mx(x, 2, 1, "same", data_format=df)),
        ("avg", lambda x, df: av(x, 3, 2, 1, True, False, data_format=df)),
        ("avg_pairs", lambda x, df: av(x, 2, 1, ((1, 0),) * nd, data_format=df)),
        ("lp", lambda x, df: lp(x, 2, 2, 1, True, data_format=df)),
        ("adaptive_max", lambda x, df: amx(x, 3, True, data_format=df)),
        ("adaptive_avg", lambda x, df: aav(x, 3, data_format=df)),
        ("unpool", unpool),
        ("unpool_to", unpool_to),
        ("global_max", lambda x, df: ndpool.global_max_pool(x, data_format=df)),
        (
            "global_avg_keep",
            lambda x, df: ndpool.global_avg_pool(x, data_format=df, keepdims=True),
        ),
        ("global_lp", lambda x, df: ndpool.global_lp_pool(x, 3, data_format=df)),
        (
            "pool_min",
            lambda x, df: ndpool.pool(
                x, (2,) * nd, op="min", data_format=df, return_indices=True
            ),
        ),
    ]
    if nd > 1:
        fr = getattr(F, f"fractional_max_pool{nd}d")

        def frac(x: Any, df: str) -> Any:
            batched = x.ndim == nd + 2
            c = x.shape[1 if batched and df == "channels_first" else -1]
            if df == "channels_first" and not batched:
                c = x.shape[0]
            n = x.shape[0] if batched else 1
            u = np.linspace(0.1, 0.9, n * c * nd).reshape(n, c, nd).astype(x.dtype)
            size = (3, 3) if nd == 2 else (3, 3, 2)  # several windows per axis
            return fr(x, 2, size, None, True, u, data_format=df)

        calls.append(("fractional", frac))
    return calls


SHAPES = {1: (2, 3, 7), 2: (2, 3, 7, 6), 3: (2, 3, 5, 6, 4)}


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_channels_last_every_op(nd: int, batched: bool) -> None:
    shape = SHAPES[nd] if batched else SHAPES[nd][1:]
    x = _rand(shape)
    xl = _to_last(x, batched)
    for name, call in _torch_named_calls(nd):
        if name.startswith("global") and not batched:
            continue  # global pooling is (N, C, *spatial) / (N, *spatial, C) only
        first = call(x, "channels_first")
        last = call(xl, "channels_last")
        firsts = first if isinstance(first, tuple) else (first,)
        lasts = last if isinstance(last, tuple) else (last,)
        assert len(firsts) == len(lasts), name
        for a, b in zip(firsts, lasts, strict=True):
            if name.startswith("global") and not name.endswith("keep"):
                want = a  # (N, C) / (C,) either way
            else:
                want = np.moveaxis(a, 1 if batched else 0, -1)
            assert b.dtype == a.dtype, name
            np.testing.assert_array_equal(b, want, err_msg=name)


def test_channels_last_pool_generic() -> None:
    x = _rand((2, 5, 6, 3))
    got = ndpool.pool(x, (2, 3), op="avg", padding="same", data_format="channels_last")
    want = ndpool.pool(x, (2, 3), op="avg", padding="same", axes=(1, 2))
    np.testing.assert_array_equal(got, want)
    same = ndpool.pool(x, (2, 3), data_format="channels_first")
    np.testing.assert_array_equal(same, ndpool.pool(x, (2, 3)))
    with pytest.raises(ValueError, match="not both"):
        ndpool.pool(x, (2, 3), axes=(1, 2), data_format="channels_last")
    with pytest.raises(ValueError, match="data_format"):
        ndpool.pool(x, (2, 3), data_format="NHWC")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="data_format"):
        F.max_pool2d(x, 2, data_format="NHWC")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "bound"),
    [
        (lambda x, df: F.max_pool2d(x, 2, data_format=df), 0.9),
        (lambda x, df: F.max_pool2d(x, 2, return_indices=True, data_format=df), 1.5),
        (lambda x, df: F.avg_pool2d(x, 3, 2, data_format=df), 0.9),
        (lambda x, df: F.adaptive_avg_pool2d(x, 5, data_format=df), 0.9),
        (lambda x, df: ndpool.global_max_pool(x, data_format=df), 0.9),
    ],
)
def test_channels_last_pools_in_place(call: Callable[..., Any], bound: float) -> None:
    """No transpose copy: peak memory is the same in both layouts, and below
    input + output (the core pools the spatial axes in place)."""
    x = _rand((2, 64, 64, 16))  # channels_last, 1 MiB
    xf = np.ascontiguousarray(np.moveaxis(x, -1, 1))
    peaks = []
    for arr, df in ((xf, "channels_first"), (x, "channels_last")):
        tracemalloc.start()
        try:
            call(arr, df)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[1] < bound * x.nbytes
    assert peaks[1] <= 1.1 * peaks[0] + 64 * 1024


@given(data=st.data())
def test_channels_last_hypothesis(data: st.DataObject) -> None:
    nd = data.draw(st.integers(1, 3), label="nd")
    batched = data.draw(st.booleans(), label="batched")
    spatial = data.draw(st.tuples(*[st.integers(2, 5)] * nd), label="spatial")
    c = data.draw(st.integers(1, 3), label="C")
    shape = ((2,) if batched else ()) + (c, *spatial)
    x = _rand(shape, nan=data.draw(st.sampled_from([0.0, 0.3])))
    policy = data.draw(st.sampled_from(["propagate", "omit"]), label="nan_policy")
    k = data.draw(st.integers(1, 2), label="k")
    padding = data.draw(st.sampled_from([0, "same", "valid", ((k - 1, 0),) * nd]))
    op = data.draw(st.sampled_from(["max", "avg", "lp", "adaptive_avg"]), label="op")

    def call(arr: Any, df: str) -> Any:
        if op == "max":
            fn = getattr(F, f"max_pool{nd}d")
            return fn(
                arr,
                k,
                1,
                padding,
                return_indices=True,
                data_format=df,
                nan_policy=policy,
            )
        if op == "avg":
            fn = getattr(F, f"avg_pool{nd}d")
            return fn(arr, k, 1, padding, data_format=df, nan_policy=policy)
        if op == "lp":
            fn = getattr(F, f"lp_pool{nd}d")
            return fn(arr, 2, k, 1, data_format=df, nan_policy=policy)
        fn = getattr(F, f"adaptive_avg_pool{nd}d")
        return fn(arr, 2, data_format=df, nan_policy=policy)

    first = call(x, "channels_first")
    last = call(_to_last(x, batched), "channels_last")
    for a, b in zip(
        first if isinstance(first, tuple) else (first,),
        last if isinstance(last, tuple) else (last,),
        strict=True,
    ):
        np.testing.assert_array_equal(b, np.moveaxis(a, 1 if batched else 0, -1))


# --------------------------------------------------------------------------
# nan_policy="omit"


def _nan_input(shape: tuple[int, ...]) -> Any:
    """NaN-sprinkled data with one all-NaN block, so some windows are all NaN."""
    x = _rand(shape, nan=0.3)
    x[..., :3, :3] = np.nan
    return x


def _check_indices_real(x: Any, values: Any, idx: Any, axes: tuple[int, ...]) -> None:
    """Indices point at the returned value, a real one unless it is NaN."""
    batch = [a for a in range(x.ndim) if a not in axes]
    order = batch + sorted(axes)
    xt = np.transpose(x, order).reshape(*[x.shape[a] for a in batch], -1)
    vt = np.transpose(values, order).reshape(*[values.shape[a] for a in batch], -1)
    it = np.transpose(idx, order).reshape(*[idx.shape[a] for a in batch], -1)
    picked = np.take_along_axis(xt, it, axis=-1)
    real = ~np.isnan(vt)
    np.testing.assert_array_equal(picked[real], vt[real])


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "padding", [0, 1, "same", "same_lower", ((1, 0), (2, 1))], ids=repr
)
def test_nan_omit_pool(op: str, padding: Any) -> None:
    x = _nan_input((2, 6, 7))
    for ceil in (False, True):
        _check_pool(
            x,
            (3, 3),
            stride=(2, 2),
            padding=padding,
            ceil_mode=ceil,
            op=op,
            nan_policy="omit",
            norm_type=2.0,
            count_include_pad=False,
        )
    if op in ("max", "min"):
        values, idx = ndpool.pool(
            x, (3, 3), op=op, return_indices=True, nan_policy="omit", padding=padding
        )
        _check_indices_real(x, values, idx, (1, 2))
        assert np.isnan(values[:, 0, 0]).all()  # the all-NaN corner
    if op == "avg":
        out = ndpool.pool(x, 3, op="avg", padding="same", nan_policy="omit", axes=1)
        assert np.isnan(out).any()
        assert not np.isnan(out).all()


def test_nan_omit_matches_numpy() -> None:
    """Non-overlapping windows: omit == np.nanmax / np.nanmin / np.nanmean."""
    x = _nan_input((3, 6, 8))
    blocks = x.reshape(3, 3, 2, 4, 2)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        for op, fn in (("max", np.nanmax), ("min", np.nanmin), ("avg", np.nanmean)):
            got = ndpool.pool(x, (2, 2), op=op, nan_policy="omit")  # type: ignore[arg-type]
            np.testing.assert_allclose(got, fn(blocks, axis=(2, 4)), rtol=1e-12)


def test_nan_propagate_is_default() -> None:
    x = np.array([[1.0, np.nan, 3.0, 2.0]])
    np.testing.assert_array_equal(ndpool.pool(x, 2), [[np.nan, 3.0]])
    np.testing.assert_array_equal(ndpool.pool(x, 2, op="avg"), [[np.nan, 2.5]])
    np.testing.assert_array_equal(ndpool.pool(x, 2, nan_policy="omit"), [[1.0, 3.0]])
    with pytest.raises(ValueError, match="nan_policy"):
        ndpool.pool(x, 2, nan_policy="raise")  # type: ignore[call-overload]


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_nan_omit_torch_named(nd: int) -> None:
    x = _nan_input(SHAPES[nd][:2] + (5,) * nd)
    axes = tuple(range(2, 2 + nd))
    pads = [(1, 1)] * nd
    kw = {"stride": (2,) * nd, "pads": pads, "nan_policy": "omit"}
    got, idx = getattr(F, f"max_pool{nd}d")(
        x, 3, 2, 1, return_indices=True, nan_policy="omit"
    )
    want, want_idx = ref_pool(x, (3,) * nd, op="max", **kw)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(idx, want_idx)
    _check_indices_real(x, got, idx, axes)
    for cip in (True, False):
        got = getattr(F, f"avg_pool{nd}d")(x, 3, 2, 1, False, cip, nan_policy="omit")
        want, _ = ref_pool(x, (3,) * nd, op="avg", count_include_pad=cip, **kw)
        np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    # lp_pool: NaN cells drop out of the sum (as np.nansum)
    got = getattr(F, f"lp_pool{nd}d")(np.abs(x), 2, 2, nan_policy="omit")
    want, _ = ref_pool(np.abs(x), (2,) * nd, op="lp", norm_type=2.0, nan_policy="omit")
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    # adaptive max / avg
    wins = [adaptive_windows(5, 3)] * nd
    got, idx = getattr(F, f"adaptive_max_pool{nd}d")(x, 3, True, nan_policy="omit")
    want, want_idx = reduce_windows(x, axes, wins, op="max", nan_policy="omit")
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(idx, want_idx)
    _check_indices_real(x, got, idx, axes)
    got = getattr(F, f"adaptive_avg_pool{nd}d")(x, 3, nan_policy="omit")
    want, _ = reduce_windows(x, axes, wins, op="avg", nan_policy="omit")
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize("channels", [3, 9])  # 9: channels-last sums in place
@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pools(data_format: str, keepdims: bool, channels: int) -> None:
    x = _rand((2, channels, 4, 5), nan=0.2)
    x[1, 2] = np.nan  # one all-NaN plane
    axes = (2, 3)
    if data_format == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        axes = (1, 2)
    clean = np.where(np.isnan(x), 0.0, x)
    count = (~np.isnan(x)).sum(axis=axes, keepdims=keepdims)
    empty = count == 0
    nan = np.float64(np.nan)
    expect = {
        ("max", "propagate"): np.max(x, axis=axes, keepdims=keepdims),
        ("avg", "propagate"): np.mean(x, axis=axes, keepdims=keepdims),
        ("lp", "propagate"): np.sqrt(np.sum(x**2, axis=axes, keepdims=keepdims)),
        ("max", "omit"): np.where(
            empty,
            nan,
            np.max(np.where(np.isnan(x), -np.inf, x), axis=axes, keepdims=keepdims),
        ),
        ("avg", "omit"): np.where(
            empty, nan, clean.sum(axis=axes, keepdims=keepdims) / np.maximum(count, 1)
        ),
        ("lp", "omit"): np.where(
            empty, nan, np.sqrt((clean**2).sum(axis=axes, keepdims=keepdims))
        ),
    }
    fns = {
        "max": ndpool.global_max_pool,
        "avg": ndpool.global_avg_pool,
        "lp": ndpool.global_lp_pool,
    }
    for (op, policy), want in expect.items():
        got = fns[op](x, data_format=data_format, keepdims=keepdims, nan_policy=policy)  # type: ignore[operator]
        assert got.shape == want.shape, (op, policy)
        assert got.dtype == x.dtype
        np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize(
    "dtype", [np.float16, np.float32, np.float64, np.uint8, np.int64, np.bool_]
)
def test_channels_last_global_sums_in_place(
    dtype: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planes followed by 8 channels or more (N, H, W, C) are summed in
    place, in another order than channels first: the same results within
    SPEC's tolerances (sums of these small integers are exact)."""
    from ndpool import _core

    in_place: list[int] = []
    original = _core._channel_sums
    monkeypatch.setattr(
        _core, "_channel_sums", lambda *a: in_place.append(1) or original(*a)
    )
    x = RNG.integers(0, 2 if dtype is np.bool_ else 100, (3, 5, 7, 11)).astype(dtype)
    first = np.ascontiguousarray(np.moveaxis(x, -1, 1))
    rtol = 1e-3 if x.dtype == np.float16 else 1e-6
    want = x.astype(np.float64).mean(axis=(1, 2))
    for got in (
        ndpool.global_avg_pool(x, data_format="channels_last"),
        ndpool.global_avg_pool(first),
        F.adaptive_avg_pool2d(x, 1, data_format="channels_last")[:, 0, 0],
    ):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)
    total = ndpool.pool(x, (5, 7), axes=(1, 2), op="sum")[:, 0, 0]
    exact = x.astype(np.float64).sum(axis=(1, 2))
    np.testing.assert_array_equal(total, exact.astype(total.dtype))
    assert len(in_place) == 3  # not the channels-first call


def test_global_pool_shapes() -> None:
    x = np.arange(2 * 3 * 4 * 5 * 6, dtype=np.float32).reshape(2, 3, 4, 5, 6)
    assert ndpool.global_avg_pool(x).shape == (2, 3)
    assert ndpool.global_avg_pool(x, keepdims=True).shape == (2, 3, 1, 1, 1)
    last = ndpool.global_max_pool(x, data_format="channels_last", keepdims=True)
    assert last.shape == (2, 1, 1, 1, 6)
    np.testing.assert_array_equal(last.reshape(2, 6), x.max(axis=(1, 2, 3)))
    assert ndpool.global_lp_pool(np.ones((1, 2, 4)), 1.0).tolist() == [[4.0, 4.0]]


# --------------------------------------------------------------------------
# op="min" / op="sum"


@pytest.mark.parametrize("op", ["min", "sum"])
@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.uint8, np.bool_])
def test_min_sum_grid(op: str, dtype: Any) -> None:
    x = _rand((2, 6, 5), dtype)
    for (k, s, d), padding, ceil in itertools.product(
        [((2, 2), (1, 1), (1, 1)), ((3, 2), (2, 3), (1, 2)), ((1, 3), (1, 2), (1, 1))],
        [0, "same", "same_lower", "pairs"],
        [False, True],
    ):
        if padding == "pairs":
            padding = ((0, d[0] * (k[0] - 1)), (d[1] * (k[1] - 1), 0))
        _check_pool(x, k, stride=s, dilation=d, padding=padding, ceil_mode=ceil, op=op)


def test_min_sum_simple() -> None:
    x = np.array([[4, 1, 3], [2, 5, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(ndpool.pool(x, (2, 2), stride=1, op="min"), [[1, 0]])
    total = ndpool.pool(x, (2, 2), stride=1, op="sum")
    assert total.dtype == np.uint64
    np.testing.assert_array_equal(total, [[12, 9]])
    s = ndpool.pool(x.astype(np.int32), 3, axes=1, op="sum")
    assert s.dtype == np.int64
    np.testing.assert_array_equal(s, [[8], [7]])


# --------------------------------------------------------------------------
# integer and bool inputs, dtype=, refused dtypes


@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("op", OPS)
def test_integer_inputs(dtype: Any, op: str) -> None:
    x = _rand((2, 5, 6), dtype)
    for padding, cip in ((0, True), (1, True), (1, False), ("same", True)):
        _check_pool(
            x,
            (3, 2),
            stride=(2, 1),
            padding=padding,
            op=op,
            count_include_pad=cip,
            norm_type=3.0,
        )
    out = ndpool.pool(x, (2, 2), op=op, norm_type=2.0)  # type: ignore[arg-type]
    want = {
        "max": x.dtype,
        "min": x.dtype,
        "avg": np.float64,
        "lp": np.float64,
        "sum": np.uint64 if x.dtype.kind == "u" else np.int64,
    }[op]
    assert out.dtype == want


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
def test_integer_average_does_not_overflow(dtype: Any) -> None:
    top = np.iinfo(dtype).max
    x = np.full((1, 2, 8, 8), top, dtype=dtype)
    for out in (
        F.avg_pool2d(x, 4),
        F.avg_pool2d(x, 3, 1, padding="same"),
        F.adaptive_avg_pool2d(x, 3),
        ndpool.global_avg_pool(x),
        ndpool.pool(x, (4, 4), op="avg"),
    ):
        assert out.dtype == np.float64
        np.testing.assert_array_equal(out, np.full(out.shape, float(top)))
    lp = F.lp_pool2d(x, 2, 2)
    assert lp.dtype == np.float64
    np.testing.assert_allclose(lp, 2.0 * top, rtol=1e-12)
    total = ndpool.pool(x, (8, 8), op="sum")
    assert int(total.max()) == 64 * int(top)
    mx = F.max_pool2d(x, 2)
    assert mx.dtype == x.dtype
    mn = F.adaptive_max_pool2d(x, 3)
    assert mn.dtype == x.dtype


def test_bool_inputs() -> None:
    x = np.array([[[True, False, False, False], [False, False, True, True]]])
    np.testing.assert_array_equal(F.max_pool1d(x, 2), [[[True, False], [False, True]]])
    np.testing.assert_array_equal(
        ndpool.pool(x, 2, op="min"), [[[False, False], [False, True]]]
    )
    np.testing.assert_array_equal(F.avg_pool1d(x, 2), [[[0.5, 0.0], [0.0, 1.0]]])
    assert ndpool.pool(x, 2, op="sum").dtype == np.int64


def test_dtype_argument() -> None:
    x = np.array([[0, 1, 2, 3, 255, 254]], dtype=np.uint8)
    out = ndpool.pool(x, 2, op="avg", dtype=np.float32)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0.5, 2.5, 254.5]])
    out = ndpool.pool(x, 2, op="avg", dtype=np.uint8)  # rounds to nearest (even)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[0, 2, 254]])
    out = ndpool.pool(x, 3, op="sum", dtype=np.uint8)  # saturates, never wraps
    np.testing.assert_array_equal(out, [[3, 255]])
    out = ndpool.pool(x, 2, op="max", dtype=np.float64)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[1.0, 3.0, 255.0]])
    f16 = ndpool.pool(np.ones((1, 4), np.float16), 2, op="avg", dtype=np.float64)
    assert f16.dtype == np.float64
    img = np.full((1, 2, 3, 3), 255, dtype=np.uint8)
    img[0, 0, 0, 0] = 0
    np.testing.assert_array_equal(
        ndpool.global_avg_pool(img, dtype=np.uint8), [[227, 255]]
    )
    assert ndpool.global_avg_pool(img).dtype == np.float64
    assert ndpool.global_max_pool(img, dtype=np.float32).dtype == np.float32
    assert ndpool.global_lp_pool(img, 1.0, dtype=np.float32).dtype == np.float32


BAD_DTYPES = [np.complex64, np.complex128, object, "U3", "S2", "datetime64[s]"]


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=str)
@pytest.mark.parametrize(
    "call",
    [
        lambda x: ndpool.pool(x, 2),
        lambda x: ndpool.pool(x, 2, op="avg", axes=0),
        lambda x: F.max_pool2d(x, 2),
        lambda x: F.avg_pool2d(x, 2, data_format="channels_last"),
        lambda x: F.lp_pool2d(x, 2, 2),
        lambda x: F.adaptive_avg_pool2d(x, 1),
        lambda x: F.adaptive_max_pool2d(x, 1, nan_policy="omit"),
        lambda x: ndpool.global_avg_pool(x),
        lambda x: ndpool.global_max_pool(x, data_format="channels_last"),
    ],
)
def test_unsupported_dtypes(dtype: Any, call: Callable[..., Any]) -> None:
    x = np.zeros((1, 2, 4, 4), dtype=dtype)
    with pytest.raises(TypeError, match=re.escape(str(x.dtype))):
        call(x)


# --------------------------------------------------------------------------
# any axes, with every feature


AXES_CASES = [
    (0,),
    (-1, 0),
    (2, 0),
    (0, -2),
    (-1, -3, 0),
    (1, 3),
    (3, 2, 1, 0),
]


@pytest.mark.parametrize("axes", AXES_CASES, ids=str)
def test_any_axes_grid(axes: tuple[int, ...]) -> None:
    n = len(axes)
    kernel = (2, 3, 2, 1)[:n]
    stride = (1, 2, 2, 1)[:n]
    dil = (2, 1, 1, 1)[:n]
    pairs = ((1, 0), (0, 2), (1, 1), (0, 0))[:n]
    xf = _nan_input((4, 3, 5, 2))
    xi = _rand((4, 3, 5, 2), np.uint8)
    for padding in (0, "same", "same_lower", "valid", pairs):
        for op, x, policy, ceil in (
            ("max", xf, "omit", True),
            ("min", xf, "propagate", False),
            ("avg", xf, "omit", False),
            ("lp", np.abs(xf), "omit", True),
            ("sum", xi, "propagate", True),
            ("max", xi, "propagate", False),
            ("avg", xi, "propagate", True),
        ):
            if not _fits(xf.shape, axes, kernel, stride, dil, padding, ceil):
                continue
            _check_pool(
                x,
                kernel,
                axes=axes,
                stride=stride,
                dilation=dil,
                padding=padding,
                op=op,
                nan_policy=policy,
                ceil_mode=ceil,
                count_include_pad=False,
                norm_type=2.0,
            )


def test_axes_order_only_pairs_arguments() -> None:
    """Reordering axes together with per-axis arguments changes nothing."""
    x = _rand((3, 6, 5, 2))
    a = ndpool.pool(
        x, (3, 2), axes=(1, 2), stride=(2, 1), padding=((1, 0), (0, 1)), op="avg"
    )
    b = ndpool.pool(
        x, (2, 3), axes=(-2, -3), stride=(1, 2), padding=((0, 1), (1, 0)), op="avg"
    )
    np.testing.assert_array_equal(a, b)
    v1, i1 = ndpool.pool(x, (3, 2), axes=(1, 2), return_indices=True)
    v2, i2 = ndpool.pool(x, (2, 3), axes=(2, 1), return_indices=True)
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(i1, i2)  # flat over the axes in ascending order


@pytest.mark.parametrize("op", ["max", "min"])
def test_no_pooled_axis_with_indices(op: str) -> None:
    """``kernel_size=()`` pools no axis: the values come back as they are,
    and every index is 0, the one cell of a window over no axis (it raised
    an internal TypeError)."""
    x = _rand((2, 3))
    values, indices = ndpool.pool(x, (), op=op, return_indices=True)
    np.testing.assert_array_equal(values, x)
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices, np.zeros(x.shape, dtype=np.int64))


def test_axes_errors() -> None:
    x = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="out of range"):
        ndpool.pool(x, 2, axes=3)
    with pytest.raises(ValueError, match="repeat"):
        ndpool.pool(x, (2, 2), axes=(1, -2))
    with pytest.raises(ValueError, match="one per"):
        ndpool.pool(x, (2, 2), axes=(1,))


# --------------------------------------------------------------------------
# hypothesis: every feature on random shapes, axes and dtypes


@st.composite
def pool_cases(draw: st.DrawFn) -> dict[str, Any]:
    ndim = draw(st.integers(1, 4), label="ndim")
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim)))
    assume(math.prod(shape) <= 200)
    n = draw(st.integers(1, ndim), label="n pooled")
    axes = tuple(draw(st.permutations(range(ndim)))[:n])  # any order
    axes = tuple(a - ndim if draw(st.booleans()) else a for a in axes)  # negatives
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
    ceil_mode = draw(st.booleans())
    if not isinstance(padding, str):
        pads = _resolve_pads(padding, shape, axes, kernel, stride, dilation)
        for a, k, s, d, (pb, pa) in zip(
            axes, kernel, stride, dilation, pads, strict=True
        ):
            assume(out_length(shape[a], k, s, d, pb, pa, ceil_mode) >= 1)
    elif padding == "valid":
        for a, k, d in zip(axes, kernel, dilation, strict=True):
            assume(d * (k - 1) + 1 <= shape[a])
    op = draw(st.sampled_from(OPS), label="op")
    dtype = draw(
        st.sampled_from(
            [np.float64, np.float32, np.int32, np.uint8, np.uint16, np.bool_]
        )
    )
    policy = draw(st.sampled_from(["propagate", "omit"]), label="nan_policy")
    x = _rand(shape, dtype, nan=0.25 if np.dtype(dtype).kind == "f" else 0.0)
    if op == "lp":
        x = np.abs(x) if x.dtype.kind != "b" else x
    return {
        "x": x,
        "kernel": kernel,
        "axes": axes,
        "stride": stride,
        "dilation": dilation,
        "padding": padding,
        "ceil_mode": ceil_mode,
        "op": op,
        "count_include_pad": draw(st.booleans()),
        "norm_type": draw(st.sampled_from([1.0, 2.0, 3.0])),
        "nan_policy": policy,
    }


@given(case=pool_cases())
def test_pool_hypothesis(case: dict[str, Any]) -> None:
    x = case.pop("x")
    kernel = case.pop("kernel")
    _check_pool(x, kernel, **case)


@given(data=st.data())
def test_global_hypothesis(data: st.DataObject) -> None:
    nd = data.draw(st.integers(1, 3))
    shape = tuple(
        data.draw(st.lists(st.integers(1, 4), min_size=nd + 2, max_size=nd + 2))
    )
    dtype = data.draw(st.sampled_from([np.float64, np.int32, np.uint8]))
    x = _rand(shape, dtype)
    df = data.draw(st.sampled_from(["channels_first", "channels_last"]))
    keep = data.draw(st.booleans())
    axes = (
        tuple(range(2, nd + 2)) if df == "channels_first" else tuple(range(1, nd + 1))
    )
    got = ndpool.global_max_pool(x, data_format=df, keepdims=keep)
    np.testing.assert_array_equal(got, np.max(x, axis=axes, keepdims=keep))
    assert got.dtype == x.dtype
    got = ndpool.global_avg_pool(x, data_format=df, keepdims=keep)
    want = np.mean(x, axis=axes, keepdims=keep, dtype=np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_docs_examples() -> None:
    """docs/extensions.md's examples run and print what it says."""
    import doctest
    from pathlib import Path

    doc = Path(__file__).resolve().parents[1] / "docs" / "extensions.md"
    result = doctest.testfile(str(doc), module_relative=False, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize("p", [1.0, 2.0, math.inf])
def test_lp_of_a_window_with_no_cell_is_zero(p: float) -> None:
    """The true p-norm of a window wholly in padding is 0 for every p
    (NaN with nan_policy="omit", as an all-NaN window)."""
    x = np.array([[2.0, -3.0]])  # taps at -1 and 2: no cell inside
    kw: dict[str, Any] = {"op": "lp", "norm_type": p, "dilation": 3, "padding": 1}
    assert ndpool.pool(x, 2, stride=1, **kw).tolist() == [[0.0]]
    omitted = ndpool.pool(x, 2, stride=1, nan_policy="omit", **kw)
    assert np.isnan(omitted).all()
