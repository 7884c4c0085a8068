"""Tests of oodml.metrics.knn's choice of the faiss GPU path (the kNN statistics themselves are
tested against brute force and pytorch-metric-learning in test_evaluate.py and test_loo.py)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from oodml.errors import OodmlError
from oodml.metrics import knn
from oodml.metrics.evaluate import evaluate_embeddings


class _FakeGpuFaiss(types.ModuleType):
    """A stand-in for a faiss GPU build: records whether it was asked for its GPUs."""

    def __init__(self, gpus=2, raises: bool = False):
        super().__init__("faiss")
        self.gpus, self.raises, self.asked = gpus, raises, 0
        self.StandardGpuResources = object

    def get_num_gpus(self):
        self.asked += 1
        if self.raises:
            raise RuntimeError("CUDA driver version is insufficient")
        return self.gpus


def test_no_faiss_means_no_gpu_path(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` raises ImportError
    assert knn.faiss_num_gpus() == 0


def test_cpu_faiss_means_no_gpu_path():
    faiss = pytest.importorskip("faiss")
    if hasattr(faiss, "StandardGpuResources"):
        pytest.skip("a GPU build of faiss is installed")
    assert knn.faiss_num_gpus() == 0


def test_gpu_build_is_used_only_when_torch_sees_cuda(monkeypatch):
    fake = _FakeGpuFaiss(gpus=2)
    monkeypatch.setitem(sys.modules, "faiss", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert knn.faiss_num_gpus() == 0 and fake.asked == 0  # never made to touch CUDA
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert knn.faiss_num_gpus() == 2 and fake.asked == 1
    monkeypatch.setitem(sys.modules, "faiss", _FakeGpuFaiss(gpus=0))
    assert knn.faiss_num_gpus() == 0
    monkeypatch.setitem(sys.modules, "faiss", _FakeGpuFaiss(raises=True))
    assert knn.faiss_num_gpus() == 0


def test_missing_faiss_is_one_line_naming_the_extras(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    x = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    y = np.repeat(np.arange(5), 4)
    for kw in ({"backend": "faiss"}, {"nmi_kmeans": "faiss"}):
        with pytest.raises(OodmlError, match=r"needs faiss: pip install 'oodml\[cpu\]'.*'oodml\[gpu\]'") as err:
            evaluate_embeddings(x, y, **kw)
        assert "\n" not in str(err.value)
