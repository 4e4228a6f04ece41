"""PyTorch's ``torch.nn.functional`` pooling ops, on NumPy arrays.

Same names, positional order, defaults and results as PyTorch 2.13, so
``import ndpool.functional as F`` is a drop-in. Each function is a few lines
over the shared core; keyword-only extensions (``data_format``,
``nan_policy``, "same" padding) are documented in :func:`ndpool.pool`.

Input is ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``; with
``data_format="channels_last"``, ``(N, *spatial, C)`` or ``(*spatial, C)``.

Examples
--------
>>> import numpy as np
>>> import ndpool.functional as F
>>> x = np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
>>> F.max_pool2d(x, 2)
array([[[[ 6.,  8.],
         [14., 16.]]]])
>>> out, idx = F.max_pool2d(x, 2, return_indices=True)
>>> idx
array([[[[ 5,  7],
         [13, 15]]]])
>>> F.max_unpool2d(out, idx, 2)[0, 0]
array([[ 0.,  0.,  0.,  0.],
       [ 0.,  6.,  0.,  8.],
       [ 0.,  0.,  0.,  0.],
       [ 0., 14.,  0., 16.]])
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ._core import Reduction, is_dask, native_order, pool_core, unpool_core
from ._geometry import (
    adaptive_geometry,
    as_int_tuple,
    check_output_size,
    check_positive,
    fractional_geometry,
)
from ._xp import astype, host_dtype, namespace, to_host, to_library, unpool_xp
from .pooling import (
    as_array,
    check_bool,
    check_choice,
    check_unmasked,
    pool_windows,
    spatial_axes,
)

__all__ = [
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "fractional_max_pool2d",
    "fractional_max_pool3d",
    "lp_pool1d",
    "lp_pool2d",
    "lp_pool3d",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "max_unpool1d",
    "max_unpool2d",
    "max_unpool3d",
]

Array = npt.NDArray[Any]
IntOrTuple = int | Sequence[int]
DataFormat = Literal["channels_first", "channels_last"]
NanPolicy = Literal["propagate", "omit"]
MaybeIndices = Array | tuple[Array, Array]


def _input(
    x: npt.ArrayLike,
    nd: int,
    name: str,
    data_format: str,
    *,
    empty_channels: bool = False,
    unbatched_empty: bool = False,
) -> tuple[Array, tuple[int, ...]]:
    """Check an (N, C, *sp) / (C, *sp) input as PyTorch does; return its axes.

    The batch axis may be empty; so may the channel axis with
    ``empty_channels``, or with ``unbatched_empty`` when there is no batch
    axis (PyTorch's adaptive and fractional kernels read C as the batch).
    """
    arr = as_array(x, f"{name}: input")
    if arr.ndim not in (nd + 1, nd + 2):
        layout = "C, " + ", ".join(["*"] * nd)
        msg = (
            f"{name}: input must be {nd + 1}-D ({layout}) or {nd + 2}-D "
            f"(N, {layout}), got shape {arr.shape}"
        )
        raise ValueError(msg)
    axes = spatial_axes(arr.ndim, nd, data_format)
    channel = 1 if arr.ndim == nd + 2 else 0
    if data_format == "channels_last":
        channel = arr.ndim - 1
    empty_channels |= unbatched_empty and arr.ndim == nd + 1
    for i, size in enumerate(arr.shape):
        if size == 0 and (i in axes or (i == channel and not empty_channels)):
            msg = (
                f"{name}: input shape {arr.shape} has an empty axis {i}; only the "
                "batch axis may be empty"
            )
            raise ValueError(msg)
    return arr, axes


def _max_pool(
    nd: int,
    x: npt.ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: Any,
    dilation: IntOrTuple,
    ceil_mode: bool,
    return_indices: bool,
    data_format: str,
    nan_policy: str,
) -> MaybeIndices:
    arr, axes = _input(x, nd, f"max_pool{nd}d", data_format)
    return pool_windows(
        arr,
        axes,
        kernel_size,
        op="max",
        stride=stride,
        padding=padding,
        dilation=dilation,
        ceil_mode=ceil_mode,
        return_indices=return_indices,
        nan_policy=nan_policy,
        allowed_lengths=(1, nd),
    )


def max_pool1d(
    input: npt.ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: Any = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    *,
    data_format: DataFormat = "channels_first",
    nan_policy: NanPolicy = "propagate",
) -> MaybeIndices:
    """1-D max pooling, as ``torch.nn.functional.max_pool1d``."""
    return _max_pool(
        1, input, kernel_size, stride, padding, dilation, ceil_mode,
        return_indices, data_format, nan_policy,
    )  # fmt: skip


def max_pool2d(
    input: npt.ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: Any = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    *,
    data_format: DataFormat = "channels_first",
    nan_policy: NanPolicy = "propagate",
) -> MaybeIndices:
    """2-D max pooling, as ``torch.nn.functional.max_pool2d``.

    Output length per spatial axis:
    ``floor((L + 2*padding - dilation*(kernel_size-1) - 1) / stride) + 1``
    (``ceil`` with ``ceil_mode``). Indices are flat over each (n, c) plane.

    Examples
    --------
    >>> import numpy as np, ndpool.functional as F
    >>> F.max_pool2d(np.arange(16.0).reshape(1, 4, 4), 3, stride=2, padding=1)
    array([[[ 5.,  7.],
            [13., 15.]]])
    """
    return _max_pool(
        2, input, kernel_size, stride, padding, dilation, ceil_mode,
        return_indices, data_format, nan_policy,
    )  # fmt: skip


def max_pool3d(
    input: npt.ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: Any = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    *,
    data_format: DataFormat = "channels_first",
    nan_policy: NanPolicy = "propagate",
) -> MaybeIndices:
    """3-D max pooling, as ``torch.nn.functional.max_pool3d``."""
    return _max_pool(
        3, input, kernel_size, stride, padding, dilation, ceil_mode,
        return_indices, data_format, nan_policy,
    )  # fmt: skip


def _avg_pool(
    nd: int,
    x: npt.ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: Any,
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: int | None,
    data_format: str,
    nan_policy: str,
) -> Array:
    arr, axes = _input(x, nd, f"avg_pool{nd}d", data_format)
    if nd == 3:
        _check_kernel_fits(arr, axes, kernel_size, "avg_pool3d")
    out = pool_windows(
        arr,
        axes,
        kernel_size,
        op="avg",
        stride=stride,
        padding=padding,
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
        divisor_override=divisor_override,
        nan_policy=nan_policy,
        allowed_lengths=(1, nd),
    )
    assert not isinstance(out, tuple)
    return out


def avg_pool1d(
    input: npt.ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    data_format: DataFormat = "channels_first",
    nan_policy: NanPolicy = "propagate",
) -> Array:
    """1-D average pooling, as ``torch.nn.functional.avg_pool1d``.

    Integer input averages to float64 (never truncated, unlike PyTorch).
    """
    return _avg_pool(
        1, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
        divisor_override, data_format, nan_policy,
    )  # fmt: skip


def avg_pool2d(
    input: npt.ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    data_format: DataFormat = "channels_first",
    nan_policy: NanPolicy = "propagate",
) -> Array:
    """2-D average pooling, as ``torch.nn.functional.avg_pool2d``.

    The divisor is the window clipped to the padded border (a ``ceil_mode``
    overhang does not count), or the cells inside the input when
    ``count_include_pad=False``; ``divisor_override`` wins over both.

    Examples
    --------
    >>> import numpy as np, ndpool.functional as F
    >>> F.avg_pool2d(np.ones((1, 3, 3)), 2, padding=1)
    array([[[0.25, 0.5 ],
            [0.5 , 1.  ]]])
    """
    return _avg_pool(
        2, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
        divisor_override, data_format, nan_policy,
    )  # fmt: skip


def avg_pool3d(
    input: npt.ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    data_format: DataFormat = "channels_first",
    nan_policy: NanPolicy = "propagate",
) -> Array:
    """3-D average pooling, as ``torch.nn.functional.avg_pool3d``."""
    return _avg_pool(
        3, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
        divisor_override, data_format, nan_policy,
    )  # fmt: skip


def _lp_pool(
    nd: int,
    x: npt.ArrayLike,
    norm_type: float,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    ceil_mode: bool,
    data_format: str,
    nan_policy: str,
) -> Array:
    name = f"lp_pool{nd}d"
    arr, axes = _input(x, nd, name, data_format)
    infinite = isinstance(norm_type, (int, float)) and abs(norm_type) == math.inf
    # PyTorch unpacks kernel_size itself: an int, or exactly nd ints (1-d:
    # an int), but for p = +-inf, which goes to max_pool (1-d: (k,) too)
    if nd == 1 and not infinite and not isinstance(kernel_size, (int, np.integer)):
        msg = f"{name}: kernel_size must be an int, got {kernel_size!r}"
        raise TypeError(msg)
    if nd > 1 or not infinite:
        as_int_tuple(kernel_size, nd, "kernel_size")
    src, op = arr, "torch_lp"
    if infinite:
        # PyTorch: max_pool of |x| (inf) or -max_pool(-|x|) (-inf)
        src = abs(arr if host_dtype(arr).kind == "f" else astype(arr, np.dtype("f8")))
        op = "max" if norm_type > 0 else "min"
    elif nd == 3:  # through avg_pool3d
        _check_kernel_fits(arr, axes, kernel_size, name)
    out = pool_windows(
        src,
        axes,
        kernel_size,
        op=op,
        stride=stride,
        ceil_mode=ceil_mode,
        norm_type=norm_type,  # read by op="torch_lp" only
        nan_policy=nan_policy,
        allowed_lengths=(1, nd),
    )
    assert not isinstance(out, tuple)
    return out


def _check_kernel_fits(
    arr: Array, axes: tuple[int, ...], kernel_size: object, name: str
) -> None:
    """PyTorch's avg_pool3d needs every unpadded spatial axis >= the kernel."""
    kernel = as_int_tuple(kernel_size, 3, "kernel_size", allowed_lengths=(1, 3))
    check_positive(kernel, "kernel_size")
    for a, k in zip(axes, kernel, strict=True):
        if arr.shape[a] < k:
            msg = (
                f"{name}: kernel_size={k} must be at most the input length "
                f"{arr.shape[a]} (axis {a}), padding and ceil_mode aside, "
                "as PyTorch's avg_pool3d requires"
            )
            raise ValueError(msg)


def lp_pool1d(
    input: npt.ArrayLike,
    norm_type: float,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    ceil_mode: bool = False,
    *,
    data_format: DataFormat = "channels_first",
    nan_policy: NanPolicy = "propagate",
) -> Array:
    """1-D power-average pooling, as ``torch.nn.functional.lp_pool1d``.

    PyTorch's formula exactly: ``(k * mean(x**p)) ** (1/p)`` with no
    ``abs`` (odd ``p`` over negative sums gives NaN) and a ``ceil_mode``
    overhang window scaled by ``k`` over its clipped size. For the true
    p-norm use ``ndpool.pool(x, k, op="lp", norm_type=p)``.
    """
    return _lp_pool(
        1, input, norm_type, kernel_size, stride, ceil_mode, data_format, nan_policy
    )


def lp_pool2d(
    input: npt.ArrayLike,
    norm_type: float,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    ceil_mode: bool = False,
    *,
    data_format: DataFormat = "channels_first",
    nan_policy: NanPolicy = "propagate",
) -> Array:
    """2-D power-average pooling, as ``torch.nn.functional.lp_pool2d``.

    Examples
    --------
    >>> import numpy as np, ndpool.functional as F
    >>> F.lp_pool2d(np.full((1, 2, 2), 3.0), 2, 2)
    array([[[6.]]])
    """
    return _lp_pool(
        2, input, norm_type, kernel_size, stride, ceil_mode, data_format, nan_policy
    )


def lp_pool3d(
    input: npt.ArrayLike,
    norm_type: float,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    ceil_mode: bool = False,
    *,
    data_format: DataFormat = "channels_first",
    nan_policy: NanPolicy = "propagate",
) -> Array:
    """3-D power-average pooling, as ``torch.nn.functional.lp_pool3d``."""
    return _lp_pool(
        3, input, norm_type, kernel_size, stride, ceil_mode, data_format, nan_policy
    )


# --------------------------------------------------------------------------
# adaptive


def _output_size(
    output_size: object, arr: Array, axes: tuple[int, ...], name: str
) -> tuple[int, ...]:
    """PyTorch's output_size: int or tuple, ``None`` keeps that axis."""
    nd = len(axes)
    items: tuple[object, ...]
    if isinstance(output_size, (int, np.integer)) and not isinstance(output_size, bool):
        items = (int(output_size),) * nd
    elif (isinstance(output_size, Sequence) and not isinstance(output_size, str)) or (
        isinstance(output_size, np.ndarray) and output_size.ndim == 1
    ):
        # a 1-d NumPy array too, as PyTorch takes any sequence: its entries
        # as Python scalars (a float array's are then refused below)
        items = tuple(
            output_size.tolist() if isinstance(output_size, np.ndarray) else output_size
        )
        if len(items) != nd:
            msg = (
                f"{name}: output_size must be an int or have {nd} entries, "
                f"got {output_size!r}"
            )
            raise ValueError(msg)
    else:
        msg = f"{name}: output_size must be an int or a tuple, got {output_size!r}"
        raise TypeError(msg)
    sizes = []
    for a, item in zip(axes, items, strict=True):
        if item is None and nd > 1:  # PyTorch's 1-d functions refuse None
            sizes.append(arr.shape[a])
            continue
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
            allowed = "ints or None" if nd > 1 else "ints"
            msg = f"{name}: output_size entries must be {allowed}, got {item!r}"
            raise TypeError(msg)
        if item < 0:
            msg = f"{name}: output_size={output_size!r} must be non-negative"
            raise ValueError(msg)
        sizes.append(int(item))
    return tuple(sizes)


def _adaptive(
    nd: int,
    op: str,
    x: npt.ArrayLike,
    output_size: object,
    return_indices: bool,
    data_format: str,
    nan_policy: str,
) -> MaybeIndices:
    name = f"adaptive_{op}_pool{nd}d"
    arr, axes = _input(
        x, nd, name, data_format, empty_channels=op == "avg", unbatched_empty=True
    )
    sizes = _output_size(output_size, arr, axes, name)
    batched = arr.ndim == nd + 2
    if op == "avg" and nd == 3 and batched and arr.size == 0 and sizes != (1, 1, 1):
        # PyTorch's 3-d kernel refuses C=0; only its global-mean path takes it
        channel = arr.ndim - 1 if data_format == "channels_last" else arr.ndim - 4
        if arr.shape[channel] == 0:
            msg = (
                f"{name}: input shape {arr.shape} has an empty channel axis "
                f"{channel}; PyTorch allows that only for output_size=1"
            )
            raise ValueError(msg)
    geom = adaptive_geometry(arr.shape, axes, sizes)
    red = Reduction(
        op=op,
        nan_omit=check_choice(nan_policy, ("propagate", "omit"), "nan_policy")
        == "omit",
    )
    return pool_core(
        arr,
        geom,
        red,
        return_indices=check_bool(return_indices, "return_indices", allow_int=True),
    )


def adaptive_max_pool1d(
    input: npt.ArrayLike,
    output_size: int | Sequence[int | None],
    return_indices: bool = False,
    *,
    data_format: DataFormat = "channels_first",
    nan_policy: NanPolicy = "propagate",
) -> MaybeIndices:
    """1-D adaptive max pooling, as ``torch.nn.functional.adaptive_max_pool1d``."""
    return _adaptive(
        1, "max", input, output_size, return_indices, data_format, nan_policy
    )


def adaptive_max_pool2d(
    input: npt.ArrayLike,
    output_size: int | Sequence[int | None],
    return_indices: bool = False,
    *,
    data_format: DataFormat = "channels_first",
    nan_policy: NanPolicy = "propagate",
) -> MaybeIndices:
    """2-D adaptive max pooling, as ``torch.nn.functional.adaptive_max_pool2d``.

    Window ``i`` of an axis of length ``L`` pooled to ``O`` covers
    ``[floor(i*L/O), ceil((i+1)*L/O))``; ``None`` keeps an axis' length.

    Examples
    --------
    >>> import numpy as np, ndpool.functional as F
    >>> F.adaptive_max_pool2d(np.arange(25.0).reshape(1, 5, 5), 2)
    array([[[12., 14.],
            [22., 24.]]])
    """
    return _adaptive(
        2, "max", input, output_size, return_indices, data_format, nan_policy
    )


def adaptive_max_pool3d(
    input: npt.ArrayLike,
    output_size: int | Sequence[int | None],
    return_indices: bool = False,
    *,
    data_format: DataFormat = "channels_first",
    nan_policy: NanPolicy = "propagate",
) -> MaybeIndices:
    """3-D adaptive max pooling, as ``torch.nn.functional.adaptive_max_pool3d``."""
    return _adaptive(
        3, "max", input, output_size, return_indices, data_format, nan_policy
    )


def adaptive_avg_pool1d(
    input: npt.ArrayLike,
    output_size: int | Sequence[int | None],
    *,
    data_format: DataFormat = "channels_first",
    nan_policy: NanPolicy = "propagate",
) -> Array:
    """1-D adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool1d``."""
    out = _adaptive(1, "avg", input, output_size, False, data_format, nan_policy)
    assert not isinstance(out, tuple)
    return out


def adaptive_avg_pool2d(
    input: npt.ArrayLike,
    output_size: int | Sequence[int | None],
    *,
    data_format: DataFormat = "channels_first",
    nan_policy: NanPolicy = "propagate",
) -> Array:
    """2-D adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool2d``.

    Examples
    --------
    >>> import numpy as np, ndpool.functional as F
    >>> F.adaptive_avg_pool2d(np.arange(9.0).reshape(1, 3, 3), (1, None))
    array([[[3., 4., 5.]]])
    """
    out = _adaptive(2, "avg", input, output_size, False, data_format, nan_policy)
    assert not isinstance(out, tuple)
    return out


def adaptive_avg_pool3d(
    input: npt.ArrayLike,
    output_size: int | Sequence[int | None],
    *,
    data_format: DataFormat = "channels_first",
    nan_policy: NanPolicy = "propagate",
) -> Array:
    """3-D adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool3d``."""
    out = _adaptive(3, "avg", input, output_size, False, data_format, nan_policy)
    assert not isinstance(out, tuple)
    return out


# --------------------------------------------------------------------------
# fractional


def _fractional(
    nd: int,
    x: npt.ArrayLike,
    kernel_size: IntOrTuple,
    output_size: object,
    output_ratio: object,
    return_indices: bool,
    random_samples: npt.ArrayLike | None,
    data_format: str,
) -> MaybeIndices:
    name = f"fractional_max_pool{nd}d"
    arr, axes = _input(x, nd, name, data_format, unbatched_empty=True)
    if host_dtype(arr).kind != "f":
        msg = f"{name}: input must be floating point, got dtype {arr.dtype}"
        raise TypeError(msg)
    kernel = as_int_tuple(kernel_size, nd, "kernel_size")
    check_positive(kernel, "kernel_size")
    if output_size is None and output_ratio is None:
        msg = f"{name} requires specifying either an output_size or an output_ratio"
        raise ValueError(msg)
    if output_size is not None:
        sizes = as_int_tuple(output_size, nd, "output_size")
    else:
        ratios = _ratio_tuple(output_ratio, nd)
        sizes = tuple(int(arr.shape[a] * r) for a, r in zip(axes, ratios, strict=True))
    for i, (a, k, o) in enumerate(zip(axes, kernel, sizes, strict=True)):
        if o < 0:
            msg = f"{name}: output_size={sizes} must be non-negative (axis {i})"
            raise ValueError(msg)
        # PyTorch: 2-d allows o + k - 1 == length, 3-d does not
        if o + k - 1 > arr.shape[a] or (nd == 3 and o + k - 1 == arr.shape[a]):
            rule = "at most" if nd == 2 else "less than"
            msg = (
                f"{name}: output_size {o} + kernel_size {k} - 1 must be {rule} the "
                f"input length {arr.shape[a]} (axis {a})"
            )
            raise ValueError(msg)
    batched = arr.ndim == nd + 2
    channel_axis = (
        (1 if batched else 0) if data_format == "channels_first" else arr.ndim - 1
    )
    batch_axes = ((0,) if batched else ()) + (channel_axis,)
    batch_shape = (arr.shape[0] if batched else 1, arr.shape[channel_axis])
    indices = check_bool(return_indices, "return_indices", allow_int=True)
    samples: Any
    if random_samples is None:
        samples = np.random.default_rng().random((*batch_shape, nd))
        samples = samples.astype(host_dtype(arr))
    else:
        # Dask samples of Dask input stay lazy: the windows are drawn per
        # block of whole planes when it is computed (``_dask.fractional_dask``)
        check_unmasked(random_samples, f"{name}: _random_samples")
        lazy = is_dask(arr) and is_dask(random_samples)
        samples = native_order(random_samples if lazy else to_host(random_samples))
        if lazy:
            from ._dask import check_chunks

            check_chunks(samples, f"{name}: _random_samples")
        # as PyTorch: (N', C, nd) with N' >= N; extra rows are unused
        if (
            samples.ndim != 3
            or samples.shape[0] < batch_shape[0]
            or samples.shape[1:] != (*batch_shape[1:], nd)
        ):
            msg = (
                f"{name}: _random_samples must have shape (N, C, {nd}) = "
                f"{(*batch_shape, nd)}, got {samples.shape}"
            )
            raise ValueError(msg)
        samples = samples[: batch_shape[0]]
        if host_dtype(samples) != host_dtype(arr):
            msg = (
                f"{name}: _random_samples must have the input's dtype {arr.dtype}, "
                f"got {samples.dtype}"
            )
            raise TypeError(msg)
    if not batched:  # batch_axes is already just the channel axis
        samples = samples[0]
    # PyTorch: 2-d samples are (W, H); 3-d samples are (T, H, W)
    sample_cols = (1, 0) if nd == 2 else tuple(range(nd))
    if is_dask(samples):
        from ._dask import fractional_dask

        return fractional_dask(  # type: ignore[no-any-return]
            arr, samples, axes, kernel, sizes, sample_cols, batch_axes, indices
        )
    geom = fractional_geometry(
        arr.shape, axes, kernel, sizes, samples, sample_cols, batch_axes
    )
    return pool_core(arr, geom, Reduction(op="max"), return_indices=indices)


def _ratio_tuple(output_ratio: object, nd: int) -> tuple[float, ...]:
    items: tuple[object, ...] = ()
    if isinstance(output_ratio, numbers.Real):
        items = (output_ratio,) * nd
    elif isinstance(output_ratio, Sequence) and not isinstance(output_ratio, str):
        items = tuple(output_ratio)  # PyTorch: exactly nd, no broadcast
    if len(items) != nd or not all(isinstance(r, numbers.Real) for r in items):
        msg = f"output_ratio must be a number or {nd} numbers, got {output_ratio!r}"
        raise ValueError(msg)
    try:
        ratios = tuple(float(r) for r in items)  # type: ignore[arg-type]
    except OverflowError:  # an int too large for a float
        ratios = (math.inf,)
    if not all(math.isfinite(r) for r in ratios):
        msg = f"output_ratio={output_ratio!r} must be finite"
        raise ValueError(msg)
    return ratios


def fractional_max_pool2d(
    input: npt.ArrayLike,
    kernel_size: IntOrTuple,
    output_size: IntOrTuple | None = None,
    output_ratio: float | Sequence[float] | None = None,
    return_indices: bool = False,
    _random_samples: npt.ArrayLike | None = None,
    *,
    data_format: DataFormat = "channels_first",
) -> MaybeIndices:
    """Fractional max pooling, as ``torch.nn.functional.fractional_max_pool2d``.

    ``_random_samples`` of shape ``(N, C, 2)`` and the input's dtype fixes the
    pseudo-random window starts (column 0 drives W, column 1 drives H), so
    results match PyTorch given the same samples; without it, samples come
    from ``numpy.random.default_rng()``.
    """
    return _fractional(
        2, input, kernel_size, output_size, output_ratio, return_indices,
        _random_samples, data_format,
    )  # fmt: skip


def fractional_max_pool3d(
    input: npt.ArrayLike,
    kernel_size: IntOrTuple,
    output_size: IntOrTuple | None = None,
    output_ratio: float | Sequence[float] | None = None,
    return_indices: bool = False,
    _random_samples: npt.ArrayLike | None = None,
    *,
    data_format: DataFormat = "channels_first",
) -> MaybeIndices:
    """3-D fractional max pooling, as ``torch.nn.functional.fractional_max_pool3d``.

    ``_random_samples`` has shape ``(N, C, 3)``: columns drive T, H, W.
    """
    return _fractional(
        3, input, kernel_size, output_size, output_ratio, return_indices,
        _random_samples, data_format,
    )  # fmt: skip


# --------------------------------------------------------------------------
# unpooling


def _max_unpool(
    nd: int,
    x: npt.ArrayLike,
    indices: npt.ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    output_size: Sequence[int] | None,
    data_format: str,
) -> Array:
    name = f"max_unpool{nd}d"
    arr, axes = _input(x, nd, name, data_format)
    check_unmasked(indices, f"{name}: indices")
    xp = namespace(arr)
    if xp is not None:  # moved beside the input (NumPy data), or refused
        indices = to_library(xp, indices, arr, f"{name}: indices")
    keep = xp is not None or (is_dask(arr) and is_dask(indices))
    idx: Any = native_order(indices if keep else np.asarray(indices))
    if host_dtype(idx) != np.int64:
        msg = f"{name}: indices must have dtype int64, got {idx.dtype}"
        raise TypeError(msg)
    if idx.shape != arr.shape:
        msg = (
            f"{name}: indices shape {idx.shape} must equal the input shape {arr.shape}"
        )
        raise ValueError(msg)
    # PyTorch's _pair/_triple: an int or exactly nd entries
    kernel = as_int_tuple(kernel_size, nd, "kernel_size")
    strides = kernel if stride is None else as_int_tuple(stride, nd, "stride")
    if nd == 3:  # only PyTorch's 3-d kernel takes (and checks) the stride
        check_positive(strides, "stride")
    pads = as_int_tuple(padding, nd, "padding")
    default = tuple(
        (arr.shape[a] - 1) * s - 2 * p + k
        for a, k, s, p in zip(axes, kernel, strides, pads, strict=True)
    )
    if output_size is None:
        sizes = default
    else:
        last = data_format == "channels_last"
        sizes = _unpool_size(output_size, default, strides, nd, last)
    batch = [arr.shape[i] for i in range(arr.ndim) if i not in axes]
    check_output_size(
        [*batch, *sizes],
        f"{name}: kernel_size, stride and output_size",
        itemsize=host_dtype(arr).itemsize,
    )
    for i, size in enumerate(sizes):
        if size < 0:  # PyTorch allows an empty output (and then reads no index)
            msg = f"{name}: the output size {sizes} must be non-negative (axis {i})"
            raise ValueError(msg)
    if is_dask(arr):
        from ._dask import unpool_dask

        return unpool_dask(arr, idx, axes, sizes)  # type: ignore[no-any-return]
    if namespace(arr) is not None:
        return unpool_xp(arr, idx, axes, sizes)  # type: ignore[no-any-return]
    return unpool_core(arr, idx, axes, sizes)


def _unpool_size(
    output_size: Sequence[int],
    default: tuple[int, ...],
    strides: tuple[int, ...],
    nd: int,
    channels_last: bool,
) -> tuple[int, ...]:
    """PyTorch's _unpool_output_size check of an explicit output_size.

    Of ``nd + 2`` sizes (a whole batched shape, as PyTorch takes), the
    spatial ones: after N and C, or between N and C channels last."""
    if isinstance(output_size, (int, np.integer)) or not isinstance(
        output_size, Sequence
    ):
        msg = f"output_size must be a sequence of ints, got {output_size!r}"
        raise TypeError(msg)
    sizes = tuple(output_size)
    if len(sizes) == nd + 2:
        sizes = sizes[1:-1] if channels_last else sizes[2:]
    if len(sizes) != nd:
        msg = (
            f"output_size should be a sequence containing {nd} or {nd + 2} "
            f"elements, but it has a length of '{len(sizes)}'"
        )
        raise ValueError(msg)
    for d, (size, dflt, s) in enumerate(zip(sizes, default, strides, strict=True)):
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool):
            msg = f"output_size entries must be ints, got {output_size!r}"
            raise TypeError(msg)
        if not dflt - s < size < dflt + s:
            msg = (
                f'invalid output_size "{list(sizes)}" (dim {d} must be between '
                f"{dflt - s} and {dflt + s}, exclusive)"
            )
            raise ValueError(msg)
    return tuple(int(s) for s in sizes)


