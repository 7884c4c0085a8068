"""The registry of deep-metric-learning objectives, built on pytorch-metric-learning (pml).

This module is the stable import path (``from oodml.losses import make_objective``); the code lives
in the package :mod:`oodml.objectives` (registry, built-in specs, factory, listing), where a new
loss is one :class:`ObjectiveSpec` in :mod:`oodml.objectives.builtin`.

An *objective* bundles a pml loss, an optional pml miner and the learning rates of the loss's
own parameters (learnable margin β, proxies, class weights, SoftTriple centres)::

    objective = make_objective("margin", num_classes=100, embed_dim=512, margin=0.1)
    optimizer = torch.optim.Adam(param_groups(model, lr) + objective.param_groups(lr))
    loss = objective(embeddings, labels)

* ``num_classes`` is the number of *training* classes of the split; labels passed to an objective
  must be contiguous integers ``0..num_classes-1`` (proxies, class weights and per-class β are
  indexed by label).
* Every hyperparameter can be overridden by keyword (``margin=0.1``, ``beta_lr=1e-3``) or, from a
  command line, with :func:`parse_overrides` (``["margin=0.1", "miner.epsilon=0.2", "miner=none"]``).
  Loss keywords are pml's constructor arguments; ``miner=<name>|none`` picks or removes the miner
  and ``miner.<arg>=<value>`` sets its arguments; a few objective options (``beta_lr``,
  ``per_class_beta``, ``lr``, ``lr_mult``) set the learning rates of the loss's own parameters.
  An unknown key raises :class:`~oodml.errors.BadInputError` listing the valid keys.

Beyond pml's losses:

* **The ooDML study's methods** (:data:`STUDY_METHODS`): ``rmargin`` (margin loss with the
  ρ-distance miner, also usable alone as ``miner=rho_distance``), ``maxentropy`` (margin loss plus
  the adversarial uniformity regulariser, usable on top of any objective as
  ``regularizers=[uniformity]``), ``s2sd`` (self-distillation around any ``source`` objective; it
  reads the pooled backbone features: ``make_objective(..., feature_dim=F)`` and
  ``objective(emb, labels, features=...)``) and ``diva`` (four heads: the model normalises its
  embedding in ``embed_groups=4`` parts).  Their formulas live in :mod:`oodml.objectives`.
* **Any pml loss or miner by class name**: ``make_objective("pml:SubCenterArcFaceLoss", ...)``,
  ``miner="pml:BatchHardMiner"``; keyword arguments are pml's.
* **Plugins**: :func:`register_objective` from the user's own module, loaded with
  :func:`load_plugins` (``--plugin``), the ``OODML_PLUGINS`` environment variable or the
  ``oodml.objectives`` entry point group.

Decisions (see also :func:`format_objectives_table`):

* Defaults follow the literature and the ooDML study (Milbich et al. 2021, building on Roth et al.
  2020): margin loss margin 0.2, class-specific learnable β initialised at 1.2 trained at an
  absolute learning rate of 5e-4 with distance-weighted sampling (cutoff 0.5, non-zero-loss
  cutoff 1.4); Multi-Similarity α 2, β 40, threshold 0.5 with its miner (ε 0.1); ArcFace margin
  0.5 rad, scale 16; Proxy-Anchor α 32, δ 0.1; ProxyNCA with scale 9 (ooDML's proxy sphere radius
  3 on squared distances, the ProxyNCA++ temperature 1/9); contrastive pos 0 / neg 1 (ooDML).
* **ArcFace margin units.** pml's ``ArcFaceLoss(margin=...)`` takes *degrees* (its default 28.6 ≈
  0.5 rad) and stores radians in ``loss.margin``.  Here ``margin`` is given in **radians** like in
  the paper and the ooDML configuration, and converted (0.5 rad → 28.65°) before it reaches pml,
  so ``loss.margin`` ends up equal to the value given.
* **Learning rates of the loss's parameters.** Proxies/centres/class weights learn much faster
  than the backbone: by default ``lr_mult`` × the base learning rate (×100 for Proxy-Anchor and
  SoftTriple as in their papers, ×50 for ProxyNCA, ArcFace, CosFace and normalised softmax, as in
  the ooDML/Roth et al. setup where base 1e-5 gives 5e-4); ``lr=<value>`` sets an absolute rate
  instead.  The margin loss's β uses the absolute ``beta_lr`` (5e-4).
"""

from __future__ import annotations

from oodml.objectives import (
    ENTRY_POINT_GROUP,
    OBJECTIVES,
    STUDY_METHODS,
    Objective,
    ObjectiveSpec,
    format_objectives_table,
    format_search_spaces,
    get_spec,
    list_miners,
    list_objectives,
    list_pml_losses,
    list_pml_miners,
    load_entry_point_plugins,
    load_plugins,
    make_objective,
    make_regularizers,
    parse_overrides,
    parse_value,
    pml_spec,
    register_objective,
    search_space,
    unregister_objective,
    valid_keys,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "OBJECTIVES",
    "Objective",
    "ObjectiveSpec",
    "STUDY_METHODS",
    "format_objectives_table",
    "format_search_spaces",
    "get_spec",
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
