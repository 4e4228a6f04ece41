"""Lazy, chunk-by-chunk pooling of Dask arrays (imported only for Dask input).

Each output block is one task: it reads the input chunks its windows touch,
cuts out exactly the cells they need (the halo), and pools them with the
NumPy core under the same geometry restricted to that block. Nothing is
computed at call time; peak memory is a few chunks. Blocks along a pooled
axis hold about one input chunk's worth of windows, so no pooled axis is
collapsed into a single chunk.

Windows that span a whole axis (global pooling) use tree reductions
instead, so memory stays bounded there too: Dask's own for max, min, sums
and averages; for p-norms the norm of the chunks' norms (the core's Lp at
each level); for PyTorch's lp_pool a tree sum of its terms; for max and
min with indices the winner of the chunks' winners.

Gradients (``grad_dask``) are the mirror image: one task per input chunk,
reading the gradients of the windows that touch the chunk (and their
indices, or their input cells); windows spanning whole axes that read their
cells take each window's factor from tree reductions instead. Fractional
pooling, whose windows are drawn per plane, and unpooling, whose indices
may name any cell of a plane, run on blocks of whole planes.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ._geometry import _TABLE_BLOCK, AxisPlan, Geometry

__all__ = ["check_chunks", "pool_dask"]

Array = npt.NDArray[Any]


def _needed(plan: AxisPlan, o0: int, o1: int) -> tuple[int, int]:
    """The input cells windows ``o0:o1`` read together, ``[lo, hi)``.

    Windows inside the input read their whole extent, in closed form; only
    those at the borders (clipped, or with a tap in padding) are worked out
    one by one, so a long lazy axis costs its borders, not its length.
    """
    if o1 <= o0:
        return 0, 0
    found = []
    for b0, b1, extent in _pieces(plan, o0, o1):
        if extent:
            first, last = _start(plan, b0), _start(plan, b1 - 1) + _extent(plan)
            found.append(
                (min(max(first, 0), plan.length), min(max(last, 0), plan.length))
            )
        else:
            lo, hi = _cells(plan, b0, b1)
            found.append((int(lo.min()), int(hi.max())))
    a = min(first for first, _ in found)
    return a, max(max(hi for _, hi in found), a)


def _extent(plan: AxisPlan) -> int:
    return plan.dilation * (plan.taps - 1) + 1


def _start(plan: AxisPlan, i: int) -> int:
    """Where regular window ``i`` starts (its first tap, maybe in padding)."""
    return i * plan.stride - plan.pad_before


def _pieces(plan: AxisPlan, o0: int, o1: int) -> list[tuple[int, int, bool]]:
    """Windows ``o0:o1`` in runs ``(b0, b1, extent)``: with ``extent``, each
    window of the run reads its extent clipped to the input.

    That is exact where every tap lies inside the input, or the taps are
    adjacent (no dilation); for a run of more than ``_TABLE_BLOCK`` windows
    at a border it is a superset of their cells, which a cut may hold (the
    cells are still read by position). The other runs read their tables.
    """
    if o1 <= o0:
        return []
    if not plan.regular:
        return [(o0, o1, False)]
    if plan.dilation == 1:
        return [(o0, o1, True)]
    first = -(-plan.pad_before // plan.stride)  # first window starting at >= 0
    stop = (plan.length - _extent(plan) + plan.pad_before) // plan.stride + 1
    j0, j1 = max(o0, first), min(o1, stop)
    runs = (
        [(o0, o1, False)]
        if j1 <= j0
        else [(o0, j0, False), (j0, j1, True), (j1, o1, False)]
    )
    return [
        (b0, b1, extent or b1 - b0 > _TABLE_BLOCK) for b0, b1, extent in runs if b1 > b0
    ]


def _cells(plan: AxisPlan, o0: int, o1: int) -> tuple[Array, Array]:
    """Per window of ``o0:o1``, the input cells it reads: ``[lo, hi)``,
    clipped (from those windows' tables alone: a long lazy axis never
    builds its own)."""
    if plan.regular:  # from the windows' first valid tap and cell count
        first = plan.window_tables("first_tap", o0, o1)
        count = plan.window_tables("count_valid", o0, o1)
        start = np.arange(o0, o1, dtype=np.int64) * plan.stride - plan.pad_before
        lo = start + first * plan.dilation
        hi = lo + (count - 1) * plan.dilation + 1
        empty = count == 0
        clipped = np.clip(start, 0, plan.length)
        return np.where(empty, clipped, lo), np.where(empty, clipped, hi)
    assert plan.starts is not None
    assert plan.ends is not None
    return plan.starts[o0:o1], plan.ends[o0:o1]


def _blocks(plan: AxisPlan, chunks: tuple[int, ...]) -> list[int]:
    """Output block boundaries: the windows of about one input chunk each,
    at most a chunk's length of them (adaptive pooling to more cells than
    the input has made blocks as many times the chunk as it upsamples, on
    every pooled axis), unless that makes more than ``_BLOCKS_PER_CHUNK``
    blocks a chunk, which wins: windows mostly in the padding of a huge
    kernel, or upsampling past 16 times, would otherwise make a task per
    few windows."""
    chunk = max(chunks) if chunks else 1
    if plan.regular:
        per = max(1, round(chunk / plan.stride))
    else:
        per = max(1, min(chunk, round(chunk * plan.out / max(plan.length, 1))))
    per = max(per, -(-plan.out // (_BLOCKS_PER_CHUNK * max(len(chunks), 1))))
    return [*range(0, plan.out, per), plan.out] if plan.out else [0, 0]


_BLOCKS_PER_CHUNK = 16


def check_chunks(x: Any, name: str = "input") -> None:
    """A Dask array of known shape: geometry needs every length."""
    if any(math.isnan(c) for cs in x.chunks for c in cs):
        msg = (
            f"{name}: the Dask array of shape {x.shape} has unknown chunk sizes; "
            "call x.compute_chunk_sizes() first"
        )
        raise ValueError(msg)


def pool_dask(
    x: Any, geom: Geometry, red: Any, return_indices: bool
) -> Any | tuple[Any, Any]:
    """Dask version of ``_core.pool_core``: a lazy array (or two) out."""
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    check_chunks(x)
    if any(p.per_plane for p in geom.plans):  # windows drawn plane by plane
        x = x.rechunk(dict.fromkeys(geom.axes, -1))
    if _whole_axes(geom) and x.size:
        if not return_indices:
            reduced = _global_reduction(x, geom, red)
            if reduced is not None:
                return reduced
        elif red.op in ("max", "min"):
            return _global_arg(x, geom, red)

    ndim = x.ndim
    pooled = {p.axis: p for p in geom.plans}
    in_bounds = [_edges(c) for c in x.chunks]
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
        if plan.per_plane:  # one block: the whole axis (one chunk, above)
            axis_blocks.append([(0, plan.out, 0, plan.length, 0, 0)])
            out_chunks.append((plan.out,))
            continue
        bounds = _blocks(plan, x.chunks[ax])
        blocks = []
        for o0, o1 in itertools.pairwise(bounds):
            a, b = _needed(plan, o0, o1)
            held = _covering(in_bounds[ax], a, b)
            blocks.append((o0, o1, a, b, held[0], held[-1]))
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
        batch = {ax: s[2:4] for ax, s in enumerate(specs) if ax not in pooled}
        for ax, (o0, o1, a, b, c0, _) in enumerate(specs):
            start = int(in_bounds[ax][c0])
            cut.append((a - start, b - start))
            if ax in pooled and pooled[ax].per_plane:
                plans.append(_plane_slice(pooled[ax], batch))
            elif ax in pooled:
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


def _plane_slice(plan: AxisPlan, batch: dict[int, tuple[int, int]]) -> AxisPlan:
    """A per-plane plan cut to the planes ``batch`` (axis: ``[lo, hi)``)."""

    def cut(a: Any) -> Any:
        if a is None or a.ndim == 1:
            return a
        index = tuple(
            slice(*batch[ax]) if ax in batch and a.shape[ax] > 1 else slice(None)
            for ax in range(a.ndim)
        )
        return a[index]

    return replace(
        plan,
        starts=cut(plan.starts),
        ends=cut(plan.ends),
    )


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
    """The core's own answer: pool one window of zeros of the input dtype
    (of no plane, for an empty batch)."""
    from ._core import pool_core

    plans = []
    # one plane of every batch axis, or none where the batch is empty
    batch = {ax: min(1, x.shape[ax]) for ax in range(x.ndim) if ax not in geom.axes}
    shape = [batch.get(ax, 1) for ax in range(x.ndim)]
    first = {ax: (0, n) for ax, n in batch.items()}
    for p in geom.plans:
        if p.per_plane:  # one whole plane
            plans.append(_plane_slice(p, first))
            shape[p.axis] = p.length
            continue
        a, b = _needed(p, 0, min(p.out, 1))
        plans.append(p.restrict(0, min(p.out, 1), a, b - a))
        shape[p.axis] = b - a
    out_shape = list(shape)
    for p in plans:
        out_shape[p.axis] = p.out
    local = Geometry(shape=tuple(shape), plans=tuple(plans), out_shape=tuple(out_shape))
    probe = pool_core(np.zeros(shape, dtype=x.dtype), local, red)
    assert not isinstance(probe, tuple)
    return probe.dtype


def _whole_axes(geom: Geometry) -> bool:
    """Whether every window spans the whole of each pooled axis."""
    return bool(geom.plans) and all(p.full_axis for p in geom.plans)


def _without_empty_chunks(x: Any) -> Any:
    """``x`` with its chunks of no cell merged away (Dask's max and min
    refuse them; the trees built on them give chunks without them)."""
    if not any(0 in c for c in x.chunks):
        return x
    return x.rechunk(tuple(tuple(n for n in c if n) for c in x.chunks))


def _pooled_rows(a: Array, axes: tuple[int, ...]) -> Array:
    """``a`` with ``axes`` moved last and made one: (*others, their cells),
    row-major over ``axes`` (an empty other axis too)."""
    n = len(axes)
    moved = np.moveaxis(a, axes, tuple(range(a.ndim - n, a.ndim)))
    return moved.reshape(
        *moved.shape[: a.ndim - n], math.prod(moved.shape[a.ndim - n :])
    )


def _global_reduction(x: Any, geom: Geometry, red: Any) -> Any | None:
    """Whole-axis windows through Dask's tree reductions (bounded memory);
    None where the chunked path serves (an empty batch, whose zero-size
    max Dask refuses, or an op Dask has no reduction for)."""
    import dask.array as da

    from ._core import _acc_dtype

    if red.op not in ("max", "min", "sum", "avg", "lp", "torch_lp") or x.size == 0:
        return None
    axes = geom.axes
    x = _without_empty_chunks(x)
    dtype = np.dtype(x.dtype)
    omit = red.nan_omit and dtype.kind == "f"
    out_dtype = _result_dtype(x, geom, red)
    if red.op == "lp":
        return _finish(_global_norm(x, axes, red), red, out_dtype)
    if red.op == "torch_lp":
        return _finish(_global_torch_lp(x, axes, red), red, out_dtype)
    if red.op in ("max", "min"):
        if omit:
            fn = da.nanmax if red.op == "max" else da.nanmin
        else:
            fn = da.max if red.op == "max" else da.min
        return _finish(fn(x, axis=axes, keepdims=True), red, out_dtype)
    acc = _acc_dtype(dtype, red.op)  # as the core: int64/uint64 or float
    total = _tree_sum(x, axes, acc, nan=omit)
    if omit:
        real = (~da.isnan(x)).sum(axis=axes, keepdims=True)
        total = da.where(real == 0, np.nan, total)
    if red.op == "sum":
        return _finish(total, red, out_dtype)
    if red.divisor_override is not None:
        divisor: Any = red.divisor_override
    elif omit:
        divisor = real
    else:
        divisor = math.prod(x.shape[a] for a in axes)
    return _finish(total / divisor, red, out_dtype)


def _global_arg(x: Any, geom: Geometry, red: Any) -> tuple[Any, Any]:
    """Whole-axis max or min with indices as a tree: each chunk's winner
    (the core's, its flat index made global), then the winner of the
    winners by the core's rules. Row-major order within a chunk is the
    order of the whole window, so "the first best" is the smallest flat
    index among the best values, and "the last NaN" the largest among NaN."""
    import dask.array as da

    axes = geom.axes
    dtype = np.dtype(x.dtype)
    pair = np.dtype([("v", dtype), ("i", np.int64)])
    plane = tuple(x.shape[a] for a in axes)
    chunks = tuple((1,) * len(c) if a in axes else c for a, c in enumerate(x.chunks))
    winners = x.map_blocks(
        _chunk_winner, chunks=chunks, dtype=pair, meta=np.empty((0,) * x.ndim, pair),
        axes=axes, plane=plane, red=replace(red, dtype=None),
    )  # fmt: skip
    best = _ArgStep(axes, red.op, red.nan_omit and dtype.kind == "f")
    won = da.reduction(  # type: ignore[no-untyped-call]
        winners, best, best, combine=best, axis=axes, keepdims=True, dtype=pair,
        concatenate=True, meta=np.empty((0,) * x.ndim, pair),
    )  # fmt: skip
    meta = np.empty((0,) * x.ndim, dtype)
    values = won.map_blocks(_field, "v", dtype=dtype, meta=meta)
    indices = won.map_blocks(
        _field, "i", dtype=np.int64, meta=np.empty((0,) * x.ndim, np.int64)
    )
    return _finish(values, red, _result_dtype(x, geom, red)), indices


def _field(pairs: Array, name: str) -> Array:
    return np.ascontiguousarray(pairs[name])


def _chunk_winner(
    block: Array,
    axes: tuple[int, ...],
    plane: tuple[int, ...],
    red: Any,
    block_info: Any = None,
) -> Array:
    """The core's winner of a chunk's cells, with its flat index over the
    whole ``plane`` (row-major over ``axes``)."""
    from ._core import _fill_value, pool_core
    from ._geometry import whole_geometry

    pair = np.dtype([("v", block.dtype), ("i", np.int64)])
    kernel = tuple(block.shape[a] for a in axes)
    if 0 in kernel:  # no cell: a winner that never wins (last of all ties)
        shape = tuple(1 if a in axes else n for a, n in enumerate(block.shape))
        pairs = np.empty(shape, pair)
        omit = red.nan_omit and block.dtype.kind == "f"
        pairs["v"] = _fill_value(block.dtype, red.op, omit)
        pairs["i"] = np.iinfo(np.int64).max
        return pairs
    out = pool_core(block, whole_geometry(block.shape, axes), red, return_indices=True)
    assert isinstance(out, tuple)
    _, local = out
    # the value at the index, whichever zero (or NaN) the core's fold kept:
    # then no chunking changes the bits of the winner of winners
    at = _pooled_rows(local, axes)
    values = np.take_along_axis(_pooled_rows(block, axes), at, axis=-1)
    values = values.reshape(local.shape)
    where = block_info[0]["array-location"]
    flat = np.zeros(local.shape, np.int64)
    rest = local
    for a, n in reversed(list(zip(axes, kernel, strict=True))):  # last axis first
        rest, coord = np.divmod(rest, n)
        flat_step = math.prod(plane[axes.index(a) + 1 :])
        flat += (coord + where[a][0]) * flat_step
    pairs = np.empty(values.shape, pair)
    pairs["v"], pairs["i"] = values, flat
    return pairs


class _ArgStep:
    """One level of ``_global_arg``: the winner among winners along ``axis``
    (a NaN: the last one; omitted: the first best real value, or the first
    cell where all are NaN; otherwise the first best value)."""

    def __init__(self, axes: tuple[int, ...], op: str, omit: bool) -> None:
        self.axes, self.op, self.omit = axes, op, omit

    def __call__(self, pairs: Array, axis: tuple[int, ...], keepdims: bool) -> Array:
        assert keepdims
        rows = _pooled_rows(pairs, axis)
        v, i = rows["v"], rows["i"]
        nan = np.isnan(v) if v.dtype.kind == "f" else np.zeros(v.shape, bool)
        real = ~nan
        with np.errstate(invalid="ignore"):
            if v.dtype.kind == "f":
                worst = -np.inf if self.op == "max" else np.inf
                best = (np.max if self.op == "max" else np.min)(
                    np.where(real, v, worst), axis=-1, keepdims=True
                )
            else:
                best = (np.max if self.op == "max" else np.min)(
                    v, axis=-1, keepdims=True
                )
            top = np.iinfo(np.int64).max
            first_best = np.where(real & (v == best), i, top).min(axis=-1)
        if self.omit:
            chosen = np.where(real.any(axis=-1), first_best, i.min(axis=-1))
        else:
            last_nan = np.where(nan, i, -1).max(axis=-1)
            chosen = np.where(nan.any(axis=-1), last_nan, first_best)
        at = np.argmax(i == chosen[..., None], axis=-1)[..., None]
        won = np.take_along_axis(rows, at, axis=-1)  # (..., 1)
        shape = list(pairs.shape)
        for a in axis:
            shape[a] = 1
        return won.reshape(shape)


def _global_norm(x: Any, axes: tuple[int, ...], red: Any) -> Any:
    """Whole-axis p-norms as a tree of p-norms: the norm of the chunks'
    norms is the norm of their cells (their ``|x|**p`` add up), so every
    level is the core's own Lp, which rescales sums past the float range,
    and ``nan_policy="omit"`` passes up the NaN of a chunk of only NaN."""
    import dask.array as da

    from ._core import _acc_dtype

    acc = _acc_dtype(np.dtype(x.dtype), red.op)
    step = _NormStep(red, acc)
    return da.reduction(  # type: ignore[no-untyped-call]
        x, step, step, combine=step, axis=axes, keepdims=True, dtype=acc,
        concatenate=True, meta=np.empty((0,) * x.ndim, acc),
    )  # fmt: skip


class _NormStep:
    """One level of ``_global_norm``: the core's Lp over ``axis`` (a chunk
    with no cell there gives the norm of nothing, which changes no other)."""

    def __init__(self, red: Any, acc: np.dtype[Any]) -> None:
        self.red, self.acc = red, acc

    def __call__(self, block: Array, axis: tuple[int, ...], keepdims: bool) -> Array:
        from ._core import pool_core
        from ._geometry import whole_geometry

        assert keepdims
        shape = tuple(1 if a in axis else n for a, n in enumerate(block.shape))
        if any(block.shape[a] == 0 for a in axis):
            p, omit = self.red.norm_type, self.red.nan_omit
            nothing = np.nan if omit else (0.0 if p > 0 else np.inf)
            return np.full(shape, nothing, self.acc)
        block = block.astype(self.acc, copy=False)  # float16 in float32
        geom = whole_geometry(block.shape, axis)
        out = pool_core(block, geom, replace(self.red, dtype=None))
        assert not isinstance(out, tuple)
        return out.astype(self.acc, copy=False)


def _global_torch_lp(x: Any, axes: tuple[int, ...], red: Any) -> Any:
    """Whole-axis ``lp_pool``: PyTorch's terms, their tree sum, then the
    core's last steps on each sum (``_core.torch_lp_of_sums``)."""
    import dask.array as da

    from ._core import _acc_dtype, lp_terms, torch_lp_of_sums

    dtype = np.dtype(x.dtype)
    acc = _acc_dtype(dtype, red.op)
    omit = red.nan_omit and dtype.kind == "f"
    meta = np.empty((0,) * x.ndim, acc)

    def terms(block: Array) -> Array:
        with np.errstate(all="ignore"):
            t = lp_terms(block, red, acc)
            return np.where(np.isnan(block), 0, t) if omit else t

    summed = x.map_blocks(terms, dtype=acc, meta=meta)
    total = _tree_sum(summed, axes, acc)
    volume = math.prod(x.shape[a] for a in axes)

    def last_steps(t: Array) -> Array:
        with np.errstate(all="ignore"):
            return torch_lp_of_sums(t, acc.type(volume), volume, dtype, red)

    result = total.map_blocks(last_steps, dtype=acc, meta=meta)
    if omit:  # a window of only NaN is NaN
        real = (~da.isnan(x)).sum(axis=axes, keepdims=True)
        result = da.where(real == 0, np.nan, result)
    return result


