"""Shared by the tests of :mod:`oodml.features`: caches in tmp_path, no progress bars, no network;
tiny folder datasets of PNGs the tests write; random weights files (nothing is downloaded)."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import oodml.datasets.base as ds_base
from oodml.datasets import load_dataset


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Caches in tmp_path, no progress bars, no network."""
    monkeypatch.setenv("OODML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OODML_QUIET", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)

    real_connect = socket.socket.connect

    def _no_network(sock, *args, **kwargs):  # local (AF_UNIX) sockets of DataLoader workers stay allowed
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError("feature extraction tried to use the network")
        return real_connect(sock, *args, **kwargs)

    def _no_connection(*args, **kwargs):
        raise AssertionError("feature extraction tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_connection)


def _pattern(cls: int, idx: int, size=(20, 28)) -> Image.Image:
    """A deterministic RGB image: class-specific stripes plus an image-specific shift."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    angle = cls * math.pi / 4
    wave = np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * 0.6 + idx)
    base = ((wave + 1) * 110 + 10).astype(np.uint8)
    rgb = np.stack([base, np.roll(base, idx + 1, axis=1), 255 - base], axis=-1)
    return Image.fromarray(rgb, "RGB")


def _write_tree(root: Path, classes: int, per_class: int) -> Path:
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            _pattern(c, i).save(d / f"{i:02d}.png")
    return root


@pytest.fixture()
def folder_ds(tmp_path):
    return load_dataset("folder", root=_write_tree(tmp_path / "imgs", classes=4, per_class=3))


@pytest.fixture()
def two_image_ds(tmp_path):
    return load_dataset("folder", root=_write_tree(tmp_path / "two", classes=2, per_class=1))


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory) -> Path:
    """A random-init FID Inception state dict in pytorch-fid's file format (torchvision
    Inception3 keys with the 1008-way fc; the FID blocks have the same parameters)."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    path = tmp_path_factory.mktemp("w") / "random_fid_inception.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory) -> Path:
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None)
    path = tmp_path_factory.mktemp("w") / "random_resnet50.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture()
def pattern_image():
    """The deterministic test image maker ``(cls, idx, size=(h, w)) -> PIL image``."""
    return _pattern


@pytest.fixture()
def forbid_image_reads(monkeypatch):
    """Call it to make any image read fail the test (a cache hit must read none)."""

    def forbid() -> None:
        def _boom(*args, **kwargs):
            raise AssertionError("an image was read")

        monkeypatch.setattr(ds_base.ImageDataset, "load_image", _boom)
        monkeypatch.setattr(ds_base, "open_image_rgb", _boom)

    return forbid
