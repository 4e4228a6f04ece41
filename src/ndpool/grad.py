"""Gradients: the pullback (vector-Jacobian product) of every pooling function.

``out, pullback = vjp(fn, x, *args, **kwargs)`` runs ``fn(x, *args,
**kwargs)`` and returns its result with a function that maps the gradient of a
loss with respect to ``out`` to the gradient with respect to ``x``, equal to
what ``torch.autograd`` gives for the same PyTorch call.

Two adjoints cover every op, both reusing the forward's geometry:

* **Routing** (max, min, adaptive and fractional max, Lp with ``p = inf``):
  the forward runs with ``return_indices=True`` and each output gradient is
  added to the input cell its index names (``np.bincount`` over flat
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

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from . import functional as F
from ._core import Reduction, pool_core
from ._geometry import (
    AxisPlan,
    Geometry,
    adaptive_geometry,
    as_int_tuple,
    check_positive,
    normalize_axes,
    regular_geometry,
    resolve_padding,
)
from .functional import _output_size
from .pooling import (
    NAN_POLICIES,
    _kernel_len,
    as_array,
    check_bool,
    check_choice,
    check_divisor,
    check_norm_type,
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
        The input differentiated against; a floating dtype.
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
    arr = as_array(x)
    if arr.dtype.kind != "f":
        msg = (
            f"vjp: x has dtype {arr.dtype}; only floating inputs have a gradient "
            "(as in PyTorch), cast with x.astype(np.float32) first"
        )
        raise TypeError(msg)
    family, nd = entry
    bound = inspect.signature(fn).bind(arr, *args, **kwargs)
    bound.apply_defaults()
    return _FAMILIES[family](fn, arr, bound, nd)


# --------------------------------------------------------------------------
# one rule per family of functions


Bound = inspect.BoundArguments


def _call(fn: Callable[..., Any], bound: Bound, **changes: Any) -> Any:
    args = dict(bound.arguments)
    args.update(changes)
    new = inspect.BoundArguments(bound.signature, args)  # type: ignore[arg-type,unused-ignore]
    return fn(*new.args, **new.kwargs)


def _max_family(
    fn: Callable[..., Any], x: Array, bound: Bound, nd: int
) -> tuple[Any, Pullback]:
    """max_pool*d, adaptive_max_pool*d, fractional_max_pool*d."""
    a = bound.arguments
    values, idx = _call(fn, bound, return_indices=True)
    axes = spatial_axes(x.ndim, nd, a.get("data_format", "channels_first"))
    omit = a.get("nan_policy", "propagate") == "omit"
    pull = _pullback(x, values.shape, _routed(x, idx, axes, omit))
    return ((values, idx) if a["return_indices"] else values), pull


def _avg_family(
    fn: Callable[..., Any], x: Array, bound: Bound, nd: int
) -> tuple[Any, Pullback]:
    """avg_pool*d."""
    a = bound.arguments
    out = fn(*bound.args, **bound.kwargs)
    axes = spatial_axes(x.ndim, nd, a["data_format"])
    geom, red = _window_setup(
        x, axes, a["kernel_size"], op="avg", stride=a["stride"],
        padding=a["padding"], ceil_mode=a["ceil_mode"],
        count_include_pad=a["count_include_pad"],
        divisor_override=a["divisor_override"], nan_policy=a["nan_policy"],
        allowed_lengths=(1, nd),
    )  # fmt: skip
    return out, _pullback(x, out.shape, _spread(x, geom, red))


def _lp_family(
    fn: Callable[..., Any], x: Array, bound: Bound, nd: int
) -> tuple[Any, Pullback]:
    """lp_pool*d: PyTorch's ``(k * mean(x**p)) ** (1/p)``."""
    a = bound.arguments
    out = fn(*bound.args, **bound.kwargs)
    axes = spatial_axes(x.ndim, nd, a["data_format"])
    p = check_norm_type(a["norm_type"])
    if math.isinf(p):  # PyTorch: max_pool(|x|), or -max_pool(-|x|) for -inf
        mag = np.abs(x) if p > 0 else -np.abs(x)
        max_pool = getattr(F, f"max_pool{nd}d")
        _, idx = max_pool(
            mag, a["kernel_size"], a["stride"], 0, 1, a["ceil_mode"], True,
            data_format=a["data_format"], nan_policy=a["nan_policy"],
        )  # fmt: skip
        omit = a["nan_policy"] == "omit"
        grad = _signed(x, _routed(x, idx, axes, omit))
        return out, _pullback(x, out.shape, grad)
    geom, red = _window_setup(
        x, axes, a["kernel_size"], op="torch_lp", stride=a["stride"],
        ceil_mode=a["ceil_mode"], norm_type=p, nan_policy=a["nan_policy"],
        allowed_lengths=(1, nd),
    )  # fmt: skip
    return out, _pullback(x, out.shape, _spread(x, geom, red))


