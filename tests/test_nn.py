"""Layers (``ndpool.nn``): repr, attributes, forward and backward vs torch.nn."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import ndpool.functional as F
from ndpool import nn

torch = pytest.importorskip("torch")

#: (class name, constructor args, constructor kwargs, input spatial rank)
CASES: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("MaxPool1d", (3,), {}),
    ("MaxPool1d", (3, 2, 1, 2), {"ceil_mode": True, "return_indices": True}),
    ("MaxPool2d", (2,), {}),
    ("MaxPool2d", ((3, 2),), {"stride": (2, 1), "padding": (1, 0)}),
    ("MaxPool2d", ([3, 3],), {"dilation": 2, "return_indices": True}),
    ("MaxPool3d", (2, 1), {"ceil_mode": True}),
    ("AvgPool1d", (3,), {}),
    ("AvgPool1d", (3, 2, 1, True, False), {}),
    ("AvgPool2d", (2,), {}),
    ("AvgPool2d", ((3, 2), (2, 1), (1, 0)), {"divisor_override": 5}),
    ("AvgPool2d", (3,), {"count_include_pad": False, "ceil_mode": True}),
    ("AvgPool3d", (2, 1, 1), {}),
    ("LPPool1d", (2, 3), {}),
    ("LPPool1d", (1.5, 3, 2, True), {}),
    ("LPPool2d", (2, (2, 3)), {"stride": 1}),
    ("LPPool2d", (3.0, 2), {"ceil_mode": True}),
    ("LPPool3d", (2, 2), {}),
    ("AdaptiveMaxPool1d", (3,), {}),
    ("AdaptiveMaxPool2d", ((3, None),), {"return_indices": True}),
    ("AdaptiveMaxPool3d", (2,), {}),
    ("AdaptiveAvgPool1d", (4,), {}),
    ("AdaptiveAvgPool2d", ((None, 3),), {}),
    ("AdaptiveAvgPool3d", ([2, 3, 1],), {}),
    ("FractionalMaxPool2d", (2,), {"output_size": 3}),
    ("FractionalMaxPool2d", ((2, 3),), {"output_ratio": 0.5, "return_indices": True}),
    ("FractionalMaxPool3d", (2,), {"output_ratio": (0.5, 0.6, 0.7)}),
]
RANK = {"1d": 1, "2d": 2, "3d": 3}


def _ids(case: tuple[str, tuple[Any, ...], dict[str, Any]]) -> str:
    return f"{case[0]}-{case[1]}-{sorted(case[2].items())}"


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_layer_matches_torch(case: tuple[str, tuple[Any, ...], dict[str, Any]]) -> None:
    name, args, kwargs = case
    nd = RANK[name[-2:]]
    rng = np.random.default_rng(len(name) + len(args))
    x = rng.integers(-3, 4, size=(2, 3, *(7, 6, 5)[:nd])).astype(np.float64)
    if name.startswith("LP"):
        x = np.abs(rng.standard_normal(x.shape)) + 0.5
    if name.startswith("Fractional"):
        samples = rng.random((2, 3, nd))
        kwargs = {**kwargs, "_random_samples": samples}
        tkwargs = {**kwargs, "_random_samples": torch.from_numpy(samples)}
    else:
        tkwargs = kwargs
    ours = getattr(nn, name)(*args, **kwargs)
    theirs = getattr(torch.nn, name)(*args, **tkwargs)
    assert repr(ours) == repr(theirs)
    for attr in ("kernel_size", "stride", "padding", "dilation", "ceil_mode",
                 "return_indices", "count_include_pad", "divisor_override",
                 "norm_type", "output_size", "output_ratio"):  # fmt: skip
        if hasattr(theirs, attr):
            assert getattr(ours, attr) == getattr(theirs, attr), attr
        else:
            assert not hasattr(ours, attr), attr

    out = ours(x)
    xt = torch.from_numpy(x).requires_grad_(True)
    want = theirs(xt)
    values = out[0] if isinstance(out, tuple) else out
    want_values = want[0] if isinstance(want, tuple) else want
    np.testing.assert_allclose(values, want_values.detach().numpy(), rtol=1e-12)
    if isinstance(want, tuple):
        np.testing.assert_array_equal(out[1], want[1].numpy())
    g = rng.standard_normal(values.shape)
    (grad,) = torch.autograd.grad(want_values, xt, torch.from_numpy(g))
    np.testing.assert_allclose(ours.backward(g), grad.numpy(), rtol=1e-10)


def test_forward_equals_functional() -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8))
    np.testing.assert_array_equal(nn.MaxPool2d(3, 2, 1)(x), F.max_pool2d(x, 3, 2, 1))
    np.testing.assert_array_equal(
        nn.AvgPool2d(3, 2, 1, divisor_override=4)(x),
        F.avg_pool2d(x, 3, 2, 1, divisor_override=4),
    )
    np.testing.assert_array_equal(
        nn.AdaptiveAvgPool2d(3)(x), F.adaptive_avg_pool2d(x, 3)
    )
    x = np.abs(x) + 0.5
    np.testing.assert_array_equal(nn.LPPool2d(2, 3)(x), F.lp_pool2d(x, 2.0, 3))


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_unpool_layer(nd: int) -> None:
    rng = np.random.default_rng(nd)
    x = rng.standard_normal((2, 3, *(6, 5, 4)[:nd]))
    pool = getattr(nn, f"MaxPool{nd}d")(2, return_indices=True)
    pooled, idx = pool(x)
    ours = getattr(nn, f"MaxUnpool{nd}d")(2)
    theirs = getattr(torch.nn, f"MaxUnpool{nd}d")(2)
    assert repr(ours) == repr(theirs)
    assert ours.kernel_size == theirs.kernel_size
    assert ours.stride == theirs.stride
    assert ours.padding == theirs.padding
    size = list(x.shape[2:])
    out = ours(pooled, idx, output_size=size)
    pt = torch.from_numpy(pooled).requires_grad_(True)
    want = theirs(pt, torch.from_numpy(idx), output_size=size)
    np.testing.assert_array_equal(out, want.detach().numpy())
    g = rng.standard_normal(out.shape)
    (grad,) = torch.autograd.grad(want, pt, torch.from_numpy(g))
    np.testing.assert_array_equal(ours.backward(g), grad.numpy())
    assert repr(getattr(nn, f"MaxUnpool{nd}d")(3, 2, 1)) == repr(
        getattr(torch.nn, f"MaxUnpool{nd}d")(3, 2, 1)
    )


def test_fractional_arguments_as_torch() -> None:
    for name in ("FractionalMaxPool2d", "FractionalMaxPool3d"):
        for kwargs in ({}, {"output_size": 2, "output_ratio": 0.5},
                       {"output_ratio": 1.5}):  # fmt: skip
            with pytest.raises(ValueError, match="output") as ours:
                getattr(nn, name)(2, **kwargs)
            with pytest.raises(ValueError, match="output") as theirs:
                getattr(torch.nn, name)(2, **kwargs)
            assert str(ours.value) == str(theirs.value)
    with pytest.raises(ValueError, match="greater than 0"):
        nn.FractionalMaxPool3d(0, output_size=2)


def test_backward_before_call() -> None:
    with pytest.raises(RuntimeError, match="forward call first"):
        nn.MaxPool2d(2).backward(np.zeros((1, 1, 1, 1)))


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_a_called_layer_pickles_and_copies(
    case: tuple[str, tuple[Any, ...], dict[str, Any]],
) -> None:
    """As torch.nn's layers do: the copy keeps the arguments, not the last
    call's pullback (a closure), so it needs a call before ``backward``."""
    import copy
    import pickle

    name, args, kwargs = case
    layer = getattr(nn, name)(*args, **kwargs)
    rank = RANK[name[-2:]]
    x = np.random.default_rng(0).standard_normal((2, 3, *(9,) * rank))
    out = layer(x)
    for clone in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer)):
        assert repr(clone) == repr(layer)
        with pytest.raises(RuntimeError, match="forward call first"):
            clone.backward(np.ones(np.shape(out[0] if isinstance(out, tuple) else out)))
        if not name.startswith("Fractional"):  # fresh random windows each call
            again = clone(x)
            for a, b in zip(
                again if isinstance(again, tuple) else (again,),
                out if isinstance(out, tuple) else (out,),
                strict=True,
            ):
                np.testing.assert_array_equal(a, b)


