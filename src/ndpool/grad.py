"""Gradients: the pullback (vector-Jacobian product) of every pooling function.

``out, pullback = vjp(fn, x, *args, **kwargs)`` runs ``fn(x, *args,
**kwargs)`` and returns its result with a function that maps the gradient of a
loss with respect to ``out`` to the gradient with respect to ``x``, equal to
what ``torch.autograd`` gives for the same PyTorch call.

Two adjoints cover every op, both reusing the forward's geometry:

* **Routing** (max, min, adaptive and fractional max, Lp with ``p = inf``):
  the forward runs with ``return_indices=True`` and each output gradient is
  added to the input cell its index names (``np.add.at`` over flat
  ``(batch plane, index)`` positions), so ties, NaN and overlapping windows
  behave exactly as the forward chose.
* **Spreading** (average, sum, adaptive average, Lp): the adjoint of the
  summing core. The forward pads, then folds one pooled axis at a time,
  adding one strided slice (or gather) per kernel tap; the adjoint undoes the
  passes in reverse, adding the window gradient back through each tap into a
  padded buffer (``np.add.at`` for adaptive windows), then crops the padding.
  Averages first divide by the forward's divisor; Lp applies the chain rule
  around it.

Neither loops over windows or output elements in Python: the loops run over
kernel taps and pooled axes only.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from . import functional as F
from ._core import (
    BLOCK_BYTES,
    Reduction,
    is_dask,
    pool_core,
    recording,
    torch_pow,
    window_major,
)
from ._geometry import AxisPlan, Geometry
from ._threads import get_num_threads, share
from ._xp import _const as xp_const
from ._xp import _device as xp_device
from ._xp import (
    host_dtype,
    namespace,
    pairs_xp,
    readable,
    route_xp,
    sum_adjoint_xp,
    to_library,
)
from .pooling import (
    as_array,
    check_norm_type,
    check_unmasked,
    global_avg_pool,
    global_lp_pool,
    global_max_pool,
    pool,
    spatial_axes,
)

__all__ = ["Pullback", "vjp"]

Array = npt.NDArray[Any]
Pullback = Callable[[npt.ArrayLike], Array]
GradFn = Callable[[Array], Array]


def vjp(
    fn: Callable[..., Any], x: npt.ArrayLike, /, *args: Any, **kwargs: Any
) -> tuple[Any, Pullback]:
    """Run a pooling function and return its result and its pullback.

    Parameters
    ----------
    fn : callable
        Any pooling function of ndpool: the torch-named ones
        (``max_pool2d``, ``avg_pool1d``, ``lp_pool3d``,
        ``adaptive_max_pool2d``, ``fractional_max_pool2d``,
        ``max_unpool2d``, ...), :func:`ndpool.pool` (every ``op``) and the
        global pools.
    x : array_like
        The input differentiated against; a floating dtype. A Dask array
        gives a lazy forward and a pullback that returns a lazy Dask
        array chunked like ``x``.
    *args, **kwargs
        The rest of ``fn``'s arguments, as for ``fn(x, *args, **kwargs)``.

    Returns
    -------
    out : ndarray or tuple of ndarray
        Exactly what ``fn(x, *args, **kwargs)`` returns.
    pullback : callable
        ``pullback(grad_out) -> grad_x``: ``grad_out`` has the shape of the
        pooled values (for ``return_indices=True``, of the values only);
        ``grad_x`` has ``x``'s shape and dtype and equals
        ``torch.autograd.grad`` of the same PyTorch call: max routes each
        gradient to its index (ties and NaN as the forward, summing where
        windows overlap), average spreads it with the forward's divisor.

    Raises
    ------
    TypeError
        If ``fn`` is not an ndpool pooling function or ``x`` is not floating.

    Notes
    -----
    The pullback keeps what it needs from the forward: the int64 indices
    (8 bytes per output element) for max-like ops; nothing but the geometry
    for averages; the window norms (one float per output element) for Lp.
    With ``nan_policy="omit"`` NaN cells get a zero gradient.

    The pullback reads ``x`` and the indices it routes by (the very
    array returned with ``return_indices=True``) when it runs, without
    copying them: change either in place first and the gradient follows
    the change (PyTorch raises for a saved tensor changed in place).
    Copy before changing.

    Examples
    --------
    >>> import numpy as np, ndpool
    >>> x = np.array([[[1.0, 3.0, 2.0, 2.0]]])
    >>> out, pullback = ndpool.vjp(ndpool.max_pool1d, x, 2, stride=1)
    >>> out
    array([[[3., 3., 2.]]])
    >>> pullback(np.ones_like(out))   # overlapping windows share the 3
    array([[[0., 2., 1., 0.]]])
    >>> out, pullback = ndpool.vjp(ndpool.avg_pool1d, x, 2, 2)
    >>> pullback(np.array([[[1.0, 10.0]]]))
    array([[[0.5, 0.5, 5. , 5. ]]])
    """
    entry = _REGISTRY.get(fn)
    if entry is None:
        name = getattr(fn, "__qualname__", repr(fn))
        msg = (
            f"vjp: fn={name} is not an ndpool pooling function; give one of "
            "ndpool's (max_pool2d, avg_pool2d, pool, global_max_pool, ...)"
        )
        raise TypeError(msg)
    arr = as_array(x, "vjp: x")
    if host_dtype(arr).kind != "f":
        msg = (
            f"vjp: x has dtype {arr.dtype}; only floating inputs have a gradient "
            "(as in PyTorch), cast with x.astype(np.float32) first"
        )
        raise TypeError(msg)
    family, nd = entry
    bound = _signature(fn).bind(arr, *args, **kwargs)
    bound.apply_defaults()
    if is_dask(arr):
        return _dask_vjp(fn, arr, bound, family, nd)
    return _FAMILIES[family](fn, arr, bound, nd)


#: the registered functions' signatures, worked out once (tens of µs each)
_signature = functools.cache(inspect.signature)


# --------------------------------------------------------------------------
# one rule per family of functions


Bound = inspect.BoundArguments


def _call(fn: Callable[..., Any], bound: Bound, **changes: Any) -> Any:
    args = dict(bound.arguments)
    args.update(changes)
    new = inspect.BoundArguments(bound.signature, args)  # type: ignore[arg-type,unused-ignore]
    return fn(*new.args, **new.kwargs)


def _recorded(
    fn: Callable[..., Any], bound: Bound, **changes: Any
) -> tuple[Any, Geometry, Reduction]:
    """Run the forward once; return its result and the windows it pooled."""
    with recording() as tape:
        out = _call(fn, bound, **changes)
    geom, red = tape[0]  # the public function's own call
    return out, geom, red


def _max_family(
    fn: Callable[..., Any], x: Array, bound: Bound, nd: int
) -> tuple[Any, Pullback]:
    """max_pool*d, adaptive_max_pool*d, fractional_max_pool*d."""
    a = bound.arguments
    (values, idx), geom, _ = _recorded(fn, bound, return_indices=True)
    omit = a.get("nan_policy", "propagate") == "omit"
    pull = _pullback(x, values.shape, _routed(x, idx, geom, omit))
    return ((values, idx) if a["return_indices"] else values), pull


def _avg_family(
    fn: Callable[..., Any], x: Array, bound: Bound, nd: int
) -> tuple[Any, Pullback]:
    """avg_pool*d, adaptive_avg_pool*d."""
    out, geom, red = _recorded(fn, bound)
    return out, _pullback(x, out.shape, _spread(x, geom, red))


def _lp_family(
    fn: Callable[..., Any], x: Array, bound: Bound, nd: int
) -> tuple[Any, Pullback]:
    """lp_pool*d: PyTorch's ``(k * mean(x**p)) ** (1/p)``."""
    a = bound.arguments
    p = check_norm_type(a["norm_type"])
    if math.isinf(p):  # PyTorch: max_pool(|x|), or -max_pool(-|x|) for -inf
        out = _call(fn, bound)
        xp = _ns(x)
        mag = abs(x) if p > 0 else -abs(x)
        max_pool = getattr(F, f"max_pool{nd}d")
        with recording() as tape:
            _, idx = max_pool(
                mag, a["kernel_size"], a["stride"], 0, 1, a["ceil_mode"], True,
                data_format=a["data_format"], nan_policy=a["nan_policy"],
            )  # fmt: skip
        omit = a["nan_policy"] == "omit"
        grad = _signed(x, _routed(x, idx, tape[0][0], omit), xp)
        return out, _pullback(x, out.shape, grad)
    out, geom, red = _recorded(fn, bound)
    return out, _pullback(x, out.shape, _spread(x, geom, red))


