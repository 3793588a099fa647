"""The collapse plan of an assembly file (storage/assembly.py), on real sparse files: the file's
size names each state of a collapse, and the undo from any of them puts every part back."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import pytest

from s3serve.storage import assembly

KIB = 1024
BLOCK = 64 * KIB
SLOT = assembly.SLOT


def write_parts(folder: Path, parts: dict[int, bytes], stale: int | None = None) -> int:
    """An assembly file with ``parts`` in their slots (and their records, as staging writes
    them), plus a slot whose bytes no record points to; returns its fd."""
    folder.mkdir(exist_ok=True)
    fd = os.open(folder / assembly.ASSEMBLY, os.O_RDWR | os.O_CREAT, 0o644)
    for n, data in {**parts, **({stale: os.urandom(BLOCK)} if stale else {})}.items():
        os.pwrite(fd, data, assembly.slot_offset(n))
    for n, data in parts.items():
        doc = {"n": n, "s": len(data), "e": hashlib.md5(data).hexdigest(), "a": assembly.slot_offset(n)}
        (folder / f"{n:05d}.json").write_text(json.dumps(doc))
    return fd


def plan_of(fd: int, parts: dict[int, bytes]) -> assembly.Plan:
    layout = assembly.gaps([(assembly.slot_offset(n), len(d)) for n, d in sorted(parts.items())], BLOCK)
    assert layout is not None
    return assembly.Plan(os.fstat(fd).st_size, layout[1], tuple(layout[0]), assembly.boot_id())


def slots(fd: int, parts: dict[int, bytes]) -> dict[int, bytes]:
    return {n: os.pread(fd, len(d), assembly.slot_offset(n)) for n, d in parts.items()}


@pytest.fixture
def can_collapse(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "probe", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"x", 2 * BLOCK)
        assembly.fallocate(fd, assembly.FALLOC_FL_COLLAPSE_RANGE, 0, BLOCK)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            pytest.skip(f"this filesystem cannot collapse ({e})")
        raise
    finally:
        os.close(fd)


PARTS = {1: os.urandom(2 * BLOCK), 2: os.urandom(BLOCK), 4: os.urandom(3 * BLOCK), 7: os.urandom(BLOCK), 8: b"tail"}


@pytest.mark.usefixtures("can_collapse")
@pytest.mark.parametrize("stale", [None, 9], ids=["no-truncation", "truncation"])
def test_every_state_of_a_collapse_has_its_own_size_and_rolls_back(tmp_path: Path, stale: int | None) -> None:
    fd = write_parts(tmp_path / "up", PARTS, stale)
    try:
        plan = plan_of(fd, PARTS)
        steps = 1 + len(plan.removed)
        seen = []
        for taken in range(steps + 1):
            # Take ``taken`` steps, as a Complete killed there would have.
            if taken:
                os.ftruncate(fd, plan.end)
            for offset, length in plan.removed[: max(taken - 1, 0)]:
                assembly.fallocate(fd, assembly.FALLOC_FL_COLLAPSE_RANGE, offset, length)
            size = os.fstat(fd).st_size
            # The state is known from the size (without a truncation, 0 and 1 steps are one state).
            assert plan.steps_done(size) == (1 if taken == 0 and plan.size == plan.end else taken)
            seen.append(size)
            if taken == steps:
                assert os.pread(fd, size + 1, 0) == b"".join(PARTS.values())
            assembly.roll_back(fd, plan, fsync=True)
            assert os.fstat(fd).st_size == plan.size and slots(fd, PARTS) == PARTS
        assert len(set(seen)) == steps + (1 if stale else 0)
        assert plan.steps_done(plan.end - 1) is None
    finally:
        os.close(fd)


@pytest.mark.usefixtures("can_collapse")
def test_restore_reads_the_plan_from_the_marker_and_gives_the_parts_back(tmp_path: Path) -> None:
    folder = tmp_path / "up"
    fd = write_parts(folder, PARTS, stale=9)
    try:
        plan = plan_of(fd, PARTS)
        assembly._write_marker(str(folder), plan, fsync=True)
        assert assembly.Plan.load(str(folder / assembly.COLLAPSING)) == plan
        assert not [p for p in folder.iterdir() if p.name.startswith("tmp-")]  # written whole, then renamed
        assert assembly.collapse(fd, plan, fsync=True)
        os.link(folder / assembly.ASSEMBLY, folder / assembly.OBJECT)  # as before the publish's rename
        assert assembly.restore(str(folder), fsync=True) is assembly.Outcome.RESTORED
        assert slots(fd, PARTS) == PARTS and os.fstat(fd).st_size == plan.size
        assert not (folder / assembly.COLLAPSING).exists() and not (folder / assembly.OBJECT).exists()
    finally:
        os.close(fd)


@pytest.mark.usefixtures("can_collapse")
def test_a_published_file_is_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "up"
    fd = write_parts(folder, PARTS)
    try:
        plan = plan_of(fd, PARTS)
        assembly._write_marker(str(folder), plan, fsync=False)
        assert assembly.collapse(fd, plan, fsync=False)
        os.link(folder / assembly.ASSEMBLY, tmp_path / "key")  # the publish's rename happened
        assert assembly.restore(str(folder), fsync=False) is assembly.Outcome.PUBLISHED
        assert (tmp_path / "key").read_bytes() == b"".join(PARTS.values())
        assert (folder / assembly.COLLAPSING).exists()  # so the claim is discarded, not given back
    finally:
        os.close(fd)


@pytest.mark.usefixtures("can_collapse")
def test_after_a_reboot_a_part_with_other_bytes_is_not_given_back(tmp_path: Path) -> None:
    folder = tmp_path / "up"
    fd = write_parts(folder, PARTS)
    try:
        plan = plan_of(fd, PARTS)
        before = assembly.Plan(plan.size, plan.end, plan.removed, "another-boot")
        assembly._write_marker(str(folder), before, fsync=False)
        assert assembly.collapse(fd, plan, fsync=False)
        at = len(PARTS[1]) + 5  # a byte of part 2, changed as a step torn by a power loss could leave it
        os.pwrite(fd, bytes([os.pread(fd, 1, at)[0] ^ 1]), at)
        assert assembly.restore(str(folder), fsync=False) is assembly.Outcome.LOST
        assert (folder / assembly.COLLAPSING).exists()
    finally:
        os.close(fd)


def test_a_marker_without_a_plan_cannot_be_undone(tmp_path: Path) -> None:
    folder = tmp_path / "up"
    os.close(write_parts(folder, PARTS))
    (folder / assembly.COLLAPSING).touch()  # what versions before plans were kept wrote
    assert assembly.Plan.load(str(folder / assembly.COLLAPSING)) is None
    assert assembly.restore(str(folder), fsync=False) is assembly.Outcome.LOST
