"""The registry of deep-metric-learning objectives, built on pytorch-metric-learning (pml).

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

import inspect
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from oodml.errors import BadInputError, OodmlError
from oodml.objectives.rho_distance import RhoDistanceMiner
from oodml.objectives.space import Tunable

# pml constructor arguments we never expose as overrides (objects, or set from the split/model).
_NOT_OVERRIDABLE = {"num_classes", "embedding_size", "self", "args", "kwargs"}
_CHOICES = {"type_of_triplets": ("all", "hard", "semihard", "easy")}


# --------------------------------------------------------------------------------------------
# Miners
# --------------------------------------------------------------------------------------------
def _pml_miners() -> dict[str, type]:
    from pytorch_metric_learning import miners as M

    return {
        "distance_weighted": M.DistanceWeightedMiner,
        "multisimilarity": M.MultiSimilarityMiner,
        "triplet_margin": M.TripletMarginMiner,
        "pair_margin": M.PairMarginMiner,
        "batch_hard": M.BatchHardMiner,
        "batch_easy_hard": M.BatchEasyHardMiner,
        "angular": M.AngularMiner,
        "hdc": M.HDCMiner,
        "uniform_histogram": M.UniformHistogramMiner,
        "rho_distance": RhoDistanceMiner,  # oodml.objectives.rho_distance (R-Margin)
    }


def _pml_class(module: Any, name: str, base: type, what: str, owner: str = "") -> type:
    """``pml:<ClassName>``: the class ``name`` of pml's ``module``, which must subclass ``base``."""
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        prefix = f"{owner}: " if owner else ""
        known = sorted(
            n
            for n, c in vars(module).items()
            if isinstance(c, type) and issubclass(c, base) and not n.startswith("Base")
        )
        raise BadInputError(
            f"{prefix}pytorch-metric-learning has no {what} class {name!r}; choose one of {', '.join(known)} "
            "(names are case-sensitive)"
        )
    return cls


def _miner_class(name: str) -> type:
    """The class of a registry miner name or of ``pml:<ClassName>``."""
    if name.startswith("pml:"):
        from pytorch_metric_learning import miners as M

        return _pml_class(M, name[4:], M.BaseMiner, "miner")
    return _pml_miners()[name]


_MINER_ALIASES = {
    "distance": "distance_weighted",
    "ms": "multisimilarity",
    "triplet": "triplet_margin",
    "rho": "rho_distance",
}
_NO_MINER = {"none", "null", "off", "no", "false", ""}


def list_miners() -> list[str]:
    return sorted(_pml_miners())


def _scalar_args(cls: type, inherited: bool = True) -> dict[str, Any]:
    """Constructor arguments with plain (scalar) defaults of a pml class (and, with ``inherited``,
    of its specific parent classes, e.g. ProxyNCALoss -> NCALoss's ``softmax_scale``)."""
    out: dict[str, Any] = {}
    for klass in cls.__mro__ if inherited else (cls,):
        cname = klass.__name__
        if "__init__" not in vars(klass):
            continue
        if klass is not cls and not klass.__module__.startswith(("pytorch_metric_learning", "oodml")):
            continue
        if cname.startswith(("Base", "ModuleWithRecords", "Generic")) or cname.endswith("Mixin"):
            continue  # generic machinery (reducer, distance, regularisers): objects, not hyperparameters
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.name in _NOT_OVERRIDABLE or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in out:
                continue
            default = None if p.default is inspect.Parameter.empty else p.default
            if default is None or isinstance(default, (bool, int, float, str)):
                out[p.name] = default
    return out


# --------------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectiveSpec:
    """How to build one objective.  ``loss_defaults`` are in *our* units (see ``to_pml``)."""

    name: str
    loss_class: str  # attribute of pytorch_metric_learning.losses
    kind: str  # "pair" (needs >= 2 samples per class in a batch), "proxy" or "classifier"
    summary: str
    loss_defaults: Mapping[str, Any] = field(default_factory=dict)
    miner: str | None = None
    miner_defaults: Mapping[str, Any] = field(default_factory=dict)
    # miner argument -> loss argument it follows unless set explicitly (e.g. the triplet margin)
    miner_tied: Mapping[str, str] = field(default_factory=dict)
    # objective-level options (learning rates of the loss's own parameters, ...)
    options: Mapping[str, Any] = field(default_factory=dict)
    sized: bool = False  # pass num_classes / embedding_size to pml
    # loss argument -> (converter to pml units, note for the table)
    to_pml: Mapping[str, tuple[Callable[[Any], Any], str]] = field(default_factory=dict)
    params: str = ""  # what the loss's own parameters are, for the table
    # tunable hyperparameters (override key or ``train.<TrainConfig key>`` -> range) for
    # ``search:`` in studies (oodml.search); empty = a search must give the space itself
    search_space: Mapping[str, Tunable] = field(default_factory=dict)
    # -- extensions (oodml.objectives, pml:<ClassName>, plugins) --------------------------------
    loss_type: type | None = None  # the loss class itself, when it is not an attribute of pml.losses
    regularizers: tuple = ()  # default regularisers (``regularizers`` key), e.g. ("uniformity",)
    # a composite objective: ``builder(num_classes, embed_dim, feature_dim, params) -> criterion``
    # (an nn.Module called ``(embeddings, labels, features)``, optionally with ``param_groups``);
    # its keys and defaults are ``composite_defaults`` (then loss_class is only a label)
    builder: Callable[..., nn.Module] | None = None
    composite_defaults: Mapping[str, Any] = field(default_factory=dict)
    needs_features: bool = False  # called with the pooled backbone features
    embed_groups: int = 1  # the model L2-normalises the embedding in this many equal heads

    @property
    def pml_class(self) -> type:
        if self.loss_type is not None:
            return self.loss_type
        from pytorch_metric_learning import losses as L

        return getattr(L, self.loss_class)

    def loss_keys(self) -> dict[str, Any]:
        if self.builder is not None:
            return dict(self.composite_defaults)
        keys = _scalar_args(self.pml_class)
        keys.update(self.loss_defaults)
        return keys


def _beta_spec(spec: ObjectiveSpec) -> bool:
    """A margin-loss objective whose learnable β has its own absolute learning rate ``beta_lr``."""
    return spec.loss_class == "MarginLoss" and "beta_lr" in spec.options


def _deg(x: Any) -> Any:
    return math.degrees(float(x))


_LR_MULT = {"lr": None, "lr_mult": 100.0}