def max_unpool1d(
    input: npt.ArrayLike,
    indices: npt.ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    output_size: Sequence[int] | None = None,
    *,
    data_format: DataFormat = "channels_first",
) -> Array:
    """Partial inverse of max_pool1d, as ``torch.nn.functional.max_unpool1d``."""
    return _max_unpool(
        1, input, indices, kernel_size, stride, padding, output_size, data_format
    )


def max_unpool2d(
    input: npt.ArrayLike,
    indices: npt.ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    output_size: Sequence[int] | None = None,
    *,
    data_format: DataFormat = "channels_first",
) -> Array:
    """Partial inverse of max_pool2d, as ``torch.nn.functional.max_unpool2d``.

    Default output length ``(L - 1) * stride - 2 * padding + kernel_size``;
    an explicit ``output_size`` (``nd`` or ``nd + 2`` entries) must be
    within ``stride`` of it. Non-maximal cells are zero. Of ``nd + 2``
    entries (a whole batched shape, such as the pooled input's) the spatial
    ones are read: after N and C, or between them with
    ``data_format="channels_last"``.
    """
    return _max_unpool(
        2, input, indices, kernel_size, stride, padding, output_size, data_format
    )


def max_unpool3d(
    input: npt.ArrayLike,
    indices: npt.ArrayLike,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    output_size: Sequence[int] | None = None,
    *,
    data_format: DataFormat = "channels_first",
) -> Array:
    """Partial inverse of max_pool3d, as ``torch.nn.functional.max_unpool3d``."""
    return _max_unpool(
        3, input, indices, kernel_size, stride, padding, output_size, data_format
    )