def _tree_sum(x: Any, axes: tuple[int, ...], acc: Any, nan: bool = False) -> Any:
    """``da.sum`` (``da.nansum`` with ``nan``) over ``axes``, keeping them,
    in ``acc``, with float errors ignored as the core ignores them: a sum
    past the float range is inf, not a warning."""
    import dask.array as da

    step = _quiet_nansum if nan else _quiet_sum
    return da.reduction(  # type: ignore[no-untyped-call]
        x, step, step, combine=step, axis=axes, keepdims=True, dtype=acc,
        meta=np.empty((0,) * x.ndim, acc),
    )  # fmt: skip


def _quiet_sum(
    a: Array, axis: Any = None, keepdims: bool = False, dtype: Any = None
) -> Array:
    with np.errstate(all="ignore"):
        return np.sum(a, axis=axis, keepdims=keepdims, dtype=dtype)  # type: ignore[no-any-return]


def _quiet_nansum(
    a: Array, axis: Any = None, keepdims: bool = False, dtype: Any = None
) -> Array:
    with np.errstate(all="ignore"):
        return np.nansum(a, axis=axis, keepdims=keepdims, dtype=dtype)  # type: ignore[no-any-return]


def _finish(values: Any, red: Any, out_dtype: np.dtype[Any]) -> Any:
    """The core's last step on every block: ``_core._cast`` to ``red.dtype``
    (an integer one rounds to nearest and saturates), else to the dtype the
    core gives (a float keeps its own, as float16 sums in float32). Quiet
    where the core's is (sums and finite p-norms), not for max and min."""
    from ._core import _cast

    if values.dtype == out_dtype:
        return values
    summed = red.op in ("sum", "avg", "torch_lp") or (
        red.op == "lp" and red.norm_type != np.inf
    )
    return values.map_blocks(
        _quiet_cast if summed else _cast,
        out_dtype,
        dtype=out_dtype,
        meta=np.empty((0,) * values.ndim, out_dtype),
    )


