"""Frozen feature extractors, the feature cache and user feature files (oodml.features).

Every dataset here is a tiny folder tree of PNGs the test writes; every network gets random
weights saved to tmp_path (nothing is downloaded: the network is switched off)."""

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
from oodml.errors import BadInputError, WeightsNotFoundError
from oodml.features import (
    FID_INCEPTION_FILE,
    FID_INCEPTION_URL,
    HOG,
    RESNET50_FILE,
    RESNET50_URL,
    FeatureCacheWarning,
    default_extractor,
    extract_features,
    feature_cache_path,
    get_extractor,
    list_extractors,
    load_features_file,
    main,
    npz_bytes,
    save_features_file,
    standard_split_for_features,
)


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------
def test_registry_names_and_defaults():
    assert list_extractors() == ["pixels", "hog", "inception", "resnet50"]
    assert default_extractor(None) == "pixels"
    assert default_extractor("glyphs") == "pixels"
    assert default_extractor("omniglot") == "pixels"
    assert default_extractor("cub200") == "resnet50"
    assert default_extractor("sop") == "resnet50"
    with pytest.raises(BadInputError, match="did you mean pixels"):
        get_extractor("pixel")
    with pytest.raises(BadInputError, match="has no weights"):
        get_extractor("hog", weights="x.pth")


# --------------------------------------------------------------------------------------------
# weights-free extractors
# --------------------------------------------------------------------------------------------
def test_pixels_features_are_grayscale_thumbnails(folder_ds):
    fs = extract_features(folder_ds, "pixels", workers=0, cache=False)
    assert fs.features.shape == (12, 256) and fs.features.dtype == np.float32
    expected = (
        np.asarray(
            folder_ds.load_image(5).convert("L").resize((16, 16), Image.Resampling.BILINEAR), dtype=np.float32
        ).ravel()
        / 255
    )
    np.testing.assert_allclose(fs.features[5], expected, rtol=0, atol=1e-7)
    assert fs.labels == [it.label for it in folder_ds.items]
    assert fs.classes == folder_ds.classes and fs.superclasses is None
    np.testing.assert_array_equal(fs.class_ids(), folder_ds.labels)
    assert fs.extractor == "pixels" and fs.source == "dataset:folder"
    assert fs.fingerprint == folder_ds.fingerprint()
    assert [len(v) for v in fs.indices_by_class().values()] == [3, 3, 3, 3]


def test_hog_known_answers():
    hog = HOG()
    assert hog.dim == 324
    x = torch.zeros(2, 1, 32, 32)
    x[0, :, :, 16:] = 1.0  # vertical edge: gradient along x, angle 0 -> split between bins 8 and 0
    x[1, :, 16:, :] = 1.0  # horizontal edge: gradient along y, angle pi/2 -> bin 4 alone
    out = hog(x).reshape(2, 9, 9, 4)  # (image, block, bin, cell in block)
    per_bin = out.sum(dim=(1, 3))
    assert torch.allclose(per_bin[0, 0], per_bin[0, 8]) and per_bin[0, 0] > 0
    assert per_bin[0, 1:8].abs().max() == 0
    assert per_bin[1, 4] > 0 and per_bin[1].sum() == pytest.approx(float(per_bin[1, 4]))
    # L2-Hys blocks: unit norm where there is an edge, zero on flat regions
    norms = out.reshape(2, 9, 36).norm(dim=-1).flatten().tolist()
    assert all(abs(n - 1) < 1e-4 or n == 0 for n in norms) and max(norms) > 0.99
    # contrast- and brightness-invariant
    rng = torch.Generator().manual_seed(0)
    img = torch.rand(1, 1, 32, 32, generator=rng)
    torch.testing.assert_close(hog(img * 0.5 + 0.25), hog(img), atol=2e-3, rtol=0)