def test_a_failed_call_leaves_no_stale_gradient() -> None:
    layer = nn.MaxPool2d(3)
    layer(np.ones((1, 1, 6, 6)))
    with pytest.raises(ValueError, match="kernel"):
        layer(np.ones((1, 1, 2, 2)))  # the kernel does not fit
    with pytest.raises(RuntimeError, match="forward call first"):
        layer.backward(np.ones((1, 1, 2, 2)))


def test_import_without_torch() -> None:
    code = "import sys, ndpool.nn; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("make", "dtype"),
    [
        (lambda m: m.MaxPool2d(2), np.uint8),
        (lambda m: m.MaxPool2d(3, 2, 1), np.int64),
        (lambda m: m.AvgPool2d(2), np.int64),
    ],
)
def test_integer_input_runs_the_forward(make: Any, dtype: Any) -> None:
    """As torch.nn's layers: integer images pool; only backward() refuses."""
    x = np.random.default_rng(4).integers(0, 200, (2, 3, 7, 7)).astype(dtype)
    layer = make(nn)
    ours = layer(x)
    want = make(torch.nn)(torch.from_numpy(x)).numpy()
    # max keeps the integers; torch truncates an integer average, where
    # ndpool gives the exact float64 mean (docs/differences.md)
    assert ours.dtype == (np.float64 if isinstance(layer, nn.AvgPool2d) else dtype)
    np.testing.assert_array_equal(np.trunc(ours), want)
    with pytest.raises(TypeError, match=rf"backward.*{np.dtype(dtype)}.*floating"):
        layer.backward(np.ones(ours.shape))


def test_integer_unpool_layer_runs_the_forward() -> None:
    x = np.arange(24).reshape(1, 2, 3, 4)
    pooled, idx = F.max_pool2d(x.astype(float), 2, return_indices=True)
    layer = nn.MaxUnpool2d(2)
    out = layer(pooled.astype(np.int64), idx, output_size=(3, 4))
    np.testing.assert_array_equal(
        out, F.max_unpool2d(pooled, idx, 2, output_size=(3, 4))
    )
    assert out.dtype == np.int64
    with pytest.raises(TypeError, match="floating"):
        layer.backward(np.ones(out.shape))


def test_reachable_after_import_ndpool() -> None:
    code = "import ndpool; assert ndpool.nn.MaxPool2d(2)"
    subprocess.run([sys.executable, "-c", code], check=True)
