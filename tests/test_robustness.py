"""Absurd but well-typed arguments: a clear error or a fast answer, never a
hang or an out-of-memory kill."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import ndpool
import ndpool.functional as F
from reference import out_length, reduce_windows, regular_windows


def test_huge_adaptive_output_is_refused_before_any_allocation() -> None:
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"output_size: an output of shape"):
        F.adaptive_avg_pool2d(x, (10**9, 10**9))
    with pytest.raises(ValueError, match="memory"):
        F.adaptive_max_pool2d(x, 10**12, return_indices=True)


def test_huge_unpool_output_is_refused() -> None:
    x = np.zeros((1, 1, 4, 4), np.float32)
    idx = np.zeros((1, 1, 4, 4), np.int64)
    with pytest.raises(ValueError, match=r"max_unpool2d.*memory"):
        F.max_unpool2d(x, idx, 10**9)


@pytest.mark.parametrize("ratio", [float("inf"), float("nan"), (0.5, float("inf"))])
def test_non_finite_output_ratio(ratio: object) -> None:
    with pytest.raises(ValueError, match=r"output_ratio=.* must be finite"):
        F.fractional_max_pool2d(np.zeros((1, 1, 8, 8)), 2, output_ratio=ratio)


def test_huge_kernel_costs_only_its_real_cells() -> None:
    x = np.random.default_rng(0).random((2, 3, 4, 5)).astype(np.float32)
    start = time.perf_counter()
    out, idx = ndpool.pool(x, (10**9, 10**9), padding="same", return_indices=True)
    avg = ndpool.pool(x, (10**9, 10**9), padding="same", op="avg")
    assert time.perf_counter() - start < 30  # loops over the 4x5 real taps only
    np.testing.assert_array_equal(out[..., 0, 0], x.max(axis=(2, 3)))
    np.testing.assert_array_equal(idx[..., 0, 0], x.reshape(2, 3, -1).argmax(-1))
    np.testing.assert_allclose(avg[..., 0, 0], x.mean(axis=(2, 3)), rtol=1e-6)


def test_huge_kernel_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).random((2, 3, 7)).astype(np.float32)
    t = torch.from_numpy(x)
    for k, p, s in [(10001, 5000, None), (10001, 5000, 3), (20, 10, 7)]:
        got = F.max_pool1d(x, k, s, p, return_indices=True)
        want = torch.nn.functional.max_pool1d(t, k, s, p, return_indices=True)
        np.testing.assert_array_equal(got[0], want[0].numpy())
        np.testing.assert_array_equal(got[1], want[1].numpy())
        np.testing.assert_allclose(
            F.avg_pool1d(x, k, s, p),
            torch.nn.functional.avg_pool1d(t, k, s, p).numpy(),
            rtol=1e-6,
        )
    out, pull = ndpool.vjp(F.avg_pool1d, x, 10001, None, 5000)
    assert pull(np.ones_like(out)).shape == x.shape


def test_huge_kernel_on_dask_plans_in_output_memory() -> None:
    da = pytest.importorskip("dask.array")
    x = np.random.default_rng(2).random((2, 3, 9)).astype(np.float32)
    got = F.max_pool1d(da.from_array(x, chunks=(1, 3, 4)), 10**9, None, 5 * 10**8)
    np.testing.assert_array_equal(
        got.compute(), F.max_pool1d(x, 10**9, None, 5 * 10**8)
    )


def test_plans_with_too_many_taps_to_keep_pool_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A plan keeps its taps (``AxisPlan.spans``) only up to a bound; past
    it they are worked out on each use, with the same results."""
    from ndpool import _geometry

    rng = np.random.default_rng(3)
    x = rng.random((2, 3, 11, 9)).astype(np.float32)
    x[0, 1, 2, 3] = np.nan

    def results() -> list[np.ndarray]:
        _geometry._regular_axis.cache_clear()
        _geometry._adaptive_axis.cache_clear()
        return [
            *F.max_pool2d(x, 3, 2, 1, return_indices=True),
            ndpool.pool(x, (4, 3), op="avg", padding="same", nan_policy="omit"),
            F.avg_pool2d(x, 3, 1, 1, ceil_mode=True, count_include_pad=False),
            *F.adaptive_max_pool2d(x, (4, 5), return_indices=True),
            F.adaptive_avg_pool2d(x, (4, 5)),
        ]

    kept = results()
    monkeypatch.setattr(_geometry, "_SPANS_KEPT", 0)
    plan = _geometry._regular_axis(0, 11, 3, 2, 1, 1, 1, False)
    assert not isinstance(plan.spans(), tuple)  # a fresh generator each use
    for got, want in zip(results(), kept, strict=True):
        np.testing.assert_array_equal(got, want)


