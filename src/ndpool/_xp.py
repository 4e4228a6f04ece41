"""Array-API backends: the same per-axis tap passes, in standard operations.

For input that is neither a NumPy nor a Dask array (a PyTorch tensor, a CuPy
or JAX array, ``array_api_strict``), the plans of ``_geometry`` run here,
written only with functions of the Array API standard (``where``,
``take``, strided slicing, ``concat``) and without in-place writes, so
immutable arrays (JAX) work too. The result is the same kind of array on
the same device; no data goes through NumPy (only the small per-axis index
vectors of the geometry are built on the host and moved to the device).

As in the core, nothing is padded: a tap reads the windows whose cell is
inside the input, and the others are filled in at the output's size
(``_widen``); a gradient goes back to the cells a tap read, and no further
(``_placements``). A huge kernel or stride costs what its real cells cost,
and an axis of few windows of many taps (``_core.window_major``) is
reduced, and its gradient placed, a window at a time.

The NumPy core (``_core``) runs the identical algorithm with in-place,
cache-blocked NumPy ufuncs; the two agree bit for bit on max/min/indices,
and their tap loops add sums and gradients in the same order.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ._core import (
    _acc_dtype,
    _cell_bytes,
    _fill_value,
    _index,
    _schedule,
    check_pass,
    is_dask,
    native_order,
    pass_order,
    torch_pow,
    window_major,
)
from ._geometry import (
    AxisPlan,
    Geometry,
    IntArray,
    Tap,
    check_output_size,
    unit_geometry,
)

__all__ = [
    "astype",
    "host_dtype",
    "namespace",
    "pairs_xp",
    "pool_xp",
    "route_xp",
    "sum_adjoint_xp",
    "to_host",
    "unpool_xp",
]

_FOREIGN = ("torch", "cupy", "jax", "jaxlib", "array_api_strict", "sparse", "ndonnx")
_NAMES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
)


def namespace(x: object) -> Any | None:
    """The Array-API namespace of a non-NumPy array; None for NumPy input."""
    if isinstance(x, (np.ndarray, np.generic)):
        return None
    module = type(x).__module__.split(".")[0]
    if module == "dask":
        return None
    if not (hasattr(x, "__array_namespace__") or module in _FOREIGN):
        return None
    try:
        import array_api_compat
    except ImportError:  # pragma: no cover - depends on the environment
        msg = (
            f"pooling a {type(x).__module__}.{type(x).__name__} needs the optional "
            "dependency array-api-compat: pip install 'ndpool[array-api]'"
        )
        raise TypeError(msg) from None
    return array_api_compat.array_namespace(x)


def np_dtype(xp: Any, dtype: Any) -> np.dtype[Any]:
    """The NumPy dtype with the same name as an Array-API dtype."""
    for name in _NAMES:
        if getattr(xp, name, None) == dtype:
            return np.dtype(name)
    hint = (
        " (bfloat16 to float32 keeps every value)" if "bfloat16" in str(dtype) else ""
    )
    msg = (
        f"input has dtype {dtype}, which ndpool cannot pool: it pools "
        f"{', '.join(_NAMES)}; cast it to one of those first{hint}"
    )
    raise TypeError(msg)


def host_dtype(x: Any) -> np.dtype[Any]:
    """The NumPy dtype of any supported array (NumPy, Dask or Array-API)."""
    xp = namespace(x)
    if xp is None:
        dtype: np.dtype[Any] = np.dtype(x.dtype)
        return dtype
    return np_dtype(xp, x.dtype)


def astype(x: Any, dtype: np.dtype[Any]) -> Any:
    """``x`` cast to a NumPy-named dtype, in its own array library (a Dask
    array stays lazy)."""
    xp = namespace(x)
    if xp is None:
        if is_dask(x):
            return x.astype(dtype)
        return np.asarray(x).astype(dtype)
    return xp.astype(x, _xp_dtype(xp, dtype))


def to_host(x: Any) -> np.ndarray[Any, Any]:
    """A small parameter array (random samples) as NumPy, from any library."""
    if namespace(x) is None:
        return np.asarray(x)
    module = type(x).__module__
    if hasattr(x, "get") and module.startswith("cupy"):
        return np.asarray(x.get())
    if module.startswith("torch"):  # DLPack refuses a tensor that needs grad
        return np.asarray(x.detach().cpu().numpy())
    return np.from_dlpack(x)


def readable(a: Any) -> bool:
    """Whether ``a``'s values can be read on the host now: not a torch
    tensor on the "meta" device (shapes only), nor a JAX tracer (inside
    ``jax.jit``). Where they cannot, a check of the values is skipped and
    a branch on them takes the path right for any value."""
    if getattr(a, "is_meta", False):
        return False
    # a JAX tracer's classes derive from jax's ``Tracer`` (no jax import)
    return not any(
        c.__name__ == "Tracer" and c.__module__.startswith("jax")
        for c in type(a).__mro__
    )


def to_library(xp: Any, a: Any, like: Any, name: str) -> Any:
    """``a`` as an array of ``xp`` on ``like``'s device, for an argument
    beside an Array-API input (a gradient, unpooling indices): an array of
    that library as it is, NumPy data (arrays, lists, scalars) moved there;
    another library's array is a TypeError naming ``name``."""
    if namespace(a) is xp:
        return a
    if namespace(a) is not None or is_dask(a):
        given = type(a)
        msg = (
            f"{name} must be an array of the input's library "
            f"({type(like).__module__}.{type(like).__name__}) or NumPy data, "
            f"got {given.__module__}.{given.__qualname__}"
        )
        raise TypeError(msg)
    return xp.asarray(native_order(np.asarray(a)), device=_device(like))


def _xp_dtype(xp: Any, dtype: np.dtype[Any]) -> Any:
    found = getattr(xp, dtype.name, None)
    if found is None:
        msg = f"the array library {xp.__name__} has no dtype {dtype.name}"
        raise TypeError(msg)
    return found


