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

Layout
------
:mod:`~oodml.features.files` the feature table (:class:`FeatureSet`) and the features-file format,
torch-free; :mod:`~oodml.features.base` the :class:`Extractor` object; :mod:`~oodml.features.weightsfree`
``pixels`` and ``hog``; :mod:`~oodml.features.pretrained` ``inception``, ``resnet50``, ``timm:<model>``
and their weights files; :mod:`~oodml.features.extractors` the registry (:data:`EXTRACTORS`: a new
extractor is one entry there); :mod:`~oodml.features.cache` running an extractor over a dataset and
the on-disk cache; :mod:`~oodml.features.cli` the command.

The names below are loaded lazily (PEP 562 ``__getattr__``) on purpose: ``oodml.features.files``
must import without torch (about 3.6 s of startup) so that commands given a features file
(``make_splits --features-file``, ``shift --features-file``) never pay it, and importing a submodule
runs this ``__init__`` first.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the submodule that defines it.
_EXPORTS: dict[str, str] = {
    "FEATURES_FILE_LAYOUT": "oodml.features.files",
    "FEATURES_FILE_VERSION": "oodml.features.files",
    "FeatureSet": "oodml.features.files",
    "PathLike": "oodml.features.files",
    "_write_npz": "oodml.features.files",
    "features_fingerprint": "oodml.features.files",
    "load_features_file": "oodml.features.files",
    "npz_bytes": "oodml.features.files",
    "save_features_file": "oodml.features.files",
    "standard_split_for_features": "oodml.features.files",
    "Extractor": "oodml.features.base",
    "HOG": "oodml.features.weightsfree",
    "GrayResize": "oodml.features.weightsfree",
    "FID_INCEPTION_FILE": "oodml.features.pretrained",
    "FID_INCEPTION_URL": "oodml.features.pretrained",
    "RESNET50_FILE": "oodml.features.pretrained",
    "RESNET50_URL": "oodml.features.pretrained",
    "IMAGENET_MEAN": "oodml.features.pretrained",
    "IMAGENET_STD": "oodml.features.pretrained",
    "FIDInceptionInput": "oodml.features.pretrained",
    "FIDInceptionPool3": "oodml.features.pretrained",
    "weights_digest": "oodml.features.pretrained",
    "EXTRACTORS": "oodml.features.extractors",
    "ExtractorSpec": "oodml.features.extractors",
    "PIXEL_DEFAULT_DATASETS": "oodml.features.extractors",
    "default_extractor": "oodml.features.extractors",
    "describe_extractors": "oodml.features.extractors",
    "get_extractor": "oodml.features.extractors",
    "list_extractors": "oodml.features.extractors",
    "CACHE_VERSION": "oodml.features.cache",
    "FeatureCacheWarning": "oodml.features.cache",
    "default_workers": "oodml.features.cache",
    "extract_features": "oodml.features.cache",
    "feature_cache_path": "oodml.features.cache",
    "resolve_device": "oodml.features.cache",
    "run_extractor": "oodml.features.cache",
    "build_parser": "oodml.features.cli",
    "main": "oodml.features.cli",
}

__all__ = [
    "CACHE_VERSION",
    "EXTRACTORS",
    "Extractor",
    "ExtractorSpec",
    "FEATURES_FILE_LAYOUT",
    "FEATURES_FILE_VERSION",
    "FIDInceptionInput",
    "FIDInceptionPool3",
    "FID_INCEPTION_FILE",
    "FID_INCEPTION_URL",
    "FeatureCacheWarning",
    "FeatureSet",
    "GrayResize",
    "HOG",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PIXEL_DEFAULT_DATASETS",
    "RESNET50_FILE",
    "RESNET50_URL",
    "build_parser",
    "default_extractor",
    "default_workers",
    "describe_extractors",
    "extract_features",
    "feature_cache_path",
    "features_fingerprint",
    "get_extractor",
    "list_extractors",
    "load_features_file",
    "main",
    "npz_bytes",
    "resolve_device",
    "run_extractor",
    "save_features_file",
    "standard_split_for_features",
    "weights_digest",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
