"""The machine's physical limits, measured in the same run: disk write+fdatasync, disk read, hashing.

These are the ceilings no server can pass: a 1 GiB PUT that s3serve makes durable cannot beat the
disk's fdatasync'd write speed, and its ETag cannot be computed faster than one core runs MD5.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

from awscrt import checksums as crt

CHUNK = 1024 * 1024


def disk_write_read(directory: Path, size: int) -> dict[str, float]:
    """MiB/s of a sequential write ended by fdatasync, then of reading it back cold and warm."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "disk-probe.bin"
    buf = os.urandom(CHUNK)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        t0 = time.perf_counter()
        left = size
        while left > 0:
            left -= os.write(fd, buf[: min(left, CHUNK)])
        os.fdatasync(fd)
        write_s = time.perf_counter() - t0
        # Drop this file's pages so the first read comes from the device, not the page cache.
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    out = {"write_fdatasync_MiBps": size / write_s / CHUNK}
    for label in ("read_cold_MiBps", "read_cached_MiBps"):
        fd = os.open(path, os.O_RDONLY)
        try:
            t0 = time.perf_counter()
            while os.read(fd, CHUNK):
                pass
            out[label] = size / (time.perf_counter() - t0) / CHUNK
        finally:
            os.close(fd)
    path.unlink()
    return out


def hash_rates(size: int) -> dict[str, float]:
    """MiB/s of one core for each digest s3serve computes on the data path."""
    buf = os.urandom(CHUNK)
    n = max(1, size // CHUNK)

    def rate(update: Any) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            update(buf)
        return n / (time.perf_counter() - t0)

    out: dict[str, float] = {}
    for name in ("md5", "sha1", "sha256"):
        out[f"{name}_MiBps"] = rate(hashlib.new(name).update)
    state = {"v": 0}

    def crc32(data: bytes) -> None:
        state["v"] = zlib.crc32(data, state["v"])

    out["crc32_zlib_MiBps"] = rate(crc32)

    def crc32_crt(data: bytes) -> None:
        state["v"] = crt.crc32(data, state["v"])

    out["crc32_awscrt_MiBps"] = rate(crc32_crt)

    def crc32c(data: bytes) -> None:
        state["v"] = crt.crc32c(data, state["v"])

    out["crc32c_awscrt_MiBps"] = rate(crc32c)
    return out


def put_floor(directory: Path, size: int, server_cores: set[int]) -> dict[str, float]:
    """MiB/s of the least a durable large PUT must do, on the server's cores, with no HTTP at all.

    A child process pinned where the servers run receives ``size`` bytes over a loopback TCP
    connection into a reused 1 MiB buffer and hashes them with MD5 (``recv_md5``); then again,
    writing each MiB to a file as well, starting its writeback every 8 MiB and ending with
    fdatasync, as s3serve does (``recv_md5_write``). What the second loses against the first is
    the page-cache write and the disk, which no server on this machine avoids.
    """
    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, float] = {}
    for label, path in (("recv_md5_MiBps", ""), ("recv_md5_write_MiBps", str(directory / "put-floor.bin"))):
        with socket.create_server(("127.0.0.1", 0)) as listener:
            port = listener.getsockname()[1]
            cores = ",".join(map(str, sorted(server_cores)))
            child = subprocess.Popen([sys.executable, "-m", "bench.machine", str(port), str(size), path, cores],
                                     stdout=subprocess.PIPE)
            conn, _ = listener.accept()
            with conn:
                buf = os.urandom(CHUNK)
                for _ in range(size // CHUNK):
                    conn.sendall(buf)
            answer, _ = child.communicate()
        out[label] = json.loads(answer)["MiBps"]
        if path:
            Path(path).unlink(missing_ok=True)
    return out


def _receive(port: int, size: int, path: str, cores: str) -> float:
    """The child side of put_floor: MiB/s from the first byte to the end (of the fdatasync)."""
    # s3serve's own writeback call, every as many bytes as s3serve starts it.
    from s3serve.storage.streams import WRITEBACK_BYTES, start_writeback

    os.sched_setaffinity(0, {int(c) for c in cores.split(",")})
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    md5 = hashlib.md5()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) if path else -1
    with socket.create_connection(("127.0.0.1", port)) as conn:
        got = started = 0
        t0 = 0.0
        while got < size:
            filled = 0
            while filled < CHUNK:
                n = conn.recv_into(view[filled:])
                if not n:
                    break
                if not t0:
                    t0 = time.perf_counter()
                filled += n
            if not filled:
                break
            md5.update(view[:filled])
            if fd >= 0:
                os.write(fd, view[:filled])
                if got + filled - started >= WRITEBACK_BYTES:
                    start_writeback(fd, started, got + filled - started)
                    started = got + filled
            got += filled
    if fd >= 0:
        os.fdatasync(fd)
        os.close(fd)
    return got / (time.perf_counter() - t0) / CHUNK


def signer_rate(seconds: float = 0.5) -> dict[str, float]:
    """Signatures per second of the load generator's own signer and of botocore's, on one core.

    The client must sign far faster than any server answers, or it measures itself.
    """
    from bench.signer import Signer

    out: dict[str, float] = {}
    signer = Signer("bench", "bench-secret")
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        signer.sign_headers("GET", "127.0.0.1:9000", f"/bench/small/k{n}")
        n += 1
    out["client_sigv4_signs_per_s"] = n / (time.perf_counter() - t0)
    try:
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
    except ImportError:
        return out
    auth = S3SigV4Auth(Credentials("bench", "bench-secret"), "s3", "us-east-1")
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        auth.add_auth(AWSRequest(method="GET", url=f"http://127.0.0.1:9000/bench/small/k{n}"))
        n += 1
    out["botocore_sigv4_signs_per_s"] = n / (time.perf_counter() - t0)
    return out


def describe() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "mem_total_kib": _meminfo("MemTotal"),
    }


def _meminfo(field: str) -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    print(json.dumps({"MiBps": _receive(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])}))