def _need(xp: Any, name: str) -> Any:
    fn = getattr(xp, name, None)
    if fn is None:
        msg = (
            f"the array library {xp.__name__} lacks {name}(), which ndpool needs "
            "for this pooling call; convert the input to a NumPy array instead"
        )
        raise TypeError(msg)
    return fn


def _device(x: Any) -> Any:
    import array_api_compat

    return array_api_compat.device(x)


def _scalar(xp: Any, value: Any, dtype: Any, like: Any) -> Any:
    """A 0-d array of ``value`` on ``like``'s device: arrays of two devices
    do not mix (``array_api_strict``'s devices, CuPy's GPUs)."""
    return xp.asarray(value, dtype=dtype, device=_device(like))


def _const(xp: Any, values: Any, like: Any, dtype: Any = None) -> Any:
    """A small host-side index or count array, moved to ``like``'s device."""
    return xp.asarray(np.array(values), dtype=dtype, device=_device(like))


def _along(xp: Any, vec: Any, axis: int, ndim: int) -> Any:
    shape = [1] * ndim
    shape[axis] = -1
    return xp.reshape(vec, tuple(shape))


def pool_xp(x: Any, geom: Geometry, red: Any, return_indices: bool) -> Any:
    """``_core.pool_core`` for an Array-API array."""
    xp = namespace(x)
    assert xp is not None
    dtype = np_dtype(xp, x.dtype)
    # as the core: an output no memory holds is refused before any work,
    # and an empty one loops over no tap
    itemsize = _cell_bytes(dtype, red, return_indices)
    check_output_size(geom.out_shape, "the pooling arguments", itemsize=itemsize)
    if math.prod(geom.out_shape) == 0:
        return _empty_result(xp, x, geom, red, return_indices)
    if red.op == "lp" and red.norm_type == np.inf:
        # as the core: integers in float64 (no abs overflow, no bool abs)
        mag = xp.abs(x if dtype.kind == "f" else astype(x, np.dtype(np.float64)))
        omit = red.nan_omit and dtype.kind == "f"
        # a window with no cell has norm 0, as for any p (omit: NaN, as p)
        values, _ = _compare(xp, mag, geom, "max", omit, None if omit else 0)
        return _cast(xp, values, red.dtype)
    if red.op in ("max", "min"):
        omit = red.nan_omit and dtype.kind == "f"
        src, fill = x, None
        wide = dtype.kind == "u" and not _native(xp, dtype, x)
        if wide:  # compared as int64 in the same order, from the same fill
            src = _signed_order(xp, x, dtype)
            fill = int(_fill_value(dtype, red.op, omit))
            fill -= 2**63 if dtype == np.uint64 else 0
        values, codes = _compare(
            xp, src, geom, red.op, omit, fill, track=return_indices
        )
        if wide:  # back from the order-preserving int64 domain
            values = _from_wrapped(xp, _signed_order(xp, values, dtype), dtype, red)
        else:
            values = _cast(xp, values, red.dtype)
        if return_indices:
            return values, _flat_indices(xp, codes, geom, values)
        return values
    acc = _acc_dtype(dtype, red.op)
    if acc.kind == "u" and not _native(xp, acc, x):
        # unsigned sums in int64: the same bits, as addition wraps alike
        total = _summed(xp, x, dtype, geom, red, np.dtype(np.int64))
        return _from_wrapped(xp, total, acc, red)
    out_dtype = red.dtype
    if out_dtype is None and dtype.kind == "f":
        out_dtype = dtype  # float16 sums in float32 but keeps its dtype
    # NumPy-backed libraries (array_api_strict) warn as NumPy would: inf
    # and NaN are values here, as in the core
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return _cast(xp, _summed(xp, x, dtype, geom, red), out_dtype)


def _empty_result(
    xp: Any, x: Any, geom: Geometry, red: Any, return_indices: bool
) -> Any:
    """The empty output of ``geom``, in the dtypes of one cell pooled by a
    one-cell window (they follow only the op and the input dtype)."""
    unit = unit_geometry(x.ndim, geom.axes)
    cell = xp.zeros((1,) * x.ndim, dtype=x.dtype, device=_device(x))
    probe = pool_xp(cell, unit, red, return_indices)
    outs = tuple(
        xp.empty(geom.out_shape, dtype=p.dtype, device=_device(x))
        for p in (probe if return_indices else (probe,))
    )
    return outs if return_indices else outs[0]


# --------------------------------------------------------------------------
# unsigned dtypes a library cannot add or compare (PyTorch: uint16/32/64)

_NATIVE: dict[tuple[str, str, str], bool] = {}


def _native(xp: Any, dtype: np.dtype[Any], like: Any) -> bool:
    """Whether ``xp`` adds and compares ``dtype`` arrays on ``like``'s device
    (PyTorch has neither for uint16/32/64 on the CPU), probed once."""
    device = _device(like)
    key = (xp.__name__, dtype.name, str(device))
    found = _NATIVE.get(key)
    if found is None:
        probe = xp.zeros((1,), dtype=_xp_dtype(xp, dtype), device=device)
        try:
            xp.greater(probe, probe)
            xp.add(probe, probe)
            found = True
        except (NotImplementedError, RuntimeError, TypeError):
            found = False
        _NATIVE[key] = found
    return found


def _signed_order(xp: Any, x: Any, dtype: np.dtype[Any]) -> Any:
    """An unsigned ``x`` as int64 in the same order (uint64: its bits with
    the top one flipped, ``u - 2**63``); applied to such int64 values, the
    uint64 bits back as int64 (``_from_wrapped`` reads them)."""
    if dtype != np.uint64:
        return xp.astype(x, xp.int64)  # exact: uint8/16/32 fit int64
    wrapped = xp.astype(x, xp.int64) if x.dtype != xp.int64 else x
    top = xp.asarray(np.iinfo(np.int64).min, dtype=xp.int64, device=_device(x))
    return xp.bitwise_xor(wrapped, top)


