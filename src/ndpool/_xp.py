"""Array-API backends: the same per-axis tap passes, in standard operations.

For input that is neither a NumPy nor a Dask array (a PyTorch tensor, a CuPy
or JAX array, ``array_api_strict``), the plans of ``_geometry`` run here,
written only with functions of the Array API standard (``where``,
``maximum``, ``take``, strided slicing, ``concat``) and without in-place
writes, so immutable arrays (JAX) work too. The result is the same kind of
array on the same device; no data goes through NumPy (only the small
per-axis index vectors of the geometry are built on the host and moved to
the device).

The NumPy core (``_core``) runs the identical algorithm with in-place,
cache-blocked NumPy ufuncs; the two agree bit for bit on max/min/indices.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from ._core import _acc_dtype, _fill_value, is_dask
from ._geometry import AxisPlan, Geometry, _memory_bytes

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
    msg = (
        f"input has dtype {dtype}, which ndpool cannot pool: use a bool, integer "
        "or floating dtype"
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
        values, codes = _compare(xp, src, geom, red.op, omit, fill)
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
    xp: Any, x: Any, geom: Geometry, op: str, omit: bool, fill: Any = None
) -> tuple[Any, dict[int, Any]]:
    dtype = np_dtype(xp, x.dtype)
    if fill is None:
        fill = _fill_value(dtype, op, omit)
    cur = _pad(xp, x, geom, fill)
    if dtype.kind == "b":  # no order on bools in the standard: True > False
        better: Any = (lambda v, o: v & ~o) if op == "max" else (lambda v, o: ~v & o)
    else:
        better = xp.greater if op == "max" else xp.less
    is_float = dtype.kind == "f"
    codes: dict[int, Any] = {}
    for plan in reversed(geom.plans):
        a = plan.axis
        shape = list(cur.shape)
        shape[a] = plan.out
        out = xp.full(tuple(shape), fill, dtype=cur.dtype, device=_device(cur))
        assert plan.first_tap is not None
        start = _along(xp, _const(xp, plan.first_tap, cur, xp.int64), a, cur.ndim)
        code = xp.broadcast_to(start, tuple(shape))
        carried = {}
        for b in codes:
            other = geom.plans[geom.axes.index(b)]
            assert other.first_tap is not None
            first = _along(xp, _const(xp, other.first_tap, cur, xp.int64), b, cur.ndim)
            carried[b] = xp.broadcast_to(first, tuple(shape))
        for j in plan.live_taps:
            v = _tap(xp, cur, plan, j)
            mask = better(v, out)
            if is_float:
                if omit:
                    mask = mask | (xp.isnan(out) & ~xp.isnan(v))
                else:
                    mask = mask | xp.isnan(v)
            out = xp.where(mask, v, out)
            code = xp.where(mask, xp.asarray(j, dtype=xp.int64), code)
            for b, c in codes.items():
                carried[b] = xp.where(mask, _tap(xp, c, plan, j), carried[b])
        carried[a] = code
        codes = carried
        cur = out
    return cur, codes


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

    if red.op in ("lp", "torch_lp"):
        base = xp.abs(terms) if red.op == "lp" else terms
        terms = rounded(xp.pow(base, xp.asarray(red.norm_type, dtype=acc)))
    if nan_mask is not None:
        terms = xp.where(nan_mask, xp.asarray(0, dtype=acc), terms)
    total = _sum_all(xp, terms, geom)
    like = total
    nan_count = None
    if nan_mask is not None:
        nan_count = _sum_all(xp, xp.astype(nan_mask, xp.int64), geom)
    if red.op == "sum":
        result = total
    elif red.op == "lp":
        result = xp.pow(total, xp.asarray(1.0 / red.norm_type, dtype=acc))
        info = np.finfo(acc_np)  # sums past the float range: see _core
        tiny, big = float(info.smallest_normal / info.eps), float(info.max)
        lost = ~((total >= tiny) & (total <= big))
        if bool(xp.any(lost)):
            result = _rescaled_norm(xp, xp.astype(x, acc), geom, red, result, lost)
    elif red.op == "torch_lp":
        count = _const(xp, geom.window_count(include_pad=True), like, acc)
        mean = rounded(total / count)
        scaled = xp.sign(mean) * xp.maximum(xp.abs(mean), xp.asarray(0, dtype=acc))
        scaled = rounded(scaled * geom.kernel_volume)
        result = xp.pow(scaled, xp.asarray(1.0 / red.norm_type, dtype=acc))
    else:
        if red.divisor_override is not None:
            result = total / xp.asarray(red.divisor_override, dtype=acc)
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
            valid == nan_count, xp.asarray(float("nan"), dtype=acc), result
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
        mag = xp.where(xp.isnan(mag), xp.asarray(empty, dtype=acc), mag)
    scale, _ = _compare(xp, mag, geom, "max" if p > 0 else "min", False, empty)
    cur = _pad(xp, mag, geom, empty)
    power = xp.asarray(p, dtype=acc)
    sums = xp.zeros(geom.out_shape, dtype=acc, device=_device(x))
    for taps in itertools.product(*(q.live_taps for q in geom.plans)):
        cells = cur
        for plan, j in zip(geom.plans, taps, strict=True):
            cells = _tap(xp, cells, plan, j)
        sums = sums + xp.pow(cells / scale, power)
    norm = scale * xp.pow(sums, xp.asarray(1.0 / p, dtype=acc))
    redo = lost & xp.isfinite(scale) & (scale > 0)
    return xp.where(redo, norm, result)


def _sum_all(xp: Any, x: Any, geom: Geometry) -> Any:
    cur = _pad(xp, x, geom, 0)
    for plan in reversed(geom.plans):
        shape = list(cur.shape)
        shape[plan.axis] = plan.out
        out = xp.zeros(tuple(shape), dtype=cur.dtype, device=_device(cur))
        for j in plan.live_taps:
            v = _tap(xp, cur, plan, j)
            if not plan.regular:
                valid = _const(xp, plan.tap_valid(j), cur)
                if plan.starts is not None and plan.starts.ndim == 1:
                    valid = _along(xp, valid, plan.axis, cur.ndim)
                v = xp.where(valid, v, xp.asarray(0, dtype=cur.dtype))
            out = out + v
        cur = out
    return cur


# --------------------------------------------------------------------------
# shared


def _check_padded(geom: Geometry, itemsize: int) -> None:
    """Refuse a padded copy (or gradient buffer) larger than memory.

    This path pads physically what its live taps read; windows far apart
    in a huge kernel read across its padding (the NumPy core clips instead).
    """
    limit = _memory_bytes()
    cells = math.prod(geom.shape)
    for plan in geom.plans:
        if plan.regular and plan.length:
            cells = cells // plan.length * (plan.lo + plan.length + plan.hi)
    if limit is not None and cells * itemsize > limit:
        msg = (
            f"this window geometry needs a padded copy of {cells:,} cells on the "
            f"Array-API path, more than this machine's memory ({limit:,} bytes); "
            "pool a NumPy array (np.asarray(x)) instead, which clips its windows"
        )
        raise ValueError(msg)


def _pad(xp: Any, x: Any, geom: Geometry, fill: Any) -> Any:
    _check_padded(geom, np_dtype(xp, x.dtype).itemsize)
    for p in geom.plans:
        if not p.regular or not (p.lo or p.hi):
            continue
        parts = []
        for width in (p.lo, None, p.hi):
            if width is None:
                parts.append(x)
            elif width:
                shape = list(x.shape)
                shape[p.axis] = width
                parts.append(
                    xp.full(tuple(shape), fill, dtype=x.dtype, device=_device(x))
                )
        x = xp.concat(parts, axis=p.axis)
    return x


def _tap(xp: Any, src: Any, plan: AxisPlan, j: int) -> Any:
    if plan.regular:
        index: list[slice] = [slice(None)] * src.ndim
        index[plan.axis] = plan.tap_slice(j)
        return src[tuple(index)]
    idx = plan.tap_index(j)
    if idx.ndim == 1:
        return xp.take(src, _const(xp, idx, src, xp.int64), axis=plan.axis)
    take_along = _need(xp, "take_along_axis")
    full = np.broadcast_to(idx, tuple(
        src.shape[i] if i != plan.axis else idx.shape[i] for i in range(src.ndim)
    ))  # fmt: skip
    return take_along(src, _const(xp, full, src, xp.int64), axis=plan.axis)


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
    if n_batch and cells and plane:  # as the core: an empty output reads no index
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
# every window cell sits at a position the geometry names


def _place(xp: Any, v: Any, plan: AxisPlan, j: int) -> Any:
    """Tap j's transpose: window values ``v`` back at the cells tap j read.

    Regular axes come back padded (``lo + length + hi``), irregular ones at
    ``length``; cells no window reads through tap j are zero.
    """
    a = plan.axis
    if plan.regular:
        s = plan.stride
        if s > 1 and plan.out:  # interleave s-1 zeros after each window
            zeros = xp.zeros_like(v)
            v = xp.stack([v] + [zeros] * (s - 1), axis=a + 1)
            shape = list(v.shape)
            shape[a : a + 2] = [plan.out * s]
            v = xp.reshape(v, tuple(shape))
            index = [slice(None)] * v.ndim
            index[a] = slice(0, (plan.out - 1) * s + 1)
            v = v[tuple(index)]
        full = plan.lo + plan.length + plan.hi
        before = plan.tap_slice(j).start  # the padded copy is lo + length + hi
        after = full - before - v.shape[a]
        parts = []
        for width, part in ((before, None), (None, v), (after, None)):
            if part is not None:
                parts.append(part)
            elif width:
                shape = list(v.shape)
                shape[a] = width
                parts.append(xp.zeros(tuple(shape), dtype=v.dtype, device=_device(v)))
        return xp.concat(parts, axis=a) if len(parts) > 1 else v
    # irregular: a one-hot (window -> cell) matrix, masked where the
    # window is shorter than tap j
    pos = plan.tap_index(j)
    valid = plan.tap_valid(j)
    ndim = v.ndim
    if pos.ndim == 1:
        pos = pos.reshape([1] * a + [-1] + [1] * (ndim - a - 1))
        valid = valid.reshape(pos.shape)
    onehot = (
        np.moveaxis(pos, a, -1)[..., None] == np.arange(plan.length)
    ) & np.moveaxis(valid, a, -1)[..., None]
    m = _const(xp, onehot, v, v.dtype)  # (..., out, length)
    moved = xp.moveaxis(v, a, -1)[..., None, :]  # (..., 1, out)
    placed = xp.matmul(moved, m)[..., 0, :]  # (..., length)
    return xp.moveaxis(placed, -1, a)


def _crop(v: Any, geom: Geometry) -> Any:
    index = [slice(None)] * v.ndim
    for plan in geom.plans:
        if plan.regular and (plan.lo or plan.hi):
            index[plan.axis] = slice(plan.lo, plan.lo + plan.length)
    return v[tuple(index)]


def sum_adjoint_xp(g: Any, geom: Geometry) -> Any:
    """Transpose of the summing passes: window sums back to input cells."""
    xp = namespace(g)
    assert xp is not None
    _check_padded(geom, np_dtype(xp, g.dtype).itemsize)
    cur = g
    for plan in geom.plans:  # the forward ran them innermost first
        total = None
        for j in plan.live_taps:
            placed = _place(xp, cur, plan, j)
            total = placed if total is None else total + placed
        if total is None:  # every window of this axis is in padding: no cell
            shape = list(cur.shape)
            shape[plan.axis] = plan.lo + plan.length + plan.hi
            if not plan.regular:
                shape[plan.axis] = plan.length
            total = xp.zeros(tuple(shape), dtype=cur.dtype, device=_device(cur))
        cur = total
    return _crop(cur, geom)


def pairs_xp(g: Any, mag: Any, sign: Any, norm: Any, geom: Geometry, term: Any) -> Any:
    """Sum over (cell, window) pairs of ``g * term(|x|, norm) * sign``, one
    combined tap at a time (``grad._lp_by_pairs``): the cells read through
    the tap, their windows' values placed back there."""
    xp = namespace(g)
    assert xp is not None
    _check_padded(geom, np_dtype(xp, g.dtype).itemsize)
    mag, sign = _pad(xp, mag, geom, 0), _pad(xp, sign, geom, 0)
    total = None
    for taps in itertools.product(*(p.live_taps for p in geom.plans)):
        m, s = mag, sign
        for plan, j in zip(geom.plans, taps, strict=True):
            m, s = _tap(xp, m, plan, j), _tap(xp, s, plan, j)
        v = g * term(m, norm) * s
        for plan, j in zip(geom.plans, taps, strict=True):
            v = _place(xp, v, plan, j)
        total = v if total is None else total + v
    if total is None:
        return xp.zeros(geom.shape, dtype=g.dtype, device=_device(g))
    return _crop(total, geom)


