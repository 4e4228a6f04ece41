"""Image files for ``ndpool image``: read, pool, write atomically, compare.

Pillow and matplotlib are imported inside the functions that need them, so
this module (and ``import ndpool``) stays cheap. Every failure a user can
cause surfaces as :class:`ImageCLIError` with a one-line message; the command
line turns it into exit code 2. Warnings from Pillow, NumPy or matplotlib
become one-line notes.

Images are decoded channels-last, ``(H, W)`` or ``(H, W, C)``, and pooled
over axes ``(0, 1)`` as one :func:`ndpool.pool` call would (a large image a
band of rows at a time, bit for bit the same). The result keeps the
input's mode and bit depth: max and min keep the pixel values, average and
Lp are rounded to nearest (ties to even) and clipped to the bit depth.

Memory: the peak is about twice the decoded image (Pillow's copy and the
pixels array, while the one is copied to the other), whatever the image
size: pixels are copied out of Pillow, pooled and reduced for the figure
a band of about ``_BAND_BYTES`` at a time, and dropped before the output
is encoded.

>>> import numpy as np
>>> img = np.array([[0, 255], [1, 2]], dtype=np.uint8)
>>> pool_pixels(img, "avg", (2, 2))
array([[64]], dtype=uint8)
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import secrets
import stat
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, cast

import numpy as np
import numpy.typing as npt

from .pooling import pool

if TYPE_CHECKING:
    from types import ModuleType

    from PIL import Image as PILImage

__all__ = [
    "ImageCLIError",
    "ImageJob",
    "Picture",
    "pool_pixels",
    "read_image",
    "run_image_job",
]

Pixels = npt.NDArray[Any]

#: Pillow modes pooled as they are: mode -> what the pixels are.
_MODES = {
    "1": "bilevel",
    "L": "8-bit gray",
    "LA": "8-bit gray + alpha",
    "RGB": "8-bit RGB",
    "RGBA": "8-bit RGBA",
    "CMYK": "8-bit CMYK",
    "I;16": "16-bit gray",
    "I": "32-bit integer gray",
    "F": "32-bit float gray",
}
#: Modes decoded in another mode: the pooled result is written in that one.
_CONVERT = {
    "P": "RGB",
    "PA": "RGBA",
    "RGBX": "RGB",
    "I;16L": "I;16",
    "I;16B": "I;16",
}
#: Modes whose transparent colour (PNG tRNS) becomes an alpha channel.
_KEYED = {"1": "LA", "L": "LA", "RGB": "RGBA"}
#: Why a mode is converted, for the note that says so.
_CONVERT_WHY = {
    "P": "is a palette image",
    "PA": "is a palette image",
    "RGBX": "is RGBX (the 4th channel is padding)",
}
#: Output extension -> (Pillow format, modes it writes and reads back
#: exactly; JPEG is the one lossy format). Checked by tests/test_cli.py.
_OUTPUT_FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    ".png": ("PNG", ("1", "L", "LA", "RGB", "RGBA", "I;16")),
    ".tif": ("TIFF", ("1", "L", "LA", "RGB", "RGBA", "CMYK", "I;16", "I", "F")),
    ".webp": ("WEBP", ("RGB", "RGBA")),
    ".bmp": ("BMP", ("1", "L", "RGB")),
    ".jpg": ("JPEG", ("L", "RGB", "CMYK")),
    ".pbm": ("PPM", ("1",)),
    ".pgm": ("PPM", ("L", "I;16")),
    ".ppm": ("PPM", ("RGB",)),
    ".pnm": ("PPM", ("1", "L", "RGB", "I;16")),
    ".pfm": ("PPM", ("F",)),
}
#: Other spellings of the extensions above.
_ALIASES = {".tiff": ".tif", ".jpeg": ".jpg"}
#: Save options that keep the pooled pixels (as far as the format allows).
_SAVE_OPTIONS: dict[str, dict[str, Any]] = {
    "WEBP": {"lossless": True, "exact": True},  # exact: keep RGB under alpha 0
    "JPEG": {"quality": 95},
}
#: Figure formats matplotlib lists but cannot write here (pgf needs LaTeX).
_FIGURE_EXCLUDED = frozenset({"pgf"})
#: Longest piece of the output name kept in a temporary file's name, in
#: bytes: the random suffix must fit in the file system's 255.
_TEMP_BASE_BYTES = 200
_ORIENTATION = 0x0112  # the EXIF / TIFF orientation tag
#: Bytes of work done at a time on a large image: the strips copied out of
#: Pillow, the rows pooled together (counting the float64 copies in which
#: average and Lp accumulate integers; see :func:`pool_pixels`), the rows
#: a figure panel is reduced from. Peak memory stays a few times the
#: decoded image, whatever its size.
_BAND_BYTES = 1 << 23


class ImageCLIError(Exception):
    """A failure the user can fix: reported in one line, exit code 2."""


@dataclass(frozen=True)
class Picture:
    """Decoded pixels and how to write them back.

    Attributes
    ----------
    pixels : ndarray, shape (H, W) or (H, W, C)
        Channels-last, native byte order: bool for mode ``"1"``, uint8,
        uint16 (``"I;16"``), int32 (``"I"``) or float32 (``"F"``).
    mode : str
        Pillow mode the pooled result is written in.
    name : str
        File name (or ``"sample"``), for messages and default output names.
    notes : tuple of str
        Things the user should know (a palette converted, a frame dropped).
    info : dict
        Pillow save options carried over (``icc_profile``).
    alpha_from : str
        What the alpha channel was made from, when the input had none (a
        colour key, a palette's transparency); empty otherwise.
    """

    pixels: Pixels
    mode: str
    name: str
    notes: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)
    alpha_from: str = ""

    def describe(self, pixels: Pixels | None = None) -> str:
        """Return ``"512x512 RGB"``-style text for ``pixels`` (default own)."""
        arr = self.pixels if pixels is None else pixels
        return f"{arr.shape[1]}x{arr.shape[0]} {self.mode}"


@dataclass(frozen=True)
class ImageJob:
    """One ``ndpool image`` run, as parsed from the command line.

    Attributes
    ----------
    input : str or None
        Image file to read; ``None`` for the built-in sample.
    output : str or None
        File to write; ``None`` for a name that says what was done, in the
        current directory.
    op : {"max", "min", "avg", "lp"}
        Pooling operation.
    kernel, stride, padding : tuple of int
        ``(height, width)``; ``stride=None`` means the kernel.
    ceil_mode : bool
        Round the output size up, as PyTorch.
    norm_type : float
        ``p`` of ``op="lp"``.
    compare : str or None
        Also write a side-by-side figure of input and result here.
    force : bool
        Overwrite existing output files.
    """

    input: str | None
    output: str | None
    op: str = "max"
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] = (0, 0)
    ceil_mode: bool = False
    norm_type: float = 2.0
    compare: str | None = None
    force: bool = False


def _pillow() -> ModuleType:
    """Import ``PIL.Image`` or say how to install it."""
    try:
        from PIL import Image
    except ImportError:
        msg = "reading images needs Pillow: pip install 'ndpool[image]'"
        raise ImageCLIError(msg) from None
    Image.init()  # register every plugin: formats and extensions
    return Image


def _one_line(exc: BaseException | str) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _or_list(items: list[str]) -> str:
    """``"a, b or c"``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


@contextlib.contextmanager
def _warnings_as_notes(
    notes: list[str], context: str, errors: tuple[type[Warning], ...] = ()
) -> Iterator[None]:
    """Collect the warnings raised inside as one-line notes, once each.

    Deprecation warnings are for programmers and are dropped; the
    ``errors`` categories are raised as exceptions instead.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for quiet in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.simplefilter("ignore", quiet)
        for category in errors:
            warnings.simplefilter("error", category)
        yield
    for warning in caught:
        note = f"{context}: {_one_line(warning.message)}"
        if note not in notes:
            notes.append(note)


@contextlib.contextmanager
def _resource_errors(what: str) -> Iterator[None]:
    """Turn running out of memory (or an ``OSError``) while doing ``what``
    into a one-line error."""
    try:
        yield
    except MemoryError:
        msg = f"not enough memory to {what}"
        raise ImageCLIError(msg) from None
    except OSError as exc:
        msg = f"cannot {what}: {_one_line(exc)}"
        raise ImageCLIError(msg) from None


# ----------------------------------------------------------------- reading


def sample_picture() -> Picture:
    """Return the built-in sample as a :class:`Picture`."""
    from ._sample import SAMPLE_NAME, sample_image

    return Picture(sample_image(), "RGB", SAMPLE_NAME)


def _open_input(path: str) -> IO[bytes]:
    """Open ``path`` for reading; a pipe is read into memory.

    ``O_NONBLOCK`` keeps ``open`` from waiting forever for the writer of a
    FIFO; blocking reads are restored at once, so a pipe with a writer
    (``<(cat x.png)``) is read to its end and one without reads as empty.
    Pillow, given a file object rather than a name, also never memory-maps
    the file: its mapped path scrambles L and I;16 TIFFs with orientation
    5-8 (Pillow 13).
    """
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0)
    if sys.platform != "win32":
        flags |= os.O_NONBLOCK
    fd = os.open(path, flags)
    try:
        if sys.platform != "win32":
            import fcntl

            blocking = fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK
            fcntl.fcntl(fd, fcntl.F_SETFL, blocking)
        info = os.fstat(fd)
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    if stat.S_ISREG(info.st_mode) and info.st_size > 0:
        return fh
    if not stat.S_ISREG(info.st_mode) and fh.seekable():  # /dev/zero and such
        return fh
    with fh:  # Pillow needs to seek: it would read a pipe whole anyway
        copy, size = _read_up_to(fh, PIPE_BYTES, path)
    if not size:
        copy.close()
        where = "" if stat.S_ISREG(info.st_mode) else " (a pipe with no writer?)"
        msg = f"input {path!r} is empty{where}: not an image"
        raise ImageCLIError(msg)
    return copy


#: the most a pipe may give: more than any one image under Pillow's
#: decompression-bomb limit takes uncompressed (89.5 megapixels of 8 bytes)
PIPE_BYTES = 1 << 30
#: a pipe's copy stays in memory up to this size, then goes to a temporary file
_SPOOL_BYTES = 1 << 26
_CHUNK = 1 << 20


def _read_up_to(fh: IO[bytes], limit: int, path: str) -> tuple[IO[bytes], int]:
    """A seekable copy of all of ``fh`` (in memory while small, else in a
    temporary file that goes when closed) and its size; refused past
    ``limit`` bytes (a pipe that never ends). Read a chunk at a time:
    ``read(limit)`` would allocate it all."""
    copy = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115 (returned open)
    size = 0
    try:
        while chunk := fh.read(min(_CHUNK, limit + 1 - size)):
            size += len(chunk)
            if size > limit:
                msg = (
                    f"input {path!r} gives more than {limit:,} bytes: ndpool "
                    "image reads a pipe up to that; save it to a file first"
                )
                raise ImageCLIError(msg)
            copy.write(chunk)
    except BaseException:
        copy.close()
        raise
    copy.seek(0)
    return copy, size


def read_image(path: str) -> Picture:
    """Decode an image file completely, refusing anything suspicious.

    Parameters
    ----------
    path : str
        Image file in any format Pillow reads (or a pipe, such as
        ``/dev/fd/63``).

    Returns
    -------
    Picture
        The first frame's pixels, with its EXIF or TIFF orientation
        applied; Pillow's warnings are in its notes.

    Raises
    ------
    ImageCLIError
        Missing, empty, unreadable, truncated or corrupt file, an image
        over Pillow's ``Image.MAX_IMAGE_PIXELS`` (decompression bomb), or
        a mode ndpool cannot pool.
    """
    image_mod = _pillow()
    if not os.path.exists(path):
        msg = f"input {path!r} does not exist"
        raise ImageCLIError(msg)
    if os.path.isdir(path):
        msg = f"input {path!r} is a directory, not an image"
        raise ImageCLIError(msg)
    try:
        fh = _open_input(path)
    except PermissionError:
        msg = f"cannot read input {path!r}: permission denied"
        raise ImageCLIError(msg) from None
    except MemoryError:
        msg = f"input {path!r} is too large to read in memory"
        raise ImageCLIError(msg) from None
    except OSError as exc:
        msg = f"cannot read input {path!r}: {_one_line(exc)}"
        raise ImageCLIError(msg) from None
    notes: list[str] = []
    # Pillow warns above MAX_IMAGE_PIXELS and raises above twice it:
    # refuse both, before any pixel is decoded.
    bomb = (image_mod.DecompressionBombWarning,)
    try:
        with (
            fh,
            _warnings_as_notes(notes, f"reading {path}", errors=bomb),
            image_mod.open(fh) as im,
        ):
            picture = _decode(im, path)
    except ImageCLIError:
        raise
    except (image_mod.DecompressionBombError, image_mod.DecompressionBombWarning):
        limit = image_mod.MAX_IMAGE_PIXELS
        msg = (
            f"input {path!r} is larger than Pillow's limit of {limit} pixels "
            "(possible decompression bomb); refusing to decode it"
        )
        raise ImageCLIError(msg) from None
    except image_mod.UnidentifiedImageError:
        msg = f"input {path!r} is not an image file Pillow can read"
        raise ImageCLIError(msg) from None
    except PermissionError:
        msg = f"cannot read input {path!r}: permission denied"
        raise ImageCLIError(msg) from None
    except MemoryError:
        msg = f"input {path!r} is too large to decode in memory"
        raise ImageCLIError(msg) from None
    except Exception as exc:  # Pillow raises many types for bad data
        msg = f"cannot decode input {path!r} (truncated or corrupt?): {_one_line(exc)}"
        raise ImageCLIError(msg) from None
    return dataclasses.replace(picture, notes=(*picture.notes, *notes))


def _rawmode(args: Any) -> str:
    """The raw mode of a Pillow tile: the first of its decoder arguments."""
    return str(args[0] if isinstance(args, tuple) and args else args)


def _tiff_sample(tags: Any) -> tuple[int, int] | None:
    """A TIFF's (SampleFormat, BitsPerSample) when every sample has the
    same (1 unsigned, 2 signed, 3 float; a missing SampleFormat is 1);
    None for anything else."""
    if tags is None:
        return None

    def one(tag: int, default: int | None) -> int | None:
        value = tags.get(tag, default)
        values = set(value) if isinstance(value, tuple) else {value}
        if len(values) != 1:
            return None
        (only,) = values
        return only if isinstance(only, int) else None

    kind, bits = one(339, 1), one(258, None)
    return None if kind is None or bits is None else (kind, bits)


def _decode(im: PILImage.Image, path: str) -> Picture:
    """Load ``im`` fully and return its pixels channels-last."""
    notes: list[str] = []
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        notes.append(f"{path} has {frames} frames; pooling the first")
    rawmodes = [_rawmode(t.args) for t in getattr(im, "tile", None) or ()]
    deep = any(";16" in r for r in rawmodes)
    signed = any(re.fullmatch(r"I;16[BLN]?S", r) for r in rawmodes)
    # Pillow applies a TIFF's orientation while loading and drops the tag.
    tags = getattr(im, "tag_v2", None)
    tiff_orientation = tags.get(_ORIENTATION) if tags is not None else None
    im.load()  # decode every byte now: truncation and corruption fail here
    if deep and im.mode in ("LA", "RGB", "RGBA"):
        notes.append(
            f"{path} has 16 bits a channel but Pillow decodes {im.mode} at 8 bits; "
            "the output is 8-bit"
        )
    try:
        orientation = im.getexif().get(_ORIENTATION)
    except Exception as exc:  # the pixels decoded: only the EXIF is broken
        orientation = None
        notes.append(f"ignored the unreadable EXIF data of {path}: {_one_line(exc)}")
    by_pillow = orientation is None and tiff_orientation is not None
    if by_pillow:
        orientation = tiff_orientation
    turn = 1  # the EXIF orientation still to apply (Pillow applied a TIFF's)
    if orientation in range(2, 9):
        if not by_pillow:
            turn = int(cast(int, orientation))
        kind = "TIFF" if by_pillow else "EXIF"
        notes.append(f"applied the {kind} orientation ({orientation}) of {path}")
    elif orientation not in (None, 1):
        notes.append(f"ignored the invalid orientation ({orientation!r}) of {path}")
    mode = im.mode
    sample = _tiff_sample(tags)
    # Pillow 13 decodes signed 8-bit gray as unsigned (L; it opens no
    # signed 8-bit colour), and unsigned 32 bits as signed (I), 2**31 and
    # up wrapped to negative
    signed8 = sample == (2, 8) and mode == "L"
    unsigned32 = sample == (1, 32) and mode == "I"
    if mode == "P" and (
        "transparency" in im.info or (im.palette and im.palette.mode == "RGBA")
    ):
        mode = "PA"
    convert = None
    # a 16-bit key does not match pixels Pillow reads at 8 bits
    keyed = "transparency" in im.info and mode in _KEYED and not deep
    if keyed and mode == "L":
        _scale_gray_key(im, rawmodes)
    if mode in _CONVERT_WHY:  # pooling palette indices would be meaningless
        convert = _CONVERT[mode]
        notes.append(
            f"{path} {_CONVERT_WHY[mode]}: pooled and written as {_CONVERT[mode]}"
        )
    elif keyed:  # the key becomes alpha, as a keyed palette's does
        convert = _KEYED[mode]
        notes.append(
            f"{path} has a transparent colour (a colour key): pooled and "
            f"written as {convert}, the key as alpha"
        )
    elif "transparency" in im.info and mode != "PA":
        why = (
            "Pillow reads its 16-bit pixels at 8 bits, the key at 16"
            if deep and mode in _KEYED
            else f"ndpool image writes no {mode} image with alpha"
        )
        notes.append(f"dropped the transparent colour (a colour key) of {path}: {why}")
    if keyed:
        target = _KEYED[mode]
    elif (mode == "I" and signed) or signed8 or unsigned32:
        # no format ndpool writes keeps these: 32-bit signed holds them all
        kind = "signed 16-bit" if signed else "signed 8-bit"
        target = "I"
        notes.append(
            f"{path} has {'unsigned 32-bit' if unsigned32 else kind} pixels: "
            "pooled and written as 32-bit signed integers (mode I)"
        )
    elif mode in _CONVERT:
        target = _CONVERT[mode]
    elif mode == "I" and deep:  # a 16-bit file that Pillow decodes as "I"
        target = "I;16"
    elif mode in _MODES:
        target = mode
    else:
        msg = (
            f"input {path!r} has image mode {mode!r}, which ndpool image does not "
            f"pool; supported: {', '.join([*_MODES, *_CONVERT])}"
        )
        raise ImageCLIError(msg)
    # native byte order; I;16 as 0..65535 whichever way Pillow decoded it
    dtype = np.dtype(np.uint16) if target == "I;16" else None
    pixels = _pixels_of(im, turn, convert, dtype)
    if signed8:
        pixels = pixels.view(np.int8).astype(np.int32)
    if unsigned32 and pixels.size and pixels.min() < 0:
        msg = (
            f"input {path!r} has unsigned 32-bit pixels of 2**31 or more, "
            "which no format ndpool image writes holds (Pillow reads them as "
            "negative 32-bit integers); convert it to 16 bits or float first"
        )
        raise ImageCLIError(msg)
    info = {"icc_profile": im.info["icc_profile"]} if "icc_profile" in im.info else {}
    alpha_from = (
        "the input's transparent colour"
        if keyed
        else "the palette's transparency"
        if mode == "PA"
        else ""
    )
    return Picture(pixels, target, Path(path).name, tuple(notes), info, alpha_from)


def _scale_gray_key(im: PILImage.Image, rawmodes: list[str]) -> None:
    """Put the colour key of 1, 2 or 4-bit gray on its pixels' scale:
    Pillow widens those pixels to 0..255 (times 255, 85 or 17) but keeps
    the key as the file gives it (Pillow 13)."""
    bits = {int(m[1]) for r in rawmodes if (m := re.fullmatch(r"L;([124])", r))}
    key = im.info["transparency"]
    if len(bits) == 1 and isinstance(key, int):
        (b,) = bits
        im.info["transparency"] = key * (255 // (2**b - 1))


#: EXIF orientation -> (what ``ImageOps.exif_transpose`` does, as a NumPy
#: view of channels-last pixels; whether it swaps height and width).
_TURNS: dict[int, tuple[Callable[[Pixels], Pixels], bool]] = {
    1: (lambda a: a, False),
    2: (lambda a: a[:, ::-1], False),  # FLIP_LEFT_RIGHT
    3: (lambda a: a[::-1, ::-1], False),  # ROTATE_180
    4: (lambda a: a[::-1], False),  # FLIP_TOP_BOTTOM
    5: (lambda a: a.swapaxes(0, 1), True),  # TRANSPOSE
    6: (lambda a: np.rot90(a, -1), True),  # ROTATE_270
    7: (lambda a: a[::-1, ::-1].swapaxes(0, 1), True),  # TRANSVERSE
    8: (lambda a: np.rot90(a), True),  # ROTATE_90
}


def _pixels_of(
    im: PILImage.Image, turn: int, convert: str | None, dtype: np.dtype[Any] | None
) -> Pixels:
    """Copy the pixels of ``im`` into a new channels-last array.

    ``im`` is copied a strip of about ``_BAND_BYTES`` at a time, each
    strip converted to mode ``convert`` (if given) and turned to EXIF
    orientation ``turn``: the pixels are never held twice, beside Pillow's
    own copy, as ``np.asarray(im)`` (a ``bytes`` copy), a whole-image
    ``convert`` or ``ImageOps.exif_transpose`` would. Every step maps
    pixels to pixels, so the result is what those give, in ``dtype``
    (default: the one NumPy reads, in native byte order).
    """
    transform, swapped = _TURNS[turn]
    width, height = im.size
    rows = width if swapped else height  # of the result
    backwards = turn in (3, 4, 7, 8)  # result rows run back over the source

    def strip(top: int, bottom: int) -> Pixels:
        """Result rows ``top:bottom``: a strip of source rows (or columns)."""
        lo, hi = (rows - bottom, rows - top) if backwards else (top, bottom)
        part = im.crop((lo, 0, hi, height) if swapped else (0, lo, width, hi))
        if convert is not None:
            part = part.convert(convert)
        return transform(np.asarray(part))

    if width == 0 or height == 0:
        whole = strip(0, rows)
        return whole.astype(dtype or whole.dtype.newbyteorder("="))
    first = strip(0, 1)
    out = np.empty((rows, *first.shape[1:]), dtype or first.dtype.newbyteorder("="))
    step = max(1, _BAND_BYTES // max(1, first.nbytes))
    for top in range(0, rows, step):
        bottom = min(rows, top + step)
        out[top:bottom] = strip(top, bottom)
    return out


# ----------------------------------------------------------------- pooling


def pool_pixels(
    pixels: Pixels,
    op: str,
    kernel: tuple[int, int],
    stride: tuple[int, int] | None = None,
    padding: tuple[int, int] = (0, 0),
    *,
    ceil_mode: bool = False,
    norm_type: float = 2.0,
) -> Pixels:
    """Pool the two image axes of ``pixels``, keeping its dtype.

    Parameters
    ----------
    pixels : ndarray, shape (H, W) or (H, W, C)
        Channels-last image: bool, an integer dtype or float.
    op : {"max", "min", "avg", "lp"}
        Pooling operation (PyTorch semantics: padded cells never win a max
        or min and count as zeros in an average).
    kernel, stride, padding : tuple of int
        ``(height, width)`` window, step and padding.
    ceil_mode : bool
        Round the output size up.
    norm_type : float
        ``p`` of the true p-norm ``(sum |x|**p) ** (1/p)`` for ``op="lp"``.

    Returns
    -------
    ndarray
        Same dtype as ``pixels``; for integer pixels average and Lp are
        rounded to nearest (ties to even) and clipped to the dtype's range,
        never wrapped. A bilevel (bool) average is set where more than
        half the window is set.

    Notes
    -----
    The result is ``ndpool.pool(pixels, kernel, op=op, axes=(0, 1), ...,
    dtype=pixels.dtype)``, bit for bit (but for the bits of a NaN, all
    written as NumPy's ``nan``), but a large image is pooled a band
    of rows at a time (:func:`_pool_in_bands`). In one call, the average
    and Lp of 8-bit pixels hold float64 copies of them (column sums 4
    times the image for a 2x2 average; ``|x|`` and ``|x| ** p``, 8 times
    it each, for Lp): about 8 and 25 times the image at the peak. In
    bands, the extra memory is a few times ``_BAND_BYTES`` (8 MiB). Every
    NaN of a float result is written as NumPy's ``nan`` (:func:`_one_nan`).

    Examples
    --------
    >>> import numpy as np
    >>> rgb = np.array([[[250, 0, 9]] * 2] * 2, dtype=np.uint8)
    >>> pool_pixels(rgb, "lp", (2, 2))  # 2-norm 500 is clipped to 255
    array([[[255,   0,  18]]], dtype=uint8)
    """

    def pooled(part: Pixels) -> Pixels:
        arr = part.astype(np.uint8) if part.dtype == np.bool_ else part
        out = pool(
            arr,
            kernel,
            op=cast(Literal["max", "min", "avg", "lp"], op),  # checked by pool
            axes=(0, 1),
            stride=stride,
            padding=padding,
            ceil_mode=ceil_mode,
            norm_type=norm_type if op == "lp" else None,
            dtype=arr.dtype,
        )
        result: Pixels = out.astype(np.bool_) if part.dtype == np.bool_ else out
        return result

    # average and Lp of integers work on float64 copies of the cells
    work = pixels.dtype.itemsize if pixels.dtype.kind == "f" else 8
    expansion = max(1, work // pixels.dtype.itemsize) if op in ("avg", "lp") else 1
    height = pixels.shape[0]
    if height < 2 or pixels.nbytes * expansion <= 2 * _BAND_BYTES:
        return _one_nan(pooled(pixels))
    rows = max(1, _BAND_BYTES // max(1, pixels.nbytes // height * expansion))
    step = stride or kernel
    bands = _pool_in_bands(pixels, pooled, kernel, step, padding, ceil_mode, rows)
    return _one_nan(bands)


def _one_nan(out: Pixels) -> Pixels:
    """``out`` with every NaN written as NumPy's ``nan``.

    Which of two NaNs a sum or max passes on, and so the sign and payload
    of the NaN it gives, depends on where NumPy's loops meet the cells,
    which banding moves: the image writes one NaN, whatever the bands.
    """
    if out.dtype.kind == "f":
        nan = np.isnan(out)
        if nan.any():
            out[nan] = np.nan
    return out


def _output_length(length: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    """The output length ndpool gives one axis, from a 1-D pool of zeros."""
    probe = pool(
        np.zeros((length, 1), dtype=np.uint8),
        (k, 1),
        axes=(0, 1),
        stride=(s, 1),
        padding=(p, 0),
        ceil_mode=ceil_mode,
    )
    return int(probe.shape[0])


def _aligned(minimum: int, residue: int, step: int) -> int:
    """The smallest ``n >= minimum`` with ``n % step == residue % step``."""
    return minimum + (residue - minimum) % step


def _pool_in_bands(
    pixels: Pixels,
    pooled: Callable[[Pixels], Pixels],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    ceil_mode: bool,
    rows: int,
) -> Pixels:
    """``pooled(pixels)``, a band of about ``rows`` input rows at a time.

    Each band is pooled on its own, in a copy of the rows its windows read
    between rows of ones (at least a kernel high): the band's first window
    (over the ones) starts in the top padding as the image's first window
    does, and its last one ends past the band as the image's last window
    ends past the image (the copy is as long as the image, modulo the
    stride). So every window has the same cells as in the image, and every
    tap the same windows: ndpool's sums (and max, min) take the same
    numbers in the same order, bit for bit, whatever the dtype. A band cut
    out plainly would start its sums with taps that the image's first
    windows lack, and round floats differently. A band has at least as
    many windows as the kernel has rows, so ndpool folds it tap by tap, as
    it folds the image (both would otherwise be pooled in one call). The
    windows over the ones are dropped; the first and last bands are the
    image's own top and bottom rows. Degenerate shapes are pooled in one
    call.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    height, width = pixels.shape[:2]
    try:  # the real call reports bad arguments in its own words
        out_rows = _output_length(height, kh, sh, ph, ceil_mode)
        out_cols = _output_length(width, kw, sw, pw, ceil_mode)
    except (ValueError, TypeError, OverflowError):
        return pooled(pixels)
    # output rows a band: at least as many as the kernel has rows, so that
    # ndpool folds the band as it folds the image, tap by tap (it folds
    # an axis window by window where its taps outnumber its windows);
    # then a band past the first starts at or below row 0 (ph <= kh / 2)
    per = max(kh, (rows - kh) // sh + 1)
    if out_rows <= per or out_cols < 2 or height < kh:
        return pooled(pixels)
    out: Pixels | None = None
    r0 = 0
    while r0 < out_rows:
        r1 = min(out_rows, r0 + per)
        hi = (r1 - 1) * sh - ph + kh  # past the band's last window
        if r1 == out_rows or hi > height:
            r1, hi = out_rows, height
        lo = 0 if r0 == 0 else r0 * sh - ph
        above = 0 if r0 == 0 else _aligned(kh, lo, sh)
        body = hi - lo
        below = 0 if r1 == out_rows else _aligned(kh + sh, height - above - body, sh)
        length = above + body + below  # == height, modulo the stride
        band = np.ones((length, *pixels.shape[1:]), pixels.dtype)
        band[above : above + body] = pixels[lo:hi]
        result = pooled(band)
        del band
        # the band's windows are the image's, shifted by whole strides
        shift = (lo - above) // sh
        if result.shape[:2] != (out_rows - (height - length) // sh, out_cols):
            return pooled(pixels)  # never: the lengths reproduce the windows
        if out is None:
            out = np.empty((out_rows, *result.shape[1:]), result.dtype)
        out[r0:r1] = result[r0 - shift : r1 - shift]
        r0 = r1
    assert out is not None
    return out


# ----------------------------------------------------------------- writing


def _to_pil(pixels: Pixels, mode: str) -> PILImage.Image:
    """Build a Pillow image of ``mode`` from channels-last ``pixels``."""
    image_mod = _pillow()
    image: PILImage.Image
    if mode == "1":
        image = image_mod.fromarray(np.ascontiguousarray(pixels, dtype=np.bool_))
    else:
        dtype = {"I;16": "<u2", "I": "=i4", "F": "=f4"}.get(mode, "u1")
        raw = np.ascontiguousarray(pixels, dtype=dtype)  # read in place: no bytes
        size = (pixels.shape[1], pixels.shape[0])
        image = image_mod.frombytes(mode, size, raw)
    return image


def _extension(path: str) -> str:
    """The output extension of ``path``, lower case, aliases resolved."""
    ext = Path(path).suffix.lower()
    return _ALIASES.get(ext, ext)


def _image_format(path: str) -> str:
    """Return the Pillow format that writes ``path``, from its extension.

    Only formats that give back exactly what was written are accepted
    (JPEG, lossy, is the documented exception).
    """
    ext = _extension(path)
    if ext not in _OUTPUT_FORMATS:
        shown = Path(path).suffix
        what = f"extension {shown!r}" if shown else "no extension"
        accepted = [
            spelling
            for e in _OUTPUT_FORMATS
            for spelling in (e, *(a for a, same in _ALIASES.items() if same == e))
        ]
        msg = (
            f"output {path!r} has {what}, which ndpool image does not write; "
            f"use {_or_list(accepted)}"
        )
        raise ImageCLIError(msg)
    return _OUTPUT_FORMATS[ext][0]


#: the longest side each output format takes, where it is short of 2**31
_MAX_SIDE = {"JPEG": 65500, "WEBP": 16383}


def _check_dimensions(pooled: Pixels, fmt: str, path: str) -> None:
    """Refuse a result too wide or tall for ``fmt`` before writing it (the
    encoder would fail with a vaguer message, libjpeg on two lines)."""
    limit = _MAX_SIDE.get(fmt)
    height, width = pooled.shape[:2]
    if limit is not None and max(height, width) > limit:
        msg = (
            f"cannot write the {width}x{height} result to {path!r}: {fmt} "
            f"takes at most {limit} pixels a side; use .png or .tif"
        )
        raise ImageCLIError(msg)


def _check_writable(picture_mode: str, path: str, alpha_from: str = "") -> None:
    """Refuse a format that would not keep the mode, the bits or the alpha
    (``alpha_from``: what an alpha made on reading was made from)."""
    ext = _extension(path)
    fmt, modes = _OUTPUT_FORMATS[ext]
    if picture_mode in modes:
        return
    # named by the extension given (Pillow writes .pgm and .pfm as "PPM")
    shown = Path(path).suffix or fmt
    if picture_mode in ("I;16", "I", "F"):
        why = f"{shown} would lose bits"
    elif picture_mode in ("LA", "RGBA") and not {"LA", "RGBA"} & set(modes):
        why = f"{shown} has no alpha channel"
        if alpha_from:
            why += f" (the alpha is {alpha_from})"
    else:
        plural = "s" if len(modes) > 1 else ""
        why = f"{ext} writes only mode{plural} {', '.join(modes)}"
    fits = [e for e, (_, keeps) in _OUTPUT_FORMATS.items() if picture_mode in keeps]
    kind = _MODES[picture_mode]
    if picture_mode not in kind.split():
        kind += f" ({picture_mode})"
    msg = f"cannot write the {kind} result to {path!r}: {why}; use {_or_list(fits)}"
    raise ImageCLIError(msg)


def _figure_format(path: str) -> str:
    """Return the matplotlib format that writes ``path``, from its extension."""
    figure_cls = _figure_class()
    ext = Path(path).suffix.lower().lstrip(".")
    supported = set(figure_cls().canvas.get_supported_filetypes()) - _FIGURE_EXCLUDED
    if ext not in supported:
        msg = (
            f"figure {path!r} has extension {'.' + ext if ext else '(none)'!r}; "
            f"matplotlib writes {', '.join('.' + e for e in sorted(supported))}"
        )
        raise ImageCLIError(msg)
    return ext


def _figure_class() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        msg = "--compare needs matplotlib: pip install 'ndpool[image]'"
        raise ImageCLIError(msg) from None
    return Figure


def _name_max(directory: str) -> int:
    """The longest file name, in bytes, that ``directory`` takes."""
    try:
        limit = os.pathconf(directory, "PC_NAME_MAX")
    except (AttributeError, ValueError, OSError):
        return 255
    return limit if limit > 0 else sys.maxsize


def _check_target(path: str, force: bool, what: str) -> None:
    """Fail early, before any work, if ``path`` cannot or must not be written."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        problem = (
            "is not a directory" if os.path.exists(directory) else "does not exist"
        )
        msg = f"{what} directory {directory!r} {problem}"
        raise ImageCLIError(msg)
    if not os.access(directory, os.W_OK | os.X_OK):
        msg = f"{what} directory {directory!r} is not writable"
        raise ImageCLIError(msg)
    name_bytes, limit = len(os.fsencode(os.path.basename(path))), _name_max(directory)
    if name_bytes > limit:
        msg = (
            f"{what} name is too long ({name_bytes} bytes; {directory!r} takes "
            f"at most {limit}): {path!r}"
        )
        raise ImageCLIError(msg)
    if os.path.isdir(path):
        msg = f"{what} {path!r} is a directory"
        raise ImageCLIError(msg)
    if os.path.lexists(path) and not force:
        msg = f"{what} {path!r} already exists; use --force to overwrite it"
        raise ImageCLIError(msg)


def _entry(path: str) -> str:
    """The directory entry a write to ``path`` replaces (``os.replace``
    swaps the entry, not a file a symlink there points to): its directory
    with every symlink resolved, and its name. The directory is resolved
    as given, not normalised first: ``link/..`` is the parent of the
    link's target, not the current directory."""
    directory, name = os.path.split(path)
    return os.path.join(os.path.realpath(directory or "."), name)


def _same_file(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` name one file: the same directory entry
    (even one not created yet, through symlinked directories), or one
    existing file by two names (hard links, symlinks)."""
    if _entry(a) == _entry(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): two new entries
        return False


def _temp_path(path: str) -> str:
    """Return a new hidden name next to ``path``, random and never too long."""
    directory, base = os.path.split(path)
    while len(os.fsencode(base)) > _TEMP_BASE_BYTES:
        base = base[:-1]
    return os.path.join(directory or ".", f".{base}.{secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def _staged(
    path: str, write: Callable[[IO[bytes]], None], what: str, fmt: str
) -> Iterator[str]:
    """Write a temporary file next to ``path``; remove it unless committed.

    The temporary file is created in the target directory (so the final
    rename is atomic, on one file system) with the permissions a new file
    gets from the umask.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = _temp_path(path)
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as exc:
            directory = os.path.dirname(path) or "."
            msg = (
                f"cannot create a temporary file for the {what} {path!r} in "
                f"{directory!r}: {_one_line(exc)}"
            )
            raise ImageCLIError(msg) from None
    try:
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
        except MemoryError:
            msg = f"not enough memory to write the {what} {path!r} as {fmt}"
            raise ImageCLIError(msg) from None
        except Exception as exc:  # encoders raise many types
            msg = f"cannot write {what} {path!r} as {fmt}: {_one_line(exc)}"
            raise ImageCLIError(msg) from None
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _commit(tmp: str, path: str, force: bool, what: str) -> None:
    """Move ``tmp`` to ``path`` atomically; without ``force``, never clobber."""
    exists = f"{what} {path!r} already exists; use --force to overwrite it"
    try:
        if force:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)  # fails if path exists, even if just created
        except FileExistsError:
            raise ImageCLIError(exists) from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
                raise
            if os.path.lexists(path):  # no hard links here: check, then rename
                raise ImageCLIError(exists) from None
            os.replace(tmp, path)
    except OSError as exc:
        msg = f"cannot write {what} {path!r}: {_one_line(exc)}"
        raise ImageCLIError(msg) from None


def _backup(path: str) -> str | None:
    """Hard-link the existing ``path`` to a hidden name; None if impossible."""
    while True:
        backup = _temp_path(path)
        try:
            os.link(path, backup, follow_symlinks=False)  # a symlink stays one
        except FileExistsError:
            continue
        except (OSError, NotImplementedError):
            return None
        return backup


def _commit_all(staged: list[tuple[str, str, str]], force: bool) -> None:
    """Move staged ``(tmp, path, what)`` files into place: all or none.

    Without ``force`` nothing existing is touched, and a file created by
    this run is removed again if a later one fails. With ``force`` each
    existing target is first hard-linked to a hidden backup and put back
    if a later step fails. A target that cannot be backed up (a file
    system without hard links, an immutable file) is replaced last: only
    when both targets are like that can a failure leave the first one
    replaced.
    """
    plan: list[tuple[bool, str, str, str, str | None]] = []
    done: list[tuple[str, str, str | None]] = []
    kept: list[str] = []
    try:
        for tmp, path, what in staged:
            existed = force and os.path.lexists(path)
            backup = _backup(path) if existed else None
            plan.append((existed and backup is None, tmp, path, what, backup))
        plan.sort(key=lambda step: step[0])  # stable: the unrecoverable last
        for _, tmp, path, what, backup in plan:
            _commit(tmp, path, force, what)
            done.append((path, what, backup))
    except BaseException as exc:
        problems: list[str] = []
        for path, what, backup in reversed(done):
            try:
                if backup is None:
                    os.unlink(path)  # created by this run
                else:
                    os.replace(backup, path)  # the previous file, back
            except OSError:
                if backup is not None:
                    kept.append(backup)
                    problems.append(
                        f"; could not put back the previous {what} {path!r}, "
                        f"it is kept as {backup!r}"
                    )
        if problems and isinstance(exc, ImageCLIError):
            raise ImageCLIError(f"{exc}{''.join(problems)}") from None
        raise
    finally:
        for *_, backup in plan:
            if backup is not None and backup not in kept:
                with contextlib.suppress(OSError):
                    os.unlink(backup)


def _image_writer(
    image: PILImage.Image, fmt: str, info: dict[str, Any]
) -> Callable[[IO[bytes]], None]:
    def write(fh: IO[bytes]) -> None:
        image.save(fh, format=fmt, **_SAVE_OPTIONS.get(fmt, {}), **info)

    return write


# ----------------------------------------------------------------- figure


def _display(pixels: Pixels, mode: str) -> tuple[Pixels, dict[str, Any]]:
    """Return an array ``imshow`` shows as intended, and its options."""
    if mode in ("1", "L", "I;16", "I", "F"):
        full = {"1": 1, "L": 255, "I;16": 65535}.get(mode)
        if pixels.dtype == np.bool_:
            pixels = pixels.astype(np.uint8)
        elif pixels.dtype == np.float32:  # a span past 3.4e38 overflows float32
            pixels = pixels.astype(np.float64)
        return pixels, {"cmap": "gray", "vmin": 0, "vmax": full}
    if mode == "LA":
        gray = pixels[..., :1]
        return np.concatenate([gray, gray, gray, pixels[..., 1:]], axis=-1), {}
    if mode in ("RGB", "RGBA"):
        return pixels, {}
    rgb = np.asarray(_to_pil(pixels, mode).convert("RGB"))  # CMYK
    return rgb, {}


def _finite_range(pixels: Pixels) -> tuple[float, float]:
    """Smallest and largest finite value (NaN and inf ignored); 0, 1 if none.

    Found a band of rows at a time: no mask or copy of the whole image.
    """
    lo, hi = np.inf, -np.inf
    for top, bottom in _row_spans(pixels, _BAND_BYTES):
        band = pixels[top:bottom]
        finite = band[np.isfinite(band)] if band.dtype.kind == "f" else band
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    return (0.0, 1.0) if lo > hi else (lo, hi)


def _row_spans(pixels: Pixels, nbytes: int, multiple: int = 1) -> list[tuple[int, int]]:
    """``(top, bottom)`` row spans of about ``nbytes`` each (a whole
    ``multiple`` of rows, but the last), covering every row."""
    height = pixels.shape[0]
    row = max(1, pixels.nbytes // max(1, height))
    step = multiple * max(1, nbytes // (row * multiple))
    return [(top, min(height, top + step)) for top in range(0, height, step)]


#: Longest side, in pixels, of the image a figure panel is drawn from. The
#: panels are at most 512 pixels wide; matplotlib's resampling takes some
#: 50 bytes a pixel of what it is given, so a larger image is first reduced
#: to block means (see :func:`_panel`).
_PANEL_SOURCE = 1024


def _block_means(data: Pixels, factor: int) -> Pixels:
    """Means of ``factor`` x ``factor`` blocks of ``data`` (fewer cells in
    the last row and column of blocks); NaN cells are left out (NaN if
    all are). 8-bit colour stays 8-bit, rounded; the rest is float64."""
    rows = np.arange(0, data.shape[0], factor)
    cols = np.arange(0, data.shape[1], factor)
    values: Pixels = data
    count: Pixels | None = None
    if data.dtype.kind == "f":
        nan = np.isnan(data)
        if nan.any():
            values = np.where(nan, 0.0, data)
            real = (~nan).astype(np.float64)
            count = np.add.reduceat(np.add.reduceat(real, rows, 0), cols, 1)
    sums = np.add.reduceat(values, rows, axis=0, dtype=np.float64)
    sums = np.add.reduceat(sums, cols, axis=1)
    if count is None:
        heights = np.diff(np.append(rows, data.shape[0]))
        widths = np.diff(np.append(cols, data.shape[1]))
        count = np.multiply.outer(heights, widths).astype(np.float64)
        if sums.ndim == 3:
            count = count[..., None]
    with np.errstate(invalid="ignore"):  # 0 / 0: a block of NaN
        means: Pixels = sums / count
    if data.dtype == np.uint8 and data.ndim == 3:  # RGB(A): imshow reads 0..255
        means = np.rint(means).astype(np.uint8)
    return means


def _panel(
    pixels: Pixels, mode: str, clip: tuple[float, float] | None
) -> tuple[Pixels, dict[str, Any], int]:
    """What a panel draws of ``pixels``: the array, ``imshow``'s options
    and the side of the blocks it is the means of (1: the pixels).

    ``clip``: the range 32-bit images share, float pixels clipped to it.
    An image of at most ``_PANEL_SOURCE`` pixels on its longest side is
    drawn as it is. A larger one is shown at most 512 pixels wide anyway:
    it is drawn from the means of ``factor`` x ``factor`` blocks, the
    smallest whole factor that brings it within ``_PANEL_SOURCE``, worked
    out a band of rows at a time.
    """
    factor = -(-max(pixels.shape[:2]) // _PANEL_SOURCE)

    def shown(part: Pixels) -> tuple[Pixels, dict[str, Any]]:
        data, options = _display(part, mode)
        if clip is not None:
            if data.dtype.kind == "f":
                data = np.clip(data, *clip)  # inf to the ends; NaN stays blank
            options.update(vmin=clip[0], vmax=clip[1])
        return data, options

    if factor <= 1 or pixels.shape[0] == 0:
        data, options = shown(pixels)
        return data, options, 1
    parts, options = [], {}
    # whole blocks a band; _display and the means take a few times a band
    for top, bottom in _row_spans(pixels, _BAND_BYTES // 8, factor):
        data, options = shown(pixels[top:bottom])
        parts.append(_block_means(data, factor))
    return np.concatenate(parts), options, factor


def _figure_writer(
    before: Picture, after: Pixels, title: str, fmt: str
) -> Callable[[IO[bytes]], None]:
    """Return a writer of the side-by-side figure of ``before`` and ``after``.

    Both panels have the same size on screen. An input of at most 512
    pixels is shown at a whole multiple of its size (1:1 for the sample),
    so no display resampling blurs the detail being compared; the result
    is shown with nearest-neighbour upscaling, one block per output pixel.
    32-bit images share the input's finite range: NaN is left blank and
    infinities show as the ends of the range. An image (input or result)
    over ``_PANEL_SOURCE`` pixels on its longest side is drawn from block
    means (:func:`_panel`), smoothed as a large input is: the figure takes
    a bounded amount of memory, whatever the image size.
    """
    figure_cls = _figure_class()
    height, width = before.pixels.shape[:2]
    longest = max(height, width)
    scale = max(1, 512 // longest) if longest <= 512 else 512 / longest
    panel_w, panel_h = max(1, round(width * scale)), max(1, round(height * scale))
    dpi, margin, label, heading = 80, 12, 22, 30  # pixels
    fig_w = max(2 * panel_w + 3 * margin, 480)
    fig_h = panel_h + 2 * margin + label + heading
    left = (fig_w - 2 * panel_w - margin) / 2
    fig = figure_cls(figsize=(fig_w / dpi, fig_h / dpi), dpi=dpi)
    fig.suptitle(title, fontsize=11, y=1 - 8 / fig_h, va="top")
    # no fixed range for 32-bit images: share the input's between the panels
    clip = _finite_range(before.pixels) if before.mode in ("I", "F") else None
    panels = (
        (before.pixels, f"input {before.name}: {before.describe()}", scale >= 1),
        (after, f"result: {before.describe(after)}", True),
    )
    for i, (pixels, text, nearest) in enumerate(panels):
        x0 = left + i * (panel_w + margin)
        ax = fig.add_axes(
            (x0 / fig_w, margin / fig_h, panel_w / fig_w, panel_h / fig_h)
        )
        data, options, factor = _panel(pixels, before.mode, clip)
        extent: tuple[float, float, float, float] = (0, width, height, 0)
        if factor > 1:  # whole blocks: the last ones may reach past the axes
            rows, cols = pixels.shape[:2]
            bottom = height * data.shape[0] * factor / rows
            extent = (0, width * data.shape[1] * factor / cols, bottom, 0)
        ax.imshow(
            data,
            extent=extent,
            interpolation="nearest" if nearest and factor == 1 else "antialiased",
            aspect="auto",
            **options,
        )
        if factor > 1:
            ax.set_xlim(0, width)
            ax.set_ylim(height, 0)
        ax.set_title(text, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    metadata = _metadata(fmt)  # the pgf backend takes no metadata at all
    save_options = {} if metadata is None else {"metadata": metadata}

    def write(fh: IO[bytes]) -> None:
        fig.savefig(fh, format=fmt, dpi=dpi, **save_options)

    return write


def _metadata(fmt: str) -> dict[str, Any] | None:
    """Leave out what would make two identical figures differ in bytes."""
    if fmt == "png":
        return {"Software": None}
    if fmt in ("pdf", "svg"):
        return {"Creator": None} if fmt == "pdf" else {"Date": None}
    return None


# ----------------------------------------------------------------- the job


def _default_output(job: ImageJob, name: str, mode: str) -> str:
    """Name the output after what was done: ``sample_max_k2.png``."""

    def pair(values: tuple[int, int]) -> str:
        return str(values[0]) if values[0] == values[1] else f"{values[0]}x{values[1]}"

    op = f"lp{job.norm_type:g}" if job.op == "lp" else job.op
    parts = [Path(name).stem, op, f"k{pair(job.kernel)}"]
    if job.stride is not None and job.stride != job.kernel:
        parts.append(f"s{pair(job.stride)}")
    if job.padding != (0, 0):
        parts.append(f"p{pair(job.padding)}")
    if job.ceil_mode:
        parts.append("ceil")
    ext = ".tif" if mode in ("I", "F", "CMYK") else ".png"
    return "_".join(parts) + ext


def _what(job: ImageJob, *, short: bool = True) -> str:
    """Describe the pooling: ``"max pool, kernel 2x2, stride 2x2"``."""
    stride = job.stride or job.kernel
    p = f" (p={job.norm_type:g})" if job.op == "lp" else ""
    text = (
        f"{job.op} pool{p}, kernel {job.kernel[0]}x{job.kernel[1]}, "
        f"stride {stride[0]}x{stride[1]}"
    )
    if any(job.padding) or not short:
        text += f", padding {job.padding[0]}x{job.padding[1]}"
    return text + (", ceil_mode" if job.ceil_mode else "")


def run_image_job(job: ImageJob) -> list[str]:
    """Read, pool and write one image; return the lines to print.

    Nothing is written unless everything succeeds: the output (and the
    figure) are staged as temporary files in their target directories and
    moved into place only when both are complete (see :func:`_commit_all`).

    Parameters
    ----------
    job : ImageJob
        What to do.

    Returns
    -------
    list of str
        A summary of what was done, then any notes (warnings included).

    Raises
    ------
    ImageCLIError
        Any failure, with a one-line message; no file is left behind.
    """
    _pillow()
    if job.output is not None:  # check what we can before decoding
        _check_target(job.output, job.force, "output")
        _image_format(job.output)
    if job.compare is not None:
        _check_target(job.compare, job.force, "figure")
        _figure_format(job.compare)
    picture = sample_picture() if job.input is None else read_image(job.input)
    output = job.output or _default_output(job, picture.name, picture.mode)
    _check_target(output, job.force, "output")
    fmt = _image_format(output)
    _check_writable(picture.mode, output, picture.alpha_from)
    for other, what in ((job.input, "input"), (job.compare, "figure")):
        if other is not None and _same_file(output, other):
            msg = f"output {output!r} is the same file as the {what}"
            raise ImageCLIError(msg)
    if (
        job.input is not None
        and job.compare is not None
        and _same_file(job.compare, job.input)
    ):
        msg = f"figure {job.compare!r} is the same file as the input"
        raise ImageCLIError(msg)
    notes = list(picture.notes)
    with _warnings_as_notes(notes, "pooling"):
        try:
            with _resource_errors(f"pool the {picture.describe()} image"):
                pooled = pool_pixels(
                    picture.pixels,
                    job.op,
                    job.kernel,
                    job.stride,
                    job.padding,
                    ceil_mode=job.ceil_mode,
                    norm_type=job.norm_type,
                )
        except (ValueError, TypeError, OverflowError) as exc:  # ndpool's checks
            msg = f"cannot pool the {picture.describe()} image: {_one_line(exc)}"
            raise ImageCLIError(msg) from None
    _check_dimensions(pooled, fmt, output)
    lines = [
        f"{picture.name} ({picture.describe()}) -> {_what(job, short=False)} "
        f"-> {output} ({picture.describe(pooled)}, {fmt})"
    ]
    figure: list[tuple[str, Callable[[IO[bytes]], None], str, str]] = []
    if job.compare is not None:
        fig_fmt = _figure_format(job.compare)
        with _resource_errors("draw the comparison figure"):
            writer = _figure_writer(picture, pooled, f"ndpool {_what(job)}", fig_fmt)
        figure.append((job.compare, writer, "figure", fig_fmt))
        lines.append(f"comparison figure -> {job.compare}")
    # the decoded pixels are not needed any more (the figure keeps what it
    # draws): free them, then the pooled array once Pillow has its copy
    mode, info = picture.mode, picture.info
    del picture
    with (
        _warnings_as_notes(notes, "pooling"),
        _resource_errors(f"convert the pooled {mode} pixels"),
    ):
        image = _to_pil(pooled, mode)
    del pooled
    writes = [(output, _image_writer(image, fmt, info), "output", fmt), *figure]
    with _warnings_as_notes(notes, "writing"), contextlib.ExitStack() as stack:
        staged = [
            (stack.enter_context(_staged(path, write, kind, f)), path, kind)
            for path, write, kind, f in writes
        ]
        _commit_all(staged, job.force)
    lines.extend(f"note: {note}" for note in notes)
    return lines
