"""The one compute core.

Every pooling window is a Cartesian product of 1-D windows (see
``_geometry``), so every reduction is done one pooled axis at a time:
a *pass* over axis ``a`` loops over that axis' kernel taps, reads one strided
slice (regular windows) or one gather (adaptive/fractional windows) per tap,
and folds it into the output with a ufunc. No window view is ever
materialised and no Python loop runs over output elements.

Max and min also track the winning tap of each pass as a small-integer code
(int8 for up to 127 taps); the codes are widened to int64 flat indices once,
at the end. Passes run from the innermost pooled axis outwards and replace a
running maximum only on a strictly greater value, so ties go to the first
maximum in row-major order; a NaN always replaces (``propagate``), so the
last NaN wins, exactly as PyTorch.

Sums (average, Lp) accumulate in at least float32 (float64 for integer
input), and are divided by per-axis window counts multiplied together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ._geometry import AxisPlan, Geometry

__all__ = ["Reduction", "pool_core", "unpool_core"]

Array = npt.NDArray[Any]


@dataclass(frozen=True)
class Reduction:
    """What to compute over each window."""

    op: str  # "max" | "min" | "sum" | "avg" | "lp" | "torch_lp"
    nan_omit: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None
    norm_type: float | None = None
    dtype: np.dtype[Any] | None = None  # requested output dtype


def pool_core(
    x: Array, geom: Geometry, red: Reduction, *, return_indices: bool = False
) -> Array | tuple[Array, Array]:
    """Pool ``x`` over ``geom``'s windows; see module docstring."""
    if red.op in ("max", "min"):
        values, codes = _compare(x, geom, red.op, red.nan_omit, return_indices)
        values = _cast(values, red.dtype)
        if return_indices:
            return values, _flat_indices(codes, geom)
        return values
    if red.op == "lp" and red.norm_type == np.inf:
        mag = np.abs(x)
        values, _ = _compare(mag, geom, "max", red.nan_omit, False)
        return _cast(values, red.dtype)
    return _cast(_summed(x, geom, red), red.dtype)


# --------------------------------------------------------------------------
# max / min


def _fill_value(dtype: np.dtype[Any], op: str, omit: bool) -> Any:
    if dtype.kind == "f":
        if omit:
            return np.nan
        return -np.inf if op == "max" else np.inf
    if dtype.kind == "b":
        return op != "max"
    info = np.iinfo(dtype)
    return info.min if op == "max" else info.max


def _code_dtype(taps: int) -> np.dtype[Any]:
    for t in (np.int8, np.int16, np.int32):
        if taps <= np.iinfo(t).max:
            return np.dtype(t)
    return np.dtype(np.int64)


def _compare(
    x: Array, geom: Geometry, op: str, omit: bool, track: bool
) -> tuple[Array, dict[int, Array]]:
    omit = omit and x.dtype.kind == "f"
    fill = _fill_value(x.dtype, op, omit)
    cur = _pad(x, geom, fill)
    codes: dict[int, Array] = {}
    for plan in reversed(geom.plans):
        cur, codes = _compare_pass(cur, codes, plan, geom, op, omit, track, fill)
    return cur, codes


def _compare_pass(
    src: Array,
    codes: dict[int, Array],
    plan: AxisPlan,
    geom: Geometry,
    op: str,
    omit: bool,
    track: bool,
    fill: Any,
) -> tuple[Array, dict[int, Array]]:
    a = plan.axis
    fold: np.ufunc
    if omit:
        fold = np.fmax if op == "max" else np.fmin
    else:
        fold = np.maximum if op == "max" else np.minimum
    if plan.full_axis and not track:
        return fold.reduce(src, axis=a, keepdims=True), codes
    shape = list(src.shape)
    shape[a] = plan.out
    out = np.full(shape, fill, dtype=src.dtype)
    if not track:
        for j in range(plan.taps):
            fold(out, _tap(src, plan, j), out=out)
        return out, codes

    assert plan.first_tap is not None
    code = np.empty(shape, dtype=_code_dtype(plan.taps))
    code[...] = geom.along(plan, plan.first_tap)
    carried = {}
    for b, c in codes.items():
        other = geom.plans[geom.axes.index(b)]
        assert other.first_tap is not None
        carried[b] = np.empty(shape, dtype=c.dtype)
        carried[b][...] = geom.along(other, other.first_tap)
    better = np.greater if op == "max" else np.less
    is_float = src.dtype.kind == "f"
    mask = np.empty(shape, dtype=bool)
    for j in range(plan.taps):
        v = _tap(src, plan, j)
        better(v, out, out=mask)
        if is_float:
            if omit:  # a real value replaces the NaN start
                mask |= np.isnan(out) & ~np.isnan(v)
            else:  # any NaN replaces: the last NaN wins
                mask |= np.isnan(v)
        np.copyto(out, v, where=mask)
        np.copyto(code, j, where=mask, casting="unsafe")
        for b, c in codes.items():
            np.copyto(carried[b], _tap(c, plan, j), where=mask)
    carried[a] = code
    return out, carried


def _flat_indices(codes: dict[int, Array], geom: Geometry) -> Array:
    """Row-major flat index over the pooled axes (ascending), int64."""
    flat = np.zeros(geom.out_shape, dtype=np.int64)
    step = 1
    for plan in reversed(geom.plans):
        flat += plan.positions(codes[plan.axis], geom.ndim) * step
        step *= plan.length
    return flat


# --------------------------------------------------------------------------
# sum / average / Lp


def _acc_dtype(dtype: np.dtype[Any], op: str) -> np.dtype[Any]:
    if dtype.kind == "f":
        return np.promote_types(dtype, np.float32)
    if op == "sum":
        return np.dtype(np.uint64 if dtype.kind == "u" else np.int64)
    return np.dtype(np.float64)


