"""A flat bucket of more names than a page holds, walked page by page while it changes: through S3
and behind the server's back. Later pages come from the names kept since the first page was read,
and must still show every change made before them."""

from __future__ import annotations

import os
import time
from pathlib import Path

from s3serve.storage.metadata import settled
from tests.conftest import Server, start_server


def pages(s3, bucket: str, size: int):  # type: ignore[no-untyped-def]
    return s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": size})


def test_a_flat_bucket_walked_while_it_changes(root: Path, servers: list[Server]) -> None:
    server = start_server(root, "--no-fsync")
    servers.append(server)
    s3 = server.client()
    s3.create_bucket(Bucket="flat")
    folder = root / "flat"
    names = [f"img-{i:05d}.jpg" for i in range(1500)]
    for name in names:
        # Files another program put there: the server has never seen them.
        (folder / name).write_bytes(name.encode())
    while not settled(os.stat(folder)):
        time.sleep(0.02)

    assert [o["Key"] for page in pages(s3, "flat", 1000) for o in page["Contents"]] == names

    seen: list[str] = []
    walk = iter(pages(s3, "flat", 500))
    seen += [o["Key"] for o in next(walk)["Contents"]]
    # Between pages: a delete and an overwrite through S3, a file gone and one new on the disk.
    s3.delete_object(Bucket="flat", Key="img-00700.jpg")
    s3.put_object(Bucket="flat", Key="img-00800.jpg", Body=b"rewritten")
    (folder / "img-00900.jpg").unlink()
    (folder / "img-01499b.jpg").write_bytes(b"new")
    for page in walk:
        seen += [o["Key"] for o in page["Contents"]]
    expected = sorted({*names, "img-01499b.jpg"} - {"img-00700.jpg", "img-00900.jpg"})
    assert seen == expected

    listed = {o["Key"]: o for page in pages(s3, "flat", 1000) for o in page["Contents"]}
    assert sorted(listed) == expected
    assert listed["img-00800.jpg"]["Size"] == len(b"rewritten")
    assert s3.get_object(Bucket="flat", Key="img-00800.jpg")["Body"].read() == b"rewritten"