def _quiet_cast(values: Array, dtype: np.dtype[Any]) -> Array:
    """``_core._cast`` with float errors ignored, as the core runs it: a
    norm past float16's range is inf, not a warning."""
    from ._core import _cast

    with np.errstate(all="ignore"):
        return _cast(values, dtype)


def fractional_dask(
    x: Any,
    samples: Any,
    axes: tuple[int, ...],
    kernel: tuple[int, ...],
    sizes: tuple[int, ...],
    sample_cols: tuple[int, ...],
    batch_axes: tuple[int, ...],
    return_indices: bool,
) -> Any:
    """Fractional max pooling of Dask ``x`` with Dask ``samples`` (lazy):
    each block of whole planes draws its windows from its own rows of
    ``samples`` (``batch_shape + (nd,)``, lined up with ``batch_axes``)
    and pools them with the core, as ``pool_dask`` does with host samples."""
    import dask.array as da

    x = x.rechunk(dict.fromkeys(axes, -1))
    samples = samples.rechunk((*(x.chunks[b] for b in batch_axes), -1))
    index = tuple(range(x.ndim))
    dtype = np.dtype(x.dtype)
    pair = da.blockwise(  # type: ignore[no-untyped-call]
        _fractional_block, index, x, index, samples, (*batch_axes, x.ndim),
        concatenate=True, adjust_chunks=dict(zip(axes, sizes, strict=True)),
        meta=np.empty((0,) * x.ndim, dtype), axes=axes, kernel=kernel,
        sizes=sizes, sample_cols=sample_cols, batch_axes=batch_axes,
        return_indices=return_indices,
    )  # fmt: skip
    if not return_indices:
        return pair
    values = pair.map_blocks(_item, 0, meta=np.empty((0,) * x.ndim, dtype))
    indices = pair.map_blocks(_item, 1, meta=np.empty((0,) * x.ndim, np.int64))
    return values, indices


