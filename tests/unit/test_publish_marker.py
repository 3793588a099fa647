"""The ``publishing`` marker of a claimed upload (storage/assembly.py hand_over, gc.published and
gc.forget_publish): once the object's file is handed to the publish's rename, the claim alone
tells whether that rename happened, whatever became of the key since."""

from __future__ import annotations

import os
from pathlib import Path

from s3serve.storage import assembly, gc
from s3serve.storage.base import WriteMeta
from s3serve.storage.metadata import Record


def handed_over(tmp_path: Path) -> tuple[Path, Path]:
    """A claim whose object's file (``source``) is handed over; returns the claim and the name."""
    claim = tmp_path / "staging" / "upload.complete-1"
    claim.mkdir(parents=True)
    source = tmp_path / "mpu-1"
    source.write_bytes(b"the object")
    record = Record.for_write(WriteMeta(), "0" * 32 + "-2", 10, {})
    link = Path(assembly.hand_over(str(claim), str(source), record, fsync=True))
    return claim, link


def test_handed_over_but_not_renamed_is_not_published(tmp_path: Path) -> None:
    claim, link = handed_over(tmp_path)
    assert link == claim / assembly.OBJECT and link.read_bytes() == b"the object"
    assert (claim / assembly.PUBLISHING).is_file()
    assert not [p for p in claim.iterdir() if p.name.startswith(gc.UPLOAD_TEMP_PREFIX)]  # written whole, then renamed
    assert not gc.published(str(claim))


def test_renamed_is_published_even_once_the_key_is_written_again_or_deleted(tmp_path: Path) -> None:
    claim, link = handed_over(tmp_path)
    key = tmp_path / "bucket-key"
    os.rename(link, key)  # the publish
    assert gc.published(str(claim))
    newer = tmp_path / "put-1"
    newer.write_bytes(b"newer")
    os.rename(newer, key)  # a later PUT of the key
    assert gc.published(str(claim))
    key.unlink()  # a later DeleteObject
    assert gc.published(str(claim))


def test_forgotten_marker_first_then_the_name(tmp_path: Path) -> None:
    claim, link = handed_over(tmp_path)
    gc.forget_publish(str(claim), fsync=True)
    assert not (claim / assembly.PUBLISHING).exists() and not link.exists()
    assert not gc.published(str(claim))
    gc.forget_publish(str(claim), fsync=True)  # nothing left to forget: no error


def test_a_claim_without_a_marker_is_not_published(tmp_path: Path) -> None:
    claim = tmp_path / "upload.complete-1"
    claim.mkdir()
    assert not gc.published(str(claim))  # a claim of an older version: told as before (nlink)
    (claim / assembly.PUBLISHING).write_bytes(b"")  # unreadable: never taken for a publish
    assert not gc.published(str(claim))
