"""Frozen features computed once (oodml.adapt.frozen), shared by few-shot head mode and probes."""

from __future__ import annotations

import numpy as np
import torch

from oodml import adapt as A

N_IMAGES = 12  # per class


SIZE = 32


def test_head_mode_and_probe_reuse_one_backbone_pass(env, dataset):
    from oodml.models import build_model
    from oodml.train import TrainConfig

    torch.manual_seed(0)
    model = build_model("test_resnet", pretrained=False, embed_dim=8).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    model.backbone.register_forward_hook(lambda mod, inp, out: seen.append(int(inp[0].shape[0])))
    config = TrainConfig(image_size=SIZE, resize_size=SIZE, workers=0)
    classes = list(dataset.test_classes)
    frozen = A.compute_frozen(model, dataset, classes, A.RunImages(dataset, config, model=model))
    eps, _ = A.resolve_episodes(dataset, classes, (2, 5), None, 2)
    out = A.fewshot_adaptation(model, frozen, eps, iterations=5, lr=1e-3, metrics=("recall",), progress=False)
    probe = A.linear_probe(frozen, eps, max_iter=20, progress=False)
    assert sum(seen) == len(frozen) == len(classes) * N_IMAGES  # one pass over the test images, in total
    assert set(out["shots"]) == {"2", "5"} and set(probe["shots"]) == {"2", "5"}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # weights restored
    # the zero-shot embeddings are the model's own on those images
    with torch.no_grad():
        direct = A.RunImages(dataset, config, model=model).embed(model, frozen.ids[:5])
    np.testing.assert_allclose(frozen.embeddings[:5].numpy(), direct, atol=1e-5)
