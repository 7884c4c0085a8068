"""The study's objectives that pytorch-metric-learning does not ship, one module each.

* :mod:`~oodml.objectives.rho_distance`: the ρ-distance miner (R-Margin; Roth et al. 2020).
* :mod:`~oodml.objectives.uniformity`: the adversarial uniformity regulariser (MaxEntropy).
* :mod:`~oodml.objectives.s2sd`: similarity-based self-distillation (S2SD; Roth et al. 2021).
* :mod:`~oodml.objectives.diva`: diverse visual feature aggregation (DiVA; Milbich et al. 2020).

They are registered in :mod:`oodml.losses` (``make_objective("rmargin")``, ``"maxentropy"``,
``"s2sd"``, ``"diva"``, ``miner=rho_distance``, ``regularizers=[uniformity]``); this package only
holds the formulas.
"""

from oodml.objectives.rho_distance import RhoDistanceMiner, inverse_sphere_distance_weights
from oodml.objectives.uniformity import UniformityRegularizer

__all__ = ["RhoDistanceMiner", "UniformityRegularizer", "inverse_sphere_distance_weights"]