def test_far_apart_windows_of_a_huge_kernel_cost_only_their_cells() -> None:
    """Asymmetric padding with a huge kernel and a long stride: each window
    reads a few real cells, so the loops visit those taps, not the kernel."""
    x = np.arange(4.0).reshape(1, 4)
    k = 10**15
    start = time.perf_counter()
    pads = ((k - 1, k - 1),)
    out, idx = ndpool.pool(x, k, stride=k // 10, padding=pads, return_indices=True)
    avg = ndpool.pool(x, k, stride=k // 10, padding=pads, op="avg")
    _, pull = ndpool.vjp(ndpool.pool, x, k, stride=k // 10, padding=pads)
    grad = pull(np.ones_like(out))
    assert time.perf_counter() - start < 30
    # 11 windows: the first ends at cell 0, the last starts at cell 1, the
    # others cover the whole input
    np.testing.assert_array_equal(out, [[0.0] + [3.0] * 10])
    np.testing.assert_array_equal(idx, [[0] + [3] * 10])
    np.testing.assert_array_equal(avg, [[0.0] + [6 / k] * 10])
    np.testing.assert_array_equal(grad, [[1, 0, 0, 10]])
    # the summing pullback adds back through the same clipped views
    _, pull_sum = ndpool.vjp(ndpool.pool, x, k, stride=k // 10, padding=pads, op="sum")
    np.testing.assert_array_equal(pull_sum(np.ones_like(out)), [[10, 10, 10, 10]])


@settings(deadline=None)
@given(
    length=st.integers(1, 6),
    k=st.integers(20, 300),
    s=st.integers(1, 120),
    d=st.integers(1, 3),
    pads=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
    op=st.sampled_from(["max", "avg", "lp"]),
)
def test_sparse_live_taps_match_the_naive_loop(
    length: int, k: int, s: int, d: int, pads: tuple[int, int], op: str
) -> None:
    span = d * (k - 1) + 1
    pb, pa = (p % span for p in pads)
    assume(out_length(length, k, s, d, pb, pa, False) >= 1)
    x = np.random.default_rng(length * k + s).standard_normal((2, length))
    kwargs: dict[str, Any] = {"stride": s, "dilation": d, "padding": ((pb, pa),)}
    if op == "lp":
        kwargs["norm_type"] = 2.0
    windows = [regular_windows(length, k, s, d, pb, pa, False)]
    want, want_idx = reduce_windows(x, [1], windows, **_kwargs(op))
    if op == "max":
        got, idx = ndpool.pool(x, k, op=op, return_indices=True, **kwargs)
        np.testing.assert_array_equal(idx, want_idx)
    else:
        got = ndpool.pool(x, k, op=op, **kwargs)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def _kwargs(op: str) -> dict[str, Any]:
    return {"op": op, "norm_type": 2.0 if op == "lp" else None}


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: F.adaptive_max_pool1d(np.ones((0, 1, 4)), 10**12), "tables"),
        (lambda: F.adaptive_avg_pool2d(np.ones((1, 1, 4, 4)), (10**12, 0)), "tables"),
        (lambda: F.adaptive_max_pool1d(np.ones((1, 1, 4)), 10**11), "tables"),
        (
            lambda: ndpool.pool(
                np.ones((1, 4)), 10**12, stride=1, padding=((10**12 - 1, 10**12 - 1),)
            ),
            "the pooling arguments",
        ),
        # the values are wider than the input (float64 of uint8 or int64 of
        # bool), or come with int64 indices: 74.5 GiB where 9.3 GiB fit
        *(
            (
                lambda x=x, op=op, extra=extra: ndpool.pool(
                    x,
                    (10**5,) * 2,
                    stride=1,
                    padding=((10**5 - 1, 10**5 - 1),) * 2,
                    op=op,
                    **extra,
                ),
                "the pooling arguments",
            )
            for x, op, extra in [
                (np.ones((1, 1), np.uint8), "avg", {}),
                (np.ones((1, 1), np.bool_), "sum", {}),
                (np.ones((1, 1), np.uint8), "max", {"return_indices": True}),
                (np.ones((1, 1), np.uint8), "max", {"dtype": np.float64}),
            ]
        ),
        (
            lambda: F.adaptive_avg_pool2d(np.ones((1, 1, 1), np.uint8), (10**5, 10**5)),
            "output",
        ),
    ],
)
def test_outputs_and_tables_beyond_memory_are_refused(call: Any, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        call()


@pytest.mark.parametrize(
    ("op", "want"),
    [("max", 1.0), ("avg", 1e-5), ("sum", 2e5), ("lp", math.sqrt(2e5))],
)
def test_no_pass_is_larger_than_the_input_or_the_output(op: str, want: float) -> None:
    """An axis pooled to more cells than it has goes last
    (``_core.pass_order``): 10**5 padded windows beside a 200,000-cell axis
    summed whole would be a 160 GB intermediate the other way round; the
    whole axis goes first and input, intermediate and output stay small."""
    k, n = 10**5, 200_000
    x = np.ones((n, 1))
    kw: dict[str, Any] = {"stride": 1, "padding": ((0, 0), (k - 1, k - 1))}
    got = ndpool.pool(x, (n, k), op=op, norm_type=2.0 if op == "lp" else None, **kw)
    np.testing.assert_allclose(got, np.full((1, k), want), rtol=1e-12)


def test_adaptive_upsampling_beside_a_shrinking_axis() -> None:
    """An axis pooled to 80,000 cells out of 1, beside one of 80,001 cells
    pooled to 2: shrinking the long axis first keeps the intermediate at
    two columns (the other way round it is 6.4 billion cells)."""
    x = np.random.default_rng(0).random((1, 1, 1, 80_001)).astype(np.float32)
    torch = pytest.importorskip("torch")
    tx = torch.from_numpy(x)
    got = F.adaptive_avg_pool2d(x, (80_000, 2))
    want = torch.nn.functional.adaptive_avg_pool2d(tx, (80_000, 2)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    got = F.adaptive_max_pool2d(x, (80_000, 2))
    want = torch.nn.functional.adaptive_max_pool2d(tx, (80_000, 2)).numpy()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("op", ["max", "avg", "lp"])
@pytest.mark.parametrize("return_indices", [False, True])
def test_no_output_cell_costs_nothing(op: str, return_indices: bool) -> None:
    """An empty batch beside an axis of 10**12 windows: nothing to pool, so
    neither the taps are looped over nor the divisors worked out (each of
    them would take hours or terabytes); the dtypes are the usual ones."""
    if op != "max" and return_indices:
        return
    k = 10**12
    kw: dict[str, Any] = {"stride": 1, "padding": ((k - 1, k - 1),), "op": op}
    if op == "lp":
        kw["norm_type"] = 2.0
    got = ndpool.pool(np.ones((0, 4), np.int16), k, return_indices=return_indices, **kw)
    want = ndpool.pool(np.ones((1, 4), np.int16), 2, **kw | {"padding": 0})
    values = got[0] if return_indices else got
    assert values.shape == (0, k + 3)
    assert values.dtype == want.dtype
    if return_indices:
        assert got[1].dtype == np.int64


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"stride": 2**63}, r"stride=9223372036854775808 is out of range"),
        ({"dilation": 2**63}, r"dilation=.* is out of range"),
        ({"padding": ((2**63, 0),)}, r"padding=.* is out of range"),
        ({"kernel_size": 2**59, "dilation": 4, "padding": "same"}, r"spans .* 2\*\*60"),
    ],
)
def test_int64_overflowing_arguments_are_value_errors(
    kwargs: dict[str, Any], pattern: str
) -> None:
    kwargs.setdefault("kernel_size", 2)
    with pytest.raises(ValueError, match=pattern):
        ndpool.pool(np.ones((1, 8)), **kwargs)
    with pytest.raises(ValueError, match=r"kernel_size=.* out of range"):
        F.avg_pool1d(np.ones((1, 1, 4)), np.uint64(2**64 - 1))


