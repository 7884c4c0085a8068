"""Offline-safe resolution of pretrained weights.

Two kinds of weights are used in the project:

* **timm backbones** (the embedding model, frozen feature extractors):
  :func:`create_timm_model`.  With ``weights=PATH`` the given local file is loaded (safetensors, or
  a PyTorch state dict read with ``torch.load(..., weights_only=True)``).  With ``pretrained=True``
  and no path, the weights timm would download are looked up **only** in the local caches timm
  uses: the Hugging Face hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
  ``~/.cache/huggingface/hub``) and the torch hub checkpoint folder
  (``$TORCH_HOME/hub/checkpoints``, else ``~/.cache/torch/hub/checkpoints``).  Nothing is ever
  downloaded and nothing ever falls back to random weights: a missing file raises
  :class:`~oodml.errors.WeightsNotFoundError` with one line naming the file, where to put it, and
  the ``--weights PATH`` / ``--no-pretrained`` alternatives.
* **torch-hub hosted checkpoints** (torchvision / pytorch-fid style, e.g. the FID Inception):
  :func:`load_torch_hub_checkpoint` reads ``torch.hub.get_dir()/checkpoints/<filename>``.

Every file is loaded without executing code (safetensors or ``weights_only=True``).
The created model carries a ``weights_source`` attribute saying where its weights came from
(``"random"``, ``"file:<path>"`` or ``"cache:<path>"``), for logs and run records.

Shared by the frozen extractors (:mod:`oodml.features.pretrained`) and the trained models
(:mod:`oodml.models`), so it stays a top-level module.  timm is imported inside the functions that
need it, on purpose: with torchvision it costs seconds of startup (``python -X importtime``), and
reading a local state dict needs neither.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from oodml.errors import BadInputError, UnsafeFileError, WeightsNotFoundError

PathLike = str | os.PathLike

#: Shown in every "weights missing" message.
ALTERNATIVES = "or pass --weights PATH to load a local file, or --no-pretrained to start from random weights on purpose"

# Filenames timm looks for in a Hugging Face repo when the pretrained config names none
# (``pytorch_model.bin`` with its safetensors alternative, the latter preferred).
_HF_DEFAULT_FILES = ("model.safetensors", "pytorch_model.bin")
_HF_PREFIXES = ("hf-hub:", "hf_hub:")


# --------------------------------------------------------------------------------------------
# Cache folders (resolved at call time, so tests and users can point HF_HOME / TORCH_HOME elsewhere)
# --------------------------------------------------------------------------------------------
def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, following huggingface_hub's environment variables."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.environ[var])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def torch_hub_checkpoint_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints`` (honours ``$TORCH_HOME``), where torchvision, timm's
    URL-hosted weights and pytorch-fid keep downloaded checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _hf_repo_folder(repo_id: str) -> Path:
    return hf_hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))


def _split_revision(repo_id: str) -> tuple[str, str | None]:
    if "@" in repo_id:
        repo, rev = repo_id.split("@", 1)
        return repo, rev or None
    return repo_id, None


def _hf_cached_file(repo_id: str, filename: str) -> Path | None:
    """The cached path of ``filename`` in Hugging Face repo ``repo_id`` (``org/name[@rev]``), or
    ``None``.  Purely local: never touches the network."""
    from huggingface_hub import try_to_load_from_cache  # lazy: only when a Hugging Face name is resolved

    repo, revision = _split_revision(repo_id)
    found = try_to_load_from_cache(repo, filename, cache_dir=str(hf_hub_cache_dir()), revision=revision)
    if isinstance(found, str) and os.path.isfile(found):
        return Path(found)
    return None


def _url_filename(url: str) -> str:
    return os.path.basename(urlparse(url).path)


def _hf_missing_hint(repo_id: str, filename: str) -> str:
    repo, _ = _split_revision(repo_id)
    return (
        f"put {filename} of the Hugging Face repo {repo} into the Hugging Face cache at "
        f"{_hf_repo_folder(repo)} (e.g. run `hf download {repo} {filename}` on a machine with network "
        f"access and copy its models--{repo.replace('/', '--')} cache folder there)"
    )


# --------------------------------------------------------------------------------------------
# Reading state dicts safely
# --------------------------------------------------------------------------------------------
def read_state_dict(path: PathLike, what: str = "weights file") -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` without executing code.

    ``.safetensors`` files are read with safetensors; anything else with
    ``torch.load(map_location="cpu", weights_only=True)``.  Common checkpoint wrappers are
    unwrapped (``{"state_dict": ...}``, ``{"model": ...}``, ``{"state_dict_ema": ...}``, ...)
    and a ``module.`` prefix (DataParallel) is stripped.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsNotFoundError(f"{what} {path} does not exist; check the path")
    if path.is_dir():
        raise BadInputError(f"{what} {path} is a folder; give the weights file inside it")
    if path.name.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError:  # pragma: no cover - safetensors comes with timm
            raise BadInputError(f"{what} {path} is a safetensors file but safetensors is not installed") from None
        try:
            obj: Any = load_file(str(path), device="cpu")
        except Exception as exc:
            raise BadInputError(
                f"{what} {path} is not a readable safetensors file ({type(exc).__name__}: {exc}); "
                "it may be truncated: obtain it again"
            ) from None
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            text = str(exc)
            if "weights_only" in text or "Unsupported global" in text or "Unsupported class" in text:
                first = next((ln for ln in text.splitlines() if "Unsupported" in ln), text.splitlines()[0])
                raise UnsafeFileError(
                    f"{what} {path} contains Python objects that are not plain tensors ({first.strip()}); "
                    "refusing to unpickle it: re-save it as a plain state dict or as safetensors"
                ) from None
            raise BadInputError(
                f"{what} {path} is not a readable PyTorch checkpoint ({type(exc).__name__}: "
                f"{text.splitlines()[0] if text else ''}); it may be truncated: obtain it again"
            ) from None
    return _unwrap_state_dict(obj, path, what)


_WRAPPER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model", "net", "network", "weights")


def _unwrap_state_dict(obj: Any, path: Path, what: str) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, Mapping) and obj and not all(torch.is_tensor(v) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping) and obj[k]), None)
            if inner is None:
                break
            obj = inner
        else:
            break
    if not isinstance(obj, Mapping) or not obj:
        raise BadInputError(f"{what} {path} does not hold a state dict (found {type(obj).__name__})")
    tensors = {str(k): v for k, v in obj.items() if torch.is_tensor(v)}
    if not tensors:
        raise BadInputError(f"{what} {path} holds no tensors; is it a weights file?")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def _short_list(keys: list[str], n: int = 5) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:n])
    return shown + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or ()
    if isinstance(names, str):
        names = (names,)
    return tuple(f"{n}." for n in names)


def _model_filter_fn(model: nn.Module):
    """timm's per-architecture checkpoint converter (``checkpoint_filter_fn`` in the model's module),
    used to read original (non-timm) checkpoints; ``None`` when the architecture has none."""
    module = sys.modules.get(type(model).__module__)
    fn = getattr(module, "checkpoint_filter_fn", None)
    return fn if callable(fn) else None


def load_state_dict_into(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str,
    strict: bool = True,
) -> dict[str, list[str]]:
    """Load ``state_dict`` into a timm ``model``, reporting mismatches clearly.

    * Classifier keys (timm's ``pretrained_cfg["classifier"]``, e.g. ``fc.*``/``head.*``) are dropped
      when the model has no such layer or their shapes differ (a 1000-class ImageNet head loaded
      into a feature extractor): that is expected and not an error.
    * When keys do not line up, timm's architecture-specific ``checkpoint_filter_fn`` is tried
      (original checkpoints of e.g. ViTs, position-embedding resizing).
    * With ``strict`` (default) any other missing key, unexpected key or shape mismatch raises
      :class:`BadInputError` naming them; otherwise they are returned (and left at their
      initialisation for missing keys).

    Returns ``{"missing": [...], "unexpected": [...], "dropped": [...], "mismatched": [...]}``.
    """
    own = model.state_dict()
    sd = dict(state_dict)

    def _fits(d: Mapping[str, torch.Tensor]) -> bool:
        return all(k in own and own[k].shape == v.shape for k, v in d.items()) and all(
            k in d for k in own if not k.endswith("num_batches_tracked")
        )

    cls_prefixes = _classifier_prefixes(model)

    def _unfit_cls(k: str, v: torch.Tensor) -> bool:  # a classifier key the model cannot take
        return bool(cls_prefixes) and k.startswith(cls_prefixes) and (k not in own or own[k].shape != v.shape)

    def _strip_cls(d: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v for k, v in d.items() if not _unfit_cls(k, v)}

    if not _fits(_strip_cls(sd)):
        fn = _model_filter_fn(model)
        if fn is not None:
            try:
                converted = fn(dict(sd), model)
            except Exception:  # the converter does not understand this file: report the raw mismatch
                converted = None
            if isinstance(converted, Mapping) and _fits(_strip_cls(converted)):
                sd = dict(converted)

    dropped = sorted(k for k, v in sd.items() if _unfit_cls(k, v))
    for k in dropped:
        del sd[k]
    mismatched = sorted(k for k, v in sd.items() if k in own and own[k].shape != v.shape)
    unexpected = sorted(k for k in sd if k not in own)
    missing = sorted(
        k for k in own if k not in sd and not k.endswith("num_batches_tracked") and not k.startswith(cls_prefixes)
    )
    # A classifier the model has but the file lacks (e.g. weights saved from a headless model,
    # loaded into a model with a fresh head) stays initialised: report it, but it is not an error.
    missing_cls = sorted(k for k in own if k not in sd and bool(cls_prefixes) and k.startswith(cls_prefixes))
    if strict and (missing or unexpected or mismatched):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_short_list(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_short_list(unexpected)})")
        if mismatched:
            shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in mismatched]
            parts.append(f"{len(mismatched)} shape mismatches ({_short_list(shapes, 3)})")
        arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture") or type(model).__name__
        raise BadInputError(
            f"{source} does not match the backbone {arch}: {'; '.join(parts)}; "
            "is it a checkpoint of a different architecture?"
        )
    for k in mismatched:
        del sd[k]
    model.load_state_dict(sd, strict=False)
    return {"missing": missing + missing_cls, "unexpected": unexpected, "dropped": dropped, "mismatched": mismatched}


# --------------------------------------------------------------------------------------------
# timm models
# --------------------------------------------------------------------------------------------
def _check_model_name(name: str) -> None:
    import timm  # lazy on purpose: see the module docstring

    if name.startswith(_HF_PREFIXES) or name.startswith("local-dir:"):
        return
    if not timm.is_model(name):
        arch = name.split(".", 1)[0]
        hint = ""
        if timm.is_model(arch):
            tags = [n for n in timm.list_pretrained(f"{arch}.*")]
            hint = f"; known weights for {arch}: {', '.join(tags[:8])}" if tags else ""
        else:
            close = difflib.get_close_matches(arch, timm.list_models(), n=6, cutoff=0.75)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise BadInputError(f"unknown timm model {name!r}{hint} (see timm.list_models())")


def resolve_pretrained_file(name: str) -> Path:
    """Find the pretrained weights timm would download for model ``name`` in the local caches.

    Looks in the Hugging Face hub cache (timm's preferred source) and then in the torch hub
    checkpoint folder (timm's URL-hosted weights).  Raises :class:`WeightsNotFoundError` with
    one line naming the exact file and folder when neither holds it.  Never downloads.
    """
    from timm.models import get_pretrained_cfg  # lazy on purpose: see the module docstring

    try:
        cfg = get_pretrained_cfg(name, allow_unregistered=True)
    except RuntimeError as exc:  # an unknown pretrained tag
        raise BadInputError(
            f"timm model {name!r}: {exc} (see timm.list_pretrained('{name.split('.', 1)[0]}*'))"
        ) from None
    full = f"{cfg.architecture}.{cfg.tag}" if cfg is not None and cfg.tag else name
    tag = f" ({full})" if full != name else ""
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise WeightsNotFoundError(
            f"timm has no pretrained weights for {name!r}; pick a name from timm.list_pretrained() "
            f"(e.g. {name.split('.', 1)[0]}.<tag>), {ALTERNATIVES}"
        )
    if cfg.file and os.path.isfile(cfg.file):
        return Path(cfg.file)
    hints = []
    if cfg.hf_hub_id:
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else list(_HF_DEFAULT_FILES)
        if cfg.hf_hub_filename and cfg.hf_hub_filename.endswith(".bin"):
            names.insert(0, cfg.hf_hub_filename[:-4] + ".safetensors")
        for filename in names:
            found = _hf_cached_file(cfg.hf_hub_id, filename)
            if found is not None:
                return found
        hints.append(_hf_missing_hint(cfg.hf_hub_id, names[0]))
    url = cfg.url[0] if isinstance(cfg.url, (tuple, list)) else cfg.url
    if url:
        fname = _url_filename(url)
        candidate = torch_hub_checkpoint_dir() / fname
        if candidate.is_file():
            return candidate
        hints.append(f"save {url} as {candidate}")
    raise WeightsNotFoundError(
        f"pretrained weights for timm model {name!r}{tag} are not on disk and cannot be downloaded "
        f"here: {', or '.join(hints)}; {ALTERNATIVES}"
    )


def _resolve_hf_hub_dir(name: str, pretrained: bool) -> Path:
    """For ``hf-hub:org/name`` models: the cached snapshot folder holding config.json (and, when
    ``pretrained``, the weights).  timm would otherwise reach the network for the config."""
    repo_id = name.split(":", 1)[1]
    config = _hf_cached_file(repo_id, "config.json")
    if config is None:
        raise WeightsNotFoundError(
            f"the config of timm model {name!r} is not on disk and cannot be downloaded here: "
            f"{_hf_missing_hint(repo_id, 'config.json')} together with its weights ({_HF_DEFAULT_FILES[0]}); "
            f"or use a registered timm name, {ALTERNATIVES}"
        )
    if pretrained and not any(_hf_cached_file(repo_id, f) for f in _HF_DEFAULT_FILES):
        raise WeightsNotFoundError(
            f"pretrained weights for timm model {name!r} are not on disk and cannot be downloaded here: "
            f"{_hf_missing_hint(repo_id, _HF_DEFAULT_FILES[0])}; {ALTERNATIVES}"
        )
    return config.parent


def create_timm_model(
    name: str,
    pretrained: bool,
    weights: PathLike | None = None,
    *,
    strict: bool = True,
    **timm_kwargs: Any,
) -> nn.Module:
    """``timm.create_model`` that never downloads and never silently uses random weights.

    * ``weights=PATH``: build the architecture, then load that local file (whatever ``pretrained``
      says) with :func:`load_state_dict_into`: classifier keys that do not fit are dropped, any
      other mismatch raises :class:`BadInputError` (``strict=False``: tolerated and returned in
      ``model.weights_report``).
    * ``pretrained=True`` and no path: the weights timm would fetch are taken from the local
      Hugging Face / torch hub caches (:func:`resolve_pretrained_file`) and handed to timm's own
      loader (so its architecture-specific conversions, input-channel adaptation and classifier
      handling apply).  Missing → :class:`WeightsNotFoundError` naming the file and folder.
    * ``pretrained=False`` and no path: random initialisation, as asked.

    ``timm_kwargs`` go to ``timm.create_model`` (``num_classes``, ``global_pool``,
    ``drop_path_rate``, ``img_size``, ...).  The model gets ``weights_source`` (``"random"``,
    ``"file:<path>"`` or ``"cache:<path>"``).
    """
    import timm  # lazy on purpose: see the module docstring

    name = str(name)
    _check_model_name(name)
    create_name = name
    if name.startswith(_HF_PREFIXES):
        create_name = "local-dir:" + str(_resolve_hf_hub_dir(name, pretrained and weights is None))

    if weights is not None:
        path = Path(weights).expanduser()
        state_dict = read_state_dict(path, what="weights file")
        model = timm.create_model(create_name, pretrained=False, **timm_kwargs)
        model.weights_report = load_state_dict_into(model, state_dict, f"weights file {path}", strict=strict)
        model.weights_source = f"file:{path}"
        return model

    if not pretrained:
        model = timm.create_model(create_name, pretrained=False, **timm_kwargs)
        model.weights_source = "random"
        return model

    if create_name.startswith("local-dir:"):
        # timm reads config and weights from the cached snapshot folder (weights_only loading).
        model = timm.create_model(create_name, pretrained=True, **timm_kwargs)
        model.weights_source = "cache:" + create_name.split(":", 1)[1]
        return model

    path = resolve_pretrained_file(name)
    state_dict = read_state_dict(path, what="cached pretrained weights")
    overlay = dict(timm_kwargs.pop("pretrained_cfg_overlay", None) or {})
    overlay["state_dict"] = state_dict
    try:
        model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **timm_kwargs)
    except RuntimeError as exc:
        if "loading state_dict" in str(exc) or "size mismatch" in str(exc):
            raise BadInputError(
                f"cached pretrained weights {path} do not fit timm model {name!r} "
                f"({str(exc).splitlines()[0]}); delete the file and obtain it again"
            ) from None
        raise
    # timm keeps the overlay in the model's config; drop our reference to the (now copied) tensors.
    for attr in ("pretrained_cfg", "default_cfg"):
        cfg = getattr(model, attr, None)
        if isinstance(cfg, dict) and "state_dict" in cfg:
            cfg["state_dict"] = None
    model.weights_source = f"cache:{path}"
    return model


# --------------------------------------------------------------------------------------------
# torch-hub hosted checkpoints (torchvision, pytorch-fid)
# --------------------------------------------------------------------------------------------
def load_torch_hub_checkpoint(filename: str, url: str, what: str, hint: str | None = None) -> dict[str, torch.Tensor]:
    """Load ``torch.hub.get_dir()/checkpoints/<filename>`` (``weights_only=True``, on CPU).

    ``what`` names the weights in messages (e.g. ``"FID Inception"``).  When the file is absent a
    :class:`WeightsNotFoundError` names the file, the folder and the URL to fetch it from
    (``hint``, when given, is appended, e.g. an option that points elsewhere).  Never downloads.
    """
    path = torch_hub_checkpoint_dir() / filename
    if not path.is_file():
        extra = f"; {hint}" if hint else ""
        raise WeightsNotFoundError(
            f"{what} weights {filename} are not on disk and cannot be downloaded here: download {url} "
            f"on a machine with network access and put it at {path} (folder {path.parent}){extra}"
        )
    return read_state_dict(path, what=f"{what} weights")


__all__ = [
    "ALTERNATIVES",
    "create_timm_model",
    "hf_hub_cache_dir",
    "load_state_dict_into",
    "load_torch_hub_checkpoint",
    "read_state_dict",
    "resolve_pretrained_file",
    "torch_hub_checkpoint_dir",
]
