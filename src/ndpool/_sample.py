"""A built-in test picture, drawn by NumPy, for ``ndpool image`` without INPUT.

The picture is made to show what pooling does: every quadrant holds detail
that max, min and average pooling treat differently.

- top left: a zone plate (rings that get finer towards the corners), where
  pooling aliases;
- top right: a night sky with one-pixel stars and a thin grid, which max
  pooling keeps and min pooling removes;
- bottom left: paper with thin dark hatching, specks and a one-pixel
  checkerboard, which min pooling keeps, max pooling removes and average
  pooling turns to flat grey;
- bottom right: hard-edged coloured shapes and rings over a colour gradient.

Only integer arithmetic (and the exactly rounded square root) is used, so
the pixels are identical on every platform and NumPy version; nothing is
downloaded or bundled.

>>> img = sample_image()
>>> img.shape, img.dtype
((512, 512, 3), dtype('uint8'))
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["SAMPLE_NAME", "sample_image"]

#: Stem of the sample's default output names (``sample_max_k2.png``).
SAMPLE_NAME = "sample"

_SIZE = 512
_HALF = _SIZE // 2

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]


def _hash(y: I64, x: I64) -> npt.NDArray[np.uint32]:
    """Return a well-mixed, platform-independent 32-bit hash of ``(y, x)``."""
    h = (x.astype(np.uint32) * np.uint32(73856093)) ^ (
        y.astype(np.uint32) * np.uint32(19349663)
    )
    h ^= h >> np.uint32(13)
    h *= np.uint32(0x5BD1E995)
    h ^= h >> np.uint32(15)
    return np.asarray(h, dtype=np.uint32)


def _zone_plate(img: U8, y: I64, x: I64) -> None:
    """Draw rings, finer and finer away from the centre (top left)."""
    quad = (slice(0, _HALF), slice(0, _HALF))
    yy, xx = y[quad] - _HALF // 2, x[quad] - _HALF // 2
    phase = (3 * (yy * yy + xx * xx) // 4) % 512  # one cycle per 512 units
    ink = phase < 256  # binary (Fresnel) rings: only two colours
    img[quad] = np.where(ink[..., None], (25, 30, 70), (250, 245, 235))


def _night_sky(img: U8, y: I64, x: I64) -> None:
    """Draw stars, a thin grid and a moon on a dark blue sky (top right)."""
    quad = (slice(0, _HALF), slice(_HALF, _SIZE))
    yy, xx = y[quad], x[quad] - _HALF
    sky = np.zeros((_HALF, _HALF, 3), dtype=np.int64)
    sky[..., 0] = 8
    sky[..., 1] = 12 + yy * 40 // _HALF
    sky[..., 2] = 40 + yy * 80 // _HALF
    grid = ((yy % 32) == 16) | ((xx % 32) == 16)  # one-pixel lines
    sky[grid] = (70, 90, 140)
    h = _hash(yy, xx)
    stars = (h % np.uint32(89)) == 0
    sky[stars] = 255
    bright = (h % np.uint32(1019)) == 3  # a few 2x2 stars, off the pool grid
    for dy, dx in ((0, 1), (1, 0), (1, 1)):
        sky[np.roll(bright, (dy, dx), axis=(0, 1))] = (255, 250, 200)
    moon = (yy - 72) ** 2 + (xx - 180) ** 2 < 41**2
    bite = (yy - 60) ** 2 + (xx - 196) ** 2 < 37**2
    sky[moon & ~bite] = (250, 220, 120)
    img[quad] = sky


def _paper(img: U8, y: I64, x: I64) -> None:
    """Draw hatching, specks and a checkerboard on bright paper (bottom left)."""
    quad = (slice(_HALF, _SIZE), slice(0, _HALF))
    yy, xx = y[quad] - _HALF, x[quad]
    paper = np.empty((_HALF, _HALF, 3), dtype=np.int64)
    paper[..., 0] = 245 - xx * 20 // _HALF
    paper[..., 1] = 238 - xx * 20 // _HALF
    paper[..., 2] = 220 - yy * 30 // _HALF
    hatch = (yy < 112) & (((xx + yy) % 7) == 0)  # one-pixel diagonals
    cross = (yy < 112) & (xx >= 128) & (((xx - yy) % 7) == 0)
    paper[hatch | cross] = (30, 30, 60)
    specks = (yy >= 112) & ((_hash(yy, xx) % np.uint32(53)) == 0)
    paper[specks] = (20, 10, 10)
    board = (yy >= 160) & (yy < 240) & (xx >= 24) & (xx < 104)
    paper[board & ((xx + yy) % 2 == 0)] = 0  # a one-pixel checkerboard
    paper[board & ((xx + yy) % 2 == 1)] = 255
    stripes = (yy >= 160) & (yy < 240) & (xx >= 136) & (xx < 232)
    paper[stripes & (xx % 3 == 0)] = (180, 20, 20)  # red lines, period 3
    img[quad] = paper


def _shapes(img: U8, y: I64, x: I64) -> None:
    """Draw hard-edged shapes and rings over a colour gradient (bottom right)."""
    quad = (slice(_HALF, _SIZE), slice(_HALF, _SIZE))
    yy, xx = y[quad] - _HALF, x[quad] - _HALF
    art = np.empty((_HALF, _HALF, 3), dtype=np.int64)
    art[..., 0] = 40 + xx * 200 // _HALF
    art[..., 1] = 60 + yy * 160 // _HALF
    art[..., 2] = 230 - (xx + yy) * 180 // (2 * _HALF)
    r2 = (yy - 180) ** 2 + (xx - 180) ** 2
    rings = (r2 < 70**2) & (np.sqrt(r2).astype(np.int64) // 5 % 2 == 0)
    art[rings] = (250, 250, 250)
    art[(yy - 64) ** 2 + (xx - 70) ** 2 < 45**2] = (220, 30, 40)  # disc
    art[(yy >= 31) & (yy < 97) & (xx >= 147) & (xx < 213)] = (30, 160, 60)
    tri = (yy >= 140) & (yy < 230) & (np.abs(xx - 60) * 2 < (yy - 140))
    art[tri] = (20, 40, 200)
    img[quad] = art


def sample_image() -> U8:
    """Return the built-in 512x512 RGB sample picture.

    Returns
    -------
    img : ndarray of uint8, shape (512, 512, 3)
        Channels-last RGB; the same pixels on every call and platform.

    Examples
    --------
    >>> import ndpool
    >>> img = sample_image()
    >>> int(img.min()), int(img.max())
    (0, 255)
    >>> ndpool.pool(img, 2, axes=(0, 1)).shape
    (256, 256, 3)
    """
    y, x = np.mgrid[0:_SIZE, 0:_SIZE].astype(np.int64)
    img = np.zeros((_SIZE, _SIZE, 3), dtype=np.uint8)
    _zone_plate(img, y, x)
    _night_sky(img, y, x)
    _paper(img, y, x)
    _shapes(img, y, x)
    return img