def test_indices_of_a_window_past_int64_ranks_are_refused() -> None:
    x = np.random.default_rng(5).random((1, 2, 5, 5))
    k, p = (10**10,) * 2, (5 * 10**9,) * 2
    assert F.max_pool2d(x, k, 1, p).shape == (1, 2, 6, 6)  # values only: fine
    with pytest.raises(ValueError, match=r"2\*\*63.*return_indices=True"):
        F.max_pool2d(x, k, 1, p, return_indices=True)
    # the gradient routes by indices: the error says so (none were asked for)
    with pytest.raises(ValueError, match=r"2\*\*63.*gradient of max"):
        ndpool.vjp(F.max_pool2d, x, k, 1, p)


@pytest.mark.parametrize("dtype", [">f4", ">f8", ">i8", ">u2", "<f4"])
@pytest.mark.parametrize("op", ["max", "min", "avg", "sum", "lp"])
def test_any_byte_order_pools_as_native(dtype: str, op: str) -> None:
    native = np.random.default_rng(6).integers(0, 100, (2, 3, 6, 5))
    native = native.astype(np.dtype(dtype).newbyteorder("="))
    swapped = native.astype(dtype)
    kw: dict[str, Any] = {"op": op, "norm_type": 2.0 if op == "lp" else None}
    want = ndpool.pool(native, 3, padding="same", **kw)
    got = ndpool.pool(swapped, 3, padding="same", **kw)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == want.dtype
    assert got.dtype.isnative
    got_nan = ndpool.pool(swapped, 2, nan_policy="omit", **kw)
    np.testing.assert_array_equal(
        got_nan, ndpool.pool(native, 2, nan_policy="omit", **kw)
    )
    np.testing.assert_array_equal(
        ndpool.global_max_pool(swapped), ndpool.global_max_pool(native)
    )
    if np.dtype(dtype).kind == "f":
        samples = np.full((2, 3, 2), 0.5, native.dtype)
        np.testing.assert_array_equal(
            F.fractional_max_pool2d(swapped, 2, 3, _random_samples=samples),
            F.fractional_max_pool2d(native, 2, 3, _random_samples=samples),
        )