def _adaptive_avg_family(
    fn: Callable[..., Any], x: Array, bound: Bound, nd: int
) -> tuple[Any, Pullback]:
    """adaptive_avg_pool*d."""
    a = bound.arguments
    out = fn(*bound.args, **bound.kwargs)
    axes = spatial_axes(x.ndim, nd, a["data_format"])
    sizes = _output_size(a["output_size"], x, axes, fn.__name__)
    geom = adaptive_geometry(x.shape, axes, sizes)
    red = Reduction(op="avg", nan_omit=a["nan_policy"] == "omit")
    return out, _pullback(x, out.shape, _spread(x, geom, red))


def _unpool_family(
    fn: Callable[..., Any], x: Array, bound: Bound, nd: int
) -> tuple[Any, Pullback]:
    """max_unpool*d: the gradient gathers at the indices."""
    a = bound.arguments
    out = fn(*bound.args, **bound.kwargs)
    axes = spatial_axes(x.ndim, nd, a["data_format"])
    idx = np.asarray(a["indices"])
    batch = [i for i in range(x.ndim) if i not in axes]
    order = batch + list(axes)
    n_batch = math.prod(x.shape[i] for i in batch)
    it = np.transpose(idx, order).reshape(n_batch, math.prod(x.shape[i] for i in axes))
    plane = math.prod(out.shape[i] for i in axes)

    def gather(g: Array) -> Array:
        if plane == 0:  # nothing was unpooled (an empty output plane)
            return np.zeros(x.shape)
        gt = np.transpose(g, order).reshape(n_batch, plane)
        taken = np.take_along_axis(gt, it, axis=1)
        shaped = taken.reshape([x.shape[i] for i in order])
        return np.transpose(shaped, np.argsort(order))

    return out, _pullback(x, out.shape, gather)


def _pool_family(
    fn: Callable[..., Any], x: Array, bound: Bound, nd: int
) -> tuple[Any, Pullback]:
    """ndpool.pool, every op."""
    a = bound.arguments
    op = check_choice(a["op"], ("max", "min", "avg", "sum", "lp"), "op")
    n = None if a["axes"] is not None else _kernel_len(a["kernel_size"])
    if a.get("data_format") == "channels_last" and n is not None:
        axes = spatial_axes(x.ndim, n, "channels_last")
    else:
        axes = normalize_axes(a["axes"], x.ndim, n)
    omit = check_choice(a["nan_policy"], NAN_POLICIES, "nan_policy") == "omit"
    if op in ("max", "min"):
        values, idx = _call(fn, bound, return_indices=True)
        out = (values, idx) if a["return_indices"] else values
        grad = _routed(x, idx, axes, omit)
    elif op == "lp" and check_norm_type(a["norm_type"]) == math.inf:
        out = fn(*bound.args, **bound.kwargs)
        _, idx = _call(
            fn, bound, x=np.abs(x), op="max", norm_type=None, return_indices=True,
            dtype=None,
        )  # fmt: skip
        grad = _signed(x, _routed(x, idx, axes, omit))
    else:
        out = fn(*bound.args, **bound.kwargs)
        geom, red = _window_setup(
            x, axes, a["kernel_size"], op=op, stride=a["stride"],
            padding=a["padding"], dilation=a["dilation"], ceil_mode=a["ceil_mode"],
            count_include_pad=a["count_include_pad"],
            divisor_override=a["divisor_override"], norm_type=a["norm_type"],
            nan_policy=a["nan_policy"],
        )  # fmt: skip
        grad = _spread(x, geom, red)
    values = out[0] if isinstance(out, tuple) else out
    if a["dtype"] is not None and np.dtype(a["dtype"]).kind != "f":
        zeros = np.zeros(x.shape)

        def grad(g: Array) -> Array:  # rounded to integers: piecewise constant
            return zeros

    return out, _pullback(x, values.shape, grad)