def _from_wrapped(xp: Any, w: Any, dtype: np.dtype[Any], red: Any) -> Any:
    """The unsigned ``dtype`` values whose bits the int64 ``w`` holds (those
    of uint64 wrap to negative past 2**63), cast to ``red.dtype`` as
    ``_core._cast`` does: rounded, saturated, never wrapped."""
    want = dtype if red.dtype is None else red.dtype
    if want == dtype or want.kind == "f":  # int64 -> unsigned wraps back
        return _cast(xp, xp.astype(w, _xp_dtype(xp, dtype)), want)
    out = _cast(xp, w, want)  # the values below 2**63, saturated
    if dtype == np.uint64 and want.kind in "iu":  # the others are >= 2**63
        top = xp.asarray(np.iinfo(want).max, dtype=out.dtype, device=_device(w))
        out = xp.where(w < 0, top, out)
    return out


# --------------------------------------------------------------------------
# max / min


def _compare(
    xp: Any,
    x: Any,
    geom: Geometry,
    op: str,
    omit: bool,
    fill: Any = None,
    *,
    track: bool = False,
) -> tuple[Any, dict[int, Any]]:
    """Max or min over the windows, one axis pass at a time (innermost
    first); with ``track``, also the codes ``_flat_indices`` reads: per axis,
    the tap that won. A tap is compared only where it lies inside the input
    (``_widen``); the windows it misses see ``fill``, which never wins."""
    dtype = np_dtype(xp, x.dtype)
    if fill is None:
        fill = _fill_value(dtype, op, omit)
    if dtype.kind == "b":  # no order on bools in the standard: True > False
        better: Any = (lambda v, o: v & ~o) if op == "max" else (lambda v, o: ~v & o)
    else:
        better = xp.greater if op == "max" else xp.less
    is_float = dtype.kind == "f"
    cur = x
    codes: dict[int, Any] = {}
    plans = geom.plans[::-1]
    for i, plan in enumerate(plans):
        a = plan.axis
        if i < len(plans) - 1:  # as the core: a pass no memory holds
            cell_bytes = np_dtype(xp, cur.dtype).itemsize + (
                8 * (len(codes) + 1) if track else 0
            )
            check_pass(cur.shape, plan, math.prod(x.shape), cell_bytes)
        if window_major(plan):  # few windows of many taps: a reduce each
            if track:
                cur, codes = _track_by_window(
                    xp, cur, codes, geom, plan, op, omit, fill
                )
            else:
                cur = _by_window(xp, cur, plan, _extreme(xp, dtype, op, omit), fill)
            continue
        shape = list(cur.shape)
        shape[a] = plan.out
        out = xp.full(tuple(shape), fill, dtype=cur.dtype, device=_device(cur))
        carried = {}
        if track:  # a window no tap wins keeps its first taps, as in the core
            for b in (*codes, a):
                carried[b] = _first_taps(xp, geom, b, cur, tuple(shape))
        for tap in plan.spans():
            v = _widen(xp, _take(xp, cur, plan, tap), plan, tap, fill)
            mask = better(v, out)
            if is_float:
                if omit:
                    mask = mask | (xp.isnan(out) & ~xp.isnan(v))
                else:
                    mask = mask | xp.isnan(v)
            out = xp.where(mask, v, out)
            if not track:
                continue
            j = _scalar(xp, tap.j, xp.int64, out)
            carried[a] = xp.where(mask, j, carried[a])
            for b, c in codes.items():
                won = _widen(xp, _take(xp, c, plan, tap), plan, tap, 0)
                carried[b] = xp.where(mask, won, carried[b])
        codes = carried
        cur = out
    return cur, codes


def _first_taps(
    xp: Any, geom: Geometry, b: int, like: Any, shape: tuple[int, ...]
) -> Any:
    """Axis ``b``'s first valid tap of each window, broadcast to ``shape``
    on ``like``'s device: the code of a window no tap wins, as in the core."""
    first = geom.plans[geom.axes.index(b)].first_tap
    start = _along(xp, _const(xp, first, like, xp.int64), b, like.ndim)
    return xp.broadcast_to(start, shape)


def _extreme(
    xp: Any, dtype: np.dtype[Any], op: str, omit: bool
) -> Callable[[Any, int], Any]:
    """The max or min of a window's cells in one reduce, with the tap
    loop's rules: a NaN makes the window NaN, or (``omit``) only where
    every cell is NaN. NaN never reaches the reduce (XLA's may drop it)."""

    def extreme(cells: Any, a: int) -> Any:
        if dtype.kind == "b":  # no order on bools in the standard
            return (xp.any if op == "max" else xp.all)(cells, axis=a, keepdims=True)
        fold = xp.max if op == "max" else xp.min
        if dtype.kind != "f":
            return fold(cells, axis=a, keepdims=True)
        nan = xp.isnan(cells)
        unset = _scalar(xp, -np.inf if op == "max" else np.inf, cells.dtype, cells)
        value = fold(xp.where(nan, unset, cells), axis=a, keepdims=True)
        lost = (xp.all if omit else xp.any)(nan, axis=a, keepdims=True)
        return xp.where(lost, _scalar(xp, np.nan, cells.dtype, cells), value)

    return extreme