def _space(**ranges: Tunable) -> dict[str, Tunable]:
    """A search space: the training learning rate plus the objective's own ranges.  Keyword
    ``miner__x`` stands for the key ``miner.x``."""
    space = {"train.lr": Tunable(1e-6, 1e-3, log=True)}  # ooDML's 1e-5 in the middle; CPU recipes override it
    space.update({k.replace("__", "."): v for k, v in ranges.items()})
    return space


_PROXY_LR_MULT = Tunable(1.0, 1000.0, log=True)  # proxies / class weights: x base lr

_SPECS: list[ObjectiveSpec] = [
    ObjectiveSpec(
        "margin",
        "MarginLoss",
        "pair",
        "Margin loss (Wu et al. 2017) with learnable class-specific beta, distance-weighted sampling",
        loss_defaults={"margin": 0.2, "beta": 1.2, "learn_beta": True, "nu": 0.0},
        miner="distance_weighted",
        miner_defaults={"cutoff": 0.5, "nonzero_loss_cutoff": 1.4},
        options={"beta_lr": 5e-4, "per_class_beta": True},
        params="beta",
        search_space=_space(
            margin=Tunable(0.0, 0.5),
            beta=Tunable(0.5, 2.0),
            beta_lr=Tunable(1e-5, 1e-2, log=True),
            miner__cutoff=Tunable(0.0, 0.8),
        ),
    ),
    ObjectiveSpec(
        "multisimilarity",
        "MultiSimilarityLoss",
        "pair",
        "Multi-Similarity loss (Wang et al. 2019) with its pair miner",
        loss_defaults={"alpha": 2.0, "beta": 40.0, "base": 0.5},
        miner="multisimilarity",
        miner_defaults={"epsilon": 0.1},
        search_space=_space(
            alpha=Tunable(0.5, 20.0, log=True),
            beta=Tunable(10.0, 80.0),
            base=Tunable(0.2, 0.8),
            miner__epsilon=Tunable(0.01, 0.5, log=True),
        ),
    ),
    ObjectiveSpec(
        "triplet",
        "TripletMarginLoss",
        "pair",
        "Triplet loss with semi-hard triplet mining (Schroff et al. 2015)",
        loss_defaults={"margin": 0.2},
        miner="triplet_margin",
        miner_defaults={"type_of_triplets": "semihard"},
        miner_tied={"margin": "margin"},
        search_space=_space(
            margin=Tunable(0.01, 0.5, log=True), miner__type_of_triplets=Tunable(choices=("semihard", "hard", "all"))
        ),
    ),
    ObjectiveSpec(
        "contrastive",
        "ContrastiveLoss",
        "pair",
        "Contrastive loss (Hadsell et al. 2006) on all pairs of the batch",
        loss_defaults={"pos_margin": 0.0, "neg_margin": 1.0},
        search_space=_space(pos_margin=Tunable(0.0, 0.5), neg_margin=Tunable(0.3, 1.5)),
    ),
    ObjectiveSpec(
        "lifted",
        "GeneralizedLiftedStructureLoss",
        "pair",
        "Generalized lifted structure loss (Oh Song et al. 2016; Hermans et al. 2017)",
        loss_defaults={"neg_margin": 1.0, "pos_margin": 0.0},
        search_space=_space(pos_margin=Tunable(0.0, 0.5), neg_margin=Tunable(0.3, 1.5)),
    ),
    ObjectiveSpec(
        "npairs",
        "NPairsLoss",
        "pair",
        "N-pair loss (Sohn 2016): one positive per anchor, the other classes' positives as negatives",
        search_space=_space(),
    ),
    ObjectiveSpec(
        "proxynca",
        "ProxyNCALoss",
        "proxy",
        "ProxyNCA (Movshovitz-Attias et al. 2017), softmax scale 9 as in ProxyNCA++ / ooDML",
        loss_defaults={"softmax_scale": 9.0},
        options={"lr": None, "lr_mult": 50.0},
        sized=True,
        params="proxies",
        search_space=_space(softmax_scale=Tunable(1.0, 32.0, log=True), lr_mult=_PROXY_LR_MULT),
    ),
    ObjectiveSpec(
        "proxyanchor",
        "ProxyAnchorLoss",
        "proxy",
        "Proxy-Anchor loss (Kim et al. 2020)",
        loss_defaults={"alpha": 32.0, "margin": 0.1},
        options=dict(_LR_MULT),
        sized=True,
        params="proxies",
        search_space=_space(alpha=Tunable(4.0, 64.0, log=True), margin=Tunable(0.0, 0.5), lr_mult=_PROXY_LR_MULT),
    ),
    ObjectiveSpec(
        "softtriple",
        "SoftTripleLoss",
        "proxy",
        "SoftTriple loss (Qian et al. 2019), 10 centres per class",
        loss_defaults={"centers_per_class": 10, "la": 20.0, "gamma": 0.1, "margin": 0.01},
        options=dict(_LR_MULT),
        sized=True,
        params="centres",
        search_space=_space(
            la=Tunable(5.0, 50.0, log=True),
            gamma=Tunable(0.01, 0.5, log=True),
            margin=Tunable(0.0, 0.1),
            lr_mult=_PROXY_LR_MULT,
        ),
    ),
    ObjectiveSpec(
        "arcface",
        "ArcFaceLoss",
        "classifier",
        "ArcFace additive angular margin (Deng et al. 2019); margin in radians",
        loss_defaults={"margin": 0.5, "scale": 16.0},
        options={"lr": None, "lr_mult": 50.0},
        sized=True,
        to_pml={"margin": (_deg, "radians here, degrees in pml")},
        params="class weights",
        search_space=_space(margin=Tunable(0.1, 0.8), scale=Tunable(8.0, 64.0, log=True), lr_mult=_PROXY_LR_MULT),
    ),
    ObjectiveSpec(
        "cosface",
        "CosFaceLoss",
        "classifier",
        "CosFace additive cosine margin (Wang et al. 2018)",
        loss_defaults={"margin": 0.35, "scale": 64.0},
        options={"lr": None, "lr_mult": 50.0},
        sized=True,
        params="class weights",
        search_space=_space(margin=Tunable(0.05, 0.5), scale=Tunable(8.0, 64.0, log=True), lr_mult=_PROXY_LR_MULT),
    ),
    ObjectiveSpec(
        "normsoftmax",
        "NormalizedSoftmaxLoss",
        "classifier",
        "Normalized softmax / NormFace (Zhai & Wu 2019), temperature 0.05",
        loss_defaults={"temperature": 0.05},
        options={"lr": None, "lr_mult": 50.0},
        sized=True,
        params="class weights",
        search_space=_space(temperature=Tunable(0.01, 0.2, log=True), lr_mult=_PROXY_LR_MULT),
    ),
    ObjectiveSpec(
        "circle",
        "CircleLoss",
        "pair",
        "Circle loss (Sun et al. 2020), m 0.4, gamma 80",
        loss_defaults={"m": 0.4, "gamma": 80.0},
        search_space=_space(m=Tunable(0.1, 0.5), gamma=Tunable(16.0, 256.0, log=True)),
    ),
    ObjectiveSpec(
        "supcon",
        "SupConLoss",
        "pair",
        "Supervised contrastive loss (Khosla et al. 2020), temperature 0.1",
        loss_defaults={"temperature": 0.1},
        search_space=_space(temperature=Tunable(0.03, 0.5, log=True)),
    ),
    # ---- the ooDML study's methods that pml does not ship (oodml/objectives/) -----------------
    ObjectiveSpec(
        "rmargin",
        "MarginLoss",
        "pair",
        "R-Margin (Roth et al. 2020): margin loss with the rho-distance miner (push prob. rho 0.4), beta 0.6",
        loss_defaults={"margin": 0.2, "beta": 0.6, "learn_beta": True, "nu": 0.0},
        miner="rho_distance",
        miner_defaults={"rho": 0.4, "cutoff": 0.5},
        options={"beta_lr": 5e-4, "per_class_beta": True},
        params="beta",
        search_space=_space(
            margin=Tunable(0.0, 0.5),
            beta=Tunable(0.3, 2.0),
            miner__rho=Tunable(0.0, 0.8),
            miner__cutoff=Tunable(0.0, 0.8),
        ),
    ),
    ObjectiveSpec(
        "maxentropy",
        "MarginLoss",
        "pair",
        "MaxEntropy (ooDML): margin loss + distance-weighted mining + adversarial uniformity regulariser (0.2)",
        loss_defaults={"margin": 0.2, "beta": 1.2, "learn_beta": True, "nu": 0.0},
        miner="distance_weighted",
        miner_defaults={"cutoff": 0.5, "nonzero_loss_cutoff": 1.4},
        options={"beta_lr": 5e-4, "per_class_beta": True},
        params="beta",
        regularizers=("uniformity",),
        search_space=_space(margin=Tunable(0.0, 0.5), beta=Tunable(0.5, 2.0), miner__cutoff=Tunable(0.0, 0.8)),
    ),
]
OBJECTIVES: dict[str, ObjectiveSpec] = {s.name: s for s in _SPECS}
_OBJECTIVE_ALIASES = {
    "ms": "multisimilarity",
    "multi_similarity": "multisimilarity",
    "proxy_anchor": "proxyanchor",
    "proxy_nca": "proxynca",
    "soft_triple": "softtriple",
    "norm_softmax": "normsoftmax",
    "normalized_softmax": "normsoftmax",
    "n_pairs": "npairs",
    "npair": "npairs",
    # the ooDML study's own names
    "oproxy": "proxyanchor",
    "r_margin": "rmargin",
    "rho_margin": "rmargin",
    "max_entropy": "maxentropy",
}


