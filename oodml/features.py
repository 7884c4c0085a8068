"""Frozen feature extractors, cached feature tables, and "bring your own features".

The FID that grades ooDML splits is computed on features of a *frozen* network.  This module
maps a short extractor name to such a network (one registry), runs it over a dataset, caches the
resulting ``(n, d)`` float32 table on disk, and also reads a user's own feature table.

Extractors
----------
``pixels`` (weights-free, 256-d)
    The image in grayscale (PIL ``"L"``, ITU-R 601 luma), resized to 16 × 16 with PIL's
    antialiasing bilinear filter, scaled to [0, 1] and flattened.  Deterministic, instant, and the
    default for the embedded ``glyphs`` dataset and for ``omniglot`` (line drawings on a white
    background, where position and shape of the strokes are what tells classes apart).
``hog`` (weights-free, 324-d)
    A histogram of oriented gradients of the grayscale image resized to 32 × 32 (antialiased
    bilinear): central-difference gradients, 9 unsigned orientation bins over [0, π) with linear
    vote interpolation between neighbouring bins, 8 × 8-pixel cells (4 × 4 cells), blocks of 2 × 2
    cells with stride one cell (3 × 3 blocks × 36 values) each normalised with L2-Hys (L2 norm,
    clip at 0.2, L2 norm again).  Computed with torch ops; invariant to brightness offsets and
    robust to small shifts, it separates shapes better than raw pixels.
``inception`` (2048-d)
    pytorch-fid's FID Inception-v3 (``pytorch_fid.inception.InceptionV3([3])`` built with
    ``use_fid_inception=True``): the pool3 features used by every FID implementation.  Input is
    the RGB image as a [0, 1] tensor resized to 299 × 299 with ``F.interpolate(mode="bilinear",
    align_corners=False)`` -- exactly pytorch-fid's own resize, done per image so images of
    different sizes can be batched (the network's own resize is then the identity) -- and the
    network's own ``2x - 1`` normalisation.  Weights: ``pt_inception-2015-12-05-6726825d.pth``.
``resnet50`` (2048-d)
    torchvision's ImageNet ResNet-50 (``IMAGENET1K_V1``, file ``resnet50-0676ba61.pth``),
    globally average-pooled features (the layer before ``fc``) of ``Resize(256)`` +
    ``CenterCrop(224)`` images with ImageNet mean/std normalisation: the ooDML reference
    protocol, and the default for every dataset except ``glyphs`` and ``omniglot``.
``timm:<model name>`` (model-dependent)
    Any timm model's pooled features (``num_classes=0``), preprocessed with timm's evaluation
    transform for that model's data config.  Weights through :func:`oodml.weights.create_timm_model`.

Weights are never downloaded and never silently random.  ``inception`` and ``resnet50`` look for
their file in the torch hub checkpoint folder (``$TORCH_HOME/hub/checkpoints``, else
``~/.cache/torch/hub/checkpoints``: where pytorch-fid and torchvision would have put it); timm
models also look in the Hugging Face cache.  A missing file raises
:class:`~oodml.errors.WeightsNotFoundError` naming the file, the folder to put it in and the URL.
``get_extractor(name, weights=PATH)`` (``--weights PATH``) loads a local state dict instead
(``torch.load(weights_only=True)`` or safetensors).  For ``inception`` that is a state dict of
the FID Inception in pytorch-fid's file format (torchvision ``Inception3`` key names, as in the
``.pth`` above) or of ``InceptionV3([3])`` itself (``blocks.*`` keys); for ``resnet50`` a
torchvision ResNet-50 state dict (the ``fc.*`` keys may be absent).

Cache
-----
:func:`extract_features` stores each table as ``<cache>/features/<dataset>-<extractor>-<key>.npz``
(``<cache>`` from :func:`oodml.paths.cache_dir`), where the key hashes the dataset fingerprint,
the extractor name, the weights identity (SHA-256 of the weights file, or ``none``) and the
extractor's preprocessing id.  A cache hit reads no image.  Files are written atomically and
byte-identically for identical features (no timestamps in the archive); they are read with
``allow_pickle=False``; an unreadable or inconsistent cache file is ignored with a warning and
rebuilt.

Example::

    from oodml.datasets import load_dataset
    from oodml.features import extract_features, load_features_file

    fs = extract_features(load_dataset())            # glyphs with `pixels`
    fs.features.shape, fs.classes[:3], fs.class_ids()[:5]
    fs = extract_features(load_dataset("cub", root="~/data"), "inception")
    mine = load_features_file("my_features.npz")     # keys: features (n×d), labels (n), [superclasses]

Command line: ``python -m oodml.features --dataset cub --root ~/data --extractor resnet50
[--weights PATH] [--out features.npz]`` extracts (or reads from the cache) and prints a summary;
``--out`` writes the table in the features-file format :func:`load_features_file` reads.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset as _TorchDataset

from oodml.cli import run_cli
from oodml.errors import BadInputError, OodmlError
from oodml.feature_files import (  # noqa: F401 - re-exported: the torch-free half of this module
    FEATURES_FILE_LAYOUT,
    FEATURES_FILE_VERSION,
    FeatureSet,
    _write_npz,
    features_fingerprint,
    load_features_file,
    npz_bytes,
    save_features_file,
    standard_split_for_features,
)
from oodml.io import dumps_json

PathLike = str | os.PathLike

#: Bump when the cache file layout or the meaning of a preprocessing id changes.
CACHE_VERSION = 1

FID_INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_INCEPTION_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
)
RESNET50_FILE = "resnet50-0676ba61.pth"
RESNET50_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Datasets whose default extractor is the weights-free ``pixels`` (everything else: ``resnet50``).
PIXEL_DEFAULT_DATASETS = ("glyphs", "omniglot")

_WEIGHTS_HINT = "or pass --weights PATH (weights=PATH) to load a local copy"


class FeatureCacheWarning(UserWarning):
    """A cached feature file was unreadable or inconsistent and is being rebuilt."""


# ============================================================================================
# Extractor object
# ============================================================================================
def _freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class Extractor:
    """A frozen feature extractor: ``transform`` (PIL RGB image → tensor) then ``model``
    (batch → ``(B, dim)`` tensor).

    Attributes
    ----------
    name:
        Registry name (``pixels``, ``hog``, ``inception``, ``resnet50``, ``timm:<model>``).
    dim:
        Feature dimension ``d``.
    preprocess_id:
        A string that identifies the preprocessing (part of the cache key).
    transform:
        Picklable callable mapping a PIL RGB image to the model's input tensor (one image).
    model:
        The frozen network (``eval()`` mode, no gradients).  Networks with weights files are
        built on first access, so a cache hit never loads them.
    weights_id:
        ``"sha256:<hex>"`` of the weights file, or ``"none"`` for weights-free extractors.
    weights_source:
        Where the weights come from (``"none"``, ``"file:<path>"``, ``"cache:<path>"``).
    """

    def __init__(
        self,
        name: str,
        *,
        dim: int,
        preprocess_id: str,
        transform: Callable[[Any], torch.Tensor],
        weights_id: str = "none",
        weights_source: str = "none",
        model: nn.Module | None = None,
        build: Callable[[], nn.Module] | None = None,
    ):
        if model is None and build is None:
            raise ValueError("an Extractor needs a model or a build function")
        self.name = name
        self.dim = int(dim)
        self.preprocess_id = preprocess_id
        self.transform = transform
        self.weights_id = weights_id
        self.weights_source = weights_source
        self._model = _freeze(model) if model is not None else None
        self._build = build
        self._lock = threading.Lock()

    @property
    def model(self) -> nn.Module:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = _freeze(self._build())  # type: ignore[misc]
        return self._model

    @property
    def model_loaded(self) -> bool:
        """Whether the network has been built (and its weights read) yet."""
        return self._model is not None

    def identity(self) -> dict[str, str]:
        """What the cache key depends on, besides the dataset."""
        return {"extractor": self.name, "weights": self.weights_id, "preprocess": self.preprocess_id}

    def __repr__(self) -> str:
        return (
            f"Extractor(name={self.name!r}, dim={self.dim}, weights={self.weights_source!r}, "
            f"preprocess={self.preprocess_id!r})"
        )


# ============================================================================================
# Transforms (top-level classes so that DataLoader workers can pickle them)
# ============================================================================================
class GrayResize:
    """PIL image → grayscale (``"L"``) → ``size × size`` (PIL bilinear, antialiased) →
    float tensor ``(1, size, size)`` in [0, 1]."""

    def __init__(self, size: int):
        self.size = int(size)

    def __call__(self, img) -> torch.Tensor:
        from PIL import Image

        g = img.convert("L").resize((self.size, self.size), Image.Resampling.BILINEAR)
        arr = np.asarray(g, dtype=np.float32) / np.float32(255.0)
        return torch.from_numpy(arr.copy())[None]


class FIDInceptionInput:
    """pytorch-fid's input: RGB as a [0, 1] tensor, bilinearly resized to 299 × 299
    (``align_corners=False``, no antialiasing), one image at a time."""

    size = 299

    def __call__(self, img) -> torch.Tensor:
        from torchvision.transforms.functional import to_tensor

        x = to_tensor(img.convert("RGB"))
        if tuple(x.shape[-2:]) == (self.size, self.size):
            return x
        return F.interpolate(x[None], size=(self.size, self.size), mode="bilinear", align_corners=False)[0]


def _resnet_transform():
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Resize(256, interpolation=T.InterpolationMode.BILINEAR),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


# ============================================================================================
# Weights-free models
# ============================================================================================
class HOG(nn.Module):
    """Histogram-of-oriented-gradients descriptor of ``(B, 1, S, S)`` images in [0, 1].

    Output ``(B, bins · block² · (S/cell - block + 1)²)``, block by block in row-major order and,
    within a block, bin-major (``[bin, cell]``); see the module docstring.
    """

    def __init__(self, size: int = 32, cell: int = 8, bins: int = 9, block: int = 2, clip: float = 0.2):
        super().__init__()
        if size % cell:
            raise ValueError("size must be a multiple of cell")
        self.size, self.cell, self.bins, self.block, self.clip = size, cell, bins, block, clip
        self.eps = 1e-3

    @property
    def dim(self) -> int:
        nb = self.size // self.cell - self.block + 1
        return self.bins * self.block * self.block * nb * nb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
        gx = xp[:, :, 1:-1, 2:] - xp[:, :, 1:-1, :-2]
        gy = xp[:, :, 2:, 1:-1] - xp[:, :, :-2, 1:-1]
        b, _, h, w = x.shape
        mag = torch.hypot(gx, gy).reshape(b, 1, h * w)
        ang = torch.remainder(torch.atan2(gy, gx), math.pi).reshape(b, 1, h * w)  # unsigned, [0, π)
        pos = ang * (self.bins / math.pi) - 0.5  # bin k covers centre (k + 0.5)·π/bins
        lo = torch.floor(pos)
        w_hi = pos - lo
        lo_i = torch.remainder(lo.long(), self.bins)
        hi_i = torch.remainder(lo_i + 1, self.bins)
        # each pixel votes its magnitude into its two nearest bins (circularly), linearly weighted
        hist = torch.zeros(b, self.bins, h * w, dtype=x.dtype, device=x.device)
        hist.scatter_add_(1, lo_i, mag * (1 - w_hi))
        hist.scatter_add_(1, hi_i, mag * w_hi)
        hist = hist.reshape(b, self.bins, h, w)
        cells = F.avg_pool2d(hist, self.cell) * float(self.cell * self.cell)  # (B, bins, C, C)
        blocks = F.unfold(cells, kernel_size=self.block, stride=1).transpose(1, 2)  # (B, L, bins·block²)
        blocks = blocks / torch.sqrt((blocks * blocks).sum(-1, keepdim=True) + self.eps**2)
        blocks = blocks.clamp(max=self.clip)
        blocks = blocks / torch.sqrt((blocks * blocks).sum(-1, keepdim=True) + self.eps**2)
        return blocks.flatten(1)


class FIDInceptionPool3(nn.Module):
    """pytorch-fid's ``InceptionV3([3])`` returning its pool3 output as ``(B, 2048)``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0].flatten(1)