@pytest.mark.parametrize("lazy", [False, True])
def test_big_endian_indices_and_samples_are_native(lazy: bool) -> None:
    """Indices and random samples in any byte order are taken as their
    values, as the input is (they were refused: "must have dtype int64,
    got >i8")."""
    x = np.random.default_rng(7).random((2, 3, 6, 6))
    values, idx = F.max_pool2d(x, 2, return_indices=True)
    samples = np.full((2, 3, 2), 0.5)
    want_unpool = F.max_unpool2d(values, idx, 2)
    want_frac = F.fractional_max_pool2d(x, 2, 3, _random_samples=samples)
    if lazy:
        da = pytest.importorskip("dask.array")
        wrap: Any = da.from_array
    else:
        wrap = np.asarray
    got_unpool = F.max_unpool2d(wrap(values), wrap(idx.astype(">i8")), 2)
    got_frac = F.fractional_max_pool2d(
        wrap(x.astype(">f8")), 2, 3, _random_samples=wrap(samples.astype(">f8"))
    )
    np.testing.assert_array_equal(np.asarray(got_unpool), want_unpool)
    np.testing.assert_array_equal(np.asarray(got_frac), want_frac)


@pytest.mark.parametrize(
    ("x", "dtype", "want"),
    [
        (np.array([[2**63 - 1, 2**63 - 1]]), np.int64, 2**63 - 1),  # avg
        (np.array([[1e30, 1.0]]), np.int64, 2**63 - 1),
        (np.array([[-1e30, -1.0]]), np.int64, -(2**63)),
        (np.array([[1e30, 1.0]]), np.uint64, 2**64 - 1),
        (np.array([[-1e30, -1.0]]), np.uint64, 0),
        (np.array([[2**64 - 1] * 2], np.uint64), np.uint64, 2**64 - 1),
        (np.array([[6e9, 1.0]], np.float32), np.int32, 2**31 - 1),
        (np.array([[np.nan, 1.0]]), np.int64, 0),
    ],
)
def test_integer_dtype_saturates_at_every_limit(x: Any, dtype: Any, want: int) -> None:
    got = ndpool.pool(x, 2, op="avg", dtype=dtype)
    assert got.dtype == dtype
    assert int(got[0, 0]) == want