def _global_family(
    fn: Callable[..., Any], x: Array, bound: Bound, nd: int
) -> tuple[Any, Pullback]:
    """global_max_pool, global_avg_pool, global_lp_pool."""
    a = bound.arguments
    out = fn(*bound.args, **bound.kwargs)
    axes = spatial_axes(x.ndim, x.ndim - 2, a["data_format"])
    kernel = tuple(x.shape[i] for i in axes)
    omit = a["nan_policy"] == "omit"
    p = check_norm_type(a["norm_type"]) if fn is global_lp_pool else None
    grad: GradFn
    if fn is global_max_pool or p == math.inf:
        src = x if fn is global_max_pool else np.abs(x)
        _, idx = pool(
            src, kernel, axes=axes, op="max", return_indices=True,
            nan_policy=a["nan_policy"],
        )  # fmt: skip
        grad = _routed(x, idx, axes, omit)
        if p is not None:
            grad = _signed(x, grad)
    else:
        op = "avg" if fn is global_avg_pool else "lp"
        geom, red = _window_setup(
            x, axes, kernel, op=op, norm_type=p, nan_policy=a["nan_policy"]
        )
        grad = _spread(x, geom, red)
    if not a["keepdims"]:
        inner = grad

        def grad(g: Array) -> Array:
            return inner(np.expand_dims(g, axes))

    return out, _pullback(x, out.shape, grad)


