"""Former home of the class-count controls, now :mod:`oodml.splits.controls`; this path keeps working."""

from oodml.splits.controls import CONTROL_PHASE, control_cells, control_map, make_controls, validate_controls

__all__ = ["CONTROL_PHASE", "control_cells", "control_map", "make_controls", "validate_controls"]