def test_masked_arrays() -> None:
    data = np.array([[1.0, 9.0, 3.0, 4.0]])
    unmasked = np.ma.masked_array(data)
    np.testing.assert_array_equal(F.max_pool1d(unmasked, 2), [[9.0, 4.0]])
    masked = np.ma.masked_array(data, mask=[[0, 1, 0, 0]])
    with pytest.raises(TypeError, match=r"masked.*filled\(np\.nan\).*omit"):
        F.max_pool1d(masked, 2)
    np.testing.assert_array_equal(
        ndpool.pool(masked.filled(np.nan), 2, nan_policy="omit"), [[1.0, 4.0]]
    )


def test_masks_are_refused_wherever_they_come() -> None:
    """A Dask array of masked chunks (its masks unseen until computed),
    and masked indices, gradients and random samples: each a TypeError
    naming it, never a silently unmasked value."""
    da = pytest.importorskip("dask.array")
    x = np.array([[[1.0, 9.0, 3.0, 4.0, 2.0, 8.0]]])
    mask = np.array([[[0, 1, 0, 0, 0, 0]]], dtype=bool)
    lazy = da.from_array(np.ma.masked_array(x, mask=mask), chunks=2)
    for call in (F.max_pool1d, F.avg_pool1d, ndpool.global_max_pool):
        with pytest.raises(TypeError, match=r"Dask array of masked.*map_blocks"):
            call(lazy, *([2] if call is not ndpool.global_max_pool else []))
    filled = lazy.map_blocks(np.ma.filled, np.nan)
    got = F.max_pool1d(filled, 2, nan_policy="omit").compute()
    np.testing.assert_array_equal(got, [[[1.0, 4.0, 8.0]]])
    idx = np.ma.masked_array(np.array([[[0, 3]]]), mask=[[[0, 1]]])
    with pytest.raises(TypeError, match="max_unpool1d: indices is a masked array"):
        F.max_unpool1d(x[..., :2], idx, 2)
    g = np.ma.masked_array(np.ones((1, 1, 3)), mask=[[[1, 0, 0]]])
    for source in (x, da.from_array(x, chunks=2)):  # the Dask pullback too
        _, pullback = ndpool.vjp(F.max_pool1d, source, 2)
        with pytest.raises(TypeError, match="grad_out is a masked array"):
            pullback(g)
        with pytest.raises(TypeError, match="grad_out is a Dask array of masked"):
            pullback(da.from_array(g, chunks=2, asarray=False))
    samples = np.ma.masked_array(np.full((1, 1, 2), 0.5), mask=[[[1, 0]]])
    with pytest.raises(TypeError, match="_random_samples is a masked array"):
        F.fractional_max_pool2d(x[None], 1, output_size=1, _random_samples=samples)


