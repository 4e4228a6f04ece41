"""Validate pooling arguments once and turn them into a frozen geometry.

Everything here is plain Python and small NumPy index arrays: shapes,
window positions and divisors are worked out per pooled axis, before any
array data is touched. The compute core (``_core.py``) only reads these
plans; it never re-derives a size.

A window over several axes is always the Cartesian product of one 1-D window
per axis (true for regular, "same", adaptive and fractional pooling), so a
plan per axis is all the core needs.

Per axis, output ``i`` and tap ``j`` (``0 <= j < taps``) read input
position::

    regular:    pos(i, j) = i * stride - pad_before + j * dilation
    irregular:  pos(i, j) = min(starts[i] + j, ends[i] - 1)

A regular tap is *valid* when ``0 <= pos < length``; an irregular (adaptive
or fractional) window ``[starts[i], ends[i])`` is always inside the input and
its clipped taps repeat the last cell, which a max or min ignores and a sum
masks out.
"""

from __future__ import annotations

import functools
import math
import operator
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = [
    "AxisPlan",
    "Geometry",
    "IntArray",
    "Tap",
    "adaptive_geometry",
    "check_dtype",
    "check_output_size",
    "fractional_geometry",
    "normalize_axes",
    "regular_geometry",
]

IntArray = npt.NDArray[np.int64]
PaddingArg = Any  # int | str | Sequence[int | tuple[int, int]]
PAD_MODES = ("valid", "same", "same_lower")
#: a plan keeps its tap spans (``AxisPlan.spans``) up to this many live taps
_SPANS_KEPT = 4096
#: a plan keeps its per-window tables (``AxisPlan.first_tap`` etc.) up to
#: this many windows
_TABLES_KEPT = 4096
#: per-window tables are worked out this many windows at a time
_TABLE_BLOCK = 1 << 16


# --------------------------------------------------------------------------
# small argument checkers (messages name the argument, the rule and the value)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(
        value, (bool, np.bool_)
    )


#: the largest size, stride, padding or window extent ndpool takes: sums of
#: a few of them (positions, padded lengths, flat indices) must fit in int64
INT_LIMIT = 2**60


def check_int_range(value: int, name: str) -> int:
    """``value`` if it is within +-``INT_LIMIT`` (ValueError otherwise)."""
    if not -INT_LIMIT <= value <= INT_LIMIT:
        msg = (
            f"{name}={value} is out of range: ndpool computes positions and "
            "counts in int64, so it must lie within +-2**60"
        )
        raise ValueError(msg)
    return value


def as_int_tuple(
    value: object,
    n: int,
    name: str,
    *,
    allowed_lengths: Sequence[int] | None = None,
) -> tuple[int, ...]:
    """Expand an int or a sequence of ints to ``n`` ints.

    ``allowed_lengths`` lists the sequence lengths accepted (a length-1
    sequence is broadcast, as PyTorch's ``_pair``); default: exactly ``n``.
    """
    if _is_int(value):
        return (check_int_range(int(value), name),) * n  # type: ignore[call-overload]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        msg = (
            f"{name} must be an int or a sequence of {n} ints, "
            f"got {value!r} of type {type(value).__name__}"
        )
        raise TypeError(msg)
    items = tuple(value)
    for item in items:
        if not _is_int(item):
            msg = (
                f"{name} must contain only ints, got {value!r} "
                f"(element {item!r} is {type(item).__name__})"
            )
            raise TypeError(msg)
    lengths = tuple(allowed_lengths) if allowed_lengths is not None else (n,)
    if len(items) not in lengths:
        want = " or ".join(str(k) for k in sorted(set(lengths)))
        noun = "entry" if want == "1" else "entries"
        msg = f"{name} must have {want} {noun} (one per pooled axis), got {value!r}"
        raise ValueError(msg)
    ints = tuple(check_int_range(int(v), name) for v in items)
    if len(ints) == 1 and n != 1:
        return ints * n
    return ints


def check_positive(
    values: tuple[int, ...], name: str, axes: Sequence[int] | None = None
) -> None:
    """Every entry > 0; messages name the input axis (``axes[i]``) if given."""
    for i, v in enumerate(values):
        if v <= 0:
            axis = i if axes is None else axes[i]
            msg = f"{name} must be positive on every pooled axis, got {v} (axis {axis})"
            raise ValueError(msg)