def _fractional_block(
    block: Array,
    samples: Array,
    axes: tuple[int, ...],
    kernel: tuple[int, ...],
    sizes: tuple[int, ...],
    sample_cols: tuple[int, ...],
    batch_axes: tuple[int, ...],
    return_indices: bool,
) -> Any:
    from ._core import Reduction, pool_core
    from ._geometry import fractional_geometry

    geom = fractional_geometry(
        block.shape, axes, kernel, sizes, samples, sample_cols, batch_axes
    )
    return pool_core(block, geom, Reduction(op="max"), return_indices=return_indices)


def route_planes(g: Any, idx: Any, axes: tuple[int, ...], like: Any) -> Any:
    """The routed pullback by whole planes: each window's gradient added to
    the cell its index names (``idx``: pooled axes in one chunk), in the
    NumPy pullback's order; chunked like ``like``, the pooled input."""
    import dask.array as da

    whole = tuple(int(like.shape[a]) for a in axes)
    size_of = dict(zip(axes, whole, strict=True))
    chunks = tuple(
        (size_of[ax],) if ax in size_of else idx.chunks[ax] for ax in range(idx.ndim)
    )
    dtype = np.dtype(like.dtype)
    g = da.asarray(g).rechunk(idx.chunks)  # type: ignore[no-untyped-call]
    grad = da.map_blocks(  # type: ignore[no-untyped-call]
        _route_planes, g, idx, axes=axes, whole=whole, out_dtype=dtype,
        chunks=chunks, meta=np.empty((0,) * idx.ndim, dtype),
    )  # fmt: skip
    return grad.rechunk(like.chunks)


