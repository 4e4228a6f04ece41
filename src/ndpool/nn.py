"""Pooling layers with PyTorch's ``torch.nn`` names, arguments and ``repr``.

Calling a layer runs the forward pass (the function of the same name in
:mod:`ndpool.functional`); ``layer.backward(grad_out)`` returns the gradient
with respect to the input of the last call (see :func:`ndpool.vjp`), so the
layers drop into a NumPy-only network. Private ``_XxxPoolNd`` bases hold the
constructor and ``extra_repr``; the public classes only name their function.

A layer keeps the pullback of its last call only, so one layer called
from two threads at once gives each the gradient of whichever call came
last: give each thread its own layer. A call that fails leaves no
pullback. Copies and pickles of a layer keep its arguments, not its last
call: they need a forward call before ``backward``.

Examples
--------
>>> import numpy as np
>>> from ndpool import nn
>>> pool = nn.MaxPool2d(2)
>>> pool
MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
>>> x = np.arange(16.0).reshape(1, 1, 4, 4)
>>> pool(x)
array([[[[ 5.,  7.],
         [13., 15.]]]])
>>> pool.backward(np.ones((1, 1, 2, 2)))[0, 0]
array([[0., 0., 0., 0.],
       [0., 1., 0., 1.],
       [0., 0., 0., 0.],
       [0., 1., 0., 1.]])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import numpy.typing as npt

from . import functional as F
from ._xp import host_dtype
from .grad import Pullback, vjp
from .pooling import as_array

__all__ = [
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "FractionalMaxPool2d",
    "FractionalMaxPool3d",
    "LPPool1d",
    "LPPool2d",
    "LPPool3d",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "MaxUnpool1d",
    "MaxUnpool2d",
    "MaxUnpool3d",
]

Array = npt.NDArray[Any]


def _ntuple(value: Any, n: int) -> tuple[Any, ...]:
    """PyTorch's ``_single``/``_pair``/``_triple``: iterables pass as tuples."""
    if isinstance(value, Iterable):
        return tuple(value)
    return (value,) * n


class _Pool:
    """A layer: ``__call__`` runs ``_function``, ``backward`` its pullback."""

    _function: ClassVar[Callable[..., Any]]
    _pullback: Pullback | None = None

    def _arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The forward's arguments after the input."""
        raise NotImplementedError

    def __call__(self, input: npt.ArrayLike) -> Any:
        """Pool ``input``, remembering how to pull gradients back."""
        return self._run(input)

    def _run(self, input: npt.ArrayLike, *before: Any, **extra: Any) -> Any:
        self._pullback = None  # a call that fails leaves no stale gradient
        args, kwargs = self._arguments()
        fn = type(self)._function
        x = as_array(input)
        dtype = host_dtype(x)
        if dtype.kind == "f":
            out, self._pullback = vjp(fn, x, *before, *args, **kwargs, **extra)
            return out

        def refuse(grad_out: npt.ArrayLike) -> Array:
            msg = (
                f"{type(self).__name__}.backward(): the last input had dtype "
                f"{dtype}; only floating inputs have a gradient"
            )
            raise TypeError(msg)

        self._pullback = refuse  # integer images pool, as torch.nn's layers
        return fn(x, *before, *args, **kwargs, **extra)

    def backward(self, grad_out: npt.ArrayLike) -> Array:
        """Gradient with respect to the input of the last call.

        ``grad_out`` is the gradient of the pooled values (for layers with
        ``return_indices=True``, of the values only).
        """
        if self._pullback is None:
            msg = f"{type(self).__name__}.backward() needs a forward call first"
            raise RuntimeError(msg)
        return self._pullback(grad_out)

    def __getstate__(self) -> dict[str, Any]:
        """The layer's arguments, without the last call's pullback (a
        closure, which pickle cannot write): a copy or an unpickled layer
        needs a forward call before ``backward``."""
        state = dict(self.__dict__)
        state.pop("_pullback", None)
        return state

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class _MaxPoolNd(_Pool):
    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        self.kernel_size = kernel_size
        self.stride = stride if (stride is not None) else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def _arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        args = (self.kernel_size, self.stride, self.padding, self.dilation)
        return args, {
            "ceil_mode": self.ceil_mode,
            "return_indices": self.return_indices,
        }

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, "
            f"ceil_mode={self.ceil_mode}"
        )


