"""``python -m jaxopt_ms``: the command line of :mod:`jaxopt_ms.cli`."""

import sys

from jaxopt_ms.cli import main

if __name__ == "__main__":
    sys.exit(main())
