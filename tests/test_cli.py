"""``ndpool image``: round trips per mode and format, errors, safety, help.

The command is driven through ``ndpool.cli.main([...])`` (in process, so
Pillow can be monkeypatched) and as ``python -m ndpool`` in a subprocess.
Expected pixels are computed here with ``ndpool.pool`` on the decoded input.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import threading
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

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
    """What the CLI must write: ndpool on the decoded pixels, same dtype,
    every NaN written as NumPy's ``nan``."""
    if op == "lp":
        kw.setdefault("norm_type", 2.0)
    if pixels.dtype == np.bool_:
        out = ndpool.pool(pixels.astype(np.uint8), op=op, dtype=np.uint8, **kw)
        return out.astype(np.bool_)
    out = ndpool.pool(pixels, op=op, dtype=pixels.dtype, **kw)
    if out.dtype.kind == "f":
        out[np.isnan(out)] = np.nan
    return out


def write_png(
    path: Path, rows: list[bytes], width: int, depth: int, colour: int, key: bytes = b""
) -> None:
    """Write a PNG by hand (Pillow writes neither 16-bit colour nor 2- or
    4-bit gray): unfiltered ``rows`` of packed samples, bit ``depth``,
    colour type ``colour`` (0 gray, 2 RGB), and a tRNS ``key`` if given."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, len(rows), depth, colour, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + (chunk(b"tRNS", key) if key else b"")
        + chunk(b"IDAT", zlib.compress(b"".join(b"\0" + r for r in rows)))
        + chunk(b"IEND", b"")
    )


def write_png16_rgb(path: Path, pixels: np.ndarray, key: bytes = b"") -> None:
    """Write a 16-bit-per-channel RGB PNG by hand (Pillow cannot)."""
    h, w, _ = pixels.shape
    write_png(
        path, [pixels[i].astype(">u2").tobytes() for i in range(h)], w, 16, 2, key
    )


def write_png_gray(path: Path, pixels: np.ndarray, depth: int, key: int) -> None:
    """Write gray ``pixels`` of 1, 2 or 4 bits by hand, with colour key ``key``."""
    per = 8 // depth
    rows = []
    for row in pixels.tolist():
        row += [0] * (-len(row) % per)  # the last byte's unused samples
        packed = [row[i : i + per] for i in range(0, len(row), per)]
        rows.append(
            bytes(
                sum(v << (8 - depth * (j + 1)) for j, v in enumerate(group))
                for group in packed
            )
        )
    write_png(path, rows, pixels.shape[1], depth, 0, struct.pack(">H", key))


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


@pytest.mark.parametrize(
    ("mode", "key", "target"),
    [("1", 0, "LA"), ("L", 17, "LA"), ("RGB", (0, 0, 0), "RGBA"), ("I;16", 5, None)],
)
def test_a_transparent_colour_becomes_alpha_or_is_said_dropped(
    pil: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mode: str,
    key: Any,
    target: str | None,
) -> None:
    """A colour key (PNG tRNS) on gray or RGB becomes alpha, as a keyed
    palette's does; 16-bit gray keeps its pixels and depth, and a note
    says the key is dropped."""
    pixels = make_pixels(mode, (12, 10))
    pixels[:3, :3] = key  # a keyed corner
    src = tmp_path / "in.png"
    to_image(pil, pixels, mode).save(src, transparency=key)
    code, out, err = run(["image", str(src), "-o", str(tmp_path / "o.png")], capsys)
    assert (code, err) == (0, ""), err
    with pil.open(tmp_path / "o.png") as im:
        assert im.mode == (target or mode)
    if target is None:
        assert "dropped the transparent colour (a colour key)" in out
        want = expected(decode(pil, src), "max", kernel_size=2, axes=(0, 1))
    else:
        assert f"pooled and written as {target}, the key as alpha" in out
        alpha = decode(pil, src, target)[..., -1]
        assert 0 < np.count_nonzero(alpha == 0) < alpha.size
        want = expected(decode(pil, src, target), "max", kernel_size=2, axes=(0, 1))
    np.testing.assert_array_equal(decode(pil, tmp_path / "o.png"), want)


@pytest.mark.parametrize("depth", [2, 4])
def test_a_colour_key_on_low_bit_gray_is_on_the_pixels_scale(
    pil: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], depth: int
) -> None:
    """Pillow widens 2- and 4-bit gray to 0..255 but not their key: ndpool
    widens the key too, so the keyed pixels become transparent."""
    top = 2**depth - 1
    pixels = np.random.default_rng(depth).integers(0, top + 1, (6, 9))
    pixels[0, 0] = top  # the key is there at least
    src = tmp_path / "in.png"
    write_png_gray(src, pixels, depth, top)
    argv = ["image", str(src), "-o", str(tmp_path / "o.png"), "--op", "min"]
    code, out, err = run(argv, capsys)  # min: a window with a keyed pixel is 0
    assert (code, err) == (0, ""), err
    assert "the key as alpha" in out
    gray = (pixels * (255 // top)).astype(np.uint8)
    alpha = np.where(pixels == top, 0, 255).astype(np.uint8)
    want = expected(np.stack([gray, alpha], -1), "min", kernel_size=2, axes=(0, 1))
    assert 0 < np.count_nonzero(want[..., 1] == 0) < want[..., 1].size
    np.testing.assert_array_equal(decode(pil, tmp_path / "o.png"), want)


def test_a_colour_key_on_sixteen_bit_colour_is_dropped(
    pil: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pillow reads 16-bit colour at 8 bits and its key at 16: no pixel
    matches as it should, so the key is dropped, with a note."""
    pixels = np.random.default_rng(3).integers(0, 65536, (6, 8, 3))
    key = struct.pack(">3H", *pixels[0, 0].tolist())
    src = tmp_path / "in.png"
    write_png16_rgb(src, pixels, key)
    code, out, err = run(["image", str(src), "-o", str(tmp_path / "o.png")], capsys)
    assert (code, err) == (0, ""), err
    assert "dropped the transparent colour (a colour key)" in out
    with pil.open(tmp_path / "o.png") as im:
        assert im.mode == "RGB"
    want = expected(decode(pil, src), "max", kernel_size=2, axes=(0, 1))
    np.testing.assert_array_equal(decode(pil, tmp_path / "o.png"), want)


