"""``python -m oodml.training`` is ``python -m oodml.train``."""

import sys

from oodml.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
