"""A CompleteMultipartUpload killed in the middle of collapsing the upload's assembly file.

Complete turns the sparse file holding the parts in place into the object with one truncation
and one ``FALLOC_FL_COLLAPSE_RANGE`` per gap (storage/assembly.py). A real server is killed with
SIGKILL at each step of that (and of its undo, and around the publish's rename), then started
again on the same ROOT: its start-up GC must give the upload back intact, so that the client's
retried Complete (it never got an answer) succeeds with the same ETag and bytes, as on S3; or,
where the rename into place had happened, the object is there whole. Never a lost upload, never
a torn object.
"""

from __future__ import annotations

import hashlib
import os
import signal
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.conftest import Server, start_server

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("S3SERVE_TEST_ENDPOINT")), reason="starts and kills servers of its own"
)

KIB = 1024
BLOCK = 64 * KIB  # a multiple of the block size of any filesystem that can collapse
SLOT = 5 * 1024**3  # where part n lives in the assembly file: (n - 1) * SLOT
ARGS = ("--min-part-size", "1KiB")  # fsync on, as by default


def dying(at: str) -> str:
    """start_server's ``patch`` for a server that SIGKILLs itself at ``at`` of its next Complete:
    "truncate" (the marker written, nothing collapsed yet), "before-collapse-N" / "after-collapse-N"
    (the Nth gap removed), "before-insert-N" (the Nth gap put back by the undo of a Complete whose
    publish failed, with "fail-publish"), "before-rename" / "after-rename" (the object's rename
    into place)."""
    return textwrap.dedent(f'''
        import os, signal
        from s3serve import errors
        from s3serve.storage import assembly, disk, keys

        AT = {at!r}

        def die(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)

        fallocate, place, publish = assembly.fallocate, keys.place, disk.DiskBackend._publish
        calls = {{"collapse": 0, "insert": 0}}

        def counted(fd, mode, offset, length):
            kind = "collapse" if mode == assembly.FALLOC_FL_COLLAPSE_RANGE else "insert"
            calls[kind] += 1
            if AT.endswith(f"before-{{kind}}-{{calls[kind]}}"):
                die()
            fallocate(fd, mode, offset, length)
            if AT.endswith(f"after-{{kind}}-{{calls[kind]}}"):
                die()

        def placing(*args, **kwargs):
            if AT == "before-rename":
                die()
            place(*args, **kwargs)
            if AT == "after-rename":
                die()

        async def failing(self, bucket, kp, tmp, record, precondition):
            if tmp is not None and os.path.basename(tmp) == assembly.OBJECT:
                os.unlink(tmp)  # _publish consumes its temp file when it fails
                raise errors.PreconditionFailed()
            return await publish(self, bucket, kp, tmp, record, precondition)

        assembly.fallocate = counted
        keys.place = placing
        if AT == "truncate":
            assembly.collapse = die
        if AT.startswith("fail-publish"):
            disk.DiskBackend._publish = failing
    ''')


@dataclass
class Upload:
    bucket: str
    key: str
    upload_id: str
    parts: dict[int, bytes]  # the parts the Complete lists
    etags: dict[int, str]

    def listed(self) -> dict[str, Any]:
        return {"Parts": [{"PartNumber": n, "ETag": self.etags[n]} for n in sorted(self.parts)]}

    def body(self) -> bytes:
        return b"".join(self.parts[n] for n in sorted(self.parts))

    def etag(self) -> str:
        digests = b"".join(hashlib.md5(self.parts[n]).digest() for n in sorted(self.parts))
        return f'"{hashlib.md5(digests).hexdigest()}-{len(self.parts)}"'

    def sizes(self) -> list[int]:
        """The assembly file's size before the collapse, after its truncation and after each
        gap removed (the last gap first)."""
        numbers = sorted(self.parts)
        end = (numbers[-1] - 1) * SLOT + len(self.parts[numbers[-1]])
        gaps = [(n - 1) * SLOT - ((m - 1) * SLOT + len(self.parts[m])) for m, n in zip(numbers, numbers[1:], strict=False)]
        sizes = [(STALE - 1) * SLOT + BLOCK, end]  # part 7's stale slot is the file's end at first
        for gap in reversed(gaps):
            sizes.append(sizes[-1] - gap)
        return sizes


