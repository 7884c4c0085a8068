"""oodml's small-image backbone, registered with timm."""

from __future__ import annotations

import pytest
import timm
import torch

from oodml.errors import OodmlError
from oodml.models import build_model


def test_registered_with_timm_and_keeps_spatial_resolution():
    assert timm.is_model("oodml_convnet")
    net = timm.create_model("oodml_convnet", pretrained=False, num_classes=0, global_pool="")
    fmap = net.forward_features(torch.randn(2, 3, 32, 32))
    assert fmap.shape == (2, 128, 4, 4)  # three 2x pools only: a 32-px glyph stays 4x4, not 1x1
    assert net.num_features == 128
    wide = timm.create_model("oodml_convnet", pretrained=False, widths=(8, 16), num_classes=5)
    assert wide(torch.randn(1, 3, 32, 32)).shape == (1, 5)


def test_small_variant_has_half_the_widths_and_its_own_name():
    assert timm.is_model("oodml_convnet_s")
    net = timm.create_model("oodml_convnet_s", pretrained=False, num_classes=0, global_pool="")
    assert net.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 64, 4, 4)
    assert net.pretrained_cfg["architecture"] == "oodml_convnet_s"
    with pytest.raises(OodmlError, match="no pretrained weights.*'oodml_convnet_s'"):
        build_model("oodml_convnet_s", pretrained=True)


def test_embedding_model_and_data_config():
    model = build_model("oodml_convnet", pretrained=False, embed_dim=16)
    out = model(torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 16)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)
    assert model.data_config["input_size"] == (3, 32, 32)


def test_pretrained_is_refused_not_silently_random():
    with pytest.raises(OodmlError, match="oodml_convnet"):
        build_model("oodml_convnet", pretrained=True)


def test_learns_a_separable_toy_problem():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 32, 32)
    y = torch.arange(64) % 2
    x[y == 1, :, :16] += 2.0  # class 1: bright top half
    net = timm.create_model("oodml_convnet", pretrained=False, widths=(8, 16), num_classes=2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
