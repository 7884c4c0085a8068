"""The embedding model (oodml.models): shapes, pooling, frozen BN, channels-last, weights loading."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.nn.functional as F

from oodml.errors import BadInputError, WeightsNotFoundError
from oodml.models import EmbeddingModel, build_from_config, build_model, param_groups

TINY = "test_resnet"


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)

    def _no_network(*args, **kwargs):
        raise AssertionError("network used")

    monkeypatch.setattr(socket.socket, "connect", _no_network)


def _tiny(**kwargs) -> EmbeddingModel:
    torch.manual_seed(0)
    kwargs.setdefault("pretrained", False)
    kwargs.setdefault("embed_dim", 16)
    return build_model(TINY, **kwargs)


def _images(n=4, size=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


def test_output_shape_and_normalisation():
    model = _tiny()
    x = _images()
    emb = model(x)
    assert emb.shape == (4, 16) and model.embed_dim == 16
    assert torch.allclose(emb.norm(dim=1), torch.ones(4), atol=1e-5)
    feats = model.forward_features(x)
    assert feats.shape == (4, model.feature_dim) == (4, model.backbone.num_features)
    assert torch.allclose(model.embed_from_features(feats), emb, atol=1e-6)


@pytest.mark.parametrize("embed_dim", [0, None])
def test_no_head(embed_dim):
    model = _tiny(embed_dim=embed_dim)
    x = _images()
    emb = model(x)
    assert isinstance(model.head, torch.nn.Identity)
    assert emb.shape == (4, model.feature_dim) and model.embed_dim == model.feature_dim
    assert torch.allclose(emb, F.normalize(model.forward_features(x), dim=1), atol=1e-6)
    assert param_groups(model, 1e-4)[-1]["name"] == "backbone"


@pytest.mark.parametrize("pooling", ["avg", "max", "avg+max"])
def test_pooling_variants(pooling):
    model = _tiny(pooling=pooling).eval()
    x = _images(size=96)
    with torch.no_grad():
        fmap = model.backbone(x.contiguous(memory_format=torch.channels_last))
        assert fmap.ndim == 4 and fmap.shape[-1] > 1  # a real feature map, not pre-pooled
        expected = {
            "avg": fmap.mean((2, 3)),
            "max": fmap.amax((2, 3)),
            "avg+max": fmap.mean((2, 3)) + fmap.amax((2, 3)),
        }[pooling]
        assert torch.allclose(model.forward_features(x), expected, atol=1e-5)


def test_pooling_validation():
    with pytest.raises(BadInputError, match="unknown pooling"):
        _tiny(pooling="median")
    with pytest.raises(BadInputError, match="class token"):
        _tiny(pooling="token")
    assert _tiny(pooling="avgmax").pooling == "avg+max"


def test_vit_token_pooling():
    model = build_model("test_vit", pretrained=False, embed_dim=8, pooling="token", img_size=32)
    emb = model(_images(n=2, size=32))
    assert emb.shape == (2, 8)
    tokens = model.backbone(_images(n=2, size=32))
    assert torch.allclose(model.forward_features(_images(n=2, size=32)), tokens[:, 0], atol=1e-6)


def test_freeze_bn_keeps_running_stats_in_train_mode():
    model = _tiny(freeze_bn=True)
    model.eval()
    model.train()  # switching back to training must keep BN frozen
    bns = list(model.batchnorm_layers())
    assert bns and all(not bn.training for bn in bns) and model.training
    before = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in bns]
    emb = model(_images(n=6, seed=3) * 3 + 1)
    emb.sum().backward()
    for bn, (mean, var) in zip(bns, before):
        assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
    # affine parameters are still trained
    assert all(bn.weight.requires_grad and bn.weight.grad is not None for bn in bns)

    free = _tiny(freeze_bn=False).train()
    bn0 = next(free.batchnorm_layers())
    mean0 = bn0.running_mean.clone()
    free(_images(n=6, seed=3) * 3 + 1)
    assert not torch.equal(bn0.running_mean, mean0)


def test_channels_last_matches_contiguous():
    a = _tiny(channels_last=True).eval()
    b = _tiny(channels_last=False).eval()
    b.load_state_dict(a.state_dict())
    conv = next(m for m in a.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = _images()
    with torch.no_grad():
        assert torch.allclose(a(x), b(x), atol=1e-5)


def test_gradients_reach_backbone_and_head():
    model = _tiny()
    model(_images()).pow(2).sum().backward()
    first_conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0


def test_param_groups_lrs():
    model = _tiny()
    groups = param_groups(model, 1e-4, head_lr_mult=10, weight_decay=4e-4)
    by_name = {g["name"]: g for g in groups}
    assert by_name["backbone"]["lr"] == pytest.approx(1e-4) and by_name["head"]["lr"] == pytest.approx(1e-3)
    assert by_name["head"]["weight_decay"] == pytest.approx(4e-4)
    n_params = sum(len(g["params"]) for g in groups)
    assert n_params == len(list(model.parameters()))
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    assert [g["name"] for g in param_groups(model, 1e-4)] == ["head"]
    torch.optim.Adam(groups)  # the groups are valid optimizer input


def test_drop_path_and_config_rebuild():
    model = _tiny(drop_path=0.1, pooling="avg+max")
    assert any(type(m).__name__ == "DropPath" for m in model.modules())
    rebuilt = build_from_config({**model.config, "pretrained": True})  # never loads weights
    rebuilt.load_state_dict(model.state_dict())
    model.eval(), rebuilt.eval()
    x = _images()
    with torch.no_grad():
        assert torch.allclose(model(x), rebuilt(x), atol=1e-6)


def test_weights_file_is_loaded_into_backbone(tmp_path):
    import timm

    torch.manual_seed(5)
    ref = timm.create_model(TINY, pretrained=False)
    torch.save(ref.state_dict(), tmp_path / "backbone.pth")
    model = build_model(TINY, pretrained=True, weights=tmp_path / "backbone.pth", embed_dim=16)
    assert model.weights_source == f"file:{tmp_path / 'backbone.pth'}"
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, ref.state_dict()[k]), k


def test_pretrained_missing_offline_raises_instead_of_random(tmp_path):
    with pytest.raises(WeightsNotFoundError) as err:
        build_model(TINY, pretrained=True, embed_dim=16)
    msg = str(err.value)
    assert "\n" not in msg and "timm/test_resnet.r160_in1k" in msg and "--no-pretrained" in msg
    assert str(tmp_path / "hf") in msg
