"""``python -m oodml.shift``: see :mod:`oodml.shift.command`."""

import sys

from oodml.shift.command import build_parser, main  # noqa: F401 - build_parser: the README test parses with it

if __name__ == "__main__":
    sys.exit(main())
