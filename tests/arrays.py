"""Comparing results of any array library with NumPy's, for the backend tests."""

from __future__ import annotations

from typing import Any

import numpy as np


def host(a: Any) -> np.ndarray:
    """``a`` as a NumPy array, from torch, CuPy or any Array-API library."""
    if type(a).__module__.startswith("torch"):
        return a.detach().cpu().numpy()  # type: ignore[no-any-return]
    if type(a).__module__.startswith("cupy"):
        return a.get()  # type: ignore[no-any-return]
    if type(a).__module__.startswith("array_api_strict"):
        import array_api_strict as xps

        a = a.to_device(xps.Device("CPU_DEVICE"))  # NumPy reads that one only
    return np.asarray(a)


def same(got: Any, want: Any, like: Any, exact: bool, rtol: float, atol: float) -> None:
    """Same kind of array as ``like``, and NumPy's dtype, shape and values:
    ``exact`` to the bit (NaN where NaN), else within ``rtol``/``atol``."""
    got_t = got if isinstance(got, tuple) else (got,)
    want_t = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got_t, want_t, strict=True):
        assert type(g) is type(like), f"{type(g)} is not {type(like)}"
        if hasattr(like, "device"):  # the result stays on the input's device
            assert g.device == like.device, f"{g.device} is not {like.device}"
        h = host(g)
        assert h.dtype == w.dtype
        assert h.shape == w.shape
        if exact:
            np.testing.assert_array_equal(h, w)
        else:
            np.testing.assert_allclose(h, w, rtol=rtol, atol=atol, equal_nan=True)
