"""Error parity with torch 2.13, and error messages that say what is wrong.

For every call here: if torch raises, ndpool raises ``ValueError`` or
``TypeError`` (never ``IndexError``, ``ZeroDivisionError``, a crash or a
wrong shape); if torch accepts, ndpool accepts and gives torch's shape.
A few PyTorch behaviours are deliberately not copied; they are listed in
``NOT_COPIED`` below and checked separately.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import ndpool
import ndpool.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

EXAMPLES = settings.default.max_examples


def _to_torch(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    return value


def parity(name: str, x: Any, *args: Any, **kwargs: Any) -> None:
    """Call ``name`` in torch and in ndpool; both raise or both succeed."""
    targs = [_to_torch(a) for a in args]
    tkwargs = {k: _to_torch(v) for k, v in kwargs.items()}
    try:
        want = getattr(TF, name)(_to_torch(x), *targs, **tkwargs)
    except Exception:  # any torch refusal counts
        with pytest.raises((ValueError, TypeError)):
            getattr(F, name)(x, *args, **kwargs)
        return
    got = getattr(F, name)(x, *args, **kwargs)
    want = want if isinstance(want, tuple) else (want,)
    got = got if isinstance(got, tuple) else (got,)
    assert [g.shape for g in got] == [tuple(w.shape) for w in want]


# --------------------------------------------------------------------------
# hand-listed calls

X1 = np.zeros((2, 3, 6))
X2 = np.zeros((2, 3, 6, 6))
X3 = np.zeros((2, 3, 5, 5, 5))
P2, I2 = F.max_pool2d(np.arange(144.0).reshape(2, 3, 4, 6), 2, return_indices=True)

CASES: list[tuple[str, Any, tuple[Any, ...], dict[str, Any]]] = [
    # kernel / stride / dilation <= 0, wrong types and lengths
    ("max_pool2d", X2, (0,), {}),
    ("max_pool2d", X2, (-1,), {}),
    ("max_pool2d", X2, ((2, 0),), {}),
    ("max_pool2d", X2, (2, 0), {}),
    ("max_pool2d", X2, (2, -1), {}),
    ("max_pool2d", X2, (2, 1, 0, 0), {}),
    ("max_pool2d", X2, (2, 1, 0, -2), {}),
    ("max_pool1d", X1, (0,), {}),
    ("max_pool1d", X1, (2, 0), {}),
    ("max_pool3d", X3, (2, 1, 0, 0), {}),
    ("avg_pool2d", X2, (0,), {}),
    ("avg_pool1d", X1, (2, 0), {}),
    ("avg_pool3d", X3, ((2, 2, 0),), {}),
    ("max_pool2d", X2, ((),), {}),
    ("max_pool2d", X2, ((2, 2, 2),), {}),
    ("max_pool2d", X2, (2, (1, 1, 1)), {}),
    ("max_pool2d", X2, (2, 1, (0, 0, 0)), {}),
    ("max_pool3d", X3, ((2, 2),), {}),
    ("max_pool1d", X1, ((2, 2),), {}),
    ("avg_pool2d", X2, ((2, 2, 2),), {}),
    ("max_pool2d", X2, (2.0,), {}),
    ("max_pool2d", X2, (True,), {}),
    ("max_pool2d", X2, ("2",), {}),
    ("max_pool2d", X2, ((2, 2.5),), {}),
    ("max_pool2d", X2, (2,), {"ceil_mode": 1}),
    ("max_pool2d", X2, (2,), {"ceil_mode": None}),
    ("avg_pool2d", X2, (2,), {"count_include_pad": 0}),
    # accepted by torch: length-1 tuples, empty stride, numpy ints
    ("max_pool2d", X2, ((2,),), {}),
    ("max_pool2d", X2, (2, ()), {}),
    ("max_pool2d", X2, (4, 1, (2,)), {}),
    ("max_pool2d", X2, (2, 1, 0, (2,)), {}),
    ("avg_pool1d", X1, (2, ()), {}),
    ("max_pool2d", X2, (np.int64(2),), {}),
    # padding: negative, more than half the (undilated) kernel
    ("max_pool2d", X2, (2, 1, -1), {}),
    ("max_pool2d", X2, (5, 1, 3), {}),
    ("max_pool2d", X2, (2, 1, 2), {}),
    ("max_pool2d", X2, (3, 1, 1, 3), {}),
    ("max_pool2d", X2, (3, 1, 2, 3), {}),
    ("max_pool1d", X1, (3, 1, 2), {}),
    ("max_pool3d", X3, (2, 1, (0, 0, 2)), {}),
    ("avg_pool2d", X2, (3, 1, 2), {}),
    ("avg_pool1d", X1, (2, 1, -1), {}),
    ("avg_pool3d", X3, (3, 1, (2, 0, 0)), {}),
    # output too small
    ("max_pool2d", X2, (7,), {}),
    ("max_pool2d", X2, (4, 1, 0, 3), {}),
    ("max_pool1d", X1, (4, 1, 0, 3), {}),
    ("max_pool3d", X3, (6,), {}),
    ("avg_pool2d", X2, (7,), {}),
    ("avg_pool1d", X1, (7,), {}),
    ("avg_pool3d", X3, (6, 1, 1), {}),  # padded it fits; torch still refuses
    ("avg_pool3d", np.zeros((1, 1, 1, 5, 5)), (2, 2, 0, True), {}),
    ("lp_pool3d", np.zeros((1, 1, 1, 5, 5)), (2, 2, 2, True), {}),
    ("lp_pool3d", np.zeros((1, 1, 1, 5, 5)), (math.inf, 2, 2, True), {}),
    ("lp_pool2d", X2, (2, 7), {}),
    ("lp_pool1d", X1, (2, 7), {}),
    # divisor_override
    ("avg_pool2d", X2, (2,), {"divisor_override": 0}),
    ("avg_pool3d", X3, (2,), {"divisor_override": 0}),
    ("avg_pool2d", X2, (2,), {"divisor_override": 1.5}),
    ("avg_pool2d", X2, (2,), {"divisor_override": True}),
    ("avg_pool2d", X2, (2,), {"divisor_override": -3}),
    # lp norm_type and kernel forms
    ("lp_pool2d", X2, (0, 2), {}),
    ("lp_pool1d", X1, (0.0, 2), {}),
    ("lp_pool2d", X2, ("2", 2), {}),
    ("lp_pool2d", X2, (-math.inf, 2), {}),
    ("lp_pool1d", X1, (2, (2,)), {}),
    ("lp_pool2d", X2, (2, (2,)), {}),
    ("lp_pool3d", X3, (2, (2, 2)), {}),
    ("lp_pool2d", X2, (2, 2, (1,)), {}),
    ("lp_pool2d", X2, (2, 2, 0), {}),
    # input rank, empty non-batch dims, empty batch
    ("max_pool2d", np.zeros((6, 6)), (2,), {}),
    ("max_pool2d", np.zeros((1, 2, 3, 6, 6)), (2,), {}),
    ("max_pool1d", np.zeros(6), (2,), {}),
    ("max_pool3d", np.zeros((3, 5, 5)), (2,), {}),
    ("avg_pool2d", np.zeros((2, 0, 6, 6)), (2,), {}),
    ("max_pool2d", np.zeros((2, 0, 6, 6)), (2,), {}),
    ("max_pool2d", np.zeros((2, 3, 0, 6)), (2,), {}),
    ("max_pool1d", np.zeros((2, 3, 0)), (1,), {}),
    ("max_pool2d", np.zeros((0, 3, 6, 6)), (2,), {"return_indices": True}),
    ("adaptive_avg_pool2d", np.zeros((2, 0, 6, 6)), (2,), {}),
    ("adaptive_max_pool2d", np.zeros((2, 0, 6, 6)), (2,), {}),
    ("adaptive_avg_pool2d", np.zeros((2, 3, 0, 6)), (2,), {}),
    ("adaptive_max_pool1d", np.zeros((0, 3, 6)), (2,), {}),
    ("adaptive_avg_pool3d", np.zeros((5, 5)), (2,), {}),
    # adaptive output_size
    ("adaptive_avg_pool2d", X2, (-1,), {}),
    ("adaptive_max_pool2d", X2, ((2, -1),), {}),
    ("adaptive_avg_pool2d", X2, ((3,),), {}),
    ("adaptive_max_pool2d", X2, ((3, 3, 3),), {}),
    ("adaptive_max_pool1d", X1, ((2, 2),), {}),
    ("adaptive_avg_pool1d", X1, (None,), {}),
    ("adaptive_avg_pool1d", X1, ((None,),), {}),
    ("adaptive_max_pool1d", X1, ((None,),), {}),
    ("adaptive_avg_pool2d", X2, (None,), {}),
    ("adaptive_avg_pool2d", X2, (2.0,), {}),
    ("adaptive_avg_pool2d", X2, (True,), {}),
    ("adaptive_avg_pool2d", X2, ((2, 2.0),), {}),
    ("adaptive_avg_pool2d", X2, (0,), {}),
    ("adaptive_max_pool3d", X3, ((0, None, 2),), {}),
    ("adaptive_avg_pool3d", X3, ((None, None, 9),), {}),
    # fractional
    ("fractional_max_pool2d", X2, (2,), {}),
    ("fractional_max_pool2d", X2, (2, 6), {}),
    ("fractional_max_pool2d", X2, (2, 5), {}),
    ("fractional_max_pool3d", X3, (2, 4), {}),
    ("fractional_max_pool3d", X3, (2, 3), {}),
    ("fractional_max_pool2d", X2, (2, -1), {}),
    ("fractional_max_pool2d", X2, (2, 0), {}),
    ("fractional_max_pool2d", X2, ((2,), 3), {}),
    ("fractional_max_pool2d", X2, (2, (3,)), {}),
    ("fractional_max_pool2d", X2, ((2, 2, 2), 3), {}),
    ("fractional_max_pool3d", X3, (2, (2, 2)), {}),
    ("fractional_max_pool2d", X2, (7, 1), {}),
    ("fractional_max_pool2d", X2, (2,), {"output_ratio": (0.5,)}),
    ("fractional_max_pool2d", X2, (2,), {"output_ratio": (0.5, 0.5, 0.5)}),
    ("fractional_max_pool2d", X2, (2,), {"output_ratio": (1.0, 1.0)}),
    ("fractional_max_pool2d", X2, (2,), {"output_ratio": (0.0, 0.5)}),
    ("fractional_max_pool2d", X2, (2,), {"output_ratio": (-0.5, 0.5)}),
    ("fractional_max_pool3d", X3, (2,), {"output_ratio": 0.5}),
    ("fractional_max_pool3d", X3, (2,), {"output_ratio": (0.5, 0.5)}),
    ("fractional_max_pool2d", X2[0], (2, 3), {}),
    ("fractional_max_pool2d", np.zeros((6, 6)), (2, 3), {}),
    ("fractional_max_pool2d", np.zeros((2, 3, 0, 6)), (2, 3), {}),
    # fractional _random_samples: shape and dtype
    *[
        ("fractional_max_pool2d", X2, (2, 3), {"_random_samples": np.zeros(shape)})
        for shape in [
            (2, 3, 2),
            (2, 3, 3),
            (2, 3, 1),
            (1, 3, 2),
            (4, 3, 2),
            (2, 4, 2),
            (2, 3),
            (2, 3, 2, 1),
            (3, 2),
        ]
    ],
    *[
        ("fractional_max_pool2d", X2[0], (2, 3), {"_random_samples": np.zeros(shape)})
        for shape in [(1, 3, 2), (3, 2), (2, 3, 2), (1, 2, 2)]
    ],
    *[
        ("fractional_max_pool3d", X3, (2, 2), {"_random_samples": np.zeros(shape)})
        for shape in [(2, 3, 3), (2, 3, 2), (1, 3, 3), (2, 3, 3, 1)]
    ],
    (
        "fractional_max_pool2d",
        X2,
        (2, 3),
        {"_random_samples": np.zeros((2, 3, 2), np.float32)},
    ),
    (
        "fractional_max_pool2d",
        X2,
        (2, 3),
        {"_random_samples": np.full((2, 3, 2), 3.5)},
    ),
    # unpooling
    ("max_unpool2d", P2, (I2, 2), {}),
    ("max_unpool2d", P2, (I2, 2), {"output_size": (4, 6)}),
    ("max_unpool2d", P2, (I2, 2), {"output_size": (9, 9, 5, 7)}),
    ("max_unpool2d", P2, (I2, 2), {"output_size": (2, 6)}),
    ("max_unpool2d", P2, (I2, 2), {"output_size": (6, 6)}),
    ("max_unpool2d", P2, (I2, 2), {"output_size": (3, 5)}),
    ("max_unpool2d", P2, (I2, 2), {"output_size": (5, 7)}),
    ("max_unpool2d", P2, (I2, 2), {"output_size": (1, 4, 6)}),
    ("max_unpool2d", P2, (I2, 2), {"output_size": (4,)}),
    ("max_unpool2d", P2, (I2, 2), {"output_size": 4}),
    ("max_unpool2d", P2, (I2, 2), {"output_size": (4.0, 6)}),
    ("max_unpool2d", P2, (I2, (2,)), {}),
    ("max_unpool2d", P2, (I2, 2, (2,)), {}),
    ("max_unpool2d", P2, (I2, 2, 2, (0,)), {}),
    ("max_unpool2d", P2, (I2, 2, 2, 2), {}),
    ("max_unpool2d", P2, (I2, 2, 0), {}),
    ("max_unpool2d", P2, (I2, 2, 2, -1), {}),
    ("max_unpool2d", P2, (I2.astype(np.int32), 2), {}),
    ("max_unpool2d", P2, (I2.astype(np.float64), 2), {}),
    ("max_unpool2d", P2, (I2[..., :1], 2), {}),
    ("max_unpool2d", P2, (I2 * 0 - 1, 2), {}),
    ("max_unpool2d", P2, (I2 * 0 + 24, 2), {}),
    ("max_unpool2d", P2, (I2 * 0 + 23, 2), {}),
    ("max_unpool2d", P2, (I2, 2), {"output_size": (3, 6)}),
    ("max_unpool1d", P2[0], (I2[0], 2), {}),
    ("max_unpool1d", P2[0], (I2[0], 2), {"output_size": (6,)}),
    ("max_unpool1d", P2[0], (I2[0], 2), {"output_size": (1, 1, 6)}),
    ("max_unpool1d", P2[0], (I2[0], 2), {"output_size": (2, 6)}),
    ("max_unpool3d", P2, (I2, 2), {}),
    ("max_unpool3d", P2[None], (I2[None], 2), {"output_size": (1, 4, 6)}),
    ("max_unpool3d", P2[None], (I2[None], 2), {"output_size": (4, 6)}),
    ("max_unpool2d", np.zeros((2, 0, 2, 3)), (np.zeros((2, 0, 2, 3), np.int64), 2), {}),
    ("max_unpool2d", np.zeros((0, 3, 2, 3)), (np.zeros((0, 3, 2, 3), np.int64), 2), {}),
    # unbatched with no channels: the adaptive and fractional kernels take it
    ("adaptive_max_pool1d", np.zeros((0, 4)), (2,), {}),
    ("adaptive_max_pool2d", np.zeros((0, 4, 4)), (2,), {"return_indices": True}),
    ("adaptive_max_pool3d", np.zeros((0, 4, 4, 4)), (2,), {}),
    ("adaptive_avg_pool3d", np.zeros((0, 4, 4, 4)), (2,), {}),
    ("adaptive_avg_pool3d", np.zeros((1, 0, 4, 4, 4)), (2,), {}),
    ("adaptive_max_pool2d", np.zeros((1, 0, 4, 4)), (2,), {}),
    ("fractional_max_pool2d", np.zeros((0, 4, 4)), (2,), {"output_size": 1}),
    ("fractional_max_pool3d", np.zeros((0, 4, 4, 4)), (2,), {"output_size": 1}),
    ("fractional_max_pool2d", np.zeros((1, 0, 4, 4)), (2,), {"output_size": 1}),
    ("max_pool2d", np.zeros((0, 4, 4)), (2,), {}),
    ("avg_pool2d", np.zeros((0, 4, 4)), (2,), {}),
]


@pytest.mark.parametrize(
    ("name", "x", "args", "kwargs"), CASES, ids=[c[0] for c in CASES]
)
def test_listed_parity(name: str, x: Any, args: tuple[Any, ...], kwargs: Any) -> None:
    parity(name, x, *args, **kwargs)


# --------------------------------------------------------------------------
# random arguments (hypothesis)

small = st.integers(-1, 4)


def _arg(nd: int, values: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    """An int, or a tuple of a random length (mostly nd)."""
    return st.one_of(
        values,
        st.lists(values, min_size=nd, max_size=nd).map(tuple),
        st.lists(values, min_size=0, max_size=4).map(tuple),
    )


@st.composite
def window_args(draw: st.DrawFn, op: str) -> tuple[Any, ...]:
    nd = draw(st.integers(1, 3))
    batch = draw(st.sampled_from([(), (0,), (1,), (2,)]))
    extra = draw(st.sampled_from([(), (), (), (1,)]))  # a wrong rank sometimes
    channels = draw(st.sampled_from([(1,), (2,), (0,)]))
    spatial = tuple(draw(st.integers(0, 5)) for _ in range(nd))
    if draw(st.integers(0, 9)):  # mostly non-empty spatial dims
        spatial = tuple(max(s, 1) for s in spatial)
    x = np.zeros(extra + batch + channels + spatial)
    kernel = draw(_arg(nd, small))
    stride = draw(st.one_of(st.none(), _arg(nd, small)))
    ceil = draw(st.booleans())
    name = f"{op}_pool{nd}d"
    if op == "max":
        padding = draw(_arg(nd, st.integers(-1, 3)))
        dilation = draw(_arg(nd, st.integers(-1, 3)))
        indices = draw(st.booleans())
        return name, x, (kernel, stride, padding, dilation, ceil, indices)
    if op == "avg":
        padding = draw(_arg(nd, st.integers(-1, 3)))
        include = draw(st.booleans())
        divisor = draw(st.sampled_from([None, None, 0, 2, -1]))
        if nd == 1:  # torch's avg_pool1d has no divisor_override
            return name, x, (kernel, stride, padding, ceil, include)
        return name, x, (kernel, stride, padding, ceil, include, divisor)
    norm = draw(st.sampled_from([1, 2, 3.0, 0, 0.5, -1, math.inf, -math.inf]))
    if nd == 1:  # torch's lp_pool1d: kernel_size is an int
        kernel = draw(small)
    return name, x, (norm, kernel, stride, ceil)


@pytest.mark.parametrize("op", ["max", "avg", "lp"])
@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_random_window_args(op: str, data: st.DataObject) -> None:
    name, x, args = data.draw(window_args(op))
    parity(name, x, *args)


@st.composite
def adaptive_args(draw: st.DrawFn) -> tuple[Any, ...]:
    nd = draw(st.integers(1, 3))
    op = draw(st.sampled_from(["max", "avg"]))
    lead = draw(st.sampled_from([(2, 3), (3,), (0, 2), (2, 0), (1, 2, 3), ()]))
    spatial = tuple(draw(st.integers(0, 4)) for _ in range(nd))
    if draw(st.integers(0, 9)):
        spatial = tuple(max(s, 1) for s in spatial)
    x = np.zeros(lead + spatial)
    entry = st.one_of(st.integers(-1, 6), st.none()) if nd > 1 else st.integers(-1, 6)
    size = draw(
        st.one_of(
            st.integers(-1, 6),
            st.lists(entry, min_size=nd, max_size=nd).map(tuple),
            st.lists(st.integers(0, 4), min_size=0, max_size=4).map(tuple),
        )
    )
    # not copied: torch's output_size=1 fast path (a global mean) averages an
    # empty plane to NaN and takes an input of any rank
    assume(op == "max" or all(spatial))
    assume(op == "max" or len(lead) in (1, 2))
    return f"adaptive_{op}_pool{nd}d", x, size


@settings(max_examples=EXAMPLES)
@given(case=adaptive_args())
def test_random_adaptive_args(case: tuple[Any, ...]) -> None:
    name, x, size = case
    parity(name, x, size)


@st.composite
def fractional_args(draw: st.DrawFn) -> tuple[Any, ...]:
    nd = draw(st.integers(2, 3))
    batched = draw(st.booleans())
    n = draw(st.integers(0, 2)) if batched else 1
    spatial = tuple(draw(st.integers(1, 6)) for _ in range(nd))
    x = np.zeros(((n,) if batched else ()) + (2,) + spatial)
    kernel = draw(_arg(nd, st.integers(1, 4)))
    kwargs: dict[str, Any] = {}
    if draw(st.booleans()):
        kwargs["output_size"] = draw(_arg(nd, st.integers(-1, 6)))
    else:
        ratio = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, 1.5])
        if nd == 3:  # torch's 2-d refuses a scalar ratio (not copied)
            kwargs["output_ratio"] = draw(
                st.one_of(ratio, st.lists(ratio, min_size=3, max_size=3).map(tuple))
            )
        else:
            kwargs["output_ratio"] = draw(
                st.lists(ratio, min_size=0, max_size=4).map(tuple)
            )
    if draw(st.booleans()):
        rows = draw(st.sampled_from([n, n, n + 1, max(n - 1, 0)]))
        cols = draw(st.sampled_from([nd, nd, nd - 1, nd + 1]))
        chans = draw(st.sampled_from([2, 2, 1]))
        kwargs["_random_samples"] = np.full((rows, chans, cols), 0.5)
    return f"fractional_max_pool{nd}d", x, kernel, kwargs


@settings(max_examples=EXAMPLES)
@given(case=fractional_args())
def test_random_fractional_args(case: tuple[Any, ...]) -> None:
    name, x, kernel, kwargs = case
    parity(name, x, kernel, **kwargs)


@st.composite
def unpool_args(draw: st.DrawFn) -> tuple[Any, ...]:
    nd = draw(st.integers(1, 3))
    lead = draw(st.sampled_from([(2, 2), (2,), (0, 2)]))
    spatial = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    x = np.ones(lead + spatial)
    kernel = draw(_arg(nd, st.integers(0, 3)))
    stride = draw(st.one_of(st.none(), _arg(nd, st.integers(0, 3))))
    padding = draw(_arg(nd, st.integers(-1, 2)))
    high = draw(st.sampled_from([1, 4, 30]))
    seed = draw(st.integers(0, 2**31))
    idx = np.random.default_rng(seed).integers(0, high, size=x.shape)
    idx = idx + draw(st.sampled_from([0, 0, 0, -1, 5]))
    output_size = draw(
        st.one_of(
            st.none(),
            st.lists(st.integers(0, 9), min_size=nd, max_size=nd).map(tuple),
            st.lists(st.integers(0, 9), min_size=nd + 2, max_size=nd + 2).map(tuple),
            st.lists(st.integers(0, 9), min_size=0, max_size=5).map(tuple),
        )
    )
    # not copied: torch's 1-d/2-d unpooling ignores extra stride/padding entries
    assume(
        nd == 3
        or not any(isinstance(v, tuple) and len(v) > nd for v in (stride, padding))
    )
    return f"max_unpool{nd}d", x, idx, kernel, stride, padding, output_size


@settings(max_examples=EXAMPLES)
@given(case=unpool_args())
def test_random_unpool_args(case: tuple[Any, ...]) -> None:
    name, x, idx, kernel, stride, padding, output_size = case
    parity(name, x, idx, kernel, stride, padding, output_size)


# --------------------------------------------------------------------------
# PyTorch behaviours deliberately not copied (see the module docstring)

NOT_COPIED: list[tuple[str, Any, tuple[Any, ...], dict[str, Any], str]] = [
    # torch: TypeError (len() of a float) although its docs allow a number;
    # fractional_max_pool3d accepts it
    ("fractional_max_pool2d", X2, (2,), {"output_ratio": 0.5}, "accept"),
    # torch: no windows at all, garbage output; a pooling window needs a cell
    ("fractional_max_pool2d", X2, (0, 2), {}, "refuse"),
    ("fractional_max_pool2d", X2, ((2, -1), 2), {}, "refuse"),
    # torch: lp_pool with norm_type NaN gives NaN everywhere; True means 1
    ("lp_pool2d", X2, (math.nan, 2), {}, "refuse"),
    ("lp_pool2d", X2, (True, 2), {}, "refuse"),
    # torch: the mean of an empty plane, NaN (its output_size=1 fast path)
    ("adaptive_avg_pool2d", np.zeros((2, 3, 0, 4)), (1,), {}, "refuse"),
    # torch: 1-d/2-d unpooling reads only the first nd stride/padding entries
    ("max_unpool2d", P2, (I2, 2, (2, 2, 2)), {}, "refuse"),
    ("max_unpool1d", P2[0], (I2[0], 2, 2, (0, 0)), {}, "refuse"),
    ("adaptive_avg_pool2d", np.zeros((1, 2, 3, 4, 4)), (1,), {}, "refuse"),
    # torch: 3-d reads the first three of a longer output_ratio
    ("fractional_max_pool3d", X3, (2,), {"output_ratio": (0.5,) * 4}, "refuse"),
    # torch: return_indices is any object, tested for truth
    ("max_pool2d", X2, (2,), {"return_indices": None}, "refuse"),
    ("max_pool2d", X2, (2,), {"return_indices": "yes"}, "refuse"),
]


@pytest.mark.parametrize(
    ("name", "x", "args", "kwargs", "ours"), NOT_COPIED, ids=[c[0] for c in NOT_COPIED]
)
def test_not_copied(
    name: str, x: Any, args: tuple[Any, ...], kwargs: Any, ours: str
) -> None:
    if ours == "accept":
        getattr(F, name)(x, *args, **kwargs)
    else:
        with pytest.raises((ValueError, TypeError)):
            getattr(F, name)(x, *args, **kwargs)


def test_lp_pool_zero_norm_is_value_error() -> None:
    """torch raises ZeroDivisionError; ndpool a ValueError naming norm_type."""
    with pytest.raises(ValueError, match="norm_type=0"):
        F.lp_pool2d(X2, 0, 2)


# --------------------------------------------------------------------------
# dtypes


BAD_DTYPES = [
    np.zeros((1, 2, 4, 4), np.complex128),
    np.zeros((1, 2, 4, 4), object),
    np.full((1, 2, 4, 4), "a"),
    np.zeros((1, 2, 4, 4), "datetime64[s]"),
    np.zeros((1, 2, 4, 4), np.dtype([("a", float)])),
]


@pytest.mark.parametrize("x", BAD_DTYPES, ids=lambda x: str(x.dtype))
@pytest.mark.parametrize(
    "call",
    [
        lambda x: F.max_pool2d(x, 2),
        lambda x: F.avg_pool2d(x, 2),
        lambda x: F.lp_pool2d(x, 2, 2),
        lambda x: F.adaptive_max_pool2d(x, 2),
        lambda x: F.adaptive_avg_pool2d(x, 2),
        lambda x: F.fractional_max_pool2d(x, 2, 2),
        lambda x: F.max_unpool2d(x, np.zeros(x.shape, np.int64), 2),
        lambda x: ndpool.pool(x, 2),
        lambda x: ndpool.pool(x, (2, 2), op="avg", axes=(0, 3)),
        lambda x: ndpool.global_avg_pool(x),
    ],
)
def test_unsupported_dtype(x: Any, call: Any) -> None:
    with pytest.raises(TypeError, match=re.escape(str(x.dtype))):
        call(x)


def test_fractional_needs_float_input() -> None:
    with pytest.raises(TypeError, match="int64"):
        F.fractional_max_pool2d(np.zeros((1, 2, 4, 4), np.int64), 2, 2)


# --------------------------------------------------------------------------
# messages name the argument, the rule and the value

MESSAGES = [
    (lambda: F.max_pool2d(X2, 5, 1, 3), ValueError, r"padding=3.*half.*kernel.*5"),
    (lambda: F.max_pool2d(X2, 2, 1, -1), ValueError, r"padding=-1.*non-negative"),
    (lambda: F.max_pool2d(X2, (2, 0)), ValueError, r"kernel_size.*positive.*0"),
    (lambda: F.max_pool2d(X2, 2, -2), ValueError, r"stride.*positive.*-2"),
    (lambda: F.max_pool2d(X2, 2, 1, 0, 0), ValueError, r"dilation.*positive.*0"),
    (lambda: F.max_pool2d(X2, (2, 2, 2)), ValueError, r"kernel_size.*\(2, 2, 2\)"),
    (lambda: F.max_pool2d(X2, 2.5), TypeError, r"kernel_size.*2\.5"),
    (lambda: F.max_pool2d(X2, 7), ValueError, r"kernel_size=7.*output length"),
    (lambda: F.max_pool2d(X2, 2, ceil_mode=1), TypeError, r"ceil_mode.*1"),
    (lambda: F.max_pool2d(np.zeros((6, 6)), 2), ValueError, r"input.*\(6, 6\)"),
    (
        lambda: F.max_pool2d(np.zeros((2, 0, 6, 6)), 2),
        ValueError,
        r"\(2, 0, 6, 6\).*empty",
    ),
    (
        lambda: F.avg_pool2d(X2, 2, divisor_override=0),
        ValueError,
        r"divisor_override=0",
    ),
    (
        lambda: F.avg_pool2d(X2, 2, divisor_override=1.5),
        TypeError,
        r"divisor_override.*1\.5",
    ),
    (lambda: F.avg_pool3d(X3, 6, 1, 1), ValueError, r"kernel_size=6.*input length 5"),
    (lambda: F.lp_pool2d(X2, 0, 2), ValueError, r"norm_type=0"),
    (
        lambda: F.lp_pool2d(X2, math.nan, 2),
        ValueError,
        r"norm_type=nan must be a number",
    ),
    (
        lambda: F.lp_pool1d(X1, math.inf, (2, 2)),
        ValueError,
        r"kernel_size must have 1 entry \(one per pooled axis\), got \(2, 2\)",
    ),
    (lambda: F.lp_pool1d(X1, 2, (2,)), TypeError, r"kernel_size.*\(2,\)"),
    (lambda: F.adaptive_avg_pool2d(X2, -1), ValueError, r"output_size=-1"),
    (
        lambda: F.adaptive_avg_pool2d(X2, (2, 2, 2)),
        ValueError,
        r"output_size.*\(2, 2, 2\)",
    ),
    (lambda: F.adaptive_avg_pool2d(X2, 2.0), TypeError, r"output_size.*2\.0"),
    (lambda: F.adaptive_avg_pool1d(X1, (None,)), TypeError, r"output_size.*None"),
    (lambda: F.fractional_max_pool2d(X2, 2), ValueError, r"output_size.*output_ratio"),
    (
        lambda: F.fractional_max_pool2d(X2, 2, 6),
        ValueError,
        r"output_size 6.*kernel_size 2.*6",
    ),
    (
        lambda: F.fractional_max_pool2d(X2, 2, 3, _random_samples=np.zeros((2, 3, 3))),
        ValueError,
        r"_random_samples.*\(2, 3, 3\)",
    ),
    (
        lambda: F.fractional_max_pool2d(
            X2, 2, 3, _random_samples=np.zeros((2, 3, 2), np.float32)
        ),
        TypeError,
        r"_random_samples.*float32",
    ),
    (
        lambda: F.fractional_max_pool2d(X2, 2, output_ratio=(0.5,)),
        ValueError,
        r"output_ratio.*\(0\.5,\)",
    ),
    (
        lambda: F.max_unpool2d(P2, I2, 2, output_size=(9, 9)),
        ValueError,
        r"output_size.*9",
    ),
    (
        lambda: F.max_unpool2d(P2, I2, 2, output_size=(4,)),
        ValueError,
        r"output_size.*2 or 4.*1",
    ),
    (lambda: F.max_unpool2d(P2, I2 + 100, 2), ValueError, r"indices.*1[0-9][0-9]"),
    (lambda: F.max_unpool2d(P2, I2 - 100, 2), ValueError, r"indices.*-"),
    (
        lambda: F.max_unpool2d(P2, I2[..., :1], 2),
        ValueError,
        r"indices.*\(2, 3, 2, 1\)",
    ),
    (lambda: F.max_unpool2d(P2, I2.astype(np.int32), 2), TypeError, r"indices.*int32"),
    (lambda: ndpool.pool(X2, 2, op="median"), ValueError, r"op.*median"),
    (lambda: ndpool.pool(X2, 2, axes=4), ValueError, r"axes.*4"),
    (lambda: ndpool.pool(X2, (2, 2), axes=(1, -3)), ValueError, r"axes.*\(1, -3\)"),
    (lambda: ndpool.pool(X2, 2, nan_policy="raise"), ValueError, r"nan_policy.*raise"),
    (lambda: ndpool.pool(X2, 2, op="lp"), TypeError, r"norm_type.*None"),
    (lambda: F.lp_pool2d(X2, 10**400, 2), ValueError, r"norm_type=1000.*too large"),
    (lambda: F.max_pool2d(X2, 2, 2**63), ValueError, r"stride=9223372036854775808"),
    (
        lambda: F.avg_pool2d(X2, 2, divisor_override=-(10**30)),
        ValueError,
        r"divisor_override=-1000.*out of range",
    ),
    (
        lambda: F.fractional_max_pool2d(X2, 2, output_ratio=10**400),
        ValueError,
        r"output_ratio=1000.*finite",
    ),
    (lambda: ndpool.pool(X2, 2, op="avg", dtype="U3"), TypeError, r"dtype='U3'.*<U3"),
    (lambda: ndpool.pool(X2, 2, dtype=complex), TypeError, r"dtype=.*complex128"),
    (lambda: ndpool.pool(X2, 2, dtype="foo"), TypeError, r"dtype='foo'.*not a NumPy"),
    (
        lambda: ndpool.global_avg_pool(X2, keepdims="no"),
        TypeError,
        r"keepdims must be a bool, got 'no'",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), MESSAGES)
def test_message_names_argument_and_value(call: Any, exc: Any, pattern: str) -> None:
    with pytest.raises(exc, match=pattern):
        call()


def test_padding_message_exact() -> None:
    """SPEC §7's example, word for word (axes counted among the pooled ones)."""
    with pytest.raises(ValueError, match=r"padding=3 must be at most half the kernel"):
        F.max_pool3d(X3, (3, 3, 5), 1, (0, 0, 3))
