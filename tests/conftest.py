"""Shared test set-up: hypothesis profiles and the ``reference`` import path.

Profiles (select with ``HYPOTHESIS_PROFILE=<name>``):

- ``ci`` (default): no deadline, derandomised, no example database, so a run
  is reproducible and writes nothing.
- ``dev``: fewer examples, for a quick loop while editing.
- ``thorough``: ten times the examples of ``ci``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

# ``--import-mode=importlib`` does not put tests/ on sys.path; the naive-loop
# reference lives there.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile(
    "ci", max_examples=100, derandomize=True, database=None, **_COMMON
)
settings.register_profile("dev", max_examples=20, **_COMMON)
settings.register_profile("thorough", max_examples=1000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