# Five parts with gaps between their slots (four collapses), and part 7 uploaded in place then
# again into a part file of its own and left out of the list: its slot's stale bytes end the file,
# so the collapse truncates before its first removal.
NUMBERS = (1, 2, 3, 5, 6)
STALE = 7


def upload(s3: Any, key: str) -> Upload:
    bucket = "bkt"
    sizes = {1: 2 * BLOCK, 2: BLOCK, 3: 3 * BLOCK, 5: BLOCK, 6: 1000}  # the last one unaligned
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="text/x-whole")["UploadId"]
    parts = {n: os.urandom(sizes[n]) for n in NUMBERS}
    etags = {}
    for n, data in parts.items():
        etags[n] = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=data)["ETag"]
    for data in (os.urandom(BLOCK), os.urandom(BLOCK)):
        s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=STALE, Body=data)
    return Upload(bucket, key, upload_id, parts, etags)


def staging(root: Path) -> Path:
    return root / ".s3serve" / "multipart" / "bkt"


def dies_on_complete(server: Server, up: Upload) -> None:
    """Send the Complete once (no retries): the patched server must die of it, unanswered."""
    s3: Any = server.client(retries={"total_max_attempts": 1}, read_timeout=30)
    with pytest.raises((BotoCoreError, ClientError)):
        s3.complete_multipart_upload(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id, MultipartUpload=up.listed())
    assert server.process is not None
    assert server.process.wait(timeout=30) == -signal.SIGKILL, server.log_path.read_text() if server.log_path else ""


def claim_of(root: Path, up: Upload) -> Path:
    """The folder the dead Complete left, with its ``collapsing`` marker (the case at hand)."""
    claims = [p for p in staging(root).iterdir() if p.name.startswith(f"{up.upload_id}.complete-")]
    assert len(claims) == 1, list(staging(root).iterdir())
    assert (claims[0] / "collapsing").is_file()
    return claims[0]


def parts_of(s3: Any, up: Upload) -> list[tuple[int, str, int]]:
    listed = s3.list_parts(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id)["Parts"]
    return [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed]


def check_intact_then_complete(root: Path, s3: Any, up: Upload, inode: int, stale_etag: str) -> None:
    """The upload is back as it was: every part listed, and a retried Complete makes the object,
    in place again (no copy), with the multipart ETag of the parts and their bytes."""
    listed = parts_of(s3, up)
    assert [p for p in listed if p[0] != STALE] == [(n, up.etags[n], len(up.parts[n])) for n in sorted(up.parts)]
    assert (STALE, stale_etag, BLOCK) in listed
    done = s3.complete_multipart_upload(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id, MultipartUpload=up.listed())
    assert done["ETag"] == up.etag()
    got = s3.get_object(Bucket=up.bucket, Key=up.key)
    assert got["ETag"] == up.etag() and got["ContentType"] == "text/x-whole"
    assert got["Body"].read() == up.body()
    assert os.stat(root / up.bucket / up.key).st_ino == inode  # the parts' own file, collapsed again
    assert list(staging(root).iterdir()) == []


def crash_complete(root: Path, servers: list[Server], at: str) -> tuple[Upload, int, str]:
    """Upload through a server patched to die at ``at``, and Complete through it. Returns the
    upload, its assembly file's inode and part 7's ETag."""
    server = start_server(root, *ARGS, patch=dying(at))
    servers.append(server)
    s3: Any = server.client()
    s3.create_bucket(Bucket="bkt")
    up = upload(s3, "obj")
    stale = parts_of(s3, up)[-1]
    assert stale[0] == STALE
    inode = os.stat(staging(root) / up.upload_id / "assembly").st_ino
    dies_on_complete(server, up)
    return up, inode, stale[1]


def restart(root: Path, servers: list[Server], *extra: str, patch: str | None = None) -> Any:
    server = start_server(root, *ARGS, *extra, patch=patch)
    servers.append(server)
    return server.client()