# ============================================================================================
# Weights files
# ============================================================================================
_DIGESTS: dict[tuple[str, int, int], str] = {}


def weights_digest(path: PathLike) -> str:
    """``"sha256:<hex>"`` of a weights file (memoised per path, size and modification time)."""
    p = Path(path).expanduser().resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        _DIGESTS[key] = "sha256:" + h.hexdigest()
    return _DIGESTS[key]


def _check_weights_path(weights: PathLike, name: str) -> Path:
    from oodml.errors import WeightsNotFoundError

    path = Path(weights).expanduser()
    if not path.exists():
        raise WeightsNotFoundError(
            f"weights file {path} for extractor {name!r} does not exist; check the --weights path"
        )
    if path.is_dir():
        raise BadInputError(f"weights file {path} for extractor {name!r} is a folder; give the weights file inside it")
    return path


def _hub_weights(filename: str, url: str, what: str) -> Path:
    """The torch hub checkpoint ``filename`` on disk, or the clear "missing weights" error."""
    from oodml.weights import load_torch_hub_checkpoint, torch_hub_checkpoint_dir

    path = torch_hub_checkpoint_dir() / filename
    if not path.is_file():
        load_torch_hub_checkpoint(filename, url, what, hint=_WEIGHTS_HINT)  # raises WeightsNotFoundError
    return path


