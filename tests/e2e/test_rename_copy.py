"""RenameObject through boto3 (conditions, idempotency tokens, refusals) and cheap copies: a
CopyObject of a large object is a hard link whose keys keep separate metadata."""

from __future__ import annotations

import datetime
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Server, start_server, stop_server

MIB = 1024 * 1024


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def inode(server: Server, bucket: str, key: str) -> os.stat_result:
    assert server.root is not None
    return os.stat(server.root / bucket / key)


@pytest.fixture(autouse=True)
def local_only(server: Server) -> None:
    if server.root is None:
        pytest.skip("inspects the server's files")


def test_botocore_knows_rename_object(s3) -> None:  # type: ignore[no-untyped-def]
    assert "RenameObject" in s3.meta.service_model.operation_names


def test_rename_is_one_rename_of_the_same_inode(s3, server: Server, bucket: str) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(3 * MIB)
    s3.put_object(Bucket=bucket, Key="dir/src", Body=data, Metadata={"m": "1"}, ContentType="text/x-test")
    before = inode(server, bucket, "dir/src")
    etag = s3.head_object(Bucket=bucket, Key="dir/src")["ETag"]
    s3.rename_object(Bucket=bucket, Key="moved/dst", RenameSource=f"{bucket}/dir/src")
    assert inode(server, bucket, "moved/dst").st_ino == before.st_ino
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="dir/src")
    assert code(exc) == "404"
    head = s3.head_object(Bucket=bucket, Key="moved/dst")
    assert (head["ETag"], head["Metadata"], head["ContentType"]) == (etag, {"m": "1"}, "text/x-test")
    assert s3.get_object(Bucket=bucket, Key="moved/dst")["Body"].read() == data
    assert not (server.root / bucket / "dir").exists()  # type: ignore[operator]


def test_rename_conditions(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    s3.put_object(Bucket=bucket, Key="taken", Body=b"destination")
    src_etag = s3.head_object(Bucket=bucket, Key="src")["ETag"]
    dst_etag = s3.head_object(Bucket=bucket, Key="taken")["ETag"]
    past = datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)
    refused = [
        {"Key": "new", "SourceIfMatch": '"0000"'},
        {"Key": "new", "SourceIfNoneMatch": src_etag},
        {"Key": "new", "SourceIfUnmodifiedSince": past},
        {"Key": "taken", "DestinationIfNoneMatch": "*"},
        {"Key": "taken", "DestinationIfMatch": '"0000"'},
        {"Key": "taken", "DestinationIfUnmodifiedSince": past},
    ]
    for kwargs in refused:
        with pytest.raises(ClientError) as exc:
            s3.rename_object(Bucket=bucket, RenameSource=f"{bucket}/src", **kwargs)
        assert code(exc) == "PreconditionFailed", kwargs
    assert s3.get_object(Bucket=bucket, Key="src")["Body"].read() == b"source"
    assert s3.get_object(Bucket=bucket, Key="taken")["Body"].read() == b"destination"
    s3.rename_object(
        Bucket=bucket, Key="taken", RenameSource=f"{bucket}/src", SourceIfMatch=src_etag, DestinationIfMatch=dst_etag
    )
    assert s3.get_object(Bucket=bucket, Key="taken")["Body"].read() == b"source"


def test_rename_client_token_makes_retries_succeed(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="a", Body=b"payload")
    s3.rename_object(Bucket=bucket, Key="b", RenameSource=f"{bucket}/a", ClientToken="token-1")
    # The same request again (its response was lost): success, and nothing changes.
    s3.rename_object(Bucket=bucket, Key="b", RenameSource=f"{bucket}/a", ClientToken="token-1")
    assert s3.get_object(Bucket=bucket, Key="b")["Body"].read() == b"payload"
    with pytest.raises(ClientError) as exc:
        s3.rename_object(Bucket=bucket, Key="b", RenameSource=f"{bucket}/a", ClientToken="token-2")
    assert code(exc) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:  # a token does not excuse a different request
        s3.rename_object(Bucket=bucket, Key="c", RenameSource=f"{bucket}/a", ClientToken="token-1")
    assert code(exc) == "NoSuchKey"