@settings(deadline=None)
@given(
    e=st.integers(-1000, 1000),
    p=st.sampled_from([0.5, 1.0, 2.0, 3.0, 20.0, 200.0, -1.0, -2.0, -30.0]),
    nan=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_p_norm_is_exact_at_any_scale(e: int, p: float, nan: bool, seed: int) -> None:
    """||2**e x|| = 2**e ||x||: the sums of |x|**p that overflow or underflow
    are redone rescaled by each window's largest (p < 0: smallest) |x|."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 2.0, (2, 3, 7, 6)) * rng.choice([-1, 1], (2, 3, 7, 6))
    if nan:
        x[rng.random(x.shape) < 0.2] = np.nan
    kw: dict[str, Any] = {"op": "lp", "norm_type": p, "padding": "same"}
    kw["nan_policy"] = "omit" if nan else "propagate"
    want = ndpool.pool(x, 3, **kw) * 2.0**e
    got = ndpool.pool(x * 2.0**e, 3, **kw)
    np.testing.assert_allclose(got, want, rtol=1e-13, equal_nan=True)


def test_p_norm_of_integers_with_a_huge_p() -> None:
    img = np.full((1, 4, 4), 77, np.uint8)
    got = ndpool.pool(img, (2, 2), op="lp", norm_type=200)
    np.testing.assert_allclose(got, 77 * 4 ** (1 / 200), rtol=1e-15)
    got = ndpool.pool(img.astype(np.float32) * 13, (2, 2), op="lp", norm_type=20)
    np.testing.assert_allclose(got, 1001 * 4 ** (1 / 20), rtol=1e-6)
    assert got.dtype == np.float32


@pytest.mark.parametrize("op", ["sum", "avg", "lp", "max"])
def test_gradient_of_a_huge_kernel_costs_only_its_real_cells(op: str) -> None:
    """The pullback's padded buffers hold only what the live taps read
    (``AxisPlan.lo``/``hi``), not the kernel's padding (426 PiB here)."""
    x = np.random.default_rng(7).random((2, 3, 4, 5)) + 0.5
    kw: dict[str, Any] = {"op": op, "padding": "same", "stride": 1}
    if op == "lp":
        kw["norm_type"] = 2.0
    out, pull = ndpool.vjp(ndpool.pool, x, (10**8, 10**8), **kw)
    assert out.shape == x.shape
    grad = pull(np.ones_like(out))
    # every one of the 4x5 windows covers every cell
    if op == "sum":
        np.testing.assert_array_equal(grad, np.full(x.shape, 20.0))
    elif op == "avg":
        np.testing.assert_allclose(grad, np.full(x.shape, 1.0))
    elif op == "lp":
        norm = np.sqrt((x**2).sum(axis=(2, 3), keepdims=True))
        np.testing.assert_allclose(grad, 20 * x / norm)
    else:
        want = (x == x.max(axis=(2, 3), keepdims=True)) * 20.0
        np.testing.assert_array_equal(grad, want)


def test_array_api_huge_kernel_costs_its_real_cells() -> None:
    """The Array-API path clips its taps as the core does: windows far
    apart in a 10**15 kernel (a padded copy would be 2 * 10**15 cells)."""
    torch = pytest.importorskip("torch")
    x = torch.arange(4.0).reshape(1, 4)
    k = 10**15
    pads = ((k - 1, k - 1),)
    got = ndpool.pool(x, k, stride=k // 10, padding=pads)
    want = ndpool.pool(x.numpy(), k, stride=k // 10, padding=pads)
    np.testing.assert_array_equal(got.numpy(), want)
    # "same" padding pads only what the live taps read: it works
    got = ndpool.pool(x, 10**9, stride=1, padding="same", op="avg")
    np.testing.assert_array_equal(got.numpy(), [[1.5, 1.5, 1.5, 1.5]])


@settings(deadline=None)
@given(
    e=st.sampled_from([-1000, -300, 0, 300, 1000]),
    p=st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0, 20.0, 200.0, -2.0]),
    nan=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_p_norm_gradient_at_any_scale(e: int, p: float, nan: bool, seed: int) -> None:
    """The norm is 1-homogeneous, so its gradient at 2**e x is the one at x:
    where the factored powers leave the float range, the pullback goes pair
    by pair (cell, window) with ratios of at most 1."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 2.0, (2, 3, 7, 6)) * rng.choice([-1, 1], (2, 3, 7, 6))
    if nan:
        x[rng.random(x.shape) < 0.2] = np.nan
    kw: dict[str, Any] = {"op": "lp", "norm_type": p, "padding": "same", "stride": 2}
    kw["nan_policy"] = "omit" if nan else "propagate"
    out, pull = ndpool.vjp(ndpool.pool, x, 3, **kw)
    g = rng.standard_normal(out.shape)
    _, pull_scaled = ndpool.vjp(ndpool.pool, x * 2.0**e, 3, **kw)
    np.testing.assert_allclose(pull_scaled(g), pull(g), rtol=1e-9, atol=1e-12)


def test_sums_of_in_range_extremes_fit_int64() -> None:
    """Padding, kernel and length each within 2**60: their sums (padded
    counts) stay in int64 (at 2**62 each, the count wrapped to 0 and the
    average divided by it)."""
    k, p = 2**60, 2**60 - 1
    x = np.ones((1, 4))
    got = ndpool.pool(x, k, stride=2**59, padding=((p, p),), op="avg")
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got[0, 0], 1 / k)


def test_p_norm_minus_inf_is_refused_with_the_min_pool_hint() -> None:
    with pytest.raises(ValueError, match=r"norm_type=-inf.*op='min'"):
        ndpool.pool(np.ones((1, 4)), 2, op="lp", norm_type=-np.inf)
    with pytest.raises(ValueError, match=r"norm_type=-inf"):
        ndpool.global_lp_pool(np.ones((1, 1, 4)), -np.inf)


def test_p_norm_with_subnormal_terms_is_exact() -> None:
    """Every float32 |x|**2 subnormal, their sum normal: summed rescaled."""
    x = np.full((1, 200_000), 3e-22, dtype=np.float32)
    got = ndpool.pool(x, 200_000, op="lp", norm_type=2.0)
    want = float(np.float32(3e-22)) * np.sqrt(200_000)
    np.testing.assert_allclose(got[0, 0], want, rtol=1e-6)


def test_lazy_dask_output_larger_than_memory_is_planned() -> None:
    """The output-size guard is where a NumPy output is allocated: a lazy
    Dask result larger than memory is fine (SPEC: larger than memory)."""
    da = pytest.importorskip("dask.array")
    x = da.zeros((4, 3, 60000, 60000), dtype=np.float32, chunks=(1, 1, 4096, 4096))
    assert F.max_pool2d(x, 3, 1, 1).shape == (4, 3, 60000, 60000)


@pytest.mark.parametrize("policy", ["propagate", "omit"])
def test_window_counts_past_int64_are_not_wrapped(policy: str) -> None:
    """Two axes of 4e9-cell padded windows: 1.6e19 cells, past int64 (the
    divisor wrapped negative and the gradient of ones came out negative)."""
    x = np.ones((1, 1, 3, 3))
    k, p = 4 * 10**9, 2 * 10**9
    kw: dict[str, Any] = {"op": "avg", "stride": 1, "padding": p, "nan_policy": policy}
    out, pull = ndpool.vjp(ndpool.pool, x, (k, k), **kw)
    want = 9 / k**2  # count_include_pad: the padded cells count
    np.testing.assert_allclose(out[0, 0, 0, 0], want, rtol=1e-12)
    if policy == "propagate":
        np.testing.assert_allclose(pull(np.ones_like(out)), 16 / k**2, rtol=1e-12)


@pytest.mark.parametrize(
    "call",
    [
        lambda x: ndpool.pool(x, 3, axes=(0, 1), op="max", return_indices=True),
        lambda x: ndpool.pool(x, 2, axes=(0, 1), op="lp", norm_type=2.0),
        lambda x: ndpool.pool(x, 3, axes=(0, 1), op="avg", padding="same"),
        lambda x: ndpool.vjp(ndpool.pool, x.astype(float), 2, axes=(0, 1))[1](
            np.ones((4, 4, 3))
        ),
    ],
)
def test_a_call_leaves_no_reference_cycle(call: Any) -> None:
    """Nothing a call allocates waits for the cyclic garbage collector: a
    generator closure calling itself kept float64 copies of the input alive
    (six calls on a large image held hundreds of MB)."""
    import gc

    x = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    call(x)  # caches fill on the first call
    enabled = gc.isenabled()
    gc.disable()
    try:
        gc.collect()
        call(x)
        assert gc.collect() == 0
    finally:
        if enabled:
            gc.enable()
