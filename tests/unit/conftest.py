"""Fixtures shared by the DiskBackend tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["xattr", "sidecar"])
def mode(request: pytest.FixtureRequest) -> str:
    """Where records live: the file's xattr, or a sidecar (filesystems without user xattrs)."""
    return str(request.param)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"
