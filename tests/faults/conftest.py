"""Fixtures of the fault matrix: one small ImageNet-shaped manual dir per session, copied per test."""
from __future__ import annotations

import pytest

from ltextract.synth import SynthSpec, make_manual_dir
from fault_util import copy_manual, expected_bytes


@pytest.fixture(scope="session")
def pristine(tmp_path_factory):
    return make_manual_dir(tmp_path_factory.mktemp("pristine"), SynthSpec(classes=5, seed=11))


@pytest.fixture
def manual(tmp_path, pristine):
    return copy_manual(pristine, tmp_path / "manual")


@pytest.fixture(scope="session")
def want(pristine):
    return expected_bytes(pristine.manual_dir)


@pytest.fixture
def env(tmp_path):
    return {"LTEXTRACT_CACHE_DIR": str(tmp_path / "cache")}


@pytest.fixture
def out(tmp_path):
    return tmp_path / "out"