def _load_error(source: str, arch: str, exc: Exception) -> BadInputError:
    text = str(exc).strip().splitlines()
    detail = " ".join(ln.strip() for ln in text[1:3]) if len(text) > 1 else (text[0] if text else "")
    if len(detail) > 300:
        detail = detail[:300] + "..."
    return BadInputError(
        f"{source} does not fit the {arch} architecture ({detail}); is it a checkpoint of a different network?"
    )


# ============================================================================================
# Extractor factories
# ============================================================================================
def _no_weights(name: str, weights: PathLike | None) -> None:
    if weights is not None:
        raise BadInputError(f"extractor {name!r} has no weights; drop --weights {weights} (weights=)")


def _pixels(weights: PathLike | None) -> Extractor:
    _no_weights("pixels", weights)
    return Extractor(
        "pixels",
        dim=256,
        preprocess_id="gray-L|pil-bilinear-16x16|scale-1/255|flatten",
        transform=GrayResize(16),
        model=nn.Flatten(1),
    )


def _hog(weights: PathLike | None) -> Extractor:
    _no_weights("hog", weights)
    model = HOG(size=32, cell=8, bins=9, block=2, clip=0.2)
    return Extractor(
        "hog",
        dim=model.dim,
        preprocess_id="gray-L|pil-bilinear-32x32|scale-1/255|hog-cell8-block2-bins9-unsigned-l2hys0.2",
        transform=GrayResize(32),
        model=model,
    )