def dead_claim_beside_live(
    root: Path, servers: list[Server], at: str, *live_args: str, patch: str | None = None
) -> tuple[Any, Upload, int, str]:
    """Two servers on one ROOT (as --workers share it): an upload made through the live one, and
    its Complete sent to the other, patched to die at ``at``, which leaves its claim. Returns the
    live server's client, the upload, its assembly file's inode and part 7's ETag."""
    live = start_server(root, *ARGS, *live_args, patch=patch)
    servers.append(live)
    s3: Any = live.client()
    s3.create_bucket(Bucket="bkt")
    up = upload(s3, "obj")
    stale = parts_of(s3, up)[-1][1]
    inode = os.stat(staging(root) / up.upload_id / "assembly").st_ino
    dying_server = start_server(root, *ARGS, patch=dying(at))
    servers.append(dying_server)
    dies_on_complete(dying_server, up)
    claim_of(root, up)
    return s3, up, inode, stale


# Where it is killed, and how many steps (the truncation, then the four collapses) it had taken.
STEPS_DONE = {
    "truncate": 0,
    "before-collapse-1": 1,
    "after-collapse-1": 2,  # the first step, done
    "before-collapse-3": 3,  # the middle one
    "before-collapse-4": 4,  # the last one
    "after-collapse-4": 5,
    "before-rename": 5,  # linked as "object" and sealed for the publish
}


@pytest.mark.parametrize("at", list(STEPS_DONE))
def test_a_complete_killed_while_collapsing_is_given_back_and_retried(root: Path, servers: list[Server], at: str) -> None:
    up, inode, stale = crash_complete(root, servers, at)
    claim = claim_of(root, up)
    sizes = up.sizes()
    # Killed where it should be: the file's size is the one of that step.
    assert os.stat(claim / "assembly").st_size == sizes[STEPS_DONE[at]], (at, sizes)
    s3 = restart(root, servers)  # its start-up GC runs before it serves
    assert not claim.exists() and not (root / "bkt" / "obj").exists()
    check_intact_then_complete(root, s3, up, inode, stale)
    assert "gave back upload" in (servers[-1].log_path.read_text() if servers[-1].log_path else "")


def test_a_complete_killed_after_its_rename_published_the_object_whole(root: Path, servers: list[Server]) -> None:
    up, inode, _ = crash_complete(root, servers, "after-rename")
    claim_of(root, up)
    s3 = restart(root, servers)
    # The object was published: it stays, whole, and the upload is over (as after a success).
    got = s3.get_object(Bucket=up.bucket, Key=up.key)
    assert got["ETag"] == up.etag() and got["Body"].read() == up.body()
    assert os.stat(root / "bkt" / "obj").st_ino == inode
    assert list(staging(root).iterdir()) == []
    done = s3.complete_multipart_upload(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id, MultipartUpload=up.listed())
    assert done["ETag"] == up.etag()
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id)
    assert exc.value.response["Error"]["Code"] == "NoSuchUpload"


@pytest.mark.parametrize("at", ["fail-publish-before-insert-1", "fail-publish-before-insert-3"])
def test_a_complete_killed_while_undoing_its_collapse_is_given_back(root: Path, servers: list[Server], at: str) -> None:
    """Its publish failed, and the process died putting the gaps back."""
    up, inode, stale = crash_complete(root, servers, at)
    claim = claim_of(root, up)
    inserted = int(at[-1]) - 1
    assert os.stat(claim / "assembly").st_size == up.sizes()[5 - inserted]
    s3 = restart(root, servers)
    check_intact_then_complete(root, s3, up, inode, stale)


def test_a_live_server_on_the_same_root_gives_the_upload_back(root: Path, servers: list[Server]) -> None:
    """Two servers share ROOT (as --workers do); the one that ran the Complete dies mid-collapse
    and the other, serving on, gives the upload back at its next GC round."""
    s3, up, inode, stale = dead_claim_beside_live(root, servers, "after-collapse-2", "--gc-interval", "0.5s")
    deadline = time.monotonic() + 15
    while not (staging(root) / up.upload_id).is_dir():
        assert time.monotonic() < deadline, "the upload was not given back"
        time.sleep(0.1)
    check_intact_then_complete(root, s3, up, inode, stale)


