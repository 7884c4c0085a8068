"""The built-in objectives: pml's losses with the literature's defaults, the ooDML study's methods
(R-Margin, MaxEntropy, S2SD, DiVA) and their search spaces, registered at import.

**A new loss is one** :class:`~oodml.objectives.registry.ObjectiveSpec` **in** :data:`BUILTIN_SPECS`
(a composite one also gets its ``builder`` here; its formulas go in a module of their own in
:mod:`oodml.objectives`, like :mod:`~oodml.objectives.s2sd`). Its size: one spec per objective,
each a dozen lines of defaults and search ranges, a cohesive table read top to bottom.
"""

from __future__ import annotations

import math
from typing import Any

from pytorch_metric_learning import losses as L
from torch import nn

from oodml.objectives.diva import DIVA_HEADS, DiVA
from oodml.objectives.factory import make_objective
from oodml.objectives.registry import ObjectiveSpec, get_spec, register_objective
from oodml.objectives.s2sd import S2SD
from oodml.objectives.space import Tunable

__all__ = ["BUILTIN_SPECS", "OBJECTIVE_ALIASES", "STUDY_METHODS"]


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


# --------------------------------------------------------------------------------------------
# Composite objectives of the ooDML study (formulas in oodml/objectives/s2sd.py, diva.py)
# --------------------------------------------------------------------------------------------
def _positive_ints(what: str, values: Any) -> list[int]:
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ValueError(f"{what} must be a non-empty list of positive integers (got {values!r})")
    return [int(v) for v in values]


def _build_s2sd(num_classes: int, embed_dim: int, feature_dim: int, p: dict[str, Any]) -> nn.Module:
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


#: The registered built-in objectives, in the order of the listing.
BUILTIN_SPECS: list[ObjectiveSpec] = [
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
    # ---- composite objectives of the study (builders above) -------------------------------------
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
]

#: Other names of built-in objectives (lower case, "_" for "-").
OBJECTIVE_ALIASES = {
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

#: The eight methods of the ooDML study (Milbich et al. 2021), in its order.
STUDY_METHODS = ("margin", "rmargin", "multisimilarity", "arcface", "proxyanchor", "maxentropy", "s2sd", "diva")

for _spec in BUILTIN_SPECS:
    register_objective(_spec, aliases=[a for a, name in OBJECTIVE_ALIASES.items() if name == _spec.name])
