"""The registry of objectives: :class:`ObjectiveSpec`, :func:`register_objective`, :func:`get_spec`.

The built-in objectives register themselves in :mod:`oodml.objectives.builtin` (imported by the
package, so ``from oodml.objectives.registry import get_spec`` always sees them); plugins register
theirs with :func:`register_objective` from their own module, loaded by :func:`load_plugins`
(``--plugin``), the ``OODML_PLUGINS`` environment variable or the ``oodml.objectives`` entry point
group (:func:`load_entry_point_plugins`). Any pytorch-metric-learning loss is available as
``pml:<ClassName>`` (:func:`pml_spec`).
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from pytorch_metric_learning import losses as pml_losses
from torch import nn

from oodml.errors import BadInputError, OodmlError
from oodml.objectives.pml import init_param_names, pml_class, scalar_args
from oodml.objectives.space import Tunable

__all__ = [
    "ENTRY_POINT_GROUP",
    "OBJECTIVES",
    "ObjectiveSpec",
    "get_spec",
    "load_entry_point_plugins",
    "load_plugins",
    "pml_spec",
    "register_objective",
    "registered_specs",
    "search_space",
    "unregister_objective",
]


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
        return getattr(pml_losses, self.loss_class)

    def loss_keys(self) -> dict[str, Any]:
        if self.builder is not None:
            return dict(self.composite_defaults)
        keys = scalar_args(self.pml_class)
        keys.update(self.loss_defaults)
        return keys


def beta_spec(spec: ObjectiveSpec) -> bool:
    """A margin-loss objective whose learnable β has its own absolute learning rate ``beta_lr``."""
    return spec.loss_class == "MarginLoss" and "beta_lr" in spec.options


# The registry: specs in registration order, by name, and the aliases of names.
_SPECS: list[ObjectiveSpec] = []
OBJECTIVES: dict[str, ObjectiveSpec] = {}
_OBJECTIVE_ALIASES: dict[str, str] = {}


def registered_specs() -> list[ObjectiveSpec]:
    """The registered specs in registration order (built-ins first, then plugins')."""
    return list(_SPECS)


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


def search_space(loss: str) -> dict[str, Tunable]:
    """The registry's search space of objective ``loss`` (empty when it declares none)."""
    return dict(getattr(get_spec(loss), "search_space", None) or {})


# --------------------------------------------------------------------------------------------
# Any pytorch-metric-learning loss by class name
# --------------------------------------------------------------------------------------------
_PML_SPECS: dict[str, ObjectiveSpec] = {}


def pml_spec(class_name: str) -> ObjectiveSpec:
    """The spec of ``pml:<class_name>``: pml's loss with pml's defaults.  A loss with
    ``num_classes`` and ``embedding_size`` arguments (proxies, class weights) is built for the
    split's classes and the model's width, its parameters train at ``lr_mult`` (default 1) x the
    base rate; the others are pair-based and accept a miner (``miner=...``)."""
    if class_name in _PML_SPECS:
        return _PML_SPECS[class_name]
    cls = pml_class(pml_losses, class_name, pml_losses.BaseMetricLossFunction, "loss")
    sized = {"num_classes", "embedding_size"} <= init_param_names(cls)
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


# --------------------------------------------------------------------------------------------
# Registration and plugins: objectives from the user's own modules
# --------------------------------------------------------------------------------------------
ENTRY_POINT_GROUP = "oodml.objectives"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_entry_points_loaded = False


def register_objective(spec: ObjectiveSpec, *, replace: bool = False, aliases: Iterable[str] = ()) -> ObjectiveSpec:
    """Add ``spec`` to the registry (for plugins: call it at import time of your module).

    ``spec.name`` must be a lower-case word (``[a-z][a-z0-9_]*``); registering a name twice is an
    error unless it is the same spec or ``replace=True``.  ``aliases``: other names that select
    it (``get_spec("oproxy")`` is ``proxyanchor``).  Example (a module ``mypkg/losses.py``
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
    for alias in aliases:
        _OBJECTIVE_ALIASES[str(alias)] = spec.name
    return spec


def unregister_objective(name: str) -> None:
    """Remove a registered objective (for tests and notebooks)."""
    spec = OBJECTIVES.pop(name, None)
    if spec is not None:
        _SPECS.remove(spec)


def load_plugins(modules: Iterable[str] | str | None) -> list[str]:
    """Import plugin modules (each registers its objectives with :func:`register_objective`);
    returns their names.  A module that cannot be imported is one clear error."""
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