def _track_by_window(
    xp: Any,
    cur: Any,
    codes: dict[int, Any],
    geom: Geometry,
    plan: AxisPlan,
    op: str,
    omit: bool,
    fill: Any,
) -> tuple[Any, dict[int, Any]]:
    """``_compare``'s pass with codes over few windows of many taps: per
    window, one reduce and one arg-reduce with the tap loop's rules (the
    first best cell; with NaN the last NaN, or with ``omit`` the first best
    real value; without one, the first cell)."""
    a = plan.axis
    dtype = np_dtype(xp, cur.dtype)
    real = _extreme(xp, dtype, op, dtype.kind == "f")  # NaN only if every cell is
    take_along = _need(xp, "take_along_axis")
    values = []
    found: dict[int, list[Any]] = {b: [] for b in (*codes, a)}
    for i, span in enumerate(plan.window_slices()):
        first = int(plan.first_tap[i])
        if span is None:  # no cell: the fill, and every axis' first tap
            block = _block(xp, cur, a, 1, fill)
            values.append(block)
            found[a].append(
                xp.full(block.shape, first, dtype=xp.int64, device=_device(cur))
            )
            for b in codes:
                found[b].append(_first_taps(xp, geom, b, cur, block.shape))
            continue
        cells = cur[_index(cur.ndim, a, span)]
        best = real(cells, a)
        pos = xp.argmax(xp.astype(cells == best, xp.int8), axis=a, keepdims=True)
        if dtype.kind == "f" and not omit:  # a NaN wins, the last one
            nan = xp.isnan(cells)
            some = xp.any(nan, axis=a, keepdims=True)
            flipped = xp.flip(xp.astype(nan, xp.int8), axis=a)
            back = xp.argmax(flipped, axis=a, keepdims=True)
            pos = xp.where(some, cells.shape[a] - 1 - back, pos)
            best = xp.where(some, _scalar(xp, np.nan, cur.dtype, cur), best)
        values.append(best)
        found[a].append(pos + first)
        for b, c in codes.items():
            found[b].append(take_along(c[_index(c.ndim, a, span)], pos, axis=a))
    return xp.concat(values, axis=a), {
        b: xp.concat(parts, axis=a) for b, parts in found.items()
    }


def _flat_indices(xp: Any, codes: dict[int, Any], geom: Geometry, like: Any) -> Any:
    flat = xp.zeros(geom.out_shape, dtype=xp.int64, device=_device(like))
    step = 1
    for plan in reversed(geom.plans):
        code = codes[plan.axis]
        if plan.regular:
            i = np.arange(plan.out, dtype=np.int64) * plan.stride - plan.pad_before
            base = _along(
                xp, _const(xp, i + plan.origin, like, xp.int64), plan.axis, geom.ndim
            )
            pos = base + code * plan.dilation
        else:
            assert plan.starts is not None
            assert plan.ends is not None
            starts, ends = plan.starts, plan.ends
            s = _const(xp, starts + plan.origin, like, xp.int64)
            e = _const(xp, ends + plan.origin, like, xp.int64)
            if starts.ndim == 1:
                s = _along(xp, s, plan.axis, geom.ndim)
                e = _along(xp, e, plan.axis, geom.ndim)
            pos = xp.minimum(s + code, e - 1)
        flat = flat + pos * step
        step *= plan.index_length
    return flat


# --------------------------------------------------------------------------
# sums


def _summed(
    xp: Any,
    x: Any,
    dtype: np.dtype[Any],
    geom: Geometry,
    red: Any,
    acc_np: np.dtype[Any] | None = None,
) -> Any:
    if acc_np is None:
        acc_np = _acc_dtype(dtype, red.op)
    acc = _xp_dtype(xp, acc_np)
    omit = red.nan_omit and dtype.kind == "f"
    terms = xp.astype(x, acc)
    nan_mask = xp.isnan(terms) if omit else None

    def rounded(v: Any) -> Any:
        """``_core._rounded``: PyTorch rounds each lp_pool step to a float
        input dtype narrower than the accumulator (float16)."""
        if red.op != "torch_lp" or dtype.kind != "f":
            return v
        if dtype.itemsize >= acc_np.itemsize:
            return v
        return xp.astype(xp.astype(v, x.dtype), acc)

    if red.op == "lp":
        terms = xp.pow(xp.abs(terms), _scalar(xp, red.norm_type, acc, terms))
    elif red.op == "torch_lp":  # PyTorch's own pow, whatever the library
        half = dtype == np.float16
        terms = rounded(torch_pow(terms, red.norm_type, xp, half=half))
    if nan_mask is not None:
        terms = xp.where(nan_mask, _scalar(xp, 0, acc, terms), terms)
    total = _sum_all(xp, terms, geom)
    like = total
    nan_count = None
    if nan_mask is not None:
        nan_count = _sum_all(xp, xp.astype(nan_mask, xp.int64), geom)
    if red.op == "sum":
        result = total
    elif red.op == "lp":
        result = xp.pow(total, _scalar(xp, 1.0 / red.norm_type, acc, total))
        info = np.finfo(acc_np)  # sums past the float range: see _core
        tiny, big = float(info.smallest_normal / info.eps), float(info.max)
        lost = ~((total >= tiny) & (total <= big))
        if not readable(lost) or bool(xp.any(lost)):  # see readable()
            result = _rescaled_norm(xp, xp.astype(x, acc), geom, red, result, lost)
    elif red.op == "torch_lp":
        count = _const(xp, geom.window_count(include_pad=True), like, acc)
        mean = rounded(total / count)
        scaled = xp.sign(mean) * xp.maximum(xp.abs(mean), _scalar(xp, 0, acc, mean))
        scaled = rounded(scaled * geom.kernel_volume)
        half = dtype == np.float16
        result = torch_pow(scaled, 1.0 / red.norm_type, xp, half=half)
    else:
        if red.divisor_override is not None:
            result = total / _scalar(xp, red.divisor_override, acc, total)
        else:
            count = _const(
                xp, geom.window_count(include_pad=red.count_include_pad), like
            )
            if nan_count is not None:
                count = count - nan_count
            result = total / xp.astype(count, acc)
    if nan_count is not None:
        valid = _const(xp, geom.window_count(include_pad=False), like)
        result = xp.where(
            valid == nan_count, _scalar(xp, float("nan"), acc, result), result
        )
    return result


