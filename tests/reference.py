"""Naive-loop references: slow, obviously right, independent of ndpool.

Every window is enumerated cell by cell, in row-major order over the pooled
axes taken in ascending order, and reduced with plain Python. These are the
oracle wherever PyTorch has no equivalent ("same" padding, nan_policy,
channels-last, N-d, min/sum, any axes, integer dtypes).

A window along one axis is a list of input positions (some may be outside
the input: padding) plus the number of its cells that count as "padded
input" for PyTorch's ``count_include_pad`` divisor.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

Window = tuple[list[int], int]  # (positions, cells inside the padded input)


def out_length(
    length: int, k: int, s: int, d: int, pb: int, pa: int, ceil_mode: bool
) -> int:
    """PyTorch's output length rule, written out with math.floor/ceil."""
    span = d * (k - 1) + 1
    frac = (length + pb + pa - span) / s
    out = (math.ceil(frac) if ceil_mode else math.floor(frac)) + 1
    if ceil_mode and (out - 1) * s >= length + pb:
        out -= 1
    return out


def regular_windows(
    length: int,
    k: int,
    s: int,
    d: int,
    pb: int,
    pa: int,
    ceil_mode: bool,
) -> list[Window]:
    out = out_length(length, k, s, d, pb, pa, ceil_mode)
    windows = []
    for i in range(out):
        pos = [i * s - pb + j * d for j in range(k)]
        padded = sum(1 for p in pos if -pb <= p < length + pa)
        windows.append((pos, padded))
    return windows


def same_pads(length: int, k: int, s: int, d: int, lower: bool) -> tuple[int, int]:
    """TensorFlow / ONNX SAME_UPPER (or SAME_LOWER) padding of one axis."""
    out = math.ceil(length / s)
    total = max((out - 1) * s + d * (k - 1) + 1 - length, 0)
    small, big = total // 2, total - total // 2
    return (big, small) if lower else (small, big)


def adaptive_windows(length: int, out: int) -> list[Window]:
    windows = []
    for i in range(out):
        start = math.floor(i * length / out)
        end = math.ceil((i + 1) * length / out)
        windows.append((list(range(start, end)), end - start))
    return windows


