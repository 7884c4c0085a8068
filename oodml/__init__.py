"""oodml: deep metric learning under graded out-of-distribution shift.

The package is organised as one package per stage of the pipeline (see docs/architecture.md):
``oodml.datasets`` -> ``oodml.features`` -> ``oodml.shift`` -> ``oodml.splits`` ->
``oodml.training`` / ``oodml.metrics`` -> ``oodml.adapt`` -> ``oodml.study`` (``oodml.runs``,
``oodml.executors``, ``oodml.search``) -> ``oodml.analysis``.
"""

__version__ = "0.1.0"

from oodml.errors import OodmlError  # noqa: E402

__all__ = ["OodmlError", "__version__"]