def _rescaled_norm(
    xp: Any, x: Any, geom: Geometry, red: Any, result: Any, lost: Any
) -> Any:
    """``_core._rescaled_norm``: the ``lost`` windows' p-norms again, as
    ``m * (sum (|x|/m)**p)**(1/p)`` with ``m`` the window's largest ``|x|``
    (smallest for p < 0), one combined tap at a time."""
    p = red.norm_type
    acc = result.dtype
    empty = 0.0 if p > 0 else float("inf")  # a cell that adds nothing
    mag = xp.abs(x)
    if red.nan_omit:
        mag = xp.where(xp.isnan(mag), _scalar(xp, empty, acc, mag), mag)
    scale, _ = _compare(xp, mag, geom, "max" if p > 0 else "min", False, empty)
    power = _scalar(xp, p, acc, mag)
    sums = xp.zeros(geom.out_shape, dtype=acc, device=_device(x))
    for taps in itertools.product(*(q.spans() for q in geom.plans)):
        term = xp.pow(_cells(xp, mag, geom, taps) / scale[_windows(geom, taps)], power)
        for plan, tap in zip(geom.plans, taps, strict=True):
            term = _widen(xp, term, plan, tap, 0)
        sums = sums + term
    norm = scale * xp.pow(sums, _scalar(xp, 1.0 / p, acc, sums))
    redo = lost & xp.isfinite(scale) & (scale > 0)
    return xp.where(redo, norm, result)


def _sum_all(xp: Any, x: Any, geom: Geometry) -> Any:
    """Window sums, one axis pass at a time (``_core.pass_order``). A tap
    adds only where it lies inside the input (``_widen``), in the order of
    ``_core._fold_pass``, so the sums round alike."""

    def window_sum(cells: Any, a: int) -> Any:
        return xp.sum(cells, axis=a, keepdims=True, dtype=cells.dtype)

    cur = x
    plans = pass_order(geom, True)
    for i, plan in enumerate(plans):
        a = plan.axis
        if i < len(plans) - 1:  # as the core: a pass no memory holds
            cell_bytes = np_dtype(xp, cur.dtype).itemsize
            check_pass(cur.shape, plan, math.prod(x.shape), cell_bytes)
        if window_major(plan):  # few windows of many taps: a sum each
            cur = _by_window(xp, cur, plan, window_sum, 0)
            continue
        total = None
        for tap in _sum_order(plan, cur.ndim):
            v = _take(xp, cur, plan, tap)
            if tap.valid is not None:  # clipped irregular taps repeat a cell
                valid = _const(xp, tap.valid, cur)
                if tap.valid.ndim == 1:
                    valid = _along(xp, valid, a, cur.ndim)
                v = xp.where(valid, v, _zero(xp, v))
            v = _widen(xp, v, plan, tap, 0)
            total = v if total is None else total + v
        cur = _block(xp, cur, a, plan.out, 0) if total is None else total
    return cur


def _by_window(
    xp: Any, cur: Any, plan: AxisPlan, reduce: Callable[[Any, int], Any], fill: Any
) -> Any:
    """A pass over few windows of many taps (``window_major``): one reduce
    over each window's cells, not a step per tap; a window without cells
    gets ``fill``."""
    a = plan.axis
    parts = [
        _block(xp, cur, a, 1, fill)
        if span is None
        else reduce(cur[_index(cur.ndim, a, span)], a)
        for span in plan.window_slices()
    ]
    return xp.concat(parts, axis=a) if len(parts) > 1 else parts[0]


def _sum_order(plan: AxisPlan, ndim: int) -> list[Tap]:
    """``plan``'s taps in the order ``_core._fold_pass`` adds them (its
    schedule: two that every window has, then the others), so the sums
    round alike."""
    sched = _schedule(plan, ndim)
    return [step.tap for step in (*sched.first, *sched.rest)]


# --------------------------------------------------------------------------
# shared: taps read without padding


def _zero(xp: Any, like: Any) -> Any:
    return xp.asarray(0, dtype=like.dtype, device=_device(like))


def _block(xp: Any, like: Any, axis: int, width: int, fill: Any) -> Any:
    """``width`` cells of ``fill`` along ``axis``, otherwise shaped as ``like``."""
    shape = list(like.shape)
    shape[axis] = width
    return xp.full(tuple(shape), fill, dtype=like.dtype, device=_device(like))


def _take(xp: Any, src: Any, plan: AxisPlan, tap: Tap) -> Any:
    """The cells ``tap`` reads along ``plan.axis``, one per window of
    ``tap.windows``: a strided slice, or a gather for irregular windows."""
    a = plan.axis
    if isinstance(tap.cells, slice):
        return src[_index(src.ndim, a, tap.cells)]
    idx = tap.cells
    if idx.ndim == 1:
        return xp.take(src, _const(xp, idx, src, xp.int64), axis=a)
    take_along = _need(xp, "take_along_axis")
    shape = list(src.shape)
    shape[a] = idx.shape[a]
    full = np.broadcast_to(idx, tuple(shape))
    return take_along(src, _const(xp, full, src, xp.int64), axis=a)


def _widen(xp: Any, v: Any, plan: AxisPlan, tap: Tap, fill: Any) -> Any:
    """Values ``v`` of the windows ``tap.windows``, as all ``plan.out``
    windows: the others read padding through this tap, here ``fill``.

    This is what keeps a huge kernel cheap: a tap costs its windows, and
    no padded copy of the input is built.
    """
    a = plan.axis
    before, after = int(tap.windows.start), plan.out - int(tap.windows.stop)
    if not (before or after):
        return v
    parts = [v]
    if before:
        parts.insert(0, _block(xp, v, a, before, fill))
    if after:
        parts.append(_block(xp, v, a, after, fill))
    return xp.concat(parts, axis=a)