# The FID Inception's blocks in pytorch-fid's InceptionV3 (``blocks.<i>.<j>``) and the
# torchvision Inception3 attribute each one comes from (the file format pytorch-fid ships).
_FID_BLOCK_LAYERS = (
    ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"),
    ("Conv2d_3b_1x1", "Conv2d_4a_3x3"),
    ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"),
    ("Mixed_7a", "Mixed_7b", "Mixed_7c"),
)
_INCEPTION_LOCK = threading.Lock()


def _inception3_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept an ``InceptionV3`` (``blocks.*``) state dict by renaming its keys to pytorch-fid's
    file format; the unused 1008-way ``fc`` is filled with zeros when absent."""
    if not any(k.startswith("blocks.") for k in sd):
        return sd
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        parts = k.split(".")
        if len(parts) > 3 and parts[0] == "blocks" and parts[1].isdigit() and parts[2].isdigit():
            b, j = int(parts[1]), int(parts[2])
            if b < len(_FID_BLOCK_LAYERS) and j < len(_FID_BLOCK_LAYERS[b]):
                out[".".join((_FID_BLOCK_LAYERS[b][j], *parts[3:]))] = v
                continue
        out[k] = v  # left for the strict load to report
    out.setdefault("fc.weight", torch.zeros(1008, 2048))
    out.setdefault("fc.bias", torch.zeros(1008))
    return out


def _build_fid_inception(state_dict: dict[str, torch.Tensor], source: str) -> nn.Module:
    """pytorch-fid's ``InceptionV3([3], use_fid_inception=True)`` with ``state_dict`` handed to
    its loader instead of a download (its module-level ``load_state_dict_from_url`` is swapped
    for the duration of the construction, under a lock)."""
    import pytorch_fid.inception as pfi

    sd = _inception3_keys(state_dict)

    def _provide(url: str, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        if os.path.basename(url) != FID_INCEPTION_FILE:  # pragma: no cover - a pytorch-fid change
            raise RuntimeError(f"pytorch-fid asked for unexpected weights {url}")
        return sd

    with _INCEPTION_LOCK:
        original = pfi.load_state_dict_from_url
        pfi.load_state_dict_from_url = _provide
        try:
            net = pfi.InceptionV3(
                [pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]],
                resize_input=True,
                normalize_input=True,
                requires_grad=False,
                use_fid_inception=True,
            )
        except RuntimeError as exc:
            if "state_dict" in str(exc) or "size mismatch" in str(exc):
                raise _load_error(source, "FID Inception-v3", exc) from None
            raise
        finally:
            pfi.load_state_dict_from_url = original
    return FIDInceptionPool3(net)


def _weights_location(
    weights: PathLike | None, extractor: str, hub_file: str, hub_url: str, title: str, what: str
) -> tuple[Path, str, str]:
    """(path, provenance, description) of an extractor's weights: ``--weights`` or torch hub's cache."""
    if weights is not None:
        path = _check_weights_path(weights, extractor)
        return path, f"file:{path}", "weights file"
    path = _hub_weights(hub_file, hub_url, title)
    return path, f"cache:{path}", what


def _inception(weights: PathLike | None) -> Extractor:
    from oodml.weights import read_state_dict

    path, source, what = _weights_location(
        weights, "inception", FID_INCEPTION_FILE, FID_INCEPTION_URL, "FID Inception", "FID Inception weights"
    )

    def build() -> nn.Module:
        return _build_fid_inception(read_state_dict(path, what=what), f"{what} {path}")

    return Extractor(
        "inception",
        dim=2048,
        preprocess_id="rgb|to_tensor|interpolate-bilinear-299x299-align_corners=False|fid-2x-1",
        transform=FIDInceptionInput(),
        weights_id=weights_digest(path),
        weights_source=source,
        build=build,
    )


def _build_resnet50(state_dict: dict[str, torch.Tensor], source: str) -> nn.Module:
    import torchvision

    model = torchvision.models.resnet50(weights=None)
    model.fc = nn.Identity()
    sd = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
    own = model.state_dict()
    missing = sorted(k for k in own if k not in sd and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in sd if k not in own)
    mismatched = sorted(k for k in sd if k in own and own[k].shape != sd[k].shape)
    if missing or unexpected or mismatched:
        parts = []
        groups = (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched))
        for label, keys in groups:
            if keys:
                shown = ", ".join(keys[:4]) + (f", ... ({len(keys) - 4} more)" if len(keys) > 4 else "")
                parts.append(f"{len(keys)} {label} ({shown})")
        raise BadInputError(
            f"{source} does not fit torchvision's ResNet-50: {'; '.join(parts)}; "
            "is it a checkpoint of a different network?"
        )
    model.load_state_dict(sd, strict=False)
    return model


def _resnet50(weights: PathLike | None) -> Extractor:
    from oodml.weights import read_state_dict

    path, source, what = _weights_location(
        weights,
        "resnet50",
        RESNET50_FILE,
        RESNET50_URL,
        "torchvision ImageNet ResNet-50 (IMAGENET1K_V1)",
        "ResNet-50 weights",
    )

    def build() -> nn.Module:
        return _build_resnet50(read_state_dict(path, what=what), f"{what} {path}")

    return Extractor(
        "resnet50",
        dim=2048,
        preprocess_id="rgb|resize256-bilinear-antialias|centercrop224|to_tensor|imagenet-mean-std",
        transform=_resnet_transform(),
        weights_id=weights_digest(path),
        weights_source=source,
        build=build,
    )


def _timm_weights_file(model_name: str) -> Path:
    """The local file timm's pretrained weights would come from (raises when missing)."""
    from oodml import weights as W

    if model_name.startswith(("hf-hub:", "hf_hub:")):
        folder = W._resolve_hf_hub_dir(model_name, True)
        for fname in ("model.safetensors", "pytorch_model.bin"):
            if (folder / fname).is_file():
                return folder / fname
    return W.resolve_pretrained_file(model_name)


