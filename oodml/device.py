"""Device resolution, once for every stage.

``torch`` is imported inside :func:`resolve_device` on purpose: importing it costs about 3.6 s on a
2-core machine, and commands that only read feature files (``make_splits --features-file``,
``evaluate`` on a ``.npz``) must not pay it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oodml.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["DEVICE_HELP", "cuda_available", "resolve_device"]

#: The help text of every command's ``--device`` flag.
DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:<index>"


def cuda_available() -> bool:
    """Whether torch sees a CUDA device."""
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: Any = None) -> torch.device:
    """``None``/``"auto"`` → CUDA when available, else CPU; otherwise the named device.

    An unknown name, or CUDA asked for where there is none, is one clear :class:`BadInputError`.
    """
    import torch

    if isinstance(device, torch.device):
        dev = device
    elif device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(str(device).strip())
        except (RuntimeError, TypeError):
            raise BadInputError(f"unknown device {device!r}; use {DEVICE_HELP}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadInputError(
            f"device {str(device)!r} asked for but CUDA is not available here; use --device cpu or auto"
        )
    return dev