def _windows(geom: Geometry, taps: Sequence[Tap]) -> tuple[slice, ...]:
    """The output region of the windows that have every tap of ``taps``."""
    index = [slice(None)] * geom.ndim
    for plan, tap in zip(geom.plans, taps, strict=True):
        index[plan.axis] = tap.windows
    return tuple(index)


def _cells(xp: Any, src: Any, geom: Geometry, taps: Sequence[Tap]) -> Any:
    """The cells of ``src`` a combined tap reads, laid out as its windows."""
    for plan, tap in zip(geom.plans, taps, strict=True):
        src = _take(xp, src, plan, tap)
    return src


def _cast(xp: Any, values: Any, dtype: np.dtype[Any] | None) -> Any:
    """``_core._cast`` in ``xp``: to an integer dtype, floats round to
    nearest (NaN to 0) and every value saturates at the dtype's limits."""
    if dtype is None:
        return values
    target = _xp_dtype(xp, dtype)
    if values.dtype == target:
        return values
    if dtype.kind == "b":
        return values != 0
    kind = np_dtype(xp, values.dtype).kind
    if dtype.kind not in "iu" or kind not in "iuf":
        return xp.astype(values, target)
    device = _device(values)
    # the limits of the dtype the library makes (JAX without x64: int32)
    made = xp.empty((0,), dtype=target, device=device).dtype
    info = np.iinfo(np_dtype(xp, made))
    if kind in "iu":  # saturate, never wrap
        src = np.iinfo(np_dtype(xp, values.dtype))
        lo, hi = max(src.min, info.min), min(src.max, info.max)
        if lo > src.min or hi < src.max:
            values = xp.clip(values, lo, hi)
        return xp.astype(values, target)
    rounded = xp.round(values)
    # compared in the values' float type, where a limit like 2**63 - 1
    # rounds up to 2**63: a value that reaches it is out of range
    top, bottom = rounded >= float(info.max), rounded <= float(info.min)
    zero = xp.asarray(0, dtype=values.dtype, device=device)
    inside = xp.where(top | bottom | xp.isnan(rounded), zero, rounded)
    out = xp.astype(inside, target)
    out = xp.where(top, xp.asarray(info.max, dtype=made, device=device), out)
    return xp.where(bottom, xp.asarray(info.min, dtype=made, device=device), out)


def unpool_xp(
    x: Any, indices: Any, axes: tuple[int, ...], out_sizes: tuple[int, ...]
) -> Any:
    """Scatter for Array-API arrays that support integer-array assignment."""
    xp = namespace(x)
    assert xp is not None
    nd = len(axes)
    batch = [i for i in range(x.ndim) if i not in axes]
    order = batch + list(axes)
    xt = xp.permute_dims(x, tuple(order))
    it = xp.permute_dims(indices, tuple(order))
    batch_shape = tuple(xt.shape[: x.ndim - nd])
    n_batch = int(np.prod(batch_shape, dtype=np.int64))
    plane = int(np.prod(out_sizes, dtype=np.int64))
    cells = math.prod(xt.shape[x.ndim - nd :])
    x2 = xp.reshape(xt, (n_batch, cells))  # not -1: n_batch may be 0
    i2 = xp.reshape(it, (n_batch, cells))
    # as the core: an empty output reads no index (nor can a meta tensor
    # or a traced one: their indices go unchecked, as in PyTorch)
    if n_batch and cells and plane and readable(i2):
        lo, hi = int(xp.min(i2)), int(xp.max(i2))
        if lo < 0 or hi >= plane:
            bad = lo if lo < 0 else hi
            msg = (
                f"indices contains {bad}, outside the output plane of {plane} cells: "
                f"every index must be in [0, {plane})"
            )
            raise ValueError(msg)
    dtype = np_dtype(xp, x.dtype)
    # an unsigned dtype the library cannot index (PyTorch's uint16/32/64)
    # goes through int64 and back: both casts keep every bit
    wide = dtype.kind == "u" and not _native(xp, dtype, x)
    work = xp.int64 if wide else x.dtype
    out = xp.zeros((n_batch * plane,), dtype=work, device=_device(x))
    if plane and n_batch * cells:
        rows = xp.arange(n_batch, dtype=xp.int64, device=_device(x))
        flat_idx = xp.reshape(xp.reshape(rows, (-1, 1)) * plane + i2, (-1,))
        try:
            out[flat_idx] = xp.astype(xp.reshape(x2, (-1,)), work)
        except (TypeError, IndexError, NotImplementedError) as err:
            msg = (
                f"max_unpool needs an integer-array scatter, which {xp.__name__} "
                "arrays do not support; convert the input to a NumPy array instead"
            )
            raise TypeError(msg) from err
    out = xp.reshape(xp.astype(out, x.dtype), batch_shape + tuple(out_sizes))
    inverse = tuple(int(i) for i in np.argsort(order))
    return xp.permute_dims(out, inverse)


# --------------------------------------------------------------------------
# adjoints (gradients) in standard operations: no scatter is needed, since
# every window cell sits at a position the geometry names. The windows of
# each tap (or each window, where taps outnumber windows) go back to the
# cells it read, so a cell gets exactly the IEEE sum of what lands on it
# (an inf or NaN reaches no other cell), and a tap costs the cells of its
# axis, whatever the kernel or stride.

#: a unit's transpose: ``place(v, total)`` is ``total`` (None: zeros) plus
#: the unit's window values ``v`` placed back at their cells
Place = Callable[[Any, Any], Any]


