"""The N-d public API: :func:`pool` over any axes, and global pooling.

The torch-named functions in :mod:`ndpool.functional` are thin wrappers over
:func:`pool_windows` below, which :func:`pool` also uses.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections.abc import Hashable, Sequence
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt

from ._core import Reduction, is_dask, native_order, pool_core
from ._geometry import (
    Geometry,
    as_int_tuple,
    check_dtype,
    check_int_range,
    check_positive,
    normalize_axes,
    regular_geometry,
    resolve_padding,
)
from ._xp import namespace, np_dtype

__all__ = [
    "global_avg_pool",
    "global_lp_pool",
    "global_max_pool",
    "pool",
]

Array = npt.NDArray[Any]
Op = Literal["max", "min", "avg", "sum", "lp"]
OPS = ("max", "min", "avg", "sum", "lp")
NAN_POLICIES = ("propagate", "omit")
DATA_FORMATS = ("channels_first", "channels_last")


# --------------------------------------------------------------------------
# argument helpers shared with functional.py


def as_array(x: object, name: str = "input") -> Array:
    """``x`` as a NumPy array with a poolable dtype (TypeError otherwise).

    A Dask array stays lazy: the core pools it chunk by chunk; any other
    Array-API array (torch, CuPy, JAX, ...) is pooled with its own library.
    """
    check_unmasked(x, name, data=True)
    if is_dask(x):
        from ._dask import check_chunks

        check_chunks(x, name)  # geometry needs every length
        check_dtype(np.dtype(x.dtype), name)  # type: ignore[attr-defined]
        return native_order(x)  # type: ignore[no-any-return]
    xp = namespace(x)
    if xp is not None:  # any Array-API array stays what it is
        np_dtype(xp, x.dtype)  # type: ignore[attr-defined]
        return x  # type: ignore[return-value]
    arr = np.ma.getdata(x) if isinstance(x, np.ma.MaskedArray) else np.asarray(x)
    check_dtype(arr.dtype, name)
    return native_order(arr)  # type: ignore[no-any-return]


def check_unmasked(x: object, name: str, *, data: bool = False) -> None:
    """Refuse a mask ndpool would ignore (TypeError).

    A NumPy masked array with masked cells, or a Dask array of masked
    chunks, whose masks cannot be looked at without computing them. The
    ``data`` to pool is told how to skip its masked cells; an argument
    (indices, a gradient, random samples) has no cell to skip.
    """
    lazy = is_dask(x) and isinstance(getattr(x, "_meta", None), np.ma.MaskedArray)
    if not lazy and not (
        isinstance(x, np.ma.MaskedArray) and np.ma.getmaskarray(x).any()
    ):
        return
    what = "a Dask array of masked arrays" if lazy else "a masked array"
    if not data:
        msg = (
            f"{name} is {what}; ndpool would use the values under the mask. "
            "Give a plain array (np.ma.filled, or np.ma.getdata to use them)"
        )
        raise TypeError(msg)
    fill, every = (
        ("x.map_blocks(np.ma.filled, np.nan)", "x.map_blocks(np.ma.getdata)")
        if lazy
        else ("x.filled(np.nan)", "np.asarray(x)")
    )
    msg = (
        f"{name} is {what}; ndpool would ignore the mask. Pool {fill} with "
        f"nan_policy='omit' to skip the masked cells, or {every} to pool every "
        "value"
    )
    raise TypeError(msg)


def check_out_dtype(dtype: npt.DTypeLike) -> np.dtype[Any]:
    """The ``dtype=`` argument as a bool, integer or floating NumPy dtype."""
    try:
        out = np.dtype(dtype)
    except TypeError as err:
        msg = f"dtype={dtype!r} is not a NumPy dtype"
        raise TypeError(msg) from err
    if out.kind not in "biuf":
        msg = f"dtype={dtype!r} must be a bool, integer or floating dtype, got {out}"
        raise TypeError(msg)
    native: np.dtype[Any] = out.newbyteorder("=")
    return native


def check_choice(value: object, choices: Sequence[str], name: str) -> str:
    if not isinstance(value, str) or value not in choices:
        msg = f"{name} must be one of {tuple(choices)}, got {value!r}"
        raise ValueError(msg)
    return value


def check_bool(value: object, name: str, *, allow_int: bool = False) -> bool:
    """A bool flag; PyTorch refuses ints for its C++ flags (``ceil_mode``)."""
    kinds: tuple[type, ...] = (bool, np.bool_)
    if allow_int:  # PyTorch's return_indices takes any truthy value
        kinds = (bool, np.bool_, int, np.integer)
    if not isinstance(value, kinds):
        msg = f"{name} must be a bool, got {value!r} of type {type(value).__name__}"
        raise TypeError(msg)
    return bool(value)


def check_norm_type(norm_type: object) -> float:
    if isinstance(norm_type, (bool, np.bool_)) or not isinstance(
        norm_type, numbers.Real
    ):
        msg = f"norm_type must be a real number, got {norm_type!r}"
        raise TypeError(msg)
    try:
        p = float(norm_type)
    except OverflowError:  # an int past float's range: +-inf is the norm meant
        msg = (
            f"norm_type={norm_type!r} is too large for a float; pass "
            "float('inf') for the max norm"
        )
        raise ValueError(msg) from None
    if np.isnan(p):
        msg = "norm_type=nan must be a number, not NaN"
        raise ValueError(msg)
    if p == 0:
        msg = f"norm_type={norm_type!r} must be non-zero (the result is sum**(1/p))"
        raise ValueError(msg)
    return p


def check_divisor(divisor_override: object) -> int | None:
    if divisor_override is None:
        return None
    if isinstance(divisor_override, (bool, np.bool_)) or not isinstance(
        divisor_override, (int, np.integer)
    ):
        msg = f"divisor_override must be an int or None, got {divisor_override!r}"
        raise TypeError(msg)
    if divisor_override == 0:
        msg = "divisor_override=0 must be non-zero"
        raise ValueError(msg)
    return check_int_range(int(divisor_override), "divisor_override")


def spatial_axes(ndim: int, nd: int, data_format: str) -> tuple[int, ...]:
    """The ``nd`` spatial axes of an ``(N, C, *sp)``/``(N, *sp, C)`` array."""
    check_choice(data_format, DATA_FORMATS, "data_format")
    if data_format == "channels_first":
        return tuple(range(ndim - nd, ndim))
    return tuple(range(ndim - nd - 1, ndim - 1))


def pool_windows(
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
    return_indices: object = False,
    nan_policy: object = "propagate",
    dtype: npt.DTypeLike | None = None,
    allowed_lengths: Sequence[int] | None = None,
) -> Array | tuple[Array, Array]:
    """Validate window arguments for ``axes`` of ``x`` and pool.

    ``allowed_lengths`` lets the torch wrappers accept PyTorch's
    length-1 tuples. Arguments seen before (same values of the same types,
    same shape) reuse their checked geometry: the checks cost a small
    call more than its pooling.
    """
    arr: Any = x  # typed NumPy, but any Array-API array reaches here
    if dtype is not None and not isinstance(arr, np.ndarray):
        dtype = _library_dtype(arr, dtype)
    args = (
        kernel_size, stride, padding, dilation, ceil_mode, count_include_pad,
        divisor_override, norm_type, return_indices, nan_policy, dtype,
    )  # fmt: skip
    key = _memo_key(x.shape, axes, op, allowed_lengths, args)
    checked = None if key is None else _checked.get(key)
    if checked is None:
        checked = _check_windows(x.shape, axes, op, allowed_lengths, *args)
        if key is not None:
            _remember(key, checked)
    geom, red, indices = checked
    return pool_core(x, geom, red, return_indices=indices)


def _library_dtype(x: object, dtype: Any) -> Any:
    """An Array-API input's own dtype object (``torch.uint8``) as the NumPy
    dtype of that name; anything else as given, for the NumPy checks."""
    xp = namespace(x)
    if xp is None:
        return dtype
    try:  # a NumPy dtype first: array_api_strict warns when compared to one
        return np.dtype(dtype)
    except TypeError:
        pass
    try:
        return np_dtype(xp, dtype)
    except TypeError:
        return dtype


#: checked arguments kept, most recent last (a dict keeps insertion order)
_CHECKED_KEPT = 256
_checked: dict[Hashable, tuple[Geometry, Reduction, bool]] = {}
_checked_lock = threading.Lock()
_SCALARS = frozenset({int, float, bool, str, type(None)})


def _tagged(value: object) -> Hashable:
    """``value`` with its type, recursively: 2, 2.0 and True are equal keys
    to a dict, not to the checks (a float kernel size is refused)."""
    kind = type(value)
    if kind is tuple or kind is list:
        return (kind, *map(_tagged, value))  # type: ignore[call-overload]
    if kind in _SCALARS or isinstance(value, (np.generic, np.dtype, type)):
        return (kind, value)
    raise TypeError  # not a plain argument: checked every time


def _memo_key(
    shape: tuple[int, ...],
    axes: tuple[int, ...],
    op: str,
    allowed_lengths: Sequence[int] | None,
    args: tuple[object, ...],
) -> Hashable | None:
    """A key for :data:`_checked`, or None for arguments not to keep."""
    kinds = tuple(map(type, args))
    try:
        # plain scalars are told apart by ``kinds``; anything else (tuples,
        # lists, NumPy scalars) carries its types inside
        tagged = args if _SCALARS.issuperset(kinds) else tuple(map(_tagged, args))
        key = (shape, axes, op, allowed_lengths, kinds, tagged)
        hash(key)
    except TypeError:
        return None
    return key


def _remember(key: Hashable, checked: tuple[Geometry, Reduction, bool]) -> None:
    with _checked_lock:
        if len(_checked) >= _CHECKED_KEPT:
            del _checked[next(iter(_checked))]
        _checked[key] = checked


def _check_windows(
    shape: tuple[int, ...],
    axes: tuple[int, ...],
    op: str,
    allowed_lengths: Sequence[int] | None,
    kernel_size: object,
    stride: object,
    padding: object,
    dilation: object,
    ceil_mode: object,
    count_include_pad: object,
    divisor_override: object,
    norm_type: object,
    return_indices: object,
    nan_policy: object,
    dtype: npt.DTypeLike | None,
) -> tuple[Geometry, Reduction, bool]:
    """What :func:`pool_windows` checks: (geometry, reduction, indices)."""
    n = len(axes)
    kernel = as_int_tuple(
        kernel_size, n, "kernel_size", allowed_lengths=allowed_lengths
    )
    check_positive(kernel, "kernel_size", axes)
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        strides = kernel
    else:
        strides = as_int_tuple(stride, n, "stride", allowed_lengths=allowed_lengths)
        check_positive(strides, "stride", axes)
    dilations = as_int_tuple(dilation, n, "dilation", allowed_lengths=allowed_lengths)
    check_positive(dilations, "dilation", axes)
    pads, _ = resolve_padding(
        padding,
        tuple(shape[a] for a in axes),
        kernel,
        strides,
        dilations,
        allowed_lengths=allowed_lengths,
        axes=axes,
    )
    ceil = check_bool(ceil_mode, "ceil_mode")
    include_pad = check_bool(count_include_pad, "count_include_pad")
    if isinstance(padding, str):
        include_pad = False  # "same": padded cells never count
        ceil = False
    indices = check_bool(return_indices, "return_indices", allow_int=True)
    policy = check_choice(nan_policy, NAN_POLICIES, "nan_policy")
    if indices and op not in ("max", "min"):
        msg = f"return_indices=True needs op='max' or 'min', got op={op!r}"
        raise ValueError(msg)
    p = check_norm_type(norm_type) if op in ("lp", "torch_lp") else None
    if op == "lp" and p == -math.inf:
        msg = (
            "norm_type=-inf is not a p-norm op='lp' computes; the smallest |x| "
            "of each window is pool(np.abs(x), ..., op='min')"
        )
        raise ValueError(msg)
    red = Reduction(
        op=op,
        nan_omit=policy == "omit",
        count_include_pad=include_pad,
        divisor_override=check_divisor(divisor_override),
        norm_type=p,
        dtype=None if dtype is None else check_out_dtype(dtype),
    )
    geom = regular_geometry(shape, axes, kernel, strides, pads, dilations, ceil)
    return geom, red, indices


# --------------------------------------------------------------------------
# public API


@overload
def pool(
    x: npt.ArrayLike,
    /,
    kernel_size: int | Sequence[int],
    *,
    op: Op = ...,
    axes: int | Sequence[int] | None = ...,
    stride: int | Sequence[int] | None = ...,
    padding: Any = ...,
    dilation: int | Sequence[int] = ...,
    ceil_mode: bool = ...,
    count_include_pad: bool = ...,
    divisor_override: int | None = ...,
    norm_type: float | None = ...,
    return_indices: Literal[False] = ...,
    nan_policy: Literal["propagate", "omit"] = ...,
    dtype: npt.DTypeLike = ...,
    data_format: Literal["channels_first", "channels_last"] | None = ...,
) -> Array: ...
@overload
def pool(
    x: npt.ArrayLike,
    /,
    kernel_size: int | Sequence[int],
    *,
    op: Op = ...,
    axes: int | Sequence[int] | None = ...,
    stride: int | Sequence[int] | None = ...,
    padding: Any = ...,
    dilation: int | Sequence[int] = ...,
    ceil_mode: bool = ...,
    count_include_pad: bool = ...,
    divisor_override: int | None = ...,
    norm_type: float | None = ...,
    return_indices: Literal[True],
    nan_policy: Literal["propagate", "omit"] = ...,
    dtype: npt.DTypeLike = ...,
    data_format: Literal["channels_first", "channels_last"] | None = ...,
) -> tuple[Array, Array]: ...
def pool(
    x: npt.ArrayLike,
    /,
    kernel_size: int | Sequence[int],
    *,
    op: Op = "max",
    axes: int | Sequence[int] | None = None,
    stride: int | Sequence[int] | None = None,
    padding: Any = 0,
    dilation: int | Sequence[int] = 1,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    norm_type: float | None = None,
    return_indices: bool = False,
    nan_policy: Literal["propagate", "omit"] = "propagate",
    dtype: npt.DTypeLike | None = None,
    data_format: Literal["channels_first", "channels_last"] | None = None,
) -> Array | tuple[Array, Array]:
    """Pool ``x`` over any axes with a sliding window.

    Parameters
    ----------
    x : array_like
        Input of any shape and a bool, integer or floating dtype.
    kernel_size : int or sequence of int
        Window size; an int applies to every pooled axis.
    op : {"max", "min", "avg", "sum", "lp"}
        Reduction over each window. ``"lp"`` is the true p-norm
        ``(sum |x|**p) ** (1/p)`` over the window's real cells.
    axes : int or sequence of int, optional
        Pooled axes, in any order, negative allowed; ``kernel_size[i]``,
        ``stride[i]`` ... go with ``axes[i]``. Default: the trailing
        ``len(kernel_size)`` axes (one if ``kernel_size`` is an int).
        Every other axis is a batch axis.
    stride : int or sequence of int, optional
        Step between windows; default ``kernel_size``.
    padding : int, sequence, or {"valid", "same", "same_lower"}
        Implicit padding: an int or one int per axis (both sides, at most
        half the kernel, as PyTorch), ``((before, after), ...)`` per axis,
        ``"valid"`` (none), ``"same"`` (output ``ceil(L / stride)``, the odd
        cell of padding at the end, as TensorFlow and ONNX SAME_UPPER) or
        ``"same_lower"`` (odd cell at the start). With ``"same"``, padded
        cells never count in an average.
    dilation : int or sequence of int
        Spacing between window cells.
    ceil_mode : bool
        Round the output length up (PyTorch's rule: the last window must
        start inside the input or the left padding). Int and pair padding
        only: a string padding fixes the output length itself (as ONNX's
        ``auto_pad``), so ``padding="valid", ceil_mode=True`` rounds down;
        ``padding=0`` rounds up.
    count_include_pad : bool
        Whether padded cells count in the divisor of ``op="avg"``.
    divisor_override : int, optional
        Divide window sums by this instead (``op="avg"``; the other ops
        check it but do not use it, so one call can sweep ``op``).
    norm_type : float
        ``p`` of ``op="lp"`` (``inf`` gives the max of ``|x|``; the other
        ops ignore it).
    return_indices : bool
        With ``op="max"``/``"min"``, also return int64 indices, row-major
        flat over the pooled axes taken in ascending order.
    nan_policy : {"propagate", "omit"}
        ``"omit"`` ignores NaN as ``np.nanmax``/``np.nanmean``; a window of
        only NaN gives NaN.
    dtype : dtype, optional
        Output dtype. Default: the input's for max/min and float input;
        float64 for the average or Lp of integers (never overflows), int64
        (uint64) for their sum. An integer ``dtype`` rounds to nearest. The
        result is cast to it: sums do not accumulate in it (unlike
        ``np.sum``'s ``dtype``).
    data_format : {"channels_first", "channels_last"}, optional
        Another way to name the default axes: ``"channels_last"`` pools the
        ``len(kernel_size)`` axes before the last one (``(N, *spatial, C)``),
        ``"channels_first"`` the trailing ones. Not together with ``axes``.

    Returns
    -------
    out : ndarray
        Pooled array; pooled axes have length
        ``floor((L + pad_before + pad_after - dilation*(k-1) - 1) / stride) + 1``
        (``ceil`` with ``ceil_mode``).
    indices : ndarray of int64
        Only with ``return_indices=True``.

    Examples
    --------
    >>> import numpy as np
    >>> import ndpool
    >>> x = np.arange(1, 17).reshape(4, 4)
    >>> ndpool.pool(x, (2, 2))
    array([[ 6,  8],
           [14, 16]])
    >>> ndpool.pool(x, (2, 2), op="avg")
    array([[ 3.5,  5.5],
           [11.5, 13.5]])
    >>> ndpool.pool(np.arange(6.0), 3, stride=1, op="sum")
    array([ 3.,  6.,  9., 12.])
    """
    arr = as_array(x)
    check_choice(op, OPS, "op")
    n = None if axes is not None else _kernel_len(kernel_size)
    if data_format is not None:
        check_choice(data_format, DATA_FORMATS, "data_format")
        if axes is not None:
            msg = f"give axes={axes!r} or data_format={data_format!r}, not both"
            raise ValueError(msg)
        assert n is not None
        if data_format == "channels_last":
            if n >= arr.ndim:
                msg = (
                    f"data_format='channels_last' needs a channel axis after the "
                    f"{n} pooled axes, got an input of shape {arr.shape}"
                )
                raise ValueError(msg)
            axes = spatial_axes(arr.ndim, n, data_format)
    pooled = normalize_axes(axes, arr.ndim, n)
    return pool_windows(
        arr,
        pooled,
        kernel_size,
        op=op,
        stride=stride,
        padding=padding,
        dilation=dilation,
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
        divisor_override=divisor_override,
        norm_type=norm_type,
        return_indices=return_indices,
        nan_policy=nan_policy,
        dtype=dtype,
    )


def _kernel_len(kernel_size: object) -> int:
    if isinstance(kernel_size, Sequence) and not isinstance(kernel_size, str):
        return len(kernel_size)
    return 1


def _global(
    x: npt.ArrayLike,
    op: str,
    data_format: str,
    keepdims: bool,
    nan_policy: str,
    norm_type: object = None,
    dtype: npt.DTypeLike | None = None,
) -> Array:
    arr = as_array(x)
    check_choice(data_format, DATA_FORMATS, "data_format")
    keepdims = check_bool(keepdims, "keepdims")
    if arr.ndim < 3:
        msg = (
            f"input must be (N, C, *spatial) or (N, *spatial, C) with at least one "
            f"spatial axis, got shape {arr.shape}"
        )
        raise ValueError(msg)
    axes = spatial_axes(arr.ndim, arr.ndim - 2, data_format)
    for a in axes:
        if arr.shape[a] == 0:
            msg = f"input has an empty spatial axis {a} (shape {arr.shape})"
            raise ValueError(msg)
    kernel = tuple(arr.shape[a] for a in axes)
    out = pool_windows(
        arr,
        axes,
        kernel,
        op=op,
        nan_policy=nan_policy,
        norm_type=norm_type,
        dtype=dtype,
    )
    assert not isinstance(out, tuple)
    if keepdims:
        return out
    xp = namespace(out)
    return out.squeeze(axis=axes) if xp is None else xp.squeeze(out, axis=axes)


def global_max_pool(
    x: npt.ArrayLike,
    /,
    *,
    data_format: Literal["channels_first", "channels_last"] = "channels_first",
    keepdims: bool = False,
    nan_policy: Literal["propagate", "omit"] = "propagate",
    dtype: npt.DTypeLike | None = None,
) -> Array:
    """Max over all spatial axes (Keras/ONNX GlobalMaxPool).

    Examples
    --------
    >>> import numpy as np, ndpool
    >>> ndpool.global_max_pool(np.arange(8.0).reshape(1, 2, 2, 2))
    array([[3., 7.]])
    """
    return _global(x, "max", data_format, keepdims, nan_policy, dtype=dtype)


def global_avg_pool(
    x: npt.ArrayLike,
    /,
    *,
    data_format: Literal["channels_first", "channels_last"] = "channels_first",
    keepdims: bool = False,
    nan_policy: Literal["propagate", "omit"] = "propagate",
    dtype: npt.DTypeLike | None = None,
) -> Array:
    """Mean over all spatial axes (Keras/ONNX GlobalAveragePool).

    Integer input averages to float64 unless ``dtype`` says otherwise (an
    integer ``dtype`` rounds to nearest).

    Examples
    --------
    >>> import numpy as np, ndpool
    >>> ndpool.global_avg_pool(np.arange(8.0).reshape(1, 2, 2, 2), keepdims=True)
    array([[[[1.5]],
    <BLANKLINE>
            [[5.5]]]])
    """
    return _global(x, "avg", data_format, keepdims, nan_policy, dtype=dtype)


def global_lp_pool(
    x: npt.ArrayLike,
    /,
    norm_type: float = 2.0,
    *,
    data_format: Literal["channels_first", "channels_last"] = "channels_first",
    keepdims: bool = False,
    nan_policy: Literal["propagate", "omit"] = "propagate",
    dtype: npt.DTypeLike | None = None,
) -> Array:
    """p-norm over all spatial axes (ONNX GlobalLpPool).

    Examples
    --------
    >>> import numpy as np, ndpool
    >>> ndpool.global_lp_pool(np.array([[[3.0, -4.0]]]))
    array([[5.]])
    """
    return _global(x, "lp", data_format, keepdims, nan_policy, norm_type, dtype)
