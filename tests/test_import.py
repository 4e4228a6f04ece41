"""``import ndpool`` stays light: NumPy only, no optional backend loaded."""

import subprocess
import sys

HEAVY = ("torch", "dask", "distributed", "PIL", "matplotlib", "array_api_compat", "jax")


def test_import_loads_no_optional_dependency() -> None:
    code = (
        "import sys, ndpool, ndpool.nn, ndpool.functional, ndpool.grad\n"
        f"heavy = {HEAVY!r}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
