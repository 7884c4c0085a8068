"""``python -m oodml.study``: see :mod:`oodml.study.cli`."""

import sys

from oodml.study.cli import main

if __name__ == "__main__":
    sys.exit(main())