def _unpool_family(
    fn: Callable[..., Any], x: Array, bound: Bound, nd: int
) -> tuple[Any, Pullback]:
    """max_unpool*d: the gradient gathers at the indices."""
    a = bound.arguments
    out = fn(*bound.args, **bound.kwargs)
    xp = _ns(x)
    axes = spatial_axes(x.ndim, nd, a["data_format"])
    if xp is np:
        idx = np.asarray(a["indices"])
    else:  # NumPy indices beside a tensor, as the forward takes them
        idx = to_library(xp, a["indices"], x, f"max_unpool{nd}d: indices")
    batch = [i for i in range(x.ndim) if i not in axes]
    order = (*batch, *axes)
    inverse = tuple(int(i) for i in np.argsort(order))
    n_batch = math.prod(x.shape[i] for i in batch)
    per_plane = math.prod(x.shape[i] for i in axes)
    it = xp.reshape(xp.permute_dims(idx, order), (n_batch, per_plane))
    plane = math.prod(out.shape[i] for i in axes)

    def gather(g: Array) -> Array:
        if plane == 0:  # nothing was unpooled (an empty output plane)
            return _zeros(xp, x.shape, g.dtype, g)  # type: ignore[no-any-return]
        gt = xp.reshape(xp.permute_dims(g, order), (n_batch, plane))
        taken = xp.take_along_axis(gt, it, axis=1)
        shaped = xp.reshape(taken, tuple(x.shape[i] for i in order))
        return xp.permute_dims(shaped, inverse)  # type: ignore[no-any-return]

    return out, _pullback(x, out.shape, gather)


