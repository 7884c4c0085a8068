"""oodml: deep metric learning under graded out-of-distribution shift.

The package is organised as one module per stage of the pipeline (see README.md):
``oodml.datasets`` -> ``oodml.features`` -> ``oodml.fid`` -> ``oodml.splits`` ->
``oodml.train`` / ``oodml.evaluate`` -> ``oodml.study`` -> ``oodml.adapt`` -> ``oodml.plot``.
"""

__version__ = "0.1.0"

from oodml.errors import OodmlError  # noqa: E402

__all__ = ["OodmlError", "__version__"]
