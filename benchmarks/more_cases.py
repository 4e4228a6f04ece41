"""Cases the issue's benchmark table leaves out: ndpool against PyTorch.

A measurement, not a test. ``compare.py`` times the eleven standard rows;
this script sweeps the rest of the API (1-d pooling, padding and ceil modes,
dilation, float64, Lp, adaptive, global and fractional pooling, gradients,
unpooling) on inputs of the same scale, to find the paths where ndpool is
slow. Every ndpool result is checked against PyTorch's first. Both
libraries run in this one process, in alternating turns of about 0.1 s
(after 20 ms of untimed calls each turn), at 1 and then 2 threads
(``ndpool.set_num_threads``, ``torch.set_num_threads``).

    python benchmarks/more_cases.py [--quick]

Prints a markdown table of median milliseconds and ratios ndpool / torch.
``--quick``: a tenth of the input sizes (a smoke run, not a measurement).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import ndpool

Case = tuple[str, Callable[[], Any], Callable[[], Any]]


def _vjp(fn: Callable[..., Any], x: np.ndarray, *args: Any) -> Callable[[], Any]:
    def run() -> Any:
        out, pullback = ndpool.vjp(fn, x, *args)
        return pullback(np.ones_like(out))

    return run


def _autograd(fn: Callable[..., Any], x: Any, *args: Any) -> Callable[[], Any]:
    def run() -> Any:
        x.grad = None
        out = fn(x, *args)
        out.backward(out.new_ones(out.shape))
        return x.grad

    return run


def cases(scale: int) -> list[Case]:
    """(name, ndpool call, torch call), inputs divided by ``scale``."""
    import torch
    import torch.nn.functional as tf

    rng = np.random.default_rng(0)

    def normal(*shape: int, dtype: Any = np.float32) -> np.ndarray:
        shape = (max(1, shape[0] // scale), *shape[1:])
        return rng.standard_normal(shape).astype(dtype)

    seq = normal(64, 128, 1024)  # 1-d: (N, C, L)
    img = normal(16, 64, 112, 112)
    head = normal(32, 512, 14, 14)  # a ResNet head
    head50 = normal(64, 2048, 7, 7)  # a ResNet-50 head: planes of 49 cells
    vol = normal(2, 16, 32, 64, 64)
    img64 = img.astype(np.float64)
    ts, ti, th, tv, ti64, th50 = map(
        torch.from_numpy, (seq, img, head, vol, img64, head50)
    )
    n, c = img.shape[:2]
    u = rng.random((n, c, 2)).astype(np.float32)
    tu = torch.from_numpy(u)
    _, where = tf.max_pool2d(ti, 2, return_indices=True)
    pooled, where_np = tf.max_pool2d(ti, 2).numpy(), where.numpy()
    tpooled = torch.from_numpy(pooled)
    grad_x = ti.clone().requires_grad_(True)
    grad_abs = ti.abs().add(0.1).requires_grad_(True)
    grad_head50 = th50.clone().requires_grad_(True)
    out: list[Case] = []

    def add(name: str, ours: Callable[[], Any], theirs: Callable[[], Any]) -> None:
        out.append((name, ours, theirs))

    def same(name: str, fn: str, pair: tuple[Any, Any], *args: Any, **kw: Any) -> None:
        """A case calling the function of the same name in both libraries."""
        ours, theirs = getattr(ndpool, fn), getattr(tf, fn)
        x, tx = pair
        add(name, lambda: ours(x, *args, **kw), lambda: theirs(tx, *args, **kw))

    s1, i2, h2, v3, f64 = (seq, ts), (img, ti), (head, th), (vol, tv), (img64, ti64)
    h50 = (head50, th50)
    same("max_pool1d k2 (64,128,1024)", "max_pool1d", s1, 2)
    same("max_pool1d k4 (64,128,1024)", "max_pool1d", s1, 4)
    same("max_pool1d k3 s1 p1 (64,128,1024)", "max_pool1d", s1, 3, 1, 1)
    same("max_pool1d k3 s2 p1, indices", "max_pool1d", s1, 3, 2, 1, return_indices=True)
    same("avg_pool1d k3 s1 p1", "avg_pool1d", s1, 3, 1, 1)
    same("max_pool2d k3 s1 p1 (16,64,112,112)", "max_pool2d", i2, 3, 1, 1)
    same("max_pool2d k3 s2 dilation 2", "max_pool2d", i2, 3, 2, 0, 2)
    same("max_pool2d k3 s2 p1 float64", "max_pool2d", f64, 3, 2, 1)
    same(
        "avg_pool2d k3 s2 p1, count_include_pad=False",
        "avg_pool2d",
        i2,
        3,
        2,
        1,
        count_include_pad=False,
    )
    same("avg_pool2d k3 s2, ceil_mode", "avg_pool2d", i2, 3, 2, ceil_mode=True)
    same("lp_pool2d p2 k2", "lp_pool2d", i2, 2, 2)
    # an even p: sums of mixed signs would cancel (SPEC's rtol then fails)
    same("lp_pool2d p4 k3 s2 (negative cells)", "lp_pool2d", i2, 4, 3, 2)
    same("adaptive_max_pool2d (32,512,14,14) → 1", "adaptive_max_pool2d", h2, 1)
    same("adaptive_max_pool2d → 1, indices", "adaptive_max_pool2d", h2, 1, True)
    same("adaptive_max_pool2d (64,2048,7,7) → 1", "adaptive_max_pool2d", h50, 1)
    same(
        "adaptive_max_pool2d (64,2048,7,7) → 1, indices",
        "adaptive_max_pool2d",
        h50,
        1,
        True,
    )
    same("adaptive_avg_pool2d (64,2048,7,7) → 1", "adaptive_avg_pool2d", h50, 1)
    nhwc = np.ascontiguousarray(head50.transpose(0, 2, 3, 1))
    t_nhwc = th50.contiguous(memory_format=torch.channels_last)
    add(
        "adaptive_avg_pool2d (64,2048,7,7) → 1, channels last",
        lambda: ndpool.adaptive_avg_pool2d(nhwc, 1, data_format="channels_last"),
        lambda: tf.adaptive_avg_pool2d(t_nhwc, 1).permute(0, 2, 3, 1),
    )
    same("lp_pool2d p2 k7 (64,2048,7,7)", "lp_pool2d", h50, 2, 7)
    same("adaptive_avg_pool2d (32,512,14,14) → 3", "adaptive_avg_pool2d", h2, 3)
    same("adaptive_avg_pool2d (16,64,112,112) → 5", "adaptive_avg_pool2d", i2, 5)
    same("adaptive_avg_pool2d (16,64,112,112) → 20", "adaptive_avg_pool2d", i2, 20)
    same("adaptive_max_pool2d (16,64,112,112) → 5", "adaptive_max_pool2d", i2, 5)
    add(
        "fractional_max_pool2d k2, ratio 0.7",
        lambda: ndpool.fractional_max_pool2d(
            img, 2, output_ratio=0.7, _random_samples=u
        ),
        lambda: tf.fractional_max_pool2d(
            ti, 2, output_ratio=(0.7, 0.7), _random_samples=tu
        ),
    )
    add(
        "fractional_max_pool2d k2, ratio 0.7, indices",
        lambda: ndpool.fractional_max_pool2d(
            img, 2, output_ratio=0.7, return_indices=True, _random_samples=u
        ),
        lambda: tf.fractional_max_pool2d(
            ti, 2, output_ratio=(0.7, 0.7), return_indices=True, _random_samples=tu
        ),
    )
    same("adaptive_avg_pool3d (2,16,32,64,64) → 3", "adaptive_avg_pool3d", v3, 3)
    same("avg_pool3d k3 s1 p1 (2,16,32,64,64)", "avg_pool3d", v3, 3, 1, 1)
    add(
        "max_unpool2d k2",
        lambda: ndpool.max_unpool2d(pooled, where_np, 2),
        lambda: tf.max_unpool2d(tpooled, where, 2),
    )
    add(
        "gradient of avg_pool2d k3 s1 p1",
        _vjp(ndpool.avg_pool2d, img, 3, 1, 1),
        _autograd(tf.avg_pool2d, grad_x, 3, 1, 1),
    )
    add(
        "gradient of adaptive_max_pool2d (64,2048,7,7) → 1",
        _vjp(ndpool.adaptive_max_pool2d, head50, 1),
        _autograd(tf.adaptive_max_pool2d, grad_head50, 1),
    )
    add(
        "gradient of lp_pool2d p2 k2",
        _vjp(ndpool.lp_pool2d, np.abs(img) + np.float32(0.1), 2, 2),
        _autograd(tf.lp_pool2d, grad_abs, 2, 2),
    )
    return out


def check(name: str, ours: Any, theirs: Any) -> None:
    """Raise unless ndpool's result(s) match PyTorch's: exactly for integer
    results (indices), to float tolerance otherwise."""
    mine = ours if isinstance(ours, tuple) else (ours,)
    want = theirs if isinstance(theirs, tuple) else (theirs,)
    for a, b in zip(mine, want, strict=True):
        b = b.detach().numpy()
        if b.dtype.kind in "iu":
            ok = np.array_equal(a, b)
        else:
            ok = np.allclose(a, b, rtol=1e-4, atol=1e-5, equal_nan=True)
        if not ok:
            msg = f"{name}: ndpool's result differs from PyTorch's"
            raise AssertionError(msg)


#: each library runs in turns: calls for ``SETTLE_S`` seconds untimed, then
#: calls for ``TURN_S`` seconds timed. PyTorch's OpenMP workers spin for
#: some 10 ms after each call, holding the second CPU, and ndpool's pool
#: threads sleep between calls; a call timed right after the other
#: library's (call by call in turn) measured ndpool's 2-thread
#: ``max_pool1d`` at 4.9-5.2 ms against 2.6-2.8 in a turn of its own.
SETTLE_S = 0.02
TURN_S = 0.1
TURNS = 4


def _turn(fn: Callable[[], Any], times: list[float]) -> None:
    """One turn of ``fn``: at least one untimed call and ``SETTLE_S``
    seconds of them, then at least one timed call and ``TURN_S`` seconds."""
    start = time.perf_counter()
    fn()
    while time.perf_counter() - start < SETTLE_S:
        fn()
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
        if time.perf_counter() - start >= TURN_S:
            return


def median_ms(
    ours: Callable[[], Any], theirs: Callable[[], Any]
) -> tuple[float, float]:
    """Median ms of each, from ``TURNS`` turns each, taken in alternation."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(TURNS):
        _turn(ours, a)
        _turn(theirs, b)
    return float(np.median(a)) / 1e6, float(np.median(b)) / 1e6


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    parser.add_argument(
        "--only", default="", help="run only the cases whose name holds this text"
    )
    args = parser.parse_args()
    rows = []
    for name, ours, theirs in cases(10 if args.quick else 1):
        if args.only not in name:
            continue
        check(name, ours(), theirs())
        times = []
        for threads in (1, 2):
            ndpool.set_num_threads(threads)
            torch.set_num_threads(threads)
            times.append(median_ms(ours, theirs))
        rows.append((name, times))
    head = ["torch 1t", "ndpool 1t", "ratio 1t", "torch 2t", "ndpool 2t", "ratio 2t"]
    print("| case (float32 unless said; ms) | " + " | ".join(head) + " |")
    print("|---|---|---|---|---|---|---|")
    for name, ((a1, b1), (a2, b2)) in rows:
        print(
            f"| {name} | {b1:.2f} | {a1:.2f} | {a1 / b1:.2f} "
            f"| {b2:.2f} | {a2:.2f} | {a2 / b2:.2f} |"
        )


if __name__ == "__main__":
    main()
