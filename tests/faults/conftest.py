"""Fixtures of the fault matrix: one small ImageNet-shaped manual dir per session, copied per test."""
from __future__ import annotations

import subprocess
from pathlib import Path

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


@pytest.fixture
def tmpfs(tmp_path):
    """`tmpfs(size, ro=False)`: a small file system mounted under tmp_path (unmounted after the
    test); skipped where mounting is not permitted (it needs root or CAP_SYS_ADMIN)."""
    mounted: list[Path] = []

    def mount(size: str = "4m", ro: bool = False) -> Path:
        path = tmp_path / f"mnt{len(mounted)}"
        path.mkdir()
        _mount(["-t", "tmpfs", "-o", f"size={size}" + (",ro" if ro else ""), "tmpfs", str(path)])
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def bind(tmp_path):
    """`bind(folder)`: `folder` mounted a second time (mount --bind) under tmp_path, unmounted
    after the test; skipped where mounting is not permitted."""
    mounted: list[Path] = []

    def mount(folder: Path) -> Path:
        path = tmp_path / f"bind{len(mounted)}"
        path.mkdir()
        _mount(["--bind", str(folder), str(path)])
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def _mount(args: list[str]) -> None:
    try:
        r = subprocess.run(["mount", *args], capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount(8) here")
    if r.returncode:
        pytest.skip(f"cannot mount here ({r.stderr.strip()}): needs root/CAP_SYS_ADMIN")