def get_spec(name: str) -> ObjectiveSpec:
    """The spec of a registry name (or alias), of ``pml:<ClassName>`` (any pytorch-metric-learning
    loss with its own defaults) or of an objective registered by a plugin."""
    raw = str(name).strip()
    if raw[:4].lower() == "pml:":
        return pml_spec(raw[4:].strip())
    load_entry_point_plugins()
    key = raw.lower().replace("-", "_")
    key = _OBJECTIVE_ALIASES.get(key, key)
    if key not in OBJECTIVES:
        raise BadInputError(
            f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)} or pml:<ClassName> "
            "(python -m oodml.train --list-losses shows them; --plugin MODULE adds your own)"
        )
    return OBJECTIVES[key]


# --------------------------------------------------------------------------------------------
# Any pytorch-metric-learning loss by class name
# --------------------------------------------------------------------------------------------
_PML_SPECS: dict[str, ObjectiveSpec] = {}


def _init_param_names(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass) and klass.__module__.startswith("pytorch_metric_learning"):
            names |= set(inspect.signature(klass.__init__).parameters)
    return names


def pml_spec(class_name: str) -> ObjectiveSpec:
    """The spec of ``pml:<class_name>``: pml's loss with pml's defaults.  A loss with
    ``num_classes`` and ``embedding_size`` arguments (proxies, class weights) is built for the
    split's classes and the model's width, its parameters train at ``lr_mult`` (default 1) x the
    base rate; the others are pair-based and accept a miner (``miner=...``)."""
    if class_name in _PML_SPECS:
        return _PML_SPECS[class_name]
    from pytorch_metric_learning import losses as L

    cls = _pml_class(L, class_name, L.BaseMetricLossFunction, "loss")
    sized = {"num_classes", "embedding_size"} <= _init_param_names(cls)
    spec = ObjectiveSpec(
        f"pml:{cls.__name__}",
        cls.__name__,
        "classifier" if sized else "pair",
        f"pytorch-metric-learning's {cls.__name__} with pml's defaults",
        options={"lr": None, "lr_mult": 1.0} if sized else {},
        sized=sized,
        params="own parameters" if sized else "",
    )
    _PML_SPECS[class_name] = spec
    return spec


def list_pml_losses() -> list[str]:
    """Class names of pml's losses usable as ``pml:<ClassName>``."""
    from pytorch_metric_learning import losses as L

    return sorted(
        n
        for n, c in vars(L).items()
        if isinstance(c, type) and issubclass(c, L.BaseMetricLossFunction) and not n.startswith("Base")
    )


def list_pml_miners() -> list[str]:
    """Class names of pml's miners usable as ``miner=pml:<ClassName>``."""
    from pytorch_metric_learning import miners as M

    return sorted(
        n for n, c in vars(M).items() if isinstance(c, type) and issubclass(c, M.BaseMiner) and not n.startswith("Base")
    )


# --------------------------------------------------------------------------------------------
# Plugins: objectives from the user's own modules
# --------------------------------------------------------------------------------------------
ENTRY_POINT_GROUP = "oodml.objectives"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_entry_points_loaded = False


