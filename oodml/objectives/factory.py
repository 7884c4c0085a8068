"""``make_objective(name, num_classes, embed_dim, **overrides)``: an :class:`Objective` from the registry.

A plain objective is built in named steps: the miner choice (:func:`_choose_miner`), the
overrides sorted into loss / objective-option / miner arguments (:func:`_sort_overrides`), the
loss arguments in pml's units (:func:`_pml_kwargs`), then pml's loss and miner. A composite one
(S2SD, DiVA, a plugin's ``builder``) checks its own keys and calls its builder
(:func:`_make_composite`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from oodml.errors import BadInputError
from oodml.objectives.miners import list_miners, miner_class, resolve_miner_name
from oodml.objectives.objective import Objective
from oodml.objectives.overrides import coerce_option, flatten_overrides
from oodml.objectives.pml import scalar_args
from oodml.objectives.registry import ObjectiveSpec, beta_spec, get_spec
from oodml.objectives.regularizers import make_regularizers

__all__ = ["make_objective", "valid_keys"]


def valid_keys(name: str) -> list[str]:
    """All override keys the objective ``name`` accepts (for its default miner)."""
    spec = get_spec(name)
    keys = list(spec.loss_keys()) + list(spec.options) + (["miner"] if spec.kind == "pair" and not spec.builder else [])
    if spec.miner:
        keys += [f"miner.{k}" for k in scalar_args(miner_class(spec.miner), inherited=False)]
    return keys + ["regularizers"]


def make_objective(
    name: str, num_classes: int, embed_dim: int, *, feature_dim: int | None = None, **overrides: Any
) -> Objective:
    """Build the objective ``name`` for ``num_classes`` training classes and ``embed_dim``-d
    embeddings, with hyperparameter ``overrides`` (see :mod:`oodml.losses`).

    ``feature_dim``: width of the pooled backbone features, needed by objectives that read them
    (``needs_features``: S2SD's auxiliary heads).  ``regularizers=[...]`` adds regularisers
    (:func:`~oodml.objectives.regularizers.make_regularizers`) to any objective.
    """
    spec = get_spec(name)
    for what, value in (("num_classes", num_classes), ("embed_dim", embed_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadInputError(f"objective {spec.name}: {what} must be a positive integer (got {value!r})")
    owner = f"objective {spec.name}"
    flat = flatten_overrides(overrides)
    reg_items = flat.pop("regularizers", list(spec.regularizers))
    regularizers = make_regularizers(reg_items, embed_dim, owner)
    if spec.builder is not None:
        return _make_composite(spec, num_classes, embed_dim, feature_dim, flat, regularizers, reg_items)
    return _make_plain(spec, num_classes, embed_dim, flat, regularizers, reg_items)


# --------------------------------------------------------------------------------------------
# A plain objective: a pml loss and its miner
# --------------------------------------------------------------------------------------------
def _make_plain(
    spec: ObjectiveSpec,
    num_classes: int,
    embed_dim: int,
    flat: dict[str, Any],
    regularizers: list[nn.Module],
    reg_items: Any,
) -> Objective:
    owner = f"objective {spec.name}"
    miner_name = _choose_miner(spec, flat, owner)
    loss_kwargs, options, miner_kwargs = _sort_overrides(spec, flat, miner_name, owner)
    pml_kwargs, indexed = _pml_kwargs(spec, loss_kwargs, options, num_classes, embed_dim)
    try:
        loss = spec.pml_class(**pml_kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise BadInputError(f"{owner}: pml {spec.loss_class} rejected {loss_kwargs} ({exc})") from None
    miner = None
    if miner_name:
        try:
            miner = miner_class(miner_name)(**miner_kwargs)
        except (TypeError, ValueError, AssertionError) as exc:
            raise BadInputError(f"{owner}: pml miner {miner_name} rejected {miner_kwargs} ({exc})") from None

    lr_rule = (
        {"lr": options.get("beta_lr")}
        if beta_spec(spec)
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


def _choose_miner(spec: ObjectiveSpec, flat: dict[str, Any], owner: str) -> str | None:
    """The miner first (popped from ``flat``), so ``miner.*`` keys are checked against the right class."""
    miner_name = spec.miner
    if "miner" in flat:
        miner_name = resolve_miner_name(flat.pop("miner"), owner)
        if miner_name is not None and spec.kind != "pair":
            raise BadInputError(
                f"{owner} is a {spec.kind}-based loss and takes no miner (pml ignores mined tuples for it); "
                "remove the miner option"
            )
    return miner_name


def _sort_overrides(
    spec: ObjectiveSpec, flat: Mapping[str, Any], miner_name: str | None, owner: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(loss_kwargs, options, miner_kwargs)``: the spec's defaults with ``flat``'s overrides
    checked and applied; a miner argument tied to a loss argument follows it unless set."""
    miner_keys = scalar_args(miner_class(miner_name), inherited=False) if miner_name else {}
    loss_keys = spec.loss_keys()
    loss_kwargs = dict(spec.loss_defaults)
    options = dict(spec.options)
    miner_kwargs: dict[str, Any] = dict(spec.miner_defaults) if miner_name == spec.miner else {}
    explicit_miner: set[str] = set()
    for key, value in flat.items():
        if key.startswith("miner."):
            sub = key[len("miner.") :]
            miner_kwargs[sub] = _miner_override(owner, key, value, miner_name, miner_keys)
            explicit_miner.add(sub)
        elif key in options:
            options[key] = _option_override(owner, key, value, spec.options[key])
        elif key in loss_keys:
            loss_kwargs[key] = coerce_option(owner, key, value, loss_keys[key])
        else:
            valid = list(loss_keys) + list(options) + (["miner"] if spec.kind == "pair" else [])
            valid += [f"miner.{k}" for k in miner_keys] + ["regularizers"]
            raise BadInputError(f"{owner}: unknown option {key!r}; valid keys: {', '.join(valid)}")
    for sub, loss_key in spec.miner_tied.items():
        if miner_name == spec.miner and sub not in explicit_miner and loss_key in loss_kwargs:
            miner_kwargs[sub] = loss_kwargs[loss_key]
    return loss_kwargs, options, miner_kwargs


def _miner_override(owner: str, key: str, value: Any, miner_name: str | None, miner_keys: Mapping[str, Any]) -> Any:
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
    return coerce_option(owner, key, value, miner_keys[sub])


def _option_override(owner: str, key: str, value: Any, default: Any) -> Any:
    """An objective option; the learning rates (``lr``, ``beta_lr``, ``lr_mult``) must be positive."""
    if key in ("lr", "beta_lr", "lr_mult") and value is not None:
        value = coerce_option(owner, key, value, 1.0)
        if value <= 0:
            raise BadInputError(f"{owner}: {key} must be positive (got {value})")
        return value
    return coerce_option(owner, key, value, default)


def _pml_kwargs(
    spec: ObjectiveSpec, loss_kwargs: Mapping[str, Any], options: Mapping[str, Any], num_classes: int, embed_dim: int
) -> tuple[dict[str, Any], bool]:
    """The loss's constructor arguments in pml's units, and whether the loss indexes by label."""
    pml_kwargs = dict(loss_kwargs)
    for key, (conv, _) in spec.to_pml.items():
        if key in pml_kwargs and pml_kwargs[key] is not None:
            pml_kwargs[key] = conv(pml_kwargs[key])
    indexed = spec.sized
    if beta_spec(spec):
        if options.get("per_class_beta") and pml_kwargs.get("learn_beta"):
            pml_kwargs["num_classes"] = num_classes
            indexed = True
    if spec.sized:
        pml_kwargs.update(num_classes=num_classes, embedding_size=embed_dim)
        if spec.loss_type is not None:  # a plugin's class: pass only what it takes
            names = set(inspect.signature(spec.loss_type.__init__).parameters)
            if not any(p.kind == p.VAR_KEYWORD for p in inspect.signature(spec.loss_type.__init__).parameters.values()):
                pml_kwargs = {k: v for k, v in pml_kwargs.items() if k in names}
    return pml_kwargs, indexed


# --------------------------------------------------------------------------------------------
# A composite objective (S2SD, DiVA, a plugin's builder)
# --------------------------------------------------------------------------------------------
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
            params[key] = coerce_option(owner, key, value, default)
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
