"""Key validation, key -> path mapping and bucket-name rules (storage/keys.py)."""

from __future__ import annotations

import os

import pytest

from s3serve import errors
from s3serve.storage import keys


@pytest.mark.parametrize(
    ("key", "segments", "is_folder"),
    [
        ("a", ("a",), False),
        ("a/b/c.txt", ("a", "b", "c.txt"), False),
        ("dir/", ("dir",), True),
        ("a/b/", ("a", "b"), True),
        ("...", ("...",), False),  # only exactly "." and ".." are special
        ("a/.hidden/..x", ("a", ".hidden", "..x"), False),
        ("sp ace/%2F/ü€😀", ("sp ace", "%2F", "ü€😀"), False),  # never percent-decoded here
        ("x" * 255, ("x" * 255,), False),
        ("/".join(["y" * 255] * 4) + "/", ("y" * 255,) * 4, True),  # 1024 bytes
    ],
)
def test_parse_key_accepts(key: str, segments: tuple[str, ...], is_folder: bool) -> None:
    kp = keys.parse_key(key)
    assert kp.segments == segments
    assert kp.is_folder is is_folder
    assert keys.object_path("/r/b", kp) == "/r/b/" + "/".join(segments)


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("", errors.InvalidArgument),
        ("/", errors.InvalidArgument),
        ("/abs", errors.InvalidArgument),
        ("a//b", errors.InvalidArgument),
        ("a//", errors.InvalidArgument),
        (".", errors.InvalidArgument),
        ("..", errors.InvalidArgument),
        ("../etc/passwd", errors.InvalidArgument),
        ("a/../../b", errors.InvalidArgument),
        ("a/./b", errors.InvalidArgument),
        ("a/..", errors.InvalidArgument),
        ("../", errors.InvalidArgument),
        ("nul\x00byte", errors.InvalidArgument),
        ("bad\udcffsurrogate", errors.InvalidArgument),
        ("x" * 256, errors.KeyTooLongError),
        ("a/" + "é" * 128, errors.KeyTooLongError),  # 256 bytes in one segment
        ("/".join(["y" * 255] * 4) + "/a", errors.KeyTooLongError),  # 1025 bytes
        ("€" * 342, errors.KeyTooLongError),  # 1026 bytes, 342 characters
    ],
)
def test_parse_key_refuses(key: str, error: type[errors.S3Error]) -> None:
    with pytest.raises(error) as info:
        keys.parse_key(key)
    assert info.value.status == 400
    if error is errors.InvalidArgument:
        assert "cannot be stored on this server's filesystem" in info.value.message


@pytest.mark.parametrize(
    "name",
    ["abc", "my-bucket", "my.bucket.name", "a" * 63, "1bucket", "bucket-1", "xn-ok", "s3alias-not-suffix"],
)
def test_valid_bucket_names(name: str) -> None:
    keys.validate_bucket_name(name)
    assert keys.is_bucket_folder_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "ab",
        "a" * 64,
        "Upper",
        "under_score",
        "-leading",
        "trailing-",
        ".leading",
        "trailing.",
        "two..dots",
        "192.168.1.10",
        "xn--punycode",
        "sthree-bucket",
        "name-s3alias",
        "name--ol-s3",
        "name--x-s3",
        "sp ace",
        "slash/name",
        "",
    ],
)
def test_invalid_bucket_names(name: str) -> None:
    with pytest.raises(errors.InvalidBucketName) as info:
        keys.validate_bucket_name(name)
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("Legacy_Bucket", True),
        ("a", True),
        ("under_score.x-y", True),
        (".s3serve", False),
        (".hidden", False),
        ("..", False),
        ("has space", False),
        ("slash/x", False),
        ("ü", False),
        ("x" * 256, False),
    ],
)
def test_bucket_folder_names_are_lenient_but_safe(name: str, ok: bool) -> None:
    assert keys.is_bucket_folder_name(name) is ok


def test_is_inside() -> None:
    root = "/srv/root"
    assert keys.is_inside(root, "/srv/root/bucket/key")
    assert keys.is_inside(root, "/srv/root/bucket")
    assert not keys.is_inside(root, "/srv/root")
    assert not keys.is_inside(root, "/srv/rootless/bucket")
    assert not keys.is_inside(root, "/srv/root/.s3serve/meta")
    assert not keys.is_inside(root, "/etc/passwd")


def test_clone_file_copies_bytes(tmp_path: object) -> None:
    src = os.path.join(str(tmp_path), "src")
    data = os.urandom(3 * 1024 * 1024 + 17)
    with open(src, "wb") as f:
        f.write(data)
    fd = os.open(src, os.O_RDONLY)
    try:
        dst = os.path.join(str(tmp_path), "dst")
        assert keys.clone_file(fd, dst) == len(data)
    finally:
        os.close(fd)
    with open(dst, "rb") as f:
        assert f.read() == data
    # A copy is a new inode, never a hard link: metadata xattrs belong to the inode.
    assert os.stat(dst).st_ino != os.stat(src).st_ino


def _opened(root: str, path: str) -> tuple[str, bytes, int] | None:
    opened = keys.open_file(root, path)
    if opened is None:
        return None
    real, fd, st = opened
    try:
        assert os.fstat(fd).st_ino == st.st_ino  # the stat describes the fd it came with
        return real, os.pread(fd, 100, 0), st.st_size
    finally:
        os.close(fd)


def test_open_file_opens_regular_files_inside_root_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = os.path.realpath(tmp_path / "root")
    bucket = os.path.join(root, "b")
    os.makedirs(os.path.join(bucket, "dir"))
    with open(os.path.join(bucket, "dir", "f"), "wb") as f:
        f.write(b"inside")
    outside = tmp_path / "secret"
    outside.write_bytes(b"outside")
    os.symlink(os.path.join(bucket, "dir", "f"), os.path.join(bucket, "link-in"))
    os.symlink(str(outside), os.path.join(bucket, "link-out"))
    os.symlink(os.path.join(bucket, "dir"), os.path.join(bucket, "dirlink"))
    os.symlink(str(tmp_path), os.path.join(bucket, "escape"))
    os.mkfifo(os.path.join(bucket, "fifo"))

    f_path = os.path.join(bucket, "dir", "f")
    assert _opened(root, f_path) == (f_path, b"inside", 6)
    # Through symlinks that stay inside ROOT: the real path is the target's.
    assert _opened(root, os.path.join(bucket, "link-in")) == (f_path, b"inside", 6)
    assert _opened(root, os.path.join(bucket, "dirlink", "f")) == (f_path, b"inside", 6)
    # Outside ROOT, absent, not a regular file: nothing is opened.
    assert _opened(root, os.path.join(bucket, "link-out")) is None
    assert _opened(root, os.path.join(bucket, "escape", "secret")) is None
    assert _opened(root, os.path.join(bucket, "missing")) is None
    assert _opened(root, os.path.join(bucket, "dir", "f", "under-a-file")) is None
    assert _opened(root, os.path.join(bucket, "dir")) is None
    # A FIFO is never opened for reading (that would release a writer blocked on it).
    assert _opened(root, os.path.join(bucket, "fifo")) is None