def register_objective(spec: ObjectiveSpec, *, replace: bool = False) -> ObjectiveSpec:
    """Add ``spec`` to the registry (for plugins: call it at import time of your module).

    ``spec.name`` must be a lower-case word (``[a-z][a-z0-9_]*``); registering a name twice is an
    error unless it is the same spec or ``replace=True``.  Example (a module ``mypkg/losses.py``
    made known with ``--plugin mypkg.losses``, ``train: {plugins: [mypkg.losses]}`` or the entry
    point group ``oodml.objectives``)::

        from oodml.losses import ObjectiveSpec, register_objective
        register_objective(ObjectiveSpec("mytriplet", "TripletMarginLoss", "pair", "my triplet loss",
                                         loss_defaults={"margin": 0.1}, miner="batch_hard"))

    ``loss_type=MyLoss`` registers a class of your own (called like a pml loss:
    ``loss(embeddings, labels[, indices_tuple])``); ``builder=`` a composite objective.
    """
    if not isinstance(spec, ObjectiveSpec):
        raise BadInputError(f"register_objective takes an ObjectiveSpec, got {type(spec).__name__}")
    if not _NAME_RE.match(spec.name):
        raise BadInputError(f"objective name {spec.name!r} must be a lower-case word (letters, digits, _)")
    old = OBJECTIVES.get(spec.name) or OBJECTIVES.get(_OBJECTIVE_ALIASES.get(spec.name, ""))
    if old is not None and old is not spec and old != spec and not replace:
        raise BadInputError(
            f"objective {spec.name!r} is already registered ({old.summary}); choose another name or pass replace=True"
        )
    if old is not None:
        _SPECS[_SPECS.index(old)] = spec
    else:
        _SPECS.append(spec)
    OBJECTIVES[spec.name] = spec
    return spec


def unregister_objective(name: str) -> None:
    """Remove a registered objective (for tests and notebooks)."""
    spec = OBJECTIVES.pop(name, None)
    if spec is not None:
        _SPECS.remove(spec)


def load_plugins(modules: Iterable[str] | str | None) -> list[str]:
    """Import plugin modules (each registers its objectives with :func:`register_objective`);
    returns their names.  A module that cannot be imported is one clear error."""
    import importlib

    if isinstance(modules, str):
        modules = [modules]
    loaded = []
    for mod in modules or ():
        mod = str(mod).strip()
        if not mod:
            continue
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise BadInputError(
                f"plugin module {mod!r} could not be imported ({type(exc).__name__}: {exc}); "
                "install it or put its folder on PYTHONPATH"
            ) from None
        loaded.append(mod)
    return loaded


def load_entry_point_plugins(force: bool = False) -> list[str]:
    """Load, once per process, the plugin modules named in the environment variable
    ``OODML_PLUGINS`` (comma-separated; inherited by a study's worker processes and jobs) and the
    installed packages' ``oodml.objectives`` entry points: each names a module (imported) or a
    function (called without arguments) that registers objectives."""
    global _entry_points_loaded
    if _entry_points_loaded and not force:
        return []
    _entry_points_loaded = True
    import os
    from importlib.metadata import entry_points

    names = load_plugins([m for m in os.environ.get("OODML_PLUGINS", "").split(",") if m.strip()])
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if callable(obj) and not inspect.ismodule(obj):
                obj()
        except OodmlError:
            raise
        except Exception as exc:
            raise BadInputError(
                f"entry point {ep.name} = {ep.value} (group {ENTRY_POINT_GROUP}) failed to load "
                f"({type(exc).__name__}: {exc}); fix or uninstall the package that declares it"
            ) from None
        names.append(ep.name)
    return names