def test_hog_on_dataset_deterministic_and_worker_independent(folder_ds):
    a = extract_features(folder_ds, "hog", workers=0, batch_size=5, cache=False)
    b = extract_features(folder_ds, "hog", workers=2, batch_size=4, cache=False)
    assert a.features.shape == (12, 324) and np.isfinite(a.features).all()
    np.testing.assert_array_equal(a.features, b.features)
    # images of one class are closer to each other than to other classes' images
    f = a.features
    d = ((f[:, None] - f[None]) ** 2).sum(-1)
    ids = a.class_ids()
    same = d[(ids[:, None] == ids[None]) & ~np.eye(12, dtype=bool)].mean()
    assert same < d[ids[:, None] != ids[None]].mean()


# --------------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------------
def _forbid_image_reads(monkeypatch):
    def _boom(*args, **kwargs):
        raise AssertionError("an image was read")

    monkeypatch.setattr(ds_base.ImageDataset, "load_image", _boom)
    monkeypatch.setattr(ds_base, "open_image_rgb", _boom)


def test_cache_hit_reads_no_image(folder_ds, monkeypatch, tmp_path):
    first = extract_features(folder_ds, "pixels", workers=0)
    path = feature_cache_path(folder_ds, "pixels")
    assert path.is_file() and path.parent == tmp_path / "cache" / "features"
    _forbid_image_reads(monkeypatch)
    again = extract_features(folder_ds, "pixels", workers=0)
    np.testing.assert_array_equal(first.features, again.features)
    assert again.labels == first.labels and again.fingerprint == first.fingerprint
    with pytest.raises(AssertionError, match="an image was read"):
        extract_features(folder_ds, "pixels", workers=0, cache=False)


def test_cache_file_is_byte_identical_and_plain(folder_ds):
    extract_features(folder_ds, "hog", workers=0)
    path = feature_cache_path(folder_ds, "hog")
    first = path.read_bytes()
    path.unlink()
    extract_features(folder_ds, "hog", workers=0, batch_size=3)
    assert path.read_bytes() == first
    with np.load(path, allow_pickle=False) as z:
        assert z["features"].shape == (12, 324)
    assert npz_bytes({"a": np.arange(3)}) == npz_bytes({"a": np.arange(3)})


def test_cache_key_follows_extractor_and_fingerprint(folder_ds, tmp_path):
    p_pix = feature_cache_path(folder_ds, "pixels")
    p_hog = feature_cache_path(folder_ds, "hog")
    assert p_pix != p_hog
    assert feature_cache_path(folder_ds, "pixels") == p_pix
    # same folder, one image replaced by a different-size file: new fingerprint, new key
    root = tmp_path / "imgs"
    _pattern(0, 0, size=(30, 30)).save(root / "class0" / "00.png")
    changed = load_dataset("folder", root=root)
    assert changed.fingerprint() != folder_ds.fingerprint()
    assert feature_cache_path(changed, "pixels") != p_pix
    assert feature_cache_path(folder_ds.subset(folder_ds.classes[:2]), "pixels") != p_pix


def test_corrupt_cache_is_rebuilt_with_a_warning(folder_ds):
    good = extract_features(folder_ds, "pixels", workers=0)
    path = feature_cache_path(folder_ds, "pixels")
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])  # truncated
    with pytest.warns(FeatureCacheWarning, match="cannot be read"):
        rebuilt = extract_features(folder_ds, "pixels", workers=0)
    np.testing.assert_array_equal(rebuilt.features, good.features)
    assert path.read_bytes() == content
    # a readable archive with the wrong table is not trusted either
    with np.load(path, allow_pickle=False) as z:
        meta = z["meta"]
    path.write_bytes(npz_bytes({"features": np.zeros((3, 256), np.float32), "meta": meta}))
    with pytest.warns(FeatureCacheWarning, match="shape"):
        extract_features(folder_ds, "pixels", workers=0)
    assert path.read_bytes() == content


# --------------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------------
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


def test_inception_from_weights_file_and_hub_cache(inception_file, two_image_ds, tmp_path, monkeypatch):
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
    _forbid_image_reads(monkeypatch)
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


