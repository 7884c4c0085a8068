"""Shared by the tests of :mod:`oodml.shift`: caches in tmp_path, no progress bars."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("OODML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OODML_QUIET", "1")