def test_rename_refusals(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="file", Body=b"f")
    s3.put_object(Bucket=bucket, Key="other", Body=b"o")
    with pytest.raises(ClientError) as exc:
        s3.rename_object(Bucket=bucket, Key="x", RenameSource=f"{bucket}/missing")
    assert code(exc) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        s3.rename_object(Bucket=bucket, Key="x", RenameSource="another-bucket/file")
    assert code(exc) == "InvalidRequest"
    with pytest.raises(ClientError) as exc:  # "file" is an object, so it cannot be a folder too
        s3.rename_object(Bucket=bucket, Key="file/below", RenameSource=f"{bucket}/other")
    assert code(exc) == "ObjectParentIsFile"
    assert s3.get_object(Bucket=bucket, Key="other")["Body"].read() == b"o"


# -- cheap copies ------------------------------------------------------------------------------


def test_copy_links_and_keys_keep_their_own_metadata(s3, server: Server, bucket: str) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(2 * MIB)
    s3.put_object(Bucket=bucket, Key="src", Body=data, Metadata={"who": "src"}, Tagging="t=src")
    etag = s3.head_object(Bucket=bucket, Key="src")["ETag"]
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "src"})
    s3.copy_object(
        Bucket=bucket, Key="replaced", CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE", Metadata={"who": "replaced"}, ContentType="text/plain",
    )
    ino = inode(server, bucket, "src").st_ino
    assert inode(server, bucket, "copy").st_ino == ino == inode(server, bucket, "replaced").st_ino
    assert inode(server, bucket, "src").st_nlink == 3
    assert s3.head_object(Bucket=bucket, Key="replaced")["Metadata"] == {"who": "replaced"}
    assert s3.head_object(Bucket=bucket, Key="src")["Metadata"] == {"who": "src"}
    assert s3.head_object(Bucket=bucket, Key="copy")["ETag"] == etag

    def tags(key: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}

    s3.put_object_tagging(Bucket=bucket, Key="copy", Tagging={"TagSet": [{"Key": "t", "Value": "copy"}]})
    s3.put_object_tagging(Bucket=bucket, Key="src", Tagging={"TagSet": [{"Key": "t", "Value": "src2"}]})
    assert (tags("src"), tags("copy"), tags("replaced")) == ({"t": "src2"}, {"t": "copy"}, {"t": "src"})
    listed = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert listed == {"src": etag, "copy": etag, "replaced": etag}

    # A new PUT over the source replaces its directory entry; the copies keep the old bytes.
    s3.put_object(Bucket=bucket, Key="src", Body=b"new source")
    assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == data
    s3.delete_object(Bucket=bucket, Key="src")
    got = s3.get_object(Bucket=bucket, Key="copy")
    assert got["Body"].read() == data and got["ETag"] == etag and got["Metadata"] == {"who": "src"}
    assert tags("copy") == {"t": "copy"}
    assert s3.get_object(Bucket=bucket, Key="replaced")["ContentType"] == "text/plain"


def test_small_and_foreign_objects_are_copied_not_linked(s3, server: Server, bucket: str) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="small", Body=b"tiny")
    s3.copy_object(Bucket=bucket, Key="small-copy", CopySource={"Bucket": bucket, "Key": "small"})
    assert inode(server, bucket, "small").st_ino != inode(server, bucket, "small-copy").st_ino
    # A file another program put there may be rewritten in place by it: never shared.
    assert server.root is not None
    (server.root / bucket / "foreign").write_bytes(b"f" * (2 * MIB))
    s3.copy_object(Bucket=bucket, Key="foreign-copy", CopySource={"Bucket": bucket, "Key": "foreign"})
    assert inode(server, bucket, "foreign").st_ino != inode(server, bucket, "foreign-copy").st_ino
    assert s3.get_object(Bucket=bucket, Key="foreign-copy")["Body"].read() == b"f" * (2 * MIB)


