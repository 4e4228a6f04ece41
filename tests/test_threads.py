"""Thread count: the API, the environment variable, and results that do not
depend on it (every op, with uneven splits of the batch)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import ndpool
import ndpool.functional as F
from ndpool import _core, _threads

Call = Callable[[np.ndarray], Any]


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of a few KiB, so small test inputs are split and threaded."""
    monkeypatch.setattr(_core, "BLOCK_BYTES", 4096)


def _x(shape: tuple[int, ...], dtype: Any = np.float32, nan: float = 0.0) -> Any:
    rng = np.random.default_rng(3)
    x = rng.integers(-4, 4, size=shape).astype(dtype)  # many ties
    if nan:
        x[rng.random(shape) < nan] = np.nan
    return x


def _samples(n: int, c: int, nd: int, dtype: Any = np.float32) -> Any:
    return np.random.default_rng(4).random((n, c, nd)).astype(dtype)


CALLS: dict[str, Call] = {
    "max": lambda x: F.max_pool2d(x, 3, 2, 1),
    "max_idx": lambda x: F.max_pool2d(x, 3, 2, 1, return_indices=True),
    "max_dil_ceil": lambda x: F.max_pool2d(x, 2, 2, 1, 2, True, True),
    "min_omit": lambda x: ndpool.pool(
        x, (2, 3), op="min", nan_policy="omit", return_indices=True
    ),
    "max_omit": lambda x: F.max_pool2d(x, 2, nan_policy="omit"),
    "avg": lambda x: F.avg_pool2d(x, 3, 1, 1),
    "avg_nopad": lambda x: F.avg_pool2d(x, 3, 2, 1, True, False),
    "avg_omit": lambda x: F.avg_pool2d(x, 2, nan_policy="omit"),
    "lp": lambda x: F.lp_pool2d(np.abs(x), 2.5, 2),
    "adaptive_avg": lambda x: F.adaptive_avg_pool2d(x, (5, 3)),
    "adaptive_avg_even": lambda x: F.adaptive_avg_pool2d(x, (6, 1)),
    "adaptive_max": lambda x: F.adaptive_max_pool2d(x, (5, 4), True),
    "global_avg": lambda x: ndpool.global_avg_pool(x),
    "global_max": lambda x: ndpool.global_max_pool(x),
    "fractional": lambda x: F.fractional_max_pool2d(
        x,
        2,
        (5, 4),
        return_indices=True,
        _random_samples=_samples(*x.shape[:2], 2, x.dtype),
    ),
    "max_last": lambda x: F.max_pool2d(
        np.ascontiguousarray(np.moveaxis(x, 1, -1)),
        3,
        2,
        1,
        return_indices=True,
        data_format="channels_last",
    ),
    "avg_last": lambda x: F.avg_pool2d(
        np.ascontiguousarray(np.moveaxis(x, 1, -1)), 2, data_format="channels_last"
    ),
    "max3d": lambda x: F.max_pool3d(x.reshape(x.shape[0], 1, *x.shape[1:]), 2, 1),
}


def _as_tuple(r: Any) -> tuple[Any, ...]:
    return r if isinstance(r, tuple) else (r,)