# --------------------------------------------------------------------------------------------
# bring your own features
# --------------------------------------------------------------------------------------------
def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_features_file_roundtrip_and_split(tmp_path):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(7, 5))
    labels = np.array(["b", "a", "c", "b", "a", "d", "c"])
    sups = np.array(["x", "y", "y", "x", "y", "", "y"])
    fs = load_features_file(_npz(tmp_path / "f.npz", features=feats, labels=labels, superclasses=sups))
    assert fs.features.dtype == np.float32 and fs.features.shape == (7, 5)
    assert fs.classes == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(fs.class_ids(), [1, 0, 2, 1, 0, 3, 2])
    assert fs.superclasses == ["x", "y", "y", "x", "y", None, "y"]
    assert fs.source == str(tmp_path / "f.npz") and fs.extractor == "file" and len(fs.fingerprint) == 64
    assert standard_split_for_features(fs) == (["a", "b"], ["c", "d"])
    out = save_features_file(fs, tmp_path / "g.npz")
    back = load_features_file(out)
    np.testing.assert_array_equal(back.features, fs.features)
    assert back.labels == fs.labels and back.superclasses == fs.superclasses
    assert back.fingerprint == fs.fingerprint
    first = out.read_bytes()
    save_features_file(back, out)
    assert out.read_bytes() == first
    # integer labels are class names too; the fingerprint follows the content
    ints = load_features_file(_npz(tmp_path / "i.npz", features=feats, labels=np.array([3, 1, 2, 3, 1, 2, 2])))
    assert ints.classes == ["1", "2", "3"] and ints.superclasses is None
    assert ints.fingerprint != fs.fingerprint


@pytest.mark.parametrize(
    "arrays, pattern",
    [
        ({"labels": np.array(["a", "b"])}, "has no 'features' array"),
        ({"features": np.ones((2, 3))}, "has no 'labels' array"),
        ({"features": np.ones(4), "labels": np.array(["a", "b", "a", "b"])}, r"shape \(4,\)"),
        ({"features": np.ones((3, 2)), "labels": np.array(["a", "b"])}, r"expected \(3,\)"),
        ({"features": np.array([[1.0, np.nan], [0, 1]]), "labels": np.array(["a", "b"])}, "NaN/inf.*first row 0"),
        ({"features": np.array([[1.0, 1e300], [0, 1]]), "labels": np.array(["a", "b"])}, "beyond float32"),
        ({"features": np.ones((3, 2)), "labels": np.array(["a", "a", "a"])}, "at least 2 classes"),
        ({"features": np.ones((2, 2)), "labels": np.array(["a", "b"], dtype=object)}, "Python objects"),
        ({"features": np.array([["x", "y"], ["z", "w"]]), "labels": np.array(["a", "b"])}, "dtype <U1"),
        ({"features": np.ones((2, 2)), "labels": np.array([0.5, 1.5])}, "expected strings"),
        ({"features": np.ones((2, 2)), "labels": np.array(["a", ""])}, "row 1 is empty"),
        (
            {
                "features": np.ones((3, 2)),
                "labels": np.array(["a", "a", "b"]),
                "superclasses": np.array(["x", "y", "z"]),
            },
            "class 'a' is listed under two superclasses",
        ),
    ],
)
def test_features_file_errors(tmp_path, arrays, pattern):
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(BadInputError, match=pattern) as err:
        load_features_file(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_features_file_unreadable(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        load_features_file(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(BadInputError, match="not a readable .npz"):
        load_features_file(tmp_path / "junk.npz")
    np.save(tmp_path / "single.npy", np.ones((2, 2)))
    with pytest.raises(BadInputError, match="single array"):
        load_features_file(tmp_path / "single.npy")


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
def test_cli_extracts_and_exports(folder_ds, tmp_path, capsys):
    out = tmp_path / "exported.npz"
    common = ["--dataset", "folder", "--root", str(folder_ds.root), "-q"]
    rc = main(common + ["--extractor", "hog", "--workers", "0", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "12 images, 4 classes" in text and "324-d" in text
    fs = load_features_file(out)
    assert fs.features.shape == (12, 324) and fs.classes == folder_ds.classes
    assert main(common + ["--extractor", "inception"]) == 2
    assert FID_INCEPTION_FILE in capsys.readouterr().err
