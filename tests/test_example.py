"""The NumPy CNN example learns the digits with ndpool's layers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("sklearn")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits_cnn.py"


def test_digits_cnn_learns() -> None:
    spec = importlib.util.spec_from_file_location("digits_cnn", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(epochs=3, seed=0)
    assert result["test_accuracy"] > 0.8
    assert result["seconds"] < 30
