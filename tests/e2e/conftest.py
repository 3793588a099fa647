"""Fixtures shared by the end-to-end tests: the aws cli v2 as a second real client."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Server, free_port, start_server, stop_server, wait_ready

# Credentials of the s3serve that the upstream cache tests put behind a cache.
UP_ACCESS, UP_SECRET = "upstream-access", "upstream-secret"

AWS = "/usr/bin/aws"  # Debian's aws cli v2, installed by tools/ensure-awscli.sh


@pytest.fixture(scope="module")
def aws(server, tmp_path_factory):  # type: ignore[no-untyped-def]
    """Run the aws cli against the server: ``aws("s3api", "get-bucket-cors", ...)``."""
    home = tmp_path_factory.mktemp("awshome")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_PAGER": "",
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
    }

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [AWS, "--endpoint-url", server.endpoint, *args], env=env, capture_output=True, text=True, timeout=300
        )
        if check and result.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    version = subprocess.run([AWS, "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("aws-cli/2"), version
    return run


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """moto's S3 server (moto[server], a test dependency) on a free loopback port: a third-party
    S3 implementation for the upstream cache to sit in front of."""
    script = Path(sys.executable).parent / "moto_server"
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(script), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", "moto-key", "moto-secret", None, process, log_path)
    try:
        wait_ready(server.endpoint, process, timeout=30)
    except RuntimeError as exc:
        stop_server(server)
        raise RuntimeError(f"{exc}\n{log_path.read_text()}") from None
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A plain s3serve, with credentials of its own, for an upstream cache to sit in front of."""
    root = tmp_path_factory.mktemp("upstream") / "root"
    root.mkdir()
    srv = start_server(root, "--no-fsync", access_key=UP_ACCESS, secret_key=UP_SECRET)
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory, upstream: Server) -> Iterator[Server]:
    """A cache in front of ``upstream``, shared by a module's tests (a module with a cache of
    another kind defines its own; pytest's cache fixture, which no e2e test uses, is shadowed)."""
    with running_cache(tmp_path_factory.mktemp("cache") / "root", upstream) as srv:
        yield srv
    assert srv.log_path is not None and "Traceback" not in srv.log_path.read_text()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty ROOT for a server of the test's own."""
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers a test starts (and kills) on its own: whatever is left of them is stopped."""
    started: list[Server] = []
    yield started
    for server in started:
        stop_server(server)


def start_cache(root: Path, upstream: Server, *extra: str, patch: str | None = None) -> Server:
    """s3serve --upstream on ``root``, with the tests' default credentials for its clients
    (``patch``: as start_server's)."""
    return start_server(
        root,
        "--no-fsync",
        "--upstream", upstream.endpoint,
        "--upstream-access-key", upstream.access_key,
        "--upstream-secret-key", upstream.secret_key,
        *extra,
        patch=patch,
    )  # fmt: skip


@contextlib.contextmanager
def running_cache(root: Path, upstream: Server, *extra: str, patch: str | None = None) -> Iterator[Server]:
    """start_cache on ``root``, a new folder; stopped on exit."""
    root.mkdir()
    srv = start_cache(root, upstream, *extra, patch=patch)
    try:
        yield srv
    finally:
        stop_server(srv)


@contextlib.contextmanager
def cache_pair(
    base: Path, *cache_args: str, upstream_args: Sequence[str] = (), patch: str | None = None
) -> Iterator[tuple[Server, Server]]:
    """An upstream s3serve and a cache in front of it, on fresh roots under ``base``
    (``base/upstream/root``, ``base/cache/root``); both stopped on exit. ``patch`` is the
    cache's (as start_server's)."""
    up_root, cache_root = base / "upstream" / "root", base / "cache" / "root"
    up_root.mkdir(parents=True)
    cache_root.mkdir(parents=True)
    upstream = start_server(up_root, "--no-fsync", *upstream_args, access_key=UP_ACCESS, secret_key=UP_SECRET)
    try:
        cache = start_cache(cache_root, upstream, *cache_args, patch=patch)
        try:
            yield upstream, cache
        finally:
            stop_server(cache)
    finally:
        stop_server(upstream)


def fills_done(root: Path) -> bool:
    """No temp file left in a cache's hidden folder (``root``/.s3serve/tmp): every fill of a
    replica, which goes on after its reader was answered, has been published or dropped."""
    return not any(
        filenames for dirpath, _, filenames in os.walk(root / ".s3serve") if os.path.basename(dirpath) == "tmp"
    )


def until(check: Callable[[], object], timeout: float = 10.0) -> None:
    """Background work of a live server (a replica published after the answer) shows within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def error_code(call: Callable[[], object]) -> str:
    """The S3 error Code ``call`` (a boto3 call) raises, or "OK"."""
    try:
        call()
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "OK"