CALLS.update(
    {
        "lp_inf": lambda x: F.lp_pool2d(x, float("inf"), 2),
        "torch_lp": lambda x: F.lp_pool2d(x, 2.0, 3, 2),
        "sum": lambda x: ndpool.pool(x, 2, op="sum", axes=(2, 3)),
        "avg_int": lambda x: ndpool.pool(
            x.astype(np.int16), 2, op="avg", axes=(2, 3), dtype=np.uint8
        ),
        "max_int_idx": lambda x: ndpool.pool(
            x.astype(np.int32), 2, axes=(2, 3), return_indices=True, dtype=np.float32
        ),
        "avg_half": lambda x: F.avg_pool2d(x.astype(np.float16), 3, 2),
        # whole-plane windows whose work is more than one reduce run on
        # batch blocks: argmax tracking, powers, NaN masks
        "global_max_idx": lambda x: F.adaptive_max_pool2d(x, 1, True),
        "global_min_omit_idx": lambda x: ndpool.pool(
            x, (12, 11), op="min", nan_policy="omit", return_indices=True
        ),
        "global_torch_lp": lambda x: F.lp_pool2d(x, 2.0, (12, 11)),
        "global_lp": lambda x: ndpool.global_lp_pool(x, 3.0),
        "global_avg_omit": lambda x: ndpool.global_avg_pool(x, nan_policy="omit"),
    }
)


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("n", [1, 5, 7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_result_any_thread_count(
    name: str, n: int, dtype: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = _x((n, 3, 12, 11), dtype, nan=0.05 if "omit" in name else 0.0)
    with monkeypatch.context() as m:  # one block: no batch cut at all
        m.setattr(_core, "_blocks", lambda *args: None)
        want = _as_tuple(CALLS[name](x))
    for threads in (1, 2, 3, 5):
        with ndpool.set_num_threads(threads):
            got = _as_tuple(CALLS[name](x))
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w, err_msg=f"{name}, {threads} threads")


@pytest.mark.parametrize("threads", [1, 2, 3, 9])
@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("op", ["max", "min"])
@pytest.mark.parametrize("nan_policy", ["propagate", "omit"])
def test_global_max_and_min_share_spans_of_the_batch(
    threads: int, data_format: str, op: str, nan_policy: str
) -> None:
    """A global max or min is one reduce over every pooled axis, shared out
    in spans of the outermost batch axis from one block a thread (blocks of
    4 KiB here): any thread count gives NumPy's own reduce, NaN included."""
    rng = np.random.default_rng(threads)  # values no earlier result shares
    x = rng.standard_normal((9, 3, 30, 31))
    x[rng.random(x.shape) < 0.002] = np.nan
    x[0, 1] = np.nan  # a plane of NaN only
    spatial = (2, 3)
    if data_format == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        spatial = (1, 2)
    reduce = {"max": np.fmax, "min": np.fmin} if nan_policy == "omit" else {
        "max": np.maximum, "min": np.minimum}  # fmt: skip
    with np.errstate(invalid="ignore"):
        want = reduce[op].reduce(x, axis=spatial, keepdims=True)
    with ndpool.set_num_threads(threads):
        got = ndpool.pool(x, (30, 31), op=op, axes=spatial, nan_policy=nan_policy)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threaded_nan_and_ints_match_torch(threads: int) -> None:
    torch = pytest.importorskip("torch")
    x = _x((7, 3, 10, 9), nan=0.1)
    xu = _x((5, 2, 10, 9), np.uint8)
    with ndpool.set_num_threads(threads):
        out, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
        u = F.max_pool2d(xu, 2)
    ro, ri = torch.nn.functional.max_pool2d(
        torch.from_numpy(x), 3, 2, 1, return_indices=True
    )
    np.testing.assert_array_equal(out, ro.numpy())
    np.testing.assert_array_equal(idx, ri.numpy())
    np.testing.assert_array_equal(
        u, torch.nn.functional.max_pool2d(torch.from_numpy(xu), 2).numpy()
    )


def test_set_get_and_context_manager() -> None:
    before = ndpool.get_num_threads()
    assert before >= 1
    with ndpool.set_num_threads(3) as ctx:
        assert ndpool.get_num_threads() == 3
        with ndpool.set_num_threads(1):
            assert ndpool.get_num_threads() == 1
        assert ndpool.get_num_threads() == 3
    assert ctx is not None
    assert ndpool.get_num_threads() == before
    ndpool.set_num_threads(2)  # a plain call sets it until changed
    try:
        assert ndpool.get_num_threads() == 2
    finally:
        ndpool.set_num_threads(before)


def test_context_manager_restores_after_error() -> None:
    before = ndpool.get_num_threads()
    with pytest.raises(RuntimeError), ndpool.set_num_threads(4):
        raise RuntimeError
    assert ndpool.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -2])
def test_invalid_count(bad: int) -> None:
    before = ndpool.get_num_threads()
    with pytest.raises(ValueError, match=rf"n={bad}"):
        ndpool.set_num_threads(bad)
    with pytest.raises(TypeError, match="n must be a positive int"):
        ndpool.set_num_threads(1.5)  # type: ignore[arg-type]
    assert ndpool.get_num_threads() == before


