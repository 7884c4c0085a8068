"""Tests of :mod:`oodml.features.pretrained`: extractors with weights files.

Every dataset here is a tiny folder tree of PNGs the test writes (fixtures in conftest.py); every
network gets random weights saved to tmp_path (nothing is downloaded: the network is switched off)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oodml.errors import BadInputError, WeightsNotFoundError
from oodml.features import (
    FID_INCEPTION_FILE,
    FID_INCEPTION_URL,
    RESNET50_FILE,
    RESNET50_URL,
    extract_features,
    get_extractor,
)


def test_missing_weights_name_file_folder_and_url(tmp_path):
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    with pytest.raises(WeightsNotFoundError) as err:
        get_extractor("inception")
    msg = str(err.value)
    assert FID_INCEPTION_FILE in msg and str(folder) in msg and FID_INCEPTION_URL in msg and "--weights" in msg
    assert "\n" not in msg
    with pytest.raises(WeightsNotFoundError) as err:
        get_extractor("resnet50")
    assert RESNET50_FILE in str(err.value) and str(folder) in str(err.value) and RESNET50_URL in str(err.value)
    with pytest.raises(WeightsNotFoundError, match="test_resnet"):
        get_extractor("timm:test_resnet")
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        get_extractor("resnet50", weights=tmp_path / "nope.pth")


def test_inception_from_weights_file_and_hub_cache(
    inception_file, two_image_ds, tmp_path, monkeypatch, forbid_image_reads
):
    one_image_ds = two_image_ds.subset(two_image_ds.classes[:1])  # a 299-px forward is the costly part
    ex = get_extractor("inception", weights=inception_file)
    assert ex.dim == 2048 and ex.weights_id.startswith("sha256:") and not ex.model_loaded
    fs = extract_features(one_image_ds, ex, workers=0)
    assert fs.features.shape == (1, 2048) and np.isfinite(fs.features).all()
    assert fs.features.std() > 0
    saved = torch.load(inception_file, weights_only=True)
    net = ex.model.net  # pytorch-fid's InceptionV3
    assert torch.equal(net.blocks[0][0].conv.weight, saved["Conv2d_1a_3x3.conv.weight"])
    assert torch.equal(net.blocks[3][1].branch_pool.conv.weight, saved["Mixed_7b.branch_pool.conv.weight"])
    assert not ex.model.training and not any(p.requires_grad for p in ex.model.parameters())

    # the same file in the torch hub checkpoint folder is found without --weights; same cache entry
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / FID_INCEPTION_FILE).symlink_to(inception_file)
    cached = get_extractor("inception")
    assert cached.weights_id == ex.weights_id and cached.weights_source.startswith("cache:")
    forbid_image_reads()
    again = extract_features(one_image_ds, cached, workers=0)
    np.testing.assert_array_equal(again.features, fs.features)
    assert not cached.model_loaded  # a cache hit loads no network

    # pytorch-fid's own InceptionV3 state dict (blocks.* keys) is accepted too
    wrapper_file = tmp_path / "wrapper.pth"
    torch.save(net.state_dict(), wrapper_file)
    other = get_extractor("inception", weights=wrapper_file)
    assert torch.equal(other.model.net.blocks[2][4].branch1x1.conv.weight, net.blocks[2][4].branch1x1.conv.weight)

    # a file of another network is one clear error naming it, never random weights
    junk = tmp_path / "junk.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, junk)
    with pytest.raises(BadInputError, match=r"junk\.pth does not fit the FID Inception-v3 .*Missing key") as err:
        _ = get_extractor("inception", weights=junk).model
    assert "\n" not in str(err.value)


def test_resnet50_from_weights_file(resnet_file, two_image_ds, tmp_path):
    ex = get_extractor("resnet50", weights=resnet_file)
    fs = extract_features(two_image_ds, ex, workers=0, cache=False)
    assert fs.features.shape == (2, 2048) and np.isfinite(fs.features).all() and fs.features.std() > 0
    saved = torch.load(resnet_file, weights_only=True)
    assert torch.equal(ex.model.layer4[2].conv3.weight, saved["layer4.2.conv3.weight"])
    x = ex.transform(two_image_ds.load_image(0))
    assert tuple(x.shape) == (3, 224, 224)
    # a checkpoint of another network is one clear error naming the file
    other = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3), "conv1.weight": torch.zeros(64, 3, 3, 3)}, other)
    wrong = get_extractor("resnet50", weights=other)
    with pytest.raises(BadInputError, match=r"other\.pth does not fit torchvision's ResNet-50: \d+ missing") as err:
        _ = wrong.model
    assert "1 unexpected keys (features.0.weight)" in str(err.value) and "conv1.weight" in str(err.value)


def test_timm_extractor_with_local_weights(two_image_ds, tmp_path):
    import timm

    torch.manual_seed(0)
    net = timm.create_model("test_resnet", pretrained=False)
    path = tmp_path / "test_resnet.pth"
    torch.save(net.state_dict(), path)
    ex = get_extractor("timm:test_resnet", weights=path)
    assert ex.name == "timm:test_resnet" and ex.dim == net.num_features
    assert ex.weights_source == f"file:{path}" and "input_size" in ex.preprocess_id
    fs = extract_features(two_image_ds, ex, workers=0)
    assert fs.features.shape == (2, net.num_features) and np.isfinite(fs.features).all()
    assert fs.extractor == "timm:test_resnet"
    first = next(k for k in net.state_dict() if k.endswith("weight"))
    assert torch.equal(ex.model.state_dict()[first], net.state_dict()[first])
