"""The one compute core.

Every pooling window is a Cartesian product of 1-D windows (see
``_geometry``). Values-only reductions (max, min, sums) are done one pooled
axis at a time: a *pass* over axis ``a`` loops over that axis' kernel taps,
reads one strided slice (clipped at the borders, so there is no padded copy)
or one gather (adaptive/fractional windows) per tap, and folds it into the
output with a ufunc. No window view is ever materialised and no Python loop
runs over output elements. Max/min passes run outermost-first (whole rows),
sums innermost-first (``pass_order``). On a small array a pass over adaptive
windows gathers all its taps at once and folds them with one reduce, in the
same order.

With indices, one loop runs over every tap of the whole window in row-major
order and keeps the *rank* of the winning tap as a small integer; a tap
replaces only on a strictly better value (ties: the first maximum in
row-major order) or on a NaN (``propagate``: the last NaN wins), exactly as
PyTorch. Ranks become int64 flat indices once, at the end. A small input
(``_GATHER_WINDOWS``) gathers every window's cells in that order instead
and arg-reduces them in one call, with the same rules; few windows of many
taps are arg-reduced window by window.

Sums (average, Lp) accumulate in at least float32 (float64 for integer
input), and are divided by per-axis window counts multiplied together.

Large inputs are cut along a batch axis into ~4 MiB blocks, handed out one
at a time to the calling thread and the pool's threads (``_threads.share``);
each block writes straight into its slice of the output, and a batch cut
never changes a result. Dask and Array-API inputs are handed to ``_dask``
and ``_xp``, which run the same plans.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ._geometry import (
    _TABLES_KEPT,
    AxisPlan,
    Geometry,
    IntArray,
    Tap,
    _along,
    _frozen,
    check_output_size,
    unit_geometry,
)
from ._threads import get_num_threads, share

__all__ = ["Reduction", "pool_core", "recording", "unpool_core"]

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


def is_dask(x: object) -> bool:
    """True for a dask.array.Array, without importing Dask."""
    return type(x).__module__.startswith("dask.") and hasattr(x, "dask")


def native_order(a: Any) -> Any:
    """A NumPy or Dask array in native byte order (big-endian data: FITS,
    network order); anything else as given."""
    dtype = getattr(a, "dtype", None)
    if (
        isinstance(dtype, np.dtype)
        and not dtype.isnative
        and (isinstance(a, np.ndarray) or is_dask(a))
    ):
        return a.astype(dtype.newbyteorder("="))
    return a


_TAPE: contextvars.ContextVar[list[tuple[Geometry, Reduction]] | None]
_TAPE = contextvars.ContextVar("ndpool_tape", default=None)


@contextlib.contextmanager
def recording() -> Iterator[list[tuple[Geometry, Reduction]]]:
    """Record the (geometry, reduction) of every ``pool_core`` call inside.

    The gradients use it to run the forward once and pull back through
    exactly the windows it pooled, whichever public function built them.
    """
    tape: list[tuple[Geometry, Reduction]] = []
    token = _TAPE.set(tape)
    try:
        yield tape
    finally:
        _TAPE.reset(token)


def pool_core(
    x: Array, geom: Geometry, red: Reduction, *, return_indices: bool = False
) -> Array | tuple[Array, Array]:
    """Pool ``x`` over ``geom``'s windows; see module docstring.

    Large inputs are cut along one batch (non-pooled) axis into blocks of
    about ``BLOCK_BYTES`` (so a block's intermediates stay in cache) and the
    blocks are shared out by ``_threads.share``. The cut depends
    only on the input's shape and every block runs the same code on its own
    cells, so the result never depends on the thread count.
    """
    tape = _TAPE.get()
    if tape is not None:
        tape.append((geom, red))
    arr: Any = x  # a Dask or Array-API array goes to its own executor
    if not isinstance(arr, np.ndarray):
        if is_dask(arr):
            from ._dask import pool_dask

            return pool_dask(arr, geom, red, return_indices)
        from ._xp import pool_xp

        return pool_xp(arr, geom, red, return_indices)  # type: ignore[no-any-return]
    # a NumPy output is allocated here (a Dask one may exceed memory)
    check_output_size(
        geom.out_shape,
        "the pooling arguments",
        itemsize=_cell_bytes(x.dtype, red, return_indices),
    )
    if math.prod(geom.out_shape) == 0:  # no window to loop over taps for
        outs = _empty_results(x, geom, red, return_indices)
        return outs if return_indices else outs[0]  # type: ignore[return-value]
    cut = _blocks(x, geom, get_num_threads(), red, return_indices)
    if cut is None:
        return _pool_block(x, geom, red, return_indices)
    axis, bounds = cut
    outs = _empty_results(x, geom, red, return_indices)
    uniform = not any(_varies_along(p, geom, axis) for p in geom.plans)
    subs: dict[int, Geometry] = {}

    def run(span: tuple[int, int]) -> None:
        lo, hi = span
        if uniform:  # shared by every block of the same length
            sub = subs.get(hi - lo)
            if sub is None:
                sub = subs[hi - lo] = _batch_slice(geom, axis, lo, hi)
        else:
            sub = _batch_slice(geom, axis, lo, hi)
        region = _index(x.ndim, axis, slice(lo, hi))
        dest = tuple(out[region] for out in outs)
        res = _pool_block(_along_slice(x, axis, lo, hi), sub, red, return_indices, dest)
        results = res if isinstance(res, tuple) else (res,)
        for d, r in zip(dest, results, strict=True):
            if r is not d:  # a path that could not write in place
                d[...] = r

    share(run, bounds, get_num_threads())
    return outs if return_indices else outs[0]  # type: ignore[return-value]


def _empty_results(
    x: Array, geom: Geometry, red: Reduction, return_indices: bool
) -> tuple[Array, ...]:
    """Unfilled results (values, and indices) of ``geom.out_shape``.

    Their dtypes come from one cell pooled by a one-cell window on every
    pooled axis: they follow the op and the input dtype, and an empty block
    of the real windows would still loop over every tap.
    """
    unit = unit_geometry(x.ndim, geom.axes)
    probe = _pool_block(np.zeros((1,) * x.ndim, x.dtype), unit, red, return_indices)
    kinds = probe if isinstance(probe, tuple) else (probe,)
    return tuple(np.empty(geom.out_shape, dtype=p.dtype) for p in kinds)


#: input bytes per block: a block's intermediates stay in the L2/L3 caches
BLOCK_BYTES = 1 << 22


def _threads_itself(
    x: Array, geom: Geometry, red: Reduction, return_indices: bool
) -> bool:
    """Whether pooling ``x`` over ``geom`` is one reduce over whole axes,
    which shares out its own rows (``_global_sum``, ``_global_fold``): max
    or min values, or sums and averages of the cells as they are, read in
    place. Powers, NaN masks, argmax tracking and a transposed copy around
    such a reduce run on blocks."""
    if return_indices or not all(_whole(p) for p in geom.plans):
        return False
    if red.op in ("max", "min"):
        return True
    omit = red.nan_omit and x.dtype.kind == "f"
    layout = _sum_layout(x, geom.axes)
    return red.op in ("sum", "avg") and not omit and layout is not None


def _blocks(
    x: Array,
    geom: Geometry,
    threads: int = 1,
    red: Reduction | None = None,
    return_indices: bool = False,
) -> tuple[int, list[tuple[int, int]]] | None:
    """(axis, [(lo, hi), ...]): the batch cut into blocks, or None (one block).

    Prefers a batch axis outside every pooled axis (so blocks are big
    contiguous runs), the outermost whose single slice fits in a block.
    One reduce that threads itself (``_threads_itself``) is never cut.
    """
    if x.nbytes < 2 * BLOCK_BYTES:
        return None  # small
    if red is not None and _threads_itself(x, geom, red, return_indices):
        return None  # one reduce (no intermediates to cache)
    pooled = set(geom.axes)
    batch = [a for a in range(x.ndim) if a not in pooled and x.shape[a] > 1]
    outer = [a for a in batch if a < min(pooled)]
    planes = all(_whole(p) for p in geom.plans)
    if planes and not outer and _sum_layout(x, geom.axes) is not None:
        # a cut after whole planes read in place would have its blocks
        # copied into rows instead: another order of the sums
        return None
    candidates = outer or batch
    if not candidates:
        return None
    axis = next(
        (a for a in candidates if x.nbytes // x.shape[a] <= BLOCK_BYTES),
        max(candidates, key=lambda a: x.shape[a]),
    )
    length = x.shape[axis]
    step = max(1, BLOCK_BYTES // (x.nbytes // length))
    # even blocks, as many as a multiple of the threads (a batch cut never
    # changes a result, only how the work is shared)
    count = -(-length // step)
    count = min(length, -(-count // threads) * threads)
    plane = math.prod(p.length for p in geom.plans)
    if planes and x.size // length == plane:
        count = max(1, min(count, length // 2))  # two rows a sum (_global_sum)
    return axis, _spans(length, count)


def _spans(length: int, count: int) -> list[tuple[int, int]]:
    """``0:length`` cut into ``count`` spans (lo, hi) as even as can be."""
    edges = [length * i // count for i in range(count + 1)]
    return list(itertools.pairwise(edges))


def _index(ndim: int, axis: int, sl: slice) -> tuple[slice, ...]:
    index = [slice(None)] * ndim
    index[axis] = sl
    return tuple(index)


def _along_slice(x: Array, axis: int, lo: int, hi: int) -> Array:
    return x[_index(x.ndim, axis, slice(lo, hi))]


def _varies_along(plan: AxisPlan, geom: Geometry, axis: int) -> bool:
    """Whether the plan's windows differ between planes along ``axis``."""
    s = plan.starts
    return s is not None and s.ndim == geom.ndim and s.shape[axis] > 1


def _batch_slice(geom: Geometry, axis: int, lo: int, hi: int) -> Geometry:
    """``geom`` restricted to ``lo:hi`` along the batch axis ``axis``."""

    def cut(a: IntArray | None) -> IntArray | None:
        if a is None or a.ndim != geom.ndim or a.shape[axis] == 1:
            return a
        return a[_index(a.ndim, axis, slice(lo, hi))]

    plans = tuple(
        replace(
            p,
            starts=cut(p.starts),
            ends=cut(p.ends),
        )
        if _varies_along(p, geom, axis)
        else p
        for p in geom.plans
    )
    shape, out_shape = list(geom.shape), list(geom.out_shape)
    shape[axis] = out_shape[axis] = hi - lo
    return Geometry(shape=tuple(shape), plans=plans, out_shape=tuple(out_shape))


def _pool_block(
    x: Array,
    geom: Geometry,
    red: Reduction,
    return_indices: bool,
    dest: tuple[Array, ...] | None = None,
) -> Array | tuple[Array, Array]:
    """Pool one block (the whole input, or one slice of the batch).

    ``dest`` (values, and indices with ``return_indices``): where the
    results go. The last pass writes into them when its dtype allows, and
    then returns them (the caller copies any result that is not ``dest``).
    """
    values_dest = indices_dest = None
    if dest is not None:
        values_dest = dest[0]
        indices_dest = dest[1] if return_indices else None
    if red.op in ("max", "min"):
        omit = red.nan_omit and x.dtype.kind == "f"
        into = _into(values_dest, x.dtype, red.dtype)
        if return_indices:
            # blocks never gather: their size, so the way (and the sign
            # of a zero maximum), would follow the thread count
            gather = dest is None
            values, flat = _track(x, geom, red.op, omit, into, indices_dest, gather)
            return _cast(values, red.dtype), flat
        return _cast(_extreme(x, geom, red.op, omit, into), red.dtype)
    if red.op == "lp" and red.norm_type == np.inf:
        omit = red.nan_omit and x.dtype.kind == "f"
        # integers: float64 like every Lp of integers (and no abs overflow)
        mag = np.abs(x if x.dtype.kind == "f" else x.astype(np.float64))
        into = _into(values_dest, mag.dtype, red.dtype)
        # a window with no cell has norm 0, as for any p (omit: NaN, as p)
        floor = None if omit else 0
        return _cast(_extreme(mag, geom, "max", omit, into, floor), red.dtype)
    out_dtype = red.dtype
    if out_dtype is None and x.dtype.kind == "f":
        out_dtype = x.dtype  # float16 sums in float32 but keeps its dtype
    into = _into(values_dest, _acc_dtype(x.dtype, red.op), out_dtype)
    # inf - inf is NaN, a sum may overflow to inf, an empty window's
    # average is 0/0: values here, as in torch, not errors
    with np.errstate(all="ignore"):
        return _cast(_summed(x, geom, red, into), out_dtype)


def _into(dest: Array | None, work: np.dtype[Any], want: Any) -> Array | None:
    """``dest`` if results computed in ``work`` need no cast to go there."""
    if dest is None or dest.dtype != work or (want is not None and want != work):
        return None
    return dest


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
    """The smallest signed integer dtype holding every tap rank below ``taps``."""
    for t in (np.int8, np.int16, np.int32, np.int64):
        if taps <= np.iinfo(t).max:
            return np.dtype(t)
    msg = (
        f"the window has {taps:,} cells, more than int64 ranks (2**63 - 1): "
        "ndpool cannot give their indices (return_indices=True), nor the "
        "gradient of max or min pooling, which is routed by them"
    )
    raise ValueError(msg)


def _folds(op: str, omit: bool) -> tuple[np.ufunc, np.ufunc]:
    """(fold, better): the running max/min and the strict "replaces" test."""
    if op == "max":
        return (np.fmax if omit else np.maximum), np.greater
    return (np.fmin if omit else np.minimum), np.less


def _extreme(
    x: Array,
    geom: Geometry,
    op: str,
    omit: bool,
    into: Array | None = None,
    fill: Any = None,
) -> Array:
    """Max or min values only: any tap order gives the same result, so the
    passes run in ``pass_order``.
    ``fill`` (default: the op's identity) is what a window with no cell gets."""
    fold, _ = _folds(op, omit)
    if fill is None:
        fill = _fill_value(x.dtype, op, omit)
    order = pass_order(geom, False)
    return _fold_all(x, geom, fold, fill, x.dtype, order, into)


def _track(
    x: Array,
    geom: Geometry,
    op: str,
    omit: bool,
    into: Array | None = None,
    flat_into: Array | None = None,
    gather: bool = True,
) -> tuple[Array, Array]:
    """Max or min with the int64 flat index of the winner.

    One loop over every tap of the whole window, in row-major order (the
    Cartesian product of the per-axis taps, ascending axes), keeping the
    running value and the *rank* of the winning tap. A tap replaces only on
    a strictly better value (ties: first in row-major order) or, with
    ``propagate``, on a NaN (the last NaN wins); with ``omit`` a real value
    replaces a NaN. Since ranks only grow, "set the rank where replaced" is
    ``rank = max(rank, replaced * r)``: two small-integer ufuncs, no
    masked copy. The ranks become flat indices once, at the end.
    ``gather``: a small input may take ``_track_gathered`` instead.
    """
    fold, better = _folds(op, omit)
    fill = _fill_value(x.dtype, op, omit)
    # without NaN the rule is just "strictly better"; with propagate a NaN
    # anywhere in a window makes its value NaN, and the block is redone
    values = np.empty(geom.out_shape, dtype=x.dtype) if into is None else into
    if gather and not omit and _gathers(x, geom):
        return values, _track_gathered(x, geom, op, fill, values, flat_into)
    if _windows_first(geom):
        rank = _track_windows(x, geom, op, omit, fill, values)
        return values, _flat_indices(rank, geom, flat_into)
    rule = "omit" if omit else "none"
    rank = _track_loop(x, geom, fold, better, fill, rule, values)
    if not omit and x.dtype.kind == "f" and np.isnan(values).any():
        rank = _track_loop(x, geom, fold, better, fill, "propagate", values)
    return values, _flat_indices(rank, geom, flat_into)


def _windows_first(geom: Geometry) -> bool:
    """Whole windows outnumbered by their taps (``window_major`` over the
    Cartesian product of the axes): track window by window."""
    if not geom.plans or any(p.per_plane for p in geom.plans):
        return False
    windows = math.prod(p.out for p in geom.plans)
    taps = math.prod(len(p.live_taps) for p in geom.plans)
    return windows * WINDOW_MAJOR < taps


def _track_windows(
    x: Array, geom: Geometry, op: str, omit: bool, fill: Any, values: Array
) -> Array:
    """``_track`` window by window: one arg-reduce over each window's cells
    (a box, row-major in tap order), with the tap loop's rules: the first
    best value; with NaN, the last NaN (propagate) or the first best real
    value (omit; all NaN: the first cell). Returns the winners' ranks."""
    n = len(geom.plans)
    last = tuple(range(x.ndim - n, x.ndim))
    cells = np.moveaxis(x, geom.axes, last)  # batch axes, then pooled
    vals = np.moveaxis(values, geom.axes, last)
    taps = [p.taps for p in geom.plans]
    rank = np.empty(geom.out_shape, dtype=_code_dtype(math.prod(taps)))
    ranks = np.moveaxis(rank, geom.axes, last)
    weights = _weights(taps)
    firsts = [p.first_tap.tolist() for p in geom.plans]
    spans = [p.window_slices() for p in geom.plans]
    arg = np.argmax if op == "max" else np.argmin
    fold, _ = _folds(op, omit)
    for window in itertools.product(*(range(p.out) for p in geom.plans)):
        at: tuple[Any, ...] = (Ellipsis, *window)
        start = sum(f[i] * w for f, i, w in zip(firsts, window, weights, strict=True))
        box = [s[i] for s, i in zip(spans, window, strict=True)]
        if any(b is None for b in box):  # no cell: PyTorch's start, the fill
            vals[at], ranks[at] = fill, start
            continue
        inside: tuple[Any, ...] = (Ellipsis, *box)
        part = cells[inside]
        flat = part.reshape(*part.shape[: x.ndim - n], -1)
        if omit and x.dtype.kind == "f":  # the first best real value (none: 0)
            best = _reduce_kept(fold, flat, flat.ndim - 1, flat.dtype)
            pos = np.argmax(flat == best, axis=-1)
        else:
            pos = np.asarray(arg(flat, axis=-1))
        if not omit and x.dtype.kind == "f":
            _last_nans(flat, pos)
        vals[at] = _pick(flat, pos)
        # the winner's box coordinates are its taps past the first valid one
        ranks[at] = start + _box_rank(pos, part.shape[x.ndim - n :], weights)
    return rank


def _box_rank(pos: Array, box: Sequence[int], weights: Sequence[int]) -> Array:
    """The rank (``weights`` a coordinate) of each row-major position
    ``pos`` in a box of shape ``box``. Not ``np.unravel_index``: NumPy 2.4
    repeats coordinates past 8,192 positions of an array with an axis of
    length 1 (numpy/numpy#31980), which gave wrong indices here."""
    rank = np.zeros(pos.shape, dtype=np.int64)
    rest = pos.astype(np.int64, copy=True)
    for size, weight in zip(reversed(box), reversed(weights), strict=True):
        rest, coord = np.divmod(rest, size)
        rank += coord * weight
    return rank


#: inputs of at most ``_GATHER_CELLS`` cells and of at most this many
#: windows (batch x windows) of at most ``_GATHER_CELLS`` window cells
#: (x taps) track the argmax by one gather and one arg-reduce: the tap
#: loop's three calls a tap cost 1-2 µs each whatever their size (measured,
#: 1 thread: 2-7x faster below 4096 windows of 4-49 taps, and slower from
#: 8192 windows of 2 taps). The gather copies the input where the pooled
#: axes are not the last ones: a large input with few windows keeps the loop.
_GATHER_WINDOWS = 1 << 12
_GATHER_CELLS = 1 << 17


def _gathers(x: Array, geom: Geometry) -> bool:
    """Whether ``_track_gathered`` takes ``x``: small, windows shared by
    every plane."""
    sizes: tuple[int, int, int] | None = geom.__dict__.get("_gather_sizes")
    if sizes is None:  # per plane: cells, windows, taps of a window
        plans = geom.plans
        if not plans or any(p.per_plane for p in plans):
            sizes = (0, 0, 0)  # never
        else:
            sizes = (
                math.prod(p.length for p in plans),
                math.prod(p.out for p in plans),
                math.prod(p.taps for p in plans),
            )
        geom.__dict__["_gather_sizes"] = sizes
    plane, windows, taps = sizes
    if not plane or not 0 < x.size <= _GATHER_CELLS:  # (x.size 0: all padding)
        return False
    windows *= x.size // plane
    return windows <= _GATHER_WINDOWS and windows * taps <= _GATHER_CELLS


class _Gather(NamedTuple):
    """A geometry's windows as tables over the flattened pooled cells.

    ``cells[w, t]``: the cell tap ``t`` of window ``w`` reads, or, where
    the tap lies outside the input, the window's first cell (the tap loop's
    starting winner: wherever a copy of it wins, it is that cell that
    wins); a window with no cell reads ``sentinel`` (one past the last
    cell: the fill value). ``flat[w, t]``: the flat index of that cell (of
    the tap loop's starting rank, for a window with no cell), as
    ``_flat_indices`` gives it. ``valid[w, t]``: the tap lies inside the
    input. ``offsets``: each window's first position in a row of ``cells``.
    """

    cells: IntArray
    flat: IntArray
    valid: npt.NDArray[np.bool_]
    offsets: IntArray
    sentinel: int | None


@functools.lru_cache(maxsize=8)
def _gather_table(plans: tuple[AxisPlan, ...]) -> _Gather:
    """``_Gather`` of a geometry's ``plans`` (shared by its batch blocks,
    which are geometries of their own). The last few are kept (a table
    takes 17 bytes a window cell: up to 2.2 MB each), not one per kept
    geometry."""
    steps = _weights([p.length for p in plans])
    whole = _weights([p.index_length for p in plans])

    def outer(a: Array, b: Array) -> Array:
        """Windows by taps: ``a``'s axes, then ``b``'s, row-major."""
        both = a[:, None, :, None] + b[None, :, None, :]
        return both.reshape(a.shape[0] * b.shape[0], a.shape[1] * b.shape[1])

    cells = flat = np.zeros((1, 1), dtype=np.int64)
    valid = np.ones((1, 1), dtype=bool)
    first_cell = first_flat = np.zeros(1, dtype=np.int64)
    empty = np.zeros(1, dtype=bool)
    for p, step, whole_step in zip(plans, steps, whole, strict=True):
        j = np.arange(p.taps, dtype=np.int64)
        if p.regular:
            origin = np.arange(p.out, dtype=np.int64) * p.stride - p.pad_before
            pos = origin[:, None] + j * p.dilation
            inside = (pos >= 0) & (pos < p.length)
            first = p.first_tap.astype(np.int64)
        else:  # windows [starts, ends): taps past the end are outside
            pos = p.tap_index(j[:, None]).T.astype(np.int64)
            inside = p.tap_valid(j[:, None]).T
            first = np.zeros(p.out, dtype=np.int64)
        start = pos[np.arange(p.out), first]
        cells = outer(cells, pos * step)
        flat = outer(flat, (pos + p.origin) * whole_step)
        # inside on this axis and the ones before: 1 + 1
        valid = outer(valid.astype(np.int8), inside.astype(np.int8)) == 2
        first_cell = (first_cell[:, None] + start * step).reshape(-1)
        first_flat = (first_flat[:, None] + (start + p.origin) * whole_step).reshape(-1)
        empty = (empty[:, None] | ~inside.any(axis=1)).reshape(-1)
    sentinel = math.prod(p.length for p in plans) if empty.any() else None
    if sentinel is not None:
        first_cell[empty] = sentinel
    windows, taps = cells.shape
    return _Gather(
        cells=_frozen(np.where(valid, cells, first_cell[:, None])),
        flat=_frozen(np.where(valid, flat, first_flat[:, None])),
        valid=_frozen(valid),
        offsets=_frozen(np.arange(windows, dtype=np.intp) * taps),
        sentinel=sentinel,
    )


def _track_gathered(
    x: Array, geom: Geometry, op: str, fill: Any, values: Array, flat_into: Array | None
) -> Array:
    """``_track`` of a small input: every window's cells gathered in tap
    order and one arg-reduce over them, with the tap loop's rules: the first
    best cell (a tap outside the input reads the window's first cell, so
    it never changes the winner), and with a NaN the last one inside.
    Fills ``values`` (``fill`` where a window has no cell); returns the
    winners' flat indices."""
    table = _gather_table(geom.plans)
    n = len(geom.plans)
    last = tuple(range(x.ndim - n, x.ndim))
    trailing = geom.axes == last
    moved = x if trailing else np.moveaxis(x, geom.axes, last)  # batch, pooled
    batch_shape = moved.shape[: x.ndim - n]
    batch = math.prod(batch_shape)
    rows = np.ascontiguousarray(moved).reshape(batch, -1)
    if table.sentinel is not None:  # a window with no cell reads the fill
        rows = np.concatenate([rows, np.full((batch, 1), fill, x.dtype)], axis=1)
    taps = table.cells.shape[1]
    got = rows.take(table.cells, axis=1)  # (batch, windows, taps)
    pos = got.argmax(axis=-1) if op == "max" else got.argmin(axis=-1)
    pos += table.offsets  # (batch, windows): positions in a batch row
    in_rows = got.reshape(batch, -1)
    best = in_rows[np.arange(batch)[:, None], pos]
    if x.dtype.kind == "f":
        nan = np.isnan(best)
        if nan.any():  # the last NaN inside the window (not a copied cell)
            b, w = np.nonzero(nan)
            marked = np.isnan(got[b, w]) & table.valid[w]
            pos[b, w] = table.offsets[w] + taps - 1 - marked[:, ::-1].argmax(axis=-1)
            best[b, w] = in_rows[b, pos[b, w]]  # that NaN's bits
    out_shape = batch_shape + tuple(p.out for p in geom.plans)
    flat = np.empty(geom.out_shape, dtype=np.int64) if flat_into is None else flat_into
    if trailing:
        values[...] = best.reshape(values.shape)
        # mode="clip": in range, and "raise" buffers every index
        np.take(table.flat, pos.reshape(flat.shape), out=flat, mode="clip")
    else:
        np.moveaxis(values, geom.axes, last)[...] = best.reshape(out_shape)
        taken = table.flat.take(pos.reshape(out_shape))
        np.moveaxis(flat, geom.axes, last)[...] = taken
    return flat


def _pick(flat: Array, pos: Array) -> Array:
    """``flat[..., pos]`` row by row: on a contiguous ``flat``, one take of
    flat positions (``_take_rows``: 0.3 ms for 64 x 2048 rows of 49 cells,
    where ``take_along_axis`` took 3.4 ms)."""
    if not flat.flags.c_contiguous:  # (flattening it would copy it whole)
        return np.take_along_axis(flat, pos[..., None], axis=-1)[..., 0]
    return _take_rows(flat, pos[..., None], flat.ndim - 1)[..., 0]


def _last_nans(flat: Array, pos: Array) -> None:
    """Point ``pos`` (the arg-reduce of ``flat``'s last axis, which stops
    at a row's first NaN) at each row's last NaN instead."""
    rows = np.isnan(_pick(flat, pos))
    if rows.any():
        nan = np.isnan(flat[rows])
        pos[rows] = flat.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1)


