"""The ``ndpool`` command line: parse arguments and dispatch, nothing more.

Image I/O lives in :mod:`ndpool._imageio`, imported (with Pillow and
matplotlib) only when ``ndpool image`` runs; pooling goes through
:func:`ndpool.pool`. ``main`` takes an argument list and returns the exit
code, so it is testable without a subprocess:

>>> main(["image", "--kernel", "2,0"])  # one line on stderr, nothing written
2

Exit codes: 0 success, 2 usage or input/output error (one line on stderr,
no traceback, no file left behind), 1 when the files were written but
standard output could not be (quietly for a closed pipe), 130 interrupted
(Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any, NoReturn

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

#: A value that starts with "-" but is a number (-1, -2.5e3, -inf): never
#: an option, although argparse only knows plain negative numbers.
_NEGATIVE_NUMBER = re.compile(r"-(\d|\.\d|inf(inity)?$|nan$)", re.IGNORECASE)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are a single line on stderr."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def _parse_optional(self, arg_string: str) -> Any:
        # "--norm-type -inf": a number is a value, whatever argparse guesses
        if _NEGATIVE_NUMBER.match(arg_string):
            return None
        return super()._parse_optional(arg_string)


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


def _norm_type(text: str) -> float:
    """Parse ``p`` of ``--op lp``: a positive number (``inf`` is the max)."""
    try:
        p = float(text)
    except ValueError:
        msg = f"must be a number, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if math.isnan(p):
        msg = f"must be a number, not NaN (got {text!r})"
        raise argparse.ArgumentTypeError(msg)
    if p <= 0:
        msg = f"must be positive (the p of a p-norm), got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return p


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
        type=_norm_type,
        default=2.0,
        metavar="NORM",
        help="p > 0 of the p-norm for --op lp, (sum |x|**p)**(1/p) over the "
        "window; clipped to the bit depth (default: 2; e.g. --op lp --norm-type 4)",
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
    except MemoryError:  # the staged files are gone already
        print(f"{PROG} image: error: not enough memory", file=sys.stderr)
        return 2
    return _print_lines(lines, f"{PROG} image", "; the files were written")


def _print_lines(lines: Sequence[str], prog: str, done: str = "") -> int:
    """Print ``lines`` on stdout and flush it: 0, or 1 if stdout fails.

    A closed pipe (``ndpool image | head -0``) exits quietly, as Python
    programs do; any other failure is one line on stderr, ending with
    ``done``, what was done all the same.
    """
    try:
        for line in lines:
            print(line)
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:  # the reader went away: exit quietly, like Python
        _stdout_to_devnull()
        return 1
    except OSError as exc:
        _stdout_to_devnull()
        text = " ".join(str(exc).split())
        print(
            f"{prog}: error: cannot write to standard output ({text}){done}",
            file=sys.stderr,
        )
        return 1
    return 0


def _stdout_to_devnull() -> None:
    """Point stdout at the null device: its last flush, at exit, can't fail."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (tests)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same clean-up runs."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`_Terminated` while the block runs.

    Only in the main thread (where Python runs signal handlers); the
    previous handler is restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the clean-up finish
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


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
        (reported in one line on stderr), 1 when the files were written
        but standard output failed, 130 when interrupted (Ctrl-C) and 143
        when terminated (SIGTERM).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        code = exc.code if isinstance(exc.code, int) else 2
        failed = _print_lines([], PROG)  # flush what --help printed, now
        return failed or code
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        with _sigterm_as_interrupt():
            return handler(args)
    except _Terminated:
        print(f"{PROG}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