def route_xp(g: Any, idx: Any, geom: Geometry) -> Any:
    """Each window gradient to the cell its (flat) index names, by placement.

    For every combined tap, the windows whose index is that tap's cell send
    their gradient there; a tap in padding never matches.
    """
    xp = namespace(g)
    assert xp is not None
    _check_padded(geom, np_dtype(xp, g.dtype).itemsize)
    ndim = g.ndim
    steps = []
    step = 1
    for plan in reversed(geom.plans):
        steps.append(step)
        step *= plan.index_length
    steps.reverse()
    total = None
    for taps in itertools.product(*(p.live_taps for p in geom.plans)):
        flat = np.zeros((1,) * ndim, dtype=np.int64)
        ok = np.ones((1,) * ndim, dtype=bool)
        for plan, j, st in zip(geom.plans, taps, steps, strict=True):
            pos, valid = _tap_cells(plan, j, ndim)
            flat = flat + pos * st
            ok = ok & valid
        hit = (idx == _const(xp, flat, g, xp.int64)) & _const(xp, ok, g, xp.bool)
        v = xp.where(hit, g, xp.zeros_like(g))
        for plan, j in zip(geom.plans, taps, strict=True):
            v = _place(xp, v, plan, j)
        total = v if total is None else total + v
    if total is None:
        routed = xp.zeros(geom.shape, dtype=g.dtype, device=_device(g))
    else:
        routed = _crop(total, geom)
    return _route_empty(xp, routed, g, geom, steps)


