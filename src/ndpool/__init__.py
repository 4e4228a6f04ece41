"""ndpool: N-dimensional pooling for Python arrays, exact to PyTorch.

>>> import numpy as np, ndpool
>>> ndpool.max_pool2d(np.arange(1, 17).reshape(1, 4, 4), 2)
array([[[ 6,  8],
        [14, 16]]])
"""

from __future__ import annotations

from . import nn as nn  # reachable as torch.nn is after `import torch`
from ._threads import get_num_threads, set_num_threads
from .functional import (
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    adaptive_avg_pool3d,
    adaptive_max_pool1d,
    adaptive_max_pool2d,
    adaptive_max_pool3d,
    avg_pool1d,
    avg_pool2d,
    avg_pool3d,
    fractional_max_pool2d,
    fractional_max_pool3d,
    lp_pool1d,
    lp_pool2d,
    lp_pool3d,
    max_pool1d,
    max_pool2d,
    max_pool3d,
    max_unpool1d,
    max_unpool2d,
    max_unpool3d,
)
from .grad import vjp
from .pooling import global_avg_pool, global_lp_pool, global_max_pool, pool

__version__ = "0.1.0"

__all__ = [
    "__version__",
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
    "get_num_threads",
    "global_avg_pool",
    "global_lp_pool",
    "global_max_pool",
    "lp_pool1d",
    "lp_pool2d",
    "lp_pool3d",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "max_unpool1d",
    "max_unpool2d",
    "max_unpool3d",
    "pool",
    "set_num_threads",
    "vjp",
]