def _timm(model_name: str, weights: PathLike | None) -> Extractor:
    import timm.data

    from oodml.weights import create_timm_model

    name = f"timm:{model_name}"
    if not model_name:
        raise BadInputError("extractor 'timm:' needs a model name, e.g. timm:resnet50.a1_in1k")
    if weights is not None:
        path = _check_weights_path(weights, name)
    else:
        path = _timm_weights_file(model_name)
    model = create_timm_model(model_name, pretrained=True, weights=path if weights is not None else None, num_classes=0)
    source = getattr(model, "weights_source", f"file:{path}")
    cfg = timm.data.resolve_model_data_config(model)
    transform = timm.data.create_transform(**cfg, is_training=False)
    keep = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    preprocess_id = "timm-eval|" + json.dumps({k: cfg.get(k) for k in keep}, sort_keys=True, separators=(",", ":"))
    _freeze(model)
    with torch.inference_mode():
        out = model(torch.zeros(1, *cfg["input_size"]))
    if out.ndim != 2:
        raise BadInputError(
            f"timm model {model_name!r} gives features of shape {tuple(out.shape)} with num_classes=0, "
            "not pooled vectors; choose a model with global pooling"
        )
    return Extractor(
        name,
        dim=int(out.shape[1]),
        preprocess_id=preprocess_id,
        transform=transform,
        weights_id=weights_digest(path),
        weights_source=source,
        model=model,
    )


