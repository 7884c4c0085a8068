"""The extractors with weights files: ``inception`` (pytorch-fid's FID Inception-v3), ``resnet50``
(torchvision ImageNet) and ``timm:<model>``.  Weights are found on disk (``--weights PATH`` or the
torch hub / Hugging Face caches), never downloaded; a missing file is one clear error.

torchvision, pytorch-fid and timm are imported inside the functions that build a network, on
purpose: a cache hit and the weights-free extractors never need them, and timm alone costs about
1 s of startup on this project's 2-core machine (``python -X importtime``).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from oodml import weights as W
from oodml.errors import BadInputError, WeightsNotFoundError
from oodml.features.base import Extractor, _freeze
from oodml.features.files import PathLike

__all__ = [
    "FID_INCEPTION_FILE",
    "FID_INCEPTION_URL",
    "RESNET50_FILE",
    "RESNET50_URL",
    "inception_extractor",
    "resnet50_extractor",
    "timm_extractor",
    "weights_digest",
]

FID_INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_INCEPTION_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
)
RESNET50_FILE = "resnet50-0676ba61.pth"
RESNET50_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_WEIGHTS_HINT = "or pass --weights PATH (weights=PATH) to load a local copy"


class FIDInceptionInput:
    """pytorch-fid's input: RGB as a [0, 1] tensor, bilinearly resized to 299 × 299
    (``align_corners=False``, no antialiasing), one image at a time."""

    size = 299

    def __call__(self, img) -> torch.Tensor:
        from torchvision.transforms.functional import to_tensor  # lazy: see the module docstring

        x = to_tensor(img.convert("RGB"))
        if tuple(x.shape[-2:]) == (self.size, self.size):
            return x
        return F.interpolate(x[None], size=(self.size, self.size), mode="bilinear", align_corners=False)[0]


def _resnet_transform():
    from torchvision import transforms as T  # lazy: see the module docstring

    return T.Compose(
        [
            T.Resize(256, interpolation=T.InterpolationMode.BILINEAR),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


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
    path = W.torch_hub_checkpoint_dir() / filename
    if not path.is_file():
        W.load_torch_hub_checkpoint(filename, url, what, hint=_WEIGHTS_HINT)  # raises WeightsNotFoundError
    return path


def _load_error(source: str, arch: str, exc: Exception) -> BadInputError:
    text = str(exc).strip().splitlines()
    detail = " ".join(ln.strip() for ln in text[1:3]) if len(text) > 1 else (text[0] if text else "")
    if len(detail) > 300:
        detail = detail[:300] + "..."
    return BadInputError(
        f"{source} does not fit the {arch} architecture ({detail}); is it a checkpoint of a different network?"
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
    import pytorch_fid.inception as pfi  # lazy: see the module docstring

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


def inception_extractor(weights: PathLike | None) -> Extractor:
    path, source, what = _weights_location(
        weights, "inception", FID_INCEPTION_FILE, FID_INCEPTION_URL, "FID Inception", "FID Inception weights"
    )

    def build() -> nn.Module:
        return _build_fid_inception(W.read_state_dict(path, what=what), f"{what} {path}")

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
    import torchvision  # lazy: see the module docstring

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


def resnet50_extractor(weights: PathLike | None) -> Extractor:
    path, source, what = _weights_location(
        weights,
        "resnet50",
        RESNET50_FILE,
        RESNET50_URL,
        "torchvision ImageNet ResNet-50 (IMAGENET1K_V1)",
        "ResNet-50 weights",
    )

    def build() -> nn.Module:
        return _build_resnet50(W.read_state_dict(path, what=what), f"{what} {path}")

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
    if model_name.startswith(("hf-hub:", "hf_hub:")):
        folder = W._resolve_hf_hub_dir(model_name, True)
        for fname in ("model.safetensors", "pytorch_model.bin"):
            if (folder / fname).is_file():
                return folder / fname
    return W.resolve_pretrained_file(model_name)


def timm_extractor(model_name: str, weights: PathLike | None) -> Extractor:
    import timm.data  # lazy: see the module docstring

    name = f"timm:{model_name}"
    if not model_name:
        raise BadInputError("extractor 'timm:' needs a model name, e.g. timm:resnet50.a1_in1k")
    if weights is not None:
        path = _check_weights_path(weights, name)
    else:
        path = _timm_weights_file(model_name)
    model = W.create_timm_model(
        model_name, pretrained=True, weights=path if weights is not None else None, num_classes=0
    )
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