def _route_planes(
    g: Array, idx: Array, axes: tuple[int, ...], whole: tuple[int, ...], out_dtype: Any
) -> Array:
    cut = tuple((0, n) for n in g.shape)
    zeros = (0,) * len(axes)
    return _route_block(
        g, idx, cut, None, axes, zeros, whole, whole, False, 0, out_dtype
    )


# --------------------------------------------------------------------------
# gradients: one task per input chunk, reading the windows that touch it


class _Cut(NamedTuple):
    """How the gradient task of one input chunk ``[start, start + n)`` reads
    along one axis: the gradient's chunks and the cut of their concatenation
    (the windows that touch the chunk), the same for the input (the cells
    those windows read), where the result lands in the chunk, and (pooled
    axes, spread rules) the touching windows' own plan."""

    start: int
    g_range: range
    g_cut: tuple[int, int]
    x_range: range
    x_cut: tuple[int, int]
    place: tuple[slice, slice]
    plan: AxisPlan | None


def _axis_cuts(
    x_edges: Array, g_edges: Array, plan: AxisPlan | None, *, spread: bool
) -> list[_Cut | None]:
    """Every chunk's ``_Cut`` along one axis (None: no window reads it);
    ``plan`` is None for a batch axis, whose chunks pair one to one."""
    cuts: list[_Cut | None] = []
    for i in range(len(x_edges) - 1):
        c0, c1 = int(x_edges[i]), int(x_edges[i + 1])
        if plan is None:
            own, all_of_it = range(i, i + 1), (0, c1 - c0)
            place = (slice(None), slice(None))
            cuts.append(_Cut(c0, own, all_of_it, own, all_of_it, place, None))
            continue
        found = _touching(plan, c0, c1)
        if found is None:
            cuts.append(None)
            continue
        o0, o1, a, b = found
        g_range, x_range = _covering(g_edges, o0, o1), _covering(x_edges, a, b)
        g_first, x_first = int(g_edges[g_range[0]]), int(x_edges[x_range[0]])
        lo, hi = max(a, c0), min(b, c1)
        cuts.append(
            _Cut(
                start=c0,
                g_range=g_range,
                g_cut=(o0 - g_first, o1 - g_first),
                x_range=x_range,
                x_cut=(a - x_first, b - x_first),
                place=(slice(lo - c0, hi - c0), slice(lo - a, hi - a)),
                plan=plan.restrict(o0, o1, a, b - a) if spread else None,
            )
        )
    return cuts