class MaxPool1d(_MaxPoolNd):
    """1-D max pooling layer, as ``torch.nn.MaxPool1d``."""

    _function = staticmethod(F.max_pool1d)


class MaxPool2d(_MaxPoolNd):
    """2-D max pooling layer, as ``torch.nn.MaxPool2d``."""

    _function = staticmethod(F.max_pool2d)


class MaxPool3d(_MaxPoolNd):
    """3-D max pooling layer, as ``torch.nn.MaxPool3d``."""

    _function = staticmethod(F.max_pool3d)


class _AvgPoolNd(_Pool):
    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        self.kernel_size = kernel_size
        self.stride = stride if (stride is not None) else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def _arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        args = (
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            getattr(self, "divisor_override", None),
        )
        return args, {}

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}"
        )


class AvgPool1d(_AvgPoolNd):
    """1-D average pooling layer, as ``torch.nn.AvgPool1d``.

    As in PyTorch, the sizes are stored as 1-tuples and there is no
    ``divisor_override``.
    """

    _function = staticmethod(F.avg_pool1d)

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        self.kernel_size = _ntuple(kernel_size, 1)
        self.stride = _ntuple(stride if stride is not None else kernel_size, 1)
        self.padding = _ntuple(padding, 1)
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad


class AvgPool2d(_AvgPoolNd):
    """2-D average pooling layer, as ``torch.nn.AvgPool2d``."""

    _function = staticmethod(F.avg_pool2d)


class AvgPool3d(_AvgPoolNd):
    """3-D average pooling layer, as ``torch.nn.AvgPool3d``."""

    _function = staticmethod(F.avg_pool3d)


class _LPPoolNd(_Pool):
    def __init__(
        self,
        norm_type: float,
        kernel_size: Any,
        stride: Any = None,
        ceil_mode: bool = False,
    ) -> None:
        self.norm_type = norm_type
        self.kernel_size = kernel_size
        self.stride = stride
        self.ceil_mode = ceil_mode

    def _arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        p = self.norm_type
        # torch.nn.LPPool*d passes float(norm_type) (so True means 1); what
        # float() refuses goes on as is, for the function to name
        with contextlib.suppress(TypeError, ValueError, OverflowError):
            p = float(p)
        return (p, self.kernel_size, self.stride, self.ceil_mode), {}

    def extra_repr(self) -> str:
        return (
            f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, ceil_mode={self.ceil_mode}"
        )


class LPPool1d(_LPPoolNd):
    """1-D power-average pooling layer, as ``torch.nn.LPPool1d``."""

    _function = staticmethod(F.lp_pool1d)


class LPPool2d(_LPPoolNd):
    """2-D power-average pooling layer, as ``torch.nn.LPPool2d``."""

    _function = staticmethod(F.lp_pool2d)


class LPPool3d(_LPPoolNd):
    """3-D power-average pooling layer, as ``torch.nn.LPPool3d``."""

    _function = staticmethod(F.lp_pool3d)


class _AdaptiveMaxPoolNd(_Pool):
    def __init__(self, output_size: Any, return_indices: bool = False) -> None:
        self.output_size = output_size
        self.return_indices = return_indices

    def _arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (self.output_size, self.return_indices), {}

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    """1-D adaptive max pooling layer, as ``torch.nn.AdaptiveMaxPool1d``."""

    _function = staticmethod(F.adaptive_max_pool1d)


class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    """2-D adaptive max pooling layer, as ``torch.nn.AdaptiveMaxPool2d``."""

    _function = staticmethod(F.adaptive_max_pool2d)


class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    """3-D adaptive max pooling layer, as ``torch.nn.AdaptiveMaxPool3d``."""

    _function = staticmethod(F.adaptive_max_pool3d)