# --------------------------------------------------------------------------------------------
# Override parsing and checking
# --------------------------------------------------------------------------------------------
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def parse_value(text: str) -> Any:
    """A ``key=value`` value: YAML (``yaml.safe_load``), plus numbers YAML 1.1 leaves as text
    (``5e-4``, ``1E3``)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value)
    return value


def parse_overrides(items: Iterable[str] | None) -> dict[str, Any]:
    """Parse command-line ``key=value`` strings into an overrides dict (later keys win).

    ``parse_overrides(["margin=0.1", "miner.type_of_triplets=hard", "miner=none"])``.
    """
    out: dict[str, Any] = {}
    for item in items or ():
        text = str(item)
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInputError(f"loss option {text!r} is not key=value (e.g. margin=0.1 or miner.epsilon=0.2)")
        out[key] = parse_value(value.strip())
    return out


def _flatten(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Expand ``miner: {type: x, epsilon: 0.2}`` (as in a YAML study file) into flat keys."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        key = str(key).strip()
        if key == "miner" and isinstance(value, Mapping):
            value = dict(value)
            kind = value.pop("type", value.pop("name", None))
            if kind is not None:
                flat["miner"] = kind
            for k, v in value.items():
                flat[f"miner.{k}"] = v
        else:
            flat[key] = value
    return flat


def _coerce(owner: str, key: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the kind of ``default``; numeric strings become numbers."""
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        value = float(value) if not isinstance(default, str) else value
    base = key.rsplit(".", 1)[-1]
    if base in _CHOICES and value not in _CHOICES[base]:
        raise BadInputError(f"{owner}: {key} must be one of {', '.join(_CHOICES[base])} (got {value!r})")
    if default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise BadInputError(f"{owner}: {key} must be true or false (got {value!r})")
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadInputError(f"{owner}: {key} must be a number (got {value!r})")
        if not math.isfinite(float(value)):
            raise BadInputError(f"{owner}: {key} must be finite (got {value!r})")
        return value
    if isinstance(default, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key == "triplets_per_anchor":
            return int(value)
        if not isinstance(value, str):
            raise BadInputError(f"{owner}: {key} must be text (got {value!r})")
    return value


def _resolve_miner_name(name: Any, owner: str = "") -> str | None:
    if name is None or name is False or (isinstance(name, str) and name.strip().lower() in _NO_MINER):
        return None
    if str(name).strip()[:4].lower() == "pml:":
        from pytorch_metric_learning import miners as M

        cls = _pml_class(M, str(name).strip()[4:].strip(), M.BaseMiner, "miner", owner)
        return f"pml:{cls.__name__}"
    key = str(name).strip().lower().replace("-", "_")
    key = _MINER_ALIASES.get(key, key)
    miners = _pml_miners()
    if key not in miners:
        prefix = f"{owner}: " if owner else ""
        raise BadInputError(
            f"{prefix}unknown miner {name!r}; choose none, pml:<ClassName> or one of {', '.join(sorted(miners))}"
        )
    return key


def valid_keys(name: str) -> list[str]:
    """All override keys the objective ``name`` accepts (for its default miner)."""
    spec = get_spec(name)
    keys = list(spec.loss_keys()) + list(spec.options) + (["miner"] if spec.kind == "pair" and not spec.builder else [])
    if spec.miner:
        keys += [f"miner.{k}" for k in _scalar_args(_miner_class(spec.miner), inherited=False)]
    return keys + ["regularizers"]


# --------------------------------------------------------------------------------------------
# Regularisers (``regularizers: [uniformity]`` on top of any objective)
# --------------------------------------------------------------------------------------------
def _regularizer_classes() -> dict[str, type]:
    from oodml.objectives.uniformity import UniformityRegularizer

    return {"uniformity": UniformityRegularizer}


def make_regularizers(items: Any, embed_dim: int, owner: str = "") -> list[nn.Module]:
    """Regularisers from a list of names or ``{name: ..., <constructor arguments>}`` mappings
    (``[uniformity]``, ``[{name: uniformity, weight: 0.5, chunk: 8}]``)."""
    prefix = f"{owner}: " if owner else ""
    classes = _regularizer_classes()
    if items is None or items is False:
        return []
    if isinstance(items, (str, Mapping)):
        items = [items]
    if not isinstance(items, (list, tuple)):
        raise BadInputError(f"{prefix}regularizers must be a list of names or {{name, ...}} mappings (got {items!r})")
    out = []
    for item in items:
        kwargs = dict(item) if isinstance(item, Mapping) else {"name": item}
        reg_name = str(kwargs.pop("name", "")).strip().lower()
        if reg_name not in classes:
            raise BadInputError(f"{prefix}unknown regularizer {reg_name or item!r}; choose one of {', '.join(classes)}")
        cls = classes[reg_name]
        allowed = _scalar_args(cls, inherited=False)
        allowed.pop("embed_dim", None)
        for k, v in kwargs.items():
            if k not in allowed:
                raise BadInputError(
                    f"{prefix}regularizer {reg_name}: unknown option {k!r}; valid: {', '.join(allowed)}"
                )
            kwargs[k] = _coerce(owner or reg_name, f"{reg_name}.{k}", v, allowed[k] if allowed[k] is not None else 1.0)
        try:
            out.append(cls(embed_dim=embed_dim, **kwargs))
        except (TypeError, ValueError) as exc:
            raise BadInputError(f"{prefix}regularizer {reg_name} rejected {kwargs} ({exc})") from None
    return out


# --------------------------------------------------------------------------------------------
# The Objective module
# --------------------------------------------------------------------------------------------
class Objective(nn.Module):
    """A pml loss with an optional pml miner and the learning rates of the loss's parameters.

    Call it as ``objective(embeddings, labels)`` -> scalar loss (the miner, when present, picks
    the tuples first).  Being an ``nn.Module``, ``.to(device)`` moves its parameters and
    ``state_dict()`` carries them into checkpoints.
    """

    def __init__(
        self,
        name: str,
        loss: nn.Module,
        miner: nn.Module | None,
        kind: str,
        num_classes: int,
        embed_dim: int,
        config: dict[str, Any],
        lr_rule: dict[str, Any],
        indexed_by_label: bool,
        *,
        regularizers: Iterable[nn.Module] = (),
        criterion: nn.Module | None = None,
        needs_features: bool = False,
        embed_groups: int = 1,
    ):
        super().__init__()
        self.name = name
        self.loss = loss
        self.miner = miner
        self.criterion = criterion  # a composite objective (S2SD, DiVA, a plugin's)
        self.regularizers = nn.ModuleList(regularizers)
        self.needs_features = bool(needs_features)
        self.embed_groups = int(embed_groups)
        self.kind = kind
        self.num_classes = int(num_classes)
        self.embed_dim = int(embed_dim)
        self.config = config
        self._lr_rule = dict(lr_rule)
        self._indexed_by_label = bool(indexed_by_label)

    @property
    def needs_pairs(self) -> bool:
        """True when batches need at least two samples per class (pair/triplet-based objectives)."""
        return self.kind == "pair"

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The scalar loss of ``embeddings`` ``(B, embed_dim)`` float with ``labels`` ``(B,)`` int64
        in ``0..num_classes-1``; ``features`` ``(B, feature_dim)``: the pooled backbone features,
        needed by objectives with ``needs_features`` (S2SD) and ignored by the others."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embed_dim:
            raise BadInputError(
                f"objective {self.name} expects embeddings of shape (batch, {self.embed_dim}), "
                f"got {tuple(embeddings.shape)}; build it with the model's embed_dim"
            )
        if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
            raise BadInputError(
                f"objective {self.name}: labels must be a 1-d tensor with one label per embedding "
                f"(got labels {tuple(labels.shape)} for embeddings {tuple(embeddings.shape)})"
            )
        if self._indexed_by_label and labels.numel():
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= self.num_classes:
                raise BadInputError(
                    f"objective {self.name} was built for {self.num_classes} training classes but got "
                    f"label {hi if hi >= self.num_classes else lo}; "
                    f"labels must be remapped to 0..{self.num_classes - 1}"
                )
        if self.needs_features and (features is None or features.ndim != 2 or features.shape[0] != embeddings.shape[0]):
            raise BadInputError(
                f"objective {self.name} needs the pooled backbone features, one row per embedding "
                "(objective(embeddings, labels, features=model.forward_features(x)))"
            )
        if self.criterion is not None:
            value = self.criterion(embeddings, labels, features)
        elif self.miner is not None:
            indices = self.miner(embeddings, labels)
            value = self.loss(embeddings, labels, indices)
        else:
            value = self.loss(embeddings, labels)
        for reg in self.regularizers:
            value = value + reg(embeddings, labels)
        return value

    def last_terms(self) -> dict[str, float]:
        """The named parts of the last loss value (composite objectives and regularisers report
        them, e.g. DiVA's ``discriminative`` ... ``decorrelation``); empty for plain objectives."""
        terms = dict(getattr(self.criterion, "last", {}) or {}) if self.criterion is not None else {}
        for reg in self.regularizers:
            terms.update({f"{getattr(reg, 'name', 'reg')}_{k}": v for k, v in (getattr(reg, "last", {}) or {}).items()})
        return terms

    def param_lr(self, base_lr: float) -> float:
        """The learning rate of the loss's own parameters for a base learning rate ``base_lr``."""
        rule = self._lr_rule
        if rule.get("lr") is not None:
            return float(rule["lr"])
        return float(base_lr) * float(rule.get("lr_mult", 1.0))

    def param_groups(self, base_lr: float, weight_decay: float | None = None) -> list[dict[str, Any]]:
        """Optimizer groups for the loss's trainable parameters (empty when it has none)."""
        groups: list[dict[str, Any]] = []
        params = [p for p in self.loss.parameters() if p.requires_grad] if self.loss is not None else []
        if params:
            groups.append({"params": params, "lr": self.param_lr(base_lr), "name": f"objective/{self.name}"})
        if self.criterion is not None:
            if hasattr(self.criterion, "param_groups"):
                groups += self.criterion.param_groups(base_lr, weight_decay)
            elif any(p.requires_grad for p in self.criterion.parameters()):
                groups.append(
                    {
                        "params": [p for p in self.criterion.parameters() if p.requires_grad],
                        "lr": self.param_lr(base_lr),
                        "name": f"objective/{self.name}",
                    }
                )
        for reg in self.regularizers:
            reg_params = [p for p in reg.parameters() if p.requires_grad]
            if reg_params:
                lr = float(base_lr) * float(getattr(reg, "lr_mult", 1.0))
                groups.append({"params": reg_params, "lr": lr, "name": f"regularizer/{getattr(reg, 'name', 'reg')}"})
        if weight_decay is not None:
            for g in groups:
                g.setdefault("weight_decay", float(weight_decay))
        return groups

    def extra_repr(self) -> str:
        return f"name={self.name!r}, kind={self.kind!r}, num_classes={self.num_classes}, embed_dim={self.embed_dim}"


def make_objective(
    name: str, num_classes: int, embed_dim: int, *, feature_dim: int | None = None, **overrides: Any
) -> Objective:
    """Build the objective ``name`` for ``num_classes`` training classes and ``embed_dim``-d
    embeddings, with hyperparameter ``overrides`` (see the module docstring).

    ``feature_dim``: width of the pooled backbone features, needed by objectives that read them
    (``needs_features``: S2SD's auxiliary heads).  ``regularizers=[...]`` adds regularisers
    (:func:`make_regularizers`) to any objective.
    """
    spec = get_spec(name)
    for what, value in (("num_classes", num_classes), ("embed_dim", embed_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadInputError(f"objective {spec.name}: {what} must be a positive integer (got {value!r})")
    owner = f"objective {spec.name}"
    flat = _flatten(overrides)
    reg_items = flat.pop("regularizers", list(spec.regularizers))
    regularizers = make_regularizers(reg_items, embed_dim, owner)
    if spec.builder is not None:
        return _make_composite(spec, num_classes, embed_dim, feature_dim, flat, regularizers, reg_items)

    # -- miner choice first, so miner.* keys are checked against the right class
    miner_name = spec.miner
    if "miner" in flat:
        miner_name = _resolve_miner_name(flat.pop("miner"), owner)
        if miner_name is not None and spec.kind != "pair":
            raise BadInputError(
                f"{owner} is a {spec.kind}-based loss and takes no miner (pml ignores mined tuples for it); "
                "remove the miner option"
            )
    miner_keys = _scalar_args(_miner_class(miner_name), inherited=False) if miner_name else {}

    loss_keys = spec.loss_keys()
    loss_kwargs = dict(spec.loss_defaults)
    options = dict(spec.options)
    miner_kwargs: dict[str, Any] = dict(spec.miner_defaults) if miner_name == spec.miner else {}
    explicit_miner: set[str] = set()
    for key, value in flat.items():
        if key.startswith("miner."):
            sub = key[len("miner.") :]
            if miner_name is None:
                raise BadInputError(
                    f"{owner} has no miner, so {key} does not apply; pick one first with miner=<name> "
                    f"({', '.join(list_miners())})"
                )
            if sub not in miner_keys:
                raise BadInputError(
                    f"{owner}: unknown miner option {key!r} for miner {miner_name}; valid: "
                    f"{', '.join('miner.' + k for k in miner_keys) or '(none)'}"
                )
            miner_kwargs[sub] = _coerce(owner, key, value, miner_keys[sub])
            explicit_miner.add(sub)
        elif key in options:
            default = spec.options[key]
            if key in ("lr", "beta_lr", "lr_mult") and value is not None:
                value = _coerce(owner, key, value, 1.0)
                if value <= 0:
                    raise BadInputError(f"{owner}: {key} must be positive (got {value})")
            else:
                value = _coerce(owner, key, value, default)
            options[key] = value
        elif key in loss_keys:
            loss_kwargs[key] = _coerce(owner, key, value, loss_keys[key])
        else:
            valid = list(loss_keys) + list(options) + (["miner"] if spec.kind == "pair" else [])
            valid += [f"miner.{k}" for k in miner_keys] + ["regularizers"]
            raise BadInputError(f"{owner}: unknown option {key!r}; valid keys: {', '.join(valid)}")
    for sub, loss_key in spec.miner_tied.items():
        if miner_name == spec.miner and sub not in explicit_miner and loss_key in loss_kwargs:
            miner_kwargs[sub] = loss_kwargs[loss_key]

    # -- the pml loss
    pml_kwargs = dict(loss_kwargs)
    for key, (conv, _) in spec.to_pml.items():
        if key in pml_kwargs and pml_kwargs[key] is not None:
            pml_kwargs[key] = conv(pml_kwargs[key])
    indexed = spec.sized
    if _beta_spec(spec):
        if options.get("per_class_beta") and pml_kwargs.get("learn_beta"):
            pml_kwargs["num_classes"] = num_classes
            indexed = True
    if spec.sized:
        pml_kwargs.update(num_classes=num_classes, embedding_size=embed_dim)
        if spec.loss_type is not None:  # a plugin's class: pass only what it takes
            names = set(inspect.signature(spec.loss_type.__init__).parameters)
            if not any(p.kind == p.VAR_KEYWORD for p in inspect.signature(spec.loss_type.__init__).parameters.values()):
                pml_kwargs = {k: v for k, v in pml_kwargs.items() if k in names}
    try:
        loss = spec.pml_class(**pml_kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise BadInputError(f"{owner}: pml {spec.loss_class} rejected {loss_kwargs} ({exc})") from None
    miner = None
    if miner_name:
        try:
            miner = _miner_class(miner_name)(**miner_kwargs)
        except (TypeError, ValueError, AssertionError) as exc:
            raise BadInputError(f"{owner}: pml miner {miner_name} rejected {miner_kwargs} ({exc})") from None

    lr_rule = (
        {"lr": options.get("beta_lr")}
        if _beta_spec(spec)
        else {"lr": options.get("lr"), "lr_mult": options.get("lr_mult", 1.0)}
    )
    config = {
        "name": spec.name,
        "loss": spec.loss_class,
        "num_classes": num_classes,
        "embed_dim": embed_dim,
        "loss_kwargs": loss_kwargs,
        "miner": miner_name,
        "miner_kwargs": miner_kwargs if miner_name else {},
        "options": options,
    }
    if reg_items:
        config["regularizers"] = reg_items if isinstance(reg_items, list) else [reg_items]
    return Objective(
        spec.name,
        loss,
        miner,
        spec.kind,
        num_classes,
        embed_dim,
        config,
        lr_rule,
        indexed,
        regularizers=regularizers,
        embed_groups=spec.embed_groups,
    )


def _make_composite(
    spec: ObjectiveSpec,
    num_classes: int,
    embed_dim: int,
    feature_dim: int | None,
    flat: dict[str, Any],
    regularizers: list[nn.Module],
    reg_items: Any,
) -> Objective:
    owner = f"objective {spec.name}"
    keys = dict(spec.composite_defaults)
    params = dict(keys)
    for key, value in flat.items():
        if key not in keys:
            raise BadInputError(f"{owner}: unknown option {key!r}; valid keys: {', '.join([*keys, 'regularizers'])}")
        default = keys[key]
        if isinstance(default, (list, tuple)):
            if not isinstance(value, (list, tuple)):
                raise BadInputError(f"{owner}: {key} must be a list (got {value!r})")
            params[key] = list(value)
        elif isinstance(default, Mapping):
            if not isinstance(value, Mapping):
                raise BadInputError(f"{owner}: {key} must be a mapping of options (got {value!r})")
            params[key] = dict(value)
        else:
            params[key] = _coerce(owner, key, value, default)
    if spec.needs_features and (feature_dim is None or isinstance(feature_dim, bool) or int(feature_dim) < 1):
        raise BadInputError(f"{owner} reads the pooled backbone features: pass feature_dim (the model's feature_dim)")
    if spec.embed_groups > 1 and embed_dim % spec.embed_groups:
        raise BadInputError(
            f"{owner} splits the embedding into {spec.embed_groups} heads: embed_dim ({embed_dim}) "
            f"must be a multiple of {spec.embed_groups}"
        )
    try:
        criterion = spec.builder(num_classes, embed_dim, feature_dim, params)
    except (TypeError, ValueError, AssertionError) as exc:
        raise BadInputError(f"{owner}: {exc}") from None
    config = {
        "name": spec.name,
        "loss": spec.loss_class,
        "num_classes": num_classes,
        "embed_dim": embed_dim,
        "params": params,
    }
    if reg_items:
        config["regularizers"] = reg_items if isinstance(reg_items, list) else [reg_items]
    return Objective(
        spec.name,
        None,
        None,
        spec.kind,
        num_classes,
        embed_dim,
        config,
        {"lr_mult": 1.0},
        False,
        regularizers=regularizers,
        criterion=criterion,
        needs_features=spec.needs_features,
        embed_groups=spec.embed_groups,
    )


# --------------------------------------------------------------------------------------------
# Composite objectives of the ooDML study (formulas in oodml/objectives/)
# --------------------------------------------------------------------------------------------
def _positive_ints(what: str, values: Any) -> list[int]:
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ValueError(f"{what} must be a non-empty list of positive integers (got {values!r})")
    return [int(v) for v in values]


def _build_s2sd(num_classes: int, embed_dim: int, feature_dim: int, p: dict[str, Any]) -> nn.Module:
    from oodml.objectives.s2sd import S2SD

    source = get_spec(p["source"])
    if source.builder is not None:
        raise ValueError(f"source must be a plain objective (a loss with its miner), not {source.name}")
    dims = _positive_ints("dims", p["dims"])
    sources = [make_objective(source.name, num_classes, d, **dict(p["source_params"])) for d in [embed_dim, *dims]]
    return S2SD(
        sources,
        int(feature_dim),
        dims,
        temperature=float(p["temperature"]),
        weight=float(p["weight"]),
        feat_weight=float(p["feat_weight"]),
        feat_delay=int(p["feat_delay"]),
        head_lr_mult=float(p["head_lr_mult"]),
    )


def _build_diva(num_classes: int, embed_dim: int, feature_dim: int | None, p: dict[str, Any]) -> nn.Module:
    from pytorch_metric_learning import losses as L

    from oodml.objectives.diva import DIVA_HEADS, DiVA

    base = get_spec(p["base"])
    if base.builder is not None:
        raise ValueError(f"base must be a plain objective (a loss with its miner), not {base.name}")
    disc = make_objective(base.name, num_classes, embed_dim // len(DIVA_HEADS), **dict(p["base_params"]))
    shared = L.MarginLoss(margin=float(p["shared_margin"]), beta=float(p["shared_beta"]), learn_beta=True)
    intra = L.ContrastiveLoss(pos_margin=0.0, neg_margin=float(p["intra_margin"]))
    return DiVA(
        embed_dim,
        disc,
        shared,
        intra,
        alpha_shared=float(p["alpha_shared"]),
        alpha_intra=float(p["alpha_intra"]),
        alpha_ssl=float(p["alpha_ssl"]),
        decorrelation=float(p["decorrelation"]),
        directions=list(p["directions"]),
        decorr_dim=int(p["decorr_dim"]),
        decorr_lr_mult=float(p["decorr_lr_mult"]),
        ssl_t=float(p["ssl_t"]),
        beta_lr=float(p["beta_lr"]),
    )


for _spec in (
    ObjectiveSpec(
        "s2sd",
        "S2SD",
        "pair",
        "S2SD (Roth et al. 2021): R-Margin + self-distillation from 1024/1536/2048-d heads (KL, T 1, weight 50) "
        "and from the pooled features (weight 50)",
        builder=_build_s2sd,
        needs_features=True,
        composite_defaults={
            "source": "rmargin",
            "source_params": {},
            "dims": [1024, 1536, 2048],
            "temperature": 1.0,
            "weight": 50.0,
            "feat_weight": 50.0,
            "feat_delay": 1000,
            "head_lr_mult": 1.0,
        },
        params="aux heads, source's",
        search_space=_space(
            weight=Tunable(1.0, 200.0, log=True),
            feat_weight=Tunable(1.0, 200.0, log=True),
            temperature=Tunable(0.25, 4.0, log=True),
        ),
    ),
    ObjectiveSpec(
        "diva",
        "DiVA",
        "pair",
        "DiVA (Milbich et al. 2020): 4 heads (discriminative, shared, intra-class, self-supervised), "
        "alpha 0.3 each, adversarial decorrelation 1500",
        builder=_build_diva,
        embed_groups=4,
        composite_defaults={
            "base": "margin",
            "base_params": {},
            "alpha_shared": 0.3,
            "alpha_intra": 0.3,
            "alpha_ssl": 0.3,
            "decorrelation": 1500.0,
            "directions": ["discriminative-selfsim", "discriminative-shared", "discriminative-intra"],
            "decorr_dim": 512,
            "decorr_lr_mult": 1.0,
            "shared_margin": 0.2,
            "shared_beta": 1.2,
            "intra_margin": 1.0,
            "ssl_t": 2.0,
            "beta_lr": 5e-4,
        },
        params="regressors, betas",
        search_space=_space(
            alpha_shared=Tunable(0.05, 1.0, log=True),
            alpha_intra=Tunable(0.05, 1.0, log=True),
            alpha_ssl=Tunable(0.05, 1.0, log=True),
            decorrelation=Tunable(100.0, 5000.0, log=True),
        ),
    ),
):
    register_objective(_spec)

#: The eight methods of the ooDML study (Milbich et al. 2021), in its order.
STUDY_METHODS = ("margin", "rmargin", "multisimilarity", "arcface", "proxyanchor", "maxentropy", "s2sd", "diva")


# --------------------------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _lr_text(spec: ObjectiveSpec) -> str:
    if not spec.params:
        return "-"
    if _beta_spec(spec):
        return f"{spec.params}: {_fmt(spec.options['beta_lr'])} (beta_lr)"
    if spec.builder is not None:
        return f"{spec.params}: see summary"
    if spec.options.get("lr") is not None:
        return f"{spec.params}: {_fmt(spec.options['lr'])}"
    return f"{spec.params}: x{_fmt(spec.options['lr_mult'])} base lr"


def list_objectives() -> list[dict[str, Any]]:
    """One dict per objective: ``name``, ``loss`` (pml class), ``kind``, ``miner`` (name or None),
    ``defaults`` (every overridable key with its default, loss keys in our units), ``param_lr``
    (how the loss's own parameters are trained), ``notes``, ``summary`` and ``composite`` (built
    from other objectives, like S2SD and DiVA: its keys are its own, it takes no ``miner``)."""
    load_entry_point_plugins()
    rows = []
    for spec in _SPECS:
        defaults: dict[str, Any] = dict(spec.loss_keys())
        defaults.update(spec.options)
        defaults["regularizers"] = list(spec.regularizers)
        if spec.miner:
            mk = _scalar_args(_miner_class(spec.miner), inherited=False)
            mk.update(spec.miner_defaults)
            for sub, loss_key in spec.miner_tied.items():
                mk[sub] = spec.loss_defaults.get(loss_key, mk.get(sub))
            defaults.update({f"miner.{k}": v for k, v in mk.items()})
        notes = "; ".join(f"{k}: {note}" for k, (_, note) in spec.to_pml.items())
        rows.append(
            {
                "name": spec.name,
                "loss": spec.loss_class,
                "kind": spec.kind,
                "miner": spec.miner,
                "defaults": defaults,
                "param_lr": _lr_text(spec),
                "notes": notes,
                "summary": spec.summary,
                "composite": spec.builder is not None,
            }
        )
    return rows


def format_objectives_table() -> str:
    """A plain-text table of the objectives (used by ``python -m oodml.train --list-losses``)."""
    header = ("name", "kind", "pml loss", "miner", "own params lr", "defaults")
    lines = []
    for r in list_objectives():
        spec = OBJECTIVES[r["name"]]
        shown = [f"{k}={_fmt(v)}" for k, v in spec.loss_defaults.items()]
        shown += [f"{k}={_fmt(v)}" for k, v in spec.composite_defaults.items() if v not in ({}, [])]
        shown += [f"regularizers={list(spec.regularizers)}"] if spec.regularizers else []
        shown += [f"{k}={_fmt(v)}" for k, v in spec.options.items() if k not in ("lr", "lr_mult", "beta_lr")]
        shown += [f"miner.{k}={_fmt(r['defaults'][f'miner.{k}'])}" for k in (*spec.miner_defaults, *spec.miner_tied)]
        text = " ".join(shown) or "-"
        if r["notes"]:
            text += f"  [{r['notes']}]"
        lines.append((r["name"], r["kind"], r["loss"], r["miner"] or "-", r["param_lr"], text))
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(len(header) - 1)]

    def join(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells[:-1], widths)) + "  " + cells[-1]

    out = [join(header), join(tuple("-" * w for w in widths) + ("-" * len(header[-1]),))]
    out += [join(line) for line in lines]
    out.append(
        "override with key=value (e.g. margin=0.1, beta_lr=1e-3, miner.epsilon=0.2, miner=none); "
        "kind 'pair' needs >= 2 samples per class in a batch; labels must be 0..num_classes-1"
    )
    out.append(f"ooDML study methods: {', '.join(STUDY_METHODS)}; regularizers=[uniformity] on top of any objective")
    out.append(
        "any pytorch-metric-learning loss as pml:<ClassName> (keyword arguments as key=value): "
        + ", ".join(f"pml:{n}" for n in list_pml_losses())
    )
    out.append(
        "miners (miner=<name>): "
        + ", ".join(list_miners())
        + "; or miner=pml:<ClassName>: "
        + ", ".join(f"pml:{n}" for n in list_pml_miners())
    )
    out.append(
        f"your own objectives: --plugin MODULE (calls oodml.losses.register_objective) or the "
        f"'{ENTRY_POINT_GROUP}' entry point group"
    )
    return "\n".join(out)


__all__ = [
    "ENTRY_POINT_GROUP",
    "OBJECTIVES",
    "Objective",
    "ObjectiveSpec",
    "STUDY_METHODS",
    "format_objectives_table",
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
    "unregister_objective",
    "valid_keys",
]


def search_space(loss: str) -> dict[str, Tunable]:
    """The registry's search space of objective ``loss`` (empty when it declares none)."""
    return dict(getattr(get_spec(loss), "search_space", None) or {})


def format_search_spaces() -> str:
    """Text table of every objective's search space and defaults (``--list-losses --search-space``)."""
    rows = []
    for row in list_objectives():
        space = search_space(row["name"])
        if not space:
            rows.append((row["name"], "(none declared: give one under search.space in the study)", "", ""))
            continue
        for i, (key, t) in enumerate(space.items()):
            if key.startswith("train."):
                shown = f"train: {key[6:]}"
            else:
                d = row["defaults"].get(key)
                shown = "-" if d is None else (f"{d:g}" if isinstance(d, float) else str(d))
            rows.append((row["name"] if i == 0 else "", key, t.describe(), shown))
    header = ("name", "key", "range", "default")
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(3)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3]
        for r in [header, tuple("-" * w for w in widths) + ("-------",), *rows]
    ]
    lines.append(
        "override in a study: search: {space: {<loss> or all: {<key>: [low, high] | {low, high, log: true} "
        "| {choices: [...]} | value | null}}}"
    )
    return "\n".join(lines)
