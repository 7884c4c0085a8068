"""The objectives: a registry of losses (pytorch-metric-learning's and the ooDML study's) and the
study's formulas that pml does not ship, one module each.

Registry (adding a loss is one :class:`ObjectiveSpec` in :mod:`~oodml.objectives.builtin`, or one
:func:`register_objective` call in a plugin):

* :mod:`~oodml.objectives.registry`: :class:`ObjectiveSpec`, :func:`register_objective`,
  :func:`get_spec`, ``pml:<ClassName>`` specs, plugins (``--plugin``, ``OODML_PLUGINS``, the
  ``oodml.objectives`` entry point group).
* :mod:`~oodml.objectives.builtin`: the registered objectives with their defaults and search spaces.
* :mod:`~oodml.objectives.factory`: :func:`make_objective` (and :func:`valid_keys`).
* :mod:`~oodml.objectives.objective`: the :class:`Objective` module (loss + miner + regularisers).
* :mod:`~oodml.objectives.overrides`: ``key=value`` overrides (:func:`parse_overrides`).
* :mod:`~oodml.objectives.miners`, :mod:`~oodml.objectives.regularizers`: miners and regularisers
  by name; :mod:`~oodml.objectives.pml`: what is read from pml's classes.
* :mod:`~oodml.objectives.listing`: ``--list-losses`` (:func:`format_objectives_table`,
  :func:`format_search_spaces`); :mod:`~oodml.objectives.space`: search ranges (:class:`Tunable`).

Formulas:

* :mod:`~oodml.objectives.rho_distance`: the ρ-distance miner (R-Margin; Roth et al. 2020).
* :mod:`~oodml.objectives.uniformity`: the adversarial uniformity regulariser (MaxEntropy).
* :mod:`~oodml.objectives.s2sd`: similarity-based self-distillation (S2SD; Roth et al. 2021).
* :mod:`~oodml.objectives.diva`: diverse visual feature aggregation (DiVA; Milbich et al. 2020).

:mod:`oodml.losses` re-exports the registry's names (``from oodml.losses import make_objective``).
"""

from oodml.objectives.builtin import STUDY_METHODS
from oodml.objectives.factory import make_objective, valid_keys
from oodml.objectives.listing import format_objectives_table, format_search_spaces, list_objectives
from oodml.objectives.miners import list_miners
from oodml.objectives.objective import Objective
from oodml.objectives.overrides import parse_overrides, parse_value
from oodml.objectives.pml import list_pml_losses, list_pml_miners
from oodml.objectives.registry import (
    ENTRY_POINT_GROUP,
    OBJECTIVES,
    ObjectiveSpec,
    get_spec,
    load_entry_point_plugins,
    load_plugins,
    pml_spec,
    register_objective,
    search_space,
    unregister_objective,
)
from oodml.objectives.regularizers import make_regularizers
from oodml.objectives.rho_distance import RhoDistanceMiner, inverse_sphere_distance_weights
from oodml.objectives.uniformity import UniformityRegularizer

__all__ = [
    "ENTRY_POINT_GROUP",
    "OBJECTIVES",
    "Objective",
    "ObjectiveSpec",
    "RhoDistanceMiner",
    "STUDY_METHODS",
    "UniformityRegularizer",
    "format_objectives_table",
    "format_search_spaces",
    "get_spec",
    "inverse_sphere_distance_weights",
    "list_miners",
    "list_objectives",
    "list_pml_losses",
    "list_pml_miners",
    "load_entry_point_plugins",
    "load_plugins",
    "make_objective",
    "make_regularizers",
    "parse_overrides",
    "parse_value",
    "pml_spec",
    "register_objective",
    "search_space",
    "unregister_objective",
    "valid_keys",
]
