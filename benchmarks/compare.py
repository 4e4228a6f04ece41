"""ndpool against PyTorch's CPU pooling, side by side (issue 7).

Run from the repository root::

    python benchmarks/compare.py                    # every row, full repeats
    python benchmarks/compare.py --rows S1,S5 --repeats 3 --no-write

Every library runs in its own subprocess (one per library and row, so each
peak-memory figure belongs to one row), rows are measured one after another
so the ratios of a row are taken close together in time. Each timing is a
warm-up followed by the median of ``--repeats`` runs (and of a quarter of
a second of runs at least, for the sub-millisecond rows). Before any timing, a
separate check process runs every ndpool row at 1 and 2 threads and compares
it with torch (bit-exact for max/indices/gradients, rtol 1e-5 for averages);
a row that disagrees is reported as WRONG and not timed.

Columns: torch and ndpool at 1 and 2 threads, their ratios (ndpool / torch,
same thread count) against the issue's targets, scikit-image
``block_reduce`` where it applies (non-overlapping windows), NumPy
``sliding_window_view(...).max()`` as the naive baseline, and the memory
bandwidth floor: one read of the input plus one write of the output,
measured as half a NumPy copy of each size (single thread).

Writes the table to ``benchmarks/results.md`` and a bar chart of the ratios
to ``benchmarks/ratios.png`` (unless ``--no-write``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROWS = ["S1", "S2", "S3", "S4", "S5", "S6a", "S6b", "S7", "S8", "S9", "S10"]
TITLES = {
    "S1": "max_pool2d k2 s2 (32,64,112,112)",
    "S2": "max_pool2d k3 s2 p1 (ResNet stem)",
    "S3": "avg_pool2d k2 s2 (32,64,112,112)",
    "S4": "avg_pool2d k3 s1 p1 (16,64,56,56)",
    "S5": "S2 + return_indices",
    "S6a": "adaptive_avg_pool2d (32,512,14,14)→7",
    "S6b": "adaptive_avg_pool2d (32,512,14,14)→1",
    "S7": "max_pool3d k2 s2 (4,32,32,64,64)",
    "S8": "max k2 s2 channels-last",
    "S9": "gradient of S2",
    "S10": "uint8 image (1,3,4000,6000) max k2",
}
TARGETS = {
    "S1": 0.35,
    "S2": 0.35,
    "S7": 0.35,
    "S10": 0.35,
    "S3": 0.5,
    "S4": 0.5,
    "S6a": 0.5,
    "S8": 0.5,
    "S5": 0.6,
    "S9": 0.6,
    "S6b": 1.0,
}
BIG = (32, 64, 112, 112)


# --------------------------------------------------------------------------
# inputs (every process builds the same ones from the same seed)


def make_input(row: str) -> Any:
    import numpy as np

    rng = np.random.default_rng(7)
    if row in ("S1", "S2", "S3", "S5", "S9"):
        return rng.standard_normal(BIG, dtype=np.float32)
    if row == "S8":  # stored NHWC; the logical NCHW tensor is its transpose
        return rng.standard_normal((32, 112, 112, 64), dtype=np.float32)
    if row == "S4":
        return rng.standard_normal((16, 64, 56, 56), dtype=np.float32)
    if row in ("S6a", "S6b"):
        return rng.standard_normal((32, 512, 14, 14), dtype=np.float32)
    if row == "S7":
        return rng.standard_normal((4, 32, 32, 64, 64), dtype=np.float32)
    if row == "S10":
        return rng.integers(0, 256, size=(1, 3, 4000, 6000), dtype=np.uint8)
    msg = f"unknown row {row!r}"
    raise ValueError(msg)


def grad_out(x: Any) -> Any:
    """The upstream gradient of S9 (the shape of S2's output)."""
    import numpy as np

    n, c, h, w = x.shape
    shape = (n, c, (h - 1) // 2 + 1, (w - 1) // 2 + 1)
    return np.random.default_rng(8).standard_normal(shape, dtype=np.float32)


# --------------------------------------------------------------------------
# one callable per (library, row); None where the library does not apply


def torch_fn(row: str, x: Any) -> Callable[[], Any]:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(x)
    if row == "S8":
        t = t.permute(0, 3, 1, 2)  # NCHW view with channels_last strides
        assert t.is_contiguous(memory_format=torch.channels_last)
    if row == "S9":
        g = torch.from_numpy(grad_out(x))
        t = t.clone().requires_grad_(True)

        def grad() -> Any:
            t.grad = None
            F.max_pool2d(t, 3, 2, 1).backward(g)
            return t.grad

        return grad
    table: dict[str, Callable[[], Any]] = {
        "S1": lambda: F.max_pool2d(t, 2, 2),
        "S2": lambda: F.max_pool2d(t, 3, 2, 1),
        "S3": lambda: F.avg_pool2d(t, 2, 2),
        "S4": lambda: F.avg_pool2d(t, 3, 1, 1),
        "S5": lambda: F.max_pool2d(t, 3, 2, 1, return_indices=True),
        "S6a": lambda: F.adaptive_avg_pool2d(t, 7),
        "S6b": lambda: F.adaptive_avg_pool2d(t, 1),
        "S7": lambda: F.max_pool3d(t, 2, 2),
        "S8": lambda: F.max_pool2d(t, 2, 2),
        "S10": lambda: F.max_pool2d(t, 2, 2),
    }
    return table[row]


def ndpool_fn(row: str, x: Any) -> Callable[[], Any] | None:
    import ndpool

    if row == "S9":
        vjp = getattr(ndpool, "vjp", None)
        if vjp is None:
            return None
        g = grad_out(x)

        def grad() -> Any:
            _, pullback = vjp(ndpool.max_pool2d, x, 3, 2, 1)
            return pullback(g)

        return grad
    table: dict[str, Callable[[], Any]] = {
        "S1": lambda: ndpool.max_pool2d(x, 2, 2),
        "S2": lambda: ndpool.max_pool2d(x, 3, 2, 1),
        "S3": lambda: ndpool.avg_pool2d(x, 2, 2),
        "S4": lambda: ndpool.avg_pool2d(x, 3, 1, 1),
        "S5": lambda: ndpool.max_pool2d(x, 3, 2, 1, return_indices=True),
        "S6a": lambda: ndpool.adaptive_avg_pool2d(x, 7),
        "S6b": lambda: ndpool.adaptive_avg_pool2d(x, 1),
        "S7": lambda: ndpool.max_pool3d(x, 2, 2),
        "S8": lambda: ndpool.max_pool2d(x, 2, 2, data_format="channels_last"),
        "S10": lambda: ndpool.max_pool2d(x, 2, 2),
    }
    return table[row]


def skimage_fn(row: str, x: Any) -> Callable[[], Any] | None:
    import numpy as np

    try:
        from skimage.measure import block_reduce
    except ImportError:
        return None
    blocks: dict[str, tuple[tuple[int, ...], Any]] = {
        "S1": ((1, 1, 2, 2), np.max),
        "S3": ((1, 1, 2, 2), np.mean),
        "S6a": ((1, 1, 2, 2), np.mean),
        "S6b": ((1, 1, 14, 14), np.mean),
        "S7": ((1, 1, 2, 2, 2), np.max),
        "S8": ((1, 2, 2, 1), np.max),
        "S10": ((1, 1, 2, 2), np.max),
    }
    if row not in blocks:
        return None  # overlapping or padded windows, indices, gradients
    size, func = blocks[row]
    return lambda: block_reduce(x, size, func)


def naive_fn(row: str, x: Any) -> Callable[[], Any] | None:
    """NumPy ``sliding_window_view(...).max()``: the obvious one-liner."""
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view as swv

    def win(a: Any, k: int, s: int, axes: tuple[int, ...], op: str) -> Any:
        v = swv(a, (k,) * len(axes), axis=axes)
        index = [slice(None)] * a.ndim
        for ax in axes:
            index[ax] = slice(None, None, s)
        v = v[tuple(index)]
        red = tuple(range(-len(axes), 0))
        return v.max(axis=red) if op == "max" else v.mean(axis=red)

    hw = (2, 3)

    def padded(fill: float) -> Any:
        return np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=fill)

    table: dict[str, Callable[[], Any]] = {
        "S1": lambda: win(x, 2, 2, hw, "max"),
        "S2": lambda: win(padded(-np.inf), 3, 2, hw, "max"),
        "S3": lambda: win(x, 2, 2, hw, "mean"),
        "S4": lambda: win(padded(0.0), 3, 1, hw, "mean"),
        "S6a": lambda: win(x, 2, 2, hw, "mean"),
        "S6b": lambda: x.mean(axis=hw, keepdims=True),
        "S7": lambda: win(x, 2, 2, (2, 3, 4), "max"),
        "S8": lambda: win(x, 2, 2, (1, 2), "max"),
        "S10": lambda: win(x, 2, 2, hw, "max"),
    }
    return table.get(row)


OUT_SIZE = {  # elements of the output, for the bandwidth floor
    "S1": 32 * 64 * 56 * 56,
    "S2": 32 * 64 * 56 * 56,
    "S3": 32 * 64 * 56 * 56,
    "S4": 16 * 64 * 56 * 56,
    "S5": 32 * 64 * 56 * 56 * 3,  # float32 values + int64 indices
    "S6a": 32 * 512 * 7 * 7,
    "S6b": 32 * 512,
    "S7": 4 * 32 * 16 * 32 * 32,
    "S8": 32 * 64 * 56 * 56,
    "S9": 32 * 64 * 112 * 112,  # the gradient has the input's shape
    "S10": 3 * 2000 * 3000,
}


def floor_fn(row: str, x: Any) -> Callable[[], Any]:
    """Half a copy of an input-sized plus half of an output-sized buffer."""
    import numpy as np

    src_in, dst_in = x.reshape(-1), np.empty(x.size, x.dtype)
    n_out = OUT_SIZE[row]
    src_out, dst_out = np.ones(n_out, x.dtype), np.empty(n_out, x.dtype)

    def run() -> None:
        np.copyto(dst_in, src_in)
        np.copyto(dst_out, src_out)

    return run


# --------------------------------------------------------------------------
# worker side


#: a sub-millisecond row runs this many seconds of calls at least (warm-up,
#: then timing): nine calls of 0.2 ms measure a CPU just woken from idle
WARMUP_S = 0.05
TIMING_S = 0.25


def timed(fn: Callable[[], Any], warmup: int, repeats: int) -> float:
    """Median ms of at least ``repeats`` calls (and ``TIMING_S`` seconds of
    them), after at least ``warmup`` calls (and ``WARMUP_S`` seconds)."""
    start, done = time.perf_counter(), 0
    while done < warmup or (time.perf_counter() - start < WARMUP_S and done < 1000):
        fn()
        done += 1
    times: list[float] = []
    while len(times) < repeats or (sum(times) < TIMING_S and len(times) < 2000):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def set_threads(lib: str, n: int) -> None:
    if lib == "torch":
        import torch

        torch.set_num_threads(n)
    elif lib == "ndpool":
        import ndpool

        setter = getattr(ndpool, "set_num_threads", None)
        if setter is not None:
            setter(n)


def worker(lib: str, row: str, threads: list[int], warmup: int, repeats: int) -> dict:
    x = make_input(row)
    if lib == "torch":
        import torch  # noqa: F401  (imported before the base memory is read)
    elif lib == "ndpool":
        import ndpool  # noqa: F401
    result: dict[str, Any] = {"base_mb": maxrss_mb(), "ms": {}}
    if lib in ("torch", "ndpool"):
        fn = (torch_fn if lib == "torch" else ndpool_fn)(row, x)
        for n in threads:
            set_threads(lib, n)
            result["ms"][str(n)] = None if fn is None else timed(fn, warmup, repeats)
    else:
        make = {"skimage": skimage_fn, "naive": naive_fn, "floor": floor_fn}[lib]
        f = make(row, x)
        result["ms"]["1"] = None if f is None else timed(f, warmup, repeats)
    result["peak_mb"] = maxrss_mb()
    return result


def check(row: str) -> dict:
    """ndpool at 1 and 2 threads against torch, before anything is timed."""
    import numpy as np

    x = make_input(row)
    want = torch_fn(row, x)()
    want_np = [
        w.detach().numpy() for w in (want if isinstance(want, tuple) else [want])
    ]
    if row == "S8":
        want_np = [np.transpose(w, (0, 2, 3, 1)) for w in want_np]
    fn = ndpool_fn(row, x)
    if fn is None:
        return {"ok": None, "why": "not available"}
    for n in (1, 2):
        set_threads("ndpool", n)
        got = fn()
        got_list = list(got) if isinstance(got, tuple) else [got]
        for g, w in zip(got_list, want_np, strict=True):
            # sums (averages, and the gradient's scatter-add) round in their
            # own order: compared within float32 tolerance
            exact = row not in ("S3", "S4", "S6a", "S6b", "S9")
            same = g.shape == w.shape and g.dtype == w.dtype
            if same:
                same = (
                    np.array_equal(g, w)
                    if exact
                    else np.allclose(g, w, rtol=1e-5, atol=1e-6)
                )
            if not same:
                return {"ok": False, "why": f"differs from torch at {n} threads"}
    return {"ok": True}


def import_time(module: str, runs: int = 5) -> float:
    code = (
        "import time; t = time.perf_counter(); import "
        f"{module}; print(time.perf_counter() - t)"
    )
    times = []
    for _ in range(runs + 1):  # the first run warms the disk cache
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        times.append(float(out.stdout))
    return statistics.median(times[1:])


# --------------------------------------------------------------------------
# driver side


def spawn(args: list[str]) -> dict:
    env = dict(os.environ)
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        return {"error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt(v: float | None, digits: int = 1) -> str:
    """Milliseconds to ``digits`` decimals; below 1 ms, to 3 (S6b is 0.2 ms)."""
    if v is None:
        return "—"
    return f"{v:.{3 if digits and abs(v) < 1 else digits}f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a / b


def render(res: dict, rows: list[str], meta: dict) -> str:
    head = (
        "| row | case | torch 1t | torch 2t | ndpool 1t | ndpool 2t | "
        "ratio 1t | ratio 2t | target | skimage | naive | floor |"
    )
    lines = [head, "|" + "---|" * 12]
    for row in rows:
        r = res[row]
        t1, t2 = r["torch"].get("1"), r["torch"].get("2")
        n1, n2 = r["ndpool"].get("1"), r["ndpool"].get("2")
        r1, r2 = ratio(n1, t1), ratio(n2, t2)
        tgt = TARGETS[row]

        def mark(v: float | None, tgt: float = tgt) -> str:
            if v is None:
                return "—"
            return f"{v:.2f}" + ("" if v <= tgt else " ✗")

        if r["check"].get("ok") is False:
            n1 = n2 = None
            rr = "WRONG"
            r1s = r2s = rr
        else:
            r1s, r2s = mark(r1), mark(r2)
        lines.append(
            f"| {row} | {TITLES[row]} | {fmt(t1)} | {fmt(t2)} | {fmt(n1)} | "
            f"{fmt(n2)} | {r1s} | {r2s} | ≤ {tgt:g} | {fmt(r['skimage'])} | "
            f"{fmt(r['naive'])} | {fmt(r['floor'])} |"
        )
    lines += [
        "",
        "Milliseconds, median; ratio = ndpool / torch at the same thread count "
        "(✗: misses the target). skimage = `block_reduce` (1 thread), naive = "
        "`sliding_window_view(...).max()/.mean()` (1 thread), floor = one read "
        "of the input + one write of the output (NumPy copies, 1 thread).",
        "",
        "| row | torch peak MB | ndpool peak MB | ndpool extra MB | output MB |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        r = res[row]
        out_mb = r["out_mb"]
        lines.append(
            f"| {row} | {fmt(r['torch_peak'], 0)} | {fmt(r['ndpool_peak'], 0)} | "
            f"{fmt(r['ndpool_extra'], 0)} | {out_mb:.1f} |"
        )
    lines += [
        "",
        "Peak = `ru_maxrss` of the row's process; extra = peak minus the "
        "process's footprint once the input exists (the S2 budget is the output "
        "plus one output-sized temporary, i.e. 2 x output MB).",
        "",
        f"`import ndpool`: {meta['import_ndpool'] * 1e3:.0f} ms, "
        f"`import torch`: {meta['import_torch'] * 1e3:.0f} ms (median of 5, "
        "warm disk).",
        "",
        f"{meta['machine']}; warm-up {meta['warmup']} calls, median of "
        f"{meta['repeats']} repeats (both at least {WARMUP_S} s and {TIMING_S} s "
        "of calls).",
    ]
    return "\n".join(lines) + "\n"


def plot(res: dict, rows: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    r1 = [ratio(res[r]["ndpool"].get("1"), res[r]["torch"].get("1")) for r in rows]
    r2 = [ratio(res[r]["ndpool"].get("2"), res[r]["torch"].get("2")) for r in rows]
    pos = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.bar(pos - 0.2, [v or 0 for v in r1], 0.4, label="1 thread")
    ax.bar(pos + 0.2, [v or 0 for v in r2], 0.4, label="2 threads")
    for i, row in enumerate(rows):
        ax.hlines(TARGETS[row], i - 0.45, i + 0.45, colors="k", linestyles="--")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xticks(pos, rows)
    ax.set_ylabel("ndpool time / torch time")
    ax.set_title("ndpool vs torch CPU pooling (lower is better; dashes: target)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default=",".join(ROWS), help="e.g. S1,S5,S9")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--skip-baselines", action="store_true", help="no skimage/naive")
    ap.add_argument("--output", default=str(HERE / "results.md"))
    ap.add_argument("--plot", default=str(HERE / "ratios.png"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    rows = args.rows.split(",")
    for row in rows:
        if row not in ROWS:
            ap.error(f"--rows: unknown row {row!r}; choose from {ROWS}")
    threads = [int(t) for t in args.threads.split(",")]

    if args.check:
        print(json.dumps(check(rows[0])))
        return 0
    if args.worker:
        out = worker(args.worker, rows[0], threads, args.warmup, args.repeats)
        print(json.dumps(out))
        return 0

    common = ["--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    res: dict[str, Any] = {}
    for row in rows:
        r: dict[str, Any] = {"check": spawn(["--check", "--rows", row])}
        print(f"{row}: check {r['check']}", file=sys.stderr)
        libs = ["torch", "ndpool", "floor"]
        if not args.skip_baselines:
            libs += ["skimage", "naive"]
        for lib in libs:
            if lib == "ndpool" and r["check"].get("ok") is False:
                r[lib] = {"ms": {}}
                continue
            r[lib] = spawn(
                ["--worker", lib, "--rows", row, "--threads", args.threads, *common]
            )
        for lib in ("floor", "skimage", "naive"):
            r[lib] = r.get(lib, {}).get("ms", {}).get("1")
        r["torch_peak"] = r["torch"].get("peak_mb")
        r["ndpool_peak"] = r["ndpool"].get("peak_mb")
        base = r["ndpool"].get("base_mb")
        r["ndpool_extra"] = (
            None
            if base is None or r["ndpool_peak"] is None
            else r["ndpool_peak"] - base
        )
        r["out_mb"] = OUT_SIZE[row] * (1 if row == "S10" else 4) / 2**20
        r["torch"], r["ndpool"] = r["torch"].get("ms", {}), r["ndpool"].get("ms", {})
        print(f"{row}: {r}", file=sys.stderr)
        res[row] = r
    meta = {
        "import_ndpool": import_time("ndpool"),
        "import_torch": import_time("torch"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "warmup": args.warmup,
        "repeats": args.repeats,
    }
    table = render(res, rows, meta)
    print(table)
    if not args.no_write:
        Path(args.output).write_text(table)
        plot(res, rows, Path(args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