def _pool_family(
    fn: Callable[..., Any], x: Array, bound: Bound, nd: int
) -> tuple[Any, Pullback]:
    """ndpool.pool, every op."""
    a = bound.arguments
    op = a["op"]
    omit = a["nan_policy"] == "omit"
    grad: GradFn
    if op in ("max", "min"):
        out, geom, _ = _recorded(fn, bound, return_indices=True)
        values, idx = out
        out = out if a["return_indices"] else values
        grad = _routed(x, idx, geom, omit)
    elif op == "lp" and check_norm_type(a["norm_type"]) == math.inf:
        out = _call(fn, bound)
        (_, idx), geom, _ = _recorded(
            fn, bound, x=abs(x), op="max", norm_type=None, return_indices=True,
            dtype=None,
        )  # fmt: skip
        grad = _signed(x, _routed(x, idx, geom, omit), _ns(x))
    else:
        out, geom, red = _recorded(fn, bound)
        grad = _spread(x, geom, red)
    values = out[0] if isinstance(out, tuple) else out
    if a["dtype"] is not None and np.dtype(a["dtype"]).kind != "f":
        xp = _ns(x)

        def grad(g: Array) -> Array:  # rounded to integers: piecewise constant
            return _zeros(xp, x.shape, g.dtype, g)  # type: ignore[no-any-return]

    return out, _pullback(x, values.shape, grad)


def _global_family(
    fn: Callable[..., Any], x: Array, bound: Bound, nd: int
) -> tuple[Any, Pullback]:
    """global_max_pool, global_avg_pool, global_lp_pool."""
    a = bound.arguments
    out, geom, red = _recorded(fn, bound)
    axes = geom.axes
    omit = a["nan_policy"] == "omit"
    xp = _ns(x)
    grad: GradFn
    if red.op == "max" or (red.op == "lp" and red.norm_type == math.inf):
        src = x if red.op == "max" else abs(x)
        kernel = tuple(x.shape[i] for i in axes)
        with recording() as tape:
            _, idx = pool(
                src, kernel, axes=axes, op="max", return_indices=True,
                nan_policy=a["nan_policy"],
            )  # fmt: skip
        grad = _routed(x, idx, tape[0][0], omit)
        if red.op == "lp":
            grad = _signed(x, grad, xp)
    else:
        grad = _spread(x, geom, red)
    if not a["keepdims"]:
        inner = grad

        def grad(g: Array) -> Array:
            return inner(xp.reshape(g, geom.out_shape))

    return out, _pullback(x, out.shape, grad)


Family = Callable[[Callable[..., Any], Array, Bound, int], tuple[Any, Pullback]]
_FAMILIES: dict[str, Family] = {
    "max": _max_family,
    "avg": _avg_family,
    "lp": _lp_family,
    "adaptive_avg": _avg_family,
    "unpool": _unpool_family,
    "pool": _pool_family,
    "global": _global_family,
}


def _registry() -> dict[Callable[..., Any], tuple[str, int]]:
    table: dict[Callable[..., Any], tuple[str, int]] = {
        pool: ("pool", 0),
        global_max_pool: ("global", 0),
        global_avg_pool: ("global", 0),
        global_lp_pool: ("global", 0),
    }
    names = {
        "max_pool{}d": "max",
        "adaptive_max_pool{}d": "max",
        "fractional_max_pool{}d": "max",
        "avg_pool{}d": "avg",
        "lp_pool{}d": "lp",
        "adaptive_avg_pool{}d": "adaptive_avg",
        "max_unpool{}d": "unpool",
    }
    for pattern, family in names.items():
        for nd in (1, 2, 3):
            fn = getattr(F, pattern.format(nd), None)
            if fn is not None:
                table[fn] = (family, nd)
    return table


