"""Lazy, chunk-by-chunk pooling of Dask arrays (imported only for Dask input).

Each output block is one task: it reads the input chunks its windows touch,
cuts out exactly the cells they need (the halo), and pools them with the
NumPy core under the same geometry restricted to that block. Nothing is
computed at call time; peak memory is a few chunks. Blocks along a pooled
axis hold about one input chunk's worth of windows, so no pooled axis is
collapsed into a single chunk.

Windows that span a whole axis with no indices asked for (global pooling)
use Dask's own tree reductions instead, so memory stays bounded there too.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from ._geometry import AxisPlan, Geometry

__all__ = ["pool_dask"]

Array = npt.NDArray[Any]


def _needed(plan: AxisPlan) -> tuple[Array, Array]:
    """Per output window, the input cells it reads: ``[lo, hi)``, clipped."""
    if plan.regular:  # from the plan's own first valid tap and cell count
        assert plan.first_tap is not None
        assert plan.count_valid is not None
        start = np.arange(plan.out, dtype=np.int64) * plan.stride - plan.pad_before
        lo = start + plan.first_tap * plan.dilation
        hi = lo + (plan.count_valid - 1) * plan.dilation + 1
        empty = plan.count_valid == 0
        clipped = np.clip(start, 0, plan.length)
        return np.where(empty, clipped, lo), np.where(empty, clipped, hi)
    assert plan.starts is not None
    assert plan.ends is not None
    return plan.starts.astype(np.int64), plan.ends.astype(np.int64)


def _blocks(plan: AxisPlan, chunk: int) -> list[int]:
    """Output block boundaries: about ``chunk`` input cells of windows each."""
    if plan.regular:
        per = max(1, round(chunk / plan.stride))
    else:
        per = max(1, round(chunk * plan.out / max(plan.length, 1)))
    return [*range(0, plan.out, per), plan.out] if plan.out else [0, 0]


def pool_dask(
    x: Any, geom: Geometry, red: Any, return_indices: bool
) -> Any | tuple[Any, Any]:
    """Dask version of ``_core.pool_core``: a lazy array (or two) out."""
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    if any(math.isnan(c) for cs in x.chunks for c in cs):
        msg = (
            "the Dask input has unknown chunk sizes: call x.compute_chunk_sizes() first"
        )
        raise ValueError(msg)
    if any(
        not p.regular and p.starts is not None and p.starts.ndim > 1 for p in geom.plans
    ):
        msg = (
            "fractional max pooling draws its windows per (n, c) plane and has no "
            "chunked form: pool a NumPy array (x.compute()) instead"
        )
        raise TypeError(msg)
    if not return_indices and geom.plans and all(p.full_axis for p in geom.plans):
        reduced = _global_reduction(x, geom, red)
        if reduced is not None:
            return reduced

    ndim = x.ndim
    pooled = {p.axis: p for p in geom.plans}
    in_bounds = [np.concatenate([[0], np.cumsum(c)]).astype(np.int64) for c in x.chunks]
    out_chunks: list[tuple[int, ...]] = []
    # per axis: list of (o0, o1, a, b, first_chunk, last_chunk) per output block
    axis_blocks: list[list[tuple[int, int, int, int, int, int]]] = []
    for ax in range(ndim):
        if ax not in pooled:
            blocks = [
                (0, 0, int(in_bounds[ax][c]), int(in_bounds[ax][c + 1]), c, c)
                for c in range(len(x.chunks[ax]))
            ]
            out_chunks.append(tuple(x.chunks[ax]))
            axis_blocks.append(blocks)
            continue
        plan = pooled[ax]
        lo, hi = _needed(plan)
        bounds = _blocks(plan, max(x.chunks[ax]) if x.chunks[ax] else 1)
        blocks = []
        for o0, o1 in itertools.pairwise(bounds):
            a = int(lo[o0:o1].min()) if o1 > o0 else 0
            b = max(int(hi[o0:o1].max()), a) if o1 > o0 else 0
            c0 = int(np.searchsorted(in_bounds[ax], a, side="right") - 1)
            c1 = int(np.searchsorted(in_bounds[ax], max(b - 1, a), side="right") - 1)
            c0 = min(max(c0, 0), len(x.chunks[ax]) - 1)
            c1 = min(max(c1, c0), len(x.chunks[ax]) - 1)
            blocks.append((o0, o1, a, b, c0, c1))
        out_chunks.append(tuple(o1 - o0 for o0, o1, *_ in blocks))
        axis_blocks.append(blocks)

    token = tokenize(
        x, geom.out_shape, [_plan_token(p) for p in geom.plans], red, return_indices
    )
    name = f"ndpool-{red.op}-{token}"
    dsk: dict[Any, Any] = {}
    for out_idx in itertools.product(*(range(len(b)) for b in axis_blocks)):
        specs = [axis_blocks[ax][i] for ax, i in enumerate(out_idx)]
        in_ranges = [range(s[4], s[5] + 1) for s in specs]
        keys = _nested_keys(x.name, in_ranges, 0, ())
        cut = []
        plans = []
        for ax, (o0, o1, a, b, c0, _) in enumerate(specs):
            start = int(in_bounds[ax][c0])
            cut.append((a - start, b - start))
            if ax in pooled:
                plans.append(pooled[ax].restrict(o0, o1, a, b - a))
        key = (name, *out_idx)
        dsk[key] = (_pool_block, keys, tuple(cut), tuple(plans), red, return_indices)
    chunks = tuple(out_chunks)
    out_dtype = _result_dtype(x, geom, red)
    if not return_indices:
        graph = HighLevelGraph.from_collections(name, dsk, dependencies=[x])
        return da.Array(  # type: ignore[no-untyped-call]
            graph, name, chunks, meta=np.empty((0,) * ndim, dtype=out_dtype)
        )
    vals, idxs = f"{name}-values", f"{name}-indices"
    for key in list(dsk):
        vkey, ikey = (vals, *key[1:]), (idxs, *key[1:])
        dsk[vkey] = (_item, key, 0)
        dsk[ikey] = (_item, key, 1)
    graph_v = HighLevelGraph.from_collections(vals, dict(dsk), dependencies=[x])
    graph_i = HighLevelGraph.from_collections(idxs, dict(dsk), dependencies=[x])
    values = da.Array(  # type: ignore[no-untyped-call]
        graph_v, vals, chunks, meta=np.empty((0,) * ndim, dtype=out_dtype)
    )
    indices = da.Array(  # type: ignore[no-untyped-call]
        graph_i, idxs, chunks, meta=np.empty((0,) * ndim, dtype=np.int64)
    )
    return values, indices


def _item(pair: tuple[Array, Array], i: int) -> Array:
    return pair[i]


def _plan_token(plan: AxisPlan) -> tuple[Any, ...]:
    return (
        plan.axis,
        plan.length,
        plan.out,
        plan.taps,
        plan.regular,
        plan.stride,
        plan.dilation,
        plan.pad_before,
        plan.pad_after,
        None if plan.starts is None else plan.starts.tobytes(),
        None if plan.ends is None else plan.ends.tobytes(),
    )


def _nested_keys(
    name: str, ranges: list[range], depth: int, prefix: tuple[int, ...]
) -> Any:
    if depth == len(ranges):
        return (name, *prefix)
    return [_nested_keys(name, ranges, depth + 1, (*prefix, i)) for i in ranges[depth]]


def _concat(nested: Any, axis: int) -> Array:
    if isinstance(nested, list):
        parts = [_concat(n, axis + 1) for n in nested]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=axis)
    return np.asarray(nested)


def _pool_block(
    nested: Any,
    cut: tuple[tuple[int, int], ...],
    plans: tuple[AxisPlan, ...],
    red: Any,
    return_indices: bool,
) -> Any:
    from ._core import pool_core

    block = _concat(nested, 0)
    block = block[tuple(slice(a, b) for a, b in cut)]
    out_shape = list(block.shape)
    for p in plans:
        out_shape[p.axis] = p.out
    local = Geometry(shape=block.shape, plans=plans, out_shape=tuple(out_shape))
    # the restricted plans index into the whole input, so indices come out global
    return pool_core(block, local, red, return_indices=return_indices)


def _result_dtype(x: Any, geom: Geometry, red: Any) -> np.dtype[Any]:
    """The core's own answer: pool one window of zeros of the input dtype."""
    from ._core import pool_core

    plans = []
    shape = [1] * x.ndim
    for p in geom.plans:
        lo, hi = _needed(p)
        a, b = (int(lo[0]), int(max(hi[0], lo[0]))) if p.out else (0, 0)
        plans.append(p.restrict(0, min(p.out, 1), a, b - a))
        shape[p.axis] = b - a
    out_shape = list(shape)
    for p in plans:
        out_shape[p.axis] = p.out
    local = Geometry(shape=tuple(shape), plans=tuple(plans), out_shape=tuple(out_shape))
    probe = pool_core(np.zeros(shape, dtype=x.dtype), local, red)
    assert not isinstance(probe, tuple)
    return probe.dtype


