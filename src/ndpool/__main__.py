"""``python -m ndpool``: the same command line as the ``ndpool`` script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