def _placements(xp: Any, plan: AxisPlan, like: Any) -> list[tuple[Tap, Place]]:
    """Each unit of ``plan`` with its transpose (``Place``), which puts the
    unit's values back at the cells it read, along an axis of
    ``plan.length`` cells. A unit is a live tap (its windows, one cell
    each), or where taps outnumber windows (``window_major``) a window
    (one value for all its cells): a ``Tap`` whose ``windows`` is that one
    window. An irregular tap's tables are built once here."""
    a, length = plan.axis, plan.length
    if window_major(plan):
        return [
            (
                Tap(i, slice(i, i + 1), span, None),
                functools.partial(_spread, xp, a, length, span),
            )
            for i, span in enumerate(plan.window_slices())
            if span is not None
        ]
    units: list[tuple[Tap, Place]] = []
    for tap in plan.spans():
        place: Place
        if isinstance(tap.cells, slice):
            place = functools.partial(_spread, xp, a, length, tap.cells)
        else:
            place = functools.partial(
                _gathered, xp, plan, _landings(xp, plan, tap, like)
            )
        units.append((tap, place))
    return units


def _spread(xp: Any, a: int, length: int, cells: slice, v: Any, total: Any) -> Any:
    """Values ``v`` along axis ``a`` at the cells ``cells`` of an axis of
    ``length`` cells, zero elsewhere, added to ``total``: a tap's windows
    (one cell each), or one window's value at each of its cells.

    One block of ``step - 1`` zeros after each value interleaves them
    (reshaped, and trimmed to the axis), so only the cells they span are
    built: ``n > 1`` cells ``step`` apart fit in the axis.
    """
    lo, s = int(cells.start), cells.step or 1
    n = len(range(lo, cells.stop, s))
    spread = v.shape[a] != n
    if spread:  # one window: its value at each of its cells
        shape = list(v.shape)
        shape[a] = n
        v = xp.broadcast_to(v, tuple(shape))
    if n > 1 and s > 1:
        column = xp.expand_dims(v, axis=a + 1)
        wide = xp.concat([column, _block(xp, column, a + 1, s - 1, 0)], axis=a + 1)
        shape = list(v.shape)
        shape[a] = n * s
        v = xp.reshape(wide, tuple(shape))
        if n * s > length - lo:  # the last value's zeros pass the axis
            v = v[_index(v.ndim, a, slice(0, length - lo))]
    after = length - lo - v.shape[a]
    parts = [_block(xp, v, a, lo, 0)] if lo else []
    parts.append(v)
    if after:
        parts.append(_block(xp, v, a, after, 0))
    if len(parts) > 1:
        placed = xp.concat(parts, axis=a)
    else:  # not a broadcast view: the result may be written to
        placed = xp.asarray(v, copy=True) if spread else v
    return placed if total is None else total + placed


def _landings(xp: Any, plan: AxisPlan, tap: Tap, like: Any) -> list[Any]:
    """Irregular tap: for each cell, the window whose tap lands there, as
    gather indices on ``like``'s device (``plan.out``: none, a zero window
    ``_gathered`` appends), in rounds: round ``r`` holds each cell's
    ``r``-th such window (windows of one start share a cell)."""
    assert not isinstance(tap.cells, slice)
    length = plan.length
    a = plan.axis if tap.cells.ndim > 1 else 0  # the windows' axis
    pos = np.moveaxis(tap.cells, a, -1)  # planes x windows
    valid = np.ones(pos.shape, dtype=bool)
    if tap.valid is not None:
        valid = np.moveaxis(tap.valid, a, -1)
    lead, out = pos.shape[:-1], pos.shape[-1]
    rows = np.arange(math.prod(lead), dtype=np.int64).reshape((*lead, 1))
    keys = (rows * length + pos)[valid]  # ascending windows within a plane
    wins = np.broadcast_to(np.arange(out, dtype=np.int64), pos.shape)[valid]
    return [
        _const(xp, np.moveaxis(inv.reshape((*lead, length)), -1, a), like, xp.int64)
        for inv in _rounds(keys, wins, rows.size * length, out)
    ]


def _rounds(keys: IntArray, wins: IntArray, cells: int, none: int) -> list[IntArray]:
    """Gather indices that bring windows ``wins`` to cells ``keys`` (of
    ``cells``): round ``r`` names each cell's ``r``-th window, in the order
    given, and ``none`` where it has no more."""
    order = np.argsort(keys, kind="stable")
    keys, wins = keys[order], wins[order]
    rank = np.arange(keys.size) - np.searchsorted(keys, keys)
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[by_rank], np.arange(int(rank.max(initial=-1)) + 2))
    rounds = []
    for lo, hi in itertools.pairwise(bounds.tolist()):
        pick = by_rank[lo:hi]
        inv = np.full(cells, none, dtype=np.int64)
        inv[keys[pick]] = wins[pick]
        rounds.append(inv)
    return rounds


def _gathered(xp: Any, plan: AxisPlan, rounds: list[Any], v: Any, total: Any) -> Any:
    """Irregular tap: each cell gathers the windows that land on it (a
    cell no window reaches gathers a zero window), so no value is ever
    multiplied: an inf or NaN stays where it lands. Windows that share a
    cell are added to ``total`` one round at a time, in window order, as
    NumPy's scatter adds them."""
    a = plan.axis
    if not rounds:
        return _block(xp, v, a, plan.length, 0) if total is None else total
    v = xp.concat([v, _block(xp, v, a, 1, 0)], axis=a)
    for inv in rounds:
        if inv.ndim == 1:
            got = xp.take(v, inv, axis=a)
        else:  # per-plane windows (fractional)
            shape = list(v.shape)
            shape[a] = plan.length
            take_along = _need(xp, "take_along_axis")
            got = take_along(v, xp.broadcast_to(inv, tuple(shape)), axis=a)
        total = got if total is None else total + got
    return total


def _place_combined(combo: Sequence[tuple[Tap, Place]], v: Any, total: Any) -> Any:
    """A combined tap's transpose, one axis at a time, added to ``total``."""
    *inner, (_, last) = combo
    for _, place in inner:
        v = place(v, None)
    return last(v, total)