_REGISTRY: dict[str, Callable[[PathLike | None], Extractor]] = {
    "pixels": _pixels,
    "hog": _hog,
    "inception": _inception,
    "resnet50": _resnet50,
}

_DESCRIPTIONS = {
    "pixels": "grayscale 16x16 pixels, 256-d, weights-free",
    "hog": "histogram of oriented gradients of a 32x32 grayscale image, 324-d, weights-free",
    "inception": f"pytorch-fid FID Inception-v3 pool3, 2048-d (weights {FID_INCEPTION_FILE})",
    "resnet50": f"torchvision ImageNet ResNet-50 average pool, 2048-d (weights {RESNET50_FILE})",
    "timm:<model>": "any timm model's pooled features (num_classes=0), timm's eval preprocessing",
}


def list_extractors() -> list[str]:
    """The registered extractor names (``timm:<model name>`` is accepted as well)."""
    return list(_REGISTRY)


def describe_extractors() -> dict[str, str]:
    """One line per extractor (including the ``timm:<model>`` pattern), for help texts."""
    return dict(_DESCRIPTIONS)


def get_extractor(name: str, weights: PathLike | None = None) -> Extractor:
    """Build the extractor ``name`` (see the module docstring); ``weights`` is a local weights
    file to use instead of the cached pretrained one.  Raises
    :class:`~oodml.errors.WeightsNotFoundError` when needed weights are not on disk."""
    if not isinstance(name, str) or not name.strip():
        raise BadInputError(f"extractor name must be a non-empty string, got {name!r}")
    key = name.strip()
    if key.lower().startswith("timm:"):
        return _timm(key.split(":", 1)[1].strip(), weights)
    factory = _REGISTRY.get(key.lower())
    if factory is None:
        close = difflib.get_close_matches(key.lower(), list(_REGISTRY), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise BadInputError(
            f"unknown feature extractor {name!r}{hint}; choose one of {', '.join(_REGISTRY)} or timm:<model name>"
        )
    return factory(weights)


def default_extractor(dataset_name: str | None) -> str:
    """``pixels`` for the embedded ``glyphs`` dataset and ``omniglot``, ``resnet50`` (the ooDML
    protocol) for everything else."""
    from oodml.datasets import canonical_name

    try:
        canon = canonical_name(dataset_name)
    except OodmlError:
        canon = str(dataset_name).lower()
    return "pixels" if canon in PIXEL_DEFAULT_DATASETS else "resnet50"


# ============================================================================================
# Feature caches
# ============================================================================================
# ---- cache ---------------------------------------------------------------------------------
def _safe_part(text: str) -> str:
    out = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in text)
    return out.strip("._") or "x"


def _cache_meta(dataset, extractor: Extractor) -> dict[str, Any]:
    return {
        "schema": f"oodml.features.cache/{CACHE_VERSION}",
        "dataset": dataset.name,
        "fingerprint": dataset.fingerprint(),
        **extractor.identity(),
        "n": len(dataset),
        "dim": extractor.dim,
    }


def feature_cache_path(dataset, extractor: Extractor | str, *, weights: PathLike | None = None) -> Path:
    """Where :func:`extract_features` caches ``dataset``'s features for ``extractor``."""
    from oodml.paths import cache_dir

    ex = extractor if isinstance(extractor, Extractor) else get_extractor(extractor, weights=weights)
    meta = _cache_meta(dataset, ex)
    key = hashlib.sha256(dumps_json(meta, indent=None).encode("utf-8")).hexdigest()[:20]
    return cache_dir("features") / f"{_safe_part(dataset.name)}-{_safe_part(ex.name)}-{key}.npz"