def check_dtype(dtype: np.dtype[Any], name: str = "input") -> None:
    """Refuse dtypes pooling has no meaning for (complex, object, strings)."""
    if dtype.kind not in "biuf":
        msg = (
            f"{name} has dtype {dtype}, which ndpool cannot pool: use a bool, "
            "integer or floating dtype"
        )
        raise TypeError(msg)


def normalize_axes(axes: object, ndim: int, n: int | None) -> tuple[int, ...]:
    """Return the pooled axes as non-negative ints, in the caller's order.

    ``axes=None`` means the trailing ``n`` axes.
    """
    if axes is None:
        if n is None:
            msg = "axes=None needs kernel_size to say how many axes are pooled"
            raise ValueError(msg)
        if n > ndim:
            msg = f"kernel_size has {n} entries but the input has only {ndim} axes"
            raise ValueError(msg)
        return tuple(range(ndim - n, ndim))
    raw = (axes,) if _is_int(axes) else axes
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
        msg = f"axes must be an int or a sequence of ints, got {axes!r}"
        raise TypeError(msg)
    out = []
    for a in raw:
        if not _is_int(a):
            msg = f"axes must contain only ints, got {axes!r}"
            raise TypeError(msg)
        if not -ndim <= a < ndim:
            msg = f"axes entry {a} is out of range for an input with {ndim} axes"
            raise ValueError(msg)
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        msg = f"axes must not repeat an axis, got {axes!r}"
        raise ValueError(msg)
    if n is not None and len(out) != n:
        msg = f"axes has {len(out)} entries but kernel_size has {n}: give one per axis"
        raise ValueError(msg)
    return tuple(out)


# --------------------------------------------------------------------------
# plans


class Tap(NamedTuple):
    """Tap ``j`` of one axis, and the windows ``windows`` that have it.

    ``cells`` reads those windows' cells from the unpadded axis: a slice for
    a regular plan, gather positions (clipped into each window) for an
    irregular one, whose ``valid`` then marks the windows that really
    contain the tap (None when all do).
    """

    j: int
    windows: slice
    cells: slice | IntArray
    valid: npt.NDArray[np.bool_] | None