def _track_loop(
    x: Array,
    geom: Geometry,
    fold: np.ufunc,
    better: np.ufunc,
    fill: Any,
    nan_rule: str,
    values: Array,
) -> Array:
    """Fill ``values`` with the running max/min; return the winners' ranks."""
    taps = [p.taps for p in geom.plans]
    code_t = _code_dtype(math.prod(taps))
    values.fill(fill)
    rank = np.zeros(geom.out_shape, dtype=code_t)
    for p, weight in zip(
        geom.plans, _weights(taps), strict=True
    ):  # rank of the first valid tap
        assert p.first_tap is not None
        rank += geom.along(p, p.first_tap * weight).astype(code_t)
    mask = np.empty(geom.out_shape, dtype=bool)
    # a masked copy is one call but slow per cell: for small outputs only
    # (either way the rank becomes r where replaced: ranks only grow)
    select = rank.size <= _SELECT_CELLS
    scratch = None if select else np.empty(geom.out_shape, dtype=code_t)
    for r, v, region in _window_taps(x, geom):
        out, m, c = values[region], mask[region], rank[region]
        better(v, out, out=m)
        if nan_rule == "propagate":
            m |= np.isnan(v)
        elif nan_rule == "omit":
            m |= np.isnan(out) & ~np.isnan(v)
        fold(out, v, out=out)
        if scratch is None:
            np.copyto(c, r, where=m, casting="unsafe")
            continue
        s = scratch[region]
        np.multiply(m.view(code_t) if code_t == np.int8 else m, r, out=s, dtype=code_t)
        np.maximum(c, s, out=c)
    return rank


