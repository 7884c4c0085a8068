"""Shared fixtures of the adaptation tests (oodml.adapt).

The shared fixture trains one tiny run (a few seconds) on a folder dataset written here with a
deliberate shift: the train classes are *colours* (noise in 8 hues), the test classes are grey
*gratings* of 8 orientations. The run's 2-d embedding learns hue, which is useless on the test
classes (zero-shot Recall@1 near chance); adapting the embedding layer on a few support images
of the gratings re-aims it at orientation, which the frozen backbone features do encode.
"""

from __future__ import annotations

import socket

import numpy as np
import pytest

N_IMAGES = 12  # per class


@pytest.fixture(scope="package")
def run_config():
    """The settings the package's trained run used (without its data root)."""
    return dict(RUN_CONFIG)


SIZE = 32


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    def _no_network(*args, **kwargs):
        raise AssertionError("network used")

    monkeypatch.setattr(socket.socket, "connect", _no_network)
    monkeypatch.setenv("OODML_QUIET", "1")


def _write_dataset(root, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    for c in range(8):  # train side: colour classes
        hue = np.cos(2 * np.pi * (c / 8 + np.array([0, 1 / 3, 2 / 3]))) * 0.5 + 0.5
        d = root / f"a_colour{c}"
        d.mkdir(parents=True)
        for i in range(N_IMAGES):
            img = hue[None, None, :] * 255 * (0.7 + 0.3 * rng.random((SIZE, SIZE, 1)))
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(d / f"{i:03d}.png")
    for c in range(8):  # test side: grey gratings, class = orientation, random phase
        th = np.pi * c / 8
        d = root / f"b_grating{c}"
        d.mkdir(parents=True)
        for i in range(N_IMAGES):
            g = np.sin((xx * np.cos(th) + yy * np.sin(th)) * 2 * np.pi / 6 + rng.random() * 2 * np.pi)
            img = (0.5 + 0.25 * g + 0.1 * rng.standard_normal((SIZE, SIZE)))[..., None].repeat(3, 2) * 255
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(d / f"{i:03d}.png")
    return root


RUN_CONFIG = dict(
    dataset="folder",
    backbone="test_resnet",
    pretrained=False,
    embed_dim=2,
    image_size=SIZE,
    resize_size=SIZE,
    batch_size=16,
    m_per_class=2,
    epochs=3,
    lr=1e-3,
    freeze_bn=False,
    augment=False,
    workers=0,
    device="cpu",
    tensorboard=False,
    val_fraction=0.0,
    eval_every=0,
    threads=1,
    seed=0,
)


@pytest.fixture(scope="package")
def env(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("adapt")
    mp.setenv("OODML_CACHE", str(base / "cache"))
    mp.setenv("HF_HOME", str(base / "hf"))
    mp.setenv("TORCH_HOME", str(base / "torch"))
    root = _write_dataset(base / "data")
    yield {"base": base, "root": root}
    mp.undo()


@pytest.fixture(scope="package")
def trained(env):
    from oodml.train import train

    run_dir = env["base"] / "run"
    train({**RUN_CONFIG, "root": str(env["root"])}, run_dir, progress=False)
    return run_dir


@pytest.fixture(scope="package")
def dataset(env):
    from oodml.datasets import load_dataset

    return load_dataset("folder", root=env["root"])