def _touching(plan: AxisPlan, c0: int, c1: int) -> tuple[int, int, int, int] | None:
    """The windows ``[o0, o1)`` that read a cell of ``[c0, c1)`` and the cells
    ``[a, b)`` those windows read (as the forward's blocks); None if none.

    A plan with a window wholly in padding (dilation) takes every window: such
    a window routes its gradient by PyTorch's out-of-plane index, which may
    name a cell of any row (see ``grad._routed``); ``grad_dask`` then keeps
    planes whole.
    """
    if plan.per_plane:  # whole planes (the chunk is the whole axis)
        return 0, plan.out, 0, plan.length
    if plan.has_empty_window:
        return 0, plan.out, *_needed(plan, 0, plan.out)
    # window starts ascend, so the windows whose extent meets [c0, c1) are a
    # run: only those are looked at (not the whole axis, per chunk), and of
    # those only the ones at the borders one by one (the others read their
    # whole extent)
    if plan.regular:
        first = max(0, (c0 - _extent(plan) + plan.pad_before) // plan.stride + 1)
        stop = min(plan.out, -(-(c1 + plan.pad_before) // plan.stride))
    else:
        assert plan.starts is not None
        assert plan.ends is not None
        first = int(np.searchsorted(plan.ends, c0, side="right"))
        stop = int(np.searchsorted(plan.starts, c1, side="left"))
    hits: list[int] = []
    for b0, b1, extent in _pieces(plan, first, stop):
        if extent:
            hits += [b0, b1 - 1]
            continue
        lo, hi = _cells(plan, b0, b1)
        found = np.flatnonzero((lo < c1) & (hi > c0) & (hi > lo))
        if found.size:
            hits += [b0 + int(found[0]), b0 + int(found[-1])]
    if not hits:
        return None
    o0, o1 = min(hits), max(hits) + 1
    return o0, o1, *_needed(plan, o0, o1)


def _covering(bounds: Array, lo: int, hi: int) -> range:
    """The chunks (``bounds``: cumulative edges) holding ``[lo, hi)``."""
    first = int(np.searchsorted(bounds, lo, side="right") - 1)
    last = int(np.searchsorted(bounds, max(hi - 1, lo), side="right") - 1)
    n = len(bounds) - 1
    first = min(max(first, 0), n - 1)
    return range(first, min(max(last, first), n - 1) + 1)


def _edges(chunks: tuple[int, ...]) -> Array:
    return np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)


def grad_dask(
    x: Any, g: Any, geom: Geometry, red: Any, route: str | None, magnitude: int
) -> Any:
    """The pullback of one pooling call on Dask input: a lazy array with
    ``x``'s chunks.

    ``route`` ("max"/"min"): each window's gradient goes to the cell its
    index names, the indices coming from the chunked forward (over
    ``magnitude * |x|`` when ``magnitude`` is ±1, chained through ``|x|``).
    Otherwise the window gradients are spread back through the summing
    core's adjoint (``grad._spread``). Either way the task of an input
    chunk reads only the gradients (and indices, or input cells) of the
    windows that touch it, and sums their contributions in the order the
    NumPy pullback does.
    """
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    from ._core import Reduction

    reads_x = red.nan_omit or red.op in ("lp", "torch_lp")
    if route is None and _whole_axes(geom) and reads_x and x.size:
        return _whole_axis_spread(x, g, geom, red)
    ndim = x.ndim
    pooled = {p.axis: p for p in geom.plans}
    chunks = x.chunks
    # whole planes: windows drawn per plane (as the forward), or a window
    # wholly in padding, whose index may name a cell of any row (grad._routed)
    if any(p.per_plane for p in geom.plans) or (
        route is not None and any(p.has_empty_window for p in geom.plans)
    ):
        x = x.rechunk(dict.fromkeys(pooled, -1))
    batch_chunks = {ax: x.chunks[ax] for ax in range(ndim) if ax not in pooled}
    deps = []
    idx = None
    if route is not None:
        src = x if magnitude == 0 else magnitude * abs(x)
        found = pool_dask(src, geom, Reduction(op=route, nan_omit=red.nan_omit), True)
        idx = found[1]
        g = da.asarray(g).rechunk(idx.chunks)  # type: ignore[no-untyped-call]
        deps.append(idx)
        needs_x = red.nan_omit or magnitude != 0  # the chunk itself, no halo
    else:
        g = da.asarray(g).rechunk(batch_chunks)  # type: ignore[no-untyped-call]
        needs_x = red.nan_omit or red.op not in ("avg", "sum")  # with the halo
    deps += [g, x] if needs_x else [g]
    x_edges = [_edges(c) for c in x.chunks]
    g_edges = [_edges(c) for c in g.chunks]
    # per axis and chunk, once: how it reads the gradient and the input
    cuts = [
        _axis_cuts(x_edges[ax], g_edges[ax], pooled.get(ax), spread=route is None)
        for ax in range(ndim)
    ]
    token = tokenize(x, g, [_plan_token(p) for p in geom.plans], red, route, magnitude)
    name = f"ndpool-grad-{token}"
    dtype = np.dtype(x.dtype)
    axes = tuple(sorted(pooled))
    whole = tuple(p.index_length for p in geom.plans)
    dsk: dict[Any, Any] = {}
    for index in itertools.product(*(range(len(c)) for c in x.chunks)):
        chunk_shape = tuple(x.chunks[ax][i] for ax, i in enumerate(index))
        key = (name, *index)
        x_key = (x.name, *index) if needs_x else None
        found = [cuts[ax][i] for ax, i in enumerate(index)]
        if any(c is None for c in found):  # no window reads this chunk
            dsk[key] = (
                _untouched_block, x_key, chunk_shape, red, route is not None,
                magnitude, dtype,
            )  # fmt: skip
            continue
        per_axis = [c for c in found if c is not None]
        g_keys = _nested_keys(g.name, [c.g_range for c in per_axis], 0, ())
        g_cut = tuple(c.g_cut for c in per_axis)
        if route is not None:
            assert idx is not None
            i_keys = _nested_keys(idx.name, [c.g_range for c in per_axis], 0, ())
            starts = tuple(per_axis[ax].start for ax in axes)
            lengths = tuple(chunk_shape[ax] for ax in axes)
            dsk[key] = (
                _route_block, g_keys, i_keys, g_cut, x_key, axes, starts, lengths,
                whole, red.nan_omit, magnitude, dtype,
            )  # fmt: skip
            continue
        x_keys = None
        if needs_x:
            x_keys = _nested_keys(x.name, [c.x_range for c in per_axis], 0, ())
        x_cut = tuple(c.x_cut for c in per_axis)
        plans = tuple(c.plan for c in per_axis if c.plan is not None)
        dsk[key] = (
            _spread_block, g_keys, g_cut, x_keys, x_cut, x_key,
            tuple(b - a for a, b in x_cut), plans, red, chunk_shape,
            tuple(c.place for c in per_axis), dtype,
        )  # fmt: skip
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=deps)
    grad = da.Array(  # type: ignore[no-untyped-call]
        graph, name, x.chunks, meta=np.empty((0,) * ndim, dtype=dtype)
    )
    return grad if grad.chunks == chunks else grad.rechunk(chunks)  # type: ignore[no-untyped-call]


def _whole_axis_spread(x: Any, g: Any, geom: Geometry, red: Any) -> Any:
    """``grad._spread`` of windows that span whole axes, which read every
    cell of their planes: each window's factor from its norm, mean or NaN
    count (tree reductions of the forward's), then each chunk's cells times
    their window's factor. No task reads more than a few chunks."""
    import dask.array as da

    from ._core import Reduction
    from .grad import lp_cell, powers_lost, torch_lp_terms

    chunks = x.chunks
    x = _without_empty_chunks(x)  # chunked as the stats' trees
    dtype = np.dtype(x.dtype)
    acc = np.promote_types(dtype, np.float32)
    half = dtype == np.float16
    stats: list[Any] = []  # per window, chunked as the pooled output
    if red.nan_omit:
        stats.append(pool_dask(da.isnan(x), geom, Reduction(op="sum"), False))
    base = x.astype(acc)
    if red.op == "lp":
        lp = Reduction(op="lp", norm_type=red.norm_type, nan_omit=red.nan_omit)
        stats.append(pool_dask(base, geom, lp, False))
    elif red.op == "torch_lp":

        def terms(block: Array) -> Array:
            with np.errstate(all="ignore"):
                return torch_lp_terms(block.astype(acc), block, red, half, np)

        mean = x.map_blocks(terms, dtype=acc, meta=np.empty((0,) * x.ndim, acc))
        stats.append(pool_dask(mean, geom, Reduction(op="avg"), False))
    out_chunks = stats[0].chunks if stats else None
    g = da.asarray(g).astype(acc).rechunk(out_chunks)  # type: ignore[no-untyped-call]
    volume = geom.kernel_volume
    meta = np.empty((0,) * x.ndim, acc)
    window = da.map_blocks(  # type: ignore[no-untyped-call]
        _window_factor, g, *stats, dtype=acc, meta=meta, red=red, volume=volume,
        half=half,
    )  # fmt: skip
    if red.op in ("avg", "sum"):
        grad = da.broadcast_to(window, x.shape, chunks=x.chunks)  # type: ignore[no-untyped-call]
    else:
        cells = base.map_blocks(
            lambda b: _quietly(lp_cell, b, red, np, half=half), dtype=acc, meta=meta
        )
        grad = da.map_blocks(  # type: ignore[no-untyped-call]
            _product, cells, window, dtype=acc, meta=meta
        )
        if red.op == "lp":  # past the float range: pair by pair (grad._lp_by_pairs)
            norm = stats[-1]
            lost = norm.map_blocks(
                functools.partial(powers_lost, p=red.norm_type, acc=acc, xp=np),
                dtype=bool,
            )
            pairs = da.map_blocks(  # type: ignore[no-untyped-call]
                _pair_terms, base, g, norm, dtype=acc, meta=meta, p=red.norm_type
            )
            grad = da.where(lost.any(), pairs, grad)
    if red.nan_omit:
        grad = da.where(da.isnan(x), 0, grad)
    cast = grad.map_blocks(_quiet_cast, dtype, dtype=dtype)
    return cast.rechunk(chunks)


def _product(a: Array, b: Array) -> Array:
    """``a * b`` with float errors ignored: inf times 0 is NaN here, as in
    the NumPy pullback."""
    with np.errstate(all="ignore"):
        return np.multiply(a, b)


def _quietly(fn: Any, *args: Any, **kwargs: Any) -> Any:
    with np.errstate(all="ignore"):
        return fn(*args, **kwargs)


def _window_factor(g: Array, *stats: Array, red: Any, volume: int, half: bool) -> Array:
    """Each window's factor of the gradient, as ``grad._spread`` works it
    out (``stats``: its NaN count with ``nan_policy="omit"``, then its norm
    or its mean of PyTorch's terms)."""
    from .grad import lp_scale, lp_window, torch_lp_window

    nan_count = stats[0] if red.nan_omit else None
    with np.errstate(all="ignore"):
        if red.op == "lp":
            norm, p = stats[-1], red.norm_type
            w = lp_window(g, norm, lp_scale(norm, p), p, np)
        elif red.op == "torch_lp":
            w = torch_lp_window(
                g, stats[-1], float(volume), g.dtype.type(volume), red.norm_type,
                half, np,
            )  # fmt: skip
        elif red.op == "avg":
            if red.divisor_override is not None:
                w = g / float(red.divisor_override)
            elif nan_count is not None:
                w = g / (volume - nan_count).astype(g.dtype)
            else:
                w = g / volume
        else:
            w = g
        if nan_count is not None:  # a window of only NaN has no gradient
            w = np.where(nan_count == volume, 0, w)
    return np.asarray(w, dtype=g.dtype)


def _pair_terms(base: Array, g: Array, norm: Array, p: float) -> Array:
    """``grad._lp_by_pairs`` of whole-axis windows: each cell's own term."""
    from .grad import lp_pair_term, signs

    with np.errstate(all="ignore"):
        return g * lp_pair_term(np.abs(base), norm, p, np) * signs(base, np)


def _cut(nested: Any, cut: tuple[tuple[int, int], ...]) -> Array:
    return _concat(nested, 0)[tuple(slice(a, b) for a, b in cut)]


def _route_block(
    g_nested: Any,
    i_nested: Any,
    cut: tuple[tuple[int, int], ...],
    x_chunk: Array | None,
    axes: tuple[int, ...],
    starts: tuple[int, ...],
    lengths: tuple[int, ...],
    whole: tuple[int, ...],
    omit: bool,
    magnitude: int,
    dtype: np.dtype[Any],
) -> Array:
    """One input chunk's routed gradient: each window's gradient added to
    the cell its (whole-input, flat) index names, if that cell is here."""
    g, idx = _cut(g_nested, cut), _cut(i_nested, cut)
    batch = [ax for ax in range(g.ndim) if ax not in axes]
    order = batch + list(axes)
    batch_shape = [g.shape[ax] for ax in batch]
    rows = math.prod(batch_shape)
    windows = math.prod(g.shape[ax] for ax in axes)
    g2 = np.transpose(g, order).reshape(rows, windows)
    i2 = np.transpose(idx, order).reshape(rows, windows)
    # whole-input flat index -> this chunk's flat index, one pooled axis at
    # a time (outermost first); a cell outside the chunk, or PyTorch's
    # out-of-plane index of a window wholly in padding, fails ``ok``
    local = np.empty(i2.shape, dtype=np.int64)
    rest = i2
    ok: Array | None = None
    for k, (start, n) in enumerate(zip(starts, lengths, strict=True)):
        inner = math.prod(whole[k + 1 :])
        pos = rest // inner  # (not np.divmod: several times slower)
        if k < len(starts) - 1:
            rest = rest - pos * inner
        pos -= start
        inside = pos.view(np.uint64) < n  # 0 <= pos < n in one comparison
        ok = inside if ok is None else np.logical_and(ok, inside, out=ok)
        if k == 0:
            local[...] = pos
        else:
            local *= n
            local += pos
    plane = math.prod(lengths)
    local += np.arange(rows, dtype=np.int64)[:, None] * plane
    out = np.zeros(rows * plane, dtype=np.promote_types(dtype, g.dtype))
    # in output order, as the NumPy pullback
    if ok is None or ok.all():
        np.add.at(out, local.ravel(), g2.ravel())
    else:
        np.add.at(out, local[ok], g2[ok])
    grad = np.transpose(out.reshape(*batch_shape, *lengths), np.argsort(order))
    return _finish_routed(grad, x_chunk, omit, magnitude, dtype)


def _finish_routed(
    grad: Array, x_chunk: Array | None, omit: bool, magnitude: int, dtype: Any
) -> Array:
    """What the NumPy pullback does to a routed gradient after the scatter:
    NaN cells to 0 (``omit``), the chain through ``|x|``, the cast."""
    from .grad import signs

    if x_chunk is not None:
        if omit:
            grad = np.where(np.isnan(x_chunk), 0, grad)
        if magnitude:
            grad = grad * signs(x_chunk, np)
    with np.errstate(all="ignore"):
        return np.asarray(grad, dtype=dtype)


def _untouched_block(
    x_chunk: Array | None,
    shape: tuple[int, ...],
    red: Any,
    route: bool,
    magnitude: int,
    dtype: np.dtype[Any],
) -> Array:
    """The gradient of a chunk no window reads: zero, times whatever
    factor the NumPy pullback applies to every cell (a NaN stays NaN)."""
    if route:
        return _finish_routed(
            np.zeros(shape, dtype), x_chunk, red.nan_omit, magnitude, dtype
        )
    return _spread_cells(np.zeros(shape, dtype), x_chunk, red, dtype)


def _spread_cells(
    grad: Array, x_chunk: Array | None, red: Any, dtype: np.dtype[Any]
) -> Array:
    """``grad._spread``'s per-cell factors on a chunk's cells that no window
    reads: PyTorch's lp_pool factor (the p-norm reads only the windows'
    cells), then 0 on NaN cells with ``omit``."""
    from .grad import lp_cell

    if x_chunk is not None:
        if red.op == "torch_lp":
            acc = np.promote_types(x_chunk.dtype, np.float32)
            half = x_chunk.dtype == np.float16
            grad = grad * lp_cell(x_chunk.astype(acc), red, np, half=half)
        if red.nan_omit:
            grad = np.where(np.isnan(x_chunk), 0, grad)
    with np.errstate(all="ignore"):
        return np.asarray(grad, dtype=dtype)


def _spread_block(
    g_nested: Any,
    g_cut: tuple[tuple[int, int], ...],
    x_nested: Any | None,
    x_cut: tuple[tuple[int, int], ...],
    x_chunk: Array | None,
    region: tuple[int, ...],
    plans: tuple[AxisPlan, ...],
    red: Any,
    chunk_shape: tuple[int, ...],
    place: tuple[tuple[slice, slice], ...],
    dtype: np.dtype[Any],
) -> Array:
    """One input chunk's spread gradient: the NumPy pullback of the windows
    that touch it, over the cells they read (``region``), cut to the chunk;
    the chunk's other cells get what no window gives them."""
    from .grad import _spread

    g = _cut(g_nested, g_cut)
    if x_nested is None:  # an average or sum needs only the window shapes
        x: Array = np.broadcast_to(np.zeros((), dtype=dtype), region)
    else:
        x = _cut(x_nested, x_cut)
    local = Geometry(shape=x.shape, plans=plans, out_shape=g.shape)
    with np.errstate(all="ignore"):
        grad = np.asarray(_spread(x, local, red)(g), dtype=dtype)
    out = _spread_cells(np.zeros(chunk_shape, dtype=dtype), x_chunk, red, dtype)
    out[tuple(dst for dst, _ in place)] = grad[tuple(src for _, src in place)]
    return out


# --------------------------------------------------------------------------
# unpooling: an index may name any cell of its plane, so planes stay whole


def unpool_dask(x: Any, indices: Any, axes: tuple[int, ...], sizes: Any) -> Any:
    """``_core.unpool_core`` per block of whole planes (lazy).

    An index outside its plane raises ValueError when the block is computed.
    """
    import dask.array as da

    from ._core import unpool_core

    x = x.rechunk(dict.fromkeys(axes, -1))
    idx = da.asarray(indices).rechunk(x.chunks)  # type: ignore[no-untyped-call]
    size_of = dict(zip(axes, sizes, strict=True))
    chunks = tuple(
        (size_of[ax],) if ax in size_of else x.chunks[ax] for ax in range(x.ndim)
    )
    return da.map_blocks(  # type: ignore[no-untyped-call]
        unpool_core, x, idx, axes=axes, out_sizes=tuple(sizes), chunks=chunks,
        dtype=x.dtype, meta=np.empty((0,) * x.ndim, dtype=x.dtype),
    )  # fmt: skip


def unpool_grad_dask(g: Any, indices: Any, axes: tuple[int, ...], like: Any) -> Any:
    """Pullback of unpooling: each input cell takes the gradient at its
    index, plane by plane; chunked like ``like`` (the unpooled input)."""
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    whole = dict.fromkeys(axes, -1)
    idx = da.asarray(indices).rechunk(like.chunks).rechunk(whole)  # type: ignore[no-untyped-call]
    batch = {ax: idx.chunks[ax] for ax in range(idx.ndim) if ax not in whole}
    g = da.asarray(g).rechunk({**batch, **whole})  # type: ignore[no-untyped-call]
    name = f"ndpool-unpool-grad-{tokenize(g, idx, axes)}"
    dsk: dict[Any, Any] = {
        (name, *i): (_gather_planes, (g.name, *i), (idx.name, *i), axes)
        for i in itertools.product(*(range(len(c)) for c in idx.chunks))
    }
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[g, idx])
    taken = da.Array(  # type: ignore[no-untyped-call]
        graph, name, idx.chunks, meta=np.empty((0,) * idx.ndim, dtype=g.dtype)
    )
    return taken.astype(like.dtype).rechunk(like.chunks)  # type: ignore[no-untyped-call]


def _gather_planes(g: Array, idx: Array, axes: tuple[int, ...]) -> Array:
    batch = [ax for ax in range(g.ndim) if ax not in axes]
    order = batch + list(axes)
    rows = math.prod(idx.shape[ax] for ax in batch)
    plane = math.prod(g.shape[ax] for ax in axes)
    if plane == 0:  # nothing was unpooled
        return np.zeros(idx.shape, dtype=g.dtype)
    g2 = np.transpose(g, order).reshape(rows, plane)
    cells = math.prod(idx.shape[ax] for ax in axes)  # not -1: rows may be 0
    i2 = np.transpose(idx, order).reshape(rows, cells)
    taken = np.take_along_axis(g2, i2, axis=1)
    shaped = taken.reshape([idx.shape[ax] for ax in order])
    return np.transpose(shaped, np.argsort(order))