def _read_cache(path: Path, meta: dict[str, Any]) -> np.ndarray | None:
    """The cached features, or ``None`` (with a warning) if the file is unusable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = json.loads(str(z["meta"][()]))
            feats = np.array(z["features"])
        problem = None
        if stored != meta:
            problem = "its contents belong to other inputs"
        elif feats.dtype != np.float32 or feats.shape != (meta["n"], meta["dim"]):
            problem = f"it holds a {feats.dtype} array of shape {feats.shape}, expected ({meta['n']}, {meta['dim']})"
        elif not np.isfinite(feats).all():
            problem = "it holds non-finite values"
    except Exception as exc:  # truncated zip, missing member, bad header, bad JSON, ...
        problem = f"it cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        feats = None
    if problem is None:
        return feats
    warnings.warn(
        f"ignoring cached features {path}: {problem}; extracting them again", FeatureCacheWarning, stacklevel=3
    )
    return None


# ---- extraction ----------------------------------------------------------------------------
class _TransformedImages(_TorchDataset):
    def __init__(self, dataset, transform: Callable[[Any], torch.Tensor]):
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.dataset.load_image(i))


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` → CUDA when available, else CPU; otherwise the named device."""
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise BadInputError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:<index>") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadInputError(f"device {device!r} asked for but CUDA is not available here; use --device cpu or auto")
    return dev


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


