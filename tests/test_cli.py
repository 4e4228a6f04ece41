"""``ndpool image``: round trips per mode and format, errors, safety, help.

The command is driven through ``ndpool.cli.main([...])`` (in process, so
Pillow can be monkeypatched) and as ``python -m ndpool`` in a subprocess.
Expected pixels are computed here with ``ndpool.pool`` on the decoded input.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import ndpool
from ndpool.cli import main

SAMPLE_SHA256 = "e9625b2b83a4b7170821c288e09d7ced69d7bf513c1787948616a9be17a8564c"
OPTIONS = (
    "INPUT",
    "--output",
    "--op",
    "--kernel",
    "--stride",
    "--padding",
    "--ceil-mode",
    "--norm-type",
    "--compare",
    "--force",
)


@pytest.fixture
def pil() -> ModuleType:
    """``PIL.Image``, or skip the test when Pillow is not installed."""
    return pytest.importorskip("PIL.Image")


@pytest.fixture
def mpl() -> ModuleType:
    """``matplotlib``, or skip the test when it is not installed."""
    return pytest.importorskip("matplotlib")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def files(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (hidden ones too), with its content."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def make_pixels(mode: str, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Random pixels for ``mode``, covering the full range of its dtype."""
    rng = np.random.default_rng(seed)
    channels = {"LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4}.get(mode)
    full = (*shape, channels) if channels else shape
    if mode == "1":
        return rng.random(full) < 0.5
    if mode == "I;16":
        return rng.integers(0, 65536, full, dtype=np.uint16)
    if mode == "I":
        return rng.integers(-(2**31), 2**31 - 1, full, dtype=np.int32)
    if mode == "F":
        return (rng.standard_normal(full) * 1000).astype(np.float32)
    return rng.integers(0, 256, full, dtype=np.uint8)


def to_image(pil: ModuleType, pixels: np.ndarray, mode: str) -> Any:
    if mode == "1":
        return pil.fromarray(pixels)
    dtype = {"I;16": "<u2", "I": "=i4", "F": "=f4"}.get(mode, "u1")
    raw = np.ascontiguousarray(pixels, dtype=dtype).tobytes()
    return pil.frombytes(mode, (pixels.shape[1], pixels.shape[0]), raw)


def decode(pil: ModuleType, path: Path, convert: str | None = None) -> np.ndarray:
    with pil.open(path) as im:
        im = im.convert(convert) if convert else im
        arr = np.asarray(im)
    return arr.astype(arr.dtype.newbyteorder("="))


def expected(pixels: np.ndarray, op: str, **kw: Any) -> np.ndarray:
    """What the CLI must write: ndpool on the decoded pixels, same dtype."""
    if op == "lp":
        kw.setdefault("norm_type", 2.0)
    if pixels.dtype == np.bool_:
        out = ndpool.pool(pixels.astype(np.uint8), op=op, dtype=np.uint8, **kw)
        return out.astype(np.bool_)
    return ndpool.pool(pixels, op=op, dtype=pixels.dtype, **kw)


def write_png16_rgb(path: Path, pixels: np.ndarray) -> None:
    """Write a 16-bit-per-channel RGB PNG by hand (Pillow cannot)."""
    h, w, _ = pixels.shape
    rows = b"".join(b"\0" + pixels[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------- isolation


def test_import_ndpool_loads_neither_pillow_nor_matplotlib() -> None:
    code = (
        "import sys, ndpool, ndpool.cli, ndpool._imageio, ndpool._sample\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'PIL', 'matplotlib'})\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sample_is_deterministic_and_nontrivial() -> None:
    from ndpool._sample import sample_image

    img = sample_image()
    assert img.shape == (512, 512, 3)
    assert img.dtype == np.uint8
    assert np.array_equal(img, sample_image())
    assert hashlib.sha256(img.tobytes()).hexdigest() == SAMPLE_SHA256
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 1000  # colour, gradients
    assert np.abs(np.diff(img.astype(int), axis=1)).max() == 255  # hard edges
    pooled = {
        op: ndpool.pool(img, 2, op=op, axes=(0, 1), dtype=np.uint8).astype(float)
        for op in ("max", "min", "avg")
    }
    for a, b in (("max", "avg"), ("avg", "min"), ("max", "min")):
        assert np.abs(pooled[a] - pooled[b]).mean() > 10  # fine texture


# --------------------------------------------------------------- defaults


def test_default_command_pools_the_sample(
    pil: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ndpool._sample import sample_image

    monkeypatch.chdir(tmp_path)
    code, out, err = run(["image"], capsys)
    assert (code, err) == (0, "")
    assert list(files(tmp_path)) == ["sample_max_k2.png"]
    assert "sample_max_k2.png" in out
    assert "512x512" in out
    assert "256x256" in out
    got = decode(pil, tmp_path / "sample_max_k2.png")
    assert np.array_equal(got, ndpool.pool(sample_image(), 2, axes=(0, 1)))


def test_default_name_says_what_was_done(
    pil: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    to_image(pil, make_pixels("L", (9, 9)), "L").save(tmp_path / "pic.png")
    to_image(pil, make_pixels("F", (9, 9)), "F").save(tmp_path / "deep.tif")
    monkeypatch.chdir(tmp_path)
    argv = ["--op", "lp", "--norm-type", "3", "-k", "2,3", "-s", "1", "-p", "1"]
    assert run(["image", "pic.png", *argv, "--ceil-mode"], capsys)[0] == 0
    assert (tmp_path / "pic_lp3_k2x3_s1_p1_ceil.png").is_file()
    assert run(["image", "deep.tif"], capsys)[0] == 0  # PNG cannot hold float
    assert (tmp_path / "deep_max_k2.tif").is_file()


# --------------------------------------------------------------- round trips

ROUND_TRIPS = [
    ("1", "png", "1"),
    ("L", "png", "L"),
    ("LA", "png", "LA"),
    ("RGB", "png", "RGB"),
    ("RGBA", "png", "RGBA"),
    ("I;16", "png", "I;16"),
    ("I;16", "tif", "I;16"),
    ("I", "tif", "I"),
    ("F", "tif", "F"),
    ("CMYK", "tif", "CMYK"),
    ("RGB", "tif", "RGB"),
    ("LA", "tif", "LA"),
    ("L", "bmp", "L"),
    ("RGB", "bmp", "RGB"),
    ("RGB", "webp", "RGB"),
    ("RGBA", "webp", "RGBA"),
]


@pytest.mark.parametrize("op", ["max", "min", "avg", "lp"])
@pytest.mark.parametrize(("mode", "ext", "out_mode"), ROUND_TRIPS)
def test_round_trip(
    pil: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mode: str,
    ext: str,
    out_mode: str,
    op: str,
) -> None:
    src, dst = tmp_path / f"in.{ext}", tmp_path / f"out.{ext}"
    options = {"lossless": True, "exact": True} if ext == "webp" else {}
    to_image(pil, make_pixels(mode, (13, 17)), mode).save(src, **options)
    before = src.read_bytes()
    pixels = decode(pil, src)
    argv = ["image", str(src), "-o", str(dst), "--op", op, "-k", "3,2"]
    argv += ["-s", "2,1", "-p", "1,0", "--ceil-mode"]
    code, out, err = run(argv, capsys)
    assert (code, err) == (0, ""), err
    with pil.open(dst) as im:
        assert im.mode == out_mode
    want = expected(
        pixels,
        op,
        kernel_size=(3, 2),
        axes=(0, 1),
        stride=(2, 1),
        padding=(1, 0),
        ceil_mode=True,
    )
    np.testing.assert_array_equal(decode(pil, dst), want)
    assert src.read_bytes() == before  # the input is never modified
    assert f"{want.shape[1]}x{want.shape[0]}" in out


def test_sixteen_bit_png_keeps_its_depth_and_never_wraps(
    pil: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pixels = np.array([[65535, 65535], [65534, 65533]], dtype=np.uint16)
    to_image(pil, pixels, "I;16").save(tmp_path / "in.png")
    for op, value in (("avg", 65534), ("lp", 65535), ("max", 65535), ("min", 65533)):
        out = tmp_path / f"{op}.png"
        assert (
            run(
                ["image", str(tmp_path / "in.png"), "-o", str(out), "--op", op], capsys
            )[0]
            == 0
        )
        with pil.open(out) as im:
            assert im.mode == "I;16"
            assert np.asarray(im).tolist() == [[value]]


def test_eight_bit_average_rounds_and_lp_clips(
    pil: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pixels = np.array([[255, 255, 0, 1], [255, 254, 1, 1]], dtype=np.uint8)
    to_image(pil, pixels, "L").save(tmp_path / "in.png")
    got = {}
    for op in ("avg", "lp"):
        out = tmp_path / f"{op}.png"
        assert (
            run(
                ["image", str(tmp_path / "in.png"), "-o", str(out), "--op", op], capsys
            )[0]
            == 0
        )
        got[op] = decode(pil, out).tolist()
    assert got["avg"] == [[255, 1]]  # 254.75 -> 255, 0.75 -> 1: rounded, not wrapped
    assert got["lp"] == [[255, 2]]  # 2-norm 509.5 clipped to 255; sqrt(3) -> 2


@pytest.mark.parametrize("transparent", [False, True])
def test_palette_image_is_pooled_as_rgb(
    pil: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    transparent: bool,
) -> None:
    rgb = to_image(pil, make_pixels("RGB", (12, 10)), "RGB")
    pal = rgb.quantize(16)
    src = tmp_path / "in.png"
    pal.save(src, **({"transparency": 3} if transparent else {}))
    target = "RGBA" if transparent else "RGB"
    code, out, _ = run(["image", str(src), "-o", str(tmp_path / "out.png")], capsys)
    assert code == 0
    assert f"palette image: pooled and written as {target}" in out
    with pil.open(tmp_path / "out.png") as im:
        assert im.mode == target
    want = expected(decode(pil, src, target), "max", kernel_size=2, axes=(0, 1))
    np.testing.assert_array_equal(decode(pil, tmp_path / "out.png"), want)


def test_gif_frames_and_jpeg_input(
    pil: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = [to_image(pil, make_pixels("L", (8, 8), s), "L") for s in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    code, out, _ = run(
        ["image", str(tmp_path / "anim.gif"), "-o", str(tmp_path / "a.png")], capsys
    )
    assert code == 0
    assert "3 frames; pooling the first" in out

    to_image(pil, make_pixels("RGB", (16, 24)), "RGB").save(tmp_path / "in.jpg")
    code, _, _ = run(
        [
            "image",
            str(tmp_path / "in.jpg"),
            "-o",
            str(tmp_path / "j.png"),
            "--op",
            "avg",
        ],
        capsys,
    )
    assert code == 0
    want = expected(decode(pil, tmp_path / "in.jpg"), "avg", kernel_size=2, axes=(0, 1))
    np.testing.assert_array_equal(decode(pil, tmp_path / "j.png"), want)
    # JPEG output is lossy but must have the right size and mode
    code, _, _ = run(
        ["image", str(tmp_path / "in.jpg"), "-o", str(tmp_path / "j.jpg")], capsys
    )
    assert code == 0
    with pil.open(tmp_path / "j.jpg") as im:
        assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (12, 8))


def test_exif_orientation_is_applied(
    pil: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exif = pil.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to display
    to_image(pil, make_pixels("RGB", (8, 16)), "RGB").save(
        tmp_path / "in.jpg", exif=exif
    )
    code, out, _ = run(
        ["image", str(tmp_path / "in.jpg"), "-o", str(tmp_path / "o.png")], capsys
    )
    assert code == 0
    assert "EXIF orientation" in out
    with pil.open(tmp_path / "o.png") as im:
        assert im.size == (4, 8)  # (W, H) of the upright 16x8 picture, pooled


def test_sixteen_bit_colour_png_is_reported(
    pil: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_png16_rgb(
        tmp_path / "in.png", make_pixels("I;16", (4, 6)).repeat(3).reshape(4, 6, 3)
    )
    code, out, _ = run(
        ["image", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png")], capsys
    )
    assert code == 0
    assert "16 bits a channel" in out
    want = expected(decode(pil, tmp_path / "in.png"), "max", kernel_size=2, axes=(0, 1))
    np.testing.assert_array_equal(decode(pil, tmp_path / "o.png"), want)


# --------------------------------------------------------------- errors


def _error_cases(tmp: Path, pil: ModuleType) -> dict[str, tuple[list[str], str]]:
    """Named cases: argv and a piece of the expected one-line message."""
    good = tmp / "good.png"
    to_image(pil, make_pixels("RGB", (6, 8)), "RGB").save(good)
    rgba = tmp / "rgba.png"
    to_image(pil, make_pixels("RGBA", (6, 8)), "RGBA").save(rgba)
    deep = tmp / "deep.png"
    to_image(pil, make_pixels("I;16", (6, 8)), "I;16").save(deep)
    data = good.read_bytes()
    (tmp / "empty.png").write_bytes(b"")
    (tmp / "garbage.png").write_bytes(b"this is not an image" * 10)
    (tmp / "truncated.png").write_bytes(data[: len(data) // 2])
    corrupt = bytearray(data)
    idat = data.index(b"IDAT") + 8
    corrupt[idat : idat + 16] = b"\xff" * 16
    (tmp / "corrupt.png").write_bytes(bytes(corrupt))
    pil.new("YCbCr", (8, 6)).save(tmp / "ycbcr.tif")
    (tmp / "adir").mkdir()
    (tmp / "afile").write_bytes(b"x")
    (tmp / "exists.png").write_bytes(b"keep me")
    (tmp / "fig.png").write_bytes(b"keep me too")
    g, o = str(good), str(tmp / "out.png")
    return {
        "missing input": (["image", str(tmp / "nope.png"), "-o", o], "does not exist"),
        "input is a directory": (
            ["image", str(tmp / "adir"), "-o", o],
            "is a directory",
        ),
        "empty input": (["image", str(tmp / "empty.png"), "-o", o], "not an image"),
        "not an image": (["image", str(tmp / "garbage.png"), "-o", o], "not an image"),
        "truncated": (
            ["image", str(tmp / "truncated.png"), "-o", o],
            "truncated or corrupt",
        ),
        "corrupt": (
            ["image", str(tmp / "corrupt.png"), "-o", o],
            "truncated or corrupt",
        ),
        "unsupported mode": (
            ["image", str(tmp / "ycbcr.tif"), "-o", o],
            "mode 'YCbCr'",
        ),
        "no output dir": (
            ["image", g, "-o", str(tmp / "no" / "o.png")],
            "does not exist",
        ),
        "output dir is a file": (
            ["image", g, "-o", str(tmp / "afile" / "o.png")],
            "is not a directory",
        ),
        "output is a directory": (
            ["image", g, "-o", str(tmp / "adir"), "--force"],
            "is a directory",
        ),
        "unknown extension": (["image", g, "-o", str(tmp / "o.xyz")], "'.xyz'"),
        "no extension": (["image", g, "-o", str(tmp / "o")], "no extension"),
        "read-only format": (["image", g, "-o", str(tmp / "o.psd")], "'.psd'"),
        "alpha to jpeg": (
            ["image", str(rgba), "-o", str(tmp / "o.jpg")],
            "no alpha channel",
        ),
        "16-bit to webp": (
            ["image", str(deep), "-o", str(tmp / "o.webp")],
            "lose bits",
        ),
        "output exists": (["image", g, "-o", str(tmp / "exists.png")], "--force"),
        "output is input": (["image", g, "-o", g, "--force"], "same file as the input"),
        "figure exists": (
            ["image", g, "-o", o, "--compare", str(tmp / "fig.png")],
            "--force",
        ),
        "figure extension": (
            ["image", g, "-o", o, "--compare", str(tmp / "f.xyz")],
            "figure",
        ),
        "figure is input": (
            ["image", g, "-o", o, "--compare", g, "--force"],
            "same file",
        ),
        "kernel larger than image": (
            ["image", g, "-o", o, "-k", "7"],
            "output length of 0",
        ),
        "padding over half kernel": (["image", g, "-o", o, "-p", "2"], "padding"),
        "lp norm 0": (
            ["image", g, "-o", o, "--op", "lp", "--norm-type", "0"],
            "norm_type",
        ),
        "norm not a number": (
            ["image", g, "-o", o, "--norm-type", "two"],
            "--norm-type",
        ),
        "unknown op": (["image", g, "-o", o, "--op", "median"], "--op"),
        "kernel 0": (["image", g, "-o", o, "-k", "0"], "kernel must be positive"),
        "kernel word": (["image", g, "-o", o, "-k", "big"], "kernel must be N or H,W"),
        "kernel 3 values": (
            ["image", g, "-o", o, "-k", "2,3,4"],
            "kernel must be N or H,W",
        ),
        "kernel negative": (["image", g, "-o", o, "-k", "-1"], "kernel"),
        "kernel empty": (["image", g, "-o", o, "-k", ""], "kernel must be N or H,W"),
        "kernel trailing comma": (
            ["image", g, "-o", o, "-k", "2,"],
            "kernel must be N or H,W",
        ),
        "kernel float": (["image", g, "-o", o, "-k", "1.5"], "kernel must be N or H,W"),
        "stride 0": (["image", g, "-o", o, "-s", "0"], "stride must be positive"),
        "padding negative": (["image", g, "-o", o, "-p", "1,-1"], "padding must be"),
        "unknown option": (["image", g, "--frobnicate"], "unrecognized arguments"),
        "no command": ([], "COMMAND"),
    }


ERROR_NAMES = [
    "missing input",
    "input is a directory",
    "empty input",
    "not an image",
    "truncated",
    "corrupt",
    "unsupported mode",
    "no output dir",
    "output dir is a file",
    "output is a directory",
    "unknown extension",
    "no extension",
    "read-only format",
    "alpha to jpeg",
    "16-bit to webp",
    "output exists",
    "output is input",
    "figure exists",
    "figure extension",
    "figure is input",
    "kernel larger than image",
    "padding over half kernel",
    "lp norm 0",
    "norm not a number",
    "unknown op",
    "kernel 0",
    "kernel word",
    "kernel 3 values",
    "kernel negative",
    "kernel empty",
    "kernel trailing comma",
    "kernel float",
    "stride 0",
    "padding negative",
    "unknown option",
    "no command",
]


def assert_one_line_error(code: int, err: str, needle: str) -> None:
    assert code == 2
    assert err.count("\n") == 1, err
    assert err.startswith("ndpool"), err
    assert ": error: " in err
    assert needle in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("name", ERROR_NAMES)
def test_error_exit_2_one_line_nothing_written(
    pil: ModuleType,
    mpl: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
) -> None:
    cases = _error_cases(tmp_path, pil)
    assert sorted(cases) == sorted(ERROR_NAMES)
    argv, needle = cases[name]
    before = files(tmp_path)
    code, out, err = run(argv, capsys)
    assert_one_line_error(code, err, needle)
    assert out == ""
    assert files(tmp_path) == before  # no output, no temporary file, input intact


@pytest.mark.parametrize(
    "limit", [150, 250]
)  # over twice the limit: error; else warning
def test_decompression_bomb_is_refused(
    pil: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    limit: int,
) -> None:
    to_image(pil, make_pixels("L", (20, 20)), "L").save(tmp_path / "bomb.png")  # 400 px
    monkeypatch.setattr(pil, "MAX_IMAGE_PIXELS", limit)
    before = files(tmp_path)
    code, _, err = run(
        ["image", str(tmp_path / "bomb.png"), "-o", str(tmp_path / "o.png")], capsys
    )
    assert_one_line_error(code, err, "decompression bomb")
    assert files(tmp_path) == before


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions"
)
def test_unreadable_input_and_unwritable_directory(
    pil: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.png"
    to_image(pil, make_pixels("L", (6, 6)), "L").save(src)
    locked = tmp_path / "locked"
    locked.mkdir()
    try:
        src.chmod(0)
        code, _, err = run(["image", str(src), "-o", str(tmp_path / "o.png")], capsys)
        assert_one_line_error(code, err, "permission denied")
        src.chmod(0o644)
        locked.chmod(0o555)
        code, _, err = run(["image", str(src), "-o", str(locked / "o.png")], capsys)
        assert_one_line_error(code, err, "not writable")
    finally:
        src.chmod(0o644)
        locked.chmod(0o755)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["in.png", "locked"]


# --------------------------------------------------------------- safety


def test_force_overwrites_existing_output(
    pil: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    to_image(pil, make_pixels("RGB", (8, 8)), "RGB").save(src)
    dst.write_bytes(b"old")
    code, _, err = run(["image", str(src), "-o", str(dst)], capsys)
    assert_one_line_error(code, err, "already exists; use --force")
    assert dst.read_bytes() == b"old"
    assert run(["image", str(src), "-o", str(dst), "--force"], capsys)[0] == 0
    want = expected(decode(pil, src), "max", kernel_size=2, axes=(0, 1))
    np.testing.assert_array_equal(decode(pil, dst), want)
    assert sorted(files(tmp_path)) == ["in.png", "out.png"]


def test_new_output_gets_umask_permissions(
    pil: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.png"
    to_image(pil, make_pixels("L", (4, 4)), "L").save(src)
    old = os.umask(0o022)
    try:
        assert run(["image", str(src), "-o", str(tmp_path / "o.png")], capsys)[0] == 0
    finally:
        os.umask(old)
    assert (tmp_path / "o.png").stat().st_mode & 0o777 == 0o644


def _failing(exc: BaseException) -> Callable[..., None]:
    def save(self: Any, fp: Any, *args: Any, **kwargs: Any) -> None:
        fp.write(b"\x89PNG half of an image")  # a partial write, then failure
        raise exc

    return save


@pytest.mark.parametrize(
    "exc", [OSError("No space left on device"), ValueError("boom")]
)
def test_failure_while_writing_leaves_nothing(
    pil: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    exc: Exception,
) -> None:
    src = tmp_path / "in.png"
    to_image(pil, make_pixels("RGB", (8, 8)), "RGB").save(src)
    before = files(tmp_path)
    monkeypatch.setattr(pil.Image, "save", _failing(exc))
    code, _, err = run(["image", str(src), "-o", str(tmp_path / "out.png")], capsys)
    assert_one_line_error(code, err, str(exc))
    assert files(tmp_path) == before


def test_interrupt_while_writing_leaves_nothing(
    pil: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = tmp_path / "in.png"
    to_image(pil, make_pixels("RGB", (8, 8)), "RGB").save(src)
    before = files(tmp_path)
    monkeypatch.setattr(pil.Image, "save", _failing(KeyboardInterrupt()))
    code, _, err = run(["image", str(src), "-o", str(tmp_path / "out.png")], capsys)
    assert code == 130
    assert "interrupted" in err
    assert files(tmp_path) == before


def test_failing_figure_leaves_no_image_either(
    pil: ModuleType,
    mpl: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from matplotlib.figure import Figure

    src = tmp_path / "in.png"
    to_image(pil, make_pixels("RGB", (8, 8)), "RGB").save(src)
    before = files(tmp_path)
    monkeypatch.setattr(Figure, "savefig", _failing(OSError("figure failed")))
    argv = [
        "image",
        str(src),
        "-o",
        str(tmp_path / "o.png"),
        "--compare",
        str(tmp_path / "f.png"),
    ]
    code, _, err = run(argv, capsys)
    assert_one_line_error(code, err, "figure failed")
    assert files(tmp_path) == before


def test_output_created_meanwhile_is_not_clobbered(
    pil: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ndpool import _imageio

    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    to_image(pil, make_pixels("RGB", (8, 8)), "RGB").save(src)
    dst.write_bytes(b"appeared after the check")
    monkeypatch.setattr(_imageio, "_check_target", lambda *args: None)
    code, _, err = run(["image", str(src), "-o", str(dst)], capsys)
    assert_one_line_error(code, err, "already exists")
    assert dst.read_bytes() == b"appeared after the check"
    assert sorted(files(tmp_path)) == ["in.png", "out.png"]


# --------------------------------------------------------------- figure


@pytest.mark.parametrize("mode", ["1", "LA", "RGBA", "I;16", "I", "F", "CMYK"])
def test_compare_figure(
    pil: ModuleType,
    mpl: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mode: str,
) -> None:
    src = tmp_path / "in.tif"
    to_image(pil, make_pixels(mode, (30, 20)), mode).save(src)
    fig = tmp_path / "fig.png"
    argv = [
        "image",
        str(src),
        "-o",
        str(tmp_path / "o.tif"),
        "--op",
        "avg",
        "--compare",
        str(fig),
    ]
    code, out, err = run(argv, capsys)
    assert (code, err) == (0, ""), err
    assert f"comparison figure -> {fig}" in out
    with pil.open(fig) as im:
        assert im.format == "PNG"
        assert im.width > im.height


def test_compare_figure_svg_and_default_sample(
    pil: ModuleType,
    mpl: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ndpool._sample import sample_image

    monkeypatch.chdir(tmp_path)
    assert run(["image", "--compare", "fig.svg", "--op", "min"], capsys)[0] == 0
    assert (tmp_path / "fig.svg").read_text().lstrip().startswith("<?xml")
    assert run(["image", "--compare", "fig.png"], capsys)[0] == 0
    # the sample is shown 1:1, unresampled, in the left panel
    with pil.open(tmp_path / "fig.png") as im:
        shown = np.asarray(im.convert("RGB"))
    sample = sample_image()
    hits = np.argwhere(shown[:, :, 0] == sample[100, 100, 0])
    assert shown.shape[1] > 2 * 512
    assert any(
        np.array_equal(
            shown[y - 100 + 1 : y - 100 + 511, x - 100 + 1 : x - 100 + 511],
            sample[1:511, 1:511],
        )
        for y, x in hits
        if y >= 100 and x >= 100 and y - 100 + 512 <= shown.shape[0]
    )


# --------------------------------------------------------------- help, entry points


def test_help_documents_every_option_with_an_example(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(["image", "--help"], capsys)
    assert code == 0
    text = " ".join(out.split())
    for option in OPTIONS:
        assert option in text
    assert text.count("e.g.") >= len(OPTIONS)
    assert "examples:" in text
    assert "ndpool image --op avg --kernel 4 --compare compare.png" in text
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    assert "image" in out
    code, out, _ = run(["--version"], capsys)
    assert (code, out.strip()) == (0, f"ndpool {ndpool.__version__}")


def test_python_dash_m_ndpool(pil: ModuleType, tmp_path: Path) -> None:
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    to_image(pil, make_pixels("RGBA", (10, 12)), "RGBA").save(src)
    cmd = [
        sys.executable,
        "-m",
        "ndpool",
        "image",
        str(src),
        "-o",
        str(dst),
        "--op",
        "avg",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert str(dst) in done.stdout
    want = expected(decode(pil, src), "avg", kernel_size=2, axes=(0, 1))
    np.testing.assert_array_equal(decode(pil, dst), want)

    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    cmd = [
        sys.executable,
        "-m",
        "ndpool",
        "image",
        str(tmp_path / "bad.png"),
        "-o",
        str(tmp_path / "x.png"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert_one_line_error(done.returncode, done.stderr, "bad.png")
    assert not (tmp_path / "x.png").exists()


def test_console_script(pil: ModuleType, tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("ndpool")
    if not script.exists():
        pytest.skip("the ndpool console script is not installed next to python")
    done = subprocess.run(
        [str(script), "image", "-k", "4"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert (tmp_path / "sample_max_k4.png").is_file()
    done = subprocess.run(
        [str(script), "image", "-k", "4"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert_one_line_error(done.returncode, done.stderr, "--force")


def test_pool_pixels_bilevel_majority() -> None:
    from ndpool._imageio import pool_pixels

    bits = np.array([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=bool)
    assert pool_pixels(bits, "avg", (2, 2)).tolist() == [[True, False]]
    assert pool_pixels(bits, "max", (2, 2)).tolist() == [[True, True]]
    assert pool_pixels(bits, "min", (2, 2)).tolist() == [[False, False]]


def test_permission_errors_without_root_rights(
    pil: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The permission paths, simulated (tests often run as root)."""
    src, dst = tmp_path / "in.png", tmp_path / "o.png"
    to_image(pil, make_pixels("L", (6, 6)), "L").save(src)
    before = files(tmp_path)
    argv = ["image", str(src), "-o", str(dst)]

    real_open = os.open

    def no_temp_files(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith(".tmp"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(os, "open", no_temp_files)
        code, _, err = run(argv, capsys)
    assert_one_line_error(code, err, "cannot write to")
    with monkeypatch.context() as m:
        m.setattr(os, "access", lambda *args, **kwargs: False)
        code, _, err = run(argv, capsys)
    assert_one_line_error(code, err, "is not writable")

    def unreadable(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as m:
        m.setattr(pil, "open", unreadable)
        code, _, err = run(argv, capsys)
    assert_one_line_error(code, err, "permission denied")
    assert files(tmp_path) == before


def test_missing_extras_are_named(
    pil: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without Pillow or matplotlib, say which extra to install."""
    monkeypatch.chdir(tmp_path)
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "matplotlib.figure", None)  # import fails
        code, _, err = run(["image", "--compare", "fig.png"], capsys)
    assert_one_line_error(code, err, "pip install 'ndpool[image]'")
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "PIL", None)
        code, _, err = run(["image"], capsys)
    assert_one_line_error(code, err, "needs Pillow")
    assert files(tmp_path) == {}