def test_alpha_from_a_colour_key_to_a_format_without_alpha(
    pil: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The refusal says where the alpha came from: the input had none."""
    src = tmp_path / "in.png"
    to_image(pil, make_pixels("L", (6, 8)), "L").save(src, transparency=0)
    before = files(tmp_path)
    code, out, err = run(["image", str(src), "-o", str(tmp_path / "o.jpg")], capsys)
    assert_one_line_error(code, err, "(the alpha is the input's transparent colour)")
    assert out == ""
    assert files(tmp_path) == before


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


def write_tiff(
    path: Path, pixels: np.ndarray, fmt: int, *, big_endian: bool = False
) -> None:
    """Write gray ``pixels`` as a TIFF with SampleFormat ``fmt`` (1
    unsigned, 2 signed) by hand: Pillow writes neither signed 8 or 16 bits
    nor unsigned 32."""
    order, magic = (">", b"MM\x00*") if big_endian else ("<", b"II*\x00")
    h, w = pixels.shape
    data = pixels.astype(pixels.dtype.newbyteorder(order)).tobytes()
    bits = pixels.dtype.itemsize * 8
    tags = [(256, w), (257, h), (258, bits), (259, 1), (262, 1), (273, None)]
    tags += [(277, 1), (278, h), (279, len(data)), (339, fmt)]
    offset = 8 + 2 + 12 * len(tags) + 4
    ifd = b"".join(  # SHORT values, in the first two bytes of the value field
        struct.pack(f"{order}HHIHH", t, 3, 1, offset if v is None else v, 0)
        for t, v in tags
    )
    header = magic + struct.pack(f"{order}IH", 8, len(tags))
    path.write_bytes(header + ifd + b"\0\0\0\0" + data)


@pytest.mark.parametrize("big_endian", [False, True])
def test_signed_sixteen_bit_tiff_keeps_its_sign(
    pil: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    big_endian: bool,
) -> None:
    rng = np.random.default_rng(5)
    pixels = rng.integers(-32768, 32768, (6, 8), dtype=np.int16)
    pixels[0, :2] = -1000
    src = tmp_path / "s16.tif"
    write_tiff(src, pixels, 2, big_endian=big_endian)
    for op in ("min", "max", "avg"):
        dst = tmp_path / f"{op}.tif"
        code, out, err = run(["image", str(src), "-o", str(dst), "--op", op], capsys)
        assert (code, err) == (0, ""), err
        assert "signed 16-bit" in out
        with pil.open(dst) as im:
            assert im.mode == "I"
        want = expected(pixels.astype(np.int32), op, kernel_size=2, axes=(0, 1))
        np.testing.assert_array_equal(decode(pil, dst), want)
    assert decode(pil, tmp_path / "min.tif").min() < 0  # not wrapped to 64536


@pytest.mark.parametrize(
    "dtype", [np.int8, np.uint32], ids=["signed 8-bit", "unsigned 32-bit"]
)
def test_tiff_samples_pillow_misreads_are_pooled_as_they_are(
    pil: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dtype: Any,
) -> None:
    """Pillow reads signed 8-bit TIFF samples as unsigned, and unsigned
    32-bit ones as signed: ndpool pools the values the file holds."""
    info = np.iinfo(dtype)
    top = min(info.max, 2**31 - 1)  # unsigned 32 bits: up to 2**31 - 1 fit mode I
    rng = np.random.default_rng(7)
    pixels = rng.integers(info.min, top, (6, 8), endpoint=True).astype(dtype)
    pixels[0, :2] = (info.min, top)
    src = tmp_path / "in.tif"
    write_tiff(src, pixels, 2 if info.min < 0 else 1)
    for op in ("min", "max", "avg"):
        dst = tmp_path / f"{op}.tif"
        code, out, err = run(["image", str(src), "-o", str(dst), "--op", op], capsys)
        assert (code, err) == (0, ""), err
        bits = "signed 8-bit" if info.min < 0 else "unsigned 32-bit"
        assert f"has {bits} pixels" in out
        with pil.open(dst) as im:
            assert im.mode == "I"
        want = expected(pixels.astype(np.int64), op, kernel_size=2, axes=(0, 1))
        np.testing.assert_array_equal(decode(pil, dst), want)


def test_unsigned_32_bit_tiff_pixels_no_output_holds_are_refused(
    pil: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pixels of 2**31 and up: mode I would wrap them to negative."""
    big = np.array([[0, 1, 2**31, 2**32 - 1], [5, 6, 7, 8]], np.uint32)
    write_tiff(tmp_path / "u32.tif", big, 1)
    before = files(tmp_path)
    argv = ["image", str(tmp_path / "u32.tif"), "-o", str(tmp_path / "o.tif")]
    code, out, err = run(argv, capsys)
    assert_one_line_error(code, err, "2**31 or more")
    assert out == ""
    assert files(tmp_path) == before


@pytest.mark.parametrize("mode", ["L", "I;16", "RGB"])
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_tiff_orientation_is_applied_and_reported(
    pil: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mode: str,
    orientation: int,
) -> None:
    pixels = make_pixels(mode, (6, 10))
    image = to_image(pil, pixels, mode)
    exif = image.getexif()
    exif[0x0112] = orientation
    src, dst = tmp_path / "in.tif", tmp_path / "out.tif"
    image.save(src, exif=exif)
    code, out, err = run(["image", str(src), "-o", str(dst), "-k", "1"], capsys)
    assert (code, err) == (0, ""), err
    assert f"applied the TIFF orientation ({orientation})" in out
    rotate = {3: 2, 6: -1, 8: 1}[orientation]  # quarter turns, anticlockwise
    np.testing.assert_array_equal(decode(pil, dst), np.rot90(pixels, rotate))


@pytest.mark.parametrize("orientation", [0, 9])
def test_invalid_exif_orientation_is_ignored_and_said_so(
    pil: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    orientation: int,
) -> None:
    exif = pil.Exif()
    exif[0x0112] = orientation
    pixels = make_pixels("L", (8, 16))
    to_image(pil, pixels, "L").save(tmp_path / "in.png", exif=exif)
    dst = tmp_path / "o.png"
    code, out, _ = run(["image", str(tmp_path / "in.png"), "-o", str(dst)], capsys)
    assert code == 0
    assert "applied" not in out
    assert f"ignored the invalid orientation ({orientation})" in out
    want = expected(pixels, "max", kernel_size=2, axes=(0, 1))
    np.testing.assert_array_equal(decode(pil, dst), want)


def test_unreadable_exif_is_ignored_and_said_so(
    pil: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A PNG whose eXIf chunk is garbage still has pixels: pooled, with a
    note (Pillow raises on the EXIF only, after decoding them)."""
    pixels = make_pixels("L", (8, 16))
    to_image(pil, pixels, "L").save(tmp_path / "in.png", exif=b"garbage!" * 2)
    dst = tmp_path / "o.png"
    code, out, err = run(["image", str(tmp_path / "in.png"), "-o", str(dst)], capsys)
    assert (code, err) == (0, ""), err
    assert "ignored the unreadable EXIF data" in out
    want = expected(pixels, "max", kernel_size=2, axes=(0, 1))
    np.testing.assert_array_equal(decode(pil, dst), want)


def test_rgbx_is_pooled_as_rgb(pil: ModuleType) -> None:
    from ndpool._imageio import _decode

    rgbx = make_pixels("CMYK", (4, 6))  # any four 8-bit channels
    picture = _decode(to_image(pil, rgbx, "RGBX"), "x.tif")
    assert picture.mode == "RGB"
    np.testing.assert_array_equal(picture.pixels, rgbx[..., :3])
    assert any("RGBX" in note for note in picture.notes)


# --------------------------------------------------------------- output formats


def _output_formats() -> list[tuple[str, str]]:
    """Every (extension, mode) that ``ndpool image`` accepts to write."""
    from ndpool._imageio import _ALIASES, _OUTPUT_FORMATS

    cases = [
        (ext, mode) for ext, (_, modes) in _OUTPUT_FORMATS.items() for mode in modes
    ]
    aliases = {alias: _OUTPUT_FORMATS[ext][1] for alias, ext in _ALIASES.items()}
    return cases + [(ext, mode) for ext, modes in aliases.items() for mode in modes]


def _smooth(mode: str, shape: tuple[int, int]) -> np.ndarray:
    """A gradient for ``mode``: what a lossy format may be judged on."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    channels = {"RGB": 3, "CMYK": 4}.get(mode, 1)
    planes = [x * 5 + y * 2 + 15 * c for c in range(channels)]  # at most 246
    stacked = np.stack(planes, axis=-1).astype(np.uint8)
    return stacked[..., 0] if channels == 1 else stacked


@pytest.mark.parametrize(("ext", "mode"), _output_formats())
def test_output_format_round_trips_exactly(
    pil: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    ext: str,
    mode: str,
) -> None:
    """``-k 1`` writes back the decoded input: size, mode and every value."""
    from ndpool._imageio import read_image

    lossy = ext in (".jpg", ".jpeg")
    pixels = _smooth(mode, (24, 32)) if lossy else make_pixels(mode, (13, 17), 3)
    src, dst = tmp_path / "in.tif", tmp_path / f"out{ext}"
    to_image(pil, pixels, mode).save(src)
    code, out, err = run(["image", str(src), "-o", str(dst), "-k", "1"], capsys)
    assert (code, err) == (0, ""), err
    assert "note:" not in out
    got = read_image(str(dst))
    assert (got.mode, got.pixels.shape, got.pixels.dtype) == (
        mode,
        pixels.shape,
        pixels.dtype,
    )
    if lossy:  # quality 95
        assert np.abs(got.pixels.astype(float) - pixels).mean() < 2
    else:
        np.testing.assert_array_equal(got.pixels, pixels)


def test_output_formats_refuse_the_modes_they_change(
    pil: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ndpool._imageio import _MODES, _OUTPUT_FORMATS

    accepted = set(_output_formats())
    sources = {}
    for mode in _MODES:
        sources[mode] = tmp_path / f"{mode.replace(';', '')}.tif"
        to_image(pil, make_pixels(mode, (6, 8)), mode).save(sources[mode])
    before = files(tmp_path)
    refused = [
        (e, m) for e in _OUTPUT_FORMATS for m in _MODES if (e, m) not in accepted
    ]
    assert (".webp", "LA") in refused
    assert (".jpg", "1") in refused
    assert (".bmp", "RGBA") in refused
    for ext, mode in refused:
        argv = ["image", str(sources[mode]), "-o", str(tmp_path / f"o{ext}")]
        code, _, err = run(argv, capsys)
        assert_one_line_error(code, err, "cannot write the")
        assert "; use ." in err
    assert files(tmp_path) == before


REFUSED_EXTENSIONS = (
    *(".ico", ".icns", ".gif", ".dib", ".avif", ".mpo", ".pdf", ".eps", ".palm"),
    *(".apng", ".tga", ".jp2", ".im", ".pcx", ".qoi", ".xbm", ".blp", ".psd"),
)


@pytest.mark.parametrize("ext", REFUSED_EXTENSIONS)
def test_output_formats_that_change_pixels_are_refused(
    pil: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], ext: str
) -> None:
    src = tmp_path / "in.png"
    to_image(pil, make_pixels("RGB", (40, 60)), "RGB").save(src)
    before = files(tmp_path)
    code, _, err = run(["image", str(src), "-o", str(tmp_path / f"o{ext}")], capsys)
    assert_one_line_error(code, err, f"{ext!r}, which ndpool image does not write")
    assert ".png, .tif, .tiff, .webp, .bmp, .jpg, .jpeg, .pbm" in err
    assert files(tmp_path) == before


def test_docs_list_every_output_extension() -> None:
    from ndpool._imageio import _ALIASES, _OUTPUT_FORMATS

    docs = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    for ext in [*_OUTPUT_FORMATS, *_ALIASES]:
        assert f"`{ext}`" in docs, ext


# --------------------------------------------------------------- errors


def _error_cases(tmp: Path, pil: ModuleType) -> dict[str, tuple[list[str], str]]:
    """Named cases: argv and a piece of the expected one-line message."""
    good = tmp / "good.png"
    to_image(pil, make_pixels("RGB", (6, 8)), "RGB").save(good)
    rgba = tmp / "rgba.png"
    to_image(pil, make_pixels("RGBA", (6, 8)), "RGBA").save(rgba)
    deep = tmp / "deep.png"
    to_image(pil, make_pixels("I;16", (6, 8)), "I;16").save(deep)
    deep32 = tmp / "deep32.tif"
    to_image(pil, make_pixels("I", (6, 8)), "I").save(deep32)
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
            "--norm-type: must be positive",
        ),
        "norm not a number": (
            ["image", g, "-o", o, "--norm-type", "two"],
            "--norm-type",
        ),
        "norm nan": (
            ["image", g, "-o", o, "--op", "lp", "--norm-type", "nan"],
            "--norm-type: must be a number, not NaN",
        ),
        "norm -inf": (
            ["image", g, "-o", o, "--op", "lp", "--norm-type", "-inf"],
            "--norm-type: must be positive",
        ),
        "norm -1": (
            ["image", g, "-o", o, "--op", "lp", "--norm-type", "-1"],
            "--norm-type: must be positive",
        ),
        "32-bit to png": (
            ["image", str(deep32), "-o", str(tmp / "o.png")],
            ".png would lose bits; use .tif\n",
        ),
        "32-bit to pgm": (  # named as given: Pillow calls .pgm "PPM"
            ["image", str(deep32), "-o", str(tmp / "o.pgm")],
            ".pgm would lose bits; use .tif\n",
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
    "norm nan",
    "norm -inf",
    "norm -1",
    "32-bit to png",
    "32-bit to pgm",
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


@pytest.mark.parametrize(("ext", "side"), [(".jpg", 65500), (".webp", 16383)])
def test_a_result_too_long_for_its_format_is_refused(
    pil: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    ext: str,
    side: int,
) -> None:
    """JPEG takes 65,500 pixels a side and WebP 16,383: one more is refused
    on one line before writing (libjpeg printed a line of its own)."""
    src = tmp_path / "in.png"
    to_image(pil, make_pixels("RGB", (2, side + 1)), "RGB").save(src)
    before = files(tmp_path)
    argv = ["image", str(src), "-o", str(tmp_path / f"o{ext}"), "-k", "1"]
    code, out, err = run(argv, capsys)
    assert_one_line_error(code, err, f"at most {side} pixels a side")
    assert out == ""
    assert files(tmp_path) == before
    to_image(pil, make_pixels("RGB", (2, side)), "RGB").save(src)  # the limit
    assert run(argv, capsys)[0] == 0


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_one_new_file_by_two_names_is_refused(
    pil: ModuleType,
    mpl: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An output and a figure that reach one new file through a symlinked
    directory are refused, even with --force: the figure would replace
    the image."""
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    to_image(pil, make_pixels("L", (6, 8)), "L").save(tmp_path / "in.png")
    monkeypatch.chdir(tmp_path)
    before = files(tmp_path)
    argv = ["image", "in.png", "-o", "alias/x.png", "--compare", "real/x.png"]
    code, out, err = run([*argv, "--force"], capsys)
    assert_one_line_error(code, err, "same file as the figure")
    assert out == ""
    assert files(tmp_path) == before


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_two_new_files_with_one_normalised_name_are_both_written(
    pil: ModuleType,
    mpl: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``lnk/../out.png``, with ``lnk`` a symlink to ``a/b``, is
    ``a/out.png``, not ``./out.png``: the output and a figure of that
    name are two files."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    here = tmp_path / "c"
    here.mkdir()
    (here / "lnk").symlink_to(tmp_path / "a" / "b")
    src = tmp_path / "in.png"
    pixels = make_pixels("L", (6, 8))
    to_image(pil, pixels, "L").save(src)
    monkeypatch.chdir(here)
    argv = ["image", str(src), "-o", "lnk/../out.png", "--compare", "out.png"]
    code, _, err = run(argv, capsys)
    assert (code, err) == (0, "")
    want = expected(pixels, "max", kernel_size=2, axes=(0, 1))
    np.testing.assert_array_equal(decode(pil, tmp_path / "a" / "out.png"), want)
    with pil.open(here / "out.png") as figure:
        assert figure.size[0] > 8  # the figure, not the pooled image


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


@pytest.mark.parametrize("no_backup", [None, "output", "figure"])
@pytest.mark.parametrize("interrupt", [False, True])
def test_force_keeps_the_old_files_when_a_commit_fails(
    pil: ModuleType,
    mpl: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_backup: str | None,
    interrupt: bool,
) -> None:
    """All or nothing with --force: replacing the figure fails at the end.

    ``no_backup`` names a target that cannot be hard-linked (an immutable
    file, a file system without hard links): it must be replaced last.
    """
    src, out, fig = tmp_path / "in.png", tmp_path / "out.png", tmp_path / "fig.png"
    to_image(pil, make_pixels("RGB", (8, 8)), "RGB").save(src)
    out.write_bytes(b"old output")
    fig.write_bytes(b"old figure")
    before = files(tmp_path)
    real_replace, real_link = os.replace, os.link
    unlinkable = {"output": out, "figure": fig}.get(no_backup or "")

    def replace(a: Any, b: Any, *args: Any, **kwargs: Any) -> None:
        if Path(b) == fig:
            raise KeyboardInterrupt if interrupt else PermissionError(1, "immutable")
        real_replace(a, b, *args, **kwargs)

    def link(a: Any, b: Any, *args: Any, **kwargs: Any) -> None:
        if Path(a) == unlinkable:
            raise PermissionError(1, "Operation not permitted")
        real_link(a, b, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "link", link)
    argv = ["image", str(src), "-o", str(out), "--compare", str(fig), "--force"]
    code, out_text, err = run(argv, capsys)
    if interrupt:
        assert (code, err) == (130, "ndpool: interrupted\n")
    else:
        assert_one_line_error(code, err, "cannot write figure")
    assert out_text == ""
    assert files(tmp_path) == before  # old files intact, no temporary file


def test_force_reports_an_old_file_it_could_not_put_back(
    pil: ModuleType,
    mpl: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src, out, fig = tmp_path / "in.png", tmp_path / "out.png", tmp_path / "fig.png"
    to_image(pil, make_pixels("RGB", (8, 8)), "RGB").save(src)
    out.write_bytes(b"old output")
    fig.write_bytes(b"old figure")
    real_replace = os.replace
    onto_output: list[str] = []

    def replace(a: Any, b: Any, *args: Any, **kwargs: Any) -> None:
        if Path(b) == out:
            onto_output.append(str(a))
        if Path(b) == fig or len(onto_output) > 1:  # the figure, then the undo
            raise PermissionError(1, "Operation not permitted")
        real_replace(a, b, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    argv = ["image", str(src), "-o", str(out), "--compare", str(fig), "--force"]
    code, _, err = run(argv, capsys)
    assert_one_line_error(code, err, "could not put back the previous output")
    backup = Path(onto_output[1])
    assert repr(str(backup)) in err
    assert backup.read_bytes() == b"old output"  # nothing is lost
    assert fig.read_bytes() == b"old figure"
    leftovers = set(files(tmp_path)) - {"in.png", "out.png", "fig.png", backup.name}
    assert not leftovers


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chattr +i needs root"
)
def test_force_with_an_immutable_figure_keeps_the_old_output(
    pil: ModuleType, mpl: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fuzzing repro: the figure cannot be replaced (nor hard-linked)."""
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("no chattr")
    src, out, fig = tmp_path / "in.png", tmp_path / "out.png", tmp_path / "fig.png"
    to_image(pil, make_pixels("RGB", (8, 8)), "RGB").save(src)
    out.write_bytes(b"old output")
    fig.write_bytes(b"old figure")
    before = files(tmp_path)
    if subprocess.run([chattr, "+i", str(fig)], check=False).returncode != 0:
        pytest.skip("this file system has no immutable flag")
    try:
        argv = ["image", str(src), "-o", str(out), "--compare", str(fig), "--force"]
        code, _, err = run(argv, capsys)
    finally:
        subprocess.run([chattr, "-i", str(fig)], check=True)
    assert_one_line_error(code, err, "cannot write figure")
    assert files(tmp_path) == before


@pytest.mark.parametrize("stage", ["pool", "convert", "draw", "encode", "job", "disk"])
def test_out_of_memory_is_a_one_line_error(
    pil: ModuleType,
    mpl: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stage: str,
) -> None:
    from matplotlib.figure import Figure

    from ndpool import _imageio

    def oom(*args: Any, **kwargs: Any) -> None:
        raise MemoryError

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    owner, name = {
        "pool": (_imageio, "pool"),
        "convert": (_imageio, "_to_pil"),
        "draw": (Figure, "add_axes"),
        "encode": (pil.Image, "save"),
        "job": (_imageio, "run_image_job"),
        "disk": (_imageio, "pool"),
    }[stage]
    src = tmp_path / "in.png"
    to_image(pil, make_pixels("RGB", (8, 8)), "RGB").save(src)
    before = files(tmp_path)
    monkeypatch.setattr(owner, name, disk_full if stage == "disk" else oom)
    argv = ["image", str(src), "-o", str(tmp_path / "o.png")]
    code, out, err = run([*argv, "--compare", str(tmp_path / "f.png")], capsys)
    needle = "No space left on device" if stage == "disk" else "not enough memory"
    assert_one_line_error(code, err, needle)
    assert out == ""
    assert files(tmp_path) == before


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_while_writing_leaves_nothing(
    pil: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = tmp_path / "in.png"
    to_image(pil, make_pixels("RGB", (8, 8)), "RGB").save(src)
    before = files(tmp_path)
    received: list[int] = []

    def record(signum: int, frame: Any) -> None:  # the caller's own handler
        received.append(signum)

    def save(self: Any, fp: Any, *args: Any, **kwargs: Any) -> None:
        fp.write(b"\x89PNG half of an image")
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # Python runs the handler between bytecodes
            fp.write(b"more")

    monkeypatch.setattr(pil.Image, "save", save)
    previous = signal.signal(signal.SIGTERM, record)
    try:
        code, out, err = run(["image", str(src), "-o", str(tmp_path / "o.png")], capsys)
        after = signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert (code, out, err) == (143, "", "ndpool: terminated\n")
    assert after is record  # restored
    assert received == []
    assert files(tmp_path) == before


def test_main_works_outside_the_main_thread(
    pil: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No SIGTERM handler there (only the main thread may set one)."""
    codes: list[int] = []
    argv = ["image", "-k", "4", "-o", str(tmp_path / "o.png")]
    worker = threading.Thread(target=lambda: codes.append(main(argv)))
    worker.start()
    worker.join()
    assert codes == [0]
    assert (tmp_path / "o.png").is_file()


# --------------------------------------------------------------- odd paths


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_fifo_without_a_writer_is_an_error(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    cmd = [sys.executable, "-m", "ndpool", "image", str(fifo), "-o", "o.png"]
    # the timeout is only a safety net: this used to block forever in open()
    done = subprocess.run(
        cmd, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=600
    )
    assert_one_line_error(done.returncode, done.stderr, "is empty (a pipe with no")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


@pytest.mark.skipif(not os.path.isdir("/dev/fd"), reason="no /dev/fd")
@pytest.mark.parametrize("in_memory", [True, False])
def test_pipe_with_a_writer_is_read(
    pil: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    in_memory: bool,
) -> None:
    """``ndpool image <(cat in.png)`` reads /dev/fd/N, a pipe with a writer,
    copied in memory or, past ``_SPOOL_BYTES``, to a temporary file."""
    from ndpool import _imageio

    if not in_memory:
        monkeypatch.setattr(_imageio, "_SPOOL_BYTES", 1000)
    src = tmp_path / "in.png"
    pixels = make_pixels("RGB", (300, 200))  # more than a pipe buffer holds
    to_image(pil, pixels, "RGB").save(src, compress_level=0)
    data = src.read_bytes()
    assert len(data) > 65536
    r, w = os.pipe()

    def feed() -> None:
        try:
            os.write(w, data)
        finally:
            os.close(w)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        argv = ["image", f"/dev/fd/{r}", "-o", str(tmp_path / "o.png")]
        code, _, err = run(argv, capsys)
    finally:
        writer.join()
        os.close(r)
    assert (code, err) == (0, "")
    want = expected(pixels, "max", kernel_size=2, axes=(0, 1))
    np.testing.assert_array_equal(decode(pil, tmp_path / "o.png"), want)


@pytest.mark.skipif(not os.path.isdir("/dev/fd"), reason="no /dev/fd")
def test_a_pipe_longer_than_the_limit_is_refused(
    pil: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pipe is read into memory up to ``PIPE_BYTES`` (1 GiB), then
    refused, so an endless one (an image, then bytes for ever) neither
    hangs the command nor fills the memory. Here the pipe ends, at five
    times the limit, so that reading it whole fails the test, not hangs
    it."""
    from ndpool import _imageio

    monkeypatch.setattr(_imageio, "PIPE_BYTES", 200_000)
    src = tmp_path / "in.png"
    to_image(pil, make_pixels("L", (8, 8)), "L").save(src)
    head, filler = src.read_bytes(), b"\0" * 65536
    r, w = os.pipe()

    def feed() -> None:
        try:
            os.write(w, head)
            for _ in range(5 * 200_000 // len(filler)):
                os.write(w, filler)
        except OSError:  # the reader closed the pipe
            pass
        finally:
            os.close(w)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        argv = ["image", f"/dev/fd/{r}", "-o", str(tmp_path / "o.png")]
        code, out, err = run(argv, capsys)
    finally:
        os.close(r)
        writer.join(timeout=30)
    assert not writer.is_alive()
    assert_one_line_error(code, err, "gives more than 200,000 bytes")
    assert out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_process_substitution(pil: ModuleType, tmp_path: Path) -> None:
    to_image(pil, make_pixels("L", (8, 8)), "L").save(tmp_path / "in.png")
    script = f"{shlex.quote(sys.executable)} -m ndpool image <(cat in.png) -o o.png"
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True
    )
    assert (done.returncode, done.stderr) == (0, "")
    want = expected(decode(pil, tmp_path / "in.png"), "max", kernel_size=2, axes=(0, 1))
    np.testing.assert_array_equal(decode(pil, tmp_path / "o.png"), want)


@pytest.mark.parametrize("stem", ["a" * 251, "é" * 125, "b" * 242])
def test_longest_legal_output_names_work(
    pil: ModuleType,
    mpl: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    stem: str,
) -> None:
    name, figure = stem + ".png", stem[:-1] + "f.svg"  # up to 255 bytes each
    assert len(os.fsencode(name)) <= 255
    src = tmp_path / "in.png"
    to_image(pil, make_pixels("L", (8, 8)), "L").save(src)
    argv = ["image", str(src), "-o", str(tmp_path / name)]
    code, _, err = run([*argv, "--compare", str(tmp_path / figure)], capsys)
    assert (code, err) == (0, "")
    assert sorted(files(tmp_path)) == sorted(["in.png", name, figure])


def test_too_long_output_name_blames_the_output(
    pil: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.png"
    to_image(pil, make_pixels("L", (8, 8)), "L").save(src)
    before = files(tmp_path)
    name = "a" * 252 + ".png"  # 256 bytes
    code, _, err = run(["image", str(src), "-o", str(tmp_path / name)], capsys)
    assert_one_line_error(code, err, "output name is too long (256 bytes")
    assert files(tmp_path) == before


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_full_stdout_is_one_line_and_keeps_the_files(
    pil: ModuleType, tmp_path: Path
) -> None:
    from ndpool._sample import sample_image

    cmd = [sys.executable, "-m", "ndpool", "image", "-o", "a.png"]
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            cmd, cwd=tmp_path, stdout=full, stderr=subprocess.PIPE, text=True
        )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert "cannot write to standard output" in done.stderr
    assert "the files were written" in done.stderr
    want = ndpool.pool(sample_image(), 2, axes=(0, 1))
    np.testing.assert_array_equal(decode(pil, tmp_path / "a.png"), want)


@pytest.mark.parametrize(
    "argv", [["image", "-o", "b.png"], ["image", "--help"], ["--version"]]
)
def test_closed_stdout_pipe_exits_quietly(
    pil: ModuleType, tmp_path: Path, argv: list[str]
) -> None:
    """``ndpool image | head -0``: exit 1, no traceback, Python's convention.

    (argparse itself ignores a failing stdout for --help and --version.)
    """
    r, w = os.pipe()
    os.close(r)  # nobody reads: writing gives EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ndpool", *argv],
            cwd=tmp_path,
            stdout=w,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        os.close(w)
    assert done.stderr == ""
    if "-o" in argv:
        assert done.returncode == 1
        assert (tmp_path / "b.png").is_file()
    else:
        assert done.returncode in (0, 1)


def test_failing_stdout_in_process(
    pil: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Broken:
        def __init__(self, exc: OSError) -> None:
            self.exc = exc

        def write(self, text: str) -> int:
            raise self.exc

        def flush(self) -> None:
            raise self.exc

    argv = ["image", "-k", "4", "--force", "-o", str(tmp_path / "o.png")]
    monkeypatch.setattr(sys, "stdout", Broken(BrokenPipeError(32, "Broken pipe")))
    assert main(argv) == 1
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys, "stdout", Broken(OSError(28, "No space left")))
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "cannot write to standard output ([Errno 28] No space left)" in err
    assert (tmp_path / "o.png").is_file()


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


@pytest.mark.parametrize(("dark", "light"), [(0.0, 100.0), (-3.4e38, 3.4e38)])
def test_compare_float_image_with_nan_and_inf(
    pil: ModuleType,
    mpl: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dark: float,
    light: float,
) -> None:
    """Panels use the finite range: not blank, no warning leaks (nor the
    float32 overflow of a range wider than 3.4e38)."""
    pixels = np.full((20, 30), dark, dtype=np.float32)
    pixels[:, 15:] = light
    pixels[0, 0], pixels[0, 1], pixels[1, 0] = np.inf, -np.inf, np.nan
    src, fig = tmp_path / "in.tif", tmp_path / "fig.png"
    to_image(pil, pixels, "F").save(src)
    argv = ["image", str(src), "-o", str(tmp_path / "o.tif"), "--compare", str(fig)]
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        code, out, err = run(argv, capsys)
    assert (code, err) == (0, "")
    assert [str(w.message) for w in leaked] == []
    assert "note:" not in out
    with pil.open(fig) as im:
        shown = np.asarray(im.convert("L"))
    assert (shown == 0).sum() > 50_000  # the dark halves of both panels
    assert (shown == 255).sum() > 50_000


def test_compare_all_nan_image(
    pil: ModuleType, mpl: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.tif"
    to_image(pil, np.full((6, 8), np.nan, dtype=np.float32), "F").save(src)
    argv = ["image", str(src), "-o", str(tmp_path / "o.tif")]
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        code, _, err = run([*argv, "--compare", str(tmp_path / "f.png")], capsys)
    assert (code, err) == (0, "")
    assert [str(w.message) for w in leaked] == []


def test_every_listed_figure_format_is_written(
    pil: ModuleType,
    mpl: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What the error message lists works; .pgf (needs LaTeX) is not listed."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["image", "-o", "o.png", "--compare", "f.xyz"], capsys)
    assert_one_line_error(code, err, "matplotlib writes .")
    listed = err.split("matplotlib writes ")[1].split(" (see")[0].strip().split(", ")
    assert ".png" in listed
    assert ".pgf" not in listed
    code, _, err = run(["image", "-o", "o.png", "--compare", "f.pgf"], capsys)
    assert_one_line_error(code, err, "'.pgf'")
    for ext in listed:
        fig = f"f{ext}"
        code, _, err = run(["image", "-o", "o.png", "--compare", fig, "-f"], capsys)
        assert (code, err) == (0, ""), (ext, err)
        assert (tmp_path / fig).stat().st_size > 0
    assert sorted(files(tmp_path)) == sorted(["o.png", *(f"f{e}" for e in listed)])


def test_warnings_become_one_line_notes(
    pil: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A TIFF tag that claims more data than the file has: Pillow warns."""
    ok = tmp_path / "ok.tif"
    to_image(pil, np.full((8, 8), 5, dtype=np.uint8), "L").save(ok)
    data = bytearray(ok.read_bytes())
    offset = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[offset : offset + 2])[0]):
        entry = offset + 2 + 12 * i
        if struct.unpack("<H", data[entry : entry + 2])[0] == 278:  # RowsPerStrip
            data[entry + 2 : entry + 8] = struct.pack("<HI", 4, 1000)
    src = tmp_path / "warn.tif"
    src.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        code, out, err = run(["image", str(src), "-o", str(tmp_path / "o.png")], capsys)
    assert (code, err) == (0, "")
    assert [str(w.message) for w in leaked] == []
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    assert notes == [
        f"note: reading {src}: Tag data larger than file. Skipping tag 278"
    ]


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
    assert_one_line_error(code, err, "cannot create a temporary file for the output")
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


# --------------------------------------------------------------- memory

#: Peak resident memory of the command it is given, in the units of
#: ``ru_maxrss`` (KiB on Linux, bytes on macOS).
_PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def peak_rss(args: list[str], cwd: Path) -> int:
    """Peak resident memory, in bytes, of ``python -m ndpool image ARGS``."""
    cmd = [sys.executable, "-c", _PEAK_RSS, sys.executable, "-m", "ndpool", "image"]
    done = subprocess.run(
        [*cmd, *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1]) * (1 if sys.platform == "darwin" else 1024)


@pytest.fixture(scope="module")
def big_gray(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8192x8192 8-bit gray PGM: 64 MiB decoded, quick to write and read."""
    side = 8192
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("big") / "big.pgm"
    with path.open("wb") as fh:
        fh.write(f"P5\n{side} {side}\n255\n".encode())
        for _ in range(0, side, 1024):  # a band at a time: keep pytest small
            fh.write(rng.integers(0, 256, (1024, side), dtype=np.uint8).tobytes())
    return path


@pytest.mark.skipif(sys.platform == "win32", reason="needs the resource module")
@pytest.mark.parametrize(("op", "compare"), [("lp", False), ("avg", True)])
def test_peak_memory_is_a_few_times_the_image(
    pil: ModuleType, big_gray: Path, tmp_path: Path, op: str, compare: bool
) -> None:
    """A large image costs a few times its decoded size, not 25-50 times.

    Measured on this 64 MiB image, above the interpreter's own: 25x for a
    2x2 Lp pool done in one ndpool call (float64 copies of the image) and
    50x for a comparison figure drawn from the full-resolution input, before
    ``ndpool image`` pooled bands of rows and reduced large panels; 2.3x
    since (Pillow's decoded copy and the pixels array, at decoding). The
    bound leaves room for other allocators and thread counts.
    """
    if compare:
        pytest.importorskip("matplotlib")
    small = tmp_path / "small.pgm"
    small.write_bytes(b"P5\n8 8\n255\n" + bytes(64))
    extra = ["--compare", "fig.png"] if compare else []
    options = ["--op", op, "-o", "out.pgm", *extra]
    base = peak_rss([str(small), *options], tmp_path)
    peak = peak_rss([str(big_gray), *options, "--force"], tmp_path)
    decoded = 8192 * 8192
    assert (peak - base) / decoded < 8, f"{(peak - base) / 2**20:.0f} MiB"
    with pil.open(tmp_path / "out.pgm") as im:
        assert im.size == (4096, 4096)
    if compare:
        with pil.open(tmp_path / "fig.png") as im:
            assert im.size == (1060, 588)  # panels of 512x512, as for any size


@given(data=st.data())
def test_pool_pixels_in_bands_is_bit_identical(data: st.DataObject) -> None:
    """Pooled a band of rows at a time, every output byte is the one call's.

    Bands a few windows high (``_BAND_BYTES`` tiny) cut the image at every
    place relative to the windows; float sums are compared bit for bit (a
    band cut naively changes the order of their terms, and a band of fewer
    windows than its kernel has rows is folded another way by ndpool).
    """
    from ndpool import _imageio

    draw = data.draw
    dtype = draw(st.sampled_from(["bool", "uint8", "uint16", "int32", "float32"]))
    channels = draw(st.sampled_from([(), (1,), (3,), (4,)]))
    tall = draw(st.booleans())  # big kernels and strides, fewer windows
    height = draw(st.integers(40, 400) if tall else st.integers(4, 60))
    shape = (height, draw(st.integers(2, 12)), *channels)
    pixels = _band_pixels(draw(st.integers(0, 2**32 - 1)), dtype, shape)
    op = draw(st.sampled_from(["max", "min", "avg", "lp"]))
    kernel = (draw(st.integers(1, 40 if tall else 7)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 40 if tall else 6)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, 1)))
    ceil_mode = draw(st.booleans())
    p = draw(st.sampled_from([1.0, 2.0, 0.5, 2.5, 7.0, math.inf]))
    band_bytes = draw(st.one_of(st.just(1), st.integers(2, 300)))
    options: dict[str, Any] = {"stride": stride, "padding": padding, "axes": (0, 1)}
    want: np.ndarray | ValueError
    try:
        want = expected(
            pixels, op, kernel_size=kernel, ceil_mode=ceil_mode, norm_type=p, **options
        )
    except ValueError as exc:
        want = exc
    calls: list[tuple[int, ...]] = []
    real_pool = _imageio.pool

    def spy(x: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        calls.append(x.shape)
        return real_pool(x, *args, **kwargs)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(_imageio, "_BAND_BYTES", band_bytes)
        m.setattr(_imageio, "pool", spy)
        args = (pixels, op, kernel, stride, padding)
        if isinstance(want, ValueError):  # the same message as the one call
            with pytest.raises(ValueError, match=re.escape(str(want))):
                _imageio.pool_pixels(*args, ceil_mode=ceil_mode, norm_type=p)
            return
        got = _imageio.pool_pixels(*args, ceil_mode=ceil_mode, norm_type=p)
    assert (got.dtype, got.shape) == (want.dtype, want.shape)
    assert got.tobytes() == want.tobytes()
    bands = [s for s in calls if s[1:] == shape[1:]]
    # a band has at least a kernel height of output rows
    cut = want.shape[0] > kernel[0] and want.shape[1] > 1 and shape[0] >= kernel[0]
    if band_bytes == 1 and cut:
        assert len(bands) > 1  # it was cut (NaN or not)


@pytest.mark.parametrize(
    ("shape", "op", "kernel", "stride", "padding", "ceil_mode"),
    [
        # cut plainly, a band's sums would start with the top padding's taps
        ((200, 50), "avg", (5, 3), (1, 1), (2, 1), False),
        ((200, 50), "lp", (4, 3), (1, 1), (1, 1), False),
        # a band of fewer windows than kernel rows: ndpool would fold it
        # window by window, the image tap by tap
        ((255, 18), "lp", (42, 1), (45, 1), (6, 0), False),
        ((498, 6), "avg", (55, 2), (41, 1), (18, 0), True),
    ],
)
def test_pool_pixels_in_bands_hard_cases(
    monkeypatch: pytest.MonkeyPatch,
    shape: tuple[int, int],
    op: str,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    ceil_mode: bool,
) -> None:
    """Float sums that come out different, in the last bits, in bands cut
    less carefully."""
    from ndpool import _imageio

    pixels = (np.random.default_rng(1).standard_normal(shape) * 100).astype("f4")
    options = {"stride": stride, "padding": padding, "ceil_mode": ceil_mode}
    want = expected(pixels, op, kernel_size=kernel, axes=(0, 1), **options)
    monkeypatch.setattr(_imageio, "_BAND_BYTES", 2000)
    got = _imageio.pool_pixels(pixels, op, kernel, **options)
    assert got.tobytes() == want.tobytes()


def _band_pixels(seed: int, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Pixels for the banding property: full ranges, and the floats that
    make sums order-sensitive (signed zeros, infinities, subnormals; NaN,
    sometimes, of both signs)."""
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype != "float32":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    x = (rng.standard_normal(shape) * 1e3).astype(np.float32)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, 1e-44, 3e38], dtype=np.float32)
    if rng.random() < 0.2:
        specials = np.append(specials, [np.nan, -np.nan]).astype(np.float32)
    where = rng.random(shape) < 0.3
    x[where] = rng.choice(specials, int(where.sum()))
    return x


#: EXIF orientation -> the Pillow transpose that ``ImageOps.exif_transpose``
#: applies for it.
EXIF_TRANSPOSE = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}


@pytest.mark.parametrize("turn", range(1, 9))
@pytest.mark.parametrize(
    ("mode", "convert"),
    [("RGB", None), ("1", None), ("I;16B", None), ("F", None), ("P", "RGBA")],
)
def test_pixels_are_copied_from_pillow_in_strips(
    pil: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    turn: int,
    mode: str,
    convert: str | None,
) -> None:
    """A row (or column) at a time, turned and converted as Pillow does."""
    from ndpool import _imageio

    monkeypatch.setattr(_imageio, "_BAND_BYTES", 1)  # one row a strip
    if mode == "P":
        im = to_image(pil, make_pixels("L", (7, 5)), "L").convert("P")
        im.info["transparency"] = 3
    elif mode == "I;16B":
        pixels = make_pixels("I;16", (7, 5)).astype(">u2")
        im = pil.frombytes(mode, (5, 7), pixels.tobytes())
    else:
        im = to_image(pil, make_pixels(mode, (7, 5)), mode)
    want = (
        im.transpose(getattr(pil.Transpose, EXIF_TRANSPOSE[turn])) if turn > 1 else im
    )
    want = np.asarray(want.convert(convert) if convert else want)
    dtype = np.dtype(np.uint16) if mode == "I;16B" else None
    got = _imageio._pixels_of(im, turn, convert, dtype)
    assert got.dtype == (dtype or want.dtype.newbyteorder("="))
    np.testing.assert_array_equal(got, want)


def test_large_panels_are_drawn_from_block_means(
    mpl: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above ``_PANEL_SOURCE`` pixels a side, a panel draws block means,
    worked out a band of rows at a time (bands of whole blocks)."""
    from ndpool import _imageio

    monkeypatch.setattr(_imageio, "_PANEL_SOURCE", 4)
    monkeypatch.setattr(_imageio, "_BAND_BYTES", 8 * 30)  # 3 rows of floats
    rgb = make_pixels("RGB", (11, 9))
    data, options, factor = _imageio._panel(rgb, "RGB", None)
    assert (factor, data.shape, data.dtype, options) == (3, (4, 3, 3), np.uint8, {})
    block = rgb[9:11, 3:6].reshape(-1, 3).mean(axis=0)  # a partial block
    np.testing.assert_array_equal(data[3, 1], np.rint(block))
    gray = np.array([[np.nan, np.inf, 1, 2], [np.nan, -np.inf, 3, 4]], np.float32)
    gray = np.tile(gray, (3, 2))  # 6 x 8: blocks of 2 x 2
    data, options, factor = _imageio._panel(gray, "F", (1.0, 4.0))
    assert (factor, data.shape, data.dtype) == (2, (3, 4), np.float64)
    assert options == {"cmap": "gray", "vmin": 1.0, "vmax": 4.0}
    np.testing.assert_array_equal(data[0], [2.5, 2.5, 2.5, 2.5])  # inf clipped
    small = make_pixels("L", (4, 3))
    data, _, factor = _imageio._panel(small, "L", None)
    assert factor == 1
    assert data is small  # drawn as it is, as before


@pytest.mark.parametrize("mode", ["1", "LA", "RGBA", "I;16", "I", "F", "CMYK"])
def test_compare_figure_of_a_large_image(
    pil: ModuleType,
    mpl: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    mode: str,
) -> None:
    """Every mode draws reduced panels (here from 8 pixels a side up)."""
    from ndpool import _imageio

    monkeypatch.setattr(_imageio, "_PANEL_SOURCE", 8)
    monkeypatch.setattr(_imageio, "_BAND_BYTES", 64)
    pixels = make_pixels(mode, (30, 20))
    if mode == "F":
        pixels[0, :3] = [np.nan, np.inf, -np.inf]
    src, fig = tmp_path / "in.tif", tmp_path / "fig.png"
    to_image(pil, pixels, mode).save(src)
    argv = ["image", str(src), "-o", str(tmp_path / "o.tif"), "--compare", str(fig)]
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        code, out, err = run([*argv, "--op", "avg", "-k", "1"], capsys)
    assert (code, err) == (0, "")
    assert [str(w.message) for w in leaked] == []
    assert "note:" not in out
    with pil.open(fig) as im:
        size = im.size
        shown = np.asarray(im.convert("L"))
    assert len(np.unique(shown)) > 10  # drawn, not blank
    monkeypatch.setattr(_imageio, "_PANEL_SOURCE", 1024)
    assert run([*argv, "--op", "avg", "-k", "1", "--force"], capsys)[0] == 0
    with pil.open(fig) as im:
        assert im.size == size  # the panels' size follows the image's only
        assert not np.array_equal(np.asarray(im.convert("L")), shown)