def sum_adjoint_xp(g: Any, geom: Geometry) -> Any:
    """Transpose of the summing passes: window sums back to input cells."""
    xp = namespace(g)
    assert xp is not None
    cur = g
    for plan in geom.plans:  # the forward ran them innermost first
        a = plan.axis
        total = None
        for tap, place in _placements(xp, plan, cur):
            total = place(cur[_index(cur.ndim, a, tap.windows)], total)
        cur = _block(xp, cur, a, plan.length, 0) if total is None else total
    return cur


def pairs_xp(g: Any, mag: Any, sign: Any, norm: Any, geom: Geometry, term: Any) -> Any:
    """Sum over (cell, window) pairs of ``g * term(|x|, norm) * sign``, one
    combined tap at a time (``grad._lp_by_pairs``): the cells read through
    the tap, their windows' values placed back there."""
    xp = namespace(g)
    assert xp is not None
    placements = [_placements(xp, plan, g) for plan in geom.plans]
    total = None
    for combo in itertools.product(*placements):
        taps = [tap for tap, _ in combo]
        w = _windows(geom, taps)
        cells = _cells(xp, mag, geom, taps)
        v = g[w] * term(cells, norm[w]) * _cells(xp, sign, geom, taps)
        total = _place_combined(combo, v, total)
    if total is None:
        return xp.zeros(geom.shape, dtype=g.dtype, device=_device(g))
    return total


def route_xp(g: Any, idx: Any, geom: Geometry) -> Any:
    """Each window gradient to the cell its (flat) index names, by placement.

    For every combined unit (``_placements``: taps, or windows where they
    are outnumbered), the windows whose index is a cell the unit read send
    their gradient there. Descending taps meet a cell's windows in
    ascending order, so each cell adds them in output order, as NumPy's
    scatter and PyTorch do (but for windows of one start, on an adaptive
    axis that is not the last, which a tap adds together).
    """
    xp = namespace(g)
    assert xp is not None
    if math.prod(geom.out_shape) == 0:  # no window: no tap to loop over
        return xp.zeros(geom.shape, dtype=g.dtype, device=_device(g))
    steps = []
    step = 1
    for plan in reversed(geom.plans):
        steps.append(step)
        step *= plan.index_length
    steps.reverse()
    placements = [
        units if window_major(plan) else units[::-1]  # windows ascending
        for plan, units in ((q, _placements(xp, q, g)) for q in geom.plans)
    ]
    total = None
    for combo in itertools.product(*placements):
        taps = [tap for tap, _ in combo]
        w = _windows(geom, taps)
        flat, ok = _tap_flat(geom, taps, steps)
        hit = idx[w] == _const(xp, flat, g, xp.int64)
        if ok is not None:
            hit = hit & _const(xp, ok, g, xp.bool)
        total = _place_combined(combo, xp.where(hit, g[w], _zero(xp, g)), total)
    if total is None:
        total = xp.zeros(geom.shape, dtype=g.dtype, device=_device(g))
    return _route_empty(xp, total, g, geom, steps)


def _tap_flat(
    geom: Geometry, taps: Sequence[Tap], steps: list[int]
) -> tuple[IntArray, npt.NDArray[np.bool_] | None]:
    """The flat whole-input index of the cell each window of a combined tap
    reads, and which of those windows really contain it (None: all)."""
    flat = np.zeros((1,) * geom.ndim, dtype=np.int64)
    ok = None
    for plan, tap, step in zip(geom.plans, taps, steps, strict=True):
        if isinstance(tap.cells, slice):
            cells = tap.cells
            pos = np.arange(cells.start, cells.stop, cells.step, dtype=np.int64)
            valid = None
        else:
            pos, valid = tap.cells, tap.valid
        if pos.ndim == 1:
            pos = geom.along(plan, pos)
            valid = None if valid is None else geom.along(plan, valid)
        flat = flat + (pos + plan.origin) * step
        if valid is not None:
            ok = valid if ok is None else ok & valid
    return flat, ok


def _route_empty(xp: Any, routed: Any, g: Any, geom: Geometry, steps: list[int]) -> Any:
    """A window wholly in padding (dilation) matches no tap, but its index,
    PyTorch's, may alias a cell of the plane: the NumPy pullback and
    PyTorch route its gradient there, and so does this, after the others
    (gathered in rounds, as ``_landings``: windows as far apart as they
    like cost no loop over them)."""
    if not all(p.regular for p in geom.plans):
        return routed
    if not any(p.has_empty_window for p in geom.plans):
        return routed
    flat = np.zeros((1,) * geom.ndim, dtype=np.int64)
    for plan, step in zip(geom.plans, steps, strict=True):
        start = np.arange(plan.out, dtype=np.int64) * plan.stride
        start += plan.origin - plan.pad_before
        flat = flat + geom.along(plan, (start + plan.first_tap * plan.dilation) * step)
    plane = math.prod(p.index_length for p in geom.plans)
    hit = (geom.window_count(include_pad=False) == 0) & (flat >= 0) & (flat < plane)
    wins = np.flatnonzero(hit)  # row-major over the pooled axes, ascending
    rounds = _rounds(flat.reshape(-1)[wins], wins, plane, hit.size)
    if not rounds:  # every index outside the plane: dropped
        return routed
    axes = geom.axes
    order = [a for a in range(g.ndim) if a not in axes] + list(axes)
    inverse = tuple(int(i) for i in np.argsort(order))
    batch = tuple(g.shape[a] for a in order[: g.ndim - len(axes)])
    rows = xp.reshape(xp.permute_dims(g, tuple(order)), (*batch, hit.size))
    rows = xp.concat([rows, _block(xp, rows, rows.ndim - 1, 1, 0)], axis=-1)
    moved = (*batch, *(geom.shape[a] for a in axes))
    for inv in rounds:
        got = xp.take(rows, _const(xp, inv, g, xp.int64), axis=rows.ndim - 1)
        routed = routed + xp.permute_dims(xp.reshape(got, moved), inverse)
    return routed