def test_a_retry_on_a_live_server_takes_the_upload_back_at_once(root: Path, servers: list[Server]) -> None:
    """As above, with the live server's next GC round an hour away (the default): the client's
    retried Complete finds the dead claim and takes the upload back itself."""
    s3, up, inode, _ = dead_claim_beside_live(root, servers, "after-collapse-2")
    done = s3.complete_multipart_upload(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id, MultipartUpload=up.listed())
    assert done["ETag"] == up.etag()
    got = s3.get_object(Bucket=up.bucket, Key=up.key)
    assert got["ETag"] == up.etag() and got["Body"].read() == up.body()
    assert os.stat(root / up.bucket / up.key).st_ino == inode  # the parts' own file, collapsed again
    assert list(staging(root).iterdir()) == []


def test_an_abort_on_a_live_server_takes_the_upload_back_and_aborts_it(root: Path, servers: list[Server]) -> None:
    """As above, but the client gives up on the upload: its Abort finds the dead claim, and the
    upload is aborted at once (its space freed), not answered NoSuchUpload until the GC's round."""
    s3, up, _, _ = dead_claim_beside_live(root, servers, "after-collapse-2")
    s3.abort_multipart_upload(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id)
    assert list(staging(root).iterdir()) == []
    assert not (root / up.bucket / up.key).exists()
    assert s3.list_multipart_uploads(Bucket=up.bucket).get("Uploads", []) == []
    with pytest.raises(ClientError) as exc:
        s3.abort_multipart_upload(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id)
    assert exc.value.response["Error"]["Code"] == "NoSuchUpload"


def test_an_abort_after_a_dead_complete_published_the_object_finds_no_upload(root: Path, servers: list[Server]) -> None:
    """The dead Complete got as far as publishing: the object stands, and the upload is over, so
    the Abort is answered NoSuchUpload, as S3 answers an Abort after a Complete."""
    s3, up, _, _ = dead_claim_beside_live(root, servers, "after-rename")
    with pytest.raises(ClientError) as exc:
        s3.abort_multipart_upload(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id)
    assert exc.value.response["Error"]["Code"] == "NoSuchUpload"
    got = s3.get_object(Bucket=up.bucket, Key=up.key)
    assert got["ETag"] == up.etag() and got["Body"].read() == up.body()
    assert list(staging(root).iterdir()) == []


AFTER_A_REBOOT = "from s3serve.storage import assembly\nassembly.boot_id = lambda: 'another-boot'\n"


@pytest.mark.parametrize("torn", [False, True])
def test_after_a_reboot_the_parts_are_checked_before_the_upload_is_given_back(
    root: Path, servers: list[Server], torn: bool
) -> None:
    """After a power loss the filesystem, not the kernel, decided what of each step stayed: the
    parts are hashed again. One that does not match (as a step the filesystem did not keep whole
    would leave it) means the upload is discarded, never given back with the wrong bytes."""
    up, inode, stale = crash_complete(root, servers, "after-collapse-2")
    claim = claim_of(root, up)
    if torn:
        with open(claim / "assembly", "r+b") as f:  # part 1, at offset 0, is never moved
            first = f.read(1)
            f.seek(0)
            f.write(bytes([first[0] ^ 1]))
    s3 = restart(root, servers, patch=AFTER_A_REBOOT)
    if not torn:
        check_intact_then_complete(root, s3, up, inode, stale)
        return
    assert "discarding upload" in (servers[-1].log_path.read_text() if servers[-1].log_path else "")
    assert list(staging(root).iterdir()) == []
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=up.bucket, Key=up.key, UploadId=up.upload_id, MultipartUpload=up.listed())
    assert exc.value.response["Error"]["Code"] == "NoSuchUpload"
    assert not (root / "bkt" / "obj").exists()