#: inputs below this many bytes read their strided taps in place (splitting
#: them into phase copies, ``_phases``, pays from about this size on)
_PHASE_BYTES = 1 << 16

#: strides above this read their taps in place: the loops carry a list of
#: ``stride`` phases (a stride of 500,000 took 0.7 s), and a long stride
#: reads few cells a row anyway
_PHASES_MAX = 64

#: outputs up to this many cells update the argmax rank with one masked copy
#: per tap (two calls otherwise, each faster per cell)
_SELECT_CELLS = 1 << 12


def _weights(taps: Sequence[int]) -> list[int]:
    """Row-major strides of a tap rank over the per-axis tap counts."""
    weights, w = [], 1
    for t in reversed(taps):
        weights.append(w)
        w *= t
    return weights[::-1]


def _window_taps(
    src: Array, geom: Geometry
) -> Iterator[tuple[int, Array, tuple[slice, ...]]]:
    """(rank, cells, output region) of every tap of the whole window.

    Regular taps are clipped views (the windows ``region`` whose tap lies in
    the input); irregular ones are gathers, gathered once per outer tap.
    When the innermost pooled axis is the array's contiguous last axis and
    strided, it is first split into contiguous copies of its stride phases
    (``_phases``): every tap then reads contiguous rows, which NumPy's
    SIMD loops run several times faster than a strided read.
    """
    plans = geom.plans
    phases = _phases(src, plans[-1]) if plans else None
    views: list[Array | None] = [src] if phases is None else phases
    return _walk(plans, phases is not None, 0, views, [slice(None)] * src.ndim, 0)