def _route_empty(xp: Any, routed: Any, g: Any, geom: Geometry, steps: list[int]) -> Any:
    """A window wholly in padding (dilation) matches no tap, but its index,
    PyTorch's, may alias a cell of the plane: the NumPy pullback and
    PyTorch route its gradient there, and so does this."""
    empty = geom.window_count(include_pad=False) == 0
    if not empty.any() or not all(p.regular for p in geom.plans):
        return routed
    plane = math.prod(p.index_length for p in geom.plans)
    axes = geom.axes
    for pos in np.argwhere(np.broadcast_to(empty, empty.shape)):
        w = [int(pos[a]) for a in axes]  # the window, per pooled axis
        flat = 0
        for plan, i, st in zip(geom.plans, w, steps, strict=True):
            assert plan.first_tap is not None
            start = i * plan.stride - plan.pad_before + plan.origin
            flat += (start + int(plan.first_tap[i]) * plan.dilation) * st
        if not 0 <= flat < plane:  # outside the plane: dropped
            continue
        lengths = [geom.shape[a] for a in axes]  # ascending axes
        cell = np.zeros(lengths, dtype=bool)
        cell[np.unravel_index(flat, lengths)] = True
        cell = cell.reshape([geom.shape[a] if a in axes else 1 for a in range(g.ndim)])
        window = tuple(
            slice(w[axes.index(a)], w[axes.index(a)] + 1) if a in axes else slice(None)
            for a in range(g.ndim)
        )
        gw = g[window]
        routed = routed + xp.where(_const(xp, cell, g, xp.bool), gw, xp.zeros_like(gw))
    return routed


def _tap_cells(plan: AxisPlan, j: int, ndim: int) -> tuple[np.ndarray[Any, Any], Any]:
    """Whole-input positions tap j reads along plan.axis, and where they are real."""
    shape = [1] * ndim
    shape[plan.axis] = -1
    if plan.regular:
        i = np.arange(plan.out, dtype=np.int64)
        local = i * plan.stride - plan.pad_before + j * plan.dilation
        valid = (local >= 0) & (local < plan.length)
        return (local + plan.origin).reshape(shape), valid.reshape(shape)
    pos = plan.tap_index(j)
    valid = plan.tap_valid(j)
    if pos.ndim == 1:
        pos, valid = pos.reshape(shape), valid.reshape(shape)
    return pos + plan.origin, valid