def _global_reduction(x: Any, geom: Geometry, red: Any) -> Any | None:
    """Whole-axis windows through Dask's tree reductions (bounded memory)."""
    import dask.array as da

    axes = geom.axes
    omit = red.nan_omit and np.dtype(x.dtype).kind == "f"
    out_dtype = _result_dtype(x, geom, red)
    if red.op in ("max", "min"):
        if omit:
            fn = da.nanmax if red.op == "max" else da.nanmin
        else:
            fn = da.max if red.op == "max" else da.min
        return fn(x, axis=axes, keepdims=True).astype(out_dtype)
    if red.op not in ("sum", "avg"):
        return None
    if np.dtype(x.dtype).kind == "f":  # as the core: at least float32
        acc = np.promote_types(x.dtype, np.float32)
    else:  # integers: the sum keeps its int64/uint64, an average is float64
        acc = out_dtype if red.op == "sum" else np.dtype(np.float64)
    total = (da.nansum if omit else da.sum)(x, axis=axes, keepdims=True, dtype=acc)
    if omit:
        real = (~da.isnan(x)).sum(axis=axes, keepdims=True)
        total = da.where(real == 0, np.nan, total)
    if red.op == "sum":
        return total.astype(out_dtype)
    if red.divisor_override is not None:
        divisor: Any = red.divisor_override
    elif omit:
        divisor = real
    else:
        divisor = math.prod(x.shape[a] for a in axes)
    return (total / divisor).astype(out_dtype)