def _walk(
    plans: tuple[AxisPlan, ...],
    phased: bool,
    k: int,
    views: list[Array | None],
    region: list[slice],
    rank: int,
) -> Iterator[tuple[int, Array, tuple[slice, ...]]]:
    """``_window_taps`` from pooled axis ``k`` in. A module function, not a
    closure calling itself: that is a reference cycle, which kept the
    (maybe float64) copies it reads alive until the cyclic GC ran."""
    if k == len(plans):
        cells = views[0]
        assert cells is not None
        yield rank, cells, tuple(region)
        return
    p = plans[k]
    inner = phased and k == len(plans) - 1
    for tap in p.spans():
        if inner:
            subviews: list[Array | None] = [_phase_tap(views, p, tap)]
        else:
            subviews = [None if v is None else _axis_tap(v, p, tap) for v in views]
        sub = list(region)
        sub[p.axis] = tap.windows
        yield from _walk(plans, phased, k + 1, subviews, sub, rank * p.taps + tap.j)


def _phases(src: Array, plan: AxisPlan) -> list[Array | None] | None:
    """Contiguous copies ``src[..., q::stride]`` of the phases ``q`` that the
    taps of ``plan`` read (None for the others), or None where splitting
    does not pay: an irregular or unstrided plan, or an axis that is not
    the contiguous last one."""
    a = plan.axis
    if (
        not plan.regular
        or not 2 <= plan.stride <= _PHASES_MAX
        or plan.stride > src.shape[a]  # one window: nothing to split
        or a != src.ndim - 1
        or src.strides[a] != src.itemsize
        or src.nbytes < _PHASE_BYTES  # small: the copies cost more than they save
    ):
        return None
    s = plan.stride
    used = {_start(tap) % s for tap in plan.spans()}
    views = [src[..., q::s] for q in range(s)]
    sizes = [v.size if q in used else 0 for q, v in enumerate(views)]
    buf = _scratch(sum(sizes) * src.itemsize)
    phases: list[Array | None] = []
    start = 0
    for v, n in zip(views, sizes, strict=True):
        if not n:
            phases.append(None)
            continue
        chunk = buf[start : start + n * src.itemsize].view(src.dtype).reshape(v.shape)
        np.copyto(chunk, v)
        phases.append(chunk)
        start += n * src.itemsize
    return phases


_local = threading.local()


def _scratch(nbytes: int) -> Array:
    """A byte buffer of at least ``nbytes`` for this thread's next block.

    Block-sized buffers are kept and reused (a fresh allocation of this
    size costs more in page faults than the work done in it); larger ones
    are allocated each time. Only one user at a time per thread.
    """
    if nbytes > 4 * BLOCK_BYTES:
        return np.empty(nbytes, dtype=np.uint8)
    buf: Array | None = getattr(_local, "buf", None)
    if buf is None or buf.nbytes < nbytes:
        buf = _local.buf = np.empty(max(nbytes, BLOCK_BYTES), dtype=np.uint8)
    return buf


def _start(tap: Tap) -> int:
    """The first cell a regular tap reads."""
    assert isinstance(tap.cells, slice)
    return int(tap.cells.start)


def _phase_tap(phases: list[Array | None], plan: AxisPlan, tap: Tap) -> Array:
    """``_axis_tap`` of a regular strided plan, read from its phase copies."""
    start, s = _start(tap), plan.stride
    phase = phases[start % s]
    assert phase is not None
    lo = start // s
    return phase[..., lo : lo + tap.windows.stop - tap.windows.start]


def _axis_tap(src: Array, plan: AxisPlan, tap: Tap) -> Array:
    """The cells ``tap`` reads along ``plan.axis``: a view (regular plans)
    or a gather (irregular ones)."""
    if isinstance(tap.cells, slice):
        return src[_index(src.ndim, plan.axis, tap.cells)]
    if tap.cells.ndim == 1:
        return np.take(src, tap.cells, axis=plan.axis)
    cells, a = tap.cells, plan.axis
    # positions drawn per plane: one flat take where the planes are the
    # axes before this one (channels-first; channels-last varies after it)
    if src.flags.c_contiguous and all(n == 1 for n in cells.shape[a + 1 :]):
        return _take_rows(src, cells, a)
    return np.take_along_axis(src, cells, axis=a)


def _take_rows(src: Array, cells: IntArray, axis: int) -> Array:
    """``take_along_axis(src, cells, axis)`` for positions drawn per plane
    (``cells`` broadcasts over the axes after ``axis``), as one take of
    whole rows of those axes, or of cells along the last axis:
    take_along_axis indexes every cell on every axis (4x slower along the
    last axis, 28x before it, on fractional pooling)."""
    lead, length, tail = src.shape[:axis], src.shape[axis], src.shape[axis + 1 :]
    pos = cells[(Ellipsis,) + (0,) * len(tail)]
    origins = np.arange(math.prod(lead), dtype=np.int64).reshape(lead) * length
    rows: Array = np.add(origins[..., None], pos, dtype=np.int64)  # (*lead, out)
    if tail:
        table = src.reshape(math.prod(lead) * length, math.prod(tail))
        taken: Array = np.take(table, rows.ravel(), axis=0)
    else:
        taken = np.take(src.reshape(-1), rows)
    return taken.reshape(*rows.shape, *tail)