Family = Callable[[Callable[..., Any], Array, Bound, int], tuple[Any, Pullback]]
_FAMILIES: dict[str, Family] = {
    "max": _max_family,
    "avg": _avg_family,
    "lp": _lp_family,
    "adaptive_avg": _adaptive_avg_family,
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
# argument handling shared by the rules


def _window_setup(
    x: Array,
    axes: tuple[int, ...],
    kernel_size: object,
    *,
    op: str,
    stride: object = None,
    padding: object = 0,
    dilation: object = 1,
    ceil_mode: object = False,
    count_include_pad: object = True,
    divisor_override: object = None,
    norm_type: object = None,
    nan_policy: object = "propagate",
    allowed_lengths: Sequence[int] | None = None,
) -> tuple[Geometry, Reduction]:
    """The geometry and reduction ``pooling.pool_windows`` builds.

    Mirrors ``pool_windows`` argument for argument (the forward has already
    validated them); kept in step with it by the gradient tests.
    """
    n = len(axes)
    kernel = as_int_tuple(
        kernel_size, n, "kernel_size", allowed_lengths=allowed_lengths
    )
    check_positive(kernel, "kernel_size")
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        strides = kernel
    else:
        strides = as_int_tuple(stride, n, "stride", allowed_lengths=allowed_lengths)
    dilations = as_int_tuple(dilation, n, "dilation", allowed_lengths=allowed_lengths)
    shape = tuple(x.shape[a] for a in axes)
    pads, _ = resolve_padding(
        padding, shape, kernel, strides, dilations, allowed_lengths=allowed_lengths
    )
    ceil = check_bool(ceil_mode, "ceil_mode")
    include_pad = check_bool(count_include_pad, "count_include_pad")
    if isinstance(padding, str):
        include_pad = False
        ceil = False
    red = Reduction(
        op=op,
        nan_omit=nan_policy == "omit",
        count_include_pad=include_pad,
        divisor_override=check_divisor(divisor_override),
        norm_type=check_norm_type(norm_type) if op in ("lp", "torch_lp") else None,
    )
    geom = regular_geometry(x.shape, axes, kernel, strides, pads, dilations, ceil)
    return geom, red


def _pullback(x: Array, out_shape: tuple[int, ...], grad: GradFn) -> Pullback:
    """Wrap ``grad`` with the checks and the cast every pullback shares."""
    shape, dtype = x.shape, x.dtype

    def pullback(grad_out: npt.ArrayLike) -> Array:
        g = np.asarray(grad_out)
        if g.dtype.kind not in "biuf":
            msg = f"pullback: grad_out has dtype {g.dtype}; give a real array"
            raise TypeError(msg)
        if g.shape != tuple(out_shape):
            msg = (
                f"pullback: grad_out has shape {g.shape} but the pooled output "
                f"has shape {tuple(out_shape)}; give one gradient per output"
            )
            raise ValueError(msg)
        with np.errstate(all="ignore"):
            result = grad(g)
        return np.asarray(result, dtype=dtype).reshape(shape)

    return pullback


# --------------------------------------------------------------------------
# routing: max, min, adaptive / fractional max, Lp with p = inf


def _routed(x: Array, idx: Array, axes: Sequence[int], omit: bool) -> GradFn:
    """Add each output gradient to the input cell its index names.

    ``idx`` is flat over ``axes`` in ascending order within each plane
    (every other axis is a batch axis, of the same length in the output).
    """
    pooled = sorted(axes)
    batch = [i for i in range(x.ndim) if i not in pooled]
    order = batch + pooled
    plane = math.prod(x.shape[i] for i in pooled)
    n_batch = math.prod(x.shape[i] for i in batch)
    per_plane = math.prod(idx.shape[i] for i in pooled)
    it = np.transpose(idx, order).reshape(n_batch, per_plane)
    # a window wholly in padding (dilation) carries PyTorch's out-of-plane
    # index; its gradient belongs to the padding, so it is dropped
    inside = ((it >= 0) & (it < plane)).ravel()
    flat = (np.arange(n_batch, dtype=np.int64)[:, None] * plane + it).ravel()
    all_inside = bool(inside.all())
    if not all_inside:
        flat = flat[inside]
    nan_mask = np.isnan(x) if omit else None
    shape_t = [x.shape[i] for i in order]
    inverse = np.argsort(order)

    def route(g: Array) -> Array:
        weights = np.transpose(g, order).reshape(-1).astype(np.float64)
        if not all_inside:
            weights = weights[inside]
        summed = np.bincount(flat, weights=weights, minlength=n_batch * plane)
        grad = np.transpose(summed.reshape(shape_t), inverse)
        return grad if nan_mask is None else np.where(nan_mask, 0.0, grad)

    return route


def _signed(x: Array, grad: GradFn) -> GradFn:
    """Chain ``grad`` (with respect to ``|x|``) through ``abs``."""
    sign = np.sign(x)
    return lambda g: grad(g) * sign


# --------------------------------------------------------------------------
# spreading: the adjoint of the summing core (average, sum, Lp)


def _acc_dtype(x: Array) -> np.dtype[Any]:
    return np.promote_types(x.dtype, np.float32)


def _spread(x: Array, geom: Geometry, red: Reduction) -> GradFn:
    """Pullback of the summing ops; see the module docstring."""
    acc = _acc_dtype(x)
    omit = red.nan_omit
    nan_mask = np.isnan(x) if omit else None
    empty: Array | None = None
    nan_count: Array | None = None
    if nan_mask is not None:
        counted = pool_core(nan_mask, geom, Reduction(op="sum"))
        assert isinstance(counted, np.ndarray)
        nan_count = counted
        empty = geom.window_count(include_pad=False) == nan_count

    window: Callable[[Array], Array]
    cell: Array | None = None
    if red.op in ("avg", "sum"):
        divisor: Any = 1
        if red.op == "avg" and red.divisor_override is not None:
            divisor = acc.type(red.divisor_override)
        elif red.op == "avg":
            count = geom.window_count(include_pad=red.count_include_pad)
            if nan_count is not None:
                count = count - nan_count
            divisor = count.astype(acc)

        def window(g: Array) -> Array:
            return np.asarray(g / divisor) if red.op == "avg" else g

    elif red.op == "torch_lp":
        window, cell = _torch_lp_parts(x, geom, red, acc)
    else:
        window, cell = _lp_parts(x, geom, red, acc)

    def spread(g: Array) -> Array:
        w = window(g.astype(acc, copy=False))
        if empty is not None:
            w = np.where(empty, 0, w)
        grad = _sum_adjoint(np.asarray(w, dtype=acc), geom)
        if cell is not None:
            grad = grad * cell
        return grad if nan_mask is None else np.where(nan_mask, 0, grad)

    return spread


def _torch_lp_parts(
    x: Array, geom: Geometry, red: Reduction, acc: np.dtype[Any]
) -> tuple[Callable[[Array], Array], Array]:
    """PyTorch's lp_pool autograd, step by step.

    Forward: ``m = avg(x**p)``, ``t = sign(m) * relu(|m|) * k``,
    ``out = t ** (1/p)``; a window whose ``m`` is 0 gets no gradient.
    """
    p = red.norm_type
    assert p is not None
    base = x.astype(acc, copy=False)
    with np.errstate(all="ignore"):
        terms = np.power(base, acc.type(p))
        if red.nan_omit:
            terms = np.where(np.isnan(x), 0, terms)
        mean = np.asarray(pool_core(terms, geom, Reduction(op="avg")), dtype=acc)
        sign = np.sign(mean)
        relu = np.maximum(np.abs(mean), 0)
        kvol = acc.type(geom.kernel_volume)
        t = sign * relu * kvol
        e = acc.type(1.0 / p)
        d_pow = e * np.power(t, acc.type(1.0 / p - 1.0))
        divisor = geom.window_count(include_pad=True).astype(acc)
        cell = acc.type(p) * np.power(base, acc.type(p - 1.0))

    def window(g: Array) -> Array:
        g_relu = (g * d_pow) * kvol * sign
        g_abs = np.where(relu <= 0, 0, g_relu)
        return np.asarray(g_abs * sign / divisor)

    return window, np.asarray(cell)


def _lp_parts(
    x: Array, geom: Geometry, red: Reduction, acc: np.dtype[Any]
) -> tuple[Callable[[Array], Array], Array]:
    """The p-norm of each window, as ``torch.linalg.vector_norm``'s backward."""
    p = red.norm_type
    assert p is not None
    base = x.astype(acc, copy=False)
    norm = np.asarray(
        pool_core(base, geom, Reduction(op="lp", norm_type=p, nan_omit=red.nan_omit)),
        dtype=acc,
    )
    mag = np.abs(base)
    one = acc.type(1)
    with np.errstate(all="ignore"):
        if p == 1:
            cell = np.sign(base)
        elif p < 1:
            cell = np.sign(base) * np.where(base == 0, 0, np.power(mag, p - one))
        elif p < 2:
            cell = np.sign(base) * np.power(mag, p - one)
        else:
            cell = base * np.power(mag, p - acc.type(2))
        scale = np.power(norm, one - p) if p < 1 else np.power(norm, p - one)

    def window(g: Array) -> Array:
        if p == 1:
            return g
        if p < 1:
            return np.asarray(g * scale)
        return np.where(norm == 0, 0, g / scale)

    return window, np.asarray(cell)


def _sum_adjoint(g: Array, geom: Geometry) -> Array:
    """Transpose of ``_core``'s pad-then-sum: window sums back to cells."""
    cur = g
    for plan in geom.plans:  # the forward ran them in reverse
        cur = _unsum_pass(cur, plan, geom)
    crop = [slice(None)] * cur.ndim
    for plan in geom.plans:
        if plan.regular and (plan.lo or plan.hi):
            crop[plan.axis] = slice(plan.lo, plan.lo + plan.length)
    return cur[tuple(crop)]


def _unsum_pass(src: Array, plan: AxisPlan, geom: Geometry) -> Array:
    """Transpose of one summing pass over ``plan.axis``."""
    a = plan.axis
    shape = list(src.shape)
    shape[a] = plan.lo + plan.length + plan.hi if plan.regular else plan.length
    if plan.full_axis:
        return np.broadcast_to(src, shape)
    out = np.zeros(shape, dtype=src.dtype)
    if plan.regular:
        index: list[slice] = [slice(None)] * src.ndim
        for j in range(plan.taps):
            index[a] = plan.tap_slice(j)
            out[tuple(index)] += src
        return out
    moved_out = np.moveaxis(out, a, 0)  # a view: writes land in ``out``
    moved_src = np.moveaxis(src, a, 0)
    unique = plan.out <= plan.length  # adaptive starts strictly increase
    for j in range(plan.taps):
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