@dataclass(frozen=True, eq=False)
class AxisPlan:
    """How one pooled axis maps input positions to output positions."""

    axis: int
    length: int
    out: int
    taps: int
    regular: bool
    stride: int = 1
    dilation: int = 1
    pad_before: int = 0
    pad_after: int = 0
    #: irregular windows [starts, ends), broadcastable to the output array
    starts: IntArray | None = None
    ends: IntArray | None = None
    #: index of this plan's cell 0 in the whole input, and the whole input's
    #: length: flat indices are over the whole input (set by ``restrict``)
    origin: int = 0
    whole_length: int | None = None
    #: the whole input's padding after the axis (set by ``restrict``): the
    #: ``count_padded`` divisors are the whole input's
    whole_pad_after: int | None = None

    @property
    def per_plane(self) -> bool:
        """Windows drawn per (n, c) plane (fractional pooling)."""
        return self.starts is not None and self.starts.ndim > 1

    @property
    def first_tap(self) -> IntArray:
        """(out,) index of the first valid tap of each window (argmax start)."""
        return self._table("first_tap")

    @property
    def count_valid(self) -> IntArray:
        """Cells of each window inside the input, laid out like ``starts``
        for irregular windows, else (out,)."""
        return self._table("count_valid")

    @property
    def count_padded(self) -> IntArray:
        """Cells of each window inside the padded input (PyTorch's
        count_include_pad divisor; a ceil_mode overhang does not count)."""
        return self._table("count_padded")

    def _table(self, kind: str) -> IntArray:
        """A per-window table, worked out when first asked for.

        Kept on the plan only while small: a plan is cached across calls,
        and the tables of a long axis (24 bytes a window) would outlive its
        call; max pooling without indices never builds them.
        """
        memo: dict[str, IntArray] | None = self.__dict__.get("_tables")
        if memo is not None and kind in memo:
            return memo[kind]
        if self.regular:  # O(out), even where another axis leaves no output
            name = "kernel_size, stride and padding"
            check_output_size([self.out], name, itemsize=8)
        table = _frozen(self.window_tables(kind, 0, self.out))
        if self.out <= _TABLES_KEPT:
            self.__dict__.setdefault("_tables", {})[kind] = table  # frozen: memo
        return table

    def uniform(self, kind: str) -> int | None:
        """The count (``count_valid`` or ``count_padded``) every window
        has, or None if they differ or there is no window. Kept on the
        plan: a number, whatever the axis length."""
        memo: dict[str, int | None] = self.__dict__.setdefault("_uniform", {})
        if kind not in memo:
            counts = self._table(kind)
            first = int(counts.flat[0]) if counts.size else None
            if counts.size > 1 and not (counts == first).all():
                first = None
            memo[kind] = first
        return memo[kind]

    def window_tables(self, kind: str, o0: int, o1: int) -> IntArray:
        """Table ``kind`` (``first_tap``, ``count_valid`` or
        ``count_padded``) of windows ``o0:o1`` only, in closed form for
        regular windows: a lazy Dask axis reads its blocks' windows, never
        the whole axis's."""
        if not self.regular:
            starts, ends = self.starts, self.ends
            assert starts is not None
            assert ends is not None
            if kind == "first_tap":
                return np.zeros(max(o1 - o0, 0), dtype=np.int64)
            if starts.ndim == 1:  # else per plane (fractional): whole
                starts, ends = starts[o0:o1], ends[o0:o1]
            return ends - starts
        if o1 - o0 > _TABLE_BLOCK:  # in blocks: the table is the peak memory
            table = np.empty(o1 - o0, dtype=np.int64)
            for b in range(o0, o1, _TABLE_BLOCK):
                e = min(b + _TABLE_BLOCK, o1)
                table[b - o0 : e - o0] = self.window_tables(kind, b, e)
            return table
        k, s, d = self.taps, self.stride, self.dilation
        length = self.index_length
        # tap j of window i reads i*s - pb + j*d (whole-input positions)
        start = np.arange(o0, max(o1, o0), dtype=np.int64) * s
        start += self.origin - self.pad_before
        first_nonneg = np.maximum(0, -(start // d))  # first j with position >= 0
        if kind == "first_tap":
            # a window with no valid tap (possible with dilation) keeps
            # PyTorch's start: the first tap at a non-negative position
            return np.minimum(first_nonneg, k - 1)
        if kind == "count_valid":
            last_inside = np.minimum(k - 1, (length - 1 - start) // d)
            return np.maximum(0, last_inside - first_nonneg + 1)  # type: ignore[no-any-return]
        assert kind == "count_padded"
        # cells inside the padded input [-pb, length + pa): j >= 0 always
        pa = self.pad_after if self.whole_pad_after is None else self.whole_pad_after
        return np.minimum(k, np.maximum(0, (length + pa - 1 - start) // d + 1))

    def window_slices(self) -> list[slice | None]:
        """Each window's cells in the unpadded axis (None: it has none), for
        folding window by window; windows shared by every plane only."""
        if not self.regular:
            assert self.starts is not None
            assert self.ends is not None
            assert self.starts.ndim == 1, "per-plane windows have no slices"
            pairs = zip(self.starts.tolist(), self.ends.tolist(), strict=True)
            return [slice(a, b) for a, b in pairs]
        s, d, pb = self.stride, self.dilation, self.pad_before
        found: list[slice | None] = []
        for i, (f, c) in enumerate(
            zip(self.first_tap.tolist(), self.count_valid.tolist(), strict=True)
        ):
            lo = i * s - pb + f * d
            found.append(slice(lo, lo + (c - 1) * d + 1, d) if c else None)
        return found

    @functools.cached_property
    def has_empty_window(self) -> bool:
        """Some regular window has no cell inside the input (dilation).

        Its taps would have to step over the whole axis, so the dilation must
        exceed the length: only then are the counts looked at.
        """
        if not self.regular or self.dilation <= self.length:
            return False
        return any(
            (
                self.window_tables("count_valid", b, min(b + _TABLE_BLOCK, self.out))
                == 0
            ).any()
            for b in range(0, self.out, _TABLE_BLOCK)
        )

    @property
    def index_length(self) -> int:
        """The axis length flat indices are taken over."""
        return self.length if self.whole_length is None else self.whole_length

    @property
    def full_axis(self) -> bool:
        """True when the single window is exactly the whole axis."""
        return (
            self.regular
            and self.out == 1
            and self.pad_before == 0
            and self.dilation == 1
            and self.taps == self.length
        )

    @functools.cached_property
    def lo(self) -> int:
        """Padding before the axis a padded copy needs for the live taps.

        Only what some live tap reads: a huge kernel's padded copy (or
        gradient buffer) is as long as its real cells need, not its size.
        """
        if not self.regular or self.out <= 0 or not self.live_taps:
            return 0
        return max(0, self.pad_before - self.live_taps[0] * self.dilation)

    @functools.cached_property
    def hi(self) -> int:
        """Padding after the axis a padded copy needs for the live taps."""
        if not self.regular or self.out <= 0 or not self.live_taps:
            return 0
        last = (self.out - 1) * self.stride - self.pad_before
        last += self.live_taps[-1] * self.dilation  # ascending
        return max(0, last - (self.length - 1))

    @functools.cached_property
    def live_taps(self) -> Sequence[int]:
        """The taps that some window reads inside the input, ascending.

        The others read only padding, so no loop needs them: a huge kernel
        costs what its real cells cost, not its size.
        """
        if not self.regular or self.out <= 0:
            return range(self.taps)
        d, length = self.dilation, self.length
        last_start = (self.out - 1) * self.stride - self.pad_before
        first = max(0, -(last_start // d))  # some position >= 0
        last = min(self.taps - 1, (length - 1 + self.pad_before) // d)
        whole = range(first, max(first, last + 1))
        if len(whole) <= self.out * -(-length // d):
            return whole
        # a window reads at most ceil(length / d) real cells: with few
        # windows far apart (a huge kernel, a long stride) most taps between
        # ``first`` and ``last`` belong to none of them
        name = "kernel_size, stride and padding"
        check_output_size([self.out], name, itemsize=0, pooled=[self.out])
        starts = np.arange(self.out, dtype=np.int64) * self.stride - self.pad_before
        lo = np.maximum(0, -(starts // d))
        hi = np.minimum(self.taps, (length - 1 - starts) // d + 1)
        counts = np.maximum(hi - lo, 0)
        offsets = np.arange(int(counts.sum())) - np.repeat(
            counts.cumsum() - counts, counts
        )
        return tuple(np.unique(np.repeat(lo, counts) + offsets).tolist())

    def spans(self) -> Iterable[Tap]:
        """Every live tap that some window has, as a ``Tap``.

        Worked out once per plan and kept (unless the kernel is huge), so a
        call's loops read them instead of re-deriving slices and gathers.
        """
        cached: tuple[Tap, ...] | None = self.__dict__.get("_spans")
        if cached is not None:
            return cached
        found = self._find_spans()
        if len(self.live_taps) > _SPANS_KEPT:
            return found
        kept = tuple(found)
        self.__dict__["_spans"] = kept  # frozen: memo beside the fields
        return kept

    def _find_spans(self) -> Iterator[Tap]:
        for j in self.live_taps:
            if not self.regular:
                if self.out > 0:
                    valid = self.tap_valid(j)
                    every = bool(valid.all())
                    cells = _frozen(self.tap_index(j))
                    yield Tap(j, slice(0, self.out), cells, None if every else valid)
                continue
            first, stop, span = self.tap_span(j)
            if stop > first:
                yield Tap(j, slice(first, stop), span, None)

    def tap_slice(self, j: int) -> slice:
        """Slice of a padded axis (length ``lo + length + hi``) read by live
        tap j: position ``i*stride - pad_before + j*dilation`` of window i is
        index ``lo`` more in the padded copy."""
        start = j * self.dilation - self.pad_before + self.lo
        return slice(start, start + (self.out - 1) * self.stride + 1, self.stride)

    def tap_span(self, j: int) -> tuple[int, int, slice]:
        """Regular tap j without padding: ``(first, stop, cells)``.

        Windows ``first:stop`` are the ones whose tap j lies inside the
        input, and ``cells`` slices the unpadded axis to exactly their cells
        (windows outside that range see padding there).
        """
        start = j * self.dilation - self.pad_before
        first = max(0, -(start // self.stride)) if start < 0 else 0
        last = (self.length - 1 - start) // self.stride  # floor; may be < 0
        stop = min(self.out, last + 1)
        if stop <= first:
            return 0, 0, slice(0, 0)
        lo = start + first * self.stride
        return (
            first,
            stop,
            slice(lo, lo + (stop - first - 1) * self.stride + 1, self.stride),
        )

    def tap_index(self, j: int | IntArray) -> IntArray:
        """Irregular tap j: input position of every window (clipped); taps
        ``j`` of shape (taps, 1): a (taps, out) table."""
        assert self.starts is not None
        assert self.ends is not None
        clipped: IntArray = np.minimum(self.starts + j, self.ends - 1)
        return clipped

    def tap_valid(self, j: int | IntArray) -> npt.NDArray[np.bool_]:
        """Irregular tap j: which windows really contain it (as
        ``tap_index``, taps of shape (taps, 1) too)."""
        assert self.starts is not None
        assert self.ends is not None
        return self.starts + j < self.ends

    def positions(self, code: npt.NDArray[Any], ndim: int) -> IntArray:
        """Input positions along this axis for tap codes laid out like output."""
        code = code.astype(np.int64)
        if self.regular:
            i = _along(np.arange(self.out, dtype=np.int64), self.axis, ndim)
            return i * self.stride - self.pad_before + code * self.dilation  # type: ignore[no-any-return]
        assert self.starts is not None
        assert self.ends is not None
        starts, ends = self.starts, self.ends
        if starts.ndim == 1:
            starts, ends = (
                _along(starts, self.axis, ndim),
                _along(ends, self.axis, ndim),
            )
        return np.minimum(starts + code, ends - 1)  # type: ignore[no-any-return]

    def restrict(self, o0: int, o1: int, a: int, local_len: int) -> AxisPlan:
        """This plan's windows ``[o0, o1)`` over input cells ``[a, a+local_len)``.

        The cells must hold every real cell those windows read (the chunked
        Dask path cuts them out of the whole input). Divisors and argmax
        starts are the whole input's, and indices stay flat over the whole
        input, so the pieces pool exactly as the whole would.
        """
        out = o1 - o0
        origin, whole = self.origin + a, self.index_length
        if not self.regular:
            assert self.starts is not None
            assert self.ends is not None
            assert self.starts.ndim == 1, "per-plane windows cannot be restricted"
            return replace(
                self,
                length=local_len,
                out=out,
                starts=_frozen(self.starts[o0:o1] - a),
                ends=_frozen(self.ends[o0:o1] - a),
                origin=origin,
                whole_length=whole,
            )
        pb = self.pad_before - o0 * self.stride + a
        last = (out - 1) * self.stride - pb + (self.taps - 1) * self.dilation
        hi = max(0, last - (local_len - 1)) if out > 0 else 0
        return replace(
            self,
            length=local_len,
            out=out,
            pad_before=pb,
            pad_after=hi,
            origin=origin,
            whole_length=whole,
            whole_pad_after=(
                self.pad_after if self.whole_pad_after is None else self.whole_pad_after
            ),
        )


def _along(values: npt.NDArray[Any], axis: int, ndim: int) -> npt.NDArray[Any]:
    shape = [1] * ndim
    shape[axis] = values.shape[0]
    return values.reshape(shape)


@dataclass(frozen=True, eq=False)
class Geometry:
    """The validated, normalised shape of one pooling call."""

    shape: tuple[int, ...]
    plans: tuple[AxisPlan, ...]  # in ascending axis order
    out_shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def axes(self) -> tuple[int, ...]:
        return tuple(p.axis for p in self.plans)

    def along(self, plan: AxisPlan, values: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Reshape a per-output-position vector to broadcast along plan.axis."""
        return _along(values, plan.axis, self.ndim)

    def window_count(self, *, include_pad: bool) -> npt.NDArray[Any]:
        """Cells per window (product over axes), broadcastable to the output:
        int64, or float64 where the product could pass int64 (huge kernels
        on several axes; int64 wrapped, a negative divisor). Kept with the
        geometry (read-only) while it has at most ``_TABLES_KEPT`` cells."""
        memo: dict[bool, npt.NDArray[Any]] = self.__dict__.setdefault("_counts", {})
        total = memo.get(include_pad)
        if total is None:
            total = _frozen(self._window_count(include_pad))
            if total.size <= _TABLES_KEPT:
                memo[include_pad] = total
        return total

    def _window_count(self, include_pad: bool) -> npt.NDArray[Any]:
        counts = [p.count_padded if include_pad else p.count_valid for p in self.plans]
        biggest = math.prod(int(c.max()) if c.size else 1 for c in counts)
        dtype = np.int64 if biggest < 2**62 else np.float64
        total: npt.NDArray[Any] = np.ones((1,) * self.ndim, dtype=dtype)
        for i, (p, c) in enumerate(zip(self.plans, counts, strict=True)):
            term = (self.along(p, c) if c.ndim == 1 else c).astype(dtype, copy=False)
            total = term if i == 0 else total * term  # read-only: never in place
        return total

    def uniform_count(self, *, include_pad: bool) -> int | None:
        """``window_count`` when every window has the same count, else None
        (without building the broadcast product)."""
        total = 1
        for p in self.plans:
            count = p.uniform("count_padded" if include_pad else "count_valid")
            if count is None:
                return None
            total *= count
        return total

    @property
    def kernel_volume(self) -> int:
        return math.prod(p.taps for p in self.plans)


# --------------------------------------------------------------------------
# regular windows (kernel / stride / padding / dilation / ceil_mode)


def _out_length(
    length: int, k: int, s: int, d: int, pb: int, pa: int, ceil_mode: bool
) -> int:
    """PyTorch's pooling_output_shape_pad_lr."""
    num = length + pb + pa - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
    out = num // s + 1
    if ceil_mode and (out - 1) * s >= length + pb:
        out -= 1
    return out


def resolve_padding(
    padding: PaddingArg,
    shape: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    *,
    name: str = "padding",
    allowed_lengths: Sequence[int] | None = None,
    axes: Sequence[int] | None = None,
) -> tuple[tuple[tuple[int, int], ...], bool]:
    """Return ((before, after) per axis, symmetric) for any padding form.

    ``symmetric`` is True for PyTorch-style int padding, where the
    "at most half the kernel" rule applies.
    """
    n = len(kernel)
    axis_of = list(range(n)) if axes is None else list(axes)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in PAD_MODES:
            msg = f"{name}={padding!r} must be an int, a tuple, or one of {PAD_MODES}"
            raise ValueError(msg)
        if mode == "valid":
            return tuple((0, 0) for _ in range(n)), False
        same: list[tuple[int, int]] = []
        for length, k, s, d in zip(shape, kernel, stride, dilation, strict=True):
            out = -(-length // s)
            total = max((out - 1) * s + d * (k - 1) + 1 - length, 0)
            small, big = total // 2, total - total // 2
            same.append((small, big) if mode == "same" else (big, small))
        return tuple(same), False
    if (
        not _is_int(padding)
        and isinstance(padding, Sequence)
        and len(padding) > 0
        and all(isinstance(p, Sequence) and not isinstance(p, str) for p in padding)
    ):
        if len(padding) != n:
            msg = (
                f"{name}={padding!r} must give one (before, after) pair per pooled "
                f"axis ({n})"
            )
            raise ValueError(msg)
        pairs: list[tuple[int, int]] = []
        for i, pair in enumerate(padding):
            if len(pair) != 2 or not all(_is_int(v) for v in pair):
                msg = (
                    f"{name} entry {pair!r} (axis {axis_of[i]}) must be a pair of ints"
                )
                raise TypeError(msg)
            before, after = (check_int_range(int(v), name) for v in pair)
            if before < 0 or after < 0:
                msg = f"{name} must be non-negative, got {pair!r} (axis {axis_of[i]})"
                raise ValueError(msg)
            span = dilation[i] * (kernel[i] - 1) + 1
            if before >= span or after >= span:
                msg = (
                    f"{name}={pair!r} (axis {axis_of[i]}) must be smaller than the "
                    f"dilated kernel extent {span}, so that no window lies wholly "
                    "in padding"
                )
                raise ValueError(msg)
            pairs.append((before, after))
        return tuple(pairs), False
    sym = as_int_tuple(padding, n, name, allowed_lengths=allowed_lengths)
    for i, p in enumerate(sym):
        if p < 0:
            msg = f"{name}={p} must be non-negative (axis {axis_of[i]})"
            raise ValueError(msg)
        if 2 * p > kernel[i]:
            msg = (
                f"{name}={p} must be at most half the kernel size {kernel[i]} "
                f"(axis {axis_of[i]})"
            )
            raise ValueError(msg)
    return tuple((p, p) for p in sym), True


@functools.lru_cache(maxsize=256)
def _regular_axis(
    axis: int,
    length: int,
    k: int,
    s: int,
    d: int,
    pb: int,
    pa: int,
    ceil_mode: bool,
) -> AxisPlan:
    if d * (k - 1) + 1 > INT_LIMIT:
        msg = (
            f"kernel_size={k} with dilation={d} spans {d * (k - 1) + 1} cells "
            f"(axis {axis}): ndpool computes positions in int64, so a window may "
            "span at most 2**60"
        )
        raise ValueError(msg)
    out = _out_length(length, k, s, d, pb, pa, ceil_mode)
    return AxisPlan(
        axis=axis,
        length=length,
        out=out,
        taps=k,
        regular=True,
        stride=s,
        dilation=d,
        pad_before=pb,
        pad_after=pa,
    )


def _frozen(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a.flags.writeable = False
    return a


def regular_geometry(
    shape: tuple[int, ...],
    axes: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    pads: tuple[tuple[int, int], ...],
    dilation: tuple[int, ...],
    ceil_mode: bool,
    *,
    allow_empty: bool = False,
) -> Geometry:
    """Geometry of a kernel/stride/padding/dilation pooling call.

    ``axes[i]`` goes with ``kernel[i]`` etc.; the plans come out in ascending
    axis order. Raises ValueError if an output length would be < 1.
    """
    plans = []
    for a, k, s, (pb, pa), d in zip(axes, kernel, stride, pads, dilation, strict=True):
        plan = _regular_axis(a, shape[a], k, s, d, pb, pa, bool(ceil_mode))
        if plan.out < 1 and not allow_empty:
            msg = (
                f"kernel_size={k} with dilation={d}, stride={s} and padding="
                f"{(pb, pa)} gives an output length of {plan.out} for input length "
                f"{shape[a]} (axis {a}): the padded input must be at least as long as "
                "the dilated kernel"
            )
            raise ValueError(msg)
        plans.append(plan)
    return _assemble(shape, plans)


def unit_geometry(ndim: int, axes: tuple[int, ...]) -> Geometry:
    """One one-cell window over one cell on each of ``axes`` of an
    ``ndim``-D array: pooling a cell with it gives a call's result dtypes
    (they follow only the op and the input dtype), with no tap to loop."""
    n = len(axes)
    ones = (1,) * n
    return regular_geometry((1,) * ndim, axes, ones, ones, ((0, 0),) * n, ones, False)


def whole_geometry(shape: tuple[int, ...], axes: tuple[int, ...]) -> Geometry:
    """One window spanning each of ``axes`` of an array of ``shape``
    (global pooling of it), with no padding; ``axes`` must not be empty."""
    n = len(axes)
    kernel = tuple(shape[a] for a in axes)
    ones = (1,) * n
    return regular_geometry(shape, axes, kernel, kernel, ((0, 0),) * n, ones, False)


def _assemble(shape: tuple[int, ...], plans: list[AxisPlan]) -> Geometry:
    plans.sort(key=operator.attrgetter("axis"))
    out_shape = list(shape)
    for p in plans:
        out_shape[p.axis] = p.out
    return Geometry(shape=tuple(shape), plans=tuple(plans), out_shape=tuple(out_shape))


# --------------------------------------------------------------------------
# irregular windows


def _irregular_axis(
    axis: int, length: int, starts: IntArray, ends: IntArray, ndim: int, out: int
) -> AxisPlan:
    widths = ends - starts
    taps = int(widths.max()) if widths.size else 1
    return AxisPlan(
        axis=axis,
        length=length,
        out=out,
        taps=max(taps, 1),
        regular=False,
        starts=_frozen(starts),
        ends=_frozen(ends),
    )


@functools.cache
def _memory_bytes() -> int | None:
    """This machine's physical memory, where the OS says (POSIX)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


#: bytes of per-window tables a pooled axis keeps per output position
#: (window starts, ends, first taps and two counts, int64 each)
_TABLE_BYTES = 40


def check_output_size(
    shape: Sequence[int],
    name: str,
    *,
    itemsize: int = 1,
    pooled: Sequence[int] = (),
) -> None:
    """Refuse an output no machine memory could hold.

    Counts ``itemsize`` bytes a cell, and the per-window tables of the
    ``pooled`` output lengths (which exist even when another axis is
    empty). Without this, a huge ``output_size`` would be allocated lazily
    and the process killed by the OS when it is filled, instead of an error.
    """
    limit = _memory_bytes()
    if limit is None:  # pragma: no cover - not POSIX
        return
    total = math.prod(shape)
    need = max(total * itemsize, max(pooled, default=0) * _TABLE_BYTES)
    if need > limit:
        msg = (
            f"{name}: an output of shape {tuple(shape)} ({total:,} cells, "
            f"{need:,} bytes with its tables) is more than this machine's memory "
            f"({limit:,} bytes) can hold"
        )
        raise ValueError(msg)


@functools.lru_cache(maxsize=256)
def _adaptive_axis(axis: int, length: int, out: int, ndim: int) -> AxisPlan:
    if 0 < out <= length and length % out == 0:  # equal windows: a regular plan
        k = length // out
        return _regular_axis(axis, length, k, k, 1, 0, 0, False)
    # floor(i*L/O) and ceil((i+1)*L/O) with L split as q*O + r, so no
    # product exceeds O*O (i*L overflows int64 for a long lazy Dask axis)
    q, r = divmod(length, out) if out > 0 else (0, 0)
    i = np.arange(out, dtype=np.int64)
    starts = i * q + (i * r) // out
    ends = (i + 1) * q + ((i + 1) * r + out - 1) // out
    return _irregular_axis(axis, length, starts, ends, ndim, out)


@functools.lru_cache(maxsize=256)
def adaptive_geometry(
    shape: tuple[int, ...], axes: tuple[int, ...], output_size: tuple[int, ...]
) -> Geometry:
    """Adaptive windows ``[floor(i*L/O), ceil((i+1)*L/O))`` per axis; kept
    per shape (a geometry is immutable, and its plans are kept anyway)."""
    out_shape = list(shape)
    for a, o in zip(axes, output_size, strict=True):
        out_shape[a] = o
    # the cells are checked where a NumPy output is allocated (pool_core)
    check_output_size(out_shape, "output_size", itemsize=0, pooled=output_size)
    plans = [
        _adaptive_axis(a, shape[a], o, len(shape))
        for a, o in zip(axes, output_size, strict=True)
    ]
    return _assemble(shape, plans)


def _intervals(
    samples: npt.NDArray[np.floating[Any]], length: int, out: int, k: int
) -> IntArray:
    """PyTorch's generate_intervals, in the samples' own float precision."""
    dtype = samples.dtype.type
    seq = np.empty((*samples.shape, out), dtype=np.int64)
    if out > 1:
        alpha = dtype(length - k) / dtype(out - 1)
        i = np.arange(out - 1).astype(samples.dtype)
        u = samples[..., None]
        with np.errstate(over="ignore", invalid="ignore"):
            a = ((i + u) * alpha).astype(np.int64)
            b = (u * alpha).astype(np.int64)
        seq[..., :-1] = a - b
    if out > 0:
        seq[..., -1] = length - k
    return seq


def fractional_geometry(
    shape: tuple[int, ...],
    axes: tuple[int, ...],
    kernel: tuple[int, ...],
    output_size: tuple[int, ...],
    samples: npt.NDArray[np.floating[Any]],
    sample_axes: tuple[int, ...],
    batch_axes: tuple[int, ...],
) -> Geometry:
    """Fractional max pooling windows, one interval sequence per plane.

    ``samples`` has shape ``batch_shape + (len(axes),)``; ``sample_axes[i]``
    is the sample column that drives ``axes[i]``. ``batch_axes`` are the
    input axes the batch shape of ``samples`` lines up with.
    """
    ndim = len(shape)
    plans = []
    for a, k, o, col in zip(axes, kernel, output_size, sample_axes, strict=True):
        seq = _intervals(samples[..., col], shape[a], o, k)  # batch_shape + (o,)
        # lay out as a full-ndim array: batch axes, then this axis
        full_shape = [1] * ndim
        for b, size in zip(batch_axes, seq.shape[:-1], strict=True):
            full_shape[b] = size
        full_shape[a] = o
        order = [*list(batch_axes), a]
        # seq axes follow ``order``; permute into ascending axis order
        perm = np.argsort(order)
        starts = np.transpose(seq, perm).reshape(full_shape)
        starts = np.ascontiguousarray(starts)
        plans.append(_irregular_axis(a, shape[a], starts, starts + k, ndim, o))
    return _assemble(shape, plans)


PadMode = Literal["valid", "same", "same_lower"]
