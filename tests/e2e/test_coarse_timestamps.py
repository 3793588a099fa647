"""A ROOT on a filesystem that keeps timestamps to the second (ext3, ext4 with 128-byte inodes,
HFS+): every change within one second gives an inode the same ctime, and a file renamed into
place often takes the inode number its predecessor freed. The caches keyed on a file's stamp
(records, the bucket registry, bucket configuration) must not take such a file for the one they
read. The server's stat calls are cut to the second here, as such a filesystem gives them."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.conftest import Server, start_server, stop_server
from tests.e2e.conftest import until

TO_THE_SECOND = """
import os

def _to_the_second(real):
    def stat(*args, **kwargs):
        st = real(*args, **kwargs)
        fields = {name: getattr(st, name) for name in ("st_blksize", "st_blocks", "st_rdev")}
        for name in ("atime", "mtime", "ctime"):
            ns = getattr(st, f"st_{name}_ns") // 10**9 * 10**9
            fields[f"st_{name}_ns"] = ns
            fields[f"st_{name}"] = float(ns // 10**9)
        return os.stat_result(tuple(st[:10]), fields)
    return stat

os.stat, os.lstat, os.fstat = _to_the_second(os.stat), _to_the_second(os.lstat), _to_the_second(os.fstat)
"""

ATTEMPTS = 8


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("coarse")
    credentials = base / "users.json"
    users = [{"access_key": name, "secret_key": f"{name}-secret"} for name in ("alice", "bob")]
    credentials.write_text(json.dumps({"users": users}))
    root = base / "root"
    root.mkdir()
    args = ("--credentials", str(credentials), "--no-fsync")
    srv = start_server(root, *args, access_key="", secret_key="", patch=TO_THE_SECOND)
    yield srv
    stop_server(srv)


def _client(server: Server, key: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=key, aws_secret_access_key=f"{key}-secret",
        region_name="us-east-1",
    )  # fmt: skip


def _code(call: Callable[..., Any], **kwargs: Any) -> str:
    try:
        call(**kwargs)
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "OK"


def _within_one_second(steps: Callable[[], object]) -> tuple[object, bool]:
    """``steps``' result, started early in a second (well past the 50 ms a stamp needs to be
    cached at all), and whether they all ran within that second."""
    until(lambda: 0.1 < time.time() % 1 < 0.35)
    second = int(time.time())
    result = steps()
    return result, int(time.time()) == second


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_ctime_ns // 10**9


def test_tags_changed_within_the_second_are_read_back(users: Server) -> None:
    alice = _client(users, "alice")
    alice.create_bucket(Bucket="coarse-tags")
    for attempt in range(ATTEMPTS):
        key = f"k{attempt}"

        def steps(key: str = key) -> list[dict[str, str]]:
            alice.put_object(Bucket="coarse-tags", Key=key, Body=b"x", Tagging="v=one")
            seen = [alice.get_object_tagging(Bucket="coarse-tags", Key=key)["TagSet"][0]]  # cached
            # The same inode, its record rewritten in place: the ctime does not move this second.
            two = {"TagSet": [{"Key": "v", "Value": "two"}]}
            alice.put_object_tagging(Bucket="coarse-tags", Key=key, Tagging=two)
            seen.append(alice.get_object_tagging(Bucket="coarse-tags", Key=key)["TagSet"][0])
            return seen

        seen, same_second = _within_one_second(steps)
        if same_second:
            assert seen == [{"Key": "v", "Value": "one"}, {"Key": "v", "Value": "two"}]
            return
    pytest.skip("no attempt ran within one second (a machine this slow cannot tell)")


def test_bucket_made_again_by_another_user_within_the_second(users: Server) -> None:
    assert users.root is not None
    alice, bob = _client(users, "alice"), _client(users, "bob")
    record = users.root / ".s3serve" / "buckets" / "coarse-owner.json"
    for _ in range(ATTEMPTS):

        def steps() -> tuple[bool, str]:
            alice.create_bucket(Bucket="coarse-owner")
            before = _stamp(record)
            alice.head_bucket(Bucket="coarse-owner")  # alice's, cached
            alice.delete_bucket(Bucket="coarse-owner")
            bob.create_bucket(Bucket="coarse-owner")  # its record most often takes the inode freed
            collided = _stamp(record) == before
            return collided, _code(alice.put_object, Bucket="coarse-owner", Key="intruder", Body=b"x")

        (collided, code), same_second = _within_one_second(steps)
        if collided and same_second:
            assert code == "AccessDenied"
            assert _code(bob.head_object, Bucket="coarse-owner", Key="intruder") == "404"
            return
        bob.delete_objects(Bucket="coarse-owner", Delete={"Objects": [{"Key": "intruder"}]})
        bob.delete_bucket(Bucket="coarse-owner")
    pytest.skip("the filesystem gave the new record another inode (or size) in every attempt")


def _policy(effect: str, sid: str, bob_id: str) -> str:
    statement = {
        "Sid": sid,
        "Effect": effect,
        "Principal": {"CanonicalUser": bob_id},
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::coarse-policy/*",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def test_policy_replaced_within_the_second_binds(users: Server) -> None:
    assert users.root is not None
    alice, bob = _client(users, "alice"), _client(users, "bob")
    bob_id = str(bob.list_buckets()["Owner"]["ID"])
    alice.create_bucket(Bucket="coarse-policy")
    alice.put_object(Bucket="coarse-policy", Key="k", Body=b"secret")
    allow, deny = _policy("Allow", "s", bob_id), _policy("Deny", "ss", bob_id)
    assert len(allow) == len(deny)
    document = users.root / ".s3serve" / "bucket-config" / "coarse-policy" / "policy.json"
    for _ in range(ATTEMPTS):

        def steps() -> tuple[bool, str, str]:
            alice.put_bucket_policy(Bucket="coarse-policy", Policy=allow)
            before = _stamp(document)
            allowed = _code(bob.get_object, Bucket="coarse-policy", Key="k")  # the allow, cached
            # Its own request reads the policy in force: that of another stamp would be cached.
            alice.delete_bucket_policy(Bucket="coarse-policy")
            alice.put_bucket_policy(Bucket="coarse-policy", Policy=deny)  # most often the inode freed
            collided = _stamp(document) == before
            return collided, allowed, _code(bob.get_object, Bucket="coarse-policy", Key="k")

        (collided, allowed, denied), same_second = _within_one_second(steps)
        if collided and same_second:
            assert (allowed, denied) == ("OK", "AccessDenied")
            return
    pytest.skip("the filesystem gave the new document another inode in every attempt")
