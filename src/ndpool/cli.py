"""The ``ndpool`` command line: parse arguments and dispatch, nothing more.

Image I/O lives in :mod:`ndpool._imageio`, imported (with Pillow and
matplotlib) only when ``ndpool image`` runs; pooling goes through
:func:`ndpool.pool`. ``main`` takes an argument list and returns the exit
code, so it is testable without a subprocess:

>>> main(["image", "--kernel", "2,0"])  # one line on stderr, nothing written
2

Exit codes: 0 success, 2 usage or input/output error (one line on stderr,
no traceback, no file left behind), 130 interrupted.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from . import __version__

__all__ = ["main"]

PROG = "ndpool"

_EXAMPLES = """\
examples:
  ndpool image                                  # built-in sample, 2x2 max pool
                                                # -> ./sample_max_k2.png
  ndpool image --op avg --kernel 4 --compare compare.png
  ndpool image photo.jpg -o small.png --op avg --kernel 3 --stride 2 --padding 1
  ndpool image scan.tif --op min --kernel 2,3 --ceil-mode -o out.tif --force
  ndpool image --op lp --norm-type 3 --kernel 2

Pixels keep the input's mode and bit depth (1, L, LA, RGB, RGBA, CMYK,
16-bit I;16, 32-bit I and F; palette images are pooled as RGB/RGBA).
Average and Lp are rounded to nearest (ties to even) and clipped to the
bit depth, never wrapped; padding follows PyTorch (padded cells never win
a max or min and count as zeros in an average). Output is written
atomically; an existing file is kept unless --force is given.
"""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are a single line on stderr."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _ints(kind: str, minimum: int) -> Callable[[str], tuple[int, int]]:
    """Return an argparse type for ``"N"`` or ``"H,W"`` with values >= minimum."""

    def parse(text: str) -> tuple[int, int]:
        parts = text.split(",")
        if len(parts) > 2 or not all(re.fullmatch(r"\s*\d+\s*", p) for p in parts):
            msg = f"{kind} must be N or H,W (whole numbers), got {text!r}"
            raise argparse.ArgumentTypeError(msg)
        values = [int(p) for p in parts]
        if min(values) < minimum:
            rule = "positive" if minimum == 1 else f"at least {minimum}"
            msg = f"{kind} must be {rule}, got {text!r}"
            raise argparse.ArgumentTypeError(msg)
        return values[0], values[-1]

    parse.__name__ = kind  # argparse names the type in some messages
    return parse


def build_parser() -> argparse.ArgumentParser:
    """Return the ``ndpool`` argument parser (one subcommand: ``image``)."""
    parser = _Parser(
        prog=PROG,
        description="ndpool: PyTorch-exact pooling on NumPy arrays.",
        epilog="Run 'ndpool image --help' for the image command.",
    )
    parser.add_argument("--version", action="version", version=f"ndpool {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    image = commands.add_parser(
        "image",
        help="pool an image file (or a built-in sample) and write the result",
        description=(
            "Pool every channel of an image with ndpool and write the result\n"
            "in the input's mode and bit depth. Without INPUT, a built-in\n"
            "sample picture is used."
        ),
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    image.add_argument(
        "input",
        nargs="?",
        metavar="INPUT",
        help="image file Pillow reads (PNG, JPEG, TIFF, BMP, WebP, ...); "
        "default: the built-in 512x512 sample (e.g. ndpool image photo.png)",
    )
    image.add_argument(
        "-o",
        "--output",
        metavar="OUTPUT",
        help="file to write; its extension picks the format (e.g. -o out.tif); "
        "default: INPUTNAME_OP_kK.png in the current directory, "
        "e.g. sample_max_k2.png",
    )
    image.add_argument(
        "--op",
        choices=("max", "avg", "min", "lp"),
        default="max",
        help="pooling operation (default: max; e.g. --op avg)",
    )
    image.add_argument(
        "-k",
        "--kernel",
        type=_ints("kernel", 1),
        default=(2, 2),
        metavar="K",
        help="window size, N or H,W (default: 2; e.g. --kernel 3 or --kernel 2,3)",
    )
    image.add_argument(
        "-s",
        "--stride",
        type=_ints("stride", 1),
        default=None,
        metavar="S",
        help="step between windows, N or H,W (default: the kernel; e.g. --stride 1)",
    )
    image.add_argument(
        "-p",
        "--padding",
        type=_ints("padding", 0),
        default=(0, 0),
        metavar="P",
        help="implicit padding on both sides, N or H,W, at most half the kernel "
        "(default: 0; e.g. --padding 1)",
    )
    image.add_argument(
        "--ceil-mode",
        action="store_true",
        help="round the output size up, keeping partial windows at the edges "
        "(e.g. --kernel 3 --ceil-mode)",
    )
    image.add_argument(
        "--norm-type",
        type=float,
        default=2.0,
        metavar="NORM",
        help="p of the p-norm for --op lp, (sum |x|**p)**(1/p) over the window; "
        "clipped to the bit depth (default: 2; e.g. --op lp --norm-type 4)",
    )
    image.add_argument(
        "--compare",
        metavar="FIGURE",
        help="also write a side-by-side figure of input and result; needs "
        "matplotlib (e.g. --compare compare.png; .svg and .pdf work too)",
    )
    image.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="overwrite OUTPUT and FIGURE if they exist (e.g. -o out.png --force)",
    )
    image.set_defaults(handler=_image)
    return parser


def _image(args: argparse.Namespace) -> int:
    """Run ``ndpool image``: image I/O is imported only now."""
    from ._imageio import ImageCLIError, ImageJob, run_image_job

    job = ImageJob(
        input=args.input,
        output=args.output,
        op=args.op,
        kernel=args.kernel,
        stride=args.stride,
        padding=args.padding,
        ceil_mode=args.ceil_mode,
        norm_type=args.norm_type,
        compare=args.compare,
        force=args.force,
    )
    try:
        lines = run_image_job(job)
    except ImageCLIError as exc:
        print(f"{PROG} image: error: {exc}", file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ndpool`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit code: 0 on success, 2 for a usage or input/output error
        (reported in one line on stderr), 130 when interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else 2
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