def run_extractor(
    extractor: Extractor,
    dataset,
    *,
    batch_size: int = 64,
    workers: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Run ``extractor`` over every image of ``dataset`` (no cache): ``(n, dim)`` float32 in
    item order.  Batched through a DataLoader with ``workers`` processes, on ``device``, in eval
    mode under ``torch.inference_mode()``."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from oodml.cli import progress_disabled

    if int(batch_size) < 1:
        raise BadInputError(f"batch size must be at least 1, got {batch_size}")
    workers = default_workers() if workers is None else int(workers)
    if workers < 0:
        raise BadInputError(f"workers must be 0 or more, got {workers}")
    n = len(dataset)
    workers = min(workers, math.ceil(n / int(batch_size)))
    dev = resolve_device(device)
    model = extractor.model.to(dev).eval()
    loader = DataLoader(
        _TransformedImages(dataset, extractor.transform),
        batch_size=int(batch_size),
        shuffle=False,
        num_workers=workers,
        pin_memory=dev.type == "cuda",
        drop_last=False,
    )
    out = np.empty((n, extractor.dim), dtype=np.float32)
    pos = 0
    name = getattr(dataset, "name", "dataset")
    with (
        torch.inference_mode(),
        tqdm(
            total=n, unit="img", desc=f"features {extractor.name} ({name})", disable=not progress or progress_disabled()
        ) as bar,
    ):
        for batch in loader:
            feats = model(batch.to(dev, non_blocking=dev.type == "cuda"))
            b = int(feats.shape[0])
            if feats.ndim != 2 or feats.shape[1] != extractor.dim:
                raise RuntimeError(
                    f"extractor {extractor.name} returned shape {tuple(feats.shape)}, expected (B, {extractor.dim})"
                )
            out[pos : pos + b] = feats.float().cpu().numpy()
            pos += b
            bar.update(b)
    if pos != n:  # pragma: no cover - DataLoader contract
        raise RuntimeError(f"extracted {pos} feature rows for {n} images")
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise BadInputError(
            f"extractor {extractor.name} ({extractor.weights_source}) gave non-finite features for "
            f"{int(bad.sum())} images (first: {dataset.items[first].path}); are its weights broken?"
        )
    return out


def _dataset_featureset(dataset, extractor: Extractor, features: np.ndarray) -> FeatureSet:
    sups = [it.superclass for it in dataset.items]
    return FeatureSet(
        features=features,
        labels=[it.label for it in dataset.items],
        superclasses=sups if any(s is not None for s in sups) else None,
        classes=list(dataset.classes),
        extractor=extractor.name,
        source=f"dataset:{dataset.name}",
        fingerprint=dataset.fingerprint(),
    )


def extract_features(
    dataset,
    extractor: str | Extractor | None = None,
    *,
    weights: PathLike | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    device: str | torch.device | None = None,
    cache: bool = True,
    progress: bool = True,
) -> FeatureSet:
    """Features of every image of ``dataset`` (an :class:`~oodml.datasets.ImageDataset`).

    ``extractor``: a name (default :func:`default_extractor` of the dataset) or an
    :class:`Extractor`; ``weights``: a local weights file (with a name only).  ``workers``
    defaults to ``min(4, cpu count)``; ``device`` to CUDA when available.  With ``cache`` the
    table is read from / written to :func:`feature_cache_path` (a hit reads no image).

    Returns a :class:`FeatureSet` whose rows follow ``dataset.items``.
    """
    if extractor is None:
        extractor = default_extractor(getattr(dataset, "name", None))
    if isinstance(extractor, Extractor):
        if weights is not None:
            raise BadInputError("pass weights= to get_extractor(), not with an Extractor object")
        ex = extractor
    else:
        ex = get_extractor(extractor, weights=weights)
    path = None
    meta = _cache_meta(dataset, ex)
    if cache:
        path = feature_cache_path(dataset, ex)
        if path.exists():
            feats = _read_cache(path, meta)
            if feats is not None:
                return _dataset_featureset(dataset, ex, feats)
    feats = run_extractor(ex, dataset, batch_size=batch_size, workers=workers, device=device, progress=progress)
    if path is not None:
        try:
            _write_npz(path, {"features": feats, "meta": np.array(dumps_json(meta, indent=None).strip())})
        except OSError as exc:  # a read-only or full cache must not cost the extraction
            warnings.warn(
                f"could not write the feature cache {path} ({exc}); continuing without it",
                FeatureCacheWarning,
                stacklevel=2,
            )
    return _dataset_featureset(dataset, ex, feats)


# ============================================================================================
# Command line
# ============================================================================================
def build_parser():
    import argparse

    from oodml.cli import add_quiet
    from oodml.datasets import DEFAULT_DATASET, dataset_names

    p = argparse.ArgumentParser(
        prog="python -m oodml.features",
        description="Extract (or read from the cache) frozen features of a dataset.",
    )
    p.add_argument("--dataset", default=None, help=f"one of {', '.join(dataset_names())} (default: {DEFAULT_DATASET})")
    p.add_argument("--root", default=None, help="data root (for folder/csv: the folder or CSV file)")
    p.add_argument(
        "--extractor",
        default=None,
        help="pixels, hog, inception, resnet50 or timm:<model> (default: pixels for glyphs/omniglot, else resnet50)",
    )
    p.add_argument("--weights", default=None, help="a local weights file for the extractor (never downloads)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: min(4, cpus))")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:<i>")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    p.add_argument("--out", default=None, help="also write the table as a features file (.npz)")
    p.add_argument("--list", action="store_true", help="list the extractors and exit")
    add_quiet(p)
    return p


def _main(argv: list[str] | None = None) -> int:
    from oodml.cli import progress_disabled
    from oodml.datasets import load_dataset

    args = build_parser().parse_args(argv)
    if args.list:
        for name, text in describe_extractors().items():
            print(f"{name:14s} {text}")
        return 0
    ds = load_dataset(args.dataset, root=args.root)
    name = args.extractor or default_extractor(ds.name)
    ex = get_extractor(name, weights=args.weights)
    fs = extract_features(
        ds,
        ex,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        cache=not args.no_cache,
        progress=not progress_disabled(args.quiet),
    )
    print(f"dataset {ds.name}: {len(fs)} images, {len(fs.classes)} classes")
    print(f"extractor {ex.name}: {fs.dim}-d features ({ex.weights_source})")
    if not args.no_cache:
        print(f"cache {feature_cache_path(ds, ex)}")
    if args.out:
        print(f"wrote {save_features_file(fs, args.out)}")
    return 0


main = run_cli(_main)

__all__ = [
    "Extractor",
    "FeatureCacheWarning",
    "FeatureSet",
    "HOG",
    "default_extractor",
    "describe_extractors",
    "extract_features",
    "feature_cache_path",
    "features_fingerprint",
    "get_extractor",
    "list_extractors",
    "load_features_file",
    "npz_bytes",
    "run_extractor",
    "save_features_file",
    "standard_split_for_features",
    "weights_digest",
]

if __name__ == "__main__":
    sys.exit(main())
