"""Offline-safe weights resolution (oodml.weights): local files, simulated caches, clear errors."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch

from oodml.errors import BadInputError, UnsafeFileError, WeightsNotFoundError
from oodml.weights import (
    create_timm_model,
    hf_hub_cache_dir,
    load_torch_hub_checkpoint,
    read_state_dict,
    resolve_pretrained_file,
    torch_hub_checkpoint_dir,
)

TINY = "test_resnet"  # timm's tiny test ResNet (~0.4M parameters)
TINY_HF_REPO = "timm/test_resnet.r160_in1k"


class _NotATensor:  # pickled into a checkpoint to check that code-bearing pickles are refused
    pass


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    """Point every cache at empty temp folders and forbid network connections."""
    hf_home = tmp_path / "hf"
    torch_home = tmp_path / "torch"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)

    def _no_network(*args, **kwargs):
        raise AssertionError("a weights lookup tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    return {"hf": hf_home / "hub", "torch": torch_home / "hub" / "checkpoints"}


def _reference_state_dict(name: str = TINY, seed: int = 0, **kwargs) -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, **kwargs)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _fake_hf_cache(cache: Path, repo_id: str, files: dict[str, bytes | None], sd=None) -> Path:
    """Lay out ``models--org--name/{refs/main, snapshots/<commit>/...}`` like huggingface_hub does."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    for fname, data in files.items():
        if fname.endswith(".safetensors"):
            from safetensors.torch import save_file

            save_file(sd, str(snap / fname))
        else:
            (snap / fname).write_bytes(data)
    return snap


def _assert_matches(model: torch.nn.Module, sd: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    checked = 0
    for k, v in own.items():
        if k in sd:
            assert torch.equal(v, sd[k]), k
            checked += 1
    assert checked > 10


# --------------------------------------------------------------------------------------------
# weights=PATH
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_load_local_file_strips_classifier(tmp_path, fmt):
    sd = _reference_state_dict()  # has a 1000-class fc
    path = tmp_path / f"w.{fmt}"
    if fmt == "pth":
        torch.save(sd, path)
    else:
        from safetensors.torch import save_file

        save_file(sd, str(path))
    model = create_timm_model(TINY, pretrained=True, weights=path, num_classes=0, global_pool="")
    _assert_matches(model, sd)
    assert model.weights_source == f"file:{path}"
    assert model.weights_report["dropped"] == ["fc.bias", "fc.weight"]
    assert model.weights_report["missing"] == [] and model.weights_report["unexpected"] == []


def test_load_local_file_with_mismatched_head_shape(tmp_path):
    sd = _reference_state_dict(num_classes=5)
    torch.save(sd, tmp_path / "w.pth")
    model = create_timm_model(TINY, pretrained=False, weights=tmp_path / "w.pth", num_classes=7)
    _assert_matches(model, {k: v for k, v in sd.items() if not k.startswith("fc.")})
    assert model.weights_report["dropped"] == ["fc.bias", "fc.weight"]


def test_load_wrapped_checkpoint_with_module_prefix(tmp_path):
    sd = _reference_state_dict()
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "ckpt.pth")
    model = create_timm_model(TINY, pretrained=False, weights=tmp_path / "ckpt.pth", num_classes=0)
    _assert_matches(model, sd)


def test_wrong_architecture_is_reported_clearly(tmp_path):
    torch.save(_reference_state_dict("resnet10t"), tmp_path / "other.pth")
    with pytest.raises(BadInputError) as err:
        create_timm_model(TINY, pretrained=False, weights=tmp_path / "other.pth", num_classes=0)
    msg = str(err.value)
    assert "\n" not in msg and "other.pth" in msg and "test_resnet" in msg
    assert "missing keys" in msg or "unexpected keys" in msg or "shape mismatches" in msg


def test_partial_file_strict_false_reports(tmp_path):
    sd = _reference_state_dict()
    sd.pop("layer4.0.conv1.weight")
    sd["extra.weight"] = torch.zeros(3)
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(BadInputError, match=r"1 missing keys \(layer4\.0\.conv1\.weight\).*1 unexpected keys"):
        create_timm_model(TINY, pretrained=False, weights=tmp_path / "partial.pth", num_classes=0)
    model = create_timm_model(TINY, pretrained=False, weights=tmp_path / "partial.pth", num_classes=0, strict=False)
    assert model.weights_report["missing"] == ["layer4.0.conv1.weight"]
    assert model.weights_report["unexpected"] == ["extra.weight"]


