"""Settings of ``ndpool._core`` that force each way the core can take.

Test inputs are small, so the core would take its small-input ways on
them; a test that must cover every way patches these in turn.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from ndpool import _core

#: the three ways of tracking the argmax (``_core._track``): one gather and
#: one arg-reduce (small inputs), the tap loop, and window by window
TRACKERS = {
    "gathered": {"_GATHER_WINDOWS": 1 << 62, "_GATHER_CELLS": 1 << 62},
    "tap-loop": {"_GATHER_CELLS": -1, "WINDOW_MAJOR": 10**9},
    "windows-first": {"_GATHER_CELLS": -1, "WINDOW_MAJOR": 0},
}


#: each way of a tap loop: phase copies of a strided last axis (from
#: ``_PHASE_BYTES`` of input), rank updates by one masked copy (up to
#: ``_SELECT_CELLS`` of output), and a large block's first pass read in
#: place, not through NumPy's ufunc buffers (``_direct``); the argmax ones
#: with the gather off
TAP_LOOPS = {
    "phases-select": {"_PHASE_BYTES": 0, "_SELECT_CELLS": 0, "_GATHER_CELLS": -1},
    "phases-two-calls": {
        "_PHASE_BYTES": 0,
        "_SELECT_CELLS": 1 << 62,
        "_GATHER_CELLS": -1,
    },
    "in-place-select": {
        "_PHASE_BYTES": 1 << 62,
        "_SELECT_CELLS": 0,
        "_GATHER_CELLS": -1,
    },
    "unbuffered": {"_DIRECT_BYTES": 0, "_DIRECT_RUN": 1},
}


#: the two ways of a pass over irregular windows (adaptive pooling): every
#: tap gathered and folded by one reduce (small inputs), and the tap loop.
#: Both fold the same cells in the same order: the same sums to the bit, and
#: the same max but for the sign of a zero (which zero NumPy's ``fmax``
#: keeps depends on the cell's place in its loop).
TAP_PASSES = {
    "gathered": {"_GATHER_PASS_CELLS": 1 << 62},
    "tap-loop": {"_GATHER_PASS_CELLS": -1},
}


@contextlib.contextmanager
def forced(settings: dict[str, int]) -> Iterator[None]:
    """``_core`` with ``settings`` patched in, restored on exit."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.items():
            patch.setattr(_core, name, value)
        yield