def _summed(x: Array, geom: Geometry, red: Reduction) -> Array:
    acc = _acc_dtype(x.dtype, red.op)
    omit = red.nan_omit and x.dtype.kind == "f"
    nan_mask = np.isnan(x) if omit else None

    if red.op in ("lp", "torch_lp"):
        p = red.norm_type
        assert p is not None
        base = x.astype(acc, copy=False)
        with np.errstate(all="ignore"):
            terms = np.power(np.abs(base) if red.op == "lp" else base, acc.type(p))
    else:
        terms = x
    if nan_mask is not None:
        terms = np.where(nan_mask, 0, terms)

    total = _sum_all(terms, geom, acc)
    nan_count = (
        _sum_all(nan_mask, geom, np.dtype(np.int64)) if nan_mask is not None else None
    )

    with np.errstate(all="ignore"):
        if red.op == "sum":
            result = total
        elif red.op == "lp":
            assert red.norm_type is not None
            result = np.power(total, acc.type(1.0 / red.norm_type))
        elif red.op == "torch_lp":
            assert red.norm_type is not None
            mean = total / geom.window_count(include_pad=True).astype(acc)
            scaled = (
                np.sign(mean)
                * np.maximum(np.abs(mean), 0)
                * acc.type(geom.kernel_volume)
            )
            result = np.power(scaled, acc.type(1.0 / red.norm_type))
        else:  # avg
            if red.divisor_override is not None:
                divisor: Any = acc.type(red.divisor_override)
            else:
                count = geom.window_count(include_pad=red.count_include_pad)
                if nan_count is not None:
                    count = count - nan_count
                divisor = count.astype(acc)
            result = total / divisor
    if nan_count is not None:
        empty = geom.window_count(include_pad=False) == nan_count
        if np.any(empty):
            result = np.where(empty, acc.type(np.nan), result)
    return np.asarray(result)


def _sum_all(x: Array, geom: Geometry, acc: np.dtype[Any]) -> Array:
    cur = _pad(x, geom, 0)
    for plan in reversed(geom.plans):
        cur = _sum_pass(cur, plan, geom, acc)
    return cur


def _sum_pass(src: Array, plan: AxisPlan, geom: Geometry, acc: np.dtype[Any]) -> Array:
    a = plan.axis
    if plan.full_axis:
        return np.asarray(np.sum(src, axis=a, keepdims=True, dtype=acc))
    shape = list(src.shape)
    shape[a] = plan.out
    out = np.zeros(shape, dtype=acc)
    for j in range(plan.taps):
        v = _tap(src, plan, j)
        if not plan.regular:
            valid = plan.tap_valid(j)
            if valid.ndim == 1:
                valid = geom.along(plan, valid)
            if not valid.all():
                v = np.where(valid, v, 0)
        np.add(out, v, out=out)
    return out


# --------------------------------------------------------------------------
# shared helpers


def _pad(x: Array, geom: Geometry, fill: Any) -> Array:
    widths = [(0, 0)] * x.ndim
    any_pad = False
    for p in geom.plans:
        if p.regular and (p.lo or p.hi):
            widths[p.axis] = (p.lo, p.hi)
            any_pad = True
    if not any_pad:
        return x
    return np.pad(x, widths, mode="constant", constant_values=fill)


def _tap(src: Array, plan: AxisPlan, j: int) -> Array:
    """The cells tap j of every window reads, laid out like the output."""
    if plan.regular:
        index: list[slice] = [slice(None)] * src.ndim
        index[plan.axis] = plan.tap_slice(j)
        return src[tuple(index)]
    idx = plan.tap_index(j)
    if idx.ndim == 1:
        return np.take(src, idx, axis=plan.axis)
    return np.take_along_axis(src, idx, axis=plan.axis)


def _cast(values: Array, dtype: np.dtype[Any] | None) -> Array:
    if dtype is None or values.dtype == dtype:
        return values
    if dtype.kind in "iub" and values.dtype.kind == "f":
        if dtype.kind == "b":
            return np.asarray(values != 0)
        info = np.iinfo(dtype)
        with np.errstate(invalid="ignore"):
            rounded = np.clip(np.rint(values), info.min, info.max)
        return np.asarray(np.nan_to_num(rounded, nan=0).astype(dtype))
    return values.astype(dtype)


def unpool_core(
    x: Array, indices: Array, axes: tuple[int, ...], out_sizes: tuple[int, ...]
) -> Array:
    """Scatter ``x`` to ``indices`` (flat over ``axes``) in a zero array.

    Raises ValueError for an index outside the output plane.
    """
    nd = len(axes)
    batch_axes = [i for i in range(x.ndim) if i not in axes]
    order = batch_axes + list(axes)
    xt = np.transpose(x, order)
    it = np.transpose(indices, order)
    batch_shape = xt.shape[: x.ndim - nd]
    plane = int(np.prod(out_sizes, dtype=np.int64))
    n_batch = int(np.prod(batch_shape, dtype=np.int64))
    x2 = xt.reshape(n_batch, -1)
    i2 = it.reshape(n_batch, -1)
    if i2.size:
        lo, hi = int(i2.min()), int(i2.max())
        if lo < 0 or hi >= plane:
            bad = lo if lo < 0 else hi
            msg = (
                f"indices contains {bad}, outside the output plane of "
                f"{'x'.join(map(str, out_sizes))} = {plane} cells: every index "
                f"must be in [0, {plane})"
            )
            raise ValueError(msg)
    flat = np.zeros((n_batch, plane), dtype=x.dtype)
    flat[np.arange(n_batch)[:, None], i2] = x2
    out = flat.reshape(batch_shape + tuple(out_sizes))
    return np.ascontiguousarray(np.transpose(out, np.argsort(order)))
