"""Per-call cost on tiny inputs: ndpool against PyTorch, side by side.

A measurement, not a test. On a (2, 3, 14, 14) float32 input (1,176 cells)
the work is nothing and the time is overhead: argument checks, plans, and
one NumPy call per kernel tap, against PyTorch's compiled kernel. Both
libraries run 1 thread, in this one process, alternating case by case.

    python benchmarks/small_inputs.py

Prints a markdown table of median microseconds per call and their ratio.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import ndpool


def _median_us(fn: Callable[[], Any], budget_s: float = 0.4) -> float:
    """Median time per call over about ``budget_s`` of calls (at least 15)."""
    t0 = time.perf_counter()
    for _ in range(20):  # warm-up: plans, caches, the allocator
        fn()
    per_call = (time.perf_counter() - t0) / 20
    times = []
    for _ in range(max(15, min(3000, int(budget_s / per_call)))):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    return float(np.median(times)) / 1e3


def main() -> None:
    import torch
    import torch.nn.functional as tf

    ndpool.set_num_threads(1)
    torch.set_num_threads(1)
    x = np.random.default_rng(0).random((2, 3, 14, 14), dtype=np.float32)
    x3 = np.random.default_rng(1).random((1, 2, 8, 8, 8), dtype=np.float32)
    t, t3 = torch.from_numpy(x), torch.from_numpy(x3)
    cases: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        (
            "max_pool2d k2",
            lambda: ndpool.max_pool2d(x, 2),
            lambda: tf.max_pool2d(t, 2),
        ),
        (
            "max_pool2d k3 s2 p1, indices",
            lambda: ndpool.max_pool2d(x, 3, 2, 1, return_indices=True),
            lambda: tf.max_pool2d(t, 3, 2, 1, return_indices=True),
        ),
        (
            "avg_pool2d k2",
            lambda: ndpool.avg_pool2d(x, 2),
            lambda: tf.avg_pool2d(t, 2),
        ),
        (
            "avg_pool2d k3 s1 p1",
            lambda: ndpool.avg_pool2d(x, 3, 1, 1),
            lambda: tf.avg_pool2d(t, 3, 1, 1),
        ),
        (
            "lp_pool2d p2 k2",
            lambda: ndpool.lp_pool2d(x, 2, 2),
            lambda: tf.lp_pool2d(t, 2, 2),
        ),
        (
            "adaptive_avg_pool2d → 1",
            lambda: ndpool.adaptive_avg_pool2d(x, 1),
            lambda: tf.adaptive_avg_pool2d(t, 1),
        ),
        (
            "adaptive_avg_pool2d → 5",
            lambda: ndpool.adaptive_avg_pool2d(x, 5),
            lambda: tf.adaptive_avg_pool2d(t, 5),
        ),
        (
            "adaptive_max_pool2d → 7",
            lambda: ndpool.adaptive_max_pool2d(x, 7),
            lambda: tf.adaptive_max_pool2d(t, 7),
        ),
        (
            "max_pool3d k2 (1,2,8,8,8)",
            lambda: ndpool.max_pool3d(x3, 2),
            lambda: tf.max_pool3d(t3, 2),
        ),
    ]
    print("| case, (2,3,14,14) float32 | ndpool µs | torch µs | ratio |")
    print("|---|---|---|---|")
    for name, ours, theirs in cases:
        a, b = _median_us(ours), _median_us(theirs)
        print(f"| {name} | {a:.1f} | {b:.1f} | {a / b:.1f} |")
    print()
    ladder(tf)


def ladder(tf: Any) -> None:
    """Where ndpool overtakes: ratio ndpool / torch as the input grows."""
    import torch

    channels = (1, 4, 16, 64, 256)
    ops: list[tuple[str, Callable[[Any], Any], Callable[[Any], Any]]] = [
        (
            "max_pool2d k2",
            lambda a: ndpool.max_pool2d(a, 2),
            lambda a: tf.max_pool2d(a, 2),
        ),
        (
            "max_pool2d k3 s2 p1, indices",
            lambda a: ndpool.max_pool2d(a, 3, 2, 1, return_indices=True),
            lambda a: tf.max_pool2d(a, 3, 2, 1, return_indices=True),
        ),
        (
            "avg_pool2d k3 s1 p1",
            lambda a: ndpool.avg_pool2d(a, 3, 1, 1),
            lambda a: tf.avg_pool2d(a, 3, 1, 1),
        ),
    ]
    cells = [f"{c * 32 * 32 // 1024}K" for c in channels]
    print(
        "| ratio ndpool / torch, (1, C, 32, 32) float32, cells: | "
        + " | ".join(cells)
        + " |"
    )
    print("|---|" + "---|" * len(channels))
    for name, ours, theirs in ops:
        ratios = []
        for c in channels:
            a = np.random.default_rng(c).random((1, c, 32, 32), dtype=np.float32)
            t = torch.from_numpy(a)
            mine = _median_us(functools.partial(ours, a))
            ratios.append(mine / _median_us(functools.partial(theirs, t)))
        print(f"| {name} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")


if __name__ == "__main__":
    main()
