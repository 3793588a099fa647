"""s3serve as an upstream cache in front of a second s3serve, both of this tree, for the
benchmark's s3serve-cache variants.

    python bench/cache_pair.py ROOT PORT REVALIDATE

The upstream starts first, on ROOT-upstream; then this process becomes the cache (exec), so the
upstream is the cache's child: the harness measures the two as one server (CPU, peak RSS: the
whole cost of a cached request) and stops them together (one process group).
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import time

UP_KEY, UP_SECRET = "bench-upstream", "bench-upstream-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the upstream s3serve exited with {proc.returncode}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.01)
        finally:
            conn.close()
    raise SystemExit("the upstream s3serve did not answer")


def main() -> None:
    root, port, revalidate = sys.argv[1], sys.argv[2], sys.argv[3]
    up_root = root.rstrip("/") + "-upstream"
    shutil.rmtree(up_root, ignore_errors=True)
    os.makedirs(up_root)
    up_port = _free_port()
    python = sys.executable
    serve = [python, "-m", "s3serve", "serve"]
    upstream = subprocess.Popen([*serve, up_root, "--address", f"127.0.0.1:{up_port}", "--access-key", UP_KEY, "--secret-key", UP_SECRET])
    _wait(up_port, upstream)
    os.execv(python, [
        *serve, root, "--address", f"127.0.0.1:{port}", "--access-key", "bench", "--secret-key", "bench-secret",
        "--upstream", f"http://127.0.0.1:{up_port}", "--upstream-access-key", UP_KEY, "--upstream-secret-key", UP_SECRET,
        "--cache-revalidate", revalidate,
    ])


if __name__ == "__main__":
    main()