def _flat_indices(rank: Array, geom: Geometry, into: Array | None = None) -> Array:
    """Row-major flat index over the pooled axes (ascending), int64.

    Where every window has all its taps (regular windows, and irregular
    ones of one size: fractional pooling) and the kernel is of a reasonable
    size, the index is (window origin) + (a table lookup of the tap's
    offset), two int64 passes; otherwise each axis' tap is decoded from the
    rank (and clipped into its window).
    """
    if geom.kernel_volume <= 1 << 16 and all(_full_windows(p) for p in geom.plans):
        table, origins = _index_table(geom.plans, geom.ndim)
        flat: Array = np.empty(rank.shape, dtype=np.int64) if into is None else into
        # mode="clip": ranks are in range, and "raise" on small-int ranks
        # is ~8x slower (a buffered cast of every index)
        np.take(table, rank, out=flat, mode="clip")
        # one pass over ``flat``; no pooled axis: every index is 0
        origin = functools.reduce(np.add, origins, np.int64(0))
        flat += origin
        return flat
    steps = _weights([p.index_length for p in geom.plans])
    weights = _weights([p.taps for p in geom.plans])
    flat = np.empty(geom.out_shape, dtype=np.int64) if into is None else into
    flat.fill(0)
    for p, step, weight in zip(geom.plans, steps, weights, strict=True):
        code = (rank // weight) % p.taps
        flat += (p.positions(code, geom.ndim) + p.origin) * step
    return flat


def _full_windows(plan: AxisPlan) -> bool:
    """Whether every window of ``plan`` has all ``plan.taps`` taps in order
    (then a tap's offset in its window is the same for all of them)."""
    if plan.regular:
        return True
    assert plan.starts is not None
    assert plan.ends is not None
    full: bool | None = plan.__dict__.get("_full")
    if full is None:
        full = bool(np.all(plan.ends - plan.starts == plan.taps))
        plan.__dict__["_full"] = full
    return full


def _index_table(
    plans: tuple[AxisPlan, ...], ndim: int
) -> tuple[Array, tuple[Array, ...]]:
    """(flat offset of every tap rank, per axis the flat index of each
    window's origin, laid along its axis, or per plane for windows drawn
    per plane) for plans of full windows (``_full_windows``). Regular
    plans' arrays are O(taps + outs), kept per plans (immutable, compared
    by identity) while small: a long axis's origins would outlive the call."""
    if sum(p.out for p in plans) > _TABLES_KEPT or not all(p.regular for p in plans):
        return _build_index_table(plans, ndim)
    return _kept_index_table(plans, ndim)


def _build_index_table(
    plans: tuple[AxisPlan, ...], ndim: int
) -> tuple[Array, tuple[Array, ...]]:
    steps = _weights([p.index_length for p in plans])
    table = np.zeros(1, dtype=np.int64)
    origins = []
    for p, step in zip(plans, steps, strict=True):
        offs = np.arange(p.taps, dtype=np.int64) * (p.dilation * step)
        table = (table[:, None] + offs[None, :]).reshape(-1)
        if p.regular:
            first = np.arange(p.out, dtype=np.int64) * p.stride - p.pad_before
            first = _along(first, p.axis, ndim)
        else:
            assert p.starts is not None
            starts = p.starts.astype(np.int64)
            first = starts if starts.ndim == ndim else _along(starts, p.axis, ndim)
        origins.append(_frozen((first + p.origin) * step))
    return _frozen(table), tuple(origins)


_kept_index_table = functools.lru_cache(maxsize=64)(_build_index_table)


# --------------------------------------------------------------------------
# sum / average / Lp


def _cell_bytes(dtype: np.dtype[Any], red: Reduction, return_indices: bool) -> int:
    """Bytes the results take per output cell: the values (in the dtype
    they are worked out in, and as cast by ``dtype=``), and the indices."""
    if red.op in ("max", "min"):
        size = dtype.itemsize
    else:
        size = _acc_dtype(dtype, red.op).itemsize
    if red.dtype is not None:
        size += red.dtype.itemsize
    return size + (8 if return_indices else 0)


def _acc_dtype(dtype: np.dtype[Any], op: str) -> np.dtype[Any]:
    if dtype.kind == "f":
        return np.promote_types(dtype, np.float32)
    if op == "sum":
        return np.dtype(np.uint64 if dtype.kind == "u" else np.int64)
    return np.dtype(np.float64)


def _summed(
    x: Array, geom: Geometry, red: Reduction, into: Array | None = None
) -> Array:
    """Window sums, averages and Lp norms; called with NumPy's float errors
    ignored (``_pool_block``): inf, NaN and 0/0 are values here."""
    acc = _acc_dtype(x.dtype, red.op)
    omit = red.nan_omit and x.dtype.kind == "f"
    nan_mask = np.isnan(x) if omit else None

    terms = lp_terms(x, red, acc) if red.op in ("lp", "torch_lp") else x
    if nan_mask is not None:
        terms = np.where(nan_mask, 0, terms)

    total = _sum_all(terms, geom, acc, into)
    nan_count = (
        _sum_all(nan_mask, geom, np.dtype(np.int64)) if nan_mask is not None else None
    )

    if red.op == "sum":
        result = total
    elif red.op == "lp":
        p = red.norm_type
        assert p is not None
        # a sum of |x|**p past the float range (or in its subnormals)
        # loses the norm: those windows are summed again, rescaled
        info = np.finfo(acc)
        # (below smallest_normal / eps the terms may be subnormal, each
        # off by up to 2**-149 in float32: redone as well)
        tiny = info.smallest_normal / info.eps
        lost = ~((total >= tiny) & (total <= info.max))
        result = np.power(total, acc.type(1.0 / p), out=total)
        if lost.any():
            _rescaled_norm(x, geom, p, omit, result, lost)
    elif red.op == "torch_lp":
        assert red.norm_type is not None
        count = geom.window_count(include_pad=True).astype(acc)
        result = torch_lp_of_sums(total, count, geom.kernel_volume, x.dtype, red)
    else:  # avg
        uniform = None
        if nan_count is None:
            uniform = geom.uniform_count(include_pad=red.count_include_pad)
        if red.divisor_override is not None:
            divisor: Any = acc.type(red.divisor_override)
        elif uniform is not None:
            divisor = acc.type(uniform)  # every window alike
        else:
            count = geom.window_count(include_pad=red.count_include_pad)
            if nan_count is not None:
                count = count - nan_count
            divisor = count.astype(acc)
        # the sums are a fresh array of the accumulation dtype: divide in place
        result = np.divide(total, divisor, out=total, casting="unsafe")
    if nan_count is not None:
        empty = geom.window_count(include_pad=False) == nan_count
        if np.any(empty):
            result = np.where(empty, acc.type(np.nan), result)
    return np.asarray(result)


def lp_terms(x: Array, red: Reduction, acc: np.dtype[Any]) -> Array:
    """What an Lp window sums, cell by cell: ``|x|**p`` (``op="lp"``), or
    PyTorch's ``x**p`` rounded at each step to the input dtype."""
    p = red.norm_type
    assert p is not None
    base = x.astype(acc, copy=False)
    if red.op == "lp":
        terms: Array = np.power(np.abs(base), acc.type(p))
        return terms
    return _rounded(torch_pow(base, p, half=x.dtype == np.float16), x.dtype)


def torch_lp_of_sums(
    total: Array, count: Any, volume: int, dtype: np.dtype[Any], red: Reduction
) -> Array:
    """PyTorch's lp_pool from its window sums of ``lp_terms``: the average
    pool's mean times the kernel volume, to the power ``1/p``, rounded at
    each step to the input ``dtype``."""
    assert red.norm_type is not None
    acc = total.dtype
    mean = _rounded(total / count, dtype)
    scaled = _rounded(
        np.sign(mean) * np.maximum(np.abs(mean), 0) * acc.type(volume), dtype
    )
    result: Array = torch_pow(scaled, 1.0 / red.norm_type, half=dtype == np.float16)
    return result


def _rescaled_norm(
    x: Array, geom: Geometry, p: float, omit: bool, result: Array, lost: Array
) -> None:
    """Redo the p-norms of the ``lost`` windows as ``m * (sum (|x|/m)**p)**(1/p)``.

    ``m`` is the window's largest ``|x|`` (its smallest for p < 0), so every
    term lies in [0, 1] and one of them is 1: the sum can neither overflow
    nor underflow. Windows whose ``m`` is 0, inf or NaN keep their result,
    which is then exact (0, inf or NaN). Regular windows only: each tap is
    a view, and a cell is read once per window.
    """
    acc = result.dtype
    mag = np.abs(x.astype(acc, copy=False))
    if omit:  # a NaN cell adds nothing: |x|**p is 0 at 0 (p > 0), at inf (p < 0)
        mag = np.where(np.isnan(mag), acc.type(0 if p > 0 else np.inf), mag)
    op = "max" if p > 0 else "min"
    scale = _extreme(mag, geom, op, False, None, 0 if p > 0 else np.inf)
    sums = np.zeros(geom.out_shape, dtype=acc)
    with np.errstate(all="ignore"):
        for _, cells, region in _window_taps(mag, geom):
            sums[region] += np.power(cells / scale[region], acc.type(p))
        norm = scale * np.power(sums, acc.type(1.0 / p))
    redo = lost & np.isfinite(scale) & (scale > 0)
    np.copyto(result, norm, where=redo)


def torch_pow(base: Any, p: float, xp: Any = np, *, half: bool = False) -> Any:
    """``base ** p`` as PyTorch's pow by a scalar.

    For float32 and float64 PyTorch has kernels of its own: ``p = 0.5`` is a
    square root and ``p = -0.5`` one over it (``-inf`` then gives NaN where
    C's pow gives +inf and 0, and ``-0.0`` gives ``-0.0`` and ``-inf``), and
    2, 3 and -2 are products (``b*b``, ``b*b*b``, ``1/(b*b)``); other
    powers are a pow in the base's precision (NumPy's here, as PyTorch's
    vector loop; its scalar loop over an array's last few cells works in
    double and may differ in the last bit). For float16 (``half``: the
    input's dtype, whatever ``base`` was widened to) it calls C's pow with
    ``p`` rounded to float16 (1/3 is 0.33325; 1e-9 is 0), where ``|p|`` is
    within float16's range (PyTorch refuses the others: ndpool keeps ``p``).
    """
    if half:
        return _c_pow(base, float(np.float16(p)) if abs(p) <= _HALF_MAX else p, xp)
    if p in (0.5, -0.5):
        root = xp.sqrt(base)
        return root if p > 0 else 1 / root
    if p == 2:
        return base * base
    if p == 3:
        return base * base * base
    if p == -2:
        return 1 / (base * base)
    return _c_pow(base, p, xp)


_HALF_MAX = float(np.finfo(np.float16).max)


def _c_pow(base: Any, p: float, xp: Any = np) -> Any:
    """C's ``pow(base, p)``, worked out on ``|base|``: NumPy's float32
    power takes a scalar path for negative bases, 50 times slower."""
    mag = xp.abs(base) ** p
    if float(p).is_integer():  # pow(-b, n) is +-pow(b, n), zeros and infs too
        return xp.copysign(mag, base) if p % 2 else mag
    # a negative base (-inf aside) to any other power has no real value
    negative = (base < 0) & (base > -math.inf)
    return xp.where(negative, xp.full_like(mag, math.nan), mag)


def _rounded(values: Array, dtype: np.dtype[Any]) -> Array:
    """``values`` rounded to a narrower float ``dtype`` (float16), kept in
    their own dtype: what PyTorch's half-precision steps store."""
    if dtype.kind != "f" or dtype.itemsize >= values.dtype.itemsize:
        return values
    return values.astype(dtype).astype(values.dtype)


def _sum_all(
    x: Array, geom: Geometry, acc: np.dtype[Any], into: Array | None = None
) -> Array:
    """Window sums, in ``pass_order``."""
    return _fold_all(x, geom, np.add, 0, acc, pass_order(geom, True), into)


def pass_order(geom: Geometry, sums: bool) -> list[AxisPlan]:
    """The order of ``geom``'s passes. Max and min run from the outermost
    axis in (whole rows first); sums from the innermost out, its strided
    taps first, unless its windows are irregular (adaptive, fractional):
    gathering those is cheapest on an array the other axes have shrunk.
    Axes pooled to more cells than they have (adaptive upsampling, padding)
    come last, least widened first, so no intermediate is larger than the
    input or the output. Kept beside the geometry (a block of it has the
    same pooled axes)."""
    kept: dict[bool, list[AxisPlan]] = geom.__dict__.setdefault("_orders", {})
    order = kept.get(sums)
    if order is None:
        plans = list(geom.plans)
        if sums and plans and plans[-1].regular:
            plans.reverse()
        shape = geom.shape

        def widening(p: AxisPlan) -> float:
            ratio = p.out / max(shape[p.axis], 1)
            return ratio if ratio > 1 else 0.0

        order = kept[sums] = sorted(plans, key=widening)
    return order


def _fold_all(
    x: Array,
    geom: Geometry,
    fold: np.ufunc,
    fill: Any,
    acc: np.dtype[Any],
    order: Iterable[AxisPlan],
    into: Array | None = None,
) -> Array:
    """Fold every window of ``x`` with ``fold``, one pooled axis per pass;
    the last pass writes into ``into`` when given (of dtype ``acc``)."""
    plans = list(order)
    if plans and _whole(plans[0]) and all(_whole(p) for p in plans):
        if fold is np.add:
            return _global_sum(x, geom, acc)
        return _global_fold(x, geom, fold, acc, into)
    cur = x
    for i, plan in enumerate(plans):
        last = i == len(plans) - 1
        if not last:
            check_pass(cur.shape, plan, x.size, acc.itemsize)
        cur = _fold_pass(cur, plan, fold, fill, acc, into if last else None, i == 0)
    if cur is x:
        cur = x.astype(acc, copy=True)
    return cur


#: an axis whose live taps outnumber its windows this many times is folded
#: window by window, one reduce each, instead of tap by tap
WINDOW_MAJOR = 8


def window_major(plan: AxisPlan) -> bool:
    """Few windows of many taps (a huge kernel, or adaptive pooling to a few
    cells): a tap loop would take a Python step per tap (a 10**5 kernel took
    0.5 s; PyTorch 1 ms). Windows drawn per plane keep the tap loop."""
    if plan.per_plane:
        return False
    return plan.out * WINDOW_MAJOR < len(plan.live_taps)


#: ``window_major``'s ratio for an axis whose cells are rows of at least
#: ``ROWS_RUN`` contiguous cells (an axis before the last): a window's reduce
#: then runs long vector loops, and a pass is a few large GIL-free calls
#: (adaptive 3-d pooling to 3: 7.8 -> 1.4 ms; 112 -> 5 on 2 threads: 10.0
#: -> 6.8 ms, where gathering each tap's rows kept the threads waiting)
ROWS_MAJOR = 2
ROWS_RUN = 64


def _rows_major(src: Array, plan: AxisPlan) -> bool:
    """Whether a pass over ``src`` folds window by window because its taps
    are long rows and outnumber the windows ``ROWS_MAJOR`` times."""
    a = plan.axis
    if plan.out * ROWS_MAJOR >= len(plan.live_taps) or a == src.ndim - 1:
        return False
    return not plan.per_plane and math.prod(src.shape[a + 1 :]) >= ROWS_RUN


def check_pass(shape: Sequence[int], plan: AxisPlan, size: int, itemsize: int) -> None:
    """Refuse (ValueError) a pass over ``plan`` of an array of ``shape``
    whose result no memory holds, where the input (``size`` cells) fits: a
    pass may widen an axis that the next ones shrink (padded windows beside
    an axis summed whole). ``itemsize``: the bytes a result cell takes."""
    after = list(shape)
    after[plan.axis] = plan.out
    if math.prod(after) > size:
        name = "the pooling arguments (between two axes' passes)"
        check_output_size(after, name, itemsize=itemsize)


def _whole(plan: AxisPlan) -> bool:
    """One window spanning the whole axis."""
    return plan.full_axis


#: channels-last planes (contiguous, with at least this many cells along
#: the last axis, a batch axis) are summed in place, a vector add of a row
#: of channels per cell: a transposed copy into rows took 3-25x longer from
#: 16 channels on ((64,7,7,2048) float32: 18.4 against 0.8 ms) and was
#: faster with 3 (3.1 against 5.2 ms)
_CHANNELS_IN_PLACE = 8


def _sum_layout(x: Array, pooled: tuple[int, ...]) -> str | None:
    """How ``_global_sum`` reads ``x`` without a copy: ``"rows"`` (the
    pooled axes are the trailing ones of a contiguous array),
    ``"channels"`` (they are followed by enough contiguous channels), or
    None (a transposed copy into rows first). A batch block of ``x``
    (``_blocks``) is read in place only where ``x`` is, and copied rows
    sum as the rows of a contiguous ``x`` do, so no thread count changes a
    sum's order."""
    if pooled == tuple(range(x.ndim - len(pooled), x.ndim)):
        return "rows" if x.flags.c_contiguous else None
    if x.ndim - 1 in pooled or x.shape[-1] < _CHANNELS_IN_PLACE:
        return None
    return "channels" if _one_run_from(x, pooled[0]) else None


def _global_sum(x: Array, geom: Geometry, acc: np.dtype[Any]) -> Array:
    """Sum over whole axes, by einsum: the window cells as the rows of a
    matrix (a view for trailing axes of a contiguous array, a copy
    otherwise), or, channels last, the planes cell after cell in place
    (``_channel_sums``). A sum's order follows the layout, never how its
    rows are shared out among threads."""
    pooled = geom.axes
    layout = _sum_layout(x, pooled)
    if layout == "channels":
        return _channel_sums(x, geom, acc)
    if layout is None:
        order = [a for a in range(x.ndim) if a not in pooled] + list(pooled)
        x = np.transpose(x, order)
    cells = math.prod(x.shape[x.ndim - len(pooled) :])
    matrix = np.ascontiguousarray(x).reshape(-1, cells)
    total = np.empty(matrix.shape[0], dtype=acc)
    # two rows a span at least: einsum sums a lone row of over 8,192 cells
    # in other chunks than the same row among others (other bits)
    threads = _global_threads(matrix.nbytes, len(total) // 2)
    if threads <= 1:
        _row_sums(matrix, total, 0, len(total))
    else:
        spans = _spans(len(total), threads)
        share(lambda e: _row_sums(matrix, total, *e), spans, threads)
    return total.reshape(geom.out_shape)


def _channel_sums(x: Array, geom: Geometry, acc: np.dtype[Any]) -> Array:
    """``_global_sum`` of planes followed by contiguous channels: one einsum
    adds each plane's cells in row-major order, each add a whole row of
    channels. Spans of the outermost batch axis go to threads."""
    total = np.empty(geom.out_shape, dtype=acc)
    kept = [a for a in range(x.ndim) if a not in geom.axes]
    sums = total.reshape([x.shape[a] for a in kept])  # drops axes of length 1
    outer = [a for a in kept if a < geom.axes[0] and x.shape[a] > 1]
    if not outer:
        np.einsum(x, list(range(x.ndim)), kept, dtype=acc, casting="unsafe", out=sums)
        return total
    axis = outer[0]
    at = kept.index(axis)

    def run(span: tuple[int, int]) -> None:
        np.einsum(
            x[_index(x.ndim, axis, slice(*span))],
            list(range(x.ndim)),
            kept,
            dtype=acc,
            casting="unsafe",
            out=sums[_index(sums.ndim, at, slice(*span))],
        )

    threads = _global_threads(x.nbytes, x.shape[axis])
    share(run, _spans(x.shape[axis], max(threads, 1)), threads)
    return total


def _global_threads(nbytes: int, rows: int) -> int:
    """Threads for a global reduction of ``nbytes`` over ``rows``
    independent rows, one span each: one a block. Below that, waking a
    helper and waiting for it costs more than it saves (measured, sums on
    2 threads against 1: 2 MB 82 against 40 µs, 8 MB 142 against 148 µs,
    12.8 MB 180 against 225 µs, 24 MB 0.51 against 0.81 ms)."""
    return min(get_num_threads(), nbytes // BLOCK_BYTES, rows)


def _global_fold(
    x: Array, geom: Geometry, fold: np.ufunc, acc: np.dtype[Any], into: Array | None
) -> Array:
    """Max or min over whole axes: one reduce over all of them (a reduce
    per axis would take one short-row call per cell of the axes left).
    Large inputs share out spans of the outermost batch axis."""
    out = np.empty(geom.out_shape, dtype=acc) if into is None else into
    pooled = set(geom.axes)
    batch = [a for a in range(x.ndim) if a not in pooled and x.shape[a] > 1]
    axis = batch[0] if batch else 0
    threads = _global_threads(x.nbytes, x.shape[axis] if batch else 1)

    def run(span: tuple[int, int]) -> None:
        part = _index(x.ndim, axis, slice(*span))
        with np.errstate(invalid="ignore"):  # a NaN is a value here, not an error
            _reduce_kept(fold, x[part], geom.axes, acc, out[part])

    share(run, _spans(x.shape[axis], max(threads, 1)), threads)
    return out


def _reduce_kept(
    fold: np.ufunc,
    src: Array,
    axes: int | tuple[int, ...],
    dtype: np.dtype[Any],
    out: Array | None = None,
) -> Array:
    """``fold.reduce(src, axis=axes, keepdims=True, dtype=dtype, out=out)``.

    A max or min over trailing axes that make one run of contiguous cells
    goes through ``fold.reduceat`` over that run instead: the same loop on
    each row (the same bits, the signs of zeros and NaN included) without
    the reduce's cost per row, 2-2.7x faster on rows of 9 to 196 cells
    and alike from a few thousand (measured: float32, float64, uint8).
    Other axes keep the reduce, which folds whole rows at a time.
    """
    rows = None if fold is np.add else _one_run(src, axes)
    if rows is None:
        return np.asarray(
            fold.reduce(src, axis=axes, keepdims=True, dtype=dtype, out=out)
        )
    batch = rows.shape[:-1]
    if out is None:
        out = np.empty(batch + (1,) * (src.ndim - len(batch)), dtype)
    # a view, whatever out's strides: only axes of length 1 go or come
    fold.reduceat(rows, [0], axis=-1, dtype=dtype, out=out.reshape(*batch, 1))
    return out


def _one_run(src: Array, axes: int | tuple[int, ...]) -> Array | None:
    """``src`` with its ``axes`` merged into one last axis, where they are
    its trailing axes and their cells one contiguous run (a view), else
    None."""
    axes = (axes,) if isinstance(axes, int) else axes
    first = src.ndim - len(axes)
    if sorted(axes) != list(range(first, src.ndim)) or src.size == 0:
        return None
    if not _one_run_from(src, first):
        return None
    return src.reshape(*src.shape[:first], -1)


def _one_run_from(x: Array, first: int) -> bool:
    """Whether the cells of ``x``'s axes from ``first`` on are one
    contiguous run in row-major order (axes of length 1 aside)."""
    step = x.itemsize
    for d in range(x.ndim - 1, first - 1, -1):
        if x.shape[d] > 1 and x.strides[d] != step:
            return False
        step *= x.shape[d]
    return True


def _row_sums(matrix: Array, total: Array, lo: int, hi: int) -> None:
    np.einsum(
        "ij->i", matrix[lo:hi], dtype=total.dtype, casting="unsafe", out=total[lo:hi]
    )


def _fold_pass(
    src: Array,
    plan: AxisPlan,
    fold: np.ufunc,
    fill: Any,
    acc: np.dtype[Any],
    into: Array | None = None,
    first: bool = True,
) -> Array:
    """Fold the taps of one axis: two taps every window has initialise the
    output (no fill pass), the others fold in place on the windows whose tap
    lies inside the input (no padded copy). The output is ``into`` if given;
    ``first``: the first pass over the block (``_direct``)."""
    a = plan.axis
    if _whole(plan):
        with np.errstate(invalid="ignore"):  # a NaN is a value here, not an error
            return _reduce_kept(fold, src, a, acc, into)
    shape = list(src.shape)
    shape[a] = plan.out
    out = np.empty(shape, dtype=acc) if into is None else into
    if window_major(plan) or _rows_major(src, plan):
        for i, span in enumerate(plan.window_slices()):
            dest = out[_index(src.ndim, a, slice(i, i + 1))]
            if span is None:  # a window with no cell (dilation)
                dest.fill(fill)
                continue
            with np.errstate(invalid="ignore"):
                part = src[_index(src.ndim, a, span)]
                _reduce_kept(fold, part, a, acc, dest)
        return out

    if _gathers_taps(src, plan):
        _gathered_pass(src, plan, fold, acc, out)
        return out
    sched = _schedule(plan, src.ndim)
    if first and src.nbytes >= _DIRECT_BYTES and _direct(src, plan, acc):
        # per thread (NumPy 1.x: the thread's state; 2.x: its context)
        old = np.setbufsize(_DIRECT_BUFSIZE)
        try:
            _fold_taps(src, plan, sched, fold, fill, acc, out)
        finally:
            np.setbufsize(old)
    else:
        # NumPy's max and min read strided cells slowly (its add does not):
        # a first pass along a strided last axis reads phase copies
        phases = _phases(src, plan) if first and fold is not np.add else None
        _fold_taps(src, plan, sched, fold, fill, acc, out, phases)
    return out


#: a pass over irregular windows (adaptive pooling) whose taps read at most
#: this many cells in all gathers them at once and folds them with one
#: reduce: the tap loop's 2-3 calls a tap cost 1-2 µs each whatever their
#: size (measured on (2,3,14,14): adaptive average to 3, 52 to 34 µs; to
#: 5, 43 to 35 µs)
_GATHER_PASS_CELLS = 1 << 15


def _gathers_taps(src: Array, plan: AxisPlan) -> bool:
    """Whether ``_fold_pass`` folds ``plan`` by ``_gathered_pass``: small,
    irregular windows shared by every plane, at least two of them (then the
    reduce runs tap by tap, never along its own inner loop, whose pairwise
    sums would add in another order than the tap loop)."""
    if plan.regular or plan.per_plane or plan.out < 2 or src.size == 0:
        return False
    cells: int = src.size // src.shape[plan.axis] * plan.out * plan.taps
    return cells <= _GATHER_PASS_CELLS


def _gathered_pass(
    src: Array, plan: AxisPlan, fold: np.ufunc, acc: np.dtype[Any], out: Array
) -> None:
    """The tap loop of an irregular plan as one gather of every tap (a new
    axis before the plan's) and one reduce over it: the same folds in the
    same order (tap 0 with tap 1, then each next tap), so the same sums to
    the bit. Not quite the same max: which zero NumPy's ``fmax`` keeps of
    ``0.0`` and ``-0.0`` depends on the cell's place in its loop (the
    sign of a zero maximum, ``docs/differences.md``)."""
    a = plan.axis
    cells, valid = _tap_table(plan)
    got = np.take(src, cells, axis=a)  # (..., taps, out, ...)
    if fold is np.add and valid is not None:  # clipped taps repeat a cell
        got = np.where(valid.reshape(valid.shape + (1,) * (src.ndim - a - 1)), got, 0)
    # an add reduce starts from its identity, 0.0, where the tap loop starts
    # from tap 0: -0.0 + t is t to the bit (a window of -0.0 sums to -0.0)
    start = {"initial": -0.0} if fold is np.add else {}
    with np.errstate(invalid="ignore"):  # a NaN is a value here, not an error
        fold.reduce(got, axis=a, dtype=acc, out=out, **start)


_TapTable = tuple[IntArray, npt.NDArray[np.bool_] | None]


def _tap_table(plan: AxisPlan) -> _TapTable:
    """(taps, out) positions every tap of an irregular plan reads (clipped
    into its window), and which lie in their window (None: all); kept with
    the plan while small."""
    found: _TapTable | None = plan.__dict__.get("_tap_table")
    if found is not None:
        return found
    taps = np.arange(plan.taps)[:, None]
    valid = plan.tap_valid(taps)
    cells = plan.tap_index(taps).astype(np.intp)
    kept: _TapTable = (_frozen(cells), None if valid.all() else _frozen(valid))
    if cells.size <= _TABLES_KEPT:
        plan.__dict__["_tap_table"] = kept
    return kept


def _fold_taps(
    src: Array,
    plan: AxisPlan,
    sched: _Schedule,
    fold: np.ufunc,
    fill: Any,
    acc: np.dtype[Any],
    out: Array,
    phases: list[Array | None] | None = None,
) -> None:
    """``_fold_pass``'s tap loop, into ``out``; regular taps read from
    ``phases`` where given (``_phases``)."""
    a = plan.axis

    def cells(step: _Step) -> Array:
        if step.read is not None:
            if phases is not None:
                return _phase_tap(phases, plan, step.tap)
            return src[step.read]
        tap = step.tap
        v = _axis_tap(src, plan, tap)
        if fold is np.add and tap.valid is not None:  # clipped taps repeat a cell
            valid = tap.valid
            v = np.where(valid if valid.ndim != 1 else _along(valid, a, src.ndim), v, 0)
        return v

    if not sched.first:
        out.fill(fill)
    elif len(sched.first) == 1:
        np.copyto(out, cells(sched.first[0]), casting="unsafe")
    else:
        # two taps initialise the output: every window has the first
        base, second = cells(sched.first[0]), sched.first[1]
        fold(base[second.into], cells(second), out=out[second.into], dtype=acc)
        for edge in sched.edges:
            np.copyto(out[edge], base[edge], casting="unsafe")
    for step in sched.rest:
        part = out[step.into]
        fold(part, cells(step), out=part, dtype=acc)


#: NumPy (2.3 on) copies the non-contiguous operands of a ufunc through
#: buffers of this many cells to give its loop longer runs; on a block fresh
#: from memory, reading rows of at least ``_DIRECT_RUN`` cells in place is
#: faster (measured: 1.6x on S1's first pass, rows of 112; 1.8x on
#: ``max_pool1d(x, 3, 1, 1)``, rows of 1024), on the cache-hot arrays of the
#: later passes it is not (rows of 64: 2x slower). A buffer this small is
#: never used: the loop runs on the operands themselves.
_DIRECT_BUFSIZE = 16
_DIRECT_RUN = 64
_DIRECT_BYTES = 1 << 16


def _direct(src: Array, plan: AxisPlan, acc: np.dtype[Any]) -> bool:
    """Whether the first pass over a large block should read its taps in
    place, not through ufunc buffers: without a cast, and where its taps are
    runs of at least ``_DIRECT_RUN`` contiguous cells."""
    if src.dtype != acc:
        return False
    a = plan.axis
    if not _one_run_from(src, a + 1):  # the axes after ``a``
        return False
    if a == src.ndim - 1:  # the taps run along the axis: unit strides only
        unit = plan.regular and plan.stride == 1 and src.strides[a] == src.itemsize
        run = plan.out if unit else 0
    else:  # each tap is whole rows of the axes after this one
        run = math.prod(src.shape[a + 1 :])
    return run >= _DIRECT_RUN


class _Step(NamedTuple):
    """One tap of a pass: the index of its cells (None: gathered, irregular
    windows) and of the output windows it folds into."""

    tap: Tap
    read: tuple[slice, ...] | None
    into: tuple[slice, ...]


class _Schedule(NamedTuple):
    """A pass's taps in order: ``first`` initialise the output (none: the
    fill; one: a copy; two: the first, which every window has, folded with
    the second, and copied to the ``edges`` the second misses), then every
    step of ``rest`` folds into its windows."""

    first: tuple[_Step, ...]
    edges: tuple[tuple[slice, ...], ...]
    rest: tuple[_Step, ...]


def _schedule(plan: AxisPlan, ndim: int) -> _Schedule:
    """``plan``'s pass over an ``ndim``-D array, worked out once per plan
    and kept beside its taps (unless those are not kept: a huge kernel)."""
    kept: dict[int, _Schedule] | None = plan.__dict__.get("_schedules")
    if kept is not None and ndim in kept:
        return kept[ndim]
    taps = plan.spans()
    a = plan.axis

    def step(tap: Tap) -> _Step:
        read = _index(ndim, a, tap.cells) if isinstance(tap.cells, slice) else None
        return _Step(tap, read, _index(ndim, a, tap.windows))

    steps = [step(t) for t in taps]
    every = slice(0, plan.out)
    first = [s for s in steps if s.tap.windows == every][:2]
    rest = [s for s in steps if not any(s is f for f in first)]
    edges: list[tuple[slice, ...]] = []
    if first and rest and len(first) == 1:
        first.append(rest.pop(0))
    if len(first) == 2:
        span = first[1].tap.windows
        edges = [_index(ndim, a, e) for e in _outside(span, plan.out)]
    sched = _Schedule(tuple(first), tuple(edges), tuple(rest))
    if isinstance(taps, tuple):  # the plan keeps its taps: keep this too
        plan.__dict__.setdefault("_schedules", {})[ndim] = sched
    return sched


def _outside(span: slice, n: int) -> list[slice]:
    """The parts of ``0:n`` outside ``span``."""
    lo = 0 if span.start is None else int(span.start)
    hi = n if span.stop is None else int(span.stop)
    return [s for s in (slice(0, lo), slice(hi, n)) if s.stop > s.start]


# --------------------------------------------------------------------------
# shared helpers


def _cast(values: Array, dtype: np.dtype[Any] | None) -> Array:
    if dtype is None or values.dtype == dtype:
        return values
    if dtype.kind in "iub" and values.dtype.kind == "f":
        if dtype.kind == "b":
            return np.asarray(values != 0)
        info = np.iinfo(dtype)
        rounded = np.rint(values)
        # compared in the values' float type, where a limit like 2**63 - 1
        # rounds up to 2**63: a value that reaches it is out of range
        with np.errstate(invalid="ignore"):
            top, bottom = rounded >= info.max, rounded <= info.min
        inside = np.where(top | bottom | np.isnan(rounded), 0, rounded)
        out = np.asarray(inside.astype(dtype))
        out[top], out[bottom] = info.max, info.min
        return out
    if dtype.kind in "iu" and values.dtype.kind in "iu":  # saturate, never wrap
        src, dst = np.iinfo(values.dtype), np.iinfo(dtype)
        lo, hi = max(src.min, dst.min), min(src.max, dst.max)
        return np.asarray(np.clip(values, lo, hi).astype(dtype))
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
    cells = int(np.prod(xt.shape[x.ndim - nd :], dtype=np.int64))
    x2 = xt.reshape(n_batch, cells)  # not -1: n_batch may be 0
    i2 = it.reshape(n_batch, cells)
    if i2.size and plane:  # as PyTorch: an empty output checks no index
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
    if plane:
        flat[np.arange(n_batch)[:, None], i2] = x2
    out = flat.reshape(batch_shape + tuple(out_sizes))
    return np.ascontiguousarray(np.transpose(out, np.argsort(order)))
