"""``python -m dlmm.cli``: the ``dlmm`` command."""

import sys

from .runner import main

if __name__ == "__main__":
    sys.exit(main())