_REGISTRY = _registry()


# --------------------------------------------------------------------------
# Dask input: the same rules, as a lazy graph of chunk tasks (``_dask``)


def _dask_vjp(
    fn: Callable[..., Any], x: Any, bound: Bound, family: str, nd: int
) -> tuple[Any, Pullback]:
    """The lazy forward, and a pullback that builds a lazy gradient with
    ``x``'s chunks: the rule of ``fn``'s family, run per input chunk over
    the windows that touch it (``_dask.grad_dask``)."""
    from ._dask import grad_dask, route_planes, unpool_grad_dask

    a = bound.arguments
    if family == "unpool":
        out = _call(fn, bound)
        axes = spatial_axes(x.ndim, nd, a["data_format"])

        def gather(g: Any) -> Any:
            return unpool_grad_dask(g, a["indices"], axes, x)

        return out, _dask_pullback(x, out.shape, gather)
    if family == "max" and is_dask(a.get("_random_samples")):
        # fractional windows drawn from lazy samples when computed: no
        # geometry here, so each gradient goes where its index says
        pair = _call(fn, bound, return_indices=True)
        axes = spatial_axes(x.ndim, nd, a["data_format"])

        def route_lazy(g: Any) -> Any:
            return route_planes(g, pair[1], axes, x)

        out = pair if a["return_indices"] else pair[0]
        return out, _dask_pullback(x, pair[0].shape, route_lazy)
    out, geom, red = _recorded(fn, bound)
    values = out[0] if isinstance(out, tuple) else out
    route: str | None = None
    magnitude = 0
    if family == "lp" and red.op in ("max", "min"):  # p = ±inf: max of ±|x|
        route, magnitude = "max", (1 if red.op == "max" else -1)
    elif red.op in ("max", "min"):
        route = red.op
    elif red.op == "lp" and red.norm_type == math.inf:
        route, magnitude = "max", 1

    rounded = family == "pool" and a["dtype"] is not None
    rounded = rounded and np.dtype(a["dtype"]).kind != "f"

    def spread_or_route(g: Any) -> Any:
        if rounded:  # rounded to integers: piecewise constant
            return x.map_blocks(np.zeros_like)
        return grad_dask(x, g.reshape(geom.out_shape), geom, red, route, magnitude)

    return out, _dask_pullback(x, values.shape, spread_or_route)


def _dask_pullback(
    x: Any, out_shape: tuple[int, ...], grad: Callable[[Any], Any]
) -> Pullback:
    """``_pullback``'s checks, for a lazy gradient of Dask input."""

    def pullback(grad_out: npt.ArrayLike) -> Array:
        check_unmasked(grad_out, "pullback: grad_out")
        g: Any = grad_out if is_dask(grad_out) else np.asarray(grad_out)
        _check_grad_out(g, np.dtype(g.dtype).kind, out_shape)
        return grad(g)  # type: ignore[no-any-return]

    return pullback


def _check_grad_out(g: Any, kind: str, out_shape: tuple[int, ...]) -> None:
    """A real gradient of known shape, one per pooled output."""
    if kind not in "biuf":
        msg = f"pullback: grad_out has dtype {g.dtype}; give a real array"
        raise TypeError(msg)
    if not all(isinstance(n, (int, np.integer)) for n in g.shape):
        msg = (
            f"pullback: grad_out has an unknown shape {tuple(g.shape)} (a Dask "
            "array with unknown chunk sizes: call grad_out.compute_chunk_sizes())"
        )
        raise ValueError(msg)
    if tuple(g.shape) != tuple(out_shape):
        msg = (
            f"pullback: grad_out has shape {tuple(g.shape)} but the pooled "
            f"output has shape {tuple(out_shape)}; give one gradient per output"
        )
        raise ValueError(msg)


# --------------------------------------------------------------------------
# shared by the rules


def _ns(x: Any) -> Any:
    """The array namespace of ``x``: NumPy itself for NumPy arrays."""
    xp = namespace(x)
    return np if xp is None else xp


def _zeros(xp: Any, shape: tuple[int, ...], dtype: Any, like: Any) -> Any:
    """Zeros on ``like``'s device (a gradient that is zero everywhere)."""
    if xp is np:
        return np.zeros(shape, dtype=dtype)
    return xp.zeros(shape, dtype=dtype, device=xp_device(like))


def _astype(xp: Any, a: Any, dtype: Any) -> Any:
    return a.astype(dtype, copy=False) if xp is np else xp.astype(a, dtype)