def reduce_windows(
    x: np.ndarray,
    axes: Sequence[int],
    windows: Sequence[Sequence[Window]],
    *,
    op: str,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    norm_type: float | None = None,
    nan_policy: str = "propagate",
    kernel_volume: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Pool ``x`` over ``axes`` with the given per-axis windows.

    Returns (values, indices); indices (max/min only) are row-major flat over
    the pooled axes in ascending order. Values are float64 for avg/lp and
    keep the dtype for max/min (sum: float64 for floats, int64 otherwise).
    """
    axes = [a % x.ndim for a in axes]
    order = sorted(range(len(axes)), key=lambda i: axes[i])
    axes_sorted = [axes[i] for i in order]
    wins_sorted = [windows[i] for i in order]
    batch_axes = [a for a in range(x.ndim) if a not in axes_sorted]
    out_shape = list(x.shape)
    for a, w in zip(axes_sorted, wins_sorted, strict=True):
        out_shape[a] = len(w)
    lengths = [x.shape[a] for a in axes_sorted]
    if op in ("max", "min"):
        out = np.empty(out_shape, dtype=x.dtype)
    elif op == "sum":
        out = np.empty(out_shape, dtype=np.float64 if x.dtype.kind == "f" else np.int64)
    else:
        out = np.empty(out_shape, dtype=np.float64)
    idx = np.empty(out_shape, dtype=np.int64) if op in ("max", "min") else None
    omit = nan_policy == "omit"

    for bidx in itertools.product(*(range(x.shape[a]) for a in batch_axes)):
        for oidx in itertools.product(*(range(len(w)) for w in wins_sorted)):
            full = [0] * x.ndim
            for a, b in zip(batch_axes, bidx, strict=True):
                full[a] = b
            for a, o in zip(axes_sorted, oidx, strict=True):
                full[a] = o
            per_axis = [w[o] for w, o in zip(wins_sorted, oidx, strict=True)]
            cells = []  # (flat index, value) of real cells, row-major
            for combo in itertools.product(*(p for p, _ in per_axis)):
                if all(0 <= c < n for c, n in zip(combo, lengths, strict=True)):
                    src = list(full)
                    for a, c in zip(axes_sorted, combo, strict=True):
                        src[a] = c
                    flat = 0
                    for c, n in zip(combo, lengths, strict=True):
                        flat = flat * n + c
                    cells.append((flat, x[tuple(src)]))
            padded = math.prod(n for _, n in per_axis)
            key = tuple(full)
            if op in ("max", "min"):
                out[key], idx[key] = _extreme(  # type: ignore[index]
                    cells, op, omit, x.dtype, per_axis, lengths
                )
            else:
                out[key] = _summary(
                    cells,
                    op,
                    omit,
                    padded if count_include_pad else len(cells),
                    divisor_override,
                    norm_type,
                    kernel_volume,
                    x.dtype,
                )
    return out, idx


def _extreme(cells, op, omit, dtype, per_axis, lengths):  # type: ignore[no-untyped-def]
    better = (lambda a, b: a > b) if op == "max" else (lambda a, b: a < b)
    if dtype.kind == "f":
        best: Any = -np.inf if op == "max" else np.inf
    elif dtype.kind == "b":
        best = op != "max"
    else:
        info = np.iinfo(dtype)
        best = info.min if op == "max" else info.max
    if not cells:  # PyTorch: the first tap at a non-negative position
        flat = 0
        for (pos, _), n in zip(per_axis, lengths, strict=True):
            first = next((p for p in pos if p >= 0), pos[-1])
            flat = flat * n + first
        if omit and dtype.kind == "f":
            return np.nan, flat  # nan_policy="omit": no real value at all
        return best, flat
    best_idx = cells[0][0]
    if omit and dtype.kind == "f":
        real = [(i, v) for i, v in cells if not np.isnan(v)]
        if not real:
            return np.nan, cells[0][0]
        cells = real
        best_idx = cells[0][0]  # e.g. an all -inf window: its first real cell
    for i, v in cells:
        is_nan = dtype.kind == "f" and np.isnan(v)
        if is_nan or better(v, best):
            best, best_idx = v, i
    return best, best_idx


def _summary(cells, op, omit, divisor, override, p, kvol, dtype):  # type: ignore[no-untyped-def]
    values = [v for _, v in cells]
    if omit and dtype.kind == "f":
        nan = sum(1 for v in values if np.isnan(v))
        if nan == len(values):
            return np.nan
        values = [v for v in values if not np.isnan(v)]
        if op == "avg":  # as np.nanmean; Lp (incl. torch_lp) sums as np.nansum
            divisor -= nan
    if op == "sum":
        if dtype.kind == "f":
            return math.fsum(float(v) for v in values) if values else 0.0
        return sum(int(v) for v in values)
    vals = [float(v) for v in values]
    if op == "avg":
        total = sum(vals)
        return total / (override if override is not None else divisor)
    if op == "lp":
        if p == math.inf:  # NaN propagates (omit has dropped NaN already)
            if any(math.isnan(v) for v in vals):
                return math.nan
            return max((abs(v) for v in vals), default=0.0)  # no cell: norm 0
        return sum(abs(v) ** p for v in vals) ** (1.0 / p)
    if op == "torch_lp":  # (k * mean(x**p)) ** (1/p), mean over the clipped window
        with np.errstate(all="ignore"):
            powered = [np.float64(v) ** np.float64(p) for v in vals]
            mean = np.float64(sum(powered)) / divisor
            return (np.sign(mean) * max(abs(mean), 0.0) * kvol) ** (1.0 / p)
    raise ValueError(op)


def ref_pool(
    x: np.ndarray,
    kernel: Sequence[int],
    *,
    axes: Sequence[int] | None = None,
    stride: Sequence[int] | None = None,
    pads: Sequence[tuple[int, int]] | None = None,
    dilation: Sequence[int] | None = None,
    ceil_mode: bool = False,
    op: str = "max",
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    norm_type: float | None = None,
    nan_policy: str = "propagate",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Kernel/stride/padding/dilation pooling over any axes, by loops."""
    n = len(kernel)
    axes = list(range(x.ndim - n, x.ndim)) if axes is None else list(axes)
    stride = list(kernel) if stride is None else list(stride)
    pads = [(0, 0)] * n if pads is None else list(pads)
    dilation = [1] * n if dilation is None else list(dilation)
    windows = [
        regular_windows(x.shape[a], k, s, d, pb, pa, ceil_mode)
        for a, k, s, (pb, pa), d in zip(
            axes, kernel, stride, pads, dilation, strict=True
        )
    ]
    return reduce_windows(
        x,
        axes,
        windows,
        op=op,
        count_include_pad=count_include_pad,
        divisor_override=divisor_override,
        norm_type=norm_type,
        nan_policy=nan_policy,
        kernel_volume=math.prod(kernel),
    )
