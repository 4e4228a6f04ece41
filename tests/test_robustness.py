"""Absurd but well-typed arguments: a clear error or a fast answer, never a
hang or an out-of-memory kill."""

from __future__ import annotations

import time

import numpy as np
import pytest

import ndpool
import ndpool.functional as F


def test_huge_adaptive_output_is_refused_before_any_allocation() -> None:
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"output_size asks for an output of shape"):
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
