"""Pool a Zarr-backed array larger than memory with Dask, and measure it.

A measurement, not a test. It

1. writes a ``--size-gib`` (default 8) float32 array of shape
   ``(N, C, 4096, 4096)`` to a local Zarr store, chunked ``(1, 4, 1024, 1024)``
   (16 MiB chunks), with a cheap deterministic pattern;
2. pools it with 2x2 max and 2x2 mean pooling through ``ndpool`` on Dask's
   threaded scheduler and on a ``dask.distributed`` LocalCluster of 2 worker
   processes with a 3 GiB memory limit each, storing the results to Zarr (so
   nothing is gathered in memory);
3. in the distributed max run, kills one worker process mid-compute and checks
   that the result still equals the threaded one (tasks are pure, so the
   scheduler's retry is safe);
4. pulls a gradient of ones back through each pooling (``ndpool.vjp``, lazy,
   threaded, stored to Zarr) and checks its sum: every window's 1 lands on
   its input cells;
5. reports throughput (GB/s of input) against in-memory NumPy pooling of one
   chunk, and the peak resident memory of each process.

Each configuration runs in its own subprocess so peak memory is its own.

    python benchmarks/dask_scale.py                 # 8 GiB, a few minutes
    python benchmarks/dask_scale.py --size-gib 1    # quick look
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

CHUNK = (1, 4, 1024, 1024)
SIDE = 4096


def _shape(size_gib: float) -> tuple[int, int, int, int]:
    planes = max(4, round(size_gib * 2**30 / (SIDE * SIDE * 4)))
    channels = 4
    return (max(1, planes // channels), channels, SIDE, SIDE)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pattern(block: np.ndarray, block_info: Any = None) -> np.ndarray:
    """Deterministic, compressible-but-not-trivial data for one chunk."""
    loc = block_info[None]["array-location"]
    n0, c0, h0, w0 = (s[0] for s in loc)
    shape = block.shape
    h = np.arange(h0, h0 + shape[2], dtype=np.float32)[:, None]
    w = np.arange(w0, w0 + shape[3], dtype=np.float32)[None, :]
    base = np.sin(h * 0.013) * np.cos(w * 0.007) * 100
    out = np.empty(shape, dtype=np.float32)
    for n in range(shape[0]):
        for c in range(shape[1]):
            seed = (n0 + n) * 1000 + c0 + c
            rng = np.random.default_rng(seed)
            noise = rng.integers(0, 8, size=shape[2:], dtype=np.int8)
            out[n, c] = base + noise + (n0 + n + c0 + c)
    return out


def make_store(path: Path, size_gib: float) -> tuple[int, ...]:
    import dask.array as da

    shape = _shape(size_gib)
    x = da.zeros(shape, chunks=CHUNK, dtype=np.float32)
    x = x.map_blocks(_pattern, dtype=np.float32)
    x.to_zarr(str(path), overwrite=True, compute=True)
    return shape


def _pool(x: Any, op: str) -> Any:
    import ndpool

    if op == "max":
        return ndpool.max_pool2d(x, 2)
    return ndpool.avg_pool2d(x, 2)


def run_threaded(src: str, dst: str, op: str) -> dict[str, Any]:
    import dask
    import dask.array as da

    x = da.from_zarr(src)
    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads", num_workers=2):
        _pool(x, op).to_zarr(dst, overwrite=True)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "bytes": x.nbytes, "peak_mib": _peak_mib()}


def run_gradient(src: str, dst: str, op: str) -> dict[str, Any]:
    """The pullback of a gradient of ones, computed chunk by chunk to Zarr."""
    import dask
    import dask.array as da

    import ndpool

    x = da.from_zarr(src)
    fn = ndpool.max_pool2d if op == "max" else ndpool.avg_pool2d
    t0 = time.perf_counter()
    out, pullback = ndpool.vjp(fn, x, 2)
    grad = pullback(da.ones(out.shape, chunks=out.chunks, dtype=np.float32))
    with dask.config.set(scheduler="threads", num_workers=2):
        grad.to_zarr(dst, overwrite=True)
    seconds = time.perf_counter() - t0
    with dask.config.set(scheduler="threads", num_workers=2):
        total = float(da.from_zarr(dst).sum(dtype=np.float64).compute())
    return {
        "seconds": seconds,
        "bytes": x.nbytes,
        "peak_mib": _peak_mib(),
        "sum_ok": total == math.prod(out.shape),  # one 1 per window, spread
    }


def run_read_only(src: str) -> dict[str, Any]:
    """The I/O floor: read and decompress every chunk, reduce it to a scalar."""
    import dask
    import dask.array as da

    x = da.from_zarr(src)
    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads", num_workers=2):
        x.max().compute()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "bytes": x.nbytes, "peak_mib": _peak_mib()}


def run_distributed(src: str, dst: str, op: str, kill: bool) -> dict[str, Any]:
    import dask.array as da
    from distributed import Client, LocalCluster, wait

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            memory_limit="3GiB",
            processes=True,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        x = da.from_zarr(src)
        t0 = time.perf_counter()
        fut = client.compute(_pool(x, op).to_zarr(dst, overwrite=True, compute=False))
        killed = None
        if kill:
            pids = client.run(os.getpid)
            time.sleep(max(1.0, 0.02 * x.nbytes / 2**30))  # let it get going
            victim = sorted(pids.items())[0]
            os.kill(victim[1], signal.SIGKILL)
            killed = victim[0]
        wait(fut)
        fut.result()
        seconds = time.perf_counter() - t0
        peaks = client.run(_peak_mib)
    return {
        "seconds": seconds,
        "bytes": x.nbytes,
        "peak_mib": max(peaks.values()) if peaks else float("nan"),
        "client_peak_mib": _peak_mib(),
        "killed_worker": killed,
    }


def run_numpy_chunk(op: str) -> dict[str, Any]:
    import ndpool

    chunk = _pattern(
        np.empty(CHUNK, np.float32), {None: {"array-location": [(0, 1)] * 4}}
    )
    fn = ndpool.max_pool2d if op == "max" else ndpool.avg_pool2d
    fn(chunk, 2)
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        fn(chunk, 2)
        times.append(time.perf_counter() - t0)
    return {
        "seconds": float(np.median(times)),
        "bytes": chunk.nbytes,
        "peak_mib": _peak_mib(),
    }


def compare(a: str, b: str) -> bool:
    import dask.array as da

    x, y = da.from_zarr(a), da.from_zarr(b)
    return bool(da.all(x == y).compute(scheduler="threads"))


def _child(args: argparse.Namespace) -> None:
    if args.child == "threaded":
        out = run_threaded(args.src, args.dst, args.op)
    elif args.child == "gradient":
        out = run_gradient(args.src, args.dst, args.op)
    elif args.child == "read":
        out = run_read_only(args.src)
    elif args.child == "distributed":
        out = run_distributed(args.src, args.dst, args.op, args.kill)
    else:
        out = run_numpy_chunk(args.op)
    print(json.dumps(out))


def _spawn(*extra: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, *extra], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        msg = f"child {extra} failed"
        raise RuntimeError(msg)
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-gib", type=float, default=8.0)
    parser.add_argument("--workdir", default=None, help="where the Zarr stores go")
    parser.add_argument("--keep", action="store_true", help="keep the stores")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--dst", help=argparse.SUPPRESS)
    parser.add_argument("--op", help=argparse.SUPPRESS)
    parser.add_argument("--kill", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    work = Path(args.workdir or tempfile.mkdtemp(prefix="ndpool-dask-", dir="."))
    work.mkdir(parents=True, exist_ok=True)
    src = work / "input.zarr"
    try:
        t0 = time.perf_counter()
        shape = make_store(src, args.size_gib)
        made = time.perf_counter() - t0
        gib = np.prod(shape) * 4 / 2**30
        print(f"input: {shape} float32 = {gib:.2f} GiB, chunks {CHUNK}")
        print(f"written in {made:.0f} s")
        rows = []
        floor = _spawn("--child", "read", "--src", str(src))
        floor_gbs = floor["bytes"] / floor["seconds"] / 1e9
        rows.append(
            f"| (none) | read + decompress only, threaded | {floor['seconds']:.1f} | "
            f"{floor_gbs:.2f} | | {floor['peak_mib']:.0f} |"
        )
        for op in ("max", "mean"):
            key = "max" if op == "max" else "avg"
            ref = str(work / f"{op}-threaded.zarr")
            base = _spawn("--child", "numpy", "--op", key)
            thr = _spawn(
                "--child", "threaded", "--src", str(src), "--dst", ref, "--op", key
            )
            dist_dst = str(work / f"{op}-distributed.zarr")
            kill = op == "max"
            extra = ("--kill",) if kill else ()
            dst = _spawn(
                "--child", "distributed", "--src", str(src), "--dst", dist_dst,
                "--op", key, *extra,
            )  # fmt: skip
            same = compare(ref, dist_dst)
            np_gbs = base["bytes"] / base["seconds"] / 1e9
            for name, res in (
                ("threaded (2 threads)", thr),
                ("distributed (2x3 GiB)", dst),
            ):
                gbs = res["bytes"] / res["seconds"] / 1e9
                rows.append(
                    f"| 2x2 {op} | {name} | {res['seconds']:.1f} | {gbs:.2f} | "
                    f"{gbs / np_gbs:.2f} | {res['peak_mib']:.0f} |"
                )
            rows.append(
                f"| 2x2 {op} | NumPy, one 16 MiB chunk in memory | "
                f"{base['seconds'] * 1e3:.1f} ms | {np_gbs:.2f} | 1.00 | "
                f"{base['peak_mib']:.0f} |"
            )
            grad = _spawn(
                "--child", "gradient", "--src", str(src), "--dst",
                str(work / f"{op}-gradient.zarr"), "--op", key,
            )  # fmt: skip
            gbs = grad["bytes"] / grad["seconds"] / 1e9
            rows.append(
                f"| 2x2 {op} | gradient (vjp), threaded (2 threads) | "
                f"{grad['seconds']:.1f} | {gbs:.2f} | {gbs / np_gbs:.2f} | "
                f"{grad['peak_mib']:.0f} |"
            )
            print(f"{op}: gradient sums to one per window: {grad['sum_ok']}")
            if not grad["sum_ok"]:
                raise SystemExit(1)
            note = f"killed {dst['killed_worker']} mid-compute; " if kill else ""
            print(f"{op}: distributed {note}result equals threaded: {same}")
            if not same:
                raise SystemExit(1)
        print()
        print(
            "| op | run | seconds | GB/s of input | vs NumPy chunk "
            "| peak RSS MiB (per process) |"
        )
        print("|---|---|---|---|---|---|")
        print("\n".join(rows))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    threading.excepthook = lambda a: None  # distributed's shutdown chatter
    main()