def _pullback(x: Array, out_shape: tuple[int, ...], grad: GradFn) -> Pullback:
    """Wrap ``grad`` with the checks and the cast every pullback shares."""
    shape, dtype = tuple(x.shape), x.dtype
    xp: Any = _ns(x)

    def pullback(grad_out: npt.ArrayLike) -> Array:
        check_unmasked(grad_out, "pullback: grad_out")
        g: Any
        if xp is np:
            g = np.asarray(grad_out)
        else:  # moved beside the input (NumPy data), or refused
            g = to_library(xp, grad_out, x, "pullback: grad_out")
        kind = host_dtype(g).kind if xp is not np else g.dtype.kind
        _check_grad_out(g, kind, out_shape)
        # NumPy-backed libraries (array_api_strict) warn as NumPy would: an
        # empty window's divisor is 0, and its gradient reaches no cell
        with np.errstate(all="ignore"):
            result = grad(g)
        if xp is not np:
            return xp.reshape(_astype(xp, result, dtype), shape)  # type: ignore[no-any-return]
        return np.asarray(result, dtype=dtype).reshape(shape)

    return pullback


# --------------------------------------------------------------------------
# routing: max, min, adaptive / fractional max, Lp with p = inf


def _routed(x: Array, idx: Array, geom: Geometry, omit: bool) -> GradFn:
    """Add each output gradient to the input cell its index names.

    ``idx`` is flat over the pooled axes in ascending order within each
    plane. NumPy scatters with ``np.add.at`` (in output order, in the gradient's
    dtype, as PyTorch accumulates); other array libraries, whose
    standard has no scatter, place the gradient tap by tap (``route_xp``).
    """
    xp = _ns(x)
    nan_mask = xp.isnan(x) if omit else None
    if xp is not np:
        acc = xp.float64 if x.dtype == xp.float64 else xp.float32

        def route_any(g: Array) -> Array:
            grad = route_xp(_astype(xp, g, acc), idx, geom)
            if nan_mask is not None:
                grad = xp.where(nan_mask, xp.zeros_like(grad), grad)
            return grad  # type: ignore[no-any-return]

        return route_any
    pooled = list(geom.axes)
    batch = [i for i in range(x.ndim) if i not in pooled]
    order = batch + pooled
    plane = math.prod(x.shape[i] for i in pooled)
    n_batch = math.prod(x.shape[i] for i in batch)
    per_plane = math.prod(idx.shape[i] for i in pooled)
    it = np.transpose(idx, order).reshape(n_batch, per_plane)
    shape_t = [x.shape[i] for i in order]
    inverse = np.argsort(order)
    # planes in blocks of about BLOCK_BYTES of gradient, shared over threads
    rows = max(1, BLOCK_BYTES // max(1, plane * 8))
    blocks = [(lo, min(lo + rows, n_batch)) for lo in range(0, n_batch, rows)]

    # a window wholly in padding (dilation) carries PyTorch's out-of-plane
    # index; its gradient belongs to the padding, so it is dropped
    empty = any(p.has_empty_window for p in geom.plans)

    def scatter(g_rows: Array, out: Array, lo: int, hi: int) -> None:
        ib = it[lo:hi]
        local = np.arange(hi - lo, dtype=np.int64)[:, None] * plane + ib
        weights = g_rows[lo:hi]
        if empty:
            inside = (ib >= 0) & (ib < plane)
            local, weights = local[inside], weights[inside]
        block = out[lo:hi].reshape(-1)
        block.fill(0)
        # in the output's dtype, in output order: PyTorch's accumulation
        np.add.at(block, local.ravel(), weights.ravel())

    def route(g: Array) -> Array:
        g_rows = np.transpose(g, order).reshape(n_batch, per_plane)
        out = np.empty((n_batch, plane), dtype=np.promote_types(x.dtype, g.dtype))
        share(lambda b: scatter(g_rows, out, *b), blocks, get_num_threads())
        grad = np.transpose(out.reshape(shape_t), inverse)
        return grad if nan_mask is None else np.where(nan_mask, 0, grad)

    return route


def _signed(x: Array, grad: GradFn, xp: Any) -> GradFn:
    """Chain ``grad`` (with respect to ``|x|``) through ``abs``."""
    sign = signs(x, xp)
    return lambda g: grad(g) * sign


def signs(x: Array, xp: Any) -> Array:
    """PyTorch's ``sign``, the derivative of ``|x|``: 0 on NaN (NumPy's
    ``sign`` gives NaN), so a NaN cell gets a zero gradient through ``|x|``."""
    sign = xp.sign(x)
    return xp.where(xp.isnan(x), xp.zeros_like(sign), sign)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------
# spreading: the adjoint of the summing core (average, sum, Lp)


def _spread(x: Array, geom: Geometry, red: Reduction) -> GradFn:
    """Pullback of the summing ops; see the module docstring."""
    xp = _ns(x)
    acc_np = np.promote_types(host_dtype(x), np.float32)
    acc = acc_np if xp is np else getattr(xp, acc_np.name)
    if math.prod(geom.out_shape) == 0:  # no window: no divisor to work out

        def nothing(g: Array) -> Array:
            return _zeros(xp, x.shape, acc, g)  # type: ignore[no-any-return]

        return nothing
    nan_mask = xp.isnan(x) if red.nan_omit else None
    empty: Any = None
    nan_count: Any = None
    if nan_mask is not None:
        nan_count = pool_core(nan_mask, geom, Reduction(op="sum"))
        valid = _const(xp, geom.window_count(include_pad=False), x)
        empty = valid == nan_count

    window: Callable[[Array], Array]
    cell: Any = None
    if red.op in ("avg", "sum"):
        divisor: Any = 1
        if red.op == "avg" and red.divisor_override is not None:
            divisor = float(red.divisor_override)
        elif red.op == "avg":
            count = _const(xp, geom.window_count(include_pad=red.count_include_pad), x)
            if nan_count is not None:
                count = count - nan_count
            divisor = _astype(xp, count, acc)

        def window(g: Array) -> Array:
            return g / divisor if red.op == "avg" else g

    elif red.op == "torch_lp":
        window, cell = _torch_lp_parts(x, geom, red, acc, xp)
    else:
        window, cell, norm = _lp_parts(x, geom, red, acc, xp)
        if _powers_overflow(norm, red, acc_np, xp):
            return _lp_by_pairs(x, geom, red, acc, norm, nan_mask, xp)

    def adjoint(w: Array) -> Array:
        return _sum_adjoint(w, geom) if xp is np else sum_adjoint_xp(w, geom)

    # the p-norm reads only the windows' cells: one that no window reads
    # gets no gradient, not 0 times its (here NaN or inf) factor; PyTorch's
    # lp_pool raises every cell to p, so its factor applies everywhere
    uncovered = red.op == "lp" and cell is not None
    uncovered = uncovered and (
        not readable(cell) or not bool(xp.all(xp.isfinite(cell)))
    )  # unreadable (meta, jit): the mask, right for any value
    covered: list[Array] = []  # worked out on the first call

    def spread(g: Array) -> Array:
        w = window(_astype(xp, g, acc))
        if empty is not None:
            w = xp.where(empty, xp.zeros_like(w), w)
        w = _astype(xp, w, acc)
        grad = adjoint(w)
        if cell is not None:
            grad = grad * cell
        if uncovered:
            if not covered:
                covered.append(adjoint(xp.ones_like(w)) > 0)
            grad = xp.where(covered[0], grad, xp.zeros_like(grad))
        if nan_mask is not None:
            grad = xp.where(nan_mask, xp.zeros_like(grad), grad)
        return grad

    return spread


def _const(xp: Any, values: Any, like: Any) -> Any:
    """A host-side count array on ``like``'s device (NumPy: as it is)."""
    return values if xp is np else xp_const(xp, values, like)


def _torch_lp_parts(
    x: Array, geom: Geometry, red: Reduction, acc: Any, xp: Any
) -> tuple[Callable[[Array], Array], Array]:
    """PyTorch's lp_pool autograd, step by step.

    Forward: ``m = avg(x**p)``, ``t = sign(m) * relu(|m|) * k``,
    ``out = t ** (1/p)``; a window whose ``m`` is 0 gets no gradient.
    """
    p = red.norm_type
    assert p is not None
    base = _astype(xp, x, acc)
    half = host_dtype(x) == np.float16  # PyTorch's half pow is C's
    with np.errstate(all="ignore"):
        terms = torch_lp_terms(base, x, red, half, xp)
        mean: Any = pool_core(terms, geom, Reduction(op="avg"))
        kvol = float(geom.kernel_volume)
        divisor = _astype(xp, _const(xp, geom.window_count(include_pad=True), x), acc)
    cell = lp_cell(base, red, xp, half=half)

    def window(g: Array) -> Array:
        return torch_lp_window(g, mean, kvol, divisor, p, half, xp)

    return window, cell


def torch_lp_terms(base: Array, x: Array, red: Reduction, half: bool, xp: Any) -> Array:
    """The cells' terms of PyTorch's lp_pool, as its autograd takes them:
    ``base ** p`` (``base``: ``x`` widened, unrounded), 0 at a NaN of ``x``
    with ``nan_policy="omit"``. Called with float errors ignored."""
    assert red.norm_type is not None
    terms = torch_pow(base, red.norm_type, xp, half=half)
    if red.nan_omit:
        terms = xp.where(xp.isnan(x), xp.zeros_like(terms), terms)
    return terms  # type: ignore[no-any-return]


def torch_lp_window(
    g: Array, mean: Array, kvol: float, divisor: Any, p: float, half: bool, xp: Any
) -> Array:
    """PyTorch's lp_pool autograd from each window's ``mean`` of ``x**p``
    to the gradient of its ``x**p`` (``_torch_lp_parts``)."""
    with np.errstate(all="ignore"):
        sign = signs(mean, xp)  # PyTorch: sign(NaN) = 0
        relu = xp.maximum(abs(mean), xp.zeros_like(mean))
        t = sign * relu * kvol
        d_pow = (1.0 / p) * torch_pow(t, 1.0 / p - 1.0, xp, half=half)
        g_relu = (g * d_pow) * kvol * sign
        g_abs = xp.where(relu <= 0, xp.zeros_like(g_relu), g_relu)
        return g_abs * sign / divisor  # type: ignore[no-any-return]


def _powers_overflow(norm: Array, red: Reduction, acc: np.dtype[Any], xp: Any) -> bool:
    """Whether some window's ``norm**p`` leaves the normal float range (the
    forward then rescaled it: ``_core._rescaled_norm``), so the factored
    pullback's powers would overflow or underflow too."""
    assert red.norm_type is not None
    lost = powers_lost(norm, red.norm_type, acc, xp)
    # unreadable (meta, jit): the pairwise path, right for any value
    return not readable(lost) or bool(xp.any(lost))


def powers_lost(norm: Array, p: float, acc: np.dtype[Any], xp: Any) -> Array:
    """The windows whose ``norm**p`` leaves the normal float range of
    ``acc`` (a finite, nonzero norm only)."""
    info = np.finfo(acc)
    with np.errstate(all="ignore"):
        real = xp.isfinite(norm) & (norm > 0)
        power = norm ** float(p)
        return real & ~(  # type: ignore[no-any-return]
            (power >= float(info.smallest_normal / info.eps))
            & (power <= float(info.max))
        )


def _lp_by_pairs(
    x: Array,
    geom: Geometry,
    red: Reduction,
    acc: Any,
    norm: Array,
    nan_mask: Array | None,
    xp: Any,
) -> GradFn:
    """The p-norm's pullback pair by pair: cell ``c`` of window ``w`` gets
    ``g[w] * sign(x[c]) * (|x[c]| / norm[w]) ** (p - 1)``, each factor at
    most ``|g[w]|`` for p >= 1, where the factored form's powers leave the
    float range. One combined tap (every window's cell at it) at a time."""
    p = red.norm_type
    assert p is not None
    base = _astype(xp, x, acc)
    mag, sign = abs(base), signs(base, xp)

    def term(cells: Array, n: Array) -> Array:
        return lp_pair_term(cells, n, p, xp)

    def pull(g: Array) -> Array:
        g = _astype(xp, g, acc)
        if xp is np:
            grad = np.zeros(x.shape, dtype=acc)
            for taps in itertools.product(*(q.spans() for q in geom.plans)):
                at: list[Any] = [slice(None)] * x.ndim
                of: list[Any] = [slice(None)] * x.ndim
                for plan, tap in zip(geom.plans, taps, strict=True):
                    at[plan.axis], of[plan.axis] = tap.cells, tap.windows
                c, w = tuple(at), tuple(of)
                grad[c] += g[w] * term(mag[c], norm[w]) * sign[c]
        else:
            grad = pairs_xp(g, mag, sign, norm, geom, term)
        if nan_mask is not None:
            grad = xp.where(nan_mask, xp.zeros_like(grad), grad)
        return grad

    return pull


def lp_pair_term(cells: Array, norm: Array, p: float, xp: Any) -> Array:
    """``(|x| / norm) ** (p - 1)`` of a cell in a window (``cells``: its
    ``|x|``): an all-zero window has no gradient, nor below p = 1 a zero
    cell."""
    with np.errstate(all="ignore"):
        t = (cells / norm) ** (p - 1.0)
    t = xp.where(norm == 0, xp.zeros_like(t), t)
    if p < 1:
        t = xp.where(cells == 0, xp.zeros_like(t), t)
    return t  # type: ignore[no-any-return]


def _lp_parts(
    x: Array, geom: Geometry, red: Reduction, acc: Any, xp: Any
) -> tuple[Callable[[Array], Array], Array, Array]:
    """The p-norm of each window, as ``torch.linalg.vector_norm``'s backward."""
    p = red.norm_type
    assert p is not None
    base = _astype(xp, x, acc)
    norm: Any = pool_core(
        base, geom, Reduction(op="lp", norm_type=p, nan_omit=red.nan_omit)
    )
    cell = lp_cell(base, red, xp)
    scale = lp_scale(norm, p)

    def window(g: Array) -> Array:
        return lp_window(g, norm, scale, p, xp)

    return window, cell, norm


def lp_scale(norm: Array, p: float) -> Array:
    """What ``lp_window`` multiplies (below p = 1) or divides by: ``norm``
    to the power ``1 - p``, or ``p - 1``."""
    with np.errstate(all="ignore"):
        return norm ** (1.0 - p) if p < 1 else norm ** (p - 1.0)


def lp_window(g: Array, norm: Array, scale: Array, p: float, xp: Any) -> Array:
    """The p-norm's window factor of the gradient (``scale``: ``lp_scale``):
    an all-zero window has none."""
    if p == 1:
        return g
    if p < 1:
        return g * scale
    return xp.where(norm == 0, xp.zeros_like(g), g / scale)  # type: ignore[no-any-return]


def lp_cell(base: Array, red: Reduction, xp: Any, *, half: bool = False) -> Array:
    """The Lp ops' per-cell factor: the derivative of a cell's term (``x**p``
    for PyTorch's formula, ``|x|**p`` for the p-norm) up to a constant.

    Applied after the adjoint to every cell, read by a window or not, as
    PyTorch does (so a NaN cell no window reads still gets a NaN gradient).
    ``half``: the input is float16, whose pow PyTorch takes from C.
    """
    p = red.norm_type
    assert p is not None
    with np.errstate(all="ignore"):
        if red.op == "torch_lp":  # PyTorch's pow: NaN at -inf for p = 0.5
            return p * torch_pow(base, p - 1.0, xp, half=half)  # type: ignore[no-any-return]
        mag = abs(base)
        if p == 1:
            return signs(base, xp)
        if p < 1:
            kept = xp.where(base == 0, xp.zeros_like(base), mag ** (p - 1.0))
            return signs(base, xp) * kept  # type: ignore[no-any-return]
        if p < 2:
            return signs(base, xp) * mag ** (p - 1.0)  # type: ignore[no-any-return]
        return base * mag ** (p - 2.0)  # type: ignore[no-any-return]


def _sum_adjoint(g: Array, geom: Geometry) -> Array:
    """Transpose of ``_core``'s clipped-tap sums: window sums back to cells."""
    cur = g
    for plan in geom.plans:  # the forward ran them in reverse
        cur = _unsum_pass(cur, plan, geom)
    return cur


def _unsum_pass(src: Array, plan: AxisPlan, geom: Geometry) -> Array:
    """Transpose of one summing pass over ``plan.axis``.

    A regular tap adds its windows back onto the cells its clipped view
    read, so no padded buffer is needed (a huge kernel's padding costs
    nothing, as in the forward).
    """
    a = plan.axis
    shape = list(src.shape)
    shape[a] = plan.length
    if plan.full_axis:
        return np.broadcast_to(src, shape)
    out = np.zeros(shape, dtype=src.dtype)
    if window_major(plan):  # few windows of many taps, as the forward
        cells: list[Any] = [slice(None)] * src.ndim
        window = list(cells)
        for i, span in enumerate(plan.window_slices()):
            if span is not None:
                cells[a], window[a] = span, slice(i, i + 1)
                out[tuple(cells)] += src[tuple(window)]
        return out
    if plan.regular:
        cells = [slice(None)] * src.ndim
        windows = list(cells)
        for tap in plan.spans():
            cells[a], windows[a] = tap.cells, tap.windows
            out[tuple(cells)] += src[tuple(windows)]
        return out
    moved_out = np.moveaxis(out, a, 0)  # a view: writes land in ``out``
    moved_src = np.moveaxis(src, a, 0)
    assert plan.starts is not None
    # strictly increasing starts: a tap's cells are distinct (no add.at needed)
    unique = plan.starts.ndim == 1 and bool(np.all(np.diff(plan.starts) > 0))
    for j in plan.live_taps:
        valid = plan.tap_valid(j)
        if valid.ndim != 1:  # per-plane windows: only fractional (max) has them
            msg = "summing over per-plane (fractional) windows has no adjoint"
            raise NotImplementedError(msg)
        idx = plan.tap_index(j)[valid]
        if unique:
            moved_out[idx] += moved_src[valid]
        else:
            np.add.at(moved_out, idx, moved_src[valid])
    return out
