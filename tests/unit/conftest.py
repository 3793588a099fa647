"""Fixtures shared by the DiskBackend tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from s3serve.storage import nosymlinks


@pytest.fixture(params=["xattr", "sidecar"])
def mode(request: pytest.FixtureRequest) -> str:
    """Where records live: the file's xattr, or a sidecar (filesystems without user xattrs)."""
    return str(request.param)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture(params=["openat2", "readlink"])
def symlink_proof(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways the fast path proves a path has no symlink on the way: openat2 where the kernel
    has it, and the readlink of /proc/self/fd/N where it does not (an older kernel, a seccomp
    filter that refuses the call)."""
    if request.param == "readlink":
        monkeypatch.setattr(nosymlinks, "_call", None)
        monkeypatch.setattr(nosymlinks, "_checked", True)
    return str(request.param)
