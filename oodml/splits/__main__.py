"""``python -m oodml.splits`` is ``python -m oodml.make_splits`` (see :mod:`oodml.splits.cli`)."""

import sys

from oodml.splits.cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