@pytest.mark.parametrize("bad", [True, np.True_, 2.0, np.float64(2), "2", None])
def test_a_count_that_is_not_an_int_is_refused(bad: Any) -> None:
    with pytest.raises(TypeError, match="n must be a positive int"):
        ndpool.set_num_threads(bad)


def test_a_numpy_integer_count_is_taken() -> None:
    """As ``torch.set_num_threads`` takes it; kept as a Python int."""
    with ndpool.set_num_threads(np.int64(3)):
        assert ndpool.get_num_threads() == 3
        assert type(ndpool.get_num_threads()) is int
    with pytest.raises(ValueError, match="n=0"):
        ndpool.set_num_threads(np.uint8(0))


def _run(code: str, env_value: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("NDPOOL_NUM_THREADS", None)
    if env_value is not None:
        env["NDPOOL_NUM_THREADS"] = env_value
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )


def test_env_var_honoured() -> None:
    code = "import ndpool; print(ndpool.get_num_threads())"
    assert _run(code, "3").stdout.strip() == "3"
    default = _run(code, None).stdout.strip()
    assert int(default) >= 1
    if hasattr(os, "sched_getaffinity"):
        assert int(default) == len(os.sched_getaffinity(0))
    # set_num_threads wins over the environment variable
    both = "import ndpool; ndpool.set_num_threads(2); print(ndpool.get_num_threads())"
    assert _run(both, "3").stdout.strip() == "2"


def test_env_var_invalid() -> None:
    code = "import ndpool; ndpool.get_num_threads()"
    res = _run(code, "zero")
    assert res.returncode != 0
    assert "NDPOOL_NUM_THREADS" in res.stderr
    assert "NDPOOL_NUM_THREADS=0" in _run(code, "0").stderr


def test_small_inputs_stay_single_threaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_core, "BLOCK_BYTES", 1 << 21)
    assert _core._blocks(np.zeros((2, 3, 8, 8)), _geom((2, 3, 8, 8))) is None
    assert _core._blocks(np.zeros((32, 64, 56, 56)), _geom((32, 64, 56, 56)))


def _geom(shape: tuple[int, ...]) -> Any:
    from ndpool._geometry import regular_geometry

    return regular_geometry(shape, (2, 3), (2, 2), (2, 2), ((0, 0),) * 2, (1, 1), False)


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
@pytest.mark.parametrize("count", [0, 1, 2, 7, 50])
def test_share_runs_every_item_once(threads: int, count: int) -> None:
    done: list[int] = []
    _threads.share(done.append, range(count), threads)
    assert sorted(done) == list(range(count))


def test_share_one_thread_stays_on_the_caller() -> None:
    import threading

    seen: set[int] = set()
    _threads.share(lambda _: seen.add(threading.get_ident()), range(20), 1)
    assert seen == {threading.get_ident()}


def test_share_does_not_wait_for_a_helper_that_has_not_started() -> None:
    """With every pool thread busy elsewhere, the caller does all the work
    and returns: the queued helper is cancelled, not waited for."""
    import threading

    release = threading.Event()
    pool = _threads.executor(1)
    busy = [pool.submit(release.wait, 30) for _ in range(_threads._pool_size)]
    done: list[int] = []
    runner = threading.Thread(target=_threads.share, args=(done.append, range(5), 2))
    runner.start()
    runner.join(timeout=10)
    returned = not runner.is_alive()
    release.set()
    runner.join()
    for b in busy:
        b.result()
    assert returned, "share waited for a helper queued behind other work"
    assert sorted(done) == list(range(5))


def test_share_runs_on_when_its_pool_was_shut_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another thread may replace the pool (growing it) and shut the old
    one down between ``executor`` and ``submit``: the caller does the work."""
    from concurrent.futures import ThreadPoolExecutor

    dead = ThreadPoolExecutor(1)
    dead.shutdown()
    monkeypatch.setattr(_threads, "executor", lambda workers: dead)
    done: list[int] = []
    _threads.share(done.append, range(5), 2)
    assert sorted(done) == list(range(5))


NESTED_SHARES = """
import threading
from ndpool import _threads