def test_missing_truncated_and_unsafe_files(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        create_timm_model(TINY, pretrained=False, weights=tmp_path / "nope.pth")
    path = tmp_path / "w.pth"
    torch.save(_reference_state_dict(), path)
    (tmp_path / "trunc.pth").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(BadInputError, match="trunc.pth"):
        read_state_dict(tmp_path / "trunc.pth")
    (tmp_path / "trunc.safetensors").write_bytes(b"\x10\x00garbage")
    with pytest.raises(BadInputError, match="safetensors"):
        read_state_dict(tmp_path / "trunc.safetensors")
    torch.save({"weights": _NotATensor()}, tmp_path / "evil.pth")
    with pytest.raises(UnsafeFileError, match="evil.pth"):
        read_state_dict(tmp_path / "evil.pth")


def test_unknown_model_name():
    with pytest.raises(BadInputError, match="unknown timm model 'resnet5o'.*resnet50"):
        create_timm_model("resnet5o", pretrained=False)
    with pytest.raises(BadInputError, match="tag"):
        create_timm_model("resnet50.no_such_tag", pretrained=True)


# --------------------------------------------------------------------------------------------
# pretrained=True: local caches only, never random, never the network
# --------------------------------------------------------------------------------------------
def test_offline_missing_hf_weights_one_line_error(isolated_caches):
    with pytest.raises(WeightsNotFoundError) as err:
        create_timm_model(TINY, pretrained=True, num_classes=0)
    msg = str(err.value)
    assert "\n" not in msg
    assert TINY_HF_REPO in msg and "model.safetensors" in msg
    assert str(isolated_caches["hf"] / "models--timm--test_resnet.r160_in1k") in msg
    assert "--weights PATH" in msg and "--no-pretrained" in msg


def test_offline_missing_url_weights_names_torch_hub_file(isolated_caches):
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_pretrained_file("resnet10t")
    msg = str(err.value)
    assert "\n" not in msg
    assert "resnet10t_176_c3-f3215ab1.pth" in msg and "https://" in msg
    assert str(isolated_caches["torch"] / "resnet10t_176_c3-f3215ab1.pth") in msg
    assert "timm/resnet10t.c3_in1k" in msg


def test_pretrained_from_simulated_hf_cache(isolated_caches):
    assert hf_hub_cache_dir() == isolated_caches["hf"]
    sd = _reference_state_dict(seed=1)
    _fake_hf_cache(isolated_caches["hf"], TINY_HF_REPO, {"model.safetensors": None}, sd)
    model = create_timm_model(TINY, pretrained=True, num_classes=0, global_pool="")
    _assert_matches(model, sd)
    assert model.weights_source.startswith("cache:") and model.weights_source.endswith("model.safetensors")
    assert model.pretrained_cfg.get("state_dict") is None  # no second copy of the weights kept around


def test_pretrained_from_simulated_torch_hub_cache(isolated_caches):
    assert torch_hub_checkpoint_dir() == isolated_caches["torch"]
    sd = _reference_state_dict("resnet10t", seed=2)
    isolated_caches["torch"].mkdir(parents=True)
    torch.save(sd, isolated_caches["torch"] / "resnet10t_176_c3-f3215ab1.pth")
    model = create_timm_model("resnet10t", pretrained=True, num_classes=0)
    _assert_matches(model, sd)
    assert model.weights_source.startswith("cache:")


def test_hf_hub_prefixed_names_are_resolved_offline(isolated_caches):
    with pytest.raises(WeightsNotFoundError, match="config.json") as err:
        create_timm_model("hf-hub:someone/tiny-net", pretrained=True)
    assert "\n" not in str(err.value)
    sd = _reference_state_dict(seed=3)
    config = {
        "architecture": TINY,
        "num_classes": 1000,
        "pretrained_cfg": {"classifier": "fc", "input_size": [3, 160, 160]},
    }
    _fake_hf_cache(
        isolated_caches["hf"],
        "someone/tiny-net",
        {"config.json": json.dumps(config).encode(), "model.safetensors": None},
        sd,
    )
    model = create_timm_model("hf-hub:someone/tiny-net", pretrained=True, num_classes=0)
    _assert_matches(model, sd)


def test_no_pretrained_means_random_on_purpose():
    model = create_timm_model(TINY, pretrained=False, num_classes=0)
    assert model.weights_source == "random"


# --------------------------------------------------------------------------------------------
# torch-hub hosted checkpoints
# --------------------------------------------------------------------------------------------
def test_torch_hub_checkpoint_missing_and_present(isolated_caches):
    url = "https://example.org/weights/pt_tiny-1234abcd.pth"
    with pytest.raises(WeightsNotFoundError) as err:
        load_torch_hub_checkpoint("pt_tiny-1234abcd.pth", url, "FID Inception", hint="or pass --fid-weights PATH")
    msg = str(err.value)
    assert "\n" not in msg and url in msg and "FID Inception" in msg
    assert str(isolated_caches["torch"] / "pt_tiny-1234abcd.pth") in msg and "--fid-weights PATH" in msg
    isolated_caches["torch"].mkdir(parents=True)
    sd = {"a.weight": torch.ones(2, 2)}
    torch.save(sd, isolated_caches["torch"] / "pt_tiny-1234abcd.pth")
    got = load_torch_hub_checkpoint("pt_tiny-1234abcd.pth", url, "FID Inception")
    assert set(got) == {"a.weight"} and torch.equal(got["a.weight"], sd["a.weight"])


def test_architecture_converter_adapts_position_embedding(tmp_path):
    # a ViT checkpoint at 160 px loaded into the same ViT at 32 px: timm's converter resamples pos_embed
    sd = _reference_state_dict("test_vit")
    torch.save(sd, tmp_path / "vit.pth")
    model = create_timm_model("test_vit", pretrained=False, weights=tmp_path / "vit.pth", img_size=32, num_classes=0)
    assert model.pos_embed.shape[1] < sd["pos_embed"].shape[1]
    assert torch.equal(model.patch_embed.proj.weight, sd["patch_embed.proj.weight"])
    assert model.weights_report["dropped"] == ["head.bias", "head.weight"]