@pytest.mark.awscli
def test_aws_s3_mv_is_cheap(server: Server, s3, bucket: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(4 * MIB)
    s3.put_object(Bucket=bucket, Key="before", Body=data)
    ino = inode(server, bucket, "before").st_ino
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    subprocess.run(
        ["/usr/bin/aws", "--endpoint-url", server.endpoint, "s3", "mv", f"s3://{bucket}/before", f"s3://{bucket}/after"],
        check=True, env=env, capture_output=True,
    )
    assert inode(server, bucket, "after").st_ino == ino
    assert inode(server, bucket, "after").st_nlink == 1
    assert s3.get_object(Bucket=bucket, Key="after")["Body"].read() == data


def test_renames_racing_writes_of_their_key_never_stop_the_writes(tmp_path: Path) -> None:
    """RenameObject awaited its folders' fsyncs, which run in the 32-thread write pool, while it
    held its keys' locks; small PUTs and DELETEs wait for a key's lock in that pool. With 32 of
    them queued behind a rename, every thread waited for the rename and the rename for a
    thread: every small PUT and DELETE of the server stopped for good (fsync on, the default)."""
    root = tmp_path / "root"
    root.mkdir()
    srv = start_server(root)
    try:
        def client() -> Any:
            return srv.client(max_pool_connections=4, retries={"max_attempts": 1}, read_timeout=30)

        client().create_bucket(Bucket="bkt")
        stop = time.monotonic() + 4
        failures: list[str] = []
        done = {"put": 0, "delete": 0, "rename": 0}

        def writer(n: int) -> None:
            s3 = client()
            while time.monotonic() < stop and not failures:
                try:
                    if n % 2:
                        s3.delete_object(Bucket="bkt", Key="k")
                        done["delete"] += 1
                    else:
                        s3.put_object(Bucket="bkt", Key="k", Body=b"x" * 100)
                        done["put"] += 1
                except Exception as exc:  # a timeout: the writes stopped
                    failures.append(f"{type(exc).__name__}: {exc}")
                n += 1

        def renamer() -> None:
            s3 = client()
            while time.monotonic() < stop and not failures:
                try:
                    s3.rename_object(Bucket="bkt", Key="dst/k2", RenameSource="bkt/k")
                    done["rename"] += 1
                except ClientError as exc:
                    if exc.response["Error"]["Code"] != "NoSuchKey":
                        failures.append(str(exc))
                except Exception as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")

        with ThreadPoolExecutor(42) as pool:
            list(pool.map(lambda i: writer(i) if i < 40 else renamer(), range(42)))
        assert not failures, (failures[:3], done)
        assert done["rename"] > 0 and done["put"] > 0, done
        s3 = client()
        s3.put_object(Bucket="bkt", Key="unrelated", Body=b"hello")
        assert s3.get_object(Bucket="bkt", Key="unrelated")["Body"].read() == b"hello"
        assert srv.log_path is not None and "Traceback" not in srv.log_path.read_text()
    finally:
        stop_server(srv)


def test_renaming_a_relative_symlink_keeps_serving_what_it_served(  # type: ignore[no-untyped-def]
    s3, server: Server, bucket: str
) -> None:
    """A symlink another program made is an object here: renamed, its key must still serve the
    same bytes. A relative link moved as it is would lead from its new folder somewhere else (a
    different object, or nowhere)."""
    assert server.root is not None
    bdir = server.root / bucket
    body = os.urandom(100_000)
    s3.put_object(Bucket=bucket, Key="dir/target", Body=body)
    s3.put_object(Bucket=bucket, Key="other/dir/target", Body=b"another object")
    for name in ("alias", "alias2", "alias3"):
        os.symlink("dir/target", bdir / name)
    s3.rename_object(Bucket=bucket, Key="other/alias", RenameSource=f"{bucket}/alias")
    s3.rename_object(Bucket=bucket, Key="new/deep/alias2", RenameSource=f"{bucket}/alias2")
    s3.rename_object(Bucket=bucket, Key="alias3-renamed", RenameSource=f"{bucket}/alias3")  # same folder
    for key in ("other/alias", "new/deep/alias2", "alias3-renamed"):
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body, key
        assert os.path.islink(bdir / key), key  # still a link, as another program made it
    assert os.readlink(bdir / "alias3-renamed") == "dir/target"
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == ["alias3-renamed", "dir/target", "new/deep/alias2", "other/alias", "other/dir/target"]
    assert os.listdir(server.root / ".s3serve" / "tmp") == []
    for key in ("other/alias", "new/deep/alias2", "alias3-renamed"):  # the links before their target
        s3.delete_object(Bucket=bucket, Key=key)