both = threading.Barrier(2, timeout=10)  # the pool's one helper holds an item
inner = []

def outer(_):
    both.wait()
    me = threading.get_ident()
    _threads.share(lambda i: inner.append(threading.get_ident() == me), range(4), 2)

_threads.share(outer, range(2), 2)
assert inner == [True] * 8, inner
print("done")
"""


def test_a_share_inside_a_share_runs_on_its_own_thread() -> None:
    """Both threads of a 2-thread share (the caller and the pool's one
    helper) share out inner work: the inner shares run alone, where the
    helper would wait for ever for a helper queued behind itself. In a
    fresh process (a fresh pool), killed if it hangs."""
    res = subprocess.run(
        [sys.executable, "-c", NESTED_SHARES],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "done"


LAST = "channels_last"


def _last(x: Any, channels: int) -> Any:
    """``x``'s cells as a contiguous (N, H, W, channels) array."""
    n = x.size // (12 * channels)
    return np.ascontiguousarray(x.ravel()[: n * 12 * channels].reshape(n, 3, 4, -1))


@pytest.mark.parametrize(
    ("call", "alone"),
    [
        (lambda x: F.adaptive_max_pool2d(x, 1), True),
        (lambda x: ndpool.pool(x, (12, 11), op="min", nan_policy="omit"), True),
        (lambda x: F.adaptive_avg_pool2d(x, 1), True),
        (lambda x: ndpool.pool(x, (12, 11), op="sum"), True),
        (lambda x: F.adaptive_max_pool2d(x, 1, True), False),
        (lambda x: ndpool.global_avg_pool(x, nan_policy="omit"), False),
        (lambda x: ndpool.global_lp_pool(x), False),
        (lambda x: ndpool.global_lp_pool(x, float("inf")), False),
        (lambda x: F.adaptive_avg_pool2d(x, (1, 2)), False),
        # channels last: summed in place from 8 channels, copied below
        (lambda x: ndpool.global_avg_pool(_last(x, 8), data_format=LAST), True),
        (lambda x: ndpool.global_avg_pool(_last(x, 3), data_format=LAST), False),
        (lambda x: ndpool.global_avg_pool(np.tile(x, 2)[..., ::2]), False),
        (lambda x: ndpool.global_avg_pool(x.astype(int), nan_policy="omit"), True),
    ],
)
def test_only_a_lone_whole_plane_reduce_stays_uncut(
    call: Call, alone: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reduce over whole planes shares out its own rows; whatever else
    pools whole planes (tracking, powers, NaN masks) is cut into blocks."""
    told: list[bool] = []
    original = _core._threads_itself

    def spy(*args: Any) -> bool:
        told.append(original(*args))
        return told[-1]

    monkeypatch.setattr(_core, "_threads_itself", spy)
    call(_x((7, 3, 12, 11)))
    assert told == [alone]


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_share_raises_the_error_and_stops_handing_out(threads: int) -> None:
    import time

    done: list[int] = []

    def work(i: int) -> None:
        if i == 3:
            msg = "block 3 failed"
            raise RuntimeError(msg)
        time.sleep(0.001)
        done.append(i)

    with pytest.raises(RuntimeError, match="block 3 failed"):
        _threads.share(work, range(1000), threads)
    assert len(done) < 100  # the rest was never handed out


def test_core_error_in_a_block_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    original = _core._pool_block

    def failing(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise MemoryError
        return original(*args, **kwargs)

    monkeypatch.setattr(_core, "_pool_block", failing)
    with ndpool.set_num_threads(2), pytest.raises(MemoryError):
        F.max_pool2d(_x((8, 3, 12, 11)), 2)


@pytest.mark.parametrize("threads", [2, 3, 5])
def test_global_sums_shared_over_threads(threads: int) -> None:
    x = _x((61, 3, 12, 11))  # ~97 KB: several spans of the 4 KiB test blocks
    with ndpool.set_num_threads(1):
        want = F.adaptive_avg_pool2d(x, 1), ndpool.global_avg_pool(x)
    with ndpool.set_num_threads(threads):
        got = F.adaptive_avg_pool2d(x, 1), ndpool.global_avg_pool(x)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_allclose(got[0], x.mean(axis=(2, 3), keepdims=True), rtol=1e-6)


def _same_bits_as_one_block(
    call: Call, x: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``call(x)`` at 1, 2, 3 and 5 threads (on blocks of 4 KiB) gives the
    bits of one call on the whole input."""
    with monkeypatch.context() as m, ndpool.set_num_threads(1):
        m.setattr(_core, "_blocks", lambda *args: None)  # no batch cut
        want = call(x).tobytes()
    for threads in (1, 2, 3, 5):
        with ndpool.set_num_threads(threads):
            assert call(x).tobytes() == want, f"{threads} threads"


@pytest.mark.parametrize(
    "call",
    [
        lambda x: ndpool.global_avg_pool(x),
        lambda x: ndpool.pool(x, (100, 101), op="sum", nan_policy="omit"),
        lambda x: ndpool.global_lp_pool(x, 3.0),
        lambda x: ndpool.global_avg_pool(
            np.ascontiguousarray(x.reshape(3, 10, 101, 10)), data_format=LAST
        ),
    ],
    ids=["avg", "sum_omit", "lp", "channels_last_spans_of_one_image"],
)
def test_long_rows_sum_to_the_same_bits_on_any_thread_count(
    call: Call, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plane of more than 8,192 cells summed alone by einsum comes out in
    other bits than among other planes: no span or block holds a lone one."""
    x = np.random.default_rng(5).standard_normal((3, 1, 100, 101)).astype(np.float32)
    x[0, 0, 0, :7] = np.nan
    _same_bits_as_one_block(call, x, monkeypatch)


def test_zero_maxima_keep_their_sign_on_any_thread_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Max with indices of a cut input keeps one way of tracking whatever
    the block sizes, which follow the thread count: the same zero signs
    (here the whole input is too many windows to gather, its blocks not)."""
    x = np.zeros((130, 64, 4), np.float32)
    x[..., 1:] = -0.0
    with monkeypatch.context() as m, ndpool.set_num_threads(1):
        m.setattr(_core, "_blocks", lambda *args: None)  # no batch cut
        want = F.max_pool1d(x, 4, return_indices=True)
    for threads in (1, 2, 3, 5):
        with ndpool.set_num_threads(threads):
            got = F.max_pool1d(x, 4, return_indices=True)
        assert got[0].tobytes() == want[0].tobytes(), f"{threads} threads"
        np.testing.assert_array_equal(got[1], want[1])


def _views() -> list[Any]:
    rng = np.random.default_rng(8)
    image = rng.standard_normal((1, 40, 34, 12)).astype(np.float32)  # N=1, NHWC
    image[rng.random(image.shape) < 0.1] = np.nan
    return [
        pytest.param(
            lambda x: ndpool.global_avg_pool(x, data_format=LAST, nan_policy="omit"),
            image,
            id="one-image-omit",
        ),
        pytest.param(
            lambda x: ndpool.global_lp_pool(x, 3.0, data_format=LAST),
            np.abs(image[..., :4]),
            id="one-image-4-channels",  # copied into rows: cut along channels
        ),
        pytest.param(
            lambda x: ndpool.pool(x, (5, 6), op="avg", axes=(1, 2)),
            rng.standard_normal((3, 5, 6, 4, 13))[::-1],
            id="reversed",
        ),
        pytest.param(
            lambda x: ndpool.pool(x, (6,), op="sum", axes=(1,)),
            rng.standard_normal((6, 6, 4, 16))[::2],
            id="strided",
        ),
    ]


@pytest.mark.parametrize(("call", "x"), _views())
def test_whole_plane_sums_read_every_block_alike(
    call: Call, x: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block of whole planes is summed the way the whole input is (in
    place, or copied into rows), whatever the cut: the same bits for a
    single channels-last image (never cut along its channels) and for a
    view whose blocks of one plane would look contiguous."""
    _same_bits_as_one_block(call, x, monkeypatch)