class _AdaptiveAvgPoolNd(_Pool):
    def __init__(self, output_size: Any) -> None:
        self.output_size = output_size

    def _arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (self.output_size,), {}

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """1-D adaptive average pooling layer, as ``torch.nn.AdaptiveAvgPool1d``."""

    _function = staticmethod(F.adaptive_avg_pool1d)


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """2-D adaptive average pooling layer, as ``torch.nn.AdaptiveAvgPool2d``."""

    _function = staticmethod(F.adaptive_avg_pool2d)


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    """3-D adaptive average pooling layer, as ``torch.nn.AdaptiveAvgPool3d``."""

    _function = staticmethod(F.adaptive_avg_pool3d)


class _FractionalMaxPoolNd(_Pool):
    _nd: ClassVar[int]

    def __init__(
        self,
        kernel_size: Any,
        output_size: Any = None,
        output_ratio: Any = None,
        return_indices: bool = False,
        _random_samples: npt.ArrayLike | None = None,
    ) -> None:
        nd, name = self._nd, type(self).__name__
        if nd == 3 and (
            (isinstance(kernel_size, int) and kernel_size <= 0)
            or (
                isinstance(kernel_size, (tuple, list))
                and not all(k > 0 for k in kernel_size)
            )
        ):
            msg = f"kernel_size must be greater than 0, but got {kernel_size}"
            raise ValueError(msg)
        self.kernel_size = _ntuple(kernel_size, nd)
        self.return_indices = return_indices
        self._random_samples = _random_samples
        self.output_size = None if output_size is None else _ntuple(output_size, nd)
        self.output_ratio = None if output_ratio is None else _ntuple(output_ratio, nd)
        if output_size is None and output_ratio is None:
            msg = (
                f"{name} requires specifying either an output size, or a pooling ratio"
            )
            raise ValueError(msg)
        if output_size is not None and output_ratio is not None:
            msg = "only one of output_size and output_ratio may be specified"
            raise ValueError(msg)
        if self.output_ratio is not None and not all(
            0 < r < 1 for r in self.output_ratio[:nd]
        ):
            msg = f"output_ratio must be between 0 and 1 (got {output_ratio})"
            raise ValueError(msg)

    def _arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        args = (
            self.kernel_size,
            self.output_size,
            self.output_ratio,
            self.return_indices,
        )
        return args, {"_random_samples": self._random_samples}


class FractionalMaxPool2d(_FractionalMaxPoolNd):
    """Fractional max pooling layer, as ``torch.nn.FractionalMaxPool2d``."""

    _function = staticmethod(F.fractional_max_pool2d)
    _nd = 2


class FractionalMaxPool3d(_FractionalMaxPoolNd):
    """3-D fractional max pooling layer, as ``torch.nn.FractionalMaxPool3d``."""

    _function = staticmethod(F.fractional_max_pool3d)
    _nd = 3


class _MaxUnpoolNd(_Pool):
    _nd: ClassVar[int]

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        nd = self._nd
        self.kernel_size = _ntuple(kernel_size, nd)
        self.stride = _ntuple(stride if (stride is not None) else kernel_size, nd)
        self.padding = _ntuple(padding, nd)

    def __call__(  # type: ignore[override]
        self,
        input: npt.ArrayLike,
        indices: npt.ArrayLike,
        output_size: Sequence[int] | None = None,
    ) -> Array:
        """Unpool ``input`` to ``indices``; ``backward`` gathers there."""
        out: Array = self._run(input, indices, output_size=output_size)
        return out

    def _arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (self.kernel_size, self.stride, self.padding), {}

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}"
        )


class MaxUnpool1d(_MaxUnpoolNd):
    """Partial inverse of ``MaxPool1d``, as ``torch.nn.MaxUnpool1d``."""

    _function = staticmethod(F.max_unpool1d)
    _nd = 1


class MaxUnpool2d(_MaxUnpoolNd):
    """Partial inverse of ``MaxPool2d``, as ``torch.nn.MaxUnpool2d``."""

    _function = staticmethod(F.max_unpool2d)
    _nd = 2


class MaxUnpool3d(_MaxUnpoolNd):
    """Partial inverse of ``MaxPool3d``, as ``torch.nn.MaxUnpool3d``."""

    _function = staticmethod(F.max_unpool3d)
    _nd = 3
